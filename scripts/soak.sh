#!/usr/bin/env bash
# Soak and fault injection (issue 17, "How it is proven"): `vulngate serve` under a steady mix
# of allowed and denied reviews while half its registry misbehaves; then the deny storm.
#
#   scripts/soak.sh [SECONDS] [RATE]     defaults: 600 s at 1000 reviews/s
#
# Set-up, all on 127.0.0.1: docker-registry seeded with SOAK_CLEAN images whose report has one
# LOW finding (allowed) and SOAK_VULNERABLE images whose report has a CRITICAL one (denied by
# the rule below); crates/server/examples/fault_registry.rs answering every request of an image
# with one fault (slow past the client timeout, slow within it, hang, connection reset, garbage,
# 64 MiB chunked, truncated, wrong Docker-Content-Digest, 500); `vulngate serve` with one rule:
# deny a critical finding, and deny unscanned images (blockUnscanned, so every fault denies).
# crates/server/examples/soak_load.rs sends the reviews open-loop at RATE per second (a new uid
# each, one container): 60% clean, 30% vulnerable, 10% faulty images.
#
# Checks (the script fails on any): no transport error, every answer HTTP 200, no review the
# client could not send in time, every answer as its image class expects (allow / deny 403),
# the number of 403 answers (soak and storm) equal to the deny decisions recorded in the SQLite
# store (deny alerts plus the repeats de-duplication counted into them), and,
# for runs of 120 s or more, RSS flat after the first minute: the least-squares trend of the
# samples from 60 s on, over that span, at most max(8 MiB, 10% of their mean). (The allocator's
# footprint swings by tens of MiB from sample to sample at 1,000 reviews/s, so the highest sample
# against the one at 60 s measured the swing, not growth; it is still printed.) RSS is sampled
# every 10 s and printed.
#
# Deny storm (after the soak, same server, SOAK_STORM_SECONDS per phase, SOAK_STORM_ROUNDS rounds
# alternated; 0 skips it): closed loop at SOAK_STORM_CONNECTIONS connections, warm allows (clean
# images, cached) against denies of cached vulnerable images (each writing a durable alert before
# its answer). Ratio = deny req/s / allow req/s (goal >= 0.5), at each connection count, and the
# throughput ratio: each kind's mean req/s at its best connection count (the most each can do).
#
# Environment: SOAK_CLEAN (200), SOAK_VULNERABLE (100), SOAK_FAULT_TAGS (4 tags per fault),
# SOAK_STORM_SECONDS (10), SOAK_STORM_ROUNDS (2), SOAK_STORM_CONNECTIONS ("16 32 64 128 256": the
# storm runs at each; below 128 the deny rate is bound by the disk's flush latency, not by CPU:
# docs/benchmarks.md),
# SOAK_PROFILE (release; `debug` uses target/debug; the smoke in scripts/test.sh runs the binaries `cargo test` built),
# SOAK_BIN_DIR (prebuilt vulngate and examples; no build), SOAK_OUT (target/soak),
# SOAK_VULNGATE_EXTRA (YAML lines added to the server's vulngate.yaml, e.g. 'alertWriter: { maxBatch: 64 }'),
# SOAK_PERF=1 (perf record -g of the server during each storm phase: $SOAK_OUT/perf-PHASE-ROUND.data,
# at SOAK_PERF_FREQ Hz, 999; SOAK_PERF_CALLGRAPH=dwarf for whole stacks: the release build has no
# frame pointers, so the default `fp` stacks stop at the first frame).
# Tools: docker-registry, curl, python3 (scripts/install-test-tools.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${1:-600}
RATE=${2:-1000}
N_CLEAN=${SOAK_CLEAN:-200}
N_VULN=${SOAK_VULNERABLE:-100}
FAULT_TAGS=${SOAK_FAULT_TAGS:-4}
STORM_SECONDS=${SOAK_STORM_SECONDS:-10}
STORM_ROUNDS=${SOAK_STORM_ROUNDS:-2}
STORM_CONN=${SOAK_STORM_CONNECTIONS:-16 32 64 128 256}
PROFILE=${SOAK_PROFILE:-release}
OUT=${SOAK_OUT:-$ROOT/target/soak}
# shellcheck disable=SC1091
[[ -f "${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}/env.sh" ]] && source "${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}/env.sh"
for t in docker-registry curl python3; do
  command -v "$t" >/dev/null || { echo "missing tool: $t (scripts/install-test-tools.sh)" >&2; exit 1; }
