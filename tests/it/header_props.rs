//! The header parser against random and mutated input, with the `safetensors` crate as an
//! independent oracle: nothing panics, and whatever the crate accepts we accept identically.

use proptest::prelude::*;
use weight_audit::header::{DEFAULT_MAX_HEADER_BYTES, read_header};

use crate::util::*;

fn parse(file: &[u8]) -> anyhow::Result<weight_audit::header::Header> {
    read_header(file.len() as u64, DEFAULT_MAX_HEADER_BYTES, |off, len| {
        let end = (off + len).min(file.len() as u64);
        Ok(file
            .get(off as usize..end as usize)
            .unwrap_or_default()
            .to_vec())
    })
}

fn sample_file() -> Vec<u8> {
    safetensors_bytes(&[
        bf16("a.weight", &[4, 3]),
        f32s("b.bias", &[1.0, 2.0]),
        T {
            name: "c".into(),
            dtype: "I64",
            shape: vec![2],
            data: vec![0; 16],
        },
        T {
            name: "d".into(),
            dtype: "F8_E4M3",
            shape: vec![5],
            data: vec![0x38; 5],
        },
    ])
}

fn agrees_with_oracle(file: &[u8]) {
    let ours = parse(file);
    if let Ok(theirs) = safetensors::SafeTensors::deserialize(file) {
        let ours = ours.expect("the reference implementation accepted a file we reject");
        let mut names = theirs.names();
        names.sort();
        let our_names: Vec<&String> = ours.tensors.iter().map(|t| &t.name).collect();
        assert_eq!(names, our_names);
        for t in &ours.tensors {
            let view = theirs.tensor(&t.name).unwrap();
            let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
            assert_eq!(shape, t.shape);
            let start = (ours.data_start() + t.begin) as usize;
            assert_eq!(
                view.data(),
                &file[start..start + (t.end - t.begin) as usize]
            );
        }
    }
}

#[test]
fn valid_files_agree_with_the_reference_implementation() {
    agrees_with_oracle(&sample_file());
    assert_eq!(parse(&sample_file()).unwrap().tensors.len(), 4);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn random_length_prefix_never_panics(len in any::<u64>(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut f = len.to_le_bytes().to_vec();
        f.extend(tail);
        let _ = parse(&f);
    }

    #[test]
    fn mutated_files_never_panic_and_agree_with_oracle(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut f = sample_file();
        for (at, byte) in edits {
            let i = at.index(f.len());
            f[i] = byte;
        }
        if truncate {
            f.truncate(cut.index(f.len()));
        }
        agrees_with_oracle(&f);
    }
}
