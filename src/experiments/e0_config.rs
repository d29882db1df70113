//! E0 config and tokenizer: `config.json` field diff (every key, present/absent, equal/different,
//! lineage breadcrumbs flagged) and a vocabulary fingerprint — overlap by canonical token text
//! (see [`crate::vocab`]), same-id matches, the best id offset and the longest run of identical
//! tokens under it, special tokens, merges overlap and hashes. Computed for A~B and for every
//! control pair: the control pairs are the null (what unrelated models share).
//!
//! Needs no tensor data; vocabularies are read through each model's source, size-capped.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::tokens::VocabCache;
use super::{Data, Experiment, Output, Plan, Subjects, Table, fmt, round9};
use crate::vocab::Vocab;

/// Config keys whose presence or value is architecture-lineage specific (the GLM/DeepSeek MoE
/// family and friends): sharing them is a breadcrumb, differing is worth a look.
pub const BREADCRUMBS: &[&str] = &[
    "num_nextn_predict_layers",
    "partial_rotary_factor",
    "first_k_dense_replace",
    "rope_theta",
    "rope_scaling",
    "routed_scaling_factor",
    "n_group",
    "topk_group",
    "norm_topk_prob",
    "topk_method",
    "scoring_func",
    "n_routed_experts",
    "n_shared_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
    "moe_layer_freq",
    "use_qk_norm",
    "attention_bias",
    "head_dim",
    "rms_norm_eps",
    "initializer_range",
    "max_position_embeddings",
    "vocab_size",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
];

const SPECIAL_ID_KEYS: [&str; 3] = ["pad_token_id", "bos_token_id", "eos_token_id"];

/// E0's parameters (`[params.e0]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// How many of the most frequent id offsets to list.
    pub top_offsets: usize,
}

/// E0, config and tokenizer: `config.json` diff and vocabulary fingerprint per pair.
#[derive(Default)]
pub struct ConfigTokenizer {
    /// Its parameters.
    pub params: Params,
    vocabs: VocabCache,
}

impl ConfigTokenizer {
    /// E0 with `params`.
    pub fn new(params: Params) -> ConfigTokenizer {
        ConfigTokenizer {
            params,
            vocabs: VocabCache::default(),
        }
    }
}

/// One top-level key of the two `config.json` files.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigField {
    /// The key.
    pub key: String,
    /// `equal`, `different`, `only_a`, `only_b`.
    pub status: String,
    /// A's value as JSON text (`None` when absent).
    pub a: Option<String>,
    /// B's value as JSON text (`None` when absent).
    pub b: Option<String>,
    /// True for a lineage breadcrumb (one of `BREADCRUMBS`).
    pub breadcrumb: bool,
}

/// A special token of either model with its id in each.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpecialToken {
    /// The token's text.
    pub text: String,
    /// Its id in A (`None`: not special in A).
    pub id_a: Option<u32>,
    /// Its id in B (`None`: not special in B).
    pub id_b: Option<u32>,
}

/// Vocabulary comparison of two models.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenizerStats {
    /// A's vocabulary file.
    pub file_a: String,
    /// B's vocabulary file.
    pub file_b: String,
    /// A's tokenizer kind (`BPE`, `WordPiece`, `Unigram`, …).
    pub kind_a: String,
    /// B's tokenizer kind.
    pub kind_b: String,
    /// Tokens in A's vocabulary.
    pub vocab_a: usize,
    /// Tokens in B's vocabulary.
    pub vocab_b: usize,
    /// Distinct canonical texts in both / in either.
    pub intersection: usize,
    /// Distinct canonical texts in either.
    pub union: usize,
    /// intersection / union, 0–1.
    pub jaccard: f64,
    /// intersection / the smaller vocabulary's distinct texts, 0–1.
    pub overlap_vs_smaller: f64,
    /// Ids holding the same canonical text in both, and that count over the smaller vocab.
    pub same_id_matches: usize,
    /// `same_id_matches` over the smaller vocabulary, 0–1.
    pub same_id_ratio: f64,
    /// `id_b − id_a` most common among shared texts (ties: smallest |offset|), and its count.
    pub best_offset: Option<i64>,
    /// Shared texts at the best offset.
    pub best_offset_count: usize,
    /// The most common offsets with their counts (at most `top_offsets`).
    pub top_offsets: Vec<(i64, usize)>,
    /// Longest run of consecutive ids with identical text under the best offset.
    pub longest_run: usize,
    /// A's id where that run starts.
    pub longest_run_start_a: Option<u32>,
    /// B's id where that run starts.
    pub longest_run_start_b: Option<u32>,
    /// Special tokens of either model and their ids in each.
    pub special_tokens: Vec<SpecialToken>,
    /// Special tokens with the same id in both.
    pub special_same_id: usize,
    /// BPE merges in A.
    pub merges_a: usize,
    /// BPE merges in B.
    pub merges_b: usize,
    /// Merges in both.
    pub merges_common: usize,
    /// `merges_common` over the smaller merge list, 0–1.
    pub merges_overlap_vs_smaller: f64,
    /// SHA-256 of A's merges, one per line, lowercase hex.
    pub merges_sha256_a: String,
    /// SHA-256 of B's merges, one per line, lowercase hex.
    pub merges_sha256_b: String,
    /// SHA-256 of A's `id<TAB>text` lines in id order, lowercase hex.
    pub vocab_sha256_a: String,
    /// SHA-256 of B's `id<TAB>text` lines in id order, lowercase hex.
    pub vocab_sha256_b: String,
}

