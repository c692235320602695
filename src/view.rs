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
//! One *persistent recursive* ZooKeeper watch on the mount's root (ZooKeeper ≥ 3.6),
//! set before anything is read, reports every creation, deletion and data change below
//! it, with its path; events for nodes that are not cached cost a hash lookup. Loads
//! and event handling hold one async lock (`fetch`), so an event is never applied
//! before the read it follows, and no change falls between an event and the re-read.
//! Per-node watches were measured first: ZooKeeper's "children changed" carries no
//! names, so every creation cost a listing and a stat before it could be reported.
//!
//! Watch events are handled by one task ([`View::start`]). It updates the cache and
//! queues [`KernelNote`]s — what the kernel must forget, and the echoes below.
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
//! New data is echoed at once, before it is read: the node is marked *stale*, and
//! whoever reads it through the filesystem waits for the re-read (which holds
//! `fetch`), so `cat` right after the event shows the new data.
//!
//! ## Changes made through this mount
//!
//! They already pass through the VFS, so they must not be echoed. Each one holds a
//! [`LocalChange`] guard on its path from before its ZooKeeper request until its result
//! is in the cache: a watch event for a path under a guard updates the cache and is
//! otherwise silent. (A change made elsewhere in that same instant is folded into the
//! local one: watchers get one event for both.)
//!
//! After a reconnect or a new session the watch may be gone (and events lost, see
//! ZOOKEEPER-4698): the task re-arms it and re-reads every cached node, queueing the
//! notes for whatever changed meanwhile.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use log::{debug, warn};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use zookeeper_client::{AddWatchMode, EventType, Stat, WatchedEvent};

use crate::error::{Error, Result};
use crate::inodes::{child_path, split_path, Inode, InodeKind, Inodes};
use crate::names::PROPERTIES;
use crate::properties;
use crate::session::{Session, SessionEvent};

/// What kind of file a child znode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A persistent znode: a directory.
    Dir,
    /// An ephemeral znode: a read-only registration file.
    Registration,
}

impl Kind {
    fn of(stat: &Stat) -> Kind {
        if stat.ephemeral_owner != 0 {
            Kind::Registration
        } else {
            Kind::Dir
        }
    }

    /// The inode kind of the file that shows this node's data.
    pub fn data_inode(self) -> InodeKind {
        match self {
            Kind::Dir => InodeKind::Properties,
            Kind::Registration => InodeKind::Registration,
        }
    }

    /// The inode kind of the node itself.
    pub fn inode(self) -> InodeKind {
        match self {
            Kind::Dir => InodeKind::Dir,
            Kind::Registration => InodeKind::Registration,
        }
    }
}

/// Where a child stands between ZooKeeper and the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Shown.
    Present,
    /// Added elsewhere; hidden until its echo `mknod`/`mkdir` arrives.
    PendingCreate,
    /// Removed elsewhere; shown until its echo `unlink`/`rmdir` arrives. `recreate`:
    /// it was added again meanwhile, with that kind.
    PendingRemove {
        /// Added again meanwhile, as this kind.
        recreate: Option<Kind>,
    },
}

/// A child as the filesystem sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    /// Directory or registration.
    pub kind: Kind,
    /// Shown, or on its way in or out.
    pub presence: Presence,
}

/// Something the kernel must be told so that its caches stay true and its watchers
/// hear of changes made elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelNote {
    /// Forget `name` in directory `parent`.
    InvalEntry {
        /// The directory's inode.
        parent: u64,
        /// The entry's name.
        name: String,
    },
    /// Forget the attributes and contents of `ino`.
    InvalInode {
        /// The inode.
        ino: u64,
    },
    /// Echo a child added elsewhere (`mknod` or `mkdir` of `path`).
    Create {
        /// The directory's inode (for the fallback invalidation).
        parent: u64,
        /// The znode's path.
        path: String,
        /// Its kind.
        kind: Kind,
    },
    /// Echo a child removed elsewhere (`unlink` or `rmdir` of `path`).
    Remove {
        /// The directory's inode (for the fallback invalidation).
        parent: u64,
        /// The znode's path.
        path: String,
        /// Its kind.
        kind: Kind,
    },
    /// Echo data changed elsewhere: invalidate `ino`, then open-truncate-close `file`.
    Change {
        /// The inode of the file showing the data.
        ino: u64,
        /// The file's path in the mount (`/a/properties.json`, `/a/host:1`).
        file: String,
        /// What `cat` now prints, in bytes.
        size: u64,
    },
}

