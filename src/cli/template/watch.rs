//! The inotify watches of `zkfs template`: the directories the last render read.
//!
//! One inotify instance for the whole run, so that events that arrive while a render
//! reads are queued, not lost; after each render the set of watched directories is
//! made equal to what it read (a directory watched twice has one watch).
//!
//! A mount that ends lazily (`umount -l`, or a busy mount detached) sends no
//! IN_UNMOUNT while something still holds it — our own watches do — so
//! [`Watch::moved`] also checks, once a second, that each path still leads to the
//! directory watched: a `stat` the kernel or the mount answers, nothing for ZooKeeper.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// What a wait heard.
#[derive(Debug, Default, PartialEq)]
pub struct Heard {
    /// A change in a watched directory (an entry came or went, a file's data changed).
    pub change: bool,
    /// A watched directory went away (removed, or its mount ended).
    pub gone: bool,
}

/// What [`Watch::set`] did.
#[derive(Debug, Default, PartialEq)]
pub struct Armed {
    /// A directory is newly watched.
    pub added: bool,
    /// A directory could not be watched.
    pub missing: bool,
}

/// The watched directories.
pub struct Watch {
    fd: Inotify,
    /// Each watched directory: its watch, and its device and inode when watched.
    dirs: BTreeMap<PathBuf, (WatchDescriptor, (u64, u64))>,
}

fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

impl Watch {
    /// A new, empty set.
    pub fn new() -> Result<Watch, String> {
        let fd = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| format!("inotify_init: {}", std::io::Error::from(e)))?;
        Ok(Watch { fd, dirs: BTreeMap::new() })
    }

    /// Watches exactly `dirs` (those that can be watched now). Says whether a
    /// directory is newly watched (a change there may have come between its read and
    /// its watch) and whether one could not be watched (it went since it was read).
    pub fn set(&mut self, dirs: &BTreeSet<PathBuf>) -> Armed {
        let stale: Vec<PathBuf> = self.dirs.keys().filter(|d| !dirs.contains(*d)).cloned().collect();
        for d in stale {
            if let Some((wd, _)) = self.dirs.remove(&d) {
                let _ = self.fd.rm_watch(wd);
            }
        }
        let mut armed = Armed::default();
        for d in dirs {
            if self.dirs.contains_key(d) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(d) else {
                armed.missing = true;
                continue;
            };
            match self.fd.add_watch(d, mask()) {
                Ok(wd) => {
                    self.dirs.insert(d.clone(), (wd, (meta.dev(), meta.ino())));
                    armed.added = true;
                }
                // The render that read it failed (or it went since): the next render,
                // after the retry delay, tries again.
                Err(e) => {
                    log::debug!("cannot watch {}: {}", d.display(), std::io::Error::from(e));
                    armed.missing = true;
                }
            }
        }
        armed
    }

    /// Waits up to `timeout` (None: forever) and takes every queued event.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Heard {
        let timeout = timeout.map_or(PollTimeout::NONE, |t| {
            // Round up: waking a little early would spin until the deadline.
            PollTimeout::try_from(t + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX)
        });
        let mut heard = Heard::default();
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
            return heard;
        }
        loop {
            let events = match self.fd.read_events() {
                Ok(events) => events,
                Err(Errno::EAGAIN | Errno::EINTR) => return heard,
                Err(e) => {
                    log::warn!("reading inotify events: {}", std::io::Error::from(e));
                    return heard;
                }
            };
            for ev in events {
                if ev.mask.intersects(
                    AddWatchFlags::IN_IGNORED
                        | AddWatchFlags::IN_UNMOUNT
                        | AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF,
                ) {
                    heard.gone = true;
                    if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                        self.dirs.retain(|_, (wd, _)| *wd != ev.wd);
                    }
                }
                heard.change = true;
            }
        }
    }

    /// Whether a watched path no longer leads to the directory watched (its mount
    /// ended or was detached, it was replaced). Such watches are dropped, so that the
    /// next [`Watch::set`] watches what the path leads to now.
    pub fn moved(&mut self) -> bool {
        let before = self.dirs.len();
        let gone: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|(d, (_, id))| std::fs::metadata(d).map_or(true, |m| (m.dev(), m.ino()) != *id))
            .map(|(d, _)| d.clone())
            .collect();
        for d in gone {
            if let Some((wd, _)) = self.dirs.remove(&d) {
                let _ = self.fd.rm_watch(wd);
            }
        }
        self.dirs.len() != before
    }
}
