//! Issue 26, README "The live view": a mount watches what the kernel holds, nothing
//! else. A change to a node no program on the host looks at sends the mount nothing;
//! a node's watch comes with its lookup and goes when the kernel forgets it; an
//! inotify watch (which pins its directory) keeps its events coming; reconnects and
//! expiries lose no event for what the kernel holds. Checked with the server's own
//! account of its watches (`wchc`) and of the packets it sent (`mntr`).

mod common;
mod shell;

use std::collections::BTreeSet;
use std::time::Duration;

use common::inotify::Inotify;
use common::zookeeper::four_letter;
use common::{wait_until, Mount, Zk, ZkServer};
use serde_json::json;
use shell::{cat_json, ls, sh_ok};

const CREATE: u32 = libc::IN_CREATE;
const DELETE: u32 = libc::IN_DELETE;
const MODIFY: u32 = libc::IN_MODIFY;

/// Long enough for a watch no longer wanted to be swept: its grace after its last
/// read (2 s) and a sweep (every 1 s), with room for a loaded machine.
const SWEPT: Duration = Duration::from_secs(15);

/// A `user.zkfs.*` attribute of the mount's root, as `zkfs status` reads it.
fn status(mount: &Mount, name: &str) -> String {
    let path = std::ffi::CString::new(mount.path().as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: both strings are NUL-terminated; the buffer is as long as said.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "getxattr {name:?}: {}", std::io::Error::last_os_error());
    buf.truncate(n as usize);
    String::from_utf8(buf).unwrap()
}

fn session_of(mount: &Mount) -> i64 {
    let id = status(mount, "user.zkfs.session_id");
    i64::from_str_radix(id.trim_start_matches("0x"), 16).unwrap()
}

/// The paths session `session` watches, by the server's `wchc`.
fn watched_by(server: &ZkServer, session: i64) -> BTreeSet<String> {
    let out = four_letter(server.port(), "wchc").expect("wchc answers");
    let mut watched = BTreeSet::new();
    let mut mine = false;
    for line in out.lines() {
        if let Some(path) = line.strip_prefix('\t') {
            if mine {
                watched.insert(path.trim().to_string());
            }
        } else if let Some(id) = line.trim().strip_prefix("0x") {
            mine = i64::from_str_radix(id, 16).ok() == Some(session);
        }
    }
    watched
}

/// `zk_packets_sent` of the server's `mntr`.
fn packets_sent(server: &ZkServer) -> u64 {
    let out = four_letter(server.port(), "mntr").expect("mntr answers");
    out.lines().find_map(|l| l.strip_prefix("zk_packets_sent")?.trim().parse().ok()).expect("zk_packets_sent in mntr")
}

/// Makes the kernel drop what it does not need (no program holds it open, no inotify
/// watch pins it): it FORGETs those inodes.
fn drop_caches() {
    sh_ok("sync; echo 2 > /proc/sys/vm/drop_caches");
}

