//! `zkfs export`, `zkfs import` and `zkfs validate`: a tree of a mount as zc.zk's tree
//! text, and back.
//!
//! They work on a directory of a mounted zkfs through the filesystem itself — list
//! directories, read `properties.json`, set it with `>`, `mkdir`, `rmdir` — so they
//! need no ZooKeeper connection of their own and obey the mount's rules (its ACLs,
//! `ro`, what it refuses). A directory is a persistent node, a regular file a
//! registration, a symbolic link one of the node's `"NAME ->"` properties (read from
//! `properties.json`, not from the link).
//!
//! Paths printed are znode paths, as zc.zk prints them. `/zookeeper` is never exported
//! nor changed.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::data::literal::{self, Value};
use crate::data::names::{self, PROPERTIES};
use crate::data::treefmt::{self, Node, LINK_SUFFIX};

/// The tree commands of the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum TreeCommand {
    /// `zkfs export [--ephemeral] DIR`
    Export {
        /// A directory of a zkfs mount.
        dir: PathBuf,
        /// Registrations too.
        ephemeral: bool,
    },
    /// `zkfs import [--dry-run] [--trim] FILE DIR`
    Import {
        /// The tree file (`-`: standard input).
        file: PathBuf,
        /// A directory of a zkfs mount.
        dir: PathBuf,
        /// Remove nodes the file lacks, inside the subtrees it names.
        trim: bool,
        /// Print the changes, make none.
        dry_run: bool,
    },
    /// `zkfs validate FILE`
    Validate {
        /// The tree file (`-`: standard input).
        file: PathBuf,
    },
}

/// The usage lines of the tree commands.
pub const USAGE: &str = "\
       zkfs export [--ephemeral] DIR
       zkfs import [--dry-run] [--trim] FILE DIR
       zkfs validate FILE";

/// Parses the arguments after `export`, `import` or `validate`.
pub fn parse_args(command: &str, args: Vec<String>) -> Result<TreeCommand, String> {
    let mut flags = Vec::new();
    let mut positional = Vec::new();
    for arg in args {
        if arg.starts_with("--") || (arg.starts_with('-') && arg != "-") {
            flags.push(arg);
        } else {
            positional.push(PathBuf::from(arg));
        }
    }
    let allowed: &[&str] = match command {
        "export" => &["--ephemeral"],
        "import" => &["--dry-run", "-n", "--trim"],
        _ => &[],
    };
    if let Some(bad) = flags.iter().find(|f| !allowed.contains(&f.as_str())) {
        return Err(format!("unknown flag {bad} for zkfs {command}; usage:\n{USAGE}"));
    }
    let has = |f: &str| flags.iter().any(|g| g == f);
    let usage = || format!("wrong number of arguments for zkfs {command}; usage:\n{USAGE}");
    match (command, positional.as_slice()) {
        ("export", [dir]) => Ok(TreeCommand::Export { dir: dir.clone(), ephemeral: has("--ephemeral") }),
        ("import", [file, dir]) => Ok(TreeCommand::Import {
            file: file.clone(),
            dir: dir.clone(),
            trim: has("--trim"),
            dry_run: has("--dry-run") || has("-n"),
        }),
        ("validate", [file]) => Ok(TreeCommand::Validate { file: file.clone() }),
        _ => Err(usage()),
    }
}

