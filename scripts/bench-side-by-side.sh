#!/usr/bin/env bash
# Two vulngate builds side by side on the warm path (issue 21's "within 3%, measured side by side").
#
#   scripts/bench-side-by-side.sh BINARY_A BINARY_B
#
# Both servers run at once with the same configuration: the example findings directory (the
# image's report is local: no registry, no DNS), a deny rule that does not fire on it (critical
# findings), log level warn. Each round runs wrk against A then B (odd rounds) or B then A (even
# rounds), so that a drift of the machine's load falls on both alike. Per round it prints both
# throughputs and the server CPU time per request (user + system clock ticks of the server
# process from /proc, over the round); at the end, the sums and the ratios B/A. Building both
# alike is the caller's part, e.g. from `git worktree add` snapshots with the same profile.
#
# The same binary twice measures a difference of request or configuration instead: give each
# side its own AdmissionReview (BENCH_REVIEW_A / _B: a JSON file, `__IMAGE__` replaced by the
# image, default a Deployment) and extra lines of vulngate.yaml (BENCH_CONFIG_A / _B), e.g. a
# controller's Pod with its owner hints renamed against the same Pod (issue 18: owner resolution on
# identical bytes), or `alerts: { dedupWindow: 0s }` against the default.
#
# Environment: BENCH_ROUNDS (10), BENCH_DURATION (10s), BENCH_CONNECTIONS (32), BENCH_THREADS (2),
# BENCH_RULES (a rules file instead of the non-firing deny rule; every answer must still allow),
# BENCH_OUT (a temporary directory; the wrk outputs and a summary stay there).
# Tools: wrk, curl, python3 (scripts/install-test-tools.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[[ $# -eq 2 ]] || { echo "usage: $0 BINARY_A BINARY_B" >&2; exit 2; }
A=$1 B=$2
ROUNDS=${BENCH_ROUNDS:-10}
DUR=${BENCH_DURATION:-10s}
CONN=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
for t in wrk curl python3; do
  command -v "$t" >/dev/null || { echo "missing tool: $t (scripts/install-test-tools.sh)" >&2; exit 1; }
done
for b in "$A" "$B"; do [[ -x $b ]] || { echo "not an executable: $b" >&2; exit 2; }; done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_ROUNDS: a positive integer, not $ROUNDS" >&2; exit 2; }
log() { printf '[side-by-side] %s\n' "$*" >&2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vulngate-side.XXXXXX")
OUT=${BENCH_OUT:-$WORK/out}
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -n ${BENCH_OUT:-} ]] || log "outputs: $OUT (removed)"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
HZ=$(getconf CLK_TCK)

cat >"$WORK/rules.yaml" <<'YAML'
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: side-deny-critical }
spec:
  action: deny
  conditions: [{ severity: critical, maxCount: 100 }]
YAML
cat >"$WORK/review.json" <<'JSON'
{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"name":"web","namespace":"shop","operation":"CREATE","userInfo":{"username":"alice@example.com","groups":["system:authenticated"]},"object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","labels":{"app":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"__IMAGE__","ports":[{"containerPort":8080}]}]}}}},"oldObject":null,"dryRun":false,"options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}}}
JSON
IMAGE=registry.example.com/shop/api:1.4.2
[[ -n ${BENCH_RULES:-} ]] && cp "$BENCH_RULES" "$WORK/rules.yaml"

declare -A URL PID
for side in A B; do
  port=$(free_port)
  mkdir -p "$WORK/$side"
  cat >"$WORK/$side/vulngate.yaml" <<YAML
