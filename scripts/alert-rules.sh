#!/usr/bin/env bash
# Unit-tests the chart's alert rules with promtool (Debian's prometheus package): renders the
# PrometheusRule with the default values, takes its rule groups, and runs
# charts/ragplane/tests/alerts.test.yaml against them (each alert fires when it should and stays
# quiet when it should not). Also checks the rendered rules with `promtool check rules`.
#
#   HELM=path/to/helm bash scripts/alert-rules.sh
set -euo pipefail
cd "$(dirname "$0")/.."
HELM=${HELM:-helm}
command -v promtool >/dev/null || { echo "promtool is missing: apt-get install prometheus" >&2; exit 1; }
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$HELM" template ragplane charts/ragplane --kube-version 1.37.0 --set prometheusRules.enabled=true \
  --show-only templates/prometheusrule.yaml >"$DIR/prometheusrule.yaml"
# The PrometheusRule's spec is a Prometheus rule file: keep what is under `spec:`, one level up.
awk '/^spec:/ {inside = 1; next} inside && /^[^ ]/ {inside = 0} inside {sub(/^  /, ""); print}' \
  "$DIR/prometheusrule.yaml" >"$DIR/rules.yaml"
cp charts/ragplane/tests/alerts.test.yaml "$DIR/"
promtool check rules "$DIR/rules.yaml"
promtool test rules "$DIR/alerts.test.yaml"
