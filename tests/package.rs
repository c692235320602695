//! The Debian package, as an administrator meets it: built by `scripts/package`
//! (cargo-deb), inspected with `dpkg-deb`, installed into this machine with `dpkg -i`,
//! used — `/usr/bin/zkfs --help`, `man zkfs`, the bash completion, the systemd unit,
//! a mount through `mount -t fuse.zkfs` — then purged, leaving no file behind. The
//! mount is made in a mount namespace of its own (`unshare`), where `/usr/local/bin`
//! is empty as on a fresh Debian, so a `zkfs` installed there by `scripts/install`
//! cannot stand in for the package's.
//!
//! Needs root (dpkg, mount). The package is built once per target directory: the
//! first run compiles zkfs in release mode (and, on a machine without cargo-deb,
//! `cargo install cargo-deb` first); later runs repack it in seconds. `ZKFS_DEB=PATH`
//! tests a package built elsewhere instead.
//!
//! Whatever fails, a guard purges the package and unmounts. The test refuses to run
//! where a zkfs package it did not install is present, rather than replace it; a
//! package left by a killed run of this test (marked in the temporary directory) is
//! purged first.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::send_signal;
use common::{Zk, ZkServer};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const PACKAGE: &str = "zkfs";
/// How long to wait for another dpkg or apt to release dpkg's lock.
const DPKG_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Marks a package installed by this test, so that a later run knows it may purge it.
fn marker() -> PathBuf {
    std::env::temp_dir().join("zkfs-package-test.installed")
}

fn output(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a dpkg command, waiting while another dpkg or apt holds its lock.
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + DPKG_LOCK_TIMEOUT;
    loop {
        let out = output("dpkg", args);
        let locked = !out.status.success() && text(&out.stderr).contains("lock");
        if !locked || Instant::now() >= deadline {
            return out;
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// `dpkg-query`'s status of the package ("install ok installed"), or "" when unknown.
fn package_status() -> String {
    text(&output("dpkg-query", &["-W", "-f=${Status}", PACKAGE]).stdout)
}

/// Builds the package with scripts/package and returns its path; with `ZKFS_DEB` set,
/// tests that package instead (one built elsewhere, e.g. by a release job).
fn build() -> PathBuf {
    if let Some(deb) = std::env::var_os("ZKFS_DEB") {
        return PathBuf::from(deb);
    }
    let started = Instant::now();
    let out = Command::new(root().join("scripts/package"))
        .current_dir(root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/package");
    assert!(out.status.success(), "scripts/package failed: {}", text(&out.stdout));
    let stdout = text(&out.stdout);
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert!(deb.is_file(), "scripts/package printed no package: {stdout}");
    eprintln!("scripts/package built {} in {:.1?}", deb.display(), started.elapsed());
    deb
}

/// The package installed by this test; dropping it purges it.
struct Installed;

impl Installed {
    fn install(deb: &Path) -> Installed {
        let status = package_status();
        if status.contains("installed") || status.contains("config-files") {
            assert!(
                marker().exists(),
                "a zkfs package this test did not install is present ({status}); \
                 purge it (dpkg --purge zkfs) to run tests/package.rs"
            );
            purge();
        }
        // dpkg would overwrite a /usr/bin/zkfs no package owns, and the purge delete it.
        assert!(
            !Path::new("/usr/bin/zkfs").exists(),
            "/usr/bin/zkfs exists and belongs to no zkfs package; move it away to run tests/package.rs"
        );
        fs::write(marker(), deb.display().to_string()).expect("write the marker");
        let guard = Installed;
        let out = dpkg(&["-i", deb.to_str().expect("utf-8 path")]);
        assert!(out.status.success(), "dpkg -i failed: {}{}", text(&out.stdout), text(&out.stderr));
        guard
    }
}

fn purge() {
    let out = dpkg(&["--purge", PACKAGE]);
    if out.status.success() {
        let _ = fs::remove_file(marker());
    } else {
        eprintln!("dpkg --purge {PACKAGE} failed: {}", text(&out.stderr));
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        purge();
    }
}

/// Mounts through `mount -t fuse.zkfs` in the mount namespace `unshare` made, checks
/// the mount from inside and unmounts; prints `key=value` lines for the test. The
/// EXIT trap detaches the mount if a step fails, which ends the daemon.
const MOUNT_SCRIPT: &str = r#"
set -eu
mnt=$1 connect=$2
for d in /usr/local/bin /usr/local/sbin; do
    if [ -d "$d" ]; then mount -t tmpfs -o size=1m,mode=755 zkfs-test-empty "$d"; fi
done
trap 'umount -l "$mnt" 2>/dev/null || true' EXIT
mount -t fuse.zkfs "$connect" "$mnt" -o session_timeout=5
for d in /proc/[0-9]*; do
    first=$(tr '\0' '\n' <"$d/cmdline" 2>/dev/null | head -n 1) || continue
    case $first in zkfs | */zkfs) ;; *) continue ;; esac
    if tr '\0' '\n' <"$d/cmdline" 2>/dev/null | grep -qxF -- "$mnt"; then
        echo "pid=${d#/proc/}"
        echo "exe=$(readlink "$d/exe")"
    fi
done
echo "type=$(awk -v m="$mnt" '$2 == m { print $3 }' /proc/self/mounts)"
echo "data=$(tr -d ' \n' <"$mnt/app/properties.json")"
umount "$mnt"
echo "unmounted=yes"
"#;

/// The daemon of the namespaced mount, if known; dropping it stops it if it still
/// runs (its SIGTERM handler unmounts).
struct Daemon(Option<i32>);

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(pid) = self.0 else { return };
        let ours = fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.to_string_lossy().starts_with("/usr/bin/zkfs"));
        if ours && !wait_gone(pid, Duration::ZERO) {
            send_signal(pid, Signal::SIGTERM);
            if !wait_gone(pid, Duration::from_secs(10)) {
                send_signal(pid, Signal::SIGKILL);
                wait_gone(pid, Duration::from_secs(5));
            }
        }
    }
}

