//! A model's vocabulary, read as data (never by running a tokenizer): `tokenizer.json`
//! (`model.vocab` as a map for BPE/WordPiece/WordLevel, as a list of `[piece, score]` for
//! Unigram, plus `added_tokens`), else `vocab.txt` (BERT WordPiece, one token per line, id =
//! line number), else `vocab.json` (GPT-2 style map).
//!
//! # Canonical token text
//!
//! Vocabularies spell the same text differently, so cross-vocabulary matching uses a canonical
//! form: **the text the token contributes to a decoded string, with a leading space when the
//! token starts a word**.
//!
//! - Byte-level BPE (GPT-2 alphabet; `ByteLevel` pre-tokenizer/decoder, or `vocab.json`): every
//!   character is mapped back to its byte (`Ġ` → space, `Ċ` → newline, …) and the bytes read as
//!   UTF-8; bytes that are not valid UTF-8 on their own (pieces of a multi-byte character) are
//!   written `<0xNN>`, the spelling of SentencePiece byte-fallback tokens.
//! - SentencePiece / Metaspace (`▁`): `▁` → space.
//! - WordPiece (`vocab.txt`, `"type": "WordPiece"`): `##x` → `x` (continuation); any other
//!   non-special token `x` → ` x` (word start).
//! - Special and added tokens keep their text unchanged.
//!
//! So `Ġthe`, `▁the` and WordPiece `the` are all ` the`; `the` and `##the` are `the`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::formats::gguf::MetaValue;
use crate::model::Model;
use crate::source::Source;

/// Largest vocabulary file read (tokenizer.json of 200k-token models is ~10–20 MB).
pub const MAX_VOCAB_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How token text is spelled, which decides the canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Spelling {
    /// GPT-2 byte-level BPE: each byte mapped to a printable character (`Ġ` for a space).
    ByteLevel,
    /// SentencePiece: `▁` marks a space.
    Metaspace,
    /// WordPiece: `##` marks a continuation; other tokens start a word.
    WordPiece,
    /// Text as is.
    Plain,
}

/// Token texts by id, read from one file.
#[derive(Clone, Debug)]
pub struct Vocab {
    /// The file it was read from (`tokenizer.json`, `vocab.txt`, `vocab.json`).
    pub file: String,
    /// `model.type` of tokenizer.json (`BPE`, `WordPiece`, `Unigram`, `WordLevel`), else the
    /// file kind.
    pub kind: String,
    /// How token text is spelled.
    pub spelling: Spelling,
    /// Raw token text by id.
    pub tokens: BTreeMap<u32, String>,
    /// Ids of added tokens marked `special`.
    pub special: BTreeSet<u32>,
    /// BPE merges as `"left right"` lines.
    pub merges: Vec<String>,
}

impl Vocab {
    /// A model's vocabulary: a GGUF file's `tokenizer.ggml.*` metadata, else the first
    /// vocabulary file of its folder ([`Vocab::load`]).
    pub fn of_model(model: &Model) -> Result<Option<Vocab>> {
        match model.gguf_tokenizer() {
            Some(meta) => Vocab::from_gguf(meta)
                .map(Some)
                .with_context(|| format!("{}: tokenizer.ggml metadata", model.describe())),
            None => Vocab::load(model.source()),
        }
    }

