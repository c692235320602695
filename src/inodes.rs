//! Inode numbers for the paths the kernel has been shown.
//!
//! A znode path gives one inode for its directory (or registration file) and, for a
//! directory, one for its `properties.json`. A node that is deleted loses its numbers,
//! so a node created again under the same name is a new file to the kernel, and a
//! program holding the old one gets ENOENT instead of the new node's data.
//!
//! A child listed before its kind is known (a `readdir` answers with `DT_UNKNOWN`) is
//! given a number for its node before anyone knows whether that is a directory or a
//! registration ([`Inodes::node_ino`]); whichever it turns out to be takes that number,
//! so `ls -i` and a later `stat` agree.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

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
#[derive(Debug)]
pub struct Inodes {
    next: u64,
    by_ino: HashMap<u64, Inode>,
    /// The numbers of each path, one slot per [`InodeKind`] and one for a number given
    /// before the node's kind was known (0: none). Ordered, so that a subtree is one
    /// range: removing it costs the subtree, not the whole table.
    by_path: BTreeMap<String, [u64; 5]>,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut t = Inodes { next: ROOT_INO + 1, by_ino: HashMap::new(), by_path: BTreeMap::new() };
        t.by_ino.insert(ROOT_INO, Inode { path: "/".into(), kind: InodeKind::Dir });
        t.by_path.entry("/".into()).or_default()[slot(InodeKind::Dir)] = ROOT_INO;
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

/// The slot of a number given to a node of unknown kind ([`Inodes::node_ino`]); not in
/// `by_ino` until the kind is known, as the kernel only saw it as a `d_ino`.
const UNDECIDED: usize = 4;

/// True for the kinds that show the node itself, which may take an undecided number.
fn is_node(kind: InodeKind) -> bool {
    matches!(kind, InodeKind::Dir | InodeKind::Registration)
}

impl Inodes {
    /// The inode number of `path` as `kind`, handing out a new one if needed.
    pub fn ino(&mut self, path: &str, kind: InodeKind) -> u64 {
        if let Some(ino) = self.existing(path, kind) {
            return ino;
        }
        let slots = self.by_path.entry(path.to_string()).or_default();
        let ino = match std::mem::take(&mut slots[UNDECIDED]) {
            undecided if undecided != 0 && is_node(kind) => undecided,
            undecided => {
                slots[UNDECIDED] = undecided;
                let ino = self.next;
                self.next += 1;
                ino
            }
        };
        slots[slot(kind)] = ino;
        self.by_ino.insert(ino, Inode { path: path.to_string(), kind });
        ino
    }

    /// The number of the node at `path` whose kind (directory or registration) is not
    /// known yet: the number it has, or one that whichever kind it turns out to be
    /// will take (see the module docs).
    pub fn node_ino(&mut self, path: &str) -> u64 {
        let slots = self.by_path.entry(path.to_string()).or_default();
        for i in [slot(InodeKind::Dir), slot(InodeKind::Registration), UNDECIDED] {
            if slots[i] != 0 {
                return slots[i];
            }
        }
        slots[UNDECIDED] = self.next;
        self.next += 1;
        slots[UNDECIDED]
    }

    /// The inode number of `path` as `kind`, if the kernel was given one.
    pub fn existing(&self, path: &str, kind: InodeKind) -> Option<u64> {
        self.by_path.get(path).map(|slots| slots[slot(kind)]).filter(|ino| *ino != 0)
    }

    /// What `ino` stands for.
    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.by_ino.get(&ino)
    }

    /// Forgets `path` as `kind` alone; the number dropped, if it had one.
    pub fn remove_one(&mut self, path: &str, kind: InodeKind) -> Option<u64> {
        let slots = self.by_path.get_mut(path)?;
        let ino = std::mem::take(&mut slots[slot(kind)]);
        if is_node(kind) {
            slots[UNDECIDED] = 0;
        }
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
    pub fn remove_subtree(&mut self, path: &str) -> Vec<(u64, Inode)> {
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        // Every path below `path` starts with `prefix`, and those sort together, from
        // `prefix` on.
        let below = self
            .by_path
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone());
        let paths: Vec<String> = std::iter::once(path.to_string()).chain(below).collect();
        let mut gone = Vec::new();
        for p in paths {
            let Some(slots) = self.by_path.remove(&p) else { continue };
            for ino in &slots[..UNDECIDED] {
                let ino = *ino;
                if ino == ROOT_INO {
                    // The root keeps its number; only its other files go.
                    self.by_path.entry(p.clone()).or_default()[slot(InodeKind::Dir)] = ROOT_INO;
                } else if let Some(inode) = self.by_ino.remove(&ino) {
                    gone.push((ino, inode));
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
        let mut gone: Vec<u64> = t.remove_subtree("/a/x").into_iter().map(|(ino, _)| ino).collect();
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
        assert_eq!(t.get(ROOT_INO).map(|i| i.path.as_str()), Some("/"));
        assert!(t.get(root_props).is_none());
        assert_eq!(t.by_ino.len(), 1, "only the root is left");
        assert_ne!(t.ino("/a", InodeKind::Dir), kept[0].1, "a node made again is a new file");
    }

    #[test]
    fn a_node_numbered_before_its_kind_is_known_keeps_its_number() {
        let mut t = Inodes::default();
        let d = t.node_ino("/a");
        assert_eq!(t.node_ino("/a"), d, "asked again");
        assert!(t.get(d).is_none(), "not an inode the kernel can use yet");
        assert_ne!(t.ino("/a", InodeKind::Properties), d, "its properties.json is another file");
        assert_eq!(t.ino("/a", InodeKind::Dir), d, "a directory, as it turns out");
        assert_eq!(t.get(d).map(|i| i.kind), Some(InodeKind::Dir));
        assert_eq!(t.node_ino("/a"), d);
        let r = t.node_ino("/r:1");
        assert_eq!(t.ino("/r:1", InodeKind::Registration), r, "a registration");
        // Gone before its kind was learnt: a node made again is a new file.
        let gone = t.node_ino("/g:1");
        assert!(t.remove_subtree("/g:1").is_empty(), "the kernel had no inode for it");
        assert_ne!(t.node_ino("/g:1"), gone);
        let leaf = t.node_ino("/h:1");
        assert_eq!(t.remove_one("/h:1", InodeKind::Registration), None);
        assert_ne!(t.ino("/h:1", InodeKind::Registration), leaf);
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
