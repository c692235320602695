//! Temporary files local to this mount: what `sed -i`, vim, `jq … > tmp`, Python's
//! `tempfile` and configuration management write before renaming over a file.
//!
//! Any name created in a directory that is neither a registration (`HOST:PORT`) nor
//! `properties.json` becomes a *scratch file*: bytes in this process's memory. It never
//! reaches ZooKeeper, so no other host sees it, and it is gone after the `unlink` or
//! `rename` that ends it (see [`crate::fs::replace`]), and with the mount. Scratch files
//! are left out of directory listings, so that discovery (`ls providers`, the HAProxy
//! example) only ever sees registrations; the program that made one reaches it by name
//! (lookup, stat, open). A name that looks like a mistyped `HOST:PORT` (`host:http`,
//! `10.0.0.5:80800`) is still refused, so that nobody believes they registered.
//!
//! The same table remembers what [`crate::fs::replace`] needs between two requests: the
//! scratch inodes renamed over a data file (*aliases*), and the data files a process
//! unlinked a moment ago (*hidden* from it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::data::names::{self, PROPERTIES};
use crate::error::{Error, Result};
use crate::fs::attr::{process_of, Attr, FileKind, Opened};
use crate::model::inodes::child_path;
use crate::sync::Recover;

/// Inode and file-handle numbers of scratch files carry this bit; the view's and the
/// open-file table's counters never reach it.
pub(crate) const SCRATCH_BIT: u64 = 1 << 62;
/// The most bytes all scratch files of a mount may hold together.
pub const MAX_SCRATCH_BYTES: usize = 64 << 20;
/// How long a data file stays out of sight of the process that unlinked it, and how
/// long a copy that EXDEV asked for is remembered.
pub(crate) const HIDDEN_FOR: Duration = Duration::from_secs(5);
/// How many renamed-over inodes are remembered as aliases (the kernel forgets them
/// within moments; the bound only keeps a runaway loop from growing the table).
pub(crate) const MAX_ALIASES: usize = 4096;

/// True for inode and file-handle numbers of scratch files (and of their aliases).
pub fn is_scratch_number(n: u64) -> bool {
    n & SCRATCH_BIT != 0
}

/// What a name created in a directory becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameUse {
    /// The node's own `properties.json`.
    Properties,
    /// A registration (`HOST:PORT`).
    Registration,
    /// A scratch file local to this mount.
    Scratch,
}

/// Says what `name` becomes when created; a typo of `HOST:PORT` is refused (EINVAL).
pub fn classify(name: &str) -> Result<NameUse> {
    names::check_len(name)?;
    if name == PROPERTIES {
        return Ok(NameUse::Properties);
    }
    match names::check_registration(name) {
        Ok(()) => Ok(NameUse::Registration),
        Err(e) if looks_like_a_registration(name) => Err(e),
        Err(_) => Ok(NameUse::Scratch),
    }
}

/// `10.0.0.5:80800`, `host:http` or `host:` was meant as a registration: say so rather
/// than keep a file nobody else can see. Temporary names built on a registration's
/// name stay allowed: an editor's (`.h:1.swp`, `h:1~`, `#h:1#`) and those with a
/// random tail (Salt's `h:1x7_k2`, Puppet's `h:120261128-42-x1`).
pub(crate) fn looks_like_a_registration(name: &str) -> bool {
    let Some((_, port)) = name.rsplit_once(':') else { return false };
    let temporary = name.starts_with('.') || name.starts_with('#') || name.ends_with('~');
    let all = |f: fn(&u8) -> bool| port.as_bytes().iter().all(f);
    !temporary && (all(u8::is_ascii_digit) || all(u8::is_ascii_alphabetic))
}

