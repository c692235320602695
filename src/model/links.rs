//! Links changed elsewhere on their way to the kernel: a link that appears or goes in
//! data changed elsewhere is echoed like a child (`view.rs`): the echo thread makes a
//! `symlink` or `unlink` on the mount, which the filesystem acknowledges, and watchers
//! of the directory get IN_CREATE or IN_DELETE. Meanwhile the link is [`Pending`]: one
//! that appeared is hidden until its echo arrives, one that went is shown (with its
//! old target) until its echo arrives. If an echo fails, the pending state is dropped
//! and the entry invalidated. The table of pending links is [`Pending`], in `tree.rs`.

use crate::data::links::links;
use crate::model::inodes::{child_path, split_path};
#[cfg(doc)]
use crate::model::tree::Pending;
use crate::model::tree::{KernelNote, Tree};
use crate::model::view::View;

/// The data of directory `dir` (inode `dir_ino`) changed elsewhere from `old` to
/// `new`: the echoes for the links that appeared or went. A link a real child hides
/// was never shown and gets none.
pub(crate) fn changed_elsewhere(tree: &mut Tree, dir: &str, dir_ino: u64, old: &[u8], new: &[u8]) -> Vec<KernelNote> {
    let (old, new) = (links(old), links(new));
    let has = |list: &[(String, String)], name: &str| list.iter().any(|(n, _)| n == name);
    // Children whose kind is not learnt yet hide their links too.
    let children: Vec<String> = match tree.nodes.get(dir) {
        Some(n) => n.children.iter().flat_map(|c| c.keys()).chain(&n.unknown).cloned().collect(),
        None => Vec::new(),
    };
    let mut notes = Vec::new();
    for (name, _) in new.iter().filter(|(n, _)| !has(&old, n) && !children.contains(n)) {
        let path = child_path(dir, name);
        match tree.links.0.get(&path) {
            // Went and came back before its echo: still shown; the stale echo falls back.
            Some(Some(_)) => {
                tree.links.0.remove(&path);
                tree.links.1.remove(&path);
            }
            Some(None) => {}
            None => {
                tree.links.0.insert(path.clone(), None);
                notes.push(KernelNote::LinkCreate { parent: dir_ino, path });
            }
        }
    }
    for (name, target) in old.iter().filter(|(n, _)| !has(&new, n) && !children.contains(n)) {
        let path = child_path(dir, name);
        match tree.links.0.get(&path) {
            // Never shown: its queued echo finds nothing and falls back.
            Some(None) => {
                tree.links.0.remove(&path);
            }
            // Went while a retarget's echo is on its way: its unlink is the last echo.
            Some(Some(_)) => {
                tree.links.1.remove(&path);
            }
            None => {
                tree.links.0.insert(path.clone(), Some(target.clone()));
                notes.push(KernelNote::LinkRemove { parent: dir_ino, path });
            }
        }
    }
    // Retargeted: shown with the new target at once; unlinked and made again by the
    // echo, so watchers of the directory hear of it. One with an echo on its way
    // already needs no other (its echo shows the newest target).
    for (name, target) in new.iter().filter(|(n, _)| !children.contains(n)) {
        let path = child_path(dir, name);
        let moved = old.iter().any(|(n, t)| n == name && t != target);
        if moved && !tree.links.0.contains_key(&path) {
            tree.links.0.insert(path.clone(), Some(target.clone()));
            tree.links.1.insert(path.clone());
            notes.push(KernelNote::LinkRetarget { parent: dir_ino, path });
        }
    }
    notes
}

impl View {
    /// The links of `dir` (whose data is `data`) as shown: those on their way in
    /// hidden, those on their way out still there.
    pub(crate) fn visible_links(&self, dir: &str, data: &[u8]) -> Vec<(String, String)> {
        let tree = self.tree();
        let mut out: Vec<(String, String)> =
            links(data).into_iter().filter(|(n, _)| !tree.links.hidden(&child_path(dir, n))).collect();
        for (path, target) in &tree.links.0 {
            if let (Some((d, name)), Some(target)) = (split_path(path), target) {
                if d == dir && !out.iter().any(|(n, _)| n == name) {
                    out.push((name.to_string(), target.clone()));
                }
            }
        }
        out
    }

    /// The echo `symlink` of the link at `path` arrived: true if it was waiting for it
    /// (it is shown from now).
    pub(crate) fn link_echo_created(&self, path: &str) -> bool {
        let mut tree = self.tree();
        let waiting = tree.links.hidden(path);
        if waiting {
            tree.links.0.remove(path);
        }
        waiting
    }

    /// The echo `unlink` of the link at `path` arrived: true if it was waiting for it.
    /// A retargeted link's is followed by its echo `symlink`: hidden until then.
    pub(crate) fn link_echo_removed(&self, path: &str) -> bool {
        let mut tree = self.tree();
        let waiting = matches!(tree.links.0.get(path), Some(Some(_)));
        if waiting {
            if tree.links.1.remove(path) {
                tree.links.0.insert(path.to_string(), None);
            } else {
                tree.links.0.remove(path);
            }
        }
        waiting
    }

    /// An echo of the link at `path` could not be made: it is shown as its data says.
    pub(crate) fn link_echo_failed(&self, path: &str) {
        let mut tree = self.tree();
        tree.links.0.remove(path);
        tree.links.1.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retargeted_link_is_unlinked_and_made_again_by_its_echo() {
        let mut tree = Tree::default();
        let (x, y) = (&br#"{"a ->": "/x"}"#[..], &br#"{"a ->": "/y"}"#[..]);
        let notes = changed_elsewhere(&mut tree, "/d", 5, x, y);
        assert_eq!(notes, [KernelNote::LinkRetarget { parent: 5, path: "/d/a".into() }]);
        assert!(!tree.links.hidden("/d/a"), "shown (with its new target) until the unlink echo");
        // Retargeted again before its echo: the echo on its way will show the newest.
        assert!(changed_elsewhere(&mut tree, "/d", 5, y, x).is_empty());
        // Removed before its echo: the unlink is the last echo.
        assert!(changed_elsewhere(&mut tree, "/d", 5, x, b"{}").is_empty());
        assert!(tree.links.1.is_empty());
    }

    #[test]
    fn links_changed_elsewhere_wait_for_their_echo() {
        let mut tree = Tree::default();
        let (none, a, b) = (&b"{}"[..], &br#"{"a ->": "/x"}"#[..], &br#"{"b ->": "/y"}"#[..]);
        let create = |path: &str| KernelNote::LinkCreate { parent: 5, path: path.into() };
        let remove = |path: &str| KernelNote::LinkRemove { parent: 5, path: path.into() };
        // Appears: hidden until its echo.
        assert_eq!(changed_elsewhere(&mut tree, "/d", 5, none, a), [create("/d/a")]);
        assert_eq!(tree.links.0.get("/d/a"), Some(&None));
        // Goes again before its echo: never shown, nothing more to echo.
        assert!(changed_elsewhere(&mut tree, "/d", 5, a, none).is_empty());
        assert!(tree.links.0.is_empty());
        // Goes: shown with its old target until its echo; a new one appears meanwhile.
        assert_eq!(changed_elsewhere(&mut tree, "/d", 5, a, b), [create("/d/b"), remove("/d/a")]);
        assert_eq!(tree.links.0.get("/d/a"), Some(&Some("/x".to_string())));
        // Comes back before its echo: simply shown.
        changed_elsewhere(&mut tree, "/d", 5, b, a);
        assert!(!tree.links.0.contains_key("/d/a"));
    }
}
