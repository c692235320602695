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
//! Run with `cargo bench --bench unregister`. Every process and directory it creates
//! is removed by the fixtures' `Drop`, also when it panics.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/inotify/mod.rs"]
mod inotify;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{wait_until, Mount, Zk, ZkServer};
use inotify::Inotify;
use zookeeper_client as zk;

const SAMPLES: usize = 100;
const WARMUP: usize = 10;
const DIR: &str = "/bench/providers";

/// Native NodeDeleted events: (when, node name).
fn native_watcher(connect: &str, stop: Arc<AtomicBool>) -> Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let connect = connect.to_string();
    thread::spawn(move || {
        let zk = Zk::connect(&connect);
        zk.block_on(async {
            let mut w = zk.client().watch(DIR, zk::AddWatchMode::PersistentRecursive).await.expect("watch");
            let _ = ready_tx.send(());
            while !stop.load(Ordering::SeqCst) {
                let ev = tokio::select! {
                    ev = w.changed() => ev,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                };
                let at = Instant::now();
                if ev.event_type == zk::EventType::Session && ev.session_state.is_terminated() {
                    break;
                }
                if ev.event_type == zk::EventType::NodeDeleted {
                    let name = ev.path.rsplit('/').next().unwrap_or_default().to_string();
                    if tx.send((at, name)).is_err() {
                        break;
                    }
                }
            }
        });
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).expect("the native watcher started");
    rx
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

fn lock(file: &File) {
    // SAFETY: flock on an open descriptor.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0, "flock");
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 9 / 10])
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
    let stop = Arc::new(AtomicBool::new(false));
    let native = native_watcher(&connect, Arc::clone(&stop));
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
                _ => {
                    let f = OpenOptions::new().read(true).append(true).create(true).open(a.join(&path)).expect("open");
                    if matches!(end, End::Rm) {
                        None // never locked: it stays after the close
                    } else {
                        lock(&f);
                        Some(f)
                    }
                }
            };
            on_b.wait_for(Duration::from_secs(5), "IN_CREATE on B", |e| e.is(libc::IN_CREATE, &name));
            let t0 = Instant::now();
            match end {
                End::Native => admin.delete(&path),
                // SAFETY: unlock of an open descriptor.
                End::Unlock => assert_eq!(unsafe { libc::flock(file.as_ref().unwrap().as_raw_fd(), libc::LOCK_UN) }, 0),
                End::Close => drop(file),
                End::Rm => std::fs::remove_file(a.join(&path)).expect("rm"),
            }
            on_b.wait_for(Duration::from_secs(5), "IN_DELETE on B", |e| e.is(libc::IN_DELETE, &name));
            let b_at = Instant::now();
            let zk_at = loop {
                let (at, n) = native.recv_timeout(Duration::from_secs(5)).expect("the native watcher saw the deletion");
                if n == name {
                    break at;
                }
            };
            if i >= WARMUP {
                to_zk.push(zk_at.saturating_duration_since(t0));
                to_b.push(b_at.saturating_duration_since(t0));
            }
        }
        rows.push((end.label(), median(to_zk), median(to_b)));
    }
    stop.store(true, Ordering::SeqCst);

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
}
