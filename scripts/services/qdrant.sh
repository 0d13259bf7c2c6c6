#!/usr/bin/env bash
# Qdrant for the tests, when a server binary is at hand: $QDRANT_BIN, else `qdrant` on PATH. No
# package registry serves Qdrant, so this script never installs or builds one; without a binary
# it says so and the Qdrant tests skip with that reason.
#
# Usage: qdrant.sh install | start | stop.
#   start: one node (HTTP ${RAGPLANE_QDRANT_PORT:-16333}, gRPC +1), recorded as QDRANT_URL, and a
#          cluster of three peers (ports 16340..16362), recorded as QDRANT_CLUSTER_URL (gRPC) and
#          QDRANT_CLUSTER_HTTP_URL (REST, where the peers are listed).
source "$(dirname "$0")/lib.sh"
PORT=${RAGPLANE_QDRANT_PORT:-16333}
BIN=${QDRANT_BIN:-$(command -v qdrant || true)}

# run_peer NAME HTTP GRPC P2P ARGS... : one Qdrant process with its own storage.
run_peer() {
  local name=$1 http=$2 grpc=$3 p2p=$4; shift 4
  local dir="$RAGPLANE_SVC_DIR/$name"
  rm -rf "$dir"; mkdir -p "$dir/storage" "$dir/snapshots"
  svc_port_free "$http" && svc_port_free "$grpc" || { echo "FAIL: port $http or $grpc is taken"; exit 1; }
  (
    cd "$dir"
    export QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT=$http \
      QDRANT__SERVICE__GRPC_PORT=$grpc QDRANT__CLUSTER__P2P__PORT=$p2p \
      QDRANT__STORAGE__STORAGE_PATH=$dir/storage QDRANT__STORAGE__SNAPSHOTS_PATH=$dir/snapshots \
      QDRANT__TELEMETRY_DISABLED=true QDRANT__LOG_LEVEL=WARN
    svc_bg "$name" "$BIN" "$@"
  )
}

case "${1:-start}" in
  install) ;;
  stop) for n in qdrant qdrant-peer-0 qdrant-peer-1 qdrant-peer-2; do svc_kill "$n"; done ;;
  start)
    if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
      echo "SKIPPED: Qdrant: QDRANT_BIN is not set and no qdrant is on PATH; no package registry serves a Qdrant server"
      exit 0
    fi
    bash "$0" stop
    run_peer qdrant "$PORT" $((PORT + 1)) $((PORT + 2))
    svc_wait qdrant 60 curl -sf "http://127.0.0.1:$PORT/readyz"
    svc_env QDRANT_URL "http://127.0.0.1:$((PORT + 1))"
    # Three peers: the first starts the cluster, the others join it through its p2p port.
    export QDRANT__CLUSTER__ENABLED=true
    run_peer qdrant-peer-0 16340 16341 16342 --uri http://127.0.0.1:16342
    svc_wait qdrant-peer-0 60 curl -sf http://127.0.0.1:16340/readyz
    run_peer qdrant-peer-1 16350 16351 16352 --bootstrap http://127.0.0.1:16342 --uri http://127.0.0.1:16352
    run_peer qdrant-peer-2 16360 16361 16362 --bootstrap http://127.0.0.1:16342 --uri http://127.0.0.1:16362
    three_peers() {
      curl -sf http://127.0.0.1:16340/cluster |
        python3 -c 'import json, sys; sys.exit(len(json.load(sys.stdin)["result"]["peers"]) < 3)'
    }
    svc_wait qdrant-cluster 60 three_peers
    svc_env QDRANT_CLUSTER_URL "http://127.0.0.1:16341"
    svc_env QDRANT_CLUSTER_HTTP_URL "http://127.0.0.1:16340"
    echo "qdrant: $("$BIN" --version 2>/dev/null || echo "$BIN")"
    ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
