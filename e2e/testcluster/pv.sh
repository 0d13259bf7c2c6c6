#!/usr/bin/env bash
# Usage: pv.sh DIR NAME [SIZE]
#
# Creates a PersistentVolume NAME (default size 1Gi) on the node cluster in
# DIR: a "local" volume backed by the directory DIR/volumes/NAME, bound to the
# node, in the default StorageClass "local" (no provisioner,
# WaitForFirstConsumer). A PersistentVolumeClaim of that class (or of no
# class) asking for at most SIZE binds to it once a pod using the claim is
# scheduled. Prints the directory. The PV is reclaimed with Retain: delete it
# (kubectl delete pv NAME) to reuse the name; its directory goes with DIR.
#
# Reads KUBECTL and KUBECONFIG from DIR/env unless they are set.
set -euo pipefail
if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 DIR NAME [SIZE]" >&2
    exit 2
fi
DIR=$(cd "$1" && pwd)
NAME=$2
SIZE=${3:-1Gi}
if [[ -z ${KUBECTL:-} || -z ${KUBECONFIG:-} ]]; then
    [[ -f $DIR/env ]] || { echo "pv.sh: no running node cluster in $DIR" >&2; exit 1; }
    # shellcheck disable=SC1091
    source "$DIR/env"
fi
export KUBECONFIG
NODE_NAME=${NODE_NAME:-ragplane-node}

path=$DIR/volumes/$NAME
mkdir -p "$path"
# Writable by any pod user (restricted pods run as non-root).
chmod 0777 "$path"
"$KUBECTL" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $NAME
  labels:
    testcluster.ragplane/volume: $NAME
spec:
  capacity:
    storage: $SIZE
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  volumeMode: Filesystem
  local:
    path: $path
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - key: kubernetes.io/hostname
          operator: In
          values: [$NODE_NAME]
YAML
echo "$path"
