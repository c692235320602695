//! The view's ZooKeeper watches: one persistent (non-recursive) watch per node the
//! kernel holds, and no other (see the README, "The live view", and docs/fleet.md).
//!
//! A node is watched from before its first read ([`View::watch`], called by
//! `View::read`: the watch's request goes out before the read's, so ZooKeeper reports
//! every change the read does not show) for as long as it is *wanted*:
//!
//! * the kernel holds an inode of it (its directory, its `properties.json`, or its
//!   registration file): every entry handed to the kernel counts one lookup, every
//!   FORGET subtracts them ([`View::looked_up`], [`View::forgotten`]);
//! * it is a registration shown in a cached directory: its data change must give
//!   `IN_MODIFY` to the watchers of that directory, read or not;
//! * it is a registration this mount holds (re-created with its latest data after an
//!   expiry);
//! * it is the mount's root, which the kernel never forgets;
//! * it was read less than [`GRACE`] ago: the lookup that read it has not yet handed
//!   the entry to the kernel.
//!
//! A directory's watch gives its data changes, its deletion and `NodeChildrenChanged`,
//! on which the event task lists it again and compares (`watch.rs`); a registration's,
//! its data changes and deletion. A node no longer wanted is swept every [`SWEEP`]:
//! its watch removed and the node dropped from the cache (what is not watched is not
//! trusted; the next lookup reads it afresh).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use tokio::task::JoinHandle;

use crate::model::inodes::{split_path, InodeKind};
use crate::model::tree::{Kind, Tree};
use crate::model::view::{Change, View};
use crate::model::watchset::Entry;
use crate::sync::Recover;
use crate::zookeeper::EventType;

/// How long a node read stays watched without the kernel holding it: the lookup that
/// read it hands the entry to the kernel well within this.
pub const GRACE: Duration = Duration::from_secs(2);

/// How often watches no longer wanted are removed.
pub const SWEEP: Duration = Duration::from_secs(1);

impl Tree {
    /// True if the kernel holds an inode of the node at `path`.
    pub(crate) fn kernel_holds(&self, path: &str) -> bool {
        [InodeKind::Dir, InodeKind::Registration, InodeKind::Properties]
            .into_iter()
            .filter_map(|k| self.inodes.existing(path, k))
            .any(|ino| self.held.get(&ino).is_some_and(|n| *n > 0))
    }
}

impl View {
    /// Watches `path` unless it is watched; the watch's request is out when this
    /// returns. True if it was not watched (nor being removed).
    pub(crate) fn watch(&self, path: &str) -> bool {
        // A registration shown in a directory with a recursive watch is covered by it,
        // unless this mount holds it (its deletion must reach `node_gone`).
        let registration = split_path(path).is_some_and(|(parent, name)| {
            let tree = self.tree();
            tree.nodes
                .get(parent)
                .and_then(|n| n.children.as_ref()?.get(name))
                .is_some_and(|c| c.kind == Kind::Registration)
        });
        {
            let mut w = self.watches.locked();
            // A directory watched recursively is covered by that watch.
            if let Some(e) = w.map.get_mut(&recursive_key(path)).filter(|e| !e.removing) {
                e.since = Instant::now();
                return false;
            }
            if registration && !self.session.holds(path) {
                let parent = split_path(path).map_or("/", |(p, _)| p);
                if let Some(read) = w.upgrading.get_mut(parent) {
                    read.push(path.to_string());
                    return false;
                }
                if w.map.get(&recursive_key(parent)).is_some_and(|e| !e.removing) {
                    return false;
                }
            }
        }
        self.watch_key(path)
    }

    /// Watches `key` (a path, or [`recursive_key`] of one) unless it is watched.
    fn watch_key(&self, key: &str) -> bool {
        let mut w = self.watches.locked();
        if let Some(e) = w.map.get_mut(key) {
            e.since = Instant::now();
            if e.removing {
                e.again = true;
            }
            return false;
        }
        let Ok(client) = self.session.client() else { return false };
        w.next += 1;
        let id = w.next;
        let (path, recursive) = unkey(key);
        let reply = client.watch_node(path, recursive);
        let task = self.session.runtime().spawn(self.forward(key.to_string(), id, reply));
        w.map.insert(
            key.to_string(),
            Entry { id, task: Some(task), since: Instant::now(), removing: false, again: false },
        );
        true
    }

