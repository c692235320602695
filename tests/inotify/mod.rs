//! A minimal inotify watcher for tests (the raw syscalls, no extra process).
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// One event: the watched path, its mask and the entry name (empty for the path itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub watched: String,
    pub mask: u32,
    pub name: String,
}

impl Event {
    pub fn is(&self, mask: u32, name: &str) -> bool {
        self.mask & mask == mask && self.name == name
    }
}

/// An inotify instance and the paths it watches.
pub struct Inotify {
    fd: i32,
    watches: Vec<(i32, String)>,
    pending: Vec<Event>,
}

pub const ALL: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF;

impl Inotify {
    pub fn new() -> Inotify {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        Inotify { fd, watches: Vec::new(), pending: Vec::new() }
    }

    /// Watches `path` for the events in `ALL`.
    pub fn watch(&mut self, path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid fd and C string.
        let wd = unsafe { libc::inotify_add_watch(self.fd, c.as_ptr(), ALL) };
        assert!(wd >= 0, "inotify_add_watch {}: {}", path.display(), std::io::Error::last_os_error());
        self.watches.push((wd, path.display().to_string()));
    }

    fn read_available(&mut self, wait: Duration) {
        let mut pfd = libc::pollfd { fd: self.fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
        if n <= 0 {
            return;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reading into our buffer.
            let len = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if len <= 0 {
                return;
            }
            let mut off = 0usize;
            while off < len as usize {
                // SAFETY: the kernel wrote whole inotify_event records.
                let ev = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr() as *const libc::inotify_event) };
                let name_start = off + std::mem::size_of::<libc::inotify_event>();
                let name_bytes = &buf[name_start..name_start + ev.len as usize];
                let name = String::from_utf8_lossy(name_bytes).trim_end_matches('\0').to_string();
                let watched =
                    self.watches.iter().find(|(wd, _)| *wd == ev.wd).map(|(_, p)| p.clone()).unwrap_or_default();
                self.pending.push(Event { watched, mask: ev.mask, name });
                off = name_start + ev.len as usize;
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
            self.read_available(deadline - now);
        }
    }

    /// Every event that arrives within `window`, and the ones already pending.
    pub fn collect(&mut self, window: Duration) -> Vec<Event> {
        let deadline = Instant::now() + window;
        while Instant::now() < deadline {
            self.read_available(deadline - Instant::now());
        }
        std::mem::take(&mut self.pending)
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: closing our fd.
        unsafe { libc::close(self.fd) };
    }
}
