//! The model behind the view: cached nodes, their children and where each child
//! stands between ZooKeeper and the kernel (see `view.rs` for the design), and the
//! notes the kernel must be given. Plain data and rules, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use crate::zookeeper::Stat;

use crate::data::names::PROPERTIES;
use crate::data::properties;
use crate::model::flight::Flights;
use crate::model::inodes::{child_path, split_path, InodeKind, Inodes};

/// What kind of file a child znode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A persistent znode: a directory.
    Dir,
    /// An ephemeral znode: a read-only registration file.
    Registration,
}

impl Kind {
    pub(crate) fn of(stat: &Stat) -> Kind {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Child {
    /// Directory or registration.
    pub kind: Kind,
    /// Shown, or on its way in or out.
    pub presence: Presence,
}

/// Something the kernel must be told so that its caches stay true and its watchers
/// hear of changes made elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Echo a link that appeared elsewhere (`symlink` of `path`; see `links.rs`).
    LinkCreate {
        /// The directory's inode (for the fallback invalidation).
        parent: u64,
        /// The link's path.
        path: String,
    },
    /// Echo a link that went elsewhere (`unlink` of `path`; see `links.rs`).
    LinkRemove {
        /// The directory's inode (for the fallback invalidation).
        parent: u64,
        /// The link's path.
        path: String,
    },
    /// Echo a link retargeted elsewhere (`unlink`, then `symlink`, of `path`).
    LinkRetarget {
        /// The directory's inode (for the fallback invalidation).
        parent: u64,
        /// The link's path.
        path: String,
    },
    /// Echo data changed elsewhere: open `file` with `O_TRUNC` and close it (which
    /// invalidates the kernel's caches of it); invalidate `ino` if that cannot be done.
    Change {
        /// The inode of the file showing the data.
        ino: u64,
        /// The file's path in the mount (`/a/properties.json`, `/a/host:1`).
        file: String,
    },
}

/// A cached node as the filesystem reads it.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// The znode's stat.
    pub stat: Stat,
    /// The znode's kind.
    pub kind: Kind,
    /// The raw data.
    pub data: Arc<[u8]>,
    /// The length of what `cat` shows. The bytes themselves are made when a file is
    /// opened ([`NodeView::rendered`]) and live as long as it is open: a cached node
    /// costs its data alone, not its data and its rendering. 32 bits: a rendering is
    /// at most a few times ZooKeeper's 1 MB limit on data (`properties::render`).
    size: u32,
}

impl NodeView {
    /// A node of `kind` with `data` and `stat`.
    pub fn new(kind: Kind, data: Vec<u8>, stat: Stat) -> NodeView {
        let size = u32::try_from(properties::render(&data).len()).unwrap_or(u32::MAX);
        NodeView { stat, kind, data: data.into(), size }
    }

    /// The length of what `cat` shows for the node's data.
    pub fn size(&self) -> u64 {
        u64::from(self.size)
    }

    /// What `cat` shows for the node's data: [`NodeView::size`] bytes, rendered from
    /// the same version of the data (a rendering is a function of the data alone), so
    /// a file opened on this view reads one version whatever changes meanwhile.
    pub fn rendered(&self) -> Arc<Vec<u8>> {
        Arc::new(properties::render(&self.data))
    }
}

/// A cached node.
pub(crate) struct Node {
    pub(crate) view: NodeView,
    /// Its children once listed, those whose kind is known (see `unknown`). Boxed:
    /// most cached nodes are leaves, for which this is a pointer, not a map's header.
    #[allow(clippy::box_collection)]
    pub(crate) children: Option<Box<BTreeMap<String, Child>>>,
    /// Children listed whose kind is not learnt yet: never shown to the kernel with a
    /// kind or an inode (a lookup learns it first; a `readdir` gives their names with
    /// `DT_UNKNOWN`). Learning a kind costs a read, so they are learnt in one batch in
    /// the background right after the listing (`View::learn_kinds`, or all at once
    /// after a `readdir`): a removal elsewhere is echoed, which needs the kind,
    /// although nothing waits for it.
    pub(crate) unknown: BTreeSet<String>,
    /// A `readdir` showed the names (with `DT_UNKNOWN` for the `unknown` ones): a
    /// program that needs their kinds asks for each (`ls -l`, `find`), so a lookup of
    /// one learns them all in one batch (`View::lookup`).
    pub(crate) names_shown: bool,
    /// Changed in ZooKeeper, re-read in progress: readers wait for it.
    pub(crate) stale: bool,
    /// When its data last changed, as far as the view knows (see `Fs::open`).
    pub(crate) changed: Option<Instant>,
}