/// Runs a tree command; errors go to stderr as one line each.
pub fn run(command: &TreeCommand) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match command {
        TreeCommand::Export { dir, ephemeral } => export(dir, *ephemeral)
            .and_then(|text| out.write_all(text.as_bytes()).map_err(|e| format!("writing the tree: {e}"))),
        TreeCommand::Import { file, dir, trim, dry_run } => {
            read_file(file).and_then(|text| import(&text, file, dir, *trim, *dry_run, &mut out))
        }
        TreeCommand::Validate { file } => {
            read_file(file).and_then(|text| parse_checked(&text, file, "", 0).map(|_| ()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            let _ = out.flush();
            eprintln!("zkfs: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The tree of `text`, or every problem a mount or ZooKeeper would refuse
/// ([`treefmt::check`]), one line each, before anything is changed.
fn parse_checked(text: &str, file: &Path, base: &str, prefix: usize) -> Result<BTreeMap<String, Node>, String> {
    let shown = names::escaped(&file.display().to_string());
    let tree = treefmt::parse(text).map_err(|e| format!("{shown}: {e}"))?;
    let problems = treefmt::check(&tree, base, prefix);
    if !problems.is_empty() {
        return Err(format!("{shown}: {}", problems.join(&format!("\nzkfs: {shown}: "))));
    }
    Ok(tree)
}

fn read_file(file: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    let read = if file == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes)).map(|_| ())
    };
    read.map_err(|e| format!("{}: {e}", file.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", file.display()))
}

/// A directory of a zkfs mount, and what stands behind it.
struct Place {
    /// The directory, symlinks resolved.
    dir: PathBuf,
    /// Its znode path, relative to the mount's root (`/` for the root).
    znode: String,
    /// The mount's root shows ZooKeeper's own root (no chroot): `/zookeeper` is there.
    unchrooted: bool,
}

// Through libc: nix (0.31) has no wrapper for getxattr.
fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    // SAFETY: both strings are NUL-terminated and live across the call; a null buffer
    // of size 0 asks for the value's size only.
    let size = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    let mut buf = vec![0u8; usize::try_from(size).ok()?];
    // SAFETY: as above; buf is valid for buf.len() bytes.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}

fn locate(dir: &Path) -> Result<Place, String> {
    let shown = dir.display();
    let dir = fs::canonicalize(dir).map_err(|e| format!("{shown}: {e}"))?;
    let meta = fs::metadata(&dir).map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("{shown} is not a directory (a node of a zkfs mount is a directory)"));
    }
    let mut root = dir.clone();
    while let Some(parent) = root.parent() {
        match fs::metadata(parent) {
            Ok(m) if m.dev() == meta.dev() => root = parent.to_path_buf(),
            _ => break,
        }
    }
    let Some(connect) = getxattr(&root, "user.zkfs.connect") else {
        return Err(format!("{shown} is not in a zkfs mount (mount one with: zkfs CONNECT MOUNTPOINT)"));
    };
    let connect = String::from_utf8_lossy(&connect);
    let unchrooted = connect.find('/').is_none_or(|i| &connect[i..] == "/");
    let mut znode = String::new();
    for part in dir.strip_prefix(&root).map_err(|e| e.to_string())?.components() {
        znode.push('/');
        znode.push_str(&part.as_os_str().to_string_lossy());
    }
    if znode.is_empty() {
        znode.push('/');
    }
    if unchrooted && (znode == "/zookeeper" || znode.starts_with("/zookeeper/")) {
        return Err(format!("{shown} is ZooKeeper's own /zookeeper, which zkfs never exports nor changes"));
    }
    Ok(Place { dir, znode, unchrooted })
}

fn join(znode: &str, name: &str) -> String {
    if znode == "/" {
        format!("/{name}")
    } else {
        format!("{znode}/{name}")
    }
}

/// The properties a file of the mount shows, as a dict.
fn read_properties(file: &Path, znode: &str) -> Result<Vec<(String, Value)>, std::io::Error> {
    let text = fs::read_to_string(file)?;
    match literal::parse_json(&text) {
        Ok(Value::Dict(entries)) => Ok(entries),
        _ => Err(std::io::Error::new(ErrorKind::InvalidData, format!("{znode}: the mount shows no JSON object"))),
    }
}

/// What a directory of the mount holds: its subdirectories and registration files.
fn entries(dir: &Path, znode: &str) -> Result<(Vec<String>, Vec<String>), std::io::Error> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(String::from) else {
            return Err(std::io::Error::new(ErrorKind::InvalidData, format!("{znode}: a child's name is not UTF-8")));
        };
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            // A child whose ACL denies this mount reading it: skipped, the rest exported.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                eprintln!("zkfs: warning: {} is not exported: {e}", join(znode, &name));
                continue;
            }
            Err(e) => return Err(e),
        };
        if name == PROPERTIES || kind.is_symlink() {
            continue; // the node's data; links are read from it
        } else if kind.is_dir() {
            dirs.push(name);
        } else if kind.is_file() {
            files.push(name);
        }
    }
    dirs.sort();
    files.sort();
    Ok((dirs, files))
}

