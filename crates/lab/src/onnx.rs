//! Writing a lab model as ONNX, the way `torch.onnx.export` (the TorchScript exporter at opset
//! 17, IR version 8, as Optimum drives it) lays out a Hugging Face model, and optionally the way
//! onnxruntime's `quantize_dynamic` then rewrites it ([`crate::onnx_quant`]).
//!
//! What a real export does to names and layouts, and so what this writes:
//!
//! - parameters the graph uses directly keep their names: embeddings (`Gather`), norm gains and
//!   biases, `nn.Linear` biases (an `Add` after the `MatMul`, bias first);
//! - an `nn.Linear` weight is folded, transposed to `[in, out]`, into an anonymous initializer
//!   `onnx::MatMul_<n>`, the second input of a `MatMul` named after the module's scope
//!   (`/model/layers.0/self_attn/q_proj/MatMul`); every node is named `<scope>/<Op>` with `_<k>`
//!   for the k-th repeat in a scope, its output `<name>_output_0`;
//! - a linear on a 2-D input (BERT's pooler) is a `Gemm(transB = 1)` that keeps the weight's name
//!   and `[out, in]` layout.
//!
//! The graph is a plausible forward pass (attention, MLP, norms; no rotary or causal mask) that
//! `onnx.checker.check_model(full_check = True)` accepts; its values are the checkpoint's as
//! stored (bf16/f16 widened exactly to f32). `config.json`, `tokenizer.json` and the other side
//! files (`tokenizer_config.json`, …) go next to `model.onnx`, as Optimum writes them.
//!
//! Written from the exporters' behaviour, with none of `weight-audit`'s code: the tool's ONNX
//! reader is checked against it, and this against `onnx` and `onnxruntime` themselves in
//! `tests/py/check_lab_onnx.py`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::model::{Model, round_values, write_json_file};
use crate::onnx_proto::{
    AttributeProto as A, Dim, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    ValueInfoProto, data_type, encode_model,
};

/// Which file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnnxExport {
    /// `torch.onnx.export` of the float model.
    Fp32,
    /// That file through `quantize_dynamic(per_channel=True, weight_type=QuantType.QInt8)`.
    Int8,
}

impl OnnxExport {
    /// The spelling specs use.
    pub fn name(self) -> &'static str {
        match self {
            OnnxExport::Fp32 => "fp32",
            OnnxExport::Int8 => "int8",
        }
    }

    /// Parses a name as [`OnnxExport::name`] spells it (any case).
    pub fn parse(s: &str) -> Result<OnnxExport> {
        [OnnxExport::Fp32, OnnxExport::Int8]
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(s))
            .with_context(|| format!("unknown ONNX export {s:?} (the lab writes fp32 and int8)"))
    }
}

/// The opset `torch.onnx.export` defaults to (2.x), and the IR version it writes with it.
pub const OPSET: i64 = 17;
/// See [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// Writes `model` to `path` as one ONNX file (every tensor inline), with `config.json`,
/// `tokenizer.json` and the model's other side files beside it.
pub fn write_onnx(model: &Model, path: &Path, export: OnnxExport) -> Result<()> {
    let mut m = export_fp32(model)?;
    if export == OnnxExport::Int8 {
        crate::onnx_quant::quantize_dynamic(&mut m)?;
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(path, encode_model(&m)).with_context(|| format!("writing {}", path.display()))?;
    write_json_file(model, dir, "config.json", Some(&model.config))?;
    write_json_file(model, dir, "tokenizer.json", model.tokenizer.as_ref())?;
    // tokenizer_config.json, generation_config.json: Optimum copies those too
    for (name, bytes) in &model.files {
        let p = dir.join(name);
        fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// The model `torch.onnx.export` would write for `model` (a lab `llama` or `bert`).
pub fn export_fp32(model: &Model) -> Result<ModelProto> {
    let model_type = model
        .config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut b = Builder::new(model);
    let (inputs, outputs) = match model_type {
        "llama" => llama(&mut b)?,
        "bert" => bert(&mut b)?,
        other => bail!("the lab writes ONNX for llama and bert models, not {other:?}"),
    };
    let graph = b.finish(inputs, outputs)?;
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: Some(OPSET),
        }],
        producer_name: "pytorch".into(),
        producer_version: "2.4.1".into(),
        graph: Some(graph),
        ..Default::default()
    })
}

