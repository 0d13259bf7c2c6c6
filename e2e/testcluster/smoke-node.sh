#!/usr/bin/env bash
# Usage: smoke-node.sh DIR
#
# Checks, against a node cluster started by start-node.sh in DIR, that it
# behaves like a real cluster: a Deployment's pods run and become Ready, a
# ClusterIP Service reaches them (from a pod, by DNS name and by IP, and from
# the node's network namespace), DNS works in pods, pods get ServiceAccount
# tokens the API server accepts, Pod Security admission enforces
# "restricted" (and a compliant pod runs there), a claim binds to a local
# PersistentVolume, logs/exec/port-forward work, and the garbage collector
# and namespace controller clean up. Exits non-zero on the first failure.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$(cd "$1" && pwd)
[[ -f $DIR/env ]] || {
    echo "smoke-node.sh: no running cluster in $DIR (no env file)" >&2
    exit 1
}
# shellcheck disable=SC1091
source "$DIR/env"
[[ ${TESTCLUSTER_MODE:-} == node ]] || {
    echo "smoke-node.sh: $DIR holds an API-server-only cluster; use smoke.sh" >&2
    exit 1
}
export KUBECONFIG KUBECACHEDIR

NS=smoke-$$-$RANDOM
RNS=$NS-restricted
PV=$NS-pv
OUT=$(mktemp)
PF_PID=
cleanup() {
    [[ -n $PF_PID ]] && kill "$PF_PID" 2>/dev/null
    rm -f "$OUT"
    "$KUBECTL" delete namespace "$NS" "$RNS" --wait=false >/dev/null 2>&1 || true
    "$KUBECTL" delete pv "$PV" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

k() { "$KUBECTL" --request-timeout=30s "$@"; }
# shellcheck source=checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
# eventually SECONDS DESCRIPTION CMD...: retries CMD every 0.5 s.
eventually() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >"$OUT" 2>&1; do
        ((SECONDS < deadline)) || fail "$what (not within $1 s)"
        sleep 0.5
    done
    pass "$what"
}
# run_pod NS NAME SCRIPT: runs SCRIPT in a one-shot busybox pod, waits for it
# to finish, and leaves its log in $OUT; fails unless it succeeded.
run_pod() {
    local ns=$1 name=$2 script=$3 phase deadline=$((SECONDS + 90))
    k apply -n "$ns" -f - >"$OUT" 2>&1 <<EOF || fail "create pod $name"
apiVersion: v1
kind: Pod
metadata:
  name: $name
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: $TEST_IMAGE
    imagePullPolicy: Never
    command: [sh, -c, $(printf '%s' "$script" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')]
EOF
    while :; do
        phase=$(k get -n "$ns" pod "$name" -o 'jsonpath={.status.phase}' 2>/dev/null || true)
        [[ $phase == Succeeded || $phase == Failed ]] && break
        ((SECONDS < deadline)) || { k describe -n "$ns" pod "$name" >"$OUT" 2>&1; fail "pod $name did not finish"; }
        sleep 0.5
    done
    k logs -n "$ns" "$name" >"$OUT" 2>&1 || true
    [[ $phase == Succeeded ]] || fail "pod $name: $phase"
}

# ------------------------------------------------------------------ node
expect_output "node is Ready" '^True$' \
    k get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
expect_output "kubelet and containerd versions" '^v1\.37\.[0-9]+ containerd://' \
    k get node "$NODE_NAME" -o 'jsonpath={.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}'
expect_output "CoreDNS is Ready" '^1$' k -n kube-system get deployment coredns -o 'jsonpath={.status.readyReplicas}'
expect_output "test image present in containerd" "$TEST_IMAGE" \
    "$CTR" --address "$CONTAINERD_ADDRESS" -n "$CONTAINERD_NAMESPACE" images ls -q

k create namespace "$NS" >/dev/null
# The ServiceAccount controller creates "default" in every new namespace.
eventually 30 "ServiceAccount controller created the default ServiceAccount" \
    k get -n "$NS" serviceaccount default

# ------------------------------------------------------ Deployment, Service
k apply -n "$NS" -f - >"$OUT" 2>&1 <<EOF || fail "create Deployment and Service"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: web
        image: $TEST_IMAGE
        imagePullPolicy: Never
        command: [sh, -c, 'echo "hello from \$(hostname)" >/var/www/index.html && exec httpd -f -p 8080 -h /var/www']
        ports:
        - {name: http, containerPort: 8080}
        readinessProbe:
          httpGet: {path: /index.html, port: 8080}
          periodSeconds: 1
        resources:
          requests: {cpu: 10m, memory: 16Mi}
          limits: {memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
EOF
k rollout status -n "$NS" deployment/web --timeout=120s >"$OUT" 2>&1 || fail "Deployment rolled out"
expect_output "Deployment has 2 ready replicas" '^2 2$' \
    k get -n "$NS" deployment/web -o 'jsonpath={.status.readyReplicas} {.status.availableReplicas}'
expect_output "its pods are Running on the node with pod IPs" '^Running ragplane-node 10\.244\.[0-9]+\.[0-9]+ Running ragplane-node 10\.244\.' \
    k get -n "$NS" pods -l app=web -o 'jsonpath={range .items[*]}{.status.phase} {.spec.nodeName} {.status.podIP} {end}'
SVC_IP=$(k get -n "$NS" service web -o 'jsonpath={.spec.clusterIP}')
eventually 30 "the Service has two ready endpoints" \
    sh -c "[ \"\$('$KUBECTL' get -n '$NS' endpointslices -l kubernetes.io/service-name=web -o 'jsonpath={range .items[*].endpoints[*]}{.conditions.ready} {end}')\" = 'true true ' ]"

run_pod "$NS" dns-and-service "
set -e
nslookup web.$NS.svc.$CLUSTER_DOMAIN
nslookup kubernetes.default.svc.$CLUSTER_DOMAIN
wget -q -O- http://web.$NS.svc.$CLUSTER_DOMAIN/
wget -q -O- http://web/
wget -q -O- http://$SVC_IP:80/
"
grep -q "Address: $SVC_IP" "$OUT" || fail "DNS from a pod: web.$NS.svc.$CLUSTER_DOMAIN resolves to $SVC_IP"
pass "DNS from a pod: web.$NS.svc.$CLUSTER_DOMAIN -> $SVC_IP"
grep -q "Address: 10.96.0.1" "$OUT" || fail "DNS from a pod: kubernetes.default.svc.$CLUSTER_DOMAIN"
pass "DNS from a pod: kubernetes.default.svc.$CLUSTER_DOMAIN -> 10.96.0.1"
[[ $(grep -c '^hello from web-' "$OUT") == 3 ]] || fail "ClusterIP Service reached from a pod (by FQDN, short name, IP)"
pass "ClusterIP Service reached from a pod (by FQDN, short name and IP)"

expect_output "ClusterIP Service reached from the node's network namespace" '^hello from web-' \
    "$NODE_EXEC" curl -sS --max-time 10 "http://$SVC_IP/"

# -------------------------------------- an image built and imported now
# What a test does with its own binaries: assemble an image (here the host's
# dynamically linked curl, with the libraries ldd lists), import it into the
# node's containerd from the host, and run it with imagePullPolicy: Never.
IMG=localhost/testcluster/smoke-curl:$NS
TAR=$(mktemp --suffix=.tar)
python3 "$HERE/mkimage.py" "$TAR" "$IMG" "$(command -v curl)=/usr/bin/curl" --ldd \
    --entrypoint '["/usr/bin/curl"]' >"$OUT" 2>&1 || fail "mkimage.py --ldd"
"$CTR" --address "$CONTAINERD_ADDRESS" -n "$CONTAINERD_NAMESPACE" images import "$TAR" >"$OUT" 2>&1 ||
    fail "ctr images import from the host"
rm -f "$TAR"
pass "image built with mkimage.py --ldd and imported with ctr"
k run -n "$NS" curl --image="$IMG" --image-pull-policy=Never --restart=Never -- \
    -sS --max-time 10 "http://web.$NS.svc.$CLUSTER_DOMAIN/" >"$OUT" 2>&1 || fail "create curl pod"
eventually 90 "the imported image ran (glibc curl resolved and reached the Service)" \
    sh -c "[ \"\$('$KUBECTL' get -n '$NS' pod curl -o 'jsonpath={.status.phase}')\" = Succeeded ] && '$KUBECTL' logs -n '$NS' curl | grep -q '^hello from web-'"
"$CTR" --address "$CONTAINERD_ADDRESS" -n "$CONTAINERD_NAMESPACE" images rm "$IMG" >/dev/null 2>&1 || true

# ---------------------------------------------- logs, exec, port-forward
POD=$(k get -n "$NS" pods -l app=web -o 'jsonpath={.items[0].metadata.name}')
expect_output "kubectl exec (API server -> kubelet -> containerd)" "^hello from $POD$" \
    k exec -n "$NS" "$POD" -- cat /var/www/index.html
expect_output "kubectl logs" 'hello from web-' k logs -n "$NS" dns-and-service
PF_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
k port-forward -n "$NS" "pod/$POD" "$PF_PORT:8080" --address 127.0.0.1 >/dev/null 2>&1 &
PF_PID=$!
eventually 30 "kubectl port-forward to a pod from the host" \
    sh -c "curl -sS --max-time 5 http://127.0.0.1:$PF_PORT/ | grep -q '^hello from $POD\$'"
kill "$PF_PID" 2>/dev/null || true
PF_PID=

# ---------------------------------------------------- ServiceAccount token
TOKEN=$(k exec -n "$NS" "$POD" -- cat /var/run/secrets/kubernetes.io/serviceaccount/token)
[[ -n $TOKEN ]] || fail "pod has a ServiceAccount token"
expect_output "the pod's ServiceAccount token is accepted by the API server" \
    "\"username\": ?\"system:serviceaccount:$NS:default\"" \
    curl -sS --fail --cacert "$CA_FILE" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -X POST -d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \
    "$KUBE_APISERVER_URL/apis/authentication.k8s.io/v1/selfsubjectreviews"
expect_output "kube-root-ca.crt published to the namespace" 'BEGIN CERTIFICATE' \
    k get -n "$NS" configmap kube-root-ca.crt -o 'jsonpath={.data.ca\.crt}'

# ------------------------------------------------------- Pod Security
k create namespace "$RNS" >/dev/null
k label namespace "$RNS" pod-security.kubernetes.io/enforce=restricted >/dev/null
eventually 30 "default ServiceAccount in the restricted namespace" k get -n "$RNS" serviceaccount default
if k run -n "$RNS" privileged --image="$TEST_IMAGE" --image-pull-policy=Never --restart=Never -- true >"$OUT" 2>&1; then
    fail "restricted namespace rejects a non-compliant pod (it was accepted)"
fi
grep -q 'violates PodSecurity "restricted' "$OUT" || fail "rejection names the restricted policy"
pass "restricted namespace rejects a non-compliant pod"
k apply -n "$RNS" -f - >"$OUT" 2>&1 <<EOF || fail "compliant pod accepted in the restricted namespace"
apiVersion: v1
kind: Pod
metadata:
  name: compliant
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  securityContext:
    runAsNonRoot: true
    runAsUser: 65534
    runAsGroup: 65534
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: main
    image: $TEST_IMAGE
    imagePullPolicy: Never
    command: [sh, -c, 'id -u; nslookup kubernetes.default.svc.$CLUSTER_DOMAIN >/dev/null && echo dns-ok']
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
EOF
pass "compliant pod accepted in the restricted namespace"
eventually 90 "compliant pod ran to completion" \
    sh -c "[ \"\$('$KUBECTL' get -n '$RNS' pod compliant -o 'jsonpath={.status.phase}')\" = Succeeded ]"
expect_output "it ran as 65534 with seccomp RuntimeDefault, and resolved DNS" '^65534$' k logs -n "$RNS" compliant
grep -q '^dns-ok$' "$OUT" || fail "DNS from the restricted pod"

# ---------------------------------------------- PersistentVolume binding
PV_PATH=$("$HERE/pv.sh" "$DIR" "$PV" 1Gi)
k apply -n "$NS" -f - >"$OUT" 2>&1 <<EOF || fail "create PersistentVolumeClaim and pod"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 100Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: writer
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: $TEST_IMAGE
    imagePullPolicy: Never
    command: [sh, -c, 'echo persisted-$NS >/data/marker']
    volumeMounts:
    - {name: data, mountPath: /data}
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
EOF
eventually 90 "claim without a class bound to the local PV (default StorageClass, PV binder)" \
    sh -c "[ \"\$('$KUBECTL' get -n '$NS' pvc data -o 'jsonpath={.status.phase} {.spec.volumeName} {.spec.storageClassName}')\" = 'Bound $PV local' ]"
eventually 90 "pod wrote through the claim" \
    sh -c "[ \"\$('$KUBECTL' get -n '$NS' pod writer -o 'jsonpath={.status.phase}')\" = Succeeded ]"
expect_output "the file is in the volume's directory on the host" "^persisted-$NS\$" cat "$PV_PATH/marker"

# ------------------------------------------- garbage collector, namespaces
RS=$(k get -n "$NS" replicaset -l app=web -o 'jsonpath={.items[0].metadata.name}')
k delete -n "$NS" deployment web --wait=false >/dev/null
eventually 60 "garbage collector deleted the Deployment's ReplicaSet and pods" \
    sh -c "! '$KUBECTL' get -n '$NS' replicaset '$RS' >/dev/null 2>&1 && [ -z \"\$('$KUBECTL' get -n '$NS' pods -l app=web -o name)\" ]"
k delete namespace "$RNS" --wait=false >/dev/null
eventually 90 "namespace controller finished deleting a namespace" \
    sh -c "! '$KUBECTL' get namespace '$RNS' >/dev/null 2>&1"

echo "smoke-node.sh: all checks passed"
