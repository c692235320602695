//! Inode numbers for the paths the kernel has been shown.
//!
//! A znode path gives one inode for its directory (or registration file) and, for a
//! directory, one for its `properties.json`. A node that is deleted loses its numbers,
//! so a node created again under the same name is a new file to the kernel, and a
//! program holding the old one gets ENOENT instead of the new node's data.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// The root directory's inode number.
pub const ROOT_INO: u64 = 1;

/// What an inode shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InodeKind {
    /// A persistent znode.
    Dir,
    /// The `properties.json` of a persistent znode.
    Properties,
    /// An ephemeral znode.
    Registration,
    /// A symbolic link: a `"NAME ->"` property of the directory (see `links.rs`); the
    /// path is the directory's path and NAME.
    Link,
}

/// The path and kind behind an inode number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// The znode's path (for `Properties`, the directory's path).
    pub path: String,
    /// What the inode shows.
    pub kind: InodeKind,
}

/// The table of inode numbers handed out.
///
/// A path is stored once: both indexes hold the same `Arc<str>`, which the view's
/// cached node of that path shares too (see `Tree::intern`).
#[derive(Debug)]
pub struct Inodes {
    next: u64,
    by_ino: HashMap<u64, (Arc<str>, InodeKind)>,
    /// The numbers of each path, one slot per [`InodeKind`] (0: none). Ordered, so that
    /// a subtree is one range: removing it costs the subtree, not the whole table.
    by_path: BTreeMap<Arc<str>, [u64; 4]>,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut t = Inodes { next: ROOT_INO + 1, by_ino: HashMap::new(), by_path: BTreeMap::new() };
        let root: Arc<str> = Arc::from("/");
        t.by_ino.insert(ROOT_INO, (Arc::clone(&root), InodeKind::Dir));
        t.by_path.entry(root).or_default()[slot(InodeKind::Dir)] = ROOT_INO;
        t
    }
}

/// The index of `kind` in a path's slots.
fn slot(kind: InodeKind) -> usize {
    match kind {
        InodeKind::Dir => 0,
        InodeKind::Properties => 1,
        InodeKind::Registration => 2,
        InodeKind::Link => 3,
    }
}

impl Inodes {
    /// The inode number of `path` as `kind`, handing out a new one if needed.
    pub fn ino(&mut self, path: &str, kind: InodeKind) -> u64 {
        self.ino_shared(path, kind, || Arc::from(path))
    }

    /// [`Inodes::ino`]; a path new to the table is stored as `shared()` (the same path,
    /// allocated once for the table and the view's node).
    pub(crate) fn ino_shared(&mut self, path: &str, kind: InodeKind, shared: impl FnOnce() -> Arc<str>) -> u64 {
        if let Some(ino) = self.existing(path, kind) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        let key = match self.by_path.get_key_value(path) {
            Some((key, _)) => Arc::clone(key),
            None => shared(),
        };
        self.by_ino.insert(ino, (Arc::clone(&key), kind));
        self.by_path.entry(key).or_default()[slot(kind)] = ino;
        ino
    }

    /// The table's allocation of `path`, if it has one.
    pub(crate) fn shared_path(&self, path: &str) -> Option<&Arc<str>> {
        self.by_path.get_key_value(path).map(|(key, _)| key)
    }

    /// The inode number of `path` as `kind`, if the kernel was given one.
    pub fn existing(&self, path: &str, kind: InodeKind) -> Option<u64> {
        self.by_path.get(path).map(|slots| slots[slot(kind)]).filter(|ino| *ino != 0)
    }

    /// What `ino` stands for.
    pub fn get(&self, ino: u64) -> Option<Inode> {
        self.by_ino.get(&ino).map(|(path, kind)| Inode { path: path.to_string(), kind: *kind })
    }

    /// Forgets `path` as `kind` alone; the number dropped, if it had one.
    pub fn remove_one(&mut self, path: &str, kind: InodeKind) -> Option<u64> {
        let slots = self.by_path.get_mut(path)?;
        let ino = std::mem::take(&mut slots[slot(kind)]);
        if slots.iter().all(|i| *i == 0) {
            self.by_path.remove(path);
        }
        if ino == 0 {
            return None;
        }
        self.by_ino.remove(&ino);
        Some(ino)
    }

