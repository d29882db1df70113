//! E3 byte identity: are stored bytes of A found in B? The strongest evidence of reuse, and
//! the cheapest to check, in tiers:
//!
//! 1. **Sampled blocks.** Every tensor is cut into a grid of blocks (`block_bytes`, 4 KiB by
//!    default). Tensors of at most `small_tensor_bytes` (norms, biases, routers) are read
//!    whole; larger ones are read at `blocks_per_tensor` grid cells chosen from a hash of the
//!    tensor's dtype and shape and the seed. Every tensor of one dtype and shape, in every
//!    model, is therefore read at the same cells, so a block of A can be looked up among all
//!    blocks of B by (dtype, shape, cell, blake3): renamed, moved and permuted copies (expert
//!    `3` stored as expert `5`) are found without trusting names. Blocks are compared as
//!    raw bytes (planned with [`Plan::add_raw`]), never as decoded values.
//! 2. **Full hashes.** Any tensor pair with an identical informative block is confirmed by a
//!    blake3 of both whole tensors: direct for tensors read whole, streamed in chunks through
//!    [`Model::read_raw`] otherwise (bounded by `tier2_budget_bytes` per pair; a tier-2 read
//!    depends on tier-1 results, so it cannot be planned up front).
//! 3. **Element agreement.** Same-role tensors of equal shape are compared element by element
//!    inside their sampled informative blocks (stored bits; for different float dtypes, the
//!    values cast to the narrower one, in the cast windows): how many are identical at the same
//!    coordinate, against the permutation null (pairing the block's elements at
//!    random gives `Σ_v count_A(v)·count_B(v) / n` identical ones). A BF16 fine-tune keeps every
//!    element whose update stayed below half a rounding step, so it shares no whole block with
//!    its base yet keeps a large share of its elements (GLM-4.5-Air → INTELLECT-3 changed under
//!    10 % of the values of its deeper norms); unrelated models agree only as often as their
//!    value histograms make chance agreement likely.
//! 4. **Permuted copies.** Same-role tensors read whole whose bytes differ but whose values
//!    are exactly A's in another order, and whose order is one coordinate permutation shared
//!    with another tensor: what permuting the hidden dimension leaves in the norms (see
//!    [`super::e3_permuted`]; a per-tensor shuffle of the values is its null).
//!
//! **Buffers** (non-learned tensors stored with the weights: position ids, causal masks, the
//! rotary `inv_freq` table, see [`is_buffer`]) are functions of the config, byte-identical in
//! unrelated checkpoints of one architecture. They never count as evidence (no tier counts
//! them) and are reported apart: `buffers_identical` and `buffers`.
//!
//! Low-information blocks (all zeros, one repeated element, a repeated pattern of at most
//! `max_period_bytes`, byte entropy below `min_entropy_bits`, or shorter than
//! `min_block_bytes`) match by chance across unrelated models and never count; the report
//! says how many were excluded and why.
//!
//! Beside byte identity, and never counted as it: **identical values under a dtype cast**
//! (same-role tensors of the same shape stored in different float dtypes, e.g. B in F32 holding
//! exactly A's BF16 values), compared on decoded windows and confirmed by streaming; and the
//! **outlier fingerprint** (the repro plan's human-checkable signal): the `top_k` most extreme
//! coordinates of each of A's norm vectors, checked for identical values at the same indices
//! in B, with the chance probability of the observed number of matches under B's own value
//! histogram (a Poisson-binomial tail).
//!
//! Files: this one plans the reads and runs the byte tiers; [`super::e3_values`] sums the
//! element agreement and runs the cast and fingerprint comparisons; [`super::e3_blocks`] decides which
//! blocks can be evidence and what chance gives; [`super::e3_casts`] compares decoded values
//! and streams the tier-2 confirmations; [`super::e3_permuted`] finds permuted copies;
//! [`super::e3_result`] holds the parameters and the typed result, [`super::e3_tables`] the
//! tables derived from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;