/// Two services of two registrations each: `a` and `b`.
fn services(zk: &Zk) {
    for svc in ["a", "b"] {
        zk.mkdir_p(&format!("/svc/{svc}/providers"));
        zk.set(&format!("/svc/{svc}"), br#"{"v": 1}"#);
        for host in ["10.0.0.1:80", "10.0.0.2:80"] {
            zk.create_ephemeral(&format!("/svc/{svc}/providers/{host}"), b"");
        }
    }
}

fn under(paths: &BTreeSet<String>, prefix: &str) -> Vec<String> {
    paths.iter().filter(|p| p.as_str() == prefix || p.starts_with(&format!("{prefix}/"))).cloned().collect()
}

#[test]
fn a_change_to_a_node_the_kernel_never_held_sends_the_mount_nothing() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    services(&zk);
    let mount = Mount::new(&server.connect_string());
    let providers = mount.join("svc/a/providers");
    assert_eq!(ls(&providers), vec!["10.0.0.1:80", "10.0.0.2:80", "properties.json"]);
    assert_eq!(cat_json(&mount.join("svc/a/properties.json")), json!({"v": 1}));
    let mut ino = Inotify::new();
    ino.watch(&providers);

    let session = session_of(&mount);
    let watched = watched_by(&server, session);
    assert!(watched.contains("/svc/a/providers"), "the listed directory is watched: {watched:?}");
    assert!(watched.contains("/svc/a"), "the directory whose properties were read is watched: {watched:?}");
    assert_eq!(under(&watched, "/svc/b"), Vec::<String>::new(), "nothing of the other service is watched");
    let count: usize = status(&mount, "user.zkfs.watches").parse().unwrap();
    assert_eq!(count, watched.len(), "zkfs status counts the watches the server holds for it");

    // Changes to the other service: the server sends the writer its answers, and the
    // mount nothing (a few pings aside).
    let changes = 200u64;
    let before = packets_sent(&server);
    for i in 0..changes / 2 {
        zk.set("/svc/b", format!(r#"{{"v": {i}}}"#).as_bytes());
        zk.set("/svc/b/providers/10.0.0.1:80", format!(r#"{{"w": {i}}}"#).as_bytes());
    }
    let sent = packets_sent(&server) - before;
    eprintln!("{sent} packets sent for {changes} changes to a service not looked at; the mount watches {watched:?}");
    assert!(sent < changes + changes / 4, "{sent} packets for {changes} changes nobody here looks at");
    assert_eq!(under(&watched_by(&server, session), "/svc/b"), Vec::<String>::new());

    // A change to the service looked at is heard, as always.
    zk.set("/svc/a/providers/10.0.0.1:80", br#"{"w": 1}"#);
    ino.wait_for(Duration::from_secs(5), "IN_MODIFY of the watched service", |e| e.is(MODIFY, "10.0.0.1:80"));
}

#[test]
fn a_nodes_watch_comes_with_its_lookup_and_goes_when_the_kernel_forgets_it() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    services(&zk);
    let mount = Mount::new(&server.connect_string());
    let session = session_of(&mount);
    // `ls` of a directory reads its entries' names, which looks none of them up.
    let names: Vec<_> = std::fs::read_dir(mount.join("svc")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(under(&watched_by(&server, session), "/svc/b"), Vec::<String>::new(), "listed, not looked up");

    let props = mount.join("svc/b/properties.json");
    assert_eq!(cat_json(&props), json!({"v": 1}));
    assert!(watched_by(&server, session).contains("/svc/b"), "looked up: watched");

    drop_caches();
    wait_until(SWEPT, "the watch of the forgotten directory is removed", || {
        !watched_by(&server, session).contains("/svc/b")
    });
    // Not trusted any more: read afresh when looked up again.
    zk.set("/svc/b", br#"{"v": 2}"#);
    assert_eq!(cat_json(&props), json!({"v": 2}));
    assert!(watched_by(&server, session).contains("/svc/b"), "looked up again: watched again");
}

#[test]
fn an_inotify_watch_keeps_its_directory_heard_after_the_kernel_drops_its_caches() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    services(&zk);
    let mount = Mount::new(&server.connect_string());
    let session = session_of(&mount);
    let providers = mount.join("svc/a/providers");
    let mut ino = Inotify::new();
    ino.watch(&providers);
    let _ = ls(&providers);

    drop_caches();
    // Long enough for every watch no longer wanted to go.
    wait_until(SWEPT, "the directories above are forgotten", || !watched_by(&server, session).contains("/svc/a"));
    assert!(watched_by(&server, session).contains("/svc/a/providers"), "pinned by inotify: still watched");

    zk.create_ephemeral("/svc/a/providers/10.0.0.3:80", b"");
    ino.wait_for(Duration::from_secs(5), "IN_CREATE", |e| e.is(CREATE, "10.0.0.3:80"));
    zk.set("/svc/a/providers/10.0.0.1:80", br#"{"w": 5}"#);
    ino.wait_for(Duration::from_secs(5), "IN_MODIFY of a registration never read", |e| e.is(MODIFY, "10.0.0.1:80"));
    zk.delete("/svc/a/providers/10.0.0.2:80");
    ino.wait_for(Duration::from_secs(5), "IN_DELETE", |e| e.is(DELETE, "10.0.0.2:80"));
    assert_eq!(ls(&providers), vec!["10.0.0.1:80", "10.0.0.3:80", "properties.json"]);
    assert_eq!(cat_json(&providers.join("10.0.0.1:80")), json!({"w": 5}));
}

/// Changes to what the kernel holds made while the mount was away give their events
/// once it is back: `away` takes the mount away and brings it back, calling `meanwhile`
/// in between.
/// Takes a mount away and brings it back, making changes (the last argument) meanwhile.
type Away<'a> = &'a dyn Fn(&mut ZkServer, &Mount, &dyn Fn());

fn nothing_held_is_lost(opts: &str, away: Away<'_>) {
    let mut server = ZkServer::start();
    // A session that outlives a restart of the server.
    let zk = Zk::connect_with_timeout(&server.connect_string(), Duration::from_secs(30));
    // Its session holds the registrations.
    services(&zk);
    let mount = Mount::with_options(&server.connect_string(), opts);
    let providers = mount.join("svc/a/providers");
    let mut ino = Inotify::new();
    ino.watch(&providers);
    ino.watch(&mount.join("svc/a"));
    let _ = ls(&providers);
    assert_eq!(cat_json(&mount.join("svc/a/properties.json")), json!({"v": 1}));

    away(&mut server, &mount, &|| {
        zk.create_ephemeral("/svc/a/providers/10.0.0.3:80", b"");
        zk.set("/svc/a/providers/10.0.0.1:80", br#"{"w": 7}"#);
        zk.delete("/svc/a/providers/10.0.0.2:80");
        zk.set("/svc/a", br#"{"v": 2}"#);
    });

    let soon = Duration::from_secs(15);
    ino.wait_for(soon, "IN_CREATE for the node added meanwhile", |e| e.is(CREATE, "10.0.0.3:80"));
    ino.wait_for(soon, "IN_MODIFY for the registration changed meanwhile", |e| e.is(MODIFY, "10.0.0.1:80"));
    ino.wait_for(soon, "IN_DELETE for the node removed meanwhile", |e| e.is(DELETE, "10.0.0.2:80"));
    ino.wait_for(soon, "IN_MODIFY for the properties changed meanwhile", |e| e.is(MODIFY, "properties.json"));
    assert_eq!(ls(&providers), vec!["10.0.0.1:80", "10.0.0.3:80", "properties.json"]);
    assert_eq!(cat_json(&mount.join("svc/a/properties.json")), json!({"v": 2}));
    wait_until(soon, "the re-read is done", || status(&mount, "user.zkfs.resync") == "idle");

    // And the watches of the session now in use hear what comes next.
    let watched = watched_by(&server, session_of(&mount));
    assert!(watched.contains("/svc/a/providers"), "{watched:?}");
    assert_eq!(under(&watched, "/svc/b"), Vec::<String>::new());
    zk.create_ephemeral("/svc/a/providers/10.0.0.4:80", b"");
    ino.wait_for(Duration::from_secs(5), "IN_CREATE afterwards", |e| e.is(CREATE, "10.0.0.4:80"));
}

/// True while the server has a connection of session `session`.
fn connected(server: &ZkServer, session: i64) -> bool {
    four_letter(server.port(), "cons").is_some_and(|c| c.contains(&format!("sid=0x{session:x}")))
}

#[test]
fn a_session_expiry_loses_no_event_of_what_the_kernel_holds() {
    nothing_held_is_lost("session_timeout=2,resync_window=1", &|server, mount, meanwhile| {
        let old = session_of(mount);
        mount.stop_process();
        wait_until(Duration::from_secs(20), "the frozen mount's session expired", || !connected(server, old));
        meanwhile();
        mount.cont_process();
        wait_until(Duration::from_secs(20), "a new session", || session_of(mount) != old);
    });
}

#[test]
fn a_reconnect_loses_no_event_of_what_the_kernel_holds() {
    nothing_held_is_lost("session_timeout=30,resync_window=1", &|server, mount, meanwhile| {
        let old = session_of(mount);
        let reconnects = status(mount, "user.zkfs.reconnects");
        // A restart drops every connection and keeps the sessions (they are in the
        // server's data): changes made while the mount is frozen reach it by no
        // notification, only by its re-read once it reconnects.
        mount.stop_process();
        server.restart();
        meanwhile();
        mount.cont_process();
        wait_until(Duration::from_secs(30), "the mount reconnected", || {
            status(mount, "user.zkfs.reconnects") != reconnects && status(mount, "user.zkfs.state") == "connected"
        });
        assert_eq!(session_of(mount), old, "the same session");
    });
}

#[test]
fn the_watches_follow_what_the_kernel_holds_not_the_size_of_the_tree() {
    let mut server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    for s in 0..40 {
        zk.mkdir_p(&format!("/svc/s{s}/providers"));
        for h in 1..=5 {
            zk.create_ephemeral(&format!("/svc/s{s}/providers/10.0.0.{h}:80"), b"");
        }
    }
    let mount = Mount::new(&server.connect_string());
    let providers = mount.join("svc/s7/providers");
    // A host interested in one service: lists it, reads its properties, watches it.
    let long = sh_ok(&format!("ls -l {}", shell::q(&providers)));
    assert_eq!(long.lines().filter(|l| l.starts_with('-')).count(), 6, "{long}");
    let _ = cat_json(&mount.join("svc/s7/properties.json"));
    let mut ino = Inotify::new();
    ino.watch(&providers);
    let watched = watched_by(&server, session_of(&mount));
    let wchs = four_letter(server.port(), "wchs").unwrap_or_default();
    eprintln!("tree of 40 services x 5 registrations (281 nodes); the mount watches {watched:?}; wchs: {wchs}");
    // `/`, `/svc`, the service and its providers (one recursive watch for the five
    // registrations): nothing of the 39 other services.
    assert_eq!(
        watched,
        ["/", "/svc", "/svc/s7", "/svc/s7/providers"].into_iter().map(String::from).collect::<BTreeSet<_>>()
    );
    zk.set("/svc/s7/providers/10.0.0.3:80", br#"{"w": 2}"#);
    ino.wait_for(Duration::from_secs(5), "IN_MODIFY of a registration", |e| e.is(MODIFY, "10.0.0.3:80"));

    // After a restart of the server the mount asks again for what it holds, not for
    // the tree: the restarted server's counters start from zero.
    drop(zk);
    let reconnects = status(&mount, "user.zkfs.reconnects");
    server.restart();
    wait_until(Duration::from_secs(30), "the mount reconnected and re-read what it holds", || {
        status(&mount, "user.zkfs.reconnects") != reconnects && status(&mount, "user.zkfs.resync") == "idle"
    });
    std::thread::sleep(Duration::from_secs(1));
    let mntr = four_letter(server.port(), "mntr").unwrap_or_default();
    let received = mntr.lines().find_map(|l| l.strip_prefix("zk_packets_received")).unwrap_or("?").trim().to_string();
    eprintln!("after a restart the server received {received} packets (the mount's requests, pings, this test's mntr)");
    let received: u64 = received.parse().unwrap();
    assert!(received < 60, "{received} requests after a restart, for a mount holding 4 watches in a tree of 281 nodes");
}
