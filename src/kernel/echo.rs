//! The echo thread: tells the kernel what changed elsewhere, so that caches stay true
//! and inotify watchers hear of it.
//!
//! A FUSE filesystem cannot make the kernel emit inotify events: only operations that
//! pass through the VFS do. So this thread makes them — a real `mknod`, `mkdir`,
//! `unlink`, `rmdir`, or open-truncate-close on the mount itself — and the filesystem
//! recognises them by this thread's id and acknowledges them without touching
//! ZooKeeper (see `view.rs`). The VFS then delivers ordinary events to every watcher.
//!
//! Rules learnt the hard way (docs/facts.md):
//! * never from inside a FUSE request or with the view's lock held: the kernel waits
//!   on the request being served, and the request would wait on the echo;
//! * only ever into its own mount: through a detached clone of it (`readonly.rs`),
//!   which dies with the mount (a change queued at the unmount then fails with ENODEV
//!   instead of making directories in the bare mountpoint) and does not pin the
//!   visible mount (a descriptor on it, or an echo in progress there, would make
//!   `fusermount3 -u` fail with EBUSY);
//! * a data change's echo must drop the kernel's pages *before* its IN_MODIFY, or a
//!   reader with kept pages gets stale bytes: its open truncates (O_TRUNC), which does;
//! * if an echo fails, settle the view and invalidate the entry, so the view is right
//!   even when no event can be given.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use log::debug;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};

use crate::fs::Fs;
use crate::kernel::readonly::EchoRoot;
use crate::model::inodes::split_path;
use crate::model::view::{KernelNote, Kind};
use crate::sync::Recover;

/// The kernel's caches, as the FUSE adapter lets them be invalidated.
pub trait KernelCache: Send + 'static {
    /// Forget `name` in directory `parent`.
    fn inval_entry(&self, parent: u64, name: &str) -> io::Result<()>;
    /// Forget the attributes and pages of `ino`.
    fn inval_inode(&self, ino: u64) -> io::Result<()>;
}

/// The notes on their way to the echo thread. The thread holds `rx` while it waits
/// for a note and while it echoes one; a hand-over of the mount (`handover.rs`) stops
/// it between two notes, never inside one: a thread of zkfs inside a request to its
/// own mount when the process image is replaced would wait for the answer forever.
pub struct EchoQueue {
    /// Taken by the echo thread for each note, and by [`EchoQueue::pause`]; nothing
    /// else is locked while it is held but the view (by the echo's own requests), so
    /// no cycle.
    rx: Mutex<Receiver<KernelNote>>,
    /// Where notes not echoed are put back if a hand-over fails.
    tx: Sender<KernelNote>,
    paused: AtomicBool,
}

/// How long the echo thread waits for a note before it looks whether it is paused.
const PAUSE_POLL: Duration = Duration::from_millis(100);

impl EchoQueue {
    /// The queue of `rx`, whose sender is `tx`.
    pub fn new(rx: Receiver<KernelNote>, tx: Sender<KernelNote>) -> Arc<EchoQueue> {
        Arc::new(EchoQueue { rx: Mutex::new(rx), tx, paused: AtomicBool::new(false) })
    }

    /// Stops the echoes once the note in progress is echoed; they stay stopped while
    /// the guard lives. Waits at most about [`PAUSE_POLL`] plus one echo.
    pub fn pause(&self) -> Paused<'_> {
        self.paused.store(true, Ordering::SeqCst);
        Paused { queue: self, rx: Some(self.rx.locked()) }
    }
}

/// The echoes stopped (see [`EchoQueue::pause`]); dropping it starts them again.
pub struct Paused<'a> {
    queue: &'a EchoQueue,
    rx: Option<std::sync::MutexGuard<'a, Receiver<KernelNote>>>,
}

impl Paused<'_> {
    /// The notes not echoed yet, taken out of the queue.
    pub fn take(&self) -> Vec<KernelNote> {
        self.rx.as_ref().map(|rx| rx.try_iter().collect()).unwrap_or_default()
    }

    /// Puts `notes` back at the front of the queue (a hand-over that failed).
    pub fn put_back(&self, notes: Vec<KernelNote>) {
        let later: Vec<KernelNote> = self.take();
        for note in notes.into_iter().chain(later) {
            let _ = self.queue.tx.send(note);
        }
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.queue.paused.store(false, Ordering::SeqCst);
    }
}

