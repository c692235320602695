//! The one reader of the kernel's mount table (`/proc/self/mountinfo`): which mounts
//! are where, with paths unescaped. The dead mount replaced at start (`mountpoint.rs`)
//! and the end of the mount followed by the unmount watcher (`unmounted.rs`) both read
//! it here, and so do the tests (`tests/common/mounts.rs`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The mount's id (the first field), unique while it is mounted.
    pub id: String,
    /// Where it is mounted, unescaped.
    pub mount_point: PathBuf,
    /// Its filesystem type (`fuse.zkfs`, `fuse`, `proc`, ...).
    pub fstype: String,
    /// What is mounted (for zkfs, the connect string), unescaped.
    pub source: String,
    /// The options of this mount (`ro`, `nosuid`, ...).
    pub options: Vec<String>,
    /// The filesystem's own options (for FUSE `user_id=0`, `allow_other`, ...).
    pub fs_options: Vec<String>,
}

/// The entries of `table` (mountinfo's text), in mount order (topmost last); lines that
/// are not well formed are skipped.
pub fn parse(table: &str) -> Vec<Entry> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(Entry {
                id: fields.first()?.to_string(),
                mount_point: unescape(fields.get(4)?),
                fstype: fields.get(sep + 1)?.to_string(),
                source: unescape(fields.get(sep + 2)?).to_string_lossy().into_owned(),
                options: fields.get(5)?.split(',').map(String::from).collect(),
                fs_options: fields.get(sep + 3).map_or_else(Vec::new, |o| o.split(',').map(String::from).collect()),
            })
        })
        .collect()
}

/// The entries of this process's mount table now (empty if it cannot be read).
pub fn current() -> Vec<Entry> {
    parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// A mountinfo path: spaces, tabs, newlines and backslashes come as `\ooo`.
pub fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|o| b[i] == b'\\' && o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(o) => {
                out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape(r"/mnt/a\040b\134c"), PathBuf::from(r"/mnt/a b\c"));
        assert_eq!(unescape(r"/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape(r"/trailing\04"), PathBuf::from(r"/trailing\04"));
    }

    #[test]
    fn lines_give_id_place_and_type() {
        let table = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                     98 22 0:50 / /mnt/my\\040zk rw,nosuid shared:1 - fuse.zkfs 127.0.0.1:2181 rw\n\
                     garbage\n";
        let entries = parse(table);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].id, "98");
        assert_eq!(entries[1].mount_point, PathBuf::from("/mnt/my zk"));
        assert_eq!(entries[1].fstype, "fuse.zkfs");
        assert_eq!(entries[1].source, "127.0.0.1:2181");
        assert_eq!(entries[1].options, ["rw", "nosuid"]);
        assert_eq!(entries[1].fs_options, ["rw"]);
    }
}
