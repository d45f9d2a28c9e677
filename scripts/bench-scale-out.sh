#!/usr/bin/env bash
# Scale-out (issue 23 item 6): the deny-storm throughput of one `vulngate serve` against two
# replicas sharing one PostgreSQL alert store, side by side in one run, rounds alternated.
#
# Set-up, all on 127.0.0.1: docker-registry seeded with SCALE_IMAGES images whose report has a
# CRITICAL finding (denied); a PostgreSQL server (the test tools' `postgres`, fsync on,
# synchronous_commit on as vulngate sets it); replicas A and B of `vulngate serve` with the same
# rules and the same store, each with its own data directory (journal). Every image is looked
# up once by each replica first (warm cache). Then, per round:
#   one: `soak_load` with SCALE_CONNECTIONS connections against A for SCALE_SECONDS;
#   two: two `soak_load` at once, half the connections each, against A and B (what kube-proxy
#        does with a Service of two endpoints: connections spread over the replicas).
# Every answer must be a 403 (a deny with its durable alert). The result is the ratio of the
# summed throughput of "two" to "one", and the server CPU per request of each (from /proc).
#
# The replicas, PostgreSQL and the load clients share the machine's cores: on 2 cores the second
# replica has no core of its own, so the ratio shows what the machine, not vulngate, allows
# (docs/scaling.md explains the model and the figures).
#
# Usage: scripts/bench-scale-out.sh [ROUNDS (2)]
# Env: SCALE_SECONDS (10), SCALE_CONNECTIONS (32), SCALE_IMAGES (100), SCALE_BIN_DIR (prebuilt
# vulngate and examples; default: build release), SCALE_OUT (target/scale-out).
# Tools: docker-registry, postgres, initdb, curl, python3 (scripts/install-test-tools.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-2}
SECONDS_PER=${SCALE_SECONDS:-10}
CONN=${SCALE_CONNECTIONS:-32}
N_IMAGES=${SCALE_IMAGES:-100}
OUT=${SCALE_OUT:-$ROOT/target/scale-out}
# shellcheck disable=SC1091
[[ -f "${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}/env.sh" ]] && source "${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}/env.sh"
for t in docker-registry postgres initdb curl python3; do
  command -v "$t" >/dev/null || { echo "missing tool: $t (run scripts/install-test-tools.sh)" >&2; exit 1; }
done
log() { printf '[scale-out] %s\n' "$*" >&2; }

# shellcheck source=lib/work.sh
source "$ROOT/scripts/lib/work.sh"

if [[ -n ${SCALE_BIN_DIR:-} ]]; then
  BIN=$SCALE_BIN_DIR
else
  log "building vulngate and the load examples (release)"
  (cd "$ROOT" && cargo build --release --locked -p vulngate --bin vulngate \
    -p vulngate-server --example soak_load -p vulngate-registry --example seed_images) >&2
  BIN="$(cargo_target_dir)/release"
fi
for b in vulngate examples/soak_load examples/seed_images; do
  [[ -x $BIN/$b ]] || { echo "missing binary: $BIN/$b" >&2; exit 1; }
done

mkdir -p "$OUT"
work_dir vulngate-scale

# ---- registry and images --------------------------------------------------------------------
start_registry
log "seeding $N_IMAGES vulnerable images into $REG"
"$BIN/examples/seed_images" --registry "$REG" --count "$N_IMAGES" --prefix vuln --severity CRITICAL >"$WORK/vulnerable.txt"

# ---- PostgreSQL -----------------------------------------------------------------------------
# PostgreSQL refuses to run as root: as root, it runs as `nobody` (setpriv, util-linux), from
# the binaries' real paths (`nobody` cannot traverse /root/.cache), in directories it owns.
PG_PORT=$(free_port)
AS=()
mkdir -p "$WORK/pg" "$WORK/pgsock"
if [[ $(id -u) == 0 ]]; then
  AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  chmod 755 "$WORK"
  chown 65534:65534 "$WORK/pg" "$WORK/pgsock"
fi
"${AS[@]}" "$(readlink -f "$(command -v initdb)")" -D "$WORK/pg" -U vulngate --auth=trust >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; exit 1; }
"${AS[@]}" "$(readlink -f "$(command -v postgres)")" -D "$WORK/pg" -p "$PG_PORT" -k "$WORK/pgsock" \
  -c listen_addresses=127.0.0.1 -c max_connections=100 -c shared_buffers=128MB >"$WORK/postgres.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$PG_PORT" 2>/dev/null && break
  sleep 0.1
done
STORE="postgres://vulngate@127.0.0.1:$PG_PORT/postgres?sslmode=disable"

# ---- two replicas ---------------------------------------------------------------------------
cat >"$WORK/rules.yaml" <<'YAML'
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: scale-deny-critical }
spec:
  action: deny
  conditions: [{ severity: critical, maxCount: 0 }]
