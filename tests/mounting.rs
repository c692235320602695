//! SPEC "Mounting": foreground and background mounts, clean ends, bad input.

mod common;
mod shell;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::send_signal;
use common::{is_mounted, wait_until, BackgroundMount, Mount, Zk, ZkServer};
use nix::sys::signal::Signal;
use shell::{q, sh, sh_ok};

const ZKFS: &str = env!("CARGO_BIN_EXE_zkfs");

/// Given a mount with a registration, when zkfs gets `signal`, then the mount is gone,
/// zkfs exits 0, and the registration vanished at once (well before the session timeout).
fn registration_vanishes_on(signal: Signal) {
    let zk_server = ZkServer::start();
    let zk = Zk::connect(&zk_server.connect_string());
    zk.mkdir_p("/svc");
    let mut mount = Mount::with_options(&zk_server.connect_string(), "session_timeout=30");
    sh_ok(&format!("touch {}", q(&mount.join("svc/127.0.0.1:8080"))));
    assert!(zk.exists("/svc/127.0.0.1:8080"));

    let started = Instant::now();
    send_signal(mount.pid(), signal);
    let status = mount.wait_exit(Duration::from_secs(10)).expect("zkfs exits after the signal");
    assert!(status.success(), "zkfs exit status {status}; log:\n{}", mount.log());
    assert!(!is_mounted(mount.path()), "still mounted after signal {signal}");
    wait_until(Duration::from_secs(3), "the registration is gone", || !zk.exists("/svc/127.0.0.1:8080"));
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}: the session was not closed", started.elapsed());
}

#[test]
fn sigterm_unmounts_and_closes_the_session() {
    registration_vanishes_on(Signal::SIGTERM);
}

#[test]
fn sigint_unmounts_and_closes_the_session() {
    registration_vanishes_on(Signal::SIGINT);
}

#[test]
fn umount_from_outside_ends_zkfs_and_its_registrations() {
    let zk_server = ZkServer::start();
    let zk = Zk::connect(&zk_server.connect_string());
    let mut mount = Mount::with_options(&zk_server.connect_string(), "session_timeout=30");
    sh_ok(&format!("touch {}", q(&mount.join("10.1.1.1:80"))));
    assert!(zk.exists("/10.1.1.1:80"));
    sh_ok(&format!("fusermount3 -u {}", q(mount.path())));
    let status = mount.wait_exit(Duration::from_secs(10)).expect("zkfs exits when unmounted");
    assert!(status.success());
    wait_until(Duration::from_secs(3), "the registration is gone", || !zk.exists("/10.1.1.1:80"));
}

#[test]
fn without_f_zkfs_returns_once_mounted_and_serves_in_the_background() {
    let zk_server = ZkServer::start();
    let zk = Zk::connect(&zk_server.connect_string());
    let dir = BackgroundMount::new();
    // Options after the positional arguments, as fuse3's mount helper passes them.
    let out = Command::new(ZKFS)
        .arg(zk_server.connect_string())
        .arg(dir.path())
        .args(["-o", "session_timeout=30"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(is_mounted(dir.path()), "zkfs returned before mounting");
    let reg = dir.path().join("127.0.0.1:9000");
    sh_ok(&format!("touch {}", q(&reg)));
    assert!(zk.exists("/127.0.0.1:9000"));
    sh_ok(&format!("fusermount3 -u {}", q(dir.path())));
    wait_until(Duration::from_secs(5), "the daemon closed its session", || !zk.exists("/127.0.0.1:9000"));
}

/// Runs zkfs with `args` (a fresh mountpoint is appended where `MNT` appears) and
/// checks it fails with exactly one line on stderr and leaves nothing mounted.
fn fails_cleanly(args: &[&str], expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().to_str().unwrap();
    for foreground in [false, true] {
        let mut cmd = Command::new(ZKFS);
        if foreground {
            cmd.arg("-f");
        }
        let args: Vec<&str> = args.iter().map(|a| if *a == "MNT" { mnt } else { a }).collect();
        let out = cmd.args(&args).stdin(Stdio::null()).env_remove("RUST_LOG").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?} printed more than one line:\n{stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr:?} does not mention {expect:?}");
        assert!(!is_mounted(dir.path()), "{args:?} left a mount");
    }
}

#[test]
fn bad_invocations_fail_with_one_clear_line_and_mount_nothing() {
    // Nothing listens on port 1.
    fails_cleanly(&["127.0.0.1:1", "MNT"], "cannot connect to ZooKeeper at 127.0.0.1:1");
    fails_cleanly(&["not-a-connect-string", "MNT"], "bad connection string");
    fails_cleanly(&["127.0.0.1:2181", "/nonexistent/zkfs-mnt"], "mountpoint /nonexistent/zkfs-mnt");
    fails_cleanly(&["-o", "bogus", "127.0.0.1:2181", "MNT"], "unknown mount option \"bogus\"");
    fails_cleanly(&["-o", "session_timeout=x", "127.0.0.1:2181", "MNT"], "session_timeout=x");
    fails_cleanly(&["127.0.0.1:2181"], "expected CONNECT and MOUNTPOINT");
}

#[test]
fn a_missing_chroot_is_a_clear_error() {
    let zk_server = ZkServer::start();
    let connect = format!("{}/no/such/chroot", zk_server.connect_string());
    fails_cleanly(&[&connect, "MNT"], "does not exist");
}

#[test]
fn a_chroot_mounts_that_subtree() {
    let zk_server = ZkServer::start();
    let zk = Zk::connect(&zk_server.connect_string());
    zk.mkdir_p("/apps/web/providers");
    let mount = Mount::new(&format!("{}/apps", zk_server.connect_string()));
    assert_eq!(shell::ls(mount.path()), vec!["properties.json", "web"]);
    sh_ok(&format!("touch {}", q(&mount.join("web/providers/h:1"))));
    assert!(zk.exists("/apps/web/providers/h:1"));
}

#[test]
fn help_lists_every_option() {
    let out = sh_ok(&format!("{ZKFS} --help"));
    for option in ["-f", "ro", "rw", "allow_other", "default_permissions", "session_timeout="] {
        assert!(out.contains(option), "--help lacks {option}");
    }
    assert!(sh(&format!("{ZKFS} --version")).stdout.starts_with("zkfs "));
}
