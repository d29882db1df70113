//! Byte-level BPE tokenizers in Hugging Face `tokenizer.json` format: generation for the lab
//! architectures and a small editable view used by the vocabulary transforms (works on real files).

use std::collections::{BTreeMap, HashSet};

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

use super::arch::{ArchKind, SpecialIds};
use super::rng::Rng;

/// A generated tokenizer plus per-row facts the weight generator needs.
#[derive(Clone, Debug)]
pub struct Generated {
    /// `tokenizer.json`.
    pub json: Value,
    /// `tokenizer_config.json`.
    pub config: Value,
    /// Special ids for `config.json`.
    pub specials: SpecialIds,
    /// Frequency rank per embedding row (0 = most frequent); `None` = padding row with no token.
    pub rank: Vec<Option<usize>>,
}

/// Where the special tokens of a family sit: leading specials (ids from 0), the id of the first
/// byte token, trailing specials (after the merges) and unused padding rows at the end.
struct SpecialLayout {
    lead: Vec<String>,
    byte_start: usize,
    trailing: Vec<String>,
    pad_rows: usize,
}

/// Generate the tokenizer of `kind` with `rows` embedding rows. `seed` picks the merges, so models
/// with the same recipe share a tokenizer and different families overlap only partly (by text).
pub fn generate(kind: ArchKind, rows: usize, seed: u64) -> Result<Generated> {
    let alpha = byte_alphabet();
    let SpecialLayout {
        lead: lead_specials,
        byte_start,
        trailing: trailing_specials,
        pad_rows,
    } = layout(kind, rows);
    let n_merges = rows
        .checked_sub(byte_start + 256 + trailing_specials.len() + pad_rows)
        .ok_or_else(|| anyhow!("vocabulary of {rows} rows is too small for {kind:?}"))?;
    let (tokens, merges) = build_merges(&alpha, n_merges, seed)?;
    // ids: leading specials, byte and merge tokens, trailing specials
    let mut vocab = BTreeMap::new();
    let mut added = Vec::new();
    let mut rank = vec![None; rows];
    for (i, s) in lead_specials.iter().enumerate() {
        added.push(added_token(i as u32, s));
        rank[i] = Some(rows + i);
    }
    for (i, t) in tokens.iter().enumerate() {
        let id = byte_start + i;
        vocab.insert(t.clone(), id as u32);
        // byte tokens: letters frequent, control bytes rare
        rank[id] = Some(if i < 256 {
            let c = alpha.iter().position(|x| x.to_string() == *t).unwrap_or(0) as u8;
            if c.is_ascii_alphanumeric() || c == b' ' {
                i / 8
            } else {
                rows / 2 + i
            }
        } else {
            i - 256 + 20
        });
    }
    let tail0 = byte_start + tokens.len();
    for (i, s) in trailing_specials.iter().enumerate() {
        added.push(added_token((tail0 + i) as u32, s));
        rank[tail0 + i] = Some(rows + i);
    }
    let specials = special_ids(kind, &added);
    let json = tokenizer_json(&added, vocab, &merges);
    let name = |id: u32| -> Value {
        added
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["content"].clone())
            .unwrap_or(Value::Null)
    };
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 131072,
        "bos_token": name(specials.bos),
        "eos_token": name(specials.eos),
        "pad_token": name(specials.pad),
        "clean_up_tokenization_spaces": false,
    });
    Ok(Generated {
        json,
        config,
        specials,
        rank,
    })
}

