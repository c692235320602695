//! The kernel side: the only folder that names `fuser`.
//!
//! * [`fuse`] — the thin adapter to fuser: requests in, replies out;
//! * [`echo`] — the thread that tells the kernel what changed elsewhere: cache
//!   invalidations, and the self-echo that makes inotify work for remote changes;
//! * [`readonly`] — `-o ro` mounts, with a private writable clone for the echo thread;
//! * [`unmounted`] — the mount's end closes the session at once, even when lazy;
//! * [`mount`] — the FUSE session mounted, served and unmounted;
//! * [`mountinfo`] — the one reader of the mount table;
//! * [`mountpoint`] — the directory to mount on, and a dead zkfs mount replaced there.

pub mod echo;
pub mod fuse;
pub mod handover;
pub mod mount;
pub mod mountinfo;
pub mod mountpoint;
pub mod readonly;
pub mod unmounted;
