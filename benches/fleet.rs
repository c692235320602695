//! A fleet of mounts against one server (issue 26, item 3): what each mounting host
//! costs ZooKeeper per change, beside hosts running a well-written native client that
//! watches only what it looks at, measured in the same run.
//!
//! One throw-away server holds `SERVICES` services, `/svc-S` (its data: the service's
//! `properties.json`) with `/svc-S/providers` holding `PROVIDERS` registrations
//! (ephemeral nodes of the bench's writer session). For each fleet size H (1, 4, 8,
//! 16, 32) three phases run one after another, each with the same changes:
//!
//! * **base**: no consumers, only the writer: what the changes cost by themselves;
//! * **zkfs**: H real mounts (`zkfs -f`), host h interested in service h: it lists
//!   `svc-h/providers` (`ls -l`: readdir and an lstat of each entry), reads
//!   `svc-h/properties.json` and keeps inotify watches on `svc-h/` and
//!   `svc-h/providers/` (one inotify reader in this process for all hosts);
//! * **native**: H sessions of the `zookeeper-client` crate in one child process (this
//!   executable again), host h watching service h as kazoo's `ChildrenWatch` and
//!   `DataWatch` do: one-shot watches re-armed after each event — children of
//!   `/svc-h/providers`, data of `/svc-h` and of each provider (a provider's data watch
//!   ends with its node, as a `DataWatch` whose callback returns False on deletion).
//!
//! In each phase, once the consumers have settled: an idle window (`IDLE`) gives the
//! background rates (pings, the JVM's own work), then the writer makes `CHANGES`
//! changes at `RATE`/s spread over all services (data sets of providers and of
//! services, registrations created and deleted), and the window lasts until every
//! host has had all the changes to its own service, plus a second of quiet; `REPEATS`
//! such windows, each figure their median. Then a window of `FOREIGN` changes touches
//! only services no host looks at.
//!
//! Per change per host: packets the server sent (`mntr` `zk_packets_sent`), server
//! CPU (the JVM's), host CPU (the zkfs processes'; the native process's), each minus its idle rate over the window's length and (server figures)
//! minus the base phase's; watches per host (`mntr` `zk_watch_count` / H, settled,
//! before the changes); events delivered / expected for each host's own service
//! (inotify `IN_CREATE`/`IN_DELETE`/`IN_MODIFY` for zkfs; for the native hosts, names
//! added and removed in each re-read child list and data versions advanced). Targets
//! of the issue beside each row, with met / not met.
//!
//! CPU is each thread's run time in /proc/PID/task/*/schedstat (nanoseconds; the
//! utime+stime of /proc/PID/stat come in 10 ms ticks, more than a native host spends
//! in a window). The JVM is warmed up first (the changes three times over), so that
//! the first phase does not pay for its JIT. Both kinds of host ask for the same
//! session timeout (60 s), so that both ping alike and rarely; a host busy in a window
//! does not ping in it, which makes the idle subtraction take up to ~0.002 packets per
//! change per host too many from the native row (the zkfs hosts of a recursive watch
//! receive but send nothing, and keep pinging).
//!
//! Run with `scripts/bench fleet [H,H,...]` (default 1,4,8,16,32, ~7 minutes here);
//! `ZKFS_BENCH_FLEET=small` runs 1,4; `ZKFS_BENCH_FLEET=1,4,8` picks sizes too.
//! `ZKFS_FLEET_CHANGES=N` and `ZKFS_FLEET_RATE=N` change the writer's changes and
//! changes per second. Every process and mount it starts is stopped by `Drop`, also
//! when it panics.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{four_letter, Mount, Zk, ZkServer};
use support::{environment, print_table, InotifyThread, Reaped};
use zookeeper_client as zk;

const SERVICES: usize = 40;
const PROVIDERS: usize = 5;
/// Changes per window: a multiple of 4 x SERVICES, so that every registration a window
/// creates it also deletes, and the windows repeat on the same tree.
const CHANGES: usize = 320;
/// Windows of CHANGES per phase; each figure is the median over them.
const REPEATS: usize = 3;
const FOREIGN: usize = 100;
/// Changes per second the writer makes.
const RATE: f64 = 100.0;
/// The idle window that gives each phase's background rates: one ping interval of a
/// 60 s session (the client pings after 3/8 of 2/5 of the timeout without a send), so
/// that it holds one ping per session whenever it starts.
const IDLE: Duration = Duration::from_secs(9);
const SESSION_TIMEOUT_S: u64 = 60;
/// How long the hosts may take to hear every change to their own service.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// Quiet after the last expected event, inside the window.
const TAIL: Duration = Duration::from_secs(1);
const SIZES: [usize; 5] = [1, 4, 8, 16, 32];
const ROLE_NATIVE: &str = "ZKFS_FLEET_NATIVE";

