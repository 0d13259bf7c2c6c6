#!/usr/bin/env bash
# Jaeger for the trace tests: `install` builds Jaeger's all-in-one from its Go module
# (scripts/services/jaeger/go.mod; about 3 min cold on 2 cores, cached by version), `start` runs
# it on 127.0.0.1 with in-memory storage and records for the tests:
#   RAGPLANE_TEST_JAEGER_OTLP_URL   OTLP/gRPC receiver (what OTEL_EXPORTER_OTLP_ENDPOINT names)
#   RAGPLANE_TEST_JAEGER_OTLP_HTTP_URL  OTLP/HTTP receiver (with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)
#   RAGPLANE_TEST_JAEGER_QUERY_URL  the query API (/api/traces/<id>, /api/services) and UI
# `stop` is idempotent.
source "$(dirname "$0")/lib.sh"

VERSION=1.76.0
MODULE_DIR=$SVC_ROOT/scripts/services/jaeger
BIN=$RAGPLANE_TESTBIN/jaeger-$VERSION/jaeger
OTLP_PORT=19417
OTLP_HTTP_PORT=19418
QUERY_PORT=19686
DIR=$RAGPLANE_SVC_DIR/jaeger

install() {
  [ -x "$BIN" ] && return 0
  command -v go >/dev/null || { echo "FAIL: building Jaeger needs Go (https://go.dev/dl)"; return 1; }
  echo "building Jaeger $VERSION from its Go module"
  local s=$SECONDS tmp
  mkdir -p "$(dirname "$BIN")"
  tmp=$(mktemp "$BIN.XXXXXX")
  (cd "$MODULE_DIR" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n 10 \
    go build -trimpath -ldflags="-s -w" -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
  mv "$tmp" "$BIN"
  echo "built Jaeger in $((SECONDS - s))s"
}

case "${1:-}" in
  install) install ;;
  start)
    install
    svc_kill jaeger
    for p in "$OTLP_PORT" "$OTLP_HTTP_PORT" "$QUERY_PORT"; do
      svc_port_free "$p" || { echo "FAIL: 127.0.0.1:$p is taken"; exit 1; }
    done
    mkdir -p "$DIR"
    # Only what the tests use, every listener on loopback: OTLP in (gRPC and HTTP), memory
    # storage, the query API, a health check.
    cat >"$DIR/config.yaml" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
extensions:
  healthcheckv2:
    use_v2: true
    http: {endpoint: "127.0.0.1:19433"}
  jaeger_query:
    storage: {traces: memstore}
    http: {endpoint: "127.0.0.1:$QUERY_PORT"}
    grpc: {endpoint: "127.0.0.1:19685"}
  jaeger_storage:
    backends:
      memstore:
        memory: {max_traces: 100000}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:$OTLP_PORT"}
      http: {endpoint: "127.0.0.1:$OTLP_HTTP_PORT"}
processors:
  batch: {timeout: 200ms}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
YAML
    svc_bg jaeger "$BIN" --config "$DIR/config.yaml"
    svc_wait jaeger 60 curl -sf "http://127.0.0.1:$QUERY_PORT/api/services"
    svc_env RAGPLANE_TEST_JAEGER_OTLP_URL "http://127.0.0.1:$OTLP_PORT"
    svc_env RAGPLANE_TEST_JAEGER_OTLP_HTTP_URL "http://127.0.0.1:$OTLP_HTTP_PORT"
    svc_env RAGPLANE_TEST_JAEGER_QUERY_URL "http://127.0.0.1:$QUERY_PORT"
    ;;
  stop)
    svc_kill jaeger
    ;;
  *)
    echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
