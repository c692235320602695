//! Rendering one template from a mount: a `minijinja` environment whose functions read
//! the mount through ordinary file reads, and a record of what they read.
//!
//! The functions a template can call (all paths absolute, or relative to `--root`):
//!
//! * `entries(DIR)`: the registrations of DIR — its files named `HOST:PORT` — sorted
//!   by name, each with `.name`, `.host` (as written, `[::1]`), `.address` (without
//!   brackets, `::1`), `.port` (a number) and `.data` (the registration's JSON, read
//!   only if the template uses it). `{{ e }}` prints the name.
//! * `children(DIR)`: the names of DIR's subdirectories (persistent nodes), sorted.
//! * `properties(DIR)`: DIR's `properties.json`, parsed.
//! * `exists(PATH)`: whether PATH exists (its parent must be readable).
//! * `read(PATH)`: a file's text.
//!
//! Lines that hold only a block tag (`{% for %}`) leave no empty line (Jinja's
//! `trim_blocks` and `lstrip_blocks`, as Ansible and Salt set them).
//!
//! Filters for `host:port` text: `host`, `address`, `port`, `bracket` (`::1` →
//! `[::1]`, other hosts unchanged).
//!
//! What the record is for: every directory a template read is watched (the
//! [`super`] loop), and the number of entries each `entries` call saw feeds the shrink
//! guard ([`super::rails`]). The first failed read is kept apart from template errors:
//! a read that fails (mount gone, `EIO` while ZooKeeper is unreachable, a directory
//! that is no zkfs directory) means the state is unknown, and the old output stays.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, Value};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

use crate::data::names::PROPERTIES;

/// What one render read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reads {
    /// Directories read (listed, or holding a file read): the ones to watch.
    pub dirs: BTreeSet<PathBuf>,
    /// For each directory `entries` listed, how many registrations it had.
    pub counts: BTreeMap<PathBuf, usize>,
    /// The first read that failed, as a sentence.
    pub failure: Option<String>,
}

/// How a render ended.
#[derive(Debug, PartialEq)]
pub enum Rendered {
    /// The output, and what it read.
    Text(String, Reads),
    /// A read failed: the state is unknown (mount gone, ZooKeeper unreachable).
    Outage(String, Reads),
    /// The template is wrong: its message, with the line.
    Error(String),
}

/// The record the template functions write, shared by them (they must be `'static`).
/// Only one render uses it at a time; nothing else is locked while it is held.
type Shared = Arc<Mutex<Reads>>;

fn note(reads: &Shared) -> std::sync::MutexGuard<'_, Reads> {
    reads.lock().unwrap_or_else(|p| p.into_inner())
}

/// Renders the template file `source` with paths relative to `root`.
pub fn render(source: &Path, root: &Path) -> Rendered {
    let text = match fs::read_to_string(source) {
        Ok(t) => t,
        Err(e) => return Rendered::Error(format!("cannot read the template {}: {e}", source.display())),
    };
    render_str(&source.display().to_string(), &text, root)
}

/// Renders template text `text` (called `name` in messages).
pub fn render_str(name: &str, text: &str, root: &Path) -> Rendered {
    let reads: Shared = Arc::default();
    let env = environment(root, &reads);
    let result = env.template_from_named_str(name, text).and_then(|t| t.render(()));
    let reads = note(&reads).clone();
    match (result, reads.failure.clone()) {
        // A failed read comes first: the template's error is then only its consequence.
        (_, Some(why)) => Rendered::Outage(why, reads),
        (Ok(out), None) => Rendered::Text(out, reads),
        (Err(e), None) => Rendered::Error(describe(name, text, &e)),
    }
}