const RERUN: &str = "scripts/bench fleet [H,H,...]   (ZKFS_BENCH_FLEET=small: 1,4)";

fn main() {
    if let Ok(arg) = std::env::var(ROLE_NATIVE) {
        return native_process(&arg);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    let sizes = sizes();
    let changes = env_number("ZKFS_FLEET_CHANGES", CHANGES);
    let rate = env_number("ZKFS_FLEET_RATE", RATE as usize) as f64;
    let server = ZkServer::start();
    let connect = server.connect_string();
    let writer = Zk::connect_with_timeout(&connect, Duration::from_secs(SESSION_TIMEOUT_S));
    build_tree(&writer);
    let server_cpu = CpuMeter::new(vec![server.pid().expect("server runs")]);
    let fleet = Fleet { server: &server, server_cpu, writer: &writer, changes, rate };
    eprintln!("warming up the server...");
    fleet.warm_up();
    println!("fleet: {SERVICES} services x {PROVIDERS} registrations; host h looks at service h;");
    println!(
        "  {REPEATS} windows of {changes} changes at {rate:.0}/s spread over all services, then {FOREIGN} to services \
         no host looks at"
    );
    println!("  {}", environment(&server));
    println!("  rerun: {RERUN}");
    let mut summary = Vec::new();
    for &h in &sizes {
        assert!(h < SERVICES, "H = {h}: at most {} hosts (one service each, one left over)", SERVICES - 1);
        println!();
        eprintln!("H = {h}: base...");
        let base = fleet.phase(Consumers::None, h);
        eprintln!("H = {h}: zkfs...");
        let zkfs = fleet.phase(Consumers::Zkfs, h);
        eprintln!("H = {h}: native...");
        let native = fleet.phase(Consumers::Native, h);
        summary.push(report(h, changes, &base, &zkfs, &native));
    }
    println!();
    println!("summary, per change per host (zkfs / native = ratio):");
    let mut rows = vec![vec![
        "H".to_string(),
        "server packets".into(),
        "server CPU".into(),
        "host CPU".into(),
        "watches/host".into(),
        "own events".into(),
        "foreign: host CPU".into(),
    ]];
    rows.extend(summary);
    print_table(&rows, 1, &[]);
    drop(writer);
}

/// The fleet sizes: arguments (`1,4,8` or `1 4 8`), else `ZKFS_BENCH_FLEET` (`small`,
/// `full` or a list), else all of [`SIZES`].
fn sizes() -> Vec<usize> {
    let parse = |s: &str| -> Vec<usize> {
        s.split([',', ' ']).filter(|p| !p.is_empty()).map(|p| p.parse().unwrap_or_else(|_| usage(s))).collect()
    };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !args.is_empty() {
        return parse(&args.join(","));
    }
    match std::env::var("ZKFS_BENCH_FLEET").as_deref() {
        Ok("small") => vec![1, 4],
        Ok("full") | Ok("") | Err(_) => SIZES.to_vec(),
        Ok(list) => parse(list),
    }
}

fn usage(what: &str) -> ! {
    eprintln!("fleet: {what:?}: expected fleet sizes like 1,4,8 (or ZKFS_BENCH_FLEET=small)");
    std::process::exit(2);
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| usage(&format!("{name}={v}"))),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------
// The tree and the changes

fn service(s: usize) -> String {
    format!("/svc-{s}")
}

fn provider_name(s: usize, p: usize) -> String {
    format!("10.0.{s}.{p}:8080")
}

/// The registrations a change creates (and a later one deletes): `10.9.*` in the
/// windows over all services, `10.8.*` in the foreign window, so that neither meets
/// what the other left.
fn extra_name(foreign: bool, s: usize, round: usize) -> String {
    format!("10.{}.{s}.{round}:8080", if foreign { 8 } else { 9 })
}

fn build_tree(writer: &Zk) {
    for s in 0..SERVICES {
        writer.create(&service(s), format!(r#"{{"service":{s},"threads":2}}"#).as_bytes());
        writer.create(&format!("{}/providers", service(s)), b"");
        for p in 0..PROVIDERS {
            writer.create_ephemeral(&format!("{}/providers/{}", service(s), provider_name(s, p)), b"{}");
        }
    }
}

/// What a host's consumer reports of one change to its service: created, deleted or
/// modified, and the entry's name (`properties.json` for the service's own data).
type Key = (char, String);

enum Op {
    Set(Vec<u8>),
    Create,
    Delete,
}

struct Change {
    service: usize,
    path: String,
    op: Op,
    key: Key,
}

/// `count` changes spread round-robin over `services`; round r of a service sets a
/// provider's data (r % 4 == 0), creates a registration (1), sets the service's data
/// (2), deletes the registration of round r - 2 (3). `tag` makes data unique;
/// `foreign` names the registrations apart (see [`extra_name`]).
fn plan(services: &[usize], count: usize, tag: usize, foreign: bool) -> Vec<Change> {
    (0..count)
        .map(|k| {
            let (s, r) = (services[k % services.len()], k / services.len());
            let providers = format!("{}/providers", service(s));
            let data = format!(r#"{{"weight":{tag},"change":{k}}}"#).into_bytes();
            match r % 4 {
                0 => {
                    let name = provider_name(s, (r / 4) % PROVIDERS);
                    Change { service: s, path: format!("{providers}/{name}"), op: Op::Set(data), key: ('m', name) }
                }
                1 => {
                    let name = extra_name(foreign, s, r);
                    Change { service: s, path: format!("{providers}/{name}"), op: Op::Create, key: ('c', name) }
                }
                2 => Change { service: s, path: service(s), op: Op::Set(data), key: ('m', "properties.json".into()) },
                _ => {
                    let name = extra_name(foreign, s, r - 2);
                    Change { service: s, path: format!("{providers}/{name}"), op: Op::Delete, key: ('d', name) }
                }
            }
        })
        .collect()
}

/// Makes the changes at `rate` per second, each acknowledged before the next.
fn apply(writer: &Zk, changes: &[Change], rate: f64) {
    let t0 = Instant::now();
    for (i, c) in changes.iter().enumerate() {
        match &c.op {
            Op::Set(data) => writer.set(&c.path, data),
            Op::Create => writer.create_ephemeral(&c.path, b"{}"),
            Op::Delete => writer.delete(&c.path),
        }
        let next = t0 + Duration::from_secs_f64((i + 1) as f64 / rate);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
}

/// Deletes the registrations changes created and left, so that every phase starts
/// from the same tree.
fn restore(writer: &Zk) {
    for s in 0..SERVICES {
        let providers = format!("{}/providers", service(s));
        for name in writer.children(&providers) {
            if name.starts_with("10.9.") || name.starts_with("10.8.") {
                let _ = writer.try_delete(&format!("{providers}/{name}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// CPU time

/// CPU time of a set of processes in nanoseconds, from each thread's
/// `/proc/PID/task/TID/schedstat` (utime+stime of /proc/PID/stat counts in 10 ms ticks,
/// too coarse for a native host's few milliseconds). A thread that exits keeps the
/// time it had when last sampled: a sampler thread reads every thread every 0.5 s.
struct CpuMeter {
    /// Each thread's run time when last read. Locked for one sampling pass or one read
    /// of the sum; no other lock is taken while held.
    seen: Arc<Mutex<HashMap<(u32, u32), u64>>>,
    pids: Arc<Vec<u32>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    sampler: Option<thread::JoinHandle<()>>,
}

impl CpuMeter {
    fn new(pids: Vec<u32>) -> CpuMeter {
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let pids = Arc::new(pids);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen2, pids2, stop2) = (Arc::clone(&seen), Arc::clone(&pids), Arc::clone(&stop));
        let sampler = thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                sample(&seen2, &pids2);
                thread::sleep(Duration::from_millis(500));
            }
        });
        let meter = CpuMeter { seen, pids, stop, sampler: Some(sampler) };
        meter.total();
        meter
    }

    /// The CPU time so far (of every thread seen since the meter started).
    fn total(&self) -> Duration {
        Duration::from_nanos(sample(&self.seen, &self.pids))
    }
}

impl Drop for CpuMeter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.sampler.take() {
            let _ = t.join();
        }
    }
}

/// Reads every thread's run time into `seen`; returns the sum.
fn sample(seen: &Mutex<HashMap<(u32, u32), u64>>, pids: &[u32]) -> u64 {
    let mut seen = seen.lock().unwrap();
    for &pid in pids {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
            let ns = fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            if let Some(ns) = ns {
                let e = seen.entry((pid, tid)).or_default();
                *e = (*e).max(ns);
            }
        }
    }
    seen.values().sum()
}

// ---------------------------------------------------------------------------
// The server's counters

struct Mntr {
    packets_sent: u64,
    watches: u64,
}

fn mntr(port: u16) -> Mntr {
    let text = four_letter(port, "mntr").expect("mntr answers (4lw.commands.whitelist)");
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("mntr has no {name}:\n{text}"))
    };
    Mntr { packets_sent: field("zk_packets_sent"), watches: field("zk_watch_count") }
}

// ---------------------------------------------------------------------------
// Phases

#[derive(Clone, Copy, PartialEq)]
enum Consumers {
    None,
    Zkfs,
    Native,
}

/// What the consumers' hosts heard of their own service: (host, key) → count.
/// Its lock protects the map only; it is held for one insert or one read, never
/// while another lock is taken.
type Heard = Arc<Mutex<HashMap<(usize, Key), usize>>>;

/// The consumers of one phase: what keeps them alive, and their processes.
struct Running {
    _mounts: Vec<Mount>,
    _inotify: Option<InotifyThread>,
    _native: Option<NativeProcess>,
    cpu: CpuMeter,
    heard: Heard,
}

impl Running {
    fn host_cpu(&self) -> Duration {
        self.cpu.total()
    }
}

/// Totals over one window.
#[derive(Default, Clone, Copy)]
struct Window {
    secs: f64,
    packets: f64,
    server_cpu: f64,
    host_cpu: f64,
}

impl Window {
    /// Each figure's median over `windows`.
    fn median(windows: &[Window]) -> Window {
        let m = |f: fn(&Window) -> f64| {
            let mut v: Vec<f64> = windows.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Window {
            secs: m(|w| w.secs),
            packets: m(|w| w.packets),
            server_cpu: m(|w| w.server_cpu),
            host_cpu: m(|w| w.host_cpu),
        }
    }

    /// The window minus `idle`'s rates over its length.
    fn net(self, idle: Window) -> Window {
        let k = self.secs / idle.secs;
        Window {
            secs: self.secs,
            packets: self.packets - k * idle.packets,
            server_cpu: self.server_cpu - k * idle.server_cpu,
            host_cpu: self.host_cpu - k * idle.host_cpu,
        }
    }
}

struct Phase {
    /// The changes spread over all services, net of the idle rates: each figure's
    /// median over the REPEATS windows.
    main: Window,
    /// The spread (largest - smallest) of the server's CPU over those windows, in s.
    server_spread: f64,
    /// The changes to services no host looks at, net of the idle rates.
    foreign: Window,
    /// zk_watch_count once settled.
    watches: u64,
    /// Own-service changes heard / expected, summed over hosts and windows; and the
    /// worst host's share in any window.
    delivered: usize,
    expected: usize,
    worst_host: f64,
}

struct Fleet<'a> {
    server: &'a ZkServer,
    server_cpu: CpuMeter,
    writer: &'a Zk,
    changes: usize,
    rate: f64,
}

impl Fleet<'_> {
    fn snapshot(&self, running: Option<&Running>) -> (Instant, u64, Duration, Duration) {
        let host = running.map_or(Duration::ZERO, Running::host_cpu);
        (Instant::now(), mntr(self.server.port()).packets_sent, self.server_cpu.total(), host)
    }

    fn window_since(&self, start: (Instant, u64, Duration, Duration), running: Option<&Running>) -> Window {
        let end = self.snapshot(running);
        Window {
            secs: (end.0 - start.0).as_secs_f64(),
            packets: end.1.saturating_sub(start.1) as f64,
            server_cpu: (end.2 - start.2).as_secs_f64(),
            host_cpu: end.3.saturating_sub(start.3).as_secs_f64(),
        }
    }

    fn phase(&self, consumers: Consumers, h: usize) -> Phase {
        let connect = self.server.connect_string();
        let running = match consumers {
            Consumers::None => None,
            Consumers::Zkfs => Some(start_zkfs(&connect, h)),
            Consumers::Native => Some(start_native(&connect, h)),
        };
        self.settle(running.as_ref());
        let watches = mntr(self.server.port()).watches;

        let start = self.snapshot(running.as_ref());
        thread::sleep(IDLE);
        let idle = self.window_since(start, running.as_ref());

        // The changes over all services, REPEATS times; each host waits for its own
        // service's.
        let all: Vec<usize> = (0..SERVICES).collect();
        let changes = plan(&all, self.changes, h, false);
        let mut expected: HashMap<(usize, Key), usize> = HashMap::new();
        for c in changes.iter().filter(|c| c.service < h) {
            *expected.entry((c.service, c.key.clone())).or_default() += 1;
        }
        let (mut main, mut heard, mut worst_host) = (Vec::new(), 0, 1.0f64);
        for _ in 0..REPEATS {
            if let Some(r) = &running {
                r.heard.lock().unwrap().clear();
            }
            let start = self.snapshot(running.as_ref());
            apply(self.writer, &changes, self.rate);
            let mut last = Instant::now();
            if let Some(r) = &running {
                let deadline = Instant::now() + DELIVERY_TIMEOUT;
                while delivered(&r.heard, &expected) < expected.values().sum::<usize>() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                }
                last = Instant::now();
            }
            if let Some(wait) = (last + TAIL).checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            main.push(self.window_since(start, running.as_ref()).net(idle));
            if let Some(r) = &running {
                let (got, per_host) = delivered_per_host(&r.heard, &expected, h);
                heard += got;
                worst_host = per_host.into_iter().fold(worst_host, f64::min);
            }
            // With a count of changes that is not a multiple of 4 x SERVICES, some
            // registrations created are left: remove them (outside the window).
            if !self.changes.is_multiple_of(4 * SERVICES) {
                restore(self.writer);
                thread::sleep(TAIL);
            }
        }

        // Changes to services nobody looks at.
        let foreign_services: Vec<usize> = (h..SERVICES).collect();
        let changes = plan(&foreign_services, FOREIGN, h + 1000, true);
        let start = self.snapshot(running.as_ref());
        apply(self.writer, &changes, self.rate);
        thread::sleep(TAIL);
        let foreign = self.window_since(start, running.as_ref()).net(idle);

        drop(running);
        restore(self.writer);
        let expected_total = REPEATS * expected.values().sum::<usize>();
        let cpu = main.iter().map(|w| w.server_cpu);
        let server_spread = cpu.clone().fold(f64::MIN, f64::max) - cpu.fold(f64::MAX, f64::min);
        Phase {
            main: Window::median(&main),
            server_spread,
            foreign,
            watches,
            delivered: heard,
            expected: expected_total,
            worst_host,
        }
    }
}

