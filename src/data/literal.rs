//! Property values of the tree format: Python literals parsed (never evaluated) and
//! printed, and the same values read from and written as JSON without loss.
//!
//! zc.zk `eval`-ed the right-hand side of `key = value`; zkfs accepts only what is a
//! literal and fits in JSON: strings (either quote, `u`/`r` prefixes, escapes,
//! triple quotes, adjacent strings joined), integers (also `0x`, `0o`, `0b`, `_`),
//! floats, `True`/`False`/`None`, lists, tuples (stored as lists) and dicts with string
//! keys. Numbers keep the text they were written with (as JSON number text), so
//! `123456789012345678901234567890` or `1.10` survive export and import unchanged.

use std::collections::HashMap;
use std::fmt::Write as _;

/// A property value: what a JSON document and a Python literal have in common.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None` / `null`.
    Null,
    /// `True`/`False` / `true`/`false`.
    Bool(bool),
    /// An integer, as decimal JSON number text (`-12`).
    Int(String),
    /// A float, as JSON number text (`1.5`, `1e+16`, `1.10`).
    Float(String),
    /// A string.
    Str(String),
    /// A list (or a tuple).
    List(Vec<Value>),
    /// A dict / JSON object, keys in their written order.
    Dict(Vec<(String, Value)>),
}

impl Value {
    /// Equal as values: dict key order does not matter, and numbers compare as numbers
    /// (`1e5` equals `100000.0`, as in Python).
    pub fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Int(a) | Value::Float(a), Value::Int(b) | Value::Float(b)) => {
                matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
            }
            (Value::List(a), Value::List(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y)),
            (Value::Dict(a), Value::Dict(b)) => {
                // By key through a map: a scan of `b` for each key of `a` is quadratic.
                let b: HashMap<&str, &Value> = b.iter().map(|(k, v)| (k.as_str(), v)).collect();
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k.as_str()).is_some_and(|v2| v.same(v2)))
            }
            _ => self == other,
        }
    }

    /// The value as a Python literal (what `export` writes).
    pub fn to_python(&self) -> String {
        let mut out = String::new();
        write_python(self, &mut out);
        out
    }

    /// The value as compact JSON (what `import` writes).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        write_json(self, &mut out);
        out
    }
}

/// Inserts or replaces `key` in a dict's entries, keeping its place (as JSON parsers
/// that keep key order do for a repeated key).
pub fn dict_insert(entries: &mut Vec<(String, Value)>, key: String, value: Value) {
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => entries.push((key, value)),
    }
}

// ----- Python literals -----

/// A dict's entries being read: the entries in written order and where each key is,
/// so that a repeated key replaces its value in place without a scan (a dict of `n`
/// keys is read in `O(n)`, not `O(n²)`).
#[derive(Default)]
pub struct DictBuilder {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl DictBuilder {
    /// Inserts or replaces `key`, keeping its place, as [`dict_insert`] does.
    pub fn insert(&mut self, key: String, value: Value) {
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// The entries, in written order.
    pub fn finish(self) -> Vec<(String, Value)> {
        self.entries
    }
}

/// Parses `text` as one Python literal; a trailing `# comment` is allowed.
pub fn parse_python(text: &str) -> Result<Value, String> {
    let mut p = Parser { s: text, pos: 0, depth: 0 };
    let v = p.python()?;
    p.skip_ws();
    if p.pos < text.len() && !text[p.pos..].starts_with('#') {
        return Err(format!("unexpected {:?} after the value", p.rest_preview()));
    }
    Ok(v)
}

/// How deeply lists and dicts may nest: deeper input is refused, not a stack overflow.
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn rest_preview(&self) -> String {
        self.s[self.pos..].chars().take(20).collect()
    }

