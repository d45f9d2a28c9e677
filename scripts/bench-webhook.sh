#!/usr/bin/env bash
# Webhook load benchmark (issue 4), loopback only (127.0.0.1), over TLS. One run measures:
#   (a) fixed   crates/server/examples/fixed_response.rs: the same axum + hyper-util + rustls stack
#               answering a fixed AdmissionResponse (the physical limit)
#   (a-skip), (a-kube)  references: the same fixed server, after serde_json skips the body
#               (`--parse skip`: the least any serde_json parse costs) or parses it into kube's
#               AdmissionReview<DynamicObject> (`--parse kube`: the type the issue names); they
#               tell how much of the limit merely reading the request takes (BENCH_REFERENCES)
#   (a-hardened) reference: the fixed answer served through the webhook listener's own connection
#               handling (`--stack hardened`: connection cap, timeouts, request deadline, the
#               accounting of `vulngate serve`); (a) uses a bare accept loop
#   (b) warm    `vulngate serve`, one digest-pinned image whose report is cached; also at a fixed
#               rate (BENCH_RATE): hey (bursts, see below) and wrk paced (Poisson arrivals)
#   (c) cold    `vulngate serve`, a new digest on every request (images pre-pushed with reports
#               to a loopback registry; each image is sent once), at BENCH_COLD_CONNECTIONS (the
#               goal's run), then at BENCH_COLD_STRESS_CONNECTIONS on the other half of the digests
#               (the registry, on the same two cores, saturated: the latency is its queue)
# then fills the findings cache with every seeded digest and reads vulngate's VmRSS.
# For the (a), references and (b) throughput rounds it also reports each server's CPU per request (user and
# system time, context switches, from /proc) and the CPU cost ratio beside the throughput ratio.
#
#   scripts/bench-webhook.sh            results in target/bench-webhook/ (results.md, raw logs)
#   BENCH_BUILD=pgo scripts/bench-webhook.sh   the same with the PGO build (scripts/build-pgo.sh)
#
# Knobs (environment): BENCH_IMAGES (10000, seeded digests = the cache fill for the RSS figure),
# BENCH_DURATION (10s per throughput run), BENCH_ROUNDS (2: a,b alternated), BENCH_CONNECTIONS (32),
# BENCH_COLD_CONNECTIONS (2), BENCH_COLD_STRESS_CONNECTIONS (8; 0 skips that run),
# BENCH_COLD_DURATION (20s, each cold run), BENCH_RATE (2000 req/s: hey -q, paced wrk),
# BENCH_RATE_WORKERS (20: hey's workers, and wrk's connections for the paced run),
# BENCH_LOG_LEVEL (info), BENCH_OUT (target/bench-webhook), BENCH_BUILD (release or pgo),
# BENCH_BIN_DIR (prebuilt vulngate and examples/fixed_response, see below),
# BENCH_REFERENCES ("skip kube": the reference servers run in each round, of skip, kube and
# hardened; "" for none),
# BENCH_REGISTRY (distribution: docker-registry, referrers tag schema; or ferro: ferro-oci-server,
# referrers API -- ferro 1.0.0 rewrites one metadata.json per push, so seeding slows down
# quadratically: about 1 image/s after 2,000 images; use it with BENCH_IMAGES <= 1000).
# Tools: wrk, hey, curl, python3, docker-registry / ferro-oci-server (scripts/install-test-tools.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC1091
[[ -f "$HOME/.cache/vulngate-tools/env.sh" ]] && source "$HOME/.cache/vulngate-tools/env.sh"

N_IMAGES=${BENCH_IMAGES:-10000}
DUR=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-2}
CONN=${BENCH_CONNECTIONS:-32}
COLD_CONN=${BENCH_COLD_CONNECTIONS:-2}
STRESS_CONN=${BENCH_COLD_STRESS_CONNECTIONS:-8}
COLD_DUR=${BENCH_COLD_DURATION:-20s}
RATE=${BENCH_RATE:-2000}
RATE_WORKERS=${BENCH_RATE_WORKERS:-20}
LOG_LEVEL=${BENCH_LOG_LEVEL:-info}
OUT=${BENCH_OUT:-$ROOT/target/bench-webhook}
THREADS=2
REGISTRY_KIND=${BENCH_REGISTRY:-distribution}

