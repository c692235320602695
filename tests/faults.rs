//! SPEC "Faults": connection loss, failover, session expiry, a dead ensemble, and the
//! ends of a mount — tested by really stopping servers and freezing processes.

mod common;
mod shell;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::inotify::Inotify;
use common::procs::send_signal;
use common::{daemon_of, is_mounted, wait_until, BackgroundMount, Ensemble, Mount, Zk, ZkServer};
use nix::sys::signal::Signal;
use serde_json::json;
use shell::{cat_json, ls, q, sh, sh_ok};

const CREATE: u32 = libc::IN_CREATE;
const MODIFY: u32 = libc::IN_MODIFY;

#[test]
fn killing_the_leader_keeps_registrations_updates_and_watches() {
    let mut ensemble = Ensemble::new();
    let connect = ensemble.connect_string();
    let zk = Zk::connect(&connect);
    zk.mkdir_p("/svc/providers");
    let mount = Mount::with_options(&connect, "session_timeout=8");
    sh_ok(&format!("touch {}", q(&mount.join("svc/providers/10.0.0.1:80"))));
    let owner = zk.stat("/svc/providers/10.0.0.1:80").unwrap().ephemeral_owner;
    let _ = ls(&mount.join("svc/providers"));

    // A writer updating distinct keys the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(usize, Instant)>::new()));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let props = mount.join("svc/properties.json");
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if sh(&format!(r#"echo '{{"w{i}": {i}}}' >> {}"#, q(&props))).ok {
                    acked.lock().unwrap().push((i, Instant::now()));
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let leader = ensemble.wait_for_leader();
    let killed_at = Instant::now();
    ensemble.stop(leader);
    wait_until(Duration::from_secs(20), "a write succeeds after the leader died", || {
        acked.lock().unwrap().iter().any(|(_, t)| *t > killed_at + Duration::from_millis(100))
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    let data = zk.get_json("/svc");
    for (i, _) in acked.lock().unwrap().iter() {
        assert_eq!(data[format!("w{i}")], json!(i), "acknowledged update w{i} lost");
    }
    let stat = zk.stat("/svc/providers/10.0.0.1:80").expect("the registration survived the failover");
    assert_eq!(stat.ephemeral_owner, owner, "the failover must not need a new session");

    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc/providers"));
    zk.create_ephemeral("/svc/providers/10.0.0.2:80", b"");
    ino.wait_for(Duration::from_secs(5), "IN_CREATE after the failover", |e| e.is(CREATE, "10.0.0.2:80"));
}

#[test]
fn a_frozen_mount_gets_a_new_session_its_registrations_back_and_the_events_it_missed() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let mount = Mount::with_options(&server.connect_string(), "session_timeout=2");
    let dir = mount.join("svc/providers");
    sh_ok(&format!("touch {}", q(&dir.join("10.0.0.1:80"))));
    let r = sh(&format!(r#"echo '{{"weight": 3}}' > {}"#, q(&dir.join("10.0.0.2:80"))));
    assert!(r.ok);
    sh_ok(&format!(r#"echo '{{"weight": 4}}' >> {}"#, q(&dir.join("10.0.0.2:80"))));
    let old_owner = zk.stat("/svc/providers/10.0.0.1:80").unwrap().ephemeral_owner;
    let _ = ls(&dir);
    let _ = cat_json(&mount.join("svc/properties.json"));
    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc"));
    ino.watch(&dir);

    mount.stop_process();
    wait_until(Duration::from_secs(15), "the frozen mount's session expired", || {
        !zk.exists("/svc/providers/10.0.0.1:80") && !zk.exists("/svc/providers/10.0.0.2:80")
    });
    // Changes made while the mount could not see them.
    zk.create_ephemeral("/svc/providers/10.9.9.9:80", b"");
    zk.set("/svc", br#"{"changed": "meanwhile"}"#);
    mount.cont_process();

    let back = Instant::now() + Duration::from_secs(15);
    while !(zk.exists("/svc/providers/10.0.0.1:80") && zk.exists("/svc/providers/10.0.0.2:80")) {
        assert!(Instant::now() < back, "the registrations did not come back; zkfs log:\n{}", mount.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let stat = zk.stat("/svc/providers/10.0.0.1:80").unwrap();
    assert_ne!(stat.ephemeral_owner, old_owner, "re-created on the new session");
    assert_eq!(zk.get_json("/svc/providers/10.0.0.2:80"), json!({"pid": r.pid, "weight": 4}), "with its latest data");
    ino.wait_for(Duration::from_secs(10), "IN_CREATE for the node added meanwhile", |e| e.is(CREATE, "10.9.9.9:80"));
    ino.wait_for(Duration::from_secs(10), "IN_MODIFY for the data changed meanwhile", |e| {
        e.is(MODIFY, "properties.json")
    });
    assert_eq!(cat_json(&mount.join("svc/properties.json")), json!({"changed": "meanwhile"}));
    assert_eq!(ls(&dir), vec!["10.0.0.1:80", "10.0.0.2:80", "10.9.9.9:80", "properties.json"]);

    // Watches work on the new session, and so do writes and removals.
    zk.create_ephemeral("/svc/providers/10.8.8.8:80", b"");
    ino.wait_for(Duration::from_secs(5), "IN_CREATE on the new session", |e| e.is(CREATE, "10.8.8.8:80"));
    sh_ok(&format!(r#"echo '{{"after": 1}}' >> {}"#, q(&mount.join("svc/properties.json"))));
    assert_eq!(zk.get_json("/svc"), json!({"changed": "meanwhile", "after": 1}));
    sh_ok(&format!("rm {}", q(&dir.join("10.0.0.1:80"))));
    assert!(!zk.exists("/svc/providers/10.0.0.1:80"));
}

#[test]
fn with_every_server_down_reads_work_writes_fail_fast_and_all_recovers() {
    let mut ensemble = Ensemble::new();
    let connect = ensemble.connect_string();
    let mount = Mount::with_options(&connect, "session_timeout=4");
    {
        let zk = Zk::connect(&connect);
        zk.mkdir_p("/svc/providers");
        zk.set("/svc", br#"{"v": 1}"#);
    }
    sh_ok(&format!("touch {}", q(&mount.join("svc/providers/10.0.0.1:80"))));
    assert_eq!(cat_json(&mount.join("svc/properties.json")), json!({"v": 1}));

    for i in 0..3 {
        ensemble.stop(i);
    }
    // Reads are answered from what the mount knows.
    assert_eq!(cat_json(&mount.join("svc/properties.json")), json!({"v": 1}));
    assert_eq!(ls(&mount.join("svc/providers")), vec!["10.0.0.1:80", "properties.json"]);
    // Changes fail within about the session timeout, with an error.
    for cmd in [
        format!(r#"echo '{{"v": 2}}' >> {}"#, q(&mount.join("svc/properties.json"))),
        format!("mkdir {}", q(&mount.join("svc/new"))),
        format!("touch {}", q(&mount.join("svc/providers/10.0.0.2:80"))),
    ] {
        let started = Instant::now();
        let r = sh(&cmd);
        assert!(!r.ok, "{cmd} succeeded with no server");
        assert!(r.stderr.contains("I/O error") || r.stderr.contains("Input/output error"), "{cmd}: {}", r.stderr);
        assert!(started.elapsed() < Duration::from_secs(8), "{cmd} took {:?}", started.elapsed());
    }

    for i in 0..3 {
        ensemble.start(i);
    }
    for i in 0..3 {
        ensemble.wait_serving(i);
    }
    let props = mount.join("svc/properties.json");
    wait_until(Duration::from_secs(20), "writes work again", || {
        sh(&format!(r#"echo '{{"v": 3}}' >> {}"#, q(&props))).ok
    });
    let zk = Zk::connect(&connect);
    assert_eq!(zk.get_json("/svc"), json!({"v": 3}), "the failed write was not applied later");
    assert!(zk.exists("/svc/providers/10.0.0.1:80"), "the registration survived");
    assert!(!zk.exists("/svc/new") && !zk.exists("/svc/providers/10.0.0.2:80"));
    zk.create("/svc/after", b"");
    wait_until(Duration::from_secs(5), "the view follows ZooKeeper again", || mount.join("svc/after").is_dir());
}

#[test]
fn kill_9_leaves_registrations_to_expire_with_the_session() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let mut mount = Mount::with_options(&server.connect_string(), "session_timeout=2");
    sh_ok(&format!("touch {}", q(&mount.join("10.0.0.1:80"))));
    mount.kill9();
    assert!(zk.exists("/10.0.0.1:80"), "a crash cannot close the session");
    wait_until(Duration::from_secs(10), "the registration expired", || !zk.exists("/10.0.0.1:80"));
}

#[test]
fn a_daemonised_mount_ends_cleanly_on_sigterm() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let dir = BackgroundMount::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zkfs"))
        .args([&server.connect_string(), dir.path().to_str().unwrap(), "-o", "session_timeout=30"])
        .output()
        .unwrap();
    assert!(out.status.success());
    sh_ok(&format!("touch {}", q(&dir.path().join("10.0.0.1:80"))));
    let (pid, _) = daemon_of(dir.path()).expect("the daemon runs");
    send_signal(pid, Signal::SIGTERM);
    wait_until(Duration::from_secs(5), "the daemon unmounted and closed its session", || {
        !is_mounted(dir.path()) && !zk.exists("/10.0.0.1:80")
    });
    wait_until(Duration::from_secs(5), "the daemon exited", || daemon_of(dir.path()).is_none());
}

#[test]
fn a_registration_removed_by_another_client_is_not_brought_back_after_expiry() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc");
    let mount = Mount::with_options(&server.connect_string(), "session_timeout=2");
    sh_ok(&format!("touch {} {}", q(&mount.join("svc/10.0.0.1:80")), q(&mount.join("svc/10.0.0.2:80"))));
    zk.delete("/svc/10.0.0.1:80");
    wait_until(Duration::from_secs(5), "the mount no longer holds the removed registration", || {
        !sh_ok(&format!("{} status {}", env!("CARGO_BIN_EXE_zkfs"), q(mount.path()))).contains("10.0.0.1:80")
    });
    mount.stop_process();
    wait_until(Duration::from_secs(15), "the session expired", || !zk.exists("/svc/10.0.0.2:80"));
    mount.cont_process();
    wait_until(Duration::from_secs(15), "the held registration is back", || zk.exists("/svc/10.0.0.2:80"));
    assert!(!zk.exists("/svc/10.0.0.1:80"), "a registration removed elsewhere was re-created");
}
