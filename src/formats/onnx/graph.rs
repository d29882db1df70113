//! The graph around each initializer: which nodes consume it, how it is dequantised, and
//! under which Hugging Face name it is listed.
//!
//! Quantisation patterns (those onnxruntime's quantisers emit):
//!
//! - static Q/DQ: `q` → `DequantizeLinear(q, scale, zero_point; axis)`: scale and zero point
//!   are the node's inputs 1 and 2, `axis` its attribute (default 1);
//! - dynamic: `MatMulInteger(a, q, a_zero_point, q_zero_point)` (or `ConvInteger`, then
//!   perhaps an `Add` of its int32 bias) → `Cast` → `Mul(·, Mul(a_scale, q_scale))`: the weight's zero point is input 3, its scale the
//!   initializer input of the `Mul` that makes the second factor; a 1-D scale is per output
//!   column (the last axis);
//! - dynamic embedding: `Gather(q, ids)` → `DequantizeLinear(·, scale, zero_point)`, per
//!   tensor only.
//!
//! Scales and zero points are not listed as tensors. The codes of an initializer named
//! `…_quantized` whose scale is found nowhere are listed, marked unreadable.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::index::Index;
use super::names::{self, Found};
use super::proto::NodeProto;
use super::tensor::Stored;
use super::{DataType, Dequant, Location, Naming, OnnxWeight, QuantScheme, decode};

/// Every initializer but the quantisation parameters, dequantised and named.
pub(super) fn weights(
    nodes: &[NodeProto],
    stored: Vec<Stored>,
    file: &Bytes,
    problems: &mut Vec<String>,
) -> Vec<OnnxWeight> {
    let ix = Index::new(nodes, &stored);
    let mut qparams = qparam_inputs(&ix);
    let mut budget = Budget((file.len() as u64).max(1 << 24));
    let mut plans = Vec::with_capacity(stored.len());
    for s in &stored {
        plans.push(plan(&ix, s, file, &mut qparams, &mut budget, problems));
    }
    // names the file gives come first: a found name that repeats one is dropped
    let listed = |s: &Stored| !qparams.contains(s.name.as_str());
    let mut taken: HashSet<String> = HashSet::new();
    for (s, p) in stored.iter().zip(&plans) {
        if listed(s) && matches!(p.naming, Naming::Kept | Naming::Unnamed) {
            taken.insert(p.name.clone());
        }
    }
    let mut emitted: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(stored.len());
    for (s, mut p) in stored.iter().zip(plans) {
        if !listed(s) {
            continue;
        }
        let found = matches!(p.naming, Naming::Bias | Naming::NodePath);
        if (found && !taken.insert(p.name.clone())) || !emitted.insert(p.name.clone()) {
            problems.push(format!(
                "weight {:?} would be named {:?}, a name already taken: left unnamed",
                s.name, p.name
            ));
            p.name = s.name.clone();
            p.naming = Naming::Unnamed;
            p.transposed = false;
            emitted.insert(p.name.clone());
        }
        let name = p.name;
        let shape = if p.transposed {
            s.dims.iter().rev().copied().collect()
        } else {
            s.dims.clone()
        };
        let unreadable = match (&p.quant, p.unreadable) {
            (_, Some(why)) => Some(why),
            (None, None) => s
                .dtype
                .size()
                .is_none()
                .then(|| format!("data type {} is not supported", s.dtype.name())),
            (Some(_), None) => None,
        };
        out.push(OnnxWeight {
            name,
            onnx_name: s.name.clone(),
            shape,
            onnx_shape: s.dims.clone(),
            numel: s.numel,
            dtype: s.dtype,
            location: s.location.clone(),
            transposed: p.transposed,
            quant: p.quant,
            naming: p.naming,
            unreadable,
        });
    }
    out
}

/// What the graph says about one initializer.
struct Plan {
    quant: Option<Dequant>,
    unreadable: Option<String>,
    naming: Naming,
    /// The listed name (the ONNX name until one is found).
    name: String,
    transposed: bool,
}

/// A kept name: the initializer's, less onnxruntime's `_quantized` for a quantised weight.
fn kept_name(s: &Stored, quantised: bool) -> String {
    match s.name.strip_suffix("_quantized") {
        Some(base) if quantised && !base.is_empty() => base.to_string(),
        _ => s.name.clone(),
    }
}

