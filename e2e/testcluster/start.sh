#!/usr/bin/env bash
# Usage: start.sh DIR
#
# Starts etcd and kube-apiserver on 127.0.0.1 (free ports picked at run time),
# with everything they need (certificates, keys, data, logs) inside DIR, and
# waits until the API server is ready. Writes:
#
#   DIR/kubeconfig   admin kubeconfig (client certificate in group system:masters,
#                    all credentials embedded)
#   DIR/env          KEY=VALUE lines, shell-sourceable (see README.md)
#
# No kubelet, scheduler or controller-manager runs: objects are stored and
# validated, but nothing reconciles them (e.g. Deployment status stays empty
# until a test patches it through the status subresource).
#
# Environment:
#   RAGPLANE_TESTBIN       binary cache root (see build.sh)
#   START_TIMEOUT          seconds to wait for readiness (default 90)
#   OWNER_PID              if set, the cluster is stopped (DIR kept) once this
#                          process exits, so a crashed test run leaks nothing
#   KUBE_APISERVER_ARGS    extra kube-apiserver flags (word-split)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
# env is KEY=VALUE without quoting, so keep paths simple.
if [[ $DIR =~ [[:space:]] ]]; then
    echo "start.sh: DIR must not contain whitespace: $DIR" >&2
    exit 2
fi
if [[ -e $DIR/env ]]; then
    echo "start.sh: $DIR already holds a cluster (stop it with stop.sh first)" >&2
    exit 2
fi
# Lets stop.sh check that it deletes a directory made by this script.
touch "$DIR/.ragplane-testcluster"