use super::e3_blocks::{BlockInfo, Coincidence, InfoThresholds, classify_block, coincidence};
use super::e3_casts::stream_hash;
use super::e3_permuted::{Candidate, Permuted, Thresholds, element_keys, permuted};
use super::e3_result::{
    BufferMatch, ElementAgreement, Fingerprint, ModelBytes, PairBytes, Params, Result3, SameRole,
    TensorMatch,
};
use super::roles::{RoleKey, by_role};
use super::{Data, Experiment, Output, Plan, Sample, Subjects};
use crate::arch::Family;
use crate::dtype::Dtype;
use crate::model::{Model, TensorInfo};
use crate::sampling;

/// E3, byte identity: shared bytes, blocks and tensors between A and B (and the controls).
#[derive(Default)]
pub struct ByteIdentity {
    /// Thresholds and sample sizes (`[params.e3]`).
    pub params: Params,
}

impl From<&Params> for InfoThresholds {
    fn from(p: &Params) -> Self {
        InfoThresholds {
            min_bytes: p.min_block_bytes,
            max_period: p.max_period_bytes,
            min_entropy_bits: p.min_entropy_bits,
        }
    }
}

/// Where a tensor is read: its grid and the cells taken.
struct Layout {
    block_elems: u64,
    cells: Vec<u64>,
    whole: bool,
}

/// Tier-1 blocks of one tensor of one model.
struct Blocks<'m> {
    t: &'m TensorInfo,
    /// (cell, blake3, information) per block.
    blocks: Vec<(u64, [u8; 32], BlockInfo)>,
    /// blake3 of the whole tensor, when it was read whole.
    whole: Option<[u8; 32]>,
}

type ShapeKey = (Dtype, Vec<u64>);

