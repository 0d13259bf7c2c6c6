#!/usr/bin/env bash
# Redis for the tests: Debian's redis-server on 127.0.0.1:${RAGPLANE_REDIS_PORT:-16379}, no
# persistence, and the same server over TLS on the next port, with a certificate for 127.0.0.1
# from a CA made at each start. Usage: redis.sh install | start | stop. Records
# RAGPLANE_TEST_REDIS_URL, RAGPLANE_TEST_REDIS_TLS_URL and RAGPLANE_TEST_REDIS_TLS_CA (the CA's
# PEM file).
source "$(dirname "$0")/lib.sh"
PORT=${RAGPLANE_REDIS_PORT:-16379}
TLS_PORT=$((PORT + 1))

case "${1:-start}" in
  install) svc_apt redis-server openssl ;;
  stop) svc_kill redis ;;
  start)
    svc_apt redis-server openssl
    svc_kill redis
    mkdir -p "$RAGPLANE_SVC_DIR/redis"
    TLS=$RAGPLANE_SVC_DIR/redis/tls
    bash "$(dirname "$0")/make-tls.sh" "$TLS" "IP:127.0.0.1,DNS:localhost"
    svc_bg redis redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no \
      --dir "$RAGPLANE_SVC_DIR/redis" --tls-port "$TLS_PORT" --tls-cert-file "$TLS/server.crt" \
      --tls-key-file "$TLS/server.key" --tls-ca-cert-file "$TLS/ca.crt" --tls-auth-clients no
    svc_wait redis 20 redis-cli -p "$PORT" ping
    svc_wait redis 20 redis-cli -p "$TLS_PORT" --tls --cacert "$TLS/ca.crt" ping
    svc_env RAGPLANE_TEST_REDIS_URL "redis://127.0.0.1:$PORT"
    svc_env RAGPLANE_TEST_REDIS_TLS_URL "rediss://127.0.0.1:$TLS_PORT"
    svc_env RAGPLANE_TEST_REDIS_TLS_CA "$TLS/ca.crt"
    ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
