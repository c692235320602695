//! Mounts for the tests: [`Mount`], a running `zkfs -f` on a temporary mountpoint;
//! [`BackgroundMount`], a mountpoint for a zkfs that daemonises itself; and what the
//! mount table says of a path (through the library's `zkfs::kernel::mountinfo`, the one
//! parser of it). Neither fixture ever removes its directory through a live mount.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::Signal;
use tempfile::TempDir;
use zkfs::kernel::mountinfo;

use super::procs::{read_lossy, send_signal};
use super::{require, Needs};

/// How long `zkfs` may take to appear in the mount table.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `zkfs` may take to exit after SIGTERM.
const TERM_TIMEOUT: Duration = Duration::from_secs(10);

/// `path` with its parent resolved (symlinks, `..`) but without touching `path`
/// itself, which may be a dead FUSE mount that fails every access.
fn mount_key(path: &Path) -> PathBuf {
    let path =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().expect("current dir").join(path) };
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf()).join(name),
        _ => path,
    }
}

/// The mounts at `path` per /proc/self/mountinfo (topmost last), read with the
/// library's one parser of the mount table.
pub fn mounts_at(path: &Path) -> Vec<mountinfo::Entry> {
    let key = mount_key(path);
    mountinfo::current().into_iter().filter(|e| e.mount_point == key).collect()
}

/// The filesystem types mounted at `path` (topmost last).
pub fn mount_types(path: &Path) -> Vec<String> {
    mounts_at(path).into_iter().map(|e| e.fstype).collect()
}

/// Whether anything is mounted at `path` (per /proc/self/mountinfo; a dead FUSE
/// mount counts as mounted).
pub fn is_mounted(path: &Path) -> bool {
    !mount_types(path).is_empty()
}

/// Whether a FUSE filesystem is mounted at `path`.
pub fn is_fuse_mounted(path: &Path) -> bool {
    mount_types(path).iter().any(|t| t.starts_with("fuse"))
}

/// Detaches whatever is mounted at `path` (`fusermount3 -u -z`, then umount2
/// with MNT_DETACH as a fallback).
pub fn force_unmount(path: &Path) {
    if !is_mounted(path) {
        return;
    }
    let _ = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if is_mounted(path) {
        let _ = umount2(&mount_key(path), MntFlags::MNT_DETACH);
    }
}

/// A running `zkfs -f` and its mountpoint (a temporary directory).
///
/// Dropping it unmounts (SIGTERM, and SIGKILL plus a lazy unmount if zkfs does not
/// exit within 10 s), then removes the mountpoint and the log.
pub struct Mount {
    child: Option<Child>,
    pid: u32,
    status: Option<ExitStatus>,
    mountpoint: PathBuf,
    // Never removed while still mounted: `remove_dir_all` would delete through the
    // mount, i.e. in ZooKeeper. See `Drop`.
    mount_dir: Option<TempDir>,
    log_path: PathBuf,
    log_dir: TempDir,
    connect: String,
    opts: String,
    env: Vec<(String, String)>,
    /// The zkfs binary it runs.
    exe: PathBuf,
}

/// How zkfs is started: the binary and what is added to its environment.
struct Start<'a> {
    exe: &'a Path,
    env: &'a [(String, String)],
}

/// Starts `EXE -f [-o OPTS] CONNECT MOUNTPOINT` with `env` added to its environment,
/// its output appended to `log_path`.
fn spawn_zkfs(start: Start<'_>, connect: &str, opts: &str, mountpoint: &Path, log_path: &Path) -> Child {
    let Start { exe, env } = start;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("open zkfs log");
    let log2 = log.try_clone().expect("clone log file");
    let mut cmd = Command::new(exe);
    cmd.arg("-f");
    if !opts.is_empty() {
        cmd.arg("-o").arg(opts);
    }
    cmd.arg(connect).arg(mountpoint).envs(env.iter().cloned()).stdin(Stdio::null()).stdout(log).stderr(log2);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "zkfs=debug");
    }
    // A binary just copied (tests/reload.rs) may be busy for a moment: another thread
    // of the test forked while the copy's descriptor was open (ETXTBSY).
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            spawned => return spawned.expect("spawn zkfs"),
        }
    }
}

