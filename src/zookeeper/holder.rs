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