/// The graph under construction, with the exporter's naming.
struct Builder<'a> {
    model: &'a Model,
    nodes: Vec<NodeProto>,
    /// Parameters under their own names, in order of first use.
    named: Vec<TensorProto>,
    /// Folded `nn.Linear` weights (`onnx::MatMul_<n>`).
    anon: Vec<TensorProto>,
    /// Hugging Face tensors placed in the graph.
    used: BTreeSet<String>,
    /// Nodes named so far per `<scope>/<Op>` (the exporter's `_<k>` suffixes).
    counts: BTreeMap<String, usize>,
    /// Next `<n>` of `onnx::MatMul_<n>`.
    next_anon: usize,
}

impl<'a> Builder<'a> {
    fn new(model: &'a Model) -> Builder<'a> {
        Builder {
            model,
            nodes: Vec::new(),
            named: Vec::new(),
            anon: Vec::new(),
            used: BTreeSet::new(),
            counts: BTreeMap::new(),
            // the exporter numbers anonymous values after the parameters it lifts
            next_anon: model.tensors.len() + 1,
        }
    }

    /// A Hugging Face tensor's shape and its values as the checkpoint stores them.
    fn tensor(&mut self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.model.get(name)?;
        let mut values = t.values(name)?.to_vec();
        round_values(t.dtype, &mut values);
        self.used.insert(name.to_string());
        Ok((t.shape.clone(), values))
    }

    fn has(&self, name: &str) -> bool {
        self.model.tensors.contains_key(name)
    }

    /// A parameter used directly, under its own name.
    fn param(&mut self, name: &str) -> Result<String> {
        if !self.used.contains(name) {
            let (shape, values) = self.tensor(name)?;
            self.named.push(TensorProto::f32(name, &shape, &values));
        }
        Ok(name.to_string())
    }

    fn push(&mut self, name: String, op: &str, inputs: &[&str], attrs: Vec<A>, out: String) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out],
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// A node `<scope>/<op>` (or `<scope>/<op>_<k>`); returns its output.
    fn node(&mut self, scope: &str, op: &str, inputs: &[&str], attrs: Vec<A>) -> String {
        let base = format!("{scope}/{op}");
        let k = self.counts.entry(base.clone()).or_insert(0);
        let name = if *k == 0 { base } else { format!("{base}_{k}") };
        *k += 1;
        let out = format!("{name}_output_0");
        self.push(name, op, inputs, attrs, out.clone());
        out
    }

    fn op(&mut self, scope: &str, op: &str, inputs: &[&str]) -> String {
        self.node(scope, op, inputs, Vec::new())
    }

    /// A `Transpose` of `x` by `perm` (the attention's head split and merge).
    fn transpose(&mut self, scope: &str, x: &str, perm: &[i64]) -> String {
        self.node(scope, "Transpose", &[x], vec![A::ints("perm", perm)])
    }

    fn constant(&mut self, scope: &str, t: TensorProto) -> String {
        self.node(scope, "Constant", &[], vec![A::tensor("value", t)])
    }

    fn const_f32(&mut self, scope: &str, v: f32) -> String {
        self.constant(scope, TensorProto::f32("", &[], &[v]))
    }

    fn const_i64(&mut self, scope: &str, v: i64) -> String {
        self.constant(scope, TensorProto::i64("", &[], &[v]))
    }

    fn const_i64s(&mut self, scope: &str, v: &[i64]) -> String {
        self.constant(scope, TensorProto::i64("", &[v.len()], v))
    }

    /// Renames the graph's last value (the exporter names outputs after the model's fields).
    fn rename_last(&mut self, from: &str, to: &str) -> Result<String> {
        match self.nodes.last_mut() {
            Some(n) if n.output.first().is_some_and(|o| o == from) => {
                n.output[0] = to.to_string();
                Ok(to.to_string())
            }
            _ => bail!("ONNX export: {from} is not the last value"),
        }
    }

