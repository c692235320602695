//! The view's event task: applies ZooKeeper's watch events and session events to
//! the cache and queues what the kernel must be told (see `view.rs` for the design).
//! It is the only writer of changes heard from ZooKeeper, so they apply in order.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::zookeeper::{EventType, WatchedEvent};
use log::{debug, warn};
use tokio::sync::mpsc;

use crate::data::names::PROPERTIES;
use crate::error::{Error, Result};
use crate::model::flight::Join;
use crate::model::inodes::{child_path, split_path, InodeKind, ROOT_INO};
use crate::model::tree::{data_file, node_view, Child, KernelNote, Kind, Node, NodeView, Presence};
use crate::model::view::{Change, View};
use crate::sync::Recover;
use crate::zookeeper::session::SessionEvent;

impl View {
    /// Starts the task that applies watch events and session events.
    pub fn start(
        self: &Arc<Self>,
        mut changes: mpsc::UnboundedReceiver<Change>,
        mut session_events: mpsc::UnboundedReceiver<SessionEvent>,
    ) -> tokio::task::JoinHandle<()> {
        let view = Arc::clone(self);
        // The sweep of watches no longer wanted, in turn with the other work.
        let me = self.me.clone();
        self.session.runtime().spawn(async move {
            let mut tick = tokio::time::interval(crate::model::watches::SWEEP);
            loop {
                tick.tick().await;
                match me.upgrade() {
                    Some(view) => view.queue(Change::Sweep),
                    None => return,
                }
            }
        });
        self.session.runtime().spawn(async move {
            // A re-read after an outage, put off to its turn (see `resync`).
            // When, and the latest change seen before the outage.
            let mut resync_at: Option<(tokio::time::Instant, i64)> = None;
            loop {
                let due = resync_at.map(|(at, _)| at);
                tokio::select! {
                    Some(change) = changes.recv() => {
                        let mut batch = vec![change];
                        while let Ok(more) = changes.try_recv() {
                            batch.push(more);
                        }
                        view.work(batch).await;
                    }
                    Some(event) = session_events.recv() => {
                        let new_session = event == SessionEvent::NewSession;
                        let since = view.seen();
                        // Every watch went with the old session, or (zookeeper-client
                        // does not restore them) with the connection: set them again
                        // at once, so that changes from now on are heard; what changed
                        // meanwhile is read in the re-read's turn.
                        if new_session {
                            view.rewatch_all();
                        } else {
                            view.rewatch_reconnected();
                        }
                        let window = view.resync_window();
                        let delay = if window.is_zero() {
                            std::time::Duration::ZERO
                        } else {
                            std::time::Duration::from_millis(fastrand::u64(0..=window.as_millis() as u64))
                        };
                        debug!("resynchronising the view after {event:?} in {delay:?}");
                        if delay.is_zero() && resync_at.is_none() {
                            view.resync(since).await;
                            continue;
                        }
                        let at = tokio::time::Instant::now() + delay;
                        resync_at = Some(match resync_at {
                            Some((earlier, seen)) => (earlier.min(at), seen.min(since)),
                            None => (at, since),
                        });
                        view.resync_pending.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if due.is_some() => {
                        let since = resync_at.take().map_or(0, |(_, since)| since);
                        view.resync_pending.store(false, std::sync::atomic::Ordering::SeqCst);
                        view.resync(since).await;
                    }
                    else => return,
                }
            }
        })
    }

    /// Works through a batch in order: runs of watch events are applied together,
    /// the task's own work (re-reads, listings) in its place between them.
    async fn work(&self, batch: Vec<Change>) {
        let mut events = Vec::new();
        for change in batch {
            match change {
                Change::Event(e) => events.push(e),
                other => {
                    if !events.is_empty() {
                        self.apply(std::mem::take(&mut events)).await;
                    }
                    match other {
                        Change::Recheck(path) => self.recheck(&path).await,
                        Change::Relist(path) => {
                            if let Err(e) = self.refresh_children(&path).await {
                                warn!("cannot list {path} again: {e}");
                            }
                        }
                        Change::Adopt(path) => self.adopt(&path).await,
                        Change::Children(path) => {
                            self.relists.locked().remove(&path);
                            // A directory the kernel holds but that was never listed
                            // (read for its `properties.json` before its adoption, say)
                            // is listed now, its children echoed as created.
                            let unlisted = {
                                let mut tree = self.tree();
                                tree.lists.mark(&path);
                                tree.nodes
                                    .get(path.as_str())
                                    .is_some_and(|n| n.children.is_none() && n.view.kind == Kind::Dir)
                                    && tree.kernel_holds(&path)
                            };
                            if unlisted {
                                self.adopt(&path).await;
                            } else if let Err(e) = self.refresh_children(&path).await {
                                warn!("cannot list {path} again: {e}");
                            }
                        }
                        Change::Reload(path) => {
                            self.recheck(&path).await;
                            if let Err(e) = self.refresh_children(&path).await {
                                warn!("cannot list {path} again: {e}");
                            }
                        }
                        Change::Verify(parent, names) => self.verify(&parent, &names).await,
                        Change::Sweep => self.sweep().await,
                        Change::Upgrade(dir) => self.upgrade(&dir).await,
                        Change::Event(_) => {}
                    }
                }
            }
        }
        if !events.is_empty() {
            self.apply(events).await;
        }
    }

    async fn apply(&self, batch: Vec<WatchedEvent>) {
        // Only the latest data matters: repeated data changes of a node are read once.
        let mut events: Vec<(String, EventType)> = Vec::with_capacity(batch.len());
        // A node's creation is heard as its directory's `NodeChildrenChanged`; a watch
        // on the node itself (still set after its deletion) also reports it, which
        // matters when it follows the deletion in one batch (`rmdir a; mkdir a`).
        for e in batch {
            let repeat = e.event_type == EventType::NodeDataChanged
                && events.iter().any(|(p, t)| *p == e.path && *t == EventType::NodeDataChanged);
            if !repeat {
                events.push((e.path, e.event_type));
            }
        }
        {
            // Reads and listings in flight may not show these changes (see flight.rs).
            let mut tree = self.tree();
            for (path, kind) in &events {
                tree.reads.mark(path);
                if matches!(kind, EventType::NodeCreated | EventType::NodeDeleted) {
                    if let Some((parent, _)) = split_path(path) {
                        tree.lists.mark(parent);
                    }
                }
            }
        }
        let Ok(client) = self.session.client() else { return };
        // First pass: send every read the batch needs at once (zookeeper-client sends a
        // request when its future is created), and echo data changes right away.
        let mut stats = VecDeque::new();
        let mut reads = VecDeque::new();
        let mut held = VecDeque::new();
        // Nodes an earlier event of this batch deletes: known now, gone by the time a
        // later creation of the same name is applied (`rmdir a; mkdir a` faster than
        // this task), so that creation must be read like any other.
        let mut deleted = HashSet::new();
        // The deletions this mount made: the name may be made again already (see
        // `Tree::removed_here`), so whether it exists now is asked before it is dropped.
        let mut own_removals = VecDeque::new();
        for (i, (path, kind)) in events.iter().enumerate() {
            match kind {
                EventType::NodeDeleted => {
                    deleted.insert(path.as_str());
                    if self.own_removal(path) {
                        own_removals.push_back((i, client.check_stat(path)));
                    }
                }
                EventType::NodeCreated
                    if (deleted.contains(path.as_str()) || self.awaits_child(path)) && !self.created_locally(path) =>
                {
                    stats.push_back((i, client.check_stat(path)))
                }
                EventType::NodeDataChanged => match self.data_changing(path) {
                    Some(echoed) => reads.push_back((i, Some(echoed), client.get_data(path))),
                    // Never read here, but the kernel may know its file: read, then echo.
                    None if self.kernel_knows(path) => reads.push_back((i, None, client.get_data(path))),
                    // A registration of this mount changed by another client: its data
                    // is what an expiry must re-create (see `Session`).
                    None if self.session.holds(path) => held.push_back((i, client.get_data(path))),
                    None => {}
                },
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
                    if held.front().is_some_and(|(j, _)| *j == i) {
                        if let Some((_, read)) = held.pop_front() {
                            if let Ok(Ok((data, stat))) = tokio::time::timeout_at(deadline, read).await {
                                self.session.registration_changed(path, &data, stat.ephemeral_owner);
                            }
                        }
                        continue;
                    }
                    let next = if reads.front().is_some_and(|(j, _, _)| *j == i) { reads.pop_front() } else { None };
                    let Some((_, echoed, read)) = next else {
                        continue;
                    };
                    match tokio::time::timeout_at(deadline, read).await {
                        Ok(Ok((data, stat))) => match echoed {
                            Some(echoed) => self.data_read(path, node_view(data, stat), echoed),
                            None => self.data_heard(path, node_view(data, stat)),
                        },
                        Ok(Err(crate::zookeeper::Error::NoNode)) => self.node_gone(path),
                        Ok(Err(e)) => warn!("cannot re-read {path}: {e}"),
                        Err(_) => warn!("re-reading {path} timed out"),
                    }
                    // Readers waiting for the re-read get the last data known if it failed.
                    self.unstale(path);
                }
                EventType::NodeDeleted => {
                    if own_removals.front().is_some_and(|(j, _)| *j == i) {
                        if let Some((_, stat)) = own_removals.pop_front() {
                            if let Ok(Ok(Some(_))) = tokio::time::timeout_at(deadline, stat).await {
                                // Removed by this mount (and so dropped then), and made
                                // again since: the new node is not this event's.
                                debug!("{path}: the deletion this mount made; the name exists again");
                                continue;
                            }
                        }
                    }
                    self.kind_learnt(path).await;
                    self.node_gone(path)
                }
                // A recursive watch reports children as creations and deletions.
                EventType::NodeChildrenChanged | EventType::Session => {}
            }
        }
    }