impl Mount {
    /// Mounts `connect` with no `-o` options; see [`Mount::with_options`].
    pub fn new(connect: &str) -> Mount {
        Mount::with_options(connect, "")
    }

    /// Runs `zkfs -f [-o OPTS] CONNECT MOUNTPOINT` on a fresh temporary mountpoint
    /// and waits (≤15 s) until the mount shows up in /proc/self/mountinfo.
    /// `opts` is the `-o` argument (`"ro,session_timeout=4"`); empty means none.
    /// zkfs logs with `RUST_LOG=zkfs=debug` unless `RUST_LOG` is set already.
    /// Panics with zkfs's output if it exits before mounting.
    pub fn with_options(connect: &str, opts: &str) -> Mount {
        Mount::with_env(connect, opts, &[])
    }

    /// [`Mount::with_options`], with `env` added to zkfs's environment (a Kerberos
    /// realm's `KRB5_CONFIG`, say).
    pub fn with_env(connect: &str, opts: &str, env: &[(String, String)]) -> Mount {
        Mount::starting(connect, opts, Start { exe: Path::new(env!("CARGO_BIN_EXE_zkfs")), env })
    }

    /// [`Mount::with_options`], running the zkfs binary at `exe` (a copy, say, that a
    /// test then replaces, as a package upgrade does).
    pub fn with_binary(connect: &str, opts: &str, exe: &Path) -> Mount {
        Mount::starting(connect, opts, Start { exe, env: &[] })
    }

    fn starting(connect: &str, opts: &str, start: Start<'_>) -> Mount {
        let (exe, env) = (start.exe.to_path_buf(), start.env.to_vec());
        require(Needs::Fuse);
        let mount_dir = tempfile::Builder::new().prefix("zkfs-test-mnt-").tempdir().expect("create temp mountpoint");
        let mountpoint = mount_key(mount_dir.path());
        let log_dir = tempfile::Builder::new().prefix("zkfs-test-log-").tempdir().expect("create temp log dir");
        let log_path = log_dir.path().join("zkfs.log");
        let child = spawn_zkfs(start, connect, opts, &mountpoint, &log_path);
        let pid = child.id();
        let mut mount = Mount {
            child: Some(child),
            pid,
            status: None,
            mountpoint,
            mount_dir: Some(mount_dir),
            log_path,
            log_dir,
            connect: connect.to_string(),
            opts: opts.to_string(),
            env,
            exe,
        };
        mount.wait_mounted();
        mount
    }

    /// A crash and a restart: SIGKILL, leaving the dead mount in place, then zkfs
    /// started again on the same mountpoint with the same options (as systemd's
    /// `Restart=on-failure` does); waits until it is mounted.
    pub fn crash_and_restart(&mut self) {
        self.crash();
        self.restart();
    }

    /// SIGKILL, leaving the dead mount in place (see [`Mount::crash_and_restart`]).
    pub fn crash(&mut self) {
        self.kill_process();
    }

    /// zkfs started again on the same mountpoint after [`Mount::crash`].
    pub fn restart(&mut self) {
        // The dead mount stays listed, and the kernel may answer a stat of it from its
        // cache: mounted again is when the new process says so.
        let mounted = |log: &str| log.matches("] mounted ").count();
        let before = mounted(&self.log());
        let start = Start { exe: &self.exe, env: &self.env };
        let child = spawn_zkfs(start, &self.connect, &self.opts, &self.mountpoint, &self.log_path);
        self.pid = child.id();
        self.child = Some(child);
        self.status = None;
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        while mounted(&self.log()) == before {
            if let Some(status) = self.try_wait() {
                panic!("the restarted zkfs exited ({status}) before mounting; its output:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the restarted zkfs did not mount within {MOUNT_TIMEOUT:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(5));
        }
        self.wait_mounted();
    }

    /// Waits until zkfs serves the mountpoint; panics with its log if it exits or
    /// does not mount within [`MOUNT_TIMEOUT`].
    fn wait_mounted(&mut self) {
        let connect = self.connect.clone();
        let mount = self;
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        // After a crash the dead mount is still listed (its stat fails: ENOTCONN).
        while !(is_fuse_mounted(&mount.mountpoint) && fs::metadata(&mount.mountpoint).is_ok()) {
            if let Some(status) = mount.try_wait() {
                panic!(
                    "zkfs exited ({status}) before mounting {connect} at {}; its output:\n{}",
                    mount.mountpoint.display(),
                    mount.log()
                );
            }
            if Instant::now() >= deadline {
                let log = mount.log();
                mount.kill9();
                panic!(
                    "zkfs did not mount {connect} at {} within {MOUNT_TIMEOUT:?}; its output:\n{log}",
                    mount.mountpoint.display()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// `rel` under the mountpoint (`rel` may start with `/`).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        self.mountpoint.join(rel.strip_prefix("/").unwrap_or(rel))
    }

    /// The zkfs process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// zkfs's output (stdout and stderr) so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path).unwrap_or_default()
    }

    /// The exit status if zkfs has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.status = Some(status);
                    self.child = None;
                }
            }
        }
        self.status
    }

