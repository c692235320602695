//! The FUSE adapter: the only module that sees fuser's types.
//!
//! It translates kernel requests into [`Fs`] calls and their results into replies,
//! mapping every error through [`Error::errno`]. Requests from the echo thread
//! (`echo.rs`) are recognised by their thread id and only acknowledged.
//!
//! # Dispatch: no request waits behind another
//!
//! fuser serves the kernel with a few threads. A request that waits for ZooKeeper
//! (up to a session timeout while no server answers) must not hold one, or a `cat` of
//! a cached file waits behind writes to a frozen ensemble. fuser's replies can be
//! answered from any thread, so every handler goes through [`ZkFuse::dispatch`]: the
//! operation first runs on fuser's thread with waiting forbidden (`wait.rs`) and
//! answers at once when what the view holds is enough; if it would wait, it runs again
//! on tokio's blocking pool, which grows with the number of waiting requests, and
//! answers from there. Operations that always need ZooKeeper (changes) go to the pool
//! at once ([`ZkFuse::offload`]). Most waits are for one load — a node read, a
//! directory listed — which the inline run hands back (`wait.rs`, "Needs"): a task on
//! the client's runtime awaits it and runs the operation inline again, and answers
//! from there; no thread of the pool waits for it ([`ZkFuse::follow_up`]).
//! `Fs` stays synchronous: a handler is one line,
//! `self.dispatch("op", reply, move |fs| fs.op(..))`. Each request waiting on the pool
//! is bounded by the session timeout from its own start (`session.rs`), side by side.

use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, Notifier, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use log::{debug, warn};

use crate::data::names;
use crate::error::{ErrnoName, Error};
use crate::fs::scratch::Changes;
use crate::fs::{Attr, DirEntry, FileKind, Fs, Opened};
use crate::kernel::echo::KernelCache;
use crate::model::view::Kind;
use crate::zookeeper::wait;

/// Loads one request may await on the runtime before it moves to the waiting pool
/// (see [`ZkFuse::follow_up`]): a cold lookup needs two at most.
const MAX_NEEDS: usize = 4;

/// How long the kernel may keep entries and attributes. Long, because the view tells
/// the kernel precisely when something changed.
const TTL: Duration = Duration::from_secs(3600);

/// The fuser [`Filesystem`] over [`Fs`].
pub struct ZkFuse {
    fs: Arc<Fs>,
    gate: Arc<Gate>,
}

/// Between the kernel and the filesystem: counts the requests in progress, and holds
/// new ones while the mount is handed to a new process image (`handover.rs`).
pub struct Gate {
    fs: Arc<Fs>,
    /// True while requests are held (the echo thread's excepted).
    holding: AtomicBool,
    /// Requests being dispatched on fuser's threads or answered on the waiting pool.
    busy: AtomicUsize,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate {{ holding: {:?}, busy: {:?} }}", self.holding, self.busy)
    }
}

impl Gate {
    /// The gate of `fs`, open.
    pub fn new(fs: Arc<Fs>) -> Arc<Gate> {
        Arc::new(Gate { fs, holding: AtomicBool::new(false), busy: AtomicUsize::new(0) })
    }

    /// Holds every new request but the echo thread's (`true`), or lets them through.
    pub fn set_holding(&self, holding: bool) {
        self.holding.store(holding, Ordering::SeqCst);
    }

    /// Requests in progress.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }
}

impl fuser::HoldRequests for Gate {
    fn hold(&self, pid: u32) -> bool {
        // Counted first, then the flag read: a hand-over that sets the flag and then
        // sees no request busy knows that every later one sees the flag.
        self.busy.fetch_add(1, Ordering::SeqCst);
        if self.holding.load(Ordering::SeqCst) && !self.fs.is_echo(pid) {
            self.busy.fetch_sub(1, Ordering::SeqCst);
            return true;
        }
        false
    }

