//! `zkfs reload` (README "Upgrading without a flap"): the zkfs serving a mount hands
//! it to the binary installed now, and nothing is dropped: another host sees every
//! registration throughout, flocks stay held and waiting flocks keep waiting, open
//! files keep their version, and no request fails — requests made during the
//! hand-over wait and are answered. Real server, real mounts.

mod common;
mod shell;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::inotify::Inotify;
use common::load::{Holder, Load, Observer};
use common::{wait_until, Mount, Zk, ZkServer};
use shell::{q, sh, sh_ok};

const ZKFS: &str = env!("CARGO_BIN_EXE_zkfs");
const SOON: Duration = Duration::from_secs(5);

fn reload(mount: &Mount) -> shell::Ran {
    reload_path(mount.path())
}

fn status(mount: &Mount, key: &str) -> String {
    let out = sh_ok(&format!("{ZKFS} status {}", q(mount.path())));
    let prefix = format!("{key}: ");
    out.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_default().to_string()
}

#[test]
fn a_reload_under_load_drops_no_registration_no_lock_and_fails_no_request() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    zk.set("/svc", br#"{"n": 0}"#);
    let mut mount = Mount::new(&server.connect_string());
    // Another host, following the providers with inotify.
    let other = Mount::new(&server.connect_string());
    let providers = mount.join("/svc/providers");
    let mut regs: Vec<String> = (1..=8).map(|i| format!("/svc/providers/10.0.0.{i}:80")).collect();
    let mut holders: Vec<Holder> = regs.iter().map(|r| Holder::start(&mount.join(r))).collect();
    sh_ok(&format!("touch {}", q(&mount.join("/svc/providers/10.0.1.1:80"))));
    regs.push("/svc/providers/10.0.1.1:80".into());
    wait_until(SOON, "9 registrations", || regs.iter().all(|r| zk.exists(r)));
    let owner = zk.stat(&regs[0]).unwrap().ephemeral_owner;
    let pid = mount.pid();
    let mut ino = Inotify::new();
    ino.watch(&other.join("/svc/providers"));
    let observer = Observer::start(&server.connect_string(), regs.clone());

    let mut load = Load::new();
    let props = mount.join("/svc/properties.json");
    let p = props.clone();
    load.run("cat", move |_| {
        let text = std::fs::read(&p).map_err(|e| e.to_string())?;
        serde_json::from_slice::<serde_json::Value>(&text).map(drop).map_err(|e| format!("{e}: {text:?}"))
    });
    let d = providers.clone();
    load.run("ls", move |_| {
        let n = std::fs::read_dir(&d).map_err(|e| e.to_string())?.count();
        if n == 10 {
            Ok(())
        } else {
            Err(format!("{n} entries, not 9 registrations and properties.json"))
        }
    });
    let p = props.clone();
    load.run(">>", move |i| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut f, format!(r#"{{"n": {i}}}"#).as_bytes()).map_err(|e| e.to_string())
    });
    let d = providers.clone();
    load.run("stat", move |_| std::fs::metadata(d.join("10.0.0.3:80")).map(drop).map_err(|e| e.to_string()));
    thread::sleep(Duration::from_millis(300));
    for round in 1..=3 {
        let r = reload(&mount);
        assert!(r.ok, "reload {round} failed: {}{}\n{}", r.stdout, r.stderr, mount.log());
        assert!(r.stdout.contains("reloaded"), "{}", r.stdout);
        thread::sleep(Duration::from_millis(300));
    }
    let outcome = load.finish();
    let gone = observer.finish();
    eprintln!(
        "3 reloads under load: {} requests, {} failed, longest {:.1} ms",
        outcome.latencies.len(),
        outcome.errors.len(),
        outcome.longest_ms()
    );
    assert!(outcome.errors.is_empty(), "requests failed across the reloads: {:#?}\n{}", outcome.errors, mount.log());
    assert_eq!(gone, 0, "another client saw a registration gone {gone} times");
    let deleted: Vec<_> =
        ino.collect(Duration::from_millis(500)).into_iter().filter(|e| e.mask & libc::IN_DELETE != 0).collect();
    assert!(deleted.is_empty(), "the other host heard deletions: {deleted:?}");
    assert_eq!(mount.pid(), pid);
    assert!(mount.try_wait().is_none(), "zkfs runs on");
    assert_eq!(status(&mount, "reloads"), "3");
    assert_eq!(zk.stat(&regs[0]).unwrap().ephemeral_owner, owner, "the same session holds the registrations");
    assert_eq!(mount.log().matches("took over").count(), 3, "{}", mount.log());

    // The new image holds the locks the first image saw taken: a holder's exit still
    // removes its registration, and the others stay.
    holders[0].stop();
    wait_until(SOON, "the registration goes with its last lock", || !zk.exists(&regs[0]));
    assert!(zk.exists(&regs[1]), "the other registrations stay");
    // A change made elsewhere after the reloads is heard by the mount.
    zk.create("/svc/providers/10.0.2.1:80", b"");
    wait_until(SOON, "a node made elsewhere is listed", || providers.join("10.0.2.1:80").exists());
    holders.clear();
    mount.unmount();
    wait_until(SOON, "the unmount removes the registrations", || !zk.exists(&regs[8]));
}