    /// `nn.Linear` on a 3-D input: `MatMul(x, onnx::MatMul_<n> = weight.T)`, then the bias
    /// `Add` when the module has one.
    fn linear(&mut self, scope: &str, module: &str, x: &str) -> Result<String> {
        let wname = format!("{module}.weight");
        let (shape, w) = self.tensor(&wname)?;
        let [out, inp] = shape[..] else {
            bail!("{wname}: a linear weight is 2-D, not {shape:?}");
        };
        let mut t = vec![0f32; w.len()];
        for r in 0..out {
            for c in 0..inp {
                t[c * out + r] = w[r * inp + c];
            }
        }
        let anon = format!("onnx::MatMul_{}", self.next_anon);
        self.next_anon += 1;
        self.anon.push(TensorProto::f32(&anon, &[inp, out], &t));
        let y = self.op(scope, "MatMul", &[x, &anon]);
        let bname = format!("{module}.bias");
        if !self.has(&bname) {
            return Ok(y);
        }
        let b = self.param(&bname)?;
        Ok(self.op(scope, "Add", &[&b, &y]))
    }

    /// `LlamaRMSNorm`: `weight * (x / sqrt(mean(x²) + eps))`, as the exporter spells it.
    fn rms_norm(&mut self, scope: &str, module: &str, x: &str, eps: f32) -> Result<String> {
        let c = self.node(
            scope,
            "Cast",
            &[x],
            vec![A::int("to", data_type::FLOAT.into())],
        );
        let two = self.const_f32(scope, 2.0);
        let p = self.op(scope, "Pow", &[&c, &two]);
        let attrs = vec![A::ints("axes", &[-1]), A::int("keepdims", 1)];
        let m = self.node(scope, "ReduceMean", &[&p], attrs);
        let e = self.const_f32(scope, eps);
        let a = self.op(scope, "Add", &[&m, &e]);
        let s = self.op(scope, "Sqrt", &[&a]);
        let one = self.const_f32(scope, 1.0);
        let r = self.op(scope, "Div", &[&one, &s]);
        let n = self.op(scope, "Mul", &[&c, &r]);
        let w = self.param(&format!("{module}.weight"))?;
        Ok(self.op(scope, "Mul", &[&w, &n]))
    }

    /// `nn.LayerNorm` at opset 17: one `LayerNormalization` node.
    fn layer_norm(&mut self, scope: &str, module: &str, x: &str, eps: f32) -> Result<String> {
        let w = self.param(&format!("{module}.weight"))?;
        let b = self.param(&format!("{module}.bias"))?;
        let attrs = vec![A::int("axis", -1), A::float("epsilon", eps)];
        Ok(self.node(scope, "LayerNormalization", &[x, &w, &b], attrs))
    }

    fn finish(self, input: Vec<ValueInfoProto>, output: Vec<ValueInfoProto>) -> Result<GraphProto> {
        let left: Vec<&String> = self
            .model
            .tensors
            .keys()
            .filter(|k| !self.used.contains(*k))
            .collect();
        if !left.is_empty() {
            bail!("the ONNX export has no place for tensors {left:?}");
        }
        let mut initializer = self.named;
        initializer.extend(self.anon);
        Ok(GraphProto {
            node: self.nodes,
            name: "main_graph".into(),
            initializer,
            input,
            output,
            ..Default::default()
        })
    }
}

fn cfg(m: &Model, key: &str) -> Result<usize> {
    m.cfg_usize(key)
        .with_context(|| format!("config.json has no integer {key}"))
}

fn cfg_f32(m: &Model, key: &str, default: f64) -> f32 {
    m.config.get(key).and_then(Value::as_f64).unwrap_or(default) as f32
}

/// Size `i` of a tensor's shape.
fn dim(m: &Model, name: &str, i: usize) -> Result<usize> {
    let shape = &m.get(name)?.shape;
    shape
        .get(i)
        .copied()
        .with_context(|| format!("{name}: shape {shape:?} has no dimension {i}"))
}

/// The layers `0..n` for which `name(l)` is a tensor.
fn count_layers(m: &Model, name: impl Fn(usize) -> String) -> usize {
    (0..)
        .take_while(|l| m.tensors.contains_key(&name(*l)))
        .count()
}

