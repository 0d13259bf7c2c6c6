#!/usr/bin/env bash
# Usage: smoke.sh DIR
#
# Checks, against a cluster started by start.sh in DIR, the API features the
# operator's end-to-end tests rely on. Exits non-zero on the first failure.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
DIR=$(cd "$1" && pwd)
[[ -f $DIR/env ]] || {
    echo "smoke.sh: no running cluster in $DIR (no env file)" >&2
    exit 1
}
# shellcheck disable=SC1091
source "$DIR/env"
export KUBECONFIG

NS=smoke-$$-$RANDOM
GROUP=smoke.ragplane.test
OUT=$(mktemp)
trap 'rm -f "$OUT"; "$KUBECTL" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT

k() { "$KUBECTL" "$@"; }
# shellcheck source=checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"

expect_output "/readyz is ok" '^ok$' k get --raw /readyz
expect_output "server version" 'Server Version: v1\.' k version

k create namespace "$NS" >/dev/null

# ------------------------------------------------------ CRD with a CEL rule
k apply -f - >"$OUT" 2>&1 <<EOF || fail "apply CustomResourceDefinition"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: scalers.$GROUP
spec:
  group: $GROUP
  scope: Namespaced
  names:
    kind: Scaler
    plural: scalers
    singular: scaler
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Min
      type: integer
      jsonPath: .spec.minReplicas
    - name: Max
      type: integer
      jsonPath: .spec.maxReplicas
    - name: Phase
      type: string
      jsonPath: .status.phase
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [minReplicas, maxReplicas]
            properties:
              minReplicas: {type: integer, minimum: 0}
              maxReplicas: {type: integer, minimum: 0}
              note: {type: string}
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.maxReplicas
              message: minReplicas must not exceed maxReplicas
          status:
            type: object
            properties:
              phase: {type: string}
EOF
pass "CustomResourceDefinition applied"
k wait --for=condition=Established --timeout=30s "crd/scalers.$GROUP" >"$OUT" 2>&1 ||
    fail "CustomResourceDefinition established"
pass "CustomResourceDefinition established"

scaler() { # NAME MIN MAX
    printf 'apiVersion: %s/v1\nkind: Scaler\nmetadata: {name: %s, namespace: %s}\nspec: {minReplicas: %s, maxReplicas: %s}\n' \
        "$GROUP" "$1" "$NS" "$2" "$3"
}

if scaler bad 5 2 | k create -f - >"$OUT" 2>&1; then
    fail "invalid object rejected by the CEL rule (it was accepted)"
fi
grep -q "minReplicas must not exceed maxReplicas" "$OUT" || fail "CEL rejection carries the rule's message"
pass "invalid object rejected with the CEL message"

scaler good 1 3 | k create -f - >"$OUT" 2>&1 || fail "valid object accepted"
pass "valid object accepted"

# Status subresource: the main resource ignores status, /status takes it.
k patch -n "$NS" "scaler.$GROUP/good" --subresource=status --type=merge \
    -p '{"status":{"phase":"Ready"}}' >"$OUT" 2>&1 || fail "patch custom resource status"
expect_output "custom resource status set through /status" '^Ready$' \
    k get -n "$NS" "scaler.$GROUP/good" -o 'jsonpath={.status.phase}'

expect_output "printer columns shown" '^NAME +MIN +MAX +PHASE$' k get -n "$NS" "scalers.$GROUP"
expect_output "printer column values" '^good +1 +3 +Ready$' k get -n "$NS" "scalers.$GROUP" --no-headers

# Server-side apply, twice (create, then update by the same field manager).
for max in 4 6; do
    scaler ssa 2 "$max" | k apply --server-side --field-manager=smoke -f - >"$OUT" 2>&1 ||
        fail "server-side apply (maxReplicas=$max)"
done
expect_output "server-side apply updated the object" '^6$' \
    k get -n "$NS" "scaler.$GROUP/ssa" -o 'jsonpath={.spec.maxReplicas}'
expect_output "server-side apply recorded its field manager" '^smoke Apply$' \
    k get -n "$NS" "scaler.$GROUP/ssa" --show-managed-fields \
    -o 'jsonpath={range .metadata.managedFields[*]}{.manager} {.operation}{"\n"}{end}'
if scaler ssa 9 6 | k apply --server-side --field-manager=smoke -f - >"$OUT" 2>&1; then
    fail "server-side apply validated by the CEL rule (invalid apply accepted)"
fi
grep -q "minReplicas must not exceed maxReplicas" "$OUT" || fail "server-side apply CEL message"
pass "server-side apply validated by the CEL rule"

# ------------------------------------------- Deployment and its status
k apply -n "$NS" -f - >"$OUT" 2>&1 <<EOF || fail "create Deployment"
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
      containers:
      - name: web
        image: registry.invalid/web:1
EOF
pass "Deployment created"
# No controller runs, so readiness is whatever a test writes to /status.
k patch -n "$NS" deployment/web --subresource=status --type=merge -p \
    '{"status":{"observedGeneration":1,"replicas":2,"updatedReplicas":2,"readyReplicas":2,"availableReplicas":2,"conditions":[{"type":"Available","status":"True","reason":"MinimumReplicasAvailable","message":"set by smoke.sh"}]}}' \
    >"$OUT" 2>&1 || fail "patch Deployment status"
expect_output "Deployment status patched through /status" '^2 True$' \
    k get -n "$NS" deployment/web \
    -o 'jsonpath={.status.readyReplicas} {.status.conditions[?(@.type=="Available")].status}'
# A second read a moment later: nothing (no controller) reverts it.
sleep 1
expect_output "Deployment status is left alone" '^2$' \
    k get -n "$NS" deployment/web -o 'jsonpath={.status.readyReplicas}'

# ---------------------------------------------------------------- Lease
k apply -n "$NS" -f - >"$OUT" 2>&1 <<EOF || fail "create Lease"
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: ragplane-operator-leader
spec:
  holderIdentity: smoke
  leaseDurationSeconds: 15
EOF
expect_output "Lease created" '^smoke$' \
    k get -n "$NS" lease/ragplane-operator-leader -o 'jsonpath={.spec.holderIdentity}'

# --------------------------------------------------------------- RBAC
k apply -n "$NS" -f - >"$OUT" 2>&1 <<EOF || fail "create RBAC objects"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: operator
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: read-scalers
rules:
- apiGroups: [$GROUP]
  resources: [scalers]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: operator-read-scalers
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: read-scalers
subjects:
- kind: ServiceAccount
  name: operator
  namespace: $NS
EOF
expect_output "RBAC grants what the Role allows" '^yes$' \
    k auth can-i list "scalers.$GROUP" -n "$NS" --as="system:serviceaccount:$NS:operator"
k auth can-i delete "scalers.$GROUP" -n "$NS" --as="system:serviceaccount:$NS:operator" >"$OUT" 2>&1 || true
grep -q '^no$' "$OUT" || fail "RBAC denies what the Role does not allow"
pass "RBAC denies what the Role does not allow"

echo "smoke.sh: all checks passed"