    fn dispatched(&self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ZkFuse {
    /// The adapter for `fs`, behind `gate`.
    pub fn new(fs: Arc<Fs>, gate: Arc<Gate>) -> ZkFuse {
        ZkFuse { fs, gate }
    }

    /// Answers `reply` with `f`, on fuser's thread if `f` needs no waiting, and on the
    /// waiting pool otherwise (see the module docs).
    fn dispatch<T, R>(&self, op: &'static str, reply: R, f: impl Fn(&Fs) -> Result<T, Error> + Send + 'static)
    where
        R: Answer<T>,
    {
        match wait::attempt(|| f(&self.fs)) {
            wait::Attempt::Done(result) => reply.answer(op, result),
            wait::Attempt::Need(need) => self.follow_up(op, reply, f, need),
            wait::Attempt::Wait => self.offload(op, reply, f),
        }
    }

    /// Answers `reply` with `f` once what it needs is loaded: a task on the client's
    /// runtime awaits `need` and runs `f` inline again there, for as long as each run
    /// names one more load (a lookup of a directory: the child, then its listing). A
    /// run that must wait for anything else, or a load that finds nothing, moves to
    /// the waiting pool; a load that fails is the answer (every error of a load is
    /// what the operation would answer). Each load is bounded by the session timeout.
    fn follow_up<T, R>(
        &self,
        op: &'static str,
        reply: R,
        f: impl Fn(&Fs) -> Result<T, Error> + Send + 'static,
        need: wait::Need,
    ) where
        R: Answer<T>,
    {
        let fs = Arc::clone(&self.fs);
        let gate = Arc::clone(&self.gate);
        gate.busy.fetch_add(1, Ordering::SeqCst);
        let runtime = self.fs.view().session().runtime().clone();
        drop(runtime.spawn(async move {
            let mut need = need;
            for _ in 0..MAX_NEEDS {
                match need.await {
                    Ok(()) => {}
                    // A node gone: whether that is the answer is the operation's call.
                    Err(Error::NotFound(_)) => break,
                    Err(e) => {
                        reply.answer(op, Err(e));
                        gate.busy.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                }
                match wait::attempt(|| f(&fs)) {
                    wait::Attempt::Done(result) => {
                        reply.answer(op, result);
                        gate.busy.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                    wait::Attempt::Need(next) => need = next,
                    wait::Attempt::Wait => break,
                }
            }
            let pool = fs.view().session().runtime().clone();
            drop(pool.spawn_blocking(move || {
                reply.answer(op, f(&fs));
                gate.busy.fetch_sub(1, Ordering::SeqCst);
            }));
        }));
    }

    /// Answers `reply` with `f` on the waiting pool: `f` needs ZooKeeper.
    fn offload<T, R>(&self, op: &'static str, reply: R, f: impl FnOnce(&Fs) -> Result<T, Error> + Send + 'static)
    where
        R: Answer<T>,
    {
        let fs = Arc::clone(&self.fs);
        let gate = Arc::clone(&self.gate);
        gate.busy.fetch_add(1, Ordering::SeqCst);
        // A reply dropped unanswered (the runtime shutting down) answers EIO itself.
        drop(self.fs.view().session().runtime().spawn_blocking(move || {
            reply.answer(op, f(&fs));
            gate.busy.fetch_sub(1, Ordering::SeqCst);
        }));
    }
}

/// A reply that answers with the result of an [`Fs`] operation.
trait Answer<T>: Send + 'static {
    fn answer(self, op: &'static str, result: Result<T, Error>);
}

impl Answer<Attr> for ReplyEntry {
    fn answer(self, op: &'static str, result: Result<Attr, Error>) {
        match result {
            Ok(a) => reply_entry(self, &a),
            Err(e) => self.error(errno(op, &e)),
        }
    }
}

impl Answer<Attr> for ReplyAttr {
    fn answer(self, op: &'static str, result: Result<Attr, Error>) {
        match result {
            Ok(a) => self.attr(if a.volatile { &Duration::ZERO } else { &TTL }, &to_attr(&a)),
            Err(e) => self.error(errno(op, &e)),
        }
    }
}

impl Answer<()> for ReplyEmpty {
    fn answer(self, op: &'static str, result: Result<(), Error>) {
        match result {
            Ok(()) => self.ok(),
            Err(e) => self.error(errno(op, &e)),
        }
    }
}

impl Answer<Opened> for ReplyOpen {
    fn answer(self, op: &'static str, result: Result<Opened, Error>) {
        match result {
            Ok(o) => self.opened(FileHandle(o.fh), open_flags(&o)),
            Err(e) => self.error(errno(op, &e)),
        }
    }
}

impl Answer<Vec<u8>> for ReplyData {
    fn answer(self, op: &'static str, result: Result<Vec<u8>, Error>) {
        match result {
            Ok(data) => self.data(&data),
            Err(e) => self.error(errno(op, &e)),
        }
    }
}

impl Answer<usize> for ReplyWrite {
    fn answer(self, op: &'static str, result: Result<usize, Error>) {
        match result {
            Ok(n) => self.written(n as u32),
            Err(e) => self.error(errno(op, &e)),
        }
    }
}

impl Answer<(Attr, Option<Opened>)> for ReplyCreate {
    fn answer(self, op: &'static str, result: Result<(Attr, Option<Opened>), Error>) {
        match result {
            Ok((a, Some(o))) => {
                let attr_ttl = if a.volatile { Duration::ZERO } else { TTL };
                self.created(&attr_ttl, &to_attr(&a), Generation(0), FileHandle(o.fh), open_flags(&o))
            }
            Ok((_, None)) => self.error(Errno::from_i32(libc::EIO)),
            Err(e) => self.error(errno(op, &e)),
        }
    }
}

/// A `readdir` reply and where the kernel wants the listing from.
struct Listing(ReplyDirectory, u64);

/// Entries built per `readdir` call, from its offset on: more than the kernel's
/// buffer (a page) holds, so that one call fills it; the kernel asks again for more.
const LISTING_WINDOW: usize = 512;

impl Answer<Vec<DirEntry>> for Listing {
    fn answer(self, op: &'static str, result: Result<Vec<DirEntry>, Error>) {
        let Listing(mut reply, offset) = self;
        let entries = match result {
            Ok(e) => e,
            Err(e) => return reply.error(errno(op, &e)),
        };
        // The entries start at `offset`; each carries the offset of the next.
        for (i, entry) in entries.iter().enumerate() {
            let next = offset + i as u64 + 1;
            let full = match entry.kind {
                Some(kind) => reply.add(INodeNo(entry.ino), next, file_type(kind), &entry.name),
                // fuser 0.18 has no DT_UNKNOWN; vendor/fuser adds it (PATCHED.md).
                None => reply.add_unknown_type(INodeNo(entry.ino), next, &entry.name),
            };
            if full {
                break;
            }
        }
        reply.ok();
    }
}

/// An xattr reply: the value of `name` (`None`: every name), or its size if the
/// caller's buffer `size` is 0.
struct Xattrs(ReplyXattr, u32, Option<OsString>);

impl Answer<Vec<(&'static str, String)>> for Xattrs {
    fn answer(self, op: &'static str, result: Result<Vec<(&'static str, String)>, Error>) {
        let Xattrs(reply, size, name) = self;
        let attrs = match result {
            Ok(a) => a,
            Err(e) => return reply.error(errno(op, &e)),
        };
        match name {
            Some(name) => match attrs.iter().find(|(n, _)| OsStr::new(n) == name) {
                Some((_, value)) => reply_xattr(reply, size, value.as_bytes()),
                None => reply.error(Errno::from_i32(libc::ENODATA)),
            },
            None => {
                let mut names = Vec::new();
                for (n, _) in attrs {
                    names.extend_from_slice(n.as_bytes());
                    names.push(0);
                }
                reply_xattr(reply, size, &names);
            }
        }
    }
}

fn to_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Dir => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
    }
}

fn errno(op: &str, e: &Error) -> Errno {
    let code = e.errno();
    if code == libc::EACCES || matches!(e, Error::ReadOnlyServer(_)) {
        warn!("{op}: {e}");
    } else {
        debug!("{op}: {} ({e})", ErrnoName(code));
    }
    Errno::from_i32(code)
}

/// Replies with `value`, or its size when the caller asks for that (size 0).
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}

