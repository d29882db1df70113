#!/usr/bin/env python3
"""Reference ONNX models for tests/it/onnx.rs, built with the `onnx` package, and what onnx
itself reads from them.

Usage: onnx_reference.py OUT_DIR

Writes small BERT-like models exported the way torch.onnx.export and onnxruntime's quantisers
lay them out, each checked by onnx.checker:
  bert_float.onnx         anonymous transposed `onnx::MatMul_<n>` weights feeding MatMul -> Add
                          with named biases (one linear without a bias: named by its node path),
                          a Gemm(transB=1) classifier, a LayerNorm weight in float_data, and
                          extra FLOAT16/BFLOAT16/DOUBLE/INT64/INT32/UINT8/INT8 initializers in
                          raw_data and in the typed fields
  bert_qdq_axis.onnx      static Q/DQ: int8 codes -> DequantizeLinear(axis=1, per output column)
                          -> MatMul -> activation Q/DQ pair -> Add(bias)
  bert_qdq_tensor.onnx    the same with per-tensor scales (uint8 for one layer)
  bert_dyn_int8.onnx      onnxruntime quantize_dynamic: DynamicQuantizeLinear ->
                          MatMulInteger(int8 codes, per-column zero points) -> Cast ->
                          Mul(Mul(activation scale, weight scale)); Gather -> DequantizeLinear
                          embeddings
  bert_dyn_uint8.onnx     the same with uint8 codes and per-tensor scales
  bert_external.onnx      bert_float.onnx with every raw_data tensor in bert_external.onnx.data
  mpnet_float.onnx, mpnet_dyn_int8.onnx
                          the float and dynamic int8 layouts with MPNet's module scopes
and hostile_*.onnx files that must be refused. expected.json holds, per model, every tensor the
reader must list: its Hugging Face name (known here by construction), ONNX name, Hugging Face
shape, layout, how it was named, and its values as float32 bits: numpy_helper.to_array, through
onnx's reference DequantizeLinear for quantised weights, transposed back to [out, in] where
stored [in, out]. Scales and zero points are listed as `absent`; the hostile files map to
substrings their error must contain.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

H, I, V, P, C = 8, 16, 24, 12, 3  # hidden, intermediate, vocab, positions, classes
OPSET = 17


def bits(a):
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    return a.reshape(-1).view(np.uint32).tolist()


def dequantize_linear(q, scale, zp, axis):
    """onnx's reference DequantizeLinear."""
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=axis)
    return ReferenceEvaluator(node).run(None, {"x": q, "s": scale, "z": zp})[0]


def typed(name, dtype, dims, vals):
    """A tensor in TensorProto's typed fields (float_data, int32_data, ...), not raw_data."""
    return helper.make_tensor(name, dtype, dims, vals, raw=False)


