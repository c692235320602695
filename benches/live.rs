//! Live benchmark: zkfs against a throw-away local ZooKeeper, side by side with a
//! native ZooKeeper client and with tmpfs.
//!
//! (a) Remote change → notification latency: a native client changes ZooKeeper;
//!     one observer is an inotify watch on the mount, the other (the floor) a
//!     second native client holding persistent watches.
//! (b) Warm reads: `read_dir`/`read` in-process and `ls`/`cat` as commands on the
//!     mount and on tmpfs, and the native round trips they stand in for.
//! (c) Under stress (`live/stress.rs`): a warm read while writes wait on a frozen
//!     ZooKeeper, against the same read with none waiting; the last event of a
//!     5,000-registration burst, against a native watch's.
//!
//! Run with `scripts/bench` (or `cargo bench --bench live`): a few seconds after the
//! release build, about 20 s more if the mount delivers no events for remote changes.
//! Every process and directory it creates is removed by the fixtures' `Drop`, also
//! when it panics.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "live/stress.rs"]
mod stress;
mod support;

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::{wait_until, Mount, Zk, ZkServer};
use support::{fmt_dur, print_table, ratio, read, verdict, InotifyThread, NativeWatcher, Note, Stats};
use zookeeper_client as zk;

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
/// Warm-up and measured iterations of in-process reads and native round trips.
const READ_WARMUP: usize = 100;
const READ_ITERS: usize = 2000;
/// Warm-up and measured runs of `ls` and `cat` as commands.
const CMD_WARMUP: usize = 10;
const CMD_RUNS: usize = 200;
/// Children of /bench/many.
const MANY_CHILDREN: usize = 100;
/// Approximate size of /bench's data.
const DATA_SIZE: usize = 200;
/// Target: inotify median ≤ this × the native watch-callback median.
const LATENCY_TARGET: f64 = 1.5;
/// Target: mount ≤ this × tmpfs.
const READ_TARGET: f64 = 2.0;

const RERUN: &str = "scripts/bench live   (= scripts/install-deps && cargo bench --bench live)";

fn main() {
    // zkfs logs at debug level under the fixtures unless RUST_LOG says otherwise;
    // a benchmark measures the mount, not its logging. Set before any thread starts.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();

    let started = Instant::now();
    eprintln!("zkfs live benchmark: starting ZooKeeper and the mount...");
    let server = ZkServer::start();
    let connect = server.connect_string();
    let admin = Zk::connect(&connect);
    setup_tree(&admin);
    let mount = Mount::new(&connect);
    wait_until(Duration::from_secs(10), "the mount shows /bench/many", || {
        fs::read_dir(mount.join("/bench/many")).map(|d| d.count() > MANY_CHILDREN).unwrap_or(false)
    });

    println!();
    println!("zkfs live benchmark");
    println!("environment: {}", environment(&server, &rust_log));
    println!("re-run:      {RERUN}");
    println!();

    let latency = latency_section(&connect, &admin, &mount);
    let reads = reads_section(&admin, &mount);
    println!();
    let stress = stress::stress_section();

    println!();
    let (met, total) = (latency.0 + reads.0 + stress.0, latency.1 + reads.1 + stress.1);
    println!("targets met: {met} of {total}; total time {:.1} s", started.elapsed().as_secs_f64());
    println!("re-run:      {RERUN}");
    // `mount`, `admin` and `server` drop here in reverse order: unmount, close the
    // session, stop ZooKeeper.
}

/// `/bench` (≈200 bytes of JSON), `/bench/providers` (empty) and `/bench/many`
/// (100 persistent children).
fn setup_tree(admin: &Zk) {
    admin.mkdir_p("/bench/providers");
    admin.set("/bench", &bench_data(0));
    admin.mkdir_p("/bench/many");
    for i in 0..MANY_CHILDREN {
        admin.create(&format!("/bench/many/node-{i:03}"), b"");
    }
}

/// A JSON object of about [`DATA_SIZE`] bytes whose `revision` is `n`.
fn bench_data(n: usize) -> Vec<u8> {
    let make = |pad: usize| {
        serde_json::json!({
            "service": "bench",
            "revision": n,
            "weight": 3,
            "timeout_ms": 1500,
            "tags": ["live", "benchmark", "zookeeper"],
            "description": "z".repeat(pad),
        })
        .to_string()
        .into_bytes()
    };
    let base = make(0).len();
    make(DATA_SIZE.saturating_sub(base))
}

/// Kernel, CPUs, ZooKeeper version, zkfs commit, log level.
fn environment(server: &ZkServer, rust_log: &str) -> String {
    format!("{}, RUST_LOG={rust_log}", support::environment(server))
}

// ---------------------------------------------------------------------------
// (a) Remote change → notification latency

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
fn latency_section(connect: &str, changer: &Zk, mount: &Mount) -> (usize, usize) {
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

// ---------------------------------------------------------------------------
// (b) Warm reads

/// Lists `dir` fully (≈ `ls`); the number of entries.
fn list(dir: &Path) -> usize {
    let mut n = 0;
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        entry.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        n += 1;
    }
    n
}

