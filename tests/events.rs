//! SPEC "A live view": inotify works for changes made anywhere — through another mount
//! or by a plain ZooKeeper client — with no echo of local writes.

mod common;
mod shell;

use std::time::Duration;

use common::inotify::Inotify;
use common::{wait_until, Mount, Zk, ZkServer};
use serde_json::json;
use shell::{cat_json, ls, q, sh_ok};

const SOON: Duration = Duration::from_secs(3);
const CREATE: u32 = libc::IN_CREATE;
const DELETE: u32 = libc::IN_DELETE;
const MODIFY: u32 = libc::IN_MODIFY;
const CLOSE_WRITE: u32 = libc::IN_CLOSE_WRITE;
const ISDIR: u32 = libc::IN_ISDIR;

/// Given a mount watching /svc and /svc/providers, every kind of change made by
/// `change` (a plain client or another mount) gives its event, and `ls`/`cat` right
/// after the event show the new state.
fn every_event_kind(server: &ZkServer, change: &dyn Fn(&str)) {
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    zk.set("/svc", br#"{"v": 1}"#);
    let mount = Mount::new(&server.connect_string());
    assert_eq!(ls(&mount.join("svc/providers")), vec!["properties.json"]);
    assert_eq!(cat_json(&mount.join("svc/properties.json")), json!({"v": 1}));
    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc"));
    ino.watch(&mount.join("svc/providers"));
    ino.watch(&mount.join("svc/properties.json"));

    change("register /svc/providers/10.0.0.1:80");
    ino.wait_for(SOON, "IN_CREATE of the registration", |e| e.is(CREATE, "10.0.0.1:80"));
    assert_eq!(ls(&mount.join("svc/providers")), vec!["10.0.0.1:80", "properties.json"]);

    change("set /svc {\"v\": 2}");
    ino.wait_for(SOON, "IN_MODIFY for the directory's watcher", |e| e.is(MODIFY, "properties.json"));
    assert_eq!(cat_json(&mount.join("svc/properties.json")), json!({"v": 2}));
    ino.wait_for(SOON, "IN_CLOSE_WRITE", |e| e.is(CLOSE_WRITE, "properties.json"));
    ino.wait_for(SOON, "IN_CLOSE_WRITE for the file's own watcher", |e| {
        e.is(CLOSE_WRITE, "") && e.watched.ends_with("properties.json")
    });

    change("mkdir /svc/sub");
    ino.wait_for(SOON, "IN_CREATE|IN_ISDIR", |e| e.is(CREATE | ISDIR, "sub"));
    assert!(mount.join("svc/sub").is_dir());
    assert_eq!(cat_json(&mount.join("svc/sub/properties.json")), json!({}));

    change("unregister /svc/providers/10.0.0.1:80");
    ino.wait_for(SOON, "IN_DELETE of the registration", |e| e.is(DELETE, "10.0.0.1:80"));
    assert_eq!(ls(&mount.join("svc/providers")), vec!["properties.json"]);

    change("rmdir /svc/sub");
    ino.wait_for(SOON, "IN_DELETE|IN_ISDIR", |e| e.is(DELETE | ISDIR, "sub"));
    assert!(!mount.join("svc/sub").exists());
}

#[test]
fn changes_by_a_plain_zookeeper_client_give_inotify_events() {
    let server = ZkServer::start();
    let other = Zk::connect(&server.connect_string());
    every_event_kind(&server, &|what| match what {
        "register /svc/providers/10.0.0.1:80" => other.create_ephemeral("/svc/providers/10.0.0.1:80", b""),
        "set /svc {\"v\": 2}" => other.set("/svc", br#"{"v": 2}"#),
        "mkdir /svc/sub" => other.create("/svc/sub", b""),
        "unregister /svc/providers/10.0.0.1:80" => other.delete("/svc/providers/10.0.0.1:80"),
        "rmdir /svc/sub" => other.delete("/svc/sub"),
        other => panic!("{other}"),
    });
}

#[test]
fn changes_through_another_mount_give_inotify_events() {
    let server = ZkServer::start();
    let other = Mount::new(&server.connect_string());
    every_event_kind(&server, &|what| {
        let p = |rel: &str| q(&other.join(rel));
        match what {
            "register /svc/providers/10.0.0.1:80" => sh_ok(&format!("touch {}", p("svc/providers/10.0.0.1:80"))),
            "set /svc {\"v\": 2}" => sh_ok(&format!(r#"echo '{{"v": 2}}' > {}"#, p("svc/properties.json"))),
            "mkdir /svc/sub" => sh_ok(&format!("mkdir {}", p("svc/sub"))),
            "unregister /svc/providers/10.0.0.1:80" => sh_ok(&format!("rm {}", p("svc/providers/10.0.0.1:80"))),
            "rmdir /svc/sub" => sh_ok(&format!("rmdir {}", p("svc/sub"))),
            other => panic!("{other}"),
        };
    });
}

#[test]
fn a_registrations_data_change_elsewhere_modifies_its_file() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create_ephemeral("/h:1", br#"{"pid": 1}"#);
    let mount = Mount::new(&server.connect_string());
    assert_eq!(cat_json(&mount.join("h:1")), json!({"pid": 1}));
    let mut ino = Inotify::new();
    ino.watch(mount.path());
    zk.set("/h:1", br#"{"pid": 1, "weight": 7}"#);
    ino.wait_for(SOON, "IN_MODIFY of the registration", |e| e.is(MODIFY, "h:1"));
    assert_eq!(cat_json(&mount.join("h:1")), json!({"pid": 1, "weight": 7}));
}

#[test]
fn right_after_a_remote_data_change_stat_and_read_agree_on_the_new_version() {
    // Given a file read twice (its pages kept by the kernel) and stat'ed (its size kept).
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"v": 1}"#);
    let mount = Mount::new(&server.connect_string());
    let file = mount.join("svc/properties.json");
    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc"));
    for (data, expected) in [
        (
            r#"{"v": 2, "longer": "abcdefghijklmnopqrstuvwxyz"}"#,
            json!({"v": 2, "longer": "abcdefghijklmnopqrstuvwxyz"}),
        ),
        (r#"{"v": 3}"#, json!({"v": 3})),
    ] {
        // At rest for over a second: the kernel caches the file's attributes again.
        std::thread::sleep(Duration::from_millis(1200));
        for _ in 0..2 {
            let bytes = std::fs::read(&file).expect("read properties.json");
            assert_eq!(std::fs::metadata(&file).expect("stat").len(), bytes.len() as u64);
        }
        // When another client sets longer, then shorter data,
        zk.set("/svc", data.as_bytes());
        ino.wait_for(SOON, "IN_MODIFY", |e| e.is(MODIFY, "properties.json"));
        // then right after the event `stat` gives the size of what a read returns, and
        // that is the new document: no kept page or size of the old one is used.
        let size = std::fs::metadata(&file).expect("stat").len();
        let bytes = std::fs::read(&file).expect("read properties.json");
        assert_eq!(size, bytes.len() as u64, "stat and read disagree after the change to {data}");
        let shown: serde_json::Value = serde_json::from_slice(&bytes).expect("one whole JSON document");
        assert_eq!(shown, expected);
    }
}

#[test]
fn a_local_write_gives_its_own_events_once_and_no_echo() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let mount = Mount::new(&server.connect_string());
    let _ = ls(&mount.join("svc/providers"));
    let _ = cat_json(&mount.join("svc/properties.json"));
    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc"));
    ino.watch(&mount.join("svc/providers"));

    sh_ok(&format!(r#"echo '{{"a": 1}}' >> {}"#, q(&mount.join("svc/properties.json"))));
    sh_ok(&format!("touch {}", q(&mount.join("svc/providers/h:1"))));
    sh_ok(&format!("mkdir {}", q(&mount.join("svc/d"))));
    sh_ok(&format!("rmdir {}", q(&mount.join("svc/d"))));
    sh_ok(&format!("rm {}", q(&mount.join("svc/providers/h:1"))));
    let events = ino.collect(Duration::from_millis(800));
    let count = |mask: u32, name: &str| events.iter().filter(|e| e.is(mask, name)).count();
    assert_eq!(count(MODIFY, "properties.json"), 1, "{events:?}");
    assert_eq!(count(CLOSE_WRITE, "properties.json"), 1, "{events:?}");
    assert_eq!(count(CREATE, "h:1"), 1, "{events:?}");
    assert_eq!(count(DELETE, "h:1"), 1, "{events:?}");
    assert_eq!(count(CREATE | ISDIR, "d"), 1, "{events:?}");
    assert_eq!(count(DELETE | ISDIR, "d"), 1, "{events:?}");
    assert_eq!(zk.get_json("/svc"), json!({"a": 1}));
}

#[test]
fn a_read_only_mount_still_delivers_every_event() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let mount = Mount::with_options(&server.connect_string(), "ro");
    let _ = ls(&mount.join("svc/providers"));
    let _ = cat_json(&mount.join("svc/properties.json"));
    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc"));
    ino.watch(&mount.join("svc/providers"));
    zk.create_ephemeral("/svc/providers/h:2", b"");
    ino.wait_for(SOON, "IN_CREATE on a ro mount", |e| e.is(CREATE, "h:2"));
    zk.set("/svc", br#"{"x": 1}"#);
    ino.wait_for(SOON, "IN_MODIFY on a ro mount", |e| e.is(MODIFY, "properties.json"));
    assert_eq!(cat_json(&mount.join("svc/properties.json")), json!({"x": 1}));
    zk.delete("/svc/providers/h:2");
    ino.wait_for(SOON, "IN_DELETE on a ro mount", |e| e.is(DELETE, "h:2"));
    // And it still refuses changes.
    let r = shell::sh(&format!("touch {}", q(&mount.join("svc/providers/h:3"))));
    assert!(!r.ok && r.stderr.contains("Read-only"), "{}", r.stderr);
    assert!(!zk.exists("/svc/providers/h:3"));
}

#[test]
fn a_burst_of_500_remote_registrations_gives_500_in_create() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let mount = Mount::new(&server.connect_string());
    let _ = ls(&mount.join("svc/providers"));
    let mut ino = Inotify::new();
    ino.watch(&mount.join("svc/providers"));

    // Pipelined: zookeeper-client sends each request when its future is created.
    let client = zk.client().clone();
    zk.block_on(async move {
        let opts = zookeeper_client::CreateMode::Ephemeral.with_acls(zookeeper_client::Acls::anyone_all());
        let paths: Vec<String> = (0..500).map(|i| format!("/svc/providers/10.1.{}.{}:80", i / 250, i % 250)).collect();
        let futures: Vec<_> = paths.iter().map(|p| client.create(p, b"", &opts)).collect();
        for f in futures {
            f.await.expect("create");
        }
    });
    let mut created = std::collections::BTreeSet::new();
    wait_until(Duration::from_secs(20), "500 IN_CREATE events", || {
        for e in ino.collect(Duration::from_millis(50)) {
            if e.mask & CREATE != 0 {
                assert!(created.insert(e.name.clone()), "IN_CREATE for {} twice", e.name);
            }
        }
        created.len() >= 500
    });
    assert_eq!(created.len(), 500);
    assert_eq!(ls(&mount.join("svc/providers")).len(), 501);
    // Nothing more arrives.
    assert!(ino.collect(Duration::from_millis(300)).iter().all(|e| e.mask & CREATE == 0));
}
