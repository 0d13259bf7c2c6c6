#!/usr/bin/env bash
# An S3-compatible server that checks request signatures, on 127.0.0.1:19000 for the tests:
# s3s-fs 0.14.1 (newer releases need a newer rustc), built once with cargo into
# $RAGPLANE_TESTBIN/s3s-fs-0.14.1 (about 6-8 minutes cold on 2 cores). Buckets are directories
# under its data directory; `ragplane-test` is created empty. Debian's stunnel4 serves the same
# server over TLS on the next port, with a certificate for 127.0.0.1 from a CA made at each
# start (s3s-fs speaks only plain HTTP). Records RAGPLANE_TEST_S3_* (RAGPLANE_TEST_S3_TLS_ENDPOINT
# and RAGPLANE_TEST_S3_TLS_CA, the CA's PEM file, among them).
#   install | start | stop
source "$(dirname "$0")/lib.sh"

VERSION=0.14.1
ROOT=$RAGPLANE_TESTBIN/s3s-fs-$VERSION
BIN=$ROOT/bin/s3s-fs
PORT=${RAGPLANE_S3_PORT:-19000}
TLS_PORT=$((PORT + 1))
DIR=$RAGPLANE_SVC_DIR/s3
ACCESS_KEY=ragplanetest
SECRET_KEY=ragplanetestsecret0000

install() {
  [ -x "$BIN" ] && return 0
  echo "building s3s-fs $VERSION (cached in $ROOT)"
  local s=$SECONDS
  # Its own target directory, so a CI-wide CARGO_TARGET_DIR is not shared with the workspace.
  CARGO_TARGET_DIR="$RAGPLANE_TESTBIN/s3s-fs-build" \
    cargo install --locked s3s-fs --version "$VERSION" --features binary --root "$ROOT"
  rm -rf "$RAGPLANE_TESTBIN/s3s-fs-build"
  echo "built s3s-fs in $((SECONDS - s))s"
}

case "${1:-}" in
  install) install ;;
  start)
    # Not in install: scripts/test.sh runs that beside other jobs, and apt takes one lock.
    svc_apt stunnel4 openssl
    install
    svc_kill s3; svc_kill s3-tls
    svc_port_free "$PORT" || { echo "FAIL: port $PORT is taken"; exit 1; }
    svc_port_free "$TLS_PORT" || { echo "FAIL: port $TLS_PORT is taken"; exit 1; }
    rm -rf "$DIR"; mkdir -p "$DIR/data/ragplane-test"
    svc_bg s3 "$BIN" --host 127.0.0.1 --port "$PORT" --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$DIR/data"
    svc_wait s3 30 curl -s -o /dev/null "http://127.0.0.1:$PORT/"
    bash "$(dirname "$0")/make-tls.sh" "$DIR/tls" "IP:127.0.0.1,DNS:localhost"
    printf '%s\n' "foreground = yes" "pid =" "[s3]" "accept = 127.0.0.1:$TLS_PORT" \
      "connect = 127.0.0.1:$PORT" "cert = $DIR/tls/server.crt" "key = $DIR/tls/server.key" \
      >"$DIR/stunnel.conf"
    svc_bg s3-tls stunnel "$DIR/stunnel.conf"
    svc_wait s3-tls 30 curl -s -o /dev/null --cacert "$DIR/tls/ca.crt" "https://127.0.0.1:$TLS_PORT/"
    svc_env RAGPLANE_TEST_S3_ENDPOINT "http://127.0.0.1:$PORT"
    svc_env RAGPLANE_TEST_S3_TLS_ENDPOINT "https://127.0.0.1:$TLS_PORT"
    svc_env RAGPLANE_TEST_S3_TLS_CA "$DIR/tls/ca.crt"
    svc_env RAGPLANE_TEST_S3_REGION us-east-1
    svc_env RAGPLANE_TEST_S3_BUCKET ragplane-test
    svc_env RAGPLANE_TEST_S3_ACCESS_KEY "$ACCESS_KEY"
    svc_env RAGPLANE_TEST_S3_SECRET_KEY "$SECRET_KEY"
    ;;
  stop) svc_kill s3; svc_kill s3-tls ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