    /// Forwards the events of one node's watch to the event task, once set.
    fn forward(
        &self,
        key: String,
        id: u64,
        reply: crate::zookeeper::Reply<crate::zookeeper::TreeWatcher>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let me = self.me.clone();
        let forwarding = self.forwarding(&key);
        async move {
            let watcher = match reply.await {
                Ok(w) => w,
                Err(e) => {
                    debug!("cannot watch {key}: {e}");
                    if let Some(view) = me.upgrade() {
                        let mut w = view.watches.locked();
                        if w.map.get(&key).is_some_and(|e| e.id == id && !e.removing) {
                            w.map.remove(&key);
                        }
                    }
                    return;
                }
            };
            forwarding(watcher).await
        }
    }

    /// What forwards the events of the watcher of `key` to the event task. A recursive
    /// watch on a directory of registrations forwards only the data changes of its
    /// children that have no watch of their own: the directory's own watch reports
    /// the rest.
    fn forwarding(
        &self,
        key: &str,
    ) -> impl FnOnce(crate::zookeeper::TreeWatcher) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
           + Send
           + 'static {
        let me = self.me.clone();
        let changes = self.changes.clone();
        let events_seen = Arc::clone(&self.events_seen);
        let (dir, recursive) = unkey(key);
        let dir = recursive.then(|| dir.to_string());
        move |mut watcher| {
            Box::pin(async move {
                loop {
                    let event = watcher.changed().await;
                    log::trace!("watch {dir:?}: {:?} {}", event.event_type, event.path);
                    if let Some(dir) = &dir {
                        // The directory and its children (registrations, which have
                        // none); a deeper node is a subdirectory's, not watched here.
                        let child = split_path(&event.path).is_some_and(|(parent, _)| parent == dir);
                        // A child with a watch of its own (a registration of this
                        // mount, a node being made here) hears its data change and
                        // deletion there; its creation is told here too, as its own
                        // watch may have been set after it (a creation told twice is
                        // applied once).
                        let own_kind = matches!(event.event_type, EventType::NodeDataChanged | EventType::NodeDeleted);
                        if child {
                            if own_kind {
                                let Some(view) = me.upgrade() else { return };
                                if view.watches.locked().map.contains_key(&event.path) {
                                    continue;
                                }
                            }
                        } else if event.path != *dir && event.event_type != EventType::Session {
                            continue;
                        }
                    }
                    match event.event_type {
                        EventType::Session => {
                            // zookeeper-client panics if a watcher is polled after a
                            // terminal session event, so stop at the first one.
                            if event.session_state.is_terminated() {
                                return;
                            }
                            continue;
                        }
                        EventType::NodeChildrenChanged => {
                            // Coalesced: one listing answers every change before it.
                            let Some(view) = me.upgrade() else { return };
                            if view.relists.locked().insert(event.path.clone()) {
                                let _ = changes.send(Change::Children(event.path));
                            }
                            continue;
                        }
                        EventType::NodeDataChanged | EventType::NodeDeleted => {
                            events_seen.fetch_add(1, Ordering::SeqCst);
                        }
                        EventType::NodeCreated => {}
                    }
                    if changes.send(Change::Event(event)).is_err() {
                        return;
                    }
                }
            })
        }
    }

    /// Sets every watch again on the session's server after a reconnect:
    /// zookeeper-client 0.11.2 does not restore persistent watches (its `SetWatches`
    /// leaves them out), so without this nothing would be heard. Each new watcher
    /// replaces the old one once the server has set it: the old one dropped then
    /// removes nothing from the server, which still has the new one.
    pub(crate) fn rewatch_reconnected(&self) {
        let Ok(client) = self.session.client() else { return };
        let mut w = self.watches.locked();
        let paths: Vec<String> = w.map.iter().filter(|(_, e)| !e.removing).map(|(p, _)| p.clone()).collect();
        for path in paths {
            w.next += 1;
            let id = w.next;
            let (node, recursive) = unkey(&path);
            let reply = client.watch_node(node, recursive);
            let me = self.me.clone();
            let forwarding = self.forwarding(&path);
            let rt = self.session.runtime().clone();
            self.session.runtime().spawn(async move {
                let Ok(watcher) = reply.await else { return };
                let Some(view) = me.upgrade() else { return };
                let task = rt.spawn(forwarding(watcher));
                let mut w = view.watches.locked();
                match w.map.get_mut(&path).filter(|e| !e.removing) {
                    Some(e) => {
                        e.id = id;
                        if let Some(old) = e.task.replace(task) {
                            old.abort();
                        }
                    }
                    // Swept meanwhile: not wanted.
                    None => task.abort(),
                }
            });
        }
    }

    /// How many nodes the view watches.
    pub fn watch_count(&self) -> usize {
        self.watches.locked().len()
    }

    /// The kernel was handed an entry for `ino` (a lookup, or a node made here). The
    /// first makes sure the node is watched: if a sweep had just removed its watch,
    /// the node is read (and listed) again.
    pub fn looked_up(&self, ino: u64) {
        let path = {
            let mut tree = self.tree();
            let n = tree.held.entry(ino).or_default();
            *n += 1;
            if *n > 1 {
                return;
            }
            match tree.inodes.get(ino) {
                Some(i) if i.kind != InodeKind::Link => i.path,
                _ => return,
            }
        };
        let cached = self.tree().nodes.contains_key(path.as_str());
        if self.watch(&path) && cached {
            self.queue(Change::Reload(path));
        }
    }

    /// The kernel forgot `n` lookups of `ino`. Its node's watch goes with the next
    /// sweep if nothing else wants it.
    pub fn forgotten(&self, ino: u64, n: u64) {
        let mut tree = self.tree();
        if let Some(held) = tree.held.get_mut(&ino) {
            *held = held.saturating_sub(n);
            if *held == 0 {
                tree.held.remove(&ino);
            }
        }
    }

    /// True if `path` is wanted by something other than the directory it is shown in.
    fn wanted_itself(&self, tree: &Tree, path: &str) -> bool {
        path == "/" || tree.kernel_holds(path) || self.session.holds(path)
    }

    /// Removes the watches no longer wanted, and drops their nodes from the cache.
    /// Called by the event task.
    pub(crate) async fn sweep(&self) {
        let now = Instant::now();
        let candidates: Vec<String> = {
            let w = self.watches.locked();
            w.map
                .iter()
                .filter(|(_, e)| !e.removing && now.duration_since(e.since) >= GRACE)
                .map(|(p, _)| p.clone())
                .collect()
        };
        if candidates.is_empty() {
            return;
        }
        let gone: Vec<String> = {
            let mut tree = self.tree();
            let w = self.watches.locked();
            // The paths whose own watch (plain or recursive) is no longer wanted.
            let unwanted: HashSet<&str> =
                candidates.iter().map(|k| unkey(k).0).filter(|p| !self.wanted_itself(&tree, p)).collect();
            let covered = |p: &str| {
                !self.session.holds(p)
                    && split_path(p).is_some_and(|(parent, _)| w.map.contains_key(&recursive_key(parent)))
            };
            let gone: Vec<String> = candidates
                .iter()
                .filter(|key| {
                    let (p, recursive) = unkey(key);
                    let registration = split_path(p).and_then(|(parent, name)| {
                        tree.nodes.get(parent)?.children.as_ref()?.get(name).map(|c| (parent, c.kind))
                    });
                    match registration {
                        // A registration shown in a cached directory that stays: wanted,
                        // unless that directory's recursive watch covers it.
                        Some((parent, Kind::Registration)) if !recursive => {
                            covered(p)
                                || (unwanted.contains(p) && unwanted.contains(parent))
                                || (unwanted.contains(p) && !tree.nodes.contains_key(parent))
                        }
                        _ => unwanted.contains(p),
                    }
                })
                .cloned()
                .collect();
            drop(w);
            // Gone from the cache under the same lock: a read from now on is a new one.
            for key in &gone {
                let (p, _) = unkey(key);
                if unwanted.contains(p) {
                    tree.nodes.remove(p);
                }
            }
            gone
        };
        let mut tasks = Vec::new();
        {
            let mut w = self.watches.locked();
            for p in &gone {
                if let Some(e) = w.map.get_mut(p) {
                    e.removing = true;
                    tasks.extend(e.task.take());
                }
            }
        }
        // Dropping each watcher sends its removal: done before the map forgets it, so
        // that a watch set again afterwards is requested after the removal.
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        let mut again = Vec::new();
        {
            let mut w = self.watches.locked();
            for p in &gone {
                if w.map.remove(p).is_some_and(|e| e.again) {
                    again.push(p.clone());
                }
            }
        }
        if !gone.is_empty() {
            debug!("{} watches removed, {} left", gone.len(), self.watch_count());
        }
        for p in again {
            if unkey(&p).1 {
                self.watch_key(&p);
            } else {
                self.watch(&p);
                self.queue(Change::Reload(p));
            }
        }
        // Registrations the kernel still holds whose directory's recursive watch went
        // (an inotify watch pins the file, not its directory): watched on their own.
        let uncovered: Vec<String> = {
            let tree = self.tree();
            gone.iter()
                .filter(|k| unkey(k).1)
                .map(|k| unkey(k).0)
                .flat_map(|dir| {
                    let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
                    tree.nodes
                        .keys()
                        .filter(|p| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                        .filter(|p| tree.kernel_holds(p))
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for p in uncovered {
            if self.watch(&p) {
                self.queue(Change::Reload(p));
            }
        }
    }

    /// Watches every node wanted, after a new session (whose watches start empty):
    /// every cached node and the registrations its listing shows.
    pub(crate) fn rewatch_all(&self) {
        let old: Vec<JoinHandle<()>> = {
            let mut w = self.watches.locked();
            w.map.drain().filter_map(|(_, mut e)| e.task.take()).collect()
        };
        for task in old {
            task.abort();
        }
        // Directories first, so that the registrations their recursive watches cover
        // need none of their own.
        let (dirs, registrations): (Vec<(String, Vec<String>)>, Vec<String>) = {
            let tree = self.tree();
            let mut dirs = vec![("/".to_string(), Vec::new())];
            let mut registrations = Vec::new();
            for (p, n) in &tree.nodes {
                if n.view.kind == Kind::Registration {
                    registrations.push(p.to_string());
                    continue;
                }
                let regs = n
                    .children
                    .iter()
                    .flat_map(|c| c.iter())
                    .filter(|(_, c)| c.kind == Kind::Registration)
                    .map(|(name, _)| name.clone())
                    .collect();
                dirs.push((p.to_string(), regs));
            }
            (dirs, registrations)
        };
        for (dir, regs) in dirs {
            self.watch(&dir);
            self.watch_registrations(&dir, regs.iter().map(String::as_str));
        }
        for p in registrations {
            self.watch(&p);
        }
    }

    /// Watches the data of the registrations `names` shown in the cached directory
    /// `parent`: one recursive watch on the directory when it shows no directory (a
    /// registration has no children, so that watch reports nothing else), else a watch
    /// on each.
    pub(crate) fn watch_registrations<'a>(&self, parent: &str, names: impl IntoIterator<Item = &'a str>) {
        let mut names = names.into_iter().peekable();
        if names.peek().is_none() {
            return;
        }
        let has_dirs = {
            let tree = self.tree();
            tree.nodes
                .get(parent)
                .and_then(|n| n.children.as_ref())
                .is_some_and(|c| c.values().any(|c| c.kind == Kind::Dir))
        };
        if !has_dirs {
            let queue = {
                let mut w = self.watches.locked();
                !w.map.contains_key(&recursive_key(parent))
                    && w.upgrading.insert(parent.to_string(), Vec::new()).is_none()
            };
            if queue {
                self.queue(Change::Upgrade(parent.to_string()));
            }
            return;
        }
        for name in names {
            self.watch(&child(parent, name));
        }
    }
}

impl View {
    /// Replaces the watch of the directory `dir`, which shows registrations and no
    /// directory, by one persistent recursive watch: its data changes, its deletion,
    /// its children's creations and deletions and their data changes, in one watch
    /// (ZooKeeper 3.8 keeps one mode per path and session, so the two cannot be set
    /// side by side). The old one is removed first; the directory is read and listed
    /// again after, for what changed in between. Called by the event task.
    pub(crate) async fn upgrade(&self, dir: &str) {
        let has_dirs = {
            let tree = self.tree();
            tree.nodes.get(dir).and_then(|n| n.children.as_ref()).map(|c| c.values().any(|c| c.kind == Kind::Dir))
        };
        let old = {
            let mut w = self.watches.locked();
            if has_dirs != Some(false) || w.map.contains_key(&recursive_key(dir)) {
                w.upgrading.remove(dir);
                None
            } else {
                w.map.get_mut(dir).filter(|e| !e.removing).map(|e| {
                    e.removing = true;
                    e.task.take()
                })
            }
        };
        let Some(old) = old else {
            if has_dirs == Some(true) {
                // A directory appeared meanwhile: a watch on each registration.
                let regs: Vec<String> = {
                    let tree = self.tree();
                    tree.nodes
                        .get(dir)
                        .and_then(|n| n.children.as_ref())
                        .map(|c| {
                            c.iter().filter(|(_, c)| c.kind == Kind::Registration).map(|(n, _)| n.clone()).collect()
                        })
                        .unwrap_or_default()
                };
                for name in regs {
                    self.watch(&child(dir, &name));
                }
            }
            return;
        };
        if let Some(task) = old {
            task.abort();
            let _ = task.await;
        }
        self.watch_key(&recursive_key(dir));
        let read;
        {
            let tree = self.tree();
            let mut w = self.watches.locked();
            w.map.remove(dir);
            read = w.upgrading.remove(dir).unwrap_or_default();
            // Registrations watched on their own are covered by the recursive watch once
            // the server has set it; until then their own watches stay (a change in
            // between would be heard by neither). The sweep removes them, a grace
            // from now (see `sweep`: covered).
            let names: Vec<String> = tree
                .nodes
                .get(dir)
                .and_then(|n| n.children.as_ref())
                .map(|c| c.iter().filter(|(_, c)| c.kind == Kind::Registration).map(|(n, _)| n.clone()).collect())
                .unwrap_or_default();
            let now = Instant::now();
            for p in names.iter().map(|n| child(dir, n)) {
                if let Some(e) = w.map.get_mut(&p) {
                    e.since = now;
                }
            }
        }
        self.queue(Change::Reload(dir.to_string()));
        // Registrations read before the recursive watch was set, with none of their
        // own: read again.
        let names: HashSet<String> = read.iter().filter_map(|p| split_path(p).map(|(_, n)| n.to_string())).collect();
        if !names.is_empty() {
            self.queue(Change::Verify(dir.to_string(), names.into_iter().collect()));
        }
    }
}

/// The key of a recursive watch on `dir` in the table of watches (paths start with
/// `/`, so it is no path).
fn recursive_key(dir: &str) -> String {
    format!("*{dir}")
}

/// The path a key of the table watches, and whether recursively.
fn unkey(key: &str) -> (&str, bool) {
    match key.strip_prefix('*') {
        Some(path) => (path, true),
        None => (key, false),
    }
}

fn child(parent: &str, name: &str) -> String {
    crate::model::inodes::child_path(parent, name)
}
