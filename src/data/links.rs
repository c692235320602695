//! zc.zk's links in a node's data, parsed and written: a property `"NAME ->":
//! "/znode/path"` is a link `NAME` in the node's directory. Plain functions over bytes;
//! the pending echoes are `model/links.rs`'s, the files the kernel sees `fs/links.rs`'s.
//!
//! What `readlink` shows is a path relative to the link's directory, so that the
//! kernel resolves it inside the mount wherever the mount is; zc.zk's absolute
//! targets are relative to ZooKeeper's root (the mount's root), its relative ones to
//! the node holding the link.

use std::path::Path;

use crate::data::literal::{self, Value};
use crate::data::names::{self, PROPERTIES};
use crate::data::properties::MAX_DATA_BYTES;
use crate::data::treefmt::LINK_SUFFIX;
use crate::error::{Error, Result};

/// The links a node's data holds: `(name, stored target)`, in key order. Keys whose
/// value is not a non-empty string, or whose name is no file name, are no links.
pub fn links(data: &[u8]) -> Vec<(String, String)> {
    // Cheap test first: most nodes hold no link, and this runs on every lookup miss.
    if !data.windows(4).any(|w| w == b" ->\"") {
        return Vec::new();
    }
    let Ok(Value::Dict(entries)) =
        std::str::from_utf8(data).map_err(|_| ()).and_then(|t| literal::parse_json(t).map_err(|_| ()))
    else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|(key, value)| {
            let name = key.strip_suffix(LINK_SUFFIX)?;
            let Value::Str(target) = value else { return None };
            // A name the kernel would refuse (over NAME_MAX) is no entry either.
            let ok = !target.is_empty()
                && !target.contains('\0')
                && name.len() <= 255
                && names::check_node_name(name).is_ok();
            (ok && name != PROPERTIES).then(|| (name.to_string(), target))
        })
        .collect()
}

/// The absolute znode path `target` stands for, seen from node `base`; `None` if
/// `..` climbs above the root.
pub fn resolve(base: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') { Vec::new() } else { base.split('/').collect() };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.retain(|p| !p.is_empty());
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    Some(format!("/{}", parts.join("/")))
}

/// What `readlink` shows for a link in `dir` to `target` (as stored): a path from
/// `dir` to the target, relative so that it resolves inside the mount.
pub fn shown_target(dir: &str, target: &str) -> String {
    let to = resolve(dir, target).unwrap_or_else(|| "/".into());
    let from: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    let to: Vec<&str> = to.split('/').filter(|p| !p.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// The znode path to store for `ln -s TARGET` in `dir`: TARGET absolute (under the
/// mountpoint) or relative to `dir`.
pub fn stored_target(dir: &str, target: &str, mountpoint: Option<&Path>) -> Result<String> {
    let outside =
        || Error::InvalidName(format!("link target {target:?} is outside the mount; a link can only point inside it"));
    if target.is_empty() || target.contains('\0') {
        return Err(Error::InvalidName("a link needs a target".into()));
    }
    if target.starts_with('/') {
        let mountpoint = mountpoint.and_then(Path::to_str).ok_or_else(outside)?;
        let rest = target.strip_prefix(mountpoint).ok_or_else(outside)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(outside());
        }
        resolve("/", rest).ok_or_else(outside)
    } else {
        resolve(dir, target).ok_or_else(outside)
    }
}

/// `data` with link `name` set to `target` (or removed, with `None`). Other keys keep
/// their text. Fails on data that is not a JSON object (a bare string, say): adding a
/// key would rewrite it.
pub fn with_link(data: &[u8], path: &str, name: &str, target: Option<&str>) -> Result<Vec<u8>> {
    let mut entries = if data.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        match std::str::from_utf8(data).map_err(|_| ()).and_then(|t| literal::parse_json(t).map_err(|_| ())) {
            Ok(Value::Dict(entries)) => entries,
            _ => {
                return Err(Error::NotPermitted(format!(
                    "{path}: its data is not a JSON object, so it cannot hold a link without being rewritten"
                )))
            }
        }
    };
    let key = format!("{name}{LINK_SUFFIX}");
    match target {
        Some(t) => literal::dict_insert(&mut entries, key, Value::Str(t.to_string())),
        None => entries.retain(|(k, _)| *k != key),
    }
    let out = Value::Dict(entries).to_json().into_bytes();
    if out.len() > MAX_DATA_BYTES {
        return Err(Error::TooLarge(format!("{path}: a link would make its data larger than ZooKeeper accepts")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_the_string_valued_arrow_keys() {
        let data = br#"{"address": "1.2.3.4:80", "providers ->": "/cms/providers", "n ->": 5, "e ->": "", "a/b ->": "/x", "threads =>": "/f"}"#;
        assert_eq!(links(data), vec![("providers".to_string(), "/cms/providers".to_string())]);
        assert!(links(b"plain string ->\"").is_empty());
        assert!(links(format!(r#"{{"{} ->": "/x"}}"#, "n".repeat(256)).as_bytes()).is_empty());
        assert!(links(b"").is_empty());
    }

    #[test]
    fn targets_resolve_inside_the_mount() {
        // zc.zk's README: /a/b/l -> c is /a/b/c, /a/b/l2 -> ../c is /a/c.
        assert_eq!(resolve("/a/b", "c").as_deref(), Some("/a/b/c"));
        assert_eq!(resolve("/a/b", "../c").as_deref(), Some("/a/c"));
        assert_eq!(resolve("/a/b", "/cms/./providers/").as_deref(), Some("/cms/providers"));
        assert_eq!(resolve("/a", "../../x"), None);
        assert_eq!(shown_target("/lb/pools/cms", "/cms/providers"), "../../../cms/providers");
        assert_eq!(shown_target("/", "/cms/providers"), "cms/providers");
        assert_eq!(shown_target("/a/b", "c"), "c");
        assert_eq!(shown_target("/a/b", "../c"), "../c");
        assert_eq!(shown_target("/a/b", "/a/b"), ".");
        assert_eq!(shown_target("/a/b", "/a"), "..");
        assert_eq!(shown_target("/a", "../../../x"), "..");
    }

    #[test]
    fn ln_targets_are_stored_as_znode_paths() {
        let m = Some(Path::new("/mnt/zk"));
        assert_eq!(stored_target("/lb", "/mnt/zk/cms/providers", m).unwrap(), "/cms/providers");
        assert_eq!(stored_target("/lb", "/mnt/zk", m).unwrap(), "/");
        assert_eq!(stored_target("/lb/pools", "../../cms", m).unwrap(), "/cms");
        for bad in ["/etc/passwd", "/mnt/zkother/x", "../../x", ""] {
            assert!(stored_target("/lb", bad, m).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_link_change_keeps_the_other_keys_as_written() {
        let data = br#"{"big": 123456789012345678901234567890, "f": 1.10}"#;
        let added = with_link(data, "/n", "l", Some("/x")).unwrap();
        assert_eq!(added, br#"{"big":123456789012345678901234567890,"f":1.10,"l ->":"/x"}"#);
        assert_eq!(with_link(&added, "/n", "l", None).unwrap(), br#"{"big":123456789012345678901234567890,"f":1.10}"#);
        assert_eq!(with_link(b"", "/n", "l", Some("/x")).unwrap(), br#"{"l ->":"/x"}"#);
        assert!(with_link(b"just a string", "/n", "l", Some("/x")).is_err());
    }
}
