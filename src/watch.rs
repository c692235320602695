//! The view's event task: applies ZooKeeper's watch events and session events to
//! the cache and queues what the kernel must be told (see `view.rs` for the design).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use log::{debug, warn};
use tokio::sync::mpsc;
use zookeeper_client::{EventType, WatchedEvent};

use crate::error::{Error, Result};
use crate::inodes::{split_path, InodeKind, ROOT_INO};
use crate::names::PROPERTIES;
use crate::session::SessionEvent;
use crate::tree::{data_file, node_view, Child, KernelNote, Kind, Node, NodeView, Presence};
use crate::view::View;

impl View {
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
        let Some((parent, name)) = split_path(path) else { return self.root_gone() };
        let mut notes = Vec::new();
        {
            let mut tree = self.tree();
            let shown = tree.nodes.get(parent).and_then(|n| n.children.as_ref()).is_some_and(|c| c.contains_key(name));
            if shown {
                tree.child_gone(parent, name, &mut notes);
            } else {
                let parent_ino = tree.inodes.existing(parent, InodeKind::Dir);
                tree.forget(path, &mut notes);
                if let Some(parent) = parent_ino {
                    notes.push(KernelNote::InvalEntry { parent, name: name.to_string() });
                }
            }
        }
        self.session.registration_gone(path);
        self.send(notes);
    }

    /// The mount's root — its chroot — was deleted: nothing below it exists any more.
    /// Everything cached is dropped, and the kernel told to forget it, so reads fail
    /// with ENOENT (not the last data, forever) until the node is created again;
    /// `zkfs status` says so (see `Fs::xattrs`). The root's own inode stays: it is the
    /// mountpoint.
    fn root_gone(&self) {
        let mut notes = Vec::new();
        {
            let mut tree = self.tree();
            let listed: Vec<String> = match tree.nodes.get("/").and_then(|n| n.children.as_ref()) {
                Some(children) => children.keys().cloned().collect(),
                None => Vec::new(),
            };
            tree.nodes.clear();
            tree.written.clear();
            for (ino, _) in tree.inodes.remove_subtree("/") {
                notes.push(KernelNote::InvalInode { ino });
            }
            notes.push(KernelNote::InvalInode { ino: ROOT_INO });
            for name in listed.into_iter().chain([PROPERTIES.to_string()]) {
                notes.push(KernelNote::InvalEntry { parent: ROOT_INO, name });
            }
        }
        warn!(
            "the mount's root (the chroot of {}) was deleted in ZooKeeper: reads fail (ENOENT) until it is created again",
            self.session.connect_string()
        );
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
