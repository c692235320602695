//! The one inotify reader of the tests and benchmarks (nix's wrapper of the
//! syscalls, no extra process): a test waits for the event it expects with
//! [`Inotify::wait_for`] or takes what came with [`Inotify::collect`]; a benchmark's
//! thread calls [`Inotify::read`] in a loop, each event stamped with when its read
//! returned.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{self, AddWatchFlags, InitFlags, WatchDescriptor};

/// One event: the watch's label (its path, unless named otherwise), the mask
/// (`libc::IN_*` bits), the entry's name (empty for the watched path itself), and
/// when the read that returned it came back.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub watched: String,
    pub mask: u32,
    pub name: String,
    pub at: Instant,
}

impl Event {
    /// Whether the event has every bit of `mask` and is about `name`.
    pub fn is(&self, mask: u32, name: &str) -> bool {
        self.mask & mask == mask && self.name == name
    }
}

/// What [`Inotify::watch`] watches for.
pub const ALL: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF;

/// An inotify instance, the labels of its watches, and events read but not yet taken.
pub struct Inotify {
    fd: inotify::Inotify,
    watches: Vec<(WatchDescriptor, String)>,
    pending: Vec<Event>,
}

impl Inotify {
    pub fn new() -> Inotify {
        let fd = inotify::Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .unwrap_or_else(|e| panic!("inotify_init1: {e}"));
        Inotify { fd, watches: Vec::new(), pending: Vec::new() }
    }

    /// Watches `path` for the events in [`ALL`], labelled with its path.
    pub fn watch(&mut self, path: &Path) {
        self.watch_as(path, ALL, &path.display().to_string());
    }

    /// Watches `path` for the events in `mask`, labelled `label`.
    pub fn watch_as(&mut self, path: &Path, mask: u32, label: &str) {
        let wd = self
            .fd
            .add_watch(path, AddWatchFlags::from_bits_retain(mask))
            .unwrap_or_else(|e| panic!("inotify_add_watch {}: {e}", path.display()));
        self.watches.push((wd, label.to_string()));
    }

    /// Waits up to `wait` for events and returns them (empty if none came), leaving
    /// alone the ones [`Inotify::wait_for`] left pending.
    pub fn read(&mut self, wait: Duration) -> Vec<Event> {
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        // EINTR and a timeout alike: nothing to read this time.
        if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
            return Vec::new();
        }
        let mut out = Vec::new();
        loop {
            let events = match self.fd.read_events() {
                Ok(events) => events,
                Err(Errno::EAGAIN | Errno::EINTR) => return out,
                Err(e) => panic!("read inotify events: {e}"),
            };
            let at = Instant::now();
            for ev in events {
                let watched =
                    self.watches.iter().find(|(wd, _)| *wd == ev.wd).map(|(_, l)| l.clone()).unwrap_or_default();
                let name = ev.name.map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                out.push(Event { watched, mask: ev.mask.bits(), name, at });
            }
        }
    }

    /// Waits up to `timeout` for an event matching `f` and takes it; other events
    /// stay for later calls.
    pub fn wait_for(&mut self, timeout: Duration, what: &str, f: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.pending.iter().position(&f) {
                return self.pending.remove(i);
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("no inotify event {what} within {timeout:?}; got {:?}", self.pending);
            }
            let events = self.read(deadline - now);
            self.pending.extend(events);
        }
    }

    /// Every event that arrives within `window`, and the ones already pending.
    pub fn collect(&mut self, window: Duration) -> Vec<Event> {
        let deadline = Instant::now() + window;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return std::mem::take(&mut self.pending);
            }
            let events = self.read(deadline - now);
            self.pending.extend(events);
        }
    }
}
