#!/usr/bin/env bash
# Usage: start-node.sh DIR
#
# Starts a real single-node Kubernetes cluster on this machine: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd (+runc,
# CNI bridge), kubelet and kube-proxy, plus CoreDNS as a Deployment in
# kube-system. Pods really run. Waits until the node is Ready, CoreDNS is
# Ready and a pod resolves kubernetes.default.svc.cluster.local and reaches
# the kubernetes and kube-dns ClusterIP Services. Writes:
#
#   DIR/kubeconfig   admin kubeconfig (system:masters), server https://127.0.0.1:PORT
#   DIR/env          KEY=VALUE lines, shell-sourceable (see README.md)
#   DIR/exec         runs a command in the node's network namespace
#                    (pod and Service IPs are reachable only there)
#
# Isolation: every node component runs inside a network namespace made here
# (ip netns add ragplane-node-ID), so pod IPs, the CNI bridge, kube-proxy's
# iptables rules and Service ClusterIPs exist only there; the host sees only
# 127.0.0.1:PORT, forwarded into the namespace to the API server. The daemons
# also share a private mount namespace (kubelet and containerd mounts stay
# out of the host's mount table) and one cgroup tree,
# /ragplane-testcluster/node-ID, that stop.sh kills and removes.
#
# Needs root. Must run on cgroup v1 or v2 without systemd managing the
# cgroup tree for it (cgroupfs driver).
#
# Environment:
#   RAGPLANE_TESTBIN     binary cache root (see build.sh)
#   START_TIMEOUT        seconds to wait for each stage (default 300)
#   OWNER_PID            if set, the cluster is stopped (DIR kept) once this
#                        process exits, so a crashed test run leaks nothing
#   NODE_PVS             number of local PersistentVolumes to pre-create
#                        (default 0; see pv.sh)
#   KUBE_APISERVER_ARGS  extra kube-apiserver flags (word-split)
#   KUBELET_ARGS         extra kubelet flags (word-split)
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
if [[ $(id -u) != 0 ]]; then
    echo "start-node.sh: must run as root (network namespaces, cgroups, containerd)" >&2
    exit 2
fi
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
if [[ $DIR =~ [[:space:]] ]]; then
    echo "start-node.sh: DIR must not contain whitespace: $DIR" >&2
    exit 2