T0=$(date +%s.%N)
elapsed() { awk -v t0="$T0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }
log() { printf '[start.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

BIN=$("$HERE/build.sh" | tail -n1)
TIMEOUT=${START_TIMEOUT:-90}

# --------------------------------------------------------------- credentials
PKI=$DIR/pki
mkdir -p "$PKI"
# shellcheck source=pki.sh
source "$HERE/pki.sh"
(
    cd "$PKI"
    pki_ca ca "/CN=ragplane-testcluster-ca"
    pki_sign ca apiserver "/CN=kube-apiserver" \
        "$(printf '%s\n' "extendedKeyUsage=serverAuth" \
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc")"
    # Group (O) system:masters: superuser, bypasses RBAC.
    pki_sign ca admin "/O=system:masters/CN=ragplane-admin" "extendedKeyUsage=clientAuth"
    # Service-account token signing key pair.
    pki_key sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    # A bearer token for the same superuser, for tools that prefer tokens.
    pki_admin_token
)
ADMIN_TOKEN=$(cat "$PKI/admin.token")

# ----------------------------------------------------------------- processes
free_ports() { # prints N currently free TCP ports on 127.0.0.1
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

kill_started() {
    local pid
    for pid in ${API_PID:-} ${ETCD_PID:-}; do
        if alive "$pid"; then
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$DIR/etcd.pid" "$DIR/kube-apiserver.pid"
    API_PID='' ETCD_PID=''
}

show_logs() {
    local f
    for f in "$DIR/etcd.log" "$DIR/kube-apiserver.log"; do
        [[ -f $f ]] || continue
        echo "----- last 40 lines of $f -----" >&2
        tail -n 40 "$f" >&2
    done
}

# The ports are free when picked but could be taken before the servers bind
# them (another cluster starting in parallel), so a bind failure is retried.
port_clash() { grep -qs "address already in use" "$DIR/etcd.log" "$DIR/kube-apiserver.log"; }

start_once() {
    read -r ETCD_PORT PEER_PORT API_PORT < <(free_ports 3)
    rm -rf "$DIR/etcd"
    : >"$DIR/etcd.log"
    : >"$DIR/kube-apiserver.log"

    "$BIN/etcd" \
        --name=testcluster \
        --data-dir="$DIR/etcd" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
        --initial-cluster="testcluster=http://127.0.0.1:$PEER_PORT" \
        --unsafe-no-fsync \
        --log-level=warn \
        </dev/null >>"$DIR/etcd.log" 2>&1 &
    ETCD_PID=$!
    echo "$ETCD_PID" >"$DIR/etcd.pid"

    # The API server retries etcd until it answers, so both start at once.
    # shellcheck disable=SC2086 # KUBE_APISERVER_ARGS is meant to be split
    "$BIN/kube-apiserver" \
        --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 \
        --secure-port="$API_PORT" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --tls-cert-file="$PKI/apiserver.crt" \
        --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --token-auth-file="$PKI/tokens.csv" \
        --authorization-mode=RBAC \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$PKI/sa.pub" \
        --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range=10.96.0.0/16 \
        --allow-privileged=true \
        --endpoint-reconciler-type=none \
        --disable-admission-plugins=ServiceAccount \
        --profiling=false \
        --v=1 \
        ${KUBE_APISERVER_ARGS:-} \
        </dev/null >>"$DIR/kube-apiserver.log" 2>&1 &
    API_PID=$!
    echo "$API_PID" >"$DIR/kube-apiserver.pid"
    # Notes on the flags above:
    # --endpoint-reconciler-type=none: Endpoints may not hold loopback
    #   addresses, so publishing 127.0.0.1 for the "kubernetes" Service would
    #   only log errors.
    # --disable-admission-plugins=ServiceAccount: no controller-manager creates
    #   the "default" ServiceAccount, which that plugin requires for every Pod.

    local url="https://127.0.0.1:$API_PORT" deadline=$((SECONDS + TIMEOUT))
    local curl_auth=(--silent --max-time 2 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN")
    while :; do
        if ! alive "$ETCD_PID" || ! alive "$API_PID"; then
            port_clash && return 3
            log "etcd or kube-apiserver exited during startup"
            return 1
        fi
        # /readyz covers etcd, the RBAC bootstrap and the other post-start
        # hooks; the system namespaces are created just after, asynchronously.
        if [[ $(curl "${curl_auth[@]}" "$url/readyz" 2>/dev/null) == ok ]] &&
            curl "${curl_auth[@]}" --fail -o /dev/null "$url/api/v1/namespaces/default" 2>/dev/null; then
            API_URL=$url
            return 0
        fi
        if ((SECONDS >= deadline)); then
            log "kube-apiserver not ready after ${TIMEOUT}s"
            return 1
        fi
        sleep 0.1
    done
}

trap 'kill_started; show_logs' ERR
trap 'kill_started; exit 130' INT TERM
for attempt in 1 2 3; do
    rc=0
    start_once || rc=$?
    [[ $rc == 0 ]] && break
    kill_started
    if [[ $rc == 3 && $attempt -lt 3 ]]; then
        log "port already taken; retrying with new ports"
        continue
    fi
    show_logs
    trap - ERR INT TERM
    exit 1
done

# ------------------------------------------------------------------- outputs
b64() { base64 -w0 <"$1"; }
cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testcluster
  cluster:
    server: $API_URL
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: testcluster
  context:
    cluster: testcluster
    user: admin
    namespace: default
current-context: testcluster
EOF
chmod 600 "$DIR/kubeconfig"

WATCHDOG_PID=
if [[ -n ${OWNER_PID:-} ]]; then
    # Stops the cluster (keeping DIR) when the owner goes away without
    # calling stop.sh. Detached from our stdout so callers reading it see EOF.
    (
        # stop.sh removes kube-apiserver.pid, which ends this loop too.
        while kill -0 "$OWNER_PID" 2>/dev/null && [[ -e $DIR/kube-apiserver.pid ]]; do sleep 1; done
        if [[ -e $DIR/kube-apiserver.pid ]]; then KEEP=1 "$HERE/stop.sh" "$DIR"; fi
    ) </dev/null >>"$DIR/watchdog.log" 2>&1 &
    WATCHDOG_PID=$!
    echo "$WATCHDOG_PID" >"$DIR/watchdog.pid"
fi

# Written last: its presence means "cluster is up".
cat >"$DIR/env.tmp" <<EOF
KUBECONFIG=$DIR/kubeconfig
KUBE_APISERVER_URL=$API_URL
KUBE_APISERVER_PID=$API_PID
ETCD_URL=http://127.0.0.1:$ETCD_PORT
ETCD_PID=$ETCD_PID
WATCHDOG_PID=$WATCHDOG_PID
CA_FILE=$PKI/ca.crt
ADMIN_TOKEN=$ADMIN_TOKEN
KUBECTL=$BIN/kubectl
TESTCLUSTER_BIN=$BIN
TESTCLUSTER_DIR=$DIR
EOF
mv "$DIR/env.tmp" "$DIR/env"
trap - ERR INT TERM

log "cluster ready in $(elapsed)s: $API_URL (KUBECONFIG=$DIR/kubeconfig)"
