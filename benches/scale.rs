//! Large-tree benchmark: zkfs on a 100,000-node tree and a 10,000-child directory,
//! every row beside a native reference measured in the same run.
//!
//! One throw-away ZooKeeper holds
//! * `/big`: `FANOUT` directories of `LEAVES` persistent children each (100,100 nodes);
//! * `/wide`: `WIDE` registrations (ephemeral children);
//! * `/burst`: `BURST` persistent children, deleted at once by another client;
//! * `/plain`: `shape_dirs` directories without children; `/regs`: as many, each
//!   holding `shape_regs` registrations (the tree-shape rows);
//! * `/reg/zkfs-P`, `/reg/native-P`: where P concurrent writers register;
//!   `/reg/spread/dT`: where writer T of `SPREAD` registers in a directory of its own.
//!
//! Rows: cold and warm walks (read 1,001 `properties.json` vs a native get_data loop),
//! the cold read of one `properties.json` per directory of `/plain` and of `/regs` vs a
//! native get_data loop over the same nodes, a cold `ls` of `/wide` vs one get_children, a warm `ls -l` of it vs tmpfs, RSS after
//! reading every node, the deletion burst → last IN_DELETE vs a native watch, zkfs's
//! CPU under 2,000 changes/s vs a native recursive watcher process, and registration
//! throughput at 1/4/8/16 writers vs native synchronous creates. The "ZK requests"
//! column is the server's request counter (`srvr` Received) across the zkfs side.
//!
//! Sizes: `ZKFS_BENCH_SCALE=small` runs the same rows on a ~1,000-node tree in
//! seconds; the default (`full`) takes a few minutes. Run with `scripts/bench scale`.
//! `ZKFS_BENCH_ONLY=cold` runs only the cold and warm walks and listings.
//! Every process, mount and directory it starts is removed by the fixtures' `Drop`,
//! also when it panics.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::{cpu_time, rss_kib};
use common::{four_letter, Mount, Zk, ZkServer};
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{futimens, Mode};
use nix::sys::time::TimeSpec;
use support::{environment, fmt_dur, median, print_table, ratio, read, InotifyThread, Reaped};
use zookeeper_client as zk;

/// The sizes of one run.
struct Scale {
    name: &'static str,
    /// Directories under /big.
    fanout: usize,
    /// Children of each of them.
    leaves: usize,
    /// `properties.json` files read per /big directory in the walks (plus /big's own).
    walk_per_dir: usize,
    /// Directories under /plain and /regs (the tree-shape rows), and registrations in
    /// each /regs directory.
    shape_dirs: usize,
    shape_regs: usize,
    /// Registrations in /wide.
    wide: usize,
    /// Children of /burst.
    burst: usize,
    /// Cold `ls` runs (each on a fresh mount) and warm `ls -l` runs.
    ls_runs: usize,
    /// Seconds of churn.
    churn_secs: u64,
    /// Registrations per writer count.
    registrations: usize,
}

const FULL: Scale = Scale {
    name: "full",
    fanout: 100,
    leaves: 1000,
    walk_per_dir: 10,
    shape_dirs: 1000,
    shape_regs: 100,
    wide: 10_000,
    burst: 5_000,
    ls_runs: 3,
    churn_secs: 5,
    registrations: 2_000,
};

const SMALL: Scale = Scale {
    name: "small",
    fanout: 10,
    leaves: 100,
    walk_per_dir: 10,
    shape_dirs: 200,
    shape_regs: 20,
    wide: 1_000,
    burst: 500,
    ls_runs: 3,
    churn_secs: 2,
    registrations: 200,
};

/// Data changes per second in the churn row.
const CHURN_RATE: usize = 2_000;
/// Writers in the registration rows.
const WRITERS: [usize; 4] = [1, 4, 8, 16];
/// Writers of the row where each registers in a directory of its own.
const SPREAD: usize = 8;
/// How long the burst's last event may take before the row reports what arrived.
const BURST_TIMEOUT: Duration = Duration::from_secs(180);
/// Requests in flight at once while building the tree.
const PIPELINE: usize = 2_000;

const RERUN: &str = "scripts/bench scale   (ZKFS_BENCH_SCALE=small for a quick run)";

