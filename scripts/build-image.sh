#!/usr/bin/env bash
# Build vulngate's container image without a Docker daemon: an OCI image layout, reproducible.
#
#   scripts/build-image.sh [--output DIR] [--push REF] [--sign KEY] [--binary PATH] [--arch amd64|arm64]
#                          [--plain-http]
#   scripts/build-image.sh --print-ref      the release location: ghcr.io/vulngate/vulngate:<version>
#   scripts/build-image.sh --fetch-debs     only download the Debian packages (install-test-tools.sh)
#   scripts/build-image.sh --check-debs     print the cached packages' versions (nothing if incomplete)
#
# The release image is pushed to ghcr.io/vulngate/vulngate:<version> (what `vulngate install`
# deploys by default; `--print-ref` prints it). To run your own build, push it to your registry
# and give that reference to `vulngate install --image` (docs/install.md):
#
#   scripts/build-image.sh --push registry.example.com/vulngate:0.1.0 --sign cosign.key
#
# 1. the binary: `cargo build --profile dist` (fat LTO, one codegen unit, stripped), with
#    `-Cprofile-use` when scripts/build-pgo.sh has left a profile (target/pgo-profiles), or the
#    binary given with --binary (the tests give the debug build);
# 2. the root filesystem: Debian bookworm's libc6, libgcc-s1, ca-certificates and tzdata (and
#    bookworm-updates/-security fixes), fetched with `apt-get download` through a private apt
#    configuration (the system's apt state is untouched) into the tools cache
#    (${VULNGATE_TOOLS_DIR:-~/.cache/vulngate-tools}/image-debs), read with dpkg-deb. No shell, no
#    package manager, no other binary; docs and man pages dropped, copyright files kept; the TLS
#    roots bundle /etc/ssl/certs/ca-certificates.crt generated from the package's certificates;
#    /etc/passwd and /etc/group with `nonroot` (65532); /var/lib/dpkg/status.d/<package> so that
#    scanners see the Debian packages; /etc/os-release;
# 3. scripts/oci-image.py writes the layout (DIR, default target/image): two gzip layers (Debian
#    base, binary), config (user 65532:65532, entrypoint /usr/bin/vulngate, labels
#    org.opencontainers.image.*), manifest, index.json. Every mtime is SOURCE_DATE_EPOCH (default:
#    the commit time of HEAD), tar entries sorted with numeric owners, gzip without a timestamp:
#    the same inputs give the same manifest digest, printed on stdout;
# 4. --push REF: crane push; then the CycloneDX SBOM (cargo-cyclonedx over the cargo metadata,
#    plus the Debian packages) attached to the pushed digest as a referrer with oras (artifact
#    type application/vnd.cyclonedx+json); --sign KEY: cosign sign --key KEY of the digest
#    (COSIGN_PASSWORD for the key's password; no transparency log upload). --plain-http: the
#    registry speaks HTTP (a local test registry).
#
# Needs: python3, dpkg-deb, apt-get (only when the packages are not cached yet); with --push:
# crane, oras, cargo-cyclonedx; with --sign: cosign (scripts/install-test-tools.sh installs them).
# arm64 (--arch arm64): the rust-std of aarch64-unknown-linux-gnu (rustup target add, from the
# Rust project's server) and the cross compiler gcc-aarch64-linux-gnu with the C library
# libc6-dev-arm64-cross (Debian bookworm; installed with apt-get when run as root).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}"
# shellcheck source=lib/work.sh
source "$ROOT/scripts/lib/work.sh"
# Where build-pgo.sh leaves its profile too.
TARGET_DIR=$(cargo_target_dir)
RELEASE_REPO=ghcr.io/vulngate/vulngate
PACKAGES=(libc6 libgcc-s1 gcc-12-base ca-certificates tzdata)

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { printf '[build-image] error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

OUTPUT="" PUSH="" SIGN="" BINARY="" ARCH=amd64 PLAIN_HTTP=0 MODE=build
while (($#)); do
  case "$1" in
    --output) OUTPUT=${2:?--output DIR}; shift 2 ;;
    --push) PUSH=${2:?--push REF}; shift 2 ;;
    --sign) SIGN=${2:?--sign KEY}; shift 2 ;;
    --binary) BINARY=${2:?--binary PATH}; shift 2 ;;
    --arch) ARCH=${2:?--arch amd64|arm64}; shift 2 ;;
    --plain-http) PLAIN_HTTP=1; shift ;;
    --print-ref) MODE=print-ref; shift ;;
    --fetch-debs) MODE=fetch-debs; shift ;;
    --check-debs) MODE=check-debs; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case "$ARCH" in
  amd64) RUST_TARGET=x86_64-unknown-linux-gnu ;;
  arm64) RUST_TARGET=aarch64-unknown-linux-gnu ;;
  *) die "--arch: amd64 or arm64, not $ARCH" ;;
