#!/usr/bin/env bash
# Usage: stop.sh DIR
#
# Kills the etcd and kube-apiserver that start.sh started in DIR (found by
# their pid files), then removes DIR unless KEEP=1. Safe to run twice.
# For a node cluster (start-node.sh; DIR/node.state exists) it runs
# stop-node.sh instead.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
DIR=$1
if [[ ! -d $DIR ]]; then
    exit 0
fi
DIR=$(cd "$DIR" && pwd)

# A node cluster (start-node.sh) has its own, longer teardown.
if [[ -f $DIR/node.state ]]; then
    exec "$(dirname "${BASH_SOURCE[0]}")/stop-node.sh" "$DIR"
fi

# ours PID: true if PID is alive and was started for this DIR (guards against
# the pid having been reused by an unrelated process).
ours() {
    local pid=$1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/"
}

# running PID: alive and not a zombie (a killed process stays one until its
# parent reaps it). The state follows the parenthesised command name.
running() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# SIGKILL right away: the cluster is disposable (its data dies with DIR), and
# a graceful shutdown of kube-apiserver plus etcd takes about 5 seconds.
stop_pid() { # NAME
    local f=$DIR/$1.pid pid
    [[ -f $f ]] || return 0
    pid=$(cat "$f")
    if ours "$pid"; then
        kill -9 "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            running "$pid" || break
            sleep 0.1
        done
    fi
    rm -f "$f"
}

# env present means "cluster is up"; it goes first.
rm -f "$DIR/env"

# start.sh's watchdog (OWNER_PID) exits by itself within a second once
# kube-apiserver.pid is gone; it is not killed here since it may be our caller.
rm -f "$DIR/watchdog.pid"

stop_pid kube-apiserver
stop_pid etcd

if [[ ${KEEP:-0} != 1 ]]; then
    if [[ -e $DIR/.ragplane-testcluster ]]; then
        rm -rf "$DIR"
    else
        echo "stop.sh: $DIR was not created by start.sh; not removing it" >&2
    fi
fi