const BATCH: Dim = Dim::Named("batch_size");
const SEQ: Dim = Dim::Named("sequence_length");

type Io = (Vec<ValueInfoProto>, Vec<ValueInfoProto>);

/// `LlamaForCausalLM`: `input_ids` → `logits`.
fn llama(b: &mut Builder) -> Result<Io> {
    let m = b.model;
    let heads = cfg(m, "num_attention_heads")?;
    let kv = m.cfg_usize("num_key_value_heads").unwrap_or(heads);
    let q_rows = dim(m, "model.layers.0.self_attn.q_proj.weight", 0)?;
    let hd = m.cfg_usize("head_dim").unwrap_or(q_rows / heads.max(1));
    if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) || q_rows != heads * hd {
        bail!("llama: {heads} heads of {hd} over {kv} KV heads do not make {q_rows} query rows");
    }
    let vocab = dim(m, "lm_head.weight", 0)?;
    let eps = cfg_f32(m, "rms_norm_eps", 1e-6);
    let layers = count_layers(m, |l| format!("model.layers.{l}.self_attn.q_proj.weight"));
    let (kv, rep, hd) = (kv as i64, (heads / kv) as i64, hd as i64);

    let emb = b.param("model.embed_tokens.weight")?;
    let mut x = b.op("/model/embed_tokens", "Gather", &[&emb, "input_ids"]);
    for l in 0..layers {
        let (p, s) = (format!("model.layers.{l}"), format!("/model/layers.{l}"));
        let n = b.rms_norm(
            &format!("{s}/input_layernorm"),
            &format!("{p}.input_layernorm"),
            &x,
            eps,
        )?;
        let sa = format!("{s}/self_attn");
        let q = b.linear(
            &format!("{sa}/q_proj"),
            &format!("{p}.self_attn.q_proj"),
            &n,
        )?;
        let k = b.linear(
            &format!("{sa}/k_proj"),
            &format!("{p}.self_attn.k_proj"),
            &n,
        )?;
        let v = b.linear(
            &format!("{sa}/v_proj"),
            &format!("{p}.self_attn.v_proj"),
            &n,
        )?;
        // grouped-query attention without repeating K/V: queries as [b, kv, rep, s, d]
        // against keys [b, kv, 1, d, s] broadcast over the group
        let qs = b.const_i64s(&sa, &[0, 0, kv, rep, hd]);
        let q = b.op(&sa, "Reshape", &[&q, &qs]);
        let q = b.transpose(&sa, &q, &[0, 2, 3, 1, 4]);
        let ks = b.const_i64s(&sa, &[0, 0, kv, 1, hd]);
        let k = b.op(&sa, "Reshape", &[&k, &ks]);
        let k = b.transpose(&sa, &k, &[0, 2, 3, 4, 1]);
        let vs = b.const_i64s(&sa, &[0, 0, kv, 1, hd]);
        let v = b.op(&sa, "Reshape", &[&v, &vs]);
        let v = b.transpose(&sa, &v, &[0, 2, 3, 1, 4]);
        let sc = b.op(&sa, "MatMul", &[&q, &k]);
        let scale = b.const_f32(&sa, 1.0 / (hd as f32).sqrt());
        let sc = b.op(&sa, "Mul", &[&sc, &scale]);
        let pr = b.node(&sa, "Softmax", &[&sc], vec![A::int("axis", -1)]);
        let o = b.op(&sa, "MatMul", &[&pr, &v]);
        let o = b.transpose(&sa, &o, &[0, 3, 1, 2, 4]);
        let os = b.const_i64s(&sa, &[0, 0, q_rows as i64]);
        let o = b.op(&sa, "Reshape", &[&o, &os]);
        let o = b.linear(
            &format!("{sa}/o_proj"),
            &format!("{p}.self_attn.o_proj"),
            &o,
        )?;
        x = b.op(&s, "Add", &[&x, &o]);

        let n = b.rms_norm(
            &format!("{s}/post_attention_layernorm"),
            &format!("{p}.post_attention_layernorm"),
            &x,
            eps,
        )?;
        let mlp = format!("{s}/mlp");
        let g = b.linear(
            &format!("{mlp}/gate_proj"),
            &format!("{p}.mlp.gate_proj"),
            &n,
        )?;
        let sg = b.op(&format!("{mlp}/act_fn"), "Sigmoid", &[&g]);
        let act = b.op(&format!("{mlp}/act_fn"), "Mul", &[&g, &sg]);
        let u = b.linear(&format!("{mlp}/up_proj"), &format!("{p}.mlp.up_proj"), &n)?;
        let h = b.op(&mlp, "Mul", &[&act, &u]);
        let d = b.linear(
            &format!("{mlp}/down_proj"),
            &format!("{p}.mlp.down_proj"),
            &h,
        )?;
        x = b.op(&s, "Add", &[&x, &d]);
    }
    let n = b.rms_norm("/model/norm", "model.norm", &x, eps)?;
    let y = b.linear("/lm_head", "lm_head", &n)?;
    let logits = b.rename_last(&y, "logits")?;
    let input = vec![ValueInfoProto::tensor(
        "input_ids",
        data_type::INT64,
        &[BATCH, SEQ],
    )];
    let output = vec![ValueInfoProto::tensor(
        &logits,
        data_type::FLOAT,
        &[BATCH, SEQ, Dim::Fixed(vocab)],
    )];
    Ok((input, output))
}

