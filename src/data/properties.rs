//! The properties codec: znode data ⇄ the JSON object shown as `properties.json`.
//!
//! zc.zk's rules, which any other ZooKeeper client can rely on:
//! * data that is a JSON object is that object;
//! * empty data is `{}`;
//! * any other data is `{"string_value": "<the data>"}`, and storing exactly
//!   `{"string_value": "..."}` stores the bare string again.
//!
//! What `cat` prints is the object pretty-printed with a final newline, every string
//! and number as stored; objects are stored compact. Key order is kept as written.
//!
//! Two promises bound what this codec may do to data (SPEC "The tree", "Changing
//! configuration"):
//! * **A file is at most about twice its data.** Indentation grows with depth, so a
//!   deeply nested megabyte would print as a hundred; past the budget, the deepest
//!   levels are printed compactly instead ([`render`]).
//! * **`>>` touches only the keys written.** The merge splices the written members
//!   into the stored text ([`merge_data`]), so every other key keeps its bytes —
//!   numbers such as `1E2` or `1.10`, escapes, spacing — and data that is not UTF-8
//!   is refused rather than rewritten.
//!
//! Two kinds of data another client may store are JSON objects that this codec does not
//! take apart as such (README "Configuration", "Choices"):
//! * **Nested deeper than serde_json reads** (128 levels): shown as its bytes, as they
//!   are (it is JSON, just too deep to re-indent); `>>` refuses it (`EINVAL`), since a
//!   merge would have to treat it as a string and lose every key; `>` replaces it.
//! * **Starting with a UTF-8 byte order mark** (`EF BB BF`): shown without the mark
//!   (the object it holds); `>>` merges into the object and keeps the mark in front,
//!   so every byte not written stays.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::data::jsontext;
use crate::error::{Error, Result};

/// The JSON object of a node's properties.
pub type Properties = Map<String, Value>;

/// The most bytes of data zkfs stores in one node. ZooKeeper's default `jute.maxbuffer`
/// is 1 MiB for a whole request, and a request over it makes the server drop the
/// connection (and with it every call in flight), so larger data is refused up front.
pub const MAX_DATA_BYTES: usize = 1_000_000;

/// The key under which non-JSON data is shown.
pub const STRING_VALUE: &str = "string_value";

/// How much larger than its data a rendering may be: twice, and a little for the
/// braces and newlines of tiny documents.
pub fn render_budget(data_len: usize) -> usize {
    2 * data_len + 64
}

/// The UTF-8 byte order mark some editors and clients put before JSON text.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The object text after a byte order mark, if `data` is a mark then one JSON object.
fn after_bom(data: &[u8]) -> Option<&[u8]> {
    data.strip_prefix(BOM).filter(|rest| jsontext::object_text(rest).is_some())
}

/// The properties that `data` stands for.
pub fn decode(data: &[u8]) -> Properties {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Properties::new();
    }
    if let Some(rest) = after_bom(data) {
        return decode(rest);
    }
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) {
        return map;
    }
    string_value(data)
}

fn string_value(data: &[u8]) -> Properties {
    let mut map = Properties::new();
    map.insert(STRING_VALUE.to_string(), Value::String(String::from_utf8_lossy(data).into_owned()));
    map
}

/// The bytes stored in ZooKeeper for `props`.
pub fn encode(props: &Properties) -> Vec<u8> {
    if props.len() == 1 {
        if let Some(Value::String(s)) = props.get(STRING_VALUE) {
            return s.as_bytes().to_vec();
        }
    }
    // Serialising a map of JSON values cannot fail.
    serde_json::to_vec(props).unwrap_or_default()
}

