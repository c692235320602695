//! SPEC "Mounting": `mount -t fuse.zkfs CONNECT MOUNTPOINT -o OPTIONS` and fstab lines
//! `CONNECT MOUNTPOINT fuse.zkfs OPTIONS 0 0`, through fuse3's mount helper.
//!
//! What Debian's util-linux (2.38) and fuse3 (3.14) do with them: mount(8) finds no
//! `/sbin/mount.fuse.zkfs` and runs `/sbin/mount.fuse SRC DIR -o OPTS -t fuse.zkfs`
//! (mount.fuse is mount.fuse3) with a sanitised environment: PATH, HOME, SHELL, LD_*…
//! removed. mount.fuse3 drops `user`, `nouser`, `users`, `auto`, `noauto`, `_netdev`,
//! `nofail` (and acts on `setuid=` and `drop_privileges`), appends `dev,suid` unless
//! `nodev`/`nosuid` is given, and runs `/bin/sh -c "'zkfs' 'SRC' 'DIR' '-o' 'OPTS'"`.
//! Without PATH, dash searches /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin,
//! so an installed /usr/local/bin/zkfs is found (scripts/install). mount(8) waits for
//! zkfs, which returns once the filesystem is mounted.
//!
//! A test cannot put the binary under test on that path through the environment, so
//! while these tests run they install `/sbin/mount.fuse.zkfs`: a wrapper that puts
//! `$ZKFS_TEST_PATH` (an ordinary variable, which mount(8) keeps) first in PATH and
//! runs `/sbin/mount.fuse3 "$@" -t fuse.zkfs` — from there on everything is as above.
//! Without ZKFS_TEST_PATH the wrapper changes nothing, so other mounts are unaffected.
//! The last user removes it (a lock in /run counts users across test processes); one
//! left behind by a killed run is harmless and reused. The tests need root, as
//! `mount -t` does.
//!
//! The daemon zkfs leaves behind is reparented to this process (a child subreaper),
//! so a test sees its exit status.

mod common;
mod shell;

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, Once, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::send_signal;
use common::{
    daemon_of, force_unmount, four_letter, is_fuse_mounted, is_mounted, mount_types, mounts_at, wait_until, Zk,
    ZkServer,
};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::prctl::set_child_subreaper;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getuid, Pid};
use shell::{q, sh_ok};

const ZKFS: &str = env!("CARGO_BIN_EXE_zkfs");
/// fuse3's mount helper, which the wrapper below runs.
const MOUNT_FUSE3: &str = "/sbin/mount.fuse3";
/// Where mount(8) looks first for the helper of type `fuse.zkfs`.
const HELPER: &str = "/sbin/mount.fuse.zkfs";
/// The line that marks [`HELPER`] as this test suite's.
const HELPER_MARK: &str = "# zkfs test suite helper (tests/fstab.rs)";
/// Counts the users of [`HELPER`] across processes: each holds a shared lock, and the
/// helper is removed only under an exclusive one.
const HELPER_LOCK: &str = "/run/zkfs-test-mount-helper.lock";
/// How long `mount`/`umount` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the zkfs daemon may take to exit once unmounted.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn helper_script() -> String {
    format!(
        "#!/bin/sh\n\
         {HELPER_MARK}: installed while those tests run and removed after them.\n\
         # mount(8) removes PATH from a helper's environment; put $ZKFS_TEST_PATH first in it,\n\
         # then do what mount(8) does without this file.\n\
         if [ -n \"${{ZKFS_TEST_PATH:-}}\" ]; then\n\
         \x20   PATH=\"$ZKFS_TEST_PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n\
         \x20   export PATH\n\
         fi\n\
         exec {MOUNT_FUSE3} \"$@\" -t fuse.zkfs\n"
    )
}

// ---------------------------------------------------------------------------
// The helper wrapper

struct HelperUsers {
    count: usize,
    lock: Option<Flock<File>>,
}

static HELPER_USERS: Mutex<HelperUsers> = Mutex::new(HelperUsers { count: 0, lock: None });

/// Locks `file` as `how` says, again after a signal interrupts the wait.
fn flock(mut file: File, how: FlockArg) -> Result<Flock<File>, Errno> {
    loop {
        match Flock::lock(file, how) {
            Ok(locked) => return Ok(locked),
            Err((back, Errno::EINTR)) => file = back,
            Err((_, e)) => return Err(e),
        }
    }
}

/// Keeps [`HELPER`] installed while it lives.
struct MountHelper;

