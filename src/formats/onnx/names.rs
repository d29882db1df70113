//! Names for anonymous weights, found in the graph, and whether they are stored transposed.
//!
//! `torch.onnx.export` folds an `nn.Linear`'s `weight.T` into an initializer it calls
//! `onnx::MatMul_<n>`, but keeps the bias under its parameter name and names every node after
//! its module's scope (`/bert/encoder/layer.0/attention/self/query/MatMul`). So a weight that
//! is the second input of a `MatMul` (or `MatMulInteger`, `Gemm`, `Gather`, `Conv`) is named
//! two ways:
//!
//! - by its bias: the op's output, looked through activation `QuantizeLinear` /
//!   `DequantizeLinear` pairs and `Cast`s (and, for `MatMulInteger`, past the scale's `Mul`),
//!   reaches an `Add` (or `FastGelu`, `BiasGelu`, `SkipLayerNormalization`) whose other input
//!   is an initializer `<module>.bias` of the output's length: the weight is `<module>.weight`;
//! - by the node's scope: `/a/b.0/q/MatMul` is module `a.b.0.q` (a container's child is
//!   scoped by its path from the container's parent: `/cnn.0/cnn.0.0/Conv` is `cnn.0.0`).
//!
//! The bias wins (it is a parameter's own name); a node path that disagrees is reported. A
//! weight used by several nodes (ALBERT runs one layer twelve times: `query`, `query_1`, …)
//! gets one name when all uses give it, the `_<k>` of repeated calls aside.
//!
//! Layout: `x @ W` takes `W` as `[in, out]`, so an anonymous (folded) `MatMul` weight is
//! Hugging Face's `[out, in]` transposed, as is a `Gemm` weight with `transB = 0`. A weight
//! that kept its parameter name is stored as the parameter is, except where onnxruntime
//! rewrote a `Gemm` (`transB = 1`) as a `MatMul` and transposed its weight in place (the node
//! is then named `…/Gemm_MatMul…` and the weight `<name>_Transposed`, read back as `<name>`).

use std::collections::BTreeSet;

use super::index::Index;
use super::proto::NodeProto;

/// A name for a weight found through one node that uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Found {
    /// The module path (`bert.encoder.layer.0.attention.self.query`).
    pub module: String,
    /// Whether it came from a bias (else from the node's scope path).
    pub by_bias: bool,
    /// Whether the weight is stored `[in, out]` for Hugging Face's `[out, in]`.
    pub transposed: bool,
}

/// The most nodes one bias search visits (a bound on work for hostile graphs).
const SEARCH_BUDGET: usize = 64;

/// Whether an initializer name is not a parameter's name: torch.onnx's `onnx::…`, a node
/// output `/…`, or a name without a module path.
pub(super) fn is_anonymous(name: &str) -> bool {
    name.starts_with("onnx::")
        || name.starts_with('/')
        || name.contains("::")
        || !name.contains('.')
}

/// What using a weight as input `slot` of `node` says about it: its module (when the node
/// is a weight-taking op and a name is found), and a note when bias and node path disagree.
/// `dims` is the weight's stored shape; `after` the value that stands for the node's output
/// (the scale `Mul`'s output after a `MatMulInteger`).
pub(super) fn from_use(
    ix: &Index,
    node: &NodeProto,
    slot: usize,
    dims: &[u64],
    after: Option<&str>,
) -> (Option<Found>, Option<String>) {
    let out = after.or(node.output.first().map(String::as_str));
    let last = dims.last().copied();
    let (prefixes, transposed, out_dim, bias_input): (&[&str], bool, Option<u64>, Option<usize>) =
        match (node.op_type.as_str(), slot) {
            ("MatMul" | "MatMulInteger", 1) => (&["MatMul", "Gemm"], true, last, None),
            ("Gemm", 1) => {
                let trans_b = attr_int(node, "transB").unwrap_or(0) != 0;
                let out_dim = if trans_b { dims.first().copied() } else { last };
                (&["Gemm"], !trans_b, out_dim, Some(2))
            }
            ("Gather", 0) => (&["Gather"], false, None, None),
            ("Conv" | "ConvInteger", 1) => (&["Conv"], false, dims.first().copied(), Some(2)),
            _ => return (None, None),
        };
    let by_path = scope_module(&node.name, prefixes);
    let mut biases = BTreeSet::new();
    if let Some(b) = bias_input
        .and_then(|i| node.input.get(i))
        .filter(|b| !b.is_empty())
        && let Some(m) = bias_module(ix, b, out_dim)
    {
        biases.insert(m);
    }
    if biases.is_empty()
        && prefixes != ["Gather"]
        && let Some(out) = out
    {
        search_biases(ix, out, out_dim, &mut biases);
    }
    let by_bias = (biases.len() == 1)
        .then(|| biases.into_iter().next())
        .flatten();
    let mut note = None;
    if let (Some(b), Some(p)) = (&by_bias, &by_path)
        && !same_module(p, b)
    {
        note = Some(format!(
            "the bias names module {b:?}, node {:?} says {p:?}",
            node.name
        ));
    }
    let found = match (by_bias, by_path) {
        (Some(module), _) => Some(Found {
            module,
            by_bias: true,
            transposed,
        }),
        (None, Some(module)) => Some(Found {
            module,
            by_bias: false,
            transposed,
        }),
        (None, None) => None,
    };
    (found, note)
}

