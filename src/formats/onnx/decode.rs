//! Stored bytes to Hugging Face's values: element codes to f32, dequantisation as ONNX's
//! `DequantizeLinear` computes it, and the transposition of weights stored `[in, out]`.
//!
//! Pure functions over bytes the caller fetched (a whole tensor, or a window of it), so the
//! model layer reads ONNX tensors by range just as it reads safetensors.
//!
//! Dequantisation follows onnx's reference implementation
//! (`onnx/reference/ops/op_dequantize_linear.py`) under numpy's type promotion:
//! `y = (f32(q) − zp) · scale` in float32 for 8- and 16-bit codes; for int32 codes numpy
//! promotes `float32 − int32` to float64, so the difference and product are taken in f64
//! there; the result is then rounded to the scale's type (f32, or f16/bf16).

use anyhow::{Result, bail};
use half::{bf16, f16};

use super::{DataType, Dequant, OnnxWeight};

/// The stored elements of `dtype` in `bytes` (little-endian) as f32: floats widened (f64
/// rounded to nearest), integers converted (rounded to nearest past 2^24), `BOOL` as 0 or 1.
/// No dequantisation: these are a quantised weight's raw codes.
pub fn codes_f32(dtype: DataType, bytes: &[u8]) -> Result<Vec<f32>> {
    let Some(size) = dtype.size() else {
        bail!("data type {} is not supported", dtype.name());
    };
    let size = size as usize;
    if !bytes.len().is_multiple_of(size) {
        bail!(
            "{} bytes are not a whole number of {} elements",
            bytes.len(),
            dtype.name()
        );
    }
    let chunks = bytes.chunks_exact(size);
    Ok(match dtype {
        DataType::Float => chunks.map(|c| f32::from_le_bytes(arr(c))).collect(),
        DataType::Double => chunks.map(|c| f64::from_le_bytes(arr(c)) as f32).collect(),
        DataType::Float16 => chunks
            .map(|c| f16::from_le_bytes(arr(c)).to_f32())
            .collect(),
        DataType::BFloat16 => chunks
            .map(|c| bf16::from_le_bytes(arr(c)).to_f32())
            .collect(),
        DataType::Bool => chunks.map(|c| f32::from(u8::from(c[0] != 0))).collect(),
        DataType::Int64 => chunks.map(|c| i64::from_le_bytes(arr(c)) as f32).collect(),
        DataType::Uint64 => chunks.map(|c| u64::from_le_bytes(arr(c)) as f32).collect(),
        _ => chunks.map(|c| int_code(dtype, c) as f32).collect(),
    })
}

/// The values of elements `first ..` of `w`'s **stored** tensor (in stored order) held in
/// `bytes`, a window of its stored bytes: codes dequantised when `w` is quantised. Fails on
/// an unreadable weight, an unsupported type, or a window outside the tensor.
pub fn decode_stored(w: &OnnxWeight, first: u64, bytes: &[u8]) -> Result<Vec<f32>> {
    let who = &w.onnx_name;
    if let Some(why) = &w.unreadable {
        bail!("tensor {who:?}: {why}");
    }
    let Some(size) = w.dtype.size() else {
        bail!(
            "tensor {who:?}: data type {} is not supported",
            w.dtype.name()
        );
    };
    let n = bytes.len() as u64 / size;
    if !(bytes.len() as u64).is_multiple_of(size)
        || first.checked_add(n).is_none_or(|e| e > w.numel)
    {
        bail!(
            "tensor {who:?}: {} bytes from element {first} are not a window of its {} {} elements",
            bytes.len(),
            w.numel,
            w.dtype.name()
        );
    }
    let Some(q) = &w.quant else {
        return codes_f32(w.dtype, bytes);
    };
    if !matches!(
        w.dtype,
        DataType::Int8 | DataType::Uint8 | DataType::Int16 | DataType::Uint16 | DataType::Int32
    ) {
        bail!(
            "tensor {who:?}: {} codes cannot be dequantised",
            w.dtype.name()
        );
    }
    let (inner, channels) = channel_layout(w, q)?;
    let size = size as usize;
    let wide = w.dtype == DataType::Int32;
    let mut out = Vec::with_capacity(bytes.len() / size);
    for (k, c) in bytes.chunks_exact(size).enumerate() {
        let ch = match q.axis {
            Some(_) => ((first + k as u64) / inner % channels) as usize,
            None => 0,
        };
        let (Some(&scale), Some(&zp)) = (q.scale.get(ch), q.zero_point.get(ch)) else {
            bail!("tensor {who:?}: no scale for channel {ch}");
        };
        out.push(dequantize(int_code(w.dtype, c), zp, scale, q.output, wide));
    }
    Ok(out)
}

