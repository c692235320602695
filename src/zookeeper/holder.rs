//! A process that held a registration with a flock when zkfs crashed: followed by
//! pidfd, so that its registration goes when it exits (see `saved.rs`).

use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::zookeeper::saved::start_time;

/// A live process, by pidfd.
pub struct Holder {
    fd: OwnedFd,
}

impl Holder {
    /// Process `pid` if it is the one that started at `started` (a pid reused by a
    /// later process is not it); `None` if it has exited.
    pub fn find(pid: u32, started: u64) -> Option<Holder> {
        // SAFETY: pidfd_open(2) with no flags; it returns a new descriptor or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if raw < 0 {
            return None;
        }
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        // Checked after the pidfd is open: if the start time matches now, the pidfd is
        // that process's, even if the pid is reused after it exits.
        (start_time(pid) == Some(started)).then_some(Holder { fd })
    }

    /// The processes that have `file` open (a registration's file on the dead mount
    /// a crashed zkfs left: a flock's open file description lives on in every process
    /// that shares it, such as the shell of `exec 9>>FILE; flock 9` when flock(1) —
    /// the process that asked for the lock — has long exited), but this one; each
    /// with its start time. Once the dead mount is detached (replaced by the new one)
    /// the kernel names such a file by its path inside that mount, `detached`.
    pub fn with_open(file: &std::path::Path, detached: &std::path::Path) -> Vec<(u32, u64, Holder)> {
        let me = std::process::id();
        let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
        let mut found = Vec::new();
        for entry in procs.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if pid == me {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
            let holds = fds
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == file || target == detached));
            if !holds {
                continue;
            }
            if let Some(started) = start_time(pid) {
                if let Some(holder) = Holder::find(pid, started) {
                    found.push((pid, started, holder));
                }
            }
        }
        found
    }

    /// Returns when the process has exited (its pidfd becomes readable).
    pub async fn exited(self) {
        // SAFETY: the AsyncFd owns the OwnedFd: it stays open, the same descriptor,
        // for as long as the AsyncFd lives.
        let Ok(fd) = (unsafe { AsyncFd::register_with_interest(self.fd, tokio::io::Interest::READABLE) }) else {
            return;
        };
        if let Ok(mut guard) = fd.readable().await {
            guard.retain_ready();
        }
    }
}