/// A cached node as the filesystem reads it.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// The znode's stat.
    pub stat: Stat,
    /// The znode's kind.
    pub kind: Kind,
    /// What `cat` shows for the node's data.
    pub rendered: Arc<Vec<u8>>,
    /// The raw data.
    pub data: Arc<Vec<u8>>,
}

struct Node {
    view: NodeView,
    children: Option<BTreeMap<String, Child>>,
    /// Changed in ZooKeeper, re-read in progress: readers wait for it.
    stale: bool,
}

#[derive(Default)]
struct Tree {
    nodes: HashMap<String, Node>,
    inodes: Inodes,
    /// Paths with a change through this mount in flight, and how many.
    local: HashMap<String, usize>,
    /// The mzxid of data this mount wrote, per path, until a watch event's re-read has
    /// seen it: an event for such a node may be the echo of that very write.
    written: HashMap<String, i64>,
    /// Bumped whenever a directory's listing changes, per directory path.
    listing: HashMap<String, u64>,
}

impl Tree {
    fn is_local(&self, path: &str) -> bool {
        self.local.contains_key(path)
    }

    fn children_mut(&mut self, parent: &str) -> Option<&mut BTreeMap<String, Child>> {
        self.nodes.get_mut(parent).and_then(|n| n.children.as_mut())
    }

    fn listing_changed(&mut self, dir: &str) {
        *self.listing.entry(dir.to_string()).or_default() += 1;
    }

    /// Drops `path` and its subtree; returns the dropped inodes.
    fn forget(&mut self, path: &str) -> Vec<(u64, Inode)> {
        let prefix = format!("{path}/");
        let gone: Vec<String> = self.nodes.keys().filter(|p| *p == path || p.starts_with(&prefix)).cloned().collect();
        for p in gone {
            self.nodes.remove(&p);
            self.listing.remove(&p);
            self.written.remove(&p);
        }
        if let Some((parent, name)) = split_path(path) {
            if let Some(children) = self.children_mut(parent) {
                children.remove(name);
            }
            self.listing_changed(parent);
        }
        self.inodes.remove_subtree(path)
    }

    /// A child appeared in ZooKeeper.
    fn child_added(&mut self, parent: &str, name: &str, kind: Kind, notes: &mut Vec<KernelNote>) {
        let path = child_path(parent, name);
        let local = self.is_local(&path);
        let dir_ino = self.inodes.existing(parent, InodeKind::Dir);
        let Some(children) = self.children_mut(parent) else { return };
        match children.get_mut(name) {
            Some(Child { presence: Presence::PendingRemove { recreate }, .. }) => *recreate = Some(kind),
            Some(_) => {}
            None => {
                let presence = match (local, dir_ino) {
                    (false, Some(parent)) => {
                        notes.push(KernelNote::Create { parent, path, kind });
                        Presence::PendingCreate
                    }
                    _ => Presence::Present,
                };
                children.insert(name.to_string(), Child { kind, presence });
                self.listing_changed(parent);
            }
        }
    }

