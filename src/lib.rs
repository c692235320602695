//! zkfs mounts an Apache ZooKeeper tree as a filesystem, so that hosts register,
//! discover and configure services with `ls`, `cat`, `touch`, `rm` and inotify.
//!
//! The layout, from ZooKeeper up to the kernel:
//!
//! * [`session`] — the mount's ZooKeeper session: its state machine, reconnection after
//!   expiry, and the registrations it holds.
//! * [`view`] — the cached, watched view of the tree (the design essay is there);
//!   [`tree`] — its model: nodes, children on their way in or out, notes for the
//!   kernel; [`watch`] — the task that applies ZooKeeper's events to it; `flight` —
//!   one read per node at a time, and what a read in flight must hear of.
//! * [`treefmt`] — zc.zk's tree text format, parsed and printed; [`literal`] — its
//!   values: Python literals parsed (never evaluated) and JSON, both without loss.
//! * [`properties`] — znode data ⇄ the JSON object of `properties.json` (zc.zk's rules).
//!   [`jsontext`] — JSON as written: byte spans to merge, bounded re-indentation.
//! * [`document`] — the JSON a program writes, across many `write` calls.
//! * [`names`] — which names may be created (registrations are `HOST:PORT`).
//! * [`inodes`] — inode numbers for the paths the kernel has been shown;
//!   [`memory`] — the allocator's settings that keep a large cache compact.
//! * [`fs`] and [`handles`] — the filesystem operations and open files, in plain Rust;
//!   [`links`] — zc.zk's `"NAME ->"` properties shown as symbolic links.
//! * [`locks`] — flock(2) locks, which hold registrations: the last unlock removes one.
//! * [`scratch`] — temporary files local to the mount (`sed -i`, editors, `jq > tmp`);
//!   [`replace`] — the renames, unlinks and creates with which tools replace a data
//!   file.
//! * [`echo`] — the thread that tells the kernel what changed elsewhere: cache
//!   invalidations, and the self-echo that makes inotify work for remote changes.
//! * [`readonly`] — `-o ro` mounts read-only in the kernel, with a private writable
//!   clone for the echo thread.
//! * [`fuse`] — the thin adapter to fuser, the only module that sees its types.
//! * [`unmounted`] — the mount's end closes the session at once, even when lazy.
//! * [`auth`] — credentials and the ACLs of nodes zkfs creates.
//! * [`notify`] — systemd readiness (`READY=1` once the mount serves).
//! * [`status`] — node stat and mount state as extended attributes, `zkfs status`.
//! * [`cli`] — the command line and mount options; [`options`] — their one description,
//!   from which `--help`, the man page, the README's tables and the completion come;
//!   [`logging`] — where the log goes (stderr, syslog, `log_file=`); [`mountinfo`] — the one reader of the mount table; [`mountpoint`] —
//!   the directory to mount on, and the dead zkfs mount replaced there.
//!   [`transfer`] — `zkfs export`, `import` and `validate`, through a mount's files.
//! * [`sync`] — the one policy for a poisoned lock.
//! * [`error`] — the domain error and its errno table.
//! * [`zk`] — the seam in front of ZooKeeper: the operations zkfs uses, the real
//!   client behind them or an in-memory fake (`zk::fake`) that can misbehave.
//! * [`wait`] — whether the current thread may wait for ZooKeeper (requests that must
//!   wait leave fuser's threads, see `fuse.rs`).
//!   [`background`] — requests the mount makes for itself yield to those programs wait for.

pub mod auth;
pub mod background;
pub mod cli;
pub mod document;
pub mod echo;
pub mod error;
mod flight;
pub mod fs;
pub mod fuse;
pub mod handles;
pub mod inodes;
pub mod jsontext;
pub mod links;
pub mod literal;
pub mod locks;
pub mod logging;
pub mod memory;
pub mod mountinfo;
pub mod mountpoint;
pub mod names;
pub mod notify;
pub mod options;
pub mod properties;
pub mod readonly;
pub mod replace;
pub mod scratch;
pub mod session;
pub mod status;
pub mod sync;
pub mod transfer;
pub mod tree;
pub mod treefmt;
pub mod unmounted;
pub mod view;
pub mod wait;
pub mod watch;
pub mod zk;
