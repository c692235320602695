//! Locks that hold registrations: who holds a lock on which file, and what happens when
//! the last one goes.
//!
//! With `FUSE_FLOCK_LOCKS`, the kernel hands every `flock(2)` on the mount to zkfs (as
//! SETLK/SETLKW) instead of keeping it itself, and when the last descriptor of a file
//! that held a flock is closed — by `close`, by exit, or because its process was killed,
//! even with SIGKILL — it sends the file's RELEASE. So zkfs knows, as a local disk would,
//! who holds what, and a registration can live exactly as long as its holder:
//!
//! * A lock is held by an *open file* (the kernel's lock owner of a flock is its open
//!   file description, and each open has its own file handle here), shared or
//!   exclusive, with flock's conflict rules. A conversion drops the old lock before it
//!   waits, as the kernel's own flock does, so two upgrading holders cannot deadlock.
//! * A SETLKW that must wait leaves its reply in the table and returns: no thread is
//!   blocked while it waits. The unlock or release that frees the lock sends the reply.
//! * A process waiting for a FUSE reply cannot even be killed until it comes (the
//!   kernel "waits it out"), and fuser 0.18 answers the kernel's FUSE_INTERRUPT with
//!   ENOSYS without telling the filesystem. So while anyone waits, a task looks every
//!   50 ms at the waiters' processes and answers EINTR to one that has a signal
//!   pending (Ctrl-C, `timeout`, `flock -w`'s alarm, SIGKILL): the kernel then delivers
//!   the signal, or restarts the call, as on a local disk.
//! * When the last lock on a registration goes and no waiter takes it over, the
//!   registration is removed from ZooKeeper at once and forgotten by the session (so it
//!   is not re-created after an expiry). Other mounts see it go through their watches,
//!   this one through its echo (IN_DELETE), as for a removal made elsewhere.
//! * flock(1) creates its file with a read-only open, then locks it; a shell opens it
//!   to append (`exec 9>>FILE; flock 9`, Python's `open(FILE, "a")`). A registration
//!   created so is held by that open file until a lock takes over or it writes, so
//!   that a holder killed in between — even with SIGKILL — leaves nothing behind. A
//!   create that writes (`echo >> FILE`) or truncates (`touch`, `echo >`) does not
//!   hold: its registration keeps the mount's lifetime.
//! * Only the session that holds a registration can lock it: a lock on another
//!   session's registration fails at once with `EWOULDBLOCK`, waiting or not, so two
//!   hosts can never both hold one address.
//! * A registration removed so is still shown by the mount for a moment (until its
//!   echo), and the kernel keeps its entry: a shell's `exec 9>>FILE` right after the
//!   close comes as an OPEN of the old file, not as a create (FUSE_OPEN carries no
//!   O_CREAT). Such an open waits for the removal and for the mount to drop the node,
//!   then answers `ESTALE`: the kernel walks the path again with `LOOKUP_REVAL`, its
//!   lookup finds nothing, and its create registers anew ([`Fs::open_removed`]).
//!
//! fcntl (POSIX) locks are not handed over (no `FUSE_POSIX_LOCKS`): the kernel keeps
//! them locally, where they conflict between processes of this host but hold nothing.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::debug;

use crate::error::{Error, Result};
use crate::sync::Recover;

/// Where the answer to a lock request goes (the FUSE reply, in the adapter).
pub type Done = Box<dyn FnOnce(Result<()>) + Send>;

/// Shared (`LOCK_SH`) or exclusive (`LOCK_EX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LockKind {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}

/// One lock request, held or waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// The kernel's lock owner (the open file description for a flock).
    pub owner: u64,
    /// The file handle it came through.
    pub fh: u64,
    /// The process that asked, for the log.
    pub pid: u32,
    /// Shared or exclusive.
    pub kind: LockKind,
}

impl Holder {
    pub(crate) fn conflicts(&self, other: &Holder) -> bool {
        self.owner != other.owner && (self.kind == LockKind::Exclusive || other.kind == LockKind::Exclusive)
    }
}

/// A registration a lock stands for: its path, and the node locked (its czxid, and the
/// session that held it then), so that a later node of the same name — removed with
/// `rm` and registered again — is never taken for it, while the same registration
/// re-created by a new session after an expiry is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Held {
    /// The znode's path.
    pub path: String,
    /// Its creation zxid.
    pub czxid: i64,
    /// The session that held it when it was locked.
    pub session: i64,
}

