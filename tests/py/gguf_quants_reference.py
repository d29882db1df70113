#!/usr/bin/env python3
"""Reference (de)quantisation with llama.cpp's gguf-py (tests/it/gguf_quants.rs compares bits).

Usage: gguf_quants_reference.py OP TYPE IN OUT [OP TYPE IN OUT ...]
  dequant TYPE in.bin out.f32   raw blocks of TYPE -> little-endian f32 (gguf.quants.dequantize)
  quant   TYPE in.f32 out.bin   little-endian f32 -> raw blocks of TYPE (gguf.quants.quantize)
TYPE is a gguf.GGMLQuantizationType member name (Q4_0, Q6_K, BF16, ...). Several instructions
in one call keep the test to a single interpreter start-up.
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize


def run(op, type_name, src, dst):
    qtype = GGMLQuantizationType[type_name]
    if op == "dequant":
        data = np.fromfile(src, dtype=np.uint8)
        values = dequantize(data, qtype)
        np.ascontiguousarray(values, dtype="<f4").tofile(dst)
    elif op == "quant":
        values = np.fromfile(src, dtype="<f4").astype(np.float32)
        blocks = quantize(values, qtype)
        np.ascontiguousarray(blocks).tofile(dst)
    else:
        raise SystemExit(f"unknown operation {op!r} (dequant or quant)")


def main(args):
    # Scales near the f16/f32 limits overflow to inf by design; numpy's warnings are noise here.
    np.seterr(all="ignore")
    if not args or len(args) % 4:
        raise SystemExit(__doc__)
    for i in range(0, len(args), 4):
        run(*args[i : i + 4])


if __name__ == "__main__":
    main(sys.argv[1:])