/// Non-learned tensors stored beside the weights: buffers by role (position ids, GPT-2's
/// causal masks) and config-derived tables by name (rotary `inv_freq`, cached cos/sin). A
/// learned tensor, `relative_attention_bias` included, is never one.
pub fn is_buffer(t: &TensorInfo) -> bool {
    t.role.family == Family::Buffer
        || matches!(
            t.name.rsplit('.').next().unwrap_or(""),
            "inv_freq"
                | "position_ids"
                | "token_type_ids"
                | "masked_bias"
                | "_float_tensor"
                | "cos_cached"
                | "sin_cached"
        )
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

fn key_hash(s: &str) -> u64 {
    let h = blake3::hash(s.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

fn shape_key(t: &TensorInfo) -> ShapeKey {
    (t.dtype, t.shape.clone())
}

fn elem_size(d: Dtype) -> usize {
    d.byte_size().unwrap_or(1)
}

/// Partners of model `m` in the pairs compared.
fn partners(subjects: &Subjects, m: usize) -> Vec<usize> {
    subjects
        .pairs()
        .into_iter()
        .filter_map(|(i, j)| {
            if i == m {
                Some(j)
            } else if j == m {
                Some(i)
            } else {
                None
            }
        })
        .collect()
}

impl ByteIdentity {
    fn layout(&self, t: &TensorInfo) -> Layout {
        let p = &self.params;
        let bits = u64::from(t.dtype.bits()).max(1);
        let block_elems = ((p.block_bytes * 8 / bits) / 8 * 8).max(8);
        let whole = t.bytes() <= p.small_tensor_bytes;
        let ncells = t.numel.div_ceil(block_elems);
        if whole {
            return Layout {
                block_elems,
                cells: (0..ncells).collect(),
                whole,
            };
        }
        let full = t.numel / block_elems;
        let count = p.blocks_per_tensor.min(full).max(1);
        let stratum = (full / count).max(1);
        let key = format!("{}|{:?}|{}", t.dtype, t.shape, p.seed);
        let cells = (0..count)
            .map(|s| s * stratum + key_hash(&format!("{key}|{s}")) % stratum)
            .filter(|&c| c < full)
            .collect();
        Layout {
            block_elems,
            cells,
            whole,
        }
    }

    /// Bytes of one grid block of `t` (at least 1).
    fn block_bytes(&self, t: &TensorInfo) -> usize {
        let bits = u64::from(t.dtype.bits()).max(1);
        ((self.layout(t).block_elems * bits / 8) as usize).max(1)
    }

    fn raw_sample(&self, t: &TensorInfo) -> Sample {
        let l = self.layout(t);
        let windows = if l.whole {
            vec![(0, t.numel)]
        } else {
            l.cells
                .iter()
                .map(|&c| (c * l.block_elems, l.block_elems))
                .collect()
        };
        Sample {
            tensor: t.name.clone(),
            windows,
        }
    }

    pub(super) fn cast_sample(&self, t: &TensorInfo) -> Sample {
        let p = &self.params;
        Sample {
            tensor: t.name.clone(),
            windows: sampling::windows(
                &format!("cast|{:?}", t.shape),
                p.seed,
                t.numel,
                p.cast_window_elems,
                p.cast_windows,
            ),
        }
    }

    /// Expert ids read in layer `layer`: a seeded subset of the ids any model has.
    fn expert_subset(&self, subjects: &Subjects, layer: Option<u32>) -> BTreeSet<u32> {
        let n = subjects
            .models
            .iter()
            .flat_map(|s| s.model.tensors())
            .filter(|t| t.role.layer == layer)
            .filter_map(|t| t.role.expert)
            .max()
            .map_or(0, |e| e + 1);
        let mut ids: Vec<u32> = (0..n).collect();
        ids.sort_by_key(|e| key_hash(&format!("experts|{}|{layer:?}|{e}", self.params.seed)));
        ids.into_iter()
            .take(self.params.experts_per_layer)
            .collect()
    }

    /// Tensors of model `m` read for tier 1: those whose dtype and shape some partner has,
    /// leaving out experts outside the sampled subset.
    fn tier1_tensors<'m>(&self, subjects: &Subjects<'m>, m: usize) -> Vec<&'m TensorInfo> {
        let shapes: BTreeSet<ShapeKey> = partners(subjects, m)
            .into_iter()
            .flat_map(|o| subjects.models[o].model.tensors().iter().map(shape_key))
            .collect();
        let mut subsets: HashMap<Option<u32>, BTreeSet<u32>> = HashMap::new();
        subjects.models[m]
            .model
            .tensors()
            .iter()
            .filter(|t| t.numel > 0 && shapes.contains(&shape_key(t)))
            .filter(|t| match t.role.expert {
                None => true,
                Some(e) => subsets
                    .entry(t.role.layer)
                    .or_insert_with(|| self.expert_subset(subjects, t.role.layer))
                    .contains(&e),
            })
            .collect()
    }

    /// Same-role tensor pairs of equal shape and different decodable float dtypes.
    pub(super) fn cast_pairs<'m>(
        &self,
        subjects: &Subjects<'m>,
        i: usize,
        j: usize,
    ) -> Vec<(&'m TensorInfo, &'m TensorInfo)> {
        let (ra, rb) = (
            by_role(subjects.models[i].model),
            by_role(subjects.models[j].model),
        );
        ra.iter()
            .filter_map(|(k, ta)| rb.get(k).map(|tb| (*ta, *tb)))
            .filter(|(a, b)| {
                !is_buffer(a)
                    && !is_buffer(b)
                    && a.shape == b.shape
                    && a.dtype != b.dtype
                    && a.dtype.is_float()
                    && b.dtype.is_float()
                    && a.dtype.decodable()
                    && b.dtype.decodable()
            })
            .collect()
    }

    /// Same-role norm vectors of equal length (any dtype): the outlier fingerprint's input.
    pub(super) fn norm_pairs<'m>(
        &self,
        subjects: &Subjects<'m>,
        i: usize,
        j: usize,
    ) -> Vec<(RoleKey, &'m TensorInfo, &'m TensorInfo)> {
        let (ra, rb) = (
            by_role(subjects.models[i].model),
            by_role(subjects.models[j].model),
        );
        ra.iter()
            .filter(|(k, t)| {
                k.family.is_norm()
                    && t.dtype.decodable()
                    && t.bytes() <= self.params.small_tensor_bytes
            })
            .filter_map(|(k, ta)| rb.get(k).map(|tb| (*k, *ta, *tb)))
            .filter(|(_, a, b)| a.numel == b.numel && b.dtype.decodable())
            .collect()
    }

    fn blocks<'m>(&self, data: &Data, m: usize, t: &'m TensorInfo) -> Result<Blocks<'m>> {
        let raw = data.raw(m, &self.raw_sample(t))?;
        let l = self.layout(t);
        let th = InfoThresholds::from(&self.params);
        let blocks = raw
            .chunks(self.block_bytes(t))
            .zip(&l.cells)
            .map(|(b, &c)| (c, hash(b), classify_block(b, elem_size(t.dtype), &th)))
            .collect();
        Ok(Blocks {
            t,
            blocks,
            whole: l.whole.then(|| hash(raw)),
        })
    }
}

