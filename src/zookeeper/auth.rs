//! Digest authentication, and the ACLs of the nodes zkfs creates.
//!
//! The secret never appears on the command line (where `ps` shows it to everyone):
//! `-o credentials=FILE` names a file holding `user:password`, which must not be
//! readable by group or others. With credentials, the mount authenticates with
//! ZooKeeper's `digest` scheme and creates
//! * registrations readable by anyone and changeable only by its own identity — as
//!   zc.zk made them read-only to others — since a registration is this host's word;
//! * persistent nodes with their parent's ACL, as a file inherits its directory's
//!   sense of who may use it (other hosts must still be able to register under them).
//!
//! Without credentials every node is created open to anyone (`world:anyone` ALL):
//! with no identity of its own, a narrower ACL would lock the mount out of the nodes
//! it made.

use std::path::Path;

use zookeeper_client::{AuthId, Permission};

use crate::zookeeper::Acl;

/// Reads `user:password` from `path`, refusing a file others could read.
pub fn read_credentials(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    crate::zookeeper::private::check_private(path, "credentials file")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("credentials file {shown}: {e}"))?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(line.as_bytes().to_vec()),
        _ => Err(format!("credentials file {shown} must hold one line user:password")),
    }
}

/// The ACL of a registration: the mount's own identity may do anything, others read.
pub fn registration_acl() -> Vec<Acl> {
    vec![Acl::new(Permission::ALL, AuthId::authed()), Acl::new(Permission::READ, AuthId::anyone())]
}

/// The ACL of a node open to anyone (`world:anyone` ALL).
pub fn anyone_all() -> Vec<Acl> {
    zookeeper_client::Acls::anyone_all().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(mode: u32, text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn credentials_are_read_from_a_private_file() {
        let f = file(0o600, "# zkfs\nalice:s3cret\n");
        assert_eq!(read_credentials(f.path()).unwrap(), b"alice:s3cret");
    }

    #[test]
    fn a_file_others_can_read_or_a_bad_line_is_refused() {
        let f = file(0o644, "alice:s3cret\n");
        assert!(read_credentials(f.path()).unwrap_err().contains("chmod 600"));
        let f = file(0o600, "alice\n");
        assert!(read_credentials(f.path()).unwrap_err().contains("user:password"));
        assert!(read_credentials(Path::new("/nonexistent/creds")).is_err());
    }
}
