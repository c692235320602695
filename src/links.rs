//! Symbolic links, zc.zk's convention: a property `"NAME ->": "/znode/path"` of a node
//! is a link `NAME` in its directory.
//!
//! Links are not cached anywhere of their own: each lookup, listing and `readlink`
//! reads them from the node's cached data, so they are exactly as fresh as
//! `properties.json`. The kernel is told to revalidate a link's entry on every use
//! (entry TTL 0, see `fuse.rs`), so a link removed, retargeted or hidden by a real
//! child elsewhere is seen at once; a listing is refreshed when the node's data
//! changes (the directory's inode is invalidated then, as for any data change).
//!
//! # Events for links changed elsewhere
//!
//! A link that appears or goes in data changed elsewhere is echoed like a child
//! (`view.rs`): the echo thread makes a `symlink` or `unlink` on the mount, which the
//! filesystem acknowledges, and watchers of the directory get IN_CREATE or IN_DELETE.
//! Meanwhile the link is [`Pending`]: one that appeared is hidden until its echo
//! arrives, one that went is shown (with its old target) until its echo arrives. If
//! an echo fails, the pending state is dropped and the entry invalidated.
//!
//! What `readlink` shows is a path relative to the link's directory, so that the
//! kernel resolves it inside the mount wherever the mount is; zc.zk's absolute
//! targets are relative to ZooKeeper's root (the mount's root), its relative ones to
//! the node holding the link. Chains and loops are the kernel's to follow: a loop is
//! ELOOP after its usual 40 steps, never a hang. A real child hides a link of the
//! same name, as in zc.zk.
//!
//! `ln -s TARGET DIR/NAME` stores the key with a versioned update of DIR's data (a
//! concurrent writer elsewhere makes it retry, never lose a key); `rm DIR/NAME`
//! removes it the same way. Other keys keep their bytes (numbers as written).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use log::{debug, info};

use crate::error::{Error, Result};
use crate::fs::{Attr, FileKind, Fs};
use crate::inodes::{child_path, split_path, Inode, InodeKind};
use crate::literal::{self, Value};
use crate::names::{self, PROPERTIES};
use crate::properties::MAX_DATA_BYTES;
use crate::tree::Tree;
use crate::treefmt::LINK_SUFFIX;
use crate::view::KernelNote;

/// How many times a link change is retried against concurrent writers.
const MAX_ATTEMPTS: usize = 100;

/// Links changed elsewhere whose echo has not arrived yet, by link path: `None` for
/// one that appeared (hidden until its echo `symlink`), `Some(target)` for one that
/// went (shown with that target until its echo `unlink`).
#[derive(Debug, Default)]
pub struct Pending(HashMap<String, Option<String>>);

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
            Some(Some(_)) => {}
            None => {
                tree.links.0.insert(path.clone(), Some(target.clone()));
                notes.push(KernelNote::LinkRemove { parent: dir_ino, path });
            }
        }
    }
    notes
}

/// The links a node's data holds: `(name, stored target)`, in key order. Keys whose
/// value is not a non-empty string, or whose name is no file name, are no links.
pub fn links(data: &[u8]) -> Vec<(String, String)> {
    // Cheap test first: most nodes hold no link, and this runs on every lookup miss.
    if !data.windows(4).any(|w| w == b" ->\"") {
        return Vec::new();
    }
    let Ok(Value::Dict(entries)) =
        std::str::from_utf8(data).map_err(|_| ()).and_then(|t| literal::parse_json(t).map_err(|_| ()))
    else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|(key, value)| {
            let name = key.strip_suffix(LINK_SUFFIX)?;
            let Value::Str(target) = value else { return None };
            // A name the kernel would refuse (over NAME_MAX) is no entry either.
            let ok = !target.is_empty()
                && !target.contains('\0')
                && name.len() <= 255
                && names::check_node_name(name).is_ok();
            (ok && name != PROPERTIES).then(|| (name.to_string(), target))
        })
        .collect()
}

/// The absolute znode path `target` stands for, seen from node `base`; `None` if
/// `..` climbs above the root.
pub fn resolve(base: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') { Vec::new() } else { base.split('/').collect() };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.retain(|p| !p.is_empty());
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    Some(format!("/{}", parts.join("/")))
}

