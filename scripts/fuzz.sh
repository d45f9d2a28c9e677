#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each, one after the other, and fails on any
# crash (panic, failed assertion, timeout of one input, out-of-memory). Prints a per-target
# summary (seconds, executions, corpus size, crashes) and writes it to fuzz/summary.md.
#
#   scripts/fuzz.sh SECONDS [TARGET...]     e.g. scripts/fuzz.sh 600 (the recorded run), 5 (the smoke)
#
# Needs the nightly toolchain (`cargo +nightly`); installs cargo-fuzz $CARGO_FUZZ_VERSION from
# crates.io into ${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}/cargo when missing or of
# another version (reused otherwise, no network). Corpora are seeded from the repository's
# fixtures into fuzz/corpus/TARGET (not committed; libFuzzer adds what it finds there);
# crashes go to fuzz/artifacts/TARGET/ (reproduce: cargo +nightly fuzz run -s none TARGET FILE).
#
# Environment: FUZZ_SANITIZER (none: our crates forbid unsafe code, and without ASan the
# targets run about twice as fast; `address` for ASan), FUZZ_RSS_MB (2048: an input needing
# more is a crash), FUZZ_INPUT_TIMEOUT (10 s: one input taking longer is a crash),
# FUZZ_MAX_LEN (1 MiB: largest generated input), FUZZ_JOBS (1: targets run at a time).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER_TARGET=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
[[ $SECONDS_PER_TARGET =~ ^[0-9]+$ ]] && ((SECONDS_PER_TARGET > 0)) \
  || { echo "SECONDS must be a positive number, not $SECONDS_PER_TARGET" >&2; exit 2; }
CARGO_FUZZ_VERSION=0.13.2
SANITIZER=${FUZZ_SANITIZER:-none}
RSS_MB=${FUZZ_RSS_MB:-2048}
INPUT_TIMEOUT=${FUZZ_INPUT_TIMEOUT:-10}
MAX_LEN=${FUZZ_MAX_LEN:-1048576}
CACHE="${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}"
FUZZ="$ROOT/fuzz"
log() { printf '[fuzz] %s\n' "$*" >&2; }

# ---- toolchain and cargo-fuzz (cached, version-checked) ----------------------------------------
cargo +nightly --version >/dev/null 2>&1 \
  || { echo "the nightly toolchain is needed (cargo +nightly); it is not installed" >&2; exit 1; }
export PATH="$CACHE/cargo/bin:$PATH"
have=$(cargo-fuzz --version 2>/dev/null | awk '{print $2}' || true)
if [[ $have != "$CARGO_FUZZ_VERSION" ]]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION (found: ${have:-none}) into $CACHE/cargo"
  mkdir -p "$CACHE/cargo"
  cargo install --quiet --locked --root "$CACHE/cargo" --version "$CARGO_FUZZ_VERSION" cargo-fuzz >&2
fi

ALL_TARGETS=(admission_review report_detect report_trivy report_grype report_sarif report_cyclonedx
  report_intoto report_openvex rules_yaml findings_index oci_manifest notation_jws cosign_envelopes)
TARGETS=("${@:-${ALL_TARGETS[@]}}")
for t in "${TARGETS[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "unknown target $t (${ALL_TARGETS[*]})" >&2; exit 2; }
done

# ---- seed corpora from the fixtures -------------------------------------------------------------
REPORTS=("$ROOT"/crates/core/tests/data/reports "$ROOT"/examples/findings)
MANIFESTS="$ROOT/crates/registry/tests/data/manifests"
seed() { # target, files...
  local dir="$FUZZ/corpus/$1" f
  shift
  mkdir -p "$dir"
  for f in "$@"; do
    [[ -f $f ]] || continue
    cp -n "$f" "$dir/seed-$(sha256sum "$f" | cut -c1-16)" 2>/dev/null || true
  done
}
mapfile -t all_reports < <(find "${REPORTS[@]}" -type f \( -name '*.json' -o -name '*.sarif' \) | sort)
seed report_detect "${all_reports[@]}"
seed report_trivy $(printf '%s\n' "${all_reports[@]}" | grep -E '/trivy/[^/]*\.json$|toolbox|shop_api' | grep -v -e cyclonedx -e openvex)
seed report_grype $(printf '%s\n' "${all_reports[@]}" | grep -E '/grype/imgs')
seed report_sarif $(printf '%s\n' "${all_reports[@]}" | grep -E '\.sarif$')
seed report_cyclonedx $(printf '%s\n' "${all_reports[@]}" | grep -E 'cyclonedx')
seed report_intoto $(printf '%s\n' "${all_reports[@]}" | grep -E '/handmade/(intoto|cosign)')
seed report_openvex $(printf '%s\n' "${all_reports[@]}" | grep -E 'openvex|cyclonedx-1.6')
seed rules_yaml "$ROOT"/examples/rules.yaml "$ROOT"/examples/exploitation/rules.yaml \
  "$ROOT"/deploy/base/rules.yaml "$ROOT"/crates/core/tests/data/engine/cases.yaml
