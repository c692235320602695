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
//! so `ls -i` and a later `stat` agree. That is why a directory and a registration
//! share the first of a path's four inode numbers: a path is one or the other.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// The root directory's inode number.
pub const ROOT_INO: u64 = 1;

/// What an inode shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
/// Each path the kernel was shown gets one *number*, and its inodes are that number's
/// four slots, one per [`InodeKind`] (`ino = 4 * number + slot + 1`): one entry per
/// path in each index, not one per inode. A path is stored once: both indexes hold the
/// same `Arc<str>`, which the view's cached node of that path shares too (see
/// `Tree::intern`).
#[derive(Debug)]
pub struct Inodes {
    /// The next path's number. Numbers are never reused.
    next: u64,
    /// The path of each number. A B-tree, not a hash table: a table of 100,000 paths
    /// doubles into a new allocation of megabytes, and the old one freed stays in the
    /// process's memory as a hole; a B-tree grows by small nodes.
    by_number: BTreeMap<u64, Arc<str>>,
    /// Each path's number, and in the top byte the kinds handed out for it
    /// ([`Entry`]). Ordered, so that a subtree is one range: removing it costs the
    /// subtree, not the whole table.
    by_path: BTreeMap<Arc<str>, Entry>,
}

/// A path's number (low 56 bits) and the kinds handed out for it (top byte, one bit
/// per slot), in one word.
#[derive(Debug, Clone, Copy)]
struct Entry(u64);

impl Entry {
    const KINDS_SHIFT: u32 = 56;

    fn new(number: u64) -> Entry {
        Entry(number)
    }

    fn number(self) -> u64 {
        self.0 & ((1 << Self::KINDS_SHIFT) - 1)
    }

    /// The bit of `kind`, or of [`UNDECIDED`] (`None`).
    fn bit(kind: Option<InodeKind>) -> u64 {
        1 << (Self::KINDS_SHIFT + kind.map_or(UNDECIDED, slot) as u32)
    }

    fn has(self, kind: InodeKind) -> bool {
        self.0 & Self::bit(Some(kind)) != 0
    }

    fn with(self, kind: InodeKind) -> Entry {
        let entry = Entry(self.0 | Self::bit(Some(kind)));
        if is_node(kind) {
            entry.decided()
        } else {
            entry
        }
    }

    fn with_undecided(self) -> Entry {
        Entry(self.0 | Self::bit(None))
    }

    fn decided(self) -> Entry {
        Entry(self.0 & !Self::bit(None))
    }

    /// The kind the node's number stands for, if it was handed out with a kind.
    fn node_kind(self) -> Option<InodeKind> {
        [InodeKind::Dir, InodeKind::Registration].into_iter().find(|k| self.has(*k))
    }

    /// The inode numbers handed out.
    fn inos(self) -> impl Iterator<Item = u64> {
        KINDS.into_iter().filter(move |k| self.has(*k)).map(move |k| ino_of(self.number(), k))
    }
}

/// Every kind, in slot order.
const KINDS: [InodeKind; 4] = [InodeKind::Dir, InodeKind::Properties, InodeKind::Registration, InodeKind::Link];

/// The bit of a node's number handed out before its kind was known
/// ([`Inodes::node_ino`]): not an inode the kernel can use until the kind is known, as
/// the kernel only saw it as a `d_ino`.
const UNDECIDED: usize = 4;

/// True for the kinds that show the node itself, which share the path's first inode.
fn is_node(kind: InodeKind) -> bool {
    matches!(kind, InodeKind::Dir | InodeKind::Registration)
}

/// The bit of `kind` in an [`Entry`].
fn slot(kind: InodeKind) -> usize {
    match kind {
        InodeKind::Dir => 0,
        InodeKind::Properties => 1,
        InodeKind::Registration => 2,
        InodeKind::Link => 3,
    }
}

/// Which of a path's four inode numbers `kind` takes: a directory and a registration
/// share the first (see the module docs); the third is unused.
fn offset(kind: InodeKind) -> u64 {
    match kind {
        InodeKind::Dir | InodeKind::Registration => 0,
        InodeKind::Properties => 1,
        InodeKind::Link => 3,
    }
}

/// The inode number of `kind` of path number `number`. Number 0 is no path's: its
/// first inode is [`ROOT_INO`], which the root directory keeps for good, while the
/// root's other files come and go with the root node, under numbers of their own.
fn ino_of(number: u64, kind: InodeKind) -> u64 {
    4 * number + offset(kind) + 1
}

/// The path number and offset of inode number `ino` (the inverse of [`ino_of`]).
fn split_ino(ino: u64) -> Option<(u64, u64)> {
    let i = ino.checked_sub(1)?;
    Some((i / 4, i % 4))
}

