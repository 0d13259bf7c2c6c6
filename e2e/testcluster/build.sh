#!/usr/bin/env bash
# Builds the binaries of the end-to-end test cluster into a cache directory:
#
#   ${RAGPLANE_TESTBIN:-$HOME/.cache/ragplane-testbin}/k8s-<version>/
#       kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#       kubectl etcd
#
# All are compiled from the Go module next to this script: go.mod pins
# k8s.io/kubernetes (the five kube-* binaries and kubectl, built by one
# `go build`) and go.etcd.io/etcd/server/v3 (etcd, at the version that
# Kubernetes release is tested with).
#
# With --node it also prepares what the node mode (start-node.sh) needs:
# Debian packages (containerd, runc, CNI plugins, iptables, busybox-static),
# CoreDNS built from the Go module in coredns/, the pause binary compiled from
# the Kubernetes sources, and OCI image archives of pause, CoreDNS and a
# busybox test image (paths in node-versions.sh).
#
# Idempotent: when everything exists it only prints the directory.
# Prints the binary directory as the last line of stdout, so callers can do
#   BIN=$(e2e/testcluster/build.sh | tail -n1)
set -euo pipefail

NODE=0
case ${1:-} in
    '') ;;
    --node) NODE=1 ;;
    *) echo "usage: $0 [--node]" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# required MODULE: the version go.mod requires (single-line or block form).
required() {
    awk -v m="$1" '$1 == "require" && $2 == m { print $3 } $1 == m && $2 ~ /^v/ { print $2 }' "$HERE/go.mod"
}

