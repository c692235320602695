//! Filesystem operations on the view: what `ls`, `cat`, `touch`, `mkdir`, `rm` do.
//!
//! Plain Rust over [`View`] and [`Session`]; the FUSE adapter (`fuse.rs`) only
//! translates. Writes to open files live in [`crate::fs::handles`].
//!
//! The mapping: a persistent znode is a directory holding `properties.json` (its data)
//! and its children; an ephemeral znode is a registration file showing its data. Only
//! registrations can be created as files, only by this mount's session they can be
//! removed or changed.
//!
//! `Fs` is extended by the files beside this one, each owning one kind of operation:
//! `locks.rs` (flock), `scratch.rs` (temporary files), `replace.rs` (editors' renames),
//! `links.rs` (symbolic links). The tables they work on are one floor down, in `fs/`.

mod echo;
mod handover;
pub use handover::HandedFs;
mod links;
mod locks;
mod replace;
mod scratch;
mod transaction;
pub use transaction::{MAX_OPS as TRANSACTION_OPS, TRANSACTION_XATTR};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{debug, info};
use serde_json::json;

use crate::data::names::{self, PROPERTIES};
use crate::error::{Error, Result};
use crate::fs::attr::{Attr, DirEntry, FileKind, Opened, ECHO_FH};
use crate::fs::handles::{Handle, Handles, OpenMode};
use crate::fs::scratch::{self as scratch_table, Changes, Scratch};
use crate::fs::status;
use crate::model::inodes::{child_path, split_path, Inode, InodeKind, ROOT_INO};
use crate::model::view::{Kind, NodeView, Presence, View};
use crate::sync::Recover;
use crate::zookeeper::session::Session;
use crate::zookeeper::{Mode, Stat};

/// The filesystem.
pub struct Fs {
    pub(crate) view: Arc<View>,
    pub(crate) session: Arc<Session>,
    read_only: bool,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) handles: Handles,
    /// Temporary files local to this mount (see `scratch.rs`).
    pub(crate) scratch: Scratch,
    /// The thread id of the echo thread (0 until it runs); see `echo.rs`.
    echo_tid: AtomicU32,
    /// True when the mount shows ZooKeeper's own `/zookeeper` (no chroot).
    shows_system: bool,
    /// flock(2) locks, which can hold registrations; see `locks.rs`.
    pub(crate) locks: crate::fs::locks::Locks,
    /// Where the mount is, to read absolute `ln -s` targets (see `links.rs`).
    mountpoint: OnceLock<PathBuf>,
    /// When a fresh stat for `user.zk.*` last went unanswered (see `Fs::xattrs`).
    /// Held only to read or set the instant: never with another lock.
    fresh_stat_failed: std::sync::Mutex<Option<std::time::Instant>>,
    /// What `zkfs reload` did to this mount (see `kernel/handover.rs`). Held only to
    /// read or update the counts: never with another lock.
    reloads: std::sync::Mutex<Reloads>,
}

/// The hand-overs of a mount to a new process image (`zkfs reload`), for `zkfs status`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Reloads {
    /// Hand-overs done.
    pub done: u64,
    /// Hand-overs refused or failed (the mount kept its process image).
    pub failed: u64,
    /// Why the last one failed.
    pub last_failure: String,
}

/// How many times `rmdir` reads a node again whose data changed under it.
const MAX_RMDIR_ATTEMPTS: usize = 100;

/// ZooKeeper's own subtree (quotas, config), shown read-only.
const SYSTEM: &str = "/zookeeper";