/// `BertModel`: `input_ids`, `attention_mask`, `token_type_ids` → `last_hidden_state` and
/// (with a pooler) `pooler_output`.
fn bert(b: &mut Builder) -> Result<Io> {
    let m = b.model;
    let hidden = dim(m, "embeddings.word_embeddings.weight", 1)?;
    let heads = cfg(m, "num_attention_heads")?;
    if heads == 0 || !hidden.is_multiple_of(heads) {
        bail!("bert: {heads} heads do not divide hidden size {hidden}");
    }
    let hd = (hidden / heads) as i64;
    let eps = cfg_f32(m, "layer_norm_eps", 1e-12);
    let layers = count_layers(m, |l| {
        format!("encoder.layer.{l}.attention.self.query.weight")
    });
    let mask = extended_attention_mask(b);
    let mut x = bert_embeddings(b, eps)?;
    let sizes = BertSizes {
        hidden,
        heads,
        hd,
        eps,
    };
    for l in 0..layers {
        x = bert_layer(b, l, &x, &mask, &sizes)?;
    }
    let last = b.rename_last(&x, "last_hidden_state")?;
    let mut output = vec![ValueInfoProto::tensor(
        &last,
        data_type::FLOAT,
        &[BATCH, SEQ, Dim::Fixed(hidden)],
    )];
    if b.has("pooler.dense.weight") {
        output.push(bert_pooler(b, &last, hidden)?);
    }
    let input = ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .map(|n| ValueInfoProto::tensor(n, data_type::INT64, &[BATCH, SEQ]))
        .collect();
    Ok((input, output))
}

/// `BertModel.get_extended_attention_mask`: `(1 − mask[:, None, None, :]) · float32.min`.
fn extended_attention_mask(b: &mut Builder) -> String {
    let axes = b.const_i64s("", &[1, 2]);
    let um = b.op("", "Unsqueeze", &["attention_mask", &axes]);
    let cm = b.node(
        "",
        "Cast",
        &[&um],
        vec![A::int("to", data_type::FLOAT.into())],
    );
    let one = b.const_f32("", 1.0);
    let inv = b.op("", "Sub", &[&one, &cm]);
    let min = b.const_f32("", f32::MIN);
    b.op("", "Mul", &[&inv, &min])
}