impl Default for Inodes {
    fn default() -> Self {
        Inodes { next: 1, by_number: BTreeMap::new(), by_path: BTreeMap::new() }
    }
}

/// True for the root directory, which is [`ROOT_INO`] and in no index.
fn is_root_dir(path: &str, kind: InodeKind) -> bool {
    kind == InodeKind::Dir && path == "/"
}

impl Inodes {
    /// The inode number of `path` as `kind`, handing out a new one if needed.
    pub fn ino(&mut self, path: &str, kind: InodeKind) -> u64 {
        self.ino_shared(path, kind, || Arc::from(path))
    }

    /// [`Inodes::ino`]; a path new to the table is stored as `shared()` (the same path,
    /// allocated once for the table and the view's node).
    pub(crate) fn ino_shared(&mut self, path: &str, kind: InodeKind, shared: impl FnOnce() -> Arc<str>) -> u64 {
        if is_root_dir(path, kind) {
            return ROOT_INO;
        }
        let other_node = self.by_path.get(path).and_then(|e| e.node_kind()).is_some_and(|k| is_node(kind) && k != kind);
        if other_node {
            // The path holds a node of the other kind: it was removed and made again
            // without its numbers being dropped. A new file to the kernel.
            self.remove_path(path);
        }
        let entry = self.entry(path, shared);
        *entry = entry.with(kind);
        ino_of(entry.number(), kind)
    }

    /// The number of the node at `path` whose kind (directory or registration) is not
    /// known yet: the number it has, or one that whichever kind it turns out to be
    /// will take (see the module docs); stored as [`Inodes::ino_shared`] does.
    pub(crate) fn node_ino_shared(&mut self, path: &str, shared: impl FnOnce() -> Arc<str>) -> u64 {
        if path == "/" {
            return ROOT_INO;
        }
        let entry = self.entry(path, shared);
        if entry.node_kind().is_none() {
            *entry = entry.with_undecided();
        }
        ino_of(entry.number(), InodeKind::Dir)
    }

    /// [`Inodes::node_ino_shared`] with a path of its own.
    pub fn node_ino(&mut self, path: &str) -> u64 {
        self.node_ino_shared(path, || Arc::from(path))
    }

    /// The entry of `path`, with a new number (stored as `shared()`) if it has none.
    fn entry(&mut self, path: &str, shared: impl FnOnce() -> Arc<str>) -> &mut Entry {
        if !self.by_path.contains_key(path) {
            let number = self.next;
            self.next += 1;
            let key = shared();
            self.by_number.insert(number, Arc::clone(&key));
            self.by_path.insert(key, Entry::new(number));
        }
        self.by_path.get_mut(path).expect("an entry just made or found")
    }

    /// The table's allocation of `path`, if it has one.
    pub(crate) fn shared_path(&self, path: &str) -> Option<&Arc<str>> {
        self.by_path.get_key_value(path).map(|(key, _)| key)
    }

    /// The inode number of `path` as `kind`, if the kernel was given one.
    pub fn existing(&self, path: &str, kind: InodeKind) -> Option<u64> {
        if is_root_dir(path, kind) {
            return Some(ROOT_INO);
        }
        self.by_path.get(path).filter(|e| e.has(kind)).map(|e| ino_of(e.number(), kind))
    }

    /// What `ino` stands for.
    pub fn get(&self, ino: u64) -> Option<Inode> {
        if ino == ROOT_INO {
            return Some(Inode { path: "/".to_string(), kind: InodeKind::Dir });
        }
        let (number, offset) = split_ino(ino)?;
        let path = self.by_number.get(&number)?;
        let entry = self.by_path.get(&**path)?;
        // Only numbers handed out with a kind: the other ones of a path are no inodes.
        let kind = match offset {
            0 => entry.node_kind()?,
            1 => Some(InodeKind::Properties).filter(|k| entry.has(*k))?,
            3 => Some(InodeKind::Link).filter(|k| entry.has(*k))?,
            _ => return None,
        };
        Some(Inode { path: path.to_string(), kind })
    }

    /// The table as plain numbers, for the process image a mount is handed to (see
    /// `model/handover.rs`): the next number, and each path's number and kind bits.
    pub(crate) fn saved(&self) -> (u64, Vec<(u64, String, u64)>) {
        let entries =
            self.by_path.iter().map(|(p, e)| (e.number(), p.to_string(), e.0 >> Entry::KINDS_SHIFT)).collect();
        (self.next, entries)
    }