/// Σ min(heard, expected) over the expected keys.
fn delivered(heard: &Heard, expected: &HashMap<(usize, Key), usize>) -> usize {
    let heard = heard.lock().unwrap();
    expected.iter().map(|(k, &n)| heard.get(k).copied().unwrap_or(0).min(n)).sum()
}

/// [`delivered`]'s sum, and each host's share of its own expected events.
fn delivered_per_host(heard: &Heard, expected: &HashMap<(usize, Key), usize>, h: usize) -> (usize, Vec<f64>) {
    let heard = heard.lock().unwrap();
    let mut got = vec![0usize; h];
    let mut want = vec![0usize; h];
    for (k, &n) in expected {
        got[k.0] += heard.get(k).copied().unwrap_or(0).min(n);
        want[k.0] += n;
    }
    let share = got.iter().zip(&want).map(|(&g, &w)| if w == 0 { 1.0 } else { g as f64 / w as f64 }).collect();
    (got.iter().sum(), share)
}

impl Fleet<'_> {
    /// Waits until the server and the consumers are quiet: their CPU grows by less
    /// than 20 ms over 1 s, at most 60 s.
    fn settle(&self, running: Option<&Running>) {
        thread::sleep(Duration::from_secs(1));
        let deadline = Instant::now() + Duration::from_secs(60);
        let cpu = || self.server_cpu.total() + running.map_or(Duration::ZERO, Running::host_cpu);
        let mut last = cpu();
        while Instant::now() < deadline {
            thread::sleep(Duration::from_secs(1));
            let now = cpu();
            if now - last < Duration::from_millis(20) {
                return;
            }
            last = now;
        }
    }

    /// Warms the JVM up before anything is measured (the first phase would pay for
    /// its JIT): the changes three times over, unpaced, heard by native hosts with
    /// one-shot watches and by a recursive watch on `/` (what zkfs holds today).
    fn warm_up(&self) {
        let connect = self.server.connect_string();
        let native = start_native(&connect, 4);
        let (tx, rx) = std::sync::mpsc::channel();
        let recursive = support::NativeWatcher::start(&connect, &[("/", zk::AddWatchMode::PersistentRecursive)], tx);
        let all: Vec<usize> = (0..SERVICES).collect();
        for round in 0..3 {
            apply(self.writer, &plan(&all, self.changes, 2000 + round, false), f64::INFINITY);
            restore(self.writer);
        }
        thread::sleep(TAIL);
        drop(recursive);
        drop(rx);
        drop(native);
    }
}