/// True if the connection string `host:port,...[/chroot]` has a chroot other than `/`.
fn has_chroot(connect: &str) -> bool {
    connect.find('/').is_some_and(|i| &connect[i..] != "/")
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Why a registration of another session cannot be changed: `touch`, `>` and `rm` of
/// it all give this (EPERM).
pub(crate) fn other_session(path: &str) -> Error {
    Error::NotPermitted(format!(
        "{path} is a registration of another ZooKeeper session; only that session can change it"
    ))
}

impl Fs {
    /// The filesystem over `view`.
    pub fn new(view: Arc<View>, read_only: bool) -> Fs {
        let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        let session = Arc::clone(view.session());
        let shows_system = !has_chroot(session.connect_string());
        Fs {
            handles: Handles::new(Arc::clone(&view)),
            view,
            session,
            read_only,
            uid,
            gid,
            scratch: Scratch::default(),
            echo_tid: AtomicU32::new(0),
            shows_system,
            locks: crate::fs::locks::Locks::new(),
            mountpoint: OnceLock::new(),
            fresh_stat_failed: std::sync::Mutex::new(None),
            reloads: std::sync::Mutex::default(),
        }
    }

    /// Records the echo thread's id: its requests are echoes to acknowledge.
    pub fn set_echo_thread(&self, tid: u32) {
        self.echo_tid.store(tid, Ordering::Relaxed);
    }

    /// The hand-overs so far.
    pub fn reloads(&self) -> Reloads {
        self.reloads.locked().clone()
    }

    /// Records a hand-over that failed, and why; the mount goes on as it was.
    pub fn reload_failed(&self, why: &str) {
        let mut r = self.reloads.locked();
        r.failed += 1;
        r.last_failure = why.to_string();
    }

    /// Takes over the counts of the image that handed the mount over, one hand-over
    /// more.
    pub fn reloaded(&self, before: Reloads) {
        *self.reloads.locked() = Reloads { done: before.done + 1, ..before };
    }

    /// Records where the filesystem is mounted.
    pub fn set_mountpoint(&self, path: PathBuf) {
        let _ = self.mountpoint.set(path);
    }

    pub(crate) fn mountpoint(&self) -> Option<&Path> {
        self.mountpoint.get().map(PathBuf::as_path)
    }

    /// True if a request from thread `tid` is an echo.
    pub fn is_echo(&self, tid: u32) -> bool {
        tid != 0 && tid == self.echo_tid.load(Ordering::Relaxed)
    }

    /// The view the filesystem shows.
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    pub(crate) fn inode(&self, ino: u64) -> Result<Inode> {
        // A scratch inode renamed over a data file now stands for it (see `scratch.rs`).
        let alias = || self.scratch.alias(ino).and_then(|target| self.view.inode(target));
        self.view.inode(ino).or_else(alias).ok_or(Error::Stale)
    }

    pub(crate) fn dir_path(&self, ino: u64) -> Result<String> {
        let inode = self.inode(ino)?;
        match inode.kind {
            InodeKind::Dir => Ok(inode.path),
            _ => Err(Error::NotDir(inode.path)),
        }
    }

    pub(crate) fn writable(&self) -> Result<()> {
        if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// True for `/zookeeper` and below when the mount shows ZooKeeper's own subtree.
    fn is_system(&self, path: &str) -> bool {
        self.shows_system && path.strip_prefix(SYSTEM).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Checks that `path` may be changed: not on a read-only mount (EROFS), not in
    /// ZooKeeper's own `/zookeeper` (EPERM).
    pub fn changeable(&self, path: &str) -> Result<()> {
        self.writable()?;
        if self.is_system(path) {
            return Err(Error::NotPermitted(format!(
                "{path}: /zookeeper is ZooKeeper's own subtree (quotas, configuration); zkfs shows it read-only"
            )));
        }
        Ok(())
    }

    pub(crate) fn own(&self, stat: &Stat) -> bool {
        stat.ephemeral_owner != 0 && stat.ephemeral_owner == self.session.session_id()
    }

    pub(crate) fn attr_of(&self, ino: u64, kind: InodeKind, node: &NodeView) -> Attr {
        let system = self.shows_system && self.view.inode(ino).is_some_and(|i| self.is_system(&i.path));
        let write = if self.read_only || system { 0 } else { 0o200 };
        let (fkind, size, nlink, perm) = match kind {
            InodeKind::Dir => (FileKind::Dir, 0, 1, 0o555 | write),
            InodeKind::Properties => (FileKind::File, node.size(), 1, 0o444 | write),
            InodeKind::Registration => {
                let w = if self.own(&node.stat) { write } else { 0 };
                (FileKind::File, node.size(), 1, 0o444 | w)
            }
            InodeKind::Link => (FileKind::Symlink, 0, 1, 0o777),
        };
        Attr {
            ino,
            kind: fkind,
            size,
            nlink,
            perm,
            atime: time(node.stat.mtime),
            mtime: time(node.stat.mtime),
            ctime: time(node.stat.mtime),
            crtime: time(node.stat.ctime),
            uid: self.uid,
            gid: self.gid,
            volatile: false,
        }
    }

    /// Attributes made up for a child known only by name and kind.
    pub(crate) fn volatile_attr(&self, ino: u64, kind: Kind) -> Attr {
        let (fkind, nlink, perm) = match kind {
            Kind::Dir => (FileKind::Dir, 1, 0o555),
            Kind::Registration => (FileKind::File, 1, 0o444),
        };
        Attr {
            ino,
            kind: fkind,
            size: 0,
            nlink,
            perm,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            uid: self.uid,
            gid: self.gid,
            volatile: true,
        }
    }

    pub(crate) fn attr(&self, ino: u64, inode: &Inode) -> Result<Attr> {
        if inode.kind == InodeKind::Link {
            return self.link_inode_attr(inode);
        }
        let node = self.view.node(&inode.path)?;
        if node.kind.data_inode() != inode.kind && inode.kind != InodeKind::Dir {
            return Err(Error::NotFound(inode.path.clone()));
        }
        if inode.kind == InodeKind::Dir && node.kind != Kind::Dir {
            return Err(Error::NotFound(inode.path.clone()));
        }
        Ok(self.attr_of(ino, inode.kind, &node))
    }

    // ----- reads -----

    /// `stat` of an inode. The size of a file whose data changed in the last `SETTLE`
    /// is not kept by the kernel, so that a `stat` right after a change asks again.
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        if let Some(attr) = self.scratch.attr(ino) {
            return Ok(attr);
        }
        let inode = self.inode(ino)?;
        let attr = self.attr(ino, &inode)?;
        let settling = inode.kind != InodeKind::Dir && self.view.recently_changed(&inode.path);
        Ok(Attr { volatile: attr.volatile || settling || scratch_table::is_scratch_number(ino), ..attr })
    }

    /// `fstat` (and the kernel's own size checks while reading) through open file `fh`:
    /// a reader's file has the size of the version it reads, so that its size and its
    /// bytes never come from two versions. Such a size, older than the node's, is not
    /// kept by the kernel.
    pub fn getattr_open(&self, ino: u64, fh: u64) -> Result<Attr> {
        let mut attr = self.getattr(ino)?;
        let Ok(handle) = self.handles.get(fh) else { return Ok(attr) };
        // try_lock: a handle busy with a write (waiting for ZooKeeper) is not a reader.
        let Ok(h) = handle.try_lock() else { return Ok(attr) };
        if h.ino == ino && !h.writes() && h.snapshot.len() as u64 != attr.size {
            attr.size = h.snapshot.len() as u64;
            attr.volatile = true;
        }
        Ok(attr)
    }

    /// Looks `name` up in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr> {
        let dir = self.dir_path(parent)?;
        if let Some(attr) = self.scratch_lookup(&dir, name) {
            return Ok(attr);
        }
        if name == PROPERTIES {
            let ino = self.view.ino(&dir, InodeKind::Properties);
            return self.attr(ino, &Inode { path: dir, kind: InodeKind::Properties });
        }
        let Some(child) = self.view.lookup(&dir, name)? else {
            return self.link_attr(&dir, name)?.ok_or_else(|| Error::NotFound(child_path(&dir, name)));
        };
        let path = child_path(&dir, name);
        let ikind = child.kind.inode();
        let ino = self.view.ino(&path, ikind);
        if child.presence != Presence::Present && self.view.cached(&path).is_none() {
            // On its way out: gone from ZooKeeper, shown until its echo unlink.
            return Ok(self.volatile_attr(ino, child.kind));
        }
        self.attr(ino, &Inode { path, kind: ikind })
    }

    /// The entries of directory `ino`. Listed afresh from the view on every call: the
    /// kernel keeps the listing in its own cache (no opendir is sent to zkfs) until the
    /// view tells it the directory changed.
    pub fn list_dir(&self, ino: u64) -> Result<Vec<DirEntry>> {
        self.list_dir_from(ino, 0, usize::MAX)
    }

    /// The entries of directory `ino` from the `offset`-th on, at most `limit` (a
    /// `readdir` of 10,000 children comes in many calls: each builds only its part).
    pub fn list_dir_from(&self, ino: u64, offset: usize, limit: usize) -> Result<Vec<DirEntry>> {
        let dir = self.dir_path(ino)?;
        let parent_ino = match split_path(&dir) {
            Some((parent, _)) => self.view.ino(parent, InodeKind::Dir),
            None => ROOT_INO,
        };
        let mut entries = vec![
            DirEntry { ino, name: ".".into(), kind: Some(FileKind::Dir) },
            DirEntry { ino: parent_ino, name: "..".into(), kind: Some(FileKind::Dir) },
            DirEntry {
                ino: self.view.ino(&dir, InodeKind::Properties),
                name: PROPERTIES.into(),
                kind: Some(FileKind::File),
            },
        ];
        // Listed (or refused) before the links are read, as the links need the node.
        self.view.list_for_names(&dir)?;
        for (ino, name) in self.link_entries(&dir)? {
            entries.push(DirEntry { ino, name, kind: Some(FileKind::Symlink) });
        }
        let skip = offset.saturating_sub(entries.len());
        let mut out: Vec<DirEntry> = entries.into_iter().skip(offset).collect();
        let children = self.view.listing(&dir, skip, limit.saturating_sub(out.len()))?;
        for (name, kind) in children {
            let path = child_path(&dir, &name);
            let entry = match kind {
                Some(Kind::Dir) => {
                    DirEntry { ino: self.view.ino(&path, InodeKind::Dir), name, kind: Some(FileKind::Dir) }
                }
                Some(Kind::Registration) => {
                    DirEntry { ino: self.view.ino(&path, InodeKind::Registration), name, kind: Some(FileKind::File) }
                }
                None => DirEntry { ino: self.view.node_ino(&path), name, kind: None },
            };
            out.push(entry);
        }
        out.truncate(limit);
        Ok(out)
    }

    // ----- files -----

    /// Opens a file. `mode` says whether and how it will be written.
    pub fn open(&self, ino: u64, mode: OpenMode) -> Result<Opened> {
        self.open_by(ino, mode, None)
    }

    /// Waits (at most the session timeout) until the removal elsewhere of the
    /// registration at `path`, inode `ino`, has been echoed to the kernel.
    fn await_echoed_removal(&self, ino: u64, path: &str) {
        let deadline = std::time::Instant::now() + self.session.timeout();
        while self.view.removal_pending(path) && self.view.inode(ino).is_some() {
            if std::time::Instant::now() >= deadline {
                debug!("{path}: removed elsewhere, and its echo did not come");
                return;
            }
            std::thread::sleep(crate::fs::locks::DROPPED_POLL);
        }
    }

    /// [`Fs::open`] by thread `tid`: a read is remembered as the version that thread's
    /// next replacing write is based on (see [`crate::fs::handles`]).
    pub fn open_by(&self, ino: u64, mode: OpenMode, tid: Option<u32>) -> Result<Opened> {
        let inode = self.inode(ino)?;
        let node = self.view.node(&inode.path)?;
        if inode.kind == InodeKind::Dir {
            return Err(Error::IsDir(inode.path));
        }
        if inode.kind == InodeKind::Registration {
            // Removed by its lock's close a moment ago? Then it is to be created anew.
            self.open_removed(ino, &inode.path, &node)?;
            // Removed elsewhere, its echo on the way: once it is gone from the kernel,
            // ESTALE makes the kernel look the name up again (and an `O_CREAT` open
            // then registers it anew) instead of opening — and locking — a node gone.
            if self.view.removal_pending(&inode.path) {
                crate::zookeeper::wait::may_wait()?;
                self.await_echoed_removal(ino, &inode.path);
                return Err(Error::Stale);
            }
        }
        if mode.writes() {
            self.changeable(&inode.path)?;
            if inode.kind == InodeKind::Registration && !self.own(&node.stat) {
                return Err(Error::NotPermitted(format!(
                    "{} is a registration of another ZooKeeper session; only that session can change it",
                    inode.path
                )));
            }
        }
        // Every read returns one whole version, whatever the kernel caches: a reader
        // gets the bytes of the version current at its open (its handle's snapshot),
        // read past the page cache (direct I/O), so the bytes are exactly the
        // snapshot's whatever size the kernel holds. Through the page cache, a read
        // that has found a page of the old version and then sees the size a concurrent
        // `stat` brought from a new one copies the old bytes padded with zeros to the
        // new size — the kernel checks the size after finding the pages — which
        // stress tests hit about once in 100,000 reads (README "Choices").
        let snapshot = node.rendered();
        let base = match (mode, tid) {
            (OpenMode::Read, Some(tid)) => {
                self.handles.note_read(tid, &inode, node.stat.version);
                None
            }
            (OpenMode::Set, _) => tid.and_then(|t| self.handles.read_version(t, &inode)).or(Some(node.stat.version)),
            _ => None,
        };
        let fh = self.handles.insert(Handle::new(ino, inode, snapshot, mode).based_on(base, tid));
        Ok(Opened { fh, no_flush: !mode.writes() })
    }

    /// Reads from an open file.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        if fh == ECHO_FH {
            return Ok(Vec::new());
        }
        if scratch_table::is_scratch_number(fh) {
            return self.scratch_read(fh, offset, size);
        }
        let handle = self.handles.get(fh)?;
        let h = handle.locked();
        // A node removed while open: say so instead of serving its old bytes forever.
        if self.inode(h.ino).is_err() {
            return Err(Error::NotFound(h.inode.path.clone()));
        }
        let bytes = &h.snapshot;
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(size as usize).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    /// Writes to an open file; see [`crate::fs::handles`].
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        if fh == ECHO_FH {
            return Err(Error::NotPermitted("echo handles take no data".into()));
        }
        if scratch_table::is_scratch_number(fh) {
            return self.scratch_write(fh, offset, data);
        }
        // A create that wrote registered for the mount's lifetime, not its open's.
        self.locks.written(fh);
        self.handles.write(fh, offset, data)
    }

    /// A `close` of the file: an incomplete document fails here.
    pub fn flush(&self, fh: u64) -> Result<()> {
        if fh == ECHO_FH || scratch_table::is_scratch_number(fh) {
            return Ok(());
        }
        self.handles.flush(fh)
    }

    /// The last close of the file.
    pub fn release(&self, fh: u64) {
        if scratch_table::is_scratch_number(fh) {
            self.scratch_release(fh)
        } else if fh != ECHO_FH {
            self.handles.release(fh)
        }
    }

    /// `truncate`/`O_TRUNC` and `touch`/`chmod`/`chown` on an inode (not a scratch file:
    /// see `scratch_setattr`). Only `changes.size` and the owner and mode are looked at:
    /// a znode's times are ZooKeeper's.
    pub fn setattr(&self, ino: u64, fh: Option<u64>, changes: Changes) -> Result<Attr> {
        let size = changes.size;
        let chmod_or_chown = changes.mode.is_some() || changes.uid.is_some() || changes.gid.is_some();
        let inode = match self.inode(ino) {
            Ok(inode) => inode,
            // Removed (a racing `rm`) after this descriptor was opened: as on a local
            // disk, the descriptor of an unlinked file still takes new times, so a
            // `touch` racing an `rm` succeeds (issue 25) rather than fail with ESTALE.
            Err(_) if size.is_none() && !chmod_or_chown => return self.gone_attr(ino, fh),
            Err(e) => return Err(e),
        };
        // touch, chmod, truncate: all changes, so all refused on a read-only mount.
        self.changeable(&inode.path)?;
        // One rule for another session's registration: `touch`, `>` and `rm` of it all
        // fail with EPERM.
        if inode.kind == InodeKind::Registration {
            if let Ok(node) = self.view.node(&inode.path) {
                if node.kind == Kind::Registration && !self.own(&node.stat) {
                    return Err(other_session(&inode.path));
                }
            }
        }
        if chmod_or_chown {
            if matches!(inode.kind, InodeKind::Dir | InodeKind::Link) {
                // A chmod or chown that changes nothing succeeds, as on any filesystem
                // (`chmod 755 DIR` where DIR shows 755; pjdfstest does it before each
                // test); one that would change something cannot be kept.
                let attr = self.attr(ino, &inode)?;
                let same = changes.mode.is_none_or(|m| (m & 0o7777) as u16 == attr.perm)
                    && changes.uid.is_none_or(|u| u == attr.uid)
                    && changes.gid.is_none_or(|g| g == attr.gid);
                if !same {
                    let what =
                        if inode.kind == InodeKind::Dir { "ZooKeeper nodes" } else { "links (keys of a node's data)" };
                    return Err(Error::NotPermitted(format!("{}: {what} have no owner or mode to change", inode.path)));
                }
            } else {
                // install, vim, Python's copystat and Ansible set a mode after writing a
                // file: accepted and ignored, as znodes have none (a registration of
                // another session is still refused by `open` and the kernel's check).
                debug!("{}: chmod/chown accepted and ignored: znodes have no owner or mode", inode.path);
            }
        }
        if let Some(size) = size {
            if inode.kind == InodeKind::Dir {
                return Err(Error::IsDir(inode.path));
            }
            self.writable()?;
            if size != 0 {
                return Err(Error::InvalidDocument(format!(
                    "{}: can only be truncated to 0 before writing a JSON object",
                    inode.path
                )));
            }
            if let Some(fh) = fh.filter(|fh| *fh != ECHO_FH) {
                self.handles.truncate(fh)?;
            }
            // Truncation alone changes nothing in ZooKeeper: the object written next does.
        }
        self.attr(ino, &inode)
    }

    /// The attributes of inode `ino`, whose node is gone, through the descriptor `fh`
    /// or another that still has it open; ENOENT if none has.
    fn gone_attr(&self, ino: u64, fh: Option<u64>) -> Result<Attr> {
        let handle = match fh.filter(|fh| *fh != ECHO_FH) {
            Some(fh) => self.handles.get(fh).ok(),
            None => self.handles.open_on(ino),
        };
        let Some(handle) = handle else { return Err(Error::NotFound(format!("inode {ino}: its node is gone"))) };
        let h = handle.locked();
        let now = std::time::SystemTime::now();
        Ok(Attr {
            ino,
            kind: FileKind::File,
            size: h.snapshot.len() as u64,
            nlink: 0,
            perm: 0o644,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            uid: self.uid,
            gid: self.gid,
            volatile: true,
        })
    }

    // ----- namespace -----

    /// Registers a server: creates the ephemeral node `name` (HOST:PORT) under
    /// directory `parent`, with `{"pid": pid}`. With `open`, also opens it for writing.
    pub fn create(&self, parent: u64, name: &str, pid: u32, open: Option<OpenMode>) -> Result<(Attr, Option<Opened>)> {
        self.writable()?;
        let dir = self.dir_path(parent)?;
        self.changeable(&child_path(&dir, name))?;
        if name == PROPERTIES {
            return Err(Error::Exists(child_path(&dir, name)));
        }
        names::check_registration(name)?;
        let path = child_path(&dir, name);
        let data = json!({ "pid": pid }).to_string().into_bytes();
        let _local = self.view.local(&path);
        let p = path.clone();
        let d = data.clone();
        let acl = self.session.registration_acl();
        let events = self.view.events_seen();
        let stat = self.session.call(&path, |c| c.create(&p, &d, Mode::Ephemeral, &acl))?;
        info!("registered {path} (pid {pid})");
        self.session.remember_registration(&path, &data);
        self.view.local_created(&path, Kind::Registration);
        let ino = self.view.ino(&path, InodeKind::Registration);
        let node = NodeView::new(Kind::Registration, data, stat);
        // Kept, so that the `futimens` of `touch` right after is answered without
        // reading the node back.
        self.view.local_node(&path, &node, events);
        let attr = self.attr_of(ino, InodeKind::Registration, &node);
        let opened = open.map(|mode| {
            let inode = Inode { path, kind: InodeKind::Registration };
            let fh = self.handles.insert(Handle::new(ino, inode, node.rendered(), mode));
            Opened { fh, no_flush: false }
        });
        Ok((attr, opened))
    }

    /// `mkdir`: creates a persistent node with no data.
    pub fn mkdir(&self, parent: u64, name: &str) -> Result<Attr> {
        self.writable()?;
        let dir = self.dir_path(parent)?;
        self.changeable(&child_path(&dir, name))?;
        names::check_node_name(name)?;
        let path = child_path(&dir, name);
        let _local = self.view.local(&path);
        // With credentials, a new node takes its parent's ACL (see `auth.rs`).
        let acl = if self.session.authenticated() {
            let d = dir.clone();
            self.session.call(&dir, |c| c.get_acl(&d))?
        } else {
            crate::zookeeper::auth::anyone_all()
        };
        let p = path.clone();
        let events = self.view.events_seen();
        let stat = self.session.call(&path, |c| c.create(&p, &[], Mode::Persistent, &acl))?;
        info!("created {path}");
        self.view.local_created(&path, Kind::Dir);
        let ino = self.view.ino(&path, InodeKind::Dir);
        let node = NodeView::new(Kind::Dir, Vec::new(), stat);
        self.view.local_node(&path, &node, events);
        Ok(self.attr_of(ino, InodeKind::Dir, &node))
    }

    /// `rm` of a file: removes one of this mount's registrations.
    ///
    /// `properties.json` exists as long as its node: removing it is accepted and changes
    /// nothing, so that `rm -r` of a subtree works (see README).
    pub fn unlink(&self, parent: u64, name: &str) -> Result<()> {
        self.writable()?;
        let dir = self.dir_path(parent)?;
        self.changeable(&child_path(&dir, name))?;
        if name == PROPERTIES {
            return Ok(());
        }
        let path = child_path(&dir, name);
        match self.view.child(&dir, name)?.map(|c| c.kind) {
            None if self.unlink_link(&dir, name)? => return Ok(()),
            None => return Err(Error::NotFound(path)),
            Some(Kind::Dir) => return Err(Error::IsDir(path)),
            Some(Kind::Registration) => {}
        }
        let _local = self.view.local(&path);
        let p = path.clone();
        let stat = self
            .session
            .call(&path, |c| async move { c.check_stat(&p).await })?
            .ok_or_else(|| Error::NotFound(path.clone()))?;
        if !self.own(&stat) {
            return Err(Error::NotPermitted(format!(
                "{path} is a registration of another ZooKeeper session; only that session can remove it"
            )));
        }
        let p = path.clone();
        self.session.call(&path, |c| async move { c.delete(&p, None).await })?;
        info!("unregistered {path}");
        self.session.forget_registration(&path);
        self.view.local_removed(&path);
        Ok(())
    }

    /// `rmdir`: removes an empty persistent node.
    pub fn rmdir(&self, parent: u64, name: &str) -> Result<()> {
        self.writable()?;
        let dir = self.dir_path(parent)?;
        let path = child_path(&dir, name);
        self.changeable(&path)?;
        match self.view.child(&dir, name)?.map(|c| c.kind) {
            None => return Err(Error::NotFound(path)),
            Some(Kind::Registration) => return Err(Error::NotDir(path)),
            Some(Kind::Dir) => {}
        }
        let _local = self.view.local(&path);
        // A directory that shows links is not empty, though ZooKeeper would delete it
        // (links are keys of its data, not children): checked against the version read,
        // and read again if the data changed meanwhile.
        let mut node = self.view.node(&path)?;
        for _ in 0..MAX_RMDIR_ATTEMPTS {
            if !crate::data::links::links(&node.data).is_empty() {
                return Err(Error::NotEmpty(format!("{path} (it holds links: rm them first)")));
            }
            let (p, version) = (path.clone(), node.stat.version);
            let deleted = self.session.call(&path, |c| async move {
                match c.delete(&p, Some(version)).await {
                    Ok(()) => Ok(true),
                    Err(crate::zookeeper::Error::BadVersion) => Ok(false),
                    Err(e) => Err(e),
                }
            })?;
            if deleted {
                info!("removed {path}");
                self.view.local_removed(&path);
                self.scratch_forget_dir(&path);
                return Ok(());
            }
            let p = path.clone();
            let (data, stat) = self.session.call(&path, |c| async move { c.get_data(&p).await })?;
            node = NodeView::new(Kind::Dir, data, stat);
        }
        Err(Error::Unavailable(format!("{path}: its data keeps changing; not removed")))
    }

    // ----- extended attributes -----

    /// The extended attributes of `ino`: its znode's stat and, on the root, the mount's
    /// state (see `status.rs`).
    ///
    /// The root always answers, so that `zkfs status` can say what is wrong, and says
    /// (`user.zkfs.root`) whether its node — the chroot — still exists.
    pub fn xattrs(&self, ino: u64) -> Result<Vec<(&'static str, String)>> {
        /// How long a directory's fresh child counters are waited for.
        const FRESH_STAT: Duration = Duration::from_millis(100);
        /// After an unanswered one, how long the cached counters are given at once.
        const FRESH_STAT_PAUSE: Duration = Duration::from_secs(2);
        if self.scratch.attr(ino).is_some() {
            return Ok(Vec::new());
        }
        let inode = self.inode(ino)?;
        if inode.kind == InodeKind::Link {
            return Ok(Vec::new()); // a link is no znode of its own
        }
        let node = self.view.node(&inode.path);
        // A persistent node's cached stat follows its data (every change of it is
        // heard) but not its children's count, cversion and pzxid (a child's event
        // does not carry its parent's stat): those come from one `exists`, so every
        // `user.zk.*` value is as fresh as `ls`. Registrations have no children.
        let fresh = |node: NodeView| -> Result<Stat> {
            // The root's are `zkfs status`'s, read many at a time: from the cache.
            if !matches!(inode.kind, InodeKind::Dir | InodeKind::Properties) || ino == ROOT_INO {
                return Ok(node.stat);
            }
            // Bounded: a server that does not answer at once (frozen, or busy with
            // writes queued before) leaves the cached counters, rather than hold an
            // operator's `getfattr` (README "Faults": reads answer while writes wait).
            // After one went unanswered, for a while none is asked: `getfattr -d` makes
            // a dozen calls, which would each wait.
            if self.fresh_stat_failed.locked().is_some_and(|t| t.elapsed() < FRESH_STAT_PAUSE) {
                return Ok(node.stat);
            }
            crate::zookeeper::wait::may_wait()?;
            let p = inode.path.clone();
            let ask = self.session.call_async(&inode.path, |c| async move { c.check_stat(&p).await });
            let answer = self.session.runtime().block_on(tokio::time::timeout(FRESH_STAT, ask));
            let fresh = match answer {
                Ok(Ok(Some(fresh))) => fresh,
                Ok(Ok(None)) => return Err(Error::NotFound(inode.path.clone())),
                Ok(Err(_)) | Err(_) => {
                    *self.fresh_stat_failed.locked() = Some(std::time::Instant::now());
                    return Ok(node.stat);
                }
            };
            *self.fresh_stat_failed.locked() = None;
            // Only the children's fields: the data's (version, mzxid, mtime, length)
            // stay those of the data the mount shows, so that a reader can match the
            // two (`zkfs snapshot` does).
            Ok(Stat { num_children: fresh.num_children, cversion: fresh.cversion, pzxid: fresh.pzxid, ..node.stat })
        };
        if ino != ROOT_INO {
            return Ok(status::node_attrs(&fresh(node?)?));
        }
        let (mut attrs, root) = match node.and_then(fresh) {
            Ok(stat) => (status::node_attrs(&stat), "exists".to_string()),
            Err(Error::NotFound(_)) => (Vec::new(), status::root_deleted(self.session.connect_string())),
            // Run again where waiting is allowed (see `wait.rs`).
            Err(Error::WouldWait) => return Err(Error::WouldWait),
            Err(e) => (Vec::new(), format!("unknown: {e}")),
        };
        attrs.extend(status::mount_attrs(&self.session));
        attrs.push(("user.zkfs.root", root));
        // What the mount costs ZooKeeper: one watch per node the kernel holds (see
        // `watches.rs`), and whether a re-read after an outage waits for its turn.
        attrs.push(("user.zkfs.watches", self.view.watch_count().to_string()));
        attrs.push(("user.zkfs.resync", if self.view.resync_pending() { "pending" } else { "idle" }.to_string()));
        let reloads = self.reloads.locked().clone();
        attrs.push(("user.zkfs.pid", std::process::id().to_string()));
        attrs.push(("user.zkfs.handover_format", crate::fs::HANDOVER_FORMAT.to_string()));
        attrs.push(("user.zkfs.reloads", reloads.done.to_string()));
        attrs.push(("user.zkfs.reload_failures", reloads.failed.to_string()));
        attrs.push(("user.zkfs.last_reload_failure", reloads.last_failure));
        Ok(attrs)
    }

    /// `access(2)`: on a read-only mount, and in `/zookeeper`, writing is refused.
    pub fn access(&self, ino: u64, write: bool) -> Result<()> {
        let path = match self.scratch.attr(ino) {
            Some(_) => None,
            None => Some(self.inode(ino)?.path),
        };
        if write {
            match path {
                Some(p) => self.changeable(&p)?,
                None => self.writable()?,
            }
        }
        Ok(())
    }

    /// rename, link, symlink: refused, with EROFS on a read-only mount.
    pub fn unsupported(&self, what: &'static str) -> Error {
        self.writable().err().unwrap_or(Error::Unsupported(what))
    }
}
