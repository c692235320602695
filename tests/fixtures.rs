//! Tests of the test fixtures themselves (tests/common), without zkfs.

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, Ensemble, Zk, ZkServer};

#[test]
fn zk_server_create_get_children_delete() {
    let server = ZkServer::start();
    assert!(server.connect_string().ends_with(&server.port().to_string()));
    let zk = Zk::connect(&server.connect_string());
    assert_ne!(zk.session_id(), 0);

    zk.mkdir_p("/a/b/c");
    assert!(zk.exists("/a/b/c"));
    zk.create("/a/x", b"{\"k\": 1}");
    zk.create("/a/y", b"");
    assert_eq!(zk.get("/a/x").as_deref(), Some(&b"{\"k\": 1}"[..]));
    assert_eq!(zk.get_json("/a/x"), serde_json::json!({"k": 1}));
    assert_eq!(zk.get("/a/missing"), None);
    assert!(zk.stat("/a/missing").is_none());
    assert_eq!(zk.children("/a"), vec!["b", "x", "y"]);

    zk.set("/a/y", b"hello");
    assert_eq!(zk.get("/a/y").as_deref(), Some(&b"hello"[..]));
    assert_eq!(zk.stat("/a/y").unwrap().version, 1);
    assert!(zk.try_create("/a/y", b"").is_err());

    zk.delete("/a/y");
    assert!(!zk.exists("/a/y"));
    zk.delete_all("/a");
    assert!(!zk.exists("/a"));
    zk.delete_all("/a"); // missing is fine
    assert_eq!(zk.children("/"), vec!["zookeeper"]);
}

#[test]
fn ephemeral_vanishes_when_zk_is_dropped() {
    let server = ZkServer::start();
    let observer = Zk::connect(&server.connect_string());
    observer.create("/svc", b"");
    let owner = Zk::connect(&server.connect_string());
    owner.create_ephemeral("/svc/127.0.0.1:8080", b"{\"pid\": 1}");
    assert_eq!(observer.children("/svc"), vec!["127.0.0.1:8080"]);
    assert!(observer.stat("/svc/127.0.0.1:8080").unwrap().ephemeral_owner == owner.session_id());

    let t = Instant::now();
    drop(owner);
    // Drop waited until the session was closed: gone at once, not after 6 s.
    assert!(observer.children("/svc").is_empty());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn zk_server_restart_keeps_data_and_pause_resume() {
    let mut server = ZkServer::start();
    let port = server.port();
    {
        let zk = Zk::connect(&server.connect_string());
        zk.mkdir_p("/keep/me");
        zk.set("/keep/me", b"data");
    }
    server.restart();
    assert_eq!(server.port(), port);
    let zk = Zk::connect(&server.connect_string());
    assert_eq!(zk.get("/keep/me").as_deref(), Some(&b"data"[..]));

    server.pause();
    let pid = server.pid().unwrap();
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // The state follows the command name in parentheses.
        stat.rsplit_once(") ").unwrap().1.chars().next().unwrap()
    };
    wait_until(Duration::from_secs(2), "the JVM is stopped", || state() == 'T');
    server.resume();
    wait_until(Duration::from_secs(5), "server answers after resume", || {
        common::four_letter(port, "ruok").as_deref() == Some("imok")
    });
    // The client reconnects by itself (same session).
    let session = zk.session_id();
    zk.set("/keep/me", b"after");
    assert_eq!(zk.get("/keep/me").as_deref(), Some(&b"after"[..]));
    assert_eq!(zk.session_id(), session);
    drop(zk); // closing the session needs the server

    server.stop();
    server.stop(); // idempotent
    assert!(!server.is_running());
}

