//! The domain error of zkfs and the one table that maps it to an errno.
//!
//! Filesystem logic returns [`Error`]; only the FUSE adapter turns it into an errno
//! through [`Error::errno`]. Every variant a user can trigger carries a message that
//! says what happened, and is logged where it is produced.

use std::fmt;

/// Why a filesystem operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The path does not exist (any more) in ZooKeeper or in the view.
    #[error("no such node: {0}")]
    NotFound(String),
    /// A node of that name already exists.
    #[error("already exists: {0}")]
    Exists(String),
    /// rmdir of a node that still has children.
    #[error("node {0} has children; remove them first (rm -r)")]
    NotEmpty(String),
    /// The name cannot be created here (not HOST:PORT, reserved, invalid for ZooKeeper).
    #[error("{0}")]
    InvalidName(String),
    /// A name longer than a file name may be (`NAME_MAX`, 255 bytes, as `statfs` says).
    #[error("{0}")]
    NameTooLong(String),
    /// What was written is not one JSON object.
    #[error("{0}")]
    InvalidDocument(String),
    /// The data is larger than ZooKeeper accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The change is forbidden by zkfs's rules (another session's registration, chmod, ...).
    #[error("{0}")]
    NotPermitted(String),
    /// ZooKeeper's ACL forbids it.
    #[error("ZooKeeper ACL denies access to {0}")]
    AccessDenied(String),
    /// The mount is read-only.
    #[error("read-only mount")]
    ReadOnly,
    /// The session is on a read-only server (`readonly_ok`, during a partition).
    #[error("{0}: the ZooKeeper server is read-only (no read-write server reachable); nothing changed")]
    ReadOnlyServer(String),
    /// The operation does not exist in ZooKeeper (rename, links, ...).
    #[error("{0} is not supported: ZooKeeper has no such operation")]
    Unsupported(&'static str),
    /// A rename zkfs cannot make in place; tools copy instead (`properties.json` or a
    /// registration renamed to a temporary name).
    #[error("cannot be renamed: {0}")]
    CrossDevice(String),
    /// A directory operation on a file or the reverse.
    #[error("not a directory: {0}")]
    NotDir(String),
    /// A file operation on a directory.
    #[error("is a directory: {0}")]
    IsDir(String),
    /// No ZooKeeper server answered in time, or the session is gone.
    #[error("ZooKeeper unavailable: {0}")]
    Unavailable(String),
    /// A replacing write (`sed -i`, `mv`, `cp`, `>`) based on a version of the data that
    /// another writer has replaced since: refused instead of overwriting that writer's
    /// change (ESTALE: "what you read is stale"; re-run the command).
    #[error("{0}")]
    Conflict(String),
    /// A file handle that zkfs does not know (a bug or a handle from before a restart).
    #[error("stale file handle")]
    Stale,
    /// A lock is held by another process or another ZooKeeper session (`flock -n`).
    #[error("{0}")]
    Locked(String),
    /// The request would have to wait for ZooKeeper on a thread that must not (see
    /// `wait.rs`); it is run again where it may. Never reaches a program.
    #[error("would wait for ZooKeeper")]
    WouldWait,
    /// A wait for a lock was interrupted by a signal to the waiting process.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// The errno a program sees for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound(_) => libc::ENOENT,
            Error::Exists(_) => libc::EEXIST,
            Error::NotEmpty(_) => libc::ENOTEMPTY,
            Error::InvalidName(_) => libc::EINVAL,
            Error::NameTooLong(_) => libc::ENAMETOOLONG,
            Error::InvalidDocument(_) => libc::EINVAL,
            Error::TooLarge(_) => libc::EFBIG,
            Error::NotPermitted(_) => libc::EPERM,
            Error::AccessDenied(_) => libc::EACCES,
            Error::ReadOnly | Error::ReadOnlyServer(_) => libc::EROFS,
            Error::Unsupported(_) => libc::ENOTSUP,
            Error::CrossDevice(_) => libc::EXDEV,
            Error::NotDir(_) => libc::ENOTDIR,
            Error::IsDir(_) => libc::EISDIR,
            Error::Unavailable(_) => libc::EIO,
            Error::Conflict(_) => libc::ESTALE,
            Error::Stale => libc::ESTALE,
            Error::Locked(_) => libc::EWOULDBLOCK,
            Error::WouldWait => libc::EAGAIN,
            Error::Interrupted => libc::EINTR,
        }
    }
}

/// Result of filesystem logic.
pub type Result<T> = std::result::Result<T, Error>;

/// Displays an errno as its symbolic name for logs ("EINVAL").
pub struct ErrnoName(pub i32);

impl fmt::Display for ErrnoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::ENOENT => "ENOENT",
            libc::EEXIST => "EEXIST",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::EINVAL => "EINVAL",
            libc::ENAMETOOLONG => "ENAMETOOLONG",
            libc::EFBIG => "EFBIG",
            libc::EPERM => "EPERM",
            libc::EACCES => "EACCES",
            libc::EROFS => "EROFS",
            libc::ENOTSUP => "ENOTSUP",
            libc::EXDEV => "EXDEV",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EIO => "EIO",
            libc::ESTALE => "ESTALE",
            libc::EWOULDBLOCK => "EWOULDBLOCK",
            libc::EINTR => "EINTR",
            other => return write!(f, "errno {other}"),
        };
        f.write_str(name)
    }
}
