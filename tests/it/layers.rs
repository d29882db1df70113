//! The layering `src/lib.rs` states is true: no library module imports from a layer after it.

use std::collections::BTreeSet;
use std::path::Path;

/// The top-level modules in `src/lib.rs`'s order (each may import from those before it).
const LAYERS: [&str; 35] = [
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
    "record",
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

/// The code of a source text that is compiled outside tests: comments and everything from the
/// first `#[cfg(test)]` on are left out.
fn non_test_code(text: &str) -> String {
    text.split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `use` tree (`a::{b, c::{d, e}}`) as the paths it names (`a::b`, `a::c::d`, `a::c::e`).
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or("").to_string()];
    };
    let head = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand_use(&format!("{head}::{p}")))
        .collect()
}

/// Every path a file's code names through `crate::`, `super::` or `self::` (in `use` trees and
/// inline).
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for stmt in code.split("use ").skip(1) {
        let tree = stmt.split(';').next().unwrap_or("");
        if tree.starts_with("crate") || tree.starts_with("super") || tree.starts_with("self") {
            paths.extend(expand_use(tree));
        }
    }
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    for root in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(root) {
            if at > 0 && code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            paths.push(code[at..].chars().take_while(|&c| ident(c)).collect());
        }
    }
    paths
        .into_iter()
        .map(|p| {
            p.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// The file-level import cycles of a crate's source folder: each file a module, an edge where
/// a file's non-test code names an item of another file's module.
fn file_cycles(src: &Path) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    files(src, &mut all);
    let mut modules: std::collections::BTreeMap<Vec<String>, String> = Default::default();
    for f in &all {
        let rel = f.strip_prefix(src).unwrap().with_extension("");
        let mut m: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if m.last().is_some_and(|l| l == "tests") {
            continue;
        }
        if m.last()
            .is_some_and(|l| ["mod", "lib"].contains(&l.as_str()))
        {
            m.pop();
        }
        modules.insert(m, std::fs::read_to_string(f).unwrap());
    }
    let resolve = |path: &[String]| {
        (0..=path.len())
            .rev()
            .map(|k| path[..k].to_vec())
            .find(|p| modules.contains_key(p))
    };
    let mut edges: std::collections::BTreeMap<Vec<String>, BTreeSet<Vec<String>>> =
        Default::default();
    for (m, text) in &modules {
        for path in named_paths(&non_test_code(text)) {
            let mut here = m.clone();
            let mut rest = path.as_slice();
            match rest.first().map(String::as_str) {
                Some("crate") => {
                    here.clear();
                    rest = &rest[1..];
                }
                Some("super" | "self") => {
                    while let Some(head) = rest.first().filter(|h| *h == "super" || *h == "self") {
                        if head == "super" {
                            here.pop();
                        }
                        rest = &rest[1..];
                    }
                }
                _ => continue,
            }
            here.extend(rest.iter().cloned());
            if let Some(target) = resolve(&here).filter(|t| t != m) {
                edges.entry(m.clone()).or_default().insert(target);
            }
        }
    }
    // A cycle exists where a module reaches itself; report each module on one once.
    let mut cycles = Vec::new();
    let mut on_cycle = BTreeSet::new();
    for start in modules.keys() {
        if on_cycle.contains(start) {
            continue;
        }
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    on_cycle.extend(trail.iter().cloned());
                    cycles.push(trail.iter().map(|m| m.join("::")).collect());
                    stack.clear();
                    break;
                }
                if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    cycles
}

#[test]
fn no_file_level_import_cycles_in_any_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for src in ["src", "crates/lab/src", "crates/hubserver/src"] {
        let cycles = file_cycles(&root.join(src));
        assert!(
            cycles.is_empty(),
            "{src}: file-level import cycles:\n{}",
            cycles
                .iter()
                .map(|c| c.join(" -> "))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let d = crate::util::tmp();
    let write = |name: &str, text: &str| std::fs::write(d.path().join(name), text).unwrap();
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write("a.rs", "use crate::b::{Thing, other::{X}};\n");
    write(
        "b.rs",
        "pub fn f() { super::a::g() }\n#[cfg(test)]\nuse crate::a::T;\n",
    );
    assert_eq!(
        file_cycles(d.path()),
        vec![vec!["a".to_string(), "b".to_string()]]
    );
    write(
        "b.rs",
        "pub fn f() {}\n#[cfg(test)]\nfn t() { crate::a::g() }\n",
    );
    assert!(file_cycles(d.path()).is_empty());
}