    /// Waits for the background multi-read learning kinds in the directory of `path`
    /// (see [`View::learn_kinds`]), or a lookup's batch, if `path` is listed without
    /// its kind and one is out (sent: one waiting for its turn is not waited for),
    /// until it is stored, so that its removal can be
    /// echoed: ZooKeeper answered that read before this event if it read the child
    /// before the removal, and only the task storing the answer may be behind. If it
    /// found the child gone (the removal reached ZooKeeper first), its kind cannot be
    /// read any more: the removal only invalidates the kernel's entry, which the
    /// kernel never had (see the README, "Every change is heard").
    async fn kind_learnt(&self, path: &str) {
        let Some((parent, name)) = split_path(path) else { return };
        let deadline = tokio::time::Instant::now() + self.session.timeout();
        // Subscribed before looking, so that a batch stored in between still wakes.
        let mut settled = self.settled();
        loop {
            {
                let tree = self.tree();
                let unknown = tree.nodes.get(parent).is_some_and(|n| n.unknown.contains(name));
                if !unknown || !(tree.kinds_out.contains(parent) || tree.eager.contains_key(parent)) {
                    return;
                }
            }
            if !matches!(tokio::time::timeout_at(deadline, settled.changed()).await, Ok(Ok(()))) {
                debug!("the kind of {path} is not known: its removal gives no event");
                return;
            }
        }
    }

