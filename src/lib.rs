//! zkfs mounts an Apache ZooKeeper tree as a filesystem, so that hosts register,
//! discover and configure services with `ls`, `cat`, `touch`, `rm` and inotify.
//!
//! # Layout
//!
//! The folders are the layers; each uses only those below it
//! (`tests/layers.rs` checks it; `docs/architecture.md` draws it). From the command
//! line down to ZooKeeper:
//!
//! * [`cli`] — the command line, options, logging, export/import, systemd readiness;
//! * [`kernel`] — the fuser adapter, the echo thread, read-only clones, the mount
//!   table: the only folder that names `fuser`;
//! * [`fs`] — the filesystem in plain Rust: operations, open files, locks, scratch
//!   files, replaces, links as files, stat attributes;
//! * [`model`] — the cached, watched view of the tree, its tables, inode numbers;
//! * [`zookeeper`] — the seam, the real client and the fake, the session and its
//!   registrations, auth: the only folder that names `zookeeper_client`;
//! * [`data`] — properties, JSON text, documents, names, zc.zk's tree format;
//! * [`error`] and [`sync`] — the domain error with its errno table, and the one policy
//!   for a poisoned lock, beneath everything.

pub mod cli;
pub mod data;
pub mod error;
pub mod fs;
pub mod kernel;
pub mod model;
pub mod sync;
pub mod zookeeper;
