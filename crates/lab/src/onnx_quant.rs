//! onnxruntime's dynamic quantiser replayed on a lab export: what
//! `quantize_dynamic(fp32, out, per_channel=True, weight_type=QuantType.QInt8)` (onnxruntime
//! 1.32, `onnxruntime/quantization/`) writes for it, initializer for initializer.
//!
//! Reimplemented from onnxruntime's Python sources rather than run, so the lab can make int8
//! releases without Python and the tool's reader is checked against an independent account of
//! them (`tests/py/check_lab_onnx.py` runs the real quantiser and compares bytes). What it does:
//!
//! - `Gemm(alpha = beta = 1, transA = 0)` becomes `MatMul` (+ `Add` of the bias), named
//!   `<gemm>_MatMul` / `<gemm>_Add`; with `transB = 1` the weight is copied transposed into
//!   `<weight>_Transposed` (`onnx_model.py`, `replace_gemm_with_matmul`);
//! - a `MatMul` whose second input is a float initializer: the activation goes through one
//!   `DynamicQuantizeLinear` (`<x>_QuantizeLinear`, shared by every MatMul reading `x`), the
//!   weight becomes int8 codes `<w>_quantized` with per-column (`axis = -1`) `<w>_scale` and
//!   `<w>_zero_point`, then `MatMulInteger` (`<node>_quant`) → `Cast` → `Mul` by
//!   `Mul(x_scale, w_scale)` (`operators/matmul.py`);
//! - a `Gather` of a float initializer (the embeddings) is quantised too, as an activation:
//!   uint8, asymmetric, one scale per tensor, with a `DequantizeLinear` (`<out>_DequantizeLinear`)
//!   before the first float consumer (`operators/gather.py`);
//! - unused initializers are dropped, `producer_name` is `onnx.quantize`, and the
//!   `onnx.infer = onnxruntime.quant` metadata is set.
//!
//! Not replayed: the `value_info` that onnxruntime's shape inference leaves in its output, and
//! its final topological re-sort of the nodes (the lab's order is already topological).

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail};

use crate::onnx_proto::{
    AttributeProto as A, GraphProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto,
    data_type,
};

/// `compute_scale_zp(rmin, rmax, qmin = −127, qmax = 127, symmetric = True)` for int8 weights:
/// the scale (the zero point is 0). The range is widened to hold 0 and made symmetric in
/// float32, divided in float64 by 254, and stored as float32; a scale below float32's smallest
/// normal becomes 1.
pub fn int8_scale(rmin: f32, rmax: f32) -> f32 {
    let absmax = rmin.min(0.0).abs().max(rmax.max(0.0).abs());
    let scale = (f64::from(absmax) - f64::from(-absmax)) / 254.0;
    if scale < f64::from(f32::MIN_POSITIVE) {
        1.0
    } else {
        scale as f32
    }
}

/// `compute_scale_zp(rmin, rmax, qmin = 0, qmax = 255)` for uint8 activations (asymmetric):
/// `(scale, zero point)`, the zero point `round(0 − rmin / scale)` in float64, half to even.
pub fn uint8_params(rmin: f32, rmax: f32) -> (f32, u8) {
    let (rmin, rmax) = (rmin.min(0.0), rmax.max(0.0));
    let scale = (f64::from(rmax) - f64::from(rmin)) / 255.0;
    if scale < f64::from(f32::MIN_POSITIVE) {
        return (1.0, 0);
    }
    let zp = (0.0 - f64::from(rmin) / scale).round_ties_even();
    (scale as f32, zp.clamp(0.0, 255.0) as u8)
}

/// `quantize_nparray`: `round(v / scale) + zero_point` in float32 (numpy's round: half to
/// even), clipped to the type's full range `[lo, hi]` (−128..127 for int8 even though the
/// scale was fitted to ±127).
pub fn quantize(v: f32, scale: f32, zero_point: f32, lo: f32, hi: f32) -> f32 {
    ((v / scale).round_ties_even() + zero_point).clamp(lo, hi)
}

/// Per-column int8 codes and scales of a `[rows, cols]` row-major matrix, as
/// `quantize_weight_per_channel_impl(axis = −1)` computes them.
pub fn int8_per_column(values: &[f32], cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = Vec::with_capacity(cols);
    for c in 0..cols {
        let col = values.iter().skip(c).step_by(cols.max(1));
        let (lo, hi) = col.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
        scales.push(int8_scale(lo, hi));
    }
    let codes = values
        .iter()
        .enumerate()
        .map(|(i, &v)| quantize(v, scales[i % cols], 0.0, -128.0, 127.0) as i8)
        .collect();
    (codes, scales)
}