/// Attribute changes asked of a scratch file (`chmod`, `chown`, `truncate`, `touch`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Changes {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SystemTime>,
    /// New modification time.
    pub mtime: Option<SystemTime>,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct File {
    pub(crate) data: Vec<u8>,
    pub(crate) perm: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// The three times POSIX keeps apart: last access, last change of the bytes, last
    /// change of the bytes or the attributes (each `setattr` and each write).
    pub(crate) atime: SystemTime,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
    /// When the file was made.
    pub(crate) btime: SystemTime,
    /// Still has a name; an unlinked file lives on while it is open.
    pub(crate) linked: bool,
    pub(crate) open: usize,
    /// The version of its directory's properties when it was made (what a rename onto
    /// `properties.json` replaces, unless its process read another).
    pub(crate) base: Option<i32>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct OpenFile {
    pub(crate) ino: u64,
    pub(crate) writes: bool,
    pub(crate) append: bool,
}

#[derive(Default)]
pub(crate) struct Table {
    /// (directory path, name) → inode.
    pub(crate) names: HashMap<(String, String), u64>,
    pub(crate) files: HashMap<u64, File>,
    pub(crate) open: HashMap<u64, OpenFile>,
    pub(crate) next: u64,
    pub(crate) bytes: usize,
    /// Scratch inodes renamed over a data file → that file's inode.
    pub(crate) aliases: HashMap<u64, u64>,
    pub(crate) alias_order: VecDeque<u64>,
    /// Data files (directory path, name) out of sight of one process since its unlink
    /// → (that process, since when).
    pub(crate) hidden: HashMap<(String, String), (u32, Instant)>,
    /// Registrations a process was just told to copy (EXDEV), so its unlink of the
    /// source ends the "move" without unregistering → (that process, since when).
    pub(crate) copied: HashMap<(String, String), (u32, Instant)>,
}

impl Table {
    pub(crate) fn number(&mut self) -> u64 {
        self.next += 1;
        SCRATCH_BIT | self.next
    }

    pub(crate) fn drop_if_unused(&mut self, ino: u64) {
        if self.files.get(&ino).is_some_and(|f| !f.linked && f.open == 0) {
            if let Some(f) = self.files.remove(&ino) {
                self.bytes -= f.data.len();
            }
        }
    }

    pub(crate) fn unname(&mut self, dir: &str, name: &str) -> Option<u64> {
        let ino = self.names.remove(&(dir.to_string(), name.to_string()))?;
        if let Some(f) = self.files.get_mut(&ino) {
            f.linked = false;
        }
        self.drop_if_unused(ino);
        Some(ino)
    }

    pub(crate) fn resize(&mut self, ino: u64, len: usize) -> Result<()> {
        let Some(f) = self.files.get_mut(&ino) else { return Err(Error::Stale) };
        let grow = len.saturating_sub(f.data.len());
        if grow > 0 && self.bytes + grow > MAX_SCRATCH_BYTES {
            return Err(Error::TooLarge(format!(
                "temporary files on this mount are limited to {} MiB in all",
                MAX_SCRATCH_BYTES >> 20
            )));
        }
        self.bytes = self.bytes + len - f.data.len();
        f.data.resize(len, 0);
        Ok(())
    }
}

/// The scratch files of a mount as handed over (see [`Scratch::handed`]).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct HandedScratch {
    names: Vec<(String, String, u64)>,
    files: Vec<(u64, File)>,
    open: Vec<(u64, OpenFile)>,
    next: u64,
    aliases: Vec<(u64, u64)>,
}

/// The scratch files of one mount.
#[derive(Default)]
pub struct Scratch {
    /// Every scratch file, open handle, alias and hidden `properties.json`. Held for
    /// in-memory work only — never across a ZooKeeper call, a kernel notification or
    /// another lock — so it cannot deadlock.
    pub(crate) table: Mutex<Table>,
}

