#!/usr/bin/env bash
# README command 1: runs the data plane on embedded defaults, ingests examples/corpus and prints
# the answer to a question. Everything lives in a temporary data directory, removed at the end.
#
#   QUESTION="..."   the question to ask (default: one the examples answer)
#   PORT=8080        port to listen on
set -euo pipefail
cd "$(dirname "$0")/.."

QUESTION=${QUESTION:-"How far away can the Skerry Point light be seen?"}
PORT=${PORT:-8080}
KEY="rp_quickstart_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

bash scripts/setup-model.sh
# The dev profile (dependencies optimised, see Cargo.toml) is the build README command 2 uses, so
# running both commands compiles the dependencies once; five documents need no release build.
cargo build --locked -p ragplane
BIN=${CARGO_TARGET_DIR:-target}/debug/ragplane

DATA=$(mktemp -d)
LOG="$DATA/server.log"
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA/data" --admin-key "$KEY" >"$LOG" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then cat "$LOG"; exit 1; fi
  sleep 0.2
done

export RAGPLANE_URL="http://127.0.0.1:$PORT" RAGPLANE_API_KEY="$KEY"
"$BIN" ingest --collection examples examples/corpus
echo
echo "Q: $QUESTION"
"$BIN" query --collection examples "$QUESTION"
