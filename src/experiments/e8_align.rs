//! Which hidden alignment E8 compares under: AWM's signed permutation, an orthogonal
//! Procrustes map, or (equally wide models) the identity, each fitted on the even half of the
//! shared tokens and judged on the odd half; a fitted map must beat a simpler one by a margin,
//! since it also fits noise. Also the projections re-expressed in the chosen basis.

use anyhow::Result;

use super::e8_params::Params;
use crate::awm::QkLayer;
use crate::cka::{self, MatRef};
use crate::hidden_alignment::{self, Side};
use crate::procrustes::{self, Procrustes};

/// One projection, owned: a layer's matrix folded and re-expressed in the target's basis.
pub(super) struct Owned {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
}

/// The layers with gains folded and columns mapped by a Procrustes fit (`W·diag(g)·R`). Only
/// taken at widths up to `procrustes_max_width`, so the copies stay small.
pub(super) fn mapped(layers: &[QkLayer], map: &Procrustes) -> Result<Vec<Owned>> {
    let mut out = Vec::with_capacity(layers.len() * 2);
    for l in layers {
        for w in [l.q, l.k] {
            let folded = match l.gain {
                Some(g) => std::borrow::Cow::Owned(cka::fold_columns(w.data, w.cols, g)),
                None => std::borrow::Cow::Borrowed(w.data),
            };
            out.push(Owned {
                data: map.apply(MatRef::new(&folded, w.rows, w.cols)?)?,
                rows: w.rows,
                cols: map.d_target,
            });
        }
    }
    Ok(out)
}

pub(super) fn views(owned: &[Owned]) -> Result<Vec<QkLayer<'_>>> {
    owned
        .chunks_exact(2)
        .map(|qk| {
            Ok(QkLayer {
                q: MatRef::new(&qk[0].data, qk[0].rows, qk[0].cols)?,
                k: MatRef::new(&qk[1].data, qk[1].rows, qk[1].cols)?,
                gain: None,
            })
        })
        .collect()
}

/// The alignment behind `score*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chosen {
    Identity,
    Lap,
    Procrustes,
}

impl Chosen {
    pub(super) fn name(self) -> &'static str {
        match self {
            Chosen::Identity => "identity",
            Chosen::Lap => "embedding_lap",
            Chosen::Procrustes => "embedding_procrustes",
        }
    }
}

/// The candidate alignments fitted on the even-ranked tokens and judged on the odd ones.
pub(super) struct Choice {
    /// No re-alignment (equal widths only): nothing is fitted.
    pub(super) fit_identity: Option<f64>,
    pub(super) fit_lap: f64,
    /// When Procrustes is on and the width allows it.
    pub(super) fit_procrustes: Option<f64>,
    pub(super) chosen: Chosen,
    /// Refitted on every token, when it decided.
    pub(super) procrustes: Option<Procrustes>,
}

/// Whether `fit` beats `other` by more than `margin` (or is the only finite one).
pub(super) fn beats(fit: f64, other: f64, margin: f64) -> bool {
    fit > other + margin || (fit.is_finite() && other.is_nan())
}

/// The identity (equal widths), the LAP and the Procrustes map judged on held-out tokens. A
/// fitted map must beat the simpler candidate by a margin, since it also fits noise: the LAP
/// the identity by `identity_margin`, Procrustes the better of those by `procrustes_margin`.
/// When the vocabulary is shared but the embeddings were retrained, every fit is near 0 and
/// the identity stays: the LAP's permutation would then be random.
pub(super) fn choose_alignment(ea: MatRef, eb: MatRef, p: &Params) -> Result<Option<Choice>> {
    let n = ea.rows;
    if n < 16 {
        return Ok(None);
    }
    let pick = |m: MatRef, rows: &[usize]| -> Vec<f32> {
        rows.iter()
            .flat_map(|&r| m.data[r * m.cols..(r + 1) * m.cols].iter().copied())
            .collect()
    };
    let fit: Vec<usize> = (0..n).step_by(2).collect();
    let eval: Vec<usize> = (1..n).step_by(2).collect();
    let (fa, fb) = (pick(ea, &fit), pick(eb, &fit));
    let (va, vb) = (pick(ea, &eval), pick(eb, &eval));
    let (fa, fb) = (
        MatRef::new(&fa, fit.len(), ea.cols)?,
        MatRef::new(&fb, fit.len(), eb.cols)?,
    );
    let (va, vb) = (
        MatRef::new(&va, eval.len(), ea.cols)?,
        MatRef::new(&vb, eval.len(), eb.cols)?,
    );
    // the base side (the wider model) is mapped onto the target's basis
    let held_out = |base: Side, mapped: Vec<f32>, d: usize| -> Result<f64> {
        let mapped = MatRef::new(&mapped, eval.len(), d)?;
        procrustes::mean_row_cosine(mapped, if base == Side::A { vb } else { va })
    };
    let fit_identity = if ea.cols == eb.cols {
        Some(procrustes::mean_row_cosine(va, vb)?)
    } else {
        None
    };
    let lap = hidden_alignment::align_hidden(fa, fb, p.lap_cap)?;
    let base_rows = |s: Side| if s == Side::A { va } else { vb };
    let fit_lap = held_out(lap.base, lap.apply(base_rows(lap.base))?, lap.d_target)?;
    let fit_procrustes = if p.procrustes && ea.cols.max(eb.cols) <= p.procrustes_max_width {
        let pro = procrustes::align_hidden_procrustes(fa, fb)?;
        Some(held_out(
            pro.base,
            pro.apply(base_rows(pro.base))?,
            pro.d_target,
        )?)
    } else {
        None
    };
    let (mut chosen, best) = match fit_identity {
        Some(fi) if !beats(fit_lap, fi, p.identity_margin) => (Chosen::Identity, fi),
        _ => (Chosen::Lap, fit_lap),
    };
    if fit_procrustes.is_some_and(|fp| beats(fp, best, p.procrustes_margin)) {
        chosen = Chosen::Procrustes;
    }
    Ok(Some(Choice {
        fit_identity,
        fit_lap,
        fit_procrustes,
        chosen,
        procrustes: if chosen == Chosen::Procrustes {
            Some(procrustes::align_hidden_procrustes(ea, eb)?)
        } else {
            None
        },
    }))
}
