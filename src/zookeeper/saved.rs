//! The session a mount's successor resumes: after a crash (SIGKILL, OOM) a zkfs
//! started again on the same mountpoint within the session timeout takes the same
//! ZooKeeper session back, so the host's registrations never leave ZooKeeper.
//!
//! The state file holds the session's id and password: `/run/zkfs/` (mode 0700,
//! root's or the mounting user's), one file per mountpoint, mode 0600, written
//! atomically (a temporary file renamed over it). A file that is not the caller's,
//! is readable by others, is not zkfs's format or names another ensemble is refused
//! with a log line and left alone; the mount then opens a new session.
//! It is removed when the mount ends cleanly (its session is closed then).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::{debug, warn};

use crate::sync::Recover;
use serde_json::{json, Value};

/// Where state files live (an environment variable moves it, for tests).
pub fn state_dir() -> PathBuf {
    std::env::var_os("ZKFS_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/run/zkfs"))
}

/// The format written; others are refused.
const FORMAT: u64 = 1;

/// A session saved for a successor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Saved {
    /// The session id.
    pub id: i64,
    /// Its password.
    pub password: Vec<u8>,
    /// The registrations a lock holds, with their holder: (path, pid, start time).
    pub locked: Vec<(String, u32, u64)>,
}

/// The state file of one mount. Clones share `written`.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    connect: String,
    mountpoint: String,
    /// The sequence number of the last save written, `u64::MAX` once removed: saves
    /// run in the background and may finish out of order, and none may bring the file
    /// back after the session closed. Held across one write or removal of the file,
    /// with no other lock: cannot deadlock.
    written: std::sync::Arc<std::sync::Mutex<u64>>,
}

impl StateFile {
    /// The state file of `mountpoint` mounting `connect`, in [`state_dir`].
    pub fn new(connect: &str, mountpoint: &Path) -> StateFile {
        let mp = mountpoint.to_string_lossy().into_owned();
        StateFile {
            path: state_dir().join(format!("{}.session", escape(&mp))),
            connect: connect.to_string(),
            mountpoint: mp,
            written: Default::default(),
        }
    }

    /// The mountpoint it is of.
    pub fn mountpoint(&self) -> &str {
        &self.mountpoint
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The session an earlier zkfs left for this mount, if any and if it may be used.
    pub fn load(&self) -> Option<Saved> {
        let meta = match fs::symlink_metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!("{}: {e}; opening a new session", self.path.display());
                return None;
            }
        };
        let uid = nix::unistd::geteuid().as_raw();
        if !meta.file_type().is_file() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
            warn!(
                "{}: not a regular file of uid {uid} with mode 0600; not resuming from it, opening a new session",
                self.path.display()
            );
            return None;
        }
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                warn!("{}: {e}; opening a new session", self.path.display());
                return None;
            }
        };
        match self.parse(&text) {
            Ok(saved) => Some(saved),
            Err(why) => {
                warn!("{}: {why}; not resuming from it, opening a new session", self.path.display());
                None
            }
        }
    }

    fn parse(&self, text: &str) -> Result<Saved, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not a zkfs state file ({e})"))?;
        if v["format"].as_u64() != Some(FORMAT) {
            return Err(format!("state format {} is not this zkfs's ({FORMAT})", v["format"]));
        }
        if v["connect"].as_str() != Some(&self.connect) {
            return Err(format!("it is the state of a mount of {}, not of {}", v["connect"], self.connect));
        }
        if v["mountpoint"].as_str() != Some(&self.mountpoint) {
            return Err(format!("it is the state of the mount at {}, not {}", v["mountpoint"], self.mountpoint));
        }
        let id = v["session"]
            .as_str()
            .and_then(|s| s.strip_prefix("0x"))
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or("no session id")? as i64;
        let password = v["password"].as_str().and_then(unhex).ok_or("no session password")?;
        // Never the session of a zkfs that still serves it (a second mount stacked on
        // a live one): taking it would cut that one off.
        if let (Some(pid), Some(started)) = (v["pid"].as_u64(), v["started"].as_u64()) {
            if pid as u32 != std::process::id() && live_start_time(pid as u32) == Some(started) {
                return Err(format!("the zkfs that saved it (pid {pid}) still runs"));
            }
        }
        let locked = v["locked"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| {
                        Some((h["path"].as_str()?.to_string(), h["pid"].as_u64()? as u32, h["started"].as_u64()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Saved { id, password, locked })
    }

    /// Saves `saved` for a successor, atomically. A failure is logged: the mount
    /// works on, only a crash would then drop its registrations.
    pub fn save(&self, saved: &Saved) {
        self.save_in_order(0, saved)
    }

    /// [`StateFile::save`] as save number `seq`: skipped if a later one was written
    /// already, or the file removed.
    pub fn save_in_order(&self, seq: u64, saved: &Saved) {
        let mut written = self.written.locked();
        if *written == u64::MAX || (seq != 0 && seq <= *written) {
            return;
        }
        *written = seq;
        if let Err(e) = self.try_save(saved) {
            warn!("cannot save the session for a restart in {}: {e}", self.path.display());
        } else {
            debug!("saved session {:#x} in {}", saved.id, self.path.display());
        }
    }

    fn try_save(&self, saved: &Saved) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let meta = fs::symlink_metadata(dir)?;
        if !meta.is_dir() || meta.mode() & 0o077 != 0 {
            // Never the password where others could read it.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        let text = json!({
            "format": FORMAT,
            "connect": self.connect,
            "mountpoint": self.mountpoint,
            "session": format!("{:#x}", saved.id as u64),
            "password": hex(&saved.password),
            "pid": std::process::id(),
            "started": start_time(std::process::id()),
            "locked": saved.locked.iter().map(|(path, pid, started)| json!({"path": path, "pid": pid, "started": started})).collect::<Vec<_>>(),
        });
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.path.with_extension(format!("tmp.{}.{n}", std::process::id()));
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        let written = f.write_all(format!("{text}\n").as_bytes()).and_then(|()| f.sync_all());
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, &self.path)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }

    /// Removes the file: the session is closed, nothing is left to resume.
    pub fn remove(&self) {
        let mut written = self.written.locked();
        *written = u64::MAX;
        match fs::remove_file(&self.path) {
            Ok(()) => debug!("removed {}", self.path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot remove {}: {e}", self.path.display()),
        }
    }
}

