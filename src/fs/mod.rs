//! The filesystem in plain Rust: what `ls`, `cat`, `touch`, `mkdir`, `rm`, `flock` and
//! editors do, over the model's view; the kernel adapter (`kernel/fuse.rs`) only
//! translates. Testable without a kernel mount.
//!
//! * `ops/` — [`Fs`] and its operations (core, flock, scratch files, replaces, links);
//! * [`handles`], [`locks`], [`scratch`] — the tables the operations keep: open files,
//!   flock(2) locks and their waiters, temporary files local to the mount;
//! * [`attr`] — the attributes and entries handed to the kernel adapter;
//! * [`status`] — node stat and mount state as extended attributes, `zkfs status`.

pub mod attr;
pub mod handles;
pub mod locks;
mod ops;
pub mod scratch;
pub mod status;

pub use attr::{process_of, Attr, DirEntry, FileKind, Opened, ECHO_FH};
pub use ops::{Fs, HandedFs, Reloads, TRANSACTION_OPS, TRANSACTION_XATTR};

/// The form in which this zkfs hands a mount to its successor and takes one over
/// (`zkfs reload`, see `kernel/handover.rs`): a successor that speaks another is
/// refused, and the mount keeps its process image.
pub const HANDOVER_FORMAT: u32 = 1;