/// E0's findings for one pair of models.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairResult {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// Every top-level config key, sorted.
    pub config: Vec<ConfigField>,
    /// Keys with equal values.
    pub config_equal: usize,
    /// Keys with different values.
    pub config_different: usize,
    /// Keys only A's config has.
    pub config_only_a: usize,
    /// Keys only B's config has.
    pub config_only_b: usize,
    /// Config special ids (pad/bos/eos), as JSON text, per model.
    pub special_ids: Vec<(String, Option<String>, Option<String>)>,
    /// `None` when a vocabulary is missing: see `tokenizer_status`.
    pub tokenizer: Option<TokenizerStats>,
    /// `ok`, or why the vocabularies could not be compared.
    pub tokenizer_status: String,
}

/// E0's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result0 {
    /// The parameters it ran with.
    pub params: Params,
    /// Each pair's findings, A~B first.
    pub pairs: Vec<PairResult>,
}

/// Field-by-field diff of two JSON objects (top level), sorted by key.
pub fn config_diff(a: Option<&Value>, b: Option<&Value>) -> Vec<ConfigField> {
    let empty = serde_json::Map::new();
    let oa = a.and_then(Value::as_object).unwrap_or(&empty);
    let ob = b.and_then(Value::as_object).unwrap_or(&empty);
    let keys: BTreeSet<&String> = oa.keys().chain(ob.keys()).collect();
    keys.into_iter()
        .map(|k| {
            let (va, vb) = (oa.get(k), ob.get(k));
            let status = match (va, vb) {
                (Some(x), Some(y)) if x == y => "equal",
                (Some(_), Some(_)) => "different",
                (Some(_), None) => "only_a",
                _ => "only_b",
            };
            ConfigField {
                key: k.clone(),
                status: status.into(),
                a: va.map(Value::to_string),
                b: vb.map(Value::to_string),
                breadcrumb: BREADCRUMBS.contains(&k.as_str()),
            }
        })
        .collect()
}