impl Scratch {
    pub(crate) fn table(&self) -> MutexGuard<'_, Table> {
        self.table.locked()
    }

    /// The scratch files and their open handles, for the next process image of the
    /// mount (`zkfs reload`). What a process was just told (`hidden`, `copied`) is
    /// not: it is for the next moments only.
    pub fn handed(&self) -> HandedScratch {
        let t = self.table();
        HandedScratch {
            names: t.names.iter().map(|((d, n), ino)| (d.clone(), n.clone(), *ino)).collect(),
            files: t.files.iter().map(|(ino, f)| (*ino, f.clone())).collect(),
            open: t
                .open
                .iter()
                .map(|(fh, o)| (*fh, OpenFile { ino: o.ino, writes: o.writes, append: o.append }))
                .collect(),
            next: t.next,
            aliases: t.aliases.iter().map(|(a, b)| (*a, *b)).collect(),
        }
    }

    /// Takes over the scratch files [`Scratch::handed`] gave.
    pub fn take_over(&self, h: HandedScratch) {
        let mut t = self.table();
        t.names = h.names.into_iter().map(|(d, n, ino)| ((d, n), ino)).collect();
        t.bytes = h.files.iter().map(|(_, f)| f.data.len()).sum();
        t.files = h.files.into_iter().collect();
        t.open = h.open.into_iter().collect();
        t.next = h.next;
        t.alias_order = h.aliases.iter().map(|(a, _)| *a).collect();
        t.aliases = h.aliases.into_iter().collect();
    }

    /// The scratch file `name` in `dir`, if any.
    pub fn lookup(&self, dir: &str, name: &str) -> Option<u64> {
        self.table().names.get(&(dir.to_string(), name.to_string())).copied()
    }

    /// The attributes of scratch file `ino` (never kept by the kernel).
    pub fn attr(&self, ino: u64) -> Option<Attr> {
        let t = self.table();
        let f = t.files.get(&ino)?;
        Some(Attr {
            ino,
            kind: FileKind::File,
            size: f.data.len() as u64,
            nlink: u32::from(f.linked),
            perm: f.perm,
            atime: f.atime,
            mtime: f.mtime,
            ctime: f.ctime,
            crtime: f.btime,
            uid: f.uid,
            gid: f.gid,
            volatile: true,
        })
    }

    /// True if directory `dir` holds a scratch file.
    pub fn holds_any(&self, dir: &str) -> bool {
        self.table().names.keys().any(|(d, _)| d == dir)
    }

    /// The data file a renamed-over scratch inode now stands for.
    pub fn alias(&self, ino: u64) -> Option<u64> {
        self.table().aliases.get(&ino).copied()
    }

    /// Creates `name` in `dir`; with `flags`, also opens it.
    pub(crate) fn create(
        &self,
        dir: &str,
        name: &str,
        perm: u32,
        owner: (u32, u32),
        flags: Option<i32>,
        base: Option<i32>,
    ) -> Result<(u64, Option<u64>)> {
        let mut t = self.table();
        let key = (dir.to_string(), name.to_string());
        if t.names.contains_key(&key) {
            return Err(Error::Exists(child_path(dir, name)));
        }
        let ino = t.number();
        let now = SystemTime::now();
        let open = usize::from(flags.is_some());
        let file = File {
            data: Vec::new(),
            perm: (perm & 0o7777) as u16,
            uid: owner.0,
            gid: owner.1,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            linked: true,
            open,
            base,
        };
        t.files.insert(ino, file);
        t.names.insert(key, ino);
        let fh = flags.map(|flags| {
            let fh = t.number();
            t.open.insert(fh, open_file(ino, flags));
            fh
        });
        Ok((ino, fh))
    }

    /// Opens scratch file `ino` (`O_TRUNC` empties it); `None` if it is not one.
    pub(crate) fn open(&self, ino: u64, flags: i32) -> Option<Result<u64>> {
        let mut t = self.table();
        t.files.get(&ino)?;
        if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
            if let Err(e) = t.resize(ino, 0) {
                return Some(Err(e));
            }
            // POSIX: a truncating open of an existing file marks mtime and ctime.
            let f = t.files.get_mut(&ino)?;
            let now = SystemTime::now();
            (f.mtime, f.ctime) = (now, now);
        }
        t.files.get_mut(&ino)?.open += 1;
        let fh = t.number();
        t.open.insert(fh, open_file(ino, flags));
        Some(Ok(fh))
    }

    pub(crate) fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let t = self.table();
        let ino = t.open.get(&fh).ok_or(Error::Stale)?.ino;
        let data = &t.files.get(&ino).ok_or(Error::Stale)?.data;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    pub(crate) fn write(&self, fh: u64, offset: u64, bytes: &[u8]) -> Result<usize> {
        let mut t = self.table();
        let h = t.open.get(&fh).ok_or(Error::Stale)?;
        if !h.writes {
            return Err(Error::NotPermitted("file not open for writing".into()));
        }
        let (ino, append) = (h.ino, h.append);
        let len = t.files.get(&ino).ok_or(Error::Stale)?.data.len();
        let start = if append { len } else { usize::try_from(offset).unwrap_or(usize::MAX) };
        let end = start.checked_add(bytes.len()).ok_or_else(|| Error::TooLarge("write beyond any size".into()))?;
        if end > len {
            t.resize(ino, end)?;
        }
        let f = t.files.get_mut(&ino).ok_or(Error::Stale)?;
        f.data[start..end].copy_from_slice(bytes);
        let now = SystemTime::now();
        (f.mtime, f.ctime) = (now, now);
        Ok(bytes.len())
    }

    pub(crate) fn release(&self, fh: u64) {
        let mut t = self.table();
        let Some(h) = t.open.remove(&fh) else { return };
        if let Some(f) = t.files.get_mut(&h.ino) {
            f.open = f.open.saturating_sub(1);
        }
        t.drop_if_unused(h.ino);
    }

    /// Applies `changes` to scratch file `ino`; `None` if it is not one.
    pub(crate) fn change(&self, ino: u64, changes: Changes) -> Option<Result<()>> {
        let mut t = self.table();
        t.files.get(&ino)?;
        if let Some(size) = changes.size {
            let size = match usize::try_from(size) {
                Ok(s) => s,
                Err(_) => return Some(Err(Error::TooLarge("size beyond any file".into()))),
            };
            if let Err(e) = t.resize(ino, size) {
                return Some(Err(e));
            }
        }
        let f = t.files.get_mut(&ino)?;
        let now = SystemTime::now();
        if let Some(mode) = changes.mode {
            f.perm = (mode & 0o7777) as u16;
        }
        f.uid = changes.uid.unwrap_or(f.uid);
        f.gid = changes.gid.unwrap_or(f.gid);
        // Each time as asked (utimensat may set one and omit the other); a truncate
        // marks mtime; every change of attributes marks ctime.
        f.atime = changes.atime.unwrap_or(f.atime);
        f.mtime = changes.mtime.or(changes.size.map(|_| now)).unwrap_or(f.mtime);
        f.ctime = now;
        Some(Ok(()))
    }

    /// Removes scratch file `name` from `dir`; false if there is none.
    pub(crate) fn unlink(&self, dir: &str, name: &str) -> bool {
        self.table().unname(dir, name).is_some()
    }

    /// Moves a scratch file to another scratch name, replacing what was there.
    pub(crate) fn rename(&self, dir: &str, name: &str, new_dir: &str, new_name: &str) -> Result<()> {
        let mut t = self.table();
        let ino = t
            .names
            .remove(&(dir.to_string(), name.to_string()))
            .ok_or_else(|| Error::NotFound(child_path(dir, name)))?;
        t.unname(new_dir, new_name);
        t.names.insert((new_dir.to_string(), new_name.to_string()), ino);
        Ok(())
    }

    pub(crate) fn content(&self, dir: &str, name: &str) -> Option<(u64, Vec<u8>, Option<i32>)> {
        let t = self.table();
        let ino = *t.names.get(&(dir.to_string(), name.to_string()))?;
        let f = t.files.get(&ino)?;
        Some((ino, f.data.clone(), f.base))
    }

    /// A scratch file was renamed over data file `target`: its name goes, and its inode
    /// (which the kernel now shows under the target's name) stands for the target.
    pub(crate) fn retire(&self, dir: &str, name: &str, ino: u64, target: u64) {
        let mut t = self.table();
        if t.names.get(&(dir.to_string(), name.to_string())) == Some(&ino) {
            t.unname(dir, name);
        }
        if t.aliases.insert(ino, target).is_none() {
            t.alias_order.push_back(ino);
        }
        while t.alias_order.len() > MAX_ALIASES {
            if let Some(old) = t.alias_order.pop_front() {
                t.aliases.remove(&old);
            }
        }
    }

    /// False while no data file is hidden from anyone (nearly always).
    pub(crate) fn hides_anything(&self) -> bool {
        let mut t = self.table();
        if !t.hidden.is_empty() {
            t.hidden.retain(|_, (_, since)| since.elapsed() <= HIDDEN_FOR);
        }
        !t.hidden.is_empty()
    }

    pub(crate) fn hide(&self, dir: &str, name: &str, pid: u32) {
        self.table().hidden.insert((dir.to_string(), name.to_string()), (pid, Instant::now()));
    }

    pub(crate) fn unhide(&self, dir: &str, name: &str) {
        self.table().hidden.remove(&(dir.to_string(), name.to_string()));
    }

    /// True if data file `name` of `dir` was unlinked by the process of thread `tid`
    /// moments ago (see the module docs).
    pub(crate) fn hidden_from(&self, dir: &str, name: &str, tid: u32) -> bool {
        let pid = recent(&mut self.table().hidden, dir, name);
        pid.is_some_and(|pid| process_of(tid) == pid)
    }

    pub(crate) fn copied(&self, dir: &str, name: &str, pid: u32) {
        self.table().copied.insert((dir.to_string(), name.to_string()), (pid, Instant::now()));
    }

    /// True (once) if the process of thread `tid` was just told to copy registration
    /// `name` of `dir` instead of renaming it.
    pub(crate) fn take_copied(&self, dir: &str, name: &str, tid: u32) -> bool {
        let Some(pid) = recent(&mut self.table().copied, dir, name) else { return false };
        if process_of(tid) != pid {
            return false;
        }
        self.table().copied.remove(&(dir.to_string(), name.to_string()));
        true
    }

    /// Drops the scratch files of `dir` and below (the directory is gone).
    pub(crate) fn forget_dir(&self, dir: &str) {
        let mut t = self.table();
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let gone: Vec<(String, String)> =
            t.names.keys().filter(|(d, _)| d == dir || d.starts_with(&prefix)).cloned().collect();
        for (d, n) in gone {
            t.unname(&d, &n);
        }
        t.hidden.retain(|(d, _), _| d != dir && !d.starts_with(&prefix));
        t.copied.retain(|(d, _), _| d != dir && !d.starts_with(&prefix));
    }
}

