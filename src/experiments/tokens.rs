//! What E0, E1b and E8 share: each model's vocabulary (read once per experiment through the
//! model's source, size-capped), tokens matched across two vocabularies by canonical text
//! (never by id), seeded subsets of them, and embedding rows planned as windows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::roles::by_role;
use super::{Sample, Subjects};
use crate::arch::Family;
use crate::model::{Model, TensorInfo};
use crate::vocab::Vocab;

/// A vocabulary per model, loaded on first use. Errors are kept as text so that a model
/// without a readable vocabulary skips the pairs it is in instead of failing the audit.
///
/// Keyed by the model's source, not its index in `subjects`: one experiment instance may run
/// over many pairs (`audit eval`), where index 1 is a different model each time.
#[derive(Default)]
pub struct VocabCache {
    map: Mutex<HashMap<String, Arc<Result<Vocab, String>>>>,
}

impl VocabCache {
    /// Model `m`'s vocabulary, read once per source (or why it could not be).
    pub fn get(&self, subjects: &Subjects, m: usize) -> Arc<Result<Vocab, String>> {
        let mut map = match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let model = subjects.models[m].model;
        map.entry(model.describe())
            .or_insert_with(|| {
                Arc::new(match Vocab::of_model(model) {
                    Ok(Some(v)) => Ok(v),
                    Ok(None) => Err(format!(
                        "{}: no tokenizer.json, vocab.txt, vocab.json or GGUF vocabulary",
                        model.describe()
                    )),
                    Err(e) => Err(format!("{e:#}")),
                })
            })
            .clone()
    }
}

/// The input embedding matrix (2-D), by role.
pub fn embedding(model: &Model) -> Option<&TensorInfo> {
    by_role(model)
        .into_iter()
        .find(|(k, t)| {
            k.family == Family::Embedding
                && k.layer.is_none()
                && k.expert.is_none()
                && t.shape.len() == 2
        })
        .map(|(_, t)| t)
}

/// One token text present in both vocabularies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedToken {
    /// The canonical token text.
    pub text: String,
    /// Its id in A's vocabulary.
    pub id_a: u32,
    /// Its id in B's vocabulary.
    pub id_b: u32,
}

/// Non-special tokens whose canonical text both vocabularies have, with ids below each
/// embedding's row count, sorted by text.
pub fn shared_tokens(va: &Vocab, vb: &Vocab, rows_a: u64, rows_b: u64) -> Vec<SharedToken> {
    let ib = vb.by_canonical();
    let mut out: Vec<SharedToken> = va
        .by_canonical()
        .into_iter()
        .filter(|(_, id_a)| !va.special.contains(id_a) && u64::from(*id_a) < rows_a)
        .filter_map(|(text, id_a)| {
            let id_b = *ib.get(&text)?;
            (!vb.special.contains(&id_b) && u64::from(id_b) < rows_b).then_some(SharedToken {
                text,
                id_a,
                id_b,
            })
        })
        .collect();
    out.sort_by(|x, y| x.text.cmp(&y.text));
    out
}

/// Rank of a token text in the seeded order (blake3 of `seed|text`): stable across runs,
/// platforms and pairs, so the same texts are picked whichever models are compared.
pub fn seeded_rank(seed: u64, text: &str) -> u64 {
    let h = blake3::hash(format!("{seed}|{text}").as_bytes());
    let b: [u8; 8] = h.as_bytes()[..8].try_into().unwrap_or([0; 8]);
    u64::from_le_bytes(b)
}

/// Up to `max` shared tokens, the lowest seeded ranks, in rank order.
pub fn sample_tokens(tokens: &[SharedToken], max: usize, seed: u64) -> Vec<SharedToken> {
    let mut ranked: Vec<(u64, &SharedToken)> = tokens
        .iter()
        .map(|t| (seeded_rank(seed, &t.text), t))
        .collect();
    ranked.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.text.cmp(&y.1.text)));
    ranked
        .into_iter()
        .take(max)
        .map(|(_, t)| t.clone())
        .collect()
}

/// Rows of a 2-D tensor as a sample, in the order given.
pub fn rows_sample(t: &TensorInfo, rows: impl IntoIterator<Item = u64>) -> Sample {
    let (_, cols) = t.rows_cols();
    Sample {
        tensor: t.name.clone(),
        windows: rows.into_iter().map(|r| (r * cols, cols)).collect(),
    }
}

/// Fewest shared tokens an alignment of hidden dimensions (E8's, E1b's) is fitted on, for a
/// residual stream `width` wide: max(64, 2·width). The alignments are fitted on half the
/// sampled tokens and judged on the other half; with fewer fit rows than dimensions the
/// embedding columns are linearly dependent (their cosines, which the assignment maximises,
/// then fit noise) and an orthogonal map is not determined at all. The floor of 64 keeps the
/// sampling sd of a column cosine (≈ 1/√rows) at most 1/8 in narrow models.
pub fn min_alignment_tokens(width: usize) -> usize {
    width.saturating_mul(2).max(64)
}

/// Embedding rows of the sampled shared tokens for one pair: the samples of A and B (row k of
/// each is token k) — or why there are none.
pub struct PairRows {
    /// Tokens the two vocabularies share, before sampling.
    pub shared: usize,
    /// The sampled shared tokens, in row order.
    pub tokens: Vec<SharedToken>,
    /// A's embedding rows of those tokens.
    pub a: Sample,
    /// B's embedding rows of those tokens.
    pub b: Sample,
    /// Width of A's embedding rows.
    pub cols_a: usize,
    /// Width of B's embedding rows.
    pub cols_b: usize,
}

/// The embedding rows of up to `max` shared tokens of models `i` and `j` (sampled with `seed`), or why there are none.
pub fn pair_rows(
    subjects: &Subjects,
    vocabs: &VocabCache,
    i: usize,
    j: usize,
    max: usize,
    seed: u64,
) -> Result<PairRows, String> {
    let (ma, mb) = (subjects.models[i].model, subjects.models[j].model);
    let (va, vb) = (vocabs.get(subjects, i), vocabs.get(subjects, j));
    let (va, vb) = match (va.as_ref(), vb.as_ref()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Err(e.clone()),
    };
    let (Some(ea), Some(eb)) = (embedding(ma), embedding(mb)) else {
        return Err("an embedding matrix is missing".into());
    };
    let shared = shared_tokens(va, vb, ea.rows_cols().0, eb.rows_cols().0);
    if shared.len() < 8 {
        return Err(format!("only {} shared tokens", shared.len()));
    }
    let tokens = sample_tokens(&shared, max, seed);
    Ok(PairRows {
        shared: shared.len(),
        a: rows_sample(ea, tokens.iter().map(|t| u64::from(t.id_a))),
        b: rows_sample(eb, tokens.iter().map(|t| u64::from(t.id_b))),
        cols_a: ea.rows_cols().1 as usize,
        cols_b: eb.rows_cols().1 as usize,
        tokens,
    })
}
