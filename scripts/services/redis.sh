#!/usr/bin/env bash
# Redis for the tests: Debian's redis-server on 127.0.0.1:${RAGPLANE_REDIS_PORT:-16379}, no
# persistence, and the same server over TLS on the next port, with a certificate for 127.0.0.1
# from a CA made at each start. Usage: redis.sh install | start | stop. Records
# RAGPLANE_TEST_REDIS_URL, RAGPLANE_TEST_REDIS_TLS_URL and RAGPLANE_TEST_REDIS_TLS_CA (the CA's
# PEM file).
source "$(dirname "$0")/lib.sh"
PORT=${RAGPLANE_REDIS_PORT:-16379}
TLS_PORT=$((PORT + 1))

# make_tls DIR : a CA, and a server certificate for 127.0.0.1 and localhost signed by it.
make_tls() {
  local d=$1
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj "/CN=ragplane test CA" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
    "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" > "$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 7 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
}
case "${1:-start}" in
  install) svc_apt redis-server openssl ;;
  stop) svc_kill redis ;;
  start)
    svc_apt redis-server openssl
    svc_kill redis
    mkdir -p "$RAGPLANE_SVC_DIR/redis"
    TLS=$RAGPLANE_SVC_DIR/redis/tls
    make_tls "$TLS"
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