/// The vocabulary fingerprint of two vocabularies.
pub fn tokenizer_stats(va: &Vocab, vb: &Vocab, top: usize) -> TokenizerStats {
    let canon = |v: &Vocab| -> BTreeMap<u32, String> {
        v.tokens
            .keys()
            .filter_map(|&id| Some((id, v.canonical(id)?)))
            .collect()
    };
    let (ca, cb) = (canon(va), canon(vb));
    let (ta, tb) = (va.by_canonical(), vb.by_canonical());
    let intersection = ta.keys().filter(|t| tb.contains_key(*t)).count();
    let union = ta.len() + tb.len() - intersection;
    let smaller = ta.len().min(tb.len()).max(1);
    let same_id_matches = ca.iter().filter(|(id, t)| cb.get(id) == Some(*t)).count();
    let mut offsets: HashMap<i64, usize> = HashMap::new();
    for (t, &ia) in &ta {
        if let Some(&ib) = tb.get(t) {
            *offsets.entry(i64::from(ib) - i64::from(ia)).or_default() += 1;
        }
    }
    let mut ranked: Vec<(i64, usize)> = offsets.into_iter().collect();
    ranked.sort_by(|x, y| {
        y.1.cmp(&x.1)
            .then(x.0.abs().cmp(&y.0.abs()))
            .then(x.0.cmp(&y.0))
    });
    let best = ranked.first().copied();
    let (mut longest, mut start) = (0usize, None);
    if let Some((off, _)) = best {
        let mut run = 0usize;
        let mut prev: Option<u32> = None;
        for (&ia, t) in &ca {
            let ib = i64::from(ia) + off;
            let hit = u32::try_from(ib).ok().and_then(|ib| cb.get(&ib)) == Some(t);
            let consecutive = prev.is_some_and(|p| p + 1 == ia);
            run = match (hit, consecutive) {
                (true, true) => run + 1,
                (true, false) => 1,
                _ => 0,
            };
            if run > longest {
                longest = run;
                start = Some(ia + 1 - run as u32);
            }
            prev = Some(ia);
        }
    }
    let specials: BTreeSet<String> = va
        .special
        .iter()
        .filter_map(|id| va.tokens.get(id).cloned())
        .chain(
            vb.special
                .iter()
                .filter_map(|id| vb.tokens.get(id).cloned()),
        )
        .collect();
    let (ra, rb) = (raw_ids(va), raw_ids(vb));
    let special_tokens: Vec<SpecialToken> = specials
        .into_iter()
        .map(|text| SpecialToken {
            id_a: ra.get(text.as_str()).copied(),
            id_b: rb.get(text.as_str()).copied(),
            text,
        })
        .collect();
    let special_same_id = special_tokens
        .iter()
        .filter(|s| s.id_a.is_some() && s.id_a == s.id_b)
        .count();
    let ma: BTreeSet<&String> = va.merges.iter().collect();
    let mb: BTreeSet<&String> = vb.merges.iter().collect();
    let merges_common = ma.intersection(&mb).count();
    TokenizerStats {
        file_a: va.file.clone(),
        file_b: vb.file.clone(),
        kind_a: va.kind.clone(),
        kind_b: vb.kind.clone(),
        vocab_a: va.len(),
        vocab_b: vb.len(),
        intersection,
        union,
        jaccard: round9(intersection as f64 / union.max(1) as f64),
        overlap_vs_smaller: round9(intersection as f64 / smaller as f64),
        same_id_matches,
        same_id_ratio: round9(same_id_matches as f64 / smaller as f64),
        best_offset: best.map(|b| b.0),
        best_offset_count: best.map_or(0, |b| b.1),
        top_offsets: ranked.into_iter().take(top).collect(),
        longest_run: longest,
        longest_run_start_a: start,
        longest_run_start_b: match (start, best) {
            (Some(s), Some((off, _))) => u32::try_from(i64::from(s) + off).ok(),
            _ => None,
        },
        special_tokens,
        special_same_id,
        merges_a: va.merges.len(),
        merges_b: vb.merges.len(),
        merges_common,
        merges_overlap_vs_smaller: round9(
            merges_common as f64 / ma.len().min(mb.len()).max(1) as f64,
        ),
        merges_sha256_a: va.merges_sha256(),
        merges_sha256_b: vb.merges_sha256(),
        vocab_sha256_a: va.vocab_sha256(),
        vocab_sha256_b: vb.vocab_sha256(),
    }
}

fn raw_ids(v: &Vocab) -> HashMap<&str, u32> {
    let mut m = HashMap::new();
    for (id, t) in &v.tokens {
        m.entry(t.as_str()).or_insert(*id);
    }
    m
}

