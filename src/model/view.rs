//! The mount's view of the ZooKeeper tree: what it has shown, kept fresh by one watch,
//! and what the kernel must be told when ZooKeeper reports a change.
//!
//! # Design
//!
//! Every znode the kernel has been shown is cached here with its data and stat and,
//! once listed, its children (with their kinds: a persistent child is a directory, an
//! ephemeral one a registration file). Memory grows with what has been looked at, not
//! with the ensemble.
//!
//! A kind costs a read of the child, so nothing that is to be shown waits for more
//! kinds than it shows: a lookup reads the one child it asks for (its stat says its
//! kind), a `readdir` answers with the names at once, giving `DT_UNKNOWN` for the
//! children whose kind is not known yet ([`View::listing`]; `ls`, `find -name` and
//! globs need no type). A program that needs the types then asks for each name
//! (`ls -l`, `find -type`): the first such lookup in a directory whose names a
//! `readdir` showed learns all the kinds it lacks in one pipelined batch, and keeps
//! the nodes it read. A child's inode number is fixed when its name is first shown,
//! whatever kind it turns out to be (`inodes.rs`). The kinds a listing lacks are also
//! learnt in the background right after it ([`View::learn_kinds`]), which nothing waits
//! for and which yields to the requests programs wait for (`background.rs`): the echo
//! of a removal elsewhere needs the kind (`unlink` or `rmdir`, and the type its lookup
//! answers), also for a child never shown. A removal heard while the multi-read holding
//! its child is out waits for it; a child removed before a batch could read it has no
//! kind left to learn, and its removal only invalidates the kernel's entry and cached
//! listing (see the README, "Every change is heard").
//!
//! A program walking a directory in name order (each lookup the sibling after the
//! last one's) has the next siblings read and listed ahead of it, a multi-read per
//! half window, each led as its own lookup would lead it ([`View::read_ahead`]): a
//! cold walk pays a round trip per 16 directories, not per directory.
//!
//! The view watches what the kernel holds, nothing else (`watches.rs`, and the README,
//! "The live view"): each node from before its first read for as long as the kernel
//! holds one of its inodes, with one ZooKeeper ≥ 3.6 persistent watch — a directory's
//! gives its data, its deletion and `NodeChildrenChanged`, on which the event task
//! lists it again and compares; a directory of registrations has one persistent
//! recursive watch instead, which also gives its registrations' data changes. What the
//! kernel forgets is no longer watched, and no longer cached.
//!
//! Watch events are handled by one task ([`View::start`]), in order. It updates the
//! cache and queues [`KernelNote`]s — what the kernel must forget, and the echoes below.
//!
//! ## Nothing waits for an unrelated request
//!
//! No lock is held across a ZooKeeper round trip. A cold read of a node (or listing of
//! a directory) is a single flight (`flight.rs`): requests for the same node share one
//! read, requests for different nodes go side by side, and each waits at most one
//! session timeout from its own start. The event task does not wait for them either.
//! The guarantees a global lock gave are kept by other means:
//!
//! * *an event is never applied before the read it follows*: ZooKeeper delivers a
//!   watch event before the answer to any read made after the change, so a read that
//!   lands before the event task sees the event already shows the change, and the
//!   event then finds the node cached and is applied as usual (a re-read that finds
//!   nothing newer changes nothing);
//! * *no change falls between an event and the read*: an event that the task applies
//!   while a read of the same node (or listing of the same directory) is in flight
//!   marks that flight; its leader stores what it read and has the event task read
//!   the node again (list the directory again), in order with later events.
//!
//! Requests that can be answered from the cache never wait at all (see `wait.rs`:
//! the FUSE adapter runs them on fuser's threads and moves those that must wait).
//!
//! ## Events for changes made elsewhere (the self-echo)
//!
//! The kernel emits inotify events only for operations that pass through the VFS, and
//! FUSE cannot ask it to emit them. So a change made elsewhere is *echoed*: the mount's
//! echo thread (`echo.rs`) makes the matching syscall on the mount itself (`mknod`,
//! `mkdir`, `unlink`, `rmdir`, or open-truncate-close), and the filesystem acknowledges
//! it without touching ZooKeeper; the VFS then gives every watcher its ordinary events.
//! For that, a child added elsewhere is [`Presence::PendingCreate`] — hidden from
//! lookups and listings until its echo `mknod` arrives — and a child removed elsewhere
//! is [`Presence::PendingRemove`] — still visible until its echo `unlink` arrives. If an
//! echo fails, the echo thread settles the state and just invalidates the kernel's
//! entry, so the view is right even when no event can be given.
//!
//! Every change the kernel could know of is heard: every directory the kernel has an
//! inode for is listed — a looked up directory is listed by its lookup (names only,
//! asked together with its read: one round trip), and a
//! directory made by `mkdir` here or echoed from elsewhere is *adopted*: listed by the
//! event task, its children created since the directory itself shown as created
//! (echoed). A data change is echoed for every node whose file the kernel may know (its
//! directory, or its name in a directory the kernel knows), read here before or not.
//!
//! New data of a cached node is echoed at once, before it is read: the node is marked
//! *stale*, and whoever reads it through the filesystem waits (at most one session
//! timeout, then gets the last data known) for the re-read, so `cat` right after the
//! event shows the new data. Data of a node not cached yet is read first, then echoed.
//!
//! ## Changes made through this mount
//!
//! They already pass through the VFS, so they must not be echoed. Each one holds a
//! [`LocalChange`] guard on its path from before its ZooKeeper request until its result
//! is in the cache: a watch event for a path under a guard updates the cache and is
//! otherwise silent. (A change made elsewhere in that same instant is folded into the
//! local one: watchers get one event for both.)
//!
//! After a reconnect or a new session the watches are gone (zookeeper-client 0.11.2
//! does not restore persistent watches, and events are lost, see ZOOKEEPER-4698): the
//! task sets them again at once and, within `resync_window`, re-reads what the kernel
//! holds, queueing the notes for whatever changed meanwhile.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use log::debug;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::model::flight::Join;
use crate::model::inodes::{child_path, split_path, Inode, InodeKind};
pub use crate::model::tree::{data_file, Child, KernelNote, Kind, NodeView, Presence};
use crate::model::tree::{node_view, Node, Tree};
use crate::sync::Recover;
use crate::zookeeper::session::Session;
use crate::zookeeper::{Stat, WatchedEvent};

/// How long after a change of its data a file's attributes are not cached by the
/// kernel (see `Fs::getattr`).
pub const SETTLE: Duration = Duration::from_secs(1);

/// Children whose kinds one multi-read learns: each answer carries the child's data,
/// so a batch's answer stays small enough for the usual small registrations and
/// properties (at most this many times ZooKeeper's 1 MB node limit for huge ones).
const KIND_BATCH: usize = 100;

