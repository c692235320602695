//! JSON as the bytes it was written with: what the properties codec needs to show and
//! merge a node's data without rewriting a byte it was not asked to change.
//!
//! Going through `serde_json::Value` would re-encode every string and (without care)
//! every number, and building a `Value` of a hostile megabyte of tiny arrays costs tens
//! of megabytes. So the text is first checked once with serde_json (without building
//! anything), and then walked here as byte spans: the members of the top-level object
//! for `>>`, and the tokens to re-indent for `cat`. Every function here takes text that
//! [`object_text`] accepted; on anything else it stops early rather than panic.

use serde::de::IgnoredAny;

/// How deeply serde_json nests containers before it refuses a document (measured:
/// 127 parse, 128 do not). Skipping a value with `IgnoredAny` has no such limit, so it
/// is checked here, to agree with what `serde_json::Value` (and so zkfs) accepts.
const MAX_NESTING: usize = 127;

/// `data` as text if it is exactly one JSON object (surrounding whitespace allowed),
/// as serde_json (and so the rest of zkfs) reads it: valid UTF-8, nested at most
/// [`MAX_NESTING`] deep.
pub fn object_text(data: &[u8]) -> Option<&str> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    (nesting(data) <= MAX_NESTING).then_some(text)
}

/// True if `data` is one valid JSON object nested deeper than [`MAX_NESTING`]: JSON
/// another client may write that zkfs cannot take apart with serde_json, and so shows
/// as it is and never merges into.
pub fn is_deep_object(data: &[u8]) -> bool {
    let Some(first) = data.iter().find(|b| !b.is_ascii_whitespace()) else { return false };
    let Ok(text) = std::str::from_utf8(data) else { return false };
    *first == b'{' && serde_json::from_str::<IgnoredAny>(text).is_ok() && nesting(data) > MAX_NESTING
}

/// The deepest nesting of containers in valid JSON text.
fn nesting(b: &[u8]) -> usize {
    let (mut depth, mut max, mut p) = (0usize, 0usize, 0);
    while let Some(c) = b.get(p) {
        match c {
            b'"' => {
                p = skip_string(b, p);
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        p += 1;
    }
    max
}

/// One member of an object: its key (decoded) and where its value's text lies.
#[derive(Debug, PartialEq)]
pub struct Member {
    /// The key as a string (escapes decoded).
    pub key: String,
    /// Byte range of the value's text.
    pub value: std::ops::Range<usize>,
}

/// The members of the top-level object in `text`, and the offset just after its `{`.
pub fn members(text: &str) -> (usize, Vec<Member>) {
    let b = text.as_bytes();
    let mut pos = skip_ws(b, 0);
    pos += 1; // the `{`
    let open = pos;
    let mut out = Vec::new();
    loop {
        pos = skip_ws(b, pos);
        match b.get(pos) {
            Some(b'"') => {}
            Some(b',') => {
                pos += 1;
                continue;
            }
            _ => return (open, out),
        }
        let key_end = skip_string(b, pos);
        let key = serde_json::from_str::<String>(&text[pos..key_end]).unwrap_or_default();
        pos = skip_ws(b, key_end) + 1; // the `:`
        let start = skip_ws(b, pos);
        let end = skip_value(b, start);
        out.push(Member { key, value: start..end });
        pos = end;
    }
}

/// Writes `text` re-indented two spaces a level, as `serde_json::to_vec_pretty` would,
/// but with every string and number copied as written, and containers nested `cap`
/// levels deep or more written compactly. Gives up (`None`) as soon as the output
/// would pass `limit` bytes, so a hostile document costs at most `limit`.
pub fn reformat(text: &str, cap: usize, limit: usize) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Out { buf: Vec::with_capacity(limit.min(b.len() * 2)), limit };
    let start = skip_ws(b, 0);
    value(b, start, 0, cap, &mut out)?;
    Some(out.buf)
}

struct Out {
    buf: Vec<u8>,
    limit: usize,
}

impl Out {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        if self.buf.len() + bytes.len() > self.limit {
            return None;
        }
        self.buf.extend_from_slice(bytes);
        Some(())
    }

    fn newline(&mut self, depth: usize) -> Option<()> {
        if self.buf.len() + 1 + 2 * depth > self.limit {
            return None;
        }
        self.buf.push(b'\n');
        self.buf.resize(self.buf.len() + 2 * depth, b' ');
        Some(())
    }
}