// ---------------------------------------------------------------------------
// zkfs hosts

fn start_zkfs(connect: &str, h: usize) -> Running {
    let heard: Heard = Arc::default();
    let opts = format!("session_timeout={SESSION_TIMEOUT_S}");
    let mounts: Vec<Mount> = (0..h).map(|_| Mount::with_options(connect, &opts)).collect();
    let mut watches = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let svc = m.join(format!("svc-{i}"));
        let providers = svc.join("providers");
        // ls -l: the listing and an lstat of each entry.
        let entries = fs::read_dir(&providers).unwrap_or_else(|e| panic!("ls {}: {e}", providers.display()));
        let mut n = 0;
        for entry in entries {
            let entry = entry.expect("readdir entry");
            fs::symlink_metadata(entry.path()).unwrap_or_else(|e| panic!("lstat {}: {e}", entry.path().display()));
            n += 1;
        }
        assert_eq!(n, PROVIDERS + 1, "{}: the providers and properties.json", providers.display());
        support::read(&svc.join("properties.json"));
        let mask = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MODIFY;
        watches.push((format!("{i} svc"), svc, mask));
        watches.push((format!("{i} providers"), providers, mask));
    }
    let labelled: Vec<(&str, std::path::PathBuf, u32)> =
        watches.iter().map(|(l, p, m)| (l.as_str(), p.clone(), *m)).collect();
    let heard2 = Arc::clone(&heard);
    let inotify = InotifyThread::start(&labelled, move |events| {
        let mut heard = heard2.lock().unwrap();
        for ev in events {
            let Some((host, dir)) = ev.watched.split_once(' ') else { continue };
            let host: usize = host.parse().expect("label");
            let kind = if ev.mask & libc::IN_CREATE != 0 {
                'c'
            } else if ev.mask & libc::IN_DELETE != 0 {
                'd'
            } else if ev.mask & libc::IN_MODIFY != 0 {
                'm'
            } else {
                continue;
            };
            // The service's data is svc/properties.json; providers/properties.json
            // (the providers node's own data) never changes here.
            if dir == "svc" && ev.name != "properties.json" {
                continue;
            }
            *heard.entry((host, (kind, ev.name))).or_default() += 1;
        }
    });
    let cpu = CpuMeter::new(mounts.iter().map(Mount::pid).collect());
    Running { _mounts: mounts, _inotify: Some(inotify), _native: None, cpu, heard }
}

