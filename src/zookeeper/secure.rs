//! Secure ensembles: TLS (a CA bundle, a client certificate and its key, server-name
//! verification), SASL DIGEST-MD5 or GSSAPI (Kerberos, in [`super::kerberos`]), and
//! sessions on read-only servers; and, since
//! zookeeper-client gives back only "no hosts" for a failed handshake, why a TLS
//! connection failed.
//!
//! Every file is checked when the mount starts, before anything is mounted: a key or a
//! password file that group or others may read, or that belongs to another user, is
//! refused (as ssh refuses such a key), and so is a file that cannot be read or holds
//! no PEM of the right kind, or a client certificate outside its validity dates. The
//! password never appears on the command line: `sasl_password_file=FILE` names it.
//!
//! Certificate rotation: the TLS files are checked for changes (their size, mtime and
//! inode) every [`REFRESH_EVERY`] and whenever the connection is lost; changed files
//! that have not changed again since the previous check and that load are used for
//! every later connection (zookeeper-client builds each
//! connection's TLS configuration from the current certificates), without a remount;
//! files that no longer load are logged and the previous certificates kept. A
//! connection already established keeps the certificate it was made with.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{info, warn};
use zookeeper_client::{SaslOptions, TlsCa, TlsCerts, TlsDynamicCerts, TlsIdentity, TlsOptions};

use super::kerberos::Kerberos;
pub use super::kerberos::KerberosFiles;
use super::private::check_private;
use crate::sync::Recover;

/// How often the TLS files are checked for a change.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The TLS files of a mount, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificates the server's certificate must chain to (`tls_ca=FILE`).
    pub ca: PathBuf,
    /// The client certificate (chain), PEM (`tls_cert=FILE`).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key, PEM (`tls_key=FILE`).
    pub key: Option<PathBuf>,
    /// Check that the server's certificate names the host connected to (the default).
    pub verify_hostname: bool,
}

/// SASL DIGEST-MD5 credentials, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslFiles {
    /// The user name (`sasl_user=NAME`).
    pub user: String,
    /// The file holding the password (`sasl_password_file=FILE`).
    pub password_file: PathBuf,
}

/// What the mount asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Connect with TLS.
    pub tls: Option<TlsFiles>,
    /// Authenticate with SASL DIGEST-MD5.
    pub sasl: Option<SaslFiles>,
    /// Authenticate with SASL GSSAPI (Kerberos); never together with `sasl`. Boxed:
    /// most mounts have none, and every command's parse result would carry its size.
    pub kerberos: Option<Box<KerberosFiles>>,
    /// Accept a session on a read-only server (`readonly_ok`).
    pub readonly_ok: bool,
}

/// The loaded, checked security settings of a mount.
pub struct Security {
    tls: Option<Tls>,
    sasl: Option<(String, String)>,
    kerberos: Option<Kerberos>,
    readonly_ok: bool,
}

struct Tls {
    files: TlsFiles,
    /// Shared with every client made: updating it changes the next connection's certs.
    certs: TlsDynamicCerts,
    /// What the files looked like when last loaded, and at the last check. Held only
    /// to compare and replace the stamps, never with another lock: cannot deadlock.
    stamps: Mutex<Stamps>,
}

/// A file's size, mtime and inode: a change of any means it was replaced or rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(u64, i64, i64, u64);

/// The stamps of the TLS files when loaded, and when last seen.
#[derive(Debug)]
struct Stamps {
    loaded: Vec<Stamp>,
    seen: Vec<Stamp>,
}

impl Security {
    /// Plaintext, no SASL: what a mount has without the options of this module.
    pub fn none() -> Security {
        Security { tls: None, sasl: None, kerberos: None, readonly_ok: false }
    }

    /// Reads and checks every file `options` names; with Kerberos, gets a ticket for
    /// the service of `first_host`, the first server of the connection string (see
    /// [`Kerberos::load`]: must run before any other thread).
    ///
    /// # Notable errors
    /// A file that cannot be read, is readable by others (keys, passwords, keytabs),
    /// holds no PEM of its kind, or a client certificate outside its validity dates; a
    /// Kerberos principal or keytab the KDC refuses: the message names the file or
    /// option and what to do.
    pub fn load(options: &Options, first_host: &str) -> Result<Security, String> {
        let tls = match &options.tls {
            None => None,
            Some(files) => {
                let certs = load_certs(files)?;
                let now = stamps(files);
                let stamps = Mutex::new(Stamps { loaded: now.clone(), seen: now });
                Some(Tls { files: files.clone(), certs: TlsDynamicCerts::new(certs), stamps })
            }
        };
        let sasl = match &options.sasl {
            None => None,
            Some(s) => Some((s.user.clone(), read_password(&s.password_file)?)),
        };
        let kerberos = options.kerberos.as_ref().map(|k| Kerberos::load(k, first_host)).transpose()?;
        if let Some(k) = &kerberos {
            info!("Kerberos credentials of {}", k.principal());
        }
        Ok(Security { tls, sasl, kerberos, readonly_ok: options.readonly_ok })
    }