case "$REGISTRY_KIND" in
  distribution) REGISTRY_TOOL=docker-registry ;;
  ferro) REGISTRY_TOOL=ferro-oci-server ;;
  *) echo "BENCH_REGISTRY: distribution or ferro" >&2; exit 2 ;;
esac
for t in wrk hey curl python3 "$REGISTRY_TOOL"; do
  command -v "$t" >/dev/null || { echo "missing tool: $t (scripts/install-test-tools.sh)" >&2; exit 1; }
done

log() { printf '[bench-webhook] %s\n' "$*" >&2; }

# ---- build -------------------------------------------------------------------------------------
# BENCH_BUILD=release (default): `cargo build --release`. BENCH_BUILD=pgo: scripts/build-pgo.sh,
# the profile-guided build of vulngate and of the baseline servers (one profile, same flags).
# BENCH_BIN_DIR=DIR: vulngate and examples/fixed_response as found in DIR, not built (build-pgo.sh
# trains its instrumented binaries this way). The seeding tool is always the plain release build.
BUILD=${BENCH_BUILD:-release}
log "building seed_images (release)"
(cd "$ROOT" && cargo build --release --locked -p vulngate-registry --example seed_images) >&2
# shellcheck source=lib/work.sh
source "$ROOT/scripts/lib/work.sh"
TARGET_DIR=$(cargo_target_dir)
SEED="$TARGET_DIR/release/examples/seed_images"
if [[ -n ${BENCH_BIN_DIR:-} ]]; then
  BIN=$BENCH_BIN_DIR
  BUILD="prebuilt ($BIN)"
elif [[ $BUILD == release ]]; then
  log "building (release)"
  (cd "$ROOT" && cargo build --release --locked -p vulngate --bin vulngate \
    -p vulngate-server --example fixed_response) >&2
  BIN="$TARGET_DIR/release"
  BUILD="release (cargo build --release)"
elif [[ $BUILD == pgo ]]; then
  log "building (release with PGO: scripts/build-pgo.sh)"
  # build-pgo.sh prints the path of the vulngate it built.
  BIN=$(dirname "$("$ROOT/scripts/build-pgo.sh")")
  BUILD="release with PGO (scripts/build-pgo.sh)"
else
  echo "BENCH_BUILD: release or pgo, not $BUILD" >&2; exit 2
fi
EX="$BIN/examples"
for b in "$BIN/vulngate" "$EX/fixed_response"; do
  [[ -x $b ]] || { echo "missing binary: $b" >&2; exit 1; }
done

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vulngate-bench.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url, name
  for _ in $(seq 1 150); do
    curl -ksf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$2 did not come up at $1" >&2; exit 1
}
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
# CPU of a server process: user and system clock ticks (all threads), then voluntary and
# involuntary context switches summed over its threads.
cpu_snapshot() {
  local ticks
  ticks=$(sed 's/.*) //' "/proc/$1/stat" | awk '{print $12, $13}')
  echo "$ticks $(cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/{v+=$2} /^nonvoluntary_ctxt_switches/{n+=$2} END {print v, n}')"
}
metric() { # name (first sample line starting with it) from vulngate's /metrics
  curl -s "http://127.0.0.1:$VG_METRICS_PORT/metrics" | awk -v m="$1" 'index($0, m)==1 {s+=$NF} END {print s+0}'
}

# ---- registry and images -----------------------------------------------------------------------
REG_PORT=$(free_port)
REG="127.0.0.1:$REG_PORT"
if [[ $REGISTRY_KIND == ferro ]]; then
  FERRO_OCI_LISTEN=$REG FERRO_OCI_STORAGE_DIR="$WORK/registry" ferro-oci-server >"$WORK/registry.log" 2>&1 &
