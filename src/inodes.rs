//! Inode numbers for the paths the kernel has been shown.
//!
//! A znode path gives one inode for its directory (or registration file) and, for a
//! directory, one for its `properties.json`. A node that is deleted loses its numbers,
//! so a node created again under the same name is a new file to the kernel, and a
//! program holding the old one gets ENOENT instead of the new node's data.

use std::collections::HashMap;

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
    by_key: HashMap<(String, InodeKind), u64>,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut t = Inodes { next: ROOT_INO + 1, by_ino: HashMap::new(), by_key: HashMap::new() };
        t.by_ino.insert(ROOT_INO, Inode { path: "/".into(), kind: InodeKind::Dir });
        t.by_key.insert(("/".into(), InodeKind::Dir), ROOT_INO);
        t
    }
}

impl Inodes {
    /// The inode number of `path` as `kind`, handing out a new one if needed.
    pub fn ino(&mut self, path: &str, kind: InodeKind) -> u64 {
        if let Some(ino) = self.by_key.get(&(path.to_string(), kind)) {
            return *ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_key.insert((path.to_string(), kind), ino);
        self.by_ino.insert(ino, Inode { path: path.to_string(), kind });
        ino
    }

    /// The inode number of `path` as `kind`, if the kernel was given one.
    pub fn existing(&self, path: &str, kind: InodeKind) -> Option<u64> {
        self.by_key.get(&(path.to_string(), kind)).copied()
    }

    /// What `ino` stands for.
    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.by_ino.get(&ino)
    }

    /// Forgets `path` as `kind` alone; the number dropped, if it had one.
    pub fn remove_one(&mut self, path: &str, kind: InodeKind) -> Option<u64> {
        let ino = self.by_key.remove(&(path.to_string(), kind))?;
        self.by_ino.remove(&ino);
        Some(ino)
    }

    /// Forgets `path` and everything below it; returns the numbers dropped.
    pub fn remove_subtree(&mut self, path: &str) -> Vec<(u64, Inode)> {
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        let gone: Vec<u64> = self
            .by_ino
            .iter()
            .filter(|(ino, i)| **ino != ROOT_INO && (i.path == path || i.path.starts_with(&prefix)))
            .map(|(ino, _)| *ino)
            .collect();
        gone.into_iter()
            .filter_map(|ino| {
                let inode = self.by_ino.remove(&ino)?;
                self.by_key.remove(&(inode.path.clone(), inode.kind));
                Some((ino, inode))
            })
            .collect()
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
    fn paths_join_and_split() {
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
        assert_eq!(split_path("/a/b"), Some(("/a", "b")));
        assert_eq!(split_path("/a"), Some(("/", "a")));
        assert_eq!(split_path("/"), None);
    }
}
