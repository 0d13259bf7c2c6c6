# Sourced by build.sh, start-node.sh and smoke-node.sh: versions, image names
# and cache paths of what the node mode adds to the API-server-only cluster.
# Needs HERE (this directory) and CACHE (the binary cache root) to be set.
# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this

# CoreDNS: the version Kubernetes v1.37 ships (build/dependencies.yaml,
# "coredns-kubeadm"); the source of truth is coredns/go.mod.
COREDNS_VERSION=$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" { print $3 }' "$HERE/coredns/go.mod")
# pause: the version Kubernetes v1.37.2 pins (build/dependencies.yaml,
# "registry.k8s.io/pause"); compiled from build/pause/linux/pause.c of the
# k8s.io/kubernetes module that go.mod requires.
PAUSE_VERSION=3.10.2
# Bumped whenever mkimage.py or an image's contents change, so cached image
# archives are rebuilt.
IMAGE_REVISION=1

# Images are built here and imported into containerd; no registry serves them.
# The "localhost/testcluster/" prefix makes clear that they are local builds.
PAUSE_IMAGE=localhost/testcluster/pause:$PAUSE_VERSION
COREDNS_IMAGE=localhost/testcluster/coredns:$COREDNS_VERSION

COREDNS_DIR=$CACHE/coredns-$COREDNS_VERSION
PAUSE_DIR=$CACHE/pause-$PAUSE_VERSION
IMAGES_DIR=$CACHE/node-images-r$IMAGE_REVISION

# The busybox test image follows the installed busybox-static package.
BUSYBOX_VERSION=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null | sed -E 's/^[0-9]+://; s/-.*//') || true
BUSYBOX_VERSION=${BUSYBOX_VERSION:-none}
BUSYBOX_IMAGE=localhost/testcluster/busybox:$BUSYBOX_VERSION

NODE_ARTIFACTS=(
    "$COREDNS_DIR/coredns"
    "$PAUSE_DIR/pause"
    "$IMAGES_DIR/pause-$PAUSE_VERSION.tar"
    "$IMAGES_DIR/coredns-$COREDNS_VERSION.tar"
    "$IMAGES_DIR/busybox-$BUSYBOX_VERSION.tar"
)

# CNI plugin directory: Debian's containernetworking-plugins, else the
# upstream default.
cni_bin_dir() {
    local d
    for d in /usr/lib/cni /opt/cni/bin; do
        [[ -x $d/bridge && -x $d/host-local && -x $d/loopback && -x $d/portmap ]] && { echo "$d"; return 0; }
    done
    return 1
}

# True when the host programs the node mode runs are installed.
node_packages_present() {
    local c
    for c in containerd containerd-shim-runc-v2 ctr runc iptables iptables-restore nsenter unshare ip sysctl; do
        command -v "$c" >/dev/null || return 1
    done
    [[ $BUSYBOX_VERSION != none && -x /bin/busybox ]] || return 1
    cni_bin_dir >/dev/null
}