/// The errno for an extended attribute zkfs does not have. zkfs keeps only `user.`
/// attributes (`status.rs`): another `user.` name is merely absent (ENODATA), while the
/// `security.`, `system.` and `trusted.` namespaces are not supported at all
/// (EOPNOTSUPP, as on a filesystem without xattrs or ACLs). The difference is a round
/// trip per file: `ls -l` asks every file for `security.selinux` and
/// `system.posix_acl_access`, which the kernel never caches for FUSE; after one
/// EOPNOTSUPP coreutils stops asking for the rest of the filesystem, while ENODATA
/// would make it ask again for each file.
fn xattr_absent(name: &[u8]) -> i32 {
    if name.starts_with(b"user.") {
        libc::ENODATA
    } else {
        libc::EOPNOTSUPP
    }
}

/// A name from the kernel as the operations take it: UTF-8 (`EINVAL` otherwise) and
/// no longer than `NAME_MAX` (`ENAMETOOLONG`: the kernel lets FUSE names through up to
/// 1,024 bytes). Every operation that takes a name passes here first.
fn name_str<'a>(op: &str, name: &'a OsStr) -> Result<&'a str, Errno> {
    let name = utf8_str(op, name)?;
    names::check_len(name).map_err(|e| errno(op, &e))?;
    Ok(name)
}