impl Experiment for ByteIdentity {
    fn id(&self) -> &'static str {
        "e3"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        for m in 0..subjects.models.len() {
            for t in self.tier1_tensors(subjects, m) {
                plan.add_raw(m, self.raw_sample(t));
            }
        }
        for (i, j) in subjects.pairs() {
            for (a, b) in self.cast_pairs(subjects, i, j) {
                plan.add(i, self.cast_sample(a));
                plan.add(j, self.cast_sample(b));
            }
            for (_, a, b) in self.norm_pairs(subjects, i, j) {
                plan.add(i, Sample::whole(&a.name, a.numel));
                plan.add(j, Sample::whole(&b.name, b.numel));
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut own = Plan::default();
        self.plan(subjects, &mut own);
        let planned = own.bytes(subjects);
        let mut models = Vec::new();
        let mut blocks: Vec<Vec<Blocks>> = Vec::new();
        for (m, &planned_bytes) in planned.iter().enumerate() {
            let ts = self.tier1_tensors(subjects, m);
            let bs = ts
                .iter()
                .map(|t| self.blocks(data, m, t))
                .collect::<Result<Vec<_>>>()?;
            models.push(ModelBytes {
                model: subjects.models[m].label.clone(),
                planned_bytes,
                tensors_whole: bs.iter().filter(|b| b.whole.is_some()).count() as u64,
                tensors_sampled: bs.iter().filter(|b| b.whole.is_none()).count() as u64,
            });
            blocks.push(bs);
        }
        let mut full_hashes: HashMap<(usize, String), [u8; 32]> = HashMap::new();
        let mut pairs = Vec::new();
        for (i, j) in subjects.pairs() {
            pairs.push(self.pair(subjects, data, &blocks, (i, j), &mut full_hashes)?);
        }
        Output::new(
            "e3",
            &Result3 {
                params: self.params.clone(),
                models,
                pairs,
            },
        )
    }
}

/// Informative tier-1 blocks by (dtype, shape, cell, blake3) → the tensors holding them.
type BlockIndex = HashMap<(ShapeKey, u64, [u8; 32]), Vec<usize>>;

/// Same-role tensor pairs compared element by element: (A's name, B's name, agreement).
type Agreement = Vec<(String, String, Coincidence)>;

/// (A tensor, B tensor) → informative blocks matched.
type Hits = BTreeMap<(usize, usize), u64>;

impl ByteIdentity {
    fn pair(
        &self,
        subjects: &Subjects,
        data: &Data,
        blocks: &[Vec<Blocks>],
        (i, j): (usize, usize),
        full_hashes: &mut HashMap<(usize, String), [u8; 32]>,
    ) -> Result<PairBytes> {
        let (ma, mb) = (subjects.models[i].model, subjects.models[j].model);
        let (index, buffer_index) = index_b(&blocks[j]);
        let mut out = empty_pair(subjects, i, j);
        let (hits, buffer_hits) = tier1(&blocks[i], &index, &buffer_index, &mut out)?;
        let mut agreement = self.same_role(data, blocks, (i, j), (ma, mb), &mut out)?;
        self.tier2(blocks, (i, j), (ma, mb), &hits, full_hashes, &mut out)?;
        self.buffers(blocks, (i, j), &buffer_hits, &mut out);
        self.casts(subjects, data, (i, j), &mut out, &mut agreement)?;
        out.element_agreement = self.element_agreement(agreement);
        out.fingerprint = self.fingerprint(subjects, data, (i, j))?;
        Ok(out)
    }