    /// True if connections use TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// True if the mount has an identity of its own: a client certificate or SASL.
    pub fn authenticates(&self) -> bool {
        self.sasl.is_some() || self.kerberos.is_some() || self.tls.as_ref().is_some_and(|t| t.files.cert.is_some())
    }

    /// What a server's "authentication failed" means with these credentials.
    pub fn refusal(&self) -> String {
        match &self.kerberos {
            Some(k) => format!(
                "refused the Kerberos authentication of {} although the KDC gave a ticket for it: the servers' \
                 keytab does not hold the KDC's current key of {} (make theirs anew), or the server does not \
                 take SASL (authProvider SASLAuthenticationProvider)",
                k.principal(),
                k.service_principal()
            ),
            None => "refused the credentials (authentication failed: wrong password or unknown user?)".into(),
        }
    }

    /// True if a read-only server is acceptable.
    pub fn readonly_ok(&self) -> bool {
        self.readonly_ok
    }

    /// How the mount reaches the ensemble, for `zkfs status`.
    pub fn transport(&self) -> String {
        match &self.tls {
            None => "plaintext".into(),
            Some(t) if t.files.verify_hostname => "tls (server name verified)".into(),
            Some(_) => "tls (server name NOT verified: tls_no_verify_hostname)".into(),
        }
    }

    /// `connector` with this mount's TLS, SASL and read-only settings.
    pub(crate) fn apply(&self, mut connector: zookeeper_client::Connector) -> zookeeper_client::Connector {
        if let Some(tls) = &self.tls {
            let mut options = TlsOptions::new().with_certs(tls.certs.clone());
            if !tls.files.verify_hostname {
                // SAFETY (not memory safety): the user turned server-name checks off
                // with tls_no_verify_hostname, and the README says what that risks.
                options = unsafe { options.with_no_hostname_verification() };
            }
            connector = connector.with_tls(options);
        }
        if let Some((user, password)) = &self.sasl {
            connector = connector.with_sasl(SaslOptions::digest_md5(user.clone(), password.clone()));
        }
        if let Some(kerberos) = &self.kerberos {
            connector = connector.with_sasl(kerberos.sasl_options());
        }
        connector.with_readonly(self.readonly_ok)
    }

    /// Reloads the TLS files if they changed since last loaded and not since the last
    /// check (a rotation replaces the certificate and the key one after the other: a
    /// pair is taken once it has settled): the next connection uses them. Files that
    /// do not load are logged once and the previous ones kept.
    pub fn refresh(&self) {
        let Some(tls) = &self.tls else { return };
        let now = stamps(&tls.files);
        {
            let mut s = tls.stamps.locked();
            if s.loaded == now {
                s.seen = now;
                return;
            }
            if s.seen != now {
                s.seen = now;
                return; // changed since the last check: wait until it settles
            }
            s.loaded = now;
        }
        match load_certs(&tls.files) {
            Ok(certs) => {
                tls.certs.update(certs);
                info!("the TLS certificate files changed: the next connection to ZooKeeper uses them");
            }
            Err(e) => warn!("the TLS certificate files changed but cannot be used ({e}); keeping the previous ones"),
        }
    }

    /// Why the last TLS connection attempt failed, in words, if one did.
    pub fn last_failure(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let raw = LAST_FAILURE.locked().clone()?;
        Some(explain(&raw, &tls.files))
    }

    /// What a connection error that is no server's answer means: the TLS setup itself
    /// refused (a key that is not the certificate's). `None` for any other error.
    pub fn setup_failure(&self, error: &str) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let (cert, key) = (tls.files.cert.as_ref()?, tls.files.key.as_ref()?);
        (error.contains("KeyMismatch") || error.contains("invalid client private key"))
            .then(|| format!("tls_key {} is not the key of tls_cert {} [{error}]", key.display(), cert.display()))
    }

    /// True if the last TLS failure was about certificates (retrying cannot help),
    /// rather than a server not answering yet.
    pub fn failure_is_final(&self) -> bool {
        self.tls.is_some()
            && LAST_FAILURE.locked().as_deref().is_some_and(|raw| {
                ["InvalidCertificate", "AlertReceived", "InvalidMessage", "CorruptMessage"]
                    .iter()
                    .any(|w| raw.contains(w))
            })
    }
}