/// The special-token layout of `kind`'s tokenizer with `rows` embedding rows.
fn layout(kind: ArchKind, rows: usize) -> SpecialLayout {
    let (lead, byte_start, trailing, pad_rows): (Vec<String>, usize, Vec<String>, usize) =
        match kind {
            ArchKind::Glm4Moe => (
                vec![],
                0,
                [
                    "<|endoftext|>",
                    "[MASK]",
                    "[gMASK]",
                    "[sMASK]",
                    "<sop>",
                    "<eop>",
                    "<|system|>",
                    "<|user|>",
                    "<|assistant|>",
                    "<|observation|>",
                    "<think>",
                    "</think>",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                rows / 640 + 2,
            ),
            ArchKind::SolarOpen => {
                let mut v: Vec<String> = [
                    "<unk>",
                    "<|startoftext|>",
                    "<|endoftext|>",
                    "<|im_start|>",
                    "<|im_end|>",
                    "<|think|>",
                    "<|/think|>",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                while v.len() < 20 {
                    v.push(format!("<|special_{}|>", v.len()));
                }
                let bs = (rows / 48).max(20);
                while v.len() < bs {
                    v.push(format!("<|reserved_{}|>", v.len()));
                }
                (v, bs, vec![], 0)
            }
            ArchKind::Phimoe => (
                vec!["<unk>".into(), "<s>".into(), "</s>".into()],
                3,
                [
                    "<|endoftext|>",
                    "<|assistant|>",
                    "<|system|>",
                    "<|end|>",
                    "<|user|>",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                rows / 600 + 1,
            ),
            ArchKind::Llama => (
                vec![],
                0,
                (0..8)
                    .map(|i| match i {
                        0 => "<|begin_of_text|>".to_string(),
                        1 => "<|end_of_text|>".to_string(),
                        2 => "<|eot_id|>".to_string(),
                        _ => format!("<|reserved_special_token_{}|>", i - 3),
                    })
                    .collect(),
                0,
            ),
            ArchKind::Bert => (
                ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                5,
                vec![],
                0,
            ),
        };
    SpecialLayout {
        lead,
        byte_start,
        trailing,
        pad_rows,
    }
}

/// A BPE merge: the left and right parts.
type Merge = (String, String);

/// The byte tokens followed by `n_merges` merge-built tokens (letter-heavy, word-like), and the
/// merges that build them, drawn from `seed`.
fn build_merges(alpha: &[char], n_merges: usize, seed: u64) -> Result<(Vec<String>, Vec<Merge>)> {
    let letters = "etaoinshrdlcumwfgypbvkjxqz";
    let weights: Vec<f64> = (0..letters.len())
        .map(|i| 1.0 / (1.0 + i as f64 * 0.35))
        .collect();
    let wsum: f64 = weights.iter().sum();
    let mut rng = Rng::new(seed, "tokenizer/merges");
    let pick_letter = |rng: &mut Rng| -> char {
        let mut u = rng.uniform() * wsum;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return letters.as_bytes()[i] as char;
            }
            u -= w;
        }
        'e'
    };
    let space = alpha[b' ' as usize];
    let mut tokens: Vec<String> = alpha.iter().map(|c| c.to_string()).collect();
    let mut seen: HashSet<String> = tokens.iter().cloned().collect();
    let mut wordy: Vec<String> = letters.chars().map(|c| c.to_string()).collect();
    wordy.push(space.to_string());
    let mut merges: Vec<Merge> = Vec::with_capacity(n_merges);
    let mut guard = 0usize;
    while merges.len() < n_merges {
        guard += 1;
        if guard > n_merges * 200 + 10_000 {
            bail!("could not generate {n_merges} merges");
        }
        let u = rng.uniform();
        let left = wordy[((u * u) * wordy.len() as f64) as usize % wordy.len()].clone();
        let right = if rng.uniform() < 0.7 || merges.len() < 50 {
            pick_letter(&mut rng).to_string()
        } else {
            let u = rng.uniform();
            let r = &wordy[((u * u * u) * wordy.len() as f64) as usize % wordy.len()];
            if r.starts_with(space) {
                continue;
            }
            r.clone()
        };
        if left.chars().count() + right.chars().count() > 12
            || (left == space.to_string() && right.starts_with(space))
        {
            continue;
        }
        let prod = format!("{left}{right}");
        if !seen.insert(prod.clone()) {
            continue;
        }
        merges.push((left, right));
        tokens.push(prod.clone());
        wordy.push(prod);
    }
    Ok((tokens, merges))
}

/// The bos/eos/pad ids of `kind` among its added tokens (0 when absent).
fn special_ids(kind: ArchKind, added: &[Value]) -> SpecialIds {
    let id_of = |s: &str| -> u32 {
        added
            .iter()
            .find(|a| a["content"] == s)
            .and_then(|a| a["id"].as_u64())
            .map(|v| v as u32)
            .unwrap_or(0)
    };
    match kind {
        ArchKind::Glm4Moe => SpecialIds {
            bos: id_of("[gMASK]"),
            eos: id_of("<|endoftext|>"),
            pad: id_of("<|endoftext|>"),
        },
        ArchKind::SolarOpen => SpecialIds {
            bos: id_of("<|startoftext|>"),
            eos: id_of("<|endoftext|>"),
            pad: id_of("<|endoftext|>"),
        },
        ArchKind::Phimoe => SpecialIds {
            bos: id_of("<s>"),
            eos: id_of("</s>"),
            pad: id_of("</s>"),
        },
        ArchKind::Llama => SpecialIds {
            bos: id_of("<|begin_of_text|>"),
            eos: id_of("<|end_of_text|>"),
            pad: id_of("<|end_of_text|>"),
        },
        ArchKind::Bert => SpecialIds {
            bos: id_of("[CLS]"),
            eos: id_of("[SEP]"),
            pad: id_of("[PAD]"),
        },
    }
}

/// `tokenizer.json` of a byte-level BPE with these added tokens, vocabulary and merges.
fn tokenizer_json(added: &[Value], vocab: BTreeMap<String, u32>, merges: &[Merge]) -> Value {
    let merges_json: Vec<Value> = merges.iter().map(|(a, b)| json!([a, b])).collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges_json,
        }
    })
}

fn added_token(id: u32, content: &str) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
}