    /// The table [`Inodes::saved`] gave, the same numbers for the same paths.
    pub(crate) fn restored(next: u64, entries: Vec<(u64, String, u64)>) -> Inodes {
        let mut table = Inodes { next, ..Inodes::default() };
        for (number, path, kinds) in entries {
            let key: Arc<str> = Arc::from(path.as_str());
            table.next = table.next.max(number + 1);
            table.by_number.insert(number, Arc::clone(&key));
            table.by_path.insert(key, Entry(number | (kinds << Entry::KINDS_SHIFT)));
        }
        table
    }

    /// Forgets `path` (every kind of it, not what is below); the numbers dropped (not a
    /// node's number whose kind was never known: the kernel had no inode for it). A
    /// path shown again later gets new numbers.
    pub fn remove_path(&mut self, path: &str) -> Vec<u64> {
        let Some(entry) = self.by_path.remove(path) else { return Vec::new() };
        self.by_number.remove(&entry.number());
        entry.inos().collect()
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
        // The root's range holds the root itself: it is removed once.
        for p in paths {
            gone.extend(self.remove_path(&p));
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
        assert!(t.by_path.is_empty() && t.by_number.is_empty(), "only the root is left");
        assert_ne!(t.ino("/a", InodeKind::Dir), kept[0].1, "a node made again is a new file");
        assert_ne!(t.ino("/", InodeKind::Properties), root_props, "the root's properties.json too");
        assert!(t.get(root_props).is_none());
    }

    #[test]
    fn a_node_numbered_before_its_kind_is_known_keeps_its_number() {
        let mut t = Inodes::default();
        let d = t.node_ino("/a");
        assert_eq!(t.node_ino("/a"), d, "asked again");
        assert!(t.get(d).is_none(), "not an inode the kernel can use yet");
        assert_ne!(t.ino("/a", InodeKind::Properties), d, "its properties.json is another file");
        assert!(t.get(d).is_none(), "still not");
        assert_eq!(t.ino("/a", InodeKind::Dir), d, "a directory, as it turns out");
        assert_eq!(t.get(d).map(|i| i.kind), Some(InodeKind::Dir));
        assert_eq!(t.node_ino("/a"), d);
        let r = t.node_ino("/r:1");
        assert_eq!(t.ino("/r:1", InodeKind::Registration), r, "a registration");
        assert_eq!(t.get(r).map(|i| i.kind), Some(InodeKind::Registration));
        // Gone before its kind was learnt: a node made again is a new file.
        let gone = t.node_ino("/g:1");
        assert!(t.remove_subtree("/g:1").is_empty(), "the kernel had no inode for it");
        assert_ne!(t.node_ino("/g:1"), gone);
        let leaf = t.node_ino("/h:1");
        assert!(t.remove_path("/h:1").is_empty());
        assert_ne!(t.ino("/h:1", InodeKind::Registration), leaf);
        assert_eq!(t.node_ino("/"), ROOT_INO);
    }

    #[test]
    fn a_path_made_again_as_the_other_kind_is_a_new_file() {
        let mut t = Inodes::default();
        let d = t.ino("/x:1", InodeKind::Dir);
        let p = t.ino("/x:1", InodeKind::Properties);
        let r = t.ino("/x:1", InodeKind::Registration);
        assert_ne!(r, d);
        assert!(t.get(d).is_none() && t.get(p).is_none(), "the directory's inodes went");
        assert_eq!(t.get(r).map(|i| i.kind), Some(InodeKind::Registration));
    }

    #[test]
    fn a_slot_never_handed_out_is_no_inode() {
        let mut t = Inodes::default();
        let reg = t.ino("/a:1", InodeKind::Registration);
        for other in [reg + 1, reg + 2, reg + 3] {
            assert_eq!(t.get(other), None, "{other}");
        }
        assert_eq!(t.existing("/a:1", InodeKind::Dir), None);
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(u64::MAX), None);
    }

    mod model {
        //! The table against a plain model: every (path, kind) handed out has one
        //! number, which no other (path, kind) ever had, and which stays until its path
        //! or an ancestor is removed, or the path is made again as the other node kind.
        //! A node numbered before its kind was known keeps that number when it is.

        use super::*;
        use proptest::prelude::*;
        use std::collections::{HashMap, HashSet};

        const PATHS: [&str; 7] = ["/", "/a", "/a/b", "/a/b/c", "/ab", "/a-b", "/b"];

        #[derive(Debug, Clone)]
        enum Op {
            Ino(usize, usize),
            NodeIno(usize),
            RemovePath(usize),
            RemoveSubtree(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0..PATHS.len(), 0..4usize).prop_map(|(p, k)| Op::Ino(p, k)),
                2 => (0..PATHS.len()).prop_map(Op::NodeIno),
                1 => (0..PATHS.len()).prop_map(Op::RemovePath),
                1 => (0..PATHS.len()).prop_map(Op::RemoveSubtree),
            ]
        }

