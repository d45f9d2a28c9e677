#!/usr/bin/env bash
# Legitimate reviews while slow-header clients hang on (issue 17, item 4).
#
# Starts `vulngate serve` (default rules, the example findings directory: the image's report is
# local, so no registry and no DNS is involved; the default rule audits it, an allow with an alert
# whose repeats de-duplication absorbs), then measures /validate with hey twice in the same run: without slow clients, then while
# BENCH_SLOW (500) clients keep a TLS connection each with half a request head sent (each one closed
# by http.headerReadTimeout is reopened at once, so BENCH_SLOW hang on all the time). Prints both
# p50/p99 and req/s, and how many slow connections the server closed.
#
# Usage: scripts/bench-slowloris.sh [VULNGATE_BINARY]   (default: target/release/vulngate)
# Environment: BENCH_SLOW (500), BENCH_DURATION (15s), BENCH_WORKERS (20: hey -c),
# BENCH_HEADER_TIMEOUT (10s: http.headerReadTimeout).
# Tools: hey, curl, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/vulngate}
SLOW=${BENCH_SLOW:-500}
DUR=${BENCH_DURATION:-15s}
WORKERS=${BENCH_WORKERS:-20}
HEADER_TIMEOUT=${BENCH_HEADER_TIMEOUT:-10s}
for t in hey curl python3; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "missing binary: $BIN (cargo build --release -p vulngate)" >&2; exit 1; }
log() { printf '[bench-slowloris] %s\n' "$*" >&2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vulngate-slowloris.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
MPORT=$(free_port)
cat >"$WORK/vulngate.yaml" <<YAML
listen: 127.0.0.1:$PORT
dataDir: $WORK/data
logLevel: warn
metrics: { listen: 127.0.0.1:$MPORT }
http: { headerReadTimeout: $HEADER_TIMEOUT }
findingsDir: $ROOT/examples/findings
YAML
"$BIN" serve --config "$WORK/vulngate.yaml" 2>"$WORK/vulngate.log" &
PIDS+=($!)
for _ in $(seq 1 300); do curl -ksf -o /dev/null "https://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
curl -ksf -o /dev/null "https://127.0.0.1:$PORT/healthz" || { cat "$WORK/vulngate.log" >&2; exit 1; }
cat >"$WORK/review.json" <<'JSON'
{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"name":"web","namespace":"prod","operation":"CREATE","userInfo":{"username":"alice"},"object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"prod"},"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"registry.example.com/platform/toolbox:2.1.0"}]}}}},"dryRun":false}}
JSON
URL="https://127.0.0.1:$PORT/validate?timeout=10s"
curl -ksS -H 'Content-Type: application/json' --data-binary @"$WORK/review.json" "$URL" | grep -q '"allowed":true' \
  || { echo "the review is not allowed" >&2; exit 1; }
run_hey() { # label
  # -host: hey would send the port in the TLS SNI, which rustls rejects.
  hey -z "$DUR" -c "$WORKERS" -host localhost -m POST -T application/json -D "$WORK/review.json" "$URL" >"$WORK/hey-$1.txt" 2>&1
  local rps p50 p99 codes
  rps=$(awk '/Requests\/sec/{print $2}' "$WORK/hey-$1.txt")
  p50=$(awk '/ 50% in /{print $3}' "$WORK/hey-$1.txt")
  p99=$(awk '/ 99% in /{print $3}' "$WORK/hey-$1.txt")
  codes=$(sed -n '/Status code distribution/,/^$/p' "$WORK/hey-$1.txt" | tail -n +2 | tr -s ' ' | tr '\n' ' ')
  echo "$1: ${rps} req/s, p50 ${p50}s, p99 ${p99}s, status: ${codes}"
}
metric() { curl -s "http://127.0.0.1:$MPORT/metrics" | awk -v m="$1" 'index($0, m)==1 {s+=$NF} END {print s+0}'; }

log "no slow clients, $DUR"
BASE=$(run_hey baseline)
cat >"$WORK/slow.py" <<'PY'
import socket, ssl, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
opened = 0; lock = threading.Lock()
def one():
    global opened
    while True:
        try:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
            s.sendall(b"POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            with lock: opened += 1
            s.recv(1)  # blocks until the server closes it
            s.close()
        except OSError:
            time.sleep(0.05)
for _ in range(n):
    threading.Thread(target=one, daemon=True).start()
while True:
    time.sleep(1)
    with lock: print(opened, flush=True)
PY
python3 "$WORK/slow.py" "$PORT" "$SLOW" >"$WORK/slow.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  [[ $(tail -1 "$WORK/slow.out" 2>/dev/null || echo 0) -ge $SLOW ]] && break; sleep 0.2
done
OPEN=$(metric 'vulngate_http_connections{listener="webhook"}')
log "$SLOW slow clients hanging on ($OPEN connections open), $DUR"
WITH=$(run_hey slow)
CLOSED=$(metric 'vulngate_http_connections_closed_by_limit_total{listener="webhook",reason="header-timeout"}')
echo "vulngate: $BIN; $SLOW slow clients, http.headerReadTimeout $HEADER_TIMEOUT, hey -z $DUR -c $WORKERS"
echo "$BASE"
echo "$WITH"
echo "slow connections open at the start of the second run: $OPEN; closed by the header timeout: $CLOSED; slow connections opened in all: $(tail -1 "$WORK/slow.out")"
