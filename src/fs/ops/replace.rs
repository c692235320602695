//! Replacing a data file as editing tools do: the `rename`, `unlink` and `create`
//! calls that `sed -i`, vim, nano, `mv`, `install`, Python's `os.replace` and
//! configuration management (Ansible, Salt, Puppet) make around `properties.json` and
//! registration files. The temporary files they write are in [`crate::fs::scratch`].
//!
//! What ends a temporary (scratch) file:
//! * `rename(tmp, properties.json)` applies its content as one *set* of the node's
//!   properties; onto a registration of this mount it sets the registration's
//!   properties (`pid` kept); onto a free `HOST:PORT` name it registers with them, in
//!   one create. Content that is not one JSON object fails the rename (EINVAL), is
//!   logged, and changes nothing. The set is a compare-and-set against the version the
//!   renaming thread last read, else the one when the scratch file was made: another
//!   writer's change in between fails the rename with ESTALE (`crate::fs::handles`).
//!   It costs the ensemble nothing more than a plain set (the version rides along).
//! * `rename(tmp, other)` moves it to another scratch name; `unlink` drops it.
//!
//! Three kernel details shape the rest:
//! * After a rename the kernel moves its dentry: `properties.json` now names the
//!   scratch file's inode. That inode becomes an *alias* of the node's data file, and
//!   the echo thread makes the kernel forget the entry (queued, never sent from inside
//!   the request: NOTES.md), so the next lookup finds the node's own inode again.
//!   Scratch and alias attributes are never cached by the kernel.
//! * Tools that cannot rename copy instead: `mv` from another filesystem and `install`
//!   unlink the target, then create it with `O_EXCL`. `unlink(properties.json)`
//!   changes nothing, but for a few seconds the *process* that made it no longer finds
//!   the file, so that its `O_EXCL` create reaches zkfs — which opens the properties
//!   for a set. Every other process still sees `properties.json`.
//! * Renaming `properties.json` or a registration *away* (vim's backup, `mv` to a
//!   temporary name) fails with EXDEV, which such tools answer by copying: the
//!   original stays, as a node always has its data. The copying process then unlinks
//!   the source (vim, to write it anew): for one of this mount's registrations that
//!   unlink is taken as the end of the copy, like `unlink(properties.json)` above,
//!   so the server is never unregistered, not even for a moment.

use log::{debug, info, warn};
use serde_json::json;

use super::Fs;
use crate::data::document::{Document, Progress};
use crate::data::names::PROPERTIES;
use crate::data::properties::{self, Properties, MAX_DATA_BYTES};
use crate::error::{Error, Result};
use crate::fs::attr::{process_of, Attr, Opened};
use crate::fs::handles::OpenMode;
use crate::fs::scratch::{classify, opened, NameUse};
use crate::model::inodes::{child_path, Inode, InodeKind};
use crate::model::view::{KernelNote, Kind};
use crate::zookeeper::Mode;

/// The one JSON object a scratch file holds, or why it is not one.
fn parse_object(bytes: &[u8]) -> Result<Properties> {
    let mut doc = Document::new();
    match doc.write(Some(0), bytes)? {
        Progress::Complete(props) => Ok(props),
        Progress::Incomplete => Err(Error::InvalidDocument("incomplete JSON object".into())),
        Progress::Nothing => Err(Error::InvalidDocument("empty file; to clear the properties, write {}".into())),
    }
}

impl Fs {
    /// `lookup` as asked by thread `tid` (see the module docs on hidden files).
    pub fn lookup_by(&self, parent: u64, name: &str, tid: u32) -> Result<Attr> {
        if self.scratch.hides_anything() {
            let dir = self.dir_path(parent)?;
            if self.scratch.hidden_from(&dir, name, tid) {
                return Err(Error::NotFound(child_path(&dir, name)));
            }
        }
        self.lookup(parent, name)
    }

