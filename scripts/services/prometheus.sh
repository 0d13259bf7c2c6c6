#!/usr/bin/env bash
# Prometheus for the autoscaling tests: `start` installs Debian's `prometheus` if missing, runs it on
# 127.0.0.1:19090 with a 1 s scrape interval, and records for the tests:
#   RAGPLANE_TEST_PROMETHEUS_URL      the running server (scrapes itself and every file-SD target)
#   RAGPLANE_TEST_PROMETHEUS_BIN      the binary, for tests that start and stop a server of their own
#                                     (ports 19091-19099)
#   RAGPLANE_TEST_PROMETHEUS_TARGETS  a directory of file-SD target files (*.json) the server watches
# `stop` is idempotent.
source "$(dirname "$0")/lib.sh"

PORT=19090
DIR=$RAGPLANE_SVC_DIR/prometheus

install() {
  local s=$SECONDS
  command -v prometheus >/dev/null || svc_apt prometheus
  echo "prometheus installed in $((SECONDS - s))s: $(prometheus --version 2>&1 | head -n 1)"
}

case "${1:-}" in
  install) install ;;
  start)
    install
    svc_kill prometheus
    svc_port_free "$PORT" || { echo "FAIL: 127.0.0.1:$PORT is taken"; exit 1; }
    rm -rf "$DIR/data"; mkdir -p "$DIR/data" "$DIR/targets"
    cat >"$DIR/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['127.0.0.1:$PORT']}]
  - job_name: test-targets
    file_sd_configs: [{files: ['$DIR/targets/*.json'], refresh_interval: 1s}]
YAML
    svc_bg prometheus prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
      --web.listen-address="127.0.0.1:$PORT" --web.enable-lifecycle
    svc_wait prometheus 30 curl -sf "http://127.0.0.1:$PORT/-/ready"
    svc_env RAGPLANE_TEST_PROMETHEUS_URL "http://127.0.0.1:$PORT"
    svc_env RAGPLANE_TEST_PROMETHEUS_BIN "$(command -v prometheus)"
    svc_env RAGPLANE_TEST_PROMETHEUS_TARGETS "$DIR/targets"
    ;;
  stop)
    svc_kill prometheus
    ;;
  *)
    echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