/// A path from the kernel (a link's target) as UTF-8 (`EINVAL` otherwise).
fn utf8_str<'a>(op: &str, name: &'a OsStr) -> Result<&'a str, Errno> {
    name.to_str().ok_or_else(|| {
        debug!("{op}: name {name:?} is not UTF-8");
        Errno::from_i32(libc::EINVAL)
    })
}

fn open_flags(o: &Opened) -> FopenFlags {
    // Every file is read and written past the page cache: each open reads one whole
    // version (see `Fs::open`).
    let mut flags = FopenFlags::FOPEN_DIRECT_IO;
    if o.no_flush {
        flags |= FopenFlags::FOPEN_NOFLUSH;
    }
    flags
}

/// Counts an entry about to be handed to the kernel as one lookup of its inode (the
/// kernel's `nlookup`, which FORGET gives back; see `watches.rs`).
fn held(fs: &Fs, entry: Result<Attr, Error>) -> Result<Attr, Error> {
    if let Ok(a) = &entry {
        fs.view().looked_up(a.ino);
    }
    entry
}

fn reply_entry(reply: ReplyEntry, a: &Attr) {
    let attr_ttl = if a.volatile { Duration::ZERO } else { TTL };
    // A link lives in its directory's data, which may change elsewhere at any time:
    // the kernel asks again on every use (see `links.rs`).
    let (attr_ttl, entry_ttl) =
        if a.kind == FileKind::Symlink { (Duration::ZERO, Duration::ZERO) } else { (attr_ttl, TTL) };
    reply.entry_with_ttls(&attr_ttl, &entry_ttl, &to_attr(a), Generation(0));
}

