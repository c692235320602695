//! Putting a rendered output in place: a candidate written beside the destination
//! (same directory, so the rename is atomic), synced, checked by the user's check
//! command, then renamed over the destination, keeping its mode and owner. A reader
//! of the destination sees the old file or the new one, never a half-written one,
//! and a candidate the check refused never reaches it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A candidate output written next to its destination; removed on drop unless
/// installed.
pub struct Candidate {
    path: PathBuf,
    dest: PathBuf,
    installed: bool,
}

impl Candidate {
    /// Writes `text` to a temporary file beside `dest`, with `dest`'s mode and owner
    /// (0644 and ours for a new file), and syncs it.
    pub fn write(dest: &Path, text: &str) -> Result<Candidate, String> {
        let dir = parent(dest);
        let name = dest.file_name().map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        let path = dir.join(format!(".{name}.zkfs-{}.tmp", std::process::id()));
        let old = fs::metadata(dest).ok();
        let mode = old.as_ref().map_or(0o644, |m| m.permissions().mode() & 0o7777);
        // A candidate left by a killed earlier run of ours (same pid reused) goes.
        let _ = fs::remove_file(&path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let candidate = Candidate { path, dest: dest.to_path_buf(), installed: false };
        let fail = |e: std::io::Error| format!("cannot write {}: {e}", candidate.path.display());
        file.write_all(text.as_bytes()).map_err(fail)?;
        // The umask may have cut the mode: set it as the destination had it.
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(fail)?;
        if let Some(old) = &old {
            if let Err(e) = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid())) {
                // Only root may give a file away; a non-root user's output is its own.
                if old.uid() != nix::unistd::getuid().as_raw() {
                    log::warn!("cannot keep the owner of {}: {e}", dest.display());
                }
            }
        }
        file.sync_all().map_err(fail)?;
        Ok(candidate)
    }

    /// The candidate's path, for the check command.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the candidate over the destination and syncs the directory.
    pub fn install(mut self) -> Result<(), String> {
        fs::rename(&self.path, &self.dest)
            .map_err(|e| format!("cannot rename {} to {}: {e}", self.path.display(), self.dest.display()))?;
        self.installed = true;
        if let Ok(dir) = File::open(parent(&self.dest)) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        if !self.installed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Whether `dest` already holds exactly `text`.
pub fn unchanged(dest: &Path, text: &str) -> bool {
    fs::read(dest).is_ok_and(|old| old == text.as_bytes())
}

/// Runs `command` with `sh -c`, `{}` replaced by `file` (shell-quoted) and
/// `ZKFS_CANDIDATE` set to it. Ok, or why not: the exit status and the last lines of
/// its output.
///
/// Its output goes to an unnamed temporary file, not a pipe: a reload command often
/// starts a daemon (`haproxy -D`) that keeps its stdout open, and reading a pipe to
/// its end would wait for that daemon to exit.
pub fn run(command: &str, file: Option<&Path>) -> Result<(), String> {
    let script = match file {
        Some(f) => command.replace("{}", &quote(f)),
        None => command.to_string(),
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).stdin(Stdio::null());
    if let Some(f) = file {
        cmd.env("ZKFS_CANDIDATE", f);
    }
    let log = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(std::env::temp_dir())
        .ok();
    match log.as_ref().and_then(|l| Some((l.try_clone().ok()?, l.try_clone().ok()?))) {
        Some((out, err)) => cmd.stdout(out).stderr(err),
        None => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
    };
    let status = cmd.status().map_err(|e| format!("cannot run sh -c {command:?}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    if let Some(mut log) = log {
        use std::io::{Read, Seek};
        let _ = log.seek(std::io::SeekFrom::Start(0));
        let mut bytes = Vec::new();
        let _ = log.take(1 << 20).read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(5)..].join(" | ");
    Err(format!("`{command}` failed ({status}){}", if tail.is_empty() { String::new() } else { format!(": {tail}") }))
}

/// `p` in single quotes for sh.
fn quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_keeps_the_mode_and_goes_unless_installed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.cfg");
        fs::write(&dest, "old").unwrap();
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o600)).unwrap();
        let c = Candidate::write(&dest, "new").unwrap();
        let tmp = c.path().to_path_buf();
        assert_eq!(fs::read_to_string(&tmp).unwrap(), "new");
        drop(c);
        assert!(!tmp.exists());
        assert_eq!(fs::read_to_string(&dest).unwrap(), "old");
        Candidate::write(&dest, "new").unwrap().install().unwrap();
        assert_eq!(fs::read_to_string(&dest).unwrap(), "new");
        assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(unchanged(&dest, "new") && !unchanged(&dest, "other"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn commands_get_the_candidate_and_say_why_they_failed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("it's here");
        fs::write(&f, "x").unwrap();
        assert_eq!(run("test -f {} && test \"$ZKFS_CANDIDATE\" = {}", Some(&f)), Ok(()));
        let err = run("echo bad line 3 >&2; exit 4", None).unwrap_err();
        assert!(err.contains("exit status: 4") && err.contains("bad line 3"), "{err}");
    }
}
