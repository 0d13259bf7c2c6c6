# Check helpers shared by smoke.sh and smoke-node.sh; source it after setting OUT (a scratch
# file for each command's output) and defining k (kubectl with the cluster's kubeconfig).

pass() { printf 'ok   %s\n' "$*"; }
fail() {
    printf 'FAIL %s\n' "$*" >&2
    [[ -s $OUT ]] && sed 's/^/     | /' "$OUT" >&2
    exit 1
}
# expect_output DESCRIPTION PATTERN CMD...: CMD succeeds and its output matches PATTERN (ERE).
expect_output() {
    local what=$1 pattern=$2
    shift 2
    "$@" >"$OUT" 2>&1 || fail "$what (command failed: $*)"
    grep -Eq -- "$pattern" "$OUT" || fail "$what (no match for /$pattern/)"
    pass "$what"
}