// ---------------------------------------------------------------------------
// Native hosts

/// The child process running the native hosts; closing its stdin ends it (its
/// sessions closed), and `Reaped` kills it if it does not end.
struct NativeProcess {
    stdin: Option<ChildStdin>,
    child: Reaped,
    reader: Option<thread::JoinHandle<()>>,
}

impl Drop for NativeProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.0.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Reaped's drop kills it if it is still running.
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn start_native(connect: &str, h: usize) -> Running {
    let heard: Heard = Arc::default();
    let exe = std::env::current_exe().expect("own executable");
    let mut child = Command::new(exe)
        .env(ROLE_NATIVE, format!("{connect} {h}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the native hosts' process");
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("native stdout");
    let pid = child.id();
    let child = Reaped(child);
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(l)) if l == "ready" => {}
        other => panic!("the native hosts did not start: {other:?}"),
    }
    let heard2 = Arc::clone(&heard);
    // Lines `HOST KIND COUNT NAME`, one per change a host learned of.
    let reader = thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut f = line.splitn(4, ' ');
            let (Some(host), Some(kind), Some(n), Some(name)) = (f.next(), f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Ok(host), Some(kind), Ok(n)) = (host.parse(), kind.chars().next(), n.parse::<usize>()) else {
                continue;
            };
            *heard2.lock().unwrap().entry((host, (kind, name.to_string()))).or_default() += n;
        }
    });
    let native = NativeProcess { stdin, child, reader: Some(reader) };
    Running { _mounts: vec![], _inotify: None, _native: Some(native), cpu: CpuMeter::new(vec![pid]), heard }
}

