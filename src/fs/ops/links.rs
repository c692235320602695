//! Symbolic links as the kernel sees them, zc.zk's convention: a property `"NAME ->":
//! "/znode/path"` of a node is a link `NAME` in its directory (parsed in
//! `data/links.rs`; echoes of links changed elsewhere wait in `model/links.rs`).
//!
//! Links are not cached anywhere of their own: each lookup, listing and `readlink`
//! reads them from the node's cached data, so they are exactly as fresh as
//! `properties.json`. The kernel is told to revalidate a link's entry on every use
//! (entry TTL 0, see `fuse.rs`), so a link removed, retargeted or hidden by a real
//! child elsewhere is seen at once; a listing is refreshed when the node's data
//! changes (the directory's inode is invalidated then, as for any data change).
//! Chains and loops are the kernel's to follow: a loop is ELOOP after its usual 40
//! steps, never a hang. A real child hides a link of the same name, as in zc.zk.
//!
//! `ln -s TARGET DIR/NAME` stores the key with a versioned update of DIR's data (a
//! concurrent writer elsewhere makes it retry, never lose a key); `rm DIR/NAME`
//! removes it the same way. Other keys keep their bytes (numbers as written).

use std::sync::Arc;

use log::{debug, info};

use super::Fs;
use crate::data::links::{links, shown_target, stored_target, with_link};
use crate::data::names::{self, PROPERTIES};
use crate::error::{Error, Result};
use crate::fs::attr::{Attr, FileKind};
use crate::model::inodes::{child_path, split_path, Inode, InodeKind};
use crate::model::view::KernelNote;

/// How many times a link change is retried against concurrent writers.
const MAX_ATTEMPTS: usize = 100;

impl Fs {
    /// The link `name` in directory `dir` as the kernel sees it, if there is one (and no
    /// real child of that name).
    pub(crate) fn link_attr(&self, dir: &str, name: &str) -> Result<Option<Attr>> {
        let node = self.view.node(dir)?;
        let Some((_, target)) = self.view.visible_links(dir, &node.data).into_iter().find(|(n, _)| n == name) else {
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
            .view
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
        let target = self.view.visible_links(dir, &node.data).into_iter().find(|(n, _)| n == name).map(|(_, t)| t);
        match target {
            Some(t) if self.view.child(dir, name)?.is_none() => {
                let shown = shown_target(dir, &t);
                // The kernel takes at most PATH_MAX - 1 bytes (more is EIO, with
                // nothing said): another client may store any length.
                if shown.len() >= libc::PATH_MAX as usize {
                    let msg = format!(
                        "{}: the link's target is {} bytes as shown, over the {} a symbolic link can hold",
                        inode.path,
                        shown.len(),
                        libc::PATH_MAX - 1
                    );
                    log::warn!("{msg}");
                    return Err(Error::NameTooLong(msg));
                }
                Ok(shown)
            }
            _ => Err(Error::NotFound(inode.path)),
        }
    }

    /// The echo `symlink` of a link that appeared elsewhere: acknowledged, shown from now.
    pub fn echo_link_created(&self, parent: u64, name: &str) -> Result<Attr> {
        let dir = self.dir_path(parent)?;
        let path = child_path(&dir, name);
        if !self.view.link_echo_created(&path) {
            return Err(Error::NotFound(path));
        }
        self.link_attr(&dir, name)?.ok_or(Error::NotFound(path))
    }

    /// The echo `unlink` of a link that went elsewhere: true if it was waiting for it.
    pub(crate) fn echo_link_removed(&self, dir: &str, name: &str) -> bool {
        self.view.link_echo_removed(&child_path(dir, name))
    }

    /// An echo of a link could not be made: the link is shown as its data says.
    pub fn echo_link_failed(&self, path: &str) {
        self.view.link_echo_failed(path);
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

    /// `rename` of link `name` in `dir` to `new_name` in `new_dir`: the key is renamed in
    /// one versioned update of `dir`'s data, replacing a link `new_name` there (not with
    /// `noreplace`). `Ok(false)` if `name` is no link. Into another directory it is
    /// `EXDEV` (two nodes' data, which one update cannot change together): `mv` then
    /// copies the link, with `ln -s` and `rm`.
    pub(crate) fn rename_link(
        &self,
        dir: &str,
        name: &str,
        new_dir: &str,
        new_name: &str,
        noreplace: bool,
    ) -> Result<bool> {
        let node = self.view.node(dir)?;
        if !self.view.visible_links(dir, &node.data).iter().any(|(n, _)| n == name)
            || self.view.child(dir, name)?.is_some()
        {
            return Ok(false);
        }
        let to = child_path(new_dir, new_name);
        if new_dir != dir {
            return Err(Error::CrossDevice(format!(
                "{} is a key of {dir}'s data; copy it to {to}",
                child_path(dir, name)
            )));
        }
        if new_name == name {
            return Ok(true); // rename(2) of a file onto itself does nothing
        }
        if new_name == PROPERTIES
            || self.view.child(dir, new_name)?.is_some()
            || self.scratch.lookup(dir, new_name).is_some()
        {
            return Err(Error::Exists(format!("{to}: a link can only replace a link")));
        }
        names::check_node_name(new_name)?;
        self.update_links(dir, |old| {
            let found = links(old);
            let Some((_, target)) = found.iter().find(|(n, _)| n == name) else {
                return Err(Error::NotFound(child_path(dir, name)));
            };
            if noreplace && found.iter().any(|(n, _)| n == new_name) {
                return Err(Error::Exists(to.clone()));
            }
            let without = with_link(old, dir, name, None)?;
            with_link(&without, dir, new_name, Some(target))
        })?;
        info!("renamed link {} to {new_name}", child_path(dir, name));
        Ok(true)
    }

    /// Sets or removes link `name` of `dir` with a versioned read-modify-write.
    fn change_link(&self, dir: &str, name: &str, target: Option<&str>) -> Result<()> {
        self.update_links(dir, |old| {
            let present = links(old).iter().any(|(n, _)| n == name);
            match (target, present) {
                (Some(_), true) => Err(Error::Exists(child_path(dir, name))),
                (None, false) => Err(Error::NotFound(child_path(dir, name))),
                _ => with_link(old, dir, name, target),
            }
        })
    }

    /// Replaces `dir`'s data by `change` of it, with a versioned read-modify-write that
    /// a concurrent writer elsewhere makes retry, never lose a key.
    fn update_links(&self, dir: &str, change: impl Fn(&[u8]) -> Result<Vec<u8>>) -> Result<()> {
        let session = Arc::clone(self.view.session());
        let _local = self.view.local(dir);
        for _ in 0..MAX_ATTEMPTS {
            let p = dir.to_string();
            let (old, stat) = session.call(dir, |c| async move { c.get_data(&p).await })?;
            let data = change(&old)?;
            let outcome = session.set_if_version(dir, &data, stat.version)?;
            if let Some(stat) = outcome {
                self.view.local_data(dir, data, stat);
                // properties.json shows the new data: the kernel must drop its size and pages.
                let ino = self.view.existing_ino(dir, InodeKind::Properties);
                self.view.send(ino.map(|ino| KernelNote::InvalInode { ino }).into_iter().collect());
                return Ok(());
            }
            debug!("{dir} changed under a link update; retrying");
        }
        Err(Error::Unavailable(format!("{dir}: too many concurrent writers; link not changed")))
    }
}