impl MountHelper {
    fn install() -> MountHelper {
        assert!(getuid().is_root(), "tests/fstab.rs needs root: it runs mount(8) and writes {HELPER}");
        assert!(Path::new(MOUNT_FUSE3).exists(), "{MOUNT_FUSE3} is missing: run scripts/install-deps (fuse3)");
        let mut users = HELPER_USERS.lock().unwrap_or_else(PoisonError::into_inner);
        if users.count == 0 {
            let lock = shared_lock();
            let script = helper_script();
            match fs::read_to_string(HELPER) {
                Ok(text) if text == script => {}
                Ok(text) if text.contains(HELPER_MARK) => write_helper(&script),
                Err(e) if e.kind() == ErrorKind::NotFound => write_helper(&script),
                Ok(_) => panic!("{HELPER} exists and is not this test suite's; move it away to run tests/fstab.rs"),
                Err(e) => {
                    panic!("{HELPER} exists and is not this test suite's ({e}); move it away to run tests/fstab.rs")
                }
            }
            users.lock = Some(lock);
        }
        users.count += 1;
        MountHelper
    }
}

/// Opens [`HELPER_LOCK`] and takes a shared lock on it. The last user deletes the
/// file (under an exclusive lock), so after locking, check that the file locked is
/// still the one at that path; if it was deleted meanwhile, start again.
fn shared_lock() -> Flock<File> {
    loop {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(HELPER_LOCK)
            .unwrap_or_else(|e| panic!("open {HELPER_LOCK}: {e}"));
        let lock = flock(lock, FlockArg::LockShared).unwrap_or_else(|e| panic!("lock {HELPER_LOCK}: {e}"));
        let locked = lock.metadata().map(|m| m.ino()).ok();
        let at_path = fs::metadata(HELPER_LOCK).map(|m| m.ino()).ok();
        if locked.is_some() && locked == at_path {
            return lock;
        }
    }
}

/// Writes the helper atomically (a concurrent `mount` sees the old or the new one).
fn write_helper(script: &str) {
    let tmp = format!("{HELPER}.{}.tmp", std::process::id());
    fs::write(&tmp, script).unwrap_or_else(|e| panic!("write {tmp}: {e}"));
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod the helper");
    fs::rename(&tmp, HELPER).unwrap_or_else(|e| panic!("rename {tmp} to {HELPER}: {e}"));
}

impl Drop for MountHelper {
    fn drop(&mut self) {
        let mut users = HELPER_USERS.lock().unwrap_or_else(PoisonError::into_inner);
        users.count -= 1;
        if users.count > 0 {
            return;
        }
        if let Some(lock) = users.lock.take() {
            // Only when no other test process holds its shared lock.
            if lock.relock(FlockArg::LockExclusiveNonblock).is_ok() {
                if fs::read_to_string(HELPER).is_ok_and(|t| t.contains(HELPER_MARK)) {
                    let _ = fs::remove_file(HELPER);
                }
                // Nothing left behind: a process waiting for this file re-checks it.
                let _ = fs::remove_file(HELPER_LOCK);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Processes

/// Makes this process the reaper of orphaned descendants, so the zkfs daemon (whose
/// parent exits once mounted) becomes its child and its exit status can be read.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        set_child_subreaper(true).expect("prctl(PR_SET_CHILD_SUBREAPER)");
    });
}

/// Runs a command with the binary under test first on the mount helper's PATH; panics
/// if it runs longer than [`COMMAND_TIMEOUT`]. Returns its status and stderr.
fn run(program: &str, args: &[&str]) -> (ExitStatus, String) {
    become_subreaper();
    let bin_dir = Path::new(ZKFS).parent().expect("the zkfs binary's directory");
    let err_file = tempfile::tempfile().expect("temp file for stderr");
    let mut child = Command::new(program)
        .args(args)
        .env("ZKFS_TEST_PATH", bin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file.try_clone().expect("clone temp file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{program} {}` did not finish within {COMMAND_TIMEOUT:?}", args.join(" "));
        }
        thread::sleep(Duration::from_millis(5));
    };
    let stderr = fs::read(format!("/proc/self/fd/{}", err_file.as_raw_fd())).unwrap_or_default();
    (status, String::from_utf8_lossy(&stderr).into_owned())
}

/// Runs a command and panics with its stderr unless it succeeds.
fn run_ok(program: &str, args: &[&str]) {
    let (status, stderr) = run(program, args);
    assert!(status.success(), "`{program} {}` failed ({status}): {stderr}", args.join(" "));
}

