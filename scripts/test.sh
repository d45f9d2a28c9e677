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
# The fuzz smoke is part of `cargo test`: crates/fuzz-targets/tests/smoke.rs runs every fuzz
# target's body on its seeds and fixed-seed mutations (stable toolchain, about 5 s). The recorded
# runs are scripts: scripts/fuzz.sh SECONDS (nightly, cargo-fuzz), scripts/soak.sh (docs/reliability.md).
echo "==> soak smoke (10 s at 100 reviews/s with registry faults, a 2 s deny storm; debug build)"
# The soak's own checks fail it: every answer as its image class expects, no transport error,
# 403 answers = deny records in the store. Its throughput figures are not checked (debug build).
# It runs the binaries `cargo test` just built (the vulngate binary and the examples are built by
# it into target/debug): a separate `cargo build` of the four packages resolves features
# differently and rebuilt about 130 crates (1.5 min).
ROOT=$PWD
# shellcheck source=lib/work.sh
source scripts/lib/work.sh
SOAK_BIN_DIR="$(cargo_target_dir)/debug" SOAK_STORM_SECONDS=2 SOAK_STORM_ROUNDS=1 \
  SOAK_STORM_CONNECTIONS=8 SOAK_OUT="$PWD/target/soak-smoke" bash scripts/soak.sh 10 100 | tail -15