# The Kubernetes version is the one go.mod requires; the cache key follows it.
KUBE_VERSION=$(required k8s.io/kubernetes)
[[ $KUBE_VERSION =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || {
    echo "build.sh: cannot read the k8s.io/kubernetes version from $HERE/go.mod" >&2
    exit 1
}
KUBE_MAJOR=${BASH_REMATCH[1]}
KUBE_MINOR=${BASH_REMATCH[2]}

ETCD_VERSION=$(required go.etcd.io/etcd/server/v3)
[[ $ETCD_VERSION == v3.* ]] || {
    echo "build.sh: cannot read the go.etcd.io/etcd/server/v3 version from $HERE/go.mod" >&2
    exit 1
}

# Used only when no usable Go (>= 1.21, which can switch toolchains) is installed.
GO_BOOTSTRAP_VERSION=go1.26.8
declare -A GO_BOOTSTRAP_SHA256=(
    [amd64]=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
    [arm64]=02b36b6787b3ac767668f630e2998df45a3b1f9ffee08d1bf3ef6487cd658d99
)

CACHE=${RAGPLANE_TESTBIN:-$HOME/.cache/ragplane-testbin}
BIN=$CACHE/k8s-${KUBE_VERSION#v}

log() { printf '[build.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The binaries from k8s.io/kubernetes/cmd/NAME, built together by one go build.
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

if ((NODE)); then
    # shellcheck source=node-versions.sh
    source "$HERE/node-versions.sh"
fi

have_all() {
    local f
    for f in "${KUBE_CMDS[@]}" etcd; do [[ -x $BIN/$f ]] || return 1; done
    if ((NODE)); then
        for f in "${NODE_ARTIFACTS[@]}"; do [[ -s $f ]] || return 1; done
        node_packages_present || return 1
    fi
}

# Fast path: nothing to do.
if have_all; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$BIN"
# Serialise concurrent runs (e.g. several test binaries starting at once).
exec 9>"$BIN/.lock"
flock 9
if have_all; then
    echo "$BIN"
    exit 0
fi

START_ALL=$SECONDS

case $(uname -m) in
    x86_64) ARCH=amd64 ;;
    aarch64 | arm64) ARCH=arm64 ;;
    *) echo "build.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

# apt_install PKG...: installs Debian/Ubuntu packages (only called when missing).
APT_UPDATED=
apt_install() {
    command -v apt-get >/dev/null || {
        echo "build.sh: please install: $*" >&2
        exit 1
    }
    local sudo=
    [[ $(id -u) == 0 ]] || sudo=sudo
    if [[ -z $APT_UPDATED ]]; then
        $sudo apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Tools needed here and by start.sh / smoke.sh.
command -v curl >/dev/null || apt_install curl ca-certificates
command -v openssl >/dev/null || apt_install openssl
command -v python3 >/dev/null || apt_install python3

# ---------------------------------------------------------------- Go toolchain
# go.mod says "go 1.26.0": any Go >= 1.21 downloads that toolchain by itself
# (GOTOOLCHAIN=auto) when it is older. Without such a Go, fetch the toolchain
# module from the Go module proxy, exactly as the go command would.
go_usable() {
    command -v go >/dev/null || return 1
    local v
    v=$(go env GOVERSION 2>/dev/null) || return 1 # e.g. go1.26.8
    [[ $v =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= 21))
}
if ! go_usable; then
    GOROOT_BOOT=$CACHE/toolchain/$GO_BOOTSTRAP_VERSION.linux-$ARCH
    if [[ ! -x $GOROOT_BOOT/bin/go ]]; then
        log "no usable Go found; fetching $GO_BOOTSTRAP_VERSION from the Go module proxy"
        proxy=${GOPROXY:-https://proxy.golang.org}
        proxy=${proxy%%[,|]*}
        [[ $proxy == http* ]] || proxy=https://proxy.golang.org
        tmpd=$(mktemp -d)
        zip=$tmpd/go.zip
        curl -fsSL -o "$zip" "$proxy/golang.org/toolchain/@v/v0.0.1-$GO_BOOTSTRAP_VERSION.linux-$ARCH.zip"
        echo "${GO_BOOTSTRAP_SHA256[$ARCH]}  $zip" | sha256sum -c --quiet -
        python3 -m zipfile -e "$zip" "$tmpd/x"
        # Module zips do not keep file modes.
        root=$tmpd/x/golang.org/toolchain@v0.0.1-$GO_BOOTSTRAP_VERSION.linux-$ARCH
        chmod +x "$root"/bin/* "$root"/pkg/tool/*/*
        mkdir -p "$(dirname "$GOROOT_BOOT")"
        rm -rf "$GOROOT_BOOT"
        mv "$root" "$GOROOT_BOOT"
        rm -rf "$tmpd"
    fi
    export PATH=$GOROOT_BOOT/bin:$PATH
fi
# Honour an explicit GOTOOLCHAIN=local only if the local Go is new enough.
if [[ ${GOTOOLCHAIN:-} == local ]] && ! [[ $(go env GOVERSION) =~ ^go1\.(2[6-9]|[3-9][0-9]) ]]; then
    export GOTOOLCHAIN=auto
fi

# -------------------------------------------------------------------- binaries
export GOFLAGS=-buildvcs=false
# Static binaries, as the Kubernetes release builds them; no C compiler needed.
export CGO_ENABLED=0

# What `kubectl version` and the server's /version report (same -X flags as
# kubernetes/hack/lib/version.sh).
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LDFLAGS+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$KUBE_MAJOR"
    LDFLAGS+=" -X $pkg.gitMinor=$KUBE_MINOR -X $pkg.gitTreeState=clean"
done

go_build() { # NAME VERSION PACKAGE LDFLAGS
    local name=$1 version=$2 pkg=$3 ldflags=$4 t0=$SECONDS
    if [[ -x $BIN/$name ]]; then
        return
    fi
    log "building $name $version ($pkg)"
    (cd "$HERE" && nice -n 10 go build -trimpath -ldflags="$ldflags" -o "$BIN/.$name.tmp" "$pkg")
    mv -f "$BIN/.$name.tmp" "$BIN/$name"
    log "built $name in $((SECONDS - t0))s ($(du -h "$BIN/$name" | cut -f1))"
}

log "$(cd "$HERE" && go version)"

# The kube binaries that are missing, built by ONE go build: they share most
# packages, so one invocation compiles each package once and links the
# binaries in parallel. (On a fresh machine that is all six.)
missing=()
for name in "${KUBE_CMDS[@]}"; do
    [[ -x $BIN/$name ]] || missing+=("$name")
done
if ((${#missing[@]})); then
    t0=$SECONDS
    log "building ${missing[*]} $KUBE_VERSION"
    tmp=$BIN/.build.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    (cd "$HERE" && nice -n 10 go build -trimpath -ldflags="$LDFLAGS" -o "$tmp/" \
        "${missing[@]/#/k8s.io/kubernetes/cmd/}")
    for name in "${missing[@]}"; do
        mv -f "$tmp/$name" "$BIN/$name"
    done
    rmdir "$tmp"
    log "built ${missing[*]} in $((SECONDS - t0))s ($(cd "$BIN" && du -ch "${missing[@]}" | tail -n1 | cut -f1))"
fi
# etcd's own build sets only this -X flag; --version then shows it as "Git SHA".
go_build etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 \
    "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"

if ((NODE)); then
    # ------------------------------------------------- node mode: host packages
    # containerd 1.6 + runc 1.1 from Debian: kubelet 1.37 still accepts them
    # (CRI v1; it only logs that containerd lacks the RuntimeConfig call).
    pkgs=()
    node_packages_present ||
        pkgs+=(containerd runc containernetworking-plugins iptables conntrack busybox-static util-linux iproute2 procps)
    if [[ ! -x $PAUSE_DIR/pause ]] && ! { command -v gcc >/dev/null && [[ $(gcc -print-file-name=libc.a) == /* ]]; }; then
        pkgs+=(gcc libc6-dev)
    fi
    if ((${#pkgs[@]})); then
        log "installing ${pkgs[*]}"
        apt_install "${pkgs[@]}"
        # BUSYBOX_VERSION and the artifact paths follow the installed package.
        source "$HERE/node-versions.sh"
    fi
    node_packages_present || {
        echo "build.sh: containerd, runc, CNI plugins, iptables or busybox-static still missing" >&2
        exit 1
    }

    # ------------------------------------------------------------- CoreDNS
    if [[ ! -x $COREDNS_DIR/coredns ]]; then
        t0=$SECONDS
        log "building coredns $COREDNS_VERSION (module in $HERE/coredns)"
        mkdir -p "$COREDNS_DIR"
        (cd "$HERE/coredns" && nice -n 10 go build -trimpath \
            -ldflags="-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
            -o "$COREDNS_DIR/.coredns.tmp" .)
        mv -f "$COREDNS_DIR/.coredns.tmp" "$COREDNS_DIR/coredns"
        log "built coredns in $((SECONDS - t0))s ($(du -h "$COREDNS_DIR/coredns" | cut -f1))"
    fi

    # --------------------------------------------------------------- pause
    # The sandbox ("pause") container of every pod: Kubernetes' own pause.c,
    # compiled as upstream does (build/pause/Makefile: -Os -static).
    if [[ ! -x $PAUSE_DIR/pause ]]; then
        kdir=$(cd "$HERE" && go mod download -json k8s.io/kubernetes | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
        mkdir -p "$PAUSE_DIR"
        nice -n 10 gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-$KUBE_VERSION" \
            -o "$PAUSE_DIR/.pause.tmp" "$kdir/build/pause/linux/pause.c"
        strip "$PAUSE_DIR/.pause.tmp"
        mv -f "$PAUSE_DIR/.pause.tmp" "$PAUSE_DIR/pause"
        log "built pause $PAUSE_VERSION"
    fi

    # -------------------------------------------------------------- images
    mkdir -p "$IMAGES_DIR"
    img=$IMAGES_DIR/pause-$PAUSE_VERSION.tar
    if [[ ! -s $img ]]; then
        # As upstream's image: the binary alone, running as 65535.
        python3 "$HERE/mkimage.py" "$img" "$PAUSE_IMAGE" "$PAUSE_DIR/pause=/pause:755" \
            --entrypoint '["/pause"]' --user 65535:65535
        log "wrote $img"
    fi
    img=$IMAGES_DIR/coredns-$COREDNS_VERSION.tar
    if [[ ! -s $img ]]; then
        python3 "$HERE/mkimage.py" "$img" "$COREDNS_IMAGE" "$COREDNS_DIR/coredns=/coredns:755" \
            --entrypoint '["/coredns"]'
        log "wrote $img"
    fi
    img=$IMAGES_DIR/busybox-$BUSYBOX_VERSION.tar
    if [[ ! -s $img ]]; then
        # Debian's static busybox with a link per applet, /tmp, and the usual
        # root/nobody users, so "sh", "nslookup", "wget", "httpd", "nc" work
        # as commands and a pod can run as 65534.
        etc=$(mktemp -d)
        printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$etc/passwd"
        printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$etc/group"
        entries=("/bin/busybox=/bin/busybox:755" "$etc/passwd=/etc/passwd:644" "$etc/group=/etc/group:644"
            "/tmp/:1777" "/root/:700" "/var/www/:755")
        for applet in $(/bin/busybox --list); do
            [[ $applet == busybox ]] || entries+=("/bin/$applet->busybox")
        done
        python3 "$HERE/mkimage.py" "$img" "$BUSYBOX_IMAGE" "${entries[@]}" --cmd '["sh"]'
        rm -rf "$etc"
        log "wrote $img"
    fi
fi

log "all binaries ready in $((SECONDS - START_ALL))s: $BIN"
echo "$BIN"