    /// `create`/`mknod` of any file by thread `tid`: a registration, `properties.json`
    /// again (after the unlink of `mv` or `install`), or a scratch file. `flags` are
    /// the open flags of a `create`; `perm` the mode after the umask.
    pub fn create_file(
        &self,
        parent: u64,
        name: &str,
        tid: u32,
        flags: Option<i32>,
        perm: u32,
    ) -> Result<(Attr, Option<Opened>)> {
        self.writable()?;
        let dir = self.dir_path(parent)?;
        self.changeable(&child_path(&dir, name))?;
        match classify(name)? {
            NameUse::Registration if !self.scratch.hidden_from(&dir, name, tid) => {
                let mode = flags.map(|f| match OpenMode::from_flags(f) {
                    OpenMode::Read => OpenMode::Set,
                    m => m,
                });
                match self.create(parent, name, process_of(tid), mode) {
                    // Made meanwhile by a racing `touch` here or on another host (it
                    // was not shown yet): `open(O_CREAT)` without O_EXCL opens what is
                    // there, as on a local disk — if this mount may write it.
                    Err(Error::Exists(path)) if flags.is_some_and(|f| f & libc::O_EXCL == 0) => {
                        let opened = self.open_existing_registration(&path, mode.unwrap_or(OpenMode::Set), tid);
                        // The kernel may have listed the directory without it: its
                        // cached listing goes (queued: never from inside a request).
                        self.view.send(vec![KernelNote::InvalInode { ino: parent }]);
                        opened
                    }
                    other => other,
                }
            }
            // A data file this process unlinked a moment ago, created again: it never
            // went, so open it for a set.
            NameUse::Registration | NameUse::Properties => {
                let Some(flags) = flags else { return Err(Error::Exists(child_path(&dir, name))) };
                self.scratch.unhide(&dir, name);
                let ino = if name == PROPERTIES {
                    self.view.ino(&dir, InodeKind::Properties)
                } else {
                    self.view.ino(&child_path(&dir, name), InodeKind::Registration)
                };
                let mode = match OpenMode::from_flags(flags) {
                    OpenMode::Read => OpenMode::Set,
                    m => m,
                };
                let opened = self.open_by(ino, mode, Some(tid))?;
                let attr = self.getattr(ino)?;
                Ok((attr, Some(opened)))
            }
            NameUse::Scratch => {
                if self.view.child(&dir, name)?.is_some() {
                    return Err(Error::Exists(child_path(&dir, name)));
                }
                // The data it may replace, as it is now: what a rename of this file
                // onto `properties.json` is based on if its process never read that.
                let base = self.view.node(&dir).ok().map(|n| n.stat.version);
                let (ino, fh) = self.scratch.create(&dir, name, perm, (self.uid, self.gid), flags, base)?;
                debug!("{}: a temporary file local to this mount", child_path(&dir, name));
                let attr = self.scratch.attr(ino).ok_or(Error::Stale)?;
                Ok((attr, fh.map(opened)))
            }
        }
    }

    /// `open(O_CREAT)` of registration `path` that a create found already there: opens
    /// it if it is this mount's, EPERM if another session's, EEXIST if not a
    /// registration.
    fn open_existing_registration(&self, path: &str, mode: OpenMode, tid: u32) -> Result<(Attr, Option<Opened>)> {
        let p = path.to_string();
        let Some(stat) = self.session.call(path, |c| async move { c.check_stat(&p).await })? else {
            // Gone again (a racing `rm`): the kernel will ask again.
            return Err(Error::Exists(path.to_string()));
        };
        if stat.ephemeral_owner == 0 {
            return Err(Error::Exists(path.to_string()));
        }
        if !self.own(&stat) {
            return Err(super::other_session(path));
        }
        let ino = self.view.ino(path, InodeKind::Registration);
        let opened = self.open_by(ino, mode, Some(tid))?;
        let attr = self.getattr(ino)?;
        Ok((attr, Some(opened)))
    }