pub(crate) struct Waiter {
    pub(crate) holder: Holder,
    pub(crate) done: Done,
}

#[derive(Default)]
pub(crate) struct Entry {
    pub(crate) held: Option<Held>,
    pub(crate) holders: Vec<Holder>,
    pub(crate) waiters: Vec<Waiter>,
    /// The file handle of a create that opens to lock (see [`opens_to_lock`]) not yet
    /// followed by a lock or a write: that open file holds the registration.
    pub(crate) creator: Option<u64>,
}

impl Entry {
    pub(crate) fn unused(&self) -> bool {
        self.holders.is_empty() && self.waiters.is_empty() && self.creator.is_none()
    }
}

/// Replies to send once the table's lock is dropped (a reply is a write to the FUSE
/// device: never made while holding the table).
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) replies: Vec<(Done, Result<()>)>,
    pub(crate) freed: Option<Held>,
}

impl Outcome {
    pub(crate) fn send(self) -> Option<Held> {
        for (done, result) in self.replies {
            done(result);
        }
        self.freed
    }
}

/// How often the processes of waiters are looked at for a pending signal.
pub(crate) const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// How often an open of a registration removed by its lock looks whether the view has
/// dropped it: its echo takes about a millisecond, and only such opens wait.
pub(crate) const DROPPED_POLL: Duration = Duration::from_millis(1);

/// A registration removed because its last lock went: its node's czxid, and whether
/// ZooKeeper is done with it (true once the removal task ends; a dropped sender — the
/// runtime shutting down — counts as done too).
pub(crate) struct Removal {
    pub(crate) czxid: i64,
    /// The inodes that showed it — the one locked and, after a lock registered it
    /// again ([`Fs::lock_removed`]), the one the view gave the new node — and what it
    /// held: a lock through one of them after the view dropped it still finds what it
    /// stood for.
    pub(crate) inos: [u64; 2],
    pub(crate) held: Held,
    /// The file handle whose unlock (`flock -u`) freed it: a lock through that same
    /// open file does not bring it back.
    pub(crate) unlocked_by: Option<u64>,
    pub(crate) done: tokio::sync::watch::Receiver<bool>,
}

impl Removal {
    pub(crate) fn finished(&self) -> bool {
        *self.done.borrow() || self.done.has_changed().is_err()
    }
}

/// The locks of one inode as handed over (see [`Locks::handed`]).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct HandedLock {
    ino: u64,
    held: Option<Held>,
    holders: Vec<Holder>,
    creator: Option<u64>,
}

/// The lock table of a mount.
#[derive(Default)]
pub struct Locks {
    /// Inode → its holders and waiters. A std mutex: held only to update the map, never
    /// across a ZooKeeper call or a reply, and no other lock is taken inside it.
    pub(crate) table: Arc<Mutex<HashMap<u64, Entry>>>,
    /// True while the task that interrupts waiters runs.
    pub(crate) watching: Arc<AtomicBool>,
    /// Registrations whose last lock went, from then until the view no longer shows
    /// them (dropped lazily, at the next removal): path → the removed node. Opens and
    /// locks of such a node must not take it for a live one. A std mutex, never held
    /// across an await or with `table`; the view's lock may be taken inside it (to drop
    /// entries no longer shown) but it is never taken inside the view's, so no cycle.
    pub(crate) removing: Mutex<HashMap<String, Removal>>,
}

impl Locks {
    /// An empty table.
    pub fn new() -> Locks {
        Locks::default()
    }

    /// The locks held, for the next process image of the mount (`zkfs reload`): per
    /// inode, the registration it stands for, its holders, and the open file of a
    /// create that holds it. Waiters are not: the kernel sends their requests again.
    pub fn handed(&self) -> Vec<HandedLock> {
        let table = self.table.locked();
        table
            .iter()
            .filter(|(_, e)| !e.holders.is_empty() || e.creator.is_some())
            .map(|(ino, e)| HandedLock {
                ino: *ino,
                held: e.held.clone(),
                holders: e.holders.clone(),
                creator: e.creator,
            })
            .collect()
    }

    /// Takes over the locks [`Locks::handed`] gave.
    pub fn take_over(&self, locks: Vec<HandedLock>) {
        let mut table = self.table.locked();
        for l in locks {
            let entry = table.entry(l.ino).or_default();
            entry.held = l.held;
            entry.holders = l.holders;
            entry.creator = l.creator;
        }
    }