impl Node {
    /// A node just read, children not listed.
    pub(crate) fn new(view: NodeView) -> Node {
        Node { view, children: None, unknown: BTreeSet::new(), names_shown: false, stale: false, changed: None }
    }
}

/// Everything the view knows, behind one lock.
#[derive(Default)]
pub(crate) struct Tree {
    /// Ordered by path, so that a subtree is one range: forgetting it costs the
    /// subtree, not everything cached. A key is the same allocation as the path's
    /// entries in `inodes` ([`Tree::intern`]). Nodes are boxed: a B-tree's nodes are
    /// about half full, and the empty half of a slot costs a pointer, not a node.
    pub(crate) nodes: BTreeMap<Arc<str>, Box<Node>>,
    pub(crate) inodes: Inodes,
    /// Paths with a change through this mount in flight, and how many.
    pub(crate) local: HashMap<String, usize>,
    /// The mzxid of data this mount wrote, per path, until a watch event's re-read has
    /// seen it: an event for such a node may be the echo of that very write.
    pub(crate) written: HashMap<String, i64>,
    /// Paths whose creation was heard while a change through this mount was in flight
    /// on them, and not read (see `LocalChange`'s drop).
    pub(crate) heard_local: HashSet<String>,
    /// Paths this mount deleted, per path how many deletions whose `NodeDeleted` was
    /// not heard yet. That event can come after the mount made the name again
    /// (`rmdir r; mkdir r` faster than the event task, or the old node's watch
    /// reporting after the new one's): it is checked then, never taken for the new node.
    pub(crate) removed_here: HashMap<String, usize>,
    /// Node reads in flight (see `flight.rs`).
    pub(crate) reads: Flights,
    /// Listings in flight.
    pub(crate) lists: Flights,
    /// Background batches learning the kinds of a directory's `unknown` children, by
    /// directory (see `View::learn_kinds`).
    pub(crate) learning: Flights,
    /// Directories whose `unknown` kinds a lookup is learning all at once, and how
    /// many such batches (see `View::lookup`).
    pub(crate) eager: HashMap<String, usize>,
    /// Directories with a background multi-read of kinds out (sent, not yet stored): a
    /// removal of one of their `unknown` children waits for it (see `watch.rs`).
    pub(crate) kinds_out: HashSet<String>,
    /// Links changed elsewhere on their way to the kernel (see `links.rs`).
    pub(crate) links: Pending,
    /// The kernel's lookup count of each inode it holds (see `watches.rs`).
    pub(crate) held: HashMap<u64, u64>,
    /// Paths changed through this mount since the event task's current listing of
    /// their directory was sent, which may not show the change (see
    /// `View::refresh_children`).
    pub(crate) touched: HashSet<String>,
    /// The child each directory had looked up last, for telling a walk through its
    /// children in name order (see `View::read_ahead`). Bounded: cleared when full.
    pub(crate) walked: HashMap<String, String>,
}

impl Tree {
    /// Caches `node` at `path` unless a node is cached there already; true if it was
    /// not. The key is the inode table's allocation of `path` if it has one.
    pub(crate) fn cache(&mut self, path: &str, node: Node) -> bool {
        if self.nodes.contains_key(path) {
            return false;
        }
        let key = self.inodes.shared_path(path).cloned().unwrap_or_else(|| Arc::from(path));
        self.nodes.insert(key, Box::new(node));
        true
    }

