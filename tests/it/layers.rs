//! The layering `src/lib.rs` states is true: no library module imports from a layer after it.

use std::collections::BTreeSet;
use std::path::Path;

/// The top-level modules in `src/lib.rs`'s order (each may import from those before it).
const LAYERS: [&str; 34] = [
    "formats",
    "dtype",
    "header",
    "arch",
    "files",
    "stats",
    "assignment",
    "metrics",
    "sampling",
    "align",
    "cka",
    "hidden_alignment",
    "awm",
    "procrustes",
    "curves",
    "roc",
    "source",
    "progress",
    "model",
    "vocab",
    "experiments",
    "inventory",
    "rubric",
    "calibration",
    "verdict",
    "report",
    "pipeline",
    "config",
    "bundle",
    "audit",
    "diff",
    "demo",
    "bank",
    "eval",
];

/// The top-level modules a source text names through `crate::` (single paths and groups);
/// comments and everything from the first `#[cfg(test)]` on are left out.
fn imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let head: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(head);
            }
        } else {
            out.insert(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    out
}

/// The library's source files: everything under `src` but the binary's (`src/bin`).
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.ends_with("src/bin") {
            continue;
        }
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_from_a_later_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let listed: BTreeSet<&str> = LAYERS.iter().copied().collect();
    assert_eq!(declared.iter().copied().collect::<BTreeSet<_>>(), listed);
    let rank = |m: &str| LAYERS.iter().position(|x| *x == m);
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    for f in all {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        if rel.ends_with("tests.rs") {
            continue;
        }
        let Some(own) = rank(&module) else { continue };
        for dep in imports(&std::fs::read_to_string(&f).unwrap()) {
            if rank(&dep).is_some_and(|r| r > own) {
                wrong.push(format!("{} imports crate::{dep}", rel.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
    // The command line lives with the binary: no library file names clap.
    let clap: Vec<String> = {
        let mut lib_files = Vec::new();
        files(&src, &mut lib_files);
        lib_files
            .into_iter()
            .filter(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                text.contains("clap::") || text.contains("use clap")
            })
            .map(|f| f.display().to_string())
            .collect()
    };
    assert!(clap.is_empty(), "library files that use clap: {clap:?}");
    // The checker itself sees both import forms.
    let seen = imports("use crate::{model::Model, stats};\nlet x = crate::cli::Cli;\n");
    assert_eq!(seen, ["cli", "model", "stats"].map(String::from).into());
}
