//! (a) of the live benchmark: remote change → notification latency. A native client
//! makes each change; an inotify watch on the mount and, as the floor, a second native
//! client holding persistent watches both report it, and each is timed from just
//! before the change to when its read/await returned.

use std::fs;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use super::bench_data;
use super::common::{Mount, Zk};
use super::support::{fmt_dur, print_table, ratio, verdict, InotifyThread, NativeWatcher, Note, Stats};

/// Measured samples per latency series.
const LATENCY_SAMPLES: usize = 300;
/// Unmeasured changes before each latency series (JIT, caches, connections).
const LATENCY_WARMUP: usize = 20;
/// How long to wait for the event of one change before counting it as missed.
const EVENT_TIMEOUT: Duration = Duration::from_secs(2);
/// A series stops after this many misses in a row (so a mount without remote
/// inotify costs 10 s, not 10 minutes).
const MAX_CONSECUTIVE_MISSES: usize = 5;
/// Pause between two changes, so that each is measured alone.
const SAMPLE_GAP: Duration = Duration::from_millis(1);
/// Target: inotify median ≤ this × the native watch-callback median.
const LATENCY_TARGET: f64 = 1.5;

/// The outcome of one latency series (one observer over a run of changes).
struct Series {
    /// Latencies of the measured changes whose notification came in time.
    latencies: Vec<Duration>,
    /// Measured changes made, and how many of them got no notification in time.
    attempted: usize,
    missed: usize,
    /// Misses in all, warm-up included.
    missed_all: usize,
    /// Misses in a row so far; at [`MAX_CONSECUTIVE_MISSES`] the series stops.
    consecutive: usize,
    gave_up: bool,
    /// The notification that answered the previous change, to count duplicates.
    prev: Option<String>,
    /// Matching notifications beyond the first for one change (duplicates).
    extra: usize,
}

impl Series {
    fn new() -> Series {
        Series {
            latencies: Vec::with_capacity(LATENCY_SAMPLES),
            attempted: 0,
            missed: 0,
            missed_all: 0,
            consecutive: 0,
            gave_up: false,
            prev: None,
            extra: 0,
        }
    }

    fn stats(&self) -> Option<Stats> {
        (!self.latencies.is_empty()).then(|| Stats::new(self.latencies.clone()))
    }

    /// Records the outcome of one change.
    fn record(&mut self, measured: bool, got: Option<Duration>, want: String) {
        if measured {
            self.attempted += 1;
        }
        match got {
            Some(d) => {
                self.consecutive = 0;
                if measured {
                    self.latencies.push(d);
                }
            }
            None => {
                self.consecutive += 1;
                self.missed_all += 1;
                if measured {
                    self.missed += 1;
                }
                self.gave_up = self.consecutive >= MAX_CONSECUTIVE_MISSES;
            }
        }
        self.prev = Some(want);
    }

    /// Cells: median, p99, events.
    fn cells(&self) -> [String; 3] {
        match self.stats() {
            Some(s) => {
                let mut events = format!("{}/{}", self.latencies.len(), self.attempted);
                if self.missed > 0 {
                    events += &format!(" ({} missed{})", self.missed, if self.gave_up { ", gave up" } else { "" });
                }
                [fmt_dur(s.median()), fmt_dur(s.p99()), events]
            }
            None => ["no events".into(), "-".into(), format!("({} missed)", self.missed_all)],
        }
    }
}

/// Makes `LATENCY_WARMUP + LATENCY_SAMPLES` changes one at a time, each observed by
/// every observer at once. For change `i`, `keys[k](i)` is the note by which
/// observer `k` reports it. t0 is taken just before `change(i)`; t1 is the stamp of
/// the first matching note on `rx`. The next change is made once every observer
/// has reported (or timed out). An observer that misses
/// [`MAX_CONSECUTIVE_MISSES`] changes in a row is no longer waited for.
/// Returns one [`Series`] per observer and up to three notes that matched nothing.
fn run_paired<const N: usize>(
    what: &str,
    rx: &Receiver<Note>,
    keys: [&dyn Fn(usize) -> String; N],
    mut change: impl FnMut(usize),
) -> ([Series; N], Vec<String>) {
    eprintln!("  (a) {what} ...");
    let mut series: [Series; N] = std::array::from_fn(|_| Series::new());
    let mut unmatched: Vec<String> = Vec::new();
    let mut other = |series: &mut [Series; N], n: Note| {
        if let Some(s) = series.iter_mut().find(|s| s.prev.as_deref() == Some(n.what.as_str())) {
            s.extra += 1;
        } else if unmatched.len() < 3 && !unmatched.contains(&n.what) {
            unmatched.push(n.what);
        }
    };
    for i in 0..LATENCY_WARMUP + LATENCY_SAMPLES {
        if series.iter().all(|s| s.gave_up) {
            break;
        }
        while let Ok(n) = rx.try_recv() {
            other(&mut series, n);
        }
        let wants: [String; N] = std::array::from_fn(|k| keys[k](i));
        let mut got: [Option<Duration>; N] = [None; N];
        let t0 = Instant::now();
        change(i);
        let deadline = t0 + EVENT_TIMEOUT;
        while (0..N).any(|k| !series[k].gave_up && got[k].is_none()) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(n) => match (0..N).find(|&k| got[k].is_none() && n.at >= t0 && n.what == wants[k]) {
                    Some(k) => got[k] = Some(n.at - t0),
                    None => other(&mut series, n),
                },
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => panic!("the observers of {what} stopped"),
            }
        }
        let measured = i >= LATENCY_WARMUP;
        for (k, want) in wants.into_iter().enumerate() {
            if !series[k].gave_up {
                series[k].record(measured, got[k], want);
            }
        }
        thread::sleep(SAMPLE_GAP);
    }
    // Late duplicates of the last change.
    thread::sleep(Duration::from_millis(20));
    while let Ok(n) = rx.try_recv() {
        other(&mut series, n);
    }
    (series, unmatched)
}