    /// Enters a list, tuple or dict.
    fn nest(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("values nest deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn python(&mut self) -> Result<Value, String> {
        self.skip_ws();
        let Some(c) = self.peek() else { return Err("a value is missing".into()) };
        if matches!(c, '[' | '(' | '{') {
            self.nest()?;
            let v = self.python_inner(c);
            self.depth -= 1;
            return v;
        }
        self.python_inner(c)
    }

    fn python_inner(&mut self, c: char) -> Result<Value, String> {
        match c {
            '[' => {
                self.bump();
                Ok(Value::List(self.items(']')?.0))
            }
            '(' => {
                self.bump();
                let (items, comma) = self.items(')')?;
                // `(x)` is x itself; `(x,)` and `(x, y)` are tuples, stored as lists.
                match (items.len(), comma) {
                    (1, false) => Ok(items.into_iter().next().unwrap_or(Value::Null)),
                    _ => Ok(Value::List(items)),
                }
            }
            '{' => {
                self.bump();
                self.dict()
            }
            '-' | '+' => {
                // Signs in a loop, not recursion: `-----…1` cannot overflow the stack.
                let mut negative = false;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some('-') => negative = !negative,
                        Some('+') => {}
                        _ => break,
                    }
                    self.bump();
                }
                let sign = |t: String| if negative { negate(&t) } else { t };
                match self.python()? {
                    Value::Int(t) => Ok(Value::Int(sign(t))),
                    Value::Float(t) => Ok(Value::Float(sign(t))),
                    _ => Err(format!("'{c}' applies only to numbers")),
                }
            }
            '0'..='9' | '.' => self.number(),
            '\'' | '"' => self.strings(),
            c if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.bump();
                }
                let word = &self.s[start..self.pos];
                if matches!(self.peek(), Some('\'' | '"')) && word.len() <= 2 {
                    self.pos = start;
                    return self.strings();
                }
                match word {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "None" => Ok(Value::Null),
                    _ => Err(format!(
                        "{word:?} is not a literal: values are strings, numbers, True, False, None, lists, tuples and dicts (never evaluated)"
                    )),
                }
            }
            c => Err(format!("unexpected {c:?}: expected a Python literal")),
        }
    }

    /// Comma-separated values up to `close`; also says whether a comma was seen.
    fn items(&mut self, close: char) -> Result<(Vec<Value>, bool), String> {
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            if self.eat(close) {
                return Ok((items, comma));
            }
            items.push(self.python()?);
            if self.eat(',') {
                comma = true;
                continue;
            }
            if self.eat(close) {
                return Ok((items, comma));
            }
            return Err(match self.peek() {
                None => format!("missing '{close}'"),
                Some(_) => format!("expected ',' or '{close}' before {:?}", self.rest_preview()),
            });
        }
    }

    fn dict(&mut self) -> Result<Value, String> {
        let mut entries = DictBuilder::default();
        loop {
            if self.eat('}') {
                return Ok(Value::Dict(entries.finish()));
            }
            let key = match self.python()? {
                Value::Str(k) => k,
                other => {
                    if !self.eat(':') {
                        return Err("sets cannot be stored as JSON; use a list [...]".into());
                    }
                    return Err(format!("dict keys must be strings (JSON has no {} keys)", kind_name(&other)));
                }
            };
            if !self.eat(':') {
                return Err("sets cannot be stored as JSON; use a list [...]".into());
            }
            let value = self.python()?;
            entries.insert(key, value);
            if self.eat(',') {
                continue;
            }
            if self.eat('}') {
                return Ok(Value::Dict(entries.finish()));
            }
            return Err(match self.peek() {
                None => "missing '}'".into(),
                Some(_) => format!("expected ',' or '}}' before {:?}", self.rest_preview()),
            });
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            let c = self.bump();
            // An exponent's sign belongs to the number: 1e-5.
            if matches!(c, Some('e' | 'E'))
                && matches!(self.peek(), Some('+' | '-'))
                && !self.s[start..].starts_with("0x")
            {
                self.bump();
            }
        }
        let text = &self.s[start..self.pos];
        number_to_json(text).ok_or_else(|| format!("{text:?} is not a number"))?
    }

    fn strings(&mut self) -> Result<Value, String> {
        let mut out = String::new();
        loop {
            self.string(&mut out)?;
            let save = self.pos;
            self.skip_ws();
            let next = self.peek();
            let prefixed = {
                let rest = &self.s[self.pos..];
                let letters: usize = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
                letters <= 2 && letters > 0 && matches!(rest[letters..].chars().next(), Some('\'' | '"'))
            };
            if !(matches!(next, Some('\'' | '"')) || prefixed) {
                self.pos = save;
                return Ok(Value::Str(out));
            }
        }
    }

    /// One string literal, appended to `out`.
    fn string(&mut self, out: &mut String) -> Result<(), String> {
        let mut raw = false;
        while let Some(c) = self.peek().filter(char::is_ascii_alphabetic) {
            match c.to_ascii_lowercase() {
                'u' => {}
                'r' => raw = true,
                'b' => return Err("bytes literals (b'...') cannot be stored as JSON".into()),
                'f' => return Err("f-strings are code, not literals".into()),
                _ => return Err(format!("unknown string prefix {c:?}")),
            }
            self.bump();
        }
        let Some(quote) = self.bump().filter(|q| *q == '\'' || *q == '"') else {
            return Err("expected a string".into());
        };
        let triple = self.s[self.pos..].starts_with(&format!("{quote}{quote}"));
        if triple {
            self.pos += 2;
        }
        loop {
            let Some(c) = self.bump() else { return Err("unterminated string".into()) };
            if c == quote && (!triple || self.s[self.pos..].starts_with(&format!("{quote}{quote}"))) {
                if triple {
                    self.pos += 2;
                }
                return Ok(());
            }
            if c == '\n' && !triple {
                return Err("unterminated string".into());
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.bump() else { return Err("unterminated string".into()) };
            if raw {
                out.push('\\');
                out.push(e);
                continue;
            }
            match e {
                '\n' => {}
                '\\' | '\'' | '"' => out.push(e),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\x0b'),
                '0'..='7' => {
                    let mut n = e as u32 - '0' as u32;
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ '0'..='7') => {
                                n = n * 8 + (d as u32 - '0' as u32);
                                self.bump();
                            }
                            _ => break,
                        }
                    }
                    out.push(scalar(n)?);
                }
                'x' => out.push(scalar(self.hex(2)?)?),
                'u' => out.push(scalar(self.hex(4)?)?),
                'U' => out.push(scalar(self.hex(8)?)?),
                'N' => return Err("\\N{...} escapes are not supported; write the character or \\u it".into()),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn hex(&mut self, digits: usize) -> Result<u32, String> {
        let text = self.s.get(self.pos..self.pos + digits).filter(|t| t.chars().all(|c| c.is_ascii_hexdigit()));
        let Some(text) = text else { return Err(format!("a \\x, \\u or \\U escape needs {digits} hex digits")) };
        self.pos += digits;
        u32::from_str_radix(text, 16).map_err(|e| e.to_string())
    }
}

