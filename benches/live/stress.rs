//! (c) Under stress, each beside its reference in the same run:
//!
//! * outage: a warm `fs::read` of a cached file while 16 writes wait on a frozen
//!   ZooKeeper (SIGSTOP), against the same read with nothing waiting;
//! * burst: 5,000 registrations created, then removed, in one pipelined burst by a
//!   native client; when the mount's inotify watcher has the last event, against when
//!   a native client's persistent watch has it (both measured from the burst's start,
//!   and as lag after the last acknowledgement).
//!
//! Each part runs against its own throw-away ZooKeeper, so freezing it disturbs
//! nothing else.

use std::collections::HashSet;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::common::{wait_until, Mount, Zk, ZkServer};
use super::support::{fmt_dur, print_table, read, time_iters, verdict, InotifyThread, NativeWatcher, Note};

/// Writes waiting on the frozen server.
const WRITERS: usize = 16;
/// Reads timed with and without the writers.
const OUTAGE_READS: usize = 300;
/// Target: a warm read while writes wait ≤ this × the same read with none waiting.
const OUTAGE_TARGET: f64 = 3.0;
/// Registrations per burst.
const BURST: usize = 5000;
/// Target: the mount's last event at most this long after the native watch's.
const BURST_TARGET: Duration = Duration::from_secs(2);

/// Runs (c), prints its table; returns (targets met, targets).
pub fn stress_section() -> (usize, usize) {
    eprintln!("  (c) outage and burst ...");
    let mut rows = vec![vec![
        "case".to_string(),
        "zkfs".into(),
        "reference".into(),
        "ref".into(),
        "zkfs/ref".into(),
        "target".into(),
        "verdict".into(),
    ]];
    let mut met = 0;

    let (busy, idle) = outage();
    let r = busy.as_secs_f64() / idle.as_secs_f64();
    met += usize::from(r <= OUTAGE_TARGET);
    rows.push(vec![
        format!("warm fs::read, {WRITERS} writes waiting (median)"),
        fmt_dur(busy),
        "none waiting".into(),
        fmt_dur(idle),
        format!("{r:.2}x"),
        format!("<={OUTAGE_TARGET}x"),
        verdict(r, OUTAGE_TARGET).into(),
    ]);

    for (label, b) in burst() {
        let behind = b.mount_last.saturating_sub(b.native_last);
        met += usize::from(behind <= BURST_TARGET);
        rows.push(vec![
            format!("{label}: last of {BURST} events (lag after last ack)"),
            format!("{} ({})", fmt_dur(b.mount_last), fmt_dur(b.mount_last.saturating_sub(b.acked))),
            "native watch".into(),
            format!("{} ({})", fmt_dur(b.native_last), fmt_dur(b.native_last.saturating_sub(b.acked))),
            format!("{:.2}x", b.mount_last.as_secs_f64() / b.native_last.as_secs_f64()),
            format!("<= ref + {}", fmt_dur(BURST_TARGET)),
            if behind <= BURST_TARGET { "PASS" } else { "MISS" }.into(),
        ]);
        if b.mount_events < BURST {
            println!("    {label}: the mount delivered {} of {BURST} events", b.mount_events);
        }
    }
    println!("(c) under stress: each part on its own ZooKeeper");
    print_table(&rows, 1, &[]);
    (met, 3)
}

/// Median warm read while writers wait on a frozen server, and with none waiting.
fn outage() -> (Duration, Duration) {
    let server = ZkServer::start();
    let admin = Zk::connect(&server.connect_string());
    admin.mkdir_p("/o");
    admin.set("/o", br#"{"cached": true}"#);
    for i in 0..WRITERS {
        admin.create(&format!("/o/w{i}"), b"");
    }
    let mount = Mount::with_options(&server.connect_string(), "session_timeout=10");
    let file = mount.join("/o/properties.json");
    let targets: Vec<_> = (0..WRITERS).map(|i| mount.join(format!("/o/w{i}/properties.json"))).collect();
    for t in &targets {
        read(t);
    }
    let idle = time_iters(50, OUTAGE_READS, || {
        read(&file);
    });
    server.pause();
    let writers: Vec<_> = targets
        .into_iter()
        .map(|t| {
            thread::spawn(move || {
                let _ = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&t)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, br#"{"w": 1}"#));
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let busy = time_iters(0, OUTAGE_READS, || {
        read(&file);
    });
    server.resume();
    for w in writers {
        let _ = w.join();
    }
    (busy.median(), idle.median())
}

/// When the last event of a burst arrived, from the burst's start.
struct Burst {
    mount_last: Duration,
    native_last: Duration,
    acked: Duration,
    mount_events: usize,
}

fn burst() -> Vec<(&'static str, Burst)> {
    let server = ZkServer::start();
    let connect = server.connect_string();
    let admin = Zk::connect(&connect);
    admin.mkdir_p("/b/providers");
    let mount = Mount::new(&connect);
    let dir = mount.join("/b/providers");
    wait_until(Duration::from_secs(10), "the mount lists /b/providers", || std::fs::read_dir(&dir).is_ok());
    let paths: Vec<String> = (0..BURST).map(|i| format!("/b/providers/10.3.{}.{}:80", i / 250, i % 250)).collect();
    let (tx, rx) = mpsc::channel::<Note>();
    let _ino = InotifyThread::notes(&[("p", dir.clone(), libc::IN_CREATE | libc::IN_DELETE)], tx.clone());
    let _native =
        NativeWatcher::start(&connect, &[("/b/providers", zookeeper_client::AddWatchMode::PersistentRecursive)], tx);
    let creator = Zk::connect(&connect);
    let mut out = Vec::new();
    for (label, create) in [("create burst", true), ("delete burst", false)] {
        let start = Instant::now();
        let client = creator.client().clone();
        let ps = paths.clone();
        creator.block_on(async move {
            let opts = zookeeper_client::CreateMode::Ephemeral.with_acls(zookeeper_client::Acls::anyone_all());
            if create {
                let futures: Vec<_> = ps.iter().map(|p| client.create(p, b"", &opts)).collect();
                for f in futures {
                    f.await.expect("create");
                }
            } else {
                let futures: Vec<_> = ps.iter().map(|p| client.delete(p, None)).collect();
                for f in futures {
                    f.await.expect("delete");
                }
            }
        });
        let acked = start.elapsed();
        let (want_mount, want_native) =
            if create { ("p: IN_CREATE", "NodeCreated") } else { ("p: IN_DELETE", "NodeDeleted") };
        let (mut mount_seen, mut native_seen) = (HashSet::new(), 0usize);
        let (mut mount_last, mut native_last) = (Duration::ZERO, Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(60);
        while (mount_seen.len() < BURST || native_seen < BURST) && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(n) if n.what.starts_with(want_mount) => {
                    if mount_seen.insert(n.what) {
                        mount_last = n.at.duration_since(start);
                    }
                }
                Ok(n) if n.what.starts_with(want_native) => {
                    native_seen += 1;
                    native_last = n.at.duration_since(start);
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if mount_seen.len() < BURST {
            mount_last = deadline.duration_since(start);
        }
        out.push((label, Burst { mount_last, native_last, acked, mount_events: mount_seen.len() }));
    }
    out
}