/// Starts the echo thread for the mount that `root` reaches.
pub fn spawn<C: KernelCache>(
    cache: C,
    notes: Arc<EchoQueue>,
    root: Arc<EchoRoot>,
    fs: Arc<Fs>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("zkfs-echo".into()).spawn(move || {
        fs.set_echo_thread(nix::unistd::gettid().as_raw() as u32);
        let echo = Echo { cache, root, fs };
        loop {
            if notes.paused.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let rx = notes.rx.locked();
            match rx.recv_timeout(PAUSE_POLL) {
                Ok(note) => echo.handle(note),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    })
}

struct Echo<C> {
    cache: C,
    root: Arc<EchoRoot>,
    fs: Arc<Fs>,
}

impl<C: KernelCache> Echo<C> {
    fn handle(&self, note: KernelNote) {
        match note {
            KernelNote::InvalEntry { parent, name } => self.quiet(self.cache.inval_entry(parent, &name), "inval_entry"),
            KernelNote::InvalInode { ino } => self.quiet(self.cache.inval_inode(ino), "inval_inode"),
            KernelNote::Create { parent, path, kind } => {
                if let Err(e) = self.create(&path, kind) {
                    debug!("echo of the creation of {path} failed ({e}); invalidating instead");
                    self.fs.view().echo_create_failed(&path, kind);
                    self.inval_name(parent, &path);
                }
            }
            KernelNote::Remove { parent, path, kind } => {
                if let Err(e) = self.remove(&path, kind) {
                    debug!("echo of the removal of {path} failed ({e}); invalidating instead");
                    self.fs.view().echo_remove_failed(&path);
                    self.inval_name(parent, &path);
                }
            }
            KernelNote::LinkCreate { parent, path } => {
                if let Err(e) = self.symlink(&path) {
                    debug!("echo of the link {path} failed ({e}); invalidating instead");
                    self.fs.echo_link_failed(&path);
                    self.inval_name(parent, &path);
                }
            }
            KernelNote::LinkRemove { parent, path } => {
                if let Err(e) = self.remove(&path, Kind::Registration) {
                    debug!("echo of the removal of the link {path} failed ({e}); invalidating instead");
                    self.fs.echo_link_failed(&path);
                    self.inval_name(parent, &path);
                }
            }
            KernelNote::LinkRetarget { parent, path } => {
                // Both steps are echoes: the unlink's acknowledgement hides the link
                // until the symlink's (`links.rs`), so a lookup in between cannot
                // take the name from the echo.
                let done = self.remove(&path, Kind::Registration).and_then(|()| self.symlink(&path));
                if let Err(e) = done {
                    debug!("echo of the retargeted link {path} failed ({e}); invalidating instead");
                    self.fs.echo_link_failed(&path);
                    self.inval_name(parent, &path);
                }
            }
            KernelNote::Change { ino, file } => {
                // The echo's O_TRUNC is the invalidation: before its IN_MODIFY the kernel
                // drops the file's pages and marks its size and times stale (see
                // `change`). Only a change that cannot be echoed is invalidated apart.
                if let Err(e) = self.change(&file) {
                    debug!("echo of the change of {file} failed ({e}); invalidating instead");
                    self.quiet(self.cache.inval_inode(ino), "inval_inode");
                }
            }
        }
    }

    fn quiet(&self, result: io::Result<()>, what: &str) {
        match result {
            // ENOENT: the kernel had forgotten it already, which is as good.
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => debug!("{what} failed: {e}"),
            _ => {}
        }
    }

    /// An echo failed: the kernel forgets the entry and the directory's cached listing
    /// (an echo refused with EEXIST because a lookup found the child first left the
    /// listing without it).
    fn inval_name(&self, parent: u64, path: &str) {
        if let Some((_, name)) = split_path(path) {
            self.quiet(self.cache.inval_entry(parent, name), "inval_entry");
            self.quiet(self.cache.inval_inode(parent), "inval_inode");
        }
    }

    fn create(&self, path: &str, kind: Kind) -> io::Result<()> {
        let (dir, p) = self.root.target(path)?;
        let made = match kind {
            Kind::Dir => mkdirat(&dir, p.as_c_str(), Mode::from_bits_truncate(0o755)),
            Kind::Registration => mknodat(&dir, p.as_c_str(), SFlag::S_IFREG, Mode::from_bits_truncate(0o444), 0),
        };
        Ok(made?)
    }

    fn symlink(&self, path: &str) -> io::Result<()> {
        let (dir, p) = self.root.target(path)?;
        // The target is the filesystem's to show (`links.rs`); the kernel only needs a
        // create.
        Ok(symlinkat(c".", &dir, p.as_c_str())?)
    }

    fn remove(&self, path: &str, kind: Kind) -> io::Result<()> {
        let (dir, p) = self.root.target(path)?;
        let flags = match kind {
            Kind::Dir => UnlinkatFlags::RemoveDir,
            Kind::Registration => UnlinkatFlags::NoRemoveDir,
        };
        Ok(unlinkat(&dir, p.as_c_str(), flags)?)
    }

    fn change(&self, file: &str) -> io::Result<()> {
        let (dir, p) = self.root.target(file)?;
        // O_TRUNC gives the IN_MODIFY (with FUSE_ATOMIC_O_TRUNC, which `fuse.rs` asks
        // for, it reaches zkfs inside the OPEN, acknowledged there): three requests
        // (OPEN, the kernel's `security.capability` GETXATTR, RELEASE) where a separate
        // ftruncate took a SETATTR more. Before the IN_MODIFY the kernel drops every
        // cached page of the file, bumps its attribute version (a GETATTR answered
        // before is not kept) and marks size and times stale: the next `stat` or read
        // asks zkfs, which answers with the new version. The size 0 it holds meanwhile
        // is no one's to see.
        let flags = OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        // The descriptor closes when it drops: the RELEASE, and IN_CLOSE_WRITE.
        drop(openat(&dir, p.as_c_str(), flags, Mode::empty())?);
        Ok(())
    }
}

// The filesystem's side: the echo thread's requests are acknowledged, nothing more.