/// True if reading `file` is refused (EACCES: a ZooKeeper ACL denies the mount).
fn denied(file: &Path) -> bool {
    matches!(fs::metadata(file), Err(e) if e.kind() == ErrorKind::PermissionDenied)
}

/// `zkfs export`: the tree under `dir` as text.
pub fn export(dir: &Path, ephemeral: bool) -> Result<String, String> {
    let place = locate(dir)?;
    let node = read_tree(&place.dir, &place.znode, ephemeral, place.unchrooted)?;
    if place.znode == "/" {
        if !node.properties.is_empty() {
            eprintln!("zkfs: the properties of the mount's root are not exported: the format has no place for them");
        }
        let root = Node { properties: Vec::new(), children: node.children };
        return treefmt::print(None, &root).map_err(|e| e.to_string());
    }
    let name = place.znode.rsplit('/').next().unwrap_or_default();
    treefmt::print(Some(name), &node).map_err(|e| e.to_string())
}

fn read_tree(dir: &Path, znode: &str, ephemeral: bool, unchrooted: bool) -> Result<Node, String> {
    let io = |e: std::io::Error| format!("{znode}: {e}");
    let mut node = Node { properties: read_properties(&dir.join(PROPERTIES), znode).map_err(io)?, ..Node::default() };
    let (dirs, files) = entries(dir, znode).map_err(io)?;
    for name in dirs {
        if unchrooted && znode == "/" && name == "zookeeper" {
            continue;
        }
        let child = join(znode, &name);
        match read_tree(&dir.join(&name), &child, ephemeral, unchrooted) {
            Ok(c) => {
                node.children.insert(name, c);
            }
            // Its ACL denies this mount reading it: skipped, the rest exported.
            Err(e) if denied(&dir.join(&name).join(PROPERTIES)) => {
                eprintln!("zkfs: warning: {child} is not exported: {e}");
            }
            // Removed while we read: it is not part of the tree any more.
            Err(_) if !dir.join(&name).exists() => {}
            Err(e) => return Err(e),
        }
    }
    if ephemeral {
        for name in files {
            let child = join(znode, &name);
            match read_properties(&dir.join(&name), &child) {
                Ok(properties) => {
                    node.children.insert(name, Node { properties, ..Node::default() });
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    eprintln!("zkfs: warning: {child} is not exported: {e}");
                }
                Err(e) => return Err(format!("{child}: {e}")),
            }
        }
    }
    Ok(node)
}