    /// Asks for a lock on `ino` (standing for registration `held`, if any). `done` gets
    /// the answer: now, or — if `wait` and the lock is taken — when it is free.
    /// Returns true if the request waits.
    pub fn lock(&self, ino: u64, held: Option<Held>, holder: Holder, wait: bool, done: Done) -> bool {
        let mut out = Outcome::default();
        let mut queued = false;
        {
            let mut table = self.table.locked();
            let entry = table.entry(ino).or_default();
            if held.is_some() {
                entry.held = held;
            }
            entry.creator = None;
            if let Some(mine) = entry.holders.iter_mut().find(|h| h.owner == holder.owner) {
                if mine.kind == holder.kind {
                    out.replies.push((done, Ok(())));
                    drop(table);
                    out.send();
                    return false;
                }
            }
            let conflict = entry.holders.iter().find(|h| h.conflicts(&holder)).copied();
            match conflict {
                None => {
                    entry.holders.retain(|h| h.owner != holder.owner);
                    entry.holders.push(holder);
                    out.replies.push((done, Ok(())));
                }
                Some(other) => {
                    // A conversion gives up the old lock first, as flock(2) does.
                    entry.holders.retain(|h| h.owner != holder.owner);
                    if wait {
                        debug!("lock on inode {ino} by pid {} waits for pid {}", holder.pid, other.pid);
                        entry.waiters.push(Waiter { holder, done });
                        queued = true;
                    } else {
                        let what =
                            entry.held.as_ref().map(|h| h.path.clone()).unwrap_or_else(|| format!("inode {ino}"));
                        out.replies.push((done, Err(Error::Locked(format!("{what} is locked by pid {}", other.pid)))));
                    }
                    // Dropping the old lock may let others in.
                    grant(entry, &mut out);
                }
            }
        }
        out.send();
        queued
    }

    /// Answers EINTR to every waiter whose process `interrupted` says has a signal
    /// pending. Returns true while anyone still waits.
    pub fn interrupt(&self, interrupted: impl Fn(u32) -> bool) -> bool {
        interrupt(&self.table, interrupted)
    }

    /// `LOCK_UN` by `owner`. Returns the registration that lost its last lock, if any.
    pub fn unlock(&self, ino: u64, owner: u64) -> Option<Held> {
        self.change(ino, |entry, _| entry.holders.retain(|h| h.owner != owner))
    }

    /// The last close of file handle `fh`: its locks go, and so does a wait of its.
    /// Returns the registration that lost its last lock, if any.
    pub fn release(&self, ino: u64, fh: u64) -> Option<Held> {
        self.change(ino, |entry, out| {
            if entry.creator == Some(fh) {
                entry.creator = None;
            }
            entry.holders.retain(|h| h.fh != fh);
            let (gone, kept): (Vec<Waiter>, Vec<Waiter>) = entry.waiters.drain(..).partition(|w| w.holder.fh == fh);
            entry.waiters = kept;
            // Its process is gone (a file being waited on is not released otherwise).
            out.replies.extend(gone.into_iter().map(|w| (w.done, Err(Error::Stale))));
        })
    }

    pub(crate) fn change(&self, ino: u64, f: impl FnOnce(&mut Entry, &mut Outcome)) -> Option<Held> {
        let mut out = Outcome::default();
        {
            let mut table = self.table.locked();
            let entry = table.get_mut(&ino)?;
            let had = !entry.holders.is_empty() || entry.creator.is_some();
            f(entry, &mut out);
            grant(entry, &mut out);
            if had && entry.holders.is_empty() && entry.creator.is_none() {
                out.freed = entry.held.clone();
            }
            if entry.unused() {
                table.remove(&ino);
            }
        }
        out.send()
    }

    /// File handle `fh` wrote: a registration its create held (`created`) is no
    /// longer held by it, and keeps the mount's lifetime unless a lock takes it over.
    pub fn written(&self, fh: u64) {
        let mut table = self.table.locked();
        if table.is_empty() {
            return;
        }
        for entry in table.values_mut() {
            if entry.creator == Some(fh) {
                entry.creator = None;
            }
        }
        table.retain(|_, e| !e.unused());
    }

    /// Registration `held` was just created by an open (`fh`) that opens to lock (see
    /// [`opens_to_lock`]): until a lock is asked for, or it writes, that open holds it.
    pub fn created(&self, ino: u64, fh: u64, held: Held) {
        if let Ok(mut table) = self.table.lock() {
            let entry = table.entry(ino).or_default();
            entry.held = Some(held);
            entry.creator = Some(fh);
        }
    }

