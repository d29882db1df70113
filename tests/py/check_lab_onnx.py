#!/usr/bin/env python3
"""Oracle for the lab's ONNX writer (crates/lab/src/onnx.rs, onnx_quant.rs): checks a lab
export against `onnx` and `onnxruntime` themselves.

    python3 tests/py/check_lab_onnx.py FP32.onnx INT8.onnx SAFETENSORS_DIR

FP32.onnx and INT8.onnx are the lab's `fp32` and `int8` files of the model saved (by the lab, as
safetensors) in SAFETENSORS_DIR. The lab writes such triples (a Llama, a BERT, and a Llama in f32
with edge-case channels) under DIR/<model>/{fp32,int8,safetensors} with

    LAB_ONNX_OUT=DIR cargo test -p weight-audit-lab write_files_for_the_python_oracle -- --ignored

Checks:

1. `onnx.checker.check_model(full_check=True)` passes on both, and `config.json` and
   `tokenizer.json` sit next to each;
2. every FP32 initializer is the safetensors tensor it came from, bit for bit: an anonymous
   `onnx::MatMul_<n>` (second input of a MatMul) is `<module>.weight` transposed, the module
   read from the node's scope (`/model/layers.0/self_attn/q_proj/MatMul`) and, when a bias
   `Add` follows, agreeing with the bias's name; a `Gemm(transB=1)` weight and every other
   initializer keeps its own name and layout; and every safetensors tensor is used exactly once;
3. `onnxruntime.quantization.quantize_dynamic(FP32, tmp, per_channel=True,
   weight_type=QuantType.QInt8)` gives exactly INT8's initializers: the same names, and for each
   the same data type, dims, storage field (raw_data or the typed field) and bytes of
   `numpy_helper.to_array`; and the same nodes (name, op, inputs, outputs, attributes, as a
   multiset: the order may differ), producer, IR version and opsets.

Prints a one-line JSON summary; exits 1 with the mismatches on stderr if any.
"""
import json
import os
import struct
import sys
import tempfile
from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic


def read_safetensors(folder):
    """Every tensor of a safetensors folder as float32 (BF16 widened by its bits: numpy has no
    bfloat16, so the `safetensors` package cannot hand it over)."""
    out = {}
    for f in sorted(os.listdir(folder)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, f), "rb") as fh:
            data = fh.read()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            raw = data[base + a : base + b]
            dt = info["dtype"]
            if dt == "F32":
                v = np.frombuffer(raw, dtype="<f4")
            elif dt == "F16":
                v = np.frombuffer(raw, dtype="<f2").astype(np.float32)
            elif dt == "BF16":
                v = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                raise SystemExit(f"{f}: tensor {name} has dtype {dt}, not a float")
            out[name] = v.reshape(info["shape"])
    return out


def same_bits(a, b):
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and a.view(np.uint32).tobytes() == b.view(np.uint32).tobytes()


def check_fp32(model, st, errors):
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    source = {}  # initializer -> (safetensors name, transposed?)
    for n in g.node:
        if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1].startswith("onnx::MatMul_"):
            scope = n.name.strip("/").split("/")[:-1]
            module = ".".join(scope)
            for c in consumers.get(n.output[0], []):
                if c.op_type == "Add":
                    bias = [i for i in c.input if i != n.output[0] and i in inits]
                    if bias and bias[0] != module + ".bias":
                        errors.append(f"{n.name}: bias {bias[0]} disagrees with scope {module}")
            source[n.input[1]] = (module + ".weight", True)
        elif n.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            if attrs.get("transB", 0) != 1:
                errors.append(f"{n.name}: Gemm without transB=1")
            source[n.input[1]] = (n.input[1], False)
    used = Counter()
    for name, v in inits.items():
        hf, transposed = source.get(name, (name, False))
        if hf not in st:
            errors.append(f"fp32 initializer {name}: no safetensors tensor {hf}")
            continue
        used[hf] += 1
        want = st[hf].T if transposed else st[hf]
        if not same_bits(v, want):
            errors.append(f"fp32 initializer {name} != safetensors {hf}{'.T' if transposed else ''}")
    for hf in st:
        if used[hf] != 1:
            errors.append(f"safetensors {hf} {st[hf].shape} used {used[hf]} times in the fp32 file")
    return {"initializers": len(inits), "anonymous": sum(1 for s in source.values() if s[1])}