impl Filesystem for ZkFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Let O_TRUNC reach open() instead of arriving as a separate truncate.
        if config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC).is_err() {
            warn!("kernel lacks FUSE_ATOMIC_O_TRUNC; truncation arrives as setattr");
        }
        // Without it the kernel serialises lookups and listings in one directory: cold
        // reads of different nodes there would wait in line (see the module docs).
        if config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS).is_err() {
            warn!("kernel lacks FUSE_PARALLEL_DIROPS; lookups in one directory wait for each other");
        }
        // A file whose data just changed is opened with direct I/O (see `Fs::open`):
        // without this, a shared mmap of it would fail with ENODEV.
        if config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP).is_err() {
            debug!("kernel lacks FUSE_DIRECT_IO_ALLOW_MMAP; shared mmap of a file just changed fails");
        }
        // flock(2) comes to zkfs, so that a lock can hold a registration (locks.rs).
        // fcntl locks stay with the kernel (no FUSE_POSIX_LOCKS): fuser 0.18 drops the
        // FUSE_LK_FLOCK flag of a lock request, so this is how zkfs knows a lock is a
        // flock, held by its open file until the file's RELEASE.
        if config.add_capabilities(InitFlags::FUSE_FLOCK_LOCKS).is_err() {
            warn!("kernel lacks FUSE_FLOCK_LOCKS; flock(2) will not hold registrations");
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = match name_str("lookup", name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (name, tid) = (name.to_string(), req.pid());
        self.dispatch("lookup", reply, move |fs| held(fs, fs.lookup_by(parent.0, &name, tid)));
    }

    /// The kernel drops `nlookup` of its lookups of `ino`: when none is left, its
    /// node's watch may go (see `watches.rs`). fuser's `batch_forget` (BATCH_FORGET)
    /// calls this for each inode.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.view().forgotten(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match fh {
            Some(fh) => self.dispatch("getattr", reply, move |fs| fs.getattr_open(ino.0, fh.0)),
            None => self.dispatch("getattr", reply, move |fs| fs.getattr(ino.0)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let time = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => std::time::SystemTime::now(),
        };
        let changes = Changes { mode, uid, gid, size, atime: atime.map(time), mtime: mtime.map(time) };
        if self.fs.is_echo(req.pid()) {
            self.dispatch("setattr", reply, move |fs| fs.getattr_now(ino.0));
        } else if let Some(scratch) = self.fs.scratch_setattr(ino.0, changes) {
            // A temporary file of this mount: answered from memory.
            Answer::answer(reply, "setattr", scratch);
        } else {
            self.dispatch("setattr", reply, move |fs| fs.setattr(ino.0, fh.map(|f| f.0), changes));
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_str("mknod", name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let name = name.to_string();
        if self.fs.is_echo(req.pid()) {
            return self.dispatch("echo mknod", reply, move |fs| {
                held(fs, fs.echo_create(parent.0, &name, Kind::Registration))
            });
        }
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(errno("mknod", &self.fs.unsupported("creating a device, fifo or socket")));
        }
        let tid = req.pid();
        self.offload("mknod", reply, move |fs| {
            held(fs, fs.create_file(parent.0, &name, tid, None, mode & !umask).map(|(a, _)| a))
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        let name = match name_str("mkdir", name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let name = name.to_string();
        if self.fs.is_echo(req.pid()) {
            self.dispatch("echo mkdir", reply, move |fs| held(fs, fs.echo_create(parent.0, &name, Kind::Dir)));
        } else {
            self.offload("mkdir", reply, move |fs| held(fs, fs.mkdir(parent.0, &name)));
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_str("unlink", name) {
            Ok(n) => n.to_string(),
            Err(e) => return reply.error(e),
        };
        if self.fs.is_echo(req.pid()) {
            self.dispatch("echo unlink", reply, move |fs| fs.echo_remove(parent.0, &name));
        } else {
            let tid = req.pid();
            self.offload("unlink", reply, move |fs| fs.unlink_by(parent.0, &name, tid));
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_str("rmdir", name) {
            Ok(n) => n.to_string(),
            Err(e) => return reply.error(e),
        };
        if self.fs.is_echo(req.pid()) {
            self.dispatch("echo rmdir", reply, move |fs| fs.echo_remove(parent.0, &name));
        } else {
            self.offload("rmdir", reply, move |fs| fs.rmdir(parent.0, &name));
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        let names = name_str("symlink", name)
            .and_then(|n| Ok((n.to_string(), utf8_str("symlink", target.as_os_str())?.to_string())));
        let (name, target) = match names {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        if self.fs.is_echo(req.pid()) {
            self.dispatch("echo symlink", reply, move |fs| held(fs, fs.echo_link_created(parent.0, &name)));
        } else {
            self.offload("symlink", reply, move |fs| held(fs, fs.symlink(parent.0, &name, &target)));
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.dispatch("readlink", reply, move |fs| fs.readlink(ino.0).map(String::into_bytes));
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let names =
            name_str("rename", name).and_then(|n| Ok((n.to_string(), name_str("rename", newname)?.to_string())));
        let (from, to) = match names {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (tid, flags) = (req.pid(), flags.bits());
        self.offload("rename", reply, move |fs| fs.rename(parent.0, &from, newparent.0, &to, flags, tid));
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(errno("link", &self.fs.unsupported("a hard link")));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.fs.is_echo(req.pid()) {
            self.dispatch("echo open", reply, move |fs| fs.open_echo(ino.0));
        } else {
            let tid = req.pid();
            self.dispatch("open", reply, move |fs| fs.open_with_flags(ino.0, flags.0, tid));
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.dispatch("read", reply, move |fs| fs.read(fh.0, offset, size));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.offload("write", reply, move |fs| fs.write(fh.0, offset, &data));
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Only handles that write are flushed (readers open with FOPEN_NOFLUSH), and a
        // flush waits for a write in progress on its handle.
        self.offload("flush", reply, move |fs| fs.flush(fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // A flock is held by its open file, i.e. by `fh`: the owner is not needed.
        self.fs.release_locks(ino.0, fh.0);
        self.fs.release(fh.0);
        reply.ok();
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        // Only flock(2) arrives here (see init): whole-file locks, so the range is moot.
        // A lock that must wait keeps `reply` in the table and this thread returns.
        let done: crate::fs::locks::Done = Box::new(move |result| match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("setlk", &e)),
        });
        let lock =
            crate::fs::locks::LockRequest { fh: fh.0, owner: lock_owner.0, pid, uid: req.uid(), typ, wait: sleep };
        self.fs.setlk(ino.0, lock, done);
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Every change is in ZooKeeper before its write returns.
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // ENOSYS tells the kernel to stop sending opendir/releasedir and to keep
        // listings in its cache (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR), which the echo
        // thread invalidates when a directory changes.
        reply.error(Errno::ENOSYS);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        let from = usize::try_from(offset).unwrap_or(usize::MAX);
        self.dispatch("readdir", Listing(reply, offset), move |fs| fs.list_dir_from(ino.0, from, LISTING_WINDOW));
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, names::NAME_MAX as u32, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // The kernel asks for security.capability on every write and truncate (the
        // echo's too): answer names zkfs does not own without touching the view, which
        // would wait for a re-read in progress.
        let name_bytes = name.as_encoded_bytes();
        if !crate::fs::status::is_ours(name_bytes) {
            return reply.error(Errno::from_i32(xattr_absent(name_bytes)));
        }
        self.dispatch("getxattr", Xattrs(reply, size, Some(name.to_owned())), move |fs| fs.xattrs(ino.0));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.dispatch("listxattr", Xattrs(reply, size, None), move |fs| fs.xattrs(ino.0));
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        // One attribute can be set: a transaction of changes (`zkfs import`).
        if name.as_encoded_bytes() != crate::fs::TRANSACTION_XATTR.as_bytes() {
            return reply.error(errno("setxattr", &self.fs.unsupported("setting extended attributes")));
        }
        let value = value.to_vec();
        self.offload("setxattr", reply, move |fs| fs.transaction(ino.0, &value));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno("removexattr", &self.fs.unsupported("removing extended attributes")));
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // Not a terminal: what Python's open() asks with TCGETS, for one.
        reply.error(Errno::from_i32(libc::ENOTTY));
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let write = mask.contains(AccessFlags::W_OK);
        self.dispatch("access", reply, move |fs| fs.access(ino.0, write));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = match name_str("create", name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (name, tid) = (name.to_string(), req.pid());
        let to_lock = crate::fs::locks::opens_to_lock(flags);
        self.offload("create", reply, move |fs| {
            let created = fs.create_file(parent.0, &name, tid, Some(flags), mode & !umask);
            if let Ok((a, _)) = &created {
                fs.view().looked_up(a.ino);
            }
            if let (true, Ok((a, Some(o)))) = (to_lock, &created) {
                // flock(1)'s open, or `exec 9>>FILE`: see locks.rs (a no-op for
                // anything but a registration).
                fs.created_for_lock(a.ino, o.fh);
            }
            created
        });
    }
}

/// The kernel's caches, reached through fuser's [`Notifier`].
pub struct FuseCache(pub Notifier);

impl KernelCache for FuseCache {
    fn inval_entry(&self, parent: u64, name: &str) -> std::io::Result<()> {
        self.0.inval_entry(INodeNo(parent), OsStr::new(name))
    }

    fn inval_inode(&self, ino: u64) -> std::io::Result<()> {
        self.0.inval_inode(INodeNo(ino), 0, 0)
    }
}

impl FuseCache {
    /// Asks the kernel to send again the requests sent and not answered (held while
    /// the mount was handed over).
    pub fn resend(&self) -> std::io::Result<()> {
        self.0.resend()
    }
}