/// Initializers that are scales and zero points of quantisation ops (not weights).
fn qparam_inputs<'a>(ix: &Index<'a>) -> HashSet<&'a str> {
    let mut out = HashSet::new();
    for node in ix.nodes {
        let slots: &[usize] = match node.op_type.as_str() {
            "DequantizeLinear" | "QuantizeLinear" => &[1, 2],
            "MatMulInteger" | "ConvInteger" => &[2, 3],
            "DynamicQuantizeLSTM" => &[8, 9, 10, 11],
            "QLinearMatMul" | "QLinearConv" => &[1, 2, 4, 5, 6, 7],
            _ => &[],
        };
        for &i in slots {
            if let Some(v) = node.input.get(i).filter(|v| ix.init(v).is_some()) {
                out.insert(v.as_str());
            }
        }
    }
    out
}

/// The values an initializer's data flows into: the consuming (node, slot) pairs, looked
/// through `QuantizeLinear`/`DequantizeLinear` (input 0) and `Cast`; at most `visits` edges
/// are followed (hostile graphs can fan out without end).
fn uses(ix: &Index, value: &str, depth: usize, visits: &mut usize, out: &mut Vec<(usize, usize)>) {
    for &(n, slot) in ix.consumers(value) {
        if *visits == 0 {
            return;
        }
        *visits -= 1;
        let node = ix.node(n);
        let through = matches!(
            (node.op_type.as_str(), slot),
            ("QuantizeLinear" | "DequantizeLinear", 0) | ("Cast", 0)
        );
        match node.output.first() {
            Some(o) if through && depth < 3 => uses(ix, o, depth + 1, visits, out),
            _ => out.push((n, slot)),
        }
    }
}

/// Edges one weight's uses may follow.
const USE_VISITS: usize = 1024;
/// Distinct dequantisations of one weight evaluated (its uses normally share one).
const QUANT_VARIANTS: usize = 8;

/// Scale and zero-point values still allowed to be decoded and kept, over all weights: a
/// hostile file could make a million empty weights share one large scale.
pub(super) struct Budget(pub(super) u64);

impl Budget {
    fn take(&mut self, n: u64) -> Result<(), String> {
        if n > self.0 {
            return Err(
                "its quantisation parameters exceed what the reader keeps for one file (hostile?)"
                    .into(),
            );
        }
        self.0 -= n;
        Ok(())
    }
}

fn plan<'a>(
    ix: &Index<'a>,
    s: &Stored,
    file: &Bytes,
    qparams: &mut HashSet<&'a str>,
    budget: &mut Budget,
    problems: &mut Vec<String>,
) -> Plan {
    let mut plan = Plan {
        quant: None,
        unreadable: None,
        naming: Naming::Unnamed,
        name: s.name.clone(),
        transposed: false,
    };
    let (found, after) = dequantisations(ix, s, file, qparams, budget);
    settle_dequant(&mut plan, s, found);
    if let Some(why) = &plan.unreadable {
        problems.push(format!("weight {:?}: {why}", s.name));
    }
    name_and_layout(ix, s, &mut plan, &after, problems);
    plan
}