/// Runs (a), prints its table; returns (targets met, targets).
pub fn latency_section(connect: &str, changer: &Zk, mount: &Mount) -> (usize, usize) {
    // Warm up: make zkfs list and read what is watched, so it holds its watches.
    for dir in ["/", "/bench", "/bench/providers"] {
        let _ = fs::read_dir(mount.join(dir)).map(|d| d.count()).expect("ls through the mount");
    }
    fs::read(mount.join("/bench/properties.json")).expect("cat /bench/properties.json through the mount");

    let (tx, rx) = mpsc::channel();
    let inotify = InotifyThread::notes(
        &[
            ("bench", mount.join("/bench"), libc::IN_MODIFY | libc::IN_CLOSE_WRITE | libc::IN_CREATE | libc::IN_DELETE),
            ("providers", mount.join("/bench/providers"), libc::IN_CREATE | libc::IN_DELETE),
        ],
        tx.clone(),
    );
    let native = NativeWatcher::start(
        connect,
        &[("/bench", zk::AddWatchMode::Persistent), ("/bench/providers", zk::AddWatchMode::Persistent)],
        tx,
    );

    let provider = |i: usize| format!("10.0.0.{}:{}", 1 + i % 250, 20000 + i);
    let ((data, data_other), (child, child_other)) = (
        run_paired(
            "set /bench data -> IN_MODIFY / NodeDataChanged",
            &rx,
            [&|_| "bench: IN_MODIFY properties.json".into(), &|_| "NodeDataChanged /bench".into()],
            |i| changer.set("/bench", &bench_data(1 + i)),
        ),
        run_paired(
            "create ephemeral -> IN_CREATE / NodeChildrenChanged",
            &rx,
            [&|i| format!("providers: IN_CREATE {}", provider(i)), &|_| "NodeChildrenChanged /bench/providers".into()],
            |i| changer.create_ephemeral(&format!("/bench/providers/{}", provider(i)), b"{}"),
        ),
    );
    drop(native);
    drop(inotify);

    println!(
        "(a) remote change -> notification latency: {LATENCY_SAMPLES} changes per row after {LATENCY_WARMUP} warm-up, \
         one at a time, {} s timeout",
        EVENT_TIMEOUT.as_secs()
    );
    println!("    A native client makes each change (t0 just before the call). Both observers see every change;");
    println!(
        "    t1 is when each one's read() / changed().await returns: inotify on the mount (the tests' reader, own"
    );
    println!("    thread) and, as the floor, a second native zookeeper-client holding persistent watches.");
    let mut rows = vec![vec![
        "change".to_string(),
        "inotify median".into(),
        "p99".into(),
        "events".into(),
        "watch median".into(),
        "p99".into(),
        "events".into(),
        "inotify/watch".into(),
        format!("target <={LATENCY_TARGET}x"),
    ]];
    let mut met = 0;
    for (label, [m, n]) in [
        ("set /bench data -> IN_MODIFY properties.json", &data),
        ("create /bench/providers/HOST:PORT -> IN_CREATE", &child),
    ] {
        let [mm, mp, me] = m.cells();
        let [nm, np, ne] = n.cells();
        let (r, v) = match (m.stats(), n.stats()) {
            (Some(ms), Some(ns)) => {
                let r = ratio(ms.median(), ns.median());
                if r <= LATENCY_TARGET {
                    met += 1;
                }
                (format!("{r:.2}x"), verdict(r, LATENCY_TARGET).to_string())
            }
            (None, _) => ("-".into(), "MISS (no events)".into()),
            (_, None) => ("-".into(), "n/a (no floor)".into()),
        };
        rows.push(vec![label.into(), mm, mp, me, nm, np, ne, r, v]);
    }
    print_table(&rows, 1, &[]);
    for (label, series, unmatched) in [("IN_MODIFY", &data, &data_other), ("IN_CREATE", &child, &child_other)] {
        for (observer, s) in ["inotify", "watch"].iter().zip(series) {
            if s.extra > 0 {
                println!("    note: {label} row, {observer}: {} duplicate notification(s) of one change", s.extra);
            }
        }
        if series[0].stats().is_none() && !unmatched.is_empty() {
            println!("    note: {label} row: other notifications seen: {}", unmatched.join("; "));
        }
    }
    println!();
    (met, 2)
}
