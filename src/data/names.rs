//! Which names may be created: registrations (`HOST:PORT`) and znode names.
//!
//! Only `HOST:PORT` names become registration files, so that an editor's swap or probe
//! file (`.x.swp`, `4913`, `x~`) or a typo creates nothing in ZooKeeper.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};

/// The virtual file in every directory that shows the node's data.
pub const PROPERTIES: &str = "properties.json";

/// The longest file name, in bytes, as on ext4 and as `statfs` says. ZooKeeper has no
/// such limit, but the kernel lets FUSE names through up to 1,024 bytes: zkfs refuses
/// longer ones itself, so that every operation on one fails alike (`ENAMETOOLONG`)
/// and nothing is half done (a link key stored that no lookup could find).
pub const NAME_MAX: usize = 255;

/// Checks that `name` is no longer than [`NAME_MAX`] bytes (`ENAMETOOLONG`).
pub fn check_len(name: &str) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong(format!(
            "a name of {} bytes is longer than the {NAME_MAX} bytes a file name may have",
            name.len()
        )));
    }
    Ok(())
}

/// Checks that `name` is `HOST:PORT`: HOST a host name, an IPv4 address or a bracketed
/// IPv6 address; PORT 1–65535.
pub fn check_registration(name: &str) -> Result<()> {
    parse_registration(name).map(|_| ()).map_err(|why| {
        Error::InvalidName(format!(
            "{name:?} cannot be created: files here are registrations named HOST:PORT \
             (e.g. 10.0.0.5:8080); {why}"
        ))
    })
}

fn parse_registration(name: &str) -> std::result::Result<(&str, u16), &'static str> {
    let (host, port) = name.rsplit_once(':').ok_or("no ':PORT'")?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) || port.starts_with('0') {
        return Err("PORT must be a number from 1 to 65535");
    }
    let port: u32 = port.parse().map_err(|_| "bad PORT")?;
    if !(1..=65535).contains(&port) {
        return Err("PORT must be a number from 1 to 65535");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("unbalanced '[' in an IPv6 address")?;
        inner.parse::<Ipv6Addr>().map_err(|_| "not an IPv6 address in brackets")?;
    } else if host.parse::<Ipv4Addr>().is_err() && !is_host_name(host) {
        return Err("HOST must be a host name, an IPv4 address or [an IPv6 address]");
    }
    Ok((host, port as u16))
}

fn is_host_name(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    // An all-numeric name that is not a valid IPv4 address (999.1.1.1) is a typo.
    let numeric = labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    labels.iter().all(label_ok) && !numeric
}

/// `s` as it may be printed to a terminal: control characters (C0, DEL, C1: ESC and
/// the rest that a terminal acts on) and backslashes escaped as `\u{..}`/`\\`, so a
/// hostile name cannot move the cursor, retitle the window or hide text.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// Checks that `name` can be a persistent znode created with `mkdir`.
pub fn check_node_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidName(format!("{name:?} cannot be a ZooKeeper node: {why}")));
    if name.is_empty() || name == "." || name == ".." {
        return bad("reserved name");
    }
    if name == PROPERTIES {
        return Err(Error::Exists(format!("{PROPERTIES} is the node's own properties file")));
    }
    check_len(name)?;
    if name.contains('/') {
        return bad("contains '/'");
    }
    // The characters ZooKeeper's PathUtils.validatePath refuses.
    let forbidden = |c: char| matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}');
    if name.chars().any(forbidden) {
        return bad("contains a character ZooKeeper refuses");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_names_are_registrations() {
        for ok in ["localhost:8080", "10.0.0.5:1", "web-1.example.com:65535", "[::1]:80", "[2001:db8::2]:443"] {
            assert!(check_registration(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn editor_files_and_typos_are_refused() {
        for bad in [
            ".x.swp",
            "4913",
            "x~",
            "#x#",
            ".#x",
            "host",
            "host:",
            "host:0",
            "host:65536",
            "host:08",
            "host:80x",
            ":80",
            "-host:80",
            "ho st:80",
            "999.1.1.1:80",
            "[::1:80",
            "::1:80",
            "[zz]:80",
            "properties.json",
            "a..b:80",
        ] {
            let e = check_registration(bad).unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "{bad}");
        }
    }

    #[test]
    fn escaped_names_carry_no_control_characters() {
        assert_eq!(escaped("a\u{1b}[31mb\u{0}\\c\u{9b}é"), "a\\u{1b}[31mb\\u{0}\\\\c\\u{9b}é");
        assert_eq!(escaped("plain:80"), "plain:80");
    }

    #[test]
    fn node_names_follow_zookeeper_rules() {
        assert!(check_node_name("fooservice").is_ok());
        assert!(check_node_name("a:b c").is_ok());
        assert!(check_node_name("..").is_err());
        assert_eq!(check_node_name("a\u{1}b").unwrap_err().errno(), libc::EINVAL);
        assert_eq!(check_node_name(PROPERTIES).unwrap_err().errno(), libc::EEXIST);
        assert!(check_node_name(&"n".repeat(NAME_MAX)).is_ok());
        assert_eq!(check_node_name(&"n".repeat(NAME_MAX + 1)).unwrap_err().errno(), libc::ENAMETOOLONG);
    }
}
