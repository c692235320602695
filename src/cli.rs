//! The command line: `zkfs [-f] [-o OPTIONS] CONNECT MOUNTPOINT`, parsed into a validated
//! [`Config`]. Options may also follow the positional arguments, as fuse3's mount
//! helper (`mount -t fuse.zkfs`, fstab) places them.

use std::path::PathBuf;
use std::time::Duration;

/// Default ZooKeeper session timeout.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Let the kernel check permissions from the modes zkfs shows.
    pub default_permissions: bool,
    /// The ZooKeeper session timeout asked for.
    pub session_timeout: Duration,
    /// Generic mount flags passed to the kernel (`nosuid`, `noexec`, ...).
    pub kernel_flags: Vec<String>,
    /// A file holding `user:password` for ZooKeeper's digest authentication.
    pub credentials: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Mount.
    Mount(Config),
    /// Print the state of a mount.
    Status(PathBuf),
    /// `export`, `import` or `validate` a tree in zc.zk's text format.
    Tree(crate::transfer::TreeCommand),
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
}

/// The text of `zkfs --help`.
pub const HELP: &str = "\
zkfs - mount Apache ZooKeeper as a filesystem

Usage: zkfs [-f] [-o OPTIONS] CONNECT MOUNTPOINT
       zkfs status MOUNTPOINT
       zkfs export [--ephemeral] DIR
       zkfs import [--dry-run] [--trim] FILE DIR
       zkfs validate FILE

  CONNECT      ZooKeeper connection string host:port[,host:port...][/chroot]
  MOUNTPOINT   an existing directory

  -f           stay in the foreground and log to stderr (RUST_LOG=zkfs=debug for more)
  -o OPTIONS   comma-separated mount options (may be repeated):
                 ro                     refuse every change with EROFS (events still arrive)
                 rw                     read-write (the default)
                 allow_other            let other users use the mount
                 allow_root             let root use the mount
                 default_permissions    let the kernel check the modes shown
                 session_timeout=SECS   ZooKeeper session timeout (default 10)
                 credentials=FILE       authenticate with ZooKeeper's digest scheme as the
                                        user:password in FILE (mode 600: not readable by others)
               mount(8)/fstab options accepted: defaults, auto, noauto, user(=*),
               nouser, users, owner, group, _netdev, _rnetdev, nofail, x-*, comment=*,
               fsname=*, subtype=*, the *atime, lazytime, iversion, mand, silent and
               symfollow families, and the kernel flags nosuid, suid, nodev, dev,
               noexec, exec, noatime, atime, sync, async, dirsync.
               Not supported: remount, drop_privileges.
  -h, --help   print this help
  -V, --version

`zkfs status MOUNTPOINT` prints the mount's session, state, connected server,
registrations, reconnects and last error. Every file and directory also carries its
znode's stat as extended attributes: getfattr -d FILE.

`zkfs export DIR` prints the tree under DIR, a directory of a zkfs mount, in zc.zk's
tree format (--ephemeral: registrations too). `zkfs import FILE DIR` (FILE `-`: stdin)
makes the tree under DIR match FILE and prints each change: --dry-run only prints them,
--trim also removes the nodes FILE lacks inside the nodes it names (never a
registration or a node holding one). `zkfs validate FILE` checks FILE's syntax.

Without -f, zkfs returns once the filesystem is mounted and serves it in the
background. SIGINT, SIGTERM, `fusermount3 -u MOUNTPOINT` or `umount MOUNTPOINT` unmount
it and close the ZooKeeper session, so the mount's registrations disappear at once.
";

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
    if let Some(command) = args.next_if(|a| matches!(a.as_str(), "export" | "import" | "validate")) {
        return crate::transfer::parse_args(&command, args.collect()).map(Command::Tree);
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
        kernel_flags: Vec::new(),
        credentials: None,
    };
    for option in options.iter().flat_map(|o| o.split(',')).filter(|o| !o.is_empty()) {
        apply_option(&mut config, option)?;
    }
    Ok(Command::Mount(config))
}

const KERNEL_FLAGS: &[&str] =
    &["nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime", "sync", "async", "dirsync"];
/// Accepted for mount(8) and fstab, with no meaning for zkfs (or passed by mount(8) as
/// text although the kernel handles them for every filesystem alike).
const IGNORED: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "_rnetdev",
    "nofail",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
    "iversion",
    "noiversion",
    "mand",
    "nomand",
    "silent",
    "loud",
    "symfollow",
    "nosymfollow",
];

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
        ("default_permissions", None) => config.default_permissions = true,
        ("session_timeout", Some(v)) => {
            let secs: f64 = v
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 1.0 && *s <= 3600.0)
                .ok_or_else(|| format!("session_timeout={v}: expected seconds from 1 to 3600"))?;
            config.session_timeout = Duration::from_secs_f64(secs);
        }
        ("credentials", Some(v)) if !v.is_empty() => config.credentials = Some(PathBuf::from(v)),
        (k, None) if KERNEL_FLAGS.contains(&k) => config.kernel_flags.push(k.to_string()),
        (k, None) if IGNORED.contains(&k) => {}
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
    fn unknown_options_and_bad_values_are_errors() {
        assert!(parse(args("-o bogus h:1 /m")).unwrap_err().contains("unknown mount option \"bogus\""));
        assert!(parse(args("-o session_timeout=0 h:1 /m")).is_err());
        assert!(parse(args("-o session_timeout=abc h:1 /m")).is_err());
        assert!(parse(args("-x h:1 /m")).is_err());
        assert!(parse(args("h:1")).is_err());
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
