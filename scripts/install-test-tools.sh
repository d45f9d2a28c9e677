#!/usr/bin/env bash
# Install every external tool the vulngate tests need, idempotently, into a cache directory
# outside the repository (see docs/testing.md, "Test tools").
#
#   scripts/install-test-tools.sh           install what is missing, then print the PATH export
#   scripts/install-test-tools.sh --check   only verify; exit 1 listing what is missing
#
# Cache layout (${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}):
#   apt/          private apt configuration, lists and cache for Debian sid (the system apt is untouched)
#   debs/         downloaded .deb files (reused when their version is still the expected one)
#   root/         the .debs extracted with dpkg-deb -x (root/usr/bin/...)
#   cargo/        cargo install --root for crates.io tools (ferro-oci-server)
#   bin/          symlinks to every tool; put this first on PATH
#   versions.txt  stamp: tool, expected version, installed version, source
#   env.sh        `export PATH=<cache>/bin:$PATH`, for tests/CI to source
#
# A tool already present with an expected version is reused without any network access.
# wrk, hey and hyperfine are Debian bookworm packages: installed system-wide with the normal apt,
# only when the command is missing.
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
)
FERRO_VERSION=1.0.0   # crates.io; builds with --locked (about 2-3 min on 2 cores)
SYS_TOOLS=(wrk hey hyperfine)   # bookworm, system apt

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  echo "Tools go to \${VULNGATE_TOOLS_DIR:-\$HOME/.cache/vulngate-tools} (now: $CACHE)." 
}

MODE=install
for arg in "$@"; do
  case "$arg" in
    --check) MODE=check ;;
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

sys_version() {
  local tool=$1
  command -v "$tool" >/dev/null 2>&1 || return 0
  dpkg-query -W -f '${Version}' "$tool" 2>/dev/null || echo unknown-not-from-dpkg
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

# ---- main ---------------------------------------------------------------------------------------
declare -A HAVE SRC
probe_all() {
  local t
  for t in "${SID_TOOLS[@]}"; do HAVE[$t]=$(sid_version "$t"); SRC[$t]="debian-sid:$t"; done
  HAVE[ferro-oci-server]=$(ferro_version); SRC[ferro-oci-server]="crates.io:ferro-oci-server"
  for t in "${SYS_TOOLS[@]}"; do HAVE[$t]=$(sys_version "$t"); SRC[$t]="debian-bookworm(system):$t"; done
}

missing_sid=() missing_ferro=() missing_sys=() wrong_sys=()
classify() {
  missing_sid=() missing_ferro=() missing_sys=() wrong_sys=()
  local t
  for t in "${SID_TOOLS[@]}"; do matches "${HAVE[$t]}" "${EXPECT[$t]}" || missing_sid+=("$t"); done
  matches "${HAVE[ferro-oci-server]}" "${EXPECT[ferro-oci-server]}" || missing_ferro+=(ferro-oci-server)
  for t in "${SYS_TOOLS[@]}"; do
    if [[ -z "${HAVE[$t]}" ]]; then missing_sys+=("$t")
    elif ! matches "${HAVE[$t]}" "${EXPECT[$t]}"; then wrong_sys+=("$t")
    fi
  done
}

link_bins() {
  mkdir -p "$BIN_DIR"
  local t
  for t in "${SID_TOOLS[@]}"; do
    [[ -x "$ROOT_DIR/usr/bin/$t" ]] && ln -sfn "../root/usr/bin/$t" "$BIN_DIR/$t"
  done
  [[ -x "$CARGO_ROOT/bin/ferro-oci-server" ]] && ln -sfn ../cargo/bin/ferro-oci-server "$BIN_DIR/ferro-oci-server"
  return 0
}

write_stamps() {
  local t tmp="$CACHE/versions.txt.tmp"
  {
    echo "# vulngate test tools, written by scripts/install-test-tools.sh"
    printf '# %-18s %-14s %-18s %s\n' tool expected installed source
    for t in "${SID_TOOLS[@]}" ferro-oci-server "${SYS_TOOLS[@]}"; do
      printf '%-20s %-14s %-18s %s\n' "$t" "${EXPECT[$t]}" "${HAVE[$t]:--}" "${SRC[$t]}"
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
  for t in "${missing_sid[@]}" "${missing_ferro[@]}" "${missing_sys[@]}"; do
    echo "missing: $t (expected ${EXPECT[$t]}, found ${HAVE[$t]:-nothing})"; status=1
  done
  for t in "${wrong_sys[@]}"; do
    echo "warning: $t ${HAVE[$t]} is installed, expected ${EXPECT[$t]} (system package, left alone)"
  done
  for t in "${SID_TOOLS[@]}" ferro-oci-server; do
    if [[ ! -e "$BIN_DIR/$t" ]] && matches "${HAVE[$t]}" "${EXPECT[$t]}"; then
      echo "missing: $BIN_DIR/$t link"; status=1
    fi
  done
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
((${#missing_ferro[@]})) && install_ferro
((${#missing_sys[@]})) && install_sys_tools "${missing_sys[@]}"
for t in "${wrong_sys[@]}"; do
  log "warning: $t ${HAVE[$t]} is installed, expected ${EXPECT[$t]} (system package, left alone)"
done
link_bins
probe_all
classify
if ((${#missing_sid[@]} + ${#missing_ferro[@]} + ${#missing_sys[@]})); then
  die "still missing after install: ${missing_sid[*]} ${missing_ferro[*]} ${missing_sys[*]}"
fi
write_stamps
log "all test tools ready in $CACHE (versions in $CACHE/versions.txt)"
echo "export PATH=$CACHE/bin:\$PATH"