/// Editable view of a `tokenizer.json`: every id with its text, plus merges.
#[derive(Clone, Debug)]
pub struct TokView {
    /// id → (text, is an added token).
    pub ids: BTreeMap<u32, (String, bool)>,
    /// Added-token objects by original content (to keep their flags).
    pub added_objs: BTreeMap<String, Value>,
    /// BPE merges.
    pub merges: Vec<(String, String)>,
    /// Merges were stored as `"a b"` strings (old format).
    pub merges_as_strings: bool,
}

impl TokView {
    /// Parse the parts of `tokenizer.json` the lab edits.
    pub fn parse(v: &Value) -> Result<TokView> {
        let model = v
            .get("model")
            .ok_or_else(|| anyhow!("tokenizer.json: no model"))?;
        let vocab = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow!("tokenizer.json: model.vocab is not an object (only BPE/WordPiece-style vocab maps are supported)"))?;
        let mut ids = BTreeMap::new();
        for (k, id) in vocab {
            let id = id
                .as_u64()
                .ok_or_else(|| anyhow!("tokenizer.json: vocab[{k:?}] is not an id"))?
                as u32;
            ids.insert(id, (k.clone(), false));
        }
        let mut added_objs = BTreeMap::new();
        if let Some(a) = v.get("added_tokens").and_then(Value::as_array) {
            for t in a {
                let id = t
                    .get("id")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| anyhow!("tokenizer.json: added token without id"))?
                    as u32;
                let c = t
                    .get("content")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("tokenizer.json: added token without content"))?;
                ids.insert(id, (c.to_string(), true));
                added_objs.insert(c.to_string(), t.clone());
            }
        }
        let mut merges = Vec::new();
        let mut merges_as_strings = false;
        if let Some(m) = model.get("merges").and_then(Value::as_array) {
            for x in m {
                match x {
                    Value::String(s) => {
                        merges_as_strings = true;
                        let (a, b) = s
                            .split_once(' ')
                            .ok_or_else(|| anyhow!("tokenizer.json: bad merge {s:?}"))?;
                        merges.push((a.to_string(), b.to_string()));
                    }
                    Value::Array(p) if p.len() == 2 => {
                        let a = p[0]
                            .as_str()
                            .ok_or_else(|| anyhow!("tokenizer.json: bad merge"))?;
                        let b = p[1]
                            .as_str()
                            .ok_or_else(|| anyhow!("tokenizer.json: bad merge"))?;
                        merges.push((a.to_string(), b.to_string()));
                    }
                    _ => bail!("tokenizer.json: bad merge entry {x}"),
                }
            }
        }
        Ok(TokView {
            ids,
            added_objs,
            merges,
            merges_as_strings,
        })
    }

    /// Write this view back into `v` (vocab, added tokens, merges).
    pub fn store(&self, v: &mut Value) -> Result<()> {
        let mut vocab = serde_json::Map::new();
        let mut added = Vec::new();
        for (id, (s, is_added)) in &self.ids {
            if *is_added {
                let mut o = self
                    .added_objs
                    .get(s)
                    .cloned()
                    .unwrap_or_else(|| added_token(*id, s));
                o["id"] = json!(id);
                added.push(o);
            } else {
                vocab.insert(s.clone(), json!(id));
            }
        }
        let merges: Vec<Value> = self
            .merges
            .iter()
            .map(|(a, b)| {
                if self.merges_as_strings {
                    json!(format!("{a} {b}"))
                } else {
                    json!([a, b])
                }
            })
            .collect();
        let model = v
            .get_mut("model")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| anyhow!("tokenizer.json: no model object"))?;
        model.insert("vocab".into(), Value::Object(vocab));
        model.insert("merges".into(), Value::Array(merges));
        if let Some(o) = v.as_object_mut() {
            o.insert("added_tokens".into(), Value::Array(added));
        }
        Ok(())
    }

    /// id of a text, if present.
    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.ids
            .iter()
            .find(|(_, (s, _))| s == text)
            .map(|(i, _)| *i)
    }

    /// Check internal consistency: unique texts, every merge's parts and product present.
    pub fn check(&self) -> Result<()> {
        let mut texts = HashSet::new();
        for (id, (s, _)) in &self.ids {
            if !texts.insert(s.as_str()) {
                bail!("tokenizer: text {s:?} appears twice (id {id})");
            }
        }
        for (a, b) in &self.merges {
            for t in [a.clone(), b.clone(), format!("{a}{b}")] {
                if !texts.contains(t.as_str()) {
                    bail!("tokenizer: merge ({a:?}, {b:?}) refers to missing token {t:?}");
                }
            }
        }
        Ok(())
    }
}

/// GPT-2's byte-level alphabet: byte → printable char (printable bytes map to themselves, the
/// rest to U+0100 onwards in order). The lab keeps its own copy, as an oracle independent of
/// the tool's reader; a test in the tool compares the two.
pub fn byte_alphabet() -> [char; 256] {
    let mut bs: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut out = [' '; 256];
    for (b, c) in bs.iter().zip(&cs) {
        out[*b as usize] = char::from_u32(*c).unwrap_or('?');
    }
    out
}
