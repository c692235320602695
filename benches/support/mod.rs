//! What the benchmarks share (`live.rs`, `scale.rs`, `unregister.rs`): statistics
//! over samples and the printing of durations and tables; the run's environment
//! line; the two observers of a change — the tests' one inotify reader on a thread of
//! its own, and a native ZooKeeper client holding persistent watches — each turning
//! what it sees into stamped [`Note`]s; a child process reaped on drop.
//!
//! Each benchmark includes it with `mod support;` next to `mod common;` (the tests'
//! fixtures, by path).
// Each benchmark uses some of this and not the rest.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use crate::common::inotify::{Event, Inotify};
use crate::common::{four_letter, Zk, ZkServer};

// ---------------------------------------------------------------------------
// Statistics and printing

/// Sorted samples.
pub struct Stats(Vec<Duration>);

impl Stats {
    pub fn new(mut samples: Vec<Duration>) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort();
        Stats(samples)
    }

    /// Nearest-rank percentile, `p` in (0, 1].
    pub fn pct(&self, p: f64) -> Duration {
        let n = self.0.len();
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        self.0[rank - 1]
    }

    pub fn median(&self) -> Duration {
        self.pct(0.5)
    }

    pub fn p90(&self) -> Duration {
        self.pct(0.9)
    }

    pub fn p99(&self) -> Duration {
        self.pct(0.99)
    }
}

/// The median (nearest rank) of `samples`.
pub fn median(samples: Vec<Duration>) -> Duration {
    Stats::new(samples).median()
}

/// A duration with three or four significant figures, in µs, ms or s.
pub fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.2} µs")
    } else if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

pub fn verdict(r: f64, target: f64) -> &'static str {
    if r <= target {
        "PASS"
    } else {
        "MISS"
    }
}

/// Prints `rows` as aligned columns: the first and those in `left` left-aligned, the
/// others (figures) right-aligned; a rule after the first `header` rows.
pub fn print_table(rows: &[Vec<String>], header: usize, left: &[usize]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |c: usize| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let total = widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, w) in widths.iter().enumerate() {
            let cell = row.get(c).map(String::as_str).unwrap_or("");
            let pad = " ".repeat(w - cell.chars().count());
            if c > 0 {
                line.push_str("  ");
            }
            if c == 0 || left.contains(&c) {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        println!("  {}", line.trim_end());
        if i + 1 == header {
            println!("  {}", "-".repeat(total));
        }
    }
}

/// The file's bytes; panics with the path.
pub fn read(file: &Path) -> Vec<u8> {
    fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
}

/// Runs `f` `warmup` times, then times `iters` runs one by one.
pub fn time_iters(warmup: usize, iters: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..warmup {
        f();
    }
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    Stats::new(samples)
}

/// Like [`time_iters`] for two operations at once, interleaved (ABBAABBA…), so
/// that drift and background work on the machine weigh on both alike.
pub fn time_pair(warmup: usize, iters: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Stats, Stats) {
    for _ in 0..warmup {
        a();
        b();
    }
    let (mut sa, mut sb) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
    for i in 0..iters {
        for first in [i % 2 == 0, i % 2 != 0] {
            let t = Instant::now();
            if first {
                a();
                sa.push(t.elapsed());
            } else {
                b();
                sb.push(t.elapsed());
            }
        }
    }
    (Stats::new(sa), Stats::new(sb))
}

/// Kernel, CPUs, ZooKeeper version, zkfs commit: what a reader of the figures needs
/// to compare two runs.
pub fn environment(server: &ZkServer) -> String {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "?".into(), |s| s.trim().to_string());
    let nproc = thread::available_parallelism().map_or_else(|_| "?".into(), |n| n.get().to_string());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let zk_version = four_letter(server.port(), "srvr")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Zookeeper version: "))
                .map(|v| v.split(['-', ',']).next().unwrap_or(v).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let repo = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "?".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    format!(
        "kernel {kernel}, nproc {nproc}, cpu {cpu}; ZooKeeper {zk_version} standalone on {}; zkfs {commit}{} (release)",
        server.connect_string(),
        if dirty { "+uncommitted changes" } else { "" },
    )
}

