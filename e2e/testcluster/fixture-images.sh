#!/usr/bin/env bash
# Usage: fixture-images.sh OUTDIR
#
# Writes the images of the production RagCluster's test fixtures as OCI archives to OUTDIR, for
# `ctr -n k8s.io images import`. They are built (mkimage.py, no registry, no Docker) from the
# very programs the process-level tests run, so the pods run what the other tests proved:
#
#   postgres.tar    fixtures.ragplane.test/postgres:1    Debian's PostgreSQL (PGBIN below)
#   redis.tar       fixtures.ragplane.test/redis:1       Debian's redis-server
#   s3.tar          fixtures.ragplane.test/s3:1          s3s-fs (scripts/services/s3.sh)
#   prometheus.tar  fixtures.ragplane.test/prometheus:1  Prometheus with Kubernetes service
#                                                        discovery (build-prometheus.sh; Debian's
#                                                        package has none)
#   ollama.tar      fixtures.ragplane.test/ollama:1      Ollama and Gemma 3 270M
#                                                        (scripts/services/llm.sh)
#   qdrant.tar      fixtures.ragplane.test/qdrant:1      $QDRANT_BIN, only when it is set
#
# Each image has busybox for its shell (and bash where the operator's scripts need it), and
# the shared libraries its programs need (mkimage.py --ldd). The services must be installed
# first (scripts/services/*.sh install, as scripts/test.sh does).
#
# The node has no network, so no registry can serve Ollama's model. The Ollama image carries
# the model the tests import (the same GGUF file, in Ollama's own store under /seed), and its
# `ollama` is a wrapper whose `pull NAME` copies that store into $OLLAMA_MODELS and then asks
# the server to `show` NAME: the pull fails when the model is not the one the image carries.
# Every other command goes to the real binary.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../../scripts/services/lib.sh
source "$ROOT/scripts/services/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$1
mkdir -p "$OUT"
MKIMAGE=$HERE/mkimage.py
PGBIN=/usr/lib/postgresql/15/bin
PGLIB=/usr/lib/postgresql/15/lib
PGSHARE=/usr/share/postgresql/15
S3S=$RAGPLANE_TESTBIN/s3s-fs-0.14.1/bin/s3s-fs
OLLAMA=$RAGPLANE_TESTBIN/ollama-0.17.4/bin/ollama
OLLAMA_MODELS=$RAGPLANE_TESTBIN/ollama-models
LLM_MODEL=gemma3-270m
PROMETHEUS=$(bash "$HERE/build-prometheus.sh" | tail -n 1)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

for f in "$PGBIN/postgres" "$PGBIN/initdb" /usr/bin/redis-server "$PROMETHEUS" "$S3S" \
    "$OLLAMA" /bin/busybox /bin/bash; do
    [[ -x $f ]] || { echo "fixture-images.sh: $f is missing (install the test services first)" >&2; exit 1; }
done

# The users the fixture pods run as (initdb refuses a user it cannot look up).
printf '%s\n' root:x:0:0:root:/root:/bin/sh postgres:x:999:999:postgres:/var/lib/postgresql:/bin/sh \
    qdrant:x:1000:1000:qdrant:/qdrant:/bin/sh nonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh \
    nobody:x:65534:65534:nobody:/nonexistent:/bin/sh >"$WORK/passwd"
printf '%s\n' root:x:0: postgres:x:999: qdrant:x:1000: nonroot:x:65532: nogroup:x:65534: >"$WORK/group"

# The shell and users of every image: busybox with a link per applet.
base_entries() {
    printf '%s\n' "/bin/busybox=/bin/busybox:755" "/tmp/:1777" "$WORK/passwd=/etc/passwd:644" \
        "$WORK/group=/etc/group:644"
    local applet
    for applet in $(/bin/busybox --list); do
        [[ $applet == busybox ]] || printf '%s\n' "/bin/$applet->busybox"
    done
}

# Entries that copy every regular file below directory $1 to the same path.
tree_entries() {
    find "$1" -type f | LC_ALL=C sort | sed 's|.*|&=&|'
}

image() {
    local name=$1; shift
    python3 "$MKIMAGE" "$OUT/$name.tar" "fixtures.ragplane.test/$name:1" "$@"
    echo "fixture image $name: $(du -h "$OUT/$name.tar" | cut -f1)"
}

# PostgreSQL: initdb on first start, with $POSTGRES_PASSWORD for the user postgres and
# scram-sha-256 from every address; then the server. With $POSTGRES_TLS_DIR (server.crt and
# server.key), TLS only: the network lines of pg_hba.conf are `hostssl`.
cat >"$WORK/start-postgres" <<'EOF'
#!/bin/sh
set -e
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
host=host; tls=""
if [ -n "$POSTGRES_TLS_DIR" ]; then
    host=hostssl
    tls="-c ssl=on -c ssl_cert_file=$POSTGRES_TLS_DIR/server.crt -c ssl_key_file=$POSTGRES_TLS_DIR/server.key"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    [ -n "$POSTGRES_PASSWORD" ] || { echo "start-postgres: POSTGRES_PASSWORD is not set" >&2; exit 1; }
    printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/pwfile
    /usr/lib/postgresql/15/bin/initdb -D "$PGDATA" -U postgres -A scram-sha-256 \
        --pwfile=/tmp/pwfile -E UTF8 --locale=C --no-sync
    rm -f /tmp/pwfile
    # Only the local socket stays: initdb's own lines for 127.0.0.1 and ::1 would let plain TCP in.
    grep -v '^host' "$PGDATA/pg_hba.conf" >/tmp/pg_hba.conf
    echo "$host all all all scram-sha-256" >>/tmp/pg_hba.conf
    mv /tmp/pg_hba.conf "$PGDATA/pg_hba.conf"
