//! `zkfs reload`: a new zkfs binary takes over a running mount, and nothing is
//! dropped — not the mount, not the ZooKeeper session (so no registration leaves
//! ZooKeeper), not an open file, not a flock, not a request.
//!
//! # How
//!
//! The process replaces its own image (`execve`), the way nginx and systemd re-execute
//! themselves: the pid stays (systemd's main pid, the parent of nothing else), and so
//! does everything the kernel ties to the process's descriptors. On SIGUSR2
//! (`zkfs reload MOUNTPOINT` sends it; so does `systemctl reload`):
//!
//! 1. The successor — the binary at the path this zkfs was started from, which a
//!    package upgrade has replaced — is asked which hand-over format it reads
//!    (`zkfs --handover-format`). Another format, or no answer: refused, with the
//!    reason in `zkfs status` (`last_reload_failure`) and the log; nothing changes.
//! 2. The echo thread stops between two notes ([`EchoQueue::pause`]): no thread of
//!    zkfs may be inside a request to its own mount when the image is replaced, or it
//!    would wait for an answer forever and the `execve` with it.
//! 3. New requests are held: fuser's threads read them and leave them unanswered
//!    ([`Gate`]); the kernel keeps them, and the programs that made them wait.
//! 4. The requests in progress finish (at most [`DRAIN_LIMIT`], else the reload fails
//!    and the held requests are sent again to this image).
//! 5. What the successor needs is written to a memfd ([`Handed`]): the session's id,
//!    password and registrations; the inode table, the kernel's lookup counts and the
//!    cached nodes; open files (each keeps reading the version it opened), flocks,
//!    scratch files; the notes the echo thread had not made yet. The /dev/fuse
//!    descriptor and the memfd are left open across `execve` (`ZKFS_HANDOVER=F:S`).
//! 6. The new image reads them, resumes the session, serves the same /dev/fuse
//!    descriptor and asks the kernel to send the held requests again
//!    (`FUSE_NOTIFY_RESEND`, Linux 6.9); then it watches again what the kernel holds
//!    and re-reads it, so a change made elsewhere meanwhile gives its inotify events.
//!
//! If `execve` fails, the held requests are sent again to this image, which goes on.
//!
//! # Cost to the ensemble
//!
//! One reconnection of the same session per host (no new session, no ephemeral
//! touched) and one re-read of each node the host's kernel holds, as after a brief
//! disconnection: a fleet reloaded at once costs what a fleet reconnecting costs.

use std::ffi::{CString, OsString};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use serde::{Deserialize, Serialize};

use crate::fs::{Fs, HandedFs, Reloads, HANDOVER_FORMAT};
use crate::kernel::echo::EchoQueue;
use crate::kernel::fuse::{FuseCache, Gate};
use crate::model::view::KernelNote;
use crate::zookeeper::session::{HandedSession, Session};

/// The variable that tells a new process image it takes a mount over.
pub const ENV: &str = "ZKFS_HANDOVER";

/// How long requests in progress may take to finish before a reload gives up.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long the successor may take to say which format it reads.
const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// What one process image of a mount hands to the next.
#[derive(Serialize, Deserialize)]
pub struct Handed {
    /// [`HANDOVER_FORMAT`] of the image that wrote it.
    pub format: u32,
    /// The connection string and the mountpoint: the successor's must be the same.
    pub connect: String,
    /// The mountpoint.
    pub mountpoint: PathBuf,
    /// The ZooKeeper session and its registrations.
    pub session: HandedSession,
    /// The filesystem: view, open files, locks, scratch files.
    pub fs: HandedFs,
    /// Notes the echo thread had not made yet.
    pub notes: Vec<KernelNote>,
    /// The hand-overs so far.
    pub reloads: Reloads,
    /// The command line of the image that wrote it: the successor's must be the same.
    pub args: Vec<String>,
}

