//! E3's value-level tiers for one pair, beside its byte identity ([`super::e3_bytes`]):
//! element agreement summed over tensors, identical values under a dtype cast (tier 1 in cast
//! windows, confirmed by a streamed comparison), and the norm-outlier fingerprint. They
//! compare decoded values, never count as byte identity, and share its parameters.

use anyhow::{Context, Result};

use super::e3_blocks::{
    BlockInfo, Coincidence, InfoThresholds, classify_block, match_probability, outlier_coordinates,
};
use super::e3_bytes::ByteIdentity;
use super::e3_casts::{cast_coincidence, stream_values_equal, values_equal_under_cast};
use super::e3_result::{CastMatch, ElementAgreement, Fingerprint, PairBytes, TensorAgreement};
use super::{Data, Sample, Subjects, round9};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl ByteIdentity {
    /// Sums per-tensor agreements and picks out the tensors that agree beyond chance.
    pub(super) fn element_agreement(
        &self,
        tensors: Vec<(String, String, Coincidence)>,
    ) -> ElementAgreement {
        let p = &self.params;
        let mut total = Coincidence::default();
        let mut out = ElementAgreement::default();
        for (tensor_a, tensor_b, c) in tensors {
            if c.elements == 0 {
                continue;
            }
            out.tensors_compared += 1;
            total.add(&c);
            if out.max_tensor.is_empty() || c.z() > out.max_tensor_z {
                out.max_tensor_z = c.z();
                out.max_tensor = tensor_a.clone();
            }
            if c.excess() >= p.agreement_min_excess && c.z() >= p.agreement_min_z {
                out.tensors_agreeing += 1;
                if out.agreeing.len() < p.max_listed {
                    out.agreeing.push(TensorAgreement {
                        tensor_a,
                        tensor_b,
                        elements: c.elements,
                        identical: c.identical,
                        expected: round9(c.expected),
                        excess: round9(c.excess()),
                        z: round9(c.z()),
                    });
                }
            }
        }
        let share = |x: f64| {
            if total.elements == 0 {
                0.0
            } else {
                round9(x / total.elements as f64)
            }
        };
        out.elements_compared = total.elements;
        out.elements_identical = total.identical;
        out.expected_identical = round9(total.expected);
        out.identical_fraction = share(total.identical as f64);
        out.expected_fraction = share(total.expected);
        out.excess_fraction = round9(total.excess());
        out.z = round9(total.z());
        out.max_tensor_z = round9(out.max_tensor_z);
        out
    }

    pub(super) fn casts(
        &self,
        subjects: &Subjects,
        data: &Data,
        (i, j): (usize, usize),
        out: &mut PairBytes,
        agreement: &mut Vec<(String, String, Coincidence)>,
    ) -> Result<()> {
        let p = &self.params;
        let th = InfoThresholds::from(p);
        let (ma, mb) = (subjects.models[i].model, subjects.models[j].model);
        let mut budget = p.tier2_budget_bytes;
        for (ta, tb) in self.cast_pairs(subjects, i, j) {
            let (sa, sb) = (self.cast_sample(ta), self.cast_sample(tb));
            let (va, vb) = (data.get(i, &sa)?, data.get(j, &sb)?);
            let (mut informative, mut identical, mut offset) = (0u64, 0u64, 0usize);
            let mut tensor = Coincidence::default();
            for &(_, len) in &sa.windows {
                let end = offset + len as usize;
                let (wa, wb) = (
                    va.get(offset..end)
                        .context("cast window outside its sample")?,
                    vb.get(offset..end)
                        .context("cast window outside its sample")?,
                );
                offset = end;
                if classify_block(&f32_bytes(wa), 4, &th) != BlockInfo::Informative {
                    continue;
                }
                informative += 1;
                if values_equal_under_cast(wa, ta.dtype, wb, tb.dtype) {
                    identical += 1;
                }
                tensor.add(&cast_coincidence(wa, ta.dtype, wb, tb.dtype));
            }
            agreement.push((ta.name.clone(), tb.name.clone(), tensor));
            if identical == 0 {
                continue;
            }
            let status = if identical < informative {
                "partial"
            } else {
                let cost = ta.bytes() + tb.bytes();
                if cost > budget {
                    "unconfirmed"
                } else {
                    budget -= cost;
                    out.tier2_bytes += cost;
                    let chunk = p.chunk_bytes / 4;
                    if stream_values_equal(ma, ta, mb, tb, chunk)? {
                        "full_values"
                    } else {
                        "differs"
                    }
                }
            };
            if status == "full_values" {
                out.cast_identical_tensors += 1;
            }
            if out.casts.len() < p.max_listed {
                out.casts.push(CastMatch {
                    tensor_a: ta.name.clone(),
                    tensor_b: tb.name.clone(),
                    dtype_a: ta.dtype.to_string(),
                    dtype_b: tb.dtype.to_string(),
                    windows_informative: informative,
                    windows_identical: identical,
                    status: status.into(),
                });
            }
        }
        Ok(())
    }

    pub(super) fn fingerprint(
        &self,
        subjects: &Subjects,
        data: &Data,
        (i, j): (usize, usize),
    ) -> Result<Fingerprint> {
        let mut f = Fingerprint::default();
        let mut ps = Vec::new();
        for (_, ta, tb) in self.norm_pairs(subjects, i, j) {
            let a = data.get(i, &Sample::whole(&ta.name, ta.numel))?;
            let b = data.get(j, &Sample::whole(&tb.name, tb.numel))?;
            let coords = outlier_coordinates(a, self.params.top_k);
            if coords.is_empty() {
                continue;
            }
            f.vectors += 1;
            let mut any = false;
            for c in coords {
                f.coordinates += 1;
                ps.push(match_probability(a[c], b));
                if a[c] == b[c] {
                    f.matches += 1;
                    any = true;
                }
            }
            f.vectors_with_match += u64::from(any);
        }
        f.expected = round9(ps.iter().sum());
        f.p_value = round9(crate::stats::poisson_binomial_tail(&ps, f.matches as usize));
        Ok(f)
    }
}
