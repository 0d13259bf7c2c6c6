#!/usr/bin/env bash
# Measures `ragplane embed-server` on a GPU (ONNX Runtime's CUDA execution provider) and on the
# CPU, with the raw ONNX Runtime baseline of each in the same run. 50-token inputs throughout.
#
#   scripts/gpu-check.sh fetch              # where PyPI is reachable: fill $BUNDLE
#   scripts/gpu-check.sh run [--cpu-only]   # measure; needs only $BUNDLE (no network)
#
# `fetch` writes $BUNDLE (default ./gpu-bundle):
#   bin/ragplane, bin/embed_bench         release builds (PROFILE=dev for a quick trial)
#   model/{model.onnx,tokenizer.json}     from scripts/setup-model.sh
#   ort-cpu/libonnxruntime.so.1.32.0      the CPU ONNX Runtime
#   wheels/*.whl                          onnxruntime-gpu and the NVIDIA runtime wheels below
# `run --cpu-only` skips the wheels and nvidia-smi, so the CPU half can be checked anywhere.
#
# What it measures, on each device (results in $OUT/results.jsonl, summary in $OUT/summary.md):
#   - raw ONNX Runtime: one session in-process, batches back to back (embed_bench raw);
#   - embed-server, closed loop on the native endpoint, per request batch size (embed_bench http);
#   - embed-server, one-text requests with $LATENCY_CONCURRENCY in flight: p50/p95/p99;
#   - GPU memory: nvidia-smi's memory.used sampled every 0.5 s, peak minus before start-up.
#
# Environment: BUNDLE, OUT (default ./gpu-check-out), SECONDS_PER (10, per configuration),
# BATCHES ("1,8,32,64,128,256"), CPU_CONCURRENCY (4), GPU_CONCURRENCY (32),
# LATENCY_CONCURRENCY (256), GPU_DEVICE (0).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE=$(realpath -m "${BUNDLE:-$ROOT/gpu-bundle}")
OUT=$(realpath -m "${OUT:-$ROOT/gpu-check-out}")
SECONDS_PER=${SECONDS_PER:-10}
BATCHES=${BATCHES:-1,8,32,64,128,256}
CPU_CONCURRENCY=${CPU_CONCURRENCY:-4}
GPU_CONCURRENCY=${GPU_CONCURRENCY:-32}
LATENCY_CONCURRENCY=${LATENCY_CONCURRENCY:-256}
GPU_DEVICE=${GPU_DEVICE:-0}
PY=${PYTHON:-python3}

# onnxruntime-gpu 1.31.1 is the newest on PyPI (the CPU wheel is at 1.32.0) and the first that
# provides ONNX Runtime API 31, which ort's `api-31` feature needs. It is built for CUDA 13, so
# the GPU needs an NVIDIA driver for CUDA 13 (580 or newer). Its CUDA provider links cuBLAS 13,
# cuRAND 10 and the CUDA 13 runtime, and loads cuDNN 9, cuFFT 12 and NVRTC 13 when used; the pins
# are those the wheel's `cuda`/`cudnn` extras allow, at their 13.0-series releases.
ORT_GPU_VERSION=1.31.1
WHEELS=(
  "onnxruntime-gpu==$ORT_GPU_VERSION"
  "nvidia-cuda-runtime==13.0.96"
  "nvidia-cublas==13.0.2.14"
  "nvidia-curand==10.4.0.35"
  "nvidia-cufft==12.0.0.61"
  "nvidia-cuda-nvrtc==13.0.88"
  "nvidia-cudnn-cu13==9.19.1.2"
)

log() { echo "gpu-check: $*" >&2; }

