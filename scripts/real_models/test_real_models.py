"""Offline tests of the readers: inputs built by hand (or by an independent writer such as
Python's zipfile), run through the reader, compared with what was built.

    python3 -m unittest discover -s scripts -p 'test_*.py'
"""

import io
import struct
import sys
import unittest
import zipfile

import numpy as np

sys.dont_write_bytecode = True

from real_models.common import BankError, raw_deflate_entry  # noqa: E402
from real_models.ct2_whisper import read_ct2, whisper_from_ct2  # noqa: E402
from real_models.gguf_nomic import unphantom_wordpiece  # noqa: E402
from real_models.onnx_models import (dequantize, dynamic_linear_names_from_bias,  # noqa: E402
                                     linear_names_from_bias, qdq_weights, t5_matmul_names)


def ct2_string(s):
    b = s.encode()
    return struct.pack("<H", len(b) + 1) + b + b"\0"


def ct2_file(variables, aliases=()):
    """model.bin as ctranslate2's ModelSpec._serialize writes it (binary version 6)."""
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
           np.dtype(np.float16): 4}
    out = struct.pack("<I", 6) + ct2_string("WhisperSpec") + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, a in variables:
        out += ct2_string(name) + struct.pack("<B", a.ndim)
        out += b"".join(struct.pack("<I", d) for d in a.shape)
        out += struct.pack("<BI", ids[a.dtype], a.nbytes) + a.tobytes()
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases:
        out += ct2_string(alias) + ct2_string(target)
    return out


class Ct2Test(unittest.TestCase):
    def test_reads_what_was_written(self):
        w = np.arange(6, dtype=np.float16).reshape(2, 3)
        heads = np.array(8, dtype=np.int16)
        data = ct2_file([("enc/w", w), ("enc/num_heads", heads)], [("dec/proj", "enc/w")])
        spec, variables, aliases = read_ct2(data, "t")
        self.assertEqual(spec, "WhisperSpec")
        np.testing.assert_array_equal(variables["enc/w"], w)
        self.assertEqual(variables["enc/w"].dtype, np.float16)
        self.assertEqual(int(variables["enc/num_heads"]), 8)
        self.assertEqual(aliases, {"dec/proj": "enc/w"})

    def test_truncated_or_padded_file_is_an_error(self):
        data = ct2_file([("w", np.ones((4, 4), dtype=np.float32))])
        with self.assertRaises(BankError):
            read_ct2(data[:-10], "t")
        with self.assertRaises(BankError):
            read_ct2(data + b"\0", "t")

    def test_byte_count_must_fit_shape(self):
        data = bytearray(ct2_file([("w", np.ones(3, dtype=np.float32))]))
        # The u32 byte count sits right before the 12 data bytes and the 4-byte alias count.
        struct.pack_into("<I", data, len(data) - 4 - 12 - 4, 16)
        with self.assertRaises(BankError):
            read_ct2(bytes(data), "t")

    def whisper_vars(self, d=4, f=8, key_bias=0.0):
        rng = np.random.default_rng(0)
        v = {}

        def put(name, *shape):
            v[name] = rng.standard_normal(shape).astype(np.float16)

        for side in ("encoder", "decoder"):
            p = f"{side}/layer_0"
            put(f"{p}/self_attention/linear_0/weight", 3 * d, d)
            b = rng.standard_normal(3 * d).astype(np.float16)
            b[d:2 * d] = key_bias
            v[f"{p}/self_attention/linear_0/bias"] = b
            put(f"{p}/self_attention/linear_1/weight", d, d)
            put(f"{p}/self_attention/linear_1/bias", d)
            attns = ["self_attention"]
            if side == "decoder":
                put(f"{p}/attention/linear_0/weight", d, d)
                put(f"{p}/attention/linear_0/bias", d)
                put(f"{p}/attention/linear_1/weight", 2 * d, d)
                kb = rng.standard_normal(2 * d).astype(np.float16)
                kb[:d] = 0
                v[f"{p}/attention/linear_1/bias"] = kb
                put(f"{p}/attention/linear_2/weight", d, d)
                put(f"{p}/attention/linear_2/bias", d)
                attns.append("attention")
            for a in attns + ["ffn"]:
                put(f"{p}/{a}/layer_norm/gamma", d)
                put(f"{p}/{a}/layer_norm/beta", d)
            put(f"{p}/ffn/linear_0/weight", f, d)
            put(f"{p}/ffn/linear_0/bias", f)
            put(f"{p}/ffn/linear_1/weight", d, f)
            put(f"{p}/ffn/linear_1/bias", d)
            put(f"{side}/layer_norm/gamma", d)
            put(f"{side}/layer_norm/beta", d)
            put(f"{side}/position_encodings/encodings", 5, d)
        for c, i in (("conv1", 3), ("conv2", d)):
            put(f"encoder/{c}/weight", d, i, 3)
            put(f"encoder/{c}/bias", d)
        put("decoder/embeddings/weight", 7, d)
        return v

    def test_whisper_fused_rows_split_in_order(self):
        v = self.whisper_vars()
        t, layers = whisper_from_ct2(v, "t")
        self.assertEqual(layers, [0])
        fused = v["encoder/layer_0/self_attention/linear_0/weight"].astype(np.float32)
        p = "model.encoder.layers.0.self_attn."
        np.testing.assert_array_equal(t[p + "q_proj.weight"], fused[0:4])
        np.testing.assert_array_equal(t[p + "k_proj.weight"], fused[4:8])
        np.testing.assert_array_equal(t[p + "v_proj.weight"], fused[8:12])
        self.assertNotIn(p + "k_proj.bias", t)
        kv = v["decoder/layer_0/attention/linear_1/weight"].astype(np.float32)
        np.testing.assert_array_equal(t["model.decoder.layers.0.encoder_attn.v_proj.weight"], kv[4:])
        self.assertTrue(all(a.dtype == np.float32 for a in t.values()))

    def test_whisper_nonzero_key_bias_is_an_error(self):
        with self.assertRaises(BankError):
            whisper_from_ct2(self.whisper_vars(key_bias=0.5), "t")