def storage(t):
    if t.HasField("raw_data"):
        return "raw_data"
    for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        if len(getattr(t, f)):
            return f
    return "empty"


def node_key(n):
    attrs = tuple(sorted((a.name, a.SerializeToString()) for a in n.attribute))
    return (n.name, n.op_type, n.domain, tuple(n.input), tuple(n.output), attrs)


def check_int8(fp32_path, lab, errors):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ort.onnx")
        quantize_dynamic(fp32_path, out, per_channel=True, weight_type=QuantType.QInt8)
        ort = onnx.load(out)
    a = {t.name: t for t in ort.graph.initializer}
    b = {t.name: t for t in lab.graph.initializer}
    for n in sorted(set(a) - set(b)):
        errors.append(f"int8: onnxruntime has initializer {n}, the lab does not")
    for n in sorted(set(b) - set(a)):
        errors.append(f"int8: the lab has initializer {n}, onnxruntime does not")
    for n in sorted(set(a) & set(b)):
        x, y = a[n], b[n]
        if (x.data_type, list(x.dims), storage(x)) != (y.data_type, list(y.dims), storage(y)):
            errors.append(
                f"int8 {n}: onnxruntime {x.data_type} {list(x.dims)} in {storage(x)}, "
                f"lab {y.data_type} {list(y.dims)} in {storage(y)}"
            )
            continue
        xa, ya = numpy_helper.to_array(x), numpy_helper.to_array(y)
        if xa.dtype != ya.dtype or xa.tobytes() != ya.tobytes():
            diff = int(np.sum(xa.reshape(-1).view(np.uint8) != ya.reshape(-1).view(np.uint8)))
            errors.append(f"int8 {n}: values differ ({diff} bytes)")
    na, nb = Counter(map(node_key, ort.graph.node)), Counter(map(node_key, lab.graph.node))
    for k in sorted((na - nb).keys()):
        errors.append(f"int8: onnxruntime node {k[0]!r} ({k[1]} {list(k[3])} -> {list(k[4])}) not in the lab's")
    for k in sorted((nb - na).keys()):
        errors.append(f"int8: lab node {k[0]!r} ({k[1]} {list(k[3])} -> {list(k[4])}) not in onnxruntime's")
    meta = lambda m: (
        m.producer_name,
        m.producer_version,
        m.ir_version,
        sorted((o.domain, o.version) for o in m.opset_import),
        [(p.key, p.value) for p in m.metadata_props],
    )
    if meta(ort) != meta(lab):
        errors.append(f"int8 model fields: onnxruntime {meta(ort)}, lab {meta(lab)}")
    return {
        "initializers": len(b),
        "quantized": sum(1 for n in b if n.endswith("_quantized")),
        "nodes": len(lab.graph.node),
    }


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    fp32_path, int8_path, st_dir = sys.argv[1:]
    errors = []
    models = {}
    for tag, path in (("fp32", fp32_path), ("int8", int8_path)):
        m = onnx.load(path)
        try:
            onnx.checker.check_model(m, full_check=True)
        except Exception as e:  # the checker raises several types
            errors.append(f"{tag}: onnx.checker: {e}")
        for side in ("config.json", "tokenizer.json"):
            if not os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(path)), side)):
                errors.append(f"{tag}: no {side} next to {path}")
        models[tag] = m
    st = read_safetensors(st_dir)
    summary = {
        "safetensors": len(st),
        "fp32": check_fp32(models["fp32"], st, errors),
        "int8": check_int8(fp32_path, models["int8"], errors),
        "mismatches": len(errors),
    }
    print(json.dumps(summary))
    if errors:
        for e in errors[:50]:
            print("MISMATCH " + e, file=sys.stderr)
        if len(errors) > 50:
            print(f"... and {len(errors) - 50} more", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
