//! Removal delays of a registration: how long after its end the rest of the world
//! knows.
//!
//! Mount A holds registrations, mount B and a native client watch them. Per way of
//! ending a registration, from the syscall that ends it to (1) the NodeDeleted event
//! at a native ZooKeeper watcher and (2) IN_DELETE on mount B:
//!
//! * `close` of the only descriptor of a flock-held registration (what a process's
//!   exit, SIGKILL included, does);
//! * `flock(LOCK_UN)` of it;
//! * `rm` (unlink) through mount A;
//! * the reference: a native client deleting its own ephemeral node.
//!
//! And, per mount, from SIGTERM to a busy mount (a process has its working directory
//! in it, so the unmount is lazy) to the NodeDeleted event of its registration.
//!
//! Run with `cargo bench --bench unregister`. Every process and directory it creates
//! is removed by the fixtures' `Drop`, also when it panics.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::inotify::Inotify;
use common::procs::send_signal;
use common::{wait_until, Mount, Zk, ZkServer};
use nix::sys::signal::Signal;
use support::{NativeWatcher, Note, Reaped, Stats};
use zookeeper_client as zk;

const SAMPLES: usize = 100;
/// SIGTERM samples: each needs a mount of its own.
const SIGTERM_SAMPLES: usize = 10;
const WARMUP: usize = 10;
const DIR: &str = "/bench/providers";

/// When the native watcher heard of the deletion of `name`, waiting up to `timeout`.
fn deleted(native: &Receiver<Note>, name: &str, timeout: Duration) -> Instant {
    let want = format!("NodeDeleted {DIR}/{name}");
    loop {
        let note = native.recv_timeout(timeout).unwrap_or_else(|_| panic!("the native watcher saw {want}"));
        if note.what == want {
            return note.at;
        }
    }
}

/// How a registration ends, given the open, flock-ed file (if any) and its name.
#[derive(Clone, Copy)]
enum End {
    Close,
    Unlock,
    Rm,
    Native,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::Close => "close of the flock holder's file",
            End::Unlock => "flock(LOCK_UN)",
            End::Rm => "rm through the mount",
            End::Native => "native client deletes its node (reference)",
        }
    }
}

// flock(2) through libc: nix's `Flock` unlocks when dropped and (0.31) has no way to
// close a locked file without unlocking it first, which is the very ending measured.
fn flock(file: &File, op: libc::c_int) {
    // SAFETY: flock on a descriptor `file` keeps open; the result is checked.
    let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
}

/// Median and 90th percentile.
fn median(v: Vec<Duration>) -> (Duration, Duration) {
    let s = Stats::new(v);
    (s.median(), s.p90())
}

fn main() {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    let server = ZkServer::start();
    let connect = server.connect_string();
    let admin = Zk::connect(&connect);
    admin.mkdir_p(DIR);
    let a = Mount::new(&connect);
    let b = Mount::new(&connect);
    let b_dir = b.join(DIR);
    wait_until(Duration::from_secs(10), "mount B shows the directory", || b_dir.exists());
    let (tx, native) = mpsc::channel();
    let watcher = NativeWatcher::start(&connect, &[(DIR, zk::AddWatchMode::PersistentRecursive)], tx);
    let mut on_b = Inotify::new();
    on_b.watch(&b_dir);

    let mut rows = Vec::new();
    let mut port = 20000;
    for end in [End::Native, End::Close, End::Unlock, End::Rm] {
        let (mut to_zk, mut to_b) = (Vec::new(), Vec::new());
        for i in 0..WARMUP + SAMPLES {
            port += 1;
            let name = format!("10.0.0.1:{port}");
            let path = format!("{DIR}/{name}");
            let file = match end {
                End::Native => {
                    admin.create_ephemeral(&path, b"{}");
                    None
                }
                // A create for writing, as `touch` makes it: it lives as long as the mount
                // (an append open closed before any lock would remove it at the close).
                End::Rm => {
                    let created = OpenOptions::new().write(true).create(true).truncate(false).open(a.join(&path));
                    drop(created.expect("create"));
                    None
                }
                End::Close | End::Unlock => {
                    let f = OpenOptions::new().read(true).append(true).create(true).open(a.join(&path)).expect("open");
                    flock(&f, libc::LOCK_EX);
                    Some(f)
                }
            };
            on_b.wait_for(Duration::from_secs(5), "IN_CREATE on B", |e| e.is(libc::IN_CREATE, &name));
            let t0 = Instant::now();
            match end {
                End::Native => admin.delete(&path),
                End::Unlock => flock(file.as_ref().expect("a locked registration"), libc::LOCK_UN),
                End::Close => drop(file),
                End::Rm => std::fs::remove_file(a.join(&path)).expect("rm"),
            }
            on_b.wait_for(Duration::from_secs(5), "IN_DELETE on B", |e| e.is(libc::IN_DELETE, &name));
            let b_at = Instant::now();
            let zk_at = deleted(&native, &name, Duration::from_secs(5));
            if i >= WARMUP {
                to_zk.push(zk_at.saturating_duration_since(t0));
                to_b.push(b_at.saturating_duration_since(t0));
            }
        }
        rows.push((end.label(), median(to_zk), median(to_b)));
    }
    let sigterm = sigterm_on_busy_mounts(&connect, &native);
    drop(watcher);

    let reference = rows[0].1 .0.as_secs_f64();
    println!("\nRemoval delays ({SAMPLES} samples each, release build)");
    println!("| ending | → NodeDeleted at a native watcher, median / p90 | ratio | → IN_DELETE on another mount, median / p90 |");
    println!("| --- | --- | --- | --- |");
    for (label, (zm, z90), (bm, b90)) in rows {
        println!(
            "| {label} | {:.2} / {:.2} ms | {:.1}× | {:.2} / {:.2} ms |",
            zm.as_secs_f64() * 1e3,
            z90.as_secs_f64() * 1e3,
            zm.as_secs_f64() / reference,
            bm.as_secs_f64() * 1e3,
            b90.as_secs_f64() * 1e3
        );
    }
    let (m, p90) = median(sigterm);
    println!(
        "| SIGTERM to a busy mount ({SIGTERM_SAMPLES} mounts) | {:.2} / {:.2} ms | {:.1}× | (that mount is gone) |",
        m.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        m.as_secs_f64() / reference
    );
}

fn sigterm_on_busy_mounts(connect: &str, native: &Receiver<Note>) -> Vec<Duration> {
    let mut delays = Vec::new();
    for i in 0..SIGTERM_SAMPLES {
        let mut mount = Mount::new(connect);
        let name = format!("10.0.0.2:{}", 30000 + i);
        File::create(mount.join(format!("{DIR}/{name}"))).expect("register");
        let busy = Reaped(
            std::process::Command::new("sleep")
                .arg("600")
                .current_dir(mount.join(DIR))
                .spawn()
                .expect("a process with its working directory in the mount"),
        );
        let t0 = Instant::now();
        send_signal(mount.pid(), Signal::SIGTERM);
        let at = deleted(native, &name, Duration::from_secs(30));
        delays.push(at.saturating_duration_since(t0));
        drop(busy);
        mount.wait_exit(Duration::from_secs(10));
    }
    delays
}
