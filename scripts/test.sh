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

step "test servers and services: Debian packages, then builds in the background"
SERVICES="postgres redis s3 prometheus llm qdrant jaeger"
export RAGPLANE_SVC_DIR="$PWD/target/services"
LOGS="$RAGPLANE_SVC_DIR/install"
mkdir -p "$LOGS"
# apt-get takes one lock, so the Debian packages go first and one at a time.
for s in postgres redis prometheus; do bash "scripts/services/$s.sh" install; done
# The real node (containerd, runc, CNI, kube-proxy's iptables, the check pod's busybox, gcc for
# the pause image), the image builds (buildah, mmdebstrap), the web console's browser tests
# (chromium) and the S3 test server's TLS front (stunnel4), before any background job runs apt.
# shellcheck disable=SC1091
source scripts/services/lib.sh
svc_apt containerd runc containernetworking-plugins iptables conntrack busybox-static util-linux \
  iproute2 procps gcc libc6-dev buildah podman mmdebstrap debian-archive-keyring binutils chromium \
  stunnel4
# playwright-core drives chromium in the console's tests (e2e/console, pinned by its lockfile;
# npm's cache makes a rerun instant).
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null ||
  { echo "the console's browser tests need Node.js 20 or newer, with npm" >&2; exit 1; }
(cd e2e/console && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
# The Go builds (the Kubernetes binaries of a real node, etcd, CoreDNS, helm, Ollama, Jaeger, the
# node fixtures' Prometheus) and s3s-fs's cargo build are cached
# by version, so after the first run these finish at once. On a new machine they take most of an
# hour of CPU, so they run beside the workspace's own build rather than before it.
declare -A BUILDS=(
  [testcluster]="bash e2e/testcluster/build.sh --node"
  [helm]="bash e2e/testcluster/build-helm.sh"
  [prometheus-k8s-sd]="bash e2e/testcluster/build-prometheus.sh"
  [llm]="bash scripts/services/llm.sh install"
  [s3]="bash scripts/services/s3.sh install"
  [jaeger]="bash scripts/services/jaeger.sh install"
)
declare -A BUILD_PIDS=()
for b in "${!BUILDS[@]}"; do
  # Each in its own process group, so that an early exit can stop the whole build.
  setsid ${BUILDS[$b]} >"$LOGS/$b.log" 2>&1 &
  BUILD_PIDS[$b]=$!
done
wait_builds() {
  local b failed=0
  for b in "${!BUILD_PIDS[@]}"; do
    if wait "${BUILD_PIDS[$b]}"; then
      grep -h "^built " "$LOGS/$b.log" || true
    else
      echo "FAIL: building $b; the end of $LOGS/$b.log:"; tail -n 40 "$LOGS/$b.log"; failed=1
    fi
  done
  BUILD_PIDS=()
  return $failed
}
stop_services() {
  for p in "${BUILD_PIDS[@]}"; do kill -- "-$p" 2>/dev/null || true; done
  for s in $SERVICES; do bash "scripts/services/$s.sh" stop || true; done
}
trap stop_services EXIT

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
# Every target at once: `cargo test` then only runs what this built. No dev-dependency turns on
# extra features of tokio any more, so after README command 1's `cargo build -p ragplane` this
# build compiles only about twenty more dependencies (the operator's prometheus-http-query asks
# `time` for more features, and the AWS SDK sits above `time`).
cargo build --workspace --locked --all-targets

step "test servers and services: waiting for the builds, then starting on 127.0.0.1"
wait_builds
HELM=$(tail -n 1 "$LOGS/helm.log")
export HELM
"$HELM" lint --strict charts/ragplane
# The chart's alert rules against synthetic series, with Debian prometheus's promtool.
bash scripts/alert-rules.sh
rm -f "$RAGPLANE_SVC_DIR/env.sh"
for s in $SERVICES; do bash "scripts/services/$s.sh" start; done
# shellcheck disable=SC1091
source "$RAGPLANE_SVC_DIR/env.sh"

step "tests"
# Tests that need the model, the API server, helm or a test service fail instead of skipping when it is missing.
export RAGPLANE_REQUIRE_MODEL=1 RAGPLANE_REQUIRE_CLUSTER=1 RAGPLANE_REQUIRE_HELM=1 RAGPLANE_REQUIRE_SERVICES=1
export RAGPLANE_REQUIRE_BROWSER=1
# The dev RagCluster on a real node (e2e/tests/node.rs) needs root; CI runs as root.
if [ "$(id -u)" = 0 ]; then export RAGPLANE_REQUIRE_NODE=1; fi
# Qdrant runs only where a server binary is at hand (QDRANT_BIN, or qdrant on PATH): no package
# registry serves one. cargo test hides a passing test's output, so say here what is skipped.
if [ -z "${QDRANT_URL:-}" ]; then
  echo "SKIPPED: Collection tests against a real Qdrant (collection_against_a_real_qdrant) and vector" \
    "index conformance against Qdrant (qdrant_index_conforms): no Qdrant binary (set QDRANT_BIN)"
fi
if [ -z "${QDRANT_CLUSTER_URL:-}" ]; then
  echo "SKIPPED: Collection replication against a Qdrant cluster" \
    "(collection_replication_against_a_real_qdrant_cluster): no Qdrant binary (set QDRANT_BIN)"
fi
cargo test --workspace --locked --no-fail-fast

step "schemathesis: generated requests against /openapi.json on a running server"
# No 5xx, and every status, content type and body as the schema documents (docs/security.md).
bash scripts/schemathesis.sh "${CARGO_TARGET_DIR:-target}/debug/ragplane"

step "cargo fuzz: the parsers, the chunker and the config loader, 30 s each"
# Nightly and AddressSanitizer, in a build directory of its own (docs/security.md).
bash scripts/fuzz.sh

echo "all checks passed in ${SECONDS}s"