/// The last connection failure zookeeper-client logged. Held only to set or copy it,
/// never with another lock: cannot deadlock.
static LAST_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// True while a connection is being made (see [`connecting`]): only then are
/// zookeeper-client's records read, so that a connected mount formats none of the
/// debug records its requests make.
static CONNECTING: AtomicBool = AtomicBool::new(false);

/// Says whether the mount is connecting (opening a session, or reconnecting after a
/// lost connection): [`observe`] reads zookeeper-client's records only meanwhile.
pub fn connecting(on: bool) {
    CONNECTING.store(on, Ordering::Relaxed);
}

/// True for the records [`observe`] reads: while connecting, those of zookeeper-client's
/// session (why a connection failed) and its TLS client (a rotated pair refused).
pub fn observes(target: &str) -> bool {
    CONNECTING.load(Ordering::Relaxed)
        && matches!(target, "zookeeper_client::session" | "zookeeper_client::tls::client")
}

/// Takes note of zookeeper-client's log record saying why a connection failed (it logs
/// the handshake's error at debug level and returns only "no hosts" or a timeout). The
/// logger hands every record of the targets [`observes`] names here.
pub fn observe(record: &log::Record) {
    if !observes(record.target()) {
        return;
    }
    let text = record.args().to_string();
    if let Some(why) = text.strip_prefix("fail to create tls config for updated certs: ") {
        // A rotated pair zkfs loaded but rustls refuses (a key that does not match its
        // certificate): said at zkfs's level, since zookeeper-client's warnings are
        // filtered out by default.
        warn!("the changed TLS certificate files cannot be used ({why}); connections keep the previous ones");
        return;
    }
    if text.starts_with("fails in connecting to") || text.starts_with("fails to establish session") {
        if let Some((_, why)) = text.split_once(" due to ") {
            *LAST_FAILURE.locked() = Some(why.to_string());
        }
    }
}

/// Forgets the last failure (before an attempt whose own failure is wanted).
pub fn clear_failure() {
    *LAST_FAILURE.locked() = None;
}

/// What a TLS error of rustls (as zookeeper-client logs it) means for the user.
fn explain(raw: &str, files: &TlsFiles) -> String {
    let ca = files.ca.display();
    let has = |w: &str| raw.contains(w);
    let what = if has("UnknownIssuer") || has("BadSignature") {
        format!("the server's certificate is not signed by a CA in tls_ca={ca} (wrong CA?)")
    } else if has("InvalidCertificate(Expired") {
        "the server's certificate has expired".to_string()
    } else if has("InvalidCertificate(NotValidYet") {
        "the server's certificate is not valid yet (check the clocks)".to_string()
    } else if has("NotValidForName") {
        "the server's certificate does not name the host in the connection string (server-name verification; \
         connect by a name the certificate holds)"
            .to_string()
    } else if has("InvalidCertificate(Revoked") {
        "the server's certificate is revoked".to_string()
    } else if has("InvalidCertificate") {
        let detail = raw.split("InvalidCertificate(").nth(1).unwrap_or(raw).trim_end_matches([')', ' ', '}']);
        format!("the server's certificate is refused: {detail}")
    } else if has("AlertReceived") {
        match &files.cert {
            None => "the server refused the connection without a client certificate: it requires one \
                     (give tls_cert=FILE and tls_key=FILE)"
                .to_string(),
            Some(cert) => format!(
                "the server refused the client certificate tls_cert={} (not signed by a CA it trusts, \
                 expired or revoked)",
                cert.display()
            ),
        }
    } else if has("InvalidContentType") || has("CorruptMessage") || has("InvalidMessage") || has("handshake eof") {
        "the server does not speak TLS on that port (is it a plaintext clientPort? connect to its \
         secureClientPort)"
            .to_string()
    } else if has("ConnectionRefused") || has("Connection refused") {
        "connection refused (nothing listens there)".to_string()
    } else {
        return format!("TLS connection failed: {raw}");
    };
    format!("{what} [{}]", raw.trim())
}

fn stamp(path: &Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(m) => Stamp(m.size(), m.mtime(), m.mtime_nsec(), m.ino()),
        Err(_) => Stamp(0, 0, 0, 0),
    }
}