/// Emits one line of what host `h` learned: `count` changes of `kind` to `name`.
fn emit(h: usize, kind: char, count: i64, name: &str) {
    if count > 0 {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{h} {kind} {count} {name}");
        let _ = out.flush();
    }
}

/// The native hosts' process: `ZKFS_FLEET_NATIVE=CONNECT H`. Prints `ready` once
/// every host's watches are set, then a line per change learned; ends when stdin
/// closes.
fn native_process(arg: &str) {
    let (connect, h) = arg.split_once(' ').expect("ZKFS_FLEET_NATIVE=CONNECT H");
    let h: usize = h.parse().expect("H");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let clients = rt.block_on(async {
        let mut clients = Vec::new();
        for host in 0..h {
            let client = zk::Client::connector()
                .with_session_timeout(Duration::from_secs(SESSION_TIMEOUT_S))
                .connect(connect)
                .await
                .unwrap_or_else(|e| panic!("connect {connect}: {e}"));
            watch_service(client.clone(), host).await;
            clients.push(client);
        }
        clients
    });
    println!("ready");
    // Until the bench closes stdin.
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    rt.block_on(async {
        let mut watchers: Vec<_> = clients.iter().map(zk::Client::state_watcher).collect();
        drop(clients);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            for w in &mut watchers {
                while !w.peek_state().is_terminated() {
                    w.changed().await;
                }
            }
        })
        .await;
    });
}

