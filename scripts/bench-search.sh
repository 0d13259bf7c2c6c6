#!/usr/bin/env bash
# /v1/search throughput and latency at 100 and 1,000 concurrent connections, with the caches off
# and on, against a release build on embedded defaults.
#
# - closed loop (wrk): every connection sends its next request as soon as the last one answers,
#   which measures the most the server can do; latency is then queueing-bound (Little's law);
# - open loop (wrk with random pauses, see search.lua): about RATE requests/s in total over the
#   same connections, which is how the goal "p95 < 200 ms at 167 requests/s" is stated.
#
#   DURATION=20  closed-loop seconds   OPEN_DURATION=40  open-loop seconds
#   DOCS=100  synthetic documents      RATE=167  open-loop rate
#
#   DURATION=20  seconds per run        DOCS=100  synthetic documents to index
#   STORES=embedded  the stores, one run each in this order: "embedded" (SQLite + local files),
#                    "scale-out" (PostgreSQL + S3 on the servers of scripts/services/postgres.sh and
#                    s3.sh: source their env.sh first), or "embedded scale-out" to compare
#   CACHES="off on"  the cache settings to run      CONNS="100 1000"  connection counts
#   MISS_SHARE=0     the share of requests, evenly spread, that send a query never sent before
#                    (with CACHES=on: a mix of cache hits and computed searches; see search.lua)
#   TRACES=off       runs of each setting, in order, on the same data: "off" or "on" (every trace
#                    exported to the Jaeger of scripts/services/jaeger.sh: source its env.sh
#                    first), for example "off on off on" to compare with tracing on; or
#                    "off+on": a server of each at once, on the same CPUs and data, each with
#                    its own wrk, which cancels the machine's drift between runs (closed loop
#                    only; the line "side-by-side off/on cpu_per_request_ratio=" compares them)
#   TRACE_PROTOCOL=grpc  how "on" exports: "grpc" or "http/protobuf" (OTLP/HTTP to the same Jaeger)
#   SAMPLE_RATIO=1.0  the share of traces "on" samples and exports (telemetry.traces.sample_ratio)
#   SERVER_CPUS=     CPUs the server runs on (taskset list, e.g. "0"); with it, wrk and the
#                    Jaeger of scripts/services/jaeger.sh (when running) are moved to LOAD_CPUS,
#                    so the figures are the server's own and not the load generator's or the
#                    trace backend's, which run on other machines in a deployment
#   LOAD_CPUS=       CPUs for wrk and Jaeger when SERVER_CPUS is set (e.g. "1")
#
# Each closed-loop line also gives the server's own CPU time per request (server_cpu_us, from
# /proc/<pid>/stat: every thread, user and system), the kernel's share of that time, the
# server's page faults and context switches per request, and each CPU's busy share over the run
# (busy=cpu0:0.99,cpu1:0.71, from /proc/stat). With the server pinned, its CPU near 1.00 says
# the server was the bottleneck; a load CPU near 1.00 with the server's below says wrk (or
# the trace backend beside it) was, and requests/s then understates what the server can do.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
DOCS=${DOCS:-100}
RATE=${RATE:-167}
OPEN_DURATION=${OPEN_DURATION:-40}
STORES=${STORES:-embedded}
CACHES=${CACHES:-off on}
CONNS=${CONNS:-100 1000}
TRACES=${TRACES:-off}
SERVER_CPUS=${SERVER_CPUS:-}
LOAD_CPUS=${LOAD_CPUS:-}
TRACE_PROTOCOL=${TRACE_PROTOCOL:-grpc}
case $TRACE_PROTOCOL in
  grpc | http/protobuf) ;;
  *) echo "TRACE_PROTOCOL=$TRACE_PROTOCOL: use grpc or http/protobuf" >&2; exit 1 ;;
esac
SAMPLE_RATIO=${SAMPLE_RATIO:-1.0}
MISS_SHARE=${MISS_SHARE:-0}
python3 -c 'import sys; r = float(sys.argv[1]); sys.exit(not 0 <= r <= 1)' "$MISS_SHARE" 2>/dev/null ||
  { echo "MISS_SHARE=$MISS_SHARE: use a number from 0 to 1" >&2; exit 1; }
