#!/usr/bin/env python3
"""Reads a GGUF file with llama.cpp's own Python package `gguf` (an independent reader) and
prints, as JSON, what the tool's reader must agree with: per tensor (in file order) its name,
ggml dims, type name, and the sha256 of its values dequantised to little-endian f32 by
`gguf.quants.dequantize`; plus the metadata keys and the vocabulary size.

    python3 tests/py/check_gguf.py FILE.gguf
"""

import hashlib
import json
import sys

import numpy as np
import gguf


def main():
    path = sys.argv[1]
    r = gguf.GGUFReader(path)
    tensors = []
    for t in r.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        f32 = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
        tensors.append({
            "name": t.name,
            "dims": [int(d) for d in t.shape],
            "type": t.tensor_type.name,
            "sha256": hashlib.sha256(f32.tobytes()).hexdigest(),
        })
    tokens = r.fields.get("tokenizer.ggml.tokens")
    out = {
        "keys": sorted(r.fields.keys()),
        "vocab": len(tokens.data) if tokens is not None else 0,
        "tensors": tensors,
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