#[test]
fn a_waiting_flock_an_open_file_and_a_change_elsewhere_cross_a_reload() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    zk.set("/svc", br#"{"v": 1}"#);
    let mut mount = Mount::new(&server.connect_string());
    let reg = mount.join("/svc/providers/10.0.0.9:80");
    let mut first = Holder::start(&reg);
    wait_until(SOON, "registered", || zk.exists("/svc/providers/10.0.0.9:80"));
    // A second flock on it waits for the first.
    let mut second = Holder::asking(&reg);
    thread::sleep(Duration::from_millis(300));
    assert!(!second.holds(), "the second flock waits");
    let mut old = std::fs::File::open(mount.join("/svc/properties.json")).unwrap();
    let mut ino = Inotify::new();
    ino.watch(&mount.join("/svc/providers"));

    let r = reload(&mount);
    assert!(r.ok, "reload failed: {}\n{}", r.stderr, mount.log());
    zk.set("/svc", br#"{"v": 2}"#);
    zk.create("/svc/providers/10.0.0.10:80", b"");

    ino.wait_for(SOON, "IN_CREATE of a node made elsewhere after the reload", |e| {
        e.is(libc::IN_CREATE, "10.0.0.10:80")
    });
    let mut text = String::new();
    std::io::Read::read_to_string(&mut old, &mut text).unwrap();
    assert!(text.contains("\"v\": 1"), "a file open across the reload reads the version it opened: {text}");
    wait_until(SOON, "a new open reads the new version", || {
        std::fs::read_to_string(mount.join("/svc/properties.json")).unwrap().contains("\"v\": 2")
    });
    assert!(!second.holds(), "the second flock still waits");
    first.stop();
    wait_until(SOON, "the waiting flock is granted once the first goes", || second.holds());
    assert!(zk.exists("/svc/providers/10.0.0.9:80"), "the second lock holds the registration");
    second.stop();
    wait_until(SOON, "the registration goes with the second lock", || !zk.exists("/svc/providers/10.0.0.9:80"));
    mount.unmount();
}

#[test]
fn a_successor_that_cannot_take_the_mount_over_is_refused_and_the_mount_goes_on() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    // The mount runs a copy of zkfs, which the test replaces as an upgrade would.
    let bin = tempfile::tempdir().unwrap();
    let exe: PathBuf = bin.path().join("zkfs");
    std::fs::copy(ZKFS, &exe).unwrap();
    let mut mount = Mount::with_binary(&server.connect_string(), "", &exe);
    sh_ok(&format!("touch {}", q(&mount.join("/svc/providers/10.0.0.1:80"))));
    let session = status(&mount, "session_id");

    let replace = |script: &str| {
        let _ = std::fs::remove_file(&exe);
        std::fs::write(&exe, script).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // A successor of another hand-over format; one that knows no hand-over (an older
    // zkfs: the flag is unknown to it); none at all.
    replace("#!/bin/sh\necho 0\n");
    let r = reload(&mount);
    assert!(!r.ok, "refused");
    assert!(r.stderr.contains("hand-over format \"0\"") && r.stderr.contains("goes on"), "{}", r.stderr);
    replace("#!/bin/sh\necho 'zkfs: unknown flag --handover-format' >&2\nexit 2\n");
    let r = reload(&mount);
    assert!(!r.ok && r.stderr.contains("older than this zkfs"), "{}", r.stderr);
    std::fs::remove_file(&exe).unwrap();
    let r = reload(&mount);
    assert!(!r.ok && r.stderr.contains("cannot run"), "{}", r.stderr);

    assert_eq!(status(&mount, "reload_failures"), "3");
    assert_eq!(status(&mount, "reloads"), "0");
    assert_eq!(status(&mount, "session_id"), session, "the same session");
    assert!(zk.exists("/svc/providers/10.0.0.1:80"), "the registration stays");
    sh_ok(&format!("touch {}", q(&mount.join("/svc/providers/10.0.0.2:80"))));
    assert!(zk.exists("/svc/providers/10.0.0.2:80"), "the mount goes on serving");
    assert!(mount.try_wait().is_none());
    mount.unmount();
    wait_until(SOON, "the unmount removes the registrations", || !zk.exists("/svc/providers/10.0.0.1:80"));
}

#[test]
fn reload_refuses_what_is_no_zkfs_mount_and_a_bogus_handover_mounts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = reload_path(dir.path());
    assert!(!r.ok && r.stderr.contains("is not a zkfs mount"), "{}", r.stderr);
    let r = sh(&format!("{ZKFS} reload"));
    assert!(!r.ok && r.stderr.contains("usage: zkfs reload MOUNTPOINT"), "{}", r.stderr);
    // A hand-over variable that names no descriptors: refused, nothing mounted.
    let server = ZkServer::start();
    for value in ["junk", "7:8", "0:1"] {
        let r = sh(&format!("ZKFS_HANDOVER={value} {ZKFS} -f {} {} 2>&1", server.connect_string(), q(dir.path())));
        assert!(!r.ok, "ZKFS_HANDOVER={value} refused");
        assert!(r.stdout.contains("cannot take the mount over"), "ZKFS_HANDOVER={value}: {}", r.stdout);
        assert!(!common::mounts::is_mounted(dir.path()), "nothing mounted");
    }
}

