//! Where the log goes: stderr in the foreground; in the background, syslog (where
//! `/dev/log` exists: the journal or a syslog daemon picks it up) and the file of
//! `-o log_file=PATH`. A background mount is never silent: with neither, zkfs says so
//! on stderr before it detaches.
//!
//! `RUST_LOG` filters as usual (env_logger's filter syntax); zookeeper-client's own
//! records arrive through `tracing`'s `log` feature under their target.
//!
//! Syslog is written by hand, one datagram per record in the `<PRI>zkfs[PID]: MSG`
//! form that journald and every syslog daemon read, rather than with the `syslog`
//! crate: that is all zkfs needs (a dozen lines over `UnixDatagram`), it reconnects by
//! itself when the daemon restarts, and it adds no dependency to audit.

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, Log, Metadata, Record};

use crate::sync::Recover;

/// The socket syslog listens on.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// The longest message sent to syslog; longer ones are cut (datagrams have a limit).
const MAX_SYSLOG_BYTES: usize = 8 * 1024;

/// Where log records go.
pub struct Sinks {
    /// Write to stderr (the foreground).
    pub stderr: bool,
    /// Send to syslog at this socket.
    pub syslog: Option<Syslog>,
    /// Append to this file.
    pub file: Option<File>,
}

/// Installs the logger: `default_filter` unless `RUST_LOG` says otherwise.
pub fn init(sinks: Sinks, default_filter: &str) {
    init_with(sinks, default_filter, false);
}

/// [`init`]; `observe_client`: also hand zookeeper-client's debug records, whatever the
/// filter, to `zookeeper::secure::observe`, which learns from them why a TLS
/// connection failed (the client says so only there).
fn init_with(sinks: Sinks, default_filter: &str, observe_client: bool) {
    let filter = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter)).build();
    let mut max = filter.filter();
    if observe_client {
        max = max.max(log::LevelFilter::Debug);
    }
    let logger =
        Logger { filter, observe_client, stderr: sinks.stderr, syslog: sinks.syslog.map(Mutex::new), file: sinks.file };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

/// Installs the mount's logger: stderr in the foreground, syslog in the background,
/// and `log_file` in both. Returns the warning to print on stderr (still the terminal
/// until the mount detaches) once mounted, when a background mount would have
/// nowhere to log. (Printed only then, so that a failing mount still says one line.)
///
/// # Notable errors
/// The log file cannot be opened: the mount must not start without its log.
///
/// `tls`: the mount connects over TLS (see [`init_with`]).
pub fn init_mount(foreground: bool, log_file: Option<&Path>, tls: bool) -> Result<Option<String>, String> {
    let file = log_file.map(open_file).transpose()?;
    let syslog = if foreground { None } else { Syslog::at(Path::new(SYSLOG_SOCKET)) };
    let warning = (!foreground && syslog.is_none() && file.is_none()).then(|| {
        format!(
            "zkfs: warning: no syslog ({SYSLOG_SOCKET} does not exist) and no log_file=PATH: \
             the background mount logs nothing; add -o log_file=PATH or run with -f"
        )
    });
    // Mounts, expiries, registrations and refused changes are info and up: what an
    // operator reads in the journal; RUST_LOG=zkfs=debug for everything.
    init_with(Sinks { stderr: foreground, syslog, file }, "zkfs=info,zookeeper_client=error", tls);
    Ok(warning)
}

/// Opens the `log_file=PATH` file for appending (created 0640).
pub fn open_file(path: &Path) -> Result<File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| format!("log_file={}: {e}", path.display()))
}

struct Logger {
    filter: env_logger::Logger,
    observe_client: bool,
    stderr: bool,
    /// Held only while one datagram is sent: never across anything that logs.
    syslog: Option<Mutex<Syslog>>,
    file: Option<File>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.filter.enabled(metadata)
            || (self.observe_client
                && metadata.level() <= Level::Debug
                && crate::zookeeper::secure::observes(metadata.target()))
    }

    fn log(&self, record: &Record) {
        if self.observe_client {
            crate::zookeeper::secure::observe(record);
        }
        if !self.filter.matches(record) {
            return;
        }
        let line = format!("{:<5} {}] {}", record.level(), record.target(), record.args());
        if self.stderr || self.file.is_some() {
            let stamped = format!("[{} {line}\n", timestamp(SystemTime::now()));
            if self.stderr {
                let _ = std::io::stderr().write_all(stamped.as_bytes());
            }
            // `&File` writes with O_APPEND: one write per record, whole lines.
            if let Some(mut file) = self.file.as_ref() {
                let _ = file.write_all(stamped.as_bytes());
            }
        }
        if let Some(syslog) = &self.syslog {
            syslog.locked().send(record.level(), &line);
        }
    }

    fn flush(&self) {}
}

/// A connection to syslog's datagram socket, made again whenever a send fails.
pub struct Syslog {
    path: PathBuf,
    socket: Option<UnixDatagram>,
}

impl Syslog {
    /// Syslog at `path` if something listens there.
    pub fn at(path: &Path) -> Option<Syslog> {
        let mut s = Syslog { path: path.to_path_buf(), socket: None };
        s.connect().then_some(s)
    }

    fn connect(&mut self) -> bool {
        self.socket = UnixDatagram::unbound().ok().filter(|s| s.connect(&self.path).is_ok());
        self.socket.is_some()
    }

    /// Sends one record (facility daemon).
    pub fn send(&mut self, level: Level, msg: &str) {
        let severity = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        // The pid is read each time: the background process is a fork of the one
        // that opened the log.
        let mut datagram = format!("<{}>zkfs[{}]: {msg}", 3 * 8 + severity, std::process::id()).into_bytes();
        datagram.truncate(MAX_SYSLOG_BYTES);
        for _ in 0..2 {
            if let Some(socket) = &self.socket {
                if socket.send(&datagram).is_ok() {
                    return;
                }
            }
            // The daemon restarted: reconnect.
            if !self.connect() {
                return;
            }
        }
    }
}

/// `2026-01-31T12:00:00Z`, as env_logger prints on stderr.
fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(1_709_210_096)), "2024-02-29T12:34:56Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(4_102_444_799)), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn syslog_gets_one_datagram_per_record_and_reconnects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        assert!(Syslog::at(&path).is_none(), "nothing listens yet");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut syslog = Syslog::at(&path).unwrap();
        syslog.send(Level::Warn, "WARN  zkfs::fs::handles] refused");
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let want = format!("<28>zkfs[{}]: WARN  zkfs::fs::handles] refused", std::process::id());
        assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), want);

        // The daemon restarts: a new socket at the same path.
        drop(server);
        std::fs::remove_file(&path).unwrap();
        let server = UnixDatagram::bind(&path).unwrap();
        syslog.send(Level::Error, "again");
        let n = server.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().starts_with("<27>zkfs["));
    }
}