        fn below(p: &str, root: &str) -> bool {
            p == root || root == "/" || p.starts_with(&format!("{root}/"))
        }

        proptest! {
            #[test]
            fn numbers_are_stable_unique_and_never_reused(ops in prop::collection::vec(op(), 1..60)) {
                let mut t = Inodes::default();
                let mut live: HashMap<(&str, InodeKind), u64> = HashMap::new();
                let mut ever: HashSet<u64> = HashSet::from([ROOT_INO]);
                // Nodes numbered before their kind was known.
                let mut undecided: HashMap<&str, u64> = HashMap::new();
                let other = |kind| match kind {
                    InodeKind::Dir => Some(InodeKind::Registration),
                    InodeKind::Registration => Some(InodeKind::Dir),
                    _ => None,
                };
                for op in ops {
                    match op {
                        Op::Ino(p, k) => {
                            let (path, kind) = (PATHS[p], KINDS[k]);
                            if !is_root_dir(path, kind) && other(kind).is_some_and(|o| live.contains_key(&(path, o))) {
                                live.retain(|(q, _), _| *q != path);
                            }
                            let ino = t.ino(path, kind);
                            if is_root_dir(path, kind) {
                                prop_assert_eq!(ino, ROOT_INO);
                            } else if let Some(old) = live.get(&(path, kind)) {
                                prop_assert_eq!(ino, *old, "{} {:?} changed number", path, kind);
                            } else if let Some(u) = undecided.get(path).filter(|_| other(kind).is_some()) {
                                prop_assert_eq!(ino, *u, "{} {:?} took its undecided number", path, kind);
                                live.insert((path, kind), ino);
                            } else {
                                prop_assert!(ever.insert(ino), "{} reused for {} {:?}", ino, path, kind);
                                live.insert((path, kind), ino);
                            }
                            if other(kind).is_some() {
                                undecided.remove(path);
                            }
                        }
                        Op::NodeIno(p) => {
                            let path = PATHS[p];
                            let ino = t.node_ino(path);
                            let known = [InodeKind::Dir, InodeKind::Registration].into_iter().find_map(|k| live.get(&(path, k)));
                            if path == "/" {
                                prop_assert_eq!(ino, ROOT_INO);
                            } else if let Some(k) = known {
                                prop_assert_eq!(ino, *k, "{}: the node's own number", path);
                            } else if let Some(u) = undecided.get(path) {
                                prop_assert_eq!(ino, *u, "{}: asked again", path);
                            } else {
                                prop_assert!(ever.insert(ino), "{} reused for {}'s node", ino, path);
                                undecided.insert(path, ino);
                            }
                        }
                        Op::RemovePath(p) => {
                            undecided.remove(PATHS[p]);
                            let mut gone = t.remove_path(PATHS[p]);
                            gone.sort();
                            let mut want: Vec<u64> =
                                live.iter().filter(|((path, _), _)| *path == PATHS[p]).map(|(_, i)| *i).collect();
                            want.sort();
                            live.retain(|(path, _), _| *path != PATHS[p]);
                            prop_assert_eq!(gone, want);
                        }
                        Op::RemoveSubtree(p) => {
                            undecided.retain(|path, _| !below(path, PATHS[p]));
                            let mut gone = t.remove_subtree(PATHS[p]);
                            gone.sort();
                            let mut want: Vec<u64> =
                                live.iter().filter(|((path, _), _)| below(path, PATHS[p])).map(|(_, i)| *i).collect();
                            want.sort();
                            live.retain(|(path, _), _| !below(path, PATHS[p]));
                            prop_assert_eq!(gone, want);
                        }
                    }
                    for ((path, kind), ino) in &live {
                        prop_assert_eq!(t.existing(path, *kind), Some(*ino));
                        prop_assert_eq!(t.get(*ino), Some(Inode { path: path.to_string(), kind: *kind }));
                    }
                    for ino in undecided.values() {
                        prop_assert_eq!(t.get(*ino), None, "{} is no inode before its kind is known", ino);
                    }
                    for ino in ever.iter().filter(|i| **i != ROOT_INO && !live.values().any(|l| l == *i)) {
                        prop_assert_eq!(t.get(*ino), None, "{} was removed", ino);
                    }
                    prop_assert_eq!(t.get(ROOT_INO), Some(Inode { path: "/".into(), kind: InodeKind::Dir }));
                }
            }
        }
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
