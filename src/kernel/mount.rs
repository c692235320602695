//! Mounting and unmounting: the FUSE session over a filesystem, and the unmount made
//! on a signal. The kernel's mount options are fuser's, so they are named here only.

use std::path::Path;
use std::sync::Arc;

use fuser::{MountOption, SessionACL};
use log::{error, warn};
use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};

use crate::fs::Fs;
use crate::kernel::fuse::{FuseCache, Gate, ZkFuse};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Who may use the mount besides its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The owner only (the kernel's default for FUSE).
    Owner,
    /// The owner and root (`allow_root`).
    RootAndOwner,
    /// Everybody (`allow_other`).
    All,
}

/// What the kernel is told at mount time.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The source shown in the mount table: the connect string.
    pub fsname: String,
    /// The kernel checks permissions itself (`default_permissions`).
    pub default_permissions: bool,
    /// Generic mount flags passed through (`nosuid`, `noatime`...).
    pub kernel_flags: Vec<String>,
    /// Who may use the mount.
    pub access: Access,
}

/// A mounted filesystem, not yet served.
pub struct Mounted(fuser::Session<ZkFuse>, Arc<Gate>);

/// Mounts `fs` at `mountpoint`. A read-only mount is made read-only once mounted (see
/// readonly.rs): the echo thread needs a writable way in first.
pub fn mount(fs: Arc<Fs>, mountpoint: &Path, spec: &Spec) -> std::io::Result<Mounted> {
    let config = config(spec);
    let gate = Gate::new(Arc::clone(&fs));
    let mut session = fuser::Session::new(ZkFuse::new(fs, Arc::clone(&gate)), mountpoint, &config)?;
    session.set_hold(Arc::clone(&gate) as fuser::Hold);
    Ok(Mounted(session, gate))
}

/// Serves `fs` on `fuse`, the /dev/fuse descriptor of a mount a previous process
/// image of this zkfs served and handed over (`handover.rs`): no new mount, no
/// handshake.
pub fn adopt(fs: Arc<Fs>, fuse: OwnedFd, spec: &Spec) -> Mounted {
    let config = config(spec);
    let gate = Gate::new(Arc::clone(&fs));
    let acl = config.acl;
    let mut session = fuser::Session::adopt(ZkFuse::new(fs, Arc::clone(&gate)), fuse, acl, config);
    session.set_hold(Arc::clone(&gate) as fuser::Hold);
    Mounted(session, gate)
}

fn config(spec: &Spec) -> fuser::Config {
    let mut config = fuser::Config::default();
    config.mount_options = vec![MountOption::FSName(spec.fsname.clone()), MountOption::CUSTOM("subtype=zkfs".into())];
    if spec.default_permissions {
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    for flag in &spec.kernel_flags {
        config.mount_options.push(kernel_flag(flag));
    }
    config.acl = match spec.access {
        Access::All => SessionACL::All,
        Access::RootAndOwner => SessionACL::RootAndOwner,
        Access::Owner => SessionACL::Owner,
    };
    config.n_threads = Some(4);
    config
}

impl Mounted {
    /// The gate between the kernel and the filesystem.
    pub fn gate(&self) -> Arc<Gate> {
        Arc::clone(&self.1)
    }

    /// The /dev/fuse descriptor's number.
    pub fn fuse_fd(&self) -> std::os::fd::RawFd {
        self.0.as_fd().as_raw_fd()
    }

    /// The kernel's caches of this mount, for the echo thread.
    pub fn cache(&self) -> FuseCache {
        FuseCache(self.0.notifier())
    }

    /// Serves requests until the mount goes.
    pub fn run(self) -> std::io::Result<()> {
        self.0.run()
    }
}

fn kernel_flag(flag: &str) -> MountOption {
    match flag {
        "nosuid" => MountOption::NoSuid,
        "suid" => MountOption::Suid,
        "nodev" => MountOption::NoDev,
        "dev" => MountOption::Dev,
        "noexec" => MountOption::NoExec,
        "exec" => MountOption::Exec,
        "noatime" => MountOption::NoAtime,
        "atime" => MountOption::Atime,
        "sync" => MountOption::Sync,
        "async" => MountOption::Async,
        "dirsync" => MountOption::DirSync,
        other => MountOption::CUSTOM(other.to_string()),
    }
}

/// Unmounts: a plain umount, lazily if the mount is busy (a busy mount left behind by
/// an exiting daemon would be dead: "Transport endpoint is not connected"), and
/// `fusermount3 -u -z` when not root.
pub fn unmount(mountpoint: &Path) {
    let err = match umount2(mountpoint, MntFlags::empty()) {
        Ok(()) => return,
        Err(e) => e,
    };
    if err == Errno::EBUSY {
        warn!("{} is busy; unmounting lazily", mountpoint.display());
        if umount2(mountpoint, MntFlags::MNT_DETACH).is_ok() {
            return;
        }
    }
    let err = std::io::Error::from(err);
    let status = std::process::Command::new("fusermount3").arg("-u").arg("-z").arg(mountpoint).status();
    if !matches!(status, Ok(s) if s.success()) {
        error!("cannot unmount {}: {err}", mountpoint.display());
    }
}
