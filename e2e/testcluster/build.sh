#!/usr/bin/env bash
# Builds the binaries of the end-to-end test cluster into a cache directory:
#
#   ${RAGPLANE_TESTBIN:-$HOME/.cache/ragplane-testbin}/k8s-<version>/{kube-apiserver,kubectl,etcd}
#
# All three are compiled from the Go module next to this script: go.mod pins
# k8s.io/kubernetes (kube-apiserver, kubectl) and go.etcd.io/etcd/server/v3
# (etcd, at the version that Kubernetes release is tested with).
# Idempotent: when all binaries exist it only prints the directory.
#
# Prints the binary directory as the last line of stdout, so callers can do
#   BIN=$(e2e/testcluster/build.sh | tail -n1)
set -euo pipefail

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

have_all() { [[ -x $BIN/kube-apiserver && -x $BIN/kubectl && -x $BIN/etcd ]]; }

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
go_build kube-apiserver "$KUBE_VERSION" k8s.io/kubernetes/cmd/kube-apiserver "$LDFLAGS"
go_build kubectl "$KUBE_VERSION" k8s.io/kubernetes/cmd/kubectl "$LDFLAGS"
# etcd's own build sets only this -X flag; --version then shows it as "Git SHA".
go_build etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 \
    "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"

log "all binaries ready in $((SECONDS - START_ALL))s: $BIN"
echo "$BIN"