impl Experiment for ConfigTokenizer {
    fn id(&self) -> &'static str {
        "e0"
    }

    fn plan(&self, _subjects: &Subjects, _plan: &mut Plan) {}

    fn run(&self, subjects: &Subjects, _data: &Data) -> Result<Output> {
        let top = if self.params.top_offsets == 0 {
            10
        } else {
            self.params.top_offsets
        };
        let mut pairs = Vec::new();
        for (i, j) in subjects.pairs() {
            let (ma, mb) = (subjects.models[i].model, subjects.models[j].model);
            let config = config_diff(ma.config(), mb.config());
            let count = |s: &str| config.iter().filter(|f| f.status == s).count();
            let special_ids = SPECIAL_ID_KEYS
                .iter()
                .map(|k| {
                    let get = |m: &crate::model::Model| {
                        m.config().and_then(|c| c.get(*k)).map(Value::to_string)
                    };
                    (k.to_string(), get(ma), get(mb))
                })
                .collect();
            let (va, vb) = (self.vocabs.get(subjects, i), self.vocabs.get(subjects, j));
            let (tokenizer, tokenizer_status) = match (va.as_ref(), vb.as_ref()) {
                (Ok(a), Ok(b)) => (Some(tokenizer_stats(a, b, top)), "ok".to_string()),
                (Err(e), _) | (_, Err(e)) => (None, format!("skipped: {e}")),
            };
            pairs.push(PairResult {
                pair: subjects.pair_label(i, j),
                primary: Subjects::is_primary(i, j),
                config_equal: count("equal"),
                config_different: count("different"),
                config_only_a: count("only_a"),
                config_only_b: count("only_b"),
                config,
                special_ids,
                tokenizer,
                tokenizer_status,
            });
        }
        Output::new(
            "e0",
            &Result0 {
                params: self.params.clone(),
                pairs,
            },
        )
    }
}

/// `e0_config` and `e0_tokenizer`, from the result as results.json records it.
pub fn tables(result: &Value) -> Result<Vec<Table>> {
    let r: Result0 = super::readback::from_value(result)?;
    let pairs = r.pairs;
    let mut cfg = Table::new(
        "e0_config",
        &["pair", "primary", "key", "status", "a", "b", "breadcrumb"],
    );
    let mut tok = Table::new(
        "e0_tokenizer",
        &[
            "pair",
            "primary",
            "status",
            "vocab_a",
            "vocab_b",
            "intersection",
            "union",
            "jaccard",
            "overlap_vs_smaller",
            "same_id_matches",
            "same_id_ratio",
            "best_offset",
            "best_offset_count",
            "longest_run",
            "longest_run_start_a",
            "special_same_id",
            "merges_a",
            "merges_b",
            "merges_common",
            "merges_overlap_vs_smaller",
            "merges_sha256_a",
            "merges_sha256_b",
        ],
    );
    for p in &pairs {
        for f in &p.config {
            cfg.rows.push(vec![
                p.pair.clone(),
                p.primary.to_string(),
                f.key.clone(),
                f.status.clone(),
                f.a.clone().unwrap_or_default(),
                f.b.clone().unwrap_or_default(),
                f.breadcrumb.to_string(),
            ]);
        }
        let mut row = vec![
            p.pair.clone(),
            p.primary.to_string(),
            p.tokenizer_status.clone(),
        ];
        match &p.tokenizer {
            Some(t) => row.extend([
                t.vocab_a.to_string(),
                t.vocab_b.to_string(),
                t.intersection.to_string(),
                t.union.to_string(),
                fmt(t.jaccard),
                fmt(t.overlap_vs_smaller),
                t.same_id_matches.to_string(),
                fmt(t.same_id_ratio),
                t.best_offset.map(|o| o.to_string()).unwrap_or_default(),
                t.best_offset_count.to_string(),
                t.longest_run.to_string(),
                t.longest_run_start_a
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
                t.special_same_id.to_string(),
                t.merges_a.to_string(),
                t.merges_b.to_string(),
                t.merges_common.to_string(),
                fmt(t.merges_overlap_vs_smaller),
                t.merges_sha256_a.clone(),
                t.merges_sha256_b.clone(),
            ]),
            None => row.extend(std::iter::repeat_n(String::new(), 19)),
        }
        tok.rows.push(row);
    }
    Ok(vec![cfg, tok])
}

/// A pair of E0's result that compared only these config keys (`key`, A's and B's JSON
/// text), for tests that read the pair's kind.
#[cfg(test)]
pub(crate) fn test_pair(pair: &str, primary: bool, config: &[(&str, &str, &str)]) -> PairResult {
    PairResult {
        pair: pair.into(),
        primary,
        config: config
            .iter()
            .map(|(key, a, b)| ConfigField {
                key: key.to_string(),
                status: "different".into(),
                a: Some(a.to_string()),
                b: Some(b.to_string()),
                breadcrumb: false,
            })
            .collect(),
        config_equal: 0,
        config_different: config.len(),
        config_only_a: 0,
        config_only_b: 0,
        special_ids: Vec::new(),
        tokenizer: None,
        tokenizer_status: "absent".into(),
    }
}
