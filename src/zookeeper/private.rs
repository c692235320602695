//! Files that must stay private — a TLS key, a password file, a keytab: refused unless
//! they are the user's or root's with no access for group or others, as ssh refuses
//! such a key.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Refuses a file that must stay private unless it is yours or root's, with no access
/// for group or others.
pub(crate) fn check_private(path: &Path, what: &str) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{what} {shown}: {e}"))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{what} {shown} can be read by others (mode {:04o}); run: chmod 600 {shown}",
            meta.mode() & 0o7777
        ));
    }
    let uid = nix::unistd::getuid().as_raw();
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(format!("{what} {shown} belongs to uid {}, not to you or root", meta.uid()));
    }
    Ok(())
}
