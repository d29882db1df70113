//! E3's comparisons that decode: identical values under a dtype cast (an F32 model re-saved as
//! BF16 holds A's values though not A's bytes), element agreement across float dtypes, and the
//! streamed confirmations of tier 2 (whole-tensor hashes and decoded equality, read in chunks).

use anyhow::Result;

use super::e3_blocks::{Coincidence, coincidence};
use crate::dtype::Dtype;
use crate::model::{ElementRequest, Model, TensorInfo};

/// blake3 of a whole tensor, streamed in chunks of whole groups of 8 elements.
pub fn stream_hash(model: &Model, t: &TensorInfo, chunk_bytes: u64) -> Result<[u8; 32]> {
    let bits = u64::from(t.dtype.bits()).max(1);
    let chunk = ((chunk_bytes * 8 / bits) / 8 * 8).max(8);
    let mut h = blake3::Hasher::new();
    let mut start = 0;
    while start < t.numel {
        let count = chunk.min(t.numel - start);
        let req = ElementRequest {
            tensor: t.name.clone(),
            start,
            count,
        };
        for b in model.read_raw(&[req])? {
            h.update(&b);
        }
        start += count;
    }
    Ok(*h.finalize().as_bytes())
}

/// Whether two tensors hold equal values after decoding, streamed in chunks.
pub fn stream_values_equal(
    a: &Model,
    ta: &TensorInfo,
    b: &Model,
    tb: &TensorInfo,
    chunk_elems: u64,
) -> Result<bool> {
    let chunk = (chunk_elems / 8 * 8).max(8);
    let mut start = 0;
    while start < ta.numel {
        let count = chunk.min(ta.numel - start);
        let va = a.read_f32(&ta.name, start, count)?;
        let vb = b.read_f32(&tb.name, start, count)?;
        if !values_equal_under_cast(&va, ta.dtype, &vb, tb.dtype) {
            return Ok(false);
        }
        start += count;
    }
    Ok(true)
}

/// A value as it reads back after a cast to `dtype` (round to nearest even, as PyTorch's
/// `.to()` and safetensors converters do); dtypes at least as wide as f32 keep it.
fn through(dtype: Dtype, x: f32) -> f32 {
    match dtype {
        Dtype::Bf16 => half::bf16::from_f32(x).to_f32(),
        Dtype::F16 => half::f16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// Whether two tensors of different float dtypes hold the same values up to one cast: the
/// wider side, cast to the narrower dtype, gives the narrower side exactly (an F32 model
/// re-saved as BF16 matches; a fine-tune saved as BF16 does not).
pub fn values_equal_under_cast(a: &[f32], da: Dtype, b: &[f32], db: Dtype) -> bool {
    let same = |x: &[f32], y: &[f32], d: Dtype| {
        x.iter()
            .zip(y)
            .all(|(p, q)| through(d, *p).to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
    };
    a.len() == b.len() && (same(a, b, db) || same(b, a, da))
}

/// Element agreement of two windows stored in different float dtypes: both sides as they read
/// back after a cast to the narrower dtype (an F32 fine-tune of a BF16 model keeps A's value
/// wherever its update stayed under half a BF16 step, as a BF16 fine-tune would).
pub fn cast_coincidence(a: &[f32], da: Dtype, b: &[f32], db: Dtype) -> Coincidence {
    let narrow = if da.bits() <= db.bits() { da } else { db };
    let keys = |v: &[f32]| -> Vec<u64> {
        v.iter()
            .map(|&x| u64::from(through(narrow, x).to_bits()))
            .collect()
    };
    coincidence(&keys(a), &keys(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_downcast_matches_its_source_and_a_fine_tune_does_not() {
        let f32s = [0.1f32, -1.2345678, 3.0e-5, 65504.0, -0.0];
        let bf16s: Vec<f32> = f32s
            .iter()
            .map(|x| half::bf16::from_f32(*x).to_f32())
            .collect();
        assert!(values_equal_under_cast(
            &f32s,
            Dtype::F32,
            &bf16s,
            Dtype::Bf16
        ));
        assert!(values_equal_under_cast(
            &bf16s,
            Dtype::Bf16,
            &f32s,
            Dtype::F32
        ));
        // One value nudged by one BF16 step: not the same tensor.
        let mut tuned = bf16s.clone();
        tuned[1] = half::bf16::from_bits(half::bf16::from_f32(tuned[1]).to_bits() + 1).to_f32();
        assert!(!values_equal_under_cast(
            &f32s,
            Dtype::F32,
            &tuned,
            Dtype::Bf16
        ));
        // An upcast (BF16 → F32) is exact both ways.
        assert!(values_equal_under_cast(
            &bf16s,
            Dtype::Bf16,
            &bf16s,
            Dtype::F32
        ));
        assert!(!values_equal_under_cast(
            &f32s[..2],
            Dtype::F32,
            &bf16s,
            Dtype::Bf16
        ));
    }

    #[test]
    fn cast_agreement_reads_both_sides_in_the_narrower_dtype() {
        let bf16: Vec<f32> = (0..512)
            .map(|i| half::bf16::from_f32(((i * 37 % 101) as f32 - 50.0) * 1e-3).to_f32())
            .collect();
        // Re-saved as F32: every value reads back identical.
        let c = cast_coincidence(&bf16, Dtype::Bf16, &bf16, Dtype::F32);
        assert_eq!(c.identical, 512);
        // An F32 fine-tune whose updates stay under half a BF16 step keeps every BF16 value…
        let small: Vec<f32> = bf16.iter().map(|x| x + x.abs() * 1e-3).collect();
        assert_eq!(
            cast_coincidence(&small, Dtype::F32, &bf16, Dtype::Bf16).identical,
            512
        );
        // …one with large updates keeps none beyond chance.
        let large: Vec<f32> = bf16.iter().map(|x| x * 1.5 + 1e-4).collect();
        let c = cast_coincidence(&bf16, Dtype::Bf16, &large, Dtype::F32);
        assert!(c.excess() < 0.01, "{c:?}");
    }
}