export BENCH_MISS_SHARE=$MISS_SHARE
python3 -c 'import sys; r = float(sys.argv[1]); sys.exit(not 0 <= r <= 1)' "$SAMPLE_RATIO" 2>/dev/null ||
  { echo "SAMPLE_RATIO=$SAMPLE_RATIO: use a number from 0 to 1" >&2; exit 1; }
# pin_server / pin_load: the commands prefixed to the server's and wrk's.
pin_server=() pin_load=()
if [ -n "$SERVER_CPUS" ]; then
  [ -n "$LOAD_CPUS" ] || { echo "SERVER_CPUS needs LOAD_CPUS (the CPUs for wrk and Jaeger)" >&2; exit 1; }
  pin_server=(taskset -c "$SERVER_CPUS") pin_load=(taskset -c "$LOAD_CPUS")
  jaeger_pid_file=${RAGPLANE_SVC_DIR:-target/services}/jaeger.pid
  if [ -f "$jaeger_pid_file" ]; then
    taskset -a -p -c "$LOAD_CPUS" "$(cat "$jaeger_pid_file")" >/dev/null
    echo "Jaeger (pid $(cat "$jaeger_pid_file")) moved to CPUs $LOAD_CPUS" >&2
  fi
fi
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
bash scripts/setup-model.sh >/dev/null
if [ -z "${RAGPLANE_BIN:-}" ]; then cargo build --release --locked -p ragplane; fi
BIN=${RAGPLANE_BIN:-$PWD/target/release/ragplane}   # RAGPLANE_BIN: another build of the same binary
# wrk and the server each hold one descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 2100 ] || { echo "need at least 2100 open files, have $(ulimit -n)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$WORK"' EXIT
python3 - "$WORK/corpus" "$DOCS" <<'PY'
import os, random, sys
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
rng = random.Random(7)
words = ("system data request latency cluster replica storage network policy report customer invoice shipment "
         "warehouse forecast quarter revenue budget review team engineer design module service query index vector "
         "document model training river mountain harbour village winter summer garden market library museum "
         "measured improved reduced increased planned observed delivered approved tested").split()
for d in range(n):
    paras = [". ".join(" ".join(rng.choice(words) for _ in range(rng.randint(8, 17))) for _ in range(8)) + "."
             for _ in range(10)]
    open(os.path.join(out, f"doc-{d:04}.txt"), "w").write(f"Document {d}.\n\n" + "\n\n".join(paras))
PY

# Settings of the server for a store set: nothing for embedded; for scale-out a fresh
# PostgreSQL database and a fresh key prefix in the S3 bucket.
stores_env() {
  [ "$1" = scale-out ] || return 0
  local run=bench_$(date +%s%N)
  psql "${RAGPLANE_TEST_POSTGRES_URL:?source the env.sh of scripts/services first}" -qc "CREATE DATABASE $run" >&2
  echo RAGPLANE__METADATA__BACKEND=postgres "RAGPLANE__METADATA__URL=${RAGPLANE_TEST_POSTGRES_URL%/*}/$run" \
    RAGPLANE__OBJECTS__BACKEND=s3 "RAGPLANE__OBJECTS__BUCKET=$RAGPLANE_TEST_S3_BUCKET" "RAGPLANE__OBJECTS__PREFIX=$run" \
    "RAGPLANE__OBJECTS__ENDPOINT=$RAGPLANE_TEST_S3_ENDPOINT" "RAGPLANE__OBJECTS__REGION=$RAGPLANE_TEST_S3_REGION" \
    "RAGPLANE__OBJECTS__ACCESS_KEY_ID=$RAGPLANE_TEST_S3_ACCESS_KEY" \
    "RAGPLANE__OBJECTS__SECRET_ACCESS_KEY=$RAGPLANE_TEST_S3_SECRET_KEY"
}

