//! The Solar/GLM replica preset: GLM-4.5-Air and Solar-Open-100B, and Phi-3.5-MoE as the
//! dispute's unrelated reference, with their real tensor names, layer counts, shard layout (47,
//! 42 and 17 shards) and — with `full_size` — their real shapes.
//!
//! Scaled down (default) the two models are ordinary lab models (hidden 256, real depth).
//! Full-size output must be sparse: files get their real logical size with `File::set_len`, and only
//! the tensors listed in [`SPARSE_DATA`] hold data; every other byte is a hole that reads as zeros.
//! The three replicas are independent by construction (different seeds, different tokenizers).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::Serialize;

use super::arch::{ArchConfig, ArchKind, TensorSpec, name_parts};
use super::dtype::DType;
use super::model::{encode, json_bytes, safetensors_header, shard_name, write_model};
use super::recipe::Recipe;
use super::weights::{ModelStats, generate, generate_rows};

/// Which part of a tensor holds data in a sparse replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Fill {
    /// Every element.
    Full,
    /// The first `n` rows.
    FirstRows(usize),
    /// Rows `0, n, 2n, …`.
    EveryNthRow(usize),
}

/// The data-holding tensors of a sparse replica: the first pattern contained in a tensor's name
/// decides; tensors matching none are holes (all zeros). Row counts are clamped to the tensor.
/// Together ~2 GB of real disk for the three full-size models.
pub const SPARSE_DATA: &[(&str, Fill)] = &[
    // every norm gain (input/post-attention per layer, final, GLM MTP enorm/hnorm/shared_head.norm)
    ("layernorm.weight", Fill::Full),
    ("model.norm.weight", Fill::Full),
    // LayerNorm biases (Phi-3.5-MoE)
    ("layernorm.bias", Fill::Full),
    ("model.norm.bias", Fill::Full),
    ("enorm.weight", Fill::Full),
    ("hnorm.weight", Fill::Full),
    ("shared_head.norm.weight", Fill::Full),
    // routers and their F32 score-correction biases, every MoE layer
    ("mlp.gate.weight", Fill::Full),
    ("mlp.gate.e_score_correction_bias", Fill::Full),
    ("block_sparse_moe.gate.weight", Fill::Full),
    // attention biases (GLM)
    ("self_attn.q_proj.bias", Fill::Full),
    ("self_attn.k_proj.bias", Fill::Full),
    ("self_attn.v_proj.bias", Fill::Full),
    // attention projections of every layer: the first 256 rows
    ("self_attn.q_proj.weight", Fill::FirstRows(256)),
    ("self_attn.k_proj.weight", Fill::FirstRows(256)),
    ("self_attn.v_proj.weight", Fill::FirstRows(256)),
    ("self_attn.o_proj.weight", Fill::FirstRows(256)),
    // routed experts 0 and 1 of every MoE layer: the first 64 rows of gate/up/down
    ("mlp.experts.0.", Fill::FirstRows(64)),
    ("mlp.experts.1.", Fill::FirstRows(64)),
    ("block_sparse_moe.experts.0.", Fill::FirstRows(64)),
    ("block_sparse_moe.experts.1.", Fill::FirstRows(64)),
    // every 64th embedding row (ids 0, 64, 128, …)
    ("embed_tokens.weight", Fill::EveryNthRow(64)),
];

/// The fill rule of a tensor in a sparse replica (`None` = hole).
pub fn sparse_fill(name: &str) -> Option<Fill> {
    SPARSE_DATA
        .iter()
        .find(|(p, _)| name.contains(p))
        .map(|(_, f)| *f)
}

/// Rows of a `[rows, …]` tensor that hold data under `fill`.
pub fn filled_rows(fill: Fill, rows: usize) -> Vec<std::ops::Range<usize>> {
    match fill {
        Fill::Full => std::iter::once(0..rows).collect(),
        Fill::FirstRows(n) => std::iter::once(0..n.min(rows)).collect(),
        Fill::EveryNthRow(n) => (0..rows).step_by(n.max(1)).map(|r| r..r + 1).collect(),
    }
}