/// Uint8 codes, scale and zero point of a whole tensor, as `quantize_initializer_impl` with the
/// activation type computes them.
pub fn uint8_per_tensor(values: &[f32]) -> (Vec<u8>, f32, u8) {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let (scale, zp) = if values.is_empty() {
        (1.0, 0)
    } else {
        uint8_params(lo, hi)
    };
    let codes = values
        .iter()
        .map(|&v| quantize(v, scale, f32::from(zp), 0.0, 255.0) as u8)
        .collect();
    (codes, scale, zp)
}

/// Rewrites `m` (a float export) as `quantize_dynamic(per_channel=True, QInt8)` would.
pub fn quantize_dynamic(m: &mut ModelProto) -> Result<()> {
    let g = m.graph.as_mut().context("ONNX model without a graph")?;
    replace_gemm_with_matmul(g)?;
    let mut q = Quantizer::new(g);
    for node in std::mem::take(&mut g.node) {
        let start = q.nodes.len();
        q.node(node)?;
        let made: Vec<String> = q.nodes[start..]
            .iter()
            .flat_map(|n| n.output.iter().cloned())
            .collect();
        q.generated.extend(made);
    }
    for o in g.output.iter().map(|o| o.name.clone()) {
        if let Some(dq) = q.dequantize(&o) {
            q.nodes.push(dq);
        }
    }
    g.node = q.nodes;
    g.initializer = clean_initializers(g, q.inits)?;
    m.producer_name = "onnx.quantize".into();
    m.producer_version = "0.1.0".into();
    let mut props = vec![StringStringEntryProto {
        key: "onnx.infer".into(),
        value: "onnxruntime.quant".into(),
    }];
    props.extend(
        std::mem::take(&mut m.metadata_props)
            .into_iter()
            .filter(|p| p.key != "onnx.infer"),
    );
    m.metadata_props = props;
    Ok(())
}