    /// Waits up to `timeout` for zkfs to exit by itself (after `fusermount3 -u`,
    /// say); its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM (and SIGCONT, in case it is stopped) and waits ≤10 s for zkfs
    /// to exit; returns its exit status, `None` if it still runs. Does nothing else:
    /// a test of a clean shutdown checks [`is_mounted`] afterwards.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            send_signal(self.pid, Signal::SIGTERM);
            send_signal(self.pid, Signal::SIGCONT);
        }
        self.wait_exit(TERM_TIMEOUT)
    }

    /// Stops zkfs and makes sure nothing stays mounted: SIGTERM and ≤10 s for it to
    /// exit, SIGKILL if it did not, then `fusermount3 -u -z` if the mount is still
    /// there. Idempotent. Returns zkfs's exit status.
    pub fn unmount(&mut self) -> Option<ExitStatus> {
        if self.terminate().is_none() {
            eprintln!("zkfs (pid {}) ignored SIGTERM for {TERM_TIMEOUT:?}; killing it", self.pid);
            self.kill_process();
        }
        force_unmount(&self.mountpoint);
        self.status
    }

    /// Kills zkfs with SIGKILL (a crash), then lazily unmounts the dead mount.
    pub fn kill9(&mut self) {
        self.kill_process();
        force_unmount(&self.mountpoint);
    }

    /// SIGKILL and reap, leaving any mount in place.
    fn kill_process(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.status = Some(status);
            }
        }
    }

    /// Freezes zkfs (SIGSTOP): requests to the mount block until
    /// [`Mount::cont_process`].
    pub fn stop_process(&self) {
        if self.child.is_some() {
            send_signal(self.pid, Signal::SIGSTOP);
        }
    }

    /// Lets a frozen zkfs run again (SIGCONT).
    pub fn cont_process(&self) {
        if self.child.is_some() {
            send_signal(self.pid, Signal::SIGCONT);
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.unmount();
        if is_mounted(&self.mountpoint) {
            // Removing the directory now would delete through the mount: leak it.
            eprintln!("{} is still mounted; leaving it in place", self.mountpoint.display());
            if let Some(dir) = self.mount_dir.take() {
                std::mem::forget(dir);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Background mounts (zkfs without -f)

/// A temporary mountpoint for a zkfs that daemonises itself. Dropping it unmounts
/// lazily if still mounted — which ends the daemon — before the directory goes.
pub struct BackgroundMount {
    dir: Option<TempDir>,
}

impl BackgroundMount {
    /// A fresh empty mountpoint.
    pub fn new() -> BackgroundMount {
        BackgroundMount {
            dir: Some(tempfile::Builder::new().prefix("zkfs-test-bg-").tempdir().expect("temp mountpoint")),
        }
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }
}

impl Drop for BackgroundMount {
    fn drop(&mut self) {
        force_unmount(self.path());
        if is_mounted(self.path()) {
            // Removing it now would delete through the mount: leak it.
            if let Some(dir) = self.dir.take() {
                std::mem::forget(dir);
            }
        }
    }
}