/// Waits up to `timeout` for process `pid` to exit. `Some(Some(status))` when it was
/// this process's child (and is now reaped), `Some(None)` when it exited but was not,
/// `None` while it runs.
fn wait_exit(pid: i32, timeout: Duration) -> Option<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(Some(ExitStatus::from_raw(code << 8))),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(Some(ExitStatus::from_raw(sig as i32))),
            Ok(_) => {}
            Err(_) => {
                // Not our child: gone, or a zombie of someone else's.
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
                if matches!(state, None | Some('Z' | 'X')) {
                    return Some(None);
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------
// Mountpoints

/// A temporary mountpoint for `mount(8)`. Drop detaches whatever is mounted there,
/// ends a zkfs still serving it, and removes the directory (unless still mounted),
/// also when the test panics.
struct MountPoint {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl MountPoint {
    fn new() -> MountPoint {
        let dir = tempfile::Builder::new().prefix("zkfs-fstab-").tempdir().expect("create mountpoint");
        let path = fs::canonicalize(dir.path()).expect("canonicalize mountpoint");
        assert!(!path.to_str().expect("UTF-8 path").contains(char::is_whitespace), "fstab needs no escapes here");
        MountPoint { dir: Some(dir), path }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn str(&self) -> &str {
        self.path.to_str().expect("UTF-8 path")
    }

    fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        let daemon = daemon_of(&self.path);
        force_unmount(&self.path);
        if let Some((pid, _)) = daemon {
            if wait_exit(pid, EXIT_TIMEOUT).is_none() {
                eprintln!("zkfs (pid {pid}) still serves {} after unmounting; killing it", self.path.display());
                send_signal(pid, Signal::SIGKILL);
                let _ = wait_exit(pid, EXIT_TIMEOUT);
            }
        }
        if is_mounted(&self.path) {
            eprintln!("{} is still mounted; leaving it in place", self.path.display());
            std::mem::forget(self.dir.take());
        }
    }
}

/// Checks the mount at `mp` is zkfs's for `connect`, and that fuse3's helper ran the
/// binary under test as `zkfs CONNECT MOUNTPOINT -o OPTIONS` with exactly `options`
/// (in any order). Returns the daemon's pid.
fn check_mounted(mp: &MountPoint, connect: &str, options: &[&str]) -> i32 {
    assert!(is_fuse_mounted(mp.path()), "mount returned before {} was mounted", mp.str());
    let entry = mounts_at(mp.path()).pop().expect("a mount table entry");
    assert_eq!(entry.fstype, "fuse.zkfs", "type in the mount table");
    assert_eq!(entry.source, connect, "source in the mount table");

    let (pid, argv) = daemon_of(mp.path()).expect("a zkfs process serves the mount");
    let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("the daemon's executable");
    assert_eq!(exe, fs::canonicalize(ZKFS).unwrap(), "the mount helper ran another zkfs");
    assert_eq!(argv.len(), 5, "zkfs's argv: {argv:?}");
    assert_eq!(argv[..4], ["zkfs", connect, mp.str(), "-o"], "zkfs's argv: {argv:?}");
    let mut got: Vec<&str> = argv[4].split(',').collect();
    let mut want = options.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "options the mount helper passed: {:?}", argv[4]);
    pid
}

/// `umount MOUNTPOINT`; then the mount is gone, the daemon exits 0 and `registration`
/// (if any) vanishes at once, well before the 5 s session timeout.
fn umount_ends_it(mp: &MountPoint, daemon: i32, zk: &Zk, registration: Option<&str>) {
    let started = Instant::now();
    run_ok("umount", &[mp.str()]);
    assert!(!is_mounted(mp.path()), "{} still mounted after umount", mp.str());
    match wait_exit(daemon, EXIT_TIMEOUT) {
        Some(Some(status)) => assert!(status.success(), "the zkfs daemon exited with {status}"),
        Some(None) => {}
        None => panic!("the zkfs daemon (pid {daemon}) still runs {EXIT_TIMEOUT:?} after umount"),
    }
    if let Some(registration) = registration {
        wait_until(Duration::from_secs(3), "the registration is gone", || !zk.exists(registration));
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}: the session was not closed", started.elapsed());
    }
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn mount_t_fuse_zkfs_mounts_through_fuse3s_helper_and_umount_ends_it() {
    let _helper = MountHelper::install();
    let server = ZkServer::start();
    let connect = server.connect_string();
    let zk = Zk::connect(&connect);
    let mp = MountPoint::new();

    run_ok("mount", &["-t", "fuse.zkfs", &connect, mp.str(), "-o", "session_timeout=5,allow_other"]);
    let daemon = check_mounted(&mp, &connect, &["rw", "session_timeout=5", "allow_other", "dev", "suid"]);
    let kernel_options = mounts_at(mp.path()).pop().expect("a mount table entry").fs_options;
    assert!(kernel_options.iter().any(|o| o == "allow_other"), "kernel options {kernel_options:?}");
    let cons = four_letter(server.port(), "cons").unwrap_or_default();
    assert!(cons.contains("to=5000"), "no session with the 5 s timeout asked for:\n{cons}");

    sh_ok(&format!("touch {}", q(&mp.join("127.0.0.1:80"))));
    let stat = zk.stat("/127.0.0.1:80").expect("touch registered 127.0.0.1:80");
    assert_ne!(stat.ephemeral_owner, 0, "a registration is ephemeral");

    umount_ends_it(&mp, daemon, &zk, Some("/127.0.0.1:80"));
}

#[test]
fn mount_t_fuse_zkfs_with_netdev_and_ro_refuses_changes() {
    let _helper = MountHelper::install();
    let server = ZkServer::start();
    let connect = server.connect_string();
    let zk = Zk::connect(&connect);
    zk.create("/existing", b"x");
    let mp = MountPoint::new();

    run_ok("mount", &["-t", "fuse.zkfs", &connect, mp.str(), "-o", "_netdev,ro,session_timeout=5,allow_other"]);
    // mount.fuse3 drops _netdev (mount(8) keeps it in /run/mount/utab).
    let daemon = check_mounted(&mp, &connect, &["ro", "session_timeout=5", "allow_other", "dev", "suid"]);
    assert!(mp.join("existing").is_dir(), "the tree is shown");

    let err = File::create(mp.join("127.0.0.1:80")).expect_err("touch on a read-only mount");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "touch: {err}");
    assert!(!zk.exists("/127.0.0.1:80"), "a read-only mount registered");
    let err = fs::remove_dir(mp.join("existing")).expect_err("rmdir on a read-only mount");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "rmdir: {err}");
    assert!(zk.exists("/existing"));

    umount_ends_it(&mp, daemon, &zk, None);
}