/// The dequantisations of `s` its consuming nodes give, each distinct pattern evaluated
/// once, and the value after each dynamic `MatMulInteger`/`ConvInteger`'s scale (by node).
fn dequantisations<'a>(
    ix: &Index<'a>,
    s: &Stored,
    file: &Bytes,
    qparams: &mut HashSet<&'a str>,
    budget: &mut Budget,
) -> (Vec<Result<Dequant, String>>, HashMap<usize, String>) {
    // dequantisation, from the nodes consuming the codes directly; each distinct pattern
    // (scale, zero point, axis) evaluated once
    let mut found: Vec<Result<Dequant, String>> = Vec::new();
    let mut seen: HashSet<(&str, Option<&str>, i64, QuantScheme)> = HashSet::new();
    let mut after: HashMap<usize, String> = HashMap::new();
    for &(n, slot) in ix.consumers(&s.name) {
        let node = ix.node(n);
        let pattern = match (node.op_type.as_str(), slot) {
            ("DequantizeLinear", 0) => static_qdq(node)
                .map(|(scale, zp, axis)| (scale, zp, axis, QuantScheme::StaticQdq, node)),
            ("MatMulInteger" | "ConvInteger", 1) => match dynamic_scale(ix, node) {
                Some((scale, out)) => {
                    qparams.insert(scale);
                    after.insert(n, out.to_string());
                    let zp = node.input.get(3).map(String::as_str);
                    let axis = if node.op_type == "ConvInteger" {
                        0
                    } else {
                        s.dims.len().saturating_sub(1) as i64
                    };
                    Ok((scale, zp, axis, QuantScheme::DynamicInteger, node))
                }
                None => Err(format!(
                    "no scale found after {} {:?} (expected Cast → Mul by Mul(activation scale, weight scale))",
                    node.op_type, node.name
                )),
            },
            ("Gather", 0) if s.dtype.is_integer() => match gather_dequantize(ix, node) {
                Some(p) => p.map(|(scale, zp, axis, dq)| {
                    (scale, zp, axis, QuantScheme::GatherDequantize, dq)
                }),
                None => continue,
            },
            _ => continue,
        };
        match pattern {
            Ok((scale, zp, axis, scheme, _)) if seen.contains(&(scale, zp, axis, scheme)) => {}
            _ if found.len() >= QUANT_VARIANTS => {}
            Ok((scale, zp, axis, scheme, _)) => {
                seen.insert((scale, zp, axis, scheme));
                let d = dequant(ix, s, file, budget, scale, zp, axis, scheme);
                found.push(match d {
                    Ok(d) if scheme == QuantScheme::GatherDequantize && d.axis.is_some() => {
                        Err("per-axis scales after a Gather are not supported".into())
                    }
                    other => other,
                });
            }
            Err(why) => found.push(Err(why)),
        }
    }
    (found, after)
}

/// The plan's dequantisation, or why it is unreadable, from what its uses give.
fn settle_dequant(plan: &mut Plan, s: &Stored, found: Vec<Result<Dequant, String>>) {
    let (oks, errs): (Vec<_>, Vec<_>) = found.into_iter().partition(Result::is_ok);
    let mut oks: Vec<Dequant> = oks.into_iter().flatten().fold(Vec::new(), |mut u, d| {
        if !u.contains(&d) {
            u.push(d);
        }
        u
    });
    let first_err = errs.into_iter().find_map(Result::err);
    match (oks.len(), first_err) {
        (0, Some(why)) => plan.unreadable = Some(why),
        (1, None) => plan.quant = oks.pop(),
        (0, None) if s.name.ends_with("_quantized") && s.dtype.is_integer() => {
            plan.unreadable = Some(
                "quantised codes whose scale is found on no DequantizeLinear, MatMulInteger or Gather"
                    .into(),
            );
        }
        (0, None) => {}
        (_, why) => {
            plan.unreadable = Some(format!(
                "its uses dequantise it differently{}",
                why.map(|w| format!(" ({w})")).unwrap_or_default()
            ))
        }
    }
}

/// The plan's name and layout, from the nodes the values flow into.
fn name_and_layout(
    ix: &Index,
    s: &Stored,
    plan: &mut Plan,
    after: &HashMap<usize, String>,
    problems: &mut Vec<String>,
) {
    // name and layout, from the nodes the values flow into
    let mut flow = Vec::new();
    let mut visits = USE_VISITS;
    uses(ix, &s.name, 0, &mut visits, &mut flow);
    let base = kept_name(s, plan.quant.is_some() || plan.unreadable.is_some());
    if !names::is_anonymous(&base) {
        plan.naming = Naming::Kept;
        plan.transposed = s.dims.len() == 2
            && flow
                .iter()
                .any(|&(n, slot)| names::kept_name_transposed(ix.node(n), slot));
        // onnxruntime stores the weight of a Gemm it rewrote as `<name>_Transposed`
        // (`_Transposed_<k>` when that name was taken)
        plan.name = match plan.transposed {
            true => names::untransposed_name(&base).unwrap_or(base),
            false => base,
        };
        return;
    }
    let mut finds: Vec<Found> = Vec::new();
    for &(n, slot) in &flow {
        let node = ix.node(n);
        let (f, note) = names::from_use(ix, node, slot, &s.dims, after.get(&n).map(String::as_str));
        if let Some(note) = note {
            problems.push(format!(
                "weight {:?}: {note}; the bias's name is used",
                s.name
            ));
        }
        finds.extend(f);
    }
    let weight_like = (plan.quant.is_some()
        || matches!(
            s.dtype,
            DataType::Float | DataType::Float16 | DataType::BFloat16 | DataType::Double
        ))
        && s.dims.len() >= 2
        && flow
            .iter()
            .any(|&(n, slot)| names::is_weight_slot(ix.node(n), slot));
    match names::reconcile(&finds) {
        Ok(Some(f)) if f.transposed && s.dims.len() != 2 => problems.push(format!(
            "weight {:?} of shape {:?}: a transposed weight must be 2-D: left unnamed",
            s.name, s.dims
        )),
        Ok(Some(f)) => {
            plan.naming = if f.by_bias {
                Naming::Bias
            } else {
                Naming::NodePath
            };
            plan.name = format!("{}.weight", f.module);
            plan.transposed = f.transposed;
        }
        Ok(None) if weight_like => problems.push(format!(
            "weight {:?} of shape {:?}: no bias or node path names it: left unnamed",
            s.name, s.dims
        )),
        Ok(None) => {}
        Err(why) => problems.push(format!("weight {:?}: {why}: left unnamed", s.name)),
    }
}