/// `NAME:LINE: what (kind) in `the line``, and the source chain.
fn describe(name: &str, text: &str, e: &Error) -> String {
    let mut msg = match e.line() {
        Some(line) => format!("{name}:{line}: {}", e.detail().map_or_else(|| e.kind().to_string(), String::from)),
        None => format!("{name}: {e}"),
    };
    if e.detail().is_some() {
        msg.push_str(&format!(" ({})", e.kind()));
    }
    if let Some(src) = e.line().and_then(|l| text.lines().nth(l.wrapping_sub(1))) {
        msg.push_str(&format!(" in `{}`", src.trim()));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

fn environment(root: &Path, reads: &Shared) -> Environment<'static> {
    let mut env = Environment::new();
    // A misspelt variable or attribute is an error, not an empty backend.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // As Ansible's and Salt's Jinja: a line holding only a block tag leaves no line.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    let ctx = Ctx { root: root.to_path_buf(), reads: Arc::clone(reads) };
    let c = ctx.clone();
    env.add_function("entries", move |dir: String| c.entries(&dir));
    let c = ctx.clone();
    env.add_function("children", move |dir: String| c.children(&dir));
    let c = ctx.clone();
    env.add_function("properties", move |dir: String| c.properties(&dir));
    let c = ctx.clone();
    env.add_function("exists", move |path: String| c.exists(&path));
    let c = ctx;
    env.add_function("read", move |path: String| c.read(&path));
    env.add_filter("host", |s: String| split(&s).map(|(h, _)| h.to_string()));
    env.add_filter("address", |s: String| split(&s).map(|(h, _)| unbracket(h).to_string()));
    env.add_filter("port", |s: String| split(&s).map(|(_, p)| p));
    env.add_filter("bracket", |s: String| bracket(&s));
    env
}

/// Splits `HOST:PORT` (HOST may be a bracketed IPv6 address).
pub fn split(s: &str) -> Result<(&str, u16), Error> {
    parse_hostport(s).ok_or_else(|| Error::new(ErrorKind::InvalidOperation, format!("{s:?} is not HOST:PORT")))
}

/// `HOST:PORT` with PORT 1–65535 and HOST a name, an IPv4 address or `[IPv6]`.
pub fn parse_hostport(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'))
    } else {
        !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    ok.then_some((host, port))
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// An IPv6 address in brackets, as `host:port` needs it; anything else as it is.
pub fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[derive(Clone)]
struct Ctx {
    root: PathBuf,
    reads: Shared,
}

impl Ctx {
    fn path(&self, p: &str) -> PathBuf {
        if self.root == Path::new(".") {
            PathBuf::from(p)
        } else {
            self.root.join(p)
        }
    }

    /// Records `why` as the render's failure (the first one wins) and gives the
    /// template an error, so that it stops.
    fn fail(&self, why: String) -> Error {
        let mut r = note(&self.reads);
        r.failure.get_or_insert_with(|| why.clone());
        Error::new(ErrorKind::InvalidOperation, why)
    }

    fn io_failure(&self, what: &str, path: &Path, e: &io::Error) -> Error {
        let hint = match e.raw_os_error() {
            Some(libc::EIO) => " (ZooKeeper unreachable?)",
            Some(libc::ENOTCONN) => " (the mount is dead: Transport endpoint is not connected)",
            Some(libc::ENOENT) => " (is the mount there?)",
            _ => "",
        };
        self.fail(format!("cannot {what} {}: {e}{hint}", path.display()))
    }

    /// Lists a zkfs directory: (name, is_dir) pairs, sorted by name. A directory
    /// without `properties.json` is not a zkfs directory: the mount is gone and this
    /// is the mountpoint (or a stray local directory).
    fn list(&self, dir: &str) -> Result<(PathBuf, Vec<(String, bool)>), Error> {
        let path = self.path(dir);
        note(&self.reads).dirs.insert(path.clone());
        let mut names = Vec::new();
        let mut zkfs = false;
        let iter = fs::read_dir(&path).map_err(|e| self.io_failure("list", &path, &e))?;
        for entry in iter {
            let entry = entry.map_err(|e| self.io_failure("list", &path, &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == PROPERTIES {
                zkfs = true;
                continue;
            }
            let ty = entry.file_type().map_err(|e| self.io_failure("stat an entry of", &path, &e))?;
            names.push((name, ty.is_dir()));
        }
        if !zkfs {
            return Err(self.fail(format!(
                "{} has no {PROPERTIES}: it is not a directory of a zkfs mount (is the mount gone?)",
                path.display()
            )));
        }
        names.sort();
        Ok((path, names))
    }

    fn entries(&self, dir: &str) -> Result<Value, Error> {
        let (path, names) = self.list(dir)?;
        let entries: Vec<Value> = names
            .into_iter()
            .filter(|(name, is_dir)| !is_dir && parse_hostport(name).is_some())
            .map(|(name, _)| Value::from_object(Entry { file: path.join(&name), name, ctx: self.clone() }))
            .collect();
        note(&self.reads).counts.insert(path, entries.len());
        Ok(Value::from(entries))
    }

    fn children(&self, dir: &str) -> Result<Value, Error> {
        let (_, names) = self.list(dir)?;
        Ok(Value::from(names.into_iter().filter(|(_, d)| *d).map(|(n, _)| n).collect::<Vec<_>>()))
    }

    fn read_file(&self, path: &Path) -> Result<String, Error> {
        if let Some(parent) = path.parent() {
            note(&self.reads).dirs.insert(parent.to_path_buf());
        }
        fs::read_to_string(path).map_err(|e| self.io_failure("read", path, &e))
    }

    fn properties(&self, dir: &str) -> Result<Value, Error> {
        let path = self.path(dir).join(PROPERTIES);
        let text = self.read_file(&path)?;
        Ok(json_value(&text))
    }

    fn read(&self, path: &str) -> Result<String, Error> {
        self.read_file(&self.path(path))
    }

    fn exists(&self, path: &str) -> Result<bool, Error> {
        let path = self.path(path);
        let parent = path.parent().unwrap_or(&path).to_path_buf();
        note(&self.reads).dirs.insert(parent.clone());
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            // Absent from a zkfs directory that is there: really absent. Absent
            // because the mount is gone: unknown.
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::metadata(parent.join(PROPERTIES)) {
                Ok(_) => Ok(false),
                Err(e) => Err(self.io_failure("check", &parent, &e)),
            },
            Err(e) => Err(self.io_failure("check", &path, &e)),
        }
    }
}

/// One registration, as the template sees it; its data is read on first use.
struct Entry {
    name: String,
    file: PathBuf,
    ctx: Ctx,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}

impl Object for Entry {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let (host, port) = parse_hostport(&self.name)?;
        Some(match key.as_str()? {
            "name" => Value::from(self.name.clone()),
            "host" => Value::from(host),
            "address" => Value::from(unbracket(host)),
            "port" => Value::from(port),
            // A failed read is recorded (the render becomes an outage); the template
            // then sees an undefined value, which strict mode makes an error.
            "data" => json_value(&self.ctx.read_file(&self.file).ok()?),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["name", "host", "address", "port", "data"])
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// JSON text as a template value. Numbers that fit an integer or a float become one;
/// others keep their text. Not JSON (the mount never shows that): the text as a string.
fn json_value(text: &str) -> Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => to_value(&v),
        Err(_) => Value::from(text),
    }
}

// With serde_json's arbitrary_precision, its numbers do not serialize as numbers to
// other serializers: the tree is converted by hand.
fn to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                // An integer too big for 64 bits keeps its digits rather than become a
                // rounded float.
                let text = n.to_string();
                let float = text.contains(['.', 'e', 'E']).then(|| text.parse::<f64>().ok()).flatten();
                float.filter(|f| f.is_finite()).map_or_else(|| Value::from(text), Value::from)
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::from(a.iter().map(to_value).collect::<Vec<_>>()),
        J::Object(o) => Value::from_iter(o.iter().map(|(k, v)| (k.clone(), to_value(v)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_names_and_brackets() {
        assert_eq!(parse_hostport("10.0.0.1:80"), Some(("10.0.0.1", 80)));
        assert_eq!(parse_hostport("[::1]:8080"), Some(("[::1]", 8080)));
        assert_eq!(parse_hostport("web-1.example:443"), Some(("web-1.example", 443)));
        for bad in ["properties.json", "a:0", "a:70000", ":80", "[::1:80", "a b:80", "[]:80"] {
            assert_eq!(parse_hostport(bad), None, "{bad}");
        }
        assert_eq!(bracket("::1"), "[::1]");
        assert_eq!(bracket("[::1]"), "[::1]");
        assert_eq!(bracket("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn filters_split_host_port() {
        let out =
            render_str("t", "{{ '[::1]:80'|host }} {{ '[::1]:80'|address }} {{ 'a:81'|port + 1 }}", Path::new("/"));
        assert_eq!(out, Rendered::Text("[::1] ::1 82".into(), Reads::default()));
    }

    #[test]
    fn template_errors_name_the_line() {
        let Rendered::Error(msg) = render_str("lb.tmpl", "a\nb\n{{ nosuch.x }}\n", Path::new("/")) else {
            panic!("no error")
        };
        assert!(msg.starts_with("lb.tmpl:3: "), "{msg}");
        let Rendered::Error(msg) = render_str("lb.tmpl", "ok\n{% for %}\n", Path::new("/")) else { panic!("no error") };
        assert!(msg.starts_with("lb.tmpl:2: "), "{msg}");
    }

    #[test]
    fn a_directory_that_is_not_zkfs_is_an_outage_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a:1"), "{}").unwrap();
        let out = render_str("t", "{% for e in entries('.') %}{{ e }}{% endfor %}", dir.path());
        assert!(
            matches!(out, Rendered::Outage(ref why, _) if why.contains("not a directory of a zkfs mount")),
            "{out:?}"
        );
        let out = render_str("t", "{{ entries('nosuch') }}", dir.path());
        assert!(matches!(out, Rendered::Outage(ref why, _) if why.contains("is the mount there")), "{out:?}");
    }

    #[test]
    fn entries_are_sorted_registrations_with_lazy_data() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(PROPERTIES), r#"{"port": 80, "big": 123456789012345678901234567890}"#).unwrap();
        fs::write(dir.path().join("b:2"), r#"{"weight": 3}"#).unwrap();
        fs::write(dir.path().join("[::1]:3"), "{}").unwrap();
        fs::write(dir.path().join("a:1"), "{}").unwrap();
        fs::write(dir.path().join("not-a-server"), "{}").unwrap();
        fs::create_dir(dir.path().join("sub:1")).unwrap();
        let t = "{% for e in entries('.') %}{{ e.address }}/{{ e.port }}/{{ e.data.weight|default(1) }} {% endfor %}\
                 {{ properties('.').port }} {{ properties('.').big }} {{ children('.') }}";
        let Rendered::Text(out, reads) = render_str("t", t, dir.path()) else { panic!() };
        assert_eq!(out, "::1/3/1 a/1/1 b/2/3 80 123456789012345678901234567890 [\"sub:1\"]");
        assert_eq!(reads.counts.values().copied().collect::<Vec<_>>(), vec![3]);
    }
}