    /// Same-role comparison at identical cells: element agreement, and the permuted copies
    /// among tensors read whole.
    fn same_role(
        &self,
        data: &Data,
        blocks: &[Vec<Blocks>],
        (i, j): (usize, usize),
        (ma, mb): (&Model, &Model),
        out: &mut PairBytes,
    ) -> Result<Agreement> {
        let p = &self.params;
        let (ra, rb) = (by_role(ma), by_role(mb));
        let pos = |m: usize| -> HashMap<&str, usize> {
            blocks[m]
                .iter()
                .enumerate()
                .map(|(k, b)| (b.t.name.as_str(), k))
                .collect()
        };
        let (pa, pb) = (pos(i), pos(j));
        let mut agreement = Vec::new();
        let (mut reordered, mut whole_differing) = (Vec::new(), 0);
        for (key, ta) in &ra {
            let Some(tb) = rb.get(key) else { continue };
            if is_buffer(ta) || is_buffer(tb) {
                continue;
            }
            if ta.shape != tb.shape {
                out.same_role.shape_differs += 1;
                continue;
            }
            if ta.dtype != tb.dtype {
                out.same_role.dtype_differs += 1;
                continue;
            }
            let (Some(&ka), Some(&kb)) = (pa.get(ta.name.as_str()), pb.get(tb.name.as_str()))
            else {
                continue; // an expert outside the sampled subset
            };
            out.same_role.tensors_compared += 1;
            let (raw_a, raw_b) = (
                data.raw(i, &self.raw_sample(ta))?,
                data.raw(j, &self.raw_sample(tb))?,
            );
            let block_bytes = self.block_bytes(ta);
            let size = elem_size(ta.dtype);
            let mut tensor = Coincidence::default();
            for ((x, y), (ba, bb)) in blocks[i][ka]
                .blocks
                .iter()
                .zip(&blocks[j][kb].blocks)
                .zip(raw_a.chunks(block_bytes).zip(raw_b.chunks(block_bytes)))
            {
                if x.2 != BlockInfo::Informative || y.2 != BlockInfo::Informative {
                    out.same_role.blocks_excluded += 1;
                } else {
                    out.same_role.blocks_compared += 1;
                    if x.1 == y.1 {
                        out.same_role.blocks_identical += 1;
                    }
                    tensor.add(&coincidence(
                        &element_keys(ba, size),
                        &element_keys(bb, size),
                    ));
                }
            }
            agreement.push((ta.name.clone(), tb.name.clone(), tensor));
            if let (Some(ha), Some(hb)) = (blocks[i][ka].whole, blocks[j][kb].whole)
                && ha != hb
            {
                whole_differing += 1;
                reordered.extend(Candidate::reordered(
                    (&ta.name, raw_a),
                    (&tb.name, raw_b),
                    size,
                ));
            }
        }
        out.permuted = permuted(
            whole_differing,
            &reordered,
            &Thresholds {
                min_coordinates: p.permutation_min_coordinates,
                partners: p.permutation_partners,
                max_listed: p.max_listed,
            },
        );
        Ok(agreement)
    }