fi
# Unix sockets live below DIR (containerd, kubelet's plugin and pod-resources
# sockets); a socket path may have at most 107 bytes.
if ((${#DIR} > 64)); then
    echo "start-node.sh: DIR is too long for the unix sockets below it (${#DIR} > 64 characters): $DIR" >&2
    exit 2
fi
if [[ -e $DIR/env || -e $DIR/node.state ]]; then
    echo "start-node.sh: $DIR already holds a cluster (stop it with stop.sh first)" >&2
    exit 2
fi
touch "$DIR/.ragplane-testcluster"
# Left over from an earlier cluster in DIR that was stopped with KEEP=1.
rm -rf "$DIR"/{etcd,containerd,kubelet,cni,pod-logs,volumes,config,pki,logs,kubectl-cache} \
    "$DIR"/{kubeconfig,kubeconfig.tmp,exec,.stopping} "$DIR"/*.pid

T0=$(date +%s.%N)
elapsed() { awk -v t0="$T0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }
log() { printf '[start-node.sh %s +%ss] %s\n' "$(date +%H:%M:%S)" "$(elapsed)" "$*" >&2; }

BIN=$("$HERE/build.sh" --node | tail -n1)
CACHE=${RAGPLANE_TESTBIN:-$HOME/.cache/ragplane-testbin}
# shellcheck source=node-versions.sh
source "$HERE/node-versions.sh"
CNI_BIN=$(cni_bin_dir)
TIMEOUT=${START_TIMEOUT:-300}
log "binaries ready: $BIN"

# ------------------------------------------------------------------ layout
ID=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
NETNS=ragplane-node-$ID
NETNS_PATH=/run/netns/$NETNS
CG_REL=ragplane-testcluster/node-$ID # below the root of every cgroup hierarchy
NODE_NAME=ragplane-node
NODE_IP=10.200.0.2                   # on interface node0 in the namespace
POD_CIDR=10.244.0.0/24               # this node's pods (CNI bridge cni0)
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_SVC_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
CONTAINERD_ADDRESS=$DIR/containerd/containerd.sock
# Host-wide state shared by all nodes on this machine (the sysctls kubelet
# changes, the parent cgroup), guarded by one lock.
HOST_STATE=/run/ragplane-testcluster

mkdir -p "$DIR/logs" "$DIR/config" "$HOST_STATE"
DAEMONS=() # names of the processes started so far (DIR/NAME.pid)

# Written first: stop.sh finds everything to undo from it, even after a
# start that failed half-way.
cat >"$DIR/node.state" <<EOF
ID=$ID
NETNS=$NETNS
CG_REL=$CG_REL
HOST_STATE=$HOST_STATE
EOF

show_logs() {
    local f
    for f in "$DIR"/logs/*.log; do
        [[ -s $f ]] || continue
        echo "----- last 25 lines of $f -----" >&2
        tail -n 25 "$f" >&2
    done
}
MAIN_PID=$$
fail() {
    # In a subshell (set -E passes the trap down): leave it to the parent.
    [[ $BASHPID == "$MAIN_PID" ]] || exit 1
    log "FAILED: $*"
    trap - ERR INT TERM
    show_logs
    KEEP=1 "$HERE/stop.sh" "$DIR" >&2 || true
    log "stopped what was started; logs kept in $DIR/logs"
    exit 1
}
trap 'fail "command failed at line $LINENO"' ERR
trap 'fail "interrupted"' INT TERM

# wait_for WHAT CMD...: polls CMD (every 0.5 s) until it succeeds.
wait_for() {
    local what=$1 deadline=$((SECONDS + TIMEOUT))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "timed out after ${TIMEOUT}s waiting for $what"
        check_daemons
        sleep 0.5
    done
}

# ------------------------------------------------------------- credentials
PKI=$DIR/pki
mkdir -p "$PKI"
# shellcheck source=pki.sh
source "$HERE/pki.sh"
(
    cd "$PKI"
    pki_ca ca "/CN=ragplane-testcluster-ca"
    sign() { pki_sign ca "$@"; }
    client() { sign "$1" "$2" "extendedKeyUsage=clientAuth"; }
    sign apiserver "/CN=kube-apiserver" "$(printf '%s\n' "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,DNS:localhost,DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN")"
    sign kubelet-server "/CN=$NODE_NAME" "$(printf '%s\n' "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE_NAME")"
    client admin "/O=system:masters/CN=ragplane-admin"
    # The API server's client certificate towards kubelets (logs, exec,
    # port-forward): authorised by kubelet's webhook against RBAC.
    client apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    client controller-manager "/CN=system:kube-controller-manager"
    client scheduler "/CN=system:kube-scheduler"
    client kube-proxy "/CN=system:kube-proxy"
    # Node authorizer + NodeRestriction: the CN must name this node.
    client kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
    pki_key sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    # Front proxy (API aggregation, and the request-header client CA that
    # controller-manager and scheduler read from the
    # extension-apiserver-authentication ConfigMap), as kubeadm sets it up:
    # its own CA.
    pki_ca front-proxy-ca "/CN=ragplane-testcluster-front-proxy-ca"
    pki_sign front-proxy-ca front-proxy-client "/CN=front-proxy-client" "extendedKeyUsage=clientAuth"
    pki_admin_token
)
ADMIN_TOKEN=$(cat "$PKI/admin.token")

# API server port: the same number on the host's 127.0.0.1 (forward.py) and
# inside the namespace (kube-apiserver itself), so one kubeconfig works in both.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
API_PORT=$(free_port)
API_URL=https://127.0.0.1:$API_PORT

b64() { base64 -w0 <"$1"; }
kubeconfig() { # FILE CERT-NAME
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testcluster
  cluster:
    server: $API_URL
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: user
  user:
    client-certificate-data: $(b64 "$PKI/$2.crt")
    client-key-data: $(b64 "$PKI/$2.key")
contexts:
- name: testcluster
  context:
    cluster: testcluster
    user: user
    namespace: default
current-context: testcluster
EOF
    chmod 600 "$1"
}
for c in controller-manager scheduler kube-proxy kubelet; do
    kubeconfig "$DIR/config/$c.kubeconfig" "$c"
done
kubeconfig "$DIR/kubeconfig.tmp" admin # renamed to kubeconfig once up
export KUBECONFIG=$DIR/kubeconfig.tmp
# kubectl's discovery cache: in DIR, not in ~/.kube (each node has its own port).
export KUBECACHEDIR=$DIR/kubectl-cache
k() { "$BIN/kubectl" --request-timeout=20s "$@"; }

# ------------------------------------------------------- host-wide state
# kubelet sets these sysctls at start (container_manager_linux.go,
# setupKernelTunables). They are not per network namespace, so the values
# from before the first node started are saved once and put back when the
# last node on this machine stops (see stop-node.sh).
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
CG_MOUNTS=()
while read -r _ mnt fstype _; do
    [[ $fstype == cgroup || $fstype == cgroup2 ]] && CG_MOUNTS+=("$mnt")
done </proc/self/mounts
CGROUP_V2=0
[[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]] && CGROUP_V2=1
(
    flock 9
    if [[ ! -s $HOST_STATE/sysctl.saved ]]; then
        for s in "${KUBELET_SYSCTLS[@]}"; do
            echo "$s=$(sysctl -n "$s")"
        done >"$HOST_STATE/sysctl.saved.tmp"
        mv "$HOST_STATE/sysctl.saved.tmp" "$HOST_STATE/sysctl.saved"
    fi
    mkdir -p "$HOST_STATE/nodes"
    echo "$DIR" >"$HOST_STATE/nodes/$ID"

    # The node's cgroup tree: CG_REL in every hierarchy, with "daemons" for
    # the node's processes; kubelet puts pods in CG_REL/kubepods.
    for m in "${CG_MOUNTS[@]}"; do
        path=$m
        for part in ${CG_REL//\// } daemons; do
            path=$path/$part
            [[ -d $path ]] && continue
            mkdir "$path"
            # A new v1 cpuset cgroup starts with no CPUs and no memory nodes.
            if [[ -e $path/cpuset.cpus && -z $(cat "$path/cpuset.cpus") ]]; then
                cat "$(dirname "$path")/cpuset.cpus" >"$path/cpuset.cpus"
                cat "$(dirname "$path")/cpuset.mems" >"$path/cpuset.mems"
            fi
        done
    done
    if ((CGROUP_V2)); then
        # Delegate the controllers kubelet needs down to the node's cgroup.
        # (Not exercised on this project's CI machines, which are cgroup v1.)
        path=/sys/fs/cgroup
        for part in ${CG_REL//\// } ''; do
            read -ra controllers <"$path/cgroup.controllers"
            for c in "${controllers[@]}"; do
                echo "+$c" >"$path/cgroup.subtree_control" 2>/dev/null || true
            done
            if [[ -n $part ]]; then path=$path/$part; fi
        done
    fi
) 9>"$HOST_STATE/lock"

# cg_enter PID: moves PID into the node's daemon cgroup.
cg_enter() {
    local m
    for m in "${CG_MOUNTS[@]}"; do
        echo "$1" >"$m/$CG_REL/daemons/cgroup.procs"
    done
}

# ---------------------------------------------------------------- network
# The node's network namespace: loopback, and an interface "node0" carrying
# the node IP (kubelet's InternalIP, the API server's advertised address) with
# a default route into it, so Service ClusterIPs are routable from the node
# itself as on a real node. node0 is a bridge without ports (this kernel has
# no dummy driver): it only carries the address. Nothing connects the
# namespace to the host's network.
ip netns add "$NETNS"
nsx() { nsenter --net="$NETNS_PATH" -- "$@"; }
nsx ip link set lo up
nsx ip link add node0 type bridge
nsx ip addr add "$NODE_IP/32" dev node0
nsx ip link set node0 up
nsx ip route add default dev node0
# Routing between pods and Services (kube-proxy DNATs on the node), and
# bridged pod-to-pod traffic through iptables so a reply from a Service's pod
# to a pod on the same bridge is un-NATed (br_netfilter; per namespace).
nsx sysctl -qw net.ipv4.ip_forward=1
nsx sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
    log "warning: net.bridge.bridge-nf-call-iptables is not available in the namespace (br_netfilter missing?)"

# A process that holds the node's private mount namespace, inside the network
# namespace. Every daemon joins both (nsenter -t HOLDER -m -n), so kubelet's
# volume mounts are visible to containerd and nothing leaks to the host.
# Fresh tmpfs over /run (containerd shim sockets, runc state, pod network
# namespaces, the iptables lock), /var/log (kubelet's /var/log/containers
# links) and /var/lib/cni (the CNI result cache): paths the components use
# without a setting to move them.
mkdir -p /var/lib/cni
(
    cg_enter "$BASHPID"
    exec unshare --mount --propagation slave -- nsenter --net="$NETNS_PATH" -- /bin/sh -c '
        mount -t tmpfs -o mode=755,size=64m node-run /run &&
        mount -t tmpfs -o mode=755,size=64m node-log /var/log &&
        mount -t tmpfs -o mode=755,size=16m node-cni /var/lib/cni &&
        echo ready && exec sleep infinity'
) </dev/null >"$DIR/logs/holder.log" 2>&1 &
HOLDER_PID=$!
disown
echo "$HOLDER_PID" >"$DIR/holder.pid"
for _ in $(seq 100); do
    grep -q ready "$DIR/logs/holder.log" && break
    kill -0 "$HOLDER_PID" 2>/dev/null || fail "namespace holder exited: $(cat "$DIR/logs/holder.log")"
    sleep 0.05
done
grep -q ready "$DIR/logs/holder.log" || fail "namespace holder not ready"

# launch NAME CMD...: runs CMD in the node's namespaces and cgroup, logging
# to DIR/logs/NAME.log; its pid goes to DIR/NAME.pid.
launch() {
    local name=$1
    shift
    (
        cg_enter "$BASHPID"
        exec nsenter -t "$HOLDER_PID" -m -n -- "$@"
    ) </dev/null >>"$DIR/logs/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
    disown
    DAEMONS+=("$name")
}
check_daemons() {
    local name
    for name in "${DAEMONS[@]}"; do
        kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null || fail "$name exited (see $DIR/logs/$name.log)"
    done
}
log "namespaces ready: netns $NETNS, cgroup /$CG_REL"

# ------------------------------------------------- etcd and the API server
# The forwarder takes the host port first; if another process got it since
# free_port, pick again.
for attempt in 1 2 3; do
    (
        cg_enter "$BASHPID"
        exec python3 "$HERE/forward.py" "$NETNS_PATH" "$API_PORT"
    ) </dev/null >"$DIR/logs/forward.log" 2>&1 &
    echo $! >"$DIR/forward.pid"
    disown
    for _ in $(seq 100); do
        grep -q -- '->' "$DIR/logs/forward.log" && break
        kill -0 "$(cat "$DIR/forward.pid")" 2>/dev/null || break
        sleep 0.05
    done
    grep -q -- '->' "$DIR/logs/forward.log" && break
    ((attempt < 3)) || fail "forward.py did not start: $(cat "$DIR/logs/forward.log")"
    API_PORT=$(free_port)
    API_URL=https://127.0.0.1:$API_PORT
    for c in controller-manager scheduler kube-proxy kubelet; do
        kubeconfig "$DIR/config/$c.kubeconfig" "$c"
    done
    kubeconfig "$DIR/kubeconfig.tmp" admin
done
DAEMONS+=(forward)

launch etcd "$BIN/etcd" \
    --name=node \
    --data-dir="$DIR/etcd" \
    --listen-client-urls=http://127.0.0.1:2379 \
    --advertise-client-urls=http://127.0.0.1:2379 \
    --listen-peer-urls=http://127.0.0.1:2380 \
    --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=node=http://127.0.0.1:2380 \
    --listen-metrics-urls=http://127.0.0.1:2381 \
    --unsafe-no-fsync \
    --log-level=warn

# shellcheck disable=SC2086 # KUBE_APISERVER_ARGS is meant to be split
launch kube-apiserver "$BIN/kube-apiserver" \
    --bind-address=0.0.0.0 \
    --secure-port="$API_PORT" \
    --advertise-address="$NODE_IP" \
    --etcd-servers=http://127.0.0.1:2379 \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --token-auth-file="$PKI/tokens.csv" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --allow-privileged=true \
    --profiling=false \
    --v=1 \
    ${KUBE_APISERVER_ARGS:-}
# Notes:
# - Admission: the default plugin set (NamespaceLifecycle, LimitRanger,
#   ServiceAccount, PodSecurity, DefaultStorageClass, ResourceQuota, …) plus
#   NodeRestriction. Pod Security admission is on, so a namespace labelled
#   pod-security.kubernetes.io/enforce=restricted is enforced.
# - --kubelet-preferred-address-types: the node's Hostname does not resolve,
#   its InternalIP (NODE_IP) does.
# - The "kubernetes" Service's endpoint is NODE_IP:API_PORT (lease
#   reconciler), reachable from pods through kube-proxy.

curl_api() { curl --silent --max-time 2 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$@"; }
api_ready() {
    [[ $(curl_api "$API_URL/readyz") == ok ]] &&
        curl_api --fail -o /dev/null "$API_URL/api/v1/namespaces/kube-system"
}
wait_for "kube-apiserver /readyz" api_ready
log "kube-apiserver ready: $API_URL"

launch kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$DIR/config/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$DIR/config/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$DIR/config/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port=10257 \
    --cluster-name=testcluster \
    --cluster-signing-cert-file="$PKI/ca.crt" \
    --cluster-signing-key-file="$PKI/ca.key" \
    --root-ca-file="$PKI/ca.crt" \
    --service-account-private-key-file="$PKI/sa.key" \
    --use-service-account-credentials=true \
    --controllers='*,bootstrapsigner,tokencleaner' \
    --allocate-node-cidrs=true \
    --cluster-cidr="$CLUSTER_CIDR" \
    --node-cidr-mask-size=24 \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --leader-elect=true \
    --profiling=false \
    --v=1
# Notes: "*" is every default controller: deployment/replicaset, garbage
# collector, namespace, serviceaccount + token, PV binder + attach/detach,
# endpoints/endpointslice, node lifecycle + IPAM, job/cronjob, statefulset,
# daemonset, root-ca-cert-publisher (kube-root-ca.crt for projected SA
# tokens), …; --use-service-account-credentials runs each under its own
# ServiceAccount as kubeadm clusters do.

launch kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$DIR/config/scheduler.kubeconfig" \
    --authentication-kubeconfig="$DIR/config/scheduler.kubeconfig" \
    --authorization-kubeconfig="$DIR/config/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port=10259 \
    --leader-elect=true \
    --profiling=false \
    --v=1

# Cluster add-ons: CoreDNS and the local StorageClass. Applied now; they run
# once the node is up.
sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@DNS_SVC_IP@|$DNS_SVC_IP|g" \
    -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" "$HERE/node/addons.yaml" >"$DIR/config/addons.yaml"
k apply -f "$DIR/config/addons.yaml" >"$DIR/logs/addons.log" 2>&1 || fail "applying add-ons: $(cat "$DIR/logs/addons.log")"

# ------------------------------------------------------------- containerd
mkdir -p "$DIR/containerd" "$DIR/cni/net.d" "$DIR/cni/ipam" "$DIR/kubelet" "$DIR/pod-logs" "$DIR/volumes"
cat >"$DIR/config/containerd.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_ADDRESS"

[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # Built here and imported at start; nothing is ever pulled.
  sandbox_image = "$PAUSE_IMAGE"
  # The machine forbids negative oom_score_adj (no CAP_SYS_RESOURCE): without
  # this, runc fails with "can't get final child's PID from pipe: EOF" as
  # soon as kubelet asks for -998 (pause) or -997 (Guaranteed pods).
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # kubelet's cgroupDriver is cgroupfs (no systemd here).
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$DIR/cni/net.d"
    max_conf_num = 1
EOF
cat >"$DIR/cni/net.d/10-ragplane.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "ragplane",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
launch containerd containerd --config "$DIR/config/containerd.toml" --log-level warn
CTR=(ctr --address "$CONTAINERD_ADDRESS" --namespace k8s.io)
wait_for "containerd" "${CTR[@]}" version
for img in "$IMAGES_DIR/pause-$PAUSE_VERSION.tar" "$IMAGES_DIR/coredns-$COREDNS_VERSION.tar" \
    "$IMAGES_DIR/busybox-$BUSYBOX_VERSION.tar"; do
    "${CTR[@]}" images import "$img" >>"$DIR/logs/images.log" 2>&1 || fail "importing $img: $(tail -3 "$DIR/logs/images.log")"
done
log "containerd ready, images imported"

# ---------------------------------------------------------------- kubelet
HARD_NOFILE=$(ulimit -Hn)
[[ $HARD_NOFILE == unlimited ]] && HARD_NOFILE=1048576
: >"$DIR/config/resolv.conf"
cat >"$DIR/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CONTAINERD_ADDRESS
# No systemd: cgroupfs. containerd 1.6 does not answer the RuntimeConfig CRI
# call, so kubelet falls back to this setting (and logs that it does).
cgroupDriver: cgroupfs
# Kubelet >= 1.35 refuses to start on cgroup v1 unless told otherwise.
failCgroupV1: false
cgroupRoot: /$CG_REL
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
clusterDNS: [$DNS_SVC_IP]
clusterDomain: $CLUSTER_DOMAIN
# An empty file: pods get only the cluster DNS, not the host's resolvers
# (nothing outside is reachable from the namespace anyway).
resolvConf: $DIR/config/resolv.conf
podLogsDir: $DIR/pod-logs
# Root lacks CAP_SYS_RESOURCE: rlimits cannot go above the hard limit, and
# oom_score_adj cannot go negative (kubelet then only logs a warning).
maxOpenFiles: $HARD_NOFILE
oomScoreAdj: 0
failSwapOn: false
# Images cannot be pulled again: never garbage-collect them, and keep the
# host's disk usage from tainting the node.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
EOF
# shellcheck disable=SC2086 # KUBELET_ARGS is meant to be split
launch kubelet "$BIN/kubelet" \
    --config="$DIR/config/kubelet.yaml" \
    --kubeconfig="$DIR/config/kubelet.kubeconfig" \
    --root-dir="$DIR/kubelet" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --v=1 \
    ${KUBELET_ARGS:-}

cat >"$DIR/config/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $DIR/config/kube-proxy.kubeconfig
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $CLUSTER_CIDR
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
# NodePorts on the node IP (and 127.0.0.1), not on every local address.
nodePortAddresses: [primary]
conntrack:
  # nf_conntrack_max and the hash size are global (not per namespace): leave
  # them, and the per-namespace timeouts, as they are.
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
launch kube-proxy "$BIN/kube-proxy" --config="$DIR/config/kube-proxy.yaml" --v=1

node_ready() {
    [[ $(k get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
wait_for "node $NODE_NAME Ready" node_ready
log "node $NODE_NAME Ready"

coredns_ready() {
    [[ $(k -n kube-system get deployment coredns -o 'jsonpath={.status.readyReplicas}') == 1 ]]
}
wait_for "CoreDNS Ready" coredns_ready
log "CoreDNS Ready"

# -------------------------------------------------------------- self-check
# A pod resolves the API server's Service name through CoreDNS (UDP to the
# kube-dns ClusterIP, through kube-proxy's rules) and fetches CoreDNS's
# metrics over TCP through the same ClusterIP. (CoreDNS being Ready already
# shows that a pod reaches the API server through the kubernetes Service:
# its kubernetes plugin lists and watches through 10.96.0.1.) The image's
# busybox wget cannot speak TLS with the API server (handshake failure), so
# plain HTTP is used.
kubectl_check_pod() {
    k -n kube-system apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: node-check
  namespace: kube-system
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: check
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      set -e
      # kube-proxy programs kube-dns's endpoints a moment after CoreDNS turns Ready.
      i=0
      until nslookup kubernetes.default.svc.$CLUSTER_DOMAIN; do
        i=\$((i + 1)); [ "\$i" -lt 30 ] || exit 1; sleep 1
      done
      timeout 10 wget -q -O- http://kube-dns.kube-system.svc.$CLUSTER_DOMAIN:9153/metrics | grep -q '^coredns_build_info'
      echo node-check-ok
EOF
}
kubectl_check_pod >"$DIR/logs/node-check.log" 2>&1 || fail "creating the check pod: $(cat "$DIR/logs/node-check.log")"
check_phase() { k -n kube-system get pod node-check -o 'jsonpath={.status.phase}'; }
check_done() { [[ $(check_phase) == @(Succeeded|Failed) ]]; }
wait_for "the check pod (DNS and ClusterIP from a pod)" check_done
k -n kube-system logs node-check >>"$DIR/logs/node-check.log" 2>&1 || true
[[ $(check_phase) == Succeeded ]] || fail "check pod failed: $(tail -n 20 "$DIR/logs/node-check.log")"
k -n kube-system delete pod node-check --wait=false >/dev/null
log "a pod resolved kubernetes.default.svc.$CLUSTER_DOMAIN and reached kube-dns through its ClusterIP"

# Optional pre-created PersistentVolumes (see pv.sh).
for i in $(seq 1 "${NODE_PVS:-0}"); do
    KUBECTL=$BIN/kubectl NODE_NAME=$NODE_NAME "$HERE/pv.sh" "$DIR" "pv-$i" >/dev/null
done

# ---------------------------------------------------------------- outputs
mv "$DIR/kubeconfig.tmp" "$DIR/kubeconfig"
cat >"$DIR/exec" <<EOF
#!/bin/sh
# Runs a command in the network namespace of the node in $DIR, where pod
# IPs and Service ClusterIPs are reachable: $DIR/exec curl http://10.96.x.y/
exec nsenter --net=$NETNS_PATH -- "\$@"
EOF
chmod +x "$DIR/exec"

WATCHDOG_PID=
if [[ -n ${OWNER_PID:-} ]]; then
    # Stops the cluster (keeping DIR) when the owner goes away without
    # calling stop.sh. Not in the node's cgroup, which stop.sh kills.
    (
        while kill -0 "$OWNER_PID" 2>/dev/null && [[ -e $DIR/node.state && ! -e $DIR/.stopping ]]; do sleep 1; done
        if [[ -e $DIR/node.state && ! -e $DIR/.stopping ]]; then KEEP=1 "$HERE/stop.sh" "$DIR"; fi
    ) </dev/null >>"$DIR/logs/watchdog.log" 2>&1 &
    WATCHDOG_PID=$!
    echo "$WATCHDOG_PID" >"$DIR/watchdog.pid"
fi

cat >"$DIR/env.tmp" <<EOF
TESTCLUSTER_MODE=node
KUBECONFIG=$DIR/kubeconfig
KUBE_APISERVER_URL=$API_URL
KUBE_APISERVER_PID=$(cat "$DIR/kube-apiserver.pid")
ETCD_URL=http://127.0.0.1:2379
ETCD_PID=$(cat "$DIR/etcd.pid")
WATCHDOG_PID=$WATCHDOG_PID
CA_FILE=$PKI/ca.crt
ADMIN_TOKEN=$ADMIN_TOKEN
KUBECTL=$BIN/kubectl
TESTCLUSTER_BIN=$BIN
TESTCLUSTER_DIR=$DIR
KUBECACHEDIR=$KUBECACHEDIR
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
NETNS=$NETNS
NETNS_PATH=$NETNS_PATH
NODE_EXEC=$DIR/exec
POD_CIDR=$POD_CIDR
SERVICE_CIDR=$SERVICE_CIDR
CLUSTER_DNS=$DNS_SVC_IP
CLUSTER_DOMAIN=$CLUSTER_DOMAIN
CONTAINERD_ADDRESS=$CONTAINERD_ADDRESS
CONTAINERD_NAMESPACE=k8s.io
CTR=$(command -v ctr)
KUBELET_PID=$(cat "$DIR/kubelet.pid")
CONTAINERD_PID=$(cat "$DIR/containerd.pid")
TEST_IMAGE=$BUSYBOX_IMAGE
PAUSE_IMAGE=$PAUSE_IMAGE
COREDNS_IMAGE=$COREDNS_IMAGE
STORAGE_CLASS=local
PV_DIR=$DIR/volumes
EOF
mv "$DIR/env.tmp" "$DIR/env"
trap - ERR INT TERM
log "node cluster ready in $(elapsed)s: $API_URL (KUBECONFIG=$DIR/kubeconfig, netns $NETNS)"