/// What `readlink` shows for a link in `dir` to `target` (as stored): a path from
/// `dir` to the target, relative so that it resolves inside the mount.
pub fn shown_target(dir: &str, target: &str) -> String {
    let to = resolve(dir, target).unwrap_or_else(|| "/".into());
    let from: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    let to: Vec<&str> = to.split('/').filter(|p| !p.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// The znode path to store for `ln -s TARGET` in `dir`: TARGET absolute (under the
/// mountpoint) or relative to `dir`.
pub fn stored_target(dir: &str, target: &str, mountpoint: Option<&Path>) -> Result<String> {
    let outside =
        || Error::InvalidName(format!("link target {target:?} is outside the mount; a link can only point inside it"));
    if target.is_empty() || target.contains('\0') {
        return Err(Error::InvalidName("a link needs a target".into()));
    }
    if target.starts_with('/') {
        let mountpoint = mountpoint.and_then(Path::to_str).ok_or_else(outside)?;
        let rest = target.strip_prefix(mountpoint).ok_or_else(outside)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(outside());
        }
        resolve("/", rest).ok_or_else(outside)
    } else {
        resolve(dir, target).ok_or_else(outside)
    }
}

/// `data` with link `name` set to `target` (or removed, with `None`). Other keys keep
/// their text. Fails on data that is not a JSON object (a bare string, say): adding a
/// key would rewrite it.
pub fn with_link(data: &[u8], path: &str, name: &str, target: Option<&str>) -> Result<Vec<u8>> {
    let mut entries = if data.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        match std::str::from_utf8(data).map_err(|_| ()).and_then(|t| literal::parse_json(t).map_err(|_| ())) {
            Ok(Value::Dict(entries)) => entries,
            _ => {
                return Err(Error::NotPermitted(format!(
                    "{path}: its data is not a JSON object, so it cannot hold a link without being rewritten"
                )))
            }
        }
    };
    let key = format!("{name}{LINK_SUFFIX}");
    match target {
        Some(t) => literal::dict_insert(&mut entries, key, Value::Str(t.to_string())),
        None => entries.retain(|(k, _)| *k != key),
    }
    let out = Value::Dict(entries).to_json().into_bytes();
    if out.len() > MAX_DATA_BYTES {
        return Err(Error::TooLarge(format!("{path}: a link would make its data larger than ZooKeeper accepts")));
    }
    Ok(out)
}

impl Fs {
    /// The link `name` in directory `dir` as the kernel sees it, if there is one (and no
    /// real child of that name).
    pub(crate) fn link_attr(&self, dir: &str, name: &str) -> Result<Option<Attr>> {
        let node = self.view.node(dir)?;
        let Some((_, target)) = self.visible_links(dir, &node.data).into_iter().find(|(n, _)| n == name) else {
            return Ok(None);
        };
        if self.view.child(dir, name)?.is_some() {
            return Ok(None);
        }
        let mut attr = self.attr_of(0, InodeKind::Dir, &node);
        attr.ino = self.view.ino(&child_path(dir, name), InodeKind::Link);
        attr.kind = FileKind::Symlink;
        attr.size = shown_target(dir, &target).len() as u64;
        attr.nlink = 1;
        attr.perm = 0o777;
        Ok(Some(attr))
    }

    /// The link entries of directory `dir` that no real child hides.
    pub(crate) fn link_entries(&self, dir: &str) -> Result<Vec<(u64, String)>> {
        let node = self.view.node(dir)?;
        Ok(self
            .visible_links(dir, &node.data)
            .into_iter()
            .filter(|(name, _)| !self.view.lists_child(dir, name))
            .map(|(name, _)| (self.view.ino(&child_path(dir, &name), InodeKind::Link), name))
            .collect())
    }

    /// `stat` of a link inode.
    pub(crate) fn link_inode_attr(&self, inode: &Inode) -> Result<Attr> {
        let (dir, name) = split_path(&inode.path).ok_or_else(|| Error::NotFound(inode.path.clone()))?;
        self.link_attr(dir, name)?.ok_or_else(|| Error::NotFound(inode.path.clone()))
    }

