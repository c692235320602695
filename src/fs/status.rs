//! What an operator can read without a ZooKeeper client: each node's stat, and the
//! mount's own state, as extended attributes (`getfattr -d`), and `zkfs status`.
//!
//! * every file and directory: `user.zk.*` — the znode's version, cversion, aversion,
//!   numChildren, ephemeralOwner, czxid, mzxid, pzxid, ctime and mtime (ms), dataLength;
//! * the mount's root, in addition: `user.zkfs.*` — session id, state, the server the
//!   session is connected to, the connection string, the transport (plaintext or TLS),
//!   the identity the server knows the session by, whether the server is read-only,
//!   the session timeout, the registrations held, reconnects, new sessions, the last
//!   error, and whether the mount's root node (its chroot) still exists.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::zookeeper::Stat;

use crate::zookeeper::session::{Session, State};

/// True for the attribute names zkfs provides (`user.zk.*`, `user.zkfs.*`).
pub fn is_ours(name: &[u8]) -> bool {
    name.starts_with(b"user.zk.") || name.starts_with(b"user.zkfs.")
}

/// The `user.zk.*` attributes of a znode's stat.
pub fn node_attrs(stat: &Stat) -> Vec<(&'static str, String)> {
    vec![
        ("user.zk.version", stat.version.to_string()),
        ("user.zk.cversion", stat.cversion.to_string()),
        ("user.zk.aversion", stat.aversion.to_string()),
        ("user.zk.num_children", stat.num_children.to_string()),
        ("user.zk.ephemeral_owner", format!("{:#x}", stat.ephemeral_owner)),
        ("user.zk.czxid", format!("{:#x}", stat.czxid)),
        ("user.zk.mzxid", format!("{:#x}", stat.mzxid)),
        ("user.zk.pzxid", format!("{:#x}", stat.pzxid)),
        ("user.zk.ctime", stat.ctime.to_string()),
        ("user.zk.mtime", stat.mtime.to_string()),
        ("user.zk.data_length", stat.data_length.to_string()),
    ]
}

/// The `user.zkfs.*` attributes of the mount's state.
pub fn mount_attrs(session: &Session) -> Vec<(&'static str, String)> {
    let (state, stats) = session.state();
    let state = match state {
        State::Connected => "connected",
        State::Disconnected => "disconnected",
        State::Expired => "expired",
        State::Closed => "closed",
    };
    let registrations = session.registrations();
    vec![
        ("user.zkfs.session_id", format!("{:#x}", session.session_id())),
        ("user.zkfs.state", state.to_string()),
        ("user.zkfs.server", connected_server(session.connect_string()).unwrap_or_else(|| "none".into())),
        ("user.zkfs.connect", session.connect_string().to_string()),
        ("user.zkfs.transport", session.security().transport()),
        ("user.zkfs.identity", session.identity()),
        ("user.zkfs.server_mode", server_mode(session).to_string()),
        ("user.zkfs.session_timeout_ms", session.timeout().as_millis().to_string()),
        ("user.zkfs.registration_count", registrations.len().to_string()),
        ("user.zkfs.registrations", registrations.join("\n")),
        ("user.zkfs.reconnects", stats.reconnects.to_string()),
        ("user.zkfs.new_sessions", stats.new_sessions.to_string()),
        ("user.zkfs.last_error", stats.last_error.unwrap_or_default()),
    ]
}

/// Whether the session is on a read-write or a read-only server (`readonly_ok`).
fn server_mode(session: &Session) -> &'static str {
    match (session.on_read_only_server(), session.security().readonly_ok()) {
        (true, _) => "read-only (changes fail with EROFS until a read-write server is reachable)",
        (false, true) => "read-write (read-only servers accepted: readonly_ok)",
        (false, false) => "read-write",
    }
}

/// `user.zkfs.root` when the mount's root node is gone.
pub fn root_deleted(connect: &str) -> String {
    let chroot = connect.find('/').map_or("/", |i| &connect[i..]);
    format!("deleted: the chroot {chroot} no longer exists in ZooKeeper; reads fail (ENOENT) until it is created again")
}

/// The ensemble member this process holds an established TCP connection to, found in
/// /proc (zookeeper-client does not say which server it chose).
fn connected_server(connect: &str) -> Option<String> {
    let ports: Vec<u16> = connect
        .split('/')
        .next()?
        .split(',')
        .filter_map(|hp| hp.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
        .collect();
    let sockets: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue; // not ESTABLISHED
            }
            let inode: u64 = f[9].parse().unwrap_or(0);
            let Some((addr, port)) = f[2].rsplit_once(':') else { continue };
            let port = u16::from_str_radix(port, 16).unwrap_or(0);
            if sockets.contains(&inode) && ports.contains(&port) {
                return Some(format!("{}:{port}", proc_addr(addr)));
            }
        }
    }
    None
}

/// An address as /proc/net/tcp{,6} prints it (hex, in host-order 32-bit words).
fn proc_addr(hex: &str) -> String {
    let words: Vec<u32> =
        (0..hex.len() / 8).filter_map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()).collect();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let a: [u8; 16] = bytes.try_into().unwrap_or([0; 16]);
            let v6 = std::net::Ipv6Addr::from(a);
            v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_else(|| format!("[{v6}]"))
        }
        _ => hex.to_string(),
    }
}

/// `zkfs status MOUNTPOINT`: prints the mount's state, read from its root's attributes.
/// A reader that stops early (`| head -1`) is not an error.
pub fn print(mountpoint: &Path) -> Result<(), String> {
    let names = list(mountpoint)?;
    let ours: Vec<&String> = names.iter().filter(|n| n.starts_with("user.zkfs.")).collect();
    if ours.is_empty() {
        return Err(format!("{} is not a zkfs mount", mountpoint.display()));
    }
    let mut out = String::new();
    for name in ours {
        let value = get(mountpoint, name)?;
        let key = name.trim_start_matches("user.zkfs.");
        if value.contains('\n') || key == "registrations" {
            out.push_str(&format!("{key}:\n"));
            for line in value.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        } else {
            out.push_str(&format!("{key}: {value}\n"));
        }
    }
    to_stdout(&out).map_err(|e| format!("writing the status: {e}"))
}

/// Writes `text` to stdout; a closed stdout (`| head -1`) is fine, not a panic.
pub fn to_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn cpath(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("bad path {}", p.display()))
}

// listxattr and getxattr through libc: nix (0.31) has no wrapper for them.
fn list(p: &Path) -> Result<Vec<String>, String> {
    let c = cpath(p)?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: listxattr into a buffer we own, with its length.
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(format!("{}: {}", p.display(), std::io::Error::last_os_error()));
    }
    buf.truncate(n as usize);
    Ok(buf.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

pub fn get(p: &Path, name: &str) -> Result<String, String> {
    let c = cpath(p)?;
    let n = CString::new(name).map_err(|_| "bad attribute name".to_string())?;
    let mut buf = vec![0u8; 256 * 1024];
    // SAFETY: getxattr into a buffer we own, with its length.
    let len = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(format!("{} {name}: {}", p.display(), std::io::Error::last_os_error()));
    }
    buf.truncate(len as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_are_decoded() {
        // /proc/net/tcp shows 127.0.0.1 as 0100007F on little-endian machines.
        let hex = format!("{:08X}", u32::from_ne_bytes([127, 0, 0, 1]));
        assert_eq!(proc_addr(&hex), "127.0.0.1");
    }
}