# server_counters PID: what the process (all threads) has used so far, as four numbers: CPU time
# in ticks (user + system), system time in ticks, minor page faults, and context switches
# (voluntary + involuntary, summed over its live threads).
server_counters() {
  local ctx
  ctx=$(cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}')
  awk -v ctx="$ctx" '{print $14 + $15, $15, $10, ctx}' "/proc/$1/stat"
}
# cpu_busy BEFORE AFTER: each CPU's busy share between two copies of /proc/stat.
cpu_busy() {
  python3 - "$1" "$2" <<'PY'
import sys
def read(path):
    out = {}
    for line in open(path):
        f = line.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            v = [int(x) for x in f[1:]]
            out[f[0]] = (sum(v[:8]), v[3] + v[4])  # total, idle + iowait
    return out
a, b = read(sys.argv[1]), read(sys.argv[2])
print(",".join(f"{c}:{1 - (b[c][1] - a[c][1]) / max(1, b[c][0] - a[c][0]):.2f}" for c in sorted(b, key=lambda c: int(c[3:]))))
PY
}
TICKS_PER_S=$(getconf CLK_TCK)

KEY=rp_bench_search_key
export RAGPLANE_API_KEY=$KEY
if [[ " ${TRACES//+/ } " == *" on "* ]]; then
  : "${RAGPLANE_TEST_JAEGER_OTLP_URL:?source the env.sh of scripts/services/jaeger.sh first}"
  : "${RAGPLANE_TEST_JAEGER_OTLP_HTTP_URL:?source the env.sh of scripts/services/jaeger.sh first}"
fi
# traces_env on|off : the server's settings for that tracing mode.
traces_env() {
  [ "$1" = on ] || return 0
  local url=$RAGPLANE_TEST_JAEGER_OTLP_URL
  [ "$TRACE_PROTOCOL" = grpc ] || url=$RAGPLANE_TEST_JAEGER_OTLP_HTTP_URL
  echo "OTEL_EXPORTER_OTLP_ENDPOINT=$url" "OTEL_EXPORTER_OTLP_PROTOCOL=$TRACE_PROTOCOL" \
    "RAGPLANE__TELEMETRY__TRACES__SAMPLE_RATIO=$SAMPLE_RATIO"
}

# start_server TRACES DATA_DIR LOG: starts a server (tracing "off" or "on") on a free port and
# waits until it is ready; sets SERVER_PID and SERVER_URL.
start_server() {
  local port=$((20000 + RANDOM % 12000))   # below the ephemeral range (32768-) wrk's connections use
  local flag
  flag=$([ "$cache" = on ] && echo true || echo false)
  # shellcheck disable=SC2046,SC2086 # the *_env functions print separate NAME=value words.
  env $STORE_ENV $(traces_env "$1") RAGPLANE__CACHE__EMBEDDINGS=$flag RAGPLANE__CACHE__RESULTS=$flag \
    "${pin_server[@]}" "$BIN" serve --listen 127.0.0.1:$port --data-dir "$2" --admin-key $KEY >"$3" 2>&1 &
  SERVER_PID=$! SERVER_URL=http://127.0.0.1:$port
  until curl -sf "$SERVER_URL/readyz" >/dev/null; do
    kill -0 $SERVER_PID 2>/dev/null || { echo "the server stopped:" >&2; tail -5 "$3" >&2; exit 1; }
    sleep 0.2
  done
}

# load_all CONNS SECONDS OUT: closed-loop wrk on every server of SERVER_URLS at once, for
# SECONDS; wrk's output for server k goes to OUT with k in place of %k.
load_all() {
  local k pids=()
  for k in "${!SERVER_URLS[@]}"; do
    "${pin_load[@]}" wrk -t2 -c"$1" -d"$2"s --timeout 10s -s scripts/bench/search.lua "${SERVER_URLS[$k]}" \
      >"${3//%k/$k}" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
}

# closed_loop CONNS: a 3 s warm-up (it fills the caches when on, and the connection pool), then
# DURATION seconds of closed-loop load on every server of SERVER_URLS at once. Leaves wrk's
# RESULT line for server k in $WORK/wrk-k.txt, each server's CPU ticks at the start of the
# measured part in COUNTERS (server_counters), and /proc/stat around it in $WORK/stat.before and stat.after.
closed_loop() {
  local k
  load_all "$1" 3 /dev/null || true
  COUNTERS=()
  cp /proc/stat "$WORK/stat.before"
  for k in "${!SERVER_PIDS[@]}"; do COUNTERS+=("$(server_counters "${SERVER_PIDS[$k]}")"); done
  load_all "$1" "$DURATION" "$WORK/wrk-%k.txt"
  cp /proc/stat "$WORK/stat.after"
}

