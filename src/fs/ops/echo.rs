//! What the echo thread's own requests get (see `kernel/echo.rs`): they are
//! acknowledged, and change nothing but what is shown.

use crate::error::{Error, Result};
use crate::fs::attr::{Attr, Opened, ECHO_FH};
use crate::model::inodes::{child_path, InodeKind};
use crate::model::view::Kind;

use super::Fs;

impl Fs {
    /// The echo thread's open (to truncate and close, for the events): acknowledged,
    /// nothing else.
    pub fn open_echo(&self, ino: u64) -> Result<Opened> {
        self.inode(ino)?;
        Ok(Opened { fh: ECHO_FH, no_flush: true })
    }

    /// `stat` for the echo thread: from the cache even while a re-read is in progress
    /// (marked volatile then, so that the kernel does not keep it).
    pub fn getattr_now(&self, ino: u64) -> Result<Attr> {
        let inode = self.inode(ino)?;
        match self.view.cached(&inode.path) {
            Some(node) if inode.kind != InodeKind::Dir => {
                Ok(Attr { volatile: true, ..self.attr_of(ino, inode.kind, &node) })
            }
            _ => self.attr(ino, &inode),
        }
    }

    /// The echo `mknod`/`mkdir` of a child added elsewhere: acknowledged, shown from now.
    pub fn echo_create(&self, parent: u64, name: &str, kind: Kind) -> Result<Attr> {
        let dir = self.dir_path(parent)?;
        if !self.view.echo_created(&dir, name, kind) {
            return Err(Error::NotFound(child_path(&dir, name)));
        }
        let ino = self.view.ino(&child_path(&dir, name), kind.inode());
        Ok(self.volatile_attr(ino, kind))
    }

    /// The echo `unlink`/`rmdir` of a child removed elsewhere: acknowledged.
    pub fn echo_remove(&self, parent: u64, name: &str) -> Result<()> {
        let dir = self.dir_path(parent)?;
        if self.view.echo_removed(&dir, name) || self.echo_link_removed(&dir, name) {
            Ok(())
        } else {
            Err(Error::NotFound(child_path(&dir, name)))
        }
    }
}