    /// `readlink`.
    pub fn readlink(&self, ino: u64) -> Result<String> {
        let inode = self.inode(ino)?;
        if inode.kind != InodeKind::Link {
            return Err(Error::InvalidName(format!("{} is not a symbolic link", inode.path)));
        }
        let (dir, name) = split_path(&inode.path).ok_or_else(|| Error::NotFound(inode.path.clone()))?;
        let node = self.view.node(dir)?;
        let target = self.visible_links(dir, &node.data).into_iter().find(|(n, _)| n == name).map(|(_, t)| t);
        match target {
            Some(t) if self.view.child(dir, name)?.is_none() => Ok(shown_target(dir, &t)),
            _ => Err(Error::NotFound(inode.path)),
        }
    }

    /// The links of `dir` (whose data is `data`) as shown: those on their way in
    /// hidden, those on their way out still there.
    fn visible_links(&self, dir: &str, data: &[u8]) -> Vec<(String, String)> {
        let tree = self.view.tree();
        let mut out: Vec<(String, String)> =
            links(data).into_iter().filter(|(n, _)| tree.links.0.get(&child_path(dir, n)) != Some(&None)).collect();
        for (path, target) in &tree.links.0 {
            if let (Some((d, name)), Some(target)) = (split_path(path), target) {
                if d == dir && !out.iter().any(|(n, _)| n == name) {
                    out.push((name.to_string(), target.clone()));
                }
            }
        }
        out
    }

    /// The echo `symlink` of a link that appeared elsewhere: acknowledged, shown from now.
    pub fn echo_link_created(&self, parent: u64, name: &str) -> Result<Attr> {
        let dir = self.dir_path(parent)?;
        let path = child_path(&dir, name);
        let waiting = {
            let mut tree = self.view.tree();
            let waiting = tree.links.0.get(&path) == Some(&None);
            if waiting {
                tree.links.0.remove(&path);
            }
            waiting
        };
        if !waiting {
            return Err(Error::NotFound(path));
        }
        self.link_attr(&dir, name)?.ok_or(Error::NotFound(path))
    }

    /// The echo `unlink` of a link that went elsewhere: true if it was waiting for it.
    pub(crate) fn echo_link_removed(&self, dir: &str, name: &str) -> bool {
        let path = child_path(dir, name);
        let mut tree = self.view.tree();
        let waiting = matches!(tree.links.0.get(&path), Some(Some(_)));
        if waiting {
            tree.links.0.remove(&path);
        }
        waiting
    }

    /// An echo of a link could not be made: the link is shown as its data says.
    pub fn echo_link_failed(&self, path: &str) {
        self.view.tree().links.0.remove(path);
    }

    /// `ln -s TARGET DIR/NAME`: stores `"NAME ->": "/znode/path"` in DIR's data.
    pub fn symlink(&self, parent: u64, name: &str, target: &str) -> Result<Attr> {
        self.writable()?;
        let dir = self.dir_path(parent)?;
        let path = child_path(&dir, name);
        self.changeable(&dir)?;
        if name == PROPERTIES || self.view.child(&dir, name)?.is_some() {
            return Err(Error::Exists(path));
        }
        names::check_node_name(name)?;
        let stored = stored_target(&dir, target, self.mountpoint())?;
        self.change_link(&dir, name, Some(&stored))?;
        info!("linked {path} -> {stored}");
        self.link_attr(&dir, name)?.ok_or(Error::NotFound(path))
    }

    /// `rm DIR/NAME` of a link: removes the key. `Ok(false)` if there is no such link.
    pub(crate) fn unlink_link(&self, dir: &str, name: &str) -> Result<bool> {
        let node = self.view.node(dir)?;
        if !links(&node.data).iter().any(|(n, _)| n == name) {
            return Ok(false);
        }
        self.change_link(dir, name, None)?;
        info!("unlinked {}", child_path(dir, name));
        Ok(true)
    }

