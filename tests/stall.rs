//! SPEC "Faults" and "A live view" under stress: whatever waits for ZooKeeper never
//! delays what the mount can answer itself; requests that wait do so side by side;
//! every read returns one whole version; every change is heard, in bursts too.
//! Servers are really frozen (SIGSTOP) and stopped.

mod common;
mod shell;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::inotify::Inotify;
use common::{wait_until, Mount, Zk, ZkServer};
use serde_json::json;
use shell::{cat_json, ls, q, sh, sh_ok};

const CREATE: u32 = libc::IN_CREATE;
const DELETE: u32 = libc::IN_DELETE;
const MODIFY: u32 = libc::IN_MODIFY;
const SOON: Duration = Duration::from_secs(5);

/// The session timeout of the mounts below, in seconds.
const TIMEOUT: u64 = 8;

/// How a server stops answering.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGSTOP: connections stay open, nothing answers.
    Frozen,
    /// Killed: connections are refused.
    Stopped,
}

fn begin(server: &mut ZkServer, outage: Outage) {
    match outage {
        Outage::Frozen => server.pause(),
        Outage::Stopped => server.stop(),
    }
}

/// `>>` writers started at once, the i-th on `files[i % files.len()]`; each returns
/// (its start, its end, ok).
fn writers(files: &[PathBuf], n: usize) -> Vec<thread::JoinHandle<(Instant, Instant, bool)>> {
    (0..n)
        .map(|i| {
            let cmd = format!(r#"echo '{{"w{i}": {i}}}' >> {}"#, q(&files[i % files.len()]));
            thread::spawn(move || {
                let start = Instant::now();
                let ok = sh(&cmd).ok;
                (start, Instant::now(), ok)
            })
        })
        .collect()
}

fn warm_reads_answer_while_16_writers_wait(outage: Outage) {
    let mut server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    zk.set("/svc", br#"{"v": 1}"#);
    zk.create_ephemeral("/svc/providers/10.0.0.1:80", br#"{"pid": 1}"#);
    for i in 0..12 {
        zk.create(&format!("/svc/w{i}"), b"");
    }
    let mount = Mount::with_options(&server.connect_string(), &format!("session_timeout={TIMEOUT}"));
    let props = mount.join("svc/properties.json");
    // 12 files: more writes waiting in zkfs at once than fuser has threads; 4 of them
    // with a second writer, which the kernel queues behind the first.
    let targets: Vec<PathBuf> = (0..12).map(|i| mount.join(format!("svc/w{i}/properties.json"))).collect();
    for t in &targets {
        let _ = cat_json(t);
    }
    let status = format!("{} status {}", env!("CARGO_BIN_EXE_zkfs"), q(mount.path()));
    let reads = [
        format!("cat {}", q(&props)),
        format!("stat {}", q(&props)),
        format!("getfattr -d {}", q(&props)),
        format!("ls -la {}", q(&mount.join("svc/providers"))),
        format!("cat {}", q(&mount.join("svc/providers/10.0.0.1:80"))),
        status.clone(),
    ];
    for r in &reads {
        sh_ok(r); // warm every cache
    }

    begin(&mut server, outage);
    let started = Instant::now();
    let writers = writers(&targets, 16);
    // Let every writer reach zkfs and wait there.
    thread::sleep(Duration::from_millis(700));
    // Side by side, as a host's programs read: one after another, six process starts
    // on a loaded machine could outlast the client's detection of the dead
    // connection (2/5 of the session timeout), which fails the first writes.
    let readers: Vec<_> = reads
        .iter()
        .map(|r| {
            let r = r.clone();
            thread::spawn(move || {
                let out = sh(&r);
                (r, out, Instant::now())
            })
        })
        .collect();
    let mut answered = Vec::new();
    for reader in readers {
        let (r, out, at) = reader.join().expect("reader thread");
        assert!(out.ok, "`{r}` failed while writers waited: {}", out.stderr);
        answered.push((r, at));
    }
    assert_eq!(cat_json(&props), json!({"v": 1}), "the cached data, while the writes wait");
    let results: Vec<_> = writers.into_iter().map(|w| w.join().expect("writer thread")).collect();
    let first_writer_done = results.iter().map(|(_, end, _)| *end).min().expect("16 writers");
    for (r, at) in &answered {
        assert!(*at < first_writer_done, "`{r}` answered only after a waiting write had failed");
    }
    let slowest = results.iter().map(|(start, end, _)| end.duration_since(*start)).max().unwrap_or_default();
    let last_read = answered.iter().map(|(_, at)| at.duration_since(started)).max().unwrap_or_default();
    eprintln!(
        "{outage:?}: {} reads answered by +{last_read:?}; first write failed at +{:?}, slowest write took {slowest:?}",
        answered.len(),
        first_writer_done.duration_since(started)
    );
    for (i, (start, end, ok)) in results.iter().enumerate() {
        assert!(!ok, "write {i} succeeded with no server answering");
        // Side by side: each fails within the session timeout of its own start, plus
        // slack for a loaded machine, not one timeout after another.
        let took = end.duration_since(*start);
        assert!(took < Duration::from_secs(TIMEOUT + 3), "write {i} took {took:?} (outage {outage:?})");
    }
    assert!(started.elapsed() < Duration::from_secs(2 * TIMEOUT), "the writes queued: {:?}", started.elapsed());
    if let Outage::Frozen = outage {
        server.resume();
    }
}

#[test]
fn warm_reads_answer_while_16_writers_wait_on_a_frozen_server() {
    warm_reads_answer_while_16_writers_wait(Outage::Frozen);
}

#[test]
fn warm_reads_answer_while_16_writers_wait_on_a_stopped_server() {
    warm_reads_answer_while_16_writers_wait(Outage::Stopped);
}

fn cold_reads_fail_side_by_side(outage: Outage) {
    let mut server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    for i in 0..8 {
        zk.create(&format!("/c{i}"), br#"{"cold": true}"#);
    }
    let mount = Mount::with_options(&server.connect_string(), &format!("session_timeout={TIMEOUT}"));
    // The root is listed (a lookup lists its names); its children's data has never
    // been read (an `ls` would read it: it learns their kinds, and keeps what it read).
    assert!(!mount.join("absent").exists());
    begin(&mut server, outage);
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let file = mount.join(format!("c{i}/properties.json"));
            thread::spawn(move || {
                // Staggered: each must be bounded from its own start.
                thread::sleep(Duration::from_millis(300 * i));
                let start = Instant::now();
                let r = sh(&format!("cat {}", q(&file)));
                (start.elapsed(), r.ok, r.stderr)
            })
        })
        .collect();
    for (i, r) in readers.into_iter().enumerate() {
        let (took, ok, stderr) = r.join().expect("reader thread");
        eprintln!("{outage:?}: cold read {i} failed after {took:?}");
        assert!(!ok, "cold read {i} succeeded with no server");
        assert!(stderr.contains("Input/output error"), "cold read {i}: {stderr}");
        assert!(took < Duration::from_secs(TIMEOUT + 3), "cold read {i} took {took:?} (outage {outage:?})");
    }
    // And a listing of what the mount knows still answers.
    assert_eq!(ls(mount.path()).len(), 10, "c0..c7, properties.json, zookeeper");
    if let Outage::Frozen = outage {
        server.resume();
    }
}

#[test]
fn cold_reads_of_different_nodes_fail_side_by_side_on_a_frozen_server() {
    cold_reads_fail_side_by_side(Outage::Frozen);
}

#[test]
fn cold_reads_of_different_nodes_fail_side_by_side_on_a_stopped_server() {
    cold_reads_fail_side_by_side(Outage::Stopped);
}

/// The data of version `n`: its padding length depends on `n`, so a read that mixes
/// two versions, or is cut or padded, does not parse back to a consistent version.
fn version(n: u64) -> Vec<u8> {
    let pad = "x".repeat((n as usize * 37) % 3000);
    format!(r#"{{"n": {n}, "pad": "{pad}"}}"#).into_bytes()
}

/// True if `bytes` is one whole rendering of some version.
fn whole(bytes: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else { return false };
    let Some(n) = v["n"].as_u64() else { return false };
    v["pad"].as_str().is_some_and(|p| p.len() == (n as usize * 37) % 3000) && bytes.ends_with(b"}\n")
}

#[test]
fn no_read_is_torn_while_another_client_sets_the_node_hundreds_of_times_a_second() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/cfg", &version(0));
    zk.create_ephemeral("/10.0.0.1:80", &version(0));
    let mount = Mount::new(&server.connect_string());
    let files: Vec<PathBuf> = vec![mount.join("cfg/properties.json"), mount.join("10.0.0.1:80")];
    for f in &files {
        assert!(whole(&std::fs::read(f).unwrap()));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let torn = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let readers: Vec<_> = files
        .iter()
        .flat_map(|f| [f.clone(), f.clone()])
        .map(|f| {
            let (stop, reads, torn) = (stop.clone(), reads.clone(), torn.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // open, fstat, read to the end: as cat and most programs do.
                    match std::fs::read(&f) {
                        Ok(bytes) if whole(&bytes) => {}
                        Ok(bytes) => torn.lock().unwrap().push(String::from_utf8_lossy(&bytes).into_owned()),
                        Err(e) => torn.lock().unwrap().push(format!("error {e}")),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Sets from another client, as fast as it goes, for a few seconds and at least
    // 600 of them (a loaded machine takes longer, up to 30 s, rather than test less).
    let started = Instant::now();
    let mut sets = 0u64;
    while (started.elapsed() < Duration::from_secs(6) || sets < 600) && started.elapsed() < Duration::from_secs(30) {
        sets += 1;
        zk.set("/cfg", &version(sets));
        zk.set("/10.0.0.1:80", &version(sets));
    }
    let rate = sets as f64 / started.elapsed().as_secs_f64();
    // Keep reading a little after the last change, when the kernel caches settle.
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader thread");
    }
    let reads = reads.load(Ordering::Relaxed);
    let torn = torn.lock().unwrap();
    eprintln!("{reads} reads, {sets} sets of each node ({rate:.0}/s), {} torn", torn.len());
    assert!(sets >= 600, "the test did not stress enough: {sets} sets in 30 s ({rate:.0}/s)");
    assert!(reads >= 2000, "too few reads to tell: {reads}");
    assert!(torn.is_empty(), "{} of {reads} reads were not one whole version, e.g. {:?}", torn.len(), &torn[0]);
    // And the mount ends on the last version.
    for f in &files {
        let last = serde_json::from_slice::<serde_json::Value>(&std::fs::read(f).unwrap()).unwrap();
        assert_eq!(last["n"], json!(sets), "{}", f.display());
    }
}

/// Creates (or deletes) `paths` from `zk` in one pipelined burst.
fn burst(zk: &Zk, paths: &[String], create: bool) {
    let client = zk.client().clone();
    let paths = paths.to_vec();
    zk.block_on(async move {
        let opts = zookeeper_client::CreateMode::Ephemeral.with_acls(zookeeper_client::Acls::anyone_all());
        if create {
            let futures: Vec<_> = paths.iter().map(|p| client.create(p, b"", &opts)).collect();
            for f in futures {
                f.await.expect("create");
            }
        } else {
            let futures: Vec<_> = paths.iter().map(|p| client.delete(p, None)).collect();
            for f in futures {
                f.await.expect("delete");
            }
        }
    });
}

/// Collects events of `mask` on `name`s until `n` distinct names arrived; panics on a
/// repeat, or after `timeout`.
fn collect_distinct(ino: &mut Inotify, mask: u32, n: usize, timeout: Duration) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    wait_until(timeout, &format!("{n} events of mask {mask:#x}"), || {
        for e in ino.collect(Duration::from_millis(50)) {
            if e.mask & mask == mask && e.mask & libc::IN_ISDIR == 0 {
                assert!(seen.insert(e.name.clone()), "event {mask:#x} for {} twice", e.name);
            }
        }
        seen.len() >= n
    });
    seen
}

#[test]
fn every_event_of_a_5000_create_and_a_5000_delete_burst_arrives() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let mount = Mount::new(&server.connect_string());
    let dir = mount.join("svc/providers");
    let _ = ls(&dir);
    let mut ino = Inotify::new();
    ino.watch(&dir);
    let paths: Vec<String> = (0..5000).map(|i| format!("/svc/providers/10.2.{}.{}:80", i / 250, i % 250)).collect();

    burst(&zk, &paths, true);
    let created = collect_distinct(&mut ino, CREATE, 5000, Duration::from_secs(60));
    assert_eq!(created.len(), 5000);
    assert_eq!(ls(&dir).len(), 5001);

    burst(&zk, &paths, false);
    let deleted = collect_distinct(&mut ino, DELETE, 5000, Duration::from_secs(60));
    assert_eq!(deleted, created);
    assert_eq!(ls(&dir), vec!["properties.json"]);
    let extra: Vec<_> = ino.collect(Duration::from_millis(300)).into_iter().filter(|e| e.mask & CREATE != 0).collect();
    assert!(extra.is_empty(), "{extra:?}");
}

#[test]
fn events_arrive_under_directories_that_were_only_path_walked() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc");
    let mount = Mount::new(&server.connect_string());
    let _ = ls(&mount.join("svc"));
    // A directory created elsewhere, echoed to the kernel, then only path-walked.
    zk.create("/svc/new", br#"{"a": 1}"#);
    wait_until(SOON, "the new directory shows", || mount.join("svc/new").is_dir());
    assert_eq!(cat_json(&mount.join("svc/new/properties.json")), json!({"a": 1}));
    // And one made through the mount.
    sh_ok(&format!("mkdir {}", q(&mount.join("svc/mine"))));

    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc/new"));
    ino.watch(&mount.join("svc/mine"));
    for dir in ["new", "mine"] {
        for i in 1..=3 {
            zk.create_ephemeral(&format!("/svc/{dir}/10.0.0.{i}:80"), b"");
        }
        for i in 1..=3 {
            let name = format!("10.0.0.{i}:80");
            ino.wait_for(SOON, &format!("IN_CREATE of {dir}/{name}"), |e| {
                e.is(CREATE, &name) && e.watched.ends_with(dir)
            });
        }
        zk.delete(&format!("/svc/{dir}/10.0.0.2:80"));
        ino.wait_for(SOON, &format!("IN_DELETE in {dir}"), |e| e.is(DELETE, "10.0.0.2:80") && e.watched.ends_with(dir));
        assert_eq!(ls(&mount.join("svc").join(dir)), vec!["10.0.0.1:80", "10.0.0.3:80", "properties.json"]);
    }
}

#[test]
fn events_arrive_under_existing_directories_only_path_walked() {
    // Reading a deep file reads the nodes on its path, not their siblings; the
    // directories on it are known to the kernel, so changes in them are heard.
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/old/sub");
    zk.create_ephemeral("/svc/old/10.0.0.9:80", b"");
    let mount = Mount::new(&server.connect_string());
    assert_eq!(cat_json(&mount.join("svc/old/sub/properties.json")), json!({}));

    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc/old"));
    ino.watch(&mount.join("svc/old/sub"));
    zk.create_ephemeral("/svc/old/10.0.0.1:80", b"");
    ino.wait_for(SOON, "IN_CREATE in a directory on the path", |e| e.is(CREATE, "10.0.0.1:80"));
    zk.create("/svc/old/sub/deeper", b"");
    ino.wait_for(SOON, "IN_CREATE|IN_ISDIR in the last directory of the path", |e| {
        e.is(CREATE | libc::IN_ISDIR, "deeper")
    });
    zk.delete("/svc/old/10.0.0.1:80");
    ino.wait_for(SOON, "IN_DELETE of the child made since", |e| e.is(DELETE, "10.0.0.1:80"));
    assert_eq!(ls(&mount.join("svc/old")), vec!["10.0.0.9:80", "properties.json", "sub"]);
    // Listed now: a child that was there before is heard going too.
    zk.delete("/svc/old/10.0.0.9:80");
    ino.wait_for(SOON, "IN_DELETE of a listed child", |e| e.is(DELETE, "10.0.0.9:80"));
    assert_eq!(ls(&mount.join("svc/old")), vec!["properties.json", "sub"]);
}

#[test]
fn a_data_change_of_a_file_never_read_here_gives_in_modify() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    zk.create("/quiet", b"");
    zk.create_ephemeral("/svc/providers/10.0.0.1:80", br#"{"pid": 1}"#);
    let mount = Mount::new(&server.connect_string());
    // Listed, never read: the registration file and both properties.json.
    let _ = ls(&mount.join("svc/providers"));
    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc/providers"));
    ino.watch(&mount.join("quiet"));

    zk.set("/svc/providers/10.0.0.1:80", br#"{"pid": 1, "weight": 2}"#);
    ino.wait_for(SOON, "IN_MODIFY of a registration never read", |e| e.is(MODIFY, "10.0.0.1:80"));
    ino.wait_for(SOON, "IN_CLOSE_WRITE of it", |e| e.is(libc::IN_CLOSE_WRITE, "10.0.0.1:80"));
    assert_eq!(cat_json(&mount.join("svc/providers/10.0.0.1:80")), json!({"pid": 1, "weight": 2}));
    zk.set("/svc/providers", br#"{"x": 1}"#);
    ino.wait_for(SOON, "IN_MODIFY of a properties.json never read", |e| e.is(MODIFY, "properties.json"));
    ino.wait_for(SOON, "IN_CLOSE_WRITE of it", |e| e.is(libc::IN_CLOSE_WRITE, "properties.json"));
    zk.set("/quiet", br#"{"y": 2}"#);
    ino.wait_for(SOON, "IN_MODIFY in a directory only watched", |e| {
        e.is(MODIFY, "properties.json") && e.watched.ends_with("quiet")
    });
    assert_eq!(cat_json(&mount.join("quiet/properties.json")), json!({"y": 2}));
}

#[test]
fn children_there_before_the_mount_of_a_directory_only_path_walked_are_heard_going() {
    // Reading DIR/properties.json lists DIR's names but not their kinds (a read each);
    // the kinds are learnt behind the read's back, once no read waits for ZooKeeper
    // (README, "Choices": a removal within that window gives no event), so that
    // another client's removal of a child the kernel was never shown (no ls, no stat)
    // still gives IN_DELETE, with IN_ISDIR for a directory.
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/old/1sub");
    zk.set("/svc/old", br#"{"a": 1}"#);
    zk.create_ephemeral("/svc/old/10.0.0.1:80", br#"{"pid": 1}"#);
    // More children than one multi-read learns.
    for i in 0..120 {
        zk.create_ephemeral(&format!("/svc/old/20.1.0.{i}:80"), b"");
    }
    let mount = Mount::new(&server.connect_string());
    assert_eq!(cat_json(&mount.join("svc/old/properties.json")), json!({"a": 1}));
    // Far past the window on an idle mount (milliseconds; README "Choices").
    thread::sleep(Duration::from_millis(500));

    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc/old"));
    zk.delete("/svc/old/10.0.0.1:80");
    zk.delete("/svc/old/1sub");
    let reg = ino.wait_for(SOON, "IN_DELETE of a registration never shown", |e| e.is(DELETE, "10.0.0.1:80"));
    assert_eq!(reg.mask & libc::IN_ISDIR, 0, "a registration is a file: {reg:?}");
    ino.wait_for(SOON, "IN_DELETE|IN_ISDIR of a directory never shown", |e| e.is(DELETE | libc::IN_ISDIR, "1sub"));
    let left = ls(&mount.join("svc/old"));
    assert_eq!(left.len(), 121, "120 registrations and properties.json: {left:?}");
    assert!(!left.iter().any(|n| n == "1sub" || n == "10.0.0.1:80"), "{left:?}");
}

/// A program reading the directories' files in name order (a walk) finds the next
/// ones read ahead: they answer from memory even once the server is frozen, and a
/// change made elsewhere after they were read ahead is what they show.
#[test]
fn a_walk_in_name_order_finds_the_next_directories_read_ahead() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/walk", b"");
    for d in 0..40 {
        zk.create(&format!("/walk/d{d:02}"), format!(r#"{{"d": {d}}}"#).as_bytes());
    }
    let mount = Mount::with_options(&server.connect_string(), &format!("session_timeout={TIMEOUT}"));
    let file = |d: usize| mount.join(format!("walk/d{d:02}/properties.json"));
    let value = |d: usize| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(file(d)).unwrap_or_else(|e| panic!("read d{d:02}: {e}"))).unwrap()
    };
    for d in 0..3 {
        assert_eq!(value(d), json!({"d": d}));
    }
    // Changed elsewhere after the walk's lookups read it ahead (or while they do).
    zk.set("/walk/d05", br#"{"d": 5, "changed": true}"#);
    wait_until(SOON, "d05 shows the change made elsewhere", || value(5) == json!({"d": 5, "changed": true}));
    thread::sleep(Duration::from_millis(300));
    server.pause();
    let started = Instant::now();
    for d in 6..16 {
        assert_eq!(value(d), json!({"d": d}), "d{d:02} read ahead");
    }
    let took = started.elapsed();
    server.resume();
    assert!(took < Duration::from_secs(2), "the files read ahead took {took:?} with the server frozen");
}