else
  cat >"$WORK/registry.yml" <<YAML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $WORK/registry } }
http: { addr: $REG }
YAML
  docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
fi
PIDS+=($!)
wait_http "http://$REG/v2/" "$REGISTRY_TOOL"
log "seeding $N_IMAGES images with reports into $REG"
SEED_START=$(date +%s)
"$SEED" --registry "$REG" --count "$N_IMAGES" --severity LOW --concurrency 8 >"$WORK/images.txt"
log "seeded in $(( $(date +%s) - SEED_START ))s"
WARM_IMAGE=$(head -1 "$WORK/images.txt")
# Two disjoint halves: the cold run and the stress run each send digests never seen before.
tail -n +2 "$WORK/images.txt" >"$WORK/cold-all.txt"
N_COLD=$(wc -l <"$WORK/cold-all.txt")
head -n $(( (N_COLD + 1) / 2 )) "$WORK/cold-all.txt" >"$WORK/cold-images.txt"
tail -n +$(( (N_COLD + 1) / 2 + 1 )) "$WORK/cold-all.txt" >"$WORK/cold-stress-images.txt"

# ---- request template and rules ----------------------------------------------------------------
cat >"$WORK/review.json" <<'JSON'
{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"name":"web","namespace":"shop","operation":"CREATE","userInfo":{"username":"alice@example.com","groups":["system:authenticated"]},"object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","labels":{"app":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"__IMAGE__","ports":[{"containerPort":8080}]}]}}}},"oldObject":null,"dryRun":false,"options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}}}
JSON
sed "s|__IMAGE__|$WARM_IMAGE|" "$WORK/review.json" >"$WORK/review-warm.json"
# Deny critical findings and unscanned images: the seeded reports (one LOW finding) are allowed,
# an image whose report is not found would be denied (counted as not_allowed by the lua script).
cat >"$WORK/rules.yaml" <<'YAML'
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: bench-deny-critical-or-unscanned }
spec:
  action: deny
  blockUnscanned: true
  conditions: [{ severity: critical, maxCount: 0 }]
YAML

# ---- servers -----------------------------------------------------------------------------------
FIXED_PORT=$(free_port)
"$EX/fixed_response" --listen "127.0.0.1:$FIXED_PORT" --data-dir "$WORK/fixed-data" 2>"$WORK/fixed.log" &
FIXED_PID=$!
PIDS+=($FIXED_PID)
REFERENCES=${BENCH_REFERENCES-skip kube}
# Each server's /validate URL, and the process behind each URL (for the CPU figures).
declare -A REF_URL PID_OF_URL
for ref in $REFERENCES; do
  case $ref in
    skip|kube) how=(--parse "$ref") ;;
    hardened) how=(--stack hardened) ;;
    *) echo "BENCH_REFERENCES: skip, kube and/or hardened, not $ref" >&2; exit 2 ;;
  esac
  port=$(free_port)
  "$EX/fixed_response" --listen "127.0.0.1:$port" --data-dir "$WORK/fixed-data" \
    "${how[@]}" 2>"$WORK/fixed-$ref.log" &
  pid=$!
  PIDS+=($pid)
  REF_URL[$ref]="https://127.0.0.1:$port/validate?timeout=10s"
  PID_OF_URL["${REF_URL[$ref]}"]=$pid
done
VG_PORT=$(free_port)
VG_METRICS_PORT=$(free_port)
cat >"$WORK/vulngate.yaml" <<YAML
listen: 127.0.0.1:$VG_PORT
metrics: { listen: 127.0.0.1:$VG_METRICS_PORT }
dataDir: $WORK/vg-data
rules: $WORK/rules.yaml
logLevel: $LOG_LEVEL
cache: { maxEntries: $(( N_IMAGES * 2 )), ttl: 1h, unscannedTtl: 30s }
registry: { insecureRegistries: ["$REG"] }
YAML
"$BIN/vulngate" serve --config "$WORK/vulngate.yaml" 2>"$WORK/vulngate.log" &
VG_PID=$!
PIDS+=($VG_PID)
wait_http "https://127.0.0.1:$FIXED_PORT/healthz" fixed_response
for ref in $REFERENCES; do
  wait_http "${REF_URL[$ref]%/validate*}/healthz" "fixed_response ($ref)"