    /// Forgets `path` and everything below it; returns the numbers dropped.
    pub fn remove_subtree(&mut self, path: &str) -> Vec<u64> {
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        // Every path below `path` starts with `prefix`, and those sort together, from
        // `prefix` on.
        let below = self
            .by_path
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| Arc::clone(p));
        let paths: Vec<Arc<str>> = self.shared_path(path).cloned().into_iter().chain(below).collect();
        let mut gone = Vec::new();
        for p in paths {
            let Some(slots) = self.by_path.remove(&p) else { continue };
            for ino in slots {
                if ino == ROOT_INO {
                    // The root keeps its number; only its other files go.
                    self.by_path.entry(Arc::clone(&p)).or_default()[slot(InodeKind::Dir)] = ROOT_INO;
                } else if ino != 0 && self.by_ino.remove(&ino).is_some() {
                    gone.push(ino);
                }
            }
        }
        gone
    }
}

/// `parent/name` as a znode path.
pub fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The parent path and last name of a znode path (`None` for the root).
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let i = path.rfind('/')?;
    if path == "/" {
        return None;
    }
    Some((if i == 0 { "/" } else { &path[..i] }, &path[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_node_created_again_gets_a_new_inode() {
        let mut t = Inodes::default();
        let a = t.ino("/a", InodeKind::Dir);
        let ap = t.ino("/a", InodeKind::Properties);
        let ab = t.ino("/a/b", InodeKind::Registration);
        assert_eq!(t.ino("/a", InodeKind::Dir), a);
        assert_ne!(a, ap);
        let other = t.ino("/ab", InodeKind::Dir);
        let gone = t.remove_subtree("/a");
        assert_eq!(gone.len(), 3);
        assert!(t.get(ab).is_none());
        assert_eq!(t.get(other).unwrap().path, "/ab");
        assert_ne!(t.ino("/a", InodeKind::Dir), a);
    }

    #[test]
    fn removing_a_subtree_keeps_everything_else_and_the_root() {
        let mut t = Inodes::default();
        let mut kept = Vec::new();
        for p in ["/a", "/a-b", "/a.b", "/ab", "/b/a", "/a!"] {
            kept.push((p, t.ino(p, InodeKind::Dir), t.ino(p, InodeKind::Properties)));
        }
        let mut dropped = Vec::new();
        for p in ["/a/x", "/a/x/y", "/a/z:1"] {
            let kind = if p.contains(':') { InodeKind::Registration } else { InodeKind::Dir };
            dropped.push(t.ino(p, kind));
        }
        let mut gone = t.remove_subtree("/a/x");
        gone.sort();
        assert_eq!(gone, dropped[..2]);
        assert_eq!(t.existing("/a/z:1", InodeKind::Registration), Some(dropped[2]));
        assert_eq!(t.remove_subtree("/a").len(), 3, "/a's two numbers and /a/z:1");
        for (p, dir, props) in &kept[1..] {
            assert_eq!(t.existing(p, InodeKind::Dir), Some(*dir), "{p} kept");
            assert_eq!(t.existing(p, InodeKind::Properties), Some(*props), "{p} kept");
        }
        let root_props = t.ino("/", InodeKind::Properties);
        assert_eq!(t.remove_subtree("/").len(), 2 * (kept.len() - 1) + 1);
        assert_eq!(t.existing("/", InodeKind::Dir), Some(ROOT_INO));
        assert_eq!(t.get(ROOT_INO).map(|i| i.path), Some("/".to_string()));
        assert!(t.get(root_props).is_none());
        assert_eq!(t.by_ino.len(), 1, "only the root is left");
        assert_ne!(t.ino("/a", InodeKind::Dir), kept[0].1, "a node made again is a new file");
    }

    #[test]
    fn paths_join_and_split() {
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
        assert_eq!(split_path("/a/b"), Some(("/a", "b")));
        assert_eq!(split_path("/a"), Some(("/", "a")));
        assert_eq!(split_path("/"), None);
    }
}
