//! The command line: `zkfs [-f] [-o OPTIONS] CONNECT MOUNTPOINT`, parsed into a validated
//! [`Config`]. Options may also follow the positional arguments, as fuse3's mount
//! helper (`mount -t fuse.zkfs`, fstab) places them. What each option means, and the
//! help text, are in [`crate::cli::options`].

pub mod logging;
pub mod notify;
pub mod options;
pub mod reload;
pub mod snapshot;
pub mod template;
pub mod transfer;

use std::path::PathBuf;
use std::time::Duration;

/// Default ZooKeeper session timeout.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, at most, the re-read after an outage is put off (`resync_window=`).
pub const DEFAULT_RESYNC_WINDOW: Duration = Duration::from_secs(2);

/// The validated configuration of one mount.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// ZooKeeper connection string, `host:port[,host:port...][/chroot]`.
    pub connect: String,
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Stay in the foreground and log to stderr.
    pub foreground: bool,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Let other users use the mount.
    pub allow_other: bool,
    /// Let root use the mount.
    pub allow_root: bool,
    /// Let the kernel check permissions from the modes zkfs shows. Implied by
    /// `allow_other` unless `no_default_permissions` is given.
    pub default_permissions: bool,
    /// The ZooKeeper session timeout asked for.
    pub session_timeout: Duration,
    /// The window over which the re-read after an outage is spread (`resync_window=`).
    pub resync_window: Duration,
    /// Generic mount flags passed to the kernel (`nosuid`, `noexec`, ...).
    pub kernel_flags: Vec<String>,
    /// A file holding `user:password` for ZooKeeper's digest authentication.
    pub credentials: Option<PathBuf>,
    /// Also log to this file (`log_file=PATH`).
    pub log_file: Option<PathBuf>,
    /// TLS, SASL and read-only servers (`tls_*`, `sasl_*`, `readonly_ok`).
    pub security: crate::zookeeper::secure::Options,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Mount.
    Mount(Config),
    /// Print the state of a mount.
    Status(PathBuf),
    /// Hand a mount over to the zkfs binary installed now (`zkfs reload MOUNTPOINT`).
    Reload(PathBuf),
    /// Print the hand-over format this zkfs reads (asked by a reloading zkfs).
    HandoverFormat,
    /// `export`, `import` or `validate` a tree in zc.zk's text format.
    Tree(crate::cli::transfer::TreeCommand),
    /// Render templates from a mount (`zkfs template`).
    Template(crate::cli::template::TemplateCommand),
    /// Copy a subtree as one consistent state (`zkfs snapshot DIR OUTDIR`).
    Snapshot(PathBuf, PathBuf),
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut foreground = false;
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "status") {
        args.next();
        return match (args.next(), args.next()) {
            (Some(mountpoint), None) => Ok(Command::Status(PathBuf::from(mountpoint))),
            _ => Err("usage: zkfs status MOUNTPOINT".into()),
        };
    }
    if args.next_if(|a| a == "reload").is_some() {
        return match (args.next(), args.next()) {
            (Some(mountpoint), None) => Ok(Command::Reload(PathBuf::from(mountpoint))),
            _ => Err("usage: zkfs reload MOUNTPOINT".into()),
        };
    }
    if args.next_if(|a| a == "--handover-format").is_some() {
        return Ok(Command::HandoverFormat);
    }
    if args.next_if(|a| a == "snapshot").is_some() {
        let (dir, out) = crate::cli::snapshot::parse_args(args.collect())?;
        return Ok(Command::Snapshot(dir, out));
    }
    if args.next_if(|a| a == "template").is_some() {
        return crate::cli::template::parse_args(args.collect()).map(Command::Template);
    }
    if let Some(command) = args.next_if(|a| matches!(a.as_str(), "export" | "import" | "validate")) {
        return crate::cli::transfer::parse_args(&command, args.collect()).map(Command::Tree);
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-f" | "-d" => foreground = true,
            "-o" => options.push(args.next().ok_or("-o needs a value, e.g. -o ro")?),
            "--" => positional.extend(args.by_ref()),
            o if o.starts_with("-o") => options.push(o[2..].to_string()),
            o if o.starts_with('-') && o.len() > 1 => {
                return Err(format!("unknown flag {o}; see zkfs --help"));
            }
            _ => positional.push(arg),
        }
    }
    let [connect, mountpoint] = <[String; 2]>::try_from(positional).map_err(|p| {
        format!(
            "expected CONNECT and MOUNTPOINT, got {} argument(s); usage: zkfs [-f] [-o OPTIONS] CONNECT MOUNTPOINT",
            p.len()
        )
    })?;
    check_connect(&connect)?;
    let mut config = Config {
        connect,
        mountpoint: PathBuf::from(mountpoint),
        foreground,
        read_only: false,
        allow_other: false,
        allow_root: false,
        default_permissions: false,
        session_timeout: DEFAULT_SESSION_TIMEOUT,
        resync_window: DEFAULT_RESYNC_WINDOW,
        kernel_flags: Vec::new(),
        credentials: None,
        log_file: None,
        security: Default::default(),
    };
    let mut secure = SecureWords::default();
    let mut permissions = None;
    for option in options.iter().flat_map(|o| o.split(',')).filter(|o| !o.is_empty()) {
        match option {
            "default_permissions" | "no_default_permissions" => {
                let on = option == "default_permissions";
                if permissions == Some(!on) {
                    return Err("default_permissions and no_default_permissions contradict each other".into());
                }
                permissions = Some(on);
            }
            _ if secure.take(option)? => {}
            _ => apply_option(&mut config, option)?,
        }
    }
    config.security = secure.into_options()?;
    // allow_other without the kernel's mode checks would let every local user change
    // ZooKeeper with the mount's identity: that takes an explicit no_default_permissions.
    config.default_permissions = permissions.unwrap_or(config.allow_other);
    Ok(Command::Mount(config))
}