fn scalar(n: u32) -> Result<char, String> {
    char::from_u32(n).ok_or_else(|| format!("\\u{n:x} is not a Unicode character (surrogates cannot be stored)"))
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
    }
}

fn negate(t: &str) -> String {
    match t.strip_prefix('-') {
        Some(rest) => rest.to_string(),
        None => format!("-{t}"),
    }
}

/// A Python number literal (no sign) as JSON number text; `None` if it is not one.
fn number_to_json(text: &str) -> Option<Result<Value, String>> {
    // Python 2's long integers (`12345678901234567890L`, what zc.zk exports under
    // Python 2 for an int past 2**63): the same integer, its digits kept, as Python 3
    // and zc.zk 2.1.0 read it. Only an integer may carry the suffix.
    if let Some(int) = text.strip_suffix(['L', 'l']).filter(|int| !int.ends_with(['L', 'l'])) {
        return match number_to_json(int)? {
            Ok(Value::Int(digits)) if !int.contains('_') => Some(Ok(Value::Int(digits))),
            _ => None,
        };
    }
    let lower = text.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = lower.strip_prefix(prefix) {
            let digits = underscores(digits.strip_prefix('_').unwrap_or(digits))?;
            return Some(
                u128::from_str_radix(&digits, radix)
                    .map(|n| Value::Int(n.to_string()))
                    .map_err(|_| format!("{text} is too large for a hexadecimal, octal or binary literal")),
            );
        }
    }
    if lower.ends_with('j') {
        return Some(Err("complex numbers cannot be stored as JSON".into()));
    }
    // The exponent keeps its letter's case, so that `1E2` is printed back as written.
    let (mantissa, exponent, marker) = match lower.find('e') {
        Some(i) => (&lower[..i], Some(&lower[i + 1..]), &text[i..i + 1]),
        None => (lower.as_str(), None, "e"),
    };
    let (int, frac) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], Some(&mantissa[i + 1..])),
        None => (mantissa, None),
    };
    let int = if int.is_empty() && frac.is_some() { String::new() } else { decimal(int)? };
    let frac = frac.map(|f| if f.is_empty() { Some(String::new()) } else { decimal(f) }).map(|f| f.ok_or(()));
    let frac = match frac {
        Some(Ok(f)) => Some(f),
        Some(Err(())) => return None,
        None => None,
    };
    if int.is_empty() && frac.as_deref().is_none_or(str::is_empty) {
        return None;
    }
    let exponent = match exponent {
        Some(e) => {
            let (sign, digits) = match e.strip_prefix(['+', '-']) {
                Some(d) => (&e[..1], d),
                None => ("", e),
            };
            Some(format!("{sign}{}", decimal(digits)?))
        }
        None => None,
    };
    if frac.is_none() && exponent.is_none() {
        if int.len() > 1 && int.starts_with('0') && int.chars().any(|c| c != '0') {
            return Some(Err(format!("{text}: leading zeros are not allowed (write 0o{} for octal)", &int[1..])));
        }
        let trimmed = int.trim_start_matches('0');
        return Some(Ok(Value::Int(if trimmed.is_empty() { "0".into() } else { trimmed.into() })));
    }
    let int = int.trim_start_matches('0');
    let mut json = if int.is_empty() { "0".to_string() } else { int.to_string() };
    if let Some(f) = frac {
        json.push('.');
        json.push_str(if f.is_empty() { "0" } else { &f });
    }
    if let Some(e) = exponent {
        json.push_str(marker);
        json.push_str(&e);
    }
    if json.parse::<f64>().map_or(true, |f| !f.is_finite()) {
        return Some(Err(format!("{text} is out of the range of a float")));
    }
    Some(Ok(Value::Float(json)))
}