/// Sets host `host`'s watches on its service (returning once they are in place) and
/// spawns the tasks that re-arm them.
async fn watch_service(client: zk::Client, host: usize) {
    let svc = service(host);
    // DataWatch on the service's data.
    let (_, stat, w) = client.get_and_watch_data(&svc).await.unwrap_or_else(|e| panic!("get {svc}: {e}"));
    tokio::spawn(data_watch(client.clone(), host, svc.clone(), "properties.json".into(), stat.version, w));
    // ChildrenWatch on its providers, with a DataWatch on each.
    let providers = format!("{svc}/providers");
    let (children, _, w) =
        client.get_and_watch_children(&providers).await.unwrap_or_else(|e| panic!("children {providers}: {e}"));
    for name in &children {
        start_provider_watch(&client, host, &providers, name).await;
    }
    tokio::spawn(children_watch(client, host, providers, children.into_iter().collect(), w));
}

async fn start_provider_watch(client: &zk::Client, host: usize, providers: &str, name: &str) {
    let path = format!("{providers}/{name}");
    if let Ok((_, stat, w)) = client.get_and_watch_data(&path).await {
        tokio::spawn(data_watch(client.clone(), host, path, name.to_string(), stat.version, w));
    }
}

/// Whether a watch event ends the watching: the session is gone.
fn session_over(ev: &zk::WatchedEvent) -> bool {
    ev.event_type == zk::EventType::Session && ev.session_state.is_terminated()
}

/// kazoo's DataWatch: on each event, re-read the data with a new watch; report the
/// versions it advanced by. Ends when the node is gone.
async fn data_watch(
    client: zk::Client,
    host: usize,
    path: String,
    name: String,
    mut version: i32,
    w: zk::OneshotWatcher,
) {
    let mut w = w;
    loop {
        let ev = w.changed().await;
        if session_over(&ev) || ev.event_type == zk::EventType::NodeDeleted {
            return;
        }
        match client.get_and_watch_data(&path).await {
            Ok((_, stat, next)) => {
                emit(host, 'm', i64::from(stat.version - version), &name);
                version = stat.version;
                w = next;
            }
            Err(_) => return,
        }
    }
}

/// kazoo's ChildrenWatch: on each event, re-list with a new watch; report the names
/// added and removed, and start a DataWatch on each new one.
async fn children_watch(
    client: zk::Client,
    host: usize,
    path: String,
    mut known: BTreeSet<String>,
    w: zk::OneshotWatcher,
) {
    let mut w = w;
    loop {
        let ev = w.changed().await;
        if session_over(&ev) || ev.event_type == zk::EventType::NodeDeleted {
            return;
        }
        let Ok((children, _, next)) = client.get_and_watch_children(&path).await else { return };
        let now: BTreeSet<String> = children.into_iter().collect();
        for gone in known.difference(&now) {
            emit(host, 'd', 1, gone);
        }
        for new in now.difference(&known) {
            emit(host, 'c', 1, new);
            start_provider_watch(&client, host, &path, new).await;
        }
        known = now;
        w = next;
    }
}

// ---------------------------------------------------------------------------
// The report

fn per(x: f64, n: usize) -> f64 {
    x / n as f64
}

fn fmt_us(secs: f64) -> String {
    let us = secs * 1e6;
    if us.abs() < 10.0 {
        format!("{us:.2} µs")
    } else {
        format!("{us:.0} µs")
    }
}

/// `a / b`, or what it means when `b` is at the noise level `eps` or below (a
/// native figure of ~0, a zkfs figure that is not).
fn fmt_ratio(a: f64, b: f64, eps: f64) -> String {
    if b <= eps {
        if a <= eps {
            "both ≈ 0".into()
        } else {
            "native ≈ 0".into()
        }
    } else {
        format!("{:.2}x", a / b)
    }
}

fn met(ok: bool) -> String {
    if ok { "met" } else { "NOT MET" }.into()
}