fn main() {
    if std::env::var_os(ROLE_WATCHER).is_some() {
        return native_watcher_process();
    }
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    let scale = match std::env::var("ZKFS_BENCH_SCALE").as_deref() {
        Ok("small") => SMALL,
        Ok("full") | Err(_) => FULL,
        Ok(other) => {
            eprintln!("ZKFS_BENCH_SCALE={other}: expected small or full");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    eprintln!("zkfs scale benchmark ({}): starting ZooKeeper...", scale.name);
    let server = ZkServer::start();
    let connect = server.connect_string();
    let admin = Zk::connect(&connect);
    let t = Instant::now();
    let nodes = build_tree(&admin, &scale);
    let built = t.elapsed();

    println!();
    println!("zkfs scale benchmark ({} sizes)", scale.name);
    println!("environment: {}", environment(&server));
    println!(
        "tree:        {nodes} nodes made in {} by pipelined creates ({:.0}/s); /wide {} registrations, /burst {}",
        fmt_dur(built),
        nodes as f64 / built.as_secs_f64(),
        scale.wide,
        scale.burst
    );
    println!("re-run:      {RERUN}");
    println!();

    let mut rows = Rows::default();
    walks(&server, &admin, &scale, &mut rows);
    shapes(&server, &admin, &scale, &mut rows);
    listings(&server, &admin, &scale, &mut rows);
    if std::env::var("ZKFS_BENCH_ONLY").as_deref() == Ok("cold") {
        rows.print();
        return;
    }
    // One mount for the rest: everything read, then the burst, the churn, the writers.
    let mount = Mount::new(&connect);
    read_everything(&server, &mount, &scale, &mut rows);
    burst(&server, &admin, &mount, &scale, &mut rows);
    churn(&connect, &admin, &mount, &scale, &mut rows);
    registrations(&server, &admin, &mount, &scale, &mut rows);
    drop(mount);

    rows.print();
    println!();
    println!("targets met: {} of {}; total time {:.0} s", rows.met, rows.targets, started.elapsed().as_secs_f64());
    println!("re-run:      {RERUN}");
}

// ---------------------------------------------------------------------------
// The tree

fn big_dir(d: usize) -> String {
    format!("/big/d{d:03}")
}

fn leaf(d: usize, l: usize) -> String {
    format!("/big/d{d:03}/n{l:04}")
}

fn wide_name(i: usize) -> String {
    format!("10.2.{}.{}:{}", i / 250, i % 250 + 1, 8000 + i % 1000)
}

/// Creates everything the rows use; returns the number of nodes made.
fn build_tree(admin: &Zk, s: &Scale) -> usize {
    eprintln!("  building the tree...");
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    for top in ["/big", "/wide", "/burst", "/reg", "/plain", "/regs"] {
        admin.create(top, b"");
    }
    admin.set("/big", br#"{"service": "big", "fanout": 100}"#);
    let mut persistent_paths: Vec<(String, Vec<u8>)> = Vec::new();
    for d in 0..s.fanout {
        persistent_paths.push((big_dir(d), format!(r#"{{"dir": {d}}}"#).into_bytes()));
    }
    for d in 0..s.fanout {
        for l in 0..s.leaves {
            persistent_paths.push((leaf(d, l), format!(r#"{{"leaf": {l}, "weight": 3}}"#).into_bytes()));
        }
    }
    for i in 0..s.burst {
        persistent_paths.push((format!("/burst/b{i:05}"), Vec::new()));
    }
    for w in WRITERS {
        persistent_paths.push((format!("/reg/zkfs-{w}"), Vec::new()));
        persistent_paths.push((format!("/reg/native-{w}"), Vec::new()));
    }
    for d in 0..s.shape_dirs {
        for top in ["/plain", "/regs"] {
            persistent_paths.push((format!("{top}/d{d:04}"), format!(r#"{{"dir": {d}, "weight": 3}}"#).into_bytes()));
        }
    }
    persistent_paths.push(("/reg/spread".to_string(), Vec::new()));
    for t in 0..SPREAD {
        persistent_paths.push((format!("/reg/spread/d{t}"), Vec::new()));
    }
    let mut wide: Vec<(String, Vec<u8>)> =
        (0..s.wide).map(|i| (format!("/wide/{}", wide_name(i)), br#"{"pid": 1}"#.to_vec())).collect();
    for d in 0..s.shape_dirs {
        for r in 0..s.shape_regs {
            wide.push((format!("/regs/d{d:04}/{}", wide_name(r)), br#"{"pid": 1}"#.to_vec()));
        }
    }
    // Parents come before their children, and a chunk is awaited before the next is
    // sent, so every parent exists when its children are created.
    create_pipelined(admin, &persistent_paths, &persistent);
    create_pipelined(admin, &wide, &ephemeral);
    4 + persistent_paths.len() + wide.len()
}

fn create_pipelined(admin: &Zk, nodes: &[(String, Vec<u8>)], mode: &zk::CreateOptions<'_>) {
    let client = admin.client();
    for chunk in nodes.chunks(PIPELINE) {
        admin.block_on(async {
            let futures: Vec<_> = chunk.iter().map(|(p, d)| (p, client.create(p, d, mode))).collect();
            for (p, f) in futures {
                f.await.unwrap_or_else(|e| panic!("create {p}: {e}"));
            }
        });
    }
}

/// The `properties.json` files of the walks: /big's and `walk_per_dir` leaves of
/// every /big directory (spread over it).
fn walk_paths(s: &Scale) -> Vec<String> {
    let mut paths = vec!["/big".to_string()];
    let step = (s.leaves / s.walk_per_dir).max(1);
    for d in 0..s.fanout {
        for k in 0..s.walk_per_dir.min(s.leaves) {
            paths.push(leaf(d, k * step));
        }
    }
    paths
}

// ---------------------------------------------------------------------------
// Rows

#[derive(Default)]
struct Rows {
    rows: Vec<Vec<String>>,
    met: usize,
    targets: usize,
}

/// How a row's ratio is judged.
enum Target {
    /// zkfs/reference must be at most this.
    AtMost(f64),
    /// zkfs/reference must be at least this (throughput).
    AtLeast(f64),
    /// An absolute figure with a goal and no reference (RSS, in MiB).
    Goal(f64),
    /// No target.
    Info,
}

impl Rows {
    /// One row: what, zkfs's figure, the requests it cost, the reference and its
    /// figure, zkfs/reference, the target.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        work: &str,
        zkfs: String,
        requests: Option<u64>,
        reference: &str,
        refval: String,
        ratio: Option<f64>,
        target: Target,
    ) {
        let (target_s, verdict) = match (target, ratio) {
            (Target::AtMost(t), Some(r)) => (format!("<= {t}x"), Some(r <= t)),
            (Target::AtLeast(t), Some(r)) => (format!(">= {t}x"), Some(r >= t)),
            (Target::Goal(g), _) => (format!("<= {g} MiB"), ratio.map(|v| v <= g)),
            (Target::AtMost(t), None) => (format!("<= {t}x"), Some(false)),
            (Target::AtLeast(t), None) => (format!(">= {t}x"), Some(false)),
            (Target::Info, _) => ("-".into(), None),
        };
        if let Some(ok) = verdict {
            self.targets += 1;
            if ok {
                self.met += 1;
            }
        }
        let ratio_s = match ratio {
            Some(r) if target_s.ends_with("MiB") => format!("{r:.1} MiB@100k"),
            Some(r) => format!("{r:.2}x"),
            None => "-".into(),
        };
        self.rows.push(vec![
            work.to_string(),
            zkfs,
            requests.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            reference.to_string(),
            refval,
            ratio_s,
            target_s,
            match verdict {
                Some(true) => "PASS".into(),
                Some(false) => "MISS".into(),
                None => "".into(),
            },
        ]);
    }

    fn print(&self) {
        let mut all = vec![vec![
            "work".to_string(),
            "zkfs".into(),
            "ZK requests".into(),
            "reference".into(),
            "".into(),
            "zkfs/ref".into(),
            "target".into(),
            "".into(),
        ]];
        all.extend(self.rows.iter().cloned());
        print_table(&all, 1, &[3]);
    }
}

/// The server's count of requests received so far.
fn requests(server: &ZkServer) -> u64 {
    four_letter(server.port(), "srvr")
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Received: ")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// Runs `f` and returns how long it took and how many requests the server received.
fn counted<T>(server: &ZkServer, f: impl FnOnce() -> T) -> (Duration, u64, T) {
    let r0 = requests(server);
    let t = Instant::now();
    let out = f();
    let d = t.elapsed();
    // The srvr request itself is counted too.
    (d, requests(server).saturating_sub(r0 + 1), out)
}

/// Waits until the server has received no request for 200 ms (the mount's background
/// work is done); how long that took, to the last request, and how many it received.
fn quiet(server: &ZkServer) -> (Duration, u64) {
    let start = Instant::now();
    let first = requests(server);
    let (mut last, mut last_at, mut polls) = (first, start, 0u64);
    while last_at.elapsed() < Duration::from_millis(200) {
        thread::sleep(Duration::from_millis(5));
        polls += 1;
        let now = requests(server);
        if now != last + 1 {
            last_at = Instant::now();
        }
        last = now;
    }
    // Each poll is a request (srvr) too.
    (last_at - start, last.saturating_sub(first + polls))
}

/// `sh -c SCRIPT` with stdout to /dev/null; panics unless it succeeds.
fn shell(script: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(status.success(), "{script} failed: {status}");
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------
// Walks: read 1,001 properties.json, cold (fresh mount) and warm

fn walks(server: &ZkServer, admin: &Zk, s: &Scale, rows: &mut Rows) {
    eprintln!("  walks...");
    let paths = walk_paths(s);
    let n = paths.len();
    let mount = Mount::new(&server.connect_string());
    let files: Vec<PathBuf> = paths.iter().map(|p| mount.join(p).join("properties.json")).collect();
    let walk = || {
        for f in &files {
            std::hint::black_box(read(f));
        }
    };
    let client = admin.client();
    let native = || {
        admin.block_on(async {
            for p in &paths {
                std::hint::black_box(client.get_data(p).await.unwrap_or_else(|e| panic!("get_data {p}: {e}")));
            }
        })
    };
    let before = wakeups(mount.pid());
    let (cold, cold_req, ()) = counted(server, walk);
    let woken = since(&before, &wakeups(mount.pid()));
    // The mount learns the kinds of the walked directories' children once the walk
    // is over (see README "Every change is heard"): the reference runs after that.
    let (learnt, late_req) = quiet(server);
    let (native_cold, _, ()) = counted(server, native);
    let mut warm = Vec::new();
    let mut native_warm = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        walk();
        warm.push(t.elapsed());
        let t = Instant::now();
        native();
        native_warm.push(t.elapsed());
    }
    let (warm, native_warm) = (median(warm), median(native_warm));
    rows.push(
        &format!("cold read of {n} properties.json (fresh mount)"),
        fmt_dur(cold),
        Some(cold_req),
        &format!("get_data x {n}, sequential"),
        fmt_dur(native_cold),
        Some(ratio(cold, native_cold)),
        Target::AtMost(1.2),
    );
    wakeups_row(rows, &woken, n);
    rows.push(
        "  then: kinds of their siblings learnt in the background",
        format!("+{}", fmt_dur(learnt)),
        Some(late_req),
        "(after the walk; no read waits for it)",
        String::new(),
        None,
        Target::Info,
    );
    rows.push(
        &format!("warm read of the same {n} (median of 3)"),
        fmt_dur(warm),
        None,
        &format!("get_data x {n}, sequential"),
        fmt_dur(native_warm),
        Some(ratio(warm, native_warm)),
        Target::Info,
    );
}

// ---------------------------------------------------------------------------
// Tree shapes: the cold read of one properties.json per directory, in directories
// without children (/plain) and in directories of registrations (/regs)

/// Cold runs per shape, each on a fresh mount.
const SHAPE_RUNS: usize = 3;

fn shapes(server: &ZkServer, admin: &Zk, s: &Scale, rows: &mut Rows) {
    eprintln!("  tree shapes...");
    let client = admin.client();
    let shapes = [
        ("/plain", format!("{} plain directories", s.shape_dirs)),
        ("/regs", format!("{} directories x {} registrations", s.shape_dirs, s.shape_regs)),
    ];
    for (top, what) in shapes {
        let paths: Vec<String> = (0..s.shape_dirs).map(|d| format!("{top}/d{d:04}")).collect();
        let n = paths.len();
        let native = || {
            let t = Instant::now();
            admin.block_on(async {
                for p in &paths {
                    std::hint::black_box(client.get_data(p).await.unwrap_or_else(|e| panic!("get_data {p}: {e}")));
                }
            });
            t.elapsed()
        };
        // Interleaved: each cold run (a fresh mount) between two native loops.
        let (mut cold, mut cold_req, mut natives) = (Vec::new(), Vec::new(), vec![native()]);
        let mut woken = Vec::new();
        for _ in 0..SHAPE_RUNS {
            let mount = Mount::new(&server.connect_string());
            let files: Vec<PathBuf> = paths.iter().map(|p| mount.join(p).join("properties.json")).collect();
            let before = wakeups(mount.pid());
            let (d, r, ()) = counted(server, || {
                for f in &files {
                    std::hint::black_box(read(f));
                }
            });
            woken.push(since(&before, &wakeups(mount.pid())));
            cold.push(d);
            cold_req.push(r);
            drop(mount);
            natives.push(native());
        }
        let (cold, native) = (median(cold), median(natives));
        cold_req.sort();
        rows.push(
            &format!("cold read of {n} properties.json, {what} (median of {SHAPE_RUNS} fresh mounts)"),
            fmt_dur(cold),
            Some(cold_req[(cold_req.len() - 1) / 2]),
            &format!("get_data x {n}, sequential"),
            fmt_dur(native),
            Some(ratio(cold, native)),
            Target::AtMost(1.2),
        );
        // The run with the median total.
        woken.sort_by_key(|w| w.values().sum::<u64>());
        wakeups_row(rows, &woken[(woken.len() - 1) / 2], n);
    }
}

/// The row of the daemon's thread wake-ups per file read, by thread name.
fn wakeups_row(rows: &mut Rows, woken: &std::collections::BTreeMap<String, u64>, files: usize) {
    let per = |v: u64| format!("{:.1}", v as f64 / files as f64);
    let by: Vec<String> =
        woken.iter().filter(|(_, v)| **v > 0).map(|(comm, v)| format!("{comm} {}", per(*v))).collect();
    rows.push(
        "  then: the daemon's thread wake-ups per file",
        per(woken.values().sum()),
        None,
        &format!("by thread: {}", by.join(", ")),
        String::new(),
        None,
        Target::Info,
    );
}

/// Times each thread of process `pid` went to sleep (voluntary context switches: each
/// is followed by a wake-up), by thread name.
fn wakeups(pid: u32) -> std::collections::BTreeMap<(String, u32), u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        let dir = task.path();
        let tid: u32 = task.file_name().to_string_lossy().parse().unwrap_or(0);
        let comm = fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
        let status = fs::read_to_string(dir.join("status")).unwrap_or_default();
        let n = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        out.insert((comm, tid), n);
    }
    out
}

/// The wake-ups between two [`wakeups`] readings, summed by thread name.
fn since(
    before: &std::collections::BTreeMap<(String, u32), u64>,
    after: &std::collections::BTreeMap<(String, u32), u64>,
) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for (key, n) in after {
        *out.entry(key.0.clone()).or_default() += n - before.get(key).copied().unwrap_or(0).min(*n);
    }
    out
}

// ---------------------------------------------------------------------------
// The wide directory: cold `ls`, warm `ls -l`

fn listings(server: &ZkServer, admin: &Zk, s: &Scale, rows: &mut Rows) {
    eprintln!("  listings...");
    let client = admin.client();
    let mut native = Vec::new();
    for _ in 0..s.ls_runs {
        let t = Instant::now();
        let names = admin.block_on(client.list_children("/wide")).unwrap_or_else(|e| panic!("list /wide: {e}"));
        native.push(t.elapsed());
        assert_eq!(names.len(), s.wide);
    }
    let mut cold = Vec::new();
    let mut cold_req = Vec::new();
    let mut last = None;
    for _ in 0..s.ls_runs {
        drop(last.take());
        let mount = Mount::new(&server.connect_string());
        let dir = mount.join("/wide");
        let (d, r, ()) = counted(server, || shell(&format!("ls {}", sh_quote(&dir))));
        cold.push(d);
        cold_req.push(r);
        last = Some(mount);
    }
    let mount = last.expect("at least one ls run");
    let (cold, native) = (median(cold), median(native));
    cold_req.sort();
    let n = s.wide;
    rows.push(
        &format!("cold `ls` of /wide ({n} registrations), median of {}", s.ls_runs),
        fmt_dur(cold),
        Some(cold_req[(cold_req.len() - 1) / 2]),
        "one get_children",
        fmt_dur(native),
        Some(ratio(cold, native)),
        Target::AtMost(1.5),
    );

    // tmpfs: the same names and sizes.
    let shm = tempfile::Builder::new().prefix("zkfs-bench-").tempdir_in("/dev/shm").expect("temp dir in /dev/shm");
    let bytes = read(&mount.join("/wide").join(wide_name(0)));
    for i in 0..n {
        fs::write(shm.path().join(wide_name(i)), &bytes).expect("write a tmpfs file");
    }
    let zdir = sh_quote(&mount.join("/wide"));
    let tdir = sh_quote(shm.path());
    shell(&format!("ls -l {zdir}; ls -l {tdir}"));
    let (mut z, mut t) = (Vec::new(), Vec::new());
    for i in 0..s.ls_runs * 2 {
        for first in [i % 2 == 0, i % 2 != 0] {
            let start = Instant::now();
            if first {
                shell(&format!("ls -l {zdir}"));
                z.push(start.elapsed());
            } else {
                shell(&format!("ls -l {tdir}"));
                t.push(start.elapsed());
            }
        }
    }
    let (z, t) = (median(z), median(t));
    rows.push(
        &format!("warm `ls -l` of /wide, median of {}", s.ls_runs * 2),
        fmt_dur(z),
        None,
        "the same on tmpfs",
        fmt_dur(t),
        Some(ratio(z, t)),
        Target::AtMost(3.0),
    );
}

// ---------------------------------------------------------------------------
// Everything read; RSS

/// Lists every directory and reads every file below `dir`; the number of files read.
fn read_tree(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display())) {
            let entry = entry.unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display()));
            let ty = entry.file_type().unwrap_or_else(|e| panic!("type of {}: {e}", entry.path().display()));
            if ty.is_dir() {
                stack.push(entry.path());
            } else {
                std::hint::black_box(read(&entry.path()));
                n += 1;
            }
        }
    }
    n
}

fn read_everything(server: &ZkServer, mount: &Mount, s: &Scale, rows: &mut Rows) {
    eprintln!("  reading every node...");
    let rss0 = rss_kib(mount.pid()) as f64 / 1024.0;
    let (d, req, files) = counted(server, || {
        read_tree(&mount.join("/big")) + read_tree(&mount.join("/burst")) + read_tree(&mount.join("/wide"))
    });
    let nodes = 1 + s.fanout * (1 + s.leaves) + 1 + s.burst + 1 + s.wide;
    assert_eq!(files, nodes, "one file read per node");
    let rss = rss_kib(mount.pid()) as f64 / 1024.0;
    rows.push(
        &format!("read every node ({nodes}): ls + cat of all"),
        fmt_dur(d),
        Some(req),
        "",
        "".into(),
        None,
        Target::Info,
    );
    let per_node = (rss - rss0) * 1024.0 / nodes as f64;
    rows.push(
        &format!("RSS after that ({rss0:.1} MiB before, {per_node:.2} KiB/node)"),
        format!("{rss:.1} MiB"),
        None,
        "goal for 100k nodes",
        "64 MiB".into(),
        // The growth scaled to 100,000 nodes, so that a small run is judged by the same goal.
        Some(rss0 + (rss - rss0) * 100_000.0 / nodes as f64),
        Target::Goal(64.0),
    );
}

// ---------------------------------------------------------------------------
// The deletion burst

fn burst(server: &ZkServer, admin: &Zk, mount: &Mount, s: &Scale, rows: &mut Rows) {
    eprintln!("  deletion burst...");
    let n = s.burst;
    let count = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(None));
    let (count2, last2) = (Arc::clone(&count), Arc::clone(&last));
    let inotify = InotifyThread::start(&[("burst", mount.join("/burst"), libc::IN_DELETE)], move |events| {
        let got = events.iter().filter(|e| e.mask & libc::IN_DELETE != 0).count();
        if let Some(e) = events.last().filter(|_| got > 0) {
            count2.fetch_add(got, Ordering::SeqCst);
            // The lock only passes the last stamp to the main thread; nothing else is
            // held while it is taken.
            *last2.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.at);
        }
    });
    // The native observer: a second client with a persistent recursive watch.
    let watcher = Zk::connect(&server.connect_string());
    let mut watch = watcher
        .block_on(watcher.client().watch("/burst", zk::AddWatchMode::PersistentRecursive))
        .unwrap_or_else(|e| panic!("watch /burst: {e}"));
    let names: Vec<String> = (0..n).map(|i| format!("/burst/b{i:05}")).collect();
    let client = admin.client();
    let t0 = Instant::now();
    let native_done = thread::scope(|scope| {
        let native = scope.spawn(|| {
            watcher.block_on(async {
                let mut seen = 0;
                while seen < n {
                    let ev = tokio::time::timeout(BURST_TIMEOUT, watch.changed()).await;
                    match ev {
                        Ok(ev) if ev.event_type == zk::EventType::NodeDeleted => seen += 1,
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                }
                Some(t0.elapsed())
            })
        });
        admin.block_on(async {
            let futures: Vec<_> = names.iter().map(|p| (p, client.delete(p, None))).collect();
            for (p, f) in futures {
                f.await.unwrap_or_else(|e| panic!("delete {p}: {e}"));
            }
        });
        native.join().expect("native watcher thread")
    });
    let deadline = t0 + BURST_TIMEOUT;
    while count.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let got = count.load(Ordering::SeqCst);
    let last = last.lock().unwrap_or_else(|p| p.into_inner()).map(|at| at - t0);
    drop(inotify);
    let native = native_done.expect("the native watch saw every deletion");
    let zkfs = match last {
        Some(d) if got >= n => fmt_dur(d),
        Some(d) => format!("{got}/{n} events, last {}", fmt_dur(d)),
        None => "no events".into(),
    };
    rows.push(
        &format!("{n} deletions -> last IN_DELETE (all read)"),
        zkfs,
        None,
        "native recursive watch",
        fmt_dur(native),
        last.filter(|_| got >= n).map(|d| ratio(d, native)),
        Target::AtMost(1.5),
    );
}

// ---------------------------------------------------------------------------
// Churn: CPU for 2,000 changes/s on cached nodes

const ROLE_WATCHER: &str = "ZKFS_SCALE_WATCHER";

/// The native reference process: a persistent recursive watch on the path in
/// `ZKFS_SCALE_WATCHER` (`CONNECT PATH`), re-reading each node whose data changed, as a
/// cache would. Prints `ready` once the watch is set; runs until killed.
fn native_watcher_process() {
    let arg = std::env::var(ROLE_WATCHER).unwrap_or_default();
    let (connect, path) = arg.split_once(' ').expect("ZKFS_SCALE_WATCHER=CONNECT PATH");
    let zk = Zk::connect(connect);
    zk.block_on(async {
        let client = zk.client();
        let mut w = client
            .watch(path, zk::AddWatchMode::PersistentRecursive)
            .await
            .unwrap_or_else(|e| panic!("watch {path}: {e}"));
        println!("ready");
        loop {
            let ev = w.changed().await;
            match ev.event_type {
                zk::EventType::NodeDataChanged => {
                    let _ = std::hint::black_box(client.get_data(&ev.path).await);
                }
                zk::EventType::Session if ev.session_state.is_terminated() => return,
                _ => {}
            }
        }
    });
}

fn churn(connect: &str, admin: &Zk, mount: &Mount, s: &Scale, rows: &mut Rows) {
    eprintln!("  churn...");
    let exe = std::env::current_exe().expect("own executable");
    let mut child = Command::new(exe)
        .env(ROLE_WATCHER, format!("{connect} /big"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the native watcher process");
    let stdout = child.stdout.take().expect("watcher stdout");
    let native = Reaped(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the watcher's ready line");
    assert_eq!(line.trim(), "ready", "the native watcher did not start");

    // The nodes changed: leaves whose properties.json was read (all of them were).
    let targets: Vec<String> = (0..s.fanout).flat_map(|d| (0..10.min(s.leaves)).map(move |l| leaf(d, l))).collect();
    let client = admin.client();
    let (zkfs0, native0) = (cpu_time(mount.pid()), cpu_time(native.0.id()));
    let t0 = Instant::now();
    let total = CHURN_RATE * s.churn_secs as usize;
    let per_tick = CHURN_RATE / 100;
    let mut sent = 0;
    let mut tick = 0u32;
    while sent < total {
        let batch: Vec<(String, Vec<u8>)> = (sent..(sent + per_tick).min(total))
            .map(|i| (targets[i % targets.len()].clone(), format!(r#"{{"leaf": {i}, "weight": 3}}"#).into_bytes()))
            .collect();
        admin.block_on(async {
            let futures: Vec<_> = batch.iter().map(|(p, d)| (p, client.set_data(p, d, None))).collect();
            for (p, f) in futures {
                f.await.unwrap_or_else(|e| panic!("set {p}: {e}"));
            }
        });
        sent += batch.len();
        tick += 1;
        let next = t0 + Duration::from_millis(10) * tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    let sending = t0.elapsed();
    // Both finish what the changes cost (a backlog included) before their CPU is read,
    // so that the next row starts on an idle mount: wait until zkfs uses < 2% of a core.
    let quiet_by = Instant::now() + Duration::from_secs(60);
    let mut last = cpu_time(mount.pid());
    loop {
        thread::sleep(Duration::from_millis(250));
        let now = cpu_time(mount.pid());
        if now - last < Duration::from_millis(5) || Instant::now() > quiet_by {
            break;
        }
        last = now;
    }
    let zkfs = cpu_time(mount.pid()) - zkfs0;
    let native_cpu = cpu_time(native.0.id()) - native0;
    drop(native);
    let rate = total as f64 / sending.as_secs_f64();
    // CPU time over the time the changes took to send: the share of a core they cost.
    let pct = |d: Duration| format!("{:.1}% of a core", 100.0 * d.as_secs_f64() / sending.as_secs_f64());
    rows.push(
        &format!("CPU for {total} changes at {rate:.0}/s on {} cached nodes", targets.len()),
        pct(zkfs),
        None,
        "native recursive watcher process",
        pct(native_cpu),
        Some(if native_cpu.is_zero() { f64::INFINITY } else { ratio(zkfs, native_cpu) }),
        Target::AtMost(2.0),
    );
}

// ---------------------------------------------------------------------------
// Registration throughput

/// What `touch FILE` does: open with O_CREAT, set the times to now, close.
fn touch(path: &Path) {
    // As touch(1) does: open without truncating, then set both times to "now".
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd =
        open(path, flags, Mode::from_bits_truncate(0o666)).unwrap_or_else(|e| panic!("touch {}: {e}", path.display()));
    futimens(&fd, &TimeSpec::UTIME_NOW, &TimeSpec::UTIME_NOW)
        .unwrap_or_else(|e| panic!("futimens {}: {e}", path.display()));
}

fn registrations(server: &ZkServer, admin: &Zk, mount: &Mount, s: &Scale, rows: &mut Rows) {
    eprintln!("  registrations...");
    let client = admin.client();
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    for w in WRITERS {
        let per = s.registrations / w;
        let total = per * w;
        let name = |t: usize, i: usize| format!("10.3.{t}.{}:{}", i % 250 + 1, 9000 + i);
        let dir = mount.join(format!("/reg/zkfs-{w}"));
        fs::read_dir(&dir).expect("list the registration directory").for_each(drop);
        let (zkfs, req, ()) = counted(server, || {
            let barrier = Barrier::new(w);
            thread::scope(|scope| {
                for t in 0..w {
                    let (dir, barrier, name) = (&dir, &barrier, &name);
                    scope.spawn(move || {
                        barrier.wait();
                        for i in 0..per {
                            touch(&dir.join(name(t, i)));
                        }
                    });
                }
            });
        });
        let native = {
            let barrier = Barrier::new(w);
            let t = Instant::now();
            thread::scope(|scope| {
                for t in 0..w {
                    let (barrier, name, ephemeral) = (&barrier, &name, &ephemeral);
                    scope.spawn(move || {
                        barrier.wait();
                        for i in 0..per {
                            let p = format!("/reg/native-{w}/{}", name(t, i));
                            admin
                                .block_on(client.create(&p, br#"{"pid": 1}"#, ephemeral))
                                .unwrap_or_else(|e| panic!("create {p}: {e}"));
                        }
                    });
                }
            });
            t.elapsed()
        };
        let (zr, nr) = (total as f64 / zkfs.as_secs_f64(), total as f64 / native.as_secs_f64());
        rows.push(
            &format!("registrations/s, {w} writers `touch`ing ({total})"),
            format!("{zr:.0}/s"),
            Some(req),
            &format!("{w} threads of sync creates"),
            format!("{nr:.0}/s"),
            Some(zr / nr),
            if w == 8 { Target::AtLeast(0.5) } else { Target::Info },
        );
        if w == SPREAD {
            // The same writers, each in a directory of its own: the kernel holds a
            // directory's lock through each create, so this row against the one above
            // shows what that lock costs.
            let per = s.registrations / w;
            let (spread, req, ()) = counted(server, || {
                let barrier = Barrier::new(w);
                thread::scope(|scope| {
                    for t in 0..w {
                        let (barrier, name) = (&barrier, &name);
                        let dir = mount.join(format!("/reg/spread/d{t}"));
                        scope.spawn(move || {
                            barrier.wait();
                            for i in 0..per {
                                touch(&dir.join(name(t, i)));
                            }
                        });
                    }
                });
            });
            let sr = (per * w) as f64 / spread.as_secs_f64();
            rows.push(
                &format!("registrations/s, {w} writers `touch`ing, each in its own directory"),
                format!("{sr:.0}/s"),
                Some(req),
                &format!("{w} threads of sync creates"),
                format!("{nr:.0}/s"),
                Some(sr / nr),
                Target::Info,
            );
        }
    }
}

// ---------------------------------------------------------------------------
