#!/usr/bin/env bash
# Install every external tool the vulngate tests need, idempotently, into a cache directory
# outside the repository (see docs/testing.md, "Test tools").
#
#   scripts/install-test-tools.sh           install what is missing, then print the PATH export
#   scripts/install-test-tools.sh --check   only verify; exit 1 listing what is missing
#   --no-go                                 leave out the Go group (toolchain, k8s libraries, harnesses)
#
# Cache layout (${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}):
#   apt/          private apt configuration, lists and cache for Debian sid (the system apt is untouched)
#   debs/         downloaded .deb files (reused when their version is still the expected one)
#   root/         the .debs extracted with dpkg-deb -x (root/usr/bin/...)
#   cargo/        cargo install --root for crates.io tools (ferro-oci-server)
#   go/           the Go group: debs/ (golang-go, golang-k8s-apiserver-dev, golang-k8s-client-go-dev and
#                 every golang-* package they depend on, Debian sid, about 320 MB), root/ (extracted,
#                 about 2.5 GB), packages.txt (what root/ holds), gocache/ (GOCACHE), bin/apiserver-harness
#                 (built offline from tests/apiserver-harness; apiserver-harness.stamp: source hash)
#                 and bin/crd-apiserver (built offline from tests/crd-apiserver against
#                 golang-k8s-apiextensions-apiserver-dev; crd-apiserver.stamp: source hash)
#   bin/          symlinks to every tool; put this first on PATH
#   versions.txt  stamp: tool, expected version, installed version, source
#   env.sh        `export PATH=<cache>/bin:$PATH`, for tests/CI to source
#
# A tool already present with an expected version is reused without any network access.
# wrk, hey and hyperfine are Debian bookworm packages: installed system-wide with the normal apt,
# only when the command is missing. So is PostgreSQL 15 (package `postgresql`, binaries in
# /usr/lib/postgresql/15/bin, not on PATH: initdb, postgres and pg_ctl are linked into bin/); the
# tests run their own server in a temp dir (as `nobody` via setpriv when they run as root).
set -euo pipefail

CACHE="${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}"

# ---- expected versions (bash globs matched against the installed version) -------------------
SID_TOOLS=(docker-registry oras crane cosign notation)     # Debian package name == binary name
declare -A EXPECT=(
  [docker-registry]='2.8.3*'
  [oras]='1.3.*'
  [crane]='0.20.*'
  [cosign]='3.*'
  [notation]='1.3.*'
  [ferro-oci-server]='1.0.0'
  [wrk]='4.1.0*'
  [hey]='0.1.4*'
  [hyperfine]='1.15.0*'
  [postgresql]='15.*'
)
# the Go group: root packages (their golang-* dependencies follow from apt) and expected versions
GO_ROOTS=(golang-go golang-k8s-apiserver-dev golang-k8s-client-go-dev)
# ---- CRD API server (begin): etcd, kubectl, kustomize (sid) and apiextensions-apiserver in the Go group
K8S_TOOLS=(etcd-server kubectl kustomize)          # Debian sid packages; binary names below
declare -A K8S_BIN=([etcd-server]=etcd [kubectl]=kubectl [kustomize]=kustomize)
EXPECT[etcd-server]='3.5.*'
EXPECT[kubectl]='1.36.*'
EXPECT[kustomize]='5.*'
GO_ROOTS+=(golang-k8s-apiextensions-apiserver-dev)
EXPECT[golang-k8s-apiextensions-apiserver-dev]='0.36.*'
EXPECT[crd-apiserver]='source-hash'
# ---- CRD API server (end)
EXPECT[golang-go]='2:1.27*'
EXPECT[golang-k8s-apiserver-dev]='0.36.*'
EXPECT[golang-k8s-client-go-dev]='0.36.*'
EXPECT[apiserver-harness]='source-hash'
FERRO_VERSION=1.0.0   # crates.io; builds with --locked (about 2-3 min on 2 cores)
# ---- release image (begin): cargo-cyclonedx (crates.io, the image's SBOM) and the Debian bookworm
# packages of the image's root filesystem (scripts/build-image.sh --fetch-debs: image-debs/)
CDX_VERSION=0.5.9
EXPECT[cargo-cyclonedx]=$CDX_VERSION
EXPECT[image-debs]='libc6=2.36-*'
# ---- release image (end)
SYS_TOOLS=(wrk hey hyperfine)   # bookworm, system apt
# ---- review console browser test (begin): Debian's chromium and its chromedriver (bookworm,
# system apt: chromium needs its shared libraries installed, not extracted), driven by fantoccini
SYS_TOOLS+=(chromium chromium-driver)
declare -A SYS_CMD=([chromium-driver]=chromedriver)   # package -> command, where they differ
EXPECT[chromium]='1*'
EXPECT[chromium-driver]='1*'
# ---- review console browser test (end)
PG_BIN=/usr/lib/postgresql/15/bin   # bookworm `postgresql` (15), system apt; tests use these three
PG_TOOLS=(initdb postgres pg_ctl)

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  echo "Tools go to \${VULNGATE_TOOLS_DIR:-\$HOME/.cache/vulngate-tools} (now: $CACHE)." 
}