/// Word + token type + position embeddings, then their LayerNorm.
fn bert_embeddings(b: &mut Builder, eps: f32) -> Result<String> {
    let e = "/embeddings";
    let we = b.param("embeddings.word_embeddings.weight")?;
    let w = b.op("/embeddings/word_embeddings", "Gather", &[&we, "input_ids"]);
    let te = b.param("embeddings.token_type_embeddings.weight")?;
    let t = b.op(
        "/embeddings/token_type_embeddings",
        "Gather",
        &[&te, "token_type_ids"],
    );
    let x = b.op(e, "Add", &[&w, &t]);
    // position ids 0..seq_len
    let shape = b.op(e, "Shape", &["input_ids"]);
    let one_i = b.const_i64(e, 1);
    let seq = b.node(e, "Gather", &[&shape, &one_i], vec![A::int("axis", 0)]);
    let start = b.const_i64(e, 0);
    let step = b.const_i64(e, 1);
    let ids = b.op(e, "Range", &[&start, &seq, &step]);
    let ax0 = b.const_i64s(e, &[0]);
    let pid = b.op(e, "Unsqueeze", &[&ids, &ax0]);
    let pe = b.param("embeddings.position_embeddings.weight")?;
    let p = b.op("/embeddings/position_embeddings", "Gather", &[&pe, &pid]);
    let x = b.op(e, "Add", &[&x, &p]);
    b.layer_norm("/embeddings/LayerNorm", "embeddings.LayerNorm", &x, eps)
}

/// The sizes every BERT encoder layer is built with.
struct BertSizes {
    hidden: usize,
    heads: usize,
    /// Head width.
    hd: i64,
    /// LayerNorm epsilon.
    eps: f32,
}

/// Encoder layer `l`: self-attention, residual and LayerNorm, exact-GELU MLP, residual and
/// LayerNorm.
fn bert_layer(b: &mut Builder, l: usize, x: &str, mask: &str, z: &BertSizes) -> Result<String> {
    let (hidden, heads, hd, eps) = (z.hidden, z.heads, z.hd, z.eps);
    let (p, s) = (format!("encoder.layer.{l}"), format!("/encoder/layer.{l}"));
    let sa = format!("{s}/attention/self");
    let pa = format!("{p}.attention.self");
    let q = b.linear(&format!("{sa}/query"), &format!("{pa}.query"), x)?;
    let k = b.linear(&format!("{sa}/key"), &format!("{pa}.key"), x)?;
    let v = b.linear(&format!("{sa}/value"), &format!("{pa}.value"), x)?;
    let hs = b.const_i64s(&sa, &[0, 0, heads as i64, hd]);
    let q = b.op(&sa, "Reshape", &[&q, &hs]);
    let q = b.transpose(&sa, &q, &[0, 2, 1, 3]);
    let k = b.op(&sa, "Reshape", &[&k, &hs]);
    let k = b.transpose(&sa, &k, &[0, 2, 3, 1]);
    let v = b.op(&sa, "Reshape", &[&v, &hs]);
    let v = b.transpose(&sa, &v, &[0, 2, 1, 3]);
    let sc = b.op(&sa, "MatMul", &[&q, &k]);
    let d = b.const_f32(&sa, (hd as f32).sqrt());
    let sc = b.op(&sa, "Div", &[&sc, &d]);
    let sc = b.op(&sa, "Add", &[&sc, mask]);
    let pr = b.node(&sa, "Softmax", &[&sc], vec![A::int("axis", -1)]);
    let o = b.op(&sa, "MatMul", &[&pr, &v]);
    let o = b.transpose(&sa, &o, &[0, 2, 1, 3]);
    let flat = b.const_i64s(&sa, &[0, 0, hidden as i64]);
    let o = b.op(&sa, "Reshape", &[&o, &flat]);

    let ao = format!("{s}/attention/output");
    let o = b.linear(
        &format!("{ao}/dense"),
        &format!("{p}.attention.output.dense"),
        &o,
    )?;
    let r = b.op(&ao, "Add", &[&o, x]);
    let a = b.layer_norm(
        &format!("{ao}/LayerNorm"),
        &format!("{p}.attention.output.LayerNorm"),
        &r,
        eps,
    )?;
    let i = b.linear(
        &format!("{s}/intermediate/dense"),
        &format!("{p}.intermediate.dense"),
        &a,
    )?;
    // exact GELU as opset 17 spells it: x · (1 + erf(x / √2)) · 0.5
    let g = format!("{s}/intermediate/intermediate_act_fn");
    let r2 = b.const_f32(&g, std::f32::consts::SQRT_2);
    let dv = b.op(&g, "Div", &[&i, &r2]);
    let erf = b.op(&g, "Erf", &[&dv]);
    let one = b.const_f32(&g, 1.0);
    let ad = b.op(&g, "Add", &[&erf, &one]);
    let mu = b.op(&g, "Mul", &[&i, &ad]);
    let half = b.const_f32(&g, 0.5);
    let act = b.op(&g, "Mul", &[&mu, &half]);
    let od = format!("{s}/output");
    let o = b.linear(&format!("{od}/dense"), &format!("{p}.output.dense"), &act)?;
    let r = b.op(&od, "Add", &[&o, &a]);
    b.layer_norm(
        &format!("{od}/LayerNorm"),
        &format!("{p}.output.LayerNorm"),
        &r,
        eps,
    )
}