    /// True if `path` is a child this view lists but does not know yet.
    fn awaits_child(&self, path: &str) -> bool {
        let Some((parent, name)) = split_path(path) else { return false };
        let tree = self.tree();
        let Some(node) = tree.nodes.get(parent) else { return false };
        let Some(children) = node.children.as_ref() else { return false };
        // A name listed before its kind was learnt is no news.
        !node.unknown.contains(name)
            && !matches!(children.get(name), Some(Child { presence: Presence::Present | Presence::PendingCreate, .. }))
    }

    /// True if `path` has a change through this mount in flight: its creation needs
    /// no read, as the mount's own create (whose reply follows this event) shows the
    /// child; the change's end checks that it did (see `LocalChange`).
    /// True (once per deletion) if `path`'s deletion was made by this mount.
    fn own_removal(&self, path: &str) -> bool {
        let mut tree = self.tree();
        let Some(n) = tree.removed_here.get_mut(path) else { return false };
        *n -= 1;
        if *n == 0 {
            tree.removed_here.remove(path);
        }
        true
    }

    fn created_locally(&self, path: &str) -> bool {
        let mut tree = self.tree();
        let local = tree.is_local(path);
        if local {
            tree.heard_local.insert(path.to_string());
        }
        local
    }

    /// A child appeared in a listed directory. A directory echoed as created is
    /// adopted: the kernel will know it, so its children must be heard.
    fn child_created(&self, path: &str, kind: Kind) {
        let Some((parent, name)) = split_path(path) else { return };
        let mut notes = Vec::new();
        self.tree().child_added(parent, name, kind, &mut notes);
        let echoed = !notes.is_empty();
        self.send(notes);
        if echoed && kind == Kind::Dir {
            self.queue(Change::Adopt(path.to_string()));
        }
    }

