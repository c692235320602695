//! The properties codec: znode data ⇄ the JSON object shown as `properties.json`.
//!
//! zc.zk's rules, which any other ZooKeeper client can rely on:
//! * data that is a JSON object is that object;
//! * empty data is `{}`;
//! * any other data is `{"string_value": "<the data>"}`, and storing exactly
//!   `{"string_value": "..."}` stores the bare string again.
//!
//! What `cat` prints is the object pretty-printed with a final newline; objects are
//! stored compact. Key order is kept as written.

use serde_json::{Map, Value};

/// The JSON object of a node's properties.
pub type Properties = Map<String, Value>;

/// The most bytes of data zkfs stores in one node. ZooKeeper's default `jute.maxbuffer`
/// is 1 MiB for a whole request, and a request over it makes the server drop the
/// connection (and with it every call in flight), so larger data is refused up front.
pub const MAX_DATA_BYTES: usize = 1_000_000;

/// The key under which non-JSON data is shown.
pub const STRING_VALUE: &str = "string_value";

/// The properties that `data` stands for.
pub fn decode(data: &[u8]) -> Properties {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Properties::new();
    }
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) {
        return map;
    }
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

/// What `cat properties.json` prints for `data`.
pub fn render(data: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&decode(data)).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