/// Waits until `pid` has exited (reaping it: this process is a child subreaper).
fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let reaped = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            .is_ok_and(|s| matches!(s, WaitStatus::Exited(..) | WaitStatus::Signaled(..)));
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        if reaped || matches!(state, None | Some('Z' | 'X')) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The package's files (not directories), from `dpkg-deb -c`, with their modes.
fn contents(deb: &Path) -> Vec<(String, String)> {
    let out = output("dpkg-deb", &["-c", deb.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "dpkg-deb -c: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| {
            let mode = l.split_whitespace().next()?.to_string();
            let path = l.split_whitespace().last()?.trim_start_matches('.').to_string();
            Some((path, mode))
        })
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    let out = output("dpkg-deb", &["-f", deb.to_str().expect("utf-8 path"), name]);
    text(&out.stdout).trim().to_string()
}

#[test]
fn the_package_installs_serves_a_mount_and_purges_cleanly() {
    assert!(nix::unistd::getuid().is_root(), "tests/package.rs needs root: it runs dpkg -i and mount");
    let deb = build();

    // What is in it.
    assert_eq!(field(&deb, "Package"), PACKAGE);
    assert!(deb.file_name().is_some_and(|n| n.to_string_lossy().starts_with("zkfs_")), "{}", deb.display());
    // The Debian changelog names this version (dpkg and apt show it; lintian requires it).
    let version = field(&deb, "Version");
    let changelog = fs::read_to_string(root().join("contrib/debian/changelog")).expect("read the changelog");
    assert!(
        changelog.starts_with(&format!("zkfs ({version}) ")),
        "contrib/debian/changelog does not start with version {version}: add an entry"
    );
    let depends = field(&deb, "Depends");
    assert!(depends.split(", ").any(|d| d == "fuse3"), "Depends: {depends}");
    let files = contents(&deb);
    let mode = |path: &str| files.iter().find(|(p, _)| p == path).map(|(_, m)| m.as_str());
    assert_eq!(mode("/usr/bin/zkfs"), Some("-rwxr-xr-x"), "{files:?}");
    for path in [
        "/usr/share/man/man8/zkfs.8.gz",
        "/usr/share/bash-completion/completions/zkfs",
        "/usr/lib/systemd/system/zkfs@.service",
        "/usr/share/doc/zkfs/copyright",
        "/usr/share/doc/zkfs/changelog.Debian.gz",
        "/usr/share/doc/zkfs/README.md",
        "/usr/share/doc/zkfs/examples/systemd/mnt-zk.mount",
        "/usr/share/doc/zkfs/examples/systemd/example.conf",
        "/usr/share/doc/zkfs/examples/haproxy/haproxy.cfg.tmpl",
        "/usr/share/doc/zkfs/examples/haproxy/zkfs-template-haproxy.service",
    ] {
        assert_eq!(mode(path), Some("-rw-r--r--"), "{path} in {files:?}");
    }
    // Every example of the source tree is shipped.
    for entry in fs::read_dir(root().join("examples")).expect("examples/") {
        let name = entry.expect("entry").file_name();
        let prefix = format!("/usr/share/doc/zkfs/examples/{}/", name.to_string_lossy());
        assert!(files.iter().any(|(p, _)| p.starts_with(&prefix)), "{prefix} is not in the package");
    }
    // Nothing outside /usr (no configuration file a purge would have to remove), and no
    // /sbin/mount.fuse.zkfs: mount.fuse3 finds /usr/bin/zkfs by itself (see below).
    assert!(files.iter().all(|(p, _)| p.starts_with("/usr/")), "{files:?}");
    // apt could install it here: its dependencies resolve.
    let apt = output("apt-get", &["install", "--simulate", "-q", deb.to_str().expect("utf-8 path")]);
    assert!(apt.status.success(), "apt-get install --simulate: {}{}", text(&apt.stdout), text(&apt.stderr));

    let installed = Installed::install(&deb);
    let listed = text(&output("dpkg", &["-L", PACKAGE]).stdout);
    let installed_files: Vec<&str> = listed.lines().filter(|p| !Path::new(p).is_dir()).collect();
    assert!(installed_files.contains(&"/usr/bin/zkfs"), "{listed}");

    // The installed binary, its man page and its completion.
    let help = output("/usr/bin/zkfs", &["--help"]);
    assert!(help.status.success());
    assert_eq!(text(&help.stdout), zkfs::cli::options::help());
    let man = Command::new("man")
        .arg("zkfs")
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .env_remove("MAN_KEEP_FORMATTING")
        .output()
        .expect("run man (scripts/install-deps installs man-db)");
    assert!(man.status.success(), "man zkfs: {}", text(&man.stderr));
    let page = text(&man.stdout);
    for wanted in ["ZKFS(8)", "session_timeout=SECONDS", "EXIT STATUS", "ENOTEMPTY"] {
        assert!(page.contains(wanted), "man zkfs lacks {wanted}:\n{page}");
    }
    let completion = output("bash", &["-c", "source /usr/share/bash-completion/completions/zkfs && complete -p zkfs"]);
    assert_eq!(text(&completion.stdout).trim(), "complete -F _zkfs zkfs");
    // The unit as systemd reads it (without a running systemd, systemd-analyze still parses it).
    let unit = fs::read_to_string("/usr/lib/systemd/system/zkfs@.service").expect("read the unit");
    assert!(unit.contains("\nType=notify\n") && unit.contains("\nExecStart=/usr/bin/zkfs -f "), "{unit}");
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let verify = output("systemd-analyze", &["verify", "--man=no", "/usr/lib/systemd/system/zkfs@.service"]);
        assert_eq!(text(&verify.stderr), "", "systemd-analyze verify zkfs@.service");
    }

    // A mount as fstab and mount(8) make it, served by the installed binary — in a
    // mount namespace of its own, where /usr/local holds nothing that would shadow
    // /usr/bin/zkfs on sh's default path (as on a fresh Debian; this machine may have
    // a /usr/local/bin/zkfs from scripts/install).
    let server = ZkServer::start();
    Zk::connect(&server.connect_string()).create("/app", br#"{"threads": 2}"#);
    let dir = tempfile::Builder::new().prefix("zkfs-test-pkg-").tempdir().expect("mountpoint");
    let mountpoint = dir.path().canonicalize().expect("canonical mountpoint");
    // The daemon zkfs leaves is reparented here, so the test can see it exit.
    nix::sys::prctl::set_child_subreaper(true).expect("prctl(PR_SET_CHILD_SUBREAPER)");
    let ran = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", MOUNT_SCRIPT, "sh"])
        .arg(&mountpoint)
        .arg(server.connect_string())
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    let report = text(&ran.stdout);
    let value = |key: &str| report.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(String::from);
    let pid: Option<i32> = value("pid").and_then(|p| p.parse().ok());
    let daemon = Daemon(pid);
    assert!(ran.status.success(), "mounting through mount -t fuse.zkfs failed: {report}{}", text(&ran.stderr));
    assert_eq!(value("exe").as_deref(), Some("/usr/bin/zkfs"), "the daemon of the mount: {report}");
    assert_eq!(value("type").as_deref(), Some("fuse.zkfs"), "{report}");
    assert_eq!(value("data").as_deref(), Some(r#"{"threads":2}"#), "{report}");
    assert_eq!(value("unmounted").as_deref(), Some("yes"), "{report}");
    let pid = pid.expect("the daemon's pid");
    assert!(wait_gone(pid, Duration::from_secs(10)), "zkfs did not exit after umount");
    drop(daemon);
    drop(dir);

    // An upgrade — the package installed again: dpkg runs its postinst with the old
    // version — hands every mount the package's binary serves over to the new binary
    // (`zkfs reload`): the mount, its pid and its session stay, and another client
    // never sees the registration gone.
    let zk = Zk::connect(&server.connect_string());
    zk.create("/app/providers", b"");
    let dir = tempfile::Builder::new().prefix("zkfs-test-pkg-").tempdir().expect("mountpoint");
    let mountpoint = dir.path().canonicalize().expect("canonical mountpoint");
    let mounted = output("/usr/bin/zkfs", &[&server.connect_string(), mountpoint.to_str().expect("utf-8")]);
    assert!(mounted.status.success(), "/usr/bin/zkfs: {}", text(&mounted.stderr));
    let status = |key: &str| {
        let out = text(&output("/usr/bin/zkfs", &["status", mountpoint.to_str().expect("utf-8")]).stdout);
        out.lines().find_map(|l| l.strip_prefix(&format!("{key}: ")).map(String::from)).unwrap_or_default()
    };
    let pid: i32 = status("pid").parse().expect("the daemon's pid in zkfs status");
    let daemon = Daemon(Some(pid));
    fs::write(mountpoint.join("app/providers/10.0.0.1:80"), b"").expect("register");
    let session = status("session_id");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer = {
        let (stop, connect) = (std::sync::Arc::clone(&stop), server.connect_string());
        thread::spawn(move || {
            let zk = Zk::connect(&connect);
            let mut gone = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                gone += usize::from(!zk.exists("/app/providers/10.0.0.1:80"));
                thread::sleep(Duration::from_millis(10));
            }
            gone
        })
    };
    let out = dpkg(&["-i", deb.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "dpkg -i (upgrade) failed: {}{}", text(&out.stdout), text(&out.stderr));
    thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let gone = observer.join().expect("observer");
    assert_eq!(gone, 0, "another client saw the registration gone during the upgrade");
    assert_eq!(status("reloads"), "1", "the upgrade reloaded the mount: {}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(status("pid"), pid.to_string());
    assert_eq!(status("session_id"), session);
    assert!(mountpoint.join("app/providers/10.0.0.1:80").exists());
    let unmounted = output("umount", &[mountpoint.to_str().expect("utf-8")]);
    assert!(unmounted.status.success(), "umount: {}", text(&unmounted.stderr));
    assert!(wait_gone(pid, Duration::from_secs(10)), "zkfs did not exit after umount");
    assert!(!zk.exists("/app/providers/10.0.0.1:80"), "the unmount removes the registration");
    drop(daemon);
    drop(dir);

    // Purged: no file of the package is left.
    drop(installed);
    let status = package_status();
    assert!(!status.contains("installed") && !status.contains("config-files"), "still known to dpkg: {status}");
    for path in &installed_files {
        assert!(!Path::new(path).exists(), "{path} is still there after dpkg --purge");
    }
    assert!(!Path::new("/usr/share/doc/zkfs").exists());
    assert!(!marker().exists());
}