/// Siblings read ahead of a walk through a directory (see [`View::read_ahead`]), in
/// multi-reads of half as many: a round trip's worth of lookups answered from memory.
const READ_AHEAD: usize = 32;

/// Directories whose last lookup is remembered for [`View::read_ahead`].
const MAX_WALKED: usize = 1024;

/// How long a `readdir` waits for the first answer of the batch learning the kinds it
/// lacks (see [`View::listing`]): a round trip and the server's read of 100 nodes.
const FIRST_ANSWER: Duration = Duration::from_millis(100);

/// Multi-reads sent: the children each asks for, and its answer to come.
type Sent = Vec<(Vec<String>, crate::zookeeper::Reply<Vec<crate::zookeeper::Read>>)>;

/// A child read by a multi-read: its name, its data (`None` if its ACL denies this
/// mount reading it) and its stat.
type Answer = (String, Option<Vec<u8>>, Stat);

/// What the event task works through, in order.
#[derive(Debug)]
pub enum Change {
    /// An event of the root watch.
    Event(WatchedEvent),
    /// Read this node again: a change was heard while a read of it was in flight.
    Recheck(String),
    /// List this directory again: a child changed while a listing was in flight.
    Relist(String),
    /// List this directory, which the kernel now knows (made here, or echoed): its
    /// children made since it was created are echoed as created.
    Adopt(String),
    /// A child of this directory was added or removed (its watch said so): list it
    /// again and compare. Coalesced (see `watches.rs`).
    Children(String),
    /// Read this node (and list it, if listed) again: its watch was set after it was
    /// cached.
    Reload(String),
    /// Read these children of a directory again: they were cached from a read sent
    /// before their watches.
    Verify(String, Vec<String>),
    /// Remove the watches no longer wanted (see `watches.rs`).
    Sweep,
    /// Watch this directory of registrations recursively (see `watches.rs`).
    Upgrade(String),
}

/// Marks a change through this mount in flight on a path; see the module docs.
pub struct LocalChange<'a> {
    view: &'a View,
    path: String,
}

impl Drop for LocalChange<'_> {
    fn drop(&mut self) {
        let mut tree = self.view.tree();
        // A listing sent before this change may not show it (see `refresh_children`).
        tree.touched.insert(self.path.clone());
        if let Some(n) = tree.local.get_mut(&self.path) {
            *n -= 1;
            if *n == 0 {
                tree.local.remove(&self.path);
            }
        }
        // A creation heard while this change flew was not read (see `watch.rs`): the
        // mount's own create shows it. If that create failed (another client made the
        // node in the same instant) or this was a removal, the directory is listed
        // again, which shows — and echoes — what is there now.
        // Checked by the last change in flight on the path, which alone can tell.
        let relist = !tree.is_local(&self.path) && tree.heard_local.remove(&self.path) && {
            let (parent, name) = split_path(&self.path).unwrap_or(("/", ""));
            let shown = tree.nodes.get(parent).and_then(|n| n.children.as_ref()).map(|c| c.contains_key(name));
            shown == Some(false)
        };
        drop(tree);
        if let Some((parent, _)) = split_path(&self.path).filter(|_| relist) {
            self.view.queue(Change::Relist(parent.to_string()));
        }
    }
}

/// The cached, watched view of the tree.
pub struct View {
    /// Itself, for the tasks it starts in the background ([`View::learn_kinds`]).
    pub(crate) me: Weak<View>,
    pub(crate) session: Arc<Session>,
    /// Everything cached. A std mutex: held only for lookups and updates in memory,
    /// never across a round trip or an await, and no other lock is taken inside it but
    /// `watches` (below; never the other way round), and sending a note to the echo
    /// thread happens after it is released.
    tree: Mutex<Tree>,
    /// Counts re-reads done (and batches of kinds learnt): readers of a stale node wait
    /// for it to change (a watch channel, not a lock: nothing is held while waiting).
    settled: watch::Sender<u64>,
    /// The nodes watched (see `watches.rs`). A std mutex held only for map updates;
    /// the tree lock may be held when it is taken, never the other way round.
    pub(crate) watches: Mutex<crate::model::watchset::Watches>,
    /// Directories whose `NodeChildrenChanged` is queued and not yet listed again: one
    /// listing answers them all. Held only to insert or remove; no lock inside it.
    pub(crate) relists: Mutex<std::collections::HashSet<String>>,
    pub(crate) changes: mpsc::UnboundedSender<Change>,
    notes: std::sync::mpsc::Sender<KernelNote>,
    /// Data changes and deletions received from the watches so far; see [`View::local_node`].
    pub(crate) events_seen: Arc<AtomicU64>,
    /// How long after a reconnect or a new session the re-read of what the mount holds
    /// may be put off, at random (`resync_window=SECONDS`), in milliseconds.
    resync_window_ms: AtomicU64,
    /// A re-read after an outage is waiting for its turn.
    pub(crate) resync_pending: std::sync::atomic::AtomicBool,
    /// The latest change (zxid) any read showed: after an outage, a registration
    /// changed later than this changed while the mount could not hear it.
    seen_zxid: std::sync::atomic::AtomicI64,
}

/// How many of this mount's deletions are remembered until their event (see
/// `Tree::removed_here`).
const MAX_REMOVED_HERE: usize = 4096;

impl View {
    /// A view with nothing cached yet. Start its event task with [`View::start`].
    pub fn new(
        session: Arc<Session>,
        notes: std::sync::mpsc::Sender<KernelNote>,
    ) -> (Arc<View>, mpsc::UnboundedReceiver<Change>) {
        let (changes, rx) = mpsc::unbounded_channel();
        let view = |me: &Weak<View>| View {
            me: me.clone(),
            session,
            tree: Mutex::default(),
            settled: watch::Sender::new(0),
            watches: Mutex::default(),
            relists: Mutex::default(),
            changes,
            notes,
            events_seen: Arc::default(),
            resync_window_ms: AtomicU64::new(0),
            resync_pending: std::sync::atomic::AtomicBool::new(false),
            seen_zxid: std::sync::atomic::AtomicI64::new(0),
        };
        (Arc::new_cyclic(view), rx)
    }