#[test]
fn ensemble_forms_and_survives_losing_its_leader() {
    let mut ensemble = Ensemble::new();
    let leaders: Vec<usize> = (0..Ensemble::SIZE).filter(|&i| ensemble.mode(i).as_deref() == Some("leader")).collect();
    assert_eq!(leaders.len(), 1, "exactly one leader");
    let leader = ensemble.leader_index().unwrap();
    assert_eq!(leaders, vec![leader]);

    let zk = Zk::connect(&ensemble.connect_string());
    zk.create("/before", b"1");

    ensemble.stop(leader);
    let new_leader = ensemble.wait_for_leader();
    assert_ne!(new_leader, leader);
    // A write through the same client succeeds once it has reconnected.
    let mut result = None;
    wait_until(Duration::from_secs(20), "a write after fail-over", || {
        // NodeExists: an earlier try was applied but its answer was lost.
        result = Some(zk.try_create("/after", b"2"));
        matches!(result, Some(Ok(_)) | Some(Err(zookeeper_client::Error::NodeExists)))
    });
    assert_eq!(zk.get("/after").as_deref(), Some(&b"2"[..]));
    assert_eq!(zk.get("/before").as_deref(), Some(&b"1"[..]));

    ensemble.start(leader);
    ensemble.wait_serving(leader);
    assert_eq!(ensemble.mode(leader).as_deref(), Some("follower"));
}

/// `scripts/zk-server` stopped in `Drop`, also when the test panics.
struct ScriptServer(tempfile::TempDir);

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/zk-server"))
            .arg("stop")
            .arg(self.0.path())
            .status();
    }
}

/// A process's argv from /proc.
fn argv(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// zoo.cfg without its comments and the lines that name one server's own place.
fn shared_lines(cfg: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(cfg).unwrap_or_else(|e| panic!("read {}: {e}", cfg.display()));
    let own = ["dataDir=", "clientPort=", "clientPortAddress="];
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !own.iter().any(|o| l.starts_with(o)))
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

#[test]
fn scripts_zk_server_and_the_fixtures_run_one_zookeeper_configuration() {
    let fixture = ZkServer::start();
    let dir = tempfile::Builder::new().prefix("zkfs-test-script-zk-").tempdir().expect("temp dir");
    let port = common::free_port();
    let started = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/zk-server"))
        .arg("start")
        .arg(dir.path())
        .arg(port.to_string())
        .env_remove("ZK_CLASSPATH")
        .status()
        .expect("run scripts/zk-server");
    let script = ScriptServer(dir);
    assert!(started.success(), "scripts/zk-server start failed: {started}");
    let zk = Zk::connect(&format!("127.0.0.1:{port}"));
    zk.create("/from-the-script", b"");
    assert!(zk.exists("/from-the-script"));

    assert_eq!(shared_lines(&script.0.path().join("zoo.cfg")), shared_lines(&fixture.dir().join("zoo.cfg")));
    let pid: u32 = std::fs::read_to_string(script.0.path().join("zk.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .expect("scripts/zk-server wrote the server's pid");
    // The same java, flags, classpath and main class; only the zoo.cfg path differs.
    let (mut a, mut b) = (argv(pid), argv(fixture.pid().expect("the fixture's server runs")));
    assert_eq!(a.pop().map(|c| c.ends_with("zoo.cfg")), Some(true), "{a:?}");
    assert_eq!(b.pop().map(|c| c.ends_with("zoo.cfg")), Some(true), "{b:?}");
    assert_eq!(a, b);
}

#[test]
fn the_inotify_reader_reports_creations_and_removals_with_their_names() {
    use common::inotify::Inotify;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ino = Inotify::new();
    ino.watch_as(dir.path(), libc::IN_CREATE | libc::IN_DELETE, "dir");
    assert!(ino.collect(Duration::from_millis(50)).is_empty(), "an event before any change");
    let before = Instant::now();
    std::fs::write(dir.path().join("a b"), b"").expect("create");
    std::fs::remove_file(dir.path().join("a b")).expect("remove");
    let created = ino.wait_for(Duration::from_secs(5), "IN_CREATE of `a b`", |e| e.is(libc::IN_CREATE, "a b"));
    assert_eq!(created.watched, "dir");
    assert!(created.at >= before);
    ino.wait_for(Duration::from_secs(5), "IN_DELETE of `a b`", |e| e.is(libc::IN_DELETE, "a b"));
    // Not watched for: no IN_MODIFY or IN_CLOSE_WRITE came.
    assert!(ino.collect(Duration::from_millis(50)).is_empty());
}