/// `zkfs import`: makes the tree under `dir` match `text`; reports each change on
/// `out` (with `dry_run`, the changes it would make, making none).
pub fn import(
    text: &str,
    file: &Path,
    dir: &Path,
    trim: bool,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let place = locate(dir)?;
    let base = if place.znode == "/" { "" } else { place.znode.as_str() };
    let prefix = place.dir.as_os_str().len().saturating_sub(base.len());
    let tree = parse_checked(text, file, base, prefix)?;
    if place.unchrooted && place.znode == "/" && tree.contains_key("zookeeper") {
        return Err("the file names /zookeeper, ZooKeeper's own node, which zkfs never changes".into());
    }
    // A first pass changes nothing and writes nothing: what the mount holds that
    // stops the import (a link where the file has a node, a node that cannot be read)
    // stops it before its first change (docs/import.md).
    let mut sink = std::io::sink();
    let top = place.dir.clone();
    let mut check = Import { trim, dry_run: true, quiet: true, out: &mut sink, plan: None, top: top.clone() };
    for (name, node) in &tree {
        check.node(&place.dir.join(name), &join(&place.znode, name), node)?;
    }
    if dry_run {
        let mut import = Import { trim, dry_run, quiet: false, out, plan: None, top };
        for (name, node) in &tree {
            import.node(&place.dir.join(name), &join(&place.znode, name), node)?;
        }
        return Ok(());
    }
    // The real pass plans the changes (reading as the dry run does), then applies them
    // in as few ZooKeeper transactions as they fit in, each all or nothing.
    let mut planned = Vec::new();
    let mut sink = std::io::sink();
    let mut plan = Import { trim, dry_run: true, quiet: false, out: &mut sink, plan: Some(&mut planned), top };
    for (name, node) in &tree {
        plan.node(&place.dir.join(name), &join(&place.znode, name), node)?;
    }
    apply(&place.dir, planned, out)
}

/// One change the import makes, as the transaction's JSON says it, and the lines that
/// report it.
struct Planned {
    op: serde_json::Value,
    lines: Vec<String>,
}

/// What one `setxattr` carries at most (the kernel's limit is 64 KiB).
const TRANSACTION_BYTES: usize = 60_000;

/// Applies `planned` below `dir` in transactions of at most [`TRANSACTION_BYTES`]:
/// all of it at once when it fits, else batches in order, each all or nothing. A
/// change too large for any transaction (properties near ZooKeeper's 1 MB) goes alone,
/// through the files. Each batch's lines are printed once it is applied, so what is
/// printed is what was applied.
fn apply(dir: &Path, planned: Vec<Planned>, out: &mut dyn Write) -> Result<(), String> {
    let mut batches: Vec<Vec<Planned>> = Vec::new();
    let mut size = 0;
    for p in planned {
        let len = p.op.to_string().len() + 1;
        let full = batches.last().is_none_or(|b| b.len() >= crate::fs::TRANSACTION_OPS);
        if full || size + len > TRANSACTION_BYTES || len > TRANSACTION_BYTES {
            batches.push(Vec::new());
            size = 0;
        }
        size += len;
        batches.last_mut().expect("pushed").push(p);
        if len > TRANSACTION_BYTES {
            size = TRANSACTION_BYTES; // alone: the next change starts a new batch
        }
    }
    let count = batches.len();
    for (k, batch) in batches.iter().enumerate() {
        let ops: Vec<&serde_json::Value> = batch.iter().map(|p| &p.op).collect();
        let value = serde_json::json!({ "ops": ops }).to_string();
        let done = if value.len() <= TRANSACTION_BYTES + 100 {
            setxattr(dir, crate::fs::TRANSACTION_XATTR, value.as_bytes())
        } else {
            through_files(dir, &batch[0].op)
        };
        if let Err(e) = done {
            let first = batch.first().and_then(|p| p.lines.first()).cloned().unwrap_or_default();
            let applied = if k == 0 {
                "nothing was changed".to_string()
            } else {
                format!("the {k} before it were applied (printed above)")
            };
            let hint = if e.raw_os_error() == Some(libc::ESTALE) {
                "; another client changed a node meanwhile: run the import again"
            } else {
                ""
            };
            let what = if count == 1 {
                format!("the import's transaction (from `{first}`)")
            } else {
                format!("transaction {} of {count} (from `{first}`)", k + 1)
            };
            return Err(format!("{} failed: {e}{hint}; none of its changes were applied, {applied}", what));
        }
        for line in batch.iter().flat_map(|p| &p.lines) {
            writeln!(out, "{line}").map_err(|e| format!("writing the changes: {e}"))?;
        }
    }
    until_shown(dir, batches.iter().flatten().map(|p| &p.op));
    Ok(())
}

