// vulngate review console: refreshes the counts by state every 15 seconds (the page works
// without it; the counts are then as of the page load).
(function () {
  "use strict";
  var list = document.getElementById("counts");
  if (!list || !window.fetch) { return; }
  var query = list.getAttribute("data-query") || "";
  function refresh() {
    fetch("/counts" + (query ? "?" + query : ""), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (counts) {
        if (!counts) { return; }
        list.querySelectorAll("[data-state]").forEach(function (el) {
          var n = counts[el.getAttribute("data-state")];
          if (typeof n === "number") { el.textContent = String(n); }
        });
      })
      .catch(function () {});
  }
  setInterval(refresh, 15000);
})();