fn node(name: &str, op: &str, input: &[&str], output: &[&str], attrs: Vec<A>) -> NodeProto {
    NodeProto {
        input: input.iter().map(|s| s.to_string()).collect(),
        output: output.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

/// Attribute `name` of `n` as `get` reads it, or `default` when absent.
fn attr<T>(n: &NodeProto, name: &str, get: impl Fn(&A) -> Option<T>, default: T) -> T {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .and_then(get)
        .unwrap_or(default)
}

/// `ONNXModel.replace_gemm_with_matmul` (dynamic mode runs it before quantising).
fn replace_gemm_with_matmul(g: &mut GraphProto) -> Result<()> {
    let mut names: HashSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    names.extend(
        g.input
            .iter()
            .chain(&g.output)
            .chain(&g.value_info)
            .map(|v| v.name.clone()),
    );
    for n in &g.node {
        names.extend(n.input.iter().chain(&n.output).cloned());
    }
    let mut transposed: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(g.node.len());
    for n in std::mem::take(&mut g.node) {
        let plain = attr(&n, "alpha", |a| a.f, 1.0) == 1.0
            && attr(&n, "beta", |a| a.f, 1.0) == 1.0
            && attr(&n, "transA", |a| a.i, 0) == 0;
        if n.op_type != "Gemm" || !plain || n.input.len() < 2 || n.output.is_empty() {
            out.push(n);
            continue;
        }
        let mut b = n.input[1].clone();
        if attr(&n, "transB", |a| a.i, 0) == 1 {
            match g.initializer.iter().find(|t| t.name == b) {
                Some(t) => {
                    if !transposed.contains_key(&b) {
                        let suffixes = ["", "_quantized", "_scale", "_zero_point"];
                        let mut name = format!("{b}_Transposed");
                        let mut k = 0;
                        while suffixes
                            .iter()
                            .any(|s| names.contains(&format!("{name}{s}")))
                        {
                            k += 1;
                            name = format!("{b}_Transposed_{k}");
                        }
                        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
                        let t = transpose(t).with_context(|| format!("Gemm weight {b}"))?;
                        g.initializer.push(TensorProto {
                            name: name.clone(),
                            ..t
                        });
                        transposed.insert(b.clone(), name);
                    }
                    b = transposed[&b].clone();
                }
                None => {
                    let tn = format!("{b}_Transposed");
                    let name = if n.name.is_empty() {
                        String::new()
                    } else {
                        format!("{}_Transpose", n.name)
                    };
                    out.push(node(&name, "Transpose", &[&n.input[1]], &[&tn], vec![]));
                    b = tn;
                }
            }
        }
        let with_bias = n.input.len() > 2;
        let mm_out = if with_bias {
            format!("{}_MatMul", n.output[0])
        } else {
            n.output[0].clone()
        };
        let suffixed = |s: &str| {
            if n.name.is_empty() {
                String::new()
            } else {
                format!("{}{s}", n.name)
            }
        };
        out.push(node(
            &suffixed("_MatMul"),
            "MatMul",
            &[&n.input[0], &b],
            &[&mm_out],
            vec![],
        ));
        if with_bias {
            out.push(node(
                &suffixed("_Add"),
                "Add",
                &[&mm_out, &n.input[2]],
                &[&n.output[0]],
                vec![],
            ));
        }
    }
    g.node = out;
    Ok(())
}

/// `numpy_helper.from_array(to_array(B).T)` of a 2-D float initializer.
fn transpose(t: &TensorProto) -> Result<TensorProto> {
    let (Some(v), Some(shape)) = (t.f32_values(), t.shape()) else {
        bail!("not a float tensor");
    };
    let [r, c] = shape[..] else {
        bail!("shape {shape:?} is not 2-D");
    };
    if v.len() != r * c {
        bail!("{} values for shape {shape:?}", v.len());
    }
    let mut out = vec![0f32; v.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = v[i * c + j];
        }
    }
    Ok(TensorProto::f32(&t.name, &[c, r], &out))
}

/// A quantised value: codes, scale and zero point names (`QuantizedValue`).
#[derive(Clone)]
struct QValue {
    q: String,
    scale: String,
    zp: String,
    axis: Option<i64>,
}

/// `ONNXQuantizer` state in dynamic IntegerOps mode.
struct Quantizer {
    /// The graph's initializers, then the ones quantisation adds, in the order it adds them.
    inits: Vec<TensorProto>,
    index: HashMap<String, usize>,
    /// `quantized_value_map`.
    quantized: HashMap<String, QValue>,
    /// `generated_value_names`: graph inputs and the outputs of nodes already emitted.
    generated: HashSet<String>,
    nodes: Vec<NodeProto>,
    dequantized: HashSet<String>,
}

impl Quantizer {
    fn new(g: &mut GraphProto) -> Quantizer {
        let inits = std::mem::take(&mut g.initializer);
        let index: HashMap<String, usize> = inits
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let generated = g
            .input
            .iter()
            .map(|v| v.name.clone())
            .filter(|n| !index.contains_key(n))
            .collect();
        Quantizer {
            inits,
            index,
            quantized: HashMap::new(),
            generated,
            nodes: Vec::new(),
            dequantized: HashSet::new(),
        }
    }

    fn float_init(&self, name: Option<&String>) -> bool {
        name.and_then(|n| self.index.get(n))
            .is_some_and(|&i| self.inits[i].data_type == Some(data_type::FLOAT))
    }

    fn node(&mut self, n: NodeProto) -> Result<()> {
        match n.op_type.as_str() {
            // MatMulConstBOnly (the dynamic default): only a constant B is quantised
            "MatMul" if n.input.len() == 2 && self.float_init(n.input.get(1)) => self.matmul(n),
            "Gather" if self.float_init(n.input.first()) && !n.output.is_empty() => self.gather(n),
            "Transpose"
                if n.input
                    .first()
                    .is_some_and(|i| self.quantized.contains_key(i))
                    && !n.output.is_empty() =>
            {
                self.transpose(n);
                Ok(())
            }
            _ => {
                self.plain(n);
                Ok(())
            }
        }
    }

    /// `QuantOperatorBase.quantize`: float inputs that were quantised are dequantised first.
    fn plain(&mut self, n: NodeProto) {
        for i in &n.input {
            if let Some(dq) = self.dequantize(i) {
                self.nodes.push(dq);
            }
        }
        self.nodes.push(n);
    }

    /// `_dequantize_value`: a `DequantizeLinear` back to `name`, once.
    fn dequantize(&mut self, name: &str) -> Option<NodeProto> {
        if self.generated.contains(name) {
            return None;
        }
        let v = self.quantized.get(name)?;
        let dq = format!("{name}_DequantizeLinear");
        if !self.dequantized.insert(dq.clone()) {
            return None;
        }
        let attrs = v.axis.map(|a| vec![A::int("axis", a)]).unwrap_or_default();
        Some(node(
            &dq,
            "DequantizeLinear",
            &[&v.q, &v.scale, &v.zp],
            &[name],
            attrs,
        ))
    }

    fn values(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self
            .index
            .get(name)
            .map(|&i| &self.inits[i])
            .with_context(|| format!("no initializer {name}"))?;
        let (Some(shape), Some(v)) = (t.shape(), t.f32_values()) else {
            bail!("initializer {name} is not a float tensor");
        };
        if shape.iter().product::<usize>() != v.len() {
            bail!("initializer {name}: {} values for shape {shape:?}", v.len());
        }
        Ok((shape, v))
    }

    /// `make_tensor` of scales and zero points: typed fields (`float_data`, `int32_data`).
    fn push_params(&mut self, name: &str, dims: &[usize], scales: Vec<f32>, zp: (i32, Vec<i32>)) {
        let d: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        self.inits.push(TensorProto {
            name: format!("{name}_scale"),
            data_type: Some(data_type::FLOAT),
            dims: d.clone(),
            float_data: scales,
            ..Default::default()
        });
        self.inits.push(TensorProto {
            name: format!("{name}_zero_point"),
            data_type: Some(zp.0),
            dims: d,
            int32_data: zp.1,
            ..Default::default()
        });
    }

    fn qvalue(name: &str, axis: Option<i64>) -> QValue {
        QValue {
            q: format!("{name}_quantized"),
            scale: format!("{name}_scale"),
            zp: format!("{name}_zero_point"),
            axis,
        }
    }

    /// `quantize_weight_per_channel(axis = −1)`, int8 symmetric.
    fn weight(&mut self, name: &str) -> Result<QValue> {
        if let Some(v) = self.quantized.get(name) {
            return Ok(v.clone());
        }
        let (shape, v) = self.values(name)?;
        let Some(&cols) = shape.last() else {
            bail!("initializer {name} is a scalar, it has no channel axis");
        };
        let (codes, scales) = int8_per_column(&v, cols);
        self.push_params(name, &[cols], scales, (data_type::INT8, vec![0; cols]));
        let raw = codes.iter().map(|&c| c as u8).collect();
        let q = TensorProto::raw(&format!("{name}_quantized"), data_type::INT8, &shape, raw);
        self.inits.push(q);
        let qv = Self::qvalue(name, Some(shape.len() as i64 - 1));
        self.quantized.insert(name.to_string(), qv.clone());
        Ok(qv)
    }

    /// `quantize_activation`: a value already quantised is reused; an initializer becomes
    /// uint8 per tensor; anything else goes through `DynamicQuantizeLinear`.
    fn activation(&mut self, name: &str, pending: &mut Vec<NodeProto>) -> Result<QValue> {
        if let Some(v) = self.quantized.get(name) {
            return Ok(v.clone());
        }
        let qv = Self::qvalue(name, None);
        if self.index.contains_key(name) {
            let (shape, v) = self.values(name)?;
            let (codes, scale, zp) = uint8_per_tensor(&v);
            self.push_params(name, &[], vec![scale], (data_type::UINT8, vec![zp.into()]));
            self.inits
                .push(TensorProto::raw(&qv.q, data_type::UINT8, &shape, codes));
        } else {
            pending.push(node(
                &format!("{name}_QuantizeLinear"),
                "DynamicQuantizeLinear",
                &[name],
                &[&qv.q, &qv.scale, &qv.zp],
                vec![],
            ));
        }
        self.quantized.insert(name.to_string(), qv.clone());
        Ok(qv)
    }

    /// `MatMulInteger.quantize`.
    fn matmul(&mut self, n: NodeProto) -> Result<()> {
        let mut pending = Vec::new();
        let a = self.activation(&n.input[0], &mut pending)?;
        let w = self.weight(&n.input[1])?;
        let out = n.output.first().context("MatMul without an output")?;
        let name = if n.name.is_empty() {
            String::new()
        } else {
            format!("{}_quant", n.name)
        };
        let mi = format!("{out}_output_quantized");
        pending.push(node(
            &name,
            "MatMulInteger",
            &[&a.q, &w.q, &a.zp, &w.zp],
            &[&mi],
            vec![],
        ));
        let cast = format!("{mi}_cast_output");
        let to = A::int("to", data_type::FLOAT.into());
        pending.push(node(
            &format!("{mi}_cast"),
            "Cast",
            &[&mi],
            &[&cast],
            vec![to],
        ));
        let sm = if name.is_empty() {
            format!("{}_{}_mul", a.scale, w.scale)
        } else {
            format!("{name}_scales_mul")
        };
        let sm_out = match self.nodes.iter().find(|x| x.name == sm) {
            Some(x) => x.output.first().cloned().unwrap_or_default(),
            None => {
                let o = format!("{sm}:0");
                pending.push(node(&sm, "Mul", &[&a.scale, &w.scale], &[&o], vec![]));
                o
            }
        };
        let om = if name.is_empty() {
            String::new()
        } else {
            format!("{name}_output_scale_mul")
        };
        pending.push(node(&om, "Mul", &[&cast, &sm_out], &[out], vec![]));
        self.nodes.extend(pending);
        Ok(())
    }

    /// `GatherQuant.quantize`: the table is quantised, the output renamed `<out>_quantized`.
    fn gather(&mut self, mut n: NodeProto) -> Result<()> {
        let mut pending = Vec::new();
        let w = self.activation(&n.input[0], &mut pending)?;
        let out = n.output[0].clone();
        let q = format!("{out}_quantized");
        self.quantized.insert(
            out,
            QValue {
                q: q.clone(),
                scale: w.scale,
                zp: w.zp,
                axis: None,
            },
        );
        n.input[0] = w.q;
        n.output[0] = q;
        pending.push(n);
        self.nodes.extend(pending);
        Ok(())
    }

    /// `Direct8BitOp.quantize` on an already quantised input: the codes are transposed.
    fn transpose(&mut self, mut n: NodeProto) {
        let Some(v) = self.quantized.get(&n.input[0]).cloned() else {
            return self.plain(n);
        };
        let out = n.output[0].clone();
        let q = format!("{out}_quantized");
        self.quantized.insert(
            out,
            QValue {
                q: q.clone(),
                axis: None,
                ..v.clone()
            },
        );
        n.input[0] = v.q;
        n.output[0] = q;
        self.nodes.push(n);
    }
}

/// `_clean_initializers_helper`: initializers no node reads are dropped; a value read but
/// produced by nothing is an error.
fn clean_initializers(g: &GraphProto, inits: Vec<TensorProto>) -> Result<Vec<TensorProto>> {
    let mut wanted: HashSet<&str> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter())
        .chain(g.output.iter().map(|o| &o.name))
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    for n in &g.node {
        for o in &n.output {
            wanted.remove(o.as_str());
        }
    }
    let mut kept = Vec::new();
    for t in inits {
        if wanted.remove(t.name.as_str()) {
            kept.push(t);
        }
    }
    for i in &g.input {
        wanted.remove(i.name.as_str());
    }
    if !wanted.is_empty() {
        let mut w: Vec<&str> = wanted.into_iter().collect();
        w.sort();
        bail!("quantised graph reads values nothing produces: {w:?}");
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::ArchKind;

    #[test]
    fn int8_scale_and_codes_by_hand() {
        // column max 1.27 → scale 2·1.27/254 = 0.01 (in float32); 0.005 / 0.01 is exactly ½,
        // which numpy rounds to the even 0
        assert_eq!(int8_scale(-0.2, 1.27), 0.01f32);
        assert_eq!(quantize(0.005, 0.01, 0.0, -128.0, 127.0), 0.0);
        // a power-of-two scale makes every half exact: 127·2⁻⁷ → scale 2⁻⁷
        let s = 0.0078125f32;
        let col0 = [
            0.9921875f32,
            0.5 * s,
            1.5 * s,
            2.5 * s,
            -0.5 * s,
            -1.5 * s,
            -0.9921875,
        ];
        // [rows, 2]: column 0 as above, column 1 all zeros (scale 1, codes 0)
        let m: Vec<f32> = col0.iter().flat_map(|&v| [v, 0.0]).collect();
        let (codes, scales) = int8_per_column(&m, 2);
        assert_eq!(scales, vec![s, 1.0]);
        let c0: Vec<i8> = codes.iter().step_by(2).copied().collect();
        // half to even: ½ → 0, 1½ → 2, 2½ → 2, −½ → 0, −1½ → −2 (half away from zero gives 1, 2, 3, −1, −2)
        assert_eq!(c0, vec![127, 0, 2, 2, 0, -2, -127]);
        assert!(codes.iter().skip(1).step_by(2).all(|&c| c == 0));
    }

    #[test]
    fn uint8_embedding_codes_by_hand() {
        // range [−0.5, 0.49609375] is 255 steps of 2⁻⁸: scale 2⁻⁸, zero point 128
        let s = 0.00390625f32;
        let v = [-0.5f32, 0.49609375, 0.5 * s, 1.5 * s, 2.5 * s];
        let (codes, scale, zp) = uint8_per_tensor(&v);
        assert_eq!((scale, zp), (s, 128));
        assert_eq!(codes, vec![0, 255, 128, 130, 130]);
        // all positive: rmin is widened to 0, so the zero point is 0
        assert_eq!(uint8_params(0.25, 2.55).1, 0);
        assert_eq!(uint8_params(0.0, 0.0), (1.0, 0));
    }

    #[test]
    fn llama_int8_has_onnxruntime_names_and_nodes() {
        let model = crate::onnx::tests::tiny(ArchKind::Llama);
        let mut m = crate::onnx::export_fp32(&model).unwrap();
        let fp32 = m.clone();
        quantize_dynamic(&mut m).unwrap();
        let g = m.graph.as_ref().unwrap();
        let names: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        let fg = fp32.graph.unwrap();
        let q_name = "/model/layers.0/self_attn/q_proj/MatMul";
        let w = &fg.node.iter().find(|n| n.name == q_name).unwrap().input[1];
        for s in ["_quantized", "_scale", "_zero_point"] {
            assert!(names.contains(format!("{w}{s}").as_str()), "{w}{s}");
        }
        assert!(!names.contains(w.as_str()), "the float weight is dropped");
        let suffixes = ["_quantized", "_scale", "_zero_point"];
        assert!(
            names
                .iter()
                .filter(|n| n.starts_with("onnx::"))
                .all(|n| suffixes.iter().any(|s| n.ends_with(s)))
        );
        // the embedding is quantised as onnxruntime does (uint8 per tensor), the norms are not
        let e = g
            .initializer
            .iter()
            .find(|t| t.name == "model.embed_tokens.weight_quantized")
            .unwrap();
        assert_eq!(e.data_type, Some(data_type::UINT8));
        assert!(names.contains("model.norm.weight"));
        let op = |name: &str| {
            g.node
                .iter()
                .find(|n| n.name == name)
                .map(|n| n.op_type.as_str())
        };
        assert_eq!(op(&format!("{q_name}_quant")), Some("MatMulInteger"));
        assert_eq!(op(&format!("{q_name}_quant_scales_mul")), Some("Mul"));
        assert_eq!(op(&format!("{q_name}_quant_output_scale_mul")), Some("Mul"));
        // q, k and v read one DynamicQuantizeLinear of the normed input
        let dq = g
            .node
            .iter()
            .filter(|n| n.op_type == "DynamicQuantizeLinear")
            .count();
        // inputs of q/k/v, o_proj, gate/up, down_proj, lm_head
        assert_eq!(dq, 5);
        let per_layer = 7;
        let mmi = g
            .node
            .iter()
            .filter(|n| n.op_type == "MatMulInteger")
            .count();
        assert_eq!(mmi, per_layer + 1);
        assert_eq!(m.producer_name, "onnx.quantize");
    }

    #[test]
    fn bert_pooler_gemm_becomes_a_transposed_matmul() {
        let model = crate::onnx::tests::tiny(ArchKind::Bert);
        let mut m = crate::onnx::export_fp32(&model).unwrap();
        quantize_dynamic(&mut m).unwrap();
        let g = m.graph.unwrap();
        let t = |n: &str| g.initializer.iter().find(|t| t.name == n);
        let q = t("pooler.dense.weight_Transposed_quantized").unwrap();
        let w = model.get("pooler.dense.weight").unwrap();
        assert_eq!(q.dims, vec![w.shape[1] as i64, w.shape[0] as i64]);
        assert!(t("pooler.dense.weight").is_none());
        assert!(t("pooler.dense.bias").is_some());
        assert!(
            g.node
                .iter()
                .any(|n| n.name == "/pooler/dense/Gemm_MatMul_quant")
        );
        assert!(g.node.iter().any(|n| n.name == "/pooler/dense/Gemm_Add"));
    }
}
