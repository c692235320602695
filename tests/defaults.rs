//! SPEC "Mounting" and "The tree": secure defaults, and a mount that recovers from
//! what is left behind — `allow_other` safe by default, `/zookeeper` read-only, a
//! dead mount replaced, a background mount never silent, a closed stdout no panic,
//! a deleted chroot reported.

mod common;
mod shell;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{force_unmount, is_fuse_mounted, wait_until, BackgroundMount, Mount, Zk, ZkServer};
use shell::{q, sh, sh_ok};

const ZKFS: &str = env!("CARGO_BIN_EXE_zkfs");

fn as_nobody(cmd: &str) -> shell::Ran {
    sh(&format!("setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c '{}'", cmd.replace('\'', "'\\''")))
}

#[test]
fn allow_other_alone_lets_other_users_read_but_change_nothing() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"a": 1}"#);
    let mount = Mount::with_options(&server.connect_string(), "allow_other");
    let opts = sh_ok(&format!("findmnt -n -o OPTIONS {}", q(mount.path())));
    assert!(opts.contains("default_permissions"), "{opts}");

    let r = as_nobody(&format!("cat {}", q(&mount.join("svc/properties.json"))));
    assert!(r.ok && r.stdout.contains("\"a\": 1"), "{}", r.stderr);
    for cmd in [
        format!(r#"echo '{{"b": 2}}' >> {}"#, q(&mount.join("svc/properties.json"))),
        format!("touch {}", q(&mount.join("svc/10.0.0.1:80"))),
        format!("mkdir {}", q(&mount.join("svc/x"))),
    ] {
        let r = as_nobody(&cmd);
        assert!(!r.ok && r.stderr.contains("Permission denied"), "{cmd}: {}", r.stderr);
    }
    assert_eq!(zk.get_string("/svc").unwrap(), r#"{"a": 1}"#);
    assert!(zk.children("/svc").is_empty());
}

#[test]
fn no_default_permissions_is_the_explicit_opt_out() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", b"{}");
    let mount = Mount::with_options(&server.connect_string(), "allow_other,no_default_permissions");
    let opts = sh_ok(&format!("findmnt -n -o OPTIONS {}", q(mount.path())));
    assert!(!opts.contains("default_permissions"), "{opts}");
    let r = as_nobody(&format!(r#"echo '{{"b": 2}}' >> {}"#, q(&mount.join("svc/properties.json"))));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(zk.get_string("/svc").unwrap(), r#"{"b":2}"#);
}

#[test]
fn the_examples_never_use_allow_other_without_default_permissions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["README.md", "contrib/systemd/mnt-zk.mount", "contrib/systemd/example.conf"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for line in text.lines().filter(|l| l.contains("allow_other")) {
            // Option lists are comma-separated words: check each list that has allow_other.
            let lists = line.split_whitespace().filter(|w| w.split(',').filter(|o| !o.is_empty()).count() > 1);
            for word in lists.filter(|w| w.split([',', '=']).any(|o| o == "allow_other")) {
                let opts: Vec<&str> = word.split([',', '=']).collect();
                assert!(
                    opts.contains(&"default_permissions") || opts.contains(&"no_default_permissions"),
                    "{file}: {line:?} uses allow_other without saying default_permissions"
                );
            }
        }
    }
}

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn zookeepers_own_subtree_is_read_only() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let quota = zk.get("/zookeeper/quota").unwrap();
    let mount = Mount::new(&server.connect_string());
    let dir = mount.join("zookeeper/quota");
    let props = dir.join("properties.json");

    assert!(std::fs::read(&props).is_ok(), "still readable");
    assert_eq!(props.metadata().unwrap().permissions().mode() & 0o222, 0, "shown read-only");
    let eperm_or_erofs = |e: Option<i32>| matches!(e, Some(libc::EPERM) | Some(libc::EROFS));
    assert!(eperm_or_erofs(errno_of(OpenOptions::new().write(true).truncate(true).open(&props))));
    assert!(eperm_or_erofs(errno_of(OpenOptions::new().append(true).open(&props))));
    assert!(eperm_or_erofs(errno_of(std::fs::create_dir(mount.join("zookeeper/foo")))));
    assert!(eperm_or_erofs(errno_of(std::fs::File::create(dir.join("10.0.0.1:80")))));
    assert!(eperm_or_erofs(errno_of(std::fs::remove_dir(&dir))));
    assert!(eperm_or_erofs(errno_of(std::fs::remove_dir(mount.join("zookeeper")))));
    assert_eq!(zk.get("/zookeeper/quota").unwrap(), quota);
    assert!(!zk.exists("/zookeeper/foo") && !zk.exists("/zookeeper/quota/10.0.0.1:80"));

    // Under a chroot, a node named zookeeper is an ordinary node.
    zk.mkdir_p("/app/zookeeper");
    let chrooted = Mount::new(&format!("{}/app", server.connect_string()));
    sh_ok(&format!("mkdir {}", q(&chrooted.join("zookeeper/x"))));
    assert!(zk.exists("/app/zookeeper/x"));
}

