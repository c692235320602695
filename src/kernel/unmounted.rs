//! The mount's end is its registrations' end: closes the ZooKeeper session as soon as
//! the mount leaves the mount table.
//!
//! A busy mount (a program has its working directory or a file in it) can only be
//! unmounted lazily: it vanishes from the namespace at once, but the kernel keeps the
//! FUSE connection, and fuser's `run()` returns, only when the last user is gone —
//! which kept the host registered for as long as that program lived. Whoever unmounts
//! (zkfs's own signal thread on SIGTERM/SIGINT, `umount -l`, `fusermount3 -u -z`), the
//! mount table changes: a thread waits for that with poll(2) on
//! `/proc/self/mountinfo` (which reports every change as POLLPRI) and closes the
//! session the moment the mount is gone. Requests that still come from the detached
//! mount are answered from the view or fail (EIO), and zkfs exits once it is unused.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use log::{info, warn};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::kernel::mountinfo;
use crate::zookeeper::session::Session;

/// Starts the thread that closes `session` when the zkfs mount at `mountpoint` is
/// unmounted. Call it once mounted.
pub fn close_session_when_unmounted(mountpoint: &Path, session: Arc<Session>) {
    let mountpoint = mountpoint.to_path_buf();
    let spawned = std::thread::Builder::new().name("zkfs-unmounted".into()).spawn(move || {
        match wait_until_unmounted(&mountpoint) {
            Ok(()) => {
                info!("{} was unmounted: closing the ZooKeeper session", mountpoint.display());
                session.close();
            }
            Err(e) => warn!("cannot follow the mount table ({e}); the session closes when the mount is unused"),
        }
    });
    if let Err(e) = spawned {
        warn!("cannot start the unmount watcher: {e}");
    }
}

fn wait_until_unmounted(mountpoint: &Path) -> std::io::Result<()> {
    let mut table = File::open("/proc/self/mountinfo")?;
    let id = mount_id(&read(&mut table)?, mountpoint)
        .ok_or_else(|| std::io::Error::other(format!("{} is not in the mount table", mountpoint.display())))?;
    loop {
        let mut fds = [PollFd::new(table.as_fd(), PollFlags::POLLPRI)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        // Reading the table again also re-arms the notification.
        if !has_mount(&read(&mut table)?, &id) {
            return Ok(());
        }
    }
}

fn read(table: &mut File) -> std::io::Result<String> {
    table.rewind()?;
    let mut text = String::new();
    table.read_to_string(&mut text)?;
    Ok(text)
}

/// The id of the newest zkfs mount at `target`.
fn mount_id(table: &str, target: &Path) -> Option<String> {
    mountinfo::parse(table)
        .into_iter()
        .rev()
        .find(|e| e.mount_point == target && (e.fstype == "fuse.zkfs" || e.fstype == "fuse"))
        .map(|e| e.id)
}

fn has_mount(table: &str, id: &str) -> bool {
    mountinfo::parse(table).iter().any(|e| e.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
98 22 0:50 / /mnt/my\\040zk rw,nosuid,nodev - fuse.zkfs 127.0.0.1:2181 rw,user_id=0
99 22 0:51 / /mnt/zk rw,nosuid,nodev - fuse.zkfs old rw,user_id=0
104 22 0:52 / /mnt/zk rw,nosuid,nodev - fuse.zkfs 127.0.0.1:2181 rw,user_id=0
";

    #[test]
    fn finds_the_newest_zkfs_mount_at_a_path() {
        assert_eq!(mount_id(TABLE, Path::new("/mnt/zk")).as_deref(), Some("104"));
        assert_eq!(mount_id(TABLE, Path::new("/mnt/my zk")).as_deref(), Some("98"));
        assert_eq!(mount_id(TABLE, Path::new("/proc")), None, "not a zkfs mount");
        assert!(has_mount(TABLE, "104"));
        assert!(!has_mount(TABLE, "10"));
    }
}