    /// The processes holding a lock on `ino`.
    pub fn holders(&self, ino: u64) -> Vec<u32> {
        self.table.locked().get(&ino).map(|e| e.holders.iter().map(|h| h.pid).collect()).unwrap_or_default()
    }

    /// True if the last removal of `path` by a lock came from an unlock through `fh`.
    pub(crate) fn unlocked_through(&self, path: &str, fh: u64) -> bool {
        self.removing.locked().get(path).is_some_and(|r| r.unlocked_by == Some(fh))
    }

    /// What inode `ino` held before its last lock went and the view dropped it.
    pub(crate) fn removed_inode(&self, ino: u64) -> Option<Held> {
        self.removing.locked().values().find(|r| r.inos.contains(&ino)).map(|r| r.held.clone())
    }

    /// The removal of node `czxid` at `path` because its last lock went, if it is one.
    pub(crate) fn removal(&self, path: &str, czxid: i64) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.removing.locked().get(path).filter(|r| r.czxid == czxid).map(|r| r.done.clone())
    }
}

/// Whether user `uid` may hold registration `path` with a lock. Its last unlock removes
/// the registration: with allow_other, anyone who may read it could otherwise remove it.
pub(crate) fn may_hold(uid: u32, path: &str) -> Result<()> {
    let mounter = nix::unistd::getuid().as_raw();
    if uid != mounter && uid != 0 {
        return Err(Error::NotPermitted(format!(
            "{path}: only the user who mounted (or root) can hold a registration with a lock"
        )));
    }
    Ok(())
}

pub(crate) fn interrupt(table: &Mutex<HashMap<u64, Entry>>, interrupted: impl Fn(u32) -> bool) -> bool {
    let mut out = Outcome::default();
    let mut waiting = false;
    {
        let mut table = table.locked();
        for entry in table.values_mut() {
            let (gone, kept): (Vec<Waiter>, Vec<Waiter>) =
                entry.waiters.drain(..).partition(|w| interrupted(w.holder.pid));
            entry.waiters = kept;
            waiting |= !entry.waiters.is_empty();
            out.replies.extend(gone.into_iter().map(|w| (w.done, Err(Error::Interrupted))));
        }
        table.retain(|_, e| !e.unused());
    }
    out.send();
    waiting
}

/// True if process `pid` has a signal pending that it does not block, in any thread,
/// or is gone: its wait must end. An answer of EINTR without a pending signal would
/// reach the program as errno 512 (ERESTARTSYS), so when in doubt — a process of
/// another pid namespace (pid 0), a /proc it cannot read — it keeps waiting.
pub(crate) fn signal_pending(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let tasks = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(tasks) => tasks,
        Err(e) => return e.kind() == std::io::ErrorKind::NotFound,
    };
    let mask = |status: &str, key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    tasks.flatten().any(|task| {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let pending = mask(&status, "SigPnd:").unwrap_or(0) | mask(&status, "ShdPnd:").unwrap_or(0);
        pending & !mask(&status, "SigBlk:").unwrap_or(0) != 0
    })
}

/// Lets in the waiters that no longer conflict, in the order they came.
pub(crate) fn grant(entry: &mut Entry, out: &mut Outcome) {
    let mut i = 0;
    while i < entry.waiters.len() {
        let w = entry.waiters[i].holder;
        if entry.holders.iter().any(|h| h.conflicts(&w)) {
            i += 1;
            continue;
        }
        let waiter = entry.waiters.remove(i);
        entry.holders.retain(|h| h.owner != w.owner);
        entry.holders.push(w);
        out.replies.push((waiter.done, Ok(())));
    }
}

/// True if a create with open `flags` is an open made to lock the file: read-only
/// (flock(1)) or appending without truncation (`exec 9>>FILE`, Python's
/// `open(FILE, "a")`). Such a create holds its registration until a lock takes over;
/// a write ends the hold (`echo >> FILE` registers for the mount's lifetime).
pub fn opens_to_lock(flags: i32) -> bool {
    let read_only = flags & libc::O_ACCMODE == libc::O_RDONLY;
    let append = flags & libc::O_APPEND != 0 && flags & libc::O_TRUNC == 0;
    read_only || append
}

