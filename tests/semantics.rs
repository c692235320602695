//! `docs/semantics.md` is checked: every statement in it names the test that checks
//! it, as `(test: FILE::FUNCTION)`, and every test it names exists (`fn FUNCTION` in
//! FILE). A statement is a bullet or a paragraph below the first `##` heading; the
//! introduction above it says how to read the document.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::semantics;

/// The statements of `markdown`: its bullets and paragraphs after the first `##`
/// heading, each with the line it starts on.
fn statements(markdown: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut started = false;
    let mut current: Option<(usize, String)> = None;
    let mut fenced = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let starts_bullet = line.starts_with("* ") || line.starts_with("- ");
        let ends = line.trim().is_empty() || line.starts_with('#') || starts_bullet;
        if ends || fenced {
            out.extend(current.take());
        }
        if line.starts_with("## ") {
            started = true;
        }
        if !started || fenced || line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match current.as_mut() {
            Some((_, text)) => {
                text.push(' ');
                text.push_str(line.trim());
            }
            None => current = Some((i + 1, line.trim().to_string())),
        }
    }
    out.extend(current);
    out
}

/// What is wrong with the statements of `markdown`: those naming no test, and the
/// tests named that do not exist (`defines` says whether FILE has `fn NAME`).
fn problems(markdown: &str, defines: impl Fn(&Path, &str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for (line, text) in statements(markdown) {
        let named = semantics::named_tests(&text);
        if named.is_empty() {
            out.push(format!("line {line}: names no test: {text}"));
        }
        for (file, name) in named {
            if !defines(Path::new(&file), &name) {
                out.push(format!("line {line}: names {file}::{name}, which does not exist"));
            }
        }
    }
    out
}

#[test]
fn every_statement_names_a_test_that_exists() {
    let text = semantics::text();
    assert!(statements(&text).len() > 50, "docs/semantics.md says too little to be read right");
    let wrong = problems(&text, semantics::defines);
    assert!(wrong.is_empty(), "docs/semantics.md:\n{}", wrong.join("\n"));
}

#[test]
fn every_heading_has_an_anchor_of_its_own() {
    let anchors = semantics::anchors(&semantics::text());
    let mut seen = BTreeSet::new();
    let twice: Vec<&String> = anchors.iter().filter(|a| !seen.insert(*a)).collect();
    assert!(twice.is_empty(), "headings with the same anchor: {twice:?}");
}

#[test]
fn a_statement_without_a_test_or_naming_a_missing_one_is_found() {
    let doc = "# T\n\nIntro, free.\n\n## A\n\n* Says something. (test: `tests/x.rs::there`)\n\
               * Says something\n  over two lines. (test: `tests/x.rs::there`, `tests/x.rs::gone`)\n\n\
               A paragraph with no test.\n\n* Untested.\n";
    let defines = |file: &Path, name: &str| file == Path::new("tests/x.rs") && name == "there";
    assert_eq!(
        problems(doc, defines),
        [
            "line 8: names tests/x.rs::gone, which does not exist",
            "line 11: names no test: A paragraph with no test.",
            "line 13: names no test: * Untested.",
        ]
    );
    assert!(semantics::defines(Path::new("tests/semantics.rs"), "every_statement_names_a_test_that_exists"));
    assert!(!semantics::defines(Path::new("tests/semantics.rs"), "every_statement_names_a_test"));
    assert_eq!(semantics::slug("Sizes and link counts"), "sizes-and-link-counts");
    assert_eq!(semantics::slug("create and mknod"), "create-and-mknod");
}
