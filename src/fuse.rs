//! The FUSE adapter: the only module that sees fuser's types.
//!
//! It translates kernel requests into [`Fs`] calls and their results into replies,
//! mapping every error through [`Error::errno`]. Requests from the echo thread
//! (`echo.rs`) are recognised by their thread id and only acknowledged.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, Notifier, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use log::{debug, warn};

use crate::echo::KernelCache;
use crate::error::{ErrnoName, Error};
use crate::fs::{Attr, FileKind, Fs, Opened};
use crate::handles::OpenMode;
use crate::view::Kind;

/// How long the kernel may keep entries and attributes. Long, because the view tells
/// the kernel precisely when something changed.
const TTL: Duration = Duration::from_secs(3600);

/// The fuser [`Filesystem`] over [`Fs`].
pub struct ZkFuse {
    fs: Arc<Fs>,
}

impl ZkFuse {
    /// The adapter for `fs`.
    pub fn new(fs: Arc<Fs>) -> ZkFuse {
        ZkFuse { fs }
    }
}

fn to_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.crtime,
        kind: match a.kind {
            FileKind::Dir => FileType::Directory,
            FileKind::File => FileType::RegularFile,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(op: &str, e: &Error) -> Errno {
    let code = e.errno();
    if code == libc::EACCES {
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

fn name_str<'a>(op: &str, name: &'a OsStr) -> Result<&'a str, Errno> {
    name.to_str().ok_or_else(|| {
        debug!("{op}: name {name:?} is not UTF-8");
        Errno::from_i32(libc::EINVAL)
    })
}

fn open_flags(o: &Opened) -> FopenFlags {
    let mut flags = FopenFlags::empty();
    if o.direct_io {
        flags |= FopenFlags::FOPEN_DIRECT_IO;
    }
    if o.keep_cache {
        flags |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if o.no_flush {
        flags |= FopenFlags::FOPEN_NOFLUSH;
    }
    flags
}

fn reply_entry(reply: ReplyEntry, a: &Attr) {
    let attr_ttl = if a.volatile { Duration::ZERO } else { TTL };
    reply.entry_with_ttls(&attr_ttl, &TTL, &to_attr(a), Generation(0));
}

impl Filesystem for ZkFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Let O_TRUNC reach open() instead of arriving as a separate truncate.
        if config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC).is_err() {
            warn!("kernel lacks FUSE_ATOMIC_O_TRUNC; truncation arrives as setattr");
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

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = match name_str("lookup", name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.fs.lookup(parent.0, name) {
            Ok(a) => reply_entry(reply, &a),
            Err(e) => reply.error(errno("lookup", &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &to_attr(&a)),
            Err(e) => reply.error(errno("getattr", &e)),
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
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let chmod = mode.is_some() || uid.is_some() || gid.is_some();
        let result = if self.fs.is_echo(req.pid()) {
            self.fs.getattr_now(ino.0)
        } else {
            self.fs.setattr(ino.0, fh.map(|f| f.0), size, chmod)
        };
        match result {
            Ok(a) => reply.attr(if a.volatile { &Duration::ZERO } else { &TTL }, &to_attr(&a)),
            Err(e) => reply.error(errno("setattr", &e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_str("mknod", name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        if self.fs.is_echo(req.pid()) {
            return match self.fs.echo_create(parent.0, name, Kind::Registration) {
                Ok(a) => reply_entry(reply, &a),
                Err(e) => reply.error(errno("echo mknod", &e)),
            };
        }
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(errno("mknod", &self.fs.unsupported("creating a device, fifo or socket")));
        }
        match self.fs.create(parent.0, name, crate::fs::process_of(req.pid()), None) {
            Ok((a, _)) => reply_entry(reply, &a),
            Err(e) => reply.error(errno("mknod", &e)),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        let name = match name_str("mkdir", name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let result = if self.fs.is_echo(req.pid()) {
            self.fs.echo_create(parent.0, name, Kind::Dir)
        } else {
            self.fs.mkdir(parent.0, name)
        };
        match result {
            Ok(a) => reply_entry(reply, &a),
            Err(e) => reply.error(errno("mkdir", &e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let echo = self.fs.is_echo(req.pid());
        let result = name_str("unlink", name).and_then(|n| {
            let done = if echo { self.fs.echo_remove(parent.0, n) } else { self.fs.unlink(parent.0, n) };
            done.map_err(|e| errno("unlink", &e))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let echo = self.fs.is_echo(req.pid());
        let result = name_str("rmdir", name).and_then(|n| {
            let done = if echo { self.fs.echo_remove(parent.0, n) } else { self.fs.rmdir(parent.0, n) };
            done.map_err(|e| errno("rmdir", &e))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _target: &std::path::Path, reply: ReplyEntry) {
        reply.error(errno("symlink", &self.fs.unsupported("a symbolic link")));
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(errno("rename", &self.fs.unsupported("rename")));
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(errno("link", &self.fs.unsupported("a hard link")));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let result = if self.fs.is_echo(req.pid()) {
            self.fs.open_echo(ino.0)
        } else {
            self.fs.open(ino.0, OpenMode::from_flags(flags.0))
        };
        match result {
            Ok(o) => reply.opened(FileHandle(o.fh), open_flags(&o)),
            Err(e) => reply.error(errno("open", &e)),
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
        match self.fs.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno("read", &e)),
        }
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
        match self.fs.write(fh.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno("write", &e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        match self.fs.flush(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("flush", &e)),
        }
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
        let done: crate::locks::Done = Box::new(move |result| match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("setlk", &e)),
        });
        let lock = crate::locks::LockRequest { fh: fh.0, owner: lock_owner.0, pid, uid: req.uid(), typ, wait: sleep };
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

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let entries = match self.fs.list_dir(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(errno("readdir", &e)),
        };
        for (i, entry) in entries.iter().enumerate().skip(offset as usize) {
            let kind = match entry.kind {
                FileKind::Dir => FileType::Directory,
                FileKind::File => FileType::RegularFile,
            };
            if reply.add(INodeNo(entry.ino), (i + 1) as u64, kind, &entry.name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // The kernel asks for security.capability on every write and truncate (the
        // echo's too): answer names zkfs does not own without touching the view, which
        // would wait for a re-read in progress.
        if !crate::status::is_ours(name.as_encoded_bytes()) {
            return reply.error(Errno::from_i32(libc::ENODATA));
        }
        match self.fs.xattrs(ino.0) {
            Ok(attrs) => match attrs.iter().find(|(n, _)| OsStr::new(n) == name) {
                Some((_, value)) => reply_xattr(reply, size, value.as_bytes()),
                None => reply.error(Errno::from_i32(libc::ENODATA)),
            },
            Err(e) => reply.error(errno("getxattr", &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.xattrs(ino.0) {
            Ok(attrs) => {
                let mut names = Vec::new();
                for (n, _) in attrs {
                    names.extend_from_slice(n.as_bytes());
                    names.push(0);
                }
                reply_xattr(reply, size, &names);
            }
            Err(e) => reply.error(errno("listxattr", &e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(errno("setxattr", &self.fs.unsupported("setting extended attributes")));
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
        match self.fs.access(ino.0, mask.contains(AccessFlags::W_OK)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("access", &e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = match name_str("create", name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let mode = match OpenMode::from_flags(flags) {
            OpenMode::Read => OpenMode::Set,
            m => m,
        };
        match self.fs.create(parent.0, name, crate::fs::process_of(req.pid()), Some(mode)) {
            Ok((a, Some(o))) => {
                if flags & libc::O_ACCMODE == libc::O_RDONLY {
                    // flock(1)'s open: see locks.rs.
                    self.fs.created_for_lock(a.ino, o.fh);
                }
                reply.created(&TTL, &to_attr(&a), Generation(0), FileHandle(o.fh), open_flags(&o))
            }
            Ok((_, None)) => reply.error(Errno::from_i32(libc::EIO)),
            Err(e) => reply.error(errno("create", &e)),
        }
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
