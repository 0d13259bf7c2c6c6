#!/usr/bin/env bash
# Redis for the tests: Debian's redis-server on 127.0.0.1:${RAGPLANE_REDIS_PORT:-16379}, no
# persistence. Usage: redis.sh install | start | stop. Records RAGPLANE_TEST_REDIS_URL.
source "$(dirname "$0")/lib.sh"
PORT=${RAGPLANE_REDIS_PORT:-16379}
case "${1:-start}" in
  install) svc_apt redis-server ;;
  stop) svc_kill redis ;;
  start)
    svc_apt redis-server
    svc_kill redis
    mkdir -p "$RAGPLANE_SVC_DIR/redis"
    svc_bg redis redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no \
      --dir "$RAGPLANE_SVC_DIR/redis"
    svc_wait redis 20 redis-cli -p "$PORT" ping
    svc_env RAGPLANE_TEST_REDIS_URL "redis://127.0.0.1:$PORT"
    ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
