//! Processes and what /proc says of them: signals by pid, the zkfs serving a
//! mountpoint, a process's memory and CPU time, a log's last lines.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{sysconf, Pid, SysconfVar};

/// Sends `sig` to process `pid` (a `Child::id()` or a pid from /proc); a process
/// already gone is not an error here (the callers stop what they started, and it may
/// have exited by itself).
pub fn send_signal(pid: impl TryInto<i32>, sig: Signal) {
    if let Ok(pid) = pid.try_into() {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Sends `sig` to the process group `leader` leads (a child started with
/// `process_group(0)`, and whatever it started).
pub fn signal_group(leader: impl TryInto<i32>, sig: Signal) {
    if let Ok(pid) = leader.try_into() {
        let _ = killpg(Pid::from_raw(pid), sig);
    }
}

/// The last `n` lines of a file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = read_lossy(path).unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A log file's text so far (not UTF-8 is shown lossily).
pub fn read_lossy(path: &Path) -> std::io::Result<String> {
    fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The running zkfs whose command line names `mountpoint`: its pid and argv (from /proc).
pub fn daemon_of(mountpoint: &Path) -> Option<(i32, Vec<String>)> {
    let wanted = mountpoint.to_str()?.trim_end_matches('/');
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        // A zombie's cmdline is empty.
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        let argv: Vec<String> =
            cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into()).collect();
        let is_zkfs = argv.first().and_then(|a| Path::new(a).file_name()).is_some_and(|n| n == "zkfs");
        (is_zkfs && argv.iter().skip(1).any(|a| a.trim_end_matches('/') == wanted)).then_some((pid, argv))
    })
}

/// The resident memory of process `pid` in KiB (`VmRSS`), 0 if it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of process `pid` so far (zero if it is gone).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    // Fields after the command: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = sysconf(SysconfVar::CLK_TCK).ok().flatten().and_then(|t| u64::try_from(t).ok()).unwrap_or(100).max(1);
    Duration::from_micros(ticks * 1_000_000 / hz)
}