    /// Tier 2 on every hit: full hashes of both tensors, streamed within the budget.
    fn tier2(
        &self,
        blocks: &[Vec<Blocks>],
        (i, j): (usize, usize),
        (ma, mb): (&Model, &Model),
        hits: &Hits,
        full_hashes: &mut HashMap<(usize, String), [u8; 32]>,
        out: &mut PairBytes,
    ) -> Result<()> {
        let p = &self.params;
        let (mut budget_a, mut budget_b) = (p.tier2_budget_bytes, p.tier2_budget_bytes);
        for (&(ka, kb), &matched) in hits {
            let (ba, bb) = (&blocks[i][ka], &blocks[j][kb]);
            let informative = ba
                .blocks
                .iter()
                .filter(|b| b.2 == BlockInfo::Informative)
                .count() as u64;
            let mut full = |m: usize,
                            model: &Model,
                            b: &Blocks,
                            budget: &mut u64,
                            streamed: &mut u64|
             -> Result<Option<[u8; 32]>> {
                if let Some(h) = b.whole {
                    return Ok(Some(h));
                }
                if let Some(h) = full_hashes.get(&(m, b.t.name.clone())) {
                    return Ok(Some(*h));
                }
                if b.t.bytes() > *budget {
                    return Ok(None);
                }
                *budget -= b.t.bytes();
                *streamed += b.t.bytes();
                let h = stream_hash(model, b.t, p.chunk_bytes)?;
                full_hashes.insert((m, b.t.name.clone()), h);
                Ok(Some(h))
            };
            let mut streamed = 0;
            let ha = full(i, ma, ba, &mut budget_a, &mut streamed)?;
            let hb = full(j, mb, bb, &mut budget_b, &mut streamed)?;
            out.tier2_bytes += streamed;
            let status = match (ha, hb) {
                (Some(x), Some(y)) if x == y => "full_hash",
                (Some(_), Some(_)) => "partial",
                _ => "unconfirmed",
            };
            let relation = if ba.t.name == bb.t.name {
                "same_name"
            } else if ba.t.role == bb.t.role {
                "same_role"
            } else {
                "moved"
            };
            match status {
                "full_hash" => {
                    out.identical_tensors += 1;
                    out.identical_bytes += ba.t.bytes();
                    if relation != "same_name" {
                        out.identical_renamed_or_moved += 1;
                    }
                }
                "partial" => out.partial_tensors += 1,
                _ => out.unconfirmed_tensors += 1,
            }
            if out.matches.len() < p.max_listed {
                out.matches.push(TensorMatch {
                    tensor_a: ba.t.name.clone(),
                    tensor_b: bb.t.name.clone(),
                    relation: relation.into(),
                    bytes: ba.t.bytes(),
                    blocks_matched: matched,
                    blocks_informative: informative,
                    status: status.into(),
                });
            }
        }
        Ok(())
    }

