//! The mount's view of the ZooKeeper tree: what it has shown, kept fresh by watches.
//!
//! # Design
//!
//! Every znode the kernel has been shown is cached here with its data and stat and,
//! once listed, its children (with their kinds: a persistent child is a directory, an
//! ephemeral one a registration file). Each cached node carries one *persistent*
//! ZooKeeper watch (ZooKeeper ≥ 3.6), set **before** the node is read: any change
//! after the read fires an event, so no change falls between an event and the re-read.
//! Memory and watches grow with what has been looked at, not with the ensemble.
//!
//! Watch events are handled by one task ([`View::start`]), which re-reads what changed,
//! updates the cache and queues [`KernelNote`]s: what the kernel must forget so that
//! `ls` and `cat` show the new state. Loads and event handling hold one async lock
//! (`fetch`), so an event is never applied before the read it follows.
//!
//! Changes made through this mount update the cache as soon as ZooKeeper accepts them
//! (the `local_*` methods), so a `cat` right after an `echo >>` shows the new data even
//! before the watch event arrives; the event then finds nothing new.
//!
//! After a reconnect or a new session, watches may be gone (and events lost, see
//! ZOOKEEPER-4698): [`View::start`]'s task re-arms every watch and re-reads every
//! cached node, queueing notes for whatever changed meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use log::{debug, warn};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use zookeeper_client::{AddWatchMode, EventType, Stat, WatchedEvent};

use crate::error::{Error, Result};
use crate::inodes::{child_path, split_path, Inode, InodeKind, Inodes};
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
}

/// Something the kernel must be told so that its caches stay true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelNote {
    /// `name` in directory `parent` appeared or went away.
    InvalEntry {
        /// The directory's inode.
        parent: u64,
        /// The entry's name.
        name: String,
    },
    /// The attributes and contents of `ino` changed.
    InvalInode {
        /// The inode.
        ino: u64,
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
    children: Option<BTreeMap<String, Kind>>,
    watch: Option<AbortHandle>,
}

#[derive(Default)]
struct Tree {
    nodes: HashMap<String, Node>,
    inodes: Inodes,
}

/// The cached, watched view of the tree.
pub struct View {
    session: Arc<Session>,
    tree: Mutex<Tree>,
    fetch: tokio::sync::Mutex<()>,
    changes: mpsc::UnboundedSender<WatchedEvent>,
    notes: std::sync::mpsc::Sender<KernelNote>,
}

fn node_view(data: Vec<u8>, stat: Stat) -> NodeView {
    NodeView { kind: Kind::of(&stat), rendered: Arc::new(properties::render(&data)), data: Arc::new(data), stat }
}

