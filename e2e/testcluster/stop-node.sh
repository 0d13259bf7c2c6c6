#!/usr/bin/env bash
# Usage: stop-node.sh DIR   (normally called through stop.sh DIR)
#
# Stops a node cluster started by start-node.sh in DIR, also one whose start
# failed half-way: kills every process in the node's cgroup tree (the
# daemons, containerd's shims, all containers, the API forwarder), unmounts
# anything still mounted below DIR, deletes the network namespace, removes
# the node's cgroups, and puts back the sysctls kubelet changed once no other
# node on this machine runs. Then removes DIR unless KEEP=1. Safe to run twice.
set -uo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
[[ -d $1 ]] || exit 0
DIR=$(cd "$1" && pwd)
[[ -f $DIR/node.state ]] || {
    echo "stop-node.sh: $DIR holds no node cluster (no node.state)" >&2
    exit 1
}
log() { printf '[stop-node.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

ID='' NETNS='' CG_REL='' HOST_STATE=''
while IFS='=' read -r key value; do
    case $key in
        ID) ID=$value ;;
        NETNS) NETNS=$value ;;
        CG_REL) CG_REL=$value ;;
        HOST_STATE) HOST_STATE=$value ;;
    esac
done <"$DIR/node.state"
[[ $ID =~ ^[0-9a-f]+$ && $CG_REL == ragplane-testcluster/node-$ID && -n $HOST_STATE ]] || {
    echo "stop-node.sh: $DIR/node.state is malformed" >&2
    exit 1
}

# env present means "cluster is up"; it goes first. .stopping ends the
# OWNER_PID watchdog (it is not killed: it may be our caller).
touch "$DIR/.stopping"
rm -f "$DIR/env"

CG_MOUNTS=()
while read -r _ mnt fstype _; do
    [[ $fstype == cgroup || $fstype == cgroup2 ]] && CG_MOUNTS+=("$mnt")
done </proc/self/mounts

# --------------------------------------------------------------- processes
node_pids() {
    local m
    for m in "${CG_MOUNTS[@]}"; do
        [[ -d $m/$CG_REL ]] && find "$m/$CG_REL" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -un
}
# SIGKILL right away (the cluster is disposable), repeated until the tree is
# empty: a dying parent (kubelet, a shim) may have forked in the meantime.
for _ in $(seq 100); do
    pids=$(node_pids)
    [[ -z $pids ]] && break
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null
    sleep 0.1
done
PROBLEMS=0
if [[ -n $(node_pids) ]]; then
    log "warning: processes left in /$CG_REL: $(node_pids | tr '\n' ' ')"
    PROBLEMS=1
fi
rm -f "$DIR"/*.pid

# ------------------------------------------------------------------ mounts
# The daemons' mounts lived in their private mount namespace, which is gone
# with them. Anything mounted below DIR in this namespace (e.g. by hand) is
# taken down too, deepest first, so that removing DIR cannot cross into it.
for _ in 1 2 3; do
    mnts=$(awk -v d="$DIR/" 'index($5, d) == 1 { print length($5), $5 }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-)
    [[ -z $mnts ]] && break
    while read -r m; do
        umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
    done <<<"$mnts"
done

# ------------------------------------------------------------------- netns
if [[ -n $NETNS && -e /run/netns/$NETNS ]]; then
    ip netns del "$NETNS" || log "warning: cannot delete network namespace $NETNS"
fi

# ----------------------------------------------------- cgroups and sysctls
remove_cgroups() {
    local m ok=1
    for m in "${CG_MOUNTS[@]}"; do
        [[ -d $m/$CG_REL ]] || continue
        # Children first; a cgroup whose last task just died can be busy
        # for a moment.
        find "$m/$CG_REL" -depth -type d -exec rmdir {} + 2>/dev/null
        [[ -d $m/$CG_REL ]] && ok=0
    done
    ((ok))
}
mkdir -p "$HOST_STATE"
(
    flock 9
    for _ in $(seq 50); do
        remove_cgroups && break
        sleep 0.1
    done
    if ! remove_cgroups; then
        log "warning: could not remove every cgroup of /$CG_REL"
        exit 1
    fi
    rm -f "$HOST_STATE/nodes/$ID"

    # Nodes whose cgroup is gone (stopped without this script, or before a
    # reboot) no longer count.
    for f in "$HOST_STATE"/nodes/*; do
        [[ -e $f ]] || continue
        other=$(basename "$f")
        alive=0
        for m in "${CG_MOUNTS[@]}"; do
            [[ -d $m/ragplane-testcluster/node-$other ]] && alive=1
        done
        ((alive)) || rm -f "$f"
    done

    if ! compgen -G "$HOST_STATE/nodes/*" >/dev/null; then
        # The last node on this machine: put back what kubelet changed.
        if [[ -s $HOST_STATE/sysctl.saved ]]; then
            while IFS='=' read -r key value; do
                [[ -n $key ]] || continue
                [[ $(sysctl -n "$key" 2>/dev/null) == "$value" ]] ||
                    sysctl -qw "$key=$value" || log "warning: cannot restore $key=$value"
            done <"$HOST_STATE/sysctl.saved"
            rm -f "$HOST_STATE/sysctl.saved"
        fi
        for m in "${CG_MOUNTS[@]}"; do
            [[ -d $m/ragplane-testcluster ]] && rmdir "$m/ragplane-testcluster" 2>/dev/null
        done
    fi
) 9>"$HOST_STATE/lock" || PROBLEMS=1

if ((PROBLEMS)); then
    # node.state stays, so that stop.sh can be run again.
    log "$DIR kept: the node was not fully cleaned up (see the warnings above)"
    exit 1
fi
rm -f "$DIR/node.state" "$DIR/.stopping"

if [[ ${KEEP:-0} != 1 ]]; then
    if [[ -e $DIR/.ragplane-testcluster ]]; then
        rm -rf "$DIR"
    else
        echo "stop-node.sh: $DIR was not created by start-node.sh; not removing it" >&2
    fi
fi
exit 0