    /// True if the kernel may know the file showing the data of `path`, not cached: a
    /// registration shown in a directory the kernel knows. (A directory the kernel has
    /// an inode for is cached: its lookup, or its adoption, read it. One only seen in a
    /// listing has no inode in the kernel, so nobody can watch its `properties.json`.)
    fn kernel_knows(&self, path: &str) -> bool {
        let tree = self.tree();
        let listed_as = split_path(path)
            .and_then(|(parent, name)| tree.nodes.get(parent)?.children.as_ref()?.get(name))
            .map(|c| c.kind);
        listed_as == Some(Kind::Registration) && tree.shown_in_known_dir(path)
    }

    /// The data of a node not cached changed, and the kernel may know its file: it is
    /// cached now, and the change echoed.
    fn data_heard(&self, path: &str, view: NodeView) {
        self.session.registration_changed(path, &view.data, view.stat.ephemeral_owner);
        let mut notes = Vec::new();
        {
            let mut tree = self.tree();
            if tree.nodes.contains_key(path) {
                drop(tree);
                return self.data_read(path, view, false);
            }
            let kind = view.kind;
            let local = tree.is_local(path);
            tree.cache(path, Node { changed: Some(Instant::now()), ..Node::new(view) });
            if !local {
                if let Some(ino) = tree.echo_ino(path, kind) {
                    notes.push(KernelNote::Change { ino, file: data_file(path, kind) });
                }
            }
        }
        self.send(notes);
    }

    /// A stale node whose re-read failed: readers get the last data known.
    fn unstale(&self, path: &str) {
        if let Some(n) = self.tree().nodes.get_mut(path) {
            n.stale = false;
        }
        self.settle();
    }

    /// Reads `path` again (a change was heard while it was being read).
    async fn recheck(&self, path: &str) {
        if !self.tree().nodes.contains_key(path) {
            return;
        }
        match self.read(path).await {
            Ok(view) => self.data_read(path, view, false),
            Err(Error::NotFound(_)) => self.node_gone(path),
            Err(e) => warn!("cannot re-read {path}: {e}"),
        }
    }

    /// Reads again children of `parent` kept from a read sent before their watches
    /// (see `View::keep_read`): a change in between is applied and echoed.
    async fn verify(&self, parent: &str, names: &[String]) {
        let Ok(client) = self.session.client() else { return };
        let paths: Vec<String> = names.iter().map(|n| child_path(parent, n)).collect();
        let pending: Vec<_> = paths.chunks(100).map(|c| (c.to_vec(), client.get_data_many(c))).collect();
        let deadline = tokio::time::Instant::now() + self.session.timeout();
        for (chunk, fut) in pending {
            let Ok(Ok(results)) = tokio::time::timeout_at(deadline, fut).await else { return };
            for (path, result) in chunk.iter().zip(results) {
                match result {
                    Ok((data, stat)) => self.data_read(path, node_view(data, stat), false),
                    Err(crate::zookeeper::Error::NoNode) => self.node_gone(path),
                    Err(_) => {}
                }
            }
        }
    }

