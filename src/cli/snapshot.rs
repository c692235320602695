//! `zkfs snapshot DIR OUTDIR`: a subtree of a mount copied as one consistent state into
//! a directory that is swapped atomically, for programs that read a directory of files
//! (Envoy's watched directories, nginx includes) — Kubernetes' AtomicWriter layout:
//!
//! ```text
//! OUTDIR/..1765112345123456789/   one complete copy, written once, never changed
//! OUTDIR/..data -> ..1765112345123456789
//! OUTDIR/NAME -> ..data/NAME      one per top-level entry of DIR
//! ```
//!
//! A reader that opens `OUTDIR/svc/properties.json` resolves `..data` once, so it sees
//! the old copy or the new one, never a mix; the swap is one `rename(2)` of a symlink.
//!
//! **Consistent**: the copy is read twice over — every node's `user.zk.czxid` and
//! `user.zk.mzxid` (and every directory's listing) before its files are read, then all
//! of them again after the whole copy is read. ZooKeeper's zxids only grow, so when
//! both passes agree no node changed in between, and the copy is the state the mount
//! showed at one moment (the end of the first pass). When they differ (a writer in
//! between) the copy is thrown away and read again, a few times, with a growing pause;
//! a subtree that never holds still for one pass is an error, and nothing is swapped.
//!
//! It works through the mount like `zkfs export` (no ZooKeeper session of its own);
//! the second pass reads the mount's cache, so a snapshot costs the ensemble what one
//! cold read of the subtree costs the mount, and nothing when the mount has it cached.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use crate::data::names;

/// The symlink readers follow to the current copy.
pub const DATA: &str = "..data";

/// How many times a subtree that changed while it was read is read again.
const ATTEMPTS: u32 = 20;

/// One entry of the copy, by its path relative to DIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A node (a directory).
    Dir,
    /// `properties.json` or a registration: its bytes as `cat` shows them.
    File(Vec<u8>),
    /// A link, its target as `readlink` shows it (kept as it is).
    Link(PathBuf),
}

/// A subtree as read, by relative path (`""` is DIR itself, a directory).
pub type Tree = BTreeMap<PathBuf, Entry>;

/// A consistent read of a subtree.
#[derive(Debug)]
pub struct Taken {
    /// What the copy holds.
    pub tree: Tree,
    /// The directories read (for inotify watches).
    pub dirs: BTreeSet<PathBuf>,
    /// Reads it took to see the subtree hold still.
    pub attempts: u32,
}

/// A node's identity and version: czxid (a node deleted and made again is another),
/// mzxid (its data), and the names listed in it.
type Versions = BTreeMap<PathBuf, (String, String, Vec<Vec<u8>>)>;

