//! E10's layers: the two MLP matrices of each dense layer whose units are matched (gate and
//! up, or up and down), and along which axis each keeps its units. See
//! [`super::e10_mlp_matching`].

use super::roles::layers_of;
use crate::arch::Family;
use crate::model::{Model, TensorInfo};

/// A gated MLP (gate and up matched) or a plain one (up and down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Gated,
    Plain,
}

impl Kind {
    /// `gated` or `plain`, as results.json records it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Gated => "gated",
            Kind::Plain => "plain",
        }
    }
}

/// Where a matrix keeps its units: one per row (`[units, hidden]`) or per column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Axis {
    Rows,
    Cols,
}

/// One matrix matched, and where it keeps its units.
#[derive(Clone, Copy)]
pub(super) struct Side<'a> {
    pub(super) t: &'a TensorInfo,
    pub(super) axis: Axis,
}

/// The two matrices matched in one layer: gate and up, or up and down.
pub(super) struct MlpLayer<'a> {
    pub(super) layer: u32,
    pub(super) kind: Kind,
    pub(super) first: Side<'a>,
    pub(super) second: Side<'a>,
    pub(super) units: u64,
    pub(super) hidden: u64,
}

impl MlpLayer<'_> {
    /// The matrix holding the up projection (the `in_place` statistic's).
    pub(super) fn up_is_first(&self) -> bool {
        self.kind == Kind::Plain
    }
}

/// The residual width: the embedding's columns, else the config's.
fn hidden_width(model: &Model) -> Option<u64> {
    let emb = model
        .tensors()
        .iter()
        .find(|t| t.role.family == Family::Embedding && t.shape.len() == 2)
        .map(|t| t.shape[1]);
    emb.or_else(|| {
        let c = model.config()?;
        ["hidden_size", "n_embd", "d_model"]
            .iter()
            .find_map(|k| c.get(*k).and_then(serde_json::Value::as_u64))
    })
}

/// Which axis of a 2-D matrix holds the units, given the residual width `d` (`default` when
/// both axes are `d` wide or the width is unknown); `None` when neither axis is `d`.
pub(super) fn unit_axis(t: &TensorInfo, d: Option<u64>, default: Axis) -> Option<(Axis, u64, u64)> {
    let [r, c] = t.shape[..] else { return None };
    let axis = match d {
        _ if r == c => default,
        None => default,
        Some(d) if c == d => Axis::Rows,
        Some(d) if r == d => Axis::Cols,
        Some(_) => return None,
    };
    Some(match axis {
        Axis::Rows => (axis, r, c),
        Axis::Cols => (axis, c, r),
    })
}

/// The dense MLP layers of a model, or why it has none usable.
pub(super) fn mlp_layers(model: &Model) -> std::result::Result<Vec<MlpLayer<'_>>, String> {
    let (gates, ups, downs) = (
        layers_of(model, Family::MlpGate),
        layers_of(model, Family::MlpUp),
        layers_of(model, Family::MlpDown),
    );
    if ups.is_empty() {
        return Err("no dense MLP layers (MoE experts are E9's)".into());
    }
    let d = hidden_width(model);
    let mut out = Vec::new();
    let mut problem = None;
    for (&l, &up) in &ups {
        let (kind, first, second) = match (gates.get(&l), downs.get(&l)) {
            (Some(&g), _) => (Kind::Gated, (g, Axis::Rows), (up, Axis::Rows)),
            (None, Some(&down)) => (Kind::Plain, (up, Axis::Rows), (down, Axis::Cols)),
            (None, None) => continue,
        };
        let (Some((a1, n1, h1)), Some((a2, n2, h2))) = (
            unit_axis(first.0, d, first.1),
            unit_axis(second.0, d, second.1),
        ) else {
            problem.get_or_insert(format!(
                "layer {l}: MLP matrices are not 2-D over the hidden width"
            ));
            continue;
        };
        if n1 != n2 || h1 != h2 {
            problem.get_or_insert(if n1 == 2 * n2 {
                format!(
                    "layer {l}: a fused gate_up projection ({n1} rows for {n2} units) is not split"
                )
            } else {
                format!("layer {l}: MLP matrices disagree ({n1}x{h1} vs {n2}x{h2} units x hidden)")
            });
            continue;
        }
        out.push(MlpLayer {
            layer: l,
            kind,
            first: Side {
                t: first.0,
                axis: a1,
            },
            second: Side {
                t: second.0,
                axis: a2,
            },
            units: n1,
            hidden: h1,
        });
    }
    if out.is_empty() {
        return Err(problem.unwrap_or_else(|| "no dense MLP layers with two matrices".into()));
    }
    Ok(out)
}