/// Options of [`replica`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaOptions {
    /// Real 4096-wide shapes (requires `sparse`).
    pub full_size: bool,
    /// Write sparse files (only [`SPARSE_DATA`] holds data).
    pub sparse: bool,
    /// Residual width when not full size.
    pub hidden: usize,
    /// Base seed.
    pub seed: u64,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            full_size: false,
            sparse: false,
            hidden: 256,
            seed: 0,
        }
    }
}

/// One written replica model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicaModel {
    /// Folder name (`glm-4.5-air`, `solar-open-100b`, `phi-3.5-moe`).
    pub name: String,
    /// Folder.
    pub dir: PathBuf,
    /// Sum of file sizes of the shards.
    pub logical_bytes: u64,
    /// Bytes of tensor data actually written.
    pub data_bytes: u64,
    /// Number of shards.
    pub shards: usize,
    /// Number of tensors.
    pub tensors: usize,
}

/// The replica's architecture configs (real depth; scaled or real width).
pub fn replica_configs(opts: &ReplicaOptions) -> Vec<(String, ArchConfig, u64)> {
    [
        (ArchKind::Glm4Moe, "glm-4.5-air", 45u64),
        (ArchKind::SolarOpen, "solar-open-100b", 100),
        (ArchKind::Phimoe, "phi-3.5-moe", 35),
    ]
    .into_iter()
    .map(|(k, name, seed)| {
        let real = ArchConfig::real(k);
        let cfg = if opts.full_size {
            real
        } else {
            let mut c = ArchConfig::scaled(k, opts.hidden);
            c.layers = real.layers;
            c
        };
        (
            name.to_string(),
            cfg,
            super::spec::mix_seed(opts.seed, seed),
        )
    })
    .collect()
}

/// Shard (0-based) of a tensor as on the Hub: GLM layer L in shard L (47 shards, the MTP layer and
/// head in the last), Solar layer L in shard 1 + ⌊40L/48⌋ (42 shards), embeddings in the first.
pub fn replica_shard(kind: ArchKind, cfg: &ArchConfig, name: &str) -> usize {
    let layer = name_parts(name).layer;
    match kind {
        ArchKind::Glm4Moe => match layer {
            Some(l) => l.min(cfg.layers + cfg.nextn_layers - 1),
            None if name.contains("embed_tokens") => 0,
            None => cfg.layers + cfg.nextn_layers - 1,
        },
        ArchKind::Phimoe => match layer {
            Some(l) => 1 + l * 15 / cfg.layers.max(1),
            None if name.contains("embed_tokens") => 0,
            None => 16,
        },
        _ => match layer {
            Some(l) => 1 + l * 40 / cfg.layers.max(1),
            None if name.contains("embed_tokens") => 0,
            None => 41,
        },
    }
}

/// Write the GLM-4.5-Air, Solar-Open-100B and Phi-3.5-MoE replicas under `dir`.
pub fn replica(dir: &Path, opts: &ReplicaOptions) -> Result<Vec<ReplicaModel>> {
    if opts.full_size && !opts.sparse {
        bail!("--full-size writes ~200 GB per model; it is only supported with --sparse");
    }
    let mut out = Vec::new();
    for (name, cfg, seed) in replica_configs(opts) {
        let mdir = dir.join(&name);
        let mut recipe = Recipe::new(cfg.clone(), seed);
        recipe.shards = match cfg.kind {
            ArchKind::Glm4Moe => 47,
            ArchKind::Phimoe => 17,
            _ => 42,
        };
        let specs = cfg.tensors();
        let assign: BTreeMap<String, usize> = specs
            .iter()
            .map(|s| (s.name.clone(), replica_shard(cfg.kind, &cfg, &s.name)))
            .collect();
        if opts.sparse {
            out.push(write_sparse(&name, &recipe, &specs, &assign, &mdir)?);
        } else {
            let mut m = generate(&recipe)?;
            m.layout.assign = assign;
            write_model(&m, &mdir)?;
            let logical = fs::read_dir(&mdir)?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum();
            let data = m
                .tensors
                .values()
                .map(|t| (t.numel() * t.dtype.size()) as u64)
                .sum();
            out.push(ReplicaModel {
                name,
                dir: mdir,
                logical_bytes: logical,
                data_bytes: data,
                shards: recipe.shards,
                tensors: m.tensors.len(),
            });
        }
    }
    Ok(out)
}