class ZipTest(unittest.TestCase):
    def test_inflates_an_entry_of_a_zip_whose_head_is_missing(self):
        payload = bytes(range(256)) * 4000
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("first.bin", np.random.default_rng(1).bytes(5000))  # incompressible
            z.writestr("dir/model.gguf", payload)
        data = buf.getvalue()
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            info = z.getinfo("dir/model.gguf")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        cut = 1000  # inside first.bin: the earlier volumes are not shipped
        self.assertEqual(raw_deflate_entry(data[cut:], start - cut, "t"), payload)
        with self.assertRaises(BankError):
            raw_deflate_entry(data[cut:], start - cut + 1, "t")


class VocabTest(unittest.TestCase):
    def test_phantom_space_vocabulary_back_to_wordpiece(self):
        got = unphantom_wordpiece(["[PAD]", "[unused0]", "\u2581hello", "ing", "\u2581,", ","])
        self.assertEqual(got, ["[PAD]", "[unused0]", "hello", "##ing", ",", "##,"])
        with self.assertRaises(BankError):
            unphantom_wordpiece(["\u2581a", "\u2581a"])


class DequantizeTest(unittest.TestCase):
    def test_per_tensor_and_per_axis(self):
        q = np.array([[-128, 0, 127], [10, 20, 30]], dtype=np.int8)
        np.testing.assert_allclose(dequantize(q, np.float32(0.5), np.int8(10), 1, "t"),
                                   [[-69, -5, 58.5], [0, 5, 10]])
        got = dequantize(q, np.array([1.0, 0.5, 0.25], dtype=np.float32),
                         np.array([0, 10, 20], dtype=np.int8), 1, "t")
        np.testing.assert_allclose(got, [[-128, -5, 26.75], [10, 5, 2.5]])
        got = dequantize(q, np.array([2.0, 1.0], np.float32), None, 0, "t")
        np.testing.assert_allclose(got, [[-256, 0, 254], [10, 20, 30]])
        with self.assertRaises(BankError):
            dequantize(q, np.ones(4, np.float32), None, 1, "t")


def onnx_graph(nodes, inits):
    from onnx import helper, numpy_helper

    return helper.make_graph(nodes, "g", [], [],
                             [numpy_helper.from_array(a, n) for n, a in inits.items()])