for stores in $STORES; do
for cache in $CACHES; do
  STORE_ENV=$(stores_env "$stores")
  DATA=$WORK/data-$stores-$cache
  # The corpus is ingested once per setting, by a server of its own, before any measured run.
  start_server off "$DATA" "$WORK/server-ingest.log"
  RAGPLANE_URL=$SERVER_URL "$BIN" ingest -c bench "$WORK/corpus" >/dev/null
  kill $SERVER_PID; wait $SERVER_PID 2>/dev/null || true
  for traces in $TRACES; do
  # "off" or "on" alone, or "off+on": both at once, side by side on the same CPUs.
  IFS=+ read -r -a modes <<<"$traces"
  SERVER_PIDS=() SERVER_URLS=()
  for k in "${!modes[@]}"; do
    dir=$DATA
    if [ "$k" -gt 0 ]; then dir=$DATA-copy-$k; rm -rf "$dir"; cp -r "$DATA" "$dir"; fi
    start_server "${modes[$k]}" "$dir" "$WORK/server-$cache-$k.log"
    SERVER_PIDS+=("$SERVER_PID") SERVER_URLS+=("$SERVER_URL")
  done
  for conns in $CONNS; do
    closed_loop "$conns"
    busy=$(cpu_busy "$WORK/stat.before" "$WORK/stat.after")
    per_request=()
    for k in "${!modes[@]}"; do
      read -r used sys faults ctx < <(paste -d' ' <(tr ' ' '\n' <<<"${COUNTERS[$k]}") \
        <(server_counters "${SERVER_PIDS[$k]}" | tr ' ' '\n') | awk '{printf "%d ", $2 - $1} END {print ""}')
      line=$(grep '^RESULT' "$WORK/wrk-$k.txt")
      requests=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$line")
      per_request+=("$(python3 -c "print(f'{$used / $TICKS_PER_S * 1e6 / max(1, $requests):.1f}')")")
      # Where the CPU went besides the server's own code: the kernel's share of it, and page
      # faults and context switches per request.
      kernel=$(python3 -c "print(f'sys_share={$sys / max(1, $used):.3f} faults_per_request={$faults / max(1, $requests):.3f} switches_per_request={$ctx / max(1, $requests):.3f}')")
      side=$([ ${#modes[@]} -gt 1 ] && echo " side-by-side" || true)
      echo "stores=$stores cache=$cache miss_share=$MISS_SHARE traces=${modes[$k]}$side connections=$conns closed-loop $line" \
        "server_cpu_us=${per_request[$k]} $kernel busy=$busy"
    done
    if [ ${#modes[@]} -gt 1 ]; then
      # Both servers ran at once on the same CPUs, so whatever slowed the machine slowed both:
      # the ratio of their CPU per request stands for the ratio of their throughputs (each
      # uses more CPU per request than it would alone, sharing the core's caches).
      echo "stores=$stores cache=$cache miss_share=$MISS_SHARE connections=$conns side-by-side ${modes[0]}/${modes[1]}" \
        "cpu_per_request_ratio=$(python3 -c "print(f'{${per_request[0]} / ${per_request[1]}:.3f}')")"
    elif [ "$cache" = off ] && [ "$OPEN_DURATION" -gt 0 ]; then
      # Open loop: RATE requests/s in total over the same number of connections.
      mean=$(python3 -c "print(int($conns * 1000 / $RATE))")
      BENCH_MEAN_DELAY_MS=$mean "${pin_load[@]}" wrk -t2 -c"$conns" -d"${OPEN_DURATION}"s --timeout 10s \
        -s scripts/bench/search.lua "${SERVER_URLS[0]}" >"$WORK/open.txt" 2>&1
      echo "stores=$stores cache=$cache traces=$traces connections=$conns open-loop target=${RATE}/s $(grep '^RESULT' "$WORK/open.txt")"
    fi
  done
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
  done
done
done