    /// The cached node's allocation of `path`, if a node is cached there: what the
    /// inode table stores for a path new to it (else it allocates the path itself).
    fn cached_key(&self, path: &str) -> Option<Arc<str>> {
        self.nodes.get_key_value(path).map(|(key, _)| Arc::clone(key))
    }

    /// The inode number of `path` as `kind`, handing out a new one if needed (see
    /// [`Inodes::ino`]); the path's allocation is shared with its cached node.
    pub(crate) fn ino(&mut self, path: &str, kind: InodeKind) -> u64 {
        let key = self.cached_key(path);
        self.inodes.ino_shared(path, kind, || key.unwrap_or_else(|| Arc::from(path)))
    }

    /// The number of the node at `path`, whose kind may not be known yet (see
    /// [`Inodes::node_ino`]); the path's allocation is shared as in [`Tree::ino`].
    pub(crate) fn node_ino(&mut self, path: &str) -> u64 {
        let key = self.cached_key(path);
        self.inodes.node_ino_shared(path, || key.unwrap_or_else(|| Arc::from(path)))
    }

    pub(crate) fn is_local(&self, path: &str) -> bool {
        self.local.contains_key(path)
    }

    pub(crate) fn children_mut(&mut self, parent: &str) -> Option<&mut BTreeMap<String, Child>> {
        self.nodes.get_mut(parent).and_then(|n| n.children.as_deref_mut())
    }

    /// Drops `path` and its subtree, and tells the kernel to drop their inodes' pages
    /// and attributes: a program holding one open then gets ENOENT, not stale bytes.
    pub(crate) fn forget(&mut self, path: &str, notes: &mut Vec<KernelNote>) {
        let (parent, name) = split_path(path).unwrap_or(("/", ""));
        let listed_kind = self.nodes.get(parent).and_then(|n| n.children.as_ref()?.get(name)).map(|c| c.kind);
        let cached_kind = self.nodes.get(path).map(|n| n.view.kind);
        // A registration has no subtree: a burst of removals in a big directory must
        // not scan every cached node and inode once per removal.
        let leaf = (cached_kind == Some(Kind::Registration) || listed_kind == Some(Kind::Registration))
            && self.inodes.existing(path, InodeKind::Dir).is_none();
        if leaf {
            self.nodes.remove(path);
            self.written.remove(path);
            // Its registration file, and a link of its parent's of the same name if
            // the kernel had one (hidden by the child): shown again, it is a new file.
            for ino in self.inodes.remove_path(path) {
                notes.push(KernelNote::InvalInode { ino });
            }
        } else {
            // Nodes are ordered by path: the subtree is one range.
            let prefix = format!("{path}/");
            let below = self
                .nodes
                .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                .take_while(|(p, _)| p.starts_with(&prefix))
                .map(|(p, _)| Arc::clone(p));
            let gone: Vec<Arc<str>> = std::iter::once(Arc::from(path)).chain(below).collect();
            for p in gone {
                self.nodes.remove(&p);
                self.written.remove(&*p);
            }
            for ino in self.inodes.remove_subtree(path) {
                notes.push(KernelNote::InvalInode { ino });
            }
        }
        if let Some(n) = self.nodes.get_mut(parent) {
            n.unknown.remove(name);
            if let Some(children) = n.children.as_mut() {
                children.remove(name);
            }
        }
    }

    /// The inode of the file showing the data of `path` if the kernel may know that
    /// file — its own inode, its directory's, or its name in a directory the kernel
    /// knows — handing the number out if needed: a change of that data is echoed,
    /// whether or not the file was ever read here.
    pub(crate) fn echo_ino(&mut self, path: &str, kind: Kind) -> Option<u64> {
        let file = kind.data_inode();
        if let Some(ino) = self.inodes.existing(path, file) {
            return Some(ino);
        }
        let known = match kind {
            Kind::Dir => self.inodes.existing(path, InodeKind::Dir).is_some(),
            Kind::Registration => self.shown_in_known_dir(path),
        };
        known.then(|| self.ino(path, file))
    }

