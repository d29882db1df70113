//! One audit's results read back from results.json into each experiment's own type: what
//! eval's scores, the demo's findings and the verdict's pair kind read, so a field renamed in
//! an experiment fails to compile there rather than reading as absent.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::e0_config::Result0;
use super::e0c_code::Result0c;
use super::e1_layerwise::Result1;
use super::e1b_embeddings::Result1b;
use super::e2_baselines::Result2;
use super::e3_result::Result3;
use super::e3q_requant::ResultQ;
use super::e4_alignment::Result4;
use super::e5_projections::Result5;
use super::e6_spectra::Result6;
use super::e7_std_curves::Result7;
use super::e8_cka::Result8;
use super::e9_experts::Result9;
use super::e10_mlp_matching::Result10;
use super::readback;

/// Every experiment's typed result of one audit (`None`: the experiment did not run).
#[derive(Clone, Debug, Default)]
pub struct TypedResults {
    /// E0, configs and tokenizers.
    pub e0: Option<Result0>,
    /// E0c, shipped code.
    pub e0c: Option<Result0c>,
    /// E1, tensors compared layer by layer.
    pub e1: Option<Result1>,
    /// E1b, embeddings by token text.
    pub e1b: Option<Result1b>,
    /// E2, same-layer values beside their baselines.
    pub e2: Option<Result2>,
    /// E3, byte identity.
    pub e3: Option<Result3>,
    /// E3q, re-quantisation identity.
    pub e3q: Option<ResultQ>,
    /// E4, layer alignment.
    pub e4: Option<Result4>,
    /// E5, attention projections.
    pub e5: Option<Result5>,
    /// E6, rotation-invariant spectra.
    pub e6: Option<Result6>,
    /// E7, std curves.
    pub e7: Option<Result7>,
    /// E8, CKA after alignment.
    pub e8: Option<Result8>,
    /// E9, experts and routers.
    pub e9: Option<Result9>,
    /// E10, MLP unit matching.
    pub e10: Option<Result10>,
}

impl TypedResults {
    /// Reads every experiment of `experiments` (results.json's `experiments`, by id) into its
    /// own type. A result that does not parse is an error naming its experiment; an id the
    /// registry does not know is one too.
    pub fn read(experiments: &BTreeMap<String, Value>) -> Result<TypedResults> {
        let mut t = TypedResults::default();
        for (id, v) in experiments {
            match id.as_str() {
                "e0" => t.e0 = Some(read(id, v)?),
                "e0c" => t.e0c = Some(read(id, v)?),
                "e1" => t.e1 = Some(read(id, v)?),
                "e1b" => t.e1b = Some(read(id, v)?),
                "e2" => t.e2 = Some(read(id, v)?),
                "e3" => t.e3 = Some(read(id, v)?),
                "e3q" => t.e3q = Some(read(id, v)?),
                "e4" => t.e4 = Some(read(id, v)?),
                "e5" => t.e5 = Some(read(id, v)?),
                "e6" => t.e6 = Some(read(id, v)?),
                "e7" => t.e7 = Some(read(id, v)?),
                "e8" => t.e8 = Some(read(id, v)?),
                "e9" => t.e9 = Some(read(id, v)?),
                "e10" => t.e10 = Some(read(id, v)?),
                other => {
                    super::registry::entry(other)?;
                }
            }
        }
        Ok(t)
    }
}

fn read<T: DeserializeOwned>(id: &str, v: &Value) -> Result<T> {
    readback::from_value(v).with_context(|| format!("the result of {id} does not parse"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_experiment_is_read_into_its_own_type() {
        // `{}` parses as no experiment's result: an id read into its type fails, an id
        // skipped would pass silently.
        for id in super::super::registry::ids(|_| true) {
            let one = BTreeMap::from([(id.to_string(), serde_json::json!({}))]);
            let e = TypedResults::read(&one).unwrap_err();
            assert!(format!("{e:#}").contains(id), "{id}: {e:#}");
        }
        let unknown = BTreeMap::from([("e99".to_string(), serde_json::json!({}))]);
        assert!(TypedResults::read(&unknown).is_err());
        assert!(TypedResults::read(&BTreeMap::new()).unwrap().e1.is_none());
    }
}
