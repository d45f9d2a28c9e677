# Shared by the scripts that start local processes or build (soak.sh, bench-scale-out.sh,
# bench-webhook.sh, build-image.sh, build-pgo.sh); sourced, not run.
#   cargo_target_dir    where cargo builds for this workspace: CARGO_TARGET_DIR when set (a
#                       relative one is taken from $ROOT, where the scripts run cargo), else $ROOT/target
#   work_dir PREFIX     a temp dir in $WORK, removed with every process in PIDS on exit
#   free_port           a free 127.0.0.1 port
#   wait_http URL NAME PID   until URL answers (30 s), or fail naming NAME (PID gone: at once)
#   start_registry      docker-registry on a free port, its storage in $WORK; sets REG
cargo_target_dir() {
  local d=${CARGO_TARGET_DIR:-target}
  [[ $d == /* ]] && echo "$d" || echo "$ROOT/$d"
}
work_dir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  PIDS=()
  trap work_cleanup EXIT
  trap 'exit 130' INT TERM
}
work_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url, name, pid
  for _ in $(seq 1 300); do
    curl -ksf -o /dev/null "$1" && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "$2 did not come up at $1" >&2; exit 1
}
start_registry() {
  REG="127.0.0.1:$(free_port)"
  cat >"$WORK/registry.yml" <<YAML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $WORK/registry } }
http: { addr: $REG }
YAML
  docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://$REG/v2/" docker-registry "$!"
}