impl View {
    /// A view with nothing cached yet. Start its event task with [`View::start`].
    pub fn new(
        session: Arc<Session>,
        notes: std::sync::mpsc::Sender<KernelNote>,
    ) -> (Arc<View>, mpsc::UnboundedReceiver<WatchedEvent>) {
        let (changes, rx) = mpsc::unbounded_channel();
        let view = View { session, tree: Mutex::default(), fetch: tokio::sync::Mutex::new(()), changes, notes };
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

    fn note(&self, note: KernelNote) {
        let _ = self.notes.send(note);
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
        if let Some(n) = self.tree().nodes.get(path) {
            return Ok(n.view.clone());
        }
        self.session.runtime().block_on(self.ensure(path))?;
        self.tree().nodes.get(path).map(|n| n.view.clone()).ok_or_else(|| Error::NotFound(path.to_string()))
    }

    /// The children of `path` with their kinds, listed (and watched) the first time.
    pub fn children(&self, path: &str) -> Result<Vec<(String, Kind)>> {
        if let Some(list) = self.cached_children(path) {
            return Ok(list);
        }
        self.session.runtime().block_on(self.ensure_children(path))?;
        self.cached_children(path).ok_or_else(|| Error::NotFound(path.to_string()))
    }

    /// The kind of child `name` of `parent`, or `None` if there is no such child.
    pub fn child(&self, parent: &str, name: &str) -> Result<Option<Kind>> {
        if let Some(n) = self.tree().nodes.get(parent) {
            if let Some(children) = &n.children {
                return Ok(children.get(name).copied());
            }
        }
        Ok(self.children(parent)?.into_iter().find(|(n, _)| n == name).map(|(_, k)| k))
    }

    fn cached_children(&self, path: &str) -> Option<Vec<(String, Kind)>> {
        let tree = self.tree();
        let children = tree.nodes.get(path)?.children.as_ref()?;
        Some(children.iter().map(|(n, k)| (n.clone(), *k)).collect())
    }

    async fn ensure(&self, path: &str) -> Result<()> {
        if self.tree().nodes.contains_key(path) {
            return Ok(());
        }
        let _fetch = self.fetch.lock().await;
        if self.tree().nodes.contains_key(path) {
            return Ok(());
        }
        let (view, watch) = self.load(path).await?;
        self.tree().nodes.insert(path.to_string(), Node { view, children: None, watch: Some(watch) });
        Ok(())
    }

    /// Sets the node's watch, then reads it.
    async fn load(&self, path: &str) -> Result<(NodeView, AbortHandle)> {
        let p = path.to_string();
        let mut watcher =
            self.session.call_async(path, |c| async move { c.watch(&p, AddWatchMode::Persistent).await }).await?;
        let p = path.to_string();
        // On NoNode the watcher is dropped here, which removes it.
        let (data, stat) = self.session.call_async(path, |c| async move { c.get_data(&p).await }).await?;
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
        Ok((node_view(data, stat), task.abort_handle()))
    }

    async fn ensure_children(&self, path: &str) -> Result<()> {
        self.ensure(path).await?;
        let _fetch = self.fetch.lock().await;
        match self.tree().nodes.get(path) {
            Some(n) if n.children.is_some() => return Ok(()),
            Some(_) => {}
            None => return Err(Error::NotFound(path.to_string())),
        }
        let listed = self.list(path).await?;
        if let Some(n) = self.tree().nodes.get_mut(path) {
            n.children = Some(listed);
        }
        Ok(())
    }

    /// Lists the children of `path` with their kinds, in one pipelined round trip.
    async fn list(&self, path: &str) -> Result<BTreeMap<String, Kind>> {
        let p = path.to_string();
        let names = self.session.call_async(path, |c| async move { c.list_children(&p).await }).await?;
        self.kinds(path, names, None).await
    }

    /// Looks up the kinds of `names` under `parent`; `known` kinds are reused.
    async fn kinds(
        &self,
        parent: &str,
        names: Vec<String>,
        known: Option<&BTreeMap<String, Kind>>,
    ) -> Result<BTreeMap<String, Kind>> {
        let client = self.session.client()?;
        let mut out = BTreeMap::new();
        let mut pending = Vec::new();
        for name in names {
            match known.and_then(|k| k.get(&name)) {
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

    /// ZooKeeper accepted new data for `path`.
    pub fn local_data(&self, path: &str, data: Vec<u8>, stat: Stat) {
        let mut tree = self.tree();
        if let Some(n) = tree.nodes.get_mut(path) {
            if stat.mzxid > n.view.stat.mzxid {
                n.view = node_view(data, stat);
            }
        }
    }

    /// ZooKeeper created `path` for this mount.
    pub fn local_created(&self, path: &str, kind: Kind) {
        let Some((parent, name)) = split_path(path) else { return };
        if let Some(children) = self.tree().nodes.get_mut(parent).and_then(|n| n.children.as_mut()) {
            children.insert(name.to_string(), kind);
        }
    }

    /// ZooKeeper deleted `path` for this mount. The kernel already knows.
    pub fn local_removed(&self, path: &str) {
        self.forget(path);
    }

    /// Drops `path` and its subtree from the cache; returns the dropped inodes.
    fn forget(&self, path: &str) -> Vec<(u64, Inode)> {
        let mut tree = self.tree();
        let prefix = format!("{path}/");
        let gone: Vec<String> = tree.nodes.keys().filter(|p| *p == path || p.starts_with(&prefix)).cloned().collect();
        for p in gone {
            if let Some(Node { watch: Some(w), .. }) = tree.nodes.remove(&p) {
                w.abort();
            }
        }
        if let Some((parent, name)) = split_path(path) {
            if let Some(children) = tree.nodes.get_mut(parent).and_then(|n| n.children.as_mut()) {
                children.remove(name);
            }
        }
        tree.inodes.remove_subtree(path)
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
        let mut seen = Vec::new();
        for e in batch {
            let key = (e.path.clone(), e.event_type);
            if !seen.contains(&key) {
                seen.push(key);
            }
        }
        let _fetch = self.fetch.lock().await;
        for (path, kind) in seen {
            debug!("watch event {kind:?} {path}");
            let result = match kind {
                EventType::NodeDataChanged | EventType::NodeCreated => self.refresh_data(&path).await,
                EventType::NodeChildrenChanged => self.refresh_children(&path).await,
                EventType::NodeDeleted => {
                    self.removed(&path);
                    Ok(())
                }
                EventType::Session => Ok(()),
            };
            if let Err(e) = result {
                warn!("cannot refresh {path} after a change: {e}");
            }
        }
    }

    /// Re-reads the data of a cached node. Caller holds `fetch`.
    async fn refresh_data(&self, path: &str) -> Result<()> {
        if !self.tree().nodes.contains_key(path) {
            return Ok(());
        }
        let p = path.to_string();
        match self.session.call_async(path, |c| async move { c.get_data(&p).await }).await {
            Ok((data, stat)) => {
                let ino = {
                    let mut tree = self.tree();
                    let Some(n) = tree.nodes.get_mut(path) else { return Ok(()) };
                    if stat.mzxid == n.view.stat.mzxid && stat.czxid == n.view.stat.czxid {
                        return Ok(());
                    }
                    n.view = node_view(data, stat);
                    let kind = n.view.kind.data_inode();
                    tree.inodes.existing(path, kind)
                };
                if let Some(ino) = ino {
                    self.note(KernelNote::InvalInode { ino });
                }
                Ok(())
            }
            Err(Error::NotFound(_)) => {
                self.removed(path);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Re-lists the children of a cached node. Caller holds `fetch`.
    async fn refresh_children(&self, path: &str) -> Result<()> {
        let old = match self.tree().nodes.get(path) {
            Some(Node { children: Some(c), .. }) => c.clone(),
            _ => return Ok(()),
        };
        let p = path.to_string();
        let names = match self.session.call_async(path, |c| async move { c.list_children(&p).await }).await {
            Ok(names) => names,
            Err(Error::NotFound(_)) => {
                self.removed(path);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let new = self.kinds(path, names, Some(&old)).await?;
        let added: Vec<String> = new.keys().filter(|n| !old.contains_key(*n)).cloned().collect();
        let gone: Vec<String> = old.keys().filter(|n| !new.contains_key(*n)).cloned().collect();
        let dir_ino = {
            let mut tree = self.tree();
            match tree.nodes.get_mut(path) {
                Some(n) => n.children = Some(new),
                None => return Ok(()),
            }
            tree.inodes.existing(path, InodeKind::Dir)
        };
        for name in gone {
            self.removed(&child_path(path, &name));
        }
        if let Some(parent) = dir_ino {
            for name in added {
                self.note(KernelNote::InvalEntry { parent, name });
            }
            self.note(KernelNote::InvalInode { ino: parent });
        }
        Ok(())
    }

    /// A node went away (seen by a watch): drop it and tell the kernel.
    fn removed(&self, path: &str) {
        let parent_ino = split_path(path).and_then(|(parent, _)| self.tree().inodes.existing(parent, InodeKind::Dir));
        self.forget(path);
        self.session.forget_registration(path);
        if let (Some(parent), Some((_, name))) = (parent_ino, split_path(path)) {
            self.note(KernelNote::InvalEntry { parent, name: name.to_string() });
            self.note(KernelNote::InvalInode { ino: parent });
        }
    }

    /// Re-arms every watch and re-reads every cached node, parents first.
    async fn resync(&self) {
        let _fetch = self.fetch.lock().await;
        let mut paths: Vec<String> = self.tree().nodes.keys().cloned().collect();
        paths.sort_by_key(|p| (p.matches('/').count(), p.clone()));
        for path in paths {
            if !self.tree().nodes.contains_key(&path) {
                continue; // went with its parent
            }
            match self.load(&path).await {
                Ok((view, watch)) => {
                    let (changed, ino) = {
                        let mut tree = self.tree();
                        let Some(n) = tree.nodes.get_mut(&path) else {
                            watch.abort();
                            continue;
                        };
                        if let Some(old) = n.watch.replace(watch) {
                            old.abort();
                        }
                        let changed = view.stat.mzxid != n.view.stat.mzxid || view.stat.czxid != n.view.stat.czxid;
                        let kind = view.kind.data_inode();
                        n.view = view;
                        (changed, tree.inodes.existing(&path, kind))
                    };
                    if let (true, Some(ino)) = (changed, ino) {
                        self.note(KernelNote::InvalInode { ino });
                    }
                }
                Err(Error::NotFound(_)) => {
                    self.removed(&path);
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