    /// True if `path` is shown in a listed directory that the kernel knows.
    pub(crate) fn shown_in_known_dir(&self, path: &str) -> bool {
        let Some((parent, name)) = split_path(path) else { return false };
        self.inodes.existing(parent, InodeKind::Dir).is_some()
            && self
                .nodes
                .get(parent)
                .and_then(|n| n.children.as_ref()?.get(name))
                .is_some_and(|c| c.presence == Presence::Present)
    }

    /// A child appeared in ZooKeeper.
    pub(crate) fn child_added(&mut self, parent: &str, name: &str, kind: Kind, notes: &mut Vec<KernelNote>) {
        let path = child_path(parent, name);
        let local = self.is_local(&path);
        let dir_ino = self.inodes.existing(parent, InodeKind::Dir);
        if let Some(n) = self.nodes.get_mut(parent) {
            n.unknown.remove(name);
        }
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
            }
        }
    }

    /// The echo of `name`'s creation as `kind` arrived, or could not be made: it is
    /// shown from now on. False if it was not waiting for an echo of that kind — an
    /// echo can be stale when the name was removed and added again as the other kind
    /// meanwhile; the newer echo, queued behind it, settles it.
    pub(crate) fn settle_create(&mut self, parent: &str, name: &str, kind: Kind) -> bool {
        let Some(child) = self.children_mut(parent).and_then(|c| c.get_mut(name)) else { return false };
        if child.presence != Presence::PendingCreate || child.kind != kind {
            return false;
        }
        child.presence = Presence::Present;
        true
    }

    /// The echo of `name`'s removal arrived, or could not be made: it goes — or, if it
    /// was added again meanwhile, waits for its next echo. False if it was not waiting.
    pub(crate) fn settle_remove(&mut self, parent: &str, name: &str, notes: &mut Vec<KernelNote>) -> bool {
        let Some(child) = self.children_mut(parent).and_then(|c| c.get(name)).copied() else { return false };
        let Presence::PendingRemove { recreate } = child.presence else { return false };
        self.forget(&child_path(parent, name), notes);
        if let Some(kind) = recreate {
            self.child_added(parent, name, kind, notes);
        }
        true
    }

    /// A child went from ZooKeeper.
    pub(crate) fn child_gone(&mut self, parent: &str, name: &str, notes: &mut Vec<KernelNote>) {
        let path = child_path(parent, name);
        let local = self.is_local(&path);
        let dir_ino = self.inodes.existing(parent, InodeKind::Dir);
        let Some(children) = self.children_mut(parent) else {
            self.forget(&path, notes);
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
                self.forget(&path, notes);
            }
            Some(Child { kind, presence: Presence::Present }) => match (local, dir_ino) {
                (false, Some(parent)) => {
                    children
                        .insert(name.to_string(), Child { kind, presence: Presence::PendingRemove { recreate: None } });
                    notes.push(KernelNote::Remove { parent, path, kind });
                }
                _ => {
                    self.forget(&path, notes);
                }
            },
        }
    }
}

/// A node as read from ZooKeeper.
pub(crate) fn node_view(data: Vec<u8>, stat: Stat) -> NodeView {
    NodeView::new(Kind::of(&stat), data, stat)
}

/// The path in the mount of the file that shows the data of `path`.
pub fn data_file(path: &str, kind: Kind) -> String {
    match kind {
        Kind::Registration => path.to_string(),
        Kind::Dir => child_path(path, PROPERTIES),
    }
}

/// Links changed elsewhere whose echo has not arrived yet, by link path: `None` for
/// one that appeared (hidden until its echo `symlink`), `Some(target)` for one that
/// went (shown with that target until its echo `unlink`). The set: links retargeted
/// elsewhere, whose echo `unlink` is followed by an echo `symlink` (so watchers see
/// IN_DELETE then IN_CREATE, as for `rm` and `ln -s` on a local disk).
#[derive(Debug, Default)]
pub struct Pending(pub(crate) HashMap<String, Option<String>>, pub(crate) HashSet<String>);