/// Waits (at most 10 s) until the mount shows what the transactions did: the mount
/// hears of them through its watch, as of another client's changes, and shows a new
/// node or link once its watchers have been told; so that whatever runs after
/// `import` sees the imported tree.
fn until_shown<'a>(dir: &Path, ops: impl Iterator<Item = &'a serde_json::Value>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for op in ops {
        let path = dir.join(op["path"].as_str().unwrap_or_default());
        let links: Vec<String> = op["data"]
            .as_str()
            .and_then(|d| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(d).ok())
            .map(|m| m.keys().filter_map(|k| k.strip_suffix(LINK_SUFFIX).map(String::from)).collect())
            .unwrap_or_default();
        let version = || getxattr(&path, "user.zk.version").and_then(|v| String::from_utf8(v).ok());
        let done = || match op["op"].as_str() {
            Some("delete") => fs::symlink_metadata(&path).is_err(),
            Some("set") if version().and_then(|v| v.trim().parse::<i64>().ok()) == op["version"].as_i64() => false,
            _ => path.is_dir() && links.iter().all(|l| fs::symlink_metadata(path.join(l.trim_end())).is_ok()),
        };
        while !done() {
            if std::time::Instant::now() > deadline {
                eprintln!("zkfs: warning: the mount does not show the imported {} yet", path.display());
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// A change too large for a transaction: made through the mount's files.
fn through_files(dir: &Path, op: &serde_json::Value) -> std::io::Result<()> {
    let path = dir.join(op["path"].as_str().unwrap_or_default());
    let data = op["data"].as_str().unwrap_or("{}");
    if op["op"] == "create" {
        fs::create_dir(&path)?;
    }
    fs::write(path.join(PROPERTIES), data)
}

// Through libc, as getxattr.
fn setxattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    // SAFETY: both strings are NUL-terminated; value is valid for value.len() bytes.
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A node's version (`user.zk.version`) read before and after `read`, until both agree:
/// what was read is that version's.
fn at_version<T>(dir: &Path, znode: &str, mut read: impl FnMut() -> std::io::Result<T>) -> Result<(T, i64), String> {
    let version = || -> Option<i64> { String::from_utf8(getxattr(dir, "user.zk.version")?).ok()?.trim().parse().ok() };
    for _ in 0..10 {
        let before = version().ok_or_else(|| format!("{znode}: cannot read its version"))?;
        let value = read().map_err(|e| format!("{znode}: {e}"))?;
        if version() == Some(before) {
            return Ok((value, before));
        }
    }
    Err(format!("{znode}: changes faster than it can be read"))
}

struct Import<'a> {
    trim: bool,
    dry_run: bool,
    /// The checking pass: no warnings either (the real pass prints them).
    quiet: bool,
    out: &'a mut dyn Write,
    /// The planning pass: changes go here, with the lines that report them.
    plan: Option<&'a mut Vec<Planned>>,
    /// The directory imported into (transactions name paths from it).
    top: PathBuf,
}

impl Import<'_> {
    fn say(&mut self, line: String) -> Result<(), String> {
        if let Some(last) = self.plan.as_deref_mut().and_then(|p| p.last_mut()) {
            last.lines.push(line);
            return Ok(());
        }
        writeln!(self.out, "{line}").map_err(|e| format!("writing the changes: {e}"))
    }

    /// Plans a change (in the planning pass); its lines follow with [`Import::say`].
    fn plan(&mut self, op: serde_json::Value) {
        if let Some(plan) = self.plan.as_deref_mut() {
            plan.push(Planned { op, lines: Vec::new() });
        }
    }

    fn rel(&self, dir: &Path) -> String {
        dir.strip_prefix(&self.top).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn warn(&self, line: String) {
        if !self.quiet {
            eprintln!("zkfs: {line}");
        }
    }

    /// Makes `dir` match `node`. DIR's own children that the file does not name are
    /// never looked at, so they are never trimmed (as in zc.zk).
    fn node(&mut self, dir: &Path, raw_znode: &str, node: &Node) -> Result<(), String> {
        let json = node.properties_value().to_json();
        // Printed escaped: a name may hold what a terminal acts on.
        let znode = &names::escaped(raw_znode);
        let io = |what: &str, e: std::io::Error| format!("{znode}: cannot {what}: {e}");
        if dir.file_name().is_some_and(|n| n == PROPERTIES) {
            return Err(format!("{znode}: a node named {PROPERTIES} cannot be made through a mount (that name is its parent's properties file)"));
        }
        let exists = match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => true,
            Ok(m) if m.is_file() => {
                self.warn(format!("{znode} is a registration; it is left as it is"));
                return Ok(());
            }
            Ok(_) => return Err(format!("{znode} is a symbolic link; a node of that name would hide it")),
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(io("look it up", e)),
        };
        if !exists {
            let data = (!node.properties.is_empty()).then(|| json.clone());
            self.plan(serde_json::json!({ "op": "create", "path": self.rel(dir), "data": data }));
            self.say(format!("add {znode}"))?;
            if !self.dry_run {
                match fs::create_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io("create it", e)),
                }
                if !node.properties.is_empty() {
                    fs::write(dir.join(PROPERTIES), &json).map_err(|e| io("set its properties", e))?;
                }
            }
        } else {
            let file = dir.join(PROPERTIES);
            let (old, version) = at_version(dir, znode, || read_properties(&file, znode))
                .map_err(|e| format!("cannot read its properties: {e}"))?;
            let new = &node.properties;
            if !Value::Dict(old.clone()).same(&node.properties_value()) {
                let op = serde_json::json!({ "op": "set", "path": self.rel(dir), "data": json, "version": version });
                self.plan(op);
                for line in differences(znode, &old, new) {
                    self.say(line)?;
                }
                if !self.dry_run {
                    fs::write(dir.join(PROPERTIES), &json).map_err(|e| io("set its properties", e))?;
                }
            }
            let (dirs, files) = entries(dir, znode).map_err(|e| io("list it", e))?;
            for name in dirs.iter().filter(|n| !node.children.contains_key(*n)) {
                let child = join(raw_znode, name);
                if !self.trim {
                    self.warn(format!("extra path not trimmed: {}", names::escaped(&child)));
                } else if !self.dry_run || !self.quiet {
                    self.delete(&dir.join(name), &child)?;
                }
            }
            // Registrations come and go with their servers: not the file's business.
            for name in files.iter().filter(|n| self.trim && !node.children.contains_key(*n)) {
                self.warn(format!("not deleting {}: it is a registration", names::escaped(&join(raw_znode, name))));
            }
        }
        for (name, child) in &node.children {
            self.node(&dir.join(name), &join(raw_znode, name), child)?;
        }
        Ok(())
    }

    /// Removes a subtree, keeping registrations and the nodes that hold them. True if
    /// something was kept.
    fn delete(&mut self, dir: &Path, raw_znode: &str) -> Result<bool, String> {
        let znode = &names::escaped(raw_znode);
        let (dirs, files) = match entries(dir, znode) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(format!("{znode}: cannot list it: {e}")),
        };
        let mut kept = false;
        for name in &files {
            self.warn(format!("not deleting {}: it is a registration", names::escaped(&join(raw_znode, name))));
            kept = true;
        }
        for name in &dirs {
            kept |= self.delete(&dir.join(name), &join(raw_znode, name))?;
        }
        if kept {
            self.warn(format!("not deleting {znode}: it holds a registration"));
            return Ok(true);
        }
        if self.plan.is_some() {
            let (_, version) = at_version(dir, znode, || Ok(()))?;
            self.plan(serde_json::json!({ "op": "delete", "path": self.rel(dir), "version": version }));
            self.say(format!("delete {znode}"))?;
            return Ok(false);
        }
        if self.dry_run {
            self.say(format!("would delete {znode}"))?;
            return Ok(false);
        }
        // Its links are entries of the directory, which rmdir refuses to drop
        // (ENOTEMPTY): removed first, as `rm -r` does.
        let links = fs::read_dir(dir).and_then(|entries| {
            entries
                .filter_map(|e| e.and_then(|e| Ok(e.file_type()?.is_symlink().then(|| e.path()))).transpose())
                .collect::<Result<Vec<_>, _>>()
        });
        for link in links.map_err(|e| format!("{znode}: cannot list it: {e}"))? {
            match fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{znode}: cannot remove its link {}: {e}", link.display())),
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => self.say(format!("delete {znode}"))?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{znode}: cannot delete it: {e}")),
        }
        Ok(false)
    }
}