done
wait_http "https://127.0.0.1:$VG_PORT/healthz" "vulngate serve"
RSS_START=$(rss_kib "$VG_PID")

FIXED_URL="https://127.0.0.1:$FIXED_PORT/validate?timeout=10s"
VG_URL="https://127.0.0.1:$VG_PORT/validate?timeout=10s"
PID_OF_URL["$FIXED_URL"]=$FIXED_PID
PID_OF_URL["$VG_URL"]=$VG_PID

# Warm the cache with the warm image (and check it is allowed, i.e. its report was found).
curl -ksS -H 'Content-Type: application/json' --data-binary @"$WORK/review-warm.json" "$VG_URL" >"$WORK/warm-first.json"
grep -q '"allowed":true' "$WORK/warm-first.json" || { echo "warm image not allowed: $(cat "$WORK/warm-first.json")" >&2; exit 1; }

wrk_run() { # label, url, duration, connections, extra env...
  local label=$1 url=$2 dur=$3 conns=$4 pid=${PID_OF_URL["$2"]}
  shift 4
  cpu_snapshot "$pid" >"$OUT/cpu-$label.txt"
  env BENCH_TEMPLATE="$WORK/review.json" BENCH_THREADS=$THREADS "$@" \
    timeout 600 wrk -t"$THREADS" -c"$conns" -d"$dur" --timeout 10s --latency \
    -s "$ROOT/scripts/bench/admission.lua" "$url" >"$OUT/wrk-$label.txt" 2>&1
  grep '^BENCH_JSON ' "$OUT/wrk-$label.txt" | sed 's/^BENCH_JSON //' >"$OUT/wrk-$label.json" \
    || { log "$label failed: $(tail -3 "$OUT/wrk-$label.txt")"; exit 1; }
  cpu_snapshot "$pid" >>"$OUT/cpu-$label.txt"
  log "$label: $(cat "$OUT/wrk-$label.json")"
}

# ---- (a), references and (b): throughput, alternated -------------------------------------------
log "warm-up (2s each)"
wrk_run warmup-fixed "$FIXED_URL" 2s "$CONN" BENCH_IMAGE="$WARM_IMAGE"
for ref in $REFERENCES; do
  wrk_run "warmup-$ref" "${REF_URL[$ref]}" 2s "$CONN" BENCH_IMAGE="$WARM_IMAGE"
done
wrk_run warmup-warm "$VG_URL" 2s "$CONN" BENCH_IMAGE="$WARM_IMAGE"
for r in $(seq 1 "$ROUNDS"); do
  wrk_run "a-fixed-$r" "$FIXED_URL" "$DUR" "$CONN" BENCH_IMAGE="$WARM_IMAGE"
  for ref in $REFERENCES; do
    wrk_run "a-$ref-$r" "${REF_URL[$ref]}" "$DUR" "$CONN" BENCH_IMAGE="$WARM_IMAGE"
  done
  wrk_run "b-warm-$r" "$VG_URL" "$DUR" "$CONN" BENCH_IMAGE="$WARM_IMAGE"
done
RSS_WARM=$(rss_kib "$VG_PID")

# ---- (b) at a fixed rate (hey: -q is per worker) -----------------------------------------------
QPS=$(( RATE / RATE_WORKERS ))
hey_run() { # label, url
  # -host: hey sends its Host (with the port, from the URL) as TLS SNI, which rustls rejects
  # ("illegal parameter"); a bare name fixes the SNI.
  timeout 120 hey -z "$DUR" -c "$RATE_WORKERS" -q "$QPS" -host localhost -m POST -T application/json \
    -D "$WORK/review-warm.json" "$2" >"$OUT/hey-$1.txt" 2>&1
  log "$1: $(grep -E 'Requests/sec|99% in' "$OUT/hey-$1.txt" | tr -s ' ' | tr '\n' ' ')"
}
hey_run a-fixed-rate "$FIXED_URL"
hey_run b-warm-rate "$VG_URL"