/// What `cat properties.json` prints for `data`: pretty-printed while that stays
/// within [`render_budget`], with the deepest levels compact where it would not (each
/// try stops at the budget, so a hostile node costs a few budgets of work and one of
/// memory).
///
/// Only data that is not JSON can show larger: a control byte shown in
/// `string_value` takes up to six bytes (`\u0001`), a byte that is not UTF-8 three.
pub fn render(data: &[u8]) -> Vec<u8> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return b"{}\n".to_vec();
    }
    if let Some(rest) = after_bom(data) {
        return render(rest);
    }
    if jsontext::is_deep_object(data) {
        // JSON too deep to re-indent: its bytes as they are, never as a string_value,
        // which would say it is not JSON.
        let mut out = data.trim_ascii().to_vec();
        out.push(b'\n');
        return out;
    }
    let Some(text) = jsontext::object_text(data) else {
        let mut out = serde_json::to_vec_pretty(&string_value(data)).unwrap_or_default();
        out.push(b'\n');
        return out;
    };
    // Within the budget the final newline still fits: `limit` leaves room for it.
    let limit = render_budget(data.len()) - 1;
    for cap in [usize::MAX, 32, 16, 8, 4, 2, 1, 0] {
        if let Some(mut out) = jsontext::reformat(text, cap, limit) {
            out.push(b'\n');
            return out;
        }
    }
    // Unreachable for valid text (compact is never longer than the data); shown as
    // stored rather than not at all.
    let mut out = text.trim().as_bytes().to_vec();
    out.push(b'\n');
    out
}

/// `>>`: the written keys replace or add to the existing ones; other keys stay.
pub fn merge(mut existing: Properties, written: Properties) -> Properties {
    for (k, v) in written {
        existing.insert(k, v);
    }
    existing
}

/// `>`: the data to store for the object written as `written` (text that is one JSON
/// object). Stored compact, every string and number as written; exactly
/// `{"string_value": "..."}` is stored as the bare string.
pub fn set_data(written: &[u8]) -> Vec<u8> {
    let Some(text) = jsontext::object_text(written) else { return encode(&decode(written)) };
    let (_, members) = jsontext::members(text);
    if members.iter().all(|m| m.key == STRING_VALUE) {
        return encode(&decode(written));
    }
    jsontext::reformat(text, 0, usize::MAX).unwrap_or_else(|| encode(&decode(written)))
}

/// `>` on a registration: the written object, keeping `key` (the `pid`) of `old` as
/// stored unless it is written.
pub fn set_keeping(old: &[u8], key: &str, written: &[u8]) -> Result<Vec<u8>> {
    let kept = jsontext::object_text(old)
        .and_then(|text| {
            let (_, members) = jsontext::members(text);
            let m = members.into_iter().rev().find(|m| m.key == key)?;
            let key = String::from_utf8_lossy(&to_json(&Value::String(key.to_string()))).into_owned();
            Some(format!("{{{key}:{}}}", &text[m.value]))
        })
        .unwrap_or_else(|| "{}".to_string());
    merge_data(kept.as_bytes(), written)
}