/// Static Q/DQ: the (scale, zero point, axis) of a `DequantizeLinear`.
fn static_qdq(node: &NodeProto) -> Result<(&str, Option<&str>, i64), String> {
    if names::attr_int(node, "block_size").is_some_and(|b| b != 0) {
        return Err(format!(
            "blocked quantisation (block_size) of {:?} is not supported",
            node.name
        ));
    }
    let Some(scale) = node.input.get(1).filter(|v| !v.is_empty()) else {
        return Err(format!("DequantizeLinear {:?} has no scale", node.name));
    };
    let zp = node.input.get(2).map(String::as_str);
    Ok((scale, zp, names::attr_int(node, "axis").unwrap_or(1)))
}

/// Dynamic quantisation: from a `MatMulInteger`/`ConvInteger`'s output (after a
/// `ConvInteger`, an `Add` of its int32 bias may come first), an optional `Cast`, then the
/// `Mul` by the scale; the weight's scale is the initializer input of that `Mul`
/// (or of the `Mul` that makes its other factor). Returns (scale initializer, `Mul` output).
fn dynamic_scale<'a>(ix: &Index<'a>, node: &'a NodeProto) -> Option<(&'a str, &'a str)> {
    let mut value = node.output.first()?.as_str();
    let mut next = single_consumer(ix, value)?;
    if next.op_type == "Add" && node.op_type == "ConvInteger" {
        // the conv's bias, quantised to int32 at run time, added before the cast
        value = next.output.first()?.as_str();
        next = single_consumer(ix, value)?;
    }
    if next.op_type == "Cast" {
        value = next.output.first()?.as_str();
        next = single_consumer(ix, value)?;
    }
    if next.op_type != "Mul" || next.input.len() != 2 {
        return None;
    }
    let other = next.input.iter().find(|i| i.as_str() != value)?.as_str();
    let scale = match ix.init(other) {
        Some(t) => t.name.as_str(),
        None => {
            let factor = ix.producer(other).filter(|p| p.op_type == "Mul")?;
            let mut inits = factor.input.iter().filter_map(|i| ix.init(i));
            match (inits.next(), inits.next()) {
                (Some(t), None) => t.name.as_str(),
                _ => return None,
            }
        }
    };
    Some((scale, next.output.first()?.as_str()))
}

fn single_consumer<'a>(ix: &Index<'a>, value: &str) -> Option<&'a NodeProto> {
    match ix.consumers(value) {
        [(n, _)] => Some(ix.node(*n)),
        _ => None,
    }
}

/// Ops that move quantised values without changing them (onnxruntime keeps the codes
/// through them and dequantises after).
const MOVES: [&str; 6] = [
    "Transpose",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
];

/// A dynamically quantised embedding: `Gather(codes, ids)` → (`Transpose`, `Reshape`, …) →
/// `DequantizeLinear`.
#[allow(clippy::type_complexity)]
fn gather_dequantize<'a>(
    ix: &Index<'a>,
    node: &'a NodeProto,
) -> Option<Result<(&'a str, Option<&'a str>, i64, &'a NodeProto), String>> {
    let mut value = node.output.first()?;
    let mut dq = None;
    for _ in 0..4 {
        let [(n, 0)] = ix.consumers(value) else {
            break;
        };
        let next = ix.node(*n);
        if next.op_type == "DequantizeLinear" {
            dq = Some(next);
            break;
        }
        if !MOVES.contains(&next.op_type.as_str()) {
            break;
        }
        value = next.output.first()?;
    }
    let dq = dq?;
    Some(static_qdq(dq).map(|(scale, zp, axis)| (scale, zp, axis, dq)))
}