/// Runs `f` `warmup` times, then times `iters` runs one by one.
fn time_iters(warmup: usize, iters: usize, mut f: impl FnMut()) -> Stats {
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
fn time_pair(warmup: usize, iters: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Stats, Stats) {
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

/// `PROG ARG >/dev/null` as a child process; panics unless it succeeds.
fn run_command(prog: &str, arg: &Path) {
    let status = Command::new(prog)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run {prog}: {e}"));
    assert!(status.success(), "{prog} {} failed: {status}", arg.display());
}

/// Runs (b), prints its table; returns (targets met, targets).
fn reads_section(admin: &Zk, mount: &Mount) -> (usize, usize) {
    eprintln!("  (b) warm reads ...");
    let data = bench_data(0);
    admin.set("/bench", &data);
    let want: serde_json::Value = serde_json::from_slice(&data).expect("bench data is JSON");
    let mnt_file = mount.join("/bench/properties.json");
    let mnt_dir = mount.join("/bench/many");
    wait_until(Duration::from_secs(10), "the mount shows /bench's data", || {
        fs::read(&mnt_file).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            == Some(want.clone())
    });
    // Warm means at rest: a file whose data changed in the last second is read past
    // the page cache (see `zkfs::view::SETTLE`); that cost is the outage row's concern.
    thread::sleep(zkfs::view::SETTLE + Duration::from_millis(100));

    // tmpfs mirror: the same bytes, the same number of entries.
    let shm = tempfile::Builder::new().prefix("zkfs-bench-").tempdir_in("/dev/shm").expect("temp dir in /dev/shm");
    let shm_file = shm.path().join("properties.json");
    let shm_dir = shm.path().join("many");
    let shown = read(&mnt_file);
    fs::write(&shm_file, &shown).expect("write tmpfs properties.json");
    fs::create_dir(&shm_dir).expect("mkdir tmpfs many");
    for i in 0..MANY_CHILDREN {
        fs::create_dir(shm_dir.join(format!("node-{i:03}"))).expect("mkdir tmpfs child");
    }
    fs::write(shm_dir.join("properties.json"), read(&mnt_dir.join("properties.json"))).expect("write tmpfs file");
    let (n_mnt, n_shm) = (list(&mnt_dir), list(&shm_dir));
    assert_eq!(n_mnt, n_shm, "the mount and tmpfs directories differ in size");

    let (ls_mnt, ls_shm) = time_pair(
        READ_WARMUP,
        READ_ITERS,
        || {
            black_box(list(&mnt_dir));
        },
        || {
            black_box(list(&shm_dir));
        },
    );
    let (cat_mnt, cat_shm) = time_pair(
        READ_WARMUP,
        READ_ITERS,
        || {
            black_box(read(&mnt_file));
        },
        || {
            black_box(read(&shm_file));
        },
    );
    let (ls_cmd_mnt, ls_cmd_shm) =
        time_pair(CMD_WARMUP, CMD_RUNS, || run_command("ls", &mnt_dir), || run_command("ls", &shm_dir));
    let (cat_cmd_mnt, cat_cmd_shm) =
        time_pair(CMD_WARMUP, CMD_RUNS, || run_command("cat", &mnt_file), || run_command("cat", &shm_file));
    let client = admin.client();
    let children = time_iters(READ_WARMUP, READ_ITERS, || {
        black_box(admin.block_on(client.get_children("/bench/many")).expect("get_children /bench/many"));
    });
    let get = time_iters(READ_WARMUP, READ_ITERS, || {
        black_box(admin.block_on(client.get_data("/bench")).expect("get_data /bench"));
    });

    println!(
        "(b) warm reads: DIR = /bench/many ({n_mnt} entries: {MANY_CHILDREN} children + properties.json), \
         FILE = /bench/properties.json ({} bytes)",
        shown.len()
    );
    println!(
        "    in-process: {READ_ITERS} iterations after {READ_WARMUP} warm-up; commands: {CMD_RUNS} runs after \
         {CMD_WARMUP} warm-up; zkfs and tmpfs (the same tree in /dev/shm) interleaved"
    );
    let mut rows = vec![vec![
        "operation".to_string(),
        "zkfs median".into(),
        "p99".into(),
        "tmpfs median".into(),
        "p99".into(),
        "zkfs/tmpfs".into(),
        format!("target <={READ_TARGET}x"),
        "native round trip".into(),
        "median".into(),
        "p99".into(),
        "zkfs/native".into(),
    ]];
    let mut met = 0;
    let cases = [
        ("read_dir(DIR), all entries", &ls_mnt, &ls_shm, Some(("get_children /bench/many", &children))),
        ("fs::read(FILE)", &cat_mnt, &cat_shm, Some(("get_data /bench", &get))),
        ("`ls DIR >/dev/null`", &ls_cmd_mnt, &ls_cmd_shm, None),
        ("`cat FILE >/dev/null`", &cat_cmd_mnt, &cat_cmd_shm, None),
    ];
    for (label, m, t, native) in cases {
        let r = ratio(m.median(), t.median());
        if r <= READ_TARGET {
            met += 1;
        }
        let mut row = vec![
            label.to_string(),
            fmt_dur(m.median()),
            fmt_dur(m.p99()),
            fmt_dur(t.median()),
            fmt_dur(t.p99()),
            format!("{r:.2}x"),
            verdict(r, READ_TARGET).into(),
        ];
        match native {
            Some((op, n)) => row.extend([
                op.to_string(),
                fmt_dur(n.median()),
                fmt_dur(n.p99()),
                format!("{:.2}x", ratio(m.median(), n.median())),
            ]),
            None => row.extend(["-".to_string(), "".into(), "".into(), "".into()]),
        }
        rows.push(row);
    }
    print_table(&rows, 1, &[]);
    (met, cases.len())
}