/// `DequantizeLinear` on one code (see the module doc for the arithmetic); `wide` for int32
/// codes, whose arithmetic numpy takes in f64.
pub fn dequantize(q: i64, zp: i32, scale: f32, output: DataType, wide: bool) -> f32 {
    if wide {
        let y = (f64::from(q as f32) - f64::from(zp)) * f64::from(scale);
        match output {
            DataType::Float16 => f16::from_f64(y).to_f32(),
            DataType::BFloat16 => bf16::from_f64(y).to_f32(),
            _ => y as f32,
        }
    } else {
        let y = (q as f32 - zp as f32) * scale;
        match output {
            DataType::Float16 => f16::from_f32(y).to_f32(),
            DataType::BFloat16 => bf16::from_f32(y).to_f32(),
            _ => y,
        }
    }
}

/// `QuantizeLinear` on one value: `saturate(rint(x / scale) + zero_point)` with the division
/// in f32 and ties to even, as onnx's reference implementation and onnxruntime's
/// quantisers (`numpy.round`) compute it; `None` for a type that holds no integer codes.
pub fn quantize(x: f32, scale: f32, zero_point: i32, code: DataType) -> Option<i64> {
    let (lo, hi) = code_range(code)?;
    let q = (x / scale).round_ties_even();
    if q.is_nan() {
        return Some(zero_point.into());
    }
    // saturating float-to-int: ±inf and huge values land on the type's ends
    Some((q as i64).saturating_add(zero_point.into()).clamp(lo, hi))
}

/// The range of an integer code type.
pub fn code_range(code: DataType) -> Option<(i64, i64)> {
    Some(match code {
        DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::Uint8 => (0, u8::MAX.into()),
        DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::Uint16 => (0, u16::MAX.into()),
        DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        _ => return None,
    })
}

/// (elements per step of the axis, length of the axis) of a per-axis dequantisation; (1, 1)
/// per tensor.
fn channel_layout(w: &OnnxWeight, q: &Dequant) -> Result<(u64, u64)> {
    let who = &w.onnx_name;
    if q.zero_point.len() != q.scale.len() || q.scale.is_empty() {
        bail!(
            "tensor {who:?}: {} scales and {} zero points",
            q.scale.len(),
            q.zero_point.len()
        );
    }
    let Some(axis) = q.axis else {
        return Ok((1, 1));
    };
    let Some(&channels) = w.onnx_shape.get(axis) else {
        bail!(
            "tensor {who:?}: quantisation axis {axis} of shape {:?}",
            w.onnx_shape
        );
    };
    if channels != q.scale.len() as u64 {
        bail!(
            "tensor {who:?}: {} scales for axis {axis} of shape {:?}",
            q.scale.len(),
            w.onnx_shape
        );
    }
    // dims after a zero can multiply past 64 bits; no element is decoded then
    let inner = w.onnx_shape[axis + 1..]
        .iter()
        .try_fold(1u64, |p, &d| p.checked_mul(d))
        .unwrap_or(u64::MAX)
        .max(1);
    Ok((inner, channels.max(1)))
}