    /// Buffers identical in A and B, counted and listed apart.
    fn buffers(
        &self,
        blocks: &[Vec<Blocks>],
        (i, j): (usize, usize),
        buffer_hits: &BTreeSet<(usize, usize)>,
        out: &mut PairBytes,
    ) {
        let p = &self.params;
        for &(ka, kb) in buffer_hits {
            let (ba, bb) = (&blocks[i][ka], &blocks[j][kb]);
            if ba.whole.is_some() && ba.whole == bb.whole {
                out.buffers_identical += 1;
                if out.buffers.len() < p.max_listed {
                    out.buffers.push(BufferMatch {
                        tensor_a: ba.t.name.clone(),
                        tensor_b: bb.t.name.clone(),
                        bytes: ba.t.bytes(),
                    });
                }
            }
        }
    }
}

/// B's informative blocks by (dtype, shape, cell, hash): learned tensors, and buffers
/// apart (matched only to A's buffers, never counted).
fn index_b(blocks_b: &[Blocks]) -> (BlockIndex, BlockIndex) {
    let mut index: BlockIndex = HashMap::new();
    let mut buffer_index: BlockIndex = HashMap::new();
    for (k, tb) in blocks_b.iter().enumerate() {
        let target = if is_buffer(tb.t) {
            &mut buffer_index
        } else {
            &mut index
        };
        for &(cell, h, info) in &tb.blocks {
            if info == BlockInfo::Informative {
                target
                    .entry((shape_key(tb.t), cell, h))
                    .or_default()
                    .push(k);
            }
        }
    }
    (index, buffer_index)
}

/// A pair's result before any block is compared.
fn empty_pair(subjects: &Subjects, i: usize, j: usize) -> PairBytes {
    PairBytes {
        pair: subjects.pair_label(i, j),
        primary: Subjects::is_primary(i, j),
        blocks_a: 0,
        blocks_informative: 0,
        blocks_excluded: 0,
        excluded_by_reason: BTreeMap::new(),
        blocks_found_in_b: 0,
        same_role: SameRole::default(),
        identical_tensors: 0,
        identical_bytes: 0,
        identical_renamed_or_moved: 0,
        partial_tensors: 0,
        unconfirmed_tensors: 0,
        matches: Vec::new(),
        buffers_identical: 0,
        buffers: Vec::new(),
        cast_identical_tensors: 0,
        casts: Vec::new(),
        element_agreement: ElementAgreement::default(),
        permuted: Permuted::default(),
        fingerprint: Fingerprint::default(),
        tier2_bytes: 0,
    }
}

/// Tier 1: A's blocks looked up in B's, counted in `out`; the (A tensor, B tensor) pairs
/// with matched informative blocks (and how many), and the buffer pairs.
fn tier1(
    blocks_a: &[Blocks],
    index: &BlockIndex,
    buffer_index: &BlockIndex,
    out: &mut PairBytes,
) -> Result<(Hits, BTreeSet<(usize, usize)>)> {
    // (A tensor, B tensor) → informative blocks matched.
    let mut hits: Hits = BTreeMap::new();
    let mut buffer_hits: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (ka, ta) in blocks_a.iter().enumerate() {
        if is_buffer(ta.t) {
            for &(cell, h, _) in ta.blocks.iter().filter(|b| b.2 == BlockInfo::Informative) {
                for &kb in buffer_index
                    .get(&(shape_key(ta.t), cell, h))
                    .into_iter()
                    .flatten()
                {
                    buffer_hits.insert((ka, kb));
                }
            }
            continue;
        }
        for &(cell, h, info) in &ta.blocks {
            out.blocks_a += 1;
            if info != BlockInfo::Informative {
                out.blocks_excluded += 1;
                *out.excluded_by_reason
                    .entry(serde_json::to_value(info)?.as_str().unwrap_or("").into())
                    .or_default() += 1;
                continue;
            }
            out.blocks_informative += 1;
            if let Some(bs) = index.get(&(shape_key(ta.t), cell, h)) {
                out.blocks_found_in_b += 1;
                for &kb in bs {
                    *hits.entry((ka, kb)).or_default() += 1;
                }
            }
        }
    }
    Ok((hits, buffer_hits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::e3_blocks::byte_entropy;

    fn th() -> InfoThresholds {
        InfoThresholds::from(&Params::default())
    }

    fn bf16_bytes(v: impl Iterator<Item = f32>) -> Vec<u8> {
        v.flat_map(|x| half::bf16::from_f32(x).to_le_bytes())
            .collect()
    }

    #[test]
    fn low_information_blocks_are_recognised() {
        let t = th();
        assert_eq!(classify_block(&[0u8; 4096], 2, &t), BlockInfo::Zero);
        let ones = bf16_bytes((0..2048).map(|_| 1.0));
        assert_eq!(classify_block(&ones, 2, &t), BlockInfo::Constant);
        let f32_ones: Vec<u8> = (0..1024).flat_map(|_| 1.0f32.to_le_bytes()).collect();
        assert_eq!(classify_block(&f32_ones, 4, &t), BlockInfo::Constant);
        let pattern = bf16_bytes((0..2048).map(|i| (i % 5) as f32 * 0.25));
        assert_eq!(classify_block(&pattern, 2, &t), BlockInfo::Periodic);
        // Mostly zeros with a few values: low entropy, not periodic.
        let mut sparse = vec![0u8; 4096];
        for k in [17usize, 900, 2049, 3001] {
            sparse[k] = (k % 251) as u8 + 1;
        }
        assert_eq!(classify_block(&sparse, 2, &t), BlockInfo::LowEntropy);
        let short = bf16_bytes([0.1f32, -0.7, 0.3].into_iter());
        assert_eq!(classify_block(&short, 2, &t), BlockInfo::Short);
        // Trained-looking values are informative.
        let mut x = 12345u64;
        let random = bf16_bytes((0..2048).map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.04
        }));
        assert_eq!(classify_block(&random, 2, &t), BlockInfo::Informative);
        assert!(byte_entropy(&random) > 4.0);
        assert_eq!(byte_entropy(&[7u8; 10]), 0.0);
        assert!((byte_entropy(&[0, 1, 2, 3]) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn element_keys_skip_the_padding_stride() {
        assert_eq!(element_keys(&[1, 0, 2, 0, 3], 2), vec![1, 2]);
    }
}