/// What a serving process image needs to hand its mount over.
pub struct Running {
    /// The filesystem served.
    pub fs: Arc<Fs>,
    /// Its session.
    pub session: Arc<Session>,
    /// The gate of its FUSE session.
    pub gate: Arc<Gate>,
    /// The echo thread's queue.
    pub echo: Arc<EchoQueue>,
    /// The kernel's caches (to send held requests again).
    pub cache: FuseCache,
    /// The /dev/fuse descriptor.
    pub fuse_fd: RawFd,
    /// The connection string.
    pub connect: String,
    /// The mountpoint.
    pub mountpoint: PathBuf,
    /// The binary to run: the path this zkfs was started from.
    pub exe: PathBuf,
    /// The command line to run it with: this one's.
    pub args: Vec<OsString>,
    /// Tells the service manager (`RELOADING=1`, `READY=1`).
    pub notify: fn(&str),
}

impl Running {
    /// Hands the mount over to the binary at [`Running::exe`]. Returns only if the
    /// hand-over was refused or failed; the mount then goes on in this image, and the
    /// reason is in `zkfs status`.
    pub fn reload(&self) {
        info!("reload of {}: handing the mount over to {}", self.mountpoint.display(), self.exe.display());
        let why = match check_successor(&self.exe) {
            Ok(()) => self.hand_over(),
            Err(why) => why,
        };
        warn!("reload of {} failed: {why}; the mount goes on as it was", self.mountpoint.display());
        self.fs.reload_failed(&why);
    }