/// A mountpoint as one file name: `/` as `-`, other bytes beyond `[A-Za-z0-9._]` as
/// `\xNN` (as `systemd-escape --path` does).
fn escape(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    for (i, b) in trimmed.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// When process `pid` started (clock ticks after boot, /proc/PID/stat field 22): with
/// the pid, it names one process, never a later one given the same pid.
/// [`start_time`] of a process that has not exited: `None` for a zombie (killed a
/// moment ago and not yet reaped — its successor may start before its parent reaps
/// it) or one that is exiting.
fn live_start_time(pid: u32) -> Option<u64> {
    let (state, started) = state_and_start_time(pid)?;
    (!matches!(state, 'Z' | 'X' | 'x')).then_some(started)
}

pub fn start_time(pid: u32) -> Option<u64> {
    state_and_start_time(pid).map(|(_, started)| started)
}

/// The state letter and the start time of process `pid`, from `/proc/PID/stat`.
fn state_and_start_time(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_in(dir: &Path, connect: &str, mp: &str) -> StateFile {
        let mut f = StateFile::new(connect, Path::new(mp));
        f.path = dir.join(f.path.file_name().unwrap());
        f
    }

    #[test]
    fn a_saved_session_is_read_back_by_the_same_mount_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_in(dir.path(), "127.0.0.1:2181", "/mnt/zk");
        assert_eq!(f.load(), None);
        let saved = Saved {
            id: 0x1234_5678_9abc_def0,
            password: vec![0, 1, 0xfe, 0xff],
            locked: vec![("/s/a:1".into(), 42, 4242)],
        };
        f.save(&saved);
        let mode = fs::metadata(&f.path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "the password is for the owner only");
        assert_eq!(f.load(), Some(saved.clone()));
        assert_eq!(file_in(dir.path(), "10.0.0.1:2181", "/mnt/zk").load(), None, "another ensemble's state");
        let mut other = file_in(dir.path(), "127.0.0.1:2181", "/mnt/other");
        other.path = f.path.clone();
        assert_eq!(other.load(), None, "another mountpoint's state");
        f.remove();
        assert_eq!(f.load(), None);
    }

    #[test]
    fn hostile_state_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_in(dir.path(), "127.0.0.1:2181", "/mnt/zk");
        f.save(&Saved { id: 1, password: vec![1; 16], ..Default::default() });
        fs::set_permissions(&f.path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(f.load(), None, "readable by others");
        for text in ["", "{", "[]", r#"{"format": 2}"#, r#"{"format": 1, "connect": "127.0.0.1:2181"}"#] {
            fs::remove_file(&f.path).unwrap();
            fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&f.path).unwrap();
            fs::write(&f.path, text).unwrap();
            assert_eq!(f.load(), None, "{text:?}");
        }
    }

    #[test]
    fn the_session_of_a_zkfs_still_running_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let f = file_in(dir.path(), "127.0.0.1:2181", "/mnt/zk");
        f.save(&Saved { id: 7, password: vec![7; 16], ..Default::default() });
        let text = fs::read_to_string(&f.path).unwrap();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        // A live process other than this one: the parent (the test harness's shell
        // or cargo), with its real start time.
        let parent = nix::unistd::getppid().as_raw() as u32;
        v["pid"] = json!(parent);
        v["started"] = json!(start_time(parent).unwrap());
        fs::write(&f.path, v.to_string()).unwrap();
        assert_eq!(f.load(), None, "its zkfs still runs");
        v["started"] = json!(start_time(parent).unwrap() + 1);
        fs::write(&f.path, v.to_string()).unwrap();
        assert!(f.load().is_some(), "the pid is another process's now");
    }

    #[test]
    fn mountpoints_become_one_file_name() {
        assert_eq!(escape("/mnt/zk"), "mnt-zk");
        assert_eq!(escape("/"), "-");
        assert_eq!(escape("/tmp/a b/.x"), "tmp-a\\x20b-.x");
    }
}