/// Whether a named weight used by `node` (as input `slot`) is stored transposed: only where
/// onnxruntime turned a `Gemm` into a `MatMul(Integer)` (see the module doc).
pub(super) fn kept_name_transposed(node: &NodeProto, slot: usize) -> bool {
    matches!(node.op_type.as_str(), "MatMul" | "MatMulInteger")
        && slot == 1
        && node
            .name
            .rsplit('/')
            .next()
            .is_some_and(|op| op.starts_with("Gemm_MatMul"))
}

/// The parameter name behind onnxruntime's copy of a rewritten `Gemm`'s weight:
/// `fc.weight_Transposed` or `fc.weight_Transposed_2` → `fc.weight`; `None` for other names.
pub(super) fn untransposed_name(name: &str) -> Option<String> {
    let (base, tail) = name.rsplit_once("_Transposed")?;
    let collision = tail.is_empty()
        || tail
            .strip_prefix('_')
            .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
    (collision && !base.is_empty()).then(|| base.to_string())
}

/// Whether `node` takes a weight at input `slot` (a weight-like initializer left unnamed
/// there is reported).
pub(super) fn is_weight_slot(node: &NodeProto, slot: usize) -> bool {
    matches!(
        (node.op_type.as_str(), slot),
        (
            "MatMul" | "MatMulInteger" | "Gemm" | "Conv" | "ConvInteger",
            1
        ) | ("Gather", 0)
    )
}

