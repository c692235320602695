//! Shared fixtures for zkfs's integration tests and benchmarks, one module a concern:
//!
//! * [`zookeeper`] — [`ZkServer`], a throw-away standalone ZooKeeper on a free
//!   loopback port, and [`Ensemble`], three servers forming a quorum; both run with
//!   the configuration in `scripts/zookeeper/` that `scripts/zk-server` uses too;
//! * [`mounts`] — [`Mount`], a running `zkfs -f` and its mountpoint;
//!   [`BackgroundMount`] for a zkfs that daemonises itself; what the mount table
//!   (read by the library's `zkfs::kernel::mountinfo`) says of a path;
//! * [`client`] — [`Zk`], a synchronous ZooKeeper client, independent of the mount,
//!   to arrange and check what ZooKeeper holds;
//! * [`secure`] and [`kerberos`] — servers with TLS or SASL, their certificates, and a
//!   Kerberos realm (an MIT KDC) for SASL GSSAPI;
//! * [`procs`] — signals by pid and what /proc says of a process (the zkfs serving a
//!   mountpoint, its memory and CPU time);
//! * [`inotify`] — the one inotify reader, for tests and benchmarks;
//! * [`semantics`] — `docs/semantics.md` read for the tests that check it;
//! * here: [`wait_until`], [`require`] (what the machine must provide) and
//!   [`fooservice`], the usual world of a registration test.
//!
//! Every `tests/*.rs` file (and every benchmark, by path) does `mod common;` and uses
//! what it needs; the most used items are re-exported here. Every process a fixture
//! starts is stopped by its `Drop`, also when a test panics.
// Each test target uses some of this and not the rest.
#![allow(dead_code)]

pub mod client;
pub mod inotify;
pub mod kerberos;
pub mod load;
pub mod mounts;
pub mod procs;
pub mod secure;
pub mod semantics;
pub mod zookeeper;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

// A target that uses none of some of these re-exports must not warn.
#[allow(unused_imports)]
pub use client::Zk;
#[allow(unused_imports)]
pub use mounts::{force_unmount, is_fuse_mounted, is_mounted, mount_types, mounts_at, BackgroundMount, Mount};
#[allow(unused_imports)]
pub use procs::daemon_of;
#[allow(unused_imports)]
pub use zookeeper::{four_letter, free_port, Ensemble, ZkServer};

/// Polls `f` every 5 ms until it returns true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------
// What the integration tests need from the machine

/// What an integration test needs that `cargo test` alone does not provide.
#[derive(Debug, Clone, Copy)]
pub enum Needs {
    /// Java and Debian's ZooKeeper jars (`scripts/install-deps` installs them).
    ZooKeeper,
    /// Root and the kernel's FUSE device: the tests mount filesystems.
    Fuse,
    /// MIT Kerberos's KDC and admin tools (krb5-kdc, krb5-admin-server).
    Kerberos,
}

/// Panics with what is missing and how to get it, instead of failing obscurely later
/// (a spawn error, a mount that never appears). Every fixture that starts a server or
/// a mount calls it, so every integration test says what it needs.
pub fn require(needs: Needs) {
    let missing: Vec<String> = match needs {
        Needs::ZooKeeper => {
            let java =
                std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("java").is_file()));
            let mut m = Vec::new();
            if !java {
                m.push("`java` on PATH".into());
            }
            let absent: Vec<String> =
                zookeeper::jars().filter(|j| !j.is_file()).map(|j| j.display().to_string()).collect();
            if !absent.is_empty() {
                m.push(format!("Debian's `zookeeper` package and the jars it depends on ({})", absent.join(", ")));
            }
            m
        }
        Needs::Fuse => {
            let mut m = Vec::new();
            if !nix::unistd::geteuid().is_root() {
                m.push("root (the test mounts FUSE filesystems and uses other users' identities)".into());
            }
            if !Path::new("/dev/fuse").exists() {
                m.push("/dev/fuse (the fuse kernel module)".into());
            }
            if !Path::new("/usr/bin/fusermount3").exists() && !Path::new("/bin/fusermount3").exists() {
                m.push("`fusermount3` (the fuse3 package)".into());
            }
            m
        }
        Needs::Kerberos => ["/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local"]
            .iter()
            .filter(|p| !Path::new(p).exists())
            .map(|p| format!("{p} (Debian's krb5-kdc and krb5-admin-server)"))
            .collect(),
    };
    if !missing.is_empty() {
        panic!(
            "this integration test needs {}; run the whole suite with `scripts/test` as root, \
             which installs what is missing",
            missing.join(" and ")
        );
    }
}

// ---------------------------------------------------------------------------
// The usual world of a registration test

/// A fresh server holding `/fooservice/providers`, a client and a mount of it.
pub fn fooservice() -> (ZkServer, Zk, Mount) {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/fooservice/providers");
    let mount = Mount::new(&server.connect_string());
    (server, zk, mount)
}