fn xattr(path: &Path, name: &str) -> Result<String, String> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| format!("{}: NUL in path", path.display()))?;
    let n = CString::new(name).expect("no NUL");
    let mut buf = vec![0u8; 64];
    // SAFETY: both strings are NUL-terminated and buf is as long as said.
    let len = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::ENODATA) { " (is it on a zkfs mount?)" } else { "" };
        return Err(format!("{}: reading {name}: {e}{hint}", shown(path)));
    }
    buf.truncate(len as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn shown(path: &Path) -> String {
    names::escaped(&path.to_string_lossy())
}

/// The versions of the node at `path` (a directory or a registration file).
/// A node's czxid, mzxid and (for a directory) its listing.
type Version = (String, String, Vec<Vec<u8>>);

fn version(path: &Path, listing: Vec<Vec<u8>>) -> Result<Version, String> {
    Ok((xattr(path, "user.zk.czxid")?, xattr(path, "user.zk.mzxid")?, listing))
}

fn listing(dir: &Path) -> Result<Vec<(Vec<u8>, fs::FileType)>, String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| format!("{}: {e}", shown(dir)))? {
        let e = e.map_err(|e| format!("{}: {e}", shown(dir)))?;
        let kind = e.file_type().map_err(|err| format!("{}: {err}", shown(&e.path())))?;
        out.push((e.file_name().as_bytes().to_vec(), kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// One pass: the versions, and (with `tree`) the entries.
fn pass(root: &Path, mut tree: Option<&mut Tree>, dirs: &mut BTreeSet<PathBuf>) -> Result<Versions, String> {
    let mut versions = Versions::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = root.join(&rel);
        let listed = listing(&dir).and_then(|entries| {
            // The version before the files, so a change during their read shows in pass 2.
            let names: Vec<Vec<u8>> = entries.iter().map(|(n, _)| n.clone()).collect();
            Ok((version(&dir, names)?, entries))
        });
        let entries = match listed {
            Ok((v, entries)) => {
                versions.insert(rel.clone(), v);
                entries
            }
            // A subdirectory removed while this pass read (see below).
            Err(_) if !rel.as_os_str().is_empty() && gone(&dir) => {
                versions.insert(rel, ("gone".into(), "gone".into(), Vec::new()));
                continue;
            }
            Err(e) => return Err(e),
        };
        dirs.insert(dir.clone());
        if let Some(t) = tree.as_deref_mut() {
            t.insert(rel.clone(), Entry::Dir);
        }
        for (name, kind) in entries {
            let name = PathBuf::from(std::ffi::OsStr::from_bytes(&name));
            let (path, rel) = (dir.join(&name), rel.join(&name));
            if kind.is_dir() {
                todo.push(rel);
                continue;
            }
            match entry(&path, &name, kind, tree.as_deref_mut().map(|t| (t, rel.clone()))) {
                Ok(Some(v)) => {
                    versions.insert(rel, v);
                }
                Ok(None) => {}
                // Listed, then gone (removed, or a link dropped by a change of its
                // directory's data, while this pass read): the subtree changed, so this
                // pass cannot agree with the next, and the copy is read again.
                Err(_) if gone(&path) => {
                    versions.insert(rel, ("gone".into(), "gone".into(), Vec::new()));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(versions)
}

/// True if `path` no longer exists.
fn gone(path: &Path) -> bool {
    fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// One file or link of a pass: its version (files other than `properties.json`), and
/// (with `tree`) its entry.
fn entry(
    path: &Path,
    name: &Path,
    kind: fs::FileType,
    tree: Option<(&mut Tree, PathBuf)>,
) -> Result<Option<Version>, String> {
    if kind.is_symlink() {
        if let Some((t, rel)) = tree {
            let target = fs::read_link(path).map_err(|e| format!("{}: {e}", shown(path)))?;
            t.insert(rel, Entry::Link(target));
        }
        return Ok(None);
    }
    let v = if name != Path::new(names::PROPERTIES) { Some(version(path, Vec::new())?) } else { None };
    if let Some((t, rel)) = tree {
        let bytes = fs::read(path).map_err(|e| format!("{}: {e}", shown(path)))?;
        t.insert(rel, Entry::File(bytes));
    }
    Ok(v)
}

/// Reads `dir` as one consistent state (see the module's notes).
pub fn take(dir: &Path) -> Result<Taken, String> {
    for attempt in 1..=ATTEMPTS {
        let mut tree = Tree::new();
        let mut dirs = BTreeSet::new();
        let before = pass(dir, Some(&mut tree), &mut dirs)?;
        let after = pass(dir, None, &mut BTreeSet::new())?;
        if before == after {
            return Ok(Taken { tree, dirs, attempts: attempt });
        }
        log::info!("{}: changed while it was read; reading it again", shown(dir));
        std::thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
    }
    Err(format!("{}: changed during each of {ATTEMPTS} reads; no consistent state to copy", shown(dir)))
}

/// What OUTDIR's current copy holds, if it has one.
fn current(out: &Path) -> Option<Tree> {
    let data = out.join(DATA);
    fs::read_link(&data).ok()?;
    let mut tree = Tree::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        tree.insert(rel.clone(), Entry::Dir);
        for e in fs::read_dir(data.join(&rel)).ok()? {
            let e = e.ok()?;
            let rel = rel.join(e.file_name());
            let kind = e.file_type().ok()?;
            if kind.is_dir() {
                todo.push(rel);
            } else if kind.is_symlink() {
                tree.insert(rel, Entry::Link(fs::read_link(e.path()).ok()?));
            } else {
                tree.insert(rel, Entry::File(fs::read(e.path()).ok()?));
            }
        }
    }
    Some(tree)
}

/// True if OUTDIR's current copy is `tree` (nothing to swap).
pub fn unchanged(out: &Path, tree: &Tree) -> bool {
    current(out).as_ref() == Some(tree)
}

/// Names OUTDIR keeps for itself; a top-level entry so named cannot be copied.
fn reserved(name: &[u8]) -> bool {
    name.starts_with(b"..")
}

/// Puts `tree` in place under `out`; false if `out` already held that copy.
pub fn install(out: &Path, tree: &Tree) -> Result<bool, String> {
    let top: Vec<&PathBuf> = tree.keys().filter(|p| p.components().count() == 1).collect();
    if let Some(bad) = top.iter().find(|p| reserved(p.as_os_str().as_bytes())) {
        return Err(format!(
            "{}: a name beginning with `..` cannot be copied to the top of {} (the copy's own names begin so)",
            shown(bad),
            shown(out)
        ));
    }
    if current(out).as_ref() == Some(tree) {
        return Ok(false);
    }
    fs::create_dir_all(out).map_err(|e| format!("{}: {e}", shown(out)))?;
    let stamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let copy_name = format!("..{stamp}");
    let copy = out.join(&copy_name);
    let written = write_copy(&copy, tree);
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&copy);
        return Err(e);
    }
    // The swap: a new symlink renamed over ..data.
    let old = fs::read_link(out.join(DATA)).ok();
    swap_link(out, DATA, Path::new(&copy_name))?;
    // Top-level names: new ones appear, gone ones go (after the swap, so a reader of a
    // name that stays never misses it).
    for name in &top {
        let want = Path::new(DATA).join(name);
        if fs::read_link(out.join(name)).ok().as_deref() != Some(want.as_path()) {
            swap_link(out, &name.to_string_lossy(), &want)?;
        }
    }
    let keep: BTreeSet<&std::ffi::OsStr> = top.iter().map(|p| p.as_os_str()).collect();
    for e in fs::read_dir(out).map_err(|e| format!("{}: {e}", shown(out)))?.flatten() {
        let name = e.file_name();
        let is_link = e.file_type().is_ok_and(|t| t.is_symlink());
        let points_in = fs::read_link(e.path()).is_ok_and(|t| t.starts_with(DATA));
        if !reserved(name.as_bytes()) && is_link && points_in && !keep.contains(name.as_os_str()) {
            let _ = fs::remove_file(e.path());
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != copy_name.as_str()) {
        if reserved(old.as_os_str().as_bytes()) && old.components().count() == 1 {
            let _ = fs::remove_dir_all(out.join(old));
        }
    }
    Ok(true)
}

fn write_copy(copy: &Path, tree: &Tree) -> Result<(), String> {
    fs::create_dir(copy).map_err(|e| format!("{}: {e}", shown(copy)))?;
    for (rel, entry) in tree {
        if rel.as_os_str().is_empty() {
            continue;
        }
        let path = copy.join(rel);
        let done = match entry {
            Entry::Dir => fs::create_dir(&path),
            Entry::Link(target) => symlink(target, &path),
            Entry::File(bytes) => fs::File::create(&path).and_then(|mut f| {
                f.write_all(bytes)?;
                f.sync_all()
            }),
        };
        done.map_err(|e| format!("{}: {e}", shown(&path)))?;
    }
    // The directory entries too, before ..data points at them.
    fs::File::open(copy).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", shown(copy)))
}

/// `out/name` becomes a symlink to `target`, atomically (a new link renamed over it).
fn swap_link(out: &Path, name: &str, target: &Path) -> Result<(), String> {
    let tmp = out.join(format!("..tmp-{}-{name}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).map_err(|e| format!("{}: {e}", shown(&tmp)))?;
    fs::rename(&tmp, out.join(name)).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("{}: {e}", shown(&out.join(name)))
    })
}

/// The usage line.
pub const USAGE: &str = "zkfs snapshot DIR OUTDIR";

/// Parses the arguments after `snapshot`.
pub fn parse_args(args: Vec<String>) -> Result<(PathBuf, PathBuf), String> {
    match <[String; 2]>::try_from(args) {
        Ok([dir, out]) if !dir.starts_with('-') && !out.starts_with('-') => Ok((dir.into(), out.into())),
        _ => Err(format!("usage: {USAGE}")),
    }
}

/// Runs `zkfs snapshot DIR OUTDIR`: exit 0 when OUTDIR holds the copy (printing whether
/// it changed), 1 with the reason otherwise (OUTDIR as it was).
pub fn run(dir: &Path, out: &Path) -> ExitCode {
    let result = take(dir).and_then(|taken| {
        let entries = taken.tree.len();
        install(out, &taken.tree).map(|changed| (changed, entries))
    });
    match result {
        Ok((changed, entries)) => {
            let what = if changed { "new copy in place" } else { "unchanged" };
            println!("{}: {what} ({entries} entries)", shown(&out.join(DATA)));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zkfs snapshot: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, Entry)]) -> Tree {
        let mut t: Tree = entries.iter().map(|(p, e)| (PathBuf::from(p), e.clone())).collect();
        t.insert(PathBuf::new(), Entry::Dir);
        t
    }

    #[test]
    fn install_swaps_the_whole_copy_and_drops_the_old_one() {
        let out = tempfile::tempdir().unwrap();
        let one = tree(&[("a", Entry::Dir), ("a/properties.json", Entry::File(b"{}".to_vec())), ("b", Entry::Dir)]);
        assert!(install(out.path(), &one).unwrap());
        assert_eq!(fs::read(out.path().join("a/properties.json")).unwrap(), b"{}");
        assert!(!install(out.path(), &one).unwrap(), "the same copy again changes nothing");
        let first = fs::read_link(out.path().join(DATA)).unwrap();
        let two = tree(&[("a", Entry::Dir), ("a/properties.json", Entry::File(b"{\"x\":1}".to_vec()))]);
        assert!(install(out.path(), &two).unwrap());
        assert_eq!(fs::read(out.path().join("a/properties.json")).unwrap(), b"{\"x\":1}");
        assert!(!out.path().join("b").exists(), "a name gone from DIR goes");
        assert!(!out.path().join(first).exists(), "the old copy is removed");
        let names: Vec<_> = fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "..data, its copy and a: {names:?}");
    }

    #[test]
    fn a_reserved_top_name_is_refused_and_changes_nothing() {
        let out = tempfile::tempdir().unwrap();
        let bad = tree(&[("..data", Entry::Dir)]);
        let err = install(out.path(), &bad).unwrap_err();
        assert!(err.contains("beginning with `..`"), "{err}");
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[test]
    fn arguments() {
        assert_eq!(parse_args(vec!["a".into(), "b".into()]).unwrap(), ("a".into(), "b".into()));
        assert!(parse_args(vec!["a".into()]).unwrap_err().contains("usage"));
        assert!(parse_args(vec!["--x".into(), "b".into()]).is_err());
    }
}
