//! The JSON document a program writes into `properties.json` or a registration file.
//!
//! Shells ignore errors from `close`, so a change must be applied — and its errors
//! reported — by the `write` call that completes the document. A [`Document`]
//! collects the bytes of one open file, however many `write` calls bring them, and
//! after each one says whether they are still an incomplete JSON object, a complete
//! one (to apply now), or something that can no longer become one (to refuse now).
//!
//! Once a document has been refused, or once its object has been applied, the open
//! file takes nothing but whitespace: a second object in one open would make "set"
//! and "update" ambiguous.

use serde_json::Value;

use crate::data::properties::Properties;
use crate::error::{Error, Result};

/// The most bytes one open file may carry: ZooKeeper refuses far less anyway, and the
/// bound keeps a runaway writer from growing the daemon without end.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// Below this size a document is re-parsed after every write, so that bytes that can no
/// longer form an object (`{bad`) fail the write that brings them. Larger documents
/// are parsed once their braces balance, which keeps big uploads linear.
const EAGER_PARSE_BYTES: usize = 64 * 1024;

/// What the bytes written so far amount to.
#[derive(Debug, PartialEq)]
pub enum Progress {
    /// Nothing but whitespace yet, or a document already applied followed by whitespace.
    Nothing,
    /// The start of an object; more bytes are needed.
    Incomplete,
    /// A complete JSON object: apply it now.
    Complete(Properties),
}

/// A [`Document`] as handed over: its bytes, `None` while open (`""` once applied, the
/// error once refused), and whether it was written in order.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct HandedDocument {
    buf: Vec<u8>,
    state: Option<String>,
    in_order: bool,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Open,
    Applied,
    /// Refused: every later write fails with the same error.
    Failed(Error),
}

/// The bytes written through one open file.
#[derive(Debug, Default)]
pub struct Document {
    buf: Vec<u8>,
    state: State,
    /// Brace depth and string state of `buf`, for appends in order.
    scan: Scanner,
    /// False once a write landed somewhere other than the end; the scanner is then
    /// no longer trusted and every write re-parses.
    in_order: bool,
}

impl Document {
    /// An empty document.
    pub fn new() -> Document {
        Document { in_order: true, ..Default::default() }
    }

    /// Adds `data`, written at `offset` (`None`: appended), and says what the document
    /// now is. An error means the write must fail; the document then refuses all else.
    pub fn write(&mut self, offset: Option<u64>, data: &[u8]) -> Result<Progress> {
        match &self.state {
            State::Failed(e) => return Err(e.clone()),
            State::Applied => {
                if data.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Progress::Nothing);
                }
                return self.fail("only one JSON object can be written per open; it was already applied".into());
            }
            State::Open => {}
        }
        let end = match offset {
            Some(off) => usize::try_from(off).unwrap_or(usize::MAX).saturating_add(data.len()),
            None => self.buf.len() + data.len(),
        };
        if end > MAX_DOCUMENT_BYTES {
            let e = Error::TooLarge(format!("document larger than {MAX_DOCUMENT_BYTES} bytes"));
            self.state = State::Failed(e.clone());
            return Err(e);
        }
        match offset {
            Some(off) if off as usize != self.buf.len() => {
                let off = off as usize;
                self.in_order = false;
                if self.buf.len() < end {
                    self.buf.resize(end, b' ');
                }
                self.buf[off..end].copy_from_slice(data);
            }
            _ => {
                self.scan.feed(data);
                self.buf.extend_from_slice(data);
            }
        }
        self.progress()
    }

    /// The document as handed to the next process image of the mount (`zkfs reload`).
    pub fn handed(&self) -> HandedDocument {
        let state = match &self.state {
            State::Open => None,
            State::Applied => Some(String::new()),
            State::Failed(e) => Some(e.to_string()),
        };
        HandedDocument { buf: self.buf.clone(), state, in_order: self.in_order }
    }

    /// The document [`Document::handed`] gave.
    pub fn restored(h: HandedDocument) -> Document {
        let mut scan = Scanner::default();
        if h.in_order {
            scan.feed(&h.buf);
        }
        let state = match h.state {
            None => State::Open,
            Some(e) if e.is_empty() => State::Applied,
            Some(e) => State::Failed(Error::InvalidDocument(e)),
        };
        Document { buf: h.buf, state, scan, in_order: h.in_order }
    }

    /// Called at `close`: a document still incomplete fails there.
    pub fn finish(&self) -> Result<()> {
        match &self.state {
            State::Open if !self.buf.iter().all(u8::is_ascii_whitespace) => Err(Error::InvalidDocument(format!(
                "incomplete JSON object at close ({} bytes); nothing was changed",
                self.buf.len()
            ))),
            _ => Ok(()),
        }
    }

    /// Records that the complete object was applied (or was refused by ZooKeeper).
    pub fn set_applied(&mut self, result: &Result<()>) {
        self.state = match result {
            Ok(()) => State::Applied,
            Err(e) => State::Failed(e.clone()),
        };
    }

    /// The bytes written so far: once [`Progress::Complete`], exactly the object's text
    /// (and whitespace).
    pub fn text(&self) -> &[u8] {
        &self.buf
    }

    /// True when the bytes are not yet a whole object (or nothing was written).
    pub fn is_pending(&self) -> bool {
        matches!(self.state, State::Open) && !self.buf.iter().all(u8::is_ascii_whitespace)
    }

    fn fail<T>(&mut self, why: String) -> Result<T> {
        let e = Error::InvalidDocument(why);
        self.state = State::Failed(e.clone());
        Err(e)
    }

    fn progress(&mut self) -> Result<Progress> {
        let Some(first) = self.buf.iter().position(|b| !b.is_ascii_whitespace()) else {
            return Ok(Progress::Nothing);
        };
        if self.buf[first] != b'{' {
            let shown = String::from_utf8_lossy(&self.buf[first..self.buf.len().min(first + 20)]).into_owned();
            return self.fail(format!("properties must be one JSON object like {{\"key\": \"value\"}}; got {shown:?}"));
        }
        let may_be_complete = !self.in_order || self.scan.balanced();
        if !may_be_complete && self.buf.len() > EAGER_PARSE_BYTES {
            return Ok(Progress::Incomplete);
        }
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        match stream.next() {
            Some(Ok(Value::Object(map))) => {
                let rest = &self.buf[stream.byte_offset()..];
                if rest.iter().all(u8::is_ascii_whitespace) {
                    Ok(Progress::Complete(map))
                } else {
                    self.fail("more than one JSON value written; write exactly one object".into())
                }
            }
            Some(Ok(_)) => self.fail("properties must be a JSON object".into()),
            Some(Err(e)) if e.is_eof() => Ok(Progress::Incomplete),
            Some(Err(e)) => self.fail(format!("invalid JSON: {e}")),
            None => Ok(Progress::Nothing),
        }
    }
}

