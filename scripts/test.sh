#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a warm one: installs what the tests need
# (into a cache outside the repo, reused when present), then format, lint and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust (rustup) first" >&2
  exit 2
fi

echo "==> test tools (registries, oras, crane, cosign, notation, PostgreSQL 15; cached outside the repo)"
scripts/install-test-tools.sh
tools_dir="${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}"
# shellcheck source=/dev/null
source "$tools_dir/env.sh"

# One full build per run: incremental artifacts would only take disk (several GB) for nothing.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy (also type-checks the benches)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
# Smokes of the proof harnesses (issue 17): every cargo-fuzz target for a few seconds (the
# recorded runs are `scripts/fuzz.sh 600`), and a short soak with registry faults on the debug
# build the tests just made (the recorded run is `scripts/soak.sh`, release, 600 s at 1000/s; a
# debug vulngate answers only tens of reviews per second on 2 shared cores, hence 20/s here).
echo "==> fuzz smoke (scripts/fuzz.sh ${FUZZ_SMOKE_SECONDS:-4}: every target, nightly toolchain)"
scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-4}"
echo "==> soak smoke (scripts/soak.sh 20 20: mixed allow/deny, registry faults, 403s = deny alerts)"
SOAK_PROFILE=debug SOAK_CLEAN=20 SOAK_VULNERABLE=10 SOAK_STORM_SECONDS=2 SOAK_STORM_ROUNDS=1 \
  SOAK_STORM_CONNECTIONS=4 SOAK_OUT=target/soak-smoke scripts/soak.sh 20 20
