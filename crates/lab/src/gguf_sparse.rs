//! A full-size dense model (Llama-3-8B's shapes, its 128k vocabulary) as one **sparse** GGUF
//! file: the header is complete and true, the file has its real logical size (`File::set_len`),
//! and only the first rows of each weight hold data; every other byte is a hole that reads as
//! zeros (a zero block of every type decodes to zeros). Multi-GB on paper, a few MB on disk:
//! what shows that auditing a GGUF by range reads a sliver of it, locally and over the
//! loopback Hub.
//!
//! The rows written are generated as the lab generates any model of that recipe and
//! quantised as [`crate::gguf::write_gguf`] would; they are stored rows, written before
//! llama.cpp's Q/K interleave (which the holes make moot), so the file says nothing about
//! lineage beyond "same seed, same rows". Dense models only: stacked experts would need the
//! whole stack in memory.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::arch::{ArchConfig, ArchKind};
use crate::gguf::{
    GgufQuant, Target, arch_name, encode_header, layout, metadata, quantise, target,
};
use crate::model::{Model, round_values};
use crate::recipe::Recipe;
use crate::weights::{ModelStats, generate_rows};

/// What [`write_sparse_gguf`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseGguf {
    /// Tensors listed in the header.
    pub tensors: usize,
    /// The file's size.
    pub logical_bytes: u64,
    /// Bytes written: the header and the filled rows (the rest are holes).
    pub data_bytes: u64,
}

/// Writes the full-size `kind` model of `seed` (its real shapes, [`ArchConfig::real`]) to
/// `path` as one sparse GGUF of `quant`: the first `filled_rows` rows of every 2-D weight and
/// every vector hold data.
pub fn write_sparse_gguf(
    kind: ArchKind,
    seed: u64,
    quant: GgufQuant,
    filled_rows: usize,
    path: &Path,
) -> Result<SparseGguf> {
    let recipe = Recipe::new(ArchConfig::real(kind), seed);
    let arch = &recipe.arch;
    let model_type = arch.kind.model_type();
    let gguf_arch = arch_name(model_type)?;
    let bert = gguf_arch == "bert";

    let mut specs = Vec::new();
    for spec in arch.tensors() {
        match target(&spec.name, bert) {
            None => {}
            Some(Target::Expert { .. }) => {
                bail!("the sparse GGUF writer handles dense models, not {model_type}'s experts")
            }
            Some(Target::Plain(g)) => specs.push((g, spec)),
        }
    }
    specs.sort_by(|a, b| crate::model::natural_cmp(&a.0, &b.0));
    let shapes: Vec<(String, Vec<usize>)> = specs
        .iter()
        .map(|(g, s)| (g.clone(), s.shape.iter().rev().copied().collect()))
        .collect();
    let tok = crate::tokenizer::generate(arch.kind, arch.vocab, recipe.tokenizer_seed)?;
    let stats = ModelStats::new(&recipe, tok.rank.clone());
    // metadata reads only the config and the vocabulary
    let shell = Model {
        config: arch.config_json(&tok.specials),
        tokenizer: Some(tok.json),
        ..Default::default()
    };
    let (infos, data_len) = layout(&shapes, quant);
    let header = encode_header(&metadata(&shell, gguf_arch)?, &infos);

    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let who = path.display();
    let mut f = File::create(path).with_context(|| format!("creating {who}"))?;
    let logical = header.len() as u64 + data_len;
    f.set_len(logical)
        .with_context(|| format!("{who}: setting its size"))?;
    f.write_all(&header)
        .with_context(|| format!("writing {who}"))?;
    let mut written = header.len() as u64;
    for ((name, spec), (_, _, ty, offset)) in specs.iter().zip(&infos) {
        let rows = if spec.shape.len() == 1 {
            1
        } else {
            spec.shape[0].min(filled_rows)
        };
        let mut values = generate_rows(&recipe, &stats, spec, 0..rows);
        round_values(spec.dtype, &mut values);
        let bytes = quantise(*ty, &values).with_context(|| format!("quantising {name}"))?;
        f.seek(SeekFrom::Start(header.len() as u64 + offset))
            .and_then(|_| f.write_all(&bytes))
            .with_context(|| format!("{who}: writing {name}"))?;
        written += bytes.len() as u64;
    }
    Ok(SparseGguf {
        tensors: specs.len(),
        logical_bytes: logical,
        data_bytes: written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header is the same as the dense writer's for the same shapes, the file has the
    /// size its header implies, and the filled rows are where the header says.
    #[test]
    fn a_sparse_llama_has_its_full_logical_size() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("m.gguf");
        let out = write_sparse_gguf(ArchKind::Llama, 3, GgufQuant::Q8_0, 2, &path).unwrap();
        // Llama-3-8B: 32 layers × 9 tensors + embeddings, final norm, lm_head
        assert_eq!(out.tensors, 32 * 9 + 3);
        let size = fs::metadata(&path).unwrap().len();
        assert_eq!(size, out.logical_bytes);
        // ~8.0e9 parameters at 34 bytes per 32
        assert!(size > 8_000_000_000 && size < 9_000_000_000, "{size}");
        assert!(out.data_bytes < 20_000_000, "{out:?}");
        let bytes = {
            use std::io::Read;
            let mut head = vec![0u8; 8];
            File::open(&path).unwrap().read_exact(&mut head).unwrap();
            head
        };
        assert_eq!(&bytes[..4], b"GGUF");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
    }

    #[test]
    fn experts_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let e = write_sparse_gguf(
            ArchKind::Glm4Moe,
            1,
            GgufQuant::Q8_0,
            1,
            &d.path().join("m.gguf"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("experts"), "{e:#}");
    }
}