listen: 127.0.0.1:$port
metrics: { listen: 127.0.0.1:$(free_port) }
dataDir: $WORK/$side/data
rules: $WORK/rules.yaml
logLevel: warn
findingsDir: $ROOT/examples/findings
YAML
  extra=BENCH_CONFIG_$side
  [[ -n ${!extra:-} ]] && printf '%s\n' "${!extra}" >>"$WORK/$side/vulngate.yaml"
  review=BENCH_REVIEW_$side
  if [[ -n ${!review:-} ]]; then cp "${!review}" "$WORK/$side/review.json"; else cp "$WORK/review.json" "$WORK/$side/review.json"; fi
  sed "s|__IMAGE__|$IMAGE|" "$WORK/$side/review.json" >"$WORK/$side/review-warm.json"
  bin=$A; [[ $side == B ]] && bin=$B
  "$bin" serve --config "$WORK/$side/vulngate.yaml" 2>"$WORK/$side/vulngate.log" &
  PID[$side]=$!
  PIDS+=("${PID[$side]}")
  URL[$side]="https://127.0.0.1:$port/validate?timeout=10s"
  for _ in $(seq 1 300); do curl -ksf -o /dev/null "https://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  answer=$(curl -ksS -H 'Content-Type: application/json' --data-binary @"$WORK/$side/review-warm.json" "${URL[$side]}") \
    || { cat "$WORK/$side/vulngate.log" >&2; exit 1; }
  grep -q '"allowed":true' <<<"$answer" || { echo "$side: the warm review is not allowed: $answer" >&2; exit 1; }
done

run() { # side round -> "rps cpu_us_per_request"
  local side=$1 round=$2 t0 t1 json
  t0=$(ticks "${PID[$side]}")
  env BENCH_TEMPLATE="$WORK/$side/review.json" BENCH_IMAGE="$IMAGE" \
    timeout 600 wrk -t"$THREADS" -c"$CONN" -d"$DUR" --timeout 10s \
    -s "$ROOT/scripts/bench/admission.lua" "${URL[$side]}" >"$OUT/wrk-$side-$round.txt" 2>&1
  t1=$(ticks "${PID[$side]}")
  json=$(sed -n 's/^BENCH_JSON //p' "$OUT/wrk-$side-$round.txt")
  [[ -n $json ]] || { echo "$side round $round: wrk failed: $(tail -3 "$OUT/wrk-$side-$round.txt")" >&2; exit 1; }
  python3 - "$json" "$t0" "$t1" "$HZ" <<'PY'
import json, sys
j = json.loads(sys.argv[1]); t0, t1, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
bad = j["errors_connect"] + j["errors_read"] + j["errors_write"] + j["errors_status"] + j["errors_timeout"] + j["not_allowed"]
if bad or j["requests"] == 0:
    sys.exit(f"errors or answers other than allow: {j}")
print(f'{j["rps"]:.1f} {(t1 - t0) / hz / j["requests"] * 1e6:.2f}')
PY
}

log "warm-up: 2 s each"
ROUND_DUR=$DUR
DUR=2s; run A 0 >/dev/null; run B 0 >/dev/null
DUR=$ROUND_DUR
: >"$OUT/rounds.txt"
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then order="A B"; else order="B A"; fi
  declare -A res=()
  for side in $order; do res[$side]=$(run "$side" "$r"); done
  echo "$r ${res[A]} ${res[B]}" | tee -a "$OUT/rounds.txt" >&2
done
python3 - "$OUT/rounds.txt" "$A" "$B" "$DUR" "$CONN" "${BENCH_REVIEW_A:-} ${BENCH_CONFIG_A:-}" "${BENCH_REVIEW_B:-} ${BENCH_CONFIG_B:-}" <<'PY' | tee "$OUT/summary.txt"
import statistics as st, sys
rows = [list(map(float, l.split()[1:])) for l in open(sys.argv[1]) if l.strip()]
ra, ca, rb, cb = (list(c) for c in zip(*rows))
print(f"A: {sys.argv[2]} {sys.argv[6]}\nB: {sys.argv[3]} {sys.argv[7]}\n{len(rows)} alternated rounds, wrk {sys.argv[4]} at {sys.argv[5]} connections")
print(f"req/s   A mean {st.mean(ra):,.0f} (sd {st.pstdev(ra):,.0f})  B mean {st.mean(rb):,.0f} (sd {st.pstdev(rb):,.0f})  B/A {st.mean(rb)/st.mean(ra):.3f}")
print(f"CPU us/request  A {st.mean(ca):.2f}  B {st.mean(cb):.2f}  B/A {st.mean(cb)/st.mean(ca):.3f}")
print("per round B/A req/s: " + " ".join(f"{b/a:.3f}" for a, b in zip(ra, rb)))
PY
