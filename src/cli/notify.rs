//! systemd readiness: under `Type=notify` (zkfs@.service), zkfs sends `READY=1` to
//! `$NOTIFY_SOCKET` once the mount serves, so that units ordered after it find the
//! filesystem, and `STOPPING=1` once it is unmounted.
//!
//! The protocol is one datagram of `KEY=value` lines to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), as sd_notify(3)
//! sends it; a few lines here instead of a crate. Without `$NOTIFY_SOCKET` nothing is
//! sent.
//!
//! "Serves" means more than "mounted": the kernel queues requests to a new FUSE mount
//! until the daemon answers INIT, so the mount is in the mount table before anything
//! can use it. A thread therefore stats the mountpoint — a GETATTR that only the
//! running session answers — and notifies after that answer.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};

use log::{debug, warn};

/// Where systemd listens, from `$NOTIFY_SOCKET`, if set.
pub fn socket_from_env() -> Option<String> {
    std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty())
}

/// Sends `state` (newline-separated `KEY=value` lines) to `socket`.
pub fn send(socket: &str, state: &str) -> io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    let addr = match socket.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None if socket.starts_with('/') => SocketAddr::from_pathname(socket)?,
        None => {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is neither a path nor @name"));
        }
    };
    sender.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// Sends `state` to `$NOTIFY_SOCKET`, if set; a failure is logged, not fatal: zkfs
/// serves the same, and systemd reports the missing readiness itself.
pub fn notify(state: &str) {
    if let Some(socket) = socket_from_env() {
        match send(&socket, state) {
            Ok(()) => debug!("notified {socket}: {}", state.replace('\n', " ")),
            Err(e) => warn!("cannot notify systemd at {socket}: {e}"),
        }
    }
}

/// Notifies `READY=1` (with `status` and this process's pid) once `mountpoint`
/// answers, from a thread of its own; call it just before the session starts serving.
pub fn ready_when_serving(mountpoint: &Path, status: String) {
    let Some(socket) = socket_from_env() else { return };
    let mountpoint: PathBuf = mountpoint.to_path_buf();
    let spawned =
        std::thread::Builder::new().name("zkfs-ready".into()).spawn(move || match std::fs::metadata(&mountpoint) {
            Ok(_) => {
                let state = format!("READY=1\nSTATUS={status}\nMAINPID={}", std::process::id());
                match send(&socket, &state) {
                    Ok(()) => debug!("notified {socket}: ready"),
                    Err(e) => warn!("cannot notify systemd at {socket}: {e}"),
                }
            }
            Err(e) => {
                warn!("the new mount at {} does not answer: {e}; not notifying readiness", mountpoint.display());
                let _ = send(&socket, &format!("STATUS=the mount does not answer: {e}"));
            }
        });
    if let Err(e) = spawned {
        warn!("cannot start the readiness thread: {e}; systemd will not see zkfs ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(path.to_str().expect("utf-8"), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("zkfs-notify-test-{}", std::process::id());
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).expect("name")).expect("bind");
        send(&format!("@{name}"), "STOPPING=1").expect("send");
        let n = abstract_listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_bad_socket_is_an_error_not_a_panic() {
        assert!(send("relative/path", "READY=1").is_err());
        assert!(send("/nonexistent/zkfs-notify", "READY=1").is_err());
    }
}