/// Digits with Python's single underscores between them, without the underscores.
fn underscores(digits: &str) -> Option<String> {
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let out: String = digits.chars().filter(|c| *c != '_').collect();
    out.chars().all(|c| c.is_ascii_alphanumeric()).then_some(out)
}

/// Decimal digits with Python's single underscores between them, without them.
fn decimal(digits: &str) -> Option<String> {
    underscores(digits).filter(|d| d.chars().all(|c| c.is_ascii_digit()))
}

fn write_python(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        // JSON number text is also a Python number literal.
        Value::Int(t) | Value::Float(t) => out.push_str(t),
        Value::Str(s) => python_str(s, out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(item, out);
            }
            out.push(']');
        }
        Value::Dict(entries) => {
            out.push('{');
            for (i, (k, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_str(k, out);
                out.push_str(": ");
                write_python(item, out);
            }
            out.push('}');
        }
    }
}

/// A string as Python 3's `repr` writes it, with every character that could end or
/// disturb a line (controls, line and paragraph separators, odd spaces) escaped.
pub fn python_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x100 && (c.is_control() || (c.is_whitespace() && c != ' ')) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') || matches!(c, '\u{feff}' | '\u{200b}') => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

// ----- JSON -----

/// Parses a JSON document; numbers keep their text. A repeated key keeps its first
/// place and its last value.
pub fn parse_json(text: &str) -> Result<Value, String> {
    let mut p = Parser { s: text, pos: 0, depth: 0 };
    let v = p.json()?;
    p.skip_ws();
    if p.pos < text.len() {
        return Err(format!("unexpected {:?} after the JSON value", p.rest_preview()));
    }
    Ok(v)
}