class Layer:
    """One BERT layer plus embeddings and a classifier, written in a chosen quantisation."""

    def __init__(self, mode, seed, family="bert"):
        self.mode = mode  # float | qdq_axis | qdq_tensor | dyn_int8 | dyn_uint8
        self.family = family  # bert | mpnet (module scopes as torch.onnx.export names them)
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.expect, self.absent = [], [], [], []
        self.counter = 100
        self.dql = {}  # activation -> DynamicQuantizeLinear outputs

    def init(self, tensor):
        self.inits.append(tensor)
        return tensor.name

    def node(self, op, inputs, name, out=None, **attrs):
        """A node named `name` (torch.onnx's scope path), its output `out` or `<name>_output_0`."""
        out = out or name + "_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def expect_tensor(self, tensor, hf, values, transposed, naming, quant=None):
        self.expect.append({
            "hf": hf, "onnx": tensor.name, "shape": list(np.shape(values)),
            "transposed": transposed, "naming": naming,
            "dtype": helper.tensor_dtype_to_string(tensor.data_type).split(".")[-1],
            "quant": quant, "values": bits(values)})

    def float_param(self, hf, shape, scale=0.1, as_typed=False):
        a = self.rng.normal(0, scale, shape).astype(np.float32)
        if as_typed:
            t = typed(hf, TensorProto.FLOAT, list(shape), a.reshape(-1).tolist())
        else:
            t = numpy_helper.from_array(a, hf)
        self.init(t)
        self.expect_tensor(t, hf, numpy_helper.to_array(t), False, "kept")
        return hf

    def quantised(self, base, w, per_axis, dtype, hf, transposed, naming):
        """Codes `<base>_quantized`, scales and zero points (per output column of the stored
        [in, out] matrix, or per tensor) as onnxruntime names them; the expected values are
        onnx's reference DequantizeLinear of the codes. Returns the three names."""
        lo, hi = (-128, 127) if dtype == np.int8 else (0, 255)
        amax = np.abs(w).max(axis=0) if per_axis else np.abs(w).max()
        scale = (np.asarray(amax) / 100.0).astype(np.float32)
        shift = self.rng.integers(-3, 4, np.shape(scale))
        zp = (shift + (0 if dtype == np.int8 else 128)).astype(dtype)
        q = np.clip(np.round(w / scale) + zp.astype(np.float32), lo, hi).astype(dtype)
        t = numpy_helper.from_array(q, base + "_quantized")
        names = (self.init(t), self.init(numpy_helper.from_array(scale, base + "_scale")),
                 self.init(numpy_helper.from_array(zp, base + "_zero_point")))
        self.absent += names[1:]
        deq = dequantize_linear(q, scale, zp, 1)
        quant = {"scale": bits(np.atleast_1d(scale)),
                 "zero_point": np.atleast_1d(zp).astype(int).tolist(),
                 "axis": 1 if per_axis else None}
        self.expect_tensor(t, hf, deq.T if transposed else deq, transposed, naming, quant)
        return names

    def dynamic_input(self, x):
        if x not in self.dql:
            self.dql[x] = (x + "_quantized", x + "_scale", x + "_zero_point")
            self.nodes.append(helper.make_node("DynamicQuantizeLinear", [x], list(self.dql[x]),
                                               name=x + "_QuantizeLinear"))
        return self.dql[x]

    def linear(self, x, parts, fin, fout, bias=True):
        module, scope = ".".join(parts), "/" + "/".join(parts)
        w = self.rng.normal(0, 0.05, (fout, fin)).astype(np.float32)  # Hugging Face [out, in]
        stored = np.ascontiguousarray(w.T)  # torch.onnx folds weight.T: [in, out]
        anon = f"onnx::MatMul_{self.counter}"
        self.counter += 1
        hf, naming = module + ".weight", "bias" if bias else "path"
        if self.mode == "float":
            t = numpy_helper.from_array(stored, anon)
            self.init(t)
            self.expect_tensor(t, hf, numpy_helper.to_array(t).T, True, naming)
            out = self.node("MatMul", [x, anon], scope + "/MatMul")
        elif self.mode.startswith("qdq"):
            per_axis = self.mode == "qdq_axis"
            dtype = np.uint8 if (not per_axis and parts[-1] == "query") else np.int8
            t, s, z = self.quantised(anon, stored, per_axis, dtype, hf, True, naming)
            axis = {"axis": 1} if per_axis else {}
            wf = self.node("DequantizeLinear", [t, s, z], anon + "_DequantizeLinear",
                           anon + "_DequantizeLinear_Output", **axis)
            mm = self.node("MatMul", [x, wf], scope + "/MatMul")
            # the activation Q/DQ pair static quantisation puts after every op
            a_s = self.init(numpy_helper.from_array(np.float32(0.05), mm + "_scale"))
            a_z = self.init(numpy_helper.from_array(np.int8(0), mm + "_zero_point"))
            self.absent += [a_s, a_z]
            aq = self.node("QuantizeLinear", [mm, a_s, a_z], mm + "_QuantizeLinear",
                           mm + "_QuantizeLinear_Output")
            out = self.node("DequantizeLinear", [aq, a_s, a_z], mm + "_DequantizeLinear",
                            mm + "_DequantizeLinear_Output")
        else:
            per_axis = self.mode == "dyn_int8"
            dtype = np.int8 if per_axis else np.uint8
            t, s, z = self.quantised(anon, stored, per_axis, dtype, hf, True, naming)
            xq, xs, xz = self.dynamic_input(x)
            acc = self.node("MatMulInteger", [xq, t, xz, z], scope + "/MatMul_quant",
                            scope + "/MatMul_output_0_output_quantized")
            cast = self.node("Cast", [acc], acc + "_cast", acc + "_cast_output",
                             to=TensorProto.FLOAT)
            sm = self.node("Mul", [xs, s], scope + "/MatMul_quant_scales_mul",
                           scope + "/MatMul_quant_scales_mul:0")
            out = self.node("Mul", [cast, sm], scope + "/MatMul_quant_output_scale_mul",
                            scope + "/MatMul_output_0")
        if not bias:
            return out
        b = self.float_param(module + ".bias", (fout,), 0.01)
        return self.node("Add", [out, b], scope + "/Add")

    def embedding(self, ids, parts, rows):
        hf, scope = ".".join(parts) + ".weight", "/" + "/".join(parts)
        if self.mode == "float":
            return self.node("Gather", [self.float_param(hf, (rows, H)), ids], scope + "/Gather")
        w = self.rng.normal(0, 0.05, (rows, H)).astype(np.float32)
        dtype = np.uint8 if self.mode == "dyn_uint8" else np.int8
        t, s, z = self.quantised(hf, w, False, dtype, hf, False, "kept")
        if self.mode.startswith("qdq"):
            wf = self.node("DequantizeLinear", [t, s, z], hf + "_DequantizeLinear",
                           hf + "_DequantizeLinear_Output")
            return self.node("Gather", [wf, ids], scope + "/Gather")
        # onnxruntime's dynamic Gather: the codes are gathered, then dequantised
        g = self.node("Gather", [t, ids], scope + "/Gather", scope + "/Gather_output_0_quantized")
        return self.node("DequantizeLinear", [g, s, z], scope + "/Gather_quant_DequantizeLinear",
                         scope + "/Gather_output_0")

    def layer_norm(self, x, parts, as_typed=False):
        module, scope = ".".join(parts), "/" + "/".join(parts)
        g = self.float_param(module + ".weight", (H,), as_typed=as_typed)
        b = self.float_param(module + ".bias", (H,), 0.01)
        return self.node("LayerNormalization", [x, g, b], scope + "/LayerNormalization", axis=-1)

    def extras(self):
        """Initializers of every decoded type, raw and typed (unconsumed, kept names)."""
        vals = self.rng.normal(0, 3, 6)
        bf_typed = typed("x", TensorProto.BFLOAT16, [2, 3], vals.tolist())
        cases = [
            ("extra.f16_raw.weight", numpy_helper.from_array(vals.astype(np.float16), "x")),
            ("extra.f16_typed.weight",
             typed("x", TensorProto.FLOAT16, [2, 3], vals.astype(np.float16))),
            ("extra.bf16_typed.weight", bf_typed),
            ("extra.bf16_raw.weight",
             numpy_helper.from_array(numpy_helper.to_array(bf_typed), "x")),
            ("extra.f64_raw.weight", numpy_helper.from_array(vals, "x")),
            ("extra.f64_typed.weight", typed("x", TensorProto.DOUBLE, [6], vals.tolist())),
            ("extra.i64_typed.buffer", typed("x", TensorProto.INT64, [3], [5, -7, 2**40 + 1])),
            ("extra.i32_typed.buffer", typed("x", TensorProto.INT32, [3], [5, -7, 2**24 + 1])),
            ("extra.u8_typed.buffer", typed("x", TensorProto.UINT8, [3], [0, 7, 255])),
            ("extra.i8_raw.buffer",
             numpy_helper.from_array(np.array([-128, 0, 127], dtype=np.int8), "x")),
        ]
        assert cases[2][1].int32_data and cases[3][1].raw_data and cases[1][1].int32_data
        for name, t in cases:
            t.name = name
            self.init(t)
            self.expect_tensor(t, name, numpy_helper.to_array(t).astype(np.float32), False, "kept")

    def build(self):
        f = self.family
        b = [f]
        e = self.embedding("input_ids", b + ["embeddings", "word_embeddings"], V)
        p = self.embedding("position_ids", b + ["embeddings", "position_embeddings"], P)
        x = self.node("Add", [e, p], f"/{f}/embeddings/Add")
        x = self.layer_norm(x, b + ["embeddings", "LayerNorm"], as_typed=True)
        lp = b + ["encoder", "layer.0"]
        if f == "mpnet":
            # MPNet: attention.attn.{q,k,v,o}, the attention's LayerNorm on `attention`
            att, qkv = lp + ["attention", "attn"], ["q", "k", "v"]
            att_out, att_ln = att + ["o"], lp + ["attention", "LayerNorm"]
            residual = lp + ["attention"]
        else:
            att, qkv = lp + ["attention", "self"], ["query", "key", "value"]
            att_out = lp + ["attention", "output", "dense"]
            att_ln = lp + ["attention", "output", "LayerNorm"]
            residual = att_out[:-1]
        q, k, v = (self.linear(x, att + [n], H, H) for n in qkv)
        # (attention's arithmetic left out: only the weights' graph matters)
        scope = "/" + "/".join(att)
        s = self.node("Add", [q, k], scope + "/Add")
        s = self.node("Add", [s, v], scope + "/Add_1")
        a = self.linear(s, att_out, H, H)
        a = self.node("Add", [a, x], "/" + "/".join(residual) + "/Add_1")
        h1 = self.layer_norm(a, att_ln)
        # a linear without a bias (named by its node path) in the float and dynamic models
        m = self.linear(h1, lp + ["intermediate", "dense"], H, I, bias=self.mode != "float")
        m = self.node("Relu", [m], f"/{f}/encoder/layer.0/intermediate/Relu")
        o = self.linear(m, lp + ["output", "dense"], I, H, bias=not self.mode.startswith("dyn"))
        o = self.node("Add", [o, h1], f"/{f}/encoder/layer.0/output/Add_1")
        h2 = self.layer_norm(o, lp + ["output", "LayerNorm"])
        shape = self.init(numpy_helper.from_array(np.array([-1, H], np.int64), "onnx::Reshape_90"))
        flat = self.node("Reshape", [h2, shape], "/Reshape")
        # a classifier torch exports as Gemm(transB=1): stored [out, in] already
        t = numpy_helper.from_array(self.rng.normal(0, 0.05, (C, H)).astype(np.float32),
                                    "onnx::Gemm_91")
        self.init(t)
        self.expect_tensor(t, "classifier.weight", numpy_helper.to_array(t), False, "bias")
        cb = self.float_param("classifier.bias", (C,), 0.01)
        self.node("Gemm", [flat, t.name, cb], "/classifier/Gemm", "logits", transB=1)
        if self.mode == "float":
            self.extras()
        graph = helper.make_graph(
            self.nodes, self.family,
            [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 4]),
             helper.make_tensor_value_info("position_ids", TensorProto.INT64, [1, 4])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [4, C])],
            self.inits)
        model = helper.make_model(graph, producer_name="pytorch", producer_version="2.1.0",
                                  opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def hostile(out):
    """Files the reader must refuse: {file: [substrings of the error]}."""
    def ext_tensor(location, offset="0", length="24"):
        t = TensorProto(name="enc.w.weight", data_type=TensorProto.FLOAT, dims=[2, 3])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", offset), ("length", length)):
            e = t.external_data.add()
            e.key, e.value = k, v
        return t

    def raw_tensor(dims, nbytes):
        return TensorProto(name="enc.w.weight", data_type=TensorProto.FLOAT, dims=dims,
                           raw_data=b"\0" * nbytes)

    with open(os.path.join(out, "side.bin"), "wb") as f:
        f.write(b"\0" * 16)
    cases = {
        "hostile_dotdot.onnx": (ext_tensor("../outside.bin"), ["external_data", ".."]),
        "hostile_abs.onnx": (ext_tensor("/etc/passwd"), ["external_data", "absolute"]),
        "hostile_backslash.onnx": (ext_tensor("..\\side.bin"), ["external_data", "backslash"]),
        "hostile_past_end.onnx": (ext_tensor("side.bin", "8", "24"), ["offset", "past the end"]),
        "hostile_short.onnx": (raw_tensor([2, 3], 10), ["raw_data", "10 bytes", "24"]),
        "hostile_dims.onnx": (raw_tensor([2**40, 2**40], 0), ["dims", "overflow"]),
        "hostile_negative.onnx": (raw_tensor([-1, 3], 0), ["dims", "negative"]),
    }
    errors = {}
    for name, (t, want) in cases.items():
        graph = helper.make_graph([], "g", [], [], [t])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        with open(os.path.join(out, name), "wb") as f:
            f.write(model.SerializeToString())
        errors[name] = ["enc.w.weight"] + want
    return errors


def main(out):
    os.makedirs(out, exist_ok=True)
    expected = {"models": {}}
    for i, mode in enumerate(["float", "qdq_axis", "qdq_tensor", "dyn_int8", "dyn_uint8"]):
        layer = Layer(mode, seed=i)
        model = layer.build()
        name = "bert_" + mode + ".onnx"
        onnx.save_model(model, os.path.join(out, name))
        # what onnx reads back from the file agrees with what was built
        graph = onnx.load(os.path.join(out, name)).graph
        back = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for e in layer.expect:
            if e["quant"] is None:
                v = back[e["onnx"]].astype(np.float32)
                assert bits(v.T if e["transposed"] else v) == e["values"], e["hf"]
        expected["models"][name] = {"tensors": layer.expect, "absent": layer.absent}
        if mode == "float":
            ext = Layer(mode, seed=i).build()
            path = os.path.join(out, "bert_external.onnx")
            onnx.save_model(ext, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location="bert_external.onnx.data", size_threshold=0)
            graph = onnx.load(path, load_external_data=False).graph
            # onnx moves the raw_data tensors out; typed fields stay in the model
            assert sum(t.data_location == TensorProto.EXTERNAL for t in graph.initializer) > 20
            back = {t.name: numpy_helper.to_array(t, base_dir=out) for t in graph.initializer}
            for e in layer.expect:
                v = back[e["onnx"]].astype(np.float32)
                assert bits(v.T if e["transposed"] else v) == e["values"], e["hf"]
            expected["models"]["bert_external.onnx"] = {"tensors": layer.expect, "absent": []}
    for i, mode in enumerate(["float", "dyn_int8"]):
        # MPNet's scopes (attention.attn.q, …), as all-mpnet-base-v2's exports carry them
        layer = Layer(mode, seed=10 + i, family="mpnet")
        name = "mpnet_" + mode + ".onnx"
        onnx.save_model(layer.build(), os.path.join(out, name))
        expected["models"][name] = {"tensors": layer.expect, "absent": layer.absent}
    expected["errors"] = hostile(out)
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
