//! The ZooKeeper layer: the only folder that names `zookeeper_client`.
//!
//! * `seam` — the operations zkfs uses, behind one client type (re-exported here, so
//!   the rest of the crate says `zookeeper::Stat`, `zookeeper::Client`);
//! * [`fake`] — an in-memory ZooKeeper behind the same seam, which can misbehave;
//! * [`session`] — the mount's session: its state machine, reconnection after expiry,
//!   and the registrations it holds;
//! * [`holder`] — a process that held a registration, followed by pidfd;
//! * [`saved`] — the session saved for a successor (a restart after a crash);
//! * [`auth`] — credentials and the ACLs of nodes zkfs creates;
//! * [`secure`] — TLS, SASL and read-only servers: their files, checked at mount time,
//!   certificate rotation, and why a TLS connection failed;
//! * [`kerberos`] — SASL GSSAPI: the principal, its keytab or ticket cache, checked
//!   with the KDC at mount time;
//! * [`wait`] — whether the current thread may wait for ZooKeeper;
//! * [`background`] — requests the mount makes for itself yield to those programs wait for.

mod seam;
pub use seam::*;

pub mod auth;
pub mod background;
pub mod fake;
pub mod holder;
pub mod kerberos;
mod private;
pub mod saved;
pub mod secure;
pub mod session;
pub mod wait;
