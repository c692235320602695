//! Where the echo thread reaches its own mount — and read-only mounts that still hear
//! of changes made elsewhere.
//!
//! Every mount, read-only or not, echoes through a detached clone of itself when it
//! can (see [`EchoRoot`]): an echo through the mountpoint's path that is still queued
//! at the unmount would land in the bare directory underneath.
//!
//! The echo thread (`echo.rs`) makes real syscalls on the mount — `mknod`, `unlink`,
//! an open for writing — and a mount that is read-only in the kernel refuses them
//! with EROFS. So for `-o ro` zkfs keeps a *detached clone* of its own mount
//! (`open_tree(OPEN_TREE_CLONE)`), which stays read-write, for the echo thread alone,
//! and makes the visible mount read-only (`mount_setattr(MOUNT_ATTR_RDONLY)`): the
//! kernel itself then refuses every change there, `/proc/mounts` says `ro`, and both
//! mounts share the inodes that inotify watches.
//!
//! The clone keeps the filesystem alive after the visible mount is unmounted from
//! outside (`umount`, `fusermount3 -u`), so a thread watches the mount table and
//! drops the clone when the visible mount goes; the FUSE session then ends as usual.
//! Where the kernel or the privileges do not allow this (a non-root mount through
//! fusermount3), the mount stays read-write in the kernel and zkfs refuses changes
//! with EROFS itself, as every handler does anyway.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use log::{debug, info, warn};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::sync::Recover;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Where the echo thread makes its syscalls: a detached clone of the mount (the rule),
/// or the mountpoint's path, checked to still be this mount (where no clone can be
/// made: a mount by a user without CAP_SYS_ADMIN).
///
/// Never the bare directory underneath: an echo still queued when the mount goes
/// (`fusermount3 -u`, `umount -l`) would create real directories there, or land in a
/// newer mount on the same path. The clone dies with the mount, so the echo fails
/// (ENODEV) instead; and it is not the visible mount, so an echo in progress never
/// makes `umount` of the visible mount fail with EBUSY.
#[derive(Debug)]
pub struct EchoRoot {
    mountpoint: PathBuf,
    way: Way,
}

#[derive(Debug)]
enum Way {
    /// The clone; `None` once released (the mount is gone: every echo fails). Each user
    /// holds its own `Arc` for the length of its syscall, so [`EchoRoot::release`]
    /// (another thread) can never close the descriptor in use, nor let a reused number
    /// stand for another file. The lock is held only to clone or take the `Arc`.
    Clone(Mutex<Option<Arc<OwnedFd>>>),
    /// The mountpoint's path, used only while the mount there has this id.
    Path { mount_id: u64 },
}

/// The directory an echo syscall is relative to; keeps the clone open while held.
pub struct EchoDir(Option<Arc<OwnedFd>>);

/// The descriptor for `*at` syscalls (`AT_FDCWD` for the mountpoint's path).
impl AsFd for EchoDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_ref().map_or(nix::fcntl::AT_FDCWD, |fd| fd.as_fd())
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// What an echo gets once its mount is gone.
fn gone() -> io::Error {
    io::Error::from_raw_os_error(libc::ENODEV)
}

impl EchoRoot {
    /// Echoes for the read-write mount at `mountpoint` (call it right after mounting):
    /// through a detached clone, or the checked path where no clone can be made.
    pub fn read_write(mountpoint: &Path) -> io::Result<Arc<EchoRoot>> {
        match Self::clone_of(mountpoint, false) {
            Ok(root) => Ok(root),
            Err(e) => {
                debug!("no private clone of {} ({e}); echoing through its path", mountpoint.display());
                Self::direct(mountpoint)
            }
        }
    }

    /// Echo through the mountpoint's path, as long as the mount there is the one there
    /// now (a read-write mount where no clone can be made).
    fn direct(mountpoint: &Path) -> io::Result<Arc<EchoRoot>> {
        let mount_id = mount_id(&cpath(mountpoint)?)?;
        Ok(Arc::new(EchoRoot { mountpoint: mountpoint.to_path_buf(), way: Way::Path { mount_id } }))
    }