fn stamps(files: &TlsFiles) -> Vec<Stamp> {
    [Some(&files.ca), files.cert.as_ref(), files.key.as_ref()].into_iter().flatten().map(|p| stamp(p)).collect()
}

/// Reads a file that must stay private (see [`super::private::check_private`]).
fn read_private(path: &Path, what: &str) -> Result<String, String> {
    check_private(path, what)?;
    std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn read_public(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// The password on the first line of a private file.
fn read_password(path: &Path) -> Result<String, String> {
    let text = read_private(path, "sasl_password_file")?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(format!("sasl_password_file {}: its first line (the password) is empty", path.display()));
    }
    Ok(line.to_string())
}

fn load_certs(files: &TlsFiles) -> Result<TlsCerts, String> {
    let ca_pem = read_public(&files.ca, "tls_ca")?;
    let ca = TlsCa::from_pem(&ca_pem)
        .map_err(|e| format!("tls_ca {}: no CA certificate in it ({e}); expected PEM", files.ca.display()))?;
    let mut builder = TlsCerts::builder().with_ca(ca);
    if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
        let key_pem = read_private(key, "tls_key")?;
        if key_pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || key_pem.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(format!(
                "tls_key {}: the key is encrypted; zkfs reads unencrypted keys (mode 600) only: \
                 openssl pkey -in {0} -out NEW.key",
                key.display()
            ));
        }
        let cert_pem = read_public(cert, "tls_cert")?;
        let first = first_pem_der(&cert_pem, "CERTIFICATE")
            .ok_or_else(|| format!("tls_cert {}: no certificate in it; expected PEM", cert.display()))?;
        check_validity(&first, SystemTime::now()).map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
        let identity = TlsIdentity::from_pem(&cert_pem, &key_pem)
            .map_err(|e| format!("tls_cert {} and tls_key {}: {e}", cert.display(), key.display()))?;
        builder = builder.with_identity(identity);
    }
    builder.build().map_err(|e| format!("TLS: {e}"))
}

/// The DER bytes of the first PEM block labelled `label`.
fn first_pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    base64(&pem[start..stop])
}

fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// One DER element: its tag and contents, and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, b| (a << 8) | usize::from(*b)), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The notBefore and notAfter of a DER certificate, in seconds since the epoch.
fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let (_, certificate, _) = der(cert)?;
    let (_, tbs, _) = der(certificate)?;
    let mut rest = tbs;
    let (tag, _, after) = der(rest)?;
    if tag == 0xa0 {
        rest = after; // the version
    }
    let (_, _, rest) = der(rest)?; // serial number
    let (_, _, rest) = der(rest)?; // signature algorithm
    let (_, _, rest) = der(rest)?; // issuer
    let (_, validity, _) = der(rest)?;
    let (t1, not_before, rest) = der(validity)?;
    let (t2, not_after, _) = der(rest)?;
    Some((asn1_time(t1, not_before)?, asn1_time(t2, not_after)?))
}

/// UTCTime (tag 0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ).
fn asn1_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, min, sec) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Refuses a certificate outside its validity dates at `now`.
fn check_validity(cert: &[u8], now: SystemTime) -> Result<(), String> {
    let Some((not_before, not_after)) = validity(cert) else {
        return Ok(()); // unreadable dates: left to the TLS library to judge
    };
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let date = |t: i64| {
        let days = t.div_euclid(86_400);
        // Civil date from days (inverse of the above).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}")
    };
    if now > not_after {
        return Err(format!("the certificate expired on {} UTC; renew it", date(not_after)));
    }
    if now < not_before {
        return Err(format!("the certificate is not valid before {} UTC (check the clock)", date(not_before)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn1_times_are_read() {
        assert_eq!(asn1_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(asn1_time(0x17, b"261207233114Z"), Some(1_796_686_274));
        assert_eq!(asn1_time(0x18, b"20261207233114Z"), Some(1_796_686_274));
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(base64("aGVs\nbG8=").unwrap(), b"hello");
    }

    #[test]
    fn tls_errors_are_explained() {
        let files = TlsFiles { ca: "/ca.pem".into(), cert: None, key: None, verify_hostname: true };
        let e = explain("Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }", &files);
        assert!(e.contains("not signed by a CA in tls_ca=/ca.pem"), "{e}");
        let e = explain("Custom { kind: InvalidData, error: AlertReceived(BadCertificate) }", &files);
        assert!(e.contains("requires one"), "{e}");
    }
}
