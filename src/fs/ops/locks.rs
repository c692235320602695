//! flock(2) on files of the mount: the operations over the lock table (`fs/locks.rs`)
//! that make a lock hold a registration, and its last unlock remove it.

use super::Fs;
use crate::error::{Error, Result};
use crate::fs::locks::*;
use crate::model::inodes::InodeKind;
use crate::model::view::NodeView;
use crate::sync::Recover;
use crate::zookeeper::session::{Session, State};
use log::{debug, info, warn};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

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
        let session = Arc::clone(self.view.session());
        let done: Done = match path {
            Some(path) if first => Box::new(move |r: Result<()>| {
                if r.is_ok() {
                    info!("{path} is held by pid {pid} (lock): it goes when the lock does");
                    // Saved for a successor after a crash (zookeeper/saved.rs), in the
                    // background: the reply does not wait for the file.
                    session.held_by_lock(&path, pid);
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
        let (dir, name) = crate::model::inodes::split_path(&old.path).ok_or(Error::Stale)?;
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
        let shown_ino = self.view.existing_ino(&held.path, InodeKind::Registration).unwrap_or(ino);
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
        crate::zookeeper::wait::may_wait()?;
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
            if let Some((parent, name)) = crate::model::inodes::split_path(path) {
                let parent = self.view.ino(parent, InodeKind::Dir);
                self.view.send(vec![crate::model::view::KernelNote::InvalEntry { parent, name: name.to_string() }]);
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
    let mut warned = false;
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
        // Said once per removal: while no server answers, this retries 5 times a second.
        if !warned {
            warn!("cannot remove {path} yet ({error}); retrying until a server answers");
            warned = true;
        } else {
            debug!("cannot remove {path} yet ({error}); retrying");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
