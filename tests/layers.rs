//! The folders of `src/` are layers, and this test keeps them so (docs/architecture.md):
//! every `crate::` path a file names points to its own folder or one below; no two files
//! name each other, directly or round a circle; `fuser` is named only in `kernel/`,
//! `zookeeper_client` only in `zookeeper/`; `Fs` is extended only in `fs/ops/` and `View`
//! only in `model/`; the tables of `fs/` and `model/` never name the types that use them.
//!
//! It reads the sources as text (comments dropped), as a reviewer would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers from the bottom up; a file may name its own layer and those before it.
const LAYERS: &[&str] = &["error", "sync", "data", "zookeeper", "model", "fs", "kernel", "cli", "main"];

/// Files that hold tables the operations above them use: they must not name those.
const TABLES: &[(&str, &[&str])] = &[
    ("fs/attr.rs", &["Fs", "View"]),
    ("fs/handles.rs", &["Fs"]),
    ("fs/locks.rs", &["Fs", "View"]),
    ("fs/scratch.rs", &["Fs", "View"]),
    ("model/tree.rs", &["View"]),
    ("model/inodes.rs", &["View", "Tree"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file, by its path under `src/`, with its comments dropped.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code: Vec<&str> = text
                .lines()
                .map(|l| match l.find("//") {
                    Some(i) => &l[..i],
                    None => l,
                })
                .collect();
            (p.strip_prefix(src()).unwrap().to_string_lossy().into_owned(), code.join("\n"))
        })
        .collect()
}

fn layer(file: &str) -> &str {
    let first = file.split('/').next().unwrap();
    match first.strip_suffix(".rs") {
        Some("lib") | Some("main") => "main",
        Some(module) => module,
        None => first,
    }
}

fn rank(layer: &str) -> usize {
    LAYERS.iter().position(|l| *l == layer).unwrap_or_else(|| panic!("{layer} is in no layer of LAYERS"))
}

/// The file a module path (`["fs", "ops", "locks"]`) lives in, if it is one of ours.
fn file_of(files: &BTreeMap<String, String>, parts: &[&str]) -> Option<String> {
    for n in (1..=parts.len()).rev() {
        let base = parts[..n].join("/");
        for candidate in [format!("{base}.rs"), format!("{base}/mod.rs")] {
            if files.contains_key(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The module path of a file: `fs/ops/mod.rs` is `["fs", "ops"]`.
fn module_of(file: &str) -> Vec<String> {
    let trimmed = file.strip_suffix("/mod.rs").or_else(|| file.strip_suffix(".rs")).unwrap();
    trimmed.split('/').map(String::from).collect()
}

/// The paths a file names: `crate::a::b` and `super::a`, resolved to module parts.
fn named_paths(file: &str, code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for start in [("crate::", true), ("super::", false)] {
        for (i, _) in code.match_indices(start.0) {
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':') {
                continue;
            }
            let rest = &code[i + start.0.len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            let path: Vec<String> = rest[..end].split("::").filter(|p| !p.is_empty()).map(String::from).collect();
            let mut full = if start.1 {
                Vec::new()
            } else {
                let mut m = module_of(file);
                m.pop();
                m
            };
            full.extend(path);
            out.push(full);
        }
    }
    out
}

fn edges(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (file, code) in files {
        let mut to = BTreeSet::new();
        // A file's own tests may name anything (`use super::*`).
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        for path in named_paths(file, code) {
            let parts: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(target) = file_of(files, &parts) {
                if target != *file {
                    to.insert(target);
                }
            }
        }
        graph.insert(file.clone(), to);
    }
    graph
}

#[test]
fn every_file_names_only_its_own_layer_or_those_below() {
    let files = sources();
    let mut up = Vec::new();
    for (file, to) in edges(&files) {
        for target in to {
            if rank(layer(&target)) > rank(layer(&file)) {
                up.push(format!("{file} -> {target}"));
            }
        }
    }
    assert!(up.is_empty(), "arrows that run up a layer:\n{}", up.join("\n"));
}

#[test]
fn no_two_files_name_each_other_even_round_a_circle() {
    let graph = edges(&sources());
    // Depth-first search; a grey file met again closes a circle.
    fn visit(
        f: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(f.to_string(), 1);
        stack.push(f.to_string());
        for t in &graph[f] {
            match state.get(t.as_str()).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|s| s == t).unwrap();
                    let mut circle = stack[i..].to_vec();
                    circle.push(t.clone());
                    return Some(circle);
                }
                0 => {
                    if let Some(c) = visit(t, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(f.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for f in graph.keys() {
        if state.get(f.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(circle) = visit(f, &graph, &mut state, &mut Vec::new()) {
                panic!("a circle of files: {}", circle.join(" -> "));
            }
        }
    }
}

fn names_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + word.len()..].chars().next();
        let edge = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        edge(before) && edge(after)
    })
}

#[test]
fn the_client_crates_are_named_only_in_their_folders() {
    let mut wrong = Vec::new();
    for (file, code) in sources() {
        if (code.contains("fuser::") || code.contains("use fuser")) && layer(&file) != "kernel" {
            wrong.push(format!("{file} names fuser"));
        }
        if code.contains("zookeeper_client::") && layer(&file) != "zookeeper" {
            wrong.push(format!("{file} names zookeeper_client"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_type_is_extended_only_from_its_own_folder() {
    let mut wrong = Vec::new();
    for (file, code) in sources() {
        if names_word(&code, "impl Fs") && !file.starts_with("fs/ops/") {
            wrong.push(format!("{file} extends Fs"));
        }
        if names_word(&code, "impl View") && !file.starts_with("model/") {
            wrong.push(format!("{file} extends View"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn tables_never_name_the_types_that_use_them() {
    let files = sources();
    let mut wrong = Vec::new();
    for (file, forbidden) in TABLES {
        let code = files.get(*file).unwrap_or_else(|| panic!("{file} is gone: update TABLES"));
        let code = code.split("#[cfg(test)]").next().unwrap();
        for word in *forbidden {
            if names_word(code, word) {
                wrong.push(format!("{file} names {word}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The checks above must be able to fail: a file naming an upper layer is seen.
#[test]
fn an_arrow_up_would_be_seen() {
    let mut files = BTreeMap::new();
    files.insert("data/mod.rs".to_string(), "use crate::kernel::fuse::ZkFuse;".to_string());
    files.insert("kernel/mod.rs".to_string(), String::new());
    files.insert("kernel/fuse.rs".to_string(), "use super::mod_thing;".to_string());
    let graph = edges(&files);
    assert_eq!(graph["data/mod.rs"], BTreeSet::from(["kernel/fuse.rs".to_string()]));
    assert_eq!(graph["kernel/fuse.rs"], BTreeSet::from(["kernel/mod.rs".to_string()]));
    assert!(rank(layer("kernel/fuse.rs")) > rank(layer("data/mod.rs")));
}