impl Parser<'_> {
    fn json(&mut self) -> Result<Value, String> {
        self.skip_ws();
        if matches!(self.peek(), Some('[' | '{')) {
            self.nest()?;
            let v = self.json_inner();
            self.depth -= 1;
            return v;
        }
        self.json_inner()
    }

    fn json_inner(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some('{') => {
                self.bump();
                let mut entries = DictBuilder::default();
                if self.eat('}') {
                    return Ok(Value::Dict(entries.finish()));
                }
                loop {
                    self.skip_ws();
                    let key = self.json_string()?;
                    if !self.eat(':') {
                        return Err("expected ':' in a JSON object".into());
                    }
                    let v = self.json()?;
                    entries.insert(key, v);
                    if self.eat(',') {
                        continue;
                    }
                    if self.eat('}') {
                        return Ok(Value::Dict(entries.finish()));
                    }
                    return Err("expected ',' or '}' in a JSON object".into());
                }
            }
            Some('[') => {
                self.bump();
                let mut items = Vec::new();
                if self.eat(']') {
                    return Ok(Value::List(items));
                }
                loop {
                    items.push(self.json()?);
                    if self.eat(',') {
                        continue;
                    }
                    if self.eat(']') {
                        return Ok(Value::List(items));
                    }
                    return Err("expected ',' or ']' in a JSON array".into());
                }
            }
            Some('"') => self.json_string().map(Value::Str),
            Some('-' | '0'..='9') => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')) {
                    self.bump();
                }
                let text = &self.s[start..self.pos];
                if !is_json_number(text) {
                    return Err(format!("{text:?} is not a JSON number"));
                }
                Ok(if text.contains(['.', 'e', 'E']) { Value::Float(text.into()) } else { Value::Int(text.into()) })
            }
            _ => {
                for (word, v) in [("true", Value::Bool(true)), ("false", Value::Bool(false)), ("null", Value::Null)] {
                    if self.s[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return Ok(v);
                    }
                }
                Err(format!("unexpected {:?} in JSON", self.rest_preview()))
            }
        }
    }

    fn json_string(&mut self) -> Result<String, String> {
        if self.bump() != Some('"') {
            return Err("expected a JSON string".into());
        }
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err("unterminated JSON string".into()),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    Some('b') => out.push('\x08'),
                    Some('f') => out.push('\x0c'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('u') => {
                        let hi = self.hex(4)?;
                        let n = if (0xd800..0xdc00).contains(&hi) && self.s[self.pos..].starts_with("\\u") {
                            self.pos += 2;
                            let lo = self.hex(4)?;
                            if !(0xdc00..0xe000).contains(&lo) {
                                return Err("a lone surrogate in a JSON string".into());
                            }
                            0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                        } else {
                            hi
                        };
                        out.push(scalar(n)?);
                    }
                    _ => return Err("a bad escape in a JSON string".into()),
                },
                Some(c) if (c as u32) < 0x20 => return Err("a control character in a JSON string".into()),
                Some(c) => out.push(c),
            }
        }
    }
}