    /// Lists a directory the kernel now knows, unless it is listed (or being listed).
    /// Children made since the directory itself are echoed as created, if the kernel
    /// knows the directory by now.
    async fn adopt(&self, path: &str) {
        let tx = {
            let mut tree = self.tree();
            if tree.nodes.get(path).is_some_and(|n| n.children.is_some()) || tree.lists.flying(path) {
                return;
            }
            match tree.lists.join(path) {
                Join::Lead(tx) => tx,
                Join::Follow(_) => return,
            }
        };
        let outcome = self.adopt_listing(path).await;
        if let Err(e) = &outcome {
            debug!("cannot list the new directory {path}: {e}");
        }
        self.tree().lists.finish(path);
        tx.send_replace(Some(outcome));
    }

    async fn adopt_listing(&self, path: &str) -> Result<()> {
        let cached = self.tree().nodes.get(path).map(|n| n.view.stat.czxid);
        let since = match cached {
            Some(czxid) => czxid,
            None => {
                let view = self.read(path).await?;
                let czxid = view.stat.czxid;
                self.tree().cache(path, Node::new(view));
                czxid
            }
        };
        let p = path.to_string();
        let names = self.session.call_async(path, |c| async move { c.list_children(&p).await }).await?;
        let client = self.session.client()?;
        let pending: Vec<_> = names.into_iter().map(|n| (client.check_stat(&child_path(path, &n)), n)).collect();
        let deadline = tokio::time::Instant::now() + self.session.timeout();
        let mut listed = Vec::new();
        for (fut, name) in pending {
            match tokio::time::timeout_at(deadline, fut).await {
                Ok(Ok(Some(stat))) => listed.push((name, Kind::of(&stat), stat.czxid)),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(crate::zookeeper::error_at(e, &child_path(path, &name))),
                Err(_) => return Err(Error::Unavailable(format!("{path}: listing timed out"))),
            }
        }
        let mut notes = Vec::new();
        let registrations: Vec<String> =
            listed.iter().filter(|(_, k, _)| *k == Kind::Registration).map(|(n, _, _)| n.clone()).collect();
        {
            let mut tree = self.tree();
            let Some(node) = tree.nodes.get_mut(path) else { return Ok(()) };
            if node.children.is_some() {
                return Ok(());
            }
            node.children = Some(Box::default());
            for (name, kind, czxid) in listed {
                if czxid > since {
                    tree.child_added(path, &name, kind, &mut notes);
                } else if let Some(children) = tree.children_mut(path) {
                    children.insert(name, Child { kind, presence: Presence::Present });
                }
            }
        }
        self.watch_registrations(path, registrations.iter().map(String::as_str));
        let dirs: Vec<String> = notes
            .iter()
            .filter_map(|n| match n {
                KernelNote::Create { path, kind: Kind::Dir, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        self.send(notes);
        for dir in dirs {
            self.queue(Change::Adopt(dir));
        }
        Ok(())
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
            n.changed = Some(Instant::now());
            let kind = n.view.kind;
            if let Some(ino) = tree.echo_ino(path, kind) {
                notes.push(KernelNote::Change { ino, file: data_file(path, kind) });
            }
        }
        self.send(notes);
        Some(true)
    }

    /// Applies data read from ZooKeeper to the cached node; `echoed`: its change was
    /// already echoed (see [`View::data_changing`]). Called by the event task only.
    fn data_read(&self, path: &str, view: NodeView, echoed: bool) {
        // A registration of this mount is re-created after an expiry with its latest data.
        self.session.registration_changed(path, &view.data, view.stat.ephemeral_owner);
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
                drop(tree);
                self.settle();
                return;
            }
            let kind = view.kind;
            let (old_data, new_data) = (Arc::clone(&n.view.data), Arc::clone(&view.data));
            n.view = view;
            n.changed = Some(Instant::now());
            if local {
                drop(tree);
                self.settle();
                return; // the writer's own syscalls are its watchers' events
            }
            let data_ino =
                if echoed { tree.inodes.existing(path, kind.data_inode()) } else { tree.echo_ino(path, kind) };
            if let Some(ino) = data_ino {
                notes.push(if echoed {
                    KernelNote::InvalInode { ino }
                } else {
                    KernelNote::Change { ino, file: data_file(path, kind) }
                });
            }
            if let Some(ino) = tree.inodes.existing(path, InodeKind::Dir).filter(|_| kind == Kind::Dir) {
                notes.push(KernelNote::InvalInode { ino });
                notes.extend(crate::model::links::changed_elsewhere(&mut tree, path, ino, &old_data, &new_data));
            }
        }
        self.settle();
        self.send(notes);
    }