/// The dequantisation of `s` by the initializers `scale` and `zp` (absent: zeros) along
/// `axis` (ONNX's: negative counts from the end), validated against `s`'s shape.
#[allow(clippy::too_many_arguments)]
fn dequant(
    ix: &Index,
    s: &Stored,
    file: &Bytes,
    budget: &mut Budget,
    scale: &str,
    zp: Option<&str>,
    axis: i64,
    scheme: QuantScheme,
) -> Result<Dequant, String> {
    if !matches!(
        s.dtype,
        DataType::Int8 | DataType::Uint8 | DataType::Int16 | DataType::Uint16 | DataType::Int32
    ) {
        return Err(format!("{} codes cannot be dequantised", s.dtype.name()));
    }
    let Some(st) = ix.init(scale) else {
        return Err(format!("scale {scale:?} is not an initializer"));
    };
    if st.dims.len() > 1 {
        return Err(format!(
            "scale {scale:?} of shape {:?}: blocked quantisation is not supported",
            st.dims
        ));
    }
    budget.take(st.numel)?;
    let scales = decode::scales(st.dtype, &small_bytes(st, file)?)
        .map_err(|e| format!("scale {scale:?}: {e}"))?;
    let zps = match zp.filter(|z| !z.is_empty()) {
        None => Vec::new(),
        Some(z) => {
            let Some(zt) = ix.init(z) else {
                return Err(format!("zero point {z:?} is not an initializer"));
            };
            budget.take(zt.numel)?;
            if zt.dtype != s.dtype {
                return Err(format!(
                    "zero point {z:?} is {}, the codes {}",
                    zt.dtype.name(),
                    s.dtype.name()
                ));
            }
            decode::zero_points(zt.dtype, &small_bytes(zt, file)?)
                .map_err(|e| format!("zero point {z:?}: {e}"))?
        }
    };
    let (ns, nz) = (scales.len(), zps.len());
    if ns == 0 {
        return Err(format!("scale {scale:?} is empty"));
    }
    let output = st.dtype;
    if ns == 1 && nz <= 1 {
        return Ok(Dequant {
            scale: scales,
            zero_point: vec![zps.first().copied().unwrap_or(0)],
            axis: None,
            output,
            scheme,
        });
    }
    let rank = s.dims.len() as i64;
    let a = if axis < 0 { axis + rank } else { axis };
    let Some(channels) = usize::try_from(a).ok().and_then(|a| s.dims.get(a)) else {
        return Err(format!("quantisation axis {axis} of shape {:?}", s.dims));
    };
    let n = ns.max(nz);
    if n as u64 != *channels || !(ns == 1 || ns == n) || !(nz <= 1 || nz == n) {
        return Err(format!(
            "{ns} scales and {nz} zero points for axis {axis} of shape {:?}",
            s.dims
        ));
    }
    budget.take(2 * n as u64)?;
    let expand = |v: Vec<f32>| if v.len() == n { v } else { vec![v[0]; n] };
    let zero_point = match nz {
        0 => vec![0; n],
        1 => vec![zps[0]; n],
        _ => zps,
    };
    Ok(Dequant {
        scale: expand(scales),
        zero_point,
        axis: Some(a as usize),
        output,
        scheme,
    })
}

/// The bytes of a small inline tensor (a scale, a zero point).
fn small_bytes(t: &Stored, file: &Bytes) -> Result<Bytes, String> {
    match &t.location {
        Location::Memory(b) => Ok(b.clone()),
        Location::Inline { begin, end } => match (usize::try_from(*begin), usize::try_from(*end)) {
            (Ok(b), Ok(e)) if b <= e && e <= file.len() => Ok(file.slice(b..e)),
            _ => Err(format!("{:?} lies outside the file", t.name)),
        },
        Location::External { .. } => Err(format!("{:?} is stored as external data", t.name)),
    }
}