    /// A child went from ZooKeeper.
    fn child_gone(&mut self, parent: &str, name: &str, notes: &mut Vec<KernelNote>) {
        let path = child_path(parent, name);
        let local = self.is_local(&path);
        let dir_ino = self.inodes.existing(parent, InodeKind::Dir);
        let Some(children) = self.children_mut(parent) else {
            self.forget(&path);
            if let Some(parent) = dir_ino {
                notes.push(KernelNote::InvalEntry { parent, name: name.to_string() });
            }
            return;
        };
        match children.get(name).copied() {
            None => {}
            Some(Child { presence: Presence::PendingRemove { .. }, .. }) => {
                if let Some(Child { presence: Presence::PendingRemove { recreate }, .. }) = children.get_mut(name) {
                    *recreate = None;
                }
            }
            Some(Child { presence: Presence::PendingCreate, .. }) => {
                // Never shown: its queued echo finds nothing and falls back.
                self.forget(&path);
            }
            Some(Child { kind, presence: Presence::Present }) => match (local, dir_ino) {
                (false, Some(parent)) => {
                    children
                        .insert(name.to_string(), Child { kind, presence: Presence::PendingRemove { recreate: None } });
                    notes.push(KernelNote::Remove { parent, path, kind });
                }
                _ => {
                    self.forget(&path);
                }
            },
        }
    }
}

/// Marks a change through this mount in flight on a path; see the module docs.
pub struct LocalChange<'a> {
    view: &'a View,
    path: String,
}

impl Drop for LocalChange<'_> {
    fn drop(&mut self) {
        let mut tree = self.view.tree();
        if let Some(n) = tree.local.get_mut(&self.path) {
            *n -= 1;
            if *n == 0 {
                tree.local.remove(&self.path);
            }
        }
    }
}

/// The cached, watched view of the tree.
pub struct View {
    session: Arc<Session>,
    tree: Mutex<Tree>,
    fetch: tokio::sync::Mutex<()>,
    /// The task forwarding the root watch's events.
    watch: Mutex<Option<AbortHandle>>,
    changes: mpsc::UnboundedSender<WatchedEvent>,
    notes: std::sync::mpsc::Sender<KernelNote>,
}

fn node_view(data: Vec<u8>, stat: Stat) -> NodeView {
    NodeView { kind: Kind::of(&stat), rendered: Arc::new(properties::render(&data)), data: Arc::new(data), stat }
}

/// The path in the mount of the file that shows the data of `path`.
pub fn data_file(path: &str, kind: Kind) -> String {
    match kind {
        Kind::Registration => path.to_string(),
        Kind::Dir => child_path(path, PROPERTIES),
    }
}

impl View {
    /// A view with nothing cached yet. Start its event task with [`View::start`].
    pub fn new(
        session: Arc<Session>,
        notes: std::sync::mpsc::Sender<KernelNote>,
    ) -> (Arc<View>, mpsc::UnboundedReceiver<WatchedEvent>) {
        let (changes, rx) = mpsc::unbounded_channel();
        let view = View {
            session,
            tree: Mutex::default(),
            fetch: tokio::sync::Mutex::new(()),
            watch: Mutex::new(None),
            changes,
            notes,
        };
        (Arc::new(view), rx)
    }

