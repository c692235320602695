//! The model behind the view: cached nodes, their children and where each child
//! stands between ZooKeeper and the kernel (see `view.rs` for the design), and the
//! notes the kernel must be given. Plain data and rules, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use zookeeper_client::Stat;

use crate::inodes::{child_path, split_path, InodeKind, Inodes};
use crate::names::PROPERTIES;
use crate::properties;

/// What kind of file a child znode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A cached node.
pub(crate) struct Node {
    pub(crate) view: NodeView,
    /// Its children once listed.
    pub(crate) children: Option<BTreeMap<String, Child>>,
    /// Changed in ZooKeeper, re-read in progress: readers wait for it.
    pub(crate) stale: bool,
}

/// Everything the view knows, behind one lock.
#[derive(Default)]
pub(crate) struct Tree {
    pub(crate) nodes: HashMap<String, Node>,
    pub(crate) inodes: Inodes,
    /// Paths with a change through this mount in flight, and how many.
    pub(crate) local: HashMap<String, usize>,
    /// The mzxid of data this mount wrote, per path, until a watch event's re-read has
    /// seen it: an event for such a node may be the echo of that very write.
    pub(crate) written: HashMap<String, i64>,
}

impl Tree {
    pub(crate) fn is_local(&self, path: &str) -> bool {
        self.local.contains_key(path)
    }

    pub(crate) fn children_mut(&mut self, parent: &str) -> Option<&mut BTreeMap<String, Child>> {
        self.nodes.get_mut(parent).and_then(|n| n.children.as_mut())
    }

    /// Drops `path` and its subtree, and tells the kernel to drop their inodes' pages
    /// and attributes: a program holding one open then gets ENOENT, not stale bytes.
    pub(crate) fn forget(&mut self, path: &str, notes: &mut Vec<KernelNote>) {
        let prefix = format!("{path}/");
        let gone: Vec<String> = self.nodes.keys().filter(|p| *p == path || p.starts_with(&prefix)).cloned().collect();
        for p in gone {
            self.nodes.remove(&p);
            self.written.remove(&p);
        }
        if let Some((parent, name)) = split_path(path) {
            if let Some(children) = self.children_mut(parent) {
                children.remove(name);
            }
        }
        for (ino, _) in self.inodes.remove_subtree(path) {
            notes.push(KernelNote::InvalInode { ino });
        }
    }

    /// A child appeared in ZooKeeper.
    pub(crate) fn child_added(&mut self, parent: &str, name: &str, kind: Kind, notes: &mut Vec<KernelNote>) {
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
            }
        }
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
    NodeView { kind: Kind::of(&stat), rendered: Arc::new(properties::render(&data)), data: Arc::new(data), stat }
}

/// The path in the mount of the file that shows the data of `path`.
pub fn data_file(path: &str, kind: Kind) -> String {
    match kind {
        Kind::Registration => path.to_string(),
        Kind::Dir => child_path(path, PROPERTIES),
    }
}