fn write_sparse(
    name: &str,
    recipe: &Recipe,
    specs: &[TensorSpec],
    assign: &BTreeMap<String, usize>,
    dir: &Path,
) -> Result<ReplicaModel> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg = &recipe.arch;
    let tok = super::tokenizer::generate(cfg.kind, cfg.vocab, recipe.tokenizer_seed)?;
    let stats = ModelStats::new(recipe, tok.rank.clone());
    let nshards = assign.values().max().map(|m| m + 1).unwrap_or(1);
    let shards: Vec<Vec<&TensorSpec>> = (0..nshards)
        .map(|k| specs.iter().filter(|s| assign[&s.name] == k).collect())
        .collect();
    let results: Vec<(u64, u64)> = shards
        .par_iter()
        .enumerate()
        .map(|(k, ts)| -> Result<(u64, u64)> {
            let entries: Vec<(String, DType, Vec<usize>, usize)> = ts
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        s.dtype,
                        s.shape.clone(),
                        s.shape.iter().product::<usize>() * s.dtype.size(),
                    )
                })
                .collect();
            let mut meta = BTreeMap::new();
            meta.insert("format".to_string(), "pt".to_string());
            let (header, offsets) = safetensors_header(&entries, &meta);
            let total = header.len() as u64 + entries.iter().map(|e| e.3 as u64).sum::<u64>();
            let path = dir.join(shard_name(k, nshards));
            let mut f =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            f.write_all(&header)?;
            f.set_len(total)
                .with_context(|| format!("sizing {}", path.display()))?;
            let mut written = 0u64;
            for (s, off) in ts.iter().zip(offsets) {
                let Some(fill) = sparse_fill(&s.name) else {
                    continue;
                };
                let (rows, cols) = if s.shape.len() == 1 {
                    (1, s.shape[0])
                } else {
                    (s.shape[0], s.shape[1])
                };
                for range in filled_rows(fill, rows) {
                    let v = generate_rows(recipe, &stats, s, range.clone());
                    let bytes = encode(s.dtype, &v);
                    let pos =
                        header.len() as u64 + (off + range.start * cols * s.dtype.size()) as u64;
                    f.seek(SeekFrom::Start(pos))?;
                    f.write_all(&bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                    written += bytes.len() as u64;
                }
            }
            Ok((total, written))
        })
        .collect::<Result<_>>()?;
    let logical: u64 = results.iter().map(|r| r.0).sum();
    let data: u64 = results.iter().map(|r| r.1).sum();
    let total_size: u64 = specs
        .iter()
        .map(|s| (s.shape.iter().product::<usize>() * s.dtype.size()) as u64)
        .sum();
    let weight_map: BTreeMap<&str, String> = specs
        .iter()
        .map(|s| (s.name.as_str(), shard_name(assign[&s.name], nshards)))
        .collect();
    let idx = serde_json::json!({"metadata": {"total_size": total_size}, "weight_map": weight_map});
    fs::write(dir.join("model.safetensors.index.json"), json_bytes(&idx))?;
    fs::write(
        dir.join("config.json"),
        json_bytes(&cfg.config_json(&tok.specials)),
    )?;
    fs::write(dir.join("tokenizer.json"), json_bytes(&tok.json))?;
    fs::write(dir.join("tokenizer_config.json"), json_bytes(&tok.config))?;
    let fills: BTreeMap<&str, Value> = specs
        .iter()
        .filter_map(|s| {
            sparse_fill(&s.name).map(|f| {
                (
                    s.name.as_str(),
                    serde_json::to_value(f).unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    fs::write(
        dir.join("lab_sparse_fill.json"),
        json_bytes(
            &serde_json::json!({"rules": SPARSE_DATA.iter().map(|(p, f)| serde_json::json!([p, f])).collect::<Vec<_>>(), "tensors": fills}),
        ),
    )?;
    Ok(ReplicaModel {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        logical_bytes: logical,
        data_bytes: data,
        shards: nshards,
        tensors: specs.len(),
    })
}

use serde_json::Value;
