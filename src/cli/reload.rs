//! `zkfs reload MOUNTPOINT`: has the zkfs serving a mount hand it over to the zkfs
//! binary installed now (see `kernel/handover.rs`), and says how it went.
//!
//! It reads the mount's process and hand-over counts from its status attributes,
//! refuses at once if that zkfs writes another hand-over format than this one reads,
//! sends it SIGUSR2, and waits until the counts say the hand-over was done (exit 0)
//! or refused (exit 1, with the reason; the mount then goes on as it was).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::fs::status::get;
use crate::fs::HANDOVER_FORMAT;

/// How long a reload may take before this command gives up waiting (the mount may
/// still finish it: `zkfs status` tells).
const WAIT: Duration = Duration::from_secs(60);

/// Runs `zkfs reload MOUNTPOINT`.
pub fn run(mountpoint: &Path) -> ExitCode {
    match reload(mountpoint) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("zkfs: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn counter(mountpoint: &Path, name: &str) -> Result<u64, String> {
    let value = get(mountpoint, name)?;
    value.trim().parse().map_err(|_| format!("{}: {name} is {value:?}, not a number", mountpoint.display()))
}

fn reload(mountpoint: &Path) -> Result<String, String> {
    let not_zkfs = || format!("{} is not a zkfs mount (or its zkfs cannot be reloaded)", mountpoint.display());
    let pid = counter(mountpoint, "user.zkfs.pid").map_err(|_| not_zkfs())?;
    let theirs = get(mountpoint, "user.zkfs.handover_format").map_err(|_| not_zkfs())?;
    if theirs.trim() != HANDOVER_FORMAT.to_string() {
        return Err(format!(
            "the zkfs serving {} (pid {pid}) hands over in format {theirs}, this zkfs reads format {HANDOVER_FORMAT}: \
             nothing was done; restarting it instead drops its registrations",
            mountpoint.display()
        ));
    }
    let done = counter(mountpoint, "user.zkfs.reloads")?;
    let failed = counter(mountpoint, "user.zkfs.reload_failures")?;
    let pid = i32::try_from(pid).map_err(|_| not_zkfs())?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGUSR2)
        .map_err(|e| format!("cannot signal the zkfs serving {} (pid {pid}): {e}", mountpoint.display()))?;
    let started = Instant::now();
    while started.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(20));
        // Reads wait while the mount is handed over, and are answered by the new image.
        if counter(mountpoint, "user.zkfs.reloads")? > done {
            return Ok(format!("reloaded {} (pid {pid}) in {:?}", mountpoint.display(), started.elapsed()));
        }
        if counter(mountpoint, "user.zkfs.reload_failures")? > failed {
            let why = get(mountpoint, "user.zkfs.last_reload_failure").unwrap_or_default();
            return Err(format!("reload of {} refused: {why}; the mount goes on as it was", mountpoint.display()));
        }
    }
    Err(format!("{} did not finish reloading within {WAIT:?}; see `zkfs status`", mountpoint.display()))
}