/// The `tls_*`, `sasl_*` and `readonly_ok` options as given, checked together at the end.
#[derive(Default)]
struct SecureWords {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    no_verify_hostname: bool,
    sasl_user: Option<String>,
    sasl_password_file: Option<PathBuf>,
    kerberos: bool,
    kerberos_principal: Option<String>,
    kerberos_keytab: Option<PathBuf>,
    kerberos_service: Option<String>,
    kerberos_host: Option<String>,
    readonly_ok: bool,
}

impl SecureWords {
    /// Takes `option` if it is one of these; false if it is another option.
    fn take(&mut self, option: &str) -> Result<bool, String> {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (option, None),
        };
        let file = |v: &str| {
            if v.is_empty() {
                Err(format!("{key}= needs a file name"))
            } else {
                Ok(Some(PathBuf::from(v)))
            }
        };
        match (key, value) {
            ("tls_ca", Some(v)) => self.ca = file(v)?,
            ("tls_cert", Some(v)) => self.cert = file(v)?,
            ("tls_key", Some(v)) => self.key = file(v)?,
            ("tls_no_verify_hostname", None) => self.no_verify_hostname = true,
            ("sasl_user", Some(v)) if !v.is_empty() => self.sasl_user = Some(v.to_string()),
            ("sasl_password_file", Some(v)) => self.sasl_password_file = file(v)?,
            ("sasl_kerberos", None) => self.kerberos = true,
            ("sasl_kerberos_principal", Some(v)) if !v.is_empty() => self.kerberos_principal = Some(v.to_string()),
            ("sasl_kerberos_keytab", Some(v)) => self.kerberos_keytab = file(v)?,
            ("sasl_kerberos_service", Some(v)) if !v.is_empty() => self.kerberos_service = Some(v.to_string()),
            ("sasl_kerberos_host", Some(v)) if !v.is_empty() => self.kerberos_host = Some(v.to_string()),
            ("sasl_kerberos_password", _) => {
                return Err("a Kerberos password is never given on the command line (ps shows it to everyone): \
                            give a keytab (sasl_kerberos_keytab=FILE, mode 600), or kinit and sasl_kerberos"
                    .into())
            }
            ("sasl_password" | "sasl_pass", _) => {
                return Err("the SASL password is never given on the command line (ps shows it to everyone): \
                            write it to a file of mode 600 and give sasl_password_file=FILE"
                    .into())
            }
            ("readonly_ok", None) => self.readonly_ok = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn into_options(self) -> Result<crate::zookeeper::secure::Options, String> {
        use crate::zookeeper::kerberos::DEFAULT_SERVICE;
        use crate::zookeeper::secure::{KerberosFiles, Options, SaslFiles, TlsFiles};
        let tls = match (self.ca, self.cert.is_some() || self.key.is_some() || self.no_verify_hostname) {
            (None, true) => {
                return Err("tls_cert, tls_key and tls_no_verify_hostname need tls_ca=FILE, the CA bundle the \
                            servers' certificates are checked against"
                    .into())
            }
            (None, false) => None,
            (Some(ca), _) => {
                if self.cert.is_some() != self.key.is_some() {
                    return Err("tls_cert=FILE and tls_key=FILE go together: give both or neither".into());
                }
                Some(TlsFiles { ca, cert: self.cert, key: self.key, verify_hostname: !self.no_verify_hostname })
            }
        };
        let sasl = match (self.sasl_user, self.sasl_password_file) {
            (Some(user), Some(password_file)) => Some(SaslFiles { user, password_file }),
            (None, None) => None,
            _ => return Err("sasl_user=NAME and sasl_password_file=FILE go together: give both".into()),
        };
        let kerberos = (self.kerberos
            || self.kerberos_principal.is_some()
            || self.kerberos_keytab.is_some()
            || self.kerberos_service.is_some()
            || self.kerberos_host.is_some())
        .then(|| {
            Box::new(KerberosFiles {
                principal: self.kerberos_principal,
                keytab: self.kerberos_keytab,
                service: self.kerberos_service.unwrap_or_else(|| DEFAULT_SERVICE.to_string()),
                host: self.kerberos_host,
            })
        });
        if sasl.is_some() && kerberos.is_some() {
            return Err("sasl_user/sasl_password_file (DIGEST-MD5) and sasl_kerberos* (GSSAPI) are two SASL \
                        mechanisms; a mount authenticates with one: give the options of one only"
                .into());
        }
        Ok(Options { tls, sasl, kerberos, readonly_ok: self.readonly_ok })
    }
}

fn apply_option(config: &mut Config, option: &str) -> Result<(), String> {
    let (key, value) = match option.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (option, None),
    };
    match (key, value) {
        ("ro", None) => config.read_only = true,
        ("rw", None) => config.read_only = false,
        ("allow_other", None) => config.allow_other = true,
        ("allow_root", None) => config.allow_root = true,
        ("session_timeout", Some(v)) => {
            let secs: f64 = v
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 1.0 && *s <= 3600.0)
                .ok_or_else(|| format!("session_timeout={v}: expected seconds from 1 to 3600"))?;
            config.session_timeout = Duration::from_secs_f64(secs);
        }
        ("resync_window", Some(v)) => {
            let secs: f64 = v
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s <= 600.0)
                .ok_or_else(|| format!("resync_window={v}: expected seconds from 0 to 600"))?;
            config.resync_window = Duration::from_secs_f64(secs);
        }
        ("credentials", Some(v)) if !v.is_empty() => config.credentials = Some(PathBuf::from(v)),
        ("log_file", Some(v)) if !v.is_empty() => config.log_file = Some(PathBuf::from(v)),
        (k, None) if options::KERNEL_FLAGS.contains(&k) => config.kernel_flags.push(k.to_string()),
        (k, None) if options::FSTAB_WORDS.contains(&k) => {}
        ("fsname" | "subtype" | "comment" | "user", Some(_)) => {}
        ("remount", None) => {
            return Err("remount is not supported: umount the mount and mount it again".into());
        }
        ("drop_privileges", None) => {
            return Err("drop_privileges is not supported: run zkfs as the user who should own the mount".into());
        }
        (k, _) if k.starts_with("x-") => {}
        _ => return Err(format!("unknown mount option {option:?}; see zkfs --help for the options")),
    }
    Ok(())
}