MODE=install
WITH_GO=1
for arg in "$@"; do
  case "$arg" in
    --check) MODE=check ;;
    --no-go) WITH_GO=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

log() { printf '[install-test-tools] %s\n' "$*" >&2; }
die() { printf '[install-test-tools] error: %s\n' "$*" >&2; exit 1; }
# shellcheck disable=SC2053  # $2 is a glob on purpose
matches() { [[ -n "$1" && "$1" == $2 ]]; }

APT_DIR="$CACHE/apt"
DEB_DIR="$CACHE/debs"
ROOT_DIR="$CACHE/root"
CARGO_ROOT="$CACHE/cargo"
BIN_DIR="$CACHE/bin"
PKG_STAMPS="$CACHE/pkgs"      # <pkg>.version: Debian version extracted into root/
GO_DIR="$CACHE/go"
GO_DEBS="$GO_DIR/debs"
GO_ROOT="$GO_DIR/root"
GO_PKGS="$GO_DIR/packages.txt"      # "<package> <version>" of everything extracted into go/root
GO_BIN="$GO_ROOT/usr/lib/go-1.27/bin/go"
REPO_DIR="$(cd "$(dirname "$0")/.." && pwd)"
HARNESS_SRC="$REPO_DIR/tests/apiserver-harness"
HARNESS_BIN="$GO_DIR/bin/apiserver-harness"
HARNESS_STAMP="$GO_DIR/bin/apiserver-harness.stamp"   # "source <hash>" and "packages <hash>"

# ---- installed-version probes (all local, no network) -----------------------------------------
# Debian sid tools: the package version recorded at extraction; crane and cosign do not report
# their own version (Debian builds say "devel"/"could not determine build information"), the
# others are cross-checked against what the binary itself says.
sid_version() {
  local tool=$1 stamp="$PKG_STAMPS/$1.version" v bin="$ROOT_DIR/usr/bin/$1"
  [[ -x "$bin" && -f "$stamp" ]] || return 0
  v=$(<"$stamp")
  local self=""
  case "$tool" in
    docker-registry) self=$("$bin" --version 2>/dev/null | awk '{print $3}') ;;
    oras) self=$("$bin" version 2>/dev/null | awk '/^Version:/{print $2}') ;;
    notation) self=$("$bin" version 2>/dev/null | awk '/^Version:/{sub(/^v/, "", $2); print $2}') ;;
  esac
  if [[ -n "$self" ]] && ! matches "$self" "${EXPECT[$tool]}"; then
    echo "binary-says-$self"; return 0
  fi
  echo "$v"
}

ferro_version() {
  [[ -x "$CARGO_ROOT/bin/ferro-oci-server" ]] || return 0
  CARGO_NET_OFFLINE=true cargo install --list --root "$CARGO_ROOT" 2>/dev/null \
    | awk '$1=="ferro-oci-server"{sub(/^v/, "", $2); sub(/:$/, "", $2); print $2}'
}

# release image
cdx_version() {
  [[ -x "$CARGO_ROOT/bin/cargo-cyclonedx" ]] || return 0
  CARGO_NET_OFFLINE=true cargo install --list --root "$CARGO_ROOT" 2>/dev/null \
    | awk '$1=="cargo-cyclonedx"{sub(/^v/, "", $2); sub(/:$/, "", $2); print $2}'
}
image_debs_version() {
  VULNGATE_TOOLS_DIR="$CACHE" "$REPO_DIR/scripts/build-image.sh" --check-debs 2>/dev/null | tr ' ' ','
}

