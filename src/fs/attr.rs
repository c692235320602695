//! The attributes and entries the filesystem operations hand to the kernel adapter,
//! beneath the operations and their tables so that each can name them.

use std::time::SystemTime;

/// File type as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (see `links.rs`).
    Symlink,
}

/// The attributes of an inode.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Directory or file.
    pub kind: FileKind,
    /// Bytes `cat` prints (0 for directories).
    pub size: u64,
    /// 1, for a directory too (see README "Choices": counting its subdirectories
    /// would mean listing it).
    pub nlink: u32,
    /// Permission bits.
    pub perm: u16,
    /// Last access: a znode's mtime (ZooKeeper keeps no access time); a scratch file's own.
    pub atime: SystemTime,
    /// Last change of the data: the znode's mtime.
    pub mtime: SystemTime,
    /// Last change of the data or the attributes: a znode's mtime (ZooKeeper keeps no
    /// other); a scratch file's own.
    pub ctime: SystemTime,
    /// The znode's ctime (creation).
    pub crtime: SystemTime,
    /// Owner: the user running the mount.
    pub uid: u32,
    /// Group: the group running the mount.
    pub gid: u32,
    /// Made up without reading ZooKeeper (an echo, a node on its way out): the kernel
    /// must not keep these attributes.
    pub volatile: bool,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// Name.
    pub name: String,
    /// Directory or file; `None` while the child's kind is not learnt (`DT_UNKNOWN`:
    /// a program that needs it asks `lstat`, see `view.rs`).
    pub kind: Option<FileKind>,
}

/// What an `open` gives back (every file is opened for direct I/O: see `Fs::open`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Opened {
    /// The file handle.
    pub fh: u64,
    /// Nothing to report at close: the kernel need not send a flush.
    pub no_flush: bool,
}

/// The file handle of the echo thread's opens (which the filesystem only acknowledges).
pub const ECHO_FH: u64 = 0;

/// The id of the process a FUSE request came from (the kernel gives the thread id).
pub fn process_of(tid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok()).unwrap_or(tid)
}