    /// Makes the mount at `mountpoint` read-only in the kernel and echoes through a
    /// writable clone of it; falls back to the checked path where that fails.
    pub fn read_only(mountpoint: &Path) -> io::Result<Arc<EchoRoot>> {
        match Self::clone_of(mountpoint, true) {
            Ok(root) => {
                info!(
                    "{} is read-only in the kernel; events still arrive through a private clone",
                    mountpoint.display()
                );
                Ok(root)
            }
            Err(e) => {
                warn!(
                    "cannot make {} read-only in the kernel ({e}); zkfs refuses changes itself",
                    mountpoint.display()
                );
                Self::direct(mountpoint)
            }
        }
    }

    /// A detached clone of the mount at `mountpoint` (the visible mount made read-only
    /// in the kernel if `read_only`), released by a thread once the mount is gone.
    fn clone_of(mountpoint: &Path, read_only: bool) -> io::Result<Arc<EchoRoot>> {
        let c = cpath(mountpoint)?;
        let mount_id = mount_id(&c)?;
        // open_tree(2), mount_setattr(2) and statx's mount id go through libc: nix (0.31)
        // wraps none of them.
        // SAFETY: open_tree(2) with a valid path; the result is a new descriptor.
        let fd = unsafe {
            libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as u32)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: open_tree returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        if read_only {
            let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
            // SAFETY: mount_setattr(2) with a valid path and a struct of the size passed.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    0,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error()); // `fd` closes as it drops
            }
        }
        let root = Arc::new(EchoRoot {
            mountpoint: mountpoint.to_path_buf(),
            way: Way::Clone(Mutex::new(Some(Arc::new(fd)))),
        });
        let watched = Arc::clone(&root);
        std::thread::Builder::new()
            .name("zkfs-mounts".into())
            .spawn(move || watched.release_when_unmounted(mount_id))?;
        Ok(root)
    }

    /// The directory descriptor and path for `path` (a path in the mount, `/a/b`);
    /// ENODEV once the mount is gone.
    pub fn target(&self, path: &str) -> io::Result<(EchoDir, CString)> {
        let rel = path.trim_start_matches('/');
        match &self.way {
            Way::Clone(clone) => {
                let fd = clone.locked().clone().ok_or_else(gone)?;
                let rel = CString::new(if rel.is_empty() { "." } else { rel })
                    .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
                Ok((EchoDir(Some(fd)), rel))
            }
            Way::Path { mount_id: ours } => {
                // Checked before each echo; what is left is the moment between this
                // check and the syscall.
                let at = cpath(&self.mountpoint)?;
                if mount_id(&at).ok() != Some(*ours) {
                    return Err(gone());
                }
                Ok((EchoDir(None), cpath(&self.mountpoint.join(rel))?))
            }
        }
    }

    /// Drops the clone, so that the filesystem can go once the mount is gone.
    /// (It closes once the last echo syscall using it is done.)
    pub fn release(&self) {
        let Way::Clone(clone) = &self.way else { return };
        if clone.locked().take().is_some() {
            debug!("dropping the echo clone of {}", self.mountpoint.display());
        }
    }

    /// Waits (on /proc/self/mountinfo, which signals every change of the mount table)
    /// until the mount with `mount_id` is gone, then drops the clone.
    fn release_when_unmounted(&self, mount_id: u64) {
        let Ok(info) = std::fs::File::open("/proc/self/mountinfo") else { return self.release() };
        use std::io::{Read, Seek};
        let mut info = info;
        let prefix = format!("{mount_id} ");
        loop {
            let mut text = String::new();
            if info.rewind().is_err() || info.read_to_string(&mut text).is_err() {
                return self.release();
            }
            if !text.lines().any(|l| l.starts_with(&prefix)) {
                return self.release();
            }
            // Blocks until the mount table changes.
            let mut fds = [PollFd::new(info.as_fd(), PollFlags::POLLPRI)];
            if matches!(poll(&mut fds, PollTimeout::NONE), Err(e) if e != Errno::EINTR) {
                return self.release();
            }
        }
    }
}

impl Drop for EchoRoot {
    fn drop(&mut self) {
        self.release();
    }
}

/// The id of the mount at `path` (as /proc/self/mountinfo's first field). Asks the
/// filesystem nothing (AT_STATX_DONT_SYNC): the mount id is the VFS's.
fn mount_id(path: &CString) -> io::Result<u64> {
    // SAFETY: statx into a zeroed struct we own.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::statx(libc::AT_FDCWD, path.as_ptr(), libc::AT_STATX_DONT_SYNC, libc::STATX_MNT_ID, &mut stx) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOTSUP));
    }
    Ok(stx.stx_mnt_id)
}