fn is_json_number(t: &str) -> bool {
    let t = t.strip_prefix('-').unwrap_or(t);
    let (mant, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = match mant.find('.') {
        Some(i) => (&mant[..i], Some(&mant[i + 1..])),
        None => (mant, None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    digits(int)
        && (int == "0" || !int.starts_with('0'))
        && frac.is_none_or(digits)
        && exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(t) | Value::Float(t) => out.push_str(t),
        Value::Str(s) => json_str(s, out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Dict(entries) => {
            out.push('{');
            for (i, (k, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_str(k, out);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(t: &str) -> Value {
        parse_python(t).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn python_strings_in_both_quotes_with_escapes() {
        assert_eq!(py(r#"'it''s'"#), s("its"));
        assert_eq!(py(r#""it's""#), s("it's"));
        assert_eq!(py(r"'a\'b\\c\n\t\x41\u00e9\U0001F600\101\0'"), s("a'b\\c\n\tAé😀A\0"));
        assert_eq!(py(r"r'\d\''"), s("\\d\\'"));
        assert_eq!(py(r"u'x' 'y'"), s("xy"));
        assert_eq!(py(r"'''a'b'''"), s("a'b"));
        assert_eq!(py(r"'\q'"), s("\\q"));
        for bad in [r"'abc", r"'\x4'", r"b'x'", r"f'{x}'", r"'\ud800'", r"'\N{BULLET}'"] {
            assert!(parse_python(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn python_numbers_become_json_number_text() {
        for (t, json) in [
            ("3", "3"),
            ("-3", "-3"),
            ("--3", "3"),
            ("+3", "3"),
            ("1_000", "1000"),
            ("0x1F", "31"),
            ("0o17", "15"),
            ("0b101", "5"),
            ("000", "0"),
            ("123456789012345678901234567890", "123456789012345678901234567890"),
            ("1.5", "1.5"),
            ("1.", "1.0"),
            (".5", "0.5"),
            ("1e5", "1e5"),
            ("1E-5", "1E-5"),
            ("1.10", "1.10"),
            ("- 2.5", "-2.5"),
            ("007.5", "7.5"),
        ] {
            assert_eq!(py(t).to_json(), json, "{t}");
        }
        for bad in ["007", "1__0", "1_", "0x", "1e999", "3j", "1.2.3", "-'x'", "0xg"] {
            assert!(parse_python(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn python_containers_and_constants() {
        assert_eq!(py("[1, 'a', None, True, False,]").to_json(), r#"[1,"a",null,true,false]"#);
        assert_eq!(py("(1, 2)").to_json(), "[1,2]");
        assert_eq!(py("(1,)").to_json(), "[1]");
        assert_eq!(py("()").to_json(), "[]");
        assert_eq!(py("(1)").to_json(), "1");
        assert_eq!(py("{'b': 1, 'a': {'c': []}}").to_json(), r#"{"b":1,"a":{"c":[]}}"#);
        assert_eq!(py("{}").to_json(), "{}");
        for bad in ["{1: 2}", "{1, 2}", "[1 2]", "[1,", "len('x')", "1 + 2", "x", "", "True False", "{'a' 1}"] {
            assert!(parse_python(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_is_read_without_loss_and_written_back() {
        let text = r#"{"big": 123456789012345678901234567890, "f": 1.10, "e": 1E2, "s": "\u00e9\ud83d\ude00\n\"", "n": null, "l": [true, false, {}], "k": 1, "k": 2}"#;
        let v = parse_json(text).unwrap();
        assert_eq!(
            v.to_json(),
            r#"{"big":123456789012345678901234567890,"f":1.10,"e":1E2,"s":"é😀\n\"","n":null,"l":[true,false,{}],"k":2}"#
        );
        assert_eq!(parse_json(&v.to_json()).unwrap(), v);
        assert_eq!(
            v.to_python(),
            r#"{'big': 123456789012345678901234567890, 'f': 1.10, 'e': 1E2, 's': 'é😀\n"', 'n': None, 'l': [True, False, {}], 'k': 2}"#
        );
        assert_eq!(py(&v.to_python()), v);
        for bad in ["{", "[1,]", "01", "1.", "\"\\ud800\"", "{'a': 1}", "nul", "{} x", "\"a\nb\""] {
            assert!(parse_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn python2_long_integers_keep_their_digits() {
        assert_eq!(py("12345678901234567890L"), Value::Int("12345678901234567890".into()));
        assert_eq!(py("-7l"), Value::Int("-7".into()));
        assert_eq!(py("0x10L"), Value::Int("16".into()));
        assert_eq!(py("[1L, {'a': 2L}]").to_json(), r#"[1,{"a":2}]"#);
        for bad in ["1.5L", "1e3L", "1LL", "L", "1_0L"] {
            assert!(parse_python(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn big_dicts_read_in_linear_time_and_keep_the_last_value() {
        let text = format!(
            "{{{}, 'k0': 'last'}}",
            (0..200_000).map(|i| format!("'k{i}': {i}")).collect::<Vec<_>>().join(", ")
        );
        let Value::Dict(entries) = py(&text) else { panic!("not a dict") };
        assert_eq!(entries.len(), 200_000);
        assert_eq!(entries[0], ("k0".to_string(), s("last")));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_python(&deep).unwrap_err().contains("nest deeper"));
        assert!(parse_json(&deep).unwrap_err().contains("nest deeper"));
        assert_eq!(parse_python(&format!("{}1", "-".repeat(100_001))).unwrap().to_json(), "-1");
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_python(&ok).is_ok() && parse_json(&ok).is_ok());
    }

    #[test]
    fn values_compare_as_python_does() {
        assert!(py("1e5").same(&parse_json("100000.0").unwrap()));
        assert!(py("1").same(&py("1.0")));
        assert!(!py("1").same(&py("2")));
        assert!(parse_json(r#"{"a":1,"b":2}"#).unwrap().same(&parse_json(r#"{"b":2,"a":1}"#).unwrap()));
        assert!(!py("'1'").same(&py("1")));
    }
}