    /// `unlink` by thread `tid`: a scratch file goes; `properties.json` stays, but is
    /// out of that process's sight for a moment (see the module docs). So does a
    /// registration that this process was just told to copy (EXDEV) rather than
    /// rename: its unlink ends that copy, and must not unregister the server.
    pub fn unlink_by(&self, parent: u64, name: &str, tid: u32) -> Result<()> {
        self.writable()?;
        let dir = self.dir_path(parent)?;
        if self.scratch.unlink(&dir, name) {
            return Ok(());
        }
        if name == PROPERTIES || self.scratch.take_copied(&dir, name, tid) {
            debug!("{}: kept, and out of this process's sight for a moment", child_path(&dir, name));
            self.scratch.hide(&dir, name, process_of(tid));
            return Ok(());
        }
        self.unlink(parent, name)
    }

    /// `rename` by thread `tid`; see the module docs for what each case does.
    pub fn rename(&self, parent: u64, name: &str, new_parent: u64, new_name: &str, flags: u32, tid: u32) -> Result<()> {
        self.writable()?;
        if flags & (libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT) != 0 {
            return Err(Error::Unsupported("exchanging two files"));
        }
        let dir = self.dir_path(parent)?;
        let new_dir = self.dir_path(new_parent)?;
        let from = child_path(&dir, name);
        let to = child_path(&new_dir, new_name);
        self.changeable(&to)?;
        if self.scratch.lookup(&dir, name).is_none() {
            if self.rename_link(&dir, name, &new_dir, new_name, flags & libc::RENAME_NOREPLACE != 0)? {
                return Ok(());
            }
            return Err(self.rename_away(&dir, name, &new_dir, new_name, tid));
        }
        let target = classify(new_name)?;
        if flags & libc::RENAME_NOREPLACE != 0
            && (target == NameUse::Properties
                || self.scratch.lookup(&new_dir, new_name).is_some()
                || self.view.child(&new_dir, new_name)?.is_some())
        {
            return Err(Error::Exists(to));
        }
        if target == NameUse::Scratch {
            return match self.view.child(&new_dir, new_name)?.map(|c| c.kind) {
                Some(Kind::Dir) => Err(Error::IsDir(to)),
                Some(Kind::Registration) => Err(Error::Exists(to)),
                None => self.scratch.rename(&dir, name, &new_dir, new_name),
            };
        }
        let (ino, bytes, base) = self.scratch.content(&dir, name).ok_or_else(|| Error::NotFound(from.clone()))?;
        let shown = if target == NameUse::Properties { child_path(&new_dir, PROPERTIES) } else { to.clone() };
        let applied = parse_object(&bytes)
            .and_then(|written| self.apply_renamed(&new_dir, new_name, target, written, &bytes, tid, base));
        let target_ino = match applied {
            Ok(target_ino) => target_ino,
            Err(e) => {
                warn!("refused rename of {from} onto {shown}: {e}; nothing was changed");
                return Err(e);
            }
        };
        info!("{shown} set from {from}");
        self.scratch.retire(&dir, name, ino, target_ino);
        self.scratch.unhide(&new_dir, new_name);
        // The kernel now shows the scratch inode under the target's name, and the
        // target's own inode may hold the old bytes: make it forget both.
        self.view.send(vec![
            KernelNote::InvalEntry { parent: new_parent, name: new_name.to_string() },
            KernelNote::InvalInode { ino: target_ino },
        ]);
        Ok(())
    }

    /// Why `name`, not a scratch file, cannot be renamed to `new_name`.
    fn rename_away(&self, dir: &str, name: &str, new_dir: &str, new_name: &str, tid: u32) -> Error {
        let registration = matches!(self.view.child(dir, name), Ok(Some(c)) if c.kind == Kind::Registration);
        let own = registration && self.view.node(&child_path(dir, name)).is_ok_and(|n| self.own(&n.stat));
        let to_scratch = matches!(classify(new_name), Ok(NameUse::Scratch))
            && matches!(self.view.child(new_dir, new_name), Ok(None));
        if (name == PROPERTIES || registration) && to_scratch {
            if own {
                self.scratch.copied(dir, name, process_of(tid));
            }
            let from = child_path(dir, name);
            debug!("{from} cannot be renamed away (it is the node's data): EXDEV, so that the tool copies it");
            return Error::CrossDevice(format!("{from} stays where it is; copy it instead"));
        }
        if self.onto_a_full_directory(dir, name, new_dir, new_name) {
            return Error::NotEmpty(child_path(new_dir, new_name));
        }
        Error::Unsupported("rename")
    }