esac
[[ -z $SIGN || -n $PUSH ]] || die "--sign signs the pushed image: give --push REF too"
[[ -z $SIGN || -r $SIGN ]] || die "--sign: cannot read the key file $SIGN"
[[ -z $BINARY || -x $BINARY ]] || die "--binary: $BINARY is not an executable file"

VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")
SOURCE=$(sed -n '/^\[workspace.package\]/,/^\[/s/^repository = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")
LICENSE=$(sed -n '/^\[workspace.package\]/,/^\[/s/^license = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")
[[ -n $VERSION && -n $SOURCE && -n $LICENSE ]] || die "cannot read version/repository/license from $ROOT/Cargo.toml"
if [[ $MODE == print-ref ]]; then echo "$RELEASE_REPO:$VERSION"; exit 0; fi

# ---- Debian packages ---------------------------------------------------------------------------
DEB_DIR="$CACHE/image-debs/$ARCH"
LIST="$DEB_DIR/packages.txt" # "<package> <version> <file> <sha256>", written after a complete download

# "pkg=version ..." of a complete, intact cache; nothing otherwise
cached_debs() {
  [[ -f $LIST ]] || return 0
  local pkg v f sum out=()
  while read -r pkg v f sum; do
    [[ -f "$DEB_DIR/$f" ]] || return 0
    [[ $(sha256sum <"$DEB_DIR/$f" | cut -d' ' -f1) == "$sum" ]] || return 0
    out+=("$pkg=$v")
  done <"$LIST"
  ((${#out[@]} == ${#PACKAGES[@]})) && echo "${out[*]}"
  return 0
}

debian_mirror() {
  if [[ -n "${VULNGATE_DEBIAN_MIRROR:-}" ]]; then echo "$VULNGATE_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -n $uri ]] || die "cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources; set VULNGATE_DEBIAN_MIRROR"
  echo "${uri%/}"
}

fetch_debs() {
  command -v apt-get >/dev/null || die "apt-get is needed to download the Debian packages"
  local apt="$CACHE/image-apt/$ARCH" mirror
  mirror=$(debian_mirror)
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$DEB_DIR"
  # bookworm, its updates and its security fixes (the security archive beside the main one)
  {
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm main\n' "$mirror"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm-updates main\n' "$mirror"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s-security bookworm-security main\n' "$mirror"
  } >"$apt/sources.list"
  printf '#clear APT::Update::Post-Invoke-Success;\n#clear APT::Update::Post-Invoke;\n' >"$apt/apt.conf"
  local opts=(
    -c "$apt/apt.conf" -o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=/dev/null"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Dir::State::status=/dev/null"
    -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=/dev/null"
    -o "APT::Architecture=$ARCH" -o "APT::Architectures=$ARCH"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false" -o "APT::Sandbox::User=root" -q
  )
  log "apt-get update (private, Debian bookworm $ARCH from $mirror)"
  apt-get "${opts[@]}" update >&2
  local tmp="$DEB_DIR.new"
  rm -rf "$tmp"; mkdir -p "$tmp"
  log "apt-get download ${PACKAGES[*]}"
  (cd "$tmp" && apt-get "${opts[@]}" download "${PACKAGES[@]/%/:$ARCH}" >&2)
  local pkg f lines=()
  for pkg in "${PACKAGES[@]}"; do
    f=$(cd "$tmp" && compgen -G "${pkg}_*.deb" | head -n1 || true)
    [[ -n $f ]] || die "apt-get download left no $pkg package"
    lines+=("$pkg $(dpkg-deb -f "$tmp/$f" Version) $f $(sha256sum <"$tmp/$f" | cut -d' ' -f1)")
  done
  rm -rf "$DEB_DIR"; mv "$tmp" "$DEB_DIR"
  printf '%s\n' "${lines[@]}" >"$LIST"
}

case $MODE in
  check-debs) cached_debs; exit 0 ;;
  fetch-debs) [[ -n $(cached_debs) ]] || fetch_debs; cached_debs; exit 0 ;;
esac
[[ -n $(cached_debs) ]] || fetch_debs
DEBS=$(cached_debs)
[[ -n $DEBS ]] || die "the Debian packages in $DEB_DIR are incomplete after the download"
log "Debian bookworm packages: $DEBS"

# ---- the binary --------------------------------------------------------------------------------
if [[ -z $BINARY ]]; then
  build=(cargo build --locked --profile dist -p vulngate --bin vulngate --target "$RUST_TARGET")
  if [[ $ARCH == arm64 ]]; then
    # The cross compiler and linker, and the target's C library headers (ring's and SQLite's C
    # code; without recommends, gcc-aarch64-linux-gnu comes without them).
    if ! command -v aarch64-linux-gnu-gcc >/dev/null || [[ ! -f /usr/aarch64-linux-gnu/include/stdio.h ]]; then
      [[ $(id -u) == 0 ]] ||
        die "arm64 needs the cross compiler: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
      log "installing gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (the cross compiler and C library)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc-aarch64-linux-gnu \
        libc6-dev-arm64-cross >&2 || die "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross failed"
    fi
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  fi
  # The PGO profile of scripts/build-pgo.sh (x86-64 only), built in the same directory as its
  # last step, so a build-pgo.sh run is not redone.
  profile=$(compgen -G "$TARGET_DIR/pgo-profiles/vulngate-*.profdata" | head -n1 || true)
  dir="$TARGET_DIR"
  if [[ -n $profile && $ARCH == amd64 ]]; then
    log "PGO profile: $profile"
    dir="$TARGET_DIR/pgo"
    export RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$profile"
  fi
  log "cargo build --profile dist ($RUST_TARGET, $dir; a cold build takes about 12 minutes on 2 cores)"
  (cd "$ROOT" && CARGO_TARGET_DIR="$dir" "${build[@]}") >&2
  BINARY="$dir/$RUST_TARGET/dist/vulngate"
fi

# ---- the layout ----------------------------------------------------------------------------------
OUTPUT=${OUTPUT:-$TARGET_DIR/image}
REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}
debs=()
while read -r _ _ f _; do debs+=("$DEB_DIR/$f"); done <"$LIST"
DIGEST=$(python3 "$ROOT/scripts/oci-image.py" --output "$OUTPUT" --binary "$BINARY" --arch "$ARCH" \
  --version "$VERSION" --revision "$REVISION" --epoch "$EPOCH" --source "$SOURCE" \
  --license "$LICENSE" "${debs[@]}")
SIZE=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(sum(l["size"] for l in m["layers"]) + m["config"]["size"])' \
  "$OUTPUT/blobs/sha256/${DIGEST#sha256:}")
log "OCI layout: $OUTPUT, manifest $DIGEST, compressed $((SIZE / 1024)) KiB"

# ---- push, SBOM, signature -----------------------------------------------------------------------
if [[ -n $PUSH ]]; then
  for t in crane oras cargo-cyclonedx; do
    command -v "$t" >/dev/null || die "--push needs $t (scripts/install-test-tools.sh installs it)"
  done
  insecure=() oras_http=() cosign_http=()
  if ((PLAIN_HTTP)); then
    insecure=(--insecure) oras_http=(--plain-http) cosign_http=(--allow-http-registry --allow-insecure-registry)
  fi
  log "crane push $OUTPUT $PUSH"
  crane push "${insecure[@]}" "$OUTPUT" "$PUSH" >&2
  REPO=${PUSH%@*}
  [[ $REPO =~ ^(.*/[^:/]+):[^/]+$ ]] && REPO=${BASH_REMATCH[1]}
  PINNED="$REPO@$DIGEST"

  SBOM_DIR=$(mktemp -d)
  trap 'rm -rf "$SBOM_DIR"' EXIT
  log "SBOM: cargo cyclonedx (vulngate's crates) + the Debian packages"
  (cd "$ROOT" && cargo cyclonedx --format json --spec-version 1.5 --target "$RUST_TARGET" \
    --override-filename vulngate-sbom -q) >&2
  cdx=$(find "$ROOT/crates/cli" -maxdepth 1 -name 'vulngate-sbom*.json' | head -n1)
  [[ -n $cdx ]] || die "cargo cyclonedx wrote no SBOM for crates/cli"
  python3 "$ROOT/scripts/oci-image.py" --sbom "$cdx" --epoch "$EPOCH" --digest "$DIGEST" \
    --version "$VERSION" "${debs[@]}" >"$SBOM_DIR/vulngate.cdx.json"
  find "$ROOT/crates" -maxdepth 2 -name 'vulngate-sbom*.json' -delete
  log "oras attach (application/vnd.cyclonedx+json) -> $PINNED"
  (cd "$SBOM_DIR" && oras attach "${oras_http[@]}" --artifact-type application/vnd.cyclonedx+json \
    "$PINNED" vulngate.cdx.json:application/vnd.cyclonedx+json) >&2

  if [[ -n $SIGN ]]; then
    command -v cosign >/dev/null || die "--sign needs cosign (scripts/install-test-tools.sh installs it)"
    log "cosign sign --key $SIGN $PINNED"
    COSIGN_PASSWORD=${COSIGN_PASSWORD-} cosign sign --yes --key "$SIGN" --tlog-upload=false \
      --use-signing-config=false "${cosign_http[@]}" "$PINNED" >&2
  fi
  log "pushed $PINNED"
fi
echo "$DIGEST"