fn reload_path(p: &Path) -> shell::Ran {
    sh(&format!("{ZKFS} reload {}", q(p)))
}

#[test]
fn a_reload_while_zookeeper_does_not_answer_is_refused_and_works_once_it_does() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let mut mount = Mount::with_options(&server.connect_string(), "ro,session_timeout=4");
    std::fs::metadata(mount.join("/svc/providers")).unwrap();
    server.pause();
    wait_until(Duration::from_secs(10), "the mount sees the server gone", || status(&mount, "state") != "connected");
    let r = reload(&mount);
    server.resume();
    assert!(!r.ok && r.stderr.contains("ZooKeeper does not answer"), "{}", r.stderr);
    wait_until(Duration::from_secs(10), "connected again", || status(&mount, "state") == "connected");
    // A read-only mount reloads as any: still read-only, still serving.
    let r = reload(&mount);
    assert!(r.ok, "{}{}", r.stderr, mount.log());
    assert!(mount.join("/svc/providers").is_dir());
    assert!(std::fs::write(mount.join("/svc/providers/10.0.0.1:80"), b"").is_err(), "still read-only");
    zk.create("/svc/providers/10.0.0.2:80", b"");
    wait_until(SOON, "a change elsewhere reaches the reloaded read-only mount", || {
        mount.join("/svc/providers/10.0.0.2:80").exists()
    });
    mount.unmount();
}

#[test]
fn a_crash_after_a_reload_keeps_the_registrations_as_a_crash_before_one() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let mut mount = Mount::with_options(&server.connect_string(), "session_timeout=10");
    let held = "/svc/providers/10.0.0.1:80";
    let plain = "/svc/providers/10.0.0.2:80";
    let _holder = Holder::start(&mount.join(held));
    sh_ok(&format!("touch {}", q(&mount.join(plain))));
    let r = reload(&mount);
    assert!(r.ok, "{}", r.stderr);
    let observer = Observer::start(&server.connect_string(), vec![held.into(), plain.into()]);
    mount.crash_and_restart();
    thread::sleep(Duration::from_secs(1));
    assert_eq!(observer.finish(), 0, "another client saw a registration gone:\n{}", mount.log());
    assert!(mount.log().contains("resumed session"), "{}", mount.log());
    assert!(mount.join(held).exists() && mount.join(plain).exists());
    mount.unmount();
}