/// Tracks whether the top-level braces of an in-order byte stream are balanced.
#[derive(Debug, Default)]
struct Scanner {
    depth: u32,
    opened: bool,
    in_string: bool,
    escaped: bool,
}

impl Scanner {
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    self.opened = true;
                }
                b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
    }

    fn balanced(&self) -> bool {
        self.opened && self.depth == 0 && !self.in_string
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn complete(p: Result<Progress>) -> Properties {
        match p {
            Ok(Progress::Complete(m)) => m,
            other => panic!("expected a complete object, got {other:?}"),
        }
    }

    #[test]
    fn one_write_with_a_whole_object_completes_it() {
        let mut d = Document::new();
        let m = complete(d.write(None, b"{\"a\": 1}\n"));
        assert_eq!(Value::Object(m), json!({"a": 1}));
    }

    #[test]
    fn an_object_arriving_over_many_writes_and_lines_completes_at_the_last() {
        let mut d = Document::new();
        assert_eq!(d.write(None, b"{\n  \"a\":").unwrap(), Progress::Incomplete);
        assert_eq!(d.write(None, b" \"x}y\",\n").unwrap(), Progress::Incomplete);
        let m = complete(d.write(None, b" \"b\": [1, {\"c\": 2}]\n}\n"));
        assert_eq!(Value::Object(m), json!({"a": "x}y", "b": [1, {"c": 2}]}));
    }

    #[test]
    fn bytes_that_cannot_become_an_object_fail_the_write_that_brings_them() {
        for bad in [&b"["[..], b"4", b"{bad", b"\"str\"", b"{\"a\":1}}"] {
            let mut d = Document::new();
            let err = d.write(None, bad).unwrap_err();
            assert_eq!(err.errno(), libc::EINVAL, "{bad:?}");
            // And the document stays refused.
            assert!(d.write(None, b"{}").is_err());
        }
    }

    #[test]
    fn an_incomplete_document_fails_at_close_and_whitespace_does_not() {
        let mut d = Document::new();
        d.write(None, b"{\"a\":").unwrap();
        assert_eq!(d.finish().unwrap_err().errno(), libc::EINVAL);
        let mut d = Document::new();
        assert_eq!(d.write(None, b"\n  \n").unwrap(), Progress::Nothing);
        assert!(d.finish().is_ok());
    }

    #[test]
    fn after_an_applied_object_only_whitespace_is_accepted() {
        let mut d = Document::new();
        complete(d.write(None, b"{}"));
        d.set_applied(&Ok(()));
        assert_eq!(d.write(None, b"\n").unwrap(), Progress::Nothing);
        assert!(d.write(None, b"{}").is_err());
    }

    #[test]
    fn a_large_document_in_many_writes_is_parsed_when_its_braces_balance() {
        let mut d = Document::new();
        d.write(None, b"{\"big\": \"").unwrap();
        let chunk = vec![b'x'; 4096];
        for _ in 0..100 {
            assert_eq!(d.write(None, &chunk).unwrap(), Progress::Incomplete);
        }
        let m = complete(d.write(None, b"\"}"));
        assert_eq!(m["big"].as_str().unwrap().len(), 409_600);
    }

    #[test]
    fn too_many_bytes_fail_with_efbig() {
        let mut d = Document::new();
        d.write(None, b"{\"a\": \"").unwrap();
        let err = d.write(None, &vec![b'x'; MAX_DOCUMENT_BYTES]).unwrap_err();
        assert_eq!(err.errno(), libc::EFBIG);
        // A writer retrying after a short write sees the same error.
        assert_eq!(d.write(None, b"x").unwrap_err().errno(), libc::EFBIG);
    }

    #[test]
    fn writes_at_offsets_build_the_document_in_place() {
        let mut d = Document::new();
        assert_eq!(d.write(Some(0), b"{\"a\":").unwrap(), Progress::Incomplete);
        let m = complete(d.write(Some(5), b"2}"));
        assert_eq!(Value::Object(m), json!({"a": 2}));
    }

    /// What serde_json, on the whole input, says a document must come to.
    #[derive(Debug, PartialEq)]
    enum Expected {
        Applied(Properties),
        Refused,
        IncompleteAtClose,
    }

    fn oracle(doc: &[u8]) -> Expected {
        match serde_json::from_slice::<Value>(doc) {
            Ok(Value::Object(m)) => Expected::Applied(m),
            Err(e) if e.is_eof() && doc.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => {
                Expected::IncompleteAtClose
            }
            _ => Expected::Refused,
        }
    }

    fn documents() -> Vec<Vec<u8>> {
        let big: Vec<u8> = {
            let fields: Vec<String> = (0..5000).map(|i| format!("\"k{i}\": \"}}{{[\\\"{i}]\"")).collect();
            format!("{{{}}}", fields.join(",\n")).into_bytes()
        };
        assert!(big.len() > EAGER_PARSE_BYTES);
        let big_unterminated = big[..big.len() - 1].to_vec();
        let small: [&[u8]; 8] = [
            b"{\"a\": 1, \"b\": [1, 2, {\"c\": \"}{\"}], \"d\": \"\\\"\"}\n",
            b"  {\n  \"nested\": {\"deep\": {\"er\": null}},\n  \"t\": true\n}\n\n",
            b"{}",
            b"[1, 2]",
            b"{\"a\": }",
            b"{\"a\": 1}{\"b\": 2}",
            b"\"just a string\"",
            b"{\"unterminated\": \"abc",
        ];
        [big, big_unterminated].into_iter().chain(small.iter().map(|d| d.to_vec())).collect()
    }

    /// Writes `doc` in pieces (each cut at `cuts[i]` of what is left; at the end of
    /// the cuts, the rest at once) and checks it comes to what the whole document is.
    fn split_comes_to_the_whole(doc: &[u8], cuts: &[prop::sample::Index]) -> std::result::Result<(), TestCaseError> {
        let expected = oracle(doc);
        let shown = String::from_utf8_lossy(&doc[..doc.len().min(60)]).into_owned();
        let mut d = Document::new();
        let mut rest = doc;
        let mut outcome = None;
        let mut cuts = cuts.iter();
        while !rest.is_empty() {
            let n = cuts.next().map_or(rest.len(), |c| 1 + c.index(rest.len()));
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            match d.write(None, piece) {
                Err(e) => {
                    outcome = Some(Err(e.errno()));
                    break;
                }
                Ok(Progress::Complete(m)) => outcome = Some(Ok(Some(m))),
                Ok(_) => outcome = Some(Ok(None)),
            }
        }
        match (&expected, outcome) {
            (Expected::Applied(m), Some(Ok(Some(got)))) => {
                prop_assert_eq!(m, &got, "{}", shown);
                prop_assert!(rest.is_empty(), "{}: applied before the last write", shown);
            }
            (Expected::Refused, Some(Err(errno))) => prop_assert_eq!(errno, libc::EINVAL, "{}", shown),
            (Expected::IncompleteAtClose, Some(Ok(None))) => prop_assert!(d.finish().is_err(), "{}", shown),
            (e, got) => prop_assert!(false, "{}: expected {:?}, got {:?}", shown, e, got),
        }
        Ok(())
    }

    /// Each document written whole.
    #[test]
    fn a_document_written_at_once_comes_to_what_it_is() {
        for doc in documents() {
            split_comes_to_the_whole(&doc, &[]).map_err(|e| e.to_string()).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Model: however a document is split into writes, it comes to what serde_json
        /// says of the whole — applied at the last write, refused at some write, or
        /// refused at close — and a refusal is never later than the last write.
        #[test]
        fn any_split_of_a_document_comes_to_what_the_whole_document_is(
            which in 0..10usize,
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..300),
        ) {
            let docs = documents();
            split_comes_to_the_whole(&docs[which % docs.len()], &cuts)?;
        }
    }
}