/// Prints one fleet size's table; returns its summary row.
fn report(h: usize, changes: usize, base: &Phase, zkfs: &Phase, native: &Phase) -> Vec<String> {
    let n = changes * h;
    let nf = FOREIGN * h;
    // Server figures: minus what the changes cost with no consumer.
    let packets = |p: &Phase| per(p.main.packets - base.main.packets, n);
    let server = |p: &Phase| per(p.main.server_cpu - base.main.server_cpu, n);
    let host = |p: &Phase| per(p.main.host_cpu, n);
    let watches = |p: &Phase| (p.watches.saturating_sub(base.watches)) as f64 / h as f64;
    let f_packets = |p: &Phase| per(p.foreign.packets - base.foreign.packets, nf);
    let f_host = |p: &Phase| per(p.foreign.host_cpu, nf);
    // What the kernel holds per host: the root, svc-h, svc-h/providers and its
    // registrations (each properties.json is its node's data). zk_watch_count counts
    // a persistent watch, recursive or not, twice (the server's data and child watch
    // tables; zkCli on 3.8.0), a one-shot watch once: one persistent watch per held
    // node is 2x, hence the range.
    let held = (3 + PROVIDERS) as f64;
    let events = |p: &Phase| format!("{}/{} ({:.0}% worst host)", p.delivered, p.expected, 100.0 * p.worst_host);
    let ratio_ok = |a: f64, b: f64, t: f64| a <= t * b.max(0.0) || a <= 0.0;

    println!(
        "H = {h}: {changes} changes over {SERVICES} services ({} to the hosts' own services), per change per host \
         (medians of {REPEATS} windows):",
        zkfs.expected / REPEATS
    );
    let mut rows =
        vec![vec!["".to_string(), "zkfs".into(), "native".into(), "zkfs/native".into(), "target".into(), "".into()]];
    let (zp, np) = (packets(zkfs), packets(native));
    rows.push(vec![
        "server packets sent".into(),
        format!("{zp:.4}"),
        format!("{np:.4}"),
        fmt_ratio(zp, np, 1e-3),
        "≤ 1.2x native".into(),
        met(ratio_ok(zp, np, 1.2)),
    ]);
    let (zs, ns) = (server(zkfs), server(native));
    // The JVM's CPU varies from window to window by more than a small fleet adds: a
    // verdict whose margin is within the largest spread of the three phases' windows
    // says so.
    let noise = base.server_spread.max(zkfs.server_spread).max(native.server_spread);
    let margin = (zs - 1.2 * ns).abs() * n as f64;
    let verdict = met(ratio_ok(zs, ns, 1.2)) + if margin < noise { " (within noise)" } else { "" };
    rows.push(vec![
        "server CPU".into(),
        fmt_us(zs),
        fmt_us(ns),
        fmt_ratio(zs, ns, 0.5e-6),
        "≤ 1.2x native".into(),
        verdict,
    ]);
    let (zh, nh) = (host(zkfs), host(native));
    rows.push(vec!["host CPU".into(), fmt_us(zh), fmt_us(nh), fmt_ratio(zh, nh, 0.5e-6), "".into(), "".into()]);
    let (zw, nw) = (watches(zkfs), watches(native));
    rows.push(vec![
        "watches per host".into(),
        format!("{zw:.1}"),
        format!("{nw:.1}"),
        fmt_ratio(zw, nw, 0.05),
        format!("≈ {held:.0} held nodes (0.5-2.5x; persistent = 2)"),
        met(zw >= 0.5 * held && zw <= 2.5 * held),
    ]);
    rows.push(vec![
        "own-service events".into(),
        events(zkfs),
        events(native),
        "".into(),
        "100%".into(),
        met(zkfs.delivered == zkfs.expected),
    ]);
    let (zfp, nfp) = (f_packets(zkfs), f_packets(native));
    rows.push(vec![
        format!("foreign ({FOREIGN}): server packets"),
        format!("{zfp:.4}"),
        format!("{nfp:.4}"),
        fmt_ratio(zfp, nfp, 1e-3),
        "".into(),
        "".into(),
    ]);
    let (zfh, nfh) = (f_host(zkfs), f_host(native));
    rows.push(vec![
        format!("foreign ({FOREIGN}): host CPU"),
        fmt_us(zfh),
        fmt_us(nfh),
        fmt_ratio(zfh, nfh, 0.5e-6),
        "≈ 0 (≤ 5 µs)".into(),
        met(zfh <= 5e-6),
    ]);
    print_table(&rows, 1, &[4, 5]);
    println!(
        "  median window (net of idle): base {:.1} s, {:.0} packets, server {:.0} ms; zkfs {:.1} s, {:.0} packets, \
         server {:.0} ms; native {:.1} s, {:.0} packets, server {:.0} ms; server CPU spread over windows up to {:.0} ms",
        base.main.secs,
        base.main.packets,
        base.main.server_cpu * 1e3,
        zkfs.main.secs,
        zkfs.main.packets,
        zkfs.main.server_cpu * 1e3,
        native.main.secs,
        native.main.packets,
        native.main.server_cpu * 1e3,
        noise * 1e3
    );
    vec![
        h.to_string(),
        format!("{zp:.3} / {np:.3} = {}", fmt_ratio(zp, np, 1e-3)),
        format!("{} / {} = {}", fmt_us(zs), fmt_us(ns), fmt_ratio(zs, ns, 0.5e-6)),
        format!("{} / {} = {}", fmt_us(zh), fmt_us(nh), fmt_ratio(zh, nh, 0.5e-6)),
        format!("{zw:.1} / {nw:.1}"),
        format!("{}/{} / {}/{}", zkfs.delivered, zkfs.expected, native.delivered, native.expected),
        format!("{} / {}", fmt_us(zfh), fmt_us(nfh)),
    ]
}