# ---- (b) at a paced rate (wrk, Poisson arrivals) -----------------------------------------------
# hey's workers tick in phase: its "2,000 req/s" arrive as bursts of RATE_WORKERS requests every
# RATE_WORKERS/RATE seconds, and its p99 is the wait at the end of a burst. Here each of
# RATE_WORKERS connections waits an exponential time before each request (admission.lua,
# BENCH_CONN_RATE): together a Poisson stream. Aimed 5% above RATE to make up for the time a
# connection waits for its response and for wrk's millisecond timers; the achieved rate is reported.
CONN_RATE=$(python3 -c "print($RATE * 1.05 / $RATE_WORKERS)")
wrk_run a-fixed-paced "$FIXED_URL" "$DUR" "$RATE_WORKERS" BENCH_IMAGE="$WARM_IMAGE" BENCH_CONN_RATE="$CONN_RATE"
wrk_run b-warm-paced "$VG_URL" "$DUR" "$RATE_WORKERS" BENCH_IMAGE="$WARM_IMAGE" BENCH_CONN_RATE="$CONN_RATE"

# ---- (c) cold: every request a new digest ------------------------------------------------------
MISSES_BEFORE=$(metric vulngate_findings_cache_misses_total)
wrk_run c-cold "$VG_URL" "$COLD_DUR" "$COLD_CONN" BENCH_IMAGE_LIST="$WORK/cold-images.txt" BENCH_STOP_WHEN_EXHAUSTED=1
MISSES_COLD=$(( $(metric vulngate_findings_cache_misses_total) - MISSES_BEFORE ))
FILL_CONN=$COLD_CONN
if [[ ! -s "$WORK/cold-stress-images.txt" ]]; then STRESS_CONN=0; fi
if (( STRESS_CONN > 0 )); then
  wrk_run c-cold-stress "$VG_URL" "$COLD_DUR" "$STRESS_CONN" \
    BENCH_IMAGE_LIST="$WORK/cold-stress-images.txt" BENCH_STOP_WHEN_EXHAUSTED=1
  FILL_CONN=$STRESS_CONN
fi

# ---- cache fill: every seeded digest, then RSS -------------------------------------------------
# wrk waits for -d even when every thread stopped: run it in the background and end it once the
# cache has looked up every seeded digest (or after BENCH_FILL_TIMEOUT seconds).
env BENCH_TEMPLATE="$WORK/review.json" BENCH_THREADS=$THREADS BENCH_IMAGE_LIST="$WORK/images.txt" \
  BENCH_STOP_WHEN_EXHAUSTED=1 wrk -t"$THREADS" -c"$FILL_CONN" -d600s --timeout 10s \
  -s "$ROOT/scripts/bench/admission.lua" "$VG_URL" >"$OUT/wrk-fill.txt" 2>&1 &
FILL_PID=$!
PIDS+=($FILL_PID)
for _ in $(seq 1 "${BENCH_FILL_TIMEOUT:-600}"); do
  (( $(metric vulngate_findings_cache_misses_total) >= N_IMAGES )) && break
  sleep 1
done
kill "$FILL_PID" 2>/dev/null || true
wait "$FILL_PID" 2>/dev/null || true
sleep 1
RSS_FILLED=$(rss_kib "$VG_PID")
# Where that RSS is: anonymous (heap, stacks) against file-backed (the binary's pages).
cp "/proc/$VG_PID/smaps_rollup" "$OUT/smaps-filled.txt"
MISSES_TOTAL=$(metric vulngate_findings_cache_misses_total)
FAILURES=$(metric vulngate_findings_source_failures_total)
curl -s "http://127.0.0.1:$VG_METRICS_PORT/metrics" >"$OUT/metrics.txt"