    /// Steps 2 to 5 of the module docs; returns why it failed.
    fn hand_over(&self) -> String {
        // The successor must resume the session at once: not while no server answers.
        if self.session.state().0 != crate::zookeeper::session::State::Connected {
            return "ZooKeeper does not answer now; reload once it does".into();
        }
        let started = Instant::now();
        (self.notify)("RELOADING=1");
        // The echoes stop before any request is held, never after: an echo's
        // invalidation can wait for a lock of the kernel that a held request keeps
        // (a directory's, say), and the pause would then wait for ever. The price: a
        // request in progress that waits for an echo (an open of a registration
        // removed elsewhere) waits until DRAIN_LIMIT, and the reload fails.
        let paused = self.echo.pause();
        self.gate.set_holding(true);
        while self.gate.busy() > 0 {
            if started.elapsed() > DRAIN_LIMIT {
                return self.resume(paused, Vec::new(), format!("requests still in progress after {DRAIN_LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let Some(session) = self.session.handed_over() else {
            return self.resume(paused, Vec::new(), "the ZooKeeper session is closed".into());
        };
        let notes = paused.take();
        let handed = Handed {
            format: HANDOVER_FORMAT,
            connect: self.connect.clone(),
            mountpoint: self.mountpoint.clone(),
            session,
            fs: self.fs.handed_over(),
            notes: notes.clone(),
            reloads: self.fs.reloads(),
            args: self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        };
        let state = match write_state(&handed) {
            Ok(fd) => fd,
            Err(e) => return self.resume(paused, notes, format!("cannot write the hand-over state: {e}")),
        };
        info!("reload: requests held, state written after {:?}; replacing the process image", started.elapsed());
        let why = self.exec(&state);
        self.resume(paused, notes, why)
    }

    /// `execve` of the successor; returns only if it failed, with why.
    fn exec(&self, state: &OwnedFd) -> String {
        let fds = [self.fuse_fd, state.as_raw_fd()];
        for fd in fds {
            if let Err(e) = set_cloexec(fd, false) {
                return format!("cannot pass descriptor {fd} on: {e}");
            }
        }
        let why = match exec_args(&self.exe, &self.args, &format!("{}:{}", fds[0], fds[1])) {
            Ok((path, args, env)) => {
                let e = nix::unistd::execve(&path, &args, &env).unwrap_err();
                format!("cannot run {}: {}", self.exe.display(), std::io::Error::from(e))
            }
            Err(e) => e,
        };
        let _ = set_cloexec(self.fuse_fd, true);
        why
    }

    /// After a failed hand-over: the held requests are sent again, to this image.
    fn resume(&self, paused: crate::kernel::echo::Paused<'_>, notes: Vec<KernelNote>, why: String) -> String {
        paused.put_back(notes);
        self.gate.set_holding(false);
        if let Err(e) = self.cache.resend() {
            warn!("cannot have the kernel send the held requests again: {e}");
        }
        drop(paused);
        (self.notify)("READY=1");
        why
    }
}

/// Asks `exe` which hand-over format it reads; refuses any other than this one's.
fn check_successor(exe: &Path) -> Result<(), String> {
    let mut child = std::process::Command::new(exe)
        .arg("--handover-format")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < CHECK_LIMIT => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not say which hand-over format it reads", exe.display()));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", exe.display())),
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    let theirs = out.trim();
    if !status.success() {
        return Err(format!(
            "{} cannot take a mount over (`--handover-format` failed: {status}); it is older than this zkfs",
            exe.display()
        ));
    }
    if theirs != HANDOVER_FORMAT.to_string() {
        return Err(format!(
            "{} reads hand-over format {theirs:?}, this zkfs writes format {HANDOVER_FORMAT}",
            exe.display()
        ));
    }
    Ok(())
}

fn set_cloexec(fd: RawFd, on: bool) -> std::io::Result<()> {
    // SAFETY: F_SETFD on a descriptor this process owns; no memory is passed.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The state, in a memfd left at its start.
fn write_state(handed: &Handed) -> std::io::Result<OwnedFd> {
    let bytes = serde_json::to_vec(handed).map_err(std::io::Error::other)?;
    // SAFETY: a constant NUL-terminated name; memfd_create returns a new descriptor.
    let fd = unsafe { libc::memfd_create(c"zkfs-handover".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just made and is owned by nothing else.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(&bytes)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

/// The path, arguments and environment of the successor: this command line, this
/// environment and `ZKFS_HANDOVER`.
type ExecArgs = (CString, Vec<CString>, Vec<CString>);

fn exec_args(exe: &Path, args: &[OsString], fds: &str) -> Result<ExecArgs, String> {
    let c = |s: Vec<u8>| CString::new(s).map_err(|_| "an argument holds a NUL byte".to_string());
    let path = c(exe.as_os_str().to_owned().into_vec())?;
    let args = args.iter().map(|a| c(a.clone().into_vec())).collect::<Result<Vec<_>, _>>()?;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != ENV)
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            c(kv)
        })
        .collect::<Result<_, _>>()?;
    env.push(c(format!("{ENV}={fds}").into_bytes())?);
    Ok((path, args, env))
}

/// In a process image started by a hand-over: the /dev/fuse descriptor and the state,
/// checked against this image's command line (`args`, the program's name first) and
/// connection string; `None` when this image was not started by a hand-over. It
/// never looks at the mountpoint: the kernel would ask this very process, which does
/// not serve it yet.
pub fn taken_over(args: &[OsString], connect: &str) -> Option<Result<(OwnedFd, Handed), String>> {
    let value = std::env::var_os(ENV)?;
    std::env::remove_var(ENV);
    let value = value.to_string_lossy().into_owned();
    Some(read_handed(&value, args, connect))
}

fn read_handed(value: &str, args: &[OsString], connect: &str) -> Result<(OwnedFd, Handed), String> {
    let bad = || format!("{ENV}={value:?} is not two descriptors");
    let (fuse, state) = value.split_once(':').ok_or_else(bad)?;
    let fuse: RawFd = fuse.parse().map_err(|_| bad())?;
    let state: RawFd = state.parse().map_err(|_| bad())?;
    for fd in [fuse, state] {
        // F_GETFD fails on a descriptor that is not open.
        // SAFETY: no memory is passed.
        if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!("{ENV}: descriptor {fd} is not open"));
        }
    }
    // SAFETY: both were checked open, and the image that handed them over passed them
    // to this one alone.
    let (fuse, state) = unsafe { (OwnedFd::from_raw_fd(fuse), OwnedFd::from_raw_fd(state)) };
    let _ = set_cloexec(fuse.as_raw_fd(), true);
    let mut bytes = Vec::new();
    std::fs::File::from(state).read_to_end(&mut bytes).map_err(|e| format!("cannot read the hand-over: {e}"))?;
    let handed: Handed = serde_json::from_slice(&bytes).map_err(|e| format!("the hand-over is unreadable: {e}"))?;
    if handed.format != HANDOVER_FORMAT {
        return Err(format!("the hand-over is in format {}, this zkfs reads {HANDOVER_FORMAT}", handed.format));
    }
    let ours: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    if handed.connect != connect || handed.args != ours {
        return Err(format!(
            "the hand-over is of {} at {} (command line {:?}), not of this command line {ours:?}",
            handed.connect,
            handed.mountpoint.display(),
            handed.args
        ));
    }
    Ok((fuse, handed))
}