/// The changes from `old` to `new` properties, one line each, as zc.zk's dry run
/// words them.
fn differences(znode: &str, old: &[(String, Value)], new: &[(String, Value)]) -> Vec<String> {
    let old: BTreeMap<&String, &Value> = old.iter().map(|(k, v)| (k, v)).collect();
    let new: BTreeMap<&String, &Value> = new.iter().map(|(k, v)| (k, v)).collect();
    let mut lines = Vec::new();
    for (key, value) in &old {
        let link = key.strip_suffix(LINK_SUFFIX);
        match (new.get(key), link) {
            (None, Some(name)) => lines.push(format!("{znode} remove link {name} -> {}", shown(value))),
            (None, None) => lines.push(format!("{znode} remove property {key} = {}", value.to_python())),
            (Some(n), Some(name)) if !n.same(value) => {
                lines.push(format!("{znode} {name} link change from {} to {}", shown(value), shown(n)))
            }
            (Some(n), None) if !n.same(value) => {
                lines.push(format!("{znode} {key} change from {} to {}", value.to_python(), n.to_python()))
            }
            _ => {}
        }
    }
    for (key, value) in &new {
        if !old.contains_key(key) {
            match key.strip_suffix(LINK_SUFFIX) {
                Some(name) => lines.push(format!("{znode} add link {name} -> {}", shown(value))),
                None => lines.push(format!("{znode} add property {key} = {}", value.to_python())),
            }
        }
    }
    lines
}