class OnnxNamingTest(unittest.TestCase):
    def qdq_linear(self, node_path, bias):
        """x -> MatMul(x, DQ(W)) -> Q -> DQ -> Add(bias), as a static Q/DQ torch export."""
        from onnx import helper

        w = np.arange(6, dtype=np.int8).reshape(2, 3)
        inits = {"onnx::MatMul_7_quantized": w, "onnx::MatMul_7_scale": np.float32(0.5),
                 "onnx::MatMul_7_zero_point": np.int8(1), bias: np.zeros(3, np.float32),
                 "s": np.float32(1), "z": np.int8(0)}
        nodes = [
            helper.make_node("DequantizeLinear", ["onnx::MatMul_7_quantized",
                                                  "onnx::MatMul_7_scale",
                                                  "onnx::MatMul_7_zero_point"], ["onnx::MatMul_7"]),
            helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["mm"], name=node_path),
            helper.make_node("QuantizeLinear", ["mm", "s", "z"], ["mmq"]),
            helper.make_node("DequantizeLinear", ["mmq", "s", "z"], ["mmd"]),
            helper.make_node("Add", ["mmd", bias], ["y"]),
        ]
        return onnx_graph(nodes, inits)

    def test_static_weight_named_by_its_bias_and_node(self):
        g = self.qdq_linear("/m/layer.0/q_lin/MatMul", "m.layer.0.q_lin.bias")
        deq = qdq_weights(g)
        np.testing.assert_allclose(deq["onnx::MatMul_7"], (np.arange(6).reshape(2, 3) - 1) * 0.5)
        self.assertEqual(linear_names_from_bias(g, ["onnx::MatMul_7"]),
                         {"onnx::MatMul_7": "m.layer.0.q_lin.weight"})

    def test_static_bias_and_node_disagreeing_is_an_error(self):
        g = self.qdq_linear("/m/layer.0/k_lin/MatMul", "m.layer.0.q_lin.bias")
        with self.assertRaises(BankError):
            linear_names_from_bias(g, ["onnx::MatMul_7"])

    def dynamic_linear(self, paths, bias):
        from onnx import helper

        inits = {"onnx::MatMul_9_quantized": np.ones((2, 2), np.int8), bias: np.zeros(2, np.float32)}
        nodes = []
        for k, path in enumerate(paths):
            nodes += [
                helper.make_node("MatMulInteger", [f"x{k}", "onnx::MatMul_9_quantized"], [f"i{k}"],
                                 name=path),
                helper.make_node("Cast", [f"i{k}"], [f"c{k}"], to=1),
                helper.make_node("Mul", [f"c{k}", f"s{k}"], [f"m{k}"]),
                helper.make_node("Add", [f"m{k}", bias], [f"y{k}"]),
            ]
        return onnx_graph(nodes, inits)

    def test_dynamic_shared_layer_repeats_name_one_module(self):
        paths = ["/e/albert_layers.0/attention/query/MatMul_quant",
                 "/e/albert_layers.0/attention/query_1/MatMul_quant"]
        g = self.dynamic_linear(paths, "e.albert_layers.0.attention.query.bias")
        self.assertEqual(dynamic_linear_names_from_bias(g, {"onnx::MatMul_9"}, "t"),
                         {"onnx::MatMul_9": "e.albert_layers.0.attention.query.weight"})
        paths[1] = "/e/albert_layers.0/attention/key_1/MatMul_quant"
        with self.assertRaises(BankError):
            dynamic_linear_names_from_bias(self.dynamic_linear(paths, "e.albert_layers.0."
                                                               "attention.query.bias"),
                                           {"onnx::MatMul_9"}, "t")

    def t5_graph(self, q_reads):
        from onnx import helper

        inits = {"onnx::MatMul_5_quantized": np.ones((2, 2), np.int8)}
        nodes = [
            helper.make_node("Mul", ["h", "g"], ["ln"], name=q_reads),
            helper.make_node("DynamicQuantizeLinear", ["ln"], ["lnq", "lns", "lnz"]),
            helper.make_node("MatMulInteger", ["lnq", "onnx::MatMul_5_quantized"], ["o"],
                             name="/enc/block.0/layer.0/SelfAttention/q/MatMul_quant"),
        ]
        return onnx_graph(nodes, inits)

    def test_t5_weight_named_by_node_and_checked_by_input_chain(self):
        g = self.t5_graph("/enc/block.0/layer.0/layer_norm/Mul_1")
        self.assertEqual(t5_matmul_names(g, {"onnx::MatMul_5"}, {"enc": "encoder"}, "t"),
                         {"onnx::MatMul_5": "encoder.block.0.layer.0.SelfAttention.q.weight"})
        # A q projection reading another sub-layer's norm means the names are not what they say.
        g = self.t5_graph("/enc/block.0/layer.1/layer_norm/Mul_1")
        with self.assertRaises(BankError):
            t5_matmul_names(g, {"onnx::MatMul_5"}, {"enc": "encoder"}, "t")


if __name__ == "__main__":
    unittest.main()
