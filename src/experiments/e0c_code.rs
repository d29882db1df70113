//! E0c code lineage: the small text files a model ships (remote code `*.py`, `config.json`,
//! `generation_config.json`, `tokenizer_config.json`, `README.md`, `LICENSE`, chat templates
//! `*.jinja` and `chat_template.json`) compared as text. Corroboration of a shared codebase,
//! never proof of weight reuse. Files are data: nothing is executed, parsed as code or
//! imported; they are read through the source with a size cap (`max_file_bytes`) and decoded
//! as lossy UTF-8.
//!
//! Per path present in either model: whether it is byte-identical (blake3), the shared
//! non-trivial lines, and two similarities of normalised lines (whitespace collapsed, trimmed):
//! - `jaccard`: |shared line set| / |union line set| over non-trivial lines (at least
//!   `min_line_chars` characters with a letter or digit);
//! - `ratio`: difflib's `SequenceMatcher.ratio()` on line sequences, 2·M / (n_a + n_b) with M
//!   the longest common subsequence of all normalised lines (exact LCS, no junk heuristic;
//!   files over `max_lines` lines are cut there).
//!
//! Over all `*.py` files together: the `def` / `class` names both models define (found by a
//! line scan for `def NAME` / `class NAME`, not by parsing).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{Data, Experiment, Output, Plan, Subjects, Table, fmt, round9};
use crate::model::Model;

/// E0c's parameters (`[params.e0c]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Largest file read, in bytes; larger files are listed as too large.
    pub max_file_bytes: u64,
    /// Most files read per model.
    pub max_files: usize,
    /// Total bytes read per model; files past it are listed as too large.
    pub max_total_bytes: u64,
    /// Lines compared per file for `ratio`; longer files are cut there.
    pub max_lines: usize,
    /// Least characters of a non-trivial line.
    pub min_line_chars: usize,
    /// Longest list of shared `def`/`class` names kept per pair.
    pub max_names: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max_file_bytes: 2 << 20,
            max_files: 200,
            max_total_bytes: 32 << 20,
            max_lines: 5_000,
            min_line_chars: 8,
            max_names: 500,
        }
    }
}

/// E0c, code lineage: the small text files the models ship, compared as text.
#[derive(Default)]
pub struct CodeLineage {
    /// Its parameters.
    pub params: Params,
}

/// One file path present in either model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileComparison {
    /// Path relative to the model's root.
    pub path: String,
    /// A has the file.
    pub in_a: bool,
    /// B has the file.
    pub in_b: bool,
    /// Size of A's file in bytes.
    pub bytes_a: Option<u64>,
    /// Size of B's file in bytes.
    pub bytes_b: Option<u64>,
    /// Skipped for size (over `max_file_bytes`, or past `max_total_bytes`) in either model.
    pub too_large: bool,
    /// Byte-identical in A and B (blake3).
    pub identical: bool,
    /// Normalised lines of A's file.
    pub lines_a: usize,
    /// Normalised lines of B's file.
    pub lines_b: usize,
    /// Distinct non-trivial normalised lines in both.
    pub shared_lines: usize,
    /// Shared over all distinct non-trivial lines, 0–1 (NaN unless both have the file).
    pub jaccard: f64,
    /// difflib-style 2·LCS / (lines of A + lines of B), 0–1 (NaN unless both have the file).
    pub ratio: f64,
}

/// E0c's findings for one pair of models.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairCode {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// Text files read from A.
    pub files_a: usize,
    /// Text files read from B.
    pub files_b: usize,
    /// Paths present in both.
    pub files_in_both: usize,
    /// Of those, byte-identical files.
    pub files_identical: usize,
    /// Every path present in either, sorted.
    pub files: Vec<FileComparison>,
    /// `def`/`class` names A's `*.py` files define.
    pub py_defs_a: usize,
    /// `def`/`class` names B's `*.py` files define.
    pub py_defs_b: usize,
    /// Names both define (at most `max_names`).
    pub py_shared_defs: Vec<String>,
    /// Number of names both define (complete).
    pub py_shared_defs_count: usize,
}

/// E0c's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result0c {
    /// The parameters it ran with.
    pub params: Params,
    /// Each pair's findings, A~B first.
    pub pairs: Vec<PairCode>,
}

/// Whether a path is one of the text files E0c compares (by its file name).
pub fn is_lineage_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".py")
        || lower.ends_with(".jinja")
        || lower.starts_with("license")
        || matches!(
            lower.as_str(),
            "config.json"
                | "generation_config.json"
                | "tokenizer_config.json"
                | "readme.md"
                | "chat_template.json"
        )
}

