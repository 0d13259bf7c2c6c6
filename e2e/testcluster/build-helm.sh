#!/usr/bin/env bash
# Builds helm from its Go module (no registry serves a helm binary here) into a cache directory
# keyed by version, and prints the binary's path as the last line. Does nothing when it exists.
#
#   RAGPLANE_TESTBIN   cache root (default ~/.cache/ragplane-testbin)
set -euo pipefail
HELM_VERSION=v3.22.0
DEST=${RAGPLANE_TESTBIN:-$HOME/.cache/ragplane-testbin}/helm-$HELM_VERSION
if [ ! -x "$DEST/helm" ]; then
  command -v go >/dev/null || { echo "error: go is needed to build helm" >&2; exit 1; }
  mkdir -p "$DEST"
  start=$SECONDS
  echo "building helm $HELM_VERSION from helm.sh/helm/v3 (once; cached in $DEST)" >&2
  GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$DEST" nice -n 10 \
    go install -trimpath -ldflags="-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  echo "built helm in $((SECONDS - start)) s" >&2
fi
echo "$DEST/helm"
