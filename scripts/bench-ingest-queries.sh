#!/usr/bin/env bash
# Query latency while a large ingestion runs, against the same server idle.
#
# For each store set: start the data plane, index a small warm corpus, measure /v1/search on it at a
# steady open-loop rate with the caches off (idle), then upload DOCS documents of about
# CHUNKS_PER_DOC chunks each (10,000 chunks by default) into the same collection and measure the
# same load while they are being indexed, so queries also see the index grow. It prints both p95s, their ratio, the ingestion's chunks/s and how much of the
# ingestion was still waiting when the measurement ended (it must be > 0 for a fair figure).
#
#   STORES="embedded scale-out"  embedded: one `ragplane serve` with its workers (SQLite, files,
#                                embedded index); scale-out: `serve --no-workers` plus one
#                                `ragplane worker` on PostgreSQL, Redis, S3 and the PostgreSQL
#                                index (source target/services/env.sh of scripts/services first)
#   DOCS=200 CHUNKS_PER_DOC=50   the ingestion (chunks of 200 tokens)
#   RATE=20 CONNS=20             open-loop queries/s and connections
#   DURATION=30                  seconds per measurement
#   RAGPLANE_BIN                 the binary (default: target/release/ragplane, built if missing)
# Any RAGPLANE__* variable set by the caller reaches every process, e.g.
# RAGPLANE__EMBEDDING__BULK_BATCH_TOKENS=16384 to run bulk work in full-size batches.
set -euo pipefail
cd "$(dirname "$0")/.."
STORES=${STORES:-embedded}
DOCS=${DOCS:-200}
CHUNKS_PER_DOC=${CHUNKS_PER_DOC:-50}
RATE=${RATE:-20}
CONNS=${CONNS:-20}
DURATION=${DURATION:-30}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
bash scripts/setup-model.sh >/dev/null
BIN=${RAGPLANE_BIN:-$PWD/target/release/ragplane}
[ -x "$BIN" ] || cargo build --release --locked -p ragplane
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d)
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$WORK"' EXIT
python3 - "$WORK" "$DOCS" "$CHUNKS_PER_DOC" <<'PY'
import os, random, sys
out, n, chunks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(11)
words = ("system data request latency cluster replica storage network policy report customer invoice shipment "
         "warehouse forecast quarter revenue budget review team engineer design module service query index vector "
         "document model training river mountain harbour village winter summer garden market library museum "
         "measured improved reduced increased planned observed delivered approved tested").split()
def doc(i, paragraphs):
    # About 40 tokens per paragraph with these words; chunks of 200 tokens overlapping by 40
    # advance 160 tokens, so four paragraphs make about one chunk.
    paras = [" ".join(rng.choice(words) for _ in range(34)) + "." for _ in range(paragraphs)]
    return f"Document {i}.\n\n" + "\n\n".join(paras)
for name, count, paragraphs in (("warm", 20, 10), ("load", n, 4 * chunks)):
    os.makedirs(f"{out}/{name}")
    for i in range(count):
        open(f"{out}/{name}/doc-{i:05}.txt", "w").write(doc(i, paragraphs))
PY

KEY=rp_bench_ingest_queries
export RAGPLANE_API_KEY=$KEY
# Caches off: every query embeds its text and searches the index.
export RAGPLANE__CACHE__EMBEDDINGS=false RAGPLANE__CACHE__RESULTS=false
export BENCH_MEAN_DELAY_MS=$((CONNS * 1000 / RATE))

