#!/usr/bin/env bash
# Builds Prometheus from its Go module (e2e/testcluster/prometheus/go.mod) with only the
# Kubernetes service discovery (`-tags remove_all_sd,enable_kubernetes_sd`), for the fixture
# Prometheus of the production RagCluster on the real node: Debian's prometheus package, which
# the process-level tests use, is built without kubernetes_sd_configs. Cached by version; prints
# the binary's path as the last line. Does nothing when it exists.
#
#   RAGPLANE_TESTBIN   cache root (default ~/.cache/ragplane-testbin)
#
# Measured on 2 cores: 24 s of module download and a 90 s build; 76 MB.
set -euo pipefail
VERSION=0.316.0
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEST=${RAGPLANE_TESTBIN:-$HOME/.cache/ragplane-testbin}/prometheus-k8s-sd-$VERSION
if [ ! -x "$DEST/prometheus" ]; then
  command -v go >/dev/null || { echo "error: go is needed to build Prometheus" >&2; exit 1; }
  mkdir -p "$DEST"
  start=$SECONDS
  echo "building Prometheus $VERSION from its Go module (once; cached in $DEST)" >&2
  (cd "$HERE/prometheus" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n 10 \
    go build -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags="-s -w" \
    -o "$DEST/prometheus.tmp" github.com/prometheus/prometheus/cmd/prometheus) >&2
  mv "$DEST/prometheus.tmp" "$DEST/prometheus"
  echo "built Prometheus (Kubernetes SD) in $((SECONDS - start)) s" >&2
fi
echo "$DEST/prometheus"
