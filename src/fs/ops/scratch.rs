//! Temporary files local to the mount, as operations of the filesystem over the
//! scratch table (`fs/scratch.rs`).

use super::Fs;
use crate::error::Result;
use crate::fs::attr::{Attr, Opened};
use crate::fs::handles::OpenMode;
use crate::fs::scratch::*;

impl Fs {
    /// The scratch file `name` in `dir`, if there is one.
    pub(crate) fn scratch_lookup(&self, dir: &str, name: &str) -> Option<Attr> {
        self.scratch.attr(self.scratch.lookup(dir, name)?)
    }

    /// `open` with the kernel's flags by thread `tid`: scratch files here, everything
    /// else in [`Fs::open_by`].
    pub fn open_with_flags(&self, ino: u64, flags: i32, tid: u32) -> Result<Opened> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY && self.scratch.attr(ino).is_some() {
            self.writable()?;
        }
        match self.scratch.open(ino, flags) {
            Some(fh) => fh.map(opened),
            None => self.open_by(ino, OpenMode::from_flags(flags), Some(tid)),
        }
    }

    pub(crate) fn scratch_read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        self.scratch.read(fh, offset, size)
    }

    pub(crate) fn scratch_write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        self.scratch.write(fh, offset, data)
    }

    pub(crate) fn scratch_release(&self, fh: u64) {
        self.scratch.release(fh)
    }

    /// `setattr` of a scratch file; `None` if `ino` is not one.
    pub fn scratch_setattr(&self, ino: u64, changes: Changes) -> Option<Result<Attr>> {
        if let Err(e) = self.writable() {
            return self.scratch.attr(ino).map(|_| Err(e));
        }
        match self.scratch.change(ino, changes)? {
            Ok(()) => self.scratch.attr(ino).map(Ok),
            Err(e) => Some(Err(e)),
        }
    }

    /// Scratch files of a removed directory go with it.
    pub(crate) fn scratch_forget_dir(&self, dir: &str) {
        self.scratch.forget_dir(dir)
    }
}