/// The whole of `w` in Hugging Face's layout from all its stored `bytes`: decoded as
/// [`decode_stored`] does, then transposed when `w.transposed`.
pub fn decode(w: &OnnxWeight, bytes: &[u8]) -> Result<Vec<f32>> {
    let want = w.dtype.stored_len(w.numel);
    if want != Some(bytes.len() as u64) {
        bail!(
            "tensor {:?}: {} bytes, its {} {} elements take {want:?}",
            w.onnx_name,
            bytes.len(),
            w.numel,
            w.dtype.name()
        );
    }
    let values = decode_stored(w, 0, bytes)?;
    if !w.transposed {
        return Ok(values);
    }
    let &[rows, cols] = w.onnx_shape.as_slice() else {
        bail!(
            "tensor {:?}: only 2-D weights are transposed, not {:?}",
            w.onnx_name,
            w.onnx_shape
        );
    };
    let (rows, cols) = (rows as usize, cols as usize);
    let mut out = Vec::with_capacity(values.len());
    for c in 0..cols {
        out.extend((0..rows).map(|r| values[r * cols + c]));
    }
    Ok(out)
}

/// The stored element holding element `i` of Hugging Face's layout (row-major): `i` itself
/// unless `w` is transposed. Lets a caller fetch the stored window behind a Hugging Face one.
pub fn hf_to_stored_index(w: &OnnxWeight, i: u64) -> u64 {
    match (w.transposed, w.onnx_shape.as_slice()) {
        (true, &[rows, cols]) if rows > 0 && cols > 0 => {
            (i % rows).saturating_mul(cols).saturating_add(i / rows)
        }
        _ => i,
    }
}

/// A code of an integer type up to 32 bits (other types give 0; callers check the type).
pub(super) fn int_code(dtype: DataType, c: &[u8]) -> i64 {
    match dtype {
        DataType::Int8 => i64::from(c[0] as i8),
        DataType::Uint8 => i64::from(c[0]),
        DataType::Int16 => i64::from(i16::from_le_bytes(arr(c))),
        DataType::Uint16 => i64::from(u16::from_le_bytes(arr(c))),
        DataType::Int32 => i64::from(i32::from_le_bytes(arr(c))),
        DataType::Uint32 => i64::from(u32::from_le_bytes(arr(c))),
        _ => 0,
    }
}

/// The first `N` bytes of a chunk of exactly the element size.
fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&c[..N]);
    out
}

/// A small tensor's values as f32 scales: `FLOAT`, `FLOAT16` or `BFLOAT16` (exact).
pub(super) fn scales(dtype: DataType, bytes: &[u8]) -> Result<Vec<f32>, String> {
    match dtype {
        DataType::Float | DataType::Float16 | DataType::BFloat16 => {
            codes_f32(dtype, bytes).map_err(|e| e.to_string())
        }
        other => Err(format!("a scale of type {}", other.name())),
    }
}