done
log() { printf '[soak] %s\n' "$*" >&2; }

# shellcheck source=lib/work.sh
source "$ROOT/scripts/lib/work.sh"

# ---- build ----------------------------------------------------------------------------------
if [[ -n ${SOAK_BIN_DIR:-} ]]; then
  BIN=$SOAK_BIN_DIR
else
  case $PROFILE in
    release) flag=(--release); BIN="$(cargo_target_dir)/release" ;;
    debug) flag=(); BIN="$(cargo_target_dir)/debug" ;;
    *) echo "SOAK_PROFILE: release or debug, not $PROFILE" >&2; exit 2 ;;
  esac
  log "building vulngate and the soak examples ($PROFILE)"
  (cd "$ROOT" && cargo build "${flag[@]}" --locked -p vulngate --bin vulngate \
    -p vulngate-server --example fault_registry --example soak_load \
    -p vulngate-registry --example seed_images) >&2
fi
for b in vulngate examples/fault_registry examples/soak_load examples/seed_images; do
  [[ -x $BIN/$b ]] || { echo "missing binary: $BIN/$b" >&2; exit 1; }
done

mkdir -p "$OUT"
work_dir vulngate-soak

# ---- registries and images ------------------------------------------------------------------
start_registry
FAULT="127.0.0.1:$(free_port)"
"$BIN/examples/fault_registry" --listen "$FAULT" --stats "$WORK/faults.json" 2>"$WORK/faults.log" &
PIDS+=($!)
wait_http "http://$FAULT/v2/" fault_registry "$!"
log "seeding $N_CLEAN clean and $N_VULN vulnerable images into $REG"
"$BIN/examples/seed_images" --registry "$REG" --count "$N_CLEAN" --prefix clean --severity LOW >"$WORK/clean.txt"
"$BIN/examples/seed_images" --registry "$REG" --count "$N_VULN" --prefix vuln --severity CRITICAL >"$WORK/vulnerable.txt"
for f in slow slowok hang reset garbage oversized truncated wrongdigest status500; do
  for n in $(seq 1 "$FAULT_TAGS"); do echo "$FAULT/$f/app:$n"; done
done >"$WORK/faulty.txt"

# ---- vulngate -------------------------------------------------------------------------------
cat >"$WORK/rules.yaml" <<'YAML'
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: soak-deny-critical-or-unscanned }
spec:
  action: deny
  blockUnscanned: true
  conditions: [{ severity: critical, maxCount: 0 }]
YAML
VG_PORT=$(free_port)
VG_METRICS=$(free_port)
# unscannedTtl 2s: each faulty image is looked up again (and faults again) every 2 s.
cat >"$WORK/vulngate.yaml" <<YAML
listen: 127.0.0.1:$VG_PORT
metrics: { listen: 127.0.0.1:$VG_METRICS }
dataDir: $WORK/vg-data
rules: $WORK/rules.yaml
logLevel: warn
cache: { maxEntries: 10000, ttl: 1h, unscannedTtl: 2s }
registry: { insecureRegistries: ["$REG", "$FAULT"] }
${SOAK_VULNGATE_EXTRA:-}
YAML
"$BIN/vulngate" serve --config "$WORK/vulngate.yaml" 2>"$WORK/vulngate.log" &
VG_PID=$!
PIDS+=($VG_PID)
wait_http "https://127.0.0.1:$VG_PORT/healthz" "vulngate serve" "$VG_PID"
URL="https://127.0.0.1:$VG_PORT/validate?timeout=10s"
metric() { curl -s "http://127.0.0.1:$VG_METRICS/metrics" | awk -v m="$1" 'index($0, m)==1 {s+=$NF} END {print s+0}'; }