// ---------------------------------------------------------------------------
// Observers

/// One notification an observer saw, stamped when its read/await returned.
pub struct Note {
    pub at: Instant,
    /// `providers: IN_CREATE 10.0.0.1:20000`, `NodeDataChanged /bench`, …
    pub what: String,
}

/// The tests' inotify reader ([`Inotify`]) on a thread of its own, which hands each
/// read's events to a callback until dropped.
pub struct InotifyThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl InotifyThread {
    /// Watches each `(label, path, mask)` (in place when this returns) and starts the
    /// thread, which calls `on_events` with what each read returns.
    pub fn start(
        watches: &[(&str, PathBuf, u32)],
        mut on_events: impl FnMut(Vec<Event>) + Send + 'static,
    ) -> InotifyThread {
        let mut ino = Inotify::new();
        for (label, path, mask) in watches {
            ino.watch_as(path, *mask, label);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("inotify-reader".into())
            .spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    let events = ino.read(Duration::from_millis(50));
                    if !events.is_empty() {
                        on_events(events);
                    }
                }
            })
            .expect("spawn inotify reader");
        InotifyThread { stop, thread: Some(thread) }
    }

    /// Sends one [`Note`] per interesting mask bit of each event, `LABEL: IN_BIT NAME`.
    pub fn notes(watches: &[(&str, PathBuf, u32)], tx: Sender<Note>) -> InotifyThread {
        const BITS: [(u32, &str); 6] = [
            (libc::IN_CREATE, "IN_CREATE"),
            (libc::IN_DELETE, "IN_DELETE"),
            (libc::IN_MODIFY, "IN_MODIFY"),
            (libc::IN_CLOSE_WRITE, "IN_CLOSE_WRITE"),
            (libc::IN_ATTRIB, "IN_ATTRIB"),
            (libc::IN_Q_OVERFLOW, "IN_Q_OVERFLOW"),
        ];
        InotifyThread::start(watches, move |events| {
            for ev in events {
                for (bit, bit_name) in BITS {
                    if ev.mask & bit != 0 {
                        let _ = tx.send(Note { at: ev.at, what: format!("{}: {bit_name} {}", ev.watched, ev.name) });
                    }
                }
            }
        })
    }
}

impl Drop for InotifyThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A second native client holding persistent watches, on a thread of its own; each
/// event becomes a [`Note`] `EVENT_TYPE PATH`.
pub struct NativeWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NativeWatcher {
    /// Connects, adds a watch of the given mode on each path, and returns once all
    /// are in place; events go to `tx`.
    pub fn start(connect: &str, watches: &[(&str, zk::AddWatchMode)], tx: Sender<Note>) -> NativeWatcher {
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let connect = connect.to_string();
        let watches: Vec<(String, zk::AddWatchMode)> = watches.iter().map(|(p, m)| (p.to_string(), *m)).collect();
        let thread = thread::Builder::new()
            .name("native-watcher".into())
            .spawn(move || {
                let zk = Zk::connect(&connect);
                zk.block_on(async {
                    let mut tasks = Vec::new();
                    for (path, mode) in watches {
                        let w = zk.client().watch(&path, mode).await;
                        let mut w = w.unwrap_or_else(|e| panic!("watch {path}: {e}"));
                        let tx = tx.clone();
                        tasks.push(tokio::spawn(async move {
                            loop {
                                let ev = w.changed().await;
                                let at = Instant::now();
                                if ev.event_type == zk::EventType::Session {
                                    if ev.session_state.is_terminated() {
                                        break; // `changed` would panic from now on
                                    }
                                    continue;
                                }
                                if tx.send(Note { at, what: format!("{} {}", ev.event_type, ev.path) }).is_err() {
                                    break;
                                }
                            }
                        }));
                    }
                    let _ = ready_tx.send(());
                    while !stop2.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    for t in tasks {
                        t.abort();
                    }
                });
                // `zk` drops here and closes its session.
            })
            .expect("spawn native watcher");
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            panic!("the native watcher did not start (see its panic above)");
        }
        NativeWatcher { stop, thread: Some(thread) }
    }
}

impl Drop for NativeWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child process killed and reaped on drop, also when the benchmark panics.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
