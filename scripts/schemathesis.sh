#!/usr/bin/env bash
# Schemathesis (PyPI) against a running data plane: every operation in /openapi.json with
# generated inputs, in each of its phases. Fails when any response is a 5xx, has a status, a
# content type or a body the schema does not document.
#
#   bash scripts/schemathesis.sh [BINARY]    (default: $CARGO_TARGET_DIR/debug/ragplane)
#
# Generation goes to the test Ollama server when scripts/services/llm.sh has recorded one
# (RAGPLANE_TEST_OLLAMA_URL), so that chat completions answer. Set ST_EXAMPLES for more cases per
# operation (default 20) and ST_SEED for another seed (default 1: the same cases every run).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.32.5
VENV=${RAGPLANE_TESTBIN:-$HOME/.cache/ragplane-testbin}/schemathesis-$VERSION
if [ ! -x "$VENV/bin/st" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$VERSION"
fi
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/ragplane}
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
KEY="rp_schemathesis_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
: >"$DIR/config.toml"
if [ -n "${RAGPLANE_TEST_OLLAMA_URL:-}" ] && [ -n "${RAGPLANE_TEST_LLM_MODEL:-}" ]; then
  printf '[generation]\nprovider = "ollama"\nurl = "%s"\nmodel = "%s"\nmax_tokens = 8\n' \
    "$RAGPLANE_TEST_OLLAMA_URL" "$RAGPLANE_TEST_LLM_MODEL" >"$DIR/config.toml"
fi
"$BIN" serve --config "$DIR/config.toml" --listen "127.0.0.1:$PORT" --data-dir "$DIR/data" \
  --admin-key "$KEY" >"$DIR/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  sleep 0.5
done
# Something for the generated requests to find: a collection with one document.
curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d '{"name": "docs"}' "http://127.0.0.1:$PORT/v1/collections" >/dev/null
curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d '{"title": "otters", "text": "Sea otters eat urchins in kelp forests."}' \
  "http://127.0.0.1:$PORT/v1/collections/docs/documents" >/dev/null
# Run from the scratch directory: Schemathesis keeps a cache (.schemathesis/) where it runs.
(cd "$DIR" && "$VENV/bin/st" run "http://127.0.0.1:$PORT/openapi.json" \
  --header "Authorization: Bearer $KEY" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${ST_EXAMPLES:-20}" --seed "${ST_SEED:-1}" --request-timeout 60 \
  --no-color) || { echo "server log: $DIR/server.log (kept)"; trap - EXIT; kill $SERVER; exit 1; }