seed oci_manifest $(find "$MANIFESTS" -name '*.json' ! -name '*trustpolicy*' | sort)
seed notation_jws "$MANIFESTS"/notation-signature.envelope.jws.json
seed cosign_envelopes "$MANIFESTS"/cosign-*.bundle.json "$MANIFESTS"/cosign-legacy-attestation.dsse.json \
  "$MANIFESTS"/cosign.pub
# Inputs that crashed a target once (fixed since): seeds, so the fuzzer starts from them.
for t in "${TARGETS[@]}"; do
  [[ -d $ROOT/fuzz/regressions/$t ]] && seed "$t" "$ROOT"/fuzz/regressions/"$t"/*
done
# Generated seeds: admission reviews of every kind and operation, findings indexes, DN lists,
# a simple-signing signature line + payload.
python3 - "$FUZZ/corpus" "$ROOT/examples/admission-review.json" "$MANIFESTS" <<'PY'
import base64, copy, hashlib, json, os, sys
corpus, example, manifests = sys.argv[1:4]
def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "gen-" + hashlib.sha256(data).hexdigest()[:16]), "wb") as f:
        f.write(data)
base = json.load(open(example))
put("admission_review", json.dumps(base))
pod_spec = {"serviceAccountName": "b", "imagePullSecrets": [{"name": "regcred"}],
            "initContainers": [{"name": "i", "image": "example.com/init:1"}],
            "containers": [{"name": "c", "image": "example.com/a:1"}, {"name": "d", "image": "example.com/b@sha256:" + "a" * 64}],
            "ephemeralContainers": [{"name": "e", "image": "busybox:1.36"}]}
tmpl = {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}
objects = {
    "Pod": ("", "v1", {"spec": pod_spec}),
    "Deployment": ("apps", "v1", {"spec": {"selector": {}, "template": tmpl}}),
    "ReplicaSet": ("apps", "v1", {"spec": {"template": tmpl}}),
    "StatefulSet": ("apps", "v1", {"spec": {"template": tmpl}}),
    "DaemonSet": ("apps", "v1", {"spec": {"template": tmpl}}),
    "Job": ("batch", "v1", {"spec": {"template": tmpl}}),
    "CronJob": ("batch", "v1", {"spec": {"jobTemplate": {"spec": {"template": tmpl}}}}),
    "ReplicationController": ("", "v1", {"spec": {"template": tmpl}}),
}
for kind, (group, version, body) in objects.items():
    for op in ("CREATE", "UPDATE"):
        r = copy.deepcopy(base)
        req = r["request"]
        req["kind"] = {"group": group, "version": version, "kind": kind}
        req["operation"] = op
        obj = {"apiVersion": (group + "/" if group else "") + version, "kind": kind,
               "metadata": {"name": "web", "namespace": "shop", "annotations": {"vulngate.io/break-glass": "INC-1"}}}
        obj.update(copy.deepcopy(body))
        req["object"] = obj
        req["oldObject"] = copy.deepcopy(obj) if op == "UPDATE" else None
        put("admission_review", json.dumps(r))
r = copy.deepcopy(base); r["request"]["namespace"] = "kube-system"; put("admission_review", json.dumps(r))
r = copy.deepcopy(base); r["request"]["subResource"] = "ephemeralcontainers"; r["request"]["dryRun"] = True; put("admission_review", json.dumps(r))
r = copy.deepcopy(base); r["request"]["kind"]["kind"] = "CronJob"; put("admission_review", json.dumps(r))
put("findings_index", "images:\n  - image: registry.example.com/platform/toolbox:2.1.0\n    digest: sha256:" + "b" * 64 +
    "\n    report: report.json\n    vex: [vex.json]\n  - image: nginx@sha256:" + "c" * 64 + "\n    report: grype.sarif\n")
put("findings_index", "registry.example.com/platform/toolbox:2.1.0: report.json\nnginx:1.25: grype.sarif\n")
put("notation_jws", "CN=vulngate-test,O=Notary,L=Seattle,ST=WA,C=US\nx509.subject: C=US, ST=WA, O=Notary\n")
m = json.load(open(os.path.join(manifests, "cosign-legacy-signature.manifest.json")))
sig = next((l.get("annotations", {}).get("dev.cosignproject.cosign/signature") for l in m.get("layers", [])), None)
payload = open(os.path.join(manifests, "cosign-legacy-signature.simplesigning.json"), "rb").read()
if sig:
    put("cosign_envelopes", sig.encode() + b"\n" + payload)
PY

# ---- build once, then run each target -----------------------------------------------------------
cd "$FUZZ"
log "building the targets (cargo +nightly fuzz build -s $SANITIZER)"
cargo +nightly fuzz build -s "$SANITIZER" >&2
mkdir -p "$FUZZ/logs"
SUMMARY="$FUZZ/summary.md"
# One target: runs it for SECONDS_PER_TARGET, writes its summary row to logs/TARGET.row.
run_target() {
  local t=$1 before after start took rc crashes execs speed corpus
  log "$t: ${SECONDS_PER_TARGET}s"
  mkdir -p "$FUZZ/artifacts/$t"
  before=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
  start=$(date +%s)
  set +e
  cargo +nightly fuzz run -s "$SANITIZER" "$t" "$FUZZ/corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb="$RSS_MB" -timeout="$INPUT_TIMEOUT" \
    -max_len="$MAX_LEN" -print_final_stats=1 </dev/null >"$FUZZ/logs/$t.log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  after=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
  crashes=$(( after - before ))
  (( rc != 0 && crashes == 0 )) && crashes=1
  execs=$(awk '/stat::number_of_executed_units/{print $NF}' "$FUZZ/logs/$t.log" | tail -1)
  speed=$(awk '/stat::average_exec_per_sec/{print $NF}' "$FUZZ/logs/$t.log" | tail -1)
  corpus=$(find "$FUZZ/corpus/$t" -type f | wc -l)
  echo "| $t | $took | ${execs:-?} | ${speed:-?} | $corpus | $crashes |" >"$FUZZ/logs/$t.row"
  if (( crashes > 0 )); then
    log "$t: CRASH (exit $rc); log: fuzz/logs/$t.log; artifacts: fuzz/artifacts/$t/"
    grep -m5 -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$FUZZ/logs/$t.log" >&2 || true
  fi
}
# FUZZ_JOBS targets at a time (default 1; each libFuzzer process uses one core).
JOBS=${FUZZ_JOBS:-1}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "FUZZ_JOBS must be a positive number, not $JOBS" >&2; exit 2; }
running=0
for t in "${TARGETS[@]}"; do
  rm -f "$FUZZ/logs/$t.row"
  run_target "$t" &
  running=$((running + 1))
  if (( running >= JOBS )); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true
{
  echo "| target | seconds | executions | exec/s | corpus | crashes |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
} >"$SUMMARY"
failed=()
for t in "${TARGETS[@]}"; do
  if [[ -f "$FUZZ/logs/$t.row" ]]; then
    cat "$FUZZ/logs/$t.row" >>"$SUMMARY"
    [[ $(awk -F'|' '{gsub(/ /,"",$7); print $7}' "$FUZZ/logs/$t.row") == 0 ]] || failed+=("$t")
  else
    echo "| $t | ? | ? | ? | ? | did not finish |" >>"$SUMMARY"
    failed+=("$t")
  fi
done
cat "$SUMMARY"
if ((${#failed[@]})); then
  echo "fuzz: crashes in ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets, ${SECONDS_PER_TARGET}s each, no crash"
