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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use zookeeper_client::{AddWatchMode, EventType, Stat, WatchedEvent};

use crate::error::{Error, Result};
use crate::inodes::{child_path, split_path, Inode, InodeKind};
use crate::session::Session;
pub use crate::tree::{data_file, Child, KernelNote, Kind, NodeView, Presence};
use crate::tree::{node_view, Node, Tree};

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
    pub(crate) session: Arc<Session>,
    tree: Mutex<Tree>,
    /// Held by loads and by event handling; see the module docs.
    pub(crate) fetch: tokio::sync::Mutex<()>,
    /// The task forwarding the root watch's events.
    watch: Mutex<Option<AbortHandle>>,
    changes: mpsc::UnboundedSender<WatchedEvent>,
    notes: std::sync::mpsc::Sender<KernelNote>,
    /// Data changes and deletions received from the watch so far; see [`View::local_node`].
    events_seen: Arc<AtomicU64>,
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
            events_seen: Arc::default(),
        };
        (Arc::new(view), rx)
    }

    /// The session the view reads through.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub(crate) fn tree(&self) -> MutexGuard<'_, Tree> {
        // A panic elsewhere must not take the whole mount down: the tree stays usable.
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn send(&self, notes: Vec<KernelNote>) {
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

    /// Child `name` of `parent` if it is shown (a child on its way in is not). Looks the
    /// one name up: its cost does not grow with the directory.
    pub fn child(&self, parent: &str, name: &str) -> Result<Option<Child>> {
        // `None`: the parent's children are not listed yet.
        let find = |tree: &Tree| Some(tree.nodes.get(parent)?.children.as_ref()?.get(name).copied());
        // Bound first: a guard in the `match` itself would be held into the arms.
        let listed = find(&self.tree());
        let found = match listed {
            Some(found) => found,
            None => {
                self.children(parent)?;
                find(&self.tree()).flatten()
            }
        };
        Ok(found.filter(|c| c.presence != Presence::PendingCreate))
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
    pub(crate) async fn read(&self, path: &str) -> Result<NodeView> {
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
        let events_seen = Arc::clone(&self.events_seen);
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
                if matches!(event.event_type, EventType::NodeDataChanged | EventType::NodeDeleted) {
                    events_seen.fetch_add(1, Ordering::SeqCst);
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
    pub(crate) async fn list(&self, path: &str, known: &BTreeMap<String, Kind>) -> Result<BTreeMap<String, Kind>> {
        let p = path.to_string();
        let names = self.session.call_async(path, |c| async move { c.list_children(&p).await }).await?;
        self.kinds(path, names, known).await
    }

    /// Looks up the kinds of `names` under `parent` in one pipelined round trip;
    /// `known` kinds are reused.
    pub(crate) async fn kinds(
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
        if self.events_seen.load(Ordering::SeqCst) == mark && !tree.nodes.contains_key(path) {
            tree.nodes.insert(path.to_string(), Node { view: node.clone(), children: None, stale: false });
        }
    }

    /// ZooKeeper created `path` for this mount.
    pub fn local_created(&self, path: &str, kind: Kind) {
        let Some((parent, name)) = split_path(path) else { return };
        let mut tree = self.tree();
        if let Some(children) = tree.children_mut(parent) {
            children.insert(name.to_string(), Child { kind, presence: Presence::Present });
        }
    }

    /// ZooKeeper deleted `path` for this mount. The kernel already knows.
    pub fn local_removed(&self, path: &str) {
        let mut notes = Vec::new();
        self.tree().forget(path, &mut notes);
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