# ---- soak -----------------------------------------------------------------------------------
log "soak: ${DURATION}s at $RATE reviews/s (60% clean, 30% vulnerable, 10% faulty registry)"
"$BIN/examples/soak_load" --url "$URL" --duration "$DURATION" --rate "$RATE" --pid "$VG_PID" --label soak \
  --class "clean=$WORK/clean.txt:60:allow" --class "vulnerable=$WORK/vulnerable.txt:30:deny" \
  --class "faulty=$WORK/faulty.txt:10:deny" >"$OUT/soak.json"
brief() { # a load client's result file -> one line
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%d answered, %.0f/s, p99 %.2f ms, 403: %d, transport errors %d" % (j["answered"], j["rps"], j["latency"]["p99_ms"], j["denied_403"], j["transport_errors"]))' "$1"
}
log "soak: $(brief "$OUT/soak.json")"

# ---- deny storm -----------------------------------------------------------------------------
# The server's CPU (user + system clock ticks) and the machine's idle and iowait ticks, to
# tell a phase bound by CPU from one bound by the commit's latency.
proc_cpu() {
  local t; t=$(awk '{print $14 + $15}' "/proc/$1/stat")
  echo "$t $(awk '/^cpu /{print $5, $6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)"
}
cpu_line() { # "before" "after" result.json -> server CPU per answer, machine idle and iowait
  python3 - "$1" "$2" "$3" "$(getconf CLK_TCK)" <<'PY'
import json, sys
a, b = [list(map(int, x.split())) for x in sys.argv[1:3]]
j = json.load(open(sys.argv[3])); hz = int(sys.argv[4]); n = max(j["answered"], 1)
total = max(b[3] - a[3], 1)
print("server CPU %.1f us per answer, machine idle %.0f%%, iowait %.0f%%" % (
    (b[0] - a[0]) / hz / n * 1e6, 100 * (b[1] - a[1]) / total, 100 * (b[2] - a[2]) / total))
PY
}
STORM_FILES=()
if (( STORM_SECONDS > 0 )); then
  for conn in $STORM_CONN; do
  for r in $(seq 1 "$STORM_ROUNDS"); do
    for phase in allow deny; do
      if [[ $phase == allow ]]; then class="clean=$WORK/clean.txt:1:allow"; else class="vulnerable=$WORK/vulnerable.txt:1:deny"; fi
      tag="$phase-c$conn-$r"
      if [[ -n ${SOAK_PERF:-} ]]; then
        perf record -F "${SOAK_PERF_FREQ:-999}" --call-graph "${SOAK_PERF_CALLGRAPH:-fp}" -p "$VG_PID" -o "$OUT/perf-$tag.data" \
          -- sleep "$STORM_SECONDS" >"$OUT/perf-$tag.log" 2>&1 &
      fi
      cpu0=$(proc_cpu "$VG_PID")
      "$BIN/examples/soak_load" --url "$URL" --duration "$STORM_SECONDS" --connections "$conn" \
        --label "storm-$tag" --class "$class" >"$OUT/storm-$tag.json"
      cpu1=$(proc_cpu "$VG_PID")
      STORM_FILES+=("$OUT/storm-$tag.json")
      log "storm $tag: $(brief "$OUT/storm-$tag.json"); $(cpu_line "$cpu0" "$cpu1" "$OUT/storm-$tag.json")"
    done
  done
  done
fi