impl Pending {
    /// Whether the link at `path` appeared elsewhere and waits for its echo (hidden).
    pub(crate) fn hidden(&self, path: &str) -> bool {
        self.0.get(path) == Some(&None)
    }
}

#[cfg(test)]
mod tests {
    //! A model test of the children's state machine: random interleavings of changes
    //! made elsewhere, changes made through the mount, and echoes that arrive or fail,
    //! checked against what ZooKeeper holds and what the kernel was told.

    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn stat() -> Stat {
        Stat {
            czxid: 1,
            mzxid: 1,
            pzxid: 1,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: 0,
            num_children: 0,
        }
    }

    const DIR: &str = "/d";
    const NAMES: [&str; 4] = ["a:1", "b:1", "c:1", "d:1"];

    struct World {
        tree: Tree,
        /// What ZooKeeper holds.
        zk: BTreeMap<String, Kind>,
        /// Names the kernel has a dentry for, and its type.
        kernel: BTreeMap<String, Kind>,
        /// The echo thread's queue.
        queue: VecDeque<KernelNote>,
    }

    impl World {
        fn new() -> World {
            let mut tree = Tree::default();
            let node = Node { children: Some(Box::default()), ..Node::new(node_view(Vec::new(), stat())) };
            tree.cache(DIR, node);
            tree.inodes.ino(DIR, InodeKind::Dir);
            World { tree, zk: BTreeMap::new(), kernel: BTreeMap::new(), queue: VecDeque::new() }
        }

        fn child(&self, name: &str) -> Option<Child> {
            self.tree.nodes[DIR].children.as_ref().and_then(|c| c.get(name)).copied()
        }

        fn visible(&self, name: &str) -> bool {
            self.child(name).is_some_and(|c| c.presence != Presence::PendingCreate)
        }

        fn remote_add(&mut self, name: &str, kind: Kind) {
            if !self.zk.contains_key(name) {
                self.zk.insert(name.into(), kind);
                let mut notes = Vec::new();
                self.tree.child_added(DIR, name, kind, &mut notes);
                self.queue.extend(notes);
            }
        }

        fn remote_remove(&mut self, name: &str) {
            if self.zk.remove(name).is_some() {
                let mut notes = Vec::new();
                self.tree.child_gone(DIR, name, &mut notes);
                self.queue.extend(notes);
            }
        }

        /// `touch`/`mkdir` through the mount, its watch event before or after the reply.
        fn local_create(&mut self, name: &str, kind: Kind, event_first: bool) {
            if self.zk.contains_key(name) || self.child(name).is_some() {
                return; // the kernel would answer EEXIST, or ZooKeeper NodeExists
            }
            let path = child_path(DIR, name);
            self.tree.local.insert(path.clone(), 1);
            self.zk.insert(name.into(), kind);
            let mut notes = Vec::new();
            if event_first {
                self.tree.child_added(DIR, name, kind, &mut notes);
            }
            if let Some(c) = self.tree.children_mut(DIR) {
                c.insert(name.into(), Child { kind, presence: Presence::Present });
            }
            self.tree.local.remove(&path);
            if !event_first {
                self.tree.child_added(DIR, name, kind, &mut notes);
            }
            assert!(notes.is_empty(), "a local creation was echoed: {notes:?}");
            self.kernel.insert(name.into(), kind);
        }

        /// `rm`/`rmdir` through the mount of a shown child.
        fn local_remove(&mut self, name: &str, event_first: bool) {
            if !self.zk.contains_key(name) || self.child(name).map(|c| c.presence) != Some(Presence::Present) {
                return;
            }
            let path = child_path(DIR, name);
            self.tree.local.insert(path.clone(), 1);
            self.zk.remove(name);
            let mut notes = Vec::new();
            if event_first {
                self.tree.child_gone(DIR, name, &mut notes);
            }
            self.tree.forget(&path, &mut notes);
            self.tree.local.remove(&path);
            if !event_first {
                self.tree.child_gone(DIR, name, &mut notes);
            }
            assert!(!notes.iter().any(|n| matches!(n, KernelNote::Create { .. } | KernelNote::Remove { .. })));
            self.kernel.remove(name);
        }