/// Writes the value at `pos` (nested `depth` deep); returns where it ends.
fn value(b: &[u8], pos: usize, depth: usize, cap: usize, out: &mut Out) -> Option<usize> {
    match b.get(pos)? {
        open @ (b'{' | b'[') => {
            let close = if *open == b'{' { b'}' } else { b']' };
            let pretty = depth < cap;
            out.put(&[*open])?;
            let mut p = skip_ws(b, pos + 1);
            let mut first = true;
            while *b.get(p)? != close {
                if !first {
                    out.put(b",")?;
                }
                if pretty {
                    out.newline(depth + 1)?;
                }
                if *open == b'{' {
                    let key_end = skip_string(b, p);
                    out.put(&b[p..key_end])?;
                    out.put(if pretty { b": " } else { b":" })?;
                    p = skip_ws(b, skip_ws(b, key_end) + 1);
                }
                p = value(b, p, depth + 1, cap, out)?;
                p = skip_ws(b, p);
                if b.get(p) == Some(&b',') {
                    p = skip_ws(b, p + 1);
                }
                first = false;
            }
            if pretty && !first {
                out.newline(depth)?;
            }
            out.put(&[close])?;
            Some(p + 1)
        }
        b'"' => {
            let end = skip_string(b, pos);
            out.put(&b[pos..end])?;
            Some(end)
        }
        _ => {
            let end = skip_scalar(b, pos);
            if end == pos {
                return None;
            }
            out.put(&b[pos..end])?;
            Some(end)
        }
    }
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while b.get(pos).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

/// The end of the string starting at `pos` (just past its closing quote).
fn skip_string(b: &[u8], pos: usize) -> usize {
    let mut p = pos + 1;
    while let Some(c) = b.get(p) {
        match c {
            b'\\' => p += 2,
            b'"' => return p + 1,
            _ => p += 1,
        }
    }
    b.len()
}

/// The end of a number, `true`, `false` or `null` starting at `pos`.
fn skip_scalar(b: &[u8], pos: usize) -> usize {
    let mut p = pos;
    while b.get(p).is_some_and(|c| !matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')) {
        p += 1;
    }
    p
}

/// The end of the value starting at `pos`.
fn skip_value(b: &[u8], pos: usize) -> usize {
    match b.get(pos) {
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut p = pos;
            while let Some(c) = b.get(p) {
                match c {
                    b'"' => {
                        p = skip_string(b, p);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return p + 1;
                        }
                    }
                    _ => {}
                }
                p += 1;
            }
            b.len()
        }
        Some(b'"') => skip_string(b, pos),
        _ => skip_scalar(b, pos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn only_one_json_object_is_object_text() {
        assert!(object_text(b" {\"a\": [1, {}]}\n").is_some());
        for not in [&b"[1]"[..], b"42", b"\"s\"", b"{", b"{} {}", b"{\"a\":1} x", b"{\"a\":\"\xff\"}", b""] {
            assert!(object_text(not).is_none(), "{:?}", String::from_utf8_lossy(not));
        }
        for depth in [126, 127, 128, 200] {
            let deep = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            let serde = serde_json::from_str::<Value>(&deep).is_ok();
            assert_eq!(object_text(deep.as_bytes()).is_some(), serde, "nested {depth} deep");
        }
    }

    #[test]
    fn members_are_the_spans_of_each_value_as_written() {
        let text = r#" { "a" : 1E2 , "b\u0063":{"x":[1,"]"]},"d":"}" ,"e":-0.10}"#;
        let (open, m) = members(text);
        assert_eq!(&text[..open], " {");
        let got: Vec<(&str, &str)> = m.iter().map(|m| (m.key.as_str(), &text[m.value.clone()])).collect();
        assert_eq!(got, [("a", "1E2"), ("bc", r#"{"x":[1,"]"]}"#), ("d", r#""}""#), ("e", "-0.10")]);
        assert_eq!(members("{}").1, []);
    }

    #[test]
    fn reformatting_is_serde_json_pretty_printing_for_canonical_text() {
        for doc in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"a":{"b":[1,2,{"c":null}],"d":{},"e":[]},"f":"x\"y\\z","g":true}"#,
            r#"  {  "a" : [ ] , "b" : [ [ ] , { } ] }  "#,
        ] {
            let want = serde_json::to_vec_pretty(&serde_json::from_str::<Value>(doc).unwrap()).unwrap();
            assert_eq!(
                String::from_utf8(reformat(doc, usize::MAX, usize::MAX).unwrap()).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    #[test]
    fn deep_levels_are_compact_and_the_limit_is_kept() {
        let doc = r#"{"a": {"b": [1, 2]}, "c": 3}"#;
        assert_eq!(reformat(doc, 1, 100).unwrap(), b"{\n  \"a\": {\"b\":[1,2]},\n  \"c\": 3\n}");
        assert_eq!(reformat(doc, 0, 100).unwrap(), br#"{"a":{"b":[1,2]},"c":3}"#);
        assert!(reformat(doc, usize::MAX, 20).is_none());
    }

    #[test]
    fn strings_and_numbers_are_copied_as_written() {
        let doc = r#"{"n":123456789012345678901234567890,"e":1E2,"f":1.10,"s":"\u00e9\/"}"#;
        let out = String::from_utf8(reformat(doc, 0, usize::MAX).unwrap()).unwrap();
        assert_eq!(out, doc);
    }
}