/// A flock request as the kernel sends it.
#[derive(Debug, Clone, Copy)]
pub struct LockRequest {
    /// The file handle it comes through.
    pub fh: u64,
    /// The kernel's lock owner.
    pub owner: u64,
    /// The process asking.
    pub pid: u32,
    /// The user asking.
    pub uid: u32,
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub typ: i32,
    /// SETLKW: wait for a conflicting lock to go.
    pub wait: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn holder(owner: u64, kind: LockKind) -> Holder {
        Holder { owner, fh: owner * 10, pid: owner as u32, kind }
    }

    fn reg() -> Option<Held> {
        Some(Held { path: "/s/h:1".into(), czxid: 7, session: 1 })
    }

    /// Asks for a lock; the receiver gets its answer when it comes.
    fn ask(locks: &Locks, owner: u64, kind: LockKind, wait: bool) -> mpsc::Receiver<Result<()>> {
        let (tx, rx) = mpsc::channel();
        locks.lock(
            1,
            reg(),
            holder(owner, kind),
            wait,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx
    }

    fn granted(rx: &mpsc::Receiver<Result<()>>) -> bool {
        matches!(rx.try_recv(), Ok(Ok(())))
    }

    #[test]
    fn an_exclusive_lock_excludes_others_and_its_release_frees_the_registration() {
        let locks = Locks::new();
        assert!(granted(&ask(&locks, 1, LockKind::Exclusive, false)));
        let refused = ask(&locks, 2, LockKind::Exclusive, false).try_recv().unwrap();
        assert_eq!(refused.unwrap_err().errno(), libc::EWOULDBLOCK);
        assert!(ask(&locks, 3, LockKind::Shared, false).try_recv().unwrap().is_err());
        assert_eq!(locks.holders(1), vec![1]);
        assert_eq!(locks.release(1, 10), reg(), "the last holder's close frees the registration");
        assert!(locks.holders(1).is_empty());
        assert_eq!(locks.release(1, 10), None, "a second release frees nothing");
    }

    #[test]
    fn shared_locks_coexist_and_only_the_last_unlock_frees() {
        let locks = Locks::new();
        assert!(granted(&ask(&locks, 1, LockKind::Shared, false)));
        assert!(granted(&ask(&locks, 2, LockKind::Shared, false)));
        assert_eq!(locks.unlock(1, 1), None);
        assert_eq!(locks.unlock(1, 2), reg());
    }

    #[test]
    fn a_waiter_takes_over_without_the_registration_being_freed() {
        let locks = Locks::new();
        assert!(granted(&ask(&locks, 1, LockKind::Exclusive, false)));
        let waiting = ask(&locks, 2, LockKind::Exclusive, true);
        assert!(waiting.try_recv().is_err(), "a waiter is answered only once the lock is free");
        assert_eq!(locks.unlock(1, 1), None, "handed over, not freed");
        assert!(granted(&waiting));
        assert_eq!(locks.holders(1), vec![2]);
        assert_eq!(locks.release(1, 20), reg());
    }

    #[test]
    fn a_waiter_whose_file_is_released_is_dropped_and_never_holds() {
        let locks = Locks::new();
        assert!(granted(&ask(&locks, 1, LockKind::Exclusive, false)));
        let waiting = ask(&locks, 2, LockKind::Exclusive, true);
        assert_eq!(locks.release(1, 20), None);
        assert!(matches!(waiting.try_recv(), Ok(Err(Error::Stale))));
        assert_eq!(locks.release(1, 10), reg(), "nobody took the lock over");
    }

    #[test]
    fn a_signalled_waiter_is_answered_eintr_and_never_holds() {
        let locks = Locks::new();
        assert!(granted(&ask(&locks, 1, LockKind::Exclusive, false)));
        let waiting = ask(&locks, 2, LockKind::Exclusive, true);
        let other = ask(&locks, 3, LockKind::Exclusive, true);
        assert!(locks.interrupt(|pid| pid == 2), "pid 3 still waits");
        assert!(matches!(waiting.try_recv(), Ok(Err(Error::Interrupted))));
        assert!(locks.interrupt(|_| false));
        assert_eq!(locks.unlock(1, 1), None, "handed over to pid 3");
        assert!(granted(&other));
        assert!(!locks.interrupt(|_| true), "nobody waits any more");
        assert_eq!(locks.release(1, 30), reg());
    }

    #[test]
    fn a_process_without_pending_signals_keeps_waiting_and_a_gone_one_does_not() {
        assert!(!signal_pending(std::process::id()));
        assert!(signal_pending(u32::MAX), "no such process");
        assert!(!signal_pending(0), "a process of another pid namespace");
    }

    #[test]
    fn a_read_only_create_holds_the_registration_until_a_lock_takes_over() {
        let locks = Locks::new();
        let held = reg().unwrap();
        locks.created(1, 10, held.clone());
        assert_eq!(locks.release(1, 10), reg(), "closed before any lock: the registration goes");

        locks.created(1, 10, held);
        assert!(granted(&ask(&locks, 1, LockKind::Exclusive, false)));
        assert_eq!(locks.release(1, 99), None, "another file's close changes nothing");
        assert_eq!(locks.unlock(1, 1), reg(), "from the lock on, the lock holds it");
        assert_eq!(locks.release(1, 10), None);
    }

    #[test]
    fn a_create_that_writes_before_any_lock_keeps_its_registration() {
        let locks = Locks::new();
        locks.created(1, 10, reg().unwrap());
        locks.written(99);
        assert_eq!(locks.release(1, 99), None);
        locks.written(10);
        assert_eq!(locks.release(1, 10), None, "written: the registration keeps the mount's lifetime");
        assert!(locks.table.locked().is_empty());
    }

    #[test]
    fn opens_made_to_lock_are_read_only_or_appending_ones() {
        let create = libc::O_CREAT;
        assert!(opens_to_lock(create | libc::O_RDONLY), "flock(1)");
        assert!(opens_to_lock(create | libc::O_WRONLY | libc::O_APPEND), "exec 9>>FILE");
        assert!(opens_to_lock(create | libc::O_RDWR | libc::O_APPEND), "open(FILE, \"a+\")");
        assert!(!opens_to_lock(create | libc::O_WRONLY | libc::O_NOCTTY | libc::O_NONBLOCK), "touch");
        assert!(!opens_to_lock(create | libc::O_WRONLY | libc::O_TRUNC), "echo >");
        assert!(!opens_to_lock(create | libc::O_RDWR), "exec 9<>FILE");
    }

    #[test]
    fn a_conversion_gives_up_the_old_lock_so_two_upgraders_do_not_deadlock() {
        let locks = Locks::new();
        assert!(granted(&ask(&locks, 1, LockKind::Shared, false)));
        assert!(granted(&ask(&locks, 2, LockKind::Shared, false)));
        let up1 = ask(&locks, 1, LockKind::Exclusive, true);
        assert!(up1.try_recv().is_err());
        // Owner 1 gave up its shared lock to wait, which lets owner 2 upgrade.
        let up2 = ask(&locks, 2, LockKind::Exclusive, true);
        assert!(granted(&up2));
        assert!(up1.try_recv().is_err());
        assert_eq!(locks.unlock(1, 2), None);
        assert!(granted(&up1));
        // Asking again for the lock one holds is answered at once.
        assert!(granted(&ask(&locks, 1, LockKind::Exclusive, false)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Steps: an owner (1–4) asks for a shared or exclusive lock, or releases.
        #[test]
        fn model_many_owners_random_operations_keep_flock_rules(
            steps in proptest::collection::vec((1u64..5, 0..3usize, proptest::bool::ANY), 1..40),
        ) {
            let locks = Locks::new();
            // Model: owner → kind held.
            let mut model: HashMap<u64, LockKind> = HashMap::new();
            for (owner, action, shared) in steps {
                if action < 2 {
                    let kind = if shared { LockKind::Shared } else { LockKind::Exclusive };
                    let others_conflict = model
                        .iter()
                        .any(|(o, k)| *o != owner && (kind == LockKind::Exclusive || *k == LockKind::Exclusive));
                    let result = ask(&locks, owner, kind, false).try_recv().unwrap();
                    proptest::prop_assert_eq!(result.is_ok(), !others_conflict, "owner {} {:?} with {:?}", owner, kind, model);
                    if others_conflict {
                        model.remove(&owner);
                    } else {
                        model.insert(owner, kind);
                    }
                } else {
                    let freed = locks.release(1, owner * 10);
                    let had = model.remove(&owner).is_some();
                    proptest::prop_assert_eq!(freed.is_some(), had && model.is_empty());
                }
                let mut held = locks.holders(1);
                held.sort();
                let mut expected: Vec<u32> = model.keys().map(|o| *o as u32).collect();
                expected.sort();
                proptest::prop_assert_eq!(held, expected);
            }
        }
    }
}