/// A small tensor's values as i32 zero points (integer types up to 32 bits).
pub(super) fn zero_points(dtype: DataType, bytes: &[u8]) -> Result<Vec<i32>, String> {
    match dtype {
        DataType::Int8 | DataType::Uint8 | DataType::Int16 | DataType::Uint16 | DataType::Int32 => {
            let size = dtype.size().unwrap_or(1) as usize;
            if !bytes.len().is_multiple_of(size) {
                return Err("zero point bytes of a partial element".into());
            }
            Ok(bytes
                .chunks_exact(size)
                .map(|c| int_code(dtype, c) as i32)
                .collect())
        }
        other => Err(format!("a zero point of type {}", other.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::onnx::{Location, Naming, QuantScheme};

    #[test]
    fn quantize_rounds_ties_to_even_and_saturates_by_hand() {
        let q = |x: f32, zp: i32, t: DataType| quantize(x, 0.5, zp, t);
        // x / 0.5: 0.5 → 0, 1.5 → 2, 2.5 → 2, −0.5 → −0 → 0
        assert_eq!(q(0.25, 0, DataType::Int8), Some(0));
        assert_eq!(q(0.75, 0, DataType::Int8), Some(2));
        assert_eq!(q(1.25, 0, DataType::Int8), Some(2));
        assert_eq!(q(-0.25, 0, DataType::Int8), Some(0));
        assert_eq!(q(-0.75, 0, DataType::Int8), Some(-2));
        // saturation at the type's ends, the zero point added after rounding
        assert_eq!(q(100.0, 0, DataType::Int8), Some(127));
        assert_eq!(q(-100.0, 0, DataType::Int8), Some(-128));
        assert_eq!(q(0.25, 128, DataType::Uint8), Some(128));
        assert_eq!(q(0.75, 128, DataType::Uint8), Some(130));
        assert_eq!(q(-100.0, 128, DataType::Uint8), Some(0));
        assert_eq!(q(f32::INFINITY, 0, DataType::Int8), Some(127));
        assert_eq!(q(f32::NAN, 3, DataType::Int8), Some(3));
        assert_eq!(q(1.0, 0, DataType::Float), None);
        // every code dequantises and quantises back to itself
        for code in -128i64..=127 {
            let y = dequantize(code, 0, 0.0137, DataType::Float, false);
            assert_eq!(quantize(y, 0.0137, 0, DataType::Int8), Some(code));
        }
    }

    fn weight(
        dtype: DataType,
        shape: &[u64],
        transposed: bool,
        quant: Option<Dequant>,
    ) -> OnnxWeight {
        OnnxWeight {
            name: "w".into(),
            onnx_name: "w".into(),
            shape: shape.to_vec(),
            onnx_shape: shape.to_vec(),
            numel: shape.iter().product(),
            dtype,
            location: Location::Memory(Default::default()),
            transposed,
            quant,
            naming: Naming::Kept,
            unreadable: None,
        }
    }

    fn dq(scale: Vec<f32>, zp: Vec<i32>, axis: Option<usize>) -> Dequant {
        Dequant {
            scale,
            zero_point: zp,
            axis,
            output: DataType::Float,
            scheme: QuantScheme::StaticQdq,
        }
    }

    #[test]
    fn codes_of_every_type() {
        let f = codes_f32(DataType::Float16, &[0x00, 0x3c, 0x00, 0xc0]).unwrap();
        assert_eq!(f, vec![1.0, -2.0]);
        let b = codes_f32(DataType::BFloat16, &[0x80, 0x3f]).unwrap();
        assert_eq!(b, vec![1.0]);
        let d = codes_f32(DataType::Double, &0.1f64.to_le_bytes()).unwrap();
        assert_eq!(d, vec![0.1f32]);
        assert_eq!(
            codes_f32(DataType::Int8, &[0xff, 5]).unwrap(),
            vec![-1.0, 5.0]
        );
        assert_eq!(codes_f32(DataType::Uint8, &[0xff]).unwrap(), vec![255.0]);
        assert_eq!(codes_f32(DataType::Bool, &[0, 2]).unwrap(), vec![0.0, 1.0]);
        let big = codes_f32(DataType::Int64, &((1i64 << 40) + 1).to_le_bytes()).unwrap();
        assert_eq!(big, vec![(1u64 << 40) as f32]);
        assert!(codes_f32(DataType::Float, &[0; 3]).is_err());
        let e = codes_f32(DataType::from_code(17), &[0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("FLOAT8E4M3FN"), "{e}");
    }

    #[test]
    fn per_axis_dequantisation_and_transposition() {
        // stored [in 2, out 3], per output column (axis 1)
        let q = dq(vec![0.5, 1.0, 2.0], vec![1, 0, -1], Some(1));
        let w = weight(DataType::Int8, &[2, 3], true, Some(q));
        let codes = [3u8, 3, 3, 0xff, 0xff, 0xff]; // [[3,3,3],[-1,-1,-1]]
        let stored = decode_stored(&w, 0, &codes).unwrap();
        assert_eq!(stored, vec![1.0, 3.0, 8.0, -1.0, -1.0, 0.0]);
        // a window starting mid-row keeps its channels
        assert_eq!(decode_stored(&w, 4, &codes[4..]).unwrap(), vec![-1.0, 0.0]);
        let hf = decode(&w, &codes).unwrap();
        assert_eq!(hf, vec![1.0, -1.0, 3.0, -1.0, 8.0, 0.0]);
        for i in 0..6 {
            assert_eq!(hf[i as usize], stored[hf_to_stored_index(&w, i) as usize]);
        }
        // per tensor, uint8 around 128
        let w = weight(
            DataType::Uint8,
            &[2],
            false,
            Some(dq(vec![0.25], vec![128], None)),
        );
        assert_eq!(decode(&w, &[130, 0]).unwrap(), vec![0.5, -32.0]);
        // an f16 scale rounds the result to f16
        let mut q = dq(vec![0.1], vec![0], None);
        q.output = DataType::Float16;
        let w = weight(DataType::Int8, &[1], false, Some(q));
        assert_eq!(
            decode(&w, &[3]).unwrap(),
            vec![f16::from_f32(0.3f32 + 0.0).to_f32()]
        );
    }

    #[test]
    fn bad_windows_and_weights_are_refused() {
        let w = weight(DataType::Float, &[2], false, None);
        assert!(decode_stored(&w, 1, &[0; 8]).is_err());
        assert!(decode_stored(&w, u64::MAX, &[0; 4]).is_err());
        assert!(decode(&w, &[0; 4]).is_err());
        let mut u = w.clone();
        u.unreadable = Some("a reason".into());
        assert!(
            decode(&u, &[0; 8])
                .unwrap_err()
                .to_string()
                .contains("a reason")
        );
        let q = dq(vec![1.0, 2.0], vec![0], Some(0));
        let w = weight(DataType::Int8, &[2], false, Some(q));
        assert!(decode(&w, &[0; 2]).is_err());
        let q = dq(vec![1.0, 2.0, 3.0], vec![0; 3], Some(0));
        let w = weight(DataType::Int8, &[2], false, Some(q));
        assert!(decode(&w, &[0; 2]).is_err());
        let w = weight(DataType::Float, &[2, 2, 1], true, None);
        assert!(decode(&w, &[0; 16]).is_err());
        // no elements, yet dims whose tail overflows: nothing to decode, no overflow
        let mut w = weight(DataType::Int8, &[0, 2], false, None);
        w.onnx_shape = vec![0, 1 << 40, 1 << 40];
        w.quant = Some(dq(vec![1.0], vec![0], Some(0)));
        w.quant.as_mut().unwrap().scale = vec![];
        assert!(decode_stored(&w, 0, &[]).is_err());
        w.onnx_shape = vec![1, 0, 1 << 40, 1 << 40];
        w.quant = Some(dq(vec![1.0], vec![0], Some(0)));
        assert_eq!(decode_stored(&w, 0, &[]).unwrap(), Vec::<f32>::new());
        assert_eq!(hf_to_stored_index(&w, u64::MAX), u64::MAX);
    }

    #[test]
    fn int32_codes_use_numpys_promotion() {
        // numpy: float32(q) - int32 zp is float64, times the f32 scale in f64, then f32
        let (q, zp, s) = (16_777_217i64, 3, 0.1f32);
        let want = ((f64::from(q as f32) - 3.0) * f64::from(s)) as f32;
        assert_eq!(dequantize(q, zp, s, DataType::Float, true), want);
        assert_eq!(
            scales(DataType::Int8, &[0]).unwrap_err(),
            "a scale of type INT8"
        );
        assert_eq!(zero_points(DataType::Uint8, &[200]).unwrap(), vec![200]);
        assert!(zero_points(DataType::Float, &[0; 4]).is_err());
    }
}