    /// True if directory `name` would be renamed onto a directory that is not empty
    /// (children, links or temporary files), which POSIX refuses with ENOTEMPTY before anything else.
    fn onto_a_full_directory(&self, dir: &str, name: &str, new_dir: &str, new_name: &str) -> bool {
        let is_dir = |d: &str, n: &str| matches!(self.view.child(d, n), Ok(Some(c)) if c.kind == Kind::Dir);
        if !is_dir(dir, name) || !is_dir(new_dir, new_name) {
            return false;
        }
        let to = child_path(new_dir, new_name);
        let p = to.clone();
        let children = self.session.call(&to, |c| async move { c.check_stat(&p).await });
        let links = self.view.node(&to).map(|n| !crate::data::links::links(&n.data).is_empty());
        matches!(children, Ok(Some(stat)) if stat.num_children > 0)
            || matches!(links, Ok(true))
            || self.scratch.holds_any(&to)
    }

    /// Applies `written` (parsed from `text`, the file's bytes) to the data file `name` of
    /// `dir` as one compare-and-set against the version the renaming thread last read
    /// of it, else `created_at` (the version of `dir`'s properties when the scratch file
    /// was made); returns its inode.
    #[allow(clippy::too_many_arguments)]
    fn apply_renamed(
        &self,
        dir: &str,
        name: &str,
        target: NameUse,
        written: Properties,
        text: &[u8],
        tid: u32,
        created_at: Option<i32>,
    ) -> Result<u64> {
        if target == NameUse::Properties {
            let inode = Inode { path: dir.to_string(), kind: InodeKind::Properties };
            let base = self.handles.read_version(tid, &inode).or(created_at);
            let version = self.handles.apply(&inode, OpenMode::Set, text, base)?;
            self.handles.wrote(tid, &inode, version);
            return Ok(self.view.ino(dir, InodeKind::Properties));
        }
        let path = child_path(dir, name);
        match self.view.child(dir, name)?.map(|c| c.kind) {
            Some(Kind::Dir) => return Err(Error::IsDir(path)),
            Some(Kind::Registration) => {
                let inode = Inode { path: path.clone(), kind: InodeKind::Registration };
                let base = self.handles.read_version(tid, &inode);
                let version = self.handles.apply(&inode, OpenMode::Set, text, base)?;
                self.handles.wrote(tid, &inode, version);
            }
            None => self.register_with(&path, process_of(tid), written)?,
        }
        Ok(self.view.ino(&path, InodeKind::Registration))
    }

    /// Registers `path` with `written` and the renaming process's pid, in one create.
    fn register_with(&self, path: &str, pid: u32, written: Properties) -> Result<()> {
        let mut props = Properties::new();
        props.insert("pid".into(), json!(pid));
        let data = properties::encode(&properties::merge(props, written));
        if data.len() > MAX_DATA_BYTES {
            return Err(Error::TooLarge(format!(
                "{path}: {} bytes is more than the {MAX_DATA_BYTES} bytes ZooKeeper accepts for a node",
                data.len()
            )));
        }
        let _local = self.view.local(path);
        let acl = self.session.registration_acl();
        let (p, d) = (path.to_string(), data.clone());
        self.session.call(path, |c| c.create(&p, &d, Mode::Ephemeral, &acl))?;
        info!("registered {path} (pid {pid})");
        self.session.remember_registration(path, &data);
        self.view.local_created(path, Kind::Registration);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_json_object_can_be_applied() {
        assert!(parse_object(b"{\"a\": 1}\n").is_ok());
        for bad in [&b""[..], b"  \n", b"{\"a\": ", b"[1]", b"{} {}", b"{\"a\": 1} x"] {
            assert_eq!(parse_object(bad).unwrap_err().errno(), libc::EINVAL, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
