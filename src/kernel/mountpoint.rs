//! The mountpoint before mounting: an existing directory — or a dead zkfs mount,
//! which is replaced.
//!
//! When a zkfs process dies without unmounting (SIGKILL, OOM, a crash), its mount
//! stays, and every access to it fails with ENOTCONN ("Transport endpoint is not
//! connected") until someone runs `fusermount3 -u`. fstab, mount units and services
//! restarting zkfs cannot do that, so zkfs does it itself: a *zkfs* mount (type
//! `fuse.zkfs` in the mount table) that answers ENOTCONN is detached and logged. A
//! dead mount of another filesystem is not zkfs's to remove: that, like every other
//! problem with the mountpoint, is one clear error.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use log::warn;

use crate::kernel::mountinfo;

/// The filesystem type zkfs mounts as (`subtype=zkfs`).
const ZKFS_TYPE: &str = "fuse.zkfs";

/// The directory to mount on, canonical. A dead zkfs mount there is detached first.
///
/// # Notable errors
/// The path does not exist or is not a directory; a dead mount of another filesystem
/// is on it; a dead zkfs mount cannot be detached.
pub fn prepare(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    // The kernel may answer a stat of a dead mount's root from its cache (a zkfs killed
    // a moment ago, restarted by systemd); statfs always asks the daemon.
    let key = mount_key(path);
    if mount_types(&key).last().map(String::as_str) == Some(ZKFS_TYPE)
        && nix::sys::statfs::statfs(&key).err() == Some(nix::errno::Errno::ENOTCONN)
    {
        detach(&key).map_err(|e| {
            format!("mountpoint {shown}: a dead zkfs mount is on it and cannot be unmounted ({e}); run fusermount3 -u -z {shown}")
        })?;
        warn!("replaced the dead zkfs mount on {shown} (its zkfs process had ended without unmounting)");
    }
    // realpath may succeed on a dead mount (it need not stat the last component);
    // the stat after it fails with ENOTCONN.
    match path.canonicalize().and_then(|c| std::fs::metadata(&c).map(|m| (c, m))) {
        Ok((canonical, meta)) if meta.is_dir() => Ok(canonical),
        Ok(_) => Err(format!("mountpoint {shown}: not a directory")),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            let key = mount_key(path);
            let types = mount_types(&key);
            match types.last().map(String::as_str) {
                Some(ZKFS_TYPE) => {
                    detach(&key).map_err(|e| {
                        format!("mountpoint {shown}: a dead zkfs mount is on it and cannot be unmounted ({e}); run fusermount3 -u -z {shown}")
                    })?;
                    warn!("replaced the dead zkfs mount on {shown} (its zkfs process had ended without unmounting)");
                    let canonical = path.canonicalize().map_err(|e| format!("mountpoint {shown}: {e}"))?;
                    if !canonical.is_dir() {
                        return Err(format!("mountpoint {shown}: not a directory"));
                    }
                    Ok(canonical)
                }
                Some(other) => Err(format!(
                    "mountpoint {shown}: a dead {other} mount is on it ({e}); unmount it first (fusermount3 -u {shown})"
                )),
                None => Err(format!("mountpoint {shown}: {e}")),
            }
        }
        Err(e) => Err(format!("mountpoint {shown}: {e}")),
    }
}

/// `path` absolute, with its parent resolved but without touching `path` itself (a
/// dead mount fails every access): the form /proc/self/mountinfo shows.
fn mount_key(path: &Path) -> PathBuf {
    let path = match std::env::current_dir() {
        Ok(cwd) if !path.is_absolute() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => parent.canonicalize().unwrap_or_else(|_| parent.to_path_buf()).join(name),
        _ => path,
    }
}

/// The types of the mounts at `key`, in mount order (topmost last).
fn mount_types(key: &Path) -> Vec<String> {
    mountinfo::current().into_iter().filter(|e| e.mount_point == key).map(|e| e.fstype).collect()
}

/// Detaches the mount at `key`: umount2(MNT_DETACH) as root, `fusermount3 -u -z`
/// otherwise.
fn detach(key: &Path) -> io::Result<()> {
    let err = match nix::mount::umount2(key, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => return Ok(()),
        Err(e) => io::Error::from(e),
    };
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_problems_are_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(prepare(&file).unwrap_err().ends_with("not a directory"));
        assert!(prepare(&dir.path().join("missing")).unwrap_err().contains("No such file"));
        assert_eq!(prepare(dir.path()).unwrap(), dir.path().canonicalize().unwrap());
    }
}
