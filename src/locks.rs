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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{debug, info, warn};

use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::inodes::InodeKind;
use crate::session::{Session, State};
use crate::sync::Recover;
use crate::view::NodeView;

/// Where the answer to a lock request goes (the FUSE reply, in the adapter).
pub type Done = Box<dyn FnOnce(Result<()>) + Send>;

/// Shared (`LOCK_SH`) or exclusive (`LOCK_EX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}

/// One lock request, held or waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    fn conflicts(&self, other: &Holder) -> bool {
        self.owner != other.owner && (self.kind == LockKind::Exclusive || other.kind == LockKind::Exclusive)
    }
}

/// A registration a lock stands for: its path, and the node locked (its czxid, and the
/// session that held it then), so that a later node of the same name — removed with
/// `rm` and registered again — is never taken for it, while the same registration
/// re-created by a new session after an expiry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The znode's path.
    pub path: String,
    /// Its creation zxid.
    pub czxid: i64,
    /// The session that held it when it was locked.
    pub session: i64,
}

struct Waiter {
    holder: Holder,
    done: Done,
}

#[derive(Default)]
struct Entry {
    held: Option<Held>,
    holders: Vec<Holder>,
    waiters: Vec<Waiter>,
    /// The file handle of a create that opens to lock (see [`opens_to_lock`]) not yet
    /// followed by a lock or a write: that open file holds the registration.
    creator: Option<u64>,
}

impl Entry {
    fn unused(&self) -> bool {
        self.holders.is_empty() && self.waiters.is_empty() && self.creator.is_none()
    }
}

/// Replies to send once the table's lock is dropped (a reply is a write to the FUSE
/// device: never made while holding the table).
#[derive(Default)]
struct Outcome {
    replies: Vec<(Done, Result<()>)>,
    freed: Option<Held>,
}

impl Outcome {
    fn send(self) -> Option<Held> {
        for (done, result) in self.replies {
            done(result);
        }
        self.freed
    }
}

/// How often the processes of waiters are looked at for a pending signal.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// How often an open of a registration removed by its lock looks whether the view has
/// dropped it: its echo takes about a millisecond, and only such opens wait.
const DROPPED_POLL: Duration = Duration::from_millis(1);

/// A registration removed because its last lock went: its node's czxid, and whether
/// ZooKeeper is done with it (true once the removal task ends; a dropped sender — the
/// runtime shutting down — counts as done too).
struct Removal {
    czxid: i64,
    /// The inodes that showed it — the one locked and, after a lock registered it
    /// again ([`Fs::lock_removed`]), the one the view gave the new node — and what it
    /// held: a lock through one of them after the view dropped it still finds what it
    /// stood for.
    inos: [u64; 2],
    held: Held,
    /// The file handle whose unlock (`flock -u`) freed it: a lock through that same
    /// open file does not bring it back.
    unlocked_by: Option<u64>,
    done: tokio::sync::watch::Receiver<bool>,
}

impl Removal {
    fn finished(&self) -> bool {
        *self.done.borrow() || self.done.has_changed().is_err()
    }
}

/// The lock table of a mount.
#[derive(Default)]
pub struct Locks {
    /// Inode → its holders and waiters. A std mutex: held only to update the map, never
    /// across a ZooKeeper call or a reply, and no other lock is taken inside it.
    table: Arc<Mutex<HashMap<u64, Entry>>>,
    /// True while the task that interrupts waiters runs.
    watching: Arc<AtomicBool>,
    /// Registrations whose last lock went, from then until the view no longer shows
    /// them (dropped lazily, at the next removal): path → the removed node. Opens and
    /// locks of such a node must not take it for a live one. A std mutex, never held
    /// across an await or with `table`; the view's lock may be taken inside it (to drop
    /// entries no longer shown) but it is never taken inside the view's, so no cycle.
    removing: Mutex<HashMap<String, Removal>>,
}