/// The names all uses give, reconciled: one module (the `_<k>` of repeated calls dropped
/// when the plain module is among them) and one layout, or why not.
pub(super) fn reconcile(found: &[Found]) -> Result<Option<Found>, String> {
    let Some(first) = found.first() else {
        return Ok(None);
    };
    if found.iter().any(|f| f.transposed != first.transposed) {
        return Err("its uses disagree on whether it is transposed".into());
    }
    let modules: BTreeSet<&str> = found.iter().map(|f| f.module.as_str()).collect();
    let module = if modules.len() == 1 {
        first.module.clone()
    } else {
        let bases: BTreeSet<&str> = modules.iter().map(|m| strip_repeat(m)).collect();
        match bases.iter().next() {
            Some(base) if bases.len() == 1 && modules.contains(base) => base.to_string(),
            _ => {
                return Err(format!(
                    "its uses name different modules: {}",
                    modules.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    };
    Ok(Some(Found {
        module,
        by_bias: found.iter().any(|f| f.by_bias),
        transposed: first.transposed,
    }))
}

/// The module of a node's scope path: `/a/b.0/q/MatMul_1` → `a.b.0.q`, when the last part
/// names one of the ops `prefixes`.
pub(super) fn scope_module(name: &str, prefixes: &[&str]) -> Option<String> {
    let rest = name.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (op, module) = parts.split_last()?;
    if module.is_empty() || !prefixes.iter().any(|p| op.starts_with(p)) {
        return None;
    }
    if module
        .iter()
        .any(|p| p.is_empty() || p.contains(|c: char| c.is_whitespace() || c.is_control()))
    {
        return None;
    }
    // a container's child is scoped by its path from the container's parent too:
    // `/cnn.0/cnn.0.0/Conv` is module `cnn.0.0`
    let kept: Vec<&str> = module
        .iter()
        .enumerate()
        .filter(|&(i, p)| {
            module
                .get(i + 1)
                .is_none_or(|next| !next.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
        })
        .map(|(_, p)| *p)
        .collect();
    Some(kept.join("."))
}

/// Whether a node path's module is the bias's: equal, or equal once the `_<k>` torch.onnx
/// appends to a module's repeated calls is dropped.
fn same_module(path: &str, bias: &str) -> bool {
    path == bias || strip_repeat(path) == bias
}

/// `a.query_3` → `a.query` (the last part's `_<digits>` dropped).
fn strip_repeat(module: &str) -> &str {
    let (head, last) = module.rsplit_once('.').unwrap_or(("", module));
    match last.rsplit_once('_') {
        Some((base, k))
            if !base.is_empty() && !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) =>
        {
            &module[..head.len() + usize::from(!head.is_empty()) + base.len()]
        }
        _ => module,
    }
}

/// Looks from `start` for the ops adding a bias, through activation quantisation and casts;
/// collects the modules of the biases found.
fn search_biases(ix: &Index, start: &str, out_dim: Option<u64>, found: &mut BTreeSet<String>) {
    let mut frontier = vec![start.to_string()];
    let mut budget = SEARCH_BUDGET;
    for _ in 0..4 {
        let mut next = Vec::new();
        for value in &frontier {
            for &(n, slot) in ix.consumers(value) {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                let node = ix.node(n);
                let bias = match (node.op_type.as_str(), slot) {
                    ("QuantizeLinear" | "DequantizeLinear", 0) | ("Cast", _) => {
                        next.extend(node.output.first().cloned());
                        continue;
                    }
                    ("Add", 0 | 1) => node.input.get(1 - slot),
                    ("FastGelu" | "BiasGelu", 0) => node.input.get(1),
                    ("SkipLayerNormalization", 0 | 1) => node.input.get(4),
                    _ => None,
                };
                if let Some(m) = bias.and_then(|b| bias_module(ix, b, out_dim)) {
                    found.insert(m);
                }
            }
        }
        frontier = next;
    }
}

/// The module of a bias value: an initializer (or one behind `DequantizeLinear` /
/// `QuantizeLinear`) named `<module>.bias` (less `_quantized`), 1-D of `out_dim` elements.
fn bias_module(ix: &Index, value: &str, out_dim: Option<u64>) -> Option<String> {
    let mut value = value;
    for _ in 0..3 {
        if let Some(t) = ix.init(value) {
            let base = t.name.strip_suffix("_quantized").unwrap_or(&t.name);
            let module = base.strip_suffix(".bias")?;
            let fits = t.dims.len() == 1 && out_dim.is_none_or(|d| t.dims[0] == d);
            return (fits && !is_anonymous(base) && !module.is_empty()).then(|| module.to_string());
        }
        let producer = ix.producer(value)?;
        if !matches!(
            producer.op_type.as_str(),
            "DequantizeLinear" | "QuantizeLinear"
        ) {
            return None;
        }
        value = producer.input.first()?;
    }
    None
}

/// An integer attribute of a node.
pub(super) fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnxruntime_transposed_copies_name_their_parameter() {
        let u = |n: &str| untransposed_name(n);
        assert_eq!(
            u("pooler.dense.weight_Transposed").as_deref(),
            Some("pooler.dense.weight")
        );
        assert_eq!(u("fc.weight_Transposed_2").as_deref(), Some("fc.weight"));
        assert_eq!(u("fc.weight"), None);
        assert_eq!(u("fc.weight_Transposed_x"), None);
        assert_eq!(u("fc.weight_Transposed_"), None);
        assert_eq!(u("_Transposed"), None);
    }

    #[test]
    fn scope_paths() {
        let mm = ["MatMul", "Gemm"];
        assert_eq!(
            scope_module("/bert/encoder/layer.0/attention/self/query/MatMul", &mm).as_deref(),
            Some("bert.encoder.layer.0.attention.self.query")
        );
        assert_eq!(
            scope_module("/enc/block.0/layer.0/SelfAttention/q/MatMul_quant", &mm).as_deref(),
            Some("enc.block.0.layer.0.SelfAttention.q")
        );
        assert_eq!(
            scope_module("/fc/Gemm_MatMul_quant", &mm).as_deref(),
            Some("fc")
        );
        assert_eq!(
            scope_module("/enc/cnn.0/cnn.0.0/Conv_quant", &["Conv"]).as_deref(),
            Some("enc.cnn.0.0")
        );
        assert_eq!(
            scope_module("/m/layer.0/layer.0x/MatMul", &mm).as_deref(),
            Some("m.layer.0.layer.0x")
        );
        assert_eq!(scope_module("MatMul_12", &mm), None);
        assert_eq!(scope_module("/MatMul", &mm), None);
        assert_eq!(scope_module("/a/Add", &mm), None);
        assert_eq!(scope_module("/a//MatMul", &mm), None);
        assert_eq!(scope_module("/a b/MatMul", &mm), None);
    }

    #[test]
    fn repeats_and_anonymity() {
        assert_eq!(strip_repeat("a.attention.query_11"), "a.attention.query");
        assert_eq!(strip_repeat("query_1"), "query");
        assert_eq!(strip_repeat("a.wi_x"), "a.wi_x");
        assert_eq!(strip_repeat("a._1"), "a._1");
        assert!(same_module("x.query_2", "x.query"));
        assert!(!same_module("x.wi_0", "x.wi_1"));
        assert!(is_anonymous("onnx::MatMul_12") && is_anonymous("/a/b_output_0"));
        assert!(is_anonymous("splits") && !is_anonymous("bert.pooler.dense.weight"));
    }

    #[test]
    fn reconciling_uses() {
        let f = |m: &str, b: bool| Found {
            module: m.into(),
            by_bias: b,
            transposed: true,
        };
        let albert: Vec<Found> = (0..12)
            .map(|k| {
                f(
                    &if k == 0 {
                        "l.query".into()
                    } else {
                        format!("l.query_{k}")
                    },
                    false,
                )
            })
            .collect();
        assert_eq!(reconcile(&albert).unwrap().unwrap().module, "l.query");
        assert!(reconcile(&[f("a.wi_0", false), f("a.wi_1", false)]).is_err());
        let mixed = [f("a.q", true), f("a.q", false)];
        assert!(reconcile(&mixed).unwrap().unwrap().by_bias);
        let mut t = f("a.q", false);
        t.transposed = false;
        assert!(reconcile(&[f("a.q", false), t]).is_err());
        assert_eq!(reconcile(&[]).unwrap(), None);
    }
}