    /// The session the view reads through.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        // A panic elsewhere must not take the whole mount down: the tree stays usable.
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, notes: Vec<KernelNote>) {
        for note in notes {
            let _ = self.notes.send(note);
        }
    }

    // ----- inode numbers -----

    /// What inode `ino` stands for.
    pub fn inode(&self, ino: u64) -> Option<Inode> {
        self.tree().inodes.get(ino).cloned()
    }

    /// The inode number of `path` shown as `kind`.
    pub fn ino(&self, path: &str, kind: InodeKind) -> u64 {
        self.tree().inodes.ino(path, kind)
    }

    // ----- reads (FUSE threads) -----

    /// The node at `path`, read from ZooKeeper (and watched) the first time.
    ///
    /// # Notable errors
    /// [`Error::NotFound`] if there is no such node.
    pub fn node(&self, path: &str) -> Result<NodeView> {
        if let Some(n) = self.tree().nodes.get(path).filter(|n| !n.stale) {
            return Ok(n.view.clone());
        }
        self.session.runtime().block_on(self.ensure(path))?;
        self.cached(path).ok_or_else(|| Error::NotFound(path.to_string()))
    }

    /// The node at `path` if it is cached.
    pub fn cached(&self, path: &str) -> Option<NodeView> {
        self.tree().nodes.get(path).map(|n| n.view.clone())
    }

    /// The children of `path` that are shown, with their kinds, listed (and watched)
    /// the first time.
    pub fn children(&self, path: &str) -> Result<Vec<(String, Kind)>> {
        if let Some(list) = self.visible_children(path) {
            return Ok(list);
        }
        self.session.runtime().block_on(self.ensure_children(path))?;
        self.visible_children(path).ok_or_else(|| Error::NotFound(path.to_string()))
    }

    /// Child `name` of `parent` if it is shown (a child on its way in is not).
    pub fn child(&self, parent: &str, name: &str) -> Result<Option<Child>> {
        if self.visible_children(parent).is_none() {
            self.children(parent)?;
        }
        let tree = self.tree();
        let child = tree.nodes.get(parent).and_then(|n| n.children.as_ref()).and_then(|c| c.get(name)).copied();
        Ok(child.filter(|c| c.presence != Presence::PendingCreate))
    }

    /// A number that changes whenever the listing of `dir` changes.
    pub fn listing_version(&self, dir: &str) -> u64 {
        self.tree().listing.get(dir).copied().unwrap_or(0)
    }

    fn visible_children(&self, path: &str) -> Option<Vec<(String, Kind)>> {
        let tree = self.tree();
        let children = tree.nodes.get(path)?.children.as_ref()?;
        Some(
            children
                .iter()
                .filter(|(_, c)| c.presence != Presence::PendingCreate)
                .map(|(n, c)| (n.clone(), c.kind))
                .collect(),
        )
    }

    async fn ensure(&self, path: &str) -> Result<()> {
        // Holding `fetch` also waits out a re-read in progress: a stale node is fresh
        // (or, with ZooKeeper unreachable, the last known data) once it is taken.
        let _fetch = self.fetch.lock().await;
        if self.tree().nodes.contains_key(path) {
            return Ok(());
        }
        let view = self.read(path).await?;
        self.tree().nodes.insert(path.to_string(), Node { view, children: None, stale: false });
        Ok(())
    }

    /// Sets the node's watch, then reads it.
    async fn read(&self, path: &str) -> Result<NodeView> {
        let p = path.to_string();
        let (data, stat) = self.session.call_async(path, |c| async move { c.get_data(&p).await }).await?;
        Ok(node_view(data, stat))
    }

    /// Sets the persistent recursive watch on the root and starts forwarding its
    /// events; replaces (and so removes) the previous one.
    pub async fn arm(&self) -> Result<()> {
        let mut watcher = self
            .session
            .call_async("/", |c| async move { c.watch("/", AddWatchMode::PersistentRecursive).await })
            .await?;
        let changes = self.changes.clone();
        let task = self.session.runtime().spawn(async move {
            loop {
                let event = watcher.changed().await;
                if event.event_type == EventType::Session {
                    // zookeeper-client panics if a watcher is polled after a terminal
                    // session event, so stop at the first one.
                    if event.session_state.is_terminated() {
                        return;
                    }
                    continue;
                }
                if changes.send(event).is_err() {
                    return;
                }
            }
        });
        // Dropping the old watcher after the new one exists keeps the server's watch.
        let old = self.watch.lock().unwrap_or_else(|p| p.into_inner()).replace(task.abort_handle());
        if let Some(old) = old {
            old.abort();
        }
        Ok(())
    }

    async fn ensure_children(&self, path: &str) -> Result<()> {
        self.ensure(path).await?;
        let _fetch = self.fetch.lock().await;
        match self.tree().nodes.get(path) {
            Some(n) if n.children.is_some() => return Ok(()),
            Some(_) => {}
            None => return Err(Error::NotFound(path.to_string())),
        }
        let listed = self.list(path, &BTreeMap::new()).await?;
        let listed = listed.into_iter().map(|(n, kind)| (n, Child { kind, presence: Presence::Present })).collect();
        if let Some(n) = self.tree().nodes.get_mut(path) {
            n.children = Some(listed);
        }
        Ok(())
    }

    /// Lists the children of `path` with their kinds; `known` kinds are reused.
    async fn list(&self, path: &str, known: &BTreeMap<String, Kind>) -> Result<BTreeMap<String, Kind>> {
        let p = path.to_string();
        let names = self.session.call_async(path, |c| async move { c.list_children(&p).await }).await?;
        self.kinds(path, names, known).await
    }

    /// Looks up the kinds of `names` under `parent` in one pipelined round trip;
    /// `known` kinds are reused.
    async fn kinds(
        &self,
        parent: &str,
        names: Vec<String>,
        known: &BTreeMap<String, Kind>,
    ) -> Result<BTreeMap<String, Kind>> {
        let client = self.session.client()?;
        let mut out = BTreeMap::new();
        let mut pending = Vec::new();
        for name in names {
            match known.get(&name) {
                Some(kind) => {
                    out.insert(name, *kind);
                }
                None => {
                    // zookeeper-client sends a request when its future is created, so
                    // creating them all first pipelines the round trips.
                    let fut = client.check_stat(&child_path(parent, &name));
                    pending.push((name, fut));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.session.timeout();
        for (name, fut) in pending {
            match tokio::time::timeout_at(deadline, fut).await {
                Ok(Ok(Some(stat))) => {
                    out.insert(name, Kind::of(&stat));
                }
                Ok(Ok(None)) => {} // gone meanwhile; its parent's watch will say so
                Ok(Err(e)) => return Err(Error::from_zk(e, &child_path(parent, &name))),
                Err(_) => return Err(Error::Unavailable(format!("{parent}: listing timed out"))),
            }
        }
        Ok(out)
    }

    // ----- changes made through this mount -----

    /// Marks a change of `path` through this mount as in flight until the guard drops.
    pub fn local(&self, path: &str) -> LocalChange<'_> {
        *self.tree().local.entry(path.to_string()).or_default() += 1;
        LocalChange { view: self, path: path.to_string() }
    }

    /// ZooKeeper accepted new data for `path`.
    pub fn local_data(&self, path: &str, data: Vec<u8>, stat: Stat) {
        let mut tree = self.tree();
        let mzxid = stat.mzxid;
        if let Some(n) = tree.nodes.get_mut(path) {
            if mzxid > n.view.stat.mzxid {
                n.view = node_view(data, stat);
            }
            tree.written.insert(path.to_string(), mzxid);
        }
    }

    /// ZooKeeper created `path` for this mount.
    pub fn local_created(&self, path: &str, kind: Kind) {
        let Some((parent, name)) = split_path(path) else { return };
        let mut tree = self.tree();
        if let Some(children) = tree.children_mut(parent) {
            children.insert(name.to_string(), Child { kind, presence: Presence::Present });
            tree.listing_changed(parent);
        }
    }

    /// ZooKeeper deleted `path` for this mount. The kernel already knows.
    pub fn local_removed(&self, path: &str) {
        self.tree().forget(path);
    }

    // ----- echoes (the echo thread's requests, and its fallbacks) -----

    /// The echo `mknod`/`mkdir` of `name` arrived: the child is shown from now on.
    /// Returns its kind, or `None` if it is not waiting for an echo.
    pub fn echo_created(&self, parent: &str, name: &str) -> Option<Kind> {
        let mut tree = self.tree();
        let child = tree.children_mut(parent)?.get_mut(name)?;
        if child.presence != Presence::PendingCreate {
            return None;
        }
        child.presence = Presence::Present;
        Some(child.kind)
    }

    /// The echo `unlink`/`rmdir` of `name` arrived: the child goes (or, if it was added
    /// again meanwhile, waits for its next echo). False if it was not waiting for one.
    pub fn echo_removed(&self, parent: &str, name: &str) -> bool {
        let path = child_path(parent, name);
        let mut notes = Vec::new();
        let done = {
            let mut tree = self.tree();
            let Some(child) = tree.children_mut(parent).and_then(|c| c.get(name)).copied() else { return false };
            let Presence::PendingRemove { recreate } = child.presence else { return false };
            tree.forget(&path);
            if let Some(kind) = recreate {
                tree.child_added(parent, name, kind, &mut notes);
            }
            true
        };
        self.send(notes);
        done
    }

    /// An echo of a creation could not be made: show the child anyway.
    pub fn echo_create_failed(&self, path: &str) {
        let Some((parent, name)) = split_path(path) else { return };
        if let Some(child) = self.tree().children_mut(parent).and_then(|c| c.get_mut(name)) {
            if child.presence == Presence::PendingCreate {
                child.presence = Presence::Present;
            }
        }
    }

    /// An echo of a removal could not be made: drop the child anyway.
    pub fn echo_remove_failed(&self, path: &str) {
        let Some((parent, name)) = split_path(path) else { return };
        let mut notes = Vec::new();
        {
            let mut tree = self.tree();
            let Some(child) = tree.children_mut(parent).and_then(|c| c.get(name)).copied() else { return };
            let Presence::PendingRemove { recreate } = child.presence else { return };
            tree.forget(path);
            if let Some(kind) = recreate {
                tree.child_added(parent, name, kind, &mut notes);
            }
        }
        self.send(notes);
    }

    // ----- the event task -----

    /// Starts the task that applies watch events and session events.
    pub fn start(
        self: &Arc<Self>,
        mut changes: mpsc::UnboundedReceiver<WatchedEvent>,
        mut session_events: mpsc::UnboundedReceiver<SessionEvent>,
    ) -> tokio::task::JoinHandle<()> {
        let view = Arc::clone(self);
        self.session.runtime().spawn(async move {
            loop {
                tokio::select! {
                    Some(event) = changes.recv() => {
                        let mut batch = vec![event];
                        while let Ok(more) = changes.try_recv() {
                            batch.push(more);
                        }
                        view.apply(batch).await;
                    }
                    Some(event) = session_events.recv() => {
                        debug!("resynchronising the view after {event:?}");
                        view.resync().await;
                    }
                    else => return,
                }
            }
        })
    }

    async fn apply(&self, batch: Vec<WatchedEvent>) {
        // Only the latest data matters: repeated data changes of a node are read once.
        let mut events: Vec<(String, EventType)> = Vec::with_capacity(batch.len());
        for e in batch {
            let repeat = e.event_type == EventType::NodeDataChanged
                && events.iter().any(|(p, t)| *p == e.path && *t == EventType::NodeDataChanged);
            if !repeat {
                events.push((e.path, e.event_type));
            }
        }
        let _fetch = self.fetch.lock().await;
        let Ok(client) = self.session.client() else { return };
        // First pass: send every read the batch needs at once (zookeeper-client sends a
        // request when its future is created), and echo data changes right away.
        let mut stats = VecDeque::new();
        let mut reads = VecDeque::new();
        for (i, (path, kind)) in events.iter().enumerate() {
            match kind {
                EventType::NodeCreated if self.awaits_child(path) => stats.push_back((i, client.check_stat(path))),
                EventType::NodeDataChanged => {
                    if let Some(echoed) = self.data_changing(path) {
                        reads.push_back((i, echoed, client.get_data(path)));
                    }
                }
                _ => {}
            }
        }
        let deadline = tokio::time::Instant::now() + self.session.timeout();
        for (i, (path, kind)) in events.iter().enumerate() {
            debug!("watch event {kind:?} {path}");
            match kind {
                EventType::NodeCreated => {
                    let next = if stats.front().is_some_and(|(j, _)| *j == i) { stats.pop_front() } else { None };
                    let Some((_, stat)) = next else {
                        continue;
                    };
                    match tokio::time::timeout_at(deadline, stat).await {
                        Ok(Ok(Some(stat))) => self.child_created(path, Kind::of(&stat)),
                        Ok(Ok(None)) => {} // gone again; its deletion event follows
                        Ok(Err(e)) => warn!("cannot read the new node {path}: {e}"),
                        Err(_) => warn!("reading the new node {path} timed out"),
                    }
                }
                EventType::NodeDataChanged => {
                    let next = if reads.front().is_some_and(|(j, _, _)| *j == i) { reads.pop_front() } else { None };
                    let Some((_, echoed, read)) = next else {
                        continue;
                    };
                    match tokio::time::timeout_at(deadline, read).await {
                        Ok(Ok((data, stat))) => self.data_read(path, node_view(data, stat), echoed),
                        Ok(Err(zookeeper_client::Error::NoNode)) => self.node_gone(path),
                        Ok(Err(e)) => warn!("cannot re-read {path}: {e}"),
                        Err(_) => warn!("re-reading {path} timed out"),
                    }
                }
                EventType::NodeDeleted => self.node_gone(path),
                // A recursive watch reports children as creations and deletions.
                EventType::NodeChildrenChanged | EventType::Session => {}
            }
        }
    }

    /// True if `path` is a child this view lists but does not know yet.
    fn awaits_child(&self, path: &str) -> bool {
        let Some((parent, name)) = split_path(path) else { return false };
        let tree = self.tree();
        let Some(children) = tree.nodes.get(parent).and_then(|n| n.children.as_ref()) else { return false };
        !matches!(children.get(name), Some(Child { presence: Presence::Present | Presence::PendingCreate, .. }))
    }

    /// A child appeared in a listed directory.
    fn child_created(&self, path: &str, kind: Kind) {
        let Some((parent, name)) = split_path(path) else { return };
        let mut notes = Vec::new();
        self.tree().child_added(parent, name, kind, &mut notes);
        self.send(notes);
    }

    /// The data of `path` changed in ZooKeeper. `None`: not cached, nothing to do.
    /// Otherwise it must be re-read, and `Some(true)` says its change was echoed now,
    /// before the re-read (the node is stale meanwhile). A node this mount wrote is
    /// not echoed early: the event may be that write's own, which only the re-read
    /// can tell.
    fn data_changing(&self, path: &str) -> Option<bool> {
        let mut notes = Vec::new();
        {
            let mut tree = self.tree();
            let mine = tree.is_local(path) || tree.written.contains_key(path);
            let n = tree.nodes.get_mut(path)?;
            if mine {
                return Some(false);
            }
            n.stale = true;
            let (kind, size) = (n.view.kind, n.view.rendered.len() as u64);
            if let Some(ino) = tree.inodes.existing(path, kind.data_inode()) {
                notes.push(KernelNote::Change { ino, file: data_file(path, kind), size });
            }
        }
        self.send(notes);
        Some(true)
    }

    /// Applies data read from ZooKeeper to the cached node. Caller holds `fetch`.
    /// Applies data read from ZooKeeper to the cached node; `echoed`: its change was
    /// already echoed (see [`View::data_changing`]). Caller holds `fetch`.
    fn data_read(&self, path: &str, view: NodeView, echoed: bool) {
        let mut notes = Vec::new();
        {
            let mut tree = self.tree();
            let local = tree.is_local(path);
            if tree.written.get(path).is_some_and(|w| view.stat.mzxid >= *w) {
                tree.written.remove(path);
            }
            let Some(n) = tree.nodes.get_mut(path) else { return };
            n.stale = false;
            let old = &n.view.stat;
            if view.stat.czxid == old.czxid && view.stat.mzxid <= old.mzxid {
                return;
            }
            let kind = view.kind;
            let size = view.rendered.len() as u64;
            n.view = view;
            if local {
                return; // the writer's own syscalls are its watchers' events
            }
            if let Some(ino) = tree.inodes.existing(path, kind.data_inode()) {
                notes.push(if echoed {
                    KernelNote::InvalInode { ino }
                } else {
                    KernelNote::Change { ino, file: data_file(path, kind), size }
                });
            }
            if let Some(ino) = tree.inodes.existing(path, InodeKind::Dir).filter(|_| kind == Kind::Dir) {
                notes.push(KernelNote::InvalInode { ino });
            }
        }
        self.send(notes);
    }

    /// Re-lists the children of a cached node (after a reconnect). Caller holds `fetch`.
    async fn refresh_children(&self, path: &str) -> Result<()> {
        let known: BTreeMap<String, Kind> = match self.tree().nodes.get(path) {
            Some(Node { children: Some(c), .. }) => c.iter().map(|(n, c)| (n.clone(), c.kind)).collect(),
            _ => return Ok(()),
        };
        let listed = match self.list(path, &known).await {
            Ok(listed) => listed,
            Err(Error::NotFound(_)) => {
                self.node_gone(path);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut notes = Vec::new();
        {
            // Compared with the children as they are now, not as they were before the
            // round trip: a change through this mount may have landed meanwhile.
            let mut tree = self.tree();
            let Some(current) = tree.nodes.get(path).and_then(|n| n.children.as_ref()) else { return Ok(()) };
            let gone: Vec<String> = current
                .iter()
                .filter(|(n, c)| {
                    !listed.contains_key(*n) && !matches!(c.presence, Presence::PendingRemove { recreate: None })
                })
                .map(|(n, _)| n.clone())
                .collect();
            let added: Vec<(String, Kind)> = listed
                .iter()
                .filter(|(n, _)| {
                    !matches!(
                        current.get(*n),
                        Some(Child { presence: Presence::Present | Presence::PendingCreate, .. })
                    ) && !matches!(
                        current.get(*n),
                        Some(Child { presence: Presence::PendingRemove { recreate: Some(_) }, .. })
                    )
                })
                .map(|(n, k)| (n.clone(), *k))
                .collect();
            for name in gone {
                tree.child_gone(path, &name, &mut notes);
            }
            for (name, kind) in added {
                tree.child_added(path, &name, kind, &mut notes);
            }
        }
        self.send(notes);
        Ok(())
    }

    /// A node went away (seen by a watch or a failed read).
    fn node_gone(&self, path: &str) {
        let Some((parent, name)) = split_path(path) else { return };
        let mut notes = Vec::new();
        {
            let mut tree = self.tree();
            let shown = tree.nodes.get(parent).and_then(|n| n.children.as_ref()).is_some_and(|c| c.contains_key(name));
            if shown {
                tree.child_gone(parent, name, &mut notes);
            } else {
                let parent_ino = tree.inodes.existing(parent, InodeKind::Dir);
                tree.forget(path);
                if let Some(parent) = parent_ino {
                    notes.push(KernelNote::InvalEntry { parent, name: name.to_string() });
                }
            }
        }
        self.session.registration_gone(path);
        self.send(notes);
    }

    /// Re-arms every watch and re-reads every cached node, parents first.
    async fn resync(&self) {
        let _fetch = self.fetch.lock().await;
        if let Err(e) = self.arm().await {
            warn!("cannot re-arm the watch: {e}; will retry on the next reconnect");
            return;
        }
        let mut paths: Vec<String> = self.tree().nodes.keys().cloned().collect();
        paths.sort_by_key(|p| (p.matches('/').count(), p.clone()));
        for path in paths {
            if !self.tree().nodes.contains_key(&path) {
                continue; // went with its parent
            }
            match self.read(&path).await {
                Ok(view) => self.data_read(&path, view, false),
                Err(Error::NotFound(_)) => {
                    self.node_gone(&path);
                    continue;
                }
                Err(e) => {
                    warn!("resynchronising stopped at {path}: {e}; will retry on the next reconnect");
                    return;
                }
            }
            if let Err(e) = self.refresh_children(&path).await {
                warn!("resynchronising the children of {path}: {e}");
                return;
            }
        }
        debug!("view resynchronised");
    }
}