YAML
declare -A URL PID
for r in a b; do
  port=$(free_port); mport=$(free_port)
  cat >"$WORK/vulngate-$r.yaml" <<YAML
listen: 127.0.0.1:$port
metrics: { listen: 127.0.0.1:$mport }
dataDir: $WORK/vg-$r
rules: $WORK/rules.yaml
logLevel: warn
store: "$STORE"
cache: { maxEntries: 10000, ttl: 1h }
registry: { insecureRegistries: ["$REG"] }
YAML
  "$BIN/vulngate" serve --config "$WORK/vulngate-$r.yaml" 2>"$WORK/vulngate-$r.log" &
  PID[$r]=$!
  PIDS+=($!)
  wait_http "https://127.0.0.1:$port/healthz" "vulngate serve ($r)" "${PID[$r]}"
  URL[$r]="https://127.0.0.1:$port/validate?timeout=10s"
  # Warm: every image looked up once by this replica.
  "$BIN/examples/soak_load" --url "${URL[$r]}" --duration 3 --connections 4 --label "warm-$r" \
    --class "vulnerable=$WORK/vulnerable.txt:1:deny" >"$WORK/warm-$r.json"
done
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLASS="vulnerable=$WORK/vulnerable.txt:1:deny"
FILES=()
for round in $(seq 1 "$ROUNDS"); do
  order=(one two); (( round % 2 == 0 )) && order=(two one)
  for mode in "${order[@]}"; do
    a0=$(cpu_ticks "${PID[a]}"); b0=$(cpu_ticks "${PID[b]}")
    if [[ $mode == one ]]; then
      "$BIN/examples/soak_load" --url "${URL[a]}" --duration "$SECONDS_PER" --connections "$CONN" \
        --label "one-$round-a" --class "$CLASS" >"$OUT/one-$round-a.json"
      parts=("$OUT/one-$round-a.json")
    else
      "$BIN/examples/soak_load" --url "${URL[a]}" --duration "$SECONDS_PER" --connections $((CONN / 2)) \
        --label "two-$round-a" --class "$CLASS" >"$OUT/two-$round-a.json" &
      ca=$!
      "$BIN/examples/soak_load" --url "${URL[b]}" --duration "$SECONDS_PER" --connections $((CONN / 2)) \
        --label "two-$round-b" --class "$CLASS" >"$OUT/two-$round-b.json"
      wait "$ca"
      parts=("$OUT/two-$round-a.json" "$OUT/two-$round-b.json")
    fi
    a1=$(cpu_ticks "${PID[a]}"); b1=$(cpu_ticks "${PID[b]}")
    echo "{\"mode\": \"$mode\", \"round\": $round, \"cpu_ticks\": $(( a1 - a0 + b1 - b0 )), \"parts\": [\"${parts[0]}\"$( [[ ${#parts[@]} -gt 1 ]] && echo ", \"${parts[1]}\"" )]}" >"$OUT/$mode-$round.json"
    FILES+=("$OUT/$mode-$round.json")
    log "$mode round $round done"
  done
done

python3 - "$CONN" "$(nproc)" "$(getconf CLK_TCK)" "${FILES[@]}" <<'PY' | tee "$OUT/results.md"
import json, sys
conn, cores, hz = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows = {"one": [], "two": []}
for f in sys.argv[4:]:
    j = json.load(open(f))
    parts = [json.load(open(p)) for p in j["parts"]]
    answered = sum(p["answered"] for p in parts)
    denied = sum(p["denied_403"] for p in parts)
    errors = sum(p["transport_errors"] for p in parts) + sum(p["mismatched"] for p in parts)
    rps = sum(p["rps"] for p in parts)
    p99 = max(p["latency"]["p99_ms"] for p in parts)
    cpu_us = j["cpu_ticks"] / hz * 1e6 / max(answered, 1)
    rows[j["mode"]].append((j["round"], rps, p99, cpu_us, answered, denied, errors))
print(f"| mode | round | denies/s | p99 ms | server CPU per deny | answered | 403 | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for mode in ("one", "two"):
    for r, rps, p99, cpu, n, d, e in rows[mode]:
        print(f"| {mode} | {r} | {rps:.0f} | {p99:.2f} | {cpu:.1f} us | {n} | {d} | {e} |")
one = sum(r[1] for r in rows["one"]) / len(rows["one"])
two = sum(r[1] for r in rows["two"]) / len(rows["two"])
bad = sum(r[6] for m in rows.values() for r in m) + sum(r[4] - r[5] for m in rows.values() for r in m)
print(f"\n{cores} cores, {conn} connections, PostgreSQL store shared by both replicas: "
      f"one replica {one:.0f} denies/s, two replicas {two:.0f} denies/s; ratio {two / one:.2f} "
      f"(issue 23: >= 1.8 on a 4-core split)")
if bad:
    print(f"FAILED: {bad} answers were not a 403 or failed")
    sys.exit(1)
PY
