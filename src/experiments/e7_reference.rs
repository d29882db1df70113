//! Where E7's null comes from: curves of independent models of the audited depth. E7 takes a
//! [`ModelCurves`] as an input and never makes models; [`LabCurves`] is the source the registry
//! gives it: lab Llama models of one recipe and fresh seeds (width 128), whose curves show what
//! unrelated models reach on this statistic (the published trap, measured rather than quoted).

use std::collections::BTreeMap;

use anyhow::Result;

use crate::arch::{ArchHints, Family, classify};
use crate::metrics::Moments;

/// Per (family, statistic): one value per layer, in layer order.
pub type CurveSet = BTreeMap<(Family, String), Vec<f64>>;

/// A source of per-layer curves (std, mean, kurtosis per family) of independent models.
pub trait ModelCurves: Send + Sync {
    /// The curves of one model of `depth` layers made from `seed`; different seeds give
    /// independent models.
    fn curves(&self, depth: usize, seed: u64) -> Result<CurveSet>;
}

/// Independent lab models: Llama layout, width 128, one recipe, the seed picks the weights.
pub struct LabCurves;

impl ModelCurves for LabCurves {
    fn curves(&self, depth: usize, seed: u64) -> Result<CurveSet> {
        use weight_audit_lab::{ArchConfig, ArchKind, Recipe};
        let mut cfg = ArchConfig::scaled(ArchKind::Llama, 128);
        cfg.layers = depth;
        let model = weight_audit_lab::weights::generate(&Recipe::new(cfg, seed))?;
        let hints = ArchHints {
            num_hidden_layers: Some(depth as u32),
            ..Default::default()
        };
        let mut per: BTreeMap<(Family, u32), Moments> = BTreeMap::new();
        for (name, t) in &model.tensors {
            let role = classify(name, &hints);
            if let (Some(l), weight_audit_lab::model::Data::F32(v)) = (role.layer, &t.data) {
                per.insert((role.family, l), Moments::of(v));
            }
        }
        let mut curves = CurveSet::new();
        for ((f, _), m) in per {
            for (stat, v) in [
                ("std", m.std()),
                ("mean", m.mean()),
                ("kurtosis", m.kurtosis()),
            ] {
                curves.entry((f, stat.to_string())).or_default().push(v);
            }
        }
        Ok(curves)
    }
}
