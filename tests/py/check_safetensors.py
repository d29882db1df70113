#!/usr/bin/env python3
"""Independent check of lab output with the Python `safetensors` package.

usage: check_safetensors.py DIR [--headers-only]

Opens every *.safetensors under DIR (recursively) with safetensors.safe_open (numpy), reads every
F32/F16 tensor, and reads every tensor of every dtype (BF16 included, which numpy cannot hold)
through safetensors.deserialize, checking dtype, shape, byte length and finiteness. Where a
model.safetensors.index.json exists, checks that the weight_map names exactly the tensors in the
shards and that total_size matches. --headers-only skips reading tensor data (for the sparse
full-size replica, ~200 GB logical per model). If the `tokenizers` package is installed, every
tokenizer.json is also loaded with it and must encode text; its vocabulary must fit the embedding
rows (config vocab_size). Exits 1 on any failure.

needs: pip install safetensors numpy   (optional: tokenizers)
"""
import json
import math
import os
import sys

import numpy as np
from safetensors import deserialize, safe_open

SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
        "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
NUMPY_OK = {"F32", "F16", "F64"}


def norm_dtype(d):
    d = str(d).upper()
    return {"FLOAT32": "F32", "FLOAT16": "F16", "BFLOAT16": "BF16"}.get(d, d)


def check_file(path, headers_only, errors):
    tensors = {}
    with safe_open(path, framework="numpy") as f:
        for k in f.keys():
            sl = f.get_slice(k)
            shape = list(sl.get_shape())
            dtype = norm_dtype(sl.get_dtype())
            tensors[k] = (dtype, shape)
            if not headers_only and dtype in NUMPY_OK:
                t = f.get_tensor(k)
                if list(t.shape) != shape:
                    errors.append(f"{path}: {k}: numpy shape {t.shape} != header {shape}")
                if not np.isfinite(t).all():
                    errors.append(f"{path}: {k}: non-finite values")
    if headers_only:
        return tensors
    with open(path, "rb") as fh:
        data = fh.read()
    seen = set()
    for name, info in deserialize(data):
        seen.add(name)
        dtype, shape, raw = norm_dtype(info["dtype"]), list(info["shape"]), info["data"]
        want = math.prod(shape) * SIZE.get(dtype, 0)
        if (dtype, shape) != tensors.get(name):
            errors.append(f"{path}: {name}: deserialize gives {dtype} {shape}, safe_open {tensors.get(name)}")
        if len(raw) != want:
            errors.append(f"{path}: {name}: {len(raw)} bytes, expected {want}")
        if dtype == "BF16":
            u = np.frombuffer(bytes(raw), dtype="<u2")
            if ((u >> 7) & 0xFF == 0xFF).any():
                errors.append(f"{path}: {name}: non-finite BF16 values")
    if seen != set(tensors):
        errors.append(f"{path}: deserialize and safe_open disagree on tensor names")
    return tensors


def check_folder(folder, files, headers_only, errors):
    per_file = {fn: check_file(os.path.join(folder, fn), headers_only, errors) for fn in files}
    idx_path = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(idx_path):
        idx = json.load(open(idx_path))
        wm = idx.get("weight_map", {})
        actual = {k: fn for fn, ts in per_file.items() for k in ts}
        if wm != actual:
            missing = set(wm) ^ set(actual)
            wrong = [k for k in set(wm) & set(actual) if wm[k] != actual[k]]
            errors.append(f"{idx_path}: weight_map mismatch ({len(missing)} names differ, {len(wrong)} in the wrong shard)")
        total = sum(math.prod(s) * SIZE[d] for ts in per_file.values() for d, s in ts.values())
        if idx.get("metadata", {}).get("total_size") != total:
            errors.append(f"{idx_path}: total_size {idx.get('metadata', {}).get('total_size')} != {total}")
    elif len(files) > 1:
        errors.append(f"{folder}: {len(files)} shards but no index")
    return sum(len(t) for t in per_file.values())


def check_tokenizer(folder, errors):
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.exists(path):
        return
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return
    try:
        tok = Tokenizer.from_file(path)
        enc = tok.encode("the rain in spain")
        cfg = json.load(open(os.path.join(folder, "config.json")))
        rows = cfg.get("vocab_size")
        top = max(tok.get_vocab().values())
        if rows is not None and top >= rows:
            errors.append(f"{path}: token id {top} >= vocab_size {rows}")
        if not enc.ids:
            errors.append(f"{path}: encodes nothing")
    except Exception as e:  # noqa: BLE001
        errors.append(f"{path}: tokenizers cannot load it: {e}")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    headers_only = "--headers-only" in sys.argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    errors = []
    n_files = n_tensors = 0
    for folder, _, names in sorted(os.walk(args[0])):
        files = sorted(n for n in names if n.endswith(".safetensors"))
        if not files:
            continue
        try:
            n_tensors += check_folder(folder, files, headers_only, errors)
            check_tokenizer(folder, errors)
        except Exception as e:  # noqa: BLE001 - any reader failure is a finding
            errors.append(f"{folder}: {type(e).__name__}: {e}")
        n_files += len(files)
    for e in errors:
        print("FAIL", e)
    print(f"checked {n_files} files, {n_tensors} tensors: {'FAILED' if errors or not n_files else 'ok'}")
    return 1 if errors or not n_files else 0


if __name__ == "__main__":
    sys.exit(main())