fetch() {
  mkdir -p "$BUNDLE"/{bin,model,ort-cpu,wheels}
  bash "$ROOT/scripts/setup-model.sh"
  local cache=${RAGPLANE_CACHE:-$HOME/.cache/ragplane}
  cp -L "$cache/models/all-minilm-l6-v2-int8/"{model.onnx,tokenizer.json} "$BUNDLE/model/"
  cp -L "$cache/onnxruntime/libonnxruntime.so" "$BUNDLE/ort-cpu/libonnxruntime.so"
  # PROFILE=dev gives a quick bundle for trying the script; measurements use release builds.
  local profile=${PROFILE:-release} dir
  dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
  (cd "$ROOT" && cargo build --profile "$profile" -p ragplane --bin ragplane --example embed_bench)
  cp "$ROOT/target/$dir/ragplane" "$ROOT/target/$dir/examples/embed_bench" "$BUNDLE/bin/"
  if [ "${1:-}" != "--cpu-only" ]; then
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
      -d "$BUNDLE/wheels" "${WHEELS[@]}"
  fi
  du -sh "$BUNDLE"/* >&2
}

SERVER_PID=
SAMPLER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null
  SERVER_PID= SAMPLER_PID=
  return 0
}
trap cleanup EXIT

# start_server ORT_LIBRARY ARGS... : starts embed-server on a free port, sets URL and SERVER_PID.
start_server() {
  local lib=$1
  shift
  local out="$OUT/server-$1-$2.out"
  "$BUNDLE/bin/ragplane" embed-server --listen 127.0.0.1:0 --model-dir "$BUNDLE/model" \
    --ort-library "$lib" "$@" >"$out" 2>"$out.log" &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    if grep -q "listening on" "$out" 2>/dev/null; then
      URL=$(sed -n 's/^embed-server listening on //p' "$out")
      log "embed-server $* at $URL"
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "embed-server $* exited:"
      cat "$out.log" >&2
      return 1
    fi
    sleep 0.1
  done
  log "embed-server $* did not start within 60 s"
  return 1
}

bench() { "$BUNDLE/bin/embed_bench" --label "$LABEL" --model-dir "$BUNDLE/model" --seconds "$SECONDS_PER" "$@" | tee -a "$OUT/results.jsonl"; }

measure_device() { # measure_device LABEL ORT_LIBRARY DEVICE_FLAG CONCURRENCY RAW_DEVICE
  local label=$1 lib=$2 devices=$3 conc=$4 raw=$5
  LABEL=$label
  log "$label: raw ONNX Runtime baseline"
  bench raw --ort-library "$lib" --device "$raw" --batches "$BATCHES"
  if [ "$label" = gpu ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$GPU_DEVICE" >"$OUT/gpu-mem-before.txt"
    (while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$GPU_DEVICE"; sleep 0.5; done) \
      >"$OUT/gpu-mem-samples.txt" 2>/dev/null &
    SAMPLER_PID=$!
    start_server "$lib" --devices "$devices" --require-gpu
  else
    start_server "$lib" --devices "$devices"
  fi
  curl -sf "$URL/info" | tee "$OUT/info-$label.json" >&2 && echo >&2
  log "$label: embed-server throughput by request batch size ($conc in flight)"
  bench http --url "$URL" --batches "$BATCHES" --concurrency "$conc"
  log "$label: embed-server latency, one-text requests, $LATENCY_CONCURRENCY in flight"
  bench latency --url "$URL" --concurrency "$LATENCY_CONCURRENCY"
  curl -sf "$URL/metrics" >"$OUT/metrics-$label.txt" || true
  cleanup
}

unpack_gpu_runtime() { # sets GPU_ORT and LD_LIBRARY_PATH
  local dir="$OUT/gpu-runtime"
  rm -rf "$dir" && mkdir -p "$dir"
  for w in "$BUNDLE"/wheels/*.whl; do
    "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$w" "$dir"
  done
  GPU_ORT="$dir/onnxruntime/capi/libonnxruntime.so.$ORT_GPU_VERSION"
  [ -f "$GPU_ORT" ] || { log "no $GPU_ORT in the wheels"; return 1; }
  local libs
  libs=$(find "$dir" -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:)
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

run() {
  local cpu_only=${1:-}
  for f in bin/ragplane bin/embed_bench model/model.onnx model/tokenizer.json ort-cpu/libonnxruntime.so; do
    [ -e "$BUNDLE/$f" ] || { log "missing $BUNDLE/$f: run '$0 fetch' first"; exit 1; }
  done
  mkdir -p "$OUT"
  : >"$OUT/results.jsonl"
  {
    echo "date: $(date -u +%FT%TZ)"
    echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$OUT/machine.txt"
  if [ "$cpu_only" != "--cpu-only" ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$OUT/machine.txt"
    unpack_gpu_runtime
    measure_device gpu "$GPU_ORT" "$GPU_DEVICE" "$GPU_CONCURRENCY" "cuda:$GPU_DEVICE"
  fi
  measure_device cpu "$BUNDLE/ort-cpu/libonnxruntime.so" cpu "$CPU_CONCURRENCY" cpu
  "$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.md"
import json, os, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl")) if l.strip()]
for r in rows:
    for k in ("p50_ms", "p95_ms", "p99_ms"):
        if r.get(k) is None:
            r[k] = float("nan")
print(open(os.path.join(out, "machine.txt")).read().strip().replace("\n", "; "))
print()
print("| device | measurement | batch | in flight | embeddings/s | vs raw ORT, same batch | p50 ms | p95 ms | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for dev in ("gpu", "cpu"):
    mine = [r for r in rows if r["label"] == dev]
    if not mine:
        continue
    raw = {r["batch"]: r for r in mine if r["mode"] == "raw"}
    for r in raw.values():
        print(f"| {dev} | raw ORT | {r['batch']} | 1 | {r['embeddings_per_s']:.0f} | 1.00x | | | |")
    http = [r for r in mine if r["mode"] == "http"]
    for r in http:
        base = raw.get(r["batch"])
        ratio = f"{r['embeddings_per_s'] / base['embeddings_per_s']:.2f}x" if base else ""
        print(f"| {dev} | embed-server | {r['batch']} | {r['concurrency']} | {r['embeddings_per_s']:.0f} | {ratio} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['errors']} |")
    for r in (r for r in mine if r["mode"] == "latency"):
        print(f"| {dev} | embed-server | 1 | {r['concurrency']} | {r['embeddings_per_s']:.0f} | | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['errors']} |")
print()
for dev in ("gpu", "cpu"):
    mine = [r for r in rows if r["label"] == dev]
    http = [r for r in mine if r["mode"] == "http"]
    raw = [r for r in mine if r["mode"] == "raw"]
    if http and raw:
        b = max(http, key=lambda r: r["embeddings_per_s"])
        rb = max(raw, key=lambda r: r["embeddings_per_s"])
        at32 = [r for r in http if r["batch"] == 32]
        s32 = f"{at32[0]['embeddings_per_s']:.0f}/s at batch 32; " if at32 else ""
        print(f"- {dev}: embed-server {s32}best {b['embeddings_per_s']:.0f}/s at batch {b['batch']} "
              f"(raw ORT best {rb['embeddings_per_s']:.0f}/s at batch {rb['batch']}: {b['embeddings_per_s'] / rb['embeddings_per_s']:.2f}x)")
try:
    before = int(open(os.path.join(out, "gpu-mem-before.txt")).read().split()[0])
    samples = [int(l) for l in open(os.path.join(out, "gpu-mem-samples.txt")) if l.strip().isdigit()]
    print(f"- GPU memory: {before} MiB before start-up, peak {max(samples)} MiB: embed-server used {max(samples) - before} MiB")
except (OSError, ValueError, IndexError):
    pass
PYEOF
}

case "${1:-}" in
  fetch) fetch "${2:-}" ;;
  run) run "${2:-}" ;;
  *) echo "usage: $0 fetch [--cpu-only] | run [--cpu-only]" >&2; exit 2 ;;
esac