/// The process of a recent entry of `map`; an entry too old is dropped.
pub(crate) fn recent(map: &mut HashMap<(String, String), (u32, Instant)>, dir: &str, name: &str) -> Option<u32> {
    if map.is_empty() {
        return None;
    }
    let key = (dir.to_string(), name.to_string());
    let (pid, since) = *map.get(&key)?;
    if since.elapsed() > HIDDEN_FOR {
        map.remove(&key);
        return None;
    }
    Some(pid)
}

pub(crate) fn open_file(ino: u64, flags: i32) -> OpenFile {
    OpenFile { ino, writes: flags & libc::O_ACCMODE != libc::O_RDONLY, append: flags & libc::O_APPEND != 0 }
}

pub(crate) fn opened(fh: u64) -> Opened {
    // Direct I/O: the bytes live here, and an inode renamed over a data file must never
    // show cached scratch pages.
    Opened { fh, no_flush: true }
}

// The filesystem's side: hooks called from `fs.rs` and the FUSE adapter.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_registrations_scratch_files_or_typos() {
        assert_eq!(classify("properties.json").unwrap(), NameUse::Properties);
        assert_eq!(classify("10.0.0.5:8080").unwrap(), NameUse::Registration);
        for scratch in ["sedkNT2YS", "4913", ".properties.json.swp", "properties.json~", "tmp8_x2k", ".ansible_tmpa1"] {
            assert_eq!(classify(scratch).unwrap(), NameUse::Scratch, "{scratch}");
        }
        for editor in [".10.0.0.5:8080.swp", "10.0.0.5:8080~", "#h:1#", "10.0.0.5:80x7_k2pq", "h:120261128-42-x1"] {
            assert_eq!(classify(editor).unwrap(), NameUse::Scratch, "{editor}");
        }
        for typo in ["host:0", "10.0.0.5:80800", "host:http", ":80", "host:", "[::1:80", "host:08"] {
            assert_eq!(classify(typo).unwrap_err().errno(), libc::EINVAL, "{typo}");
        }
    }

    #[test]
    fn a_scratch_file_is_written_read_truncated_and_dropped_after_its_last_close() {
        let s = Scratch::default();
        let (ino, fh) = s.create("/a", "tmp", 0o600, (0, 0), Some(libc::O_RDWR | libc::O_CREAT), None).unwrap();
        let fh = fh.unwrap();
        assert!(is_scratch_number(ino) && is_scratch_number(fh));
        assert_eq!(s.write(fh, 0, b"hello").unwrap(), 5);
        assert_eq!(s.write(fh, 7, b"!").unwrap(), 1);
        assert_eq!(s.read(fh, 0, 100).unwrap(), b"hello\0\0!");
        s.change(ino, Changes { size: Some(2), mode: Some(0o644), ..Changes::default() }).unwrap().unwrap();
        assert_eq!(s.attr(ino).unwrap().perm, 0o644);
        assert_eq!(s.read(fh, 0, 100).unwrap(), b"he");
        assert!(s.unlink("/a", "tmp"));
        assert_eq!(s.lookup("/a", "tmp"), None);
        assert_eq!(s.read(fh, 0, 100).unwrap(), b"he", "an open file outlives its name");
        s.release(fh);
        assert!(s.attr(ino).is_none());
        assert_eq!(s.table().bytes, 0);
    }

    #[test]
    fn atime_mtime_and_ctime_are_kept_apart() {
        let s = Scratch::default();
        let (ino, _) = s.create("/a", "t", 0o644, (0, 0), None, None).unwrap();
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        s.change(ino, Changes { atime: Some(at(1)), mtime: Some(at(2)), ..Changes::default() }).unwrap().unwrap();
        let a = s.attr(ino).unwrap();
        assert_eq!((a.atime, a.mtime), (at(1), at(2)));
        assert!(a.ctime > at(2), "utimensat marks ctime now");
        s.change(ino, Changes { mode: Some(0o600), ..Changes::default() }).unwrap().unwrap();
        let b = s.attr(ino).unwrap();
        assert_eq!((b.atime, b.mtime), (at(1), at(2)), "chmod leaves atime and mtime");
        assert!(b.ctime >= a.ctime);
        let fh = s.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap().unwrap();
        let c = s.attr(ino).unwrap();
        assert!(c.mtime > at(2) && c.ctime >= b.ctime, "O_TRUNC marks mtime and ctime");
        assert_eq!(c.atime, at(1));
        s.release(fh);
    }

    #[test]
    fn appends_go_to_the_end_and_the_total_is_bounded() {
        let s = Scratch::default();
        let (ino, _) = s.create("/a", "t", 0o644, (0, 0), None, None).unwrap();
        let fh = s.open(ino, libc::O_WRONLY | libc::O_APPEND).unwrap().unwrap();
        s.write(fh, 0, b"ab").unwrap();
        s.write(fh, 0, b"cd").unwrap();
        assert_eq!(s.read(fh, 0, 10).unwrap(), b"abcd");
        let big = vec![b'x'; MAX_SCRATCH_BYTES];
        assert_eq!(s.write(fh, 0, &big).unwrap_err().errno(), libc::EFBIG);
        let fh2 = s.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap().unwrap();
        assert_eq!(s.read(fh2, 0, 10).unwrap(), b"");
    }

    #[test]
    fn renames_between_scratch_names_replace_the_target() {
        let s = Scratch::default();
        let (a, _) = s.create("/d", "a", 0o644, (0, 0), None, None).unwrap();
        let (b, _) = s.create("/d", "b", 0o644, (0, 0), None, None).unwrap();
        s.rename("/d", "a", "/e", "b").unwrap();
        assert_eq!(s.lookup("/e", "b"), Some(a));
        assert_eq!(s.lookup("/d", "b"), Some(b));
        s.forget_dir("/d");
        assert_eq!(s.lookup("/d", "b"), None);
        assert!(s.attr(b).is_none());
        assert_eq!(s.lookup("/e", "b"), Some(a));
    }
}