measure() {  # URL COLLECTION : one open-loop run; prints wrk's RESULT line
  BENCH_COLLECTION=$2 wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s scripts/bench/search.lua "$1" \
    | grep '^RESULT'
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
chunks_indexed() {  # METRICS_URL : chunks the workers have indexed so far
  curl -sf "$1/metrics" | awk '$1 == "ragplane_chunks_indexed_total" { print int($2) }'
}
documents_waiting() {  # METRICS_URL : document jobs waiting or in flight
  curl -sf "$1/metrics" | awk '$1 == "ragplane_queue_depth{queue=\"documents\"}" { print int($2) }'
}

for stores in $STORES; do
  PORT=$((20000 + RANDOM % 20000))
  URL=http://127.0.0.1:$PORT
  pids=()
  if [ "$stores" = scale-out ]; then
    run=bench_$(date +%s%N)
    psql "${RAGPLANE_TEST_POSTGRES_URL:?source target/services/env.sh first}" -qc "CREATE DATABASE $run"
    db=${RAGPLANE_TEST_POSTGRES_URL%/*}/$run
    export RAGPLANE__METADATA__BACKEND=postgres RAGPLANE__METADATA__URL=$db \
      RAGPLANE__VECTORS__BACKEND=postgres RAGPLANE__VECTORS__URL=$db \
      RAGPLANE__QUEUE__BACKEND=redis RAGPLANE__REDIS__URL=$RAGPLANE_TEST_REDIS_URL RAGPLANE__REDIS__KEY_PREFIX=$run: \
      RAGPLANE__OBJECTS__BACKEND=s3 RAGPLANE__OBJECTS__BUCKET=$RAGPLANE_TEST_S3_BUCKET RAGPLANE__OBJECTS__PREFIX=$run \
      RAGPLANE__OBJECTS__ENDPOINT=$RAGPLANE_TEST_S3_ENDPOINT RAGPLANE__OBJECTS__REGION=$RAGPLANE_TEST_S3_REGION \
      RAGPLANE__OBJECTS__ACCESS_KEY_ID=$RAGPLANE_TEST_S3_ACCESS_KEY \
      RAGPLANE__OBJECTS__SECRET_ACCESS_KEY=$RAGPLANE_TEST_S3_SECRET_KEY
    "$BIN" serve --no-workers --listen 127.0.0.1:$PORT --data-dir "$WORK/data-$stores" --admin-key $KEY \
      >"$WORK/api.log" 2>&1 &
    pids+=($!)
    until curl -sf "$URL/readyz" >/dev/null; do sleep 0.2; done
    "$BIN" worker --data-dir "$WORK/data-$stores" --listen 127.0.0.1:$((PORT + 1)) >"$WORK/worker.log" 2>&1 &
    pids+=($!)
    METRICS=http://127.0.0.1:$((PORT + 1))
    until curl -sf "$METRICS/readyz" >/dev/null; do sleep 0.2; done
  else
    "$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/data-$stores" --admin-key $KEY >"$WORK/api.log" 2>&1 &
    pids+=($!)
    until curl -sf "$URL/readyz" >/dev/null; do sleep 0.2; done
    METRICS=$URL
  fi
  RAGPLANE_URL=$URL "$BIN" ingest -c bench "$WORK/warm" >/dev/null
  # A short warm-up, then idle.
  DURATION=3 measure "$URL" bench >/dev/null || true
  idle=$(measure "$URL" bench)
  echo "stores=$stores idle   $idle"

  before=$(chunks_indexed "$METRICS")
  start=$(date +%s.%N)
  RAGPLANE_URL=$URL "$BIN" ingest -c bench --no-wait "$WORK/load" >/dev/null
  busy=$(measure "$URL" bench)
  during=$(($(chunks_indexed "$METRICS") - before))
  waiting=$(documents_waiting "$METRICS")
  echo "stores=$stores ingest $busy chunks_indexed_during=$during documents_still_waiting=$waiting"
  while [ "$(documents_waiting "$METRICS")" != 0 ]; do sleep 0.5; done
  total=$(($(chunks_indexed "$METRICS") - before))
  secs=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  p_idle=$(echo "$idle" | field p95_ms)
  p_busy=$(echo "$busy" | field p95_ms)
  echo "stores=$stores p95_idle_ms=$p_idle p95_during_ingest_ms=$p_busy ratio=$(python3 -c "print(f'{$p_busy / $p_idle:.2f}')")" \
    "ingest_chunks=$total ingest_secs=$secs chunks_per_sec=$(python3 -c "print(f'{$total / $secs:.1f}')")"
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  if [ "$stores" = scale-out ]; then
    unset RAGPLANE__METADATA__BACKEND RAGPLANE__METADATA__URL RAGPLANE__VECTORS__BACKEND RAGPLANE__VECTORS__URL \
      RAGPLANE__QUEUE__BACKEND RAGPLANE__REDIS__URL RAGPLANE__REDIS__KEY_PREFIX RAGPLANE__OBJECTS__BACKEND \
      RAGPLANE__OBJECTS__BUCKET RAGPLANE__OBJECTS__PREFIX RAGPLANE__OBJECTS__ENDPOINT RAGPLANE__OBJECTS__REGION \
      RAGPLANE__OBJECTS__ACCESS_KEY_ID RAGPLANE__OBJECTS__SECRET_ACCESS_KEY
  fi
done