/// Lines trimmed, with runs of whitespace collapsed to one space.
pub fn normalise_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn non_trivial(line: &str, min_chars: usize) -> bool {
    line.chars().count() >= min_chars && line.chars().any(char::is_alphanumeric)
}

/// Length of the longest common subsequence of two line sequences (O(n·m) time, O(m) memory).
pub fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (k, y) in b.iter().enumerate() {
            cur[k + 1] = if x == y {
                prev[k] + 1
            } else {
                prev[k + 1].max(cur[k])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// difflib-style ratio 2·M / (n_a + n_b) on lines (1 for two empty files).
pub fn line_ratio(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    2.0 * lcs_len(a, b) as f64 / (a.len() + b.len()) as f64
}

/// Names after `def` / `class` at the start of a (trimmed) line.
pub fn py_definitions(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim_start();
        let l = l.strip_prefix("async ").unwrap_or(l);
        let rest = l.strip_prefix("def ").or_else(|| l.strip_prefix("class "));
        if let Some(rest) = rest {
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// A lineage file: its size, and its text (lossy UTF-8) with the blake3 of its bytes when it
/// is within the size cap.
type TextFile = (u64, Option<(String, [u8; 32])>);

/// A model's lineage files by path.
fn read_files(model: &Model, p: &Params) -> Result<BTreeMap<String, TextFile>> {
    let mut out = BTreeMap::new();
    let source = model.source();
    let mut total = 0u64;
    for f in source.files().iter().filter(|f| is_lineage_file(&f.path)) {
        if out.len() >= p.max_files {
            break;
        }
        let text = if f.size <= p.max_file_bytes && total + f.size <= p.max_total_bytes {
            total += f.size;
            let bytes = source.read_file(&f.path, p.max_file_bytes)?;
            Some((
                String::from_utf8_lossy(&bytes).into_owned(),
                *blake3::hash(&bytes).as_bytes(),
            ))
        } else {
            None
        };
        out.insert(f.path.clone(), (f.size, text));
    }
    Ok(out)
}

impl CodeLineage {
    fn compare(&self, path: &str, a: Option<&TextFile>, b: Option<&TextFile>) -> FileComparison {
        let p = &self.params;
        let text = |x: Option<&TextFile>| x.and_then(|(_, t)| t.as_ref().map(|t| t.0.clone()));
        let digest = |x: Option<&TextFile>| x.and_then(|(_, t)| t.as_ref().map(|t| t.1));
        let (ta, tb) = (text(a), text(b));
        let lines = |t: &Option<String>| {
            let mut l = t.as_deref().map(normalise_lines).unwrap_or_default();
            l.truncate(p.max_lines);
            l
        };
        let (la, lb) = (lines(&ta), lines(&tb));
        let set = |l: &[String]| -> BTreeSet<String> {
            l.iter()
                .filter(|x| non_trivial(x, p.min_line_chars))
                .cloned()
                .collect()
        };
        let (sa, sb) = (set(&la), set(&lb));
        let shared = sa.intersection(&sb).count();
        let union = sa.union(&sb).count();
        let both = ta.is_some() && tb.is_some();
        FileComparison {
            path: path.into(),
            in_a: a.is_some(),
            in_b: b.is_some(),
            bytes_a: a.map(|x| x.0),
            bytes_b: b.map(|x| x.0),
            too_large: a.is_some_and(|x| x.1.is_none()) || b.is_some_and(|x| x.1.is_none()),
            identical: both && digest(a) == digest(b),
            lines_a: la.len(),
            lines_b: lb.len(),
            shared_lines: shared,
            jaccard: round9(if both && union > 0 {
                shared as f64 / union as f64
            } else {
                f64::NAN
            }),
            ratio: round9(if both { line_ratio(&la, &lb) } else { f64::NAN }),
        }
    }
}

impl Experiment for CodeLineage {
    fn id(&self) -> &'static str {
        "e0c"
    }

    /// Text files are read whole through the source in `run`; no tensor data is needed.
    fn plan(&self, _subjects: &Subjects, _plan: &mut Plan) {}

    fn run(&self, subjects: &Subjects, _data: &Data) -> Result<Output> {
        let p = &self.params;
        let files = subjects
            .models
            .iter()
            .map(|s| read_files(s.model, p))
            .collect::<Result<Vec<_>>>()?;
        let defs: Vec<BTreeSet<String>> = files
            .iter()
            .map(|fs| {
                fs.iter()
                    .filter(|(path, _)| path.ends_with(".py"))
                    .filter_map(|(_, (_, t))| t.as_ref().map(|t| t.0.as_str()))
                    .flat_map(py_definitions)
                    .collect()
            })
            .collect();
        let mut pairs = Vec::new();
        for (i, j) in subjects.pairs() {
            let paths: BTreeSet<&String> = files[i].keys().chain(files[j].keys()).collect();
            let cmp: Vec<FileComparison> = paths
                .into_iter()
                .map(|path| self.compare(path, files[i].get(path), files[j].get(path)))
                .collect();
            let shared: Vec<String> = defs[i].intersection(&defs[j]).cloned().collect();
            pairs.push(PairCode {
                pair: subjects.pair_label(i, j),
                primary: Subjects::is_primary(i, j),
                files_a: files[i].len(),
                files_b: files[j].len(),
                files_in_both: cmp.iter().filter(|c| c.in_a && c.in_b).count(),
                files_identical: cmp.iter().filter(|c| c.identical).count(),
                files: cmp,
                py_defs_a: defs[i].len(),
                py_defs_b: defs[j].len(),
                py_shared_defs_count: shared.len(),
                py_shared_defs: shared.into_iter().take(p.max_names).collect(),
            });
        }
        Output::new(
            "e0c",
            &Result0c {
                params: p.clone(),
                pairs,
            },
        )
    }
}

/// This experiment's tables, from its result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result0c = super::readback::from_value(result)?;
    Ok(build_tables(&r.pairs))
}

fn build_tables(pairs: &[PairCode]) -> Vec<Table> {
    let mut t = Table::new(
        "e0c_files",
        &[
            "pair",
            "primary",
            "path",
            "in_a",
            "in_b",
            "bytes_a",
            "bytes_b",
            "too_large",
            "identical",
            "lines_a",
            "lines_b",
            "shared_lines",
            "jaccard",
            "ratio",
        ],
    );
    let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    for p in pairs {
        for f in &p.files {
            t.rows.push(vec![
                p.pair.clone(),
                p.primary.to_string(),
                f.path.clone(),
                f.in_a.to_string(),
                f.in_b.to_string(),
                opt(f.bytes_a),
                opt(f.bytes_b),
                f.too_large.to_string(),
                f.identical.to_string(),
                f.lines_a.to_string(),
                f.lines_b.to_string(),
                f.shared_lines.to_string(),
                fmt(f.jaccard),
                fmt(f.ratio),
            ]);
        }
    }
    let mut d = Table::new(
        "e0c_python",
        &[
            "pair",
            "primary",
            "defs_a",
            "defs_b",
            "shared",
            "shared_names",
        ],
    );
    for p in pairs {
        d.rows.push(vec![
            p.pair.clone(),
            p.primary.to_string(),
            p.py_defs_a.to_string(),
            p.py_defs_b.to_string(),
            p.py_shared_defs_count.to_string(),
            p.py_shared_defs.join(" "),
        ]);
    }
    vec![t, d]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        normalise_lines(s)
    }

    #[test]
    fn ratio_is_difflibs_on_lines() {
        // difflib.SequenceMatcher(None, ["a","b","c","d"], ["a","c","d","e"]).ratio() == 0.75
        assert_eq!(line_ratio(&lines("a\nb\nc\nd"), &lines("a\nc\nd\ne")), 0.75);
        assert_eq!(line_ratio(&lines(""), &lines("")), 1.0);
        assert_eq!(line_ratio(&lines("x"), &lines("y")), 0.0);
        assert_eq!(normalise_lines("  a   b \t c  "), vec!["a b c".to_string()]);
    }

    #[test]
    fn definitions_and_file_selection() {
        let src = "import os\nclass Glm4MoeModel(nn.Module):\n    def forward(self, x):\n  async def  _run():\n# def not_this\nx = 'def nope'\n";
        let d = py_definitions(src);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            vec!["Glm4MoeModel", "_run", "forward"]
        );
        for yes in [
            "modeling_glm4_moe.py",
            "config.json",
            "README.md",
            "chat_template.jinja",
            "sub/chat_template.json",
            "LICENSE",
            "generation_config.json",
            "tokenizer_config.json",
        ] {
            assert!(is_lineage_file(yes), "{yes}");
        }
        for no in [
            "model.safetensors",
            "tokenizer.json",
            "model.safetensors.index.json",
        ] {
            assert!(!is_lineage_file(no), "{no}");
        }
    }
}
