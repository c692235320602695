//! systemd readiness: with `$NOTIFY_SOCKET` set, as systemd sets it for a
//! `Type=notify` service (zkfs@.service), zkfs sends `READY=1` only once the mount is
//! in the mount table and answers, and sends nothing of the kind when it cannot mount.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::send_signal;
use common::{force_unmount, free_port, is_fuse_mounted, is_mounted, Zk, ZkServer};
use nix::sys::signal::Signal;

const ZKFS: &str = env!("CARGO_BIN_EXE_zkfs");
/// How long zkfs may take to mount and notify.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// `zkfs -f` started with `NOTIFY_SOCKET`; dropping it stops zkfs and unmounts.
struct Notified {
    child: Option<Child>,
    mountpoint: PathBuf,
    // Removed only once nothing is mounted on it (see Drop).
    dir: Option<tempfile::TempDir>,
}

impl Notified {
    fn start(connect: &str, notify_socket: &str) -> Notified {
        let dir = tempfile::Builder::new().prefix("zkfs-test-notify-").tempdir().expect("tempdir");
        let mountpoint = dir.path().canonicalize().expect("canonical mountpoint");
        let child = Command::new(ZKFS)
            .args(["-f", "-o", "session_timeout=4", connect])
            .arg(&mountpoint)
            .env("NOTIFY_SOCKET", notify_socket)
            .env("RUST_LOG", "zkfs=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn zkfs");
        Notified { child: Some(child), mountpoint, dir: Some(dir) }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for zkfs to exit by itself; its exit code.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Notified {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        force_unmount(&self.mountpoint);
        if is_mounted(&self.mountpoint) {
            // Removing the directory would delete through the mount: leak it.
            if let Some(dir) = self.dir.take() {
                std::mem::forget(dir);
            }
        }
    }
}

/// Receives datagrams until one contains `READY=1` and runs `at_ready` at that
/// instant; returns every message received.
fn until_ready(socket: &UnixDatagram, mut at_ready: impl FnMut(&str)) -> Vec<String> {
    socket.set_read_timeout(Some(READY_TIMEOUT)).expect("timeout");
    let mut messages = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no READY=1 within {READY_TIMEOUT:?}: {e}"));
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        let ready = message.lines().any(|l| l == "READY=1");
        if ready {
            at_ready(&message);
        }
        messages.push(message);
        if ready {
            return messages;
        }
    }
}

/// What the mount answers at `mountpoint`, checked from the moment READY=1 arrives.
fn assert_serving(mountpoint: &Path, zkfs_pid: u32, message: &str) {
    // Checked first, before anything else could let the mount catch up.
    assert!(is_fuse_mounted(mountpoint), "READY=1 arrived before the mount was in the mount table");
    let data = std::fs::read_to_string(mountpoint.join("app/properties.json"))
        .unwrap_or_else(|e| panic!("READY=1 arrived but the mount does not answer: {e}"));
    assert!(data.contains("\"threads\": 2"), "{data}");
    assert!(message.lines().any(|l| l == format!("MAINPID={zkfs_pid}")), "{message}");
    assert!(message.lines().any(|l| l.starts_with("STATUS=mounted ")), "{message}");
}

#[test]
fn ready_arrives_once_the_mount_is_in_the_mount_table_and_answers() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/app", br#"{"threads": 2}"#);
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");

    let mut zkfs = Notified::start(&server.connect_string(), socket_path.to_str().expect("utf-8"));
    let pid = zkfs.pid();
    let mountpoint = zkfs.mountpoint.clone();
    let mut checked = false;
    let messages = until_ready(&socket, |message| {
        assert_serving(&mountpoint, pid, message);
        checked = true;
    });
    assert!(checked);
    assert_eq!(messages.len(), 1, "{messages:?}");

    // Stopping: zkfs unmounts and says so.
    send_signal(pid, Signal::SIGTERM);
    assert_eq!(zkfs.wait_exit(Duration::from_secs(10)), Some(0));
    let mut buf = [0u8; 256];
    socket.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let n = socket.recv(&mut buf).expect("STOPPING=1 after the unmount");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(!is_mounted(&mountpoint));
}

#[test]
fn ready_reaches_an_abstract_socket() {
    let server = ZkServer::start();
    Zk::connect(&server.connect_string()).create("/app", br#"{"threads": 2}"#);
    let name = format!("zkfs-test-notify-{}-{}", std::process::id(), free_port());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).expect("name")).expect("bind");
    let zkfs = Notified::start(&server.connect_string(), &format!("@{name}"));
    let (pid, mountpoint) = (zkfs.pid(), zkfs.mountpoint.clone());
    until_ready(&socket, |message| assert_serving(&mountpoint, pid, message));
}

#[test]
fn no_ready_when_the_ensemble_is_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    let nothing_listens = format!("127.0.0.1:{}", free_port());
    let mut zkfs = Notified::start(&nothing_listens, socket_path.to_str().expect("utf-8"));
    assert_eq!(zkfs.wait_exit(Duration::from_secs(30)), Some(1), "zkfs should give up and exit 1");
    assert!(!is_mounted(&zkfs.mountpoint));
    socket.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 256];
    match socket.recv(&mut buf) {
        Ok(n) => panic!("zkfs notified although it did not mount: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
}
