#!/usr/bin/env bash
# Release build of vulngate with profile-guided optimisation (PGO): the build for production.
#
#   scripts/build-pgo.sh        -> target/pgo/dist/vulngate (and examples/fixed_response); target/ is
#                                  CARGO_TARGET_DIR when set, here and below
#
# Builds the `dist` cargo profile (fat LTO, one codegen unit, stripped); scripts/build-image.sh
# uses the profile it leaves in target/pgo-profiles when it builds the image.
#
# 1. builds vulngate and the benchmark's baseline server (examples/fixed_response) instrumented
#    (`-Cprofile-generate`, in target/pgo-generate);
# 2. trains them: a short run of scripts/bench-webhook.sh against a loopback registry, i.e. the
#    webhook's request path (TLS, HTTP/1.1, AdmissionReview parse, cache hits, rule evaluation,
#    decision log line, answer), cold lookups (registry resolve, referrers, report pull, digest
#    checks, parse) and the baselines' requests. Not trained: alert writes (deny/audit), whose
#    cost is SQLite's I/O, and the cluster watchers;
# 3. merges the profiles with llvm-profdata (target/pgo-profiles/vulngate-<hash>.profdata: the
#    name changes with the content, so cargo rebuilds when the profile does);
# 4. builds vulngate and fixed_response again with `-Cprofile-use` (target/pgo). Both binaries
#    get the same profile and flags, so the benchmark's baseline stays the same stack.
#
# The code is the same as `cargo build --release`; only the compiler's inlining, block layout and
# hot/cold splitting follow the profile. On our 2-core machines, the webhook's CPU per warm request
# falls by about a fifth against the release build (docs/benchmarks.md). Cost: two release builds
# (fat LTO: 11 and 7 minutes on 2 cores, 23 minutes in all with the training run of about 2 minutes).
#
# Needs: the benchmark's tools (scripts/install-test-tools.sh: docker-registry, wrk, hey) and an
# llvm-profdata that reads rustc's raw profiles: the rustup component (`rustup component add
# llvm-tools`), else Debian's llvm-19 or later (installed with apt-get when run as root).
# Knobs: PGO_TRAIN_IMAGES (500 images for the cold lookups), RUSTFLAGS (kept, the PGO flag added).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/work.sh
source "$ROOT/scripts/lib/work.sh"
# Under CARGO_TARGET_DIR when it is set (where build-image.sh looks for the profile), else target/.
TARGET_DIR=$(cargo_target_dir)
GEN="$TARGET_DIR/pgo-generate"
USE="$TARGET_DIR/pgo"
PROF="$TARGET_DIR/pgo-profiles"
PACKAGES=(-p vulngate --bin vulngate -p vulngate-server --example fixed_response)

log() { printf '[build-pgo] %s\n' "$*" >&2; }
die() { printf '[build-pgo] error: %s\n' "$*" >&2; exit 1; }

# ---- llvm-profdata -----------------------------------------------------------------------------
RUSTC_VV=$(rustc -vV)
HOST=$(sed -n 's/^host: //p' <<<"$RUSTC_VV")
RUSTC_LLVM=$(sed -n 's/^LLVM version: \([0-9]*\).*/\1/p' <<<"$RUSTC_VV")
find_profdata() {
  local c v
  c="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
  [[ -x $c ]] && { echo "$c"; return; }
  # The newest installed, down to 19: 19 reads the raw profiles of rustc's LLVM 22 (raw profile
  # version 10); a too-old one fails at the merge below with a clear message.
  for v in $(seq 30 -1 19); do
    for c in "llvm-profdata-$v" "/usr/lib/llvm-$v/bin/llvm-profdata"; do
      command -v "$c" >/dev/null && { command -v "$c"; return; }
    done
  done
}
PROFDATA=$(find_profdata || true)
if [[ -z $PROFDATA ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing llvm-19 (for llvm-profdata)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends llvm-19 >&2 \
      || die "apt-get install llvm-19 failed"
    PROFDATA=$(find_profdata || true)
  fi
  [[ -n $PROFDATA ]] || die "no llvm-profdata (19 or later) found: install one with
  apt-get install llvm-19        (Debian 12 or later), or
  rustup component add llvm-tools"
fi
log "llvm-profdata: $PROFDATA (rustc's LLVM: $RUSTC_LLVM)"

# ---- 1. instrumented build ---------------------------------------------------------------------
log "instrumented build ($GEN)"
rm -rf "$PROF/build" # profiles of build scripts run during the build: not used
(cd "$ROOT" && CARGO_TARGET_DIR="$GEN" RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$PROF/build" \
  cargo build --profile dist --locked "${PACKAGES[@]}") >&2

# ---- 2. training -------------------------------------------------------------------------------
rm -rf "$PROF/train" "$PROF/train-run"
mkdir -p "$PROF/train"
log "training run (scripts/bench-webhook.sh on the instrumented binaries; log: $PROF/train.log)"
# %m: the binary's signature, %p: the process. Every server of the run writes its profile when it
# exits (the bench script ends them with SIGTERM).
if ! env LLVM_PROFILE_FILE="$PROF/train/%m-%p.profraw" BENCH_BIN_DIR="$GEN/dist" \
  BENCH_OUT="$PROF/train-run" BENCH_IMAGES="${PGO_TRAIN_IMAGES:-500}" BENCH_DURATION=5s \
  BENCH_ROUNDS=1 BENCH_COLD_CONNECTIONS=2 BENCH_COLD_DURATION=5s BENCH_REFERENCES="skip kube" \
  "$ROOT/scripts/bench-webhook.sh" >"$PROF/train.log" 2>&1; then
  tail -20 "$PROF/train.log" >&2
  die "the training run failed (log: $PROF/train.log)"
fi
shopt -s nullglob
RAW=("$PROF"/train/*.profraw)
shopt -u nullglob
# One profile per server process: fixed_response, its two references, vulngate.
(( ${#RAW[@]} >= 4 )) || die "the training run left ${#RAW[@]} profiles, expected 4 (a server did not exit cleanly?)"

# ---- 3. merge ----------------------------------------------------------------------------------
"$PROFDATA" merge -o "$PROF/merged.profdata" "${RAW[@]}" \
  || die "llvm-profdata cannot merge rustc's profiles (LLVM $RUSTC_LLVM): use a later llvm-profdata (rustup component add llvm-tools)"
HASH=$(sha256sum "$PROF/merged.profdata" | cut -c1-16)
PROFILE="$PROF/vulngate-$HASH.profdata"
find "$PROF" -maxdepth 1 -name 'vulngate-*.profdata' ! -name "vulngate-$HASH.profdata" -delete
mv "$PROF/merged.profdata" "$PROFILE"
log "profile: $PROFILE (from ${#RAW[@]} processes)"

# ---- 4. optimised build ------------------------------------------------------------------------
log "optimised build ($USE)"
(cd "$ROOT" && CARGO_TARGET_DIR="$USE" RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PROFILE" \
  cargo build --profile dist --locked "${PACKAGES[@]}") >&2
log "built: $USE/dist/vulngate"
echo "$USE/dist/vulngate"