/// `>>` on stored bytes: the data to store once the object written as `written`
/// (text that is one JSON object) is merged into `old`.
///
/// The written members replace the values of their keys where they stand and the new
/// ones are appended, each value as written; every other byte of `old` stays as it
/// was.
///
/// A byte order mark before an object in `old` stays in front of the merged object.
///
/// # Notable errors
/// [`Error::InvalidDocument`] when `old` cannot be merged without loss: it is not
/// UTF-8 (it cannot be shown as it is, so a merge would rewrite bytes nobody asked to
/// change), or it is a JSON object nested deeper than serde_json reads (a merge would
/// have to take it for a string and lose its keys). `>` still replaces it.
pub fn merge_data(old: &[u8], written: &[u8]) -> Result<Vec<u8>> {
    if old.iter().all(u8::is_ascii_whitespace) {
        return Ok(set_data(written));
    }
    if let Some(rest) = after_bom(old) {
        return merge_data(rest, written).map(|merged| [BOM, &merged].concat());
    }
    if jsontext::is_deep_object(old) {
        return Err(Error::InvalidDocument(
            "the node's data is a JSON object nested deeper than 127 levels, which `>>` \
             cannot merge without losing its keys; replace it with `>` instead"
                .into(),
        ));
    }
    if std::str::from_utf8(old).is_err() {
        return Err(Error::InvalidDocument(
            "the node's data is not valid UTF-8, so `>>` cannot keep it as it is; \
             replace it with `>` instead"
                .into(),
        ));
    }
    let (Some(old_text), Some(new_text)) = (jsontext::object_text(old), jsontext::object_text(written)) else {
        return Ok(encode(&merge(decode(old), decode(written))));
    };
    let (open, members) = jsontext::members(old_text);
    let (_, new_members) = jsontext::members(new_text);
    if members.iter().chain(&new_members).all(|m| m.key == STRING_VALUE) {
        // Could come to exactly `{"string_value": "..."}`, which is stored bare.
        return Ok(encode(&merge(decode(old), decode(written))));
    }
    // A key written twice takes its last value, as serde_json reads it.
    let mut new_values: HashMap<&str, &str> = HashMap::new();
    let mut new_keys = Vec::new();
    for m in &new_members {
        if new_values.insert(&m.key, &new_text[m.value.clone()]).is_none() {
            new_keys.push(m.key.as_str());
        }
    }
    let mut out = Vec::with_capacity(old.len() + written.len());
    let mut copied = 0;
    for m in &members {
        if let Some(v) = new_values.get(m.key.as_str()) {
            out.extend_from_slice(&old[copied..m.value.start]);
            out.extend_from_slice(&compact(v));
            copied = m.value.end;
        }
    }
    let insert_at = members.last().map_or(open, |m| m.value.end);
    out.extend_from_slice(&old[copied..insert_at]);
    let old_keys: HashSet<&str> = members.iter().map(|m| m.key.as_str()).collect();
    let mut first = members.is_empty();
    for k in new_keys.into_iter().filter(|k| !old_keys.contains(k)) {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&to_json(&Value::String(k.to_string())));
        out.push(b':');
        out.extend_from_slice(&compact(new_values[k]));
    }
    out.extend_from_slice(&old[insert_at..]);
    Ok(out)
}

/// A written value as stored: compact, strings and numbers as written.
fn compact(value: &str) -> Vec<u8> {
    jsontext::reformat(value, 0, usize::MAX).unwrap_or_else(|| value.as_bytes().to_vec())
}