#[test]
fn fstab_lines_mount_with_mount_a_and_mount_mountpoint() {
    let _helper = MountHelper::install();
    let server = ZkServer::start();
    let connect = server.connect_string();
    let zk = Zk::connect(&connect);
    zk.mkdir_p("/app/web");
    let auto = MountPoint::new();
    let noauto = MountPoint::new();
    let chroot = format!("{connect}/app");
    let fstab_dir = tempfile::tempdir().unwrap();
    let fstab = fstab_dir.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "# <file system>  <mount point>  <type>  <options>  <dump>  <pass>\n\
             {connect}  {}  fuse.zkfs  defaults,_netdev,nofail,allow_other,session_timeout=5  0  0\n\
             {chroot}\t{}\tfuse.zkfs\tnoauto,_netdev,ro\t0\t0\n",
            auto.str(),
            noauto.str()
        ),
    )
    .unwrap();
    let fstab = fstab.to_str().unwrap();

    // `mount -a` mounts the first line (defaults → rw) and skips the noauto one.
    run_ok("mount", &["-a", "--fstab", fstab, "-t", "fuse.zkfs"]);
    let daemon = check_mounted(&auto, &connect, &["rw", "allow_other", "session_timeout=5", "dev", "suid"]);
    assert!(!is_mounted(noauto.path()), "mount -a mounted a noauto line");
    // Again: already mounted, nothing more.
    run_ok("mount", &["-a", "--fstab", fstab, "-t", "fuse.zkfs"]);
    assert_eq!(mount_types(auto.path()).len(), 1, "mount -a mounted it twice");
    assert_eq!(daemon_of(auto.path()).map(|(pid, _)| pid), Some(daemon));

    // `mount MOUNTPOINT` mounts a line by its mountpoint, noauto or not.
    run_ok("mount", &["--fstab", fstab, noauto.str()]);
    let ro_daemon = check_mounted(&noauto, &chroot, &["ro", "dev", "suid"]);
    assert!(noauto.join("web").is_dir(), "the chroot's subtree is shown");
    assert!(!noauto.join("app").exists() && !noauto.join("zookeeper").exists(), "the chroot is not applied");
    let err = File::create(noauto.join("web/127.0.0.1:81")).expect_err("touch on a read-only mount");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "touch: {err}");

    sh_ok(&format!("touch {}", q(&auto.join("app/web/127.0.0.1:80"))));
    assert!(zk.exists("/app/web/127.0.0.1:80"));
    wait_until(Duration::from_secs(5), "the read-only mount shows the registration", || {
        noauto.join("web/127.0.0.1:80").exists()
    });

    umount_ends_it(&auto, daemon, &zk, Some("/app/web/127.0.0.1:80"));
    umount_ends_it(&noauto, ro_daemon, &zk, None);
}