/// The host of the first server of a (checked) connection string, as zookeeper-client
/// names it to SASL: without port, brackets or chroot.
pub fn first_host(connect: &str) -> &str {
    let first = connect.split([',', '/']).next().unwrap_or(connect);
    let host = first.rsplit_once(':').map_or(first, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Checks a connection string: `host:port[,host:port...][/chroot]`.
pub fn check_connect(connect: &str) -> Result<(), String> {
    let bad = |why: String| {
        Err(format!("bad connection string {connect:?}: {why}; expected host:port[,host:port...][/chroot]"))
    };
    let (hosts, chroot) = match connect.find('/') {
        Some(i) => (&connect[..i], Some(&connect[i..])),
        None => (connect, None),
    };
    if hosts.is_empty() {
        return bad("no host".into());
    }
    for hp in hosts.split(',') {
        let Some((host, port)) = hp.rsplit_once(':') else {
            return bad(format!("{hp:?} has no :port"));
        };
        if host.is_empty() || host.trim_matches(|c| c == '[' || c == ']').is_empty() {
            return bad(format!("{hp:?} has no host"));
        }
        if !matches!(port.parse::<u32>(), Ok(1..=65535)) {
            return bad(format!("{hp:?} has a bad port"));
        }
    }
    if let Some(chroot) = chroot {
        if chroot != "/" && (chroot.ends_with('/') || chroot.contains("//")) {
            return bad(format!("chroot {chroot:?} must look like /a/b"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn mount(s: &str) -> Config {
        match parse(args(s)).unwrap() {
            Command::Mount(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_before_or_after_the_positional_arguments() {
        let a = mount("-f -o ro,session_timeout=4 127.0.0.1:2181 /mnt");
        let b = mount("127.0.0.1:2181 /mnt -f -o ro -o session_timeout=4");
        assert_eq!(a, b);
        assert!(a.read_only && a.foreground);
        assert_eq!(a.session_timeout, Duration::from_secs(4));
    }

    #[test]
    fn fstab_options_are_accepted() {
        let c =
            mount("h:1/app /mnt -o rw,nosuid,nodev,_netdev,noauto,x-systemd.automount,allow_other,default_permissions");
        assert!(c.allow_other && c.default_permissions && !c.read_only);
        assert_eq!(c.kernel_flags, vec!["nosuid", "nodev"]);
    }

    #[test]
    fn what_mount_8_and_fuse3_pass_is_accepted() {
        // The argv fuse3's mount helper gives zkfs (measured: see tests/fstab.rs).
        let c = mount("h:1 /mnt -o ro,allow_other,session_timeout=5,dev,suid");
        assert!(c.read_only && c.allow_other);
        assert_eq!(c.session_timeout, Duration::from_secs(5));
        mount("h:1 /mnt -o rw,nodiratime,lazytime,nosymfollow,silent,_rnetdev,user=bob");
        assert!(parse(args("h:1 /mnt -o remount,ro")).unwrap_err().contains("umount"));
    }

    #[test]
    fn allow_other_implies_default_permissions_unless_refused_explicitly() {
        let c = mount("h:1 /mnt -o allow_other");
        assert!(c.allow_other && c.default_permissions);
        let c = mount("h:1 /mnt -o allow_other,no_default_permissions");
        assert!(c.allow_other && !c.default_permissions);
        let c = mount("h:1 /mnt -o no_default_permissions -o allow_other");
        assert!(!c.default_permissions, "the order does not matter");
        assert!(!mount("h:1 /mnt").default_permissions);
        assert!(mount("h:1 /mnt -o default_permissions").default_permissions);
        assert!(parse(args("h:1 /m -o default_permissions,no_default_permissions"))
            .unwrap_err()
            .contains("contradict"));
    }

    #[test]
    fn log_file_takes_a_path() {
        assert_eq!(mount("h:1 /mnt -o log_file=/var/log/zkfs.log").log_file, Some(PathBuf::from("/var/log/zkfs.log")));
        assert!(parse(args("h:1 /m -o log_file=")).is_err());
        assert!(parse(args("h:1 /m -o log_file")).is_err());
    }

    #[test]
    fn unknown_options_and_bad_values_are_errors() {
        assert!(parse(args("-o bogus h:1 /m")).unwrap_err().contains("unknown mount option \"bogus\""));
        assert!(parse(args("-o session_timeout=0 h:1 /m")).is_err());
        assert!(parse(args("-o session_timeout=abc h:1 /m")).is_err());
        assert!(parse(args("-x h:1 /m")).is_err());
        assert!(parse(args("h:1")).is_err());
    }

    #[test]
    fn kerberos_options_make_one_gssapi_setting_and_mix_with_no_digest() {
        let k = mount("h:1 /m -o sasl_kerberos").security.kerberos.expect("kerberos");
        assert_eq!((k.principal, k.keytab, k.service.as_str(), k.host), (None, None, "zookeeper", None));
        let k = mount("h:1 /m -o sasl_kerberos_keytab=/k,sasl_kerberos_principal=zkfs/web1@EX.COM")
            .security
            .kerberos
            .expect("a keytab alone means Kerberos");
        assert_eq!((k.principal.as_deref(), k.keytab), (Some("zkfs/web1@EX.COM"), Some(PathBuf::from("/k"))));
        let k = mount("h:1 /m -o sasl_kerberos_service=zk,sasl_kerberos_host=zk.example.com").security.kerberos;
        assert_eq!(k.map(|k| (k.service, k.host)), Some(("zk".into(), Some("zk.example.com".into()))));
        assert!(mount("h:1 /m").security.kerberos.is_none());
        let e = parse(args("h:1 /m -o sasl_user=a,sasl_password_file=/p,sasl_kerberos_keytab=/k")).unwrap_err();
        assert!(e.contains("two SASL mechanisms"), "{e}");
        let e = parse(args("h:1 /m -o sasl_kerberos_password=x")).unwrap_err();
        assert!(e.contains("never given on the command line"), "{e}");
    }

    #[test]
    fn the_first_host_is_what_sasl_names_the_server_by() {
        assert_eq!(first_host("zk1.example.com:2181,zk2:2181/app"), "zk1.example.com");
        assert_eq!(first_host("127.0.0.1:2181"), "127.0.0.1");
        assert_eq!(first_host("[::1]:2181/x"), "::1");
    }

    #[test]
    fn tls_and_sasl_options_go_together_and_take_no_secret() {
        let c = mount("h:1 /m -o tls_ca=/ca.pem,tls_cert=/c.pem,tls_key=/c.key,sasl_user=alice,sasl_password_file=/p");
        let tls = c.security.tls.expect("tls");
        assert_eq!((tls.ca.to_str(), tls.verify_hostname), (Some("/ca.pem"), true));
        assert_eq!(c.security.sasl.expect("sasl").user, "alice");
        assert!(!mount("h:1 /m -o tls_ca=/ca.pem,tls_no_verify_hostname").security.tls.unwrap().verify_hostname);
        assert!(mount("h:1 /m -o readonly_ok").security.readonly_ok);
        for bad in [
            "tls_cert=/c.pem,tls_key=/c.key",
            "tls_ca=/ca.pem,tls_cert=/c.pem",
            "tls_ca=/ca.pem,tls_key=/c.key",
            "tls_no_verify_hostname",
            "tls_ca=",
            "sasl_user=alice",
            "sasl_password_file=/p",
            "sasl_user=alice,sasl_password=s3cret",
            "sasl_user=alice,sasl_password_file=/p,sasl_kerberos",
            "sasl_user=alice,sasl_password_file=/p,sasl_kerberos_keytab=/k",
            "sasl_kerberos_keytab=",
            "sasl_kerberos_principal=",
            "sasl_kerberos=yes",
        ] {
            assert!(parse(args(&format!("h:1 /m -o {bad}"))).is_err(), "{bad}");
        }
        // No per-server protocol: with TLS options every server is reached over TLS.
        assert!(parse(args("tcp://h:1 /m -o tls_ca=/ca.pem")).is_err());
        assert!(parse(args("h:1,tcp://g:2 /m -o tls_ca=/ca.pem")).is_err());
    }

    #[test]
    fn connection_strings_are_checked() {
        for ok in ["h:1", "a:1,b:2", "a:1,b:2/chroot/x", "[::1]:2181"] {
            assert!(check_connect(ok).is_ok(), "{ok}");
        }
        for bad in ["", "h", "h:", "h:0", "h:99999", ":1", "h:1,", "h:1/x/", "/x"] {
            assert!(check_connect(bad).is_err(), "{bad}");
        }
    }
}