    /// Spreads the re-read after an outage over up to `window`, at random, so that a
    /// fleet reconnecting at once does not read at once. Zero (the default): at once.
    pub fn set_resync_window(&self, window: Duration) {
        self.resync_window_ms.store(u64::try_from(window.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The window of [`View::set_resync_window`].
    pub(crate) fn resync_window(&self) -> Duration {
        Duration::from_millis(self.resync_window_ms.load(Ordering::Relaxed))
    }

    /// Notes the changes a read showed (see `seen_zxid`).
    pub(crate) fn saw(&self, stat: &Stat) {
        self.seen_zxid.fetch_max(stat.mzxid.max(stat.pzxid).max(stat.czxid), Ordering::SeqCst);
    }

    /// The latest change any read showed.
    pub(crate) fn seen(&self) -> i64 {
        self.seen_zxid.load(Ordering::SeqCst)
    }

    /// True while a re-read after an outage waits for its turn.
    pub fn resync_pending(&self) -> bool {
        self.resync_pending.load(Ordering::SeqCst)
    }

    /// Queues work for the event task.
    pub(crate) fn queue(&self, change: Change) {
        let _ = self.changes.send(change);
    }

    /// Wakes readers waiting for a stale node.
    pub(crate) fn settle(&self) {
        self.settled.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The session the view reads through.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub(crate) fn tree(&self) -> MutexGuard<'_, Tree> {
        self.tree.locked()
    }

    pub(crate) fn send(&self, notes: Vec<KernelNote>) {
        for note in notes {
            let _ = self.notes.send(note);
        }
    }

    // ----- inode numbers -----

    /// What inode `ino` stands for.
    pub fn inode(&self, ino: u64) -> Option<Inode> {
        self.tree().inodes.get(ino)
    }

    /// The inode number of `path` shown as `kind`.
    pub fn ino(&self, path: &str, kind: InodeKind) -> u64 {
        self.tree().ino(path, kind)
    }

    /// The inode number of `path` shown as `kind`, if it was ever handed out.
    pub fn existing_ino(&self, path: &str, kind: InodeKind) -> Option<u64> {
        self.tree().inodes.existing(path, kind)
    }

    // ----- reads (FUSE threads) -----

    /// The node at `path`, read from ZooKeeper (and watched) the first time; a node
    /// being re-read after a change is waited for.
    ///
    /// # Notable errors
    /// [`Error::NotFound`] if there is no such node; [`Error::WouldWait`] if it must be
    /// read and the thread may not wait (see `wait.rs`).
    pub fn node(&self, path: &str) -> Result<NodeView> {
        if let Some(n) = self.tree().nodes.get(path).filter(|n| !n.stale) {
            return Ok(n.view.clone());
        }
        let p = path.to_string();
        self.wait_for(|view| async move { view.ensure(&p).await })?;
        self.cached(path).ok_or_else(|| Error::NotFound(path.to_string()))
    }

    /// True while `path` is removed elsewhere and still shown, until its echo `unlink`
    /// tells the kernel (see the module docs).
    pub fn removal_pending(&self, path: &str) -> bool {
        let Some((parent, name)) = crate::model::inodes::split_path(path) else { return false };
        let tree = self.tree();
        let child = tree.nodes.get(parent).and_then(|n| n.children.as_ref()).and_then(|c| c.get(name).copied());
        matches!(child, Some(Child { presence: Presence::PendingRemove { .. }, .. }))
    }

    /// The node at `path` if it is cached.
    pub fn cached(&self, path: &str) -> Option<NodeView> {
        self.tree().nodes.get(path).map(|n| n.view.clone())
    }

    /// True while the data of `path` is being re-read or changed less than [`SETTLE`]
    /// ago.
    pub fn recently_changed(&self, path: &str) -> bool {
        self.tree().nodes.get(path).is_some_and(|n| n.stale || n.changed.is_some_and(|t| t.elapsed() < SETTLE))
    }

    /// Makes `path` ready for a `readdir` to show its children's names: lists (and
    /// watches) it the first time, and starts learning the kinds it lacks. Nothing
    /// waits for those kinds; see the module docs. Then [`View::listing`].
    pub fn list_for_names(&self, path: &str) -> Result<()> {
        self.listed(path)?;
        let mut tree = self.tree();
        let node = tree.nodes.get_mut(path).ok_or_else(|| Error::NotFound(path.to_string()))?;
        node.names_shown = true;
        let connected = || self.session.state().0 == crate::zookeeper::session::State::Connected;
        if !node.unknown.is_empty() && !tree.eager.contains_key(path) && connected() {
            drop(tree);
            // The kinds it lacks are read in the background; this `readdir` waits only
            // until ZooKeeper has answered the first multi-read, so that all of them
            // are out (sent in order on the session before it): a child removed once a
            // program has seen its name was read before its removal, by ZooKeeper's
            // order, and its removal is echoed (see `watch.rs`). Bounded, so that a
            // frozen server delays a listing of what the mount knows by no more.
            let p = path.to_string();
            self.wait_for(|view| async move {
                if let Some(answered) = view.learn_shown_soon(&p) {
                    let _ = tokio::time::timeout(FIRST_ANSWER, answered).await;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The children of `path` that are shown, by name, with their kinds where known
    /// (`None`: not learnt yet): from the `skip`-th on, at most `limit` of them, in name
    /// order. `path` is listed first by [`View::list_for_names`].
    pub fn listing(&self, path: &str, skip: usize, limit: usize) -> Result<Vec<(String, Option<Kind>)>> {
        let tree = self.tree();
        let node = tree.nodes.get(path).ok_or_else(|| Error::NotFound(path.to_string()))?;
        let children = node.children.as_ref().ok_or_else(|| Error::NotFound(path.to_string()))?;
        let known =
            children.iter().filter(|(_, c)| c.presence != Presence::PendingCreate).map(|(n, c)| (n, Some(c.kind)));
        let unknown = node.unknown.iter().map(|n| (n, None));
        // A znode named `properties.json` is hidden by the node's own properties.
        let shown = merge_by_name(known, unknown).filter(|(n, _)| n.as_str() != crate::data::names::PROPERTIES);
        Ok(shown.skip(skip).take(limit).map(|(n, k)| (n.clone(), k)).collect())
    }

    /// True if `name` is a child of `path` shown by a listing, whether or not its kind
    /// is known (a link of that name is hidden by it).
    pub fn lists_child(&self, path: &str, name: &str) -> bool {
        let tree = self.tree();
        tree.nodes.get(path).is_some_and(|n| {
            n.unknown.contains(name)
                || n.children.as_ref().and_then(|c| c.get(name)).is_some_and(|c| c.presence != Presence::PendingCreate)
        })
    }

    /// The inode number of the node at `path`, whose kind may not be known yet (see
    /// `inodes.rs`).
    pub fn node_ino(&self, path: &str) -> u64 {
        self.tree().node_ino(path)
    }

    /// Learns the kinds of the children of `path` not known yet, all multi-reads sent
    /// at once, and keeps the nodes read (a program asking for every kind then asks for
    /// every node's `stat`); a background batch learning them (one multi-read at a
    /// time) stops.
    async fn learn_now(&self, path: &str) -> Result<()> {
        match self.begin_eager(path) {
            Some(unknown) => {
                let mark = self.events_seen();
                let sent = self.send_many(path, &unknown);
                self.eager(path, sent, mark, None).await
            }
            None => Ok(()),
        }
    }

    /// A `readdir` is to show the names of `path` without some kinds: learns them all
    /// at once, as [`View::learn_now`] does, without making the `readdir` wait for
    /// them. A removal heard meanwhile waits for the batch (see `watch.rs`), so a child
    /// shown by name is heard going, and a lookup (`ls -l`) waits for it rather than
    /// ask again. The receiver wakes once ZooKeeper answered the first multi-read;
    /// `None` if no batch was started.
    fn learn_shown_soon(&self, path: &str) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let view = self.me.upgrade()?;
        if self.tree().eager.contains_key(path) {
            return None;
        }
        let unknown = self.begin_eager(path)?;
        let mark = self.events_seen();
        let sent = self.send_many(path, &unknown);
        let (first, answered) = tokio::sync::oneshot::channel();
        let path = path.to_string();
        self.session.runtime().spawn(async move {
            if let Err(e) = view.eager(&path, sent, mark, Some(first)).await {
                debug!("cannot learn the kinds of the children of {path}: {e}");
            }
        });
        Some(answered)
    }

    /// For a lookup of a child `readdir` showed without its kind: waits for the batch
    /// learning the kinds of `path`'s children if one is out, then learns those still
    /// unknown (a batch that failed, a name listed again since).
    async fn learn_shown(&self, path: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.session.timeout();
        // Subscribed before looking, so that a batch stored in between still wakes.
        let mut settled = self.settled.subscribe();
        while self.tree().eager.contains_key(path) {
            match tokio::time::timeout_at(deadline, settled.changed()).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        self.learn_now(path).await
    }

    /// The names of `path`'s children whose kinds are unknown, for a batch reading them
    /// all at once (counted in `eager` until [`View::eager`] ends it); `None` if none.
    fn begin_eager(&self, path: &str) -> Option<Vec<String>> {
        let mut tree = self.tree();
        let unknown: Vec<String> = tree.nodes.get(path)?.unknown.iter().cloned().collect();
        if unknown.is_empty() {
            return None;
        }
        *tree.eager.entry(path.to_string()).or_default() += 1;
        Some(unknown)
    }

    /// Awaits the reads of `path`'s children that [`View::send_many`] sent (after
    /// `mark`): their kinds are learnt and the nodes kept. Ends the batch
    /// [`View::begin_eager`] counted.
    async fn eager(
        &self,
        path: &str,
        sent: Result<Sent>,
        mark: u64,
        first: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<()> {
        let read = {
            let _busy = self.session.foreground.busy();
            match sent {
                Ok(sent) => self.answers(path, sent, first).await,
                Err(e) => Err(e),
            }
        };
        let learnt = match read {
            Ok(nodes) => {
                let kinds = nodes.iter().map(|(name, _, stat)| (name.clone(), Kind::of(stat))).collect();
                self.learnt(path, kinds);
                self.keep_read(path, nodes, mark);
                Ok(())
            }
            Err(e) => Err(e),
        };
        {
            let mut tree = self.tree();
            if let Some(n) = tree.eager.get_mut(path) {
                *n -= 1;
                if *n == 0 {
                    tree.eager.remove(path);
                }
            }
        }
        // Wakes a removal waiting for its kind (see `watch.rs`).
        self.settle();
        learnt
    }

    /// Starts learning, in the background, the kinds of the children of `path` that
    /// were listed without them (one batch of multi-reads, as a `readdir` makes), so
    /// that a child removed elsewhere can be echoed although nobody listed the
    /// directory. Nothing waits for it: not the lookup or read that listed the names,
    /// only a removal heard meanwhile (see `watch.rs`) and a `readdir`, which would
    /// ask the same (and takes over). A failed batch leaves the kinds unknown until the
    /// next listing or resynchronisation.
    pub(crate) fn learn_kinds(&self, path: &str) {
        let Some(view) = self.me.upgrade() else { return };
        let (names, tx) = {
            let mut tree = self.tree();
            let names: Vec<String> = match tree.nodes.get(path) {
                Some(n) if !n.unknown.is_empty() => n.unknown.iter().cloned().collect(),
                _ => return,
            };
            match tree.learning.join(path) {
                Join::Lead(tx) => (names, tx),
                Join::Follow(_) => return, // one already asks
            }
        };
        let path = path.to_string();
        self.session.runtime().spawn(async move {
            // One multi-read at a time, not all at once: ZooKeeper answers a session's
            // requests in order, so a cold read sent meanwhile waits behind at most one
            // (100 children), not behind the whole directory. The server reads them one
            // after another anyway: for a big directory this costs about a round trip
            // per 100 children more than a `readdir`'s batch.
            // Each multi-read also waits for a moment when no request a program waits
            // for is out (see `background.rs`).
            let mut outcome = Ok(());
            let began = Instant::now();
            for chunk in names.chunks(KIND_BATCH) {
                let turn = view.session.foreground.turn().await;
                let still: Vec<String> = {
                    let mut tree = view.tree();
                    if tree.eager.contains_key(&path) {
                        break; // a lookup asks for all of them at once
                    }
                    let Some(n) = tree.nodes.get(path.as_str()) else { break };
                    let still: Vec<String> = chunk.iter().filter(|c| n.unknown.contains(*c)).cloned().collect();
                    if still.is_empty() {
                        continue;
                    }
                    // Marked before the request is sent (zookeeper-client sends it when
                    // its future is made): see `watch.rs`, `kind_learnt`.
                    tree.kinds_out.insert(path.clone());
                    still
                };
                let learnt = view.kinds(&path, still, &BTreeMap::new()).await;
                drop(turn);
                match learnt {
                    Ok(kinds) => view.learnt(&path, kinds),
                    Err(e) => {
                        debug!("cannot learn the kinds of the children of {path}: {e}");
                        outcome = Err(e);
                    }
                }
                view.tree().kinds_out.remove(&path);
                // Wakes a removal waiting for its kind (see `watch.rs`).
                view.settle();
                if outcome.is_err() {
                    break;
                }
            }
            debug!("kinds of the children of {path} learnt in the background in {:?}", began.elapsed());
            view.tree().learning.finish(&path);
            view.settle();
            tx.send_replace(Some(outcome));
        });
    }

    /// Kinds of listed children learnt: they are shown from now on, unless an event
    /// took them meanwhile (a name no longer waiting for its kind is left alone: its
    /// deletion or re-creation was applied after the read).
    fn learnt(&self, parent: &str, kinds: BTreeMap<String, Kind>) {
        let mut tree = self.tree();
        let Some(node) = tree.nodes.get_mut(parent) else { return };
        let Some(children) = node.children.as_mut() else { return };
        let mut registrations = Vec::new();
        for (name, kind) in kinds {
            if node.unknown.remove(&name) {
                if kind == Kind::Registration {
                    registrations.push(name.clone());
                }
                children.insert(name, Child { kind, presence: Presence::Present });
            }
        }
        drop(tree);
        self.watch_registrations(parent, registrations.iter().map(String::as_str));
    }

    /// Lists `path` unless it is listed.
    fn listed(&self, path: &str) -> Result<()> {
        if self.tree().nodes.get(path).is_some_and(|n| n.children.is_some()) {
            return Ok(());
        }
        let p = path.to_string();
        self.wait_for(|view| async move { view.ensure_children(&p).await })
    }

    /// Waits for `load` of this view; on a thread that must not wait, hands it to the
    /// FUSE adapter as what the request needs instead (see `wait.rs`: the adapter
    /// awaits it on the runtime and runs the request again there).
    ///
    /// # Notable errors
    /// [`Error::WouldWait`] on a thread that must not wait.
    fn wait_for<F>(&self, load: impl FnOnce(Arc<View>) -> F) -> Result<()>
    where
        F: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let Some(view) = self.me.upgrade() else {
            return Err(Error::Unavailable("the mount is closing".into()));
        };
        let load = crate::zookeeper::wait::need(load(view))?;
        self.session.runtime().block_on(load)
    }

    /// Child `name` of `parent` if it is shown (a child on its way in is not). A child
    /// listed whose kind is not known yet is read: one request, not one per sibling.
    pub fn child(&self, parent: &str, name: &str) -> Result<Option<Child>> {
        self.listed(parent)?;
        let path = child_path(parent, name);
        {
            let tree = self.tree();
            let Some(node) = tree.nodes.get(parent) else { return Ok(None) };
            let child = node.children.as_ref().and_then(|c| c.get(name)).copied();
            if let Some(child) = child {
                return Ok(Some(child).filter(|c| c.presence != Presence::PendingCreate));
            }
            if !node.unknown.contains(name) {
                return Ok(None);
            }
        }
        // Read by the lookup that asks (or kept by a batch): no wait.
        let fresh = self.tree().nodes.get(path.as_str()).is_some_and(|n| !n.stale);
        let p = path.clone();
        match if fresh { Ok(()) } else { self.wait_for(|view| async move { view.ensure(&p).await }) } {
            Ok(()) => {}
            Err(Error::NotFound(_)) => return Ok(None), // its deletion event follows
            Err(e) => return Err(e),
        }
        let kind = self.tree().nodes.get(path.as_str()).map(|n| n.view.kind);
        let Some(kind) = kind else { return Ok(None) };
        self.learnt(parent, BTreeMap::from([(name.to_string(), kind)]));
        let tree = self.tree();
        let child = tree.nodes.get(parent).and_then(|n| n.children.as_ref()).and_then(|c| c.get(name)).copied();
        Ok(child.filter(|c| c.presence != Presence::PendingCreate))
    }

    /// [`View::child`] for a lookup, which shows the child to the kernel: a directory
    /// is listed too (its names; none when its stat says it has no children), so that
    /// children made in it from now on are heard and echoed.
    pub fn lookup(&self, parent: &str, name: &str) -> Result<Option<Child>> {
        let path = child_path(parent, name);
        let (unread, names_shown) = match self.tree().nodes.get(parent) {
            Some(n) => (n.unknown.contains(name), n.names_shown),
            None => (false, false),
        };
        if unread && names_shown {
            // A `readdir` gave this name with DT_UNKNOWN: whoever needs its type (`ls
            // -l`, `find -type`) asks for every sibling's, so all are learnt at once.
            let p = parent.to_string();
            self.wait_for(|view| async move { view.learn_shown(&p).await })?;
        }
        let unread = self.tree().nodes.get(parent).is_some_and(|n| n.unknown.contains(name));
        if unread && !self.tree().nodes.contains_key(path.as_str()) {
            // Read it, and list it if it is a directory with children.
            let p = path.clone();
            match self.wait_for(|view| async move { view.ensure_children(&p).await }) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let child = self.child(parent, name)?;
        if child.is_some_and(|c| c.kind == Kind::Dir && c.presence == Presence::Present) {
            self.listed(&path)?;
        }
        self.read_ahead(parent, name);
        Ok(child)
    }

    /// A lookup of `name` in `parent` is done. If it follows the lookup of the sibling
    /// just before it (in name order, allowing a couple skipped), a program is walking
    /// the directory — `for d in */`, a list of paths in order, `find`, `ls -l` — and
    /// the next [`READ_AHEAD`] siblings not cached are read and listed now, half a
    /// window at a time in one multi-read ([`View::load_many`]), each as its own
    /// lookup would: the walk then finds them in memory instead of paying a round trip
    /// each. Registrations are left out (a listing's batch learns and keeps those).
    /// Nodes read ahead and never looked up are dropped by the sweep with their
    /// watches (`watches.rs`), as any node read and not held by the kernel.
    fn read_ahead(&self, parent: &str, name: &str) {
        let Some(view) = self.me.upgrade() else { return };
        let ahead: Vec<String> = {
            let mut tree = self.tree();
            if tree.walked.len() >= MAX_WALKED && !tree.walked.contains_key(parent) {
                tree.walked.clear();
            }
            let before = tree.walked.insert(parent.to_string(), name.to_string());
            let Some(node) = tree.nodes.get(parent) else { return };
            let walking = before.is_some_and(|b| b.as_str() < name && names_after(node, &b, 3).any(|(n, _)| n == name));
            if !walking {
                return;
            }
            let ahead: Vec<String> = names_after(node, name, READ_AHEAD)
                .filter(|(_, kind)| *kind != Some(Kind::Registration))
                .map(|(n, _)| child_path(parent, n))
                .filter(|p| !tree.nodes.contains_key(p.as_str()) && !tree.reads.flying(p) && !tree.lists.flying(p))
                .collect();
            // In batches of half the window: one request for each, sent while the
            // other half is being walked.
            if ahead.len() < READ_AHEAD / 2 || self.session.state().0 != crate::zookeeper::session::State::Connected {
                return;
            }
            ahead
        };
        drop(self.session.runtime().spawn(async move {
            for (path, outcome) in view.load_many(ahead).await {
                if let Err(e) = outcome {
                    debug!("read ahead of {path}: {e}");
                }
            }
        }));
    }

    /// Reads and lists `paths` (children of one directory, not cached) in one
    /// multi-read, each as [`View::ensure_children`] would: leading both of its
    /// flights, its watch set before the request goes out, its outcome published to
    /// whoever follows it. A path already in flight is left to its leader. The
    /// outcome of each path led.
    async fn load_many(&self, paths: Vec<String>) -> Vec<(String, Result<()>)> {
        let led: Vec<_> = {
            let mut tree = self.tree();
            let mut led = Vec::new();
            for path in paths {
                if tree.nodes.contains_key(path.as_str()) || tree.reads.flying(&path) || tree.lists.flying(&path) {
                    continue;
                }
                if let (Join::Lead(read), Join::Lead(list)) = (tree.reads.join(&path), tree.lists.join(&path)) {
                    led.push((path, read, list));
                }
            }
            led
        };
        if led.is_empty() {
            return Vec::new();
        }
        for (path, _, _) in &led {
            self.watch(path);
        }
        let paths: Vec<String> = led.iter().map(|(p, _, _)| p.clone()).collect();
        let parent = split_path(&paths[0]).map_or("/", |(p, _)| p).to_string();
        // As every read: bounded by the session timeout, failing at once in an outage.
        let asked = paths.clone();
        let answer = self.session.call_async(&parent, move |c| c.read_and_list_many(&asked)).await;
        let results: Vec<Result<(NodeView, Vec<String>)>> = match answer {
            Ok(results) if results.len() == paths.len() => results
                .into_iter()
                .zip(&paths)
                .map(|(r, path)| match r {
                    Ok((data, stat, names)) => {
                        self.saw(&stat);
                        Ok((node_view(data, stat), names))
                    }
                    Err(e) => Err(crate::zookeeper::error_at(e, path)),
                })
                .collect(),
            Ok(_) => paths
                .iter()
                .map(|_| Err(Error::Unavailable(format!("{parent}: a multi-read answered amiss"))))
                .collect(),
            Err(e) => paths.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut done = Vec::with_capacity(led.len());
        {
            let mut tree = self.tree();
            for ((path, read, list), result) in led.into_iter().zip(results) {
                let (reread, relist) = (tree.reads.finish(&path), tree.lists.finish(&path));
                let outcome = result.map(|(view, names)| {
                    tree.cache(&path, Node::new(view));
                    if let Some(n) = tree.nodes.get_mut(path.as_str()).filter(|n| n.children.is_none()) {
                        // A registration has no children: left unlisted.
                        if n.view.kind == Kind::Dir {
                            n.children = Some(Box::default());
                            n.unknown = names.into_iter().collect();
                        }
                    }
                });
                done.push((path, read, list, outcome, reread, relist));
            }
        }
        let mut outcomes = Vec::with_capacity(done.len());
        for (path, read, list, outcome, reread, relist) in done {
            read.send_replace(Some(outcome.clone()));
            list.send_replace(Some(outcome.clone()));
            if reread {
                self.queue(Change::Recheck(path.clone()));
            }
            if relist {
                self.queue(Change::Relist(path.clone()));
            }
            if outcome.is_ok() {
                self.learn_kinds(&path);
            }
            outcomes.push((path, outcome));
        }
        outcomes
    }

    /// Waits for the outcome of a load led by another request, until `deadline`.
    /// `Ok(())` when the leader is done (or gone): look again.
    async fn follow(
        &self,
        mut rx: watch::Receiver<crate::model::flight::Outcome>,
        path: &str,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        match tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => match &*outcome {
                Some(Err(e)) => Err(e.clone()),
                _ => Ok(()),
            },
            Ok(Err(_)) => Ok(()), // the leader went without an outcome: lead instead
            Err(_) => Err(Error::Unavailable(format!(
                "{path}: no ZooKeeper server answered within {:?}",
                self.session.timeout()
            ))),
        }
    }

    /// A receiver woken whenever a re-read or a kind learnt settles something.
    pub(crate) fn settled(&self) -> watch::Receiver<u64> {
        self.settled.subscribe()
    }

    /// Waits until `path` is no longer stale, or `deadline`.
    async fn wait_fresh(&self, path: &str, deadline: tokio::time::Instant) {
        // Subscribed before looking, so that a re-read finishing in between still wakes.
        let mut settled = self.settled.subscribe();
        while self.tree().nodes.get(path).is_some_and(|n| n.stale) {
            match tokio::time::timeout_at(deadline, settled.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }

    async fn ensure(&self, path: &str) -> Result<()> {
        self.ensure_led(path).await.map(|_| ())
    }

    /// [`View::ensure`]; true if this call read the node and cached what it read.
    async fn ensure_led(&self, path: &str) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + self.session.timeout();
        loop {
            let join = {
                let mut tree = self.tree();
                match tree.nodes.get(path) {
                    Some(n) if !n.stale => return Ok(false),
                    Some(_) => None,
                    None => Some(tree.reads.join(path)),
                }
            };
            match join {
                // Being re-read after a change: the new data, or after a session
                // timeout the last data known.
                None => {
                    self.wait_fresh(path, deadline).await;
                    return Ok(false);
                }
                Some(Join::Follow(rx)) => self.follow(rx, path, deadline).await?,
                Some(Join::Lead(tx)) => {
                    let read = self.read(path).await;
                    let (outcome, recheck) = {
                        let mut tree = self.tree();
                        let dirty = tree.reads.finish(path);
                        match read {
                            Ok(view) => (Ok(tree.cache(path, Node::new(view))), dirty),
                            Err(e) => (Err(e), dirty),
                        }
                    };
                    tx.send_replace(Some(outcome.clone().map(|_| ())));
                    if recheck {
                        self.queue(Change::Recheck(path.to_string()));
                    }
                    return outcome;
                }
            }
        }
    }

    /// Sets the node's watch (unless it has one), then reads it: the watch's request
    /// goes out first, so every change the read does not show is reported.
    pub(crate) async fn read(&self, path: &str) -> Result<NodeView> {
        self.watch(path);
        let p = path.to_string();
        let (data, stat) = self.session.call_async(path, |c| async move { c.get_data(&p).await }).await?;
        self.saw(&stat);
        Ok(node_view(data, stat))
    }

    /// Watches the mount's root, which the kernel holds for good; every other node is
    /// watched from its first read (see `watches.rs`).
    pub async fn arm(&self) -> Result<()> {
        self.watch("/");
        Ok(())
    }

    /// Lists the names of the children of `path` (their kinds are learnt when needed,
    /// and in the background: [`View::learn_kinds`]), reading the node itself first if
    /// it is not cached.
    async fn ensure_children(&self, path: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.session.timeout();
        loop {
            let join = {
                let mut tree = self.tree();
                match tree.nodes.get(path) {
                    // A registration has no children: left unlisted.
                    Some(n) if n.children.is_some() || n.view.kind == Kind::Registration => return Ok(()),
                    // Neither cached nor in flight: one multi-read reads and lists it.
                    None if !tree.reads.flying(path) && !tree.lists.flying(path) => None,
                    _ => Some(tree.lists.join(path)),
                }
            };
            let Some(join) = join else {
                if let Some((_, Err(e))) = self.load_many(vec![path.to_string()]).await.pop() {
                    return Err(e);
                }
                continue; // loaded, or led by another request meanwhile: look again
            };
            match join {
                Join::Follow(rx) => self.follow(rx, path, deadline).await?,
                Join::Lead(tx) => {
                    // A node not cached is read and listed at once: both requests go
                    // out together (one round trip, not two), the listing after the
                    // node's watch, so a child made since is heard (the event task marks
                    // this flight). A registration's empty listing is dropped.
                    let cached = self.tree().nodes.contains_key(path);
                    let (read, listed) = if cached {
                        (Ok(()), self.list_names(path).await)
                    } else {
                        self.watch(path);
                        match tokio::join!(self.ensure_led(path), self.list_names(path)) {
                            (Ok(_), listed) => match self.tree().nodes.get(path).map(|n| n.view.kind) {
                                Some(Kind::Registration) => (Ok(()), Ok(Vec::new())),
                                _ => (Ok(()), listed),
                            },
                            (Err(e), _) => (Err(e), Ok(Vec::new())),
                        }
                    };
                    let (outcome, relist) = {
                        let mut tree = self.tree();
                        let dirty = tree.lists.finish(path);
                        match (read, listed) {
                            (Err(e), _) | (_, Err(e)) => (Err(e), dirty),
                            (Ok(()), Ok(names)) => match tree.nodes.get_mut(path) {
                                Some(n) if n.children.is_none() => {
                                    // A registration has no children: left unlisted.
                                    if n.view.kind == Kind::Dir {
                                        n.children = Some(Box::default());
                                        n.unknown = names.into_iter().collect();
                                    }
                                    (Ok(()), dirty)
                                }
                                Some(_) => (Ok(()), dirty),
                                None => (Err(Error::NotFound(path.to_string())), dirty),
                            },
                        }
                    };
                    tx.send_replace(Some(outcome.clone()));
                    if relist {
                        self.queue(Change::Relist(path.to_string()));
                    }
                    if outcome.is_ok() {
                        self.learn_kinds(path);
                    }
                    return outcome;
                }
            }
        }
    }

    /// The names of the children of `path` (and sets the watch; see the module docs).
    pub(crate) async fn list_names(&self, path: &str) -> Result<Vec<String>> {
        let p = path.to_string();
        self.session.call_async(path, |c| async move { c.list_children(&p).await }).await
    }

    /// Looks up the kinds of `names` under `parent`; `known` kinds are reused (see
    /// [`View::read_many`]).
    pub(crate) async fn kinds(
        &self,
        parent: &str,
        names: Vec<String>,
        known: &BTreeMap<String, Kind>,
    ) -> Result<BTreeMap<String, Kind>> {
        let mut out = BTreeMap::new();
        let mut unknown = Vec::new();
        for name in names {
            match known.get(&name) {
                Some(kind) => {
                    out.insert(name, *kind);
                }
                None => unknown.push(name),
            }
        }
        for (name, _, stat) in self.read_many(parent, &unknown).await? {
            out.insert(name, Kind::of(&stat));
        }
        Ok(out)
    }

    /// Reads the children `names` of `parent`, in multi-reads of [`KIND_BATCH`]
    /// children, all sent before the first answer is awaited: a handful of requests and
    /// about one round trip for thousands of children (ZooKeeper ≥ 3.6, which the root
    /// watch needs anyway). Children gone meanwhile are left out.
    async fn read_many(&self, parent: &str, names: &[String]) -> Result<Vec<Answer>> {
        let sent = self.send_many(parent, names)?;
        self.answers(parent, sent, None).await
    }

    /// Sends the multi-reads of [`View::read_many`]: they are out when this returns.
    fn send_many(&self, parent: &str, names: &[String]) -> Result<Sent> {
        let client = self.session.client()?;
        // `get_data_many` sends its request before it returns, so making them all
        // first pipelines the batches.
        let mut pending = Vec::new();
        for chunk in names.chunks(KIND_BATCH) {
            let paths: Vec<String> = chunk.iter().map(|name| child_path(parent, name)).collect();
            pending.push((chunk.to_vec(), client.get_data_many(&paths)));
        }
        Ok(pending)
    }

    /// The answers to the multi-reads [`View::send_many`] sent; `first` is told when
    /// the first is in (or dropped if it fails).
    async fn answers(
        &self,
        parent: &str,
        pending: Sent,
        mut first: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Vec<Answer>> {
        let names = pending.iter().map(|(chunk, _)| chunk.len()).sum();
        let deadline = tokio::time::Instant::now() + self.session.timeout();
        let late = || Error::Unavailable(format!("{parent}: listing timed out"));
        let mut out = Vec::with_capacity(names);
        for (chunk, fut) in pending {
            let results = match tokio::time::timeout_at(deadline, fut).await {
                Ok(Ok(results)) if results.len() == chunk.len() => results,
                Ok(Ok(_)) => return Err(Error::Unavailable(format!("{parent}: a multi-read answered amiss"))),
                Ok(Err(e)) => return Err(crate::zookeeper::error_at(e, parent)),
                Err(_) => return Err(late()),
            };
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
            for (name, result) in chunk.iter().zip(results) {
                match result {
                    Ok((data, stat)) => {
                        self.saw(&stat);
                        out.push((name.clone(), Some(data), stat))
                    }
                    // Gone meanwhile; its parent's watch will say so.
                    Err(crate::zookeeper::Error::NoNode) => {}
                    // A child this mount may not read is still a child: its kind comes
                    // from `exists`, which no ACL guards; reading it gives EACCES. One
                    // such sibling must not hide the others (issue 25).
                    Err(crate::zookeeper::Error::NoAuth) => {
                        let p = child_path(parent, name);
                        let q = p.clone();
                        if let Some(stat) =
                            self.session.call_async(&p, |c| async move { c.check_stat(&q).await }).await?
                        {
                            out.push((name.clone(), None, stat));
                        }
                    }
                    Err(err) => return Err(crate::zookeeper::error_at(err, &child_path(parent, name))),
                }
            }
        }
        Ok(out)
    }

    /// Keeps the children of `parent` read by [`View::learn_now`], so that the `stat`
    /// of each that follows needs no read — unless a data change or deletion arrived
    /// since `mark` (taken before the reads were sent), which may be about one of them
    /// and was dropped for a node not cached: then each is read again when asked for,
    /// as [`View::local_node`] does.
    fn keep_read(&self, parent: &str, nodes: Vec<Answer>, mark: u64) {
        if self.events_seen() != mark {
            return;
        }
        // A child read without its data (unreadable) is not kept: reading it asks again.
        // Nor is a directory: one looked up is read and listed anyway, and keeping it
        // would watch it although the kernel may never hold it (see `watches.rs`).
        let views: Vec<(String, NodeView)> = nodes
            .into_iter()
            .filter(|(_, _, stat)| Kind::of(stat) == Kind::Registration)
            .filter_map(|(name, data, stat)| Some((child_path(parent, &name), node_view(data?, stat))))
            .collect();
        let mut tree = self.tree();
        // Checked under the tree lock: an event counted after this check is applied
        // after the nodes are in (the event task takes the same lock).
        if self.events_seen() != mark {
            return;
        }
        let mut kept = Vec::new();
        for (path, view) in views {
            if tree.cache(&path, Node::new(view)) {
                kept.push(path);
            }
        }
        drop(tree);
        // Read before their watches were set (registrations shown in a cached
        // directory are watched once their kind is known): read once more after them
        // (a multi-read per 100), so that a change in between is not kept.
        let mut names = Vec::new();
        for path in kept {
            self.watch(&path);
            names.push(split_path(&path).map_or(String::new(), |(_, n)| n.to_string()));
        }
        if !names.is_empty() {
            self.queue(Change::Verify(parent.to_string(), names));
        }
    }

    // ----- changes made through this mount -----

    /// Marks a change of `path` through this mount as in flight until the guard drops.
    pub fn local(&self, path: &str) -> LocalChange<'_> {
        let mut tree = self.tree();
        *tree.local.entry(path.to_string()).or_default() += 1;
        tree.touched.insert(path.to_string());
        drop(tree);
        // A node made here is watched from before its creation: the kernel will hold
        // it, and it is cached from the reply (`local_node`), never read.
        self.watch(path);
        LocalChange { view: self, path: path.to_string() }
    }

    /// ZooKeeper accepted new data for `path`.
    pub fn local_data(&self, path: &str, data: Vec<u8>, stat: Stat) {
        let mut tree = self.tree();
        let mzxid = stat.mzxid;
        // A directory's times are its node's mtime, and new or removed links are new or
        // removed entries: the kernel drops what it holds of the directory, also when
        // the watch event of this write came first and left nothing to update here.
        let mut is_dir = false;
        if let Some(n) = tree.nodes.get_mut(path) {
            if mzxid > n.view.stat.mzxid {
                n.view = node_view(data, stat);
                n.changed = Some(Instant::now());
            }
            is_dir = n.view.kind == Kind::Dir;
            tree.written.insert(path.to_string(), mzxid);
        }
        let dir = tree.inodes.existing(path, InodeKind::Dir).filter(|_| is_dir);
        drop(tree);
        self.send(dir.map(|ino| KernelNote::InvalInode { ino }).into_iter().collect());
    }

    /// A mark to take before a create through this mount, for [`View::local_node`].
    pub fn events_seen(&self) -> u64 {
        self.events_seen.load(Ordering::SeqCst)
    }

    /// ZooKeeper created `path` for this mount as `node`: keeps it, so that the next
    /// `stat` need not read it back — unless a data change or deletion arrived since
    /// `mark` (taken with [`View::events_seen`] before the create), which may be about
    /// this node and was dropped because it was not cached: then the next read asks
    /// ZooKeeper. A later event finds it cached and is applied as usual.
    pub fn local_node(&self, path: &str, node: &NodeView, mark: u64) {
        let mut tree = self.tree();
        // Checked under the tree lock: an event counted after this check is applied
        // after the node is in (the event task takes the same lock).
        if self.events_seen.load(Ordering::SeqCst) == mark {
            tree.cache(path, Node::new(node.clone()));
        }
    }

    /// ZooKeeper created `path` for this mount. A directory is adopted: the kernel
    /// knows it now, and children made in it from now on must be heard.
    pub fn local_created(&self, path: &str, kind: Kind) {
        let Some((parent, name)) = split_path(path) else { return };
        {
            let mut tree = self.tree();
            if let Some(n) = tree.nodes.get_mut(parent) {
                n.unknown.remove(name);
            }
            if let Some(children) = tree.children_mut(parent) {
                children.insert(name.to_string(), Child { kind, presence: Presence::Present });
            }
        }
        if kind == Kind::Dir {
            self.queue(Change::Adopt(path.to_string()));
        }
    }

    /// ZooKeeper deleted `path` for this mount. The kernel already knows.
    pub fn local_removed(&self, path: &str) {
        let mut notes = Vec::new();
        {
            let mut tree = self.tree();
            // Bounded: a deletion whose event never comes (a node no longer watched, an
            // outage) must not stay forever; dropping them all only skips the check.
            if tree.removed_here.len() >= MAX_REMOVED_HERE {
                tree.removed_here.clear();
            }
            *tree.removed_here.entry(path.to_string()).or_default() += 1;
            tree.forget(path, &mut notes);
        }
        self.send(notes);
    }

    // ----- echoes (the echo thread's requests, and its fallbacks) -----

    /// The echo `mknod` (a registration) or `mkdir` (a directory) of `name` arrived:
    /// the child is shown from now on. False if it is not waiting for that echo.
    pub fn echo_created(&self, parent: &str, name: &str, kind: Kind) -> bool {
        self.tree().settle_create(parent, name, kind)
    }

    /// The echo `unlink`/`rmdir` of `name` arrived: the child goes (or, if it was added
    /// again meanwhile, waits for its next echo). False if it was not waiting for one.
    pub fn echo_removed(&self, parent: &str, name: &str) -> bool {
        let mut notes = Vec::new();
        let done = self.tree().settle_remove(parent, name, &mut notes);
        self.send(notes);
        done
    }

    /// An echo of a creation could not be made: show the child anyway.
    pub fn echo_create_failed(&self, path: &str, kind: Kind) {
        if let Some((parent, name)) = split_path(path) {
            self.tree().settle_create(parent, name, kind);
        }
    }

    /// An echo of a removal could not be made: drop the child anyway.
    pub fn echo_remove_failed(&self, path: &str) {
        if let Some((parent, name)) = split_path(path) {
            self.echo_removed(parent, name);
        }
    }
}

/// The first `limit` children of `node` after `from` in name order, with their kinds
/// where known.
fn names_after<'a>(node: &'a Node, from: &'a str, limit: usize) -> impl Iterator<Item = (&'a String, Option<Kind>)> {
    let bound = (std::ops::Bound::Excluded(from), std::ops::Bound::Unbounded);
    let known = node.children.iter().flat_map(move |c| c.range::<str, _>(bound)).map(|(n, c)| (n, Some(c.kind)));
    let unknown = node.unknown.range::<str, _>(bound).map(|n| (n, None));
    merge_by_name(known, unknown).take(limit)
}

/// Two iterators sorted by name, with no name in both, merged in name order.
fn merge_by_name<'a, A, B, K>(a: A, b: B) -> impl Iterator<Item = (&'a String, K)>
where
    A: Iterator<Item = (&'a String, K)>,
    B: Iterator<Item = (&'a String, K)>,
{
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((x, _)), Some((y, _))) if y < x => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}