# ---- alerts: every 403 has its deny alert ---------------------------------------------------
# Alerts are written before the answer (or journaled and replayed): wait until the journal is
# empty, then count in the store.
for _ in $(seq 1 60); do
  (( $(metric vulngate_alert_journal_records) == 0 && $(metric vulngate_alert_queue_depth) == 0 )) && break
  sleep 0.5
done
JOURNAL=$(metric vulngate_alert_journal_records)
JOURNALED=$(metric vulngate_alerts_journaled)
curl -s "http://127.0.0.1:$VG_METRICS/metrics" >"$OUT/metrics.txt"
cp "$WORK/faults.json" "$OUT/faults.json" 2>/dev/null || echo '{}' >"$OUT/faults.json"
RSS_END=$(awk '/^VmRSS:/{print $2}' "/proc/$VG_PID/status")
# Every deny answer is recorded as a deny alert or as a repeat counted into one
# (alerts.dedupWindow): alert rows plus repeat rows.
DENY_ALERTS=$(python3 -c 'import sqlite3,sys; c=sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True); print(c.execute("select (select count(*) from alerts where action=?1) + (select count(*) from alert_repeats r join alerts a on a.id = r.alert_id where a.action=?1)", ("deny",)).fetchone()[0])' "$WORK/vg-data/alerts.db")
LISTED=$("$BIN/vulngate" alerts list --data-dir "$WORK/vg-data" --action deny --limit 3 -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
kill -0 "$VG_PID" 2>/dev/null || { echo "vulngate serve died: $(tail -5 "$WORK/vulngate.log")" >&2; exit 1; }

# ---- summary and checks ---------------------------------------------------------------------
python3 - "$OUT" "$DURATION" "$RATE" "$DENY_ALERTS" "$JOURNAL" "$JOURNALED" "$LISTED" "$RSS_END" \
  "$(nproc)" "$PROFILE" "$STORM_CONN" "${STORM_FILES[@]}" <<'PY' | tee "$OUT/results.md"
import json, sys
out, duration, rate, deny_alerts, journal, journaled, listed, rss_end, cores, profile, storm_conn = sys.argv[1:12]
storm_files = sys.argv[12:]
duration, deny_alerts, journal, listed = int(duration), int(deny_alerts), int(float(journal)), int(listed)
soak = json.load(open(f"{out}/soak.json"))
storms = [json.load(open(f)) for f in storm_files]
faults = json.load(open(f"{out}/faults.json"))
problems = []
print(f"# soak: {duration} s at {rate} reviews/s ({profile} build, {cores} cores shared with the load client and registries)\n")
print("| run | offered | answered | req/s | p50 ms | p99 ms | max ms | allowed | 403 | mismatched | transport errors | HTTP |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for j in [soak] + storms:
    l = j["latency"]
    print(f"| {j['label']} | {j['offered']} | {j['answered']} | {j['rps']:.0f} | {l['p50_ms']:.2f} | {l['p99_ms']:.2f} | {l['max_ms']:.2f} | {j['allowed']} | {j['denied_403']} | {j['mismatched']} | {j['transport_errors']} | {j['http']} |")
    if j["transport_errors"]:
        problems.append(f"{j['label']}: {j['transport_errors']} transport errors {j['transport_error_kinds']}")
    bad = {k: v for k, v in j["http"].items() if k != "200"}
    if bad:
        problems.append(f"{j['label']}: non-200 answers {bad}")
    if j["not_sent"]:
        problems.append(f"{j['label']}: {j['not_sent']} reviews not sent (client in-flight cap)")
    if j["mismatched"]:
        problems.append(f"{j['label']}: {j['mismatched']} answers differ from the image class's expectation")
print("\nPer class (soak):\n")
print("| class | expect | answered | allowed | 403 | mismatched | p50 ms | p99 ms | max ms |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for name, c in soak["by_class"].items():
    l = c["latency"]
    print(f"| {name} | {c['expect']} | {c['answered']} | {c['allowed']} | {c['denied_403']} | {c['mismatched']} | {l['p50_ms']:.2f} | {l['p99_ms']:.2f} | {l['max_ms']:.2f} |")
print(f"\nFault registry requests served, by fault: {faults}")
total_403 = soak["denied_403"] + sum(s["denied_403"] for s in storms)
print(f"\n403 answers (soak + storm): {total_403}; deny alerts and counted repeats in the store: {deny_alerts} "
      f"(journal records left: {journal}, alerts that went through the journal: {journaled}; `vulngate alerts list --action deny` reads them: {listed} of 3 listed)")
if total_403 != deny_alerts:
    problems.append(f"403 answers {total_403} != deny alerts and repeats {deny_alerts}")
if total_403 > 0 and listed == 0:
    problems.append("vulngate alerts list shows no deny alert")
rss = soak["rss_kib"]
print("\nRSS of vulngate (s: MiB): " + ", ".join(f"{t}: {k/1024:.1f}" for t, k in rss) + f"; after the storm: {int(rss_end)/1024:.1f}")
if duration >= 120 and rss:
    at60 = next((k for t, k in rss if t >= 60), None)
    pts = [(t, k) for t, k in rss if t >= 60]
    if at60 and len(pts) >= 3:
        n = len(pts)
        mt = sum(t for t, _ in pts) / n
        mk = sum(k for _, k in pts) / n
        var = sum((t - mt) ** 2 for t, _ in pts)
        slope = sum((t - mt) * (k - mk) for t, k in pts) / var if var else 0.0
        span = pts[-1][0] - pts[0][0]
        trend = slope * span
        limit = max(8 * 1024, mk / 10)
        highest = max(k for _, k in pts)
        print(f"RSS after the first minute: {at60/1024:.1f} MiB at 60 s, mean {mk/1024:.1f} MiB, highest "
              f"{highest/1024:.1f} MiB; trend over {span} s: {trend/1024:+.1f} MiB (flat means at most "
              f"+{limit/1024:.1f} MiB)")
        if trend > limit:
            problems.append(f"RSS grew: trend {trend/1024:+.1f} MiB after the first minute")
else:
    print("RSS flatness is checked on runs of 120 s or more")
best = {}  # kind -> (mean req/s, connections): the throughput of each kind
for conn in storm_conn.split():
    allow = [s["rps"] for s in storms if s["label"].startswith(f"storm-allow-c{conn}-")]
    deny = [s["rps"] for s in storms if s["label"].startswith(f"storm-deny-c{conn}-")]
    if not allow or not deny:
        continue
    means = {"allow": sum(allow) / len(allow), "deny": sum(deny) / len(deny)}
    for kind, mean in means.items():
        if mean > best.get(kind, (0, ""))[0]:
            best[kind] = (mean, conn)
    ratio = means["deny"] / means["allow"]
    print(f"\nDeny storm ({conn} connections, closed loop): warm allows {', '.join(f'{x:.0f}' for x in allow)} req/s, "
          f"denies with durable alerts {', '.join(f'{x:.0f}' for x in deny)} req/s; ratio {ratio:.2f} (goal >= 0.5)")
    for s in storms:
        if s["label"].startswith(f"storm-deny-c{conn}-"):
            print(f"- {s['label']}: p50 {s['latency']['p50_ms']:.2f} ms, p99 {s['latency']['p99_ms']:.2f} ms")
if len(storm_conn.split()) > 1 and len(best) == 2:
    (a, ac), (d, dc) = best["allow"], best["deny"]
    print(f"\nDeny storm throughput (each kind at its best connection count): warm allows {a:.0f} req/s "
          f"({ac} connections), denies with durable alerts {d:.0f} req/s ({dc} connections); ratio {d / a:.2f} (goal >= 0.5)")
print()
if problems:
    print("FAILED:\n" + "\n".join(f"- {p}" for p in problems))
    sys.exit(1)
print("soak: all checks passed")
PY