# ---- summary -----------------------------------------------------------------------------------
python3 - "$OUT" "$ROUNDS" "$RSS_START" "$RSS_WARM" "$RSS_FILLED" "$MISSES_COLD" "$MISSES_TOTAL" \
  "$FAILURES" "$N_IMAGES" "$CONN" "$COLD_CONN" "$DUR" "$RATE" "$RATE_WORKERS" "$QPS" "$LOG_LEVEL" "$REGISTRY_TOOL" \
  "$(getconf CLK_TCK)" "$REFERENCES" "$BUILD" "$STRESS_CONN" <<'PY' | tee "$OUT/results.md"
import json, re, sys, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
rss_start, rss_warm, rss_filled = (int(x) for x in sys.argv[3:6])
misses_cold, misses_total, failures, n_images = (int(float(x)) for x in sys.argv[6:10])
conn, cold_conn, dur, rate, workers, qps, log_level = sys.argv[10:17]
load = lambda l: json.load(open(f"{out}/wrk-{l}.json"))
def hey(label):
    t = open(f"{out}/hey-{label}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    pct = {m.group(1): float(m.group(2)) * 1e3 for m in re.finditer(r"(\d+)%% in ([\d.]+) secs".replace("%%", "%"), t)}
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", t)
    return rps, pct.get("50"), pct.get("99"), codes
print(f"Binaries: {sys.argv[20]}")
print()
print("| run | requests | req/s | p50 ms | p99 ms | max ms | errors | not allowed |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
refs = sys.argv[19].split()
kinds = ["a-fixed"] + [f"a-{ref}" for ref in refs] + ["b-warm"]
rows = {}
for r in range(1, rounds + 1):
    for l in (f"{k}-{r}" for k in kinds):
        j = load(l); rows[l] = j
        errs = sum(j[k] for k in j if k.startswith("errors_"))
        print(f"| {l} (wrk -t2 -c{conn} -d{dur}) | {j['requests']} | {j['rps']:.0f} | {j['p50_ms']:.2f} | {j['p99_ms']:.2f} | {j['max_ms']:.2f} | {errs} | {j['not_allowed'] if l.startswith('b') else '-'} |")
cold_runs = [("c-cold", cold_conn)] + ([("c-cold-stress", sys.argv[21])] if int(sys.argv[21]) > 0 else [])
for label, cc in cold_runs:
    j = load(label)
    errs = sum(j[k] for k in j if k.startswith("errors_"))
    print(f"| {label} (wrk -t2 -c{cc}, one request per digest; threads out of digests: {j['threads_exhausted']}, wraps {j['wraps']}) | {j['requests']} | {j['rps_active']:.0f} (over {j['active_s']:.1f} s) | {j['p50_ms']:.2f} | {j['p99_ms']:.2f} | {j['max_ms']:.2f} | {errs} | {j['not_allowed']} |")
# Not `rps`: the hey lines below unpack their own `rps`.
rps_of = lambda kind: [rows[f"{kind}-{r}"]["rps"] for r in range(1, rounds + 1)]
def ratio(num, den, what):
    a, b = rps_of(den), rps_of(num)
    print(f"- {what}, per round: " + ", ".join(f"{y/x:.1%}" for x, y in zip(a, b)) +
          f"; mean of rounds: {statistics.mean(b)/statistics.mean(a):.1%}")
print()
ratio("b-warm", "a-fixed", "(b)/(a) throughput (goal >= 70%)")
names = {"skip": "after serde_json skipping the body", "kube": "after parsing the body into kube's AdmissionReview<DynamicObject>",
         "hardened": "on the webhook listener's own connection handling (limits, timeouts, request deadline)"}
for ref in refs:
    ratio(f"a-{ref}", "a-fixed", f"(a-{ref})/(a) throughput: the fixed answer {names[ref]}")
if "hardened" in refs:
    ratio("b-warm", "a-hardened", "(b)/(a-hardened) throughput: vulngate against the fixed answer on the same connection handling")
if "kube" in refs:
    ratio("b-warm", "a-kube", "(b)/(a-kube) throughput: vulngate against a server that only parses into kube's types")
# Server CPU per request (from /proc: clock ticks of all threads, context switches). The load
# generator shares the two cores and costs about the same per request against either server, so
# the throughput ratio is higher than the ratio of the servers' own CPU costs. A slower server
# also leaves wrk waiting, and each response then wakes a wrk thread that preempts the server:
# hence the involuntary context switches.
tick_us = 1e6 / int(sys.argv[18])
def cpu(label):
    (u0, s0, v0, n0), (u1, s1, v1, n1) = ([int(x) for x in l.split()] for l in open(f"{out}/cpu-{label}.txt"))
    n = rows[label]["requests"]
    return (u1 - u0) * tick_us / n, (s1 - s0) * tick_us / n, (v1 - v0) / n, (n1 - n0) / n
costs = {}
for kind in kinds:
    per = [cpu(f"{kind}-{r}") for r in range(1, rounds + 1)]
    u, s_, v, n = (statistics.mean(x[i] for x in per) for i in range(4))
    costs[kind] = u + s_
    print(f"- {kind} server CPU per request (mean of rounds): user {u:.1f} us, system {s_:.1f} us, total {u + s_:.1f} us; "
          f"context switches per request: {v:.2f} voluntary, {n:.2f} involuntary")
print(f"- CPU cost ratio, (a)'s CPU per request / (b)'s: {costs['a-fixed'] / costs['b-warm']:.1%} "
      "(the servers' capacity ratio on CPU alone, without the load generator's share of the cores)")
for label in ("a-fixed-rate", "b-warm-rate"):
    rps, p50, p99, codes = hey(label)
    print(f"- {label}: hey -z {dur} -c {workers} -q {qps} (target {rate} req/s): {rps:.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, status {codes}")
for label in ("a-fixed-paced", "b-warm-paced"):
    j = load(label)
    errs = sum(j[k] for k in j if k.startswith("errors_"))
    print(f"- {label}: wrk -c {workers}, Poisson arrivals aimed at {rate} req/s x 1.05: {j['rps']:.0f} req/s, p50 {j['p50_ms']:.2f} ms, p90 {j['p90_ms']:.2f} ms, p99 {j['p99_ms']:.2f} ms, max {j['max_ms']:.2f} ms, errors {errs}" + (f", not allowed {j['not_allowed']}" if label.startswith("b") else ""))
c = load("c-cold")
print(f"- (c) cold p99 at {cold_conn} connections: {c['p99_ms']:.2f} ms (goal <= 50 ms), p50 {c['p50_ms']:.2f} ms, {c['rps_active']:.0f} req/s; source lookups during the run (cache misses): {misses_cold} for {c['requests']} measured requests")
if len(cold_runs) > 1:
    st = load("c-cold-stress")
    print(f"- (c) cold under stress, {sys.argv[21]} connections (the registry saturated; latency is queueing, about connections / req/s): p99 {st['p99_ms']:.2f} ms, p50 {st['p50_ms']:.2f} ms, {st['rps_active']:.0f} req/s")
print(f"- RSS of vulngate: {rss_start/1024:.1f} MiB at start, {rss_warm/1024:.1f} MiB after the warm runs, {rss_filled/1024:.1f} MiB with {misses_total} digests looked up and cached (seeded {n_images}; goal <= 64 MiB); source failures: {failures}")
smaps = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+):\s+(\d+) kB", open(f"{out}/smaps-filled.txt").read(), re.M)}
print(f"  - of the filled RSS: {smaps.get('Anonymous', 0)/1024:.1f} MiB anonymous (heap, stacks), {(smaps.get('Rss', 0) - smaps.get('Anonymous', 0))/1024:.1f} MiB file-backed (the binary's pages)")
print(f"- registry: {sys.argv[17]}")
print(f"- log level: {log_level} (one decision line per image to stderr, redirected to a file)")
PY
log "results: $OUT/results.md"
