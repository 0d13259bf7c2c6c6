# Shared helpers for the scripts that install and run test services on 127.0.0.1.
# Sourced by scripts/services/<name>.sh; each of those takes `install`, `start` or `stop`.
#
# Runtime state (data, logs, pid files) goes under $RAGPLANE_SVC_DIR (default: target/services of
# this checkout). Each started service appends `export NAME=value` lines to $RAGPLANE_SVC_DIR/env.sh,
# which scripts/test.sh sources before running the tests. Installed tools are cached under
# $RAGPLANE_TESTBIN (default ~/.cache/ragplane-testbin), keyed by version, so a rerun skips them.
set -euo pipefail

SVC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RAGPLANE_SVC_DIR=${RAGPLANE_SVC_DIR:-$SVC_ROOT/target/services}
RAGPLANE_TESTBIN=${RAGPLANE_TESTBIN:-$HOME/.cache/ragplane-testbin}
mkdir -p "$RAGPLANE_SVC_DIR" "$RAGPLANE_TESTBIN"

# svc_apt PACKAGE... : install Debian packages that are not installed yet.
svc_apt() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# svc_bg NAME CMD... : run CMD in the background, logging to NAME.log, pid in NAME.pid.
svc_bg() {
  local name=$1; shift
  nohup "$@" >"$RAGPLANE_SVC_DIR/$name.log" 2>&1 &
  echo $! >"$RAGPLANE_SVC_DIR/$name.pid"
}

# svc_kill NAME : stop what svc_bg started (TERM, then KILL after 10 s).
svc_kill() {
  local f="$RAGPLANE_SVC_DIR/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f"); rm -f "$f"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# svc_wait NAME TIMEOUT_S CMD... : poll CMD until it succeeds; on timeout print the log and fail.
svc_wait() {
  local name=$1 t=$2 s=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - s > t )); then
      echo "FAIL: $name not ready in ${t}s"; tail -n 40 "$RAGPLANE_SVC_DIR/$name.log" 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
  echo "ready: $name ($((SECONDS - s))s)"
}

# svc_env NAME VALUE : record an environment variable for the tests (see env.sh above).
svc_env() {
  local f="$RAGPLANE_SVC_DIR/env.sh"
  touch "$f"; sed -i "/^export $1=/d" "$f"
  printf 'export %s=%q\n' "$1" "$2" >>"$f"
  echo "  $1=$2"
}

# svc_port_free PORT : true when nothing listens on 127.0.0.1:PORT.
svc_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
