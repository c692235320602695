//! Reading `docs/semantics.md` for the tests that check it: its heading anchors (for
//! tests/pjdfstest.rs's expected failures) and the tests its statements name (for
//! tests/semantics.rs).

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The text of `docs/semantics.md`.
pub fn text() -> String {
    let path = root().join("docs/semantics.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The anchor of a heading as GitHub makes it: lower case, punctuation dropped except
/// `-` and `_`, each space a `-` (`## Owners and modes` → `owners-and-modes`).
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of every heading of `markdown`, in order.
pub fn anchors(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The tests a piece of text names as `` (test: `FILE::NAME`) `` (several may follow
/// one `test:`, comma-separated, each in backquotes): `(FILE, NAME)` pairs.
pub fn named_tests(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("(test") {
        rest = &rest[at..];
        let end = rest.find(')').unwrap_or(rest.len());
        for quoted in rest[..end].split('`').skip(1).step_by(2) {
            if let Some((file, name)) = quoted.rsplit_once("::") {
                out.push((file.to_string(), name.to_string()));
            }
        }
        rest = &rest[end..];
    }
    out
}

/// True if `file` (relative to the repository) defines a function `name`.
pub fn defines(file: &Path, name: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(root().join(file)) else { return false };
    let needle = format!("fn {name}");
    text.match_indices(&needle).any(|(at, _)| {
        let next = text[at + needle.len()..].chars().next();
        !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}