impl Locks {
    /// An empty table.
    pub fn new() -> Locks {
        Locks::default()
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

    fn change(&self, ino: u64, f: impl FnOnce(&mut Entry, &mut Outcome)) -> Option<Held> {
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
    fn unlocked_through(&self, path: &str, fh: u64) -> bool {
        self.removing.locked().get(path).is_some_and(|r| r.unlocked_by == Some(fh))
    }

    /// What inode `ino` held before its last lock went and the view dropped it.
    fn removed_inode(&self, ino: u64) -> Option<Held> {
        self.removing.locked().values().find(|r| r.inos.contains(&ino)).map(|r| r.held.clone())
    }

    /// The removal of node `czxid` at `path` because its last lock went, if it is one.
    fn removal(&self, path: &str, czxid: i64) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.removing.locked().get(path).filter(|r| r.czxid == czxid).map(|r| r.done.clone())
    }
}

/// Whether user `uid` may hold registration `path` with a lock. Its last unlock removes
/// the registration: with allow_other, anyone who may read it could otherwise remove it.
fn may_hold(uid: u32, path: &str) -> Result<()> {
    let mounter = nix::unistd::getuid().as_raw();
    if uid != mounter && uid != 0 {
        return Err(Error::NotPermitted(format!(
            "{path}: only the user who mounted (or root) can hold a registration with a lock"
        )));
    }
    Ok(())
}

fn interrupt(table: &Mutex<HashMap<u64, Entry>>, interrupted: impl Fn(u32) -> bool) -> bool {
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
fn signal_pending(pid: u32) -> bool {
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
fn grant(entry: &mut Entry, out: &mut Outcome) {
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

impl Fs {
    /// A flock request from the kernel on `ino`.
    ///
    /// # Notable errors
    /// [`Error::Locked`] (EWOULDBLOCK) when another process holds a conflicting lock and
    /// `wait` is false, or when the file is another ZooKeeper session's registration;
    /// [`Error::NotFound`] when the registration is gone.
    ///
    /// # Notable behaviour
    /// A lock on a registration that this mount removed because its last lock went —
    /// the kernel's RELEASE of that lock's file came after this file's open (the kernel
    /// sends it without waiting for zkfs) — registers it again, held by this lock, as
    /// the open would have had the RELEASE come first ([`Fs::lock_removed`]).
    pub fn setlk(self: &Arc<Self>, ino: u64, req: LockRequest, done: Done) {
        let LockRequest { fh, owner, pid, uid, typ, wait } = req;
        let kind = match typ {
            libc::F_UNLCK => {
                let freed = self.locks.unlock(ino, owner);
                done(Ok(()));
                return self.lock_freed(ino, freed, Some(fh));
            }
            libc::F_RDLCK => LockKind::Shared,
            libc::F_WRLCK => LockKind::Exclusive,
            other => return done(Err(Error::InvalidDocument(format!("unknown lock type {other}")))),
        };
        let held = match self.lock_target(ino, uid) {
            Ok(h) => h,
            // The view dropped the file already: the echo of its removal came first.
            Err(Error::Stale) => match self.locks.removed_inode(ino) {
                Some(old) => match may_hold(uid, &old.path) {
                    Ok(()) => Some(old),
                    Err(e) => return done(Err(e)),
                },
                None => return done(Err(Error::Stale)),
            },
            Err(e) => return done(Err(e)),
        };
        let holder = Holder { owner, fh, pid, kind };
        if let Some(old) = held.clone().filter(|h| self.locks.removal(&h.path, h.czxid).is_some()) {
            if self.locks.unlocked_through(&old.path, fh) {
                return done(Err(Error::NotFound(format!(
                    "{}: removed when this file unlocked it; a lock through the same file does not bring it back",
                    old.path
                ))));
            }
            // It waits for the removal and for ZooKeeper: not on fuser's thread.
            let fs = Arc::clone(self);
            drop(self.view.session().runtime().spawn_blocking(move || match fs.lock_removed(ino, &old, pid) {
                Ok(held) => fs.lock_held(ino, Some(held), holder, wait, done),
                Err(e) => done(Err(e)),
            }));
            return;
        }
        self.lock_held(ino, held, holder, wait, done);
    }

    /// Asks the table for the lock, now that what it holds is known.
    fn lock_held(&self, ino: u64, held: Option<Held>, holder: Holder, wait: bool, done: Done) {
        let pid = holder.pid;
        let path = held.as_ref().map(|h| h.path.clone());
        let first = self.locks.holders(ino).is_empty();
        let done: Done = match path {
            Some(path) if first => Box::new(move |r: Result<()>| {
                if r.is_ok() {
                    info!("{path} is held by pid {pid} (lock): it goes when the lock does");
                }
                done(r)
            }),
            _ => done,
        };
        if self.locks.lock(ino, held, holder, wait, done) {
            self.interrupt_waiters();
        }
    }

    /// Registers `old` again for a lock by `pid` through inode `ino`, once its removal
    /// is done (see [`Fs::setlk`]). The new registration is made as `touch` would make
    /// it; other mounts see it come back, this one shows it again (its watchers hear of
    /// the removal, not of this return: no create passed through the kernel).
    ///
    /// # Notable errors
    /// [`Error::Locked`] if the name was registered again meanwhile by someone else;
    /// those of [`Fs::await_removal`] and of the create.
    fn lock_removed(&self, ino: u64, old: &Held, pid: u32) -> Result<Held> {
        self.await_removal(ino, &old.path, old.czxid)?;
        let (dir, name) = crate::inodes::split_path(&old.path).ok_or(Error::Stale)?;
        let parent = self.view.ino(dir, InodeKind::Dir);
        match self.create(parent, name, pid, None) {
            Ok(_) => {}
            Err(Error::Exists(_)) => {
                return Err(Error::Locked(format!(
                    "{}: registered again by someone else since its last lock was released",
                    old.path
                )))
            }
            Err(e) => return Err(e),
        }
        let node = self.view.node(&old.path)?;
        info!("{}: registered again by pid {pid}'s lock, its previous holder's close having removed it", old.path);
        Ok(Held { path: old.path.clone(), czxid: node.stat.czxid, session: node.stat.ephemeral_owner })
    }

    /// Starts, unless it runs, the task that ends the waits of signalled processes.
    /// A workaround: fuser 0.18 does not pass FUSE_INTERRUPT on (see the module head).
    fn interrupt_waiters(&self) {
        if self.locks.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let table = Arc::clone(&self.locks.table);
        let watching = Arc::clone(&self.locks.watching);
        self.view.session().runtime().spawn(async move {
            loop {
                tokio::time::sleep(INTERRUPT_POLL).await;
                // Reading /proc is quick and local; it does not hold up the runtime.
                if !interrupt(&table, signal_pending) {
                    watching.store(false, Ordering::SeqCst);
                    // A waiter queued between the look and the store started no task.
                    if !interrupt(&table, |_| false) || watching.swap(true, Ordering::SeqCst) {
                        return;
                    }
                }
            }
        });
    }

    /// A registration was created by an open (`fh`) made to lock it (flock(1)'s
    /// read-only open, a shell's `exec 9>>FILE`). If the file is closed before any lock
    /// is taken or anything written — its process was killed in between — the
    /// registration goes, as if it had been locked.
    pub fn created_for_lock(&self, ino: u64, fh: u64) {
        if let Ok(Some(held)) = self.lock_target(ino, 0) {
            self.locks.created(ino, fh, held);
        }
    }

    /// The last close of `fh` on `ino`: its locks go.
    pub fn release_locks(&self, ino: u64, fh: u64) {
        let freed = self.locks.release(ino, fh);
        self.lock_freed(ino, freed, None);
    }

    /// What a lock on `ino` stands for: a registration of this session, or nothing (a
    /// lock on `properties.json` is a plain lock).
    fn lock_target(&self, ino: u64, uid: u32) -> Result<Option<Held>> {
        let inode = self.inode(ino)?;
        if inode.kind != InodeKind::Registration {
            return Ok(None);
        }
        may_hold(uid, &inode.path)?;
        let node = self.view.node(&inode.path)?;
        let session = self.view.session();
        if node.stat.ephemeral_owner != session.session_id() {
            let msg = format!(
                "{} is a registration of another ZooKeeper session ({:#x}); only that session can hold it",
                inode.path, node.stat.ephemeral_owner
            );
            warn!("lock refused: {msg}");
            return Err(Error::Locked(msg));
        }
        let held = Held { path: inode.path, czxid: node.stat.czxid, session: node.stat.ephemeral_owner };
        Ok(Some(held))
    }

    /// The last lock on a registration went: remove it from ZooKeeper now.
    fn lock_freed(&self, ino: u64, freed: Option<Held>, unlocked_by: Option<u64>) {
        let Some(held) = freed else { return };
        let session = Arc::clone(self.view.session());
        session.forget_registration(&held.path);
        let (tx, done) = tokio::sync::watch::channel(false);
        let shown_ino = self.view.tree().inodes.existing(&held.path, InodeKind::Registration).unwrap_or(ino);
        {
            let mut removing = self.locks.removing.locked();
            // The removals done and no longer shown go now: nothing else drops them.
            // (The view's lock is taken inside this one, never the other way round.)
            let shown: Vec<(String, bool)> = removing
                .iter()
                .filter(|(_, r)| r.finished())
                .map(|(p, r)| (p.clone(), self.view.cached(p).is_some_and(|n| n.stat.czxid == r.czxid)))
                .collect();
            for (path, _) in shown.into_iter().filter(|(_, shown)| !shown) {
                removing.remove(&path);
            }
            removing.insert(
                held.path.clone(),
                Removal { czxid: held.czxid, inos: [ino, shown_ino], held: held.clone(), unlocked_by, done },
            );
        }
        session.runtime().clone().spawn(async move {
            unregister(&session, &held).await;
            let _ = tx.send(true);
        });
    }

    /// An open of registration `path`, shown by the view as `node` (inode `ino`): if
    /// this mount removed that node because its last lock went — the open came right
    /// after that lock's close, through the kernel's entry of the old file — the open
    /// waits for the removal to be done ([`Fs::await_removal`]) and fails with
    /// [`Error::Stale`], so that the kernel looks the name up again and creates it (see
    /// the module head).
    ///
    /// # Notable errors
    /// [`Error::Stale`] as above; those of [`Fs::await_removal`]; [`Error::WouldWait`]
    /// inline.
    pub(crate) fn open_removed(&self, ino: u64, path: &str, node: &NodeView) -> Result<()> {
        if self.locks.removal(path, node.stat.czxid).is_none() {
            return Ok(());
        }
        crate::wait::may_wait()?;
        self.await_removal(ino, path, node.stat.czxid)?;
        debug!("{path}: opened through the kernel's entry of a registration removed by its lock; ESTALE, to create it anew");
        Err(Error::Stale)
    }

    /// Waits until ZooKeeper and then the view are done with the removal of node
    /// `czxid` at `path` (inode `ino`) because its last lock went. The view drops the
    /// node through its echo, so that this mount's watchers get their `IN_DELETE`
    /// before whatever comes next; only if the echo does not come within the session
    /// timeout is the node dropped here, without the event.
    ///
    /// # Notable errors
    /// [`Error::Unavailable`] if ZooKeeper does not confirm the removal within the
    /// session timeout.
    fn await_removal(&self, ino: u64, path: &str, czxid: i64) -> Result<()> {
        let Some(mut done) = self.locks.removal(path, czxid) else { return Ok(()) };
        let session = self.view.session();
        let deadline = tokio::time::Instant::now() + session.timeout();
        let shown = || self.view.cached(path).is_some_and(|n| n.stat.czxid == czxid) || self.view.inode(ino).is_some();
        let dropped = session.runtime().block_on(async {
            // A closed channel (the runtime going down) ends the wait as well.
            let removed = tokio::time::timeout_at(deadline, done.wait_for(|d| *d)).await;
            if removed.is_err() {
                return Err(Error::Unavailable(format!(
                    "{path}: being removed (its last lock was released), and no ZooKeeper server confirms it"
                )));
            }
            while shown() {
                if tokio::time::Instant::now() >= deadline {
                    return Ok(false);
                }
                tokio::time::sleep(DROPPED_POLL).await;
            }
            Ok(true)
        })?;
        if !dropped {
            debug!("{path}: removed, its echo did not come; dropped without one");
            self.view.local_removed(path);
            if let Some((parent, name)) = crate::inodes::split_path(path) {
                let parent = self.view.ino(parent, InodeKind::Dir);
                self.view.send(vec![crate::view::KernelNote::InvalEntry { parent, name: name.to_string() }]);
            }
        }
        Ok(())
    }
}

/// Deletes the registration `held` if this session still holds it, retrying while no
/// server answers (a registration left behind with no holder would send traffic to a
/// dead server) until it is gone or the mount closes.
async fn unregister(session: &Session, held: &Held) {
    let path = held.path.as_str();
    loop {
        if session.state().0 == State::Closed {
            return;
        }
        let p = path.to_string();
        let stat = session.call_async(path, |c| async move { c.check_stat(&p).await }).await;
        let error = match stat {
            Ok(None) => return,
            Ok(Some(stat)) if stat.ephemeral_owner != session.session_id() => return,
            // Another node of the same session: the locked one was removed (rm) and
            // the name registered again. After an expiry, the node is new anyway.
            Ok(Some(stat)) if stat.ephemeral_owner == held.session && stat.czxid != held.czxid => return,
            Ok(Some(stat)) => {
                let (p, version) = (path.to_string(), stat.version);
                match session.call_async(path, |c| async move { c.delete(&p, Some(version)).await }).await {
                    Ok(()) | Err(Error::NotFound(_)) => {
                        info!("unregistered {path}: its last lock was released");
                        return;
                    }
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        warn!("cannot remove {path} yet ({error}); retrying");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