sys_version() {
  local tool=$1
  command -v "${SYS_CMD[$tool]:-$tool}" >/dev/null 2>&1 || return 0
  dpkg-query -W -f '${Version}' "$tool" 2>/dev/null || echo unknown-not-from-dpkg
}

# PostgreSQL server version (`postgres --version`: "postgres (PostgreSQL) 15.18 (Debian ...)").
pg_version() {
  local t
  for t in "${PG_TOOLS[@]}"; do [[ -x "$PG_BIN/$t" ]] || return 0; done
  "$PG_BIN/postgres" --version 2>/dev/null | awk '{print $3}'
}

# ---- Debian sid via a private apt configuration ----------------------------------------------
debian_mirror() {
  if [[ -n "${VULNGATE_DEBIAN_MIRROR:-}" ]]; then echo "$VULNGATE_DEBIAN_MIRROR"; return; fi
  local f=/etc/apt/sources.list.d/debian.sources uri=""
  if [[ -f $f ]]; then
    # first deb822 stanza whose Suites contain plain "bookworm" (not bookworm-security)
    uri=$(awk '
      BEGIN { RS=""; FS="\n" }
      {
        u=""; s=""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)   { u=$i; sub(/^URIs:[ \t]*/, "", u); split(u, a, /[ \t]+/); u=a[1] }
          if ($i ~ /^Suites:/) { s=" " $i " " }
        }
        if (u != "" && s ~ /[ \t]bookworm[ \t]/) { print u; exit }
      }' "$f")
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1=="deb" && $0 ~ / bookworm / { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [[ -n "$uri" ]] || die "cannot find the Debian mirror URI in /etc/apt/sources.list.d/debian.sources; set VULNGATE_DEBIAN_MIRROR"
  echo "$uri"
}

APT_OPTS=()
setup_private_apt() {
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  local mirror; mirror=$(debian_mirror)
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s sid main\n' "$mirror" \
    >"$APT_DIR/sources.list"
  # Hooks from /etc/apt/apt.conf.d (appstream, packagekit) would otherwise run after our update
  # and touch system caches; drop them for this private configuration only.
  cat >"$APT_DIR/apt.conf" <<'EOF'
#clear APT::Update::Post-Invoke-Success;
#clear APT::Update::Post-Invoke;
#clear DPkg::Post-Invoke;
EOF
  APT_OPTS=(
    -c "$APT_DIR/apt.conf"
    -o "Dir::Etc::sourcelist=$APT_DIR/sources.list"
    -o "Dir::Etc::sourceparts=/dev/null"
    -o "Dir::State::Lists=$APT_DIR/lists"
    -o "Dir::Cache=$APT_DIR/cache"
    -o "Dir::State::status=/dev/null"   # candidates from sid only (a system kubectl 1:528 would win)
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=/dev/null"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "APT::Sandbox::User=root"
    -q
  )
}

# a cached .deb of the package whose version matches, if any
cached_deb() {
  local pkg=$1 f v
  for f in "$DEB_DIR/${pkg}"_*.deb; do
    [[ -f $f ]] || continue
    v=$(dpkg-deb -f "$f" Version)
    if matches "$v" "${EXPECT[$pkg]}"; then echo "$f"; return 0; fi
  done
  return 0
}