/// A link target as written in the tree format.
fn shown(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => other.to_python(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            parse_args("import", args("--dry-run f.txt /mnt/zk --trim")),
            Ok(TreeCommand::Import { file: "f.txt".into(), dir: "/mnt/zk".into(), trim: true, dry_run: true })
        );
        assert_eq!(
            parse_args("import", args("- /m")),
            Ok(TreeCommand::Import { file: "-".into(), dir: "/m".into(), trim: false, dry_run: false })
        );
        assert_eq!(
            parse_args("export", args("--ephemeral /m")),
            Ok(TreeCommand::Export { dir: "/m".into(), ephemeral: true })
        );
        assert!(parse_args("export", args("--trim /m")).unwrap_err().contains("unknown flag --trim"));
        assert!(parse_args("import", args("f")).unwrap_err().contains("usage"));
        assert!(parse_args("validate", args("a b")).is_err());
    }

    #[test]
    fn differences_are_worded_as_zc_zk_words_them() {
        let v = |t: &str| literal::parse_python(t).unwrap();
        let old =
            vec![("a".into(), v("1")), ("b".into(), v("'x'")), ("l ->".into(), v("'/x'")), ("m ->".into(), v("'/m'"))];
        let new =
            vec![("a".into(), v("1.0")), ("b".into(), v("'y'")), ("l ->".into(), v("'/y'")), ("c".into(), v("[1]"))];
        assert_eq!(
            differences("/n", &old, &new),
            [
                "/n b change from 'x' to 'y'",
                "/n l link change from /x to /y",
                "/n remove link m -> /m",
                "/n add property c = [1]",
            ]
        );
    }
}