/// A `zkfs -f` on a given mountpoint, killed on drop.
struct Foreground {
    child: Child,
    log: PathBuf,
}

impl Foreground {
    fn start(connect: &str, mountpoint: &Path, log: &Path) -> Foreground {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(ZKFS)
            .args(["-f", connect])
            .arg(mountpoint)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Foreground { child, log: log.to_path_buf() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Unmounts whatever is left on a mountpoint, then removes it.
struct Mountpoint(Option<tempfile::TempDir>);

impl Drop for Mountpoint {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            force_unmount(dir.path());
            if common::is_mounted(dir.path()) {
                std::mem::forget(dir);
            }
        }
    }
}

#[test]
fn a_dead_zkfs_mount_is_replaced_with_a_log_line() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"a": 1}"#);
    let mnt = Mountpoint(Some(tempfile::Builder::new().prefix("zkfs-test-dead-").tempdir().unwrap()));
    let path = mnt.0.as_ref().unwrap().path().to_path_buf();
    let logs = tempfile::tempdir().unwrap();

    let mut first = Foreground::start(&server.connect_string(), &path, &logs.path().join("1"));
    wait_until(Duration::from_secs(15), "the first mount", || is_fuse_mounted(&path));
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let dead = std::fs::metadata(&path).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN), "{dead}");

    let second = Foreground::start(&server.connect_string(), &path, &logs.path().join("2"));
    for _ in 0..150 {
        if std::fs::read_to_string(path.join("svc/properties.json")).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(std::fs::read_to_string(path.join("svc/properties.json")).is_ok(), "{}", second.log());
    assert!(second.log().contains("replaced the dead zkfs mount"), "{}", second.log());
    let stacked = sh_ok(&format!("findmnt -n -o FSTYPE {}", q(&path)));
    assert_eq!(stacked.lines().count(), 1, "the dead mount is gone, not under the new one:\n{stacked}");
}

#[test]
fn a_background_mount_logs_to_its_log_file() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", b"{}");
    let dir = BackgroundMount::new();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("zkfs.log");
    let out = Command::new(ZKFS)
        .arg(server.connect_string())
        .arg(dir.path())
        .arg("-o")
        .arg(format!("log_file={}", log.display()))
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut f = OpenOptions::new().write(true).truncate(true).open(dir.path().join("svc/properties.json")).unwrap();
    assert!(f.write_all(b"[1, 2]").is_err(), "a refused write");
    drop(f);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("mounted") && text.contains("refused write to /svc/properties.json"), "{text}");
}

#[test]
fn a_background_mount_with_nowhere_to_log_says_so() {
    if Path::new("/dev/log").exists() {
        eprintln!("skipped: /dev/log exists here, so the background mount logs to syslog");
        return;
    }
    let server = ZkServer::start();
    let dir = BackgroundMount::new();
    let out = Command::new(ZKFS).arg(server.connect_string()).arg(dir.path()).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("logs nothing") && stderr.contains("log_file="), "{stderr}");
}

/// Runs zkfs with a stdout whose reader is gone (as `| head -1` leaves it).
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
    drop(read_end);
    Command::new(ZKFS).args(args).stdin(Stdio::null()).stdout(Stdio::from(write_end)).output().unwrap()
}

#[test]
fn a_closed_stdout_is_no_panic() {
    let server = ZkServer::start();
    let mount = Mount::new(&server.connect_string());
    let path = mount.path().to_str().unwrap();
    for args in [&["status", path][..], &["--help"], &["--version"]] {
        let out = with_closed_stdout(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
    let r = sh(&format!("{ZKFS} status {} | head -1", q(mount.path())));
    assert!(r.ok && r.stderr.is_empty() && r.stdout.lines().count() == 1, "{}", r.stderr);
}

#[test]
fn a_deleted_chroot_fails_reads_and_status_says_why() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/app", br#"{"old": 1}"#);
    let mount = Mount::new(&format!("{}/app", server.connect_string()));
    let props = mount.join("properties.json");
    assert!(std::fs::read_to_string(&props).unwrap().contains("old"));

    zk.delete("/app");
    wait_until(Duration::from_secs(5), "reads fail", || {
        errno_of(std::fs::read_to_string(&props)) == Some(libc::ENOENT)
    });
    let status = sh_ok(&format!("{ZKFS} status {}", q(mount.path())));
    assert!(status.contains("root: deleted") && status.contains("/app"), "{status}");
    assert!(mount.log().contains("was deleted"), "{}", mount.log());

    zk.create("/app", br#"{"new": 2}"#);
    wait_until(Duration::from_secs(5), "the new node is shown", || {
        std::fs::read_to_string(&props).is_ok_and(|t| t.contains("new"))
    });
    let status = sh_ok(&format!("{ZKFS} status {}", q(mount.path())));
    assert!(status.contains("root: exists"), "{status}");
}