        /// The echo thread takes the next note; `fails`: its syscall fails before
        /// reaching the filesystem (EACCES, say), so it falls back.
        fn deliver(&mut self, fails: bool) {
            let Some(note) = self.queue.pop_front() else { return };
            let mut notes = Vec::new();
            match note {
                KernelNote::Create { path, kind, .. } => {
                    let (_, name) = split_path(&path).unwrap();
                    if !fails && self.tree.settle_create(DIR, name, kind) {
                        // mknod (a file) or mkdir (a directory): the kernel makes that type.
                        assert!(self.kernel.insert(name.into(), kind).is_none(), "IN_CREATE twice for {name}");
                    } else {
                        self.tree.settle_create(DIR, name, kind);
                        self.kernel.remove(name); // inval_entry
                    }
                }
                KernelNote::Remove { path, .. } => {
                    let (_, name) = split_path(&path).unwrap();
                    if fails || !self.tree.settle_remove(DIR, name, &mut notes) {
                        self.tree.settle_remove(DIR, name, &mut notes);
                    }
                    self.kernel.remove(name); // the unlink, or inval_entry
                }
                KernelNote::InvalEntry { name, .. } => {
                    self.kernel.remove(&name);
                }
                KernelNote::InvalInode { .. }
                | KernelNote::Change { .. }
                | KernelNote::LinkCreate { .. }
                | KernelNote::LinkRemove { .. }
                | KernelNote::LinkRetarget { .. } => {}
            }
            self.queue.extend(notes);
        }

        /// Holds at every step: the kernel knows no name the view hides, and no child
        /// is shown that ZooKeeper never had.
        fn check(&self, step: &str) {
            for (name, kind) in &self.kernel {
                assert!(self.visible(name), "{step}: the kernel has {name}, which the view hides");
                let shown = self.child(name).map(|c| c.kind);
                assert_eq!(shown, Some(*kind), "{step}: the kernel's {name} is of another type than the view's");
            }
        }
    }

    #[test]
    fn a_data_change_is_echoed_for_every_file_the_kernel_may_know_read_or_not() {
        let mut w = World::new();
        w.tree
            .children_mut(DIR)
            .unwrap()
            .insert("a:1".into(), Child { kind: Kind::Registration, presence: Presence::Present });
        w.tree
            .children_mut(DIR)
            .unwrap()
            .insert("b:1".into(), Child { kind: Kind::Registration, presence: Presence::PendingCreate });
        assert!(w.tree.echo_ino("/d/a:1", Kind::Registration).is_some(), "shown, never read");
        assert!(w.tree.echo_ino("/d/b:1", Kind::Registration).is_none(), "not shown yet");
        assert!(w.tree.echo_ino("/d/c:1", Kind::Registration).is_none(), "not a child");
        assert!(w.tree.echo_ino(DIR, Kind::Dir).is_some(), "the properties.json of a known directory");
        assert!(w.tree.echo_ino("/other", Kind::Dir).is_none(), "a directory the kernel does not know");
    }

    #[test]
    fn a_view_keeps_the_length_of_its_rendering_and_renders_the_same_bytes_again() {
        for data in [&b""[..], b"{\"a\": 1, \"b\": [1, 2]}", b"not json \x01", &[b'['; 5000]] {
            let view = node_view(data.to_vec(), stat());
            let shown = properties::render(data);
            assert_eq!(view.size(), shown.len() as u64, "{data:?}");
            assert_eq!(*view.rendered(), shown);
            assert_eq!(view.rendered(), view.clone().rendered(), "a clone renders the same version");
        }
    }