fn to_json(v: &Value) -> Vec<u8> {
    // Serialising a JSON value cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(v: Value) -> Properties {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn an_object_is_shown_as_itself_and_empty_data_as_an_empty_object() {
        assert_eq!(decode(br#"{"a": 1}"#), obj(json!({"a": 1})));
        assert_eq!(decode(b""), Properties::new());
        assert_eq!(render(b""), b"{}\n");
    }

    #[test]
    fn other_data_is_shown_as_string_value() {
        assert_eq!(decode(b"hello"), obj(json!({"string_value": "hello"})));
        assert_eq!(decode(b"[1,2]"), obj(json!({"string_value": "[1,2]"})));
        assert_eq!(decode(b"42"), obj(json!({"string_value": "42"})));
    }

    #[test]
    fn writing_exactly_string_value_stores_the_bare_string() {
        assert_eq!(encode(&obj(json!({"string_value": "hi"}))), b"hi");
        assert_eq!(decode(&encode(&obj(json!({"string_value": "hi"})))), obj(json!({"string_value": "hi"})));
        // With another key it stays an object.
        let two = obj(json!({"string_value": "hi", "b": 1}));
        assert_eq!(decode(&encode(&two)), two);
    }

    #[test]
    fn merge_keeps_other_keys_and_key_order() {
        let m = merge(obj(json!({"a": 1, "b": 2})), obj(json!({"b": 3, "c": 4})));
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"a":1,"b":3,"c":4}"#);
    }

    #[test]
    fn rendering_is_pretty_with_a_final_newline() {
        assert_eq!(render(br#"{"a":1}"#), b"{\n  \"a\": 1\n}\n");
    }

    fn merged(old: &str, written: &str) -> String {
        String::from_utf8(merge_data(old.as_bytes(), written.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn merging_keeps_every_other_key_byte_for_byte() {
        let old = r#"{"big":123456789012345678901234567890, "e" : 1E2,"f":1.10,"s":"\u00e9"}"#;
        assert_eq!(
            merged(old, r#"{"f": 2.50, "new": [1E3, {"x": "\/"}]}"#),
            r#"{"big":123456789012345678901234567890, "e" : 1E2,"f":2.50,"s":"\u00e9","new":[1E3,{"x":"\/"}]}"#
        );
        assert_eq!(merged("{}", r#"{"a": 1}"#), r#"{"a":1}"#);
        assert_eq!(merged(" { }\n", r#"{"a": 1, "b": 2, "a": 3}"#), " {\"a\":3,\"b\":2 }\n");
        assert_eq!(merged("", r#"{"a": 1E2}"#), r#"{"a":1E2}"#);
    }

    #[test]
    fn merging_into_other_data_follows_the_string_value_rule() {
        assert_eq!(merged("hello", r#"{"a": 1}"#), r#"{"string_value":"hello","a":1}"#);
        assert_eq!(merged("hello", r#"{"string_value": "bye"}"#), "bye");
        assert_eq!(merged(r#"{"string_value":"x"}"#, r#"{"string_value": "y"}"#), "y");
        assert_eq!(set_data(br#" {"string_value": "bare"} "#), b"bare");
        let kept = set_keeping(br#"{"pid": 42, "w": 1}"#, "pid", br#"{"w": 1E2}"#).unwrap();
        assert_eq!(kept, br#"{"pid":42,"w":1E2}"#);
        assert_eq!(set_keeping(b"{}", "pid", br#"{"w": 2}"#).unwrap(), br#"{"w":2}"#);
        assert_eq!(set_data(b"{ \"n\" : 1E2 }\n"), br#"{"n":1E2}"#);
    }

    #[test]
    fn merging_onto_data_that_is_not_utf8_is_refused() {
        let e = merge_data(b"\xff\xfe{", br#"{"a": 1}"#).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
    }

    /// `{"keep":1,"a":` + 130 `[` + 130 `]` + `}`: valid JSON, deeper than serde_json reads.
    fn deep() -> Vec<u8> {
        format!("{{\"keep\":1,\"a\":{}{}}}", "[".repeat(130), "]".repeat(130)).into_bytes()
    }

    #[test]
    fn deep_json_is_shown_as_it_is_and_never_merged() {
        let data = deep();
        let shown = render(&data);
        assert_eq!(shown, [data.as_slice(), b"\n"].concat());
        assert!(!String::from_utf8_lossy(&shown).contains(STRING_VALUE));
        let e = merge_data(&data, br#"{"z":1}"#).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert!(e.to_string().contains("deeper"), "{e}");
        // Within the limit it still merges.
        let ok = format!("{{\"keep\":1,\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        let merged = merged(&ok, r#"{"z":1}"#);
        assert!(merged.starts_with(&ok[..ok.len() - 1]) && merged.ends_with(r#","z":1}"#), "{merged}");
    }

    #[test]
    fn a_byte_order_mark_is_hidden_from_cat_and_kept_by_a_merge() {
        let data = b"\xEF\xBB\xBF{\"keep\": 1}";
        assert_eq!(render(data), b"{\n  \"keep\": 1\n}\n");
        assert_eq!(decode(data), obj(json!({"keep": 1})));
        assert_eq!(merge_data(data, br#"{"z": 2}"#).unwrap(), b"\xEF\xBB\xBF{\"keep\": 1,\"z\":2}");
        // A mark before something that is not an object is not taken away.
        assert_eq!(decode(b"\xEF\xBB\xBFhi"), obj(json!({"string_value": "\u{feff}hi"})));
    }

    #[test]
    fn numbers_are_shown_and_stored_as_written() {
        let data = br#"{"big":123456789012345678901234567890,"e":1E2,"f":1.10}"#;
        assert_eq!(
            String::from_utf8(render(data)).unwrap(),
            "{\n  \"big\": 123456789012345678901234567890,\n  \"e\": 1E2,\n  \"f\": 1.10\n}\n"
        );
        assert_eq!(set_data(data), data);
    }

    fn ws() -> impl Strategy<Value = &'static str> + Clone {
        prop::sample::select(vec![" ", "", "\n  ", "\t"])
    }

    /// A JSON object's text, its values from `value`.
    fn object_of(value: impl Strategy<Value = String> + Clone) -> impl Strategy<Value = String> + Clone {
        (prop::collection::vec((ws(), 0..5usize, ws(), ws(), value), 0..4), ws()).prop_map(|(members, end)| {
            let members: Vec<String> =
                members.into_iter().map(|(w1, k, w2, w3, v)| format!("{w1}\"k{k}\"{w2}:{w3}{v}")).collect();
            format!("{{{}{end}}}", members.join(","))
        })
    }

    /// Random JSON text: odd spacing, numbers in every form, escapes, nesting.
    fn json_text() -> impl Strategy<Value = String> + Clone {
        let leaf = prop_oneof![
            prop::sample::select(vec!["1E2", "1.10", "-0", "123456789012345678901234567890", "2e-3", "7"]),
            prop::sample::select(vec![r#""a""#, r#""\u00e9\/""#, r#""x\"y""#, r#""""#]),
            prop::sample::select(vec!["true", "null", "false"]),
            Just("[]"),
        ]
        .prop_map(String::from);
        leaf.prop_recursive(6, 64, 4, |inner| {
            let array = prop::collection::vec((inner.clone(), ws()), 0..4).prop_map(|items| {
                let items: Vec<String> = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, (v, w))| if i == 0 { v } else { format!("{w}{v}") })
                    .collect();
                format!("[{}]", items.join(","))
            });
            prop_oneof![2 => object_of(inner), 1 => array]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn model_rendering_and_merging_agree_with_serde_json(
            old in object_of(json_text()),
            written in object_of(json_text()),
        ) {
            let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();

            let shown = render(old.as_bytes());
            prop_assert!(shown.len() <= render_budget(old.len()), "{}", old);
            prop_assert_eq!(parse(&shown), parse(old.as_bytes()), "render of {}", old);

            let merged = merge_data(old.as_bytes(), written.as_bytes()).unwrap();
            let want = encode(&merge(decode(old.as_bytes()), decode(written.as_bytes())));
            prop_assert_eq!(decode(&merged), decode(&want), "{} >> {}", old, written);
            // Every member not written is there byte for byte.
            let merged = String::from_utf8(merged).unwrap();
            let written_keys = decode(written.as_bytes());
            if let Some(text) = jsontext::object_text(old.as_bytes()) {
                for m in jsontext::members(text).1.iter().filter(|m| !written_keys.contains_key(&m.key)) {
                    prop_assert!(merged.contains(&text[m.value.clone()]), "{} >> {}: {}", old, written, merged);
                }
            }
        }
    }

    #[test]
    fn a_rendering_is_never_more_than_about_twice_the_data() {
        // A megabyte of deeply nested arrays: 117 MB when pretty-printed in full.
        let deep = 60; // 120 levels: within what serde_json reads
        let inner = vec!["1"; 300_000].join(",");
        let doc = format!("{}{}{}", "{\"a\":[".repeat(deep), inner, "]}".repeat(deep));
        let data = doc.as_bytes();
        assert!(jsontext::object_text(data).is_some());
        let shown = render(data);
        assert!(shown.len() <= render_budget(data.len()), "{} bytes for {}", shown.len(), data.len());
        assert_eq!(serde_json::from_slice::<Value>(&shown).unwrap(), serde_json::from_slice::<Value>(data).unwrap());
        // A modest document is still pretty in full.
        let small = br#"{"a":{"b":{"c":[1,2]}}}"#;
        assert_eq!(render(small), [serde_json::to_vec_pretty(&decode(small)).unwrap(), b"\n".to_vec()].concat());
    }
}