/// `BertPooler`: tanh(dense(h[:, 0])); a linear on a 2-D input exports as Gemm.
fn bert_pooler(b: &mut Builder, last: &str, hidden: usize) -> Result<ValueInfoProto> {
    let zero = b.const_i64("/pooler", 0);
    let first = b.node("/pooler", "Gather", &[last, &zero], vec![A::int("axis", 1)]);
    let w = b.param("pooler.dense.weight")?;
    let bias = b.param("pooler.dense.bias")?;
    let attrs = vec![
        A::float("alpha", 1.0),
        A::float("beta", 1.0),
        A::int("transB", 1),
    ];
    let y = b.node("/pooler/dense", "Gemm", &[&first, &w, &bias], attrs);
    let t = b.op("/pooler/activation", "Tanh", &[&y]);
    let pooled = b.rename_last(&t, "pooler_output")?;
    Ok(ValueInfoProto::tensor(
        &pooled,
        data_type::FLOAT,
        &[BATCH, Dim::Fixed(hidden)],
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::arch::{ArchConfig, ArchKind};
    use prost::Message;

    /// A one-layer lab model at hidden 64, values rounded to their stored dtype.
    pub(crate) fn tiny(kind: ArchKind) -> Model {
        let mut a = ArchConfig::scaled(kind, 64);
        a.layers = 1;
        a.intermediate = 128;
        let mut m = crate::weights::generate(&crate::Recipe::new(a, 7)).unwrap();
        m.round_to_dtype();
        m
    }

    #[test]
    fn llama_fp32_holds_every_weight_transposed_under_its_export_name() {
        let model = tiny(ArchKind::Llama);
        let m = ModelProto::decode(encode_model(&export_fp32(&model).unwrap()).as_slice()).unwrap();
        let g = m.graph.unwrap();
        let inits: BTreeMap<&str, &TensorProto> =
            g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut found = BTreeSet::new();
        for n in g.node.iter().filter(|n| n.op_type == "MatMul") {
            let Some(w) = n.input.get(1).filter(|w| w.starts_with("onnx::MatMul_")) else {
                continue;
            };
            // `/model/layers.0/self_attn/q_proj/MatMul` → `model.layers.0.self_attn.q_proj.weight`
            let module = n.name.trim_start_matches('/').trim_end_matches("/MatMul");
            let hf = format!("{}.weight", module.replace('/', "."));
            let t = model.get(&hf).unwrap();
            let (rows, cols) = (t.shape[0], t.shape[1]);
            let stored = inits[w.as_str()];
            assert_eq!(stored.dims, vec![cols as i64, rows as i64], "{hf}");
            let v = stored.f32_values().unwrap();
            let hv = t.values(&hf).unwrap();
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        v[c * rows + r].to_bits(),
                        hv[r * cols + c].to_bits(),
                        "{hf}"
                    );
                }
            }
            found.insert(hf);
        }
        for (name, t) in inits.iter().filter(|(n, _)| !n.starts_with("onnx::")) {
            let hv = model.get(name).unwrap().values(name).unwrap();
            assert_eq!(t.f32_values().unwrap(), hv, "{name}");
            found.insert(name.to_string());
        }
        let all: BTreeSet<String> = model.tensors.keys().cloned().collect();
        assert_eq!(found, all);
        assert!(
            g.node
                .iter()
                .any(|n| n.name == "/model/layers.0/self_attn/q_proj/MatMul")
        );
        assert!(g.node.iter().any(|n| n.name == "/lm_head/MatMul"));
        assert_eq!(g.output[0].name, "logits");
        assert_eq!(m.ir_version, Some(8));
    }

    #[test]
    fn bert_biases_follow_their_matmul_and_the_pooler_is_a_gemm() {
        let model = tiny(ArchKind::Bert);
        let g = export_fp32(&model).unwrap().graph.unwrap();
        let add = g
            .node
            .iter()
            .find(|n| n.name == "/encoder/layer.0/attention/self/query/Add")
            .unwrap();
        assert_eq!(add.input[0], "encoder.layer.0.attention.self.query.bias");
        assert_eq!(
            add.input[1],
            "/encoder/layer.0/attention/self/query/MatMul_output_0"
        );
        let gemm = g.node.iter().find(|n| n.op_type == "Gemm").unwrap();
        assert_eq!(gemm.name, "/pooler/dense/Gemm");
        assert_eq!(gemm.input[1], "pooler.dense.weight");
    }

    #[test]
    fn other_models_are_refused_by_name() {
        let mut model = tiny(ArchKind::Llama);
        model.set_cfg("model_type", "glm4_moe".into());
        let e = export_fp32(&model).unwrap_err().to_string();
        assert!(
            e.contains("llama and bert") && e.contains("glm4_moe"),
            "{e}"
        );
        assert!(OnnxExport::parse("INT8").is_ok_and(|e| e == OnnxExport::Int8));
        assert!(OnnxExport::parse("int4").is_err());
    }

    /// Writes `DIR/<model>/{fp32,int8,safetensors}` for `tests/py/check_lab_onnx.py` (`DIR`
    /// from `LAB_ONNX_OUT`, default `/tmp/lab-onnx`): a Llama and a BERT as the lab makes them
    /// (bf16), and a Llama stored in f32 with values bf16 cannot hold, so that the int8 scales
    /// and codes meet every float32 rounding case.
    #[test]
    #[ignore = "writes files for the Python oracle"]
    fn write_files_for_the_python_oracle() {
        let dir = std::env::var("LAB_ONNX_OUT").unwrap_or_else(|_| "/tmp/lab-onnx".into());
        let models = [
            ("llama", ArchKind::Llama, false),
            ("bert", ArchKind::Bert, false),
            ("llama-f32", ArchKind::Llama, true),
        ];
        for (name, kind, f32) in models {
            let mut a = ArchConfig::scaled(kind, 128);
            a.layers = 2;
            let mut m = crate::weights::generate(&crate::Recipe::new(a, 11)).unwrap();
            if f32 {
                for t in m.tensors.values_mut() {
                    t.dtype = crate::dtype::DType::F32;
                    if let crate::model::Data::F32(v) = &mut t.data {
                        let n = v.len() as f32;
                        for (i, x) in v.iter_mut().enumerate() {
                            *x *= 1.0 + 0.37 * (i as f32 * 12.9898 / n).sin();
                        }
                    }
                }
                // edge cases: an all-zero output channel, a subnormal one (both scale 1), an
                // embedding without negatives (uint8 zero point 0)
                let q = m.get_mut("model.layers.0.self_attn.q_proj.weight").unwrap();
                let cols = q.shape[1];
                let v = q.values_mut("q").unwrap();
                v[..cols].iter_mut().for_each(|x| *x = 0.0);
                v[cols..2 * cols].iter_mut().for_each(|x| *x *= 1e-38);
                let e = m.get_mut("model.embed_tokens.weight").unwrap();
                e.values_mut("e")
                    .unwrap()
                    .iter_mut()
                    .for_each(|x| *x = x.abs());
            }
            m.round_to_dtype();
            let d = Path::new(&dir).join(name);
            crate::model::write_model(&m, &d.join("safetensors")).unwrap();
            for e in [OnnxExport::Fp32, OnnxExport::Int8] {
                write_onnx(&m, &d.join(e.name()).join("model.onnx"), e).unwrap();
            }
        }
    }
}