    /// Sets or removes link `name` of `dir` with a versioned read-modify-write.
    fn change_link(&self, dir: &str, name: &str, target: Option<&str>) -> Result<()> {
        let session = Arc::clone(self.view.session());
        let _local = self.view.local(dir);
        for _ in 0..MAX_ATTEMPTS {
            let p = dir.to_string();
            let (old, stat) = session.call(dir, |c| async move { c.get_data(&p).await })?;
            let present = links(&old).iter().any(|(n, _)| n == name);
            match (target, present) {
                (Some(_), true) => return Err(Error::Exists(child_path(dir, name))),
                (None, false) => return Err(Error::NotFound(child_path(dir, name))),
                _ => {}
            }
            let data = with_link(&old, dir, name, target)?;
            let outcome = session.set_if_version(dir, &data, stat.version)?;
            if let Some(stat) = outcome {
                self.view.local_data(dir, data, stat);
                // properties.json shows the new data: the kernel must drop its size and pages.
                let ino = self.view.tree().inodes.existing(dir, InodeKind::Properties);
                self.view.send(ino.map(|ino| KernelNote::InvalInode { ino }).into_iter().collect());
                return Ok(());
            }
            debug!("{dir} changed under a link update; retrying");
        }
        Err(Error::Unavailable(format!("{dir}: too many concurrent writers; link not changed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_the_string_valued_arrow_keys() {
        let data = br#"{"address": "1.2.3.4:80", "providers ->": "/cms/providers", "n ->": 5, "e ->": "", "a/b ->": "/x", "threads =>": "/f"}"#;
        assert_eq!(links(data), vec![("providers".to_string(), "/cms/providers".to_string())]);
        assert!(links(b"plain string ->\"").is_empty());
        assert!(links(format!(r#"{{"{} ->": "/x"}}"#, "n".repeat(256)).as_bytes()).is_empty());
        assert!(links(b"").is_empty());
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

    #[test]
    fn targets_resolve_inside_the_mount() {
        // zc.zk's README: /a/b/l -> c is /a/b/c, /a/b/l2 -> ../c is /a/c.
        assert_eq!(resolve("/a/b", "c").as_deref(), Some("/a/b/c"));
        assert_eq!(resolve("/a/b", "../c").as_deref(), Some("/a/c"));
        assert_eq!(resolve("/a/b", "/cms/./providers/").as_deref(), Some("/cms/providers"));
        assert_eq!(resolve("/a", "../../x"), None);
        assert_eq!(shown_target("/lb/pools/cms", "/cms/providers"), "../../../cms/providers");
        assert_eq!(shown_target("/", "/cms/providers"), "cms/providers");
        assert_eq!(shown_target("/a/b", "c"), "c");
        assert_eq!(shown_target("/a/b", "../c"), "../c");
        assert_eq!(shown_target("/a/b", "/a/b"), ".");
        assert_eq!(shown_target("/a/b", "/a"), "..");
        assert_eq!(shown_target("/a", "../../../x"), "..");
    }

    #[test]
    fn ln_targets_are_stored_as_znode_paths() {
        let m = Some(Path::new("/mnt/zk"));
        assert_eq!(stored_target("/lb", "/mnt/zk/cms/providers", m).unwrap(), "/cms/providers");
        assert_eq!(stored_target("/lb", "/mnt/zk", m).unwrap(), "/");
        assert_eq!(stored_target("/lb/pools", "../../cms", m).unwrap(), "/cms");
        for bad in ["/etc/passwd", "/mnt/zkother/x", "../../x", ""] {
            assert!(stored_target("/lb", bad, m).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_link_change_keeps_the_other_keys_as_written() {
        let data = br#"{"big": 123456789012345678901234567890, "f": 1.10}"#;
        let added = with_link(data, "/n", "l", Some("/x")).unwrap();
        assert_eq!(added, br#"{"big":123456789012345678901234567890,"f":1.10,"l ->":"/x"}"#);
        assert_eq!(with_link(&added, "/n", "l", None).unwrap(), br#"{"big":123456789012345678901234567890,"f":1.10}"#);
        assert_eq!(with_link(b"", "/n", "l", Some("/x")).unwrap(), br#"{"l ->":"/x"}"#);
        assert!(with_link(b"just a string", "/n", "l", Some("/x")).is_err());
    }
}