    /// Reads a GGUF vocabulary: `tokenizer.ggml.tokens` (id = position), `token_type`
    /// (3, control, marks a special token) and `merges`. `tokenizer.ggml.model` says how
    /// tokens are spelled: `gpt2` byte-level BPE, `llama` SentencePiece; `bert` is WordPiece
    /// re-spelled by llama.cpp's converter with `▁` for a word start, so Metaspace too.
    pub fn from_gguf(meta: &BTreeMap<String, MetaValue>) -> Result<Vocab> {
        let strings = |key: &str| -> Result<Vec<String>> {
            let Some(v) = meta.get(key) else {
                return Ok(Vec::new());
            };
            let items = v
                .as_array()
                .with_context(|| format!("{key} is not an array"))?;
            items
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_str()
                        .map(str::to_string)
                        .with_context(|| format!("{key}[{i}] is not a string"))
                })
                .collect()
        };
        let list = strings("tokenizer.ggml.tokens")?;
        if list.is_empty() {
            bail!("tokenizer.ggml.tokens is missing or empty");
        }
        let kind = meta
            .get("tokenizer.ggml.model")
            .and_then(MetaValue::as_str)
            .unwrap_or("")
            .to_string();
        let types = meta
            .get("tokenizer.ggml.token_type")
            .and_then(MetaValue::as_array)
            .unwrap_or(&[]);
        let mut tokens = BTreeMap::new();
        let mut special = BTreeSet::new();
        for (i, t) in list.into_iter().enumerate() {
            let id = u32::try_from(i)?;
            if types.get(i).and_then(MetaValue::as_f64) == Some(3.0) {
                special.insert(id);
            }
            tokens.insert(id, t);
        }
        let spelling = match kind.as_str() {
            "gpt2" => Spelling::ByteLevel,
            "llama" | "bert" | "t5" => Spelling::Metaspace,
            _ => Spelling::Plain,
        };
        Ok(Vocab {
            file: "tokenizer.ggml".into(),
            kind: format!("gguf {kind}"),
            spelling,
            tokens,
            special,
            merges: strings("tokenizer.ggml.merges")?,
        })
    }

    /// Reads the first vocabulary file the model has; `None` when it has none.
    pub fn load(source: &dyn Source) -> Result<Option<Vocab>> {
        for file in ["tokenizer.json", "vocab.txt", "vocab.json"] {
            if source.file(file).is_none() {
                continue;
            }
            let bytes = source
                .read_file(file, MAX_VOCAB_FILE_BYTES)
                .with_context(|| format!("{}: reading {file}", source.describe()))?;
            let v = match file {
                "tokenizer.json" => Vocab::from_tokenizer_json(&bytes),
                "vocab.txt" => Vocab::from_vocab_txt(&bytes),
                _ => Vocab::from_vocab_json(&bytes),
            }
            .with_context(|| format!("{}: {file}", source.describe()))?;
            return Ok(Some(v));
        }
        Ok(None)
    }

    /// Parses a Hugging Face `tokenizer.json`.
    pub fn from_tokenizer_json(bytes: &[u8]) -> Result<Vocab> {
        let j: Value = serde_json::from_slice(bytes).context("tokenizer.json is not valid JSON")?;
        let model = j
            .get("model")
            .context("tokenizer.json has no \"model\" object")?;
        let kind = model
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("BPE")
            .to_string();
        let mut tokens = BTreeMap::new();
        match model.get("vocab") {
            Some(Value::Object(map)) => {
                for (text, id) in map {
                    let id = id
                        .as_u64()
                        .and_then(|i| u32::try_from(i).ok())
                        .with_context(|| {
                            format!("tokenizer.json: model.vocab[{text:?}] is not a token id")
                        })?;
                    tokens.insert(id, text.clone());
                }
            }
            Some(Value::Array(list)) => {
                for (id, entry) in list.iter().enumerate() {
                    let text = entry
                        .get(0)
                        .and_then(Value::as_str)
                        .or_else(|| entry.as_str())
                        .with_context(|| {
                            format!("tokenizer.json: model.vocab[{id}] is not [piece, score]")
                        })?;
                    tokens.insert(u32::try_from(id)?, text.to_string());
                }
            }
            _ => bail!("tokenizer.json: model.vocab is neither a map nor a list"),
        }
        let mut special = BTreeSet::new();
        if let Some(added) = j.get("added_tokens").and_then(Value::as_array) {
            for (i, t) in added.iter().enumerate() {
                let id = t
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok())
                    .with_context(|| format!("tokenizer.json: added_tokens[{i}] has no id"))?;
                let text = t
                    .get("content")
                    .and_then(Value::as_str)
                    .with_context(|| format!("tokenizer.json: added_tokens[{i}] has no content"))?;
                tokens.insert(id, text.to_string());
                if t.get("special").and_then(Value::as_bool).unwrap_or(false) {
                    special.insert(id);
                }
            }
        }
        let merges = match model.get("merges") {
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, m)| match m {
                    Value::String(s) => Ok(s.clone()),
                    Value::Array(p) if p.len() == 2 => {
                        let side = |k: usize| p[k].as_str().unwrap_or_default();
                        Ok(format!("{} {}", side(0), side(1)))
                    }
                    _ => bail!("tokenizer.json: model.merges[{i}] is not a merge"),
                })
                .collect::<Result<Vec<_>>>()?,
            _ => Vec::new(),
        };
        let mentions = |key: &str, what: &str| {
            j.get(key)
                .is_some_and(|v| v.to_string().contains(&format!("\"{what}\"")))
        };
        let spelling = if kind == "WordPiece" {
            Spelling::WordPiece
        } else if mentions("pre_tokenizer", "ByteLevel") || mentions("decoder", "ByteLevel") {
            Spelling::ByteLevel
        } else if mentions("pre_tokenizer", "Metaspace")
            || mentions("decoder", "Metaspace")
            || kind == "Unigram"
            || tokens.values().any(|t| t.starts_with('\u{2581}'))
        {
            Spelling::Metaspace
        } else if tokens.values().any(|t| t.starts_with('\u{120}')) {
            Spelling::ByteLevel
        } else {
            Spelling::Plain
        };
        Ok(Vocab {
            file: "tokenizer.json".into(),
            kind,
            spelling,
            tokens,
            special,
            merges,
        })
    }

    /// Parses a BERT `vocab.txt` (id = line number).
    pub fn from_vocab_txt(bytes: &[u8]) -> Result<Vocab> {
        let text = std::str::from_utf8(bytes).context("vocab.txt is not UTF-8")?;
        let mut tokens = BTreeMap::new();
        let mut special = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let id = u32::try_from(i)?;
            let t = line.trim_end_matches('\r').to_string();
            if t.starts_with('[') && t.ends_with(']') && t.len() > 2 {
                special.insert(id);
            }
            tokens.insert(id, t);
        }
        Ok(Vocab {
            file: "vocab.txt".into(),
            kind: "WordPiece".into(),
            spelling: Spelling::WordPiece,
            tokens,
            special,
            merges: Vec::new(),
        })
    }

    /// Parses a GPT-2 style `vocab.json` (`{"token": id}`).
    pub fn from_vocab_json(bytes: &[u8]) -> Result<Vocab> {
        let map: BTreeMap<String, u64> =
            serde_json::from_slice(bytes).context("vocab.json is not a map of token → id")?;
        let mut tokens = BTreeMap::new();
        for (t, id) in map {
            tokens.insert(
                u32::try_from(id).with_context(|| format!("vocab.json: id {id} of {t:?}"))?,
                t,
            );
        }
        Ok(Vocab {
            file: "vocab.json".into(),
            kind: "BPE".into(),
            spelling: Spelling::ByteLevel,
            tokens,
            special: BTreeSet::new(),
            merges: Vec::new(),
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the vocabulary has no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The canonical text of a token (see the module docs).
    pub fn canonical(&self, id: u32) -> Option<String> {
        let t = self.tokens.get(&id)?;
        Some(if self.special.contains(&id) {
            t.clone()
        } else {
            canonical(t, self.spelling)
        })
    }

    /// Canonical text → id (the lowest id when several tokens share a canonical text).
    pub fn by_canonical(&self) -> HashMap<String, u32> {
        let mut m = HashMap::with_capacity(self.tokens.len());
        for &id in self.tokens.keys() {
            if let Some(c) = self.canonical(id) {
                m.entry(c).or_insert(id);
            }
        }
        m
    }

    /// SHA-256 of the merges, each line terminated by `\n` (the sionic scripts' convention).
    pub fn merges_sha256(&self) -> String {
        let mut h = Sha256::new();
        for m in &self.merges {
            h.update(m.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// SHA-256 of `id \t raw text \n` lines in id order.
    pub fn vocab_sha256(&self) -> String {
        let mut h = Sha256::new();
        for (id, t) in &self.tokens {
            h.update(format!("{id}\t{t}\n").as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// GPT-2's byte-level BPE alphabet: the printable char standing for each byte value.
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

/// The inverse of [`byte_alphabet`]: printable char → byte.
fn byte_decoder() -> &'static HashMap<char, u8> {
    static MAP: std::sync::OnceLock<HashMap<char, u8>> = std::sync::OnceLock::new();
    MAP.get_or_init(|| {
        byte_alphabet()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect()
    })
}

/// Bytes as text, invalid UTF-8 bytes written `<0xNN>`.
fn bytes_to_text(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("<0x{b:02X}>"));
        }
    }
    out
}

/// Canonical form of one (non-special) token text (see the module docs).
pub fn canonical(text: &str, spelling: Spelling) -> String {
    match spelling {
        Spelling::ByteLevel => {
            let dec = byte_decoder();
            let mut bytes = Vec::with_capacity(text.len());
            for ch in text.chars() {
                match dec.get(&ch) {
                    Some(&b) => bytes.push(b),
                    None => {
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            bytes_to_text(&bytes)
        }
        Spelling::Metaspace => text.replace('\u{2581}', " "),
        Spelling::WordPiece => match text.strip_prefix("##") {
            Some(rest) => rest.to_string(),
            None => format!(" {text}"),
        },
        Spelling::Plain => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_agree_across_spellings() {
        assert_eq!(canonical("\u{120}the", Spelling::ByteLevel), " the");
        assert_eq!(canonical("\u{10a}", Spelling::ByteLevel), "\n");
        assert_eq!(canonical("\u{2581}the", Spelling::Metaspace), " the");
        assert_eq!(canonical("the", Spelling::WordPiece), " the");
        assert_eq!(canonical("##the", Spelling::WordPiece), "the");
        assert_eq!(canonical("the", Spelling::ByteLevel), "the");
        // "é" is bytes C3 A9 → byte-level chars Ã ©; a lone first byte is not UTF-8
        assert_eq!(canonical("\u{c3}\u{a9}", Spelling::ByteLevel), "é");
        assert_eq!(canonical("\u{c3}", Spelling::ByteLevel), "<0xC3>");
    }

    #[test]
    fn reads_bpe_unigram_and_wordpiece() {
        let bpe = br#"{"added_tokens":[{"id":3,"content":"<|eot|>","special":true}],
            "pre_tokenizer":{"type":"ByteLevel"},
            "model":{"type":"BPE","vocab":{"a":0,"b":1,"\u0120a":2},"merges":[["a","b"],"\u0120 a"]}}"#;
        let v = Vocab::from_tokenizer_json(bpe).unwrap();
        assert_eq!(v.spelling, Spelling::ByteLevel);
        assert_eq!(v.len(), 4);
        assert_eq!(v.canonical(2).as_deref(), Some(" a"));
        assert_eq!(v.canonical(3).as_deref(), Some("<|eot|>"));
        assert!(v.special.contains(&3));
        assert_eq!(v.merges, vec!["a b", "\u{120} a"]);
        assert_eq!(v.merges_sha256().len(), 64);

        let uni =
            "{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"<unk>\",0.0],[\"\u{2581}x\",-1.5]]}}";
        let v = Vocab::from_tokenizer_json(uni.as_bytes()).unwrap();
        assert_eq!(v.spelling, Spelling::Metaspace);
        assert_eq!(v.canonical(1).as_deref(), Some(" x"));

        let v = Vocab::from_vocab_txt(b"[PAD]\nthe\n##s\n").unwrap();
        assert_eq!(v.canonical(1).as_deref(), Some(" the"));
        assert_eq!(v.canonical(2).as_deref(), Some("s"));
        assert_eq!(v.canonical(0).as_deref(), Some("[PAD]"));

        let v = Vocab::from_vocab_json(br#"{"\u0120hi": 5}"#).unwrap();
        assert_eq!(v.by_canonical().get(" hi"), Some(&5));
    }

    #[test]
    fn bad_files_are_named() {
        let e = Vocab::from_tokenizer_json(b"{").unwrap_err();
        assert!(format!("{e:#}").contains("tokenizer.json"));
        let e = Vocab::from_tokenizer_json(br#"{"model":{"vocab":{"a":-1}}}"#).unwrap_err();
        assert!(format!("{e:#}").contains("model.vocab"));
        let e = Vocab::from_vocab_json(b"[1]").unwrap_err();
        assert!(format!("{e:#}").contains("vocab.json"));
    }
}