install_sid_tools() {
  local missing=("$@") need_download=() pkg deb v
  mkdir -p "$DEB_DIR" "$ROOT_DIR" "$PKG_STAMPS"
  for pkg in "${missing[@]}"; do
    [[ -n "$(cached_deb "$pkg")" ]] || need_download+=("$pkg")
  done
  if ((${#need_download[@]})); then
    setup_private_apt
    log "apt-get update (private, Debian sid from $(debian_mirror))"
    apt-get "${APT_OPTS[@]}" update >&2
    for pkg in "${need_download[@]}"; do rm -f "$DEB_DIR/${pkg}"_*.deb; done
    log "apt-get download ${need_download[*]}"
    (cd "$DEB_DIR" && apt-get "${APT_OPTS[@]}" download "${need_download[@]}" >&2)
  fi
  for pkg in "${missing[@]}"; do
    deb=$(cached_deb "$pkg")
    if [[ -z "$deb" ]]; then
      v=$(for f in "$DEB_DIR/${pkg}"_*.deb; do [[ -f $f ]] && dpkg-deb -f "$f" Version; done)
      die "Debian sid now has $pkg ${v:-<nothing>}, expected ${EXPECT[$pkg]}; update EXPECT in $0 after checking the tests still pass"
    fi
    v=$(dpkg-deb -f "$deb" Version)
    log "extract $(basename "$deb") -> $ROOT_DIR"
    dpkg-deb -x "$deb" "$ROOT_DIR"
    echo "$v" >"$PKG_STAMPS/$pkg.version"
  done
}

install_ferro() {
  command -v cargo >/dev/null || die "cargo is needed to install ferro-oci-server"
  log "cargo install --locked ferro-oci-server $FERRO_VERSION (a few minutes)"
  cargo install --quiet --locked --root "$CARGO_ROOT" --version "$FERRO_VERSION" ferro-oci-server >&2
}

install_sys_tools() {
  local sudo=()
  [[ $EUID -eq 0 ]] || sudo=(sudo)
  log "apt-get install (system, bookworm): $*"
  # the system lists may be empty (fresh container); refresh them only if the packages are unknown
  if ! apt-cache show "$@" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get -q update >&2
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@" >&2
}

# ---- the Go group: toolchain + Kubernetes libraries (Debian sid) and the API server harness --------
# Installed versions of the root packages, from go/packages.txt (written after a complete
# extraction), cross-checked against what the extracted `go` says.
go_pkg_version() {
  local pkg=$1
  [[ -f "$GO_PKGS" && -x "$GO_BIN" ]] || return 0
  local v; v=$(awk -v p="$pkg" '$1==p{print $2}' "$GO_PKGS")
  if [[ $pkg == golang-go && -n "$v" ]]; then
    local self; self=$(GOTOOLCHAIN=local GOTELEMETRY=off "$GO_BIN" version 2>/dev/null | awk '{print $3}')
    [[ $self == go1.27* ]] || { echo "binary-says-${self:-nothing}"; return 0; }
  fi
  echo "$v"
}

# sha256 over `sha256sum ./<file>` lines of every .go file (sorted); the Rust test recomputes it.
harness_source_hash() {
  (cd "$HARNESS_SRC" && find . -type f -name '*.go' | LC_ALL=C sort | xargs -r sha256sum) | sha256sum | awk '{print $1}'
}

harness_version() {
  [[ -x "$HARNESS_BIN" && -f "$HARNESS_STAMP" && -f "$GO_PKGS" && -d "$HARNESS_SRC" ]] || return 0
  local want; want="source $(harness_source_hash)"$'\n'"packages $(sha256sum <"$GO_PKGS" | awk '{print $1}')"
  [[ "$(<"$HARNESS_STAMP")" == "$want" ]] && echo source-hash
  return 0
}

# The dependency closure of the root packages, limited to golang-* (Depends/Pre-Depends only):
# libc, debconf and the like are on the system already and not needed to build offline.
go_closure() {
  apt-cache "${APT_OPTS[@]}" -o Dir::State::status=/dev/null depends --recurse --no-recommends \
    --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "${GO_ROOTS[@]}" 2>/dev/null \
    | awk '/^golang-/' | LC_ALL=C sort -u
}

install_go() {
  setup_private_apt
  log "apt-get update (private, Debian sid from $(debian_mirror))"
  apt-get "${APT_OPTS[@]}" update >&2
  local pkgs=() pkg v f want=() need=() file
  mapfile -t pkgs < <(go_closure)
  ((${#pkgs[@]} > 50)) || die "could not resolve the Go packages' dependencies from Debian sid (${#pkgs[@]} found)"
  declare -A CAND=()
  while read -r pkg v; do CAND[$pkg]=$v; done < <(
    apt-cache "${APT_OPTS[@]}" -o Dir::State::status=/dev/null policy "${pkgs[@]}" 2>/dev/null \
      | awk '/^[^ ].*:$/{p=$1; sub(/:$/, "", p)} /^  Candidate:/{print p, $2}')
  for pkg in "${GO_ROOTS[@]}"; do
    matches "${CAND[$pkg]:-}" "${EXPECT[$pkg]}" \
      || die "Debian sid now has $pkg ${CAND[$pkg]:-<nothing>}, expected ${EXPECT[$pkg]}; update EXPECT in $0 after checking the tests still pass"
  done
  mkdir -p "$GO_DEBS"
  for pkg in "${pkgs[@]}"; do
    v=${CAND[$pkg]:-}
    [[ -n "$v" && "$v" != "(none)" ]] || die "Debian sid has no candidate for $pkg"
    file=$(compgen -G "$GO_DEBS/${pkg}_${v//:/%3a}_*.deb" | head -n1 || true)
    if [[ -z "$file" ]]; then
      need+=("$pkg=$v")
      for f in "$GO_DEBS/${pkg}"_*.deb; do [[ -f $f ]] && rm -f "$f"; done
    fi
    want+=("$pkg $v")
  done
  if ((${#need[@]})); then
    log "apt-get download ${#need[@]} Go packages (of ${#pkgs[@]})"
    (cd "$GO_DEBS" && apt-get "${APT_OPTS[@]}" download "${need[@]}" >&2)
  fi
  # a fresh tree each time the package set changes: no stale files from older versions
  log "extract ${#pkgs[@]} Go packages -> $GO_ROOT (about 30 s)"
  rm -rf "$GO_ROOT.new" "$GO_PKGS"
  mkdir -p "$GO_ROOT.new"
  for pkg in "${pkgs[@]}"; do
    v=${CAND[$pkg]}
    file=$(compgen -G "$GO_DEBS/${pkg}_${v//:/%3a}_*.deb" | head -n1 || true)
    [[ -n "$file" ]] || die "download of $pkg $v failed"
    dpkg-deb -x "$file" "$GO_ROOT.new"
  done
  rm -rf "$GO_ROOT"
  mv "$GO_ROOT.new" "$GO_ROOT"
  printf '%s\n' "${want[@]}" >"$GO_PKGS"
  # drop .debs no longer in the closure
  for f in "$GO_DEBS"/*.deb; do
    [[ -f $f ]] || continue
    pkg=$(basename "$f"); pkg=${pkg%%_*}
    [[ -n "${CAND[$pkg]:-}" ]] || rm -f "$f"
  done
}

build_harness() {
  [[ -d "$HARNESS_SRC" ]] || die "$HARNESS_SRC is missing"
  [[ -x "$GO_BIN" ]] || die "the Go toolchain is missing from $GO_ROOT"
  mkdir -p "$GO_DIR/bin" "$GO_DIR/gocache"
  log "go build tests/apiserver-harness -> $HARNESS_BIN (offline; cold about 2-6 min on 2 cores)"
  local start=$SECONDS
  (
    cd "$HARNESS_SRC"
    env GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local GOTELEMETRY=off GOWORK=off \
      GOCACHE="$GO_DIR/gocache" GOPATH="$HARNESS_SRC:$GO_ROOT/usr/share/gocode" \
      "$GO_BIN" build -ldflags='-s -w' -o "$HARNESS_BIN.new" .
  ) >&2 || die "go build of $HARNESS_SRC failed"
  mv "$HARNESS_BIN.new" "$HARNESS_BIN"
  printf 'source %s\npackages %s\n' "$(harness_source_hash)" "$(sha256sum <"$GO_PKGS" | awk '{print $1}')" \
    >"$HARNESS_STAMP"
  log "apiserver-harness built in $((SECONDS - start)) s"
}

# ---- CRD API server (begin): etcd/kubectl/kustomize probes and the crd-apiserver build ------------
# Same extraction as the sid tools above (install_sid_tools takes package names), but the binary
# is not always named like the package (etcd-server ships /usr/bin/etcd).
CRD_SRC="$REPO_DIR/tests/crd-apiserver"
CRD_BIN="$GO_DIR/bin/crd-apiserver"
CRD_STAMP="$GO_DIR/bin/crd-apiserver.stamp"   # "source <hash>" and "packages <hash>"

k8s_version() {
  local pkg=$1 stamp="$PKG_STAMPS/$1.version" bin="$ROOT_DIR/usr/bin/${K8S_BIN[$1]}" v self=""
  [[ -x "$bin" && -f "$stamp" ]] || return 0
  v=$(<"$stamp")
  case "$pkg" in
    etcd-server) self=$("$bin" --version 2>/dev/null | awk '/^etcd Version:/{print $3}') ;;
    kubectl) self=$("$bin" version --client 2>/dev/null | awk '/^Client Version:/{sub(/^v/, "", $3); print $3}') ;;
    # kustomize as built by Debian says "(devel)": the package version recorded at extraction is used
  esac
  if [[ -n "$self" ]] && ! matches "$self" "${EXPECT[$pkg]}"; then
    echo "binary-says-$self"; return 0
  fi
  echo "$v"
}

# same scheme as harness_source_hash; crates/server/tests/support/crd_apiserver.rs recomputes it
crd_source_hash() {
  (cd "$CRD_SRC" && find . -type f -name '*.go' | LC_ALL=C sort | xargs -r sha256sum) | sha256sum | awk '{print $1}'
}

crd_version() {
  [[ -x "$CRD_BIN" && -f "$CRD_STAMP" && -f "$GO_PKGS" && -d "$CRD_SRC" ]] || return 0
  local want; want="source $(crd_source_hash)"$'\n'"packages $(sha256sum <"$GO_PKGS" | awk '{print $1}')"
  [[ "$(<"$CRD_STAMP")" == "$want" ]] && echo source-hash
  return 0
}

build_crd_apiserver() {
  [[ -d "$CRD_SRC" ]] || die "$CRD_SRC is missing"
  [[ -x "$GO_BIN" ]] || die "the Go toolchain is missing from $GO_ROOT"
  mkdir -p "$GO_DIR/bin" "$GO_DIR/gocache"
  log "go build tests/crd-apiserver -> $CRD_BIN (offline; warm Go cache about 10-60 s, cold a few min)"
  local start=$SECONDS
  (
    cd "$CRD_SRC"
    env GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local GOTELEMETRY=off GOWORK=off \
      GOCACHE="$GO_DIR/gocache" GOPATH="$CRD_SRC:$GO_ROOT/usr/share/gocode" \
      "$GO_BIN" build -ldflags='-s -w' -o "$CRD_BIN.new" .
  ) >&2 || die "go build of $CRD_SRC failed"
  mv "$CRD_BIN.new" "$CRD_BIN"
  printf 'source %s\npackages %s\n' "$(crd_source_hash)" "$(sha256sum <"$GO_PKGS" | awk '{print $1}')" \
    >"$CRD_STAMP"
  log "crd-apiserver built in $((SECONDS - start)) s"
}
# ---- CRD API server (end) -------------------------------------------------------------------------

# ---- main ---------------------------------------------------------------------------------------
declare -A HAVE SRC
probe_all() {
  local t
  for t in "${SID_TOOLS[@]}"; do HAVE[$t]=$(sid_version "$t"); SRC[$t]="debian-sid:$t"; done
  HAVE[ferro-oci-server]=$(ferro_version); SRC[ferro-oci-server]="crates.io:ferro-oci-server"
  for t in "${SYS_TOOLS[@]}"; do HAVE[$t]=$(sys_version "$t"); SRC[$t]="debian-bookworm(system):$t"; done
  HAVE[postgresql]=$(pg_version); SRC[postgresql]="debian-bookworm(system):postgresql ($PG_BIN)"
  for t in "${GO_ROOTS[@]}"; do HAVE[$t]=$(go_pkg_version "$t"); SRC[$t]="debian-sid:$t(+deps)"; done
  HAVE[apiserver-harness]=$(harness_version); SRC[apiserver-harness]="go build tests/apiserver-harness"
  # CRD API server
  for t in "${K8S_TOOLS[@]}"; do HAVE[$t]=$(k8s_version "$t"); SRC[$t]="debian-sid:$t(${K8S_BIN[$t]})"; done
  HAVE[crd-apiserver]=$(crd_version); SRC[crd-apiserver]="go build tests/crd-apiserver"
  # release image
  HAVE[cargo-cyclonedx]=$(cdx_version); SRC[cargo-cyclonedx]="crates.io:cargo-cyclonedx"
  HAVE[image-debs]=$(image_debs_version); SRC[image-debs]="debian-bookworm:libc6,libgcc-s1,gcc-12-base,ca-certificates,tzdata"
}

missing_sid=() missing_ferro=() missing_sys=() wrong_sys=() missing_go=() missing_harness=()
classify() {
  missing_sid=() missing_ferro=() missing_sys=() wrong_sys=() missing_go=() missing_harness=()
  local t
  if ((WITH_GO)); then
    for t in "${GO_ROOTS[@]}"; do matches "${HAVE[$t]}" "${EXPECT[$t]}" || missing_go+=("$t"); done
    [[ "${HAVE[apiserver-harness]}" == source-hash ]] || missing_harness+=(apiserver-harness)
    [[ "${HAVE[crd-apiserver]}" == source-hash ]] || missing_harness+=(crd-apiserver)   # CRD API server
  fi
  for t in "${SID_TOOLS[@]}"; do matches "${HAVE[$t]}" "${EXPECT[$t]}" || missing_sid+=("$t"); done
  for t in "${K8S_TOOLS[@]}"; do matches "${HAVE[$t]}" "${EXPECT[$t]}" || missing_sid+=("$t"); done   # CRD API server
  matches "${HAVE[ferro-oci-server]}" "${EXPECT[ferro-oci-server]}" || missing_ferro+=(ferro-oci-server)
  matches "${HAVE[cargo-cyclonedx]}" "${EXPECT[cargo-cyclonedx]}" || missing_ferro+=(cargo-cyclonedx)   # release image
  matches "${HAVE[image-debs]}" "${EXPECT[image-debs]}" || missing_ferro+=(image-debs)   # release image
  for t in "${SYS_TOOLS[@]}"; do
    if [[ -z "${HAVE[$t]}" ]]; then missing_sys+=("$t")
    elif ! matches "${HAVE[$t]}" "${EXPECT[$t]}"; then wrong_sys+=("$t")
    fi
  done
  # no "wrong version" case: another major version lives in another directory than $PG_BIN
  matches "${HAVE[postgresql]}" "${EXPECT[postgresql]}" || missing_sys+=(postgresql)
}

link_bins() {
  mkdir -p "$BIN_DIR"
  local t
  for t in "${SID_TOOLS[@]}"; do
    [[ -x "$ROOT_DIR/usr/bin/$t" ]] && ln -sfn "../root/usr/bin/$t" "$BIN_DIR/$t"
  done
  [[ -x "$CARGO_ROOT/bin/ferro-oci-server" ]] && ln -sfn ../cargo/bin/ferro-oci-server "$BIN_DIR/ferro-oci-server"
  [[ -x "$CARGO_ROOT/bin/cargo-cyclonedx" ]] && ln -sfn ../cargo/bin/cargo-cyclonedx "$BIN_DIR/cargo-cyclonedx"
  [[ -x "$HARNESS_BIN" ]] && ln -sfn ../go/bin/apiserver-harness "$BIN_DIR/apiserver-harness"
  # CRD API server
  for t in "${K8S_TOOLS[@]}"; do
    [[ -x "$ROOT_DIR/usr/bin/${K8S_BIN[$t]}" ]] && ln -sfn "../root/usr/bin/${K8S_BIN[$t]}" "$BIN_DIR/${K8S_BIN[$t]}"
  done
  [[ -x "$CRD_BIN" ]] && ln -sfn ../go/bin/crd-apiserver "$BIN_DIR/crd-apiserver"
  for t in "${PG_TOOLS[@]}"; do
    [[ -x "$PG_BIN/$t" ]] && ln -sfn "$PG_BIN/$t" "$BIN_DIR/$t"
  done
  # review console browser test
  for t in chromium chromedriver; do
    [[ -x "/usr/bin/$t" ]] && ln -sfn "/usr/bin/$t" "$BIN_DIR/$t"
  done
  return 0
}

write_stamps() {
  local t tmp="$CACHE/versions.txt.tmp"
  {
    echo "# vulngate test tools, written by scripts/install-test-tools.sh"
    printf '# %-24s %-14s %-18s %s\n' tool expected installed source
    local go_tools=()
    ((WITH_GO)) && go_tools=("${GO_ROOTS[@]}" apiserver-harness crd-apiserver)
    for t in "${SID_TOOLS[@]}" "${K8S_TOOLS[@]}" ferro-oci-server cargo-cyclonedx image-debs "${SYS_TOOLS[@]}" postgresql "${go_tools[@]}"; do
      printf '%-26s %-14s %-18s %s\n' "$t" "${EXPECT[$t]}" "${HAVE[$t]:--}" "${SRC[$t]}"
    done
  } >"$tmp"
  mv "$tmp" "$CACHE/versions.txt"
  # shellcheck disable=SC2016  # $PATH is expanded when env.sh is sourced
  printf 'export PATH=%s/bin:$PATH\n' "$CACHE" >"$CACHE/env.sh"
}

probe_all
classify

if [[ $MODE == check ]]; then
  status=0
  for t in "${missing_sid[@]}" "${missing_ferro[@]}" "${missing_sys[@]}" "${missing_go[@]}"; do
    echo "missing: $t (expected ${EXPECT[$t]}, found ${HAVE[$t]:-nothing})"; status=1
  done
  for t in "${missing_harness[@]}"; do
    echo "missing: $t (not built, or tests/$t or the Go packages changed since)"; status=1
  done
  for t in "${wrong_sys[@]}"; do
    echo "warning: $t ${HAVE[$t]} is installed, expected ${EXPECT[$t]} (system package, left alone)"
  done
  check_links=("${SID_TOOLS[@]}" ferro-oci-server)
  ((WITH_GO)) && check_links+=(apiserver-harness)
  for t in "${check_links[@]}"; do
    if [[ ! -e "$BIN_DIR/$t" ]] && matches "${HAVE[$t]}" "${EXPECT[$t]}"; then
      echo "missing: $BIN_DIR/$t link"; status=1
    fi
  done
  # CRD API server
  for t in "${K8S_TOOLS[@]}"; do
    if [[ ! -e "$BIN_DIR/${K8S_BIN[$t]}" ]] && matches "${HAVE[$t]}" "${EXPECT[$t]}"; then
      echo "missing: $BIN_DIR/${K8S_BIN[$t]} link"; status=1
    fi
  done
  if ((WITH_GO)) && [[ ! -e "$BIN_DIR/crd-apiserver" && "${HAVE[crd-apiserver]}" == source-hash ]]; then
    echo "missing: $BIN_DIR/crd-apiserver link"; status=1
    fi
  if matches "${HAVE[postgresql]}" "${EXPECT[postgresql]}"; then
    for t in "${PG_TOOLS[@]}"; do
      [[ -e "$BIN_DIR/$t" ]] || { echo "missing: $BIN_DIR/$t link"; status=1; }
    done
  fi
  if ((status)); then
    self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
    if [[ -n "${VULNGATE_TOOLS_DIR:-}" ]]; then
      echo "install with: VULNGATE_TOOLS_DIR=$(printf %q "$CACHE") $self"
    else
      echo "install with: $self"
    fi
    exit 1
  fi
  echo "all test tools present in $CACHE"
  echo "export PATH=$CACHE/bin:\$PATH"
  exit 0
fi

mkdir -p "$CACHE"
((${#missing_sid[@]})) && install_sid_tools "${missing_sid[@]}"
for t in "${missing_ferro[@]}"; do
  case $t in
    ferro-oci-server) install_ferro ;;
    # release image
    cargo-cyclonedx)
      log "cargo install --locked cargo-cyclonedx $CDX_VERSION (a few minutes)"
      cargo install --quiet --locked --root "$CARGO_ROOT" --version "$CDX_VERSION" cargo-cyclonedx >&2 ;;
    image-debs) VULNGATE_TOOLS_DIR="$CACHE" "$REPO_DIR/scripts/build-image.sh" --fetch-debs >/dev/null ;;
  esac
done
((${#missing_sys[@]})) && install_sys_tools "${missing_sys[@]}"
((${#missing_go[@]})) && install_go
if ((WITH_GO)); then
  HAVE[apiserver-harness]=$(harness_version)
  [[ "${HAVE[apiserver-harness]}" == source-hash ]] || build_harness
  # CRD API server
  HAVE[crd-apiserver]=$(crd_version)
  [[ "${HAVE[crd-apiserver]}" == source-hash ]] || build_crd_apiserver
fi
for t in "${wrong_sys[@]}"; do
  log "warning: $t ${HAVE[$t]} is installed, expected ${EXPECT[$t]} (system package, left alone)"
done
link_bins
probe_all
classify
if ((${#missing_sid[@]} + ${#missing_ferro[@]} + ${#missing_sys[@]} + ${#missing_go[@]} + ${#missing_harness[@]})); then
  die "still missing after install: ${missing_sid[*]} ${missing_ferro[*]} ${missing_sys[*]} ${missing_go[*]} ${missing_harness[*]}"
fi
write_stamps
log "all test tools ready in $CACHE (versions in $CACHE/versions.txt)"
echo "export PATH=$CACHE/bin:\$PATH"