fi
# $tls is a list of words.
# shellcheck disable=SC2086
exec /usr/lib/postgresql/15/bin/postgres -D "$PGDATA" -c listen_addresses='*' \
    -c unix_socket_directories=/tmp -c max_connections=200 -c fsync=off $tls
EOF
mapfile -t pg < <(
    base_entries
    printf '%s\n' "$PGBIN/postgres=$PGBIN/postgres" "$PGBIN/initdb=$PGBIN/initdb" \
        "$PGBIN/pg_isready=$PGBIN/pg_isready" "$WORK/start-postgres=/usr/local/bin/start-postgres:755" \
        "/usr/share/zoneinfo/UTC=/usr/share/zoneinfo/UTC" "/var/lib/postgresql/:1777"
    # The server's own modules (plpgsql, the text-search dictionaries); not the JIT.
    find "$PGLIB" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' | LC_ALL=C sort | sed 's|.*|&=&|'
    tree_entries "$PGSHARE"
)
image postgres "${pg[@]}" --ldd --env TZ=UTC --env PATH=/usr/local/bin:/bin \
    --entrypoint '["/usr/local/bin/start-postgres"]'

# Redis decides what it is from its program name, so the file goes in as redis-server.
image redis /usr/bin/redis-server=/usr/bin/redis-server:755 --ldd \
    --entrypoint '["/usr/bin/redis-server"]'

mapfile -t s3 < <(base_entries; printf '%s\n' "$S3S=/usr/local/bin/s3s-fs:755")
image s3 "${s3[@]}" --ldd --entrypoint '["/usr/local/bin/s3s-fs"]'

mapfile -t prom < <(base_entries; printf '%s\n' "$PROMETHEUS=/usr/bin/prometheus:755" "/prometheus/:1777")
image prometheus "${prom[@]}" --ldd --workdir /prometheus --entrypoint '["/usr/bin/prometheus"]'

# Ollama with the test model's manifest and blobs under /seed.
manifest=$OLLAMA_MODELS/manifests/registry.ollama.ai/library/$LLM_MODEL/latest
[[ -f $manifest ]] || { echo "fixture-images.sh: no $LLM_MODEL in $OLLAMA_MODELS (run scripts/services/llm.sh install)" >&2; exit 1; }
cat >"$WORK/ollama" <<EOF
#!/bin/sh
# Test fixture: \`pull\` of the model this image carries copies it from /seed (the node has no
# network); then the server must know it. Everything else is the real Ollama.
if [ "\$1" = pull ]; then
    [ "\${2%:latest}" = "$LLM_MODEL" ] || { echo "pull \$2: this fixture image carries only $LLM_MODEL" >&2; exit 1; }
    cp -r /seed/. "\$OLLAMA_MODELS/" && exec /usr/lib/ollama/ollama show "\$2" >/dev/null
fi
exec /usr/lib/ollama/ollama "\$@"
EOF
mapfile -t ollama < <(
    base_entries
    printf '%s\n' "$OLLAMA=/usr/lib/ollama/ollama:755" "$WORK/ollama=/usr/local/bin/ollama:755" \
        "$manifest=/seed/manifests/registry.ollama.ai/library/$LLM_MODEL/latest:644"
    python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
for layer in [m["config"]] + m["layers"]:
    blob = layer["digest"].replace(":", "-")
    print(f"{sys.argv[2]}/blobs/{blob}=/seed/blobs/{blob}:644")' "$manifest" "$OLLAMA_MODELS"
)
image ollama "${ollama[@]}" --ldd --env PATH=/usr/local/bin:/bin \
    --entrypoint '["/usr/local/bin/ollama"]' --cmd '["serve"]'

# Qdrant laid out as its own image is: /qdrant/qdrant, ./entrypoint.sh, bash, UID 1000.
if [[ -n ${QDRANT_BIN:-} && -x ${QDRANT_BIN:-} ]]; then
    printf '#!/bin/sh\nexec ./qdrant "$@"\n' >"$WORK/entrypoint.sh"
    mapfile -t qd < <(
        base_entries
        printf '%s\n' "$QDRANT_BIN=/qdrant/qdrant:755" "$WORK/entrypoint.sh=/qdrant/entrypoint.sh:755" \
            "/bin/bash=/usr/bin/bash:755" "/bin/bash->/usr/bin/bash" "/qdrant/:1777" \
            "/etc/ssl/certs/ca-certificates.crt=/etc/ssl/certs/ca-certificates.crt:644"
    )
    # No telemetry: the node has no network. Qdrant still wants a CA bundle at start.
    image qdrant "${qd[@]}" --ldd --workdir /qdrant --user 1000:1000 \
        --env PATH=/usr/bin:/bin --env QDRANT__TELEMETRY_DISABLED=true \
        --entrypoint '["./entrypoint.sh"]'
else
    echo "fixture image qdrant: skipped, QDRANT_BIN is not set"
fi