    #[test]
    fn forgetting_a_registration_drops_it_alone() {
        let mut w = World::new();
        for name in ["a:1", "b:1"] {
            w.tree
                .children_mut(DIR)
                .unwrap()
                .insert(name.into(), Child { kind: Kind::Registration, presence: Presence::Present });
            w.tree.inodes.ino(&child_path(DIR, name), InodeKind::Registration);
        }
        let a = w.tree.inodes.existing("/d/a:1", InodeKind::Registration).unwrap();
        let mut notes = Vec::new();
        w.tree.forget("/d/a:1", &mut notes);
        assert_eq!(notes, vec![KernelNote::InvalInode { ino: a }]);
        assert!(w.child("a:1").is_none() && w.child("b:1").is_some());
        assert!(w.tree.inodes.existing("/d/b:1", InodeKind::Registration).is_some());
        assert!(w.tree.inodes.existing(DIR, InodeKind::Dir).is_some());
    }

    #[test]
    fn forgetting_a_node_forgets_its_subtree_and_nothing_else() {
        let mut tree = Tree::default();
        let paths = ["/a", "/a/b", "/a/b/c", "/a-b", "/a.b", "/ab", "/a!", "/b/a"];
        for p in paths {
            tree.cache(p, Node::new(node_view(Vec::new(), stat())));
            tree.inodes.ino(p, InodeKind::Dir);
        }
        let mut notes = Vec::new();
        tree.forget("/a", &mut notes);
        let left: Vec<&str> = tree.nodes.keys().map(|p| &**p).collect();
        assert_eq!(left, ["/a!", "/a-b", "/a.b", "/ab", "/b/a"]);
        assert_eq!(notes.len(), 3, "the kernel drops the three inodes: {notes:?}");
    }

    /// One step of the model test.
    #[derive(Debug, Clone)]
    enum Step {
        RemoteAdd(usize, Kind),
        RemoteRemove(usize),
        LocalCreate(usize, Kind, bool),
        LocalRemove(usize, bool),
        /// The next echo arrives, or (true) fails.
        Deliver(bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        let name = 0..NAMES.len();
        let kind = prop::bool::weighted(1.0 / 3.0).prop_map(|dir| if dir { Kind::Dir } else { Kind::Registration });
        prop_oneof![
            1 => (name.clone(), kind.clone()).prop_map(|(n, k)| Step::RemoteAdd(n, k)),
            1 => name.clone().prop_map(Step::RemoteRemove),
            1 => (name.clone(), kind, any::<bool>()).prop_map(|(n, k, e)| Step::LocalCreate(n, k, e)),
            1 => (name, any::<bool>()).prop_map(|(n, e)| Step::LocalRemove(n, e)),
            2 => prop::bool::weighted(0.125).prop_map(Step::Deliver),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn children_settle_to_what_zookeeper_holds_whatever_the_interleaving(
            steps in prop::collection::vec(step(), 1..40),
            drain in prop::collection::vec(prop::bool::weighted(0.125), 1..8),
        ) {
            let mut w = World::new();
            for (i, step) in steps.iter().enumerate() {
                match *step {
                    Step::RemoteAdd(n, kind) => w.remote_add(NAMES[n], kind),
                    Step::RemoteRemove(n) => w.remote_remove(NAMES[n]),
                    Step::LocalCreate(n, kind, event_first) => w.local_create(NAMES[n], kind, event_first),
                    Step::LocalRemove(n, event_first) => w.local_remove(NAMES[n], event_first),
                    Step::Deliver(fails) => w.deliver(fails),
                }
                w.check(&format!("step {i}, {step:?}"));
            }
            for fails in drain.iter().cycle() {
                if w.queue.is_empty() {
                    break;
                }
                w.deliver(*fails);
                w.check("draining");
            }
            let shown: BTreeMap<String, Kind> =
                w.tree.nodes[DIR].children.as_ref().unwrap().iter().map(|(n, c)| (n.clone(), c.kind)).collect();
            prop_assert_eq!(&shown, &w.zk, "the view does not match ZooKeeper");
            for (name, c) in w.tree.nodes[DIR].children.as_deref().unwrap() {
                prop_assert_eq!(c.presence, Presence::Present, "{} still pending", name);
            }
            prop_assert!(w.kernel.keys().all(|n| w.zk.contains_key(n)), "stale dentries {:?}", w.kernel);
        }
    }
}