    /// Re-lists the children of a cached node (after a reconnect, or a change heard
    /// while it was being listed). Called by the event task only.
    async fn refresh_children(&self, path: &str) -> Result<()> {
        if self.tree().nodes.get(path).is_none_or(|n| n.children.is_none()) {
            return Ok(());
        }
        // Changes through this mount from now on may land before or after the listing:
        // their names are left to them (and listed again), not taken from it.
        self.tree().touched.clear();
        let names = match self.list_names(path).await {
            Ok(names) => names,
            Err(Error::NotFound(_)) => {
                self.node_gone(path);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // A child listed without its kind and gone now: its removal is echoed if the
        // batch learning its kind is out (see `kind_learnt`).
        let vanished: Vec<String> = {
            let tree = self.tree();
            let listed: BTreeSet<&String> = names.iter().collect();
            tree.nodes
                .get(path)
                .map(|n| n.unknown.iter().filter(|u| !listed.contains(u)).map(|u| child_path(path, u)).collect())
                .unwrap_or_default()
        };
        for child in &vanished {
            self.kind_learnt(child).await;
        }
        let (known, unknown): (BTreeMap<String, Kind>, BTreeSet<String>) =
            match self.tree().nodes.get(path).map(|n| &**n) {
                Some(Node { children: Some(c), unknown, .. }) => {
                    (c.iter().map(|(n, c)| (n.clone(), c.kind)).collect(), unknown.clone())
                }
                _ => return Ok(()),
            };
        let mut notes = Vec::new();
        let mut skipped = false;
        let mut registrations = Vec::new();
        // Names never shown stay unlearnt; new ones need their kind for their echo.
        let (unlearnt, names): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| unknown.contains(n));
        let unlearnt: BTreeSet<String> = unlearnt.into_iter().collect();
        let listed = self.kinds(path, names, &known).await?;
        {
            // Compared with the children as they are now, not as they were before the
            // round trip: a change through this mount may have landed meanwhile.
            let mut tree = self.tree();
            let mut dropped_shown = false;
            if let Some(node) = tree.nodes.get_mut(path) {
                let before = node.unknown.len();
                node.unknown.retain(|n| unlearnt.contains(n));
                dropped_shown = node.names_shown && node.unknown.len() != before;
            }
            // Names a `readdir` showed without their kinds, gone: the kernel's cached
            // listing must forget them.
            if let Some(ino) = tree.inodes.existing(path, InodeKind::Dir).filter(|_| dropped_shown) {
                notes.push(KernelNote::InvalInode { ino });
            }
            // Names changed through this mount meanwhile are theirs (see above).
            let mine: BTreeSet<String> = listed
                .keys()
                .chain(tree.nodes.get(path).and_then(|n| n.children.as_ref()).into_iter().flat_map(|c| c.keys()))
                .filter(|n| {
                    let p = child_path(path, n);
                    tree.is_local(&p) || tree.touched.contains(&p)
                })
                .cloned()
                .collect();
            for n in &mine {
                let p = child_path(path, n);
                if tree.is_local(&p) {
                    tree.heard_local.insert(p);
                }
                skipped = true;
            }
            let Some(current) = tree.nodes.get(path).and_then(|n| n.children.as_ref()) else { return Ok(()) };
            let gone: Vec<String> = current
                .iter()
                .filter(|(n, c)| {
                    !mine.contains(*n)
                        && !listed.contains_key(*n)
                        && !unlearnt.contains(*n) // its kind was learnt meanwhile
                        && !matches!(c.presence, Presence::PendingRemove { recreate: None })
                })
                .map(|(n, _)| n.clone())
                .collect();
            let added: Vec<(String, Kind)> = listed
                .iter()
                .filter(|(n, _)| {
                    !mine.contains(*n)
                        && !matches!(
                            current.get(*n),
                            Some(Child { presence: Presence::Present | Presence::PendingCreate, .. })
                        )
                        && !matches!(
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
                if kind == Kind::Registration {
                    registrations.push(name.clone());
                }
                tree.child_added(path, &name, kind, &mut notes);
            }
        }
        self.watch_registrations(path, registrations.iter().map(String::as_str));
        self.send(notes);
        if skipped {
            self.queue(Change::Relist(path.to_string()));
        }
        // Names still unlearnt (a batch failed, say) are learnt now.
        self.learn_kinds(path);
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
                // A name a `readdir` showed without its kind is in the kernel's cached
                // listing of its directory, which must forget it.
                let in_listing = tree.nodes.get(parent).is_some_and(|n| n.names_shown && n.unknown.contains(name));
                tree.forget(path, &mut notes);
                if let Some(parent) = parent_ino {
                    notes.push(KernelNote::InvalEntry { parent, name: name.to_string() });
                    if in_listing {
                        notes.push(KernelNote::InvalInode { ino: parent });
                    }
                }
            }
        }
        self.session.registration_gone(path);
        self.settle();
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
            for ino in tree.inodes.remove_subtree("/") {
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

    /// Reads again the nodes the view holds (cached: those the kernel holds, and the
    /// registrations their listings show), parents first: changes made while the
    /// connection was down may have given no event. Their watches are set already
    /// (kept by the client across a reconnect, set again after a new session).
    /// `since`: the latest change the mount saw before the outage.
    async fn resync(&self, since: i64) {
        self.watch("/");
        let mut paths: Vec<Arc<str>> = self.tree().nodes.keys().cloned().collect();
        paths.sort_by_key(|p| (p.matches('/').count(), Arc::clone(p)));
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
        // Registrations shown in a cached directory and never read: their data changes
        // are promised too (see the README, "Every change is heard"), so each changed
        // since the last change the mount saw is read and echoed (a multi-read per 100).
        let shown: Vec<String> = {
            let tree = self.tree();
            tree.nodes
                .iter()
                .filter_map(|(p, n)| Some((p, n.children.as_ref()?)))
                .flat_map(|(p, c)| {
                    c.iter()
                        .filter(|(_, c)| c.kind == Kind::Registration && c.presence == Presence::Present)
                        .map(|(name, _)| child_path(p, name))
                        .collect::<Vec<_>>()
                })
                .filter(|p| !tree.nodes.contains_key(p.as_str()))
                .collect()
        };
        if let Ok(client) = self.session.client() {
            let pending: Vec<_> = shown.chunks(100).map(|c| (c.to_vec(), client.get_data_many(c))).collect();
            let deadline = tokio::time::Instant::now() + self.session.timeout();
            for (chunk, fut) in pending {
                let Ok(Ok(results)) = tokio::time::timeout_at(deadline, fut).await else { break };
                for (path, result) in chunk.iter().zip(results) {
                    if let Ok((data, stat)) = result {
                        if stat.mzxid > since {
                            self.data_heard(path, node_view(data, stat));
                        }
                    }
                }
            }
        }
        debug!("view resynchronised");
    }
}
