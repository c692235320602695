//! The one description of zkfs's command line — commands, flags, mount options, errnos
//! and exit codes — from which `zkfs --help`, the man page zkfs(8), the README's tables
//! and the bash completion are all generated, so that they cannot disagree.
//!
//! [`crate::cli`] parses, with the word lists here. Its tests check that every
//! option described here is one the parser accepts, and that every
//! errno [`crate::error::Error`] can give is described. `scripts/gen-docs` writes the
//! generated files (contrib/man/zkfs.8, contrib/completion/zkfs, README.md's tables);
//! `tests/docs.rs` fails when one of them differs from what this module generates.

use std::fmt::Write as _;

/// What the value of an option is, for the shell completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// No value: the option is a bare word.
    None,
    /// A number (nothing to complete).
    Number,
    /// A file name.
    File,
    /// A word such as a user name (nothing to complete).
    Word,
}

/// A `-o` mount option that zkfs acts on.
#[derive(Debug)]
pub struct MountOption {
    /// The name before `=`.
    pub name: &'static str,
    /// The placeholder of its value (`SECONDS`), for options written `name=VALUE`.
    pub placeholder: Option<&'static str>,
    /// What the value is, for completion.
    pub value: Value,
    /// What it does: one sentence, plain text.
    pub help: &'static str,
}

/// Options zkfs acts on, in the order they are documented.
pub const MOUNT_OPTIONS: &[MountOption] = &[
    MountOption {
        name: "ro",
        placeholder: None,
        value: Value::None,
        help: "refuse every change with EROFS; inotify events for changes made elsewhere still arrive",
    },
    MountOption { name: "rw", placeholder: None, value: Value::None, help: "read-write (the default)" },
    MountOption {
        name: "allow_other",
        placeholder: None,
        value: Value::None,
        help: "let other users use the mount; implies default_permissions",
    },
    MountOption { name: "allow_root", placeholder: None, value: Value::None, help: "let root use the mount" },
    MountOption {
        name: "default_permissions",
        placeholder: None,
        value: Value::None,
        help: "let the kernel check the modes shown: other users may then read and list, not change",
    },
    MountOption {
        name: "no_default_permissions",
        placeholder: None,
        value: Value::None,
        help: "with allow_other: do NOT let the kernel check permissions; every local user then acts \
               with the mount's ZooKeeper identity (dangerous)",
    },
    MountOption {
        name: "session_timeout",
        placeholder: Some("SECONDS"),
        value: Value::Number,
        help: "ZooKeeper session timeout asked for, 1 to 3600 (default 10; the server may clamp it)",
    },
    MountOption {
        name: "resync_window",
        placeholder: Some("SECONDS"),
        value: Value::Number,
        help: "after a reconnect or a new session, re-read what the kernel holds after a random delay of up to \
               SECONDS, 0 to 600 (default 2), so that a fleet coming back at once does not read at once",
    },
    MountOption {
        name: "credentials",
        placeholder: Some("FILE"),
        value: Value::File,
        help: "authenticate with ZooKeeper's digest scheme as the user:password on the first line of FILE \
               (yours or root's, mode 600)",
    },
    MountOption {
        name: "tls_ca",
        placeholder: Some("FILE"),
        value: Value::File,
        help: "connect over TLS (to the servers' secureClientPort), trusting the CA certificates in FILE (PEM); \
               every server of CONNECT is then reached over TLS, never in plaintext",
    },
    MountOption {
        name: "tls_cert",
        placeholder: Some("FILE"),
        value: Value::File,
        help: "with tls_ca: present the client certificate (chain) in FILE (PEM); needs tls_key",
    },
    MountOption {
        name: "tls_key",
        placeholder: Some("FILE"),
        value: Value::File,
        help: "the private key of tls_cert, PEM (yours or root's, mode 600); changed certificate and key files \
               are used from the next connection on, without a remount",
    },
    MountOption {
        name: "tls_no_verify_hostname",
        placeholder: None,
        value: Value::None,
        help: "with tls_ca: accept a server certificate that does not name the host connected to (the CA is \
               still checked; dangerous)",
    },
    MountOption {
        name: "sasl_user",
        placeholder: Some("NAME"),
        value: Value::Word,
        help: "authenticate with SASL DIGEST-MD5 as NAME (the server's JAAS Server section); needs \
               sasl_password_file",
    },
    MountOption {
        name: "sasl_password_file",
        placeholder: Some("FILE"),
        value: Value::File,
        help: "the SASL password, on the first line of FILE (yours or root's, mode 600)",
    },
    MountOption {
        name: "sasl_kerberos",
        placeholder: None,
        value: Value::None,
        help: "authenticate with SASL GSSAPI (Kerberos) with the tickets of the ticket cache (KRB5CCNAME or the \
               default cache; kept fresh by kinit, k5start or sssd); implied by the sasl_kerberos_* options",
    },
    MountOption {
        name: "sasl_kerberos_keytab",
        placeholder: Some("FILE"),
        value: Value::File,
        help: "get the Kerberos tickets from the keytab FILE (yours or root's, mode 600) instead, into a ticket \
               cache of the mount's own in memory, renewed from it",
    },
    MountOption {
        name: "sasl_kerberos_principal",
        placeholder: Some("NAME"),
        value: Value::Word,
        help: "the mount's Kerberos principal (alice@EXAMPLE.COM): which key of the keytab (default its first), or \
               the principal the ticket cache must hold",
    },
    MountOption {
        name: "sasl_kerberos_service",
        placeholder: Some("NAME"),
        value: Value::Word,
        help: "the service part of the servers' principal NAME/HOST@REALM (default zookeeper; Java's \
               zookeeper.sasl.client.username)",
    },
    MountOption {
        name: "sasl_kerberos_host",
        placeholder: Some("HOST"),
        value: Value::Word,
        help: "the host part of the servers' principal (default: each server's host as written in CONNECT)",
    },
    MountOption {
        name: "readonly_ok",
        placeholder: None,
        value: Value::None,
        help: "accept a session on a read-only server (readonlymode.enabled) while no read-write one is \
               reachable: reads and events go on, changes fail with EROFS",
    },
    MountOption {
        name: "log_file",
        placeholder: Some("PATH"),
        value: Value::File,
        help: "log to PATH as well (in the background the log also goes to syslog)",
    },
];

/// Generic mount flags zkfs passes to the kernel.
pub const KERNEL_FLAGS: &[&str] =
    &["nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime", "sync", "async", "dirsync"];

/// Bare words accepted for mount(8) and fstab that have no effect on zkfs.
pub const FSTAB_WORDS: &[&str] = &[
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

/// Options with a value, or patterns, accepted for mount(8) and fstab with no effect.
pub const FSTAB_PATTERNS: &[&str] = &["user=NAME", "fsname=*", "subtype=*", "comment=*", "x-*"];

/// Options refused, and what to do instead.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("remount", "umount the mount and mount it again"),
    ("drop_privileges", "run zkfs as the user who should own the mount"),
];

/// A flag of the command line.
#[derive(Debug)]
pub struct Flag {
    /// Its spellings, e.g. `["-h", "--help"]`.
    pub names: &'static [&'static str],
    /// The placeholder of its argument, if it takes one.
    pub arg: Option<&'static str>,
    /// What it does.
    pub help: &'static str,
}

/// Flags of `zkfs [FLAGS] CONNECT MOUNTPOINT`.
pub const FLAGS: &[Flag] = &[
    Flag {
        names: &["-f"],
        arg: None,
        help: "stay in the foreground and log to stderr (RUST_LOG=zkfs=debug for more); -d is the same",
    },
    Flag {
        names: &["-o"],
        arg: Some("OPTIONS"),
        help: "comma-separated mount options (below); may be repeated, and may follow CONNECT MOUNTPOINT",
    },
    Flag { names: &["-h", "--help"], arg: None, help: "print the help" },
    Flag { names: &["-V", "--version"], arg: None, help: "print the version" },
];

/// Spellings the parser accepts that the documentation shows under another name.
pub const FLAG_ALIASES: &[&str] = &["-d", "--"];

/// The positional arguments of a mount.
pub const ARGUMENTS: &[(&str, &str)] = &[
    ("CONNECT", "ZooKeeper connection string host:port[,host:port...][/chroot]; with a chroot the mount shows that subtree, which must exist"),
    ("MOUNTPOINT", "an existing directory"),
];

/// A subcommand: `zkfs NAME ARGS`.
#[derive(Debug)]
pub struct Subcommand {
    /// The word after `zkfs`.
    pub name: &'static str,
    /// Its arguments, as shown in the usage.
    pub args: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// The subcommands.
pub const COMMANDS: &[Subcommand] = &[
    Subcommand {
        name: "status",
        args: "MOUNTPOINT",
        help: "print the mount's session, state, connected server, registrations, reconnects and last error",
    },
    Subcommand {
        name: "reload",
        args: "MOUNTPOINT",
        help: "hand the mount over to the zkfs binary installed now, without unmounting: the session, its \
               registrations, open files and flocks stay, and requests made meanwhile wait and are answered; \
               a binary that cannot take it over is refused and the mount goes on (exit status 1)",
    },
    Subcommand {
        name: "export",
        args: "[--ephemeral] DIR",
        help: "print the tree under DIR (a directory of a zkfs mount) in zc.zk's tree format; \
               --ephemeral: registrations too",
    },
    Subcommand {
        name: "import",
        args: "[--dry-run] [--trim] FILE DIR",
        help: "make the tree under DIR match FILE (- for stdin) and print each change; --dry-run only prints \
               them; --trim also removes the nodes FILE lacks inside the nodes it names (never a registration or \
               a node holding one)",
    },
    Subcommand { name: "validate", args: "FILE", help: "check FILE's tree-format syntax without touching ZooKeeper" },
    Subcommand {
        name: "template",
        args: "[OPTIONS] SRC:DEST[:RELOAD] [--check=CMD]...",
        help: "render each template SRC (Jinja) from the mount to DEST (also -t SRC:DEST[:RELOAD]), written \
               atomically; run the --check CMD on the candidate ({} is its path) and RELOAD (or --reload CMD) \
               only when DEST changed; re-render on changes (inotify) when they stop for MIN (--wait MIN:MAX, \
               default 200ms:2s); --splay D: a random delay up to D before each apply; keeps the old DEST when a \
               read fails (mount gone, ZooKeeper unreachable), the check fails or the template is wrong; holds a \
               directory shrinking by more than --shrink PCT (50) of at least --shrink-min N (3) entries for \
               --hold D (30s); --root DIR: relative paths in templates; --status FILE: one status line per \
               template; --once: render, apply and exit; --snapshot DIR:OUTDIR[:RELOAD]: keep a snapshot (below) \
               of DIR up to date in OUTDIR, with the same debounce, splay and last-known-good",
    },
    Subcommand {
        name: "snapshot",
        args: "DIR OUTDIR",
        help: "copy the subtree DIR of a mount, read as one consistent state, into OUTDIR/..data (a symlink \
               swapped atomically to a new copy; OUTDIR/NAME links to ..data/NAME), for programs that read a \
               directory of files; nothing changes if DIR keeps changing or cannot be read",
    },
];

/// The errnos a program can meet on a zkfs mount, and when.
pub const ERRNOS: &[(&str, &str)] = &[
    ("ENOENT", "no such node (or it was removed while open: reading it then fails, rather than serve stale bytes)"),
    ("EEXIST", "mkdir of an existing node; creating a registration that exists"),
    (
        "ENOTEMPTY",
        "rmdir of a node with children or links; renaming a directory onto one that is not empty",
    ),
    (
        "EINVAL",
        "a mistyped HOST:PORT file name (a ':' followed by nothing, only digits or only letters), or a name \
         invalid for ZooKeeper; written bytes that are not one JSON object (at the write that brings them, or at \
         close if still incomplete); >> onto data that is not UTF-8; renaming a temporary file whose content is \
         not one JSON object over properties.json or a registration; ln -s to a target outside the mount",
    ),
    ("ENAMETOOLONG", "a name longer than 255 bytes, in any operation; readlink of a link whose target, as shown, is 4096 bytes or more (logged with its path)"),
    ("EFBIG", "data over 1,000,000 bytes; temporary files over 64 MiB in all"),
    (
        "EPERM",
        "changing or removing another session's registration; chmod/chown that would change a directory's or \
         a link's mode or owner; any change under /zookeeper; ln -s in a node whose data is not a JSON object",
    ),
    (
        "EACCES",
        "a ZooKeeper ACL forbids the operation; with default_permissions (implied by allow_other), the kernel's \
         mode check: another user changing anything",
    ),
    ("EROFS", "any change on a -o ro mount, or (with readonly_ok) while the session is on a read-only server (logged)"),
    (
        "ENOTSUP",
        "rename of a directory or of a data file onto another, hard links, fifos, sockets and device nodes: \
         ZooKeeper has no such operation; getfattr of a security., system. or trusted. attribute (SELinux labels, capabilities, \
         POSIX ACLs): zkfs keeps none; setfattr of any attribute but a directory's user.zkfs.transaction",
    ),
    ("ELOOP", "a path through symbolic links that loop"),
    ("EINTR", "a flock that waits for a registration's lock, interrupted by a signal"),
    (
        "EXDEV",
        "renaming properties.json or a registration to a temporary name, or a link into another directory: \
         tools then copy it",
    ),
    ("ENOTDIR", "a directory operation on a registration"),
    ("EISDIR", "a file operation on a directory"),
    ("EIO", "no ZooKeeper server answered within the session timeout"),
    ("ESTALE", "a replacing write (`sed -i`, `mv`, `cp`, `>`) based on data that another writer changed since: nothing changed, run it again; an import whose nodes another client changed meanwhile (nothing of its transaction applied); or a file handle zkfs no longer knows (its node went while it was open)"),
    ("ENODATA", "getfattr of a user. attribute that does not exist"),
    ("ERANGE", "getfattr with a buffer too small"),
    ("ENOTTY", "an ioctl (zkfs has none)"),
    (
        "EWOULDBLOCK",
        "flock -n on a registration whose lock another process holds, or that another ZooKeeper session holds",
    ),
];

/// zkfs's exit statuses.
pub const EXIT_CODES: &[(u8, &str)] = &[
    (0, "mounted (without -f), unmounted cleanly (with -f), or the command succeeded"),
    (1, "the filesystem could not be mounted or the command failed; the reason is on one line of stderr"),
    (2, "a usage error: an unknown flag or option, a bad value, a bad connection string"),
];

/// The usage lines, without the program's name.
fn usage_lines() -> Vec<String> {
    let mut lines = vec!["[-f] [-o OPTIONS] CONNECT MOUNTPOINT".to_string()];
    lines.extend(COMMANDS.iter().map(|c| format!("{} {}", c.name, c.args)));
    lines
}

/// How an option is written: `session_timeout=SECONDS`.
fn spelled(o: &MountOption) -> String {
    match o.placeholder {
        Some(p) => format!("{}={p}", o.name),
        None => o.name.to_string(),
    }
}

fn flag_spelled(f: &Flag) -> String {
    let names = f.names.join(", ");
    match f.arg {
        Some(a) => format!("{names} {a}"),
        None => names,
    }
}

/// Every word and pattern accepted for mount(8) and fstab, as documented.
fn fstab_accepted() -> Vec<&'static str> {
    FSTAB_WORDS.iter().chain(FSTAB_PATTERNS).copied().collect()
}

/// Words of `text` in lines of at most `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// One `--help` entry: the term from column `margin`, the text wrapped beside it from
/// column `indent` — or below it, when the term is too long (a long list is wrapped).
fn entry(out: &mut String, margin: usize, indent: usize, term: &str, text: &str) {
    let lead = " ".repeat(margin);
    let pad = " ".repeat(indent);
    let terms = wrap(term, 80 - margin);
    let lines = wrap(text, 80 - indent);
    let mut lines = lines.iter();
    if let [only] = terms.as_slice() {
        if margin + only.len() + 2 <= indent {
            let first = format!("{lead}{only:w$}{}", lines.next().map_or("", |s| s.as_str()), w = indent - margin);
            let _ = writeln!(out, "{}", first.trim_end());
        } else {
            let _ = writeln!(out, "{lead}{only}");
        }
    } else {
        for t in &terms {
            let _ = writeln!(out, "{lead}{t}");
        }
    }
    for l in lines {
        let _ = writeln!(out, "{pad}{l}");
    }
}

/// The text of `zkfs --help`.
pub fn help() -> String {
    let mut out = String::from("zkfs - mount Apache ZooKeeper as a filesystem\n\n");
    for (i, u) in usage_lines().iter().enumerate() {
        let _ = writeln!(out, "{}zkfs {u}", if i == 0 { "Usage: " } else { "       " });
    }
    out.push('\n');
    for (name, text) in ARGUMENTS {
        entry(&mut out, 2, 17, name, text);
    }
    out.push('\n');
    for f in FLAGS {
        entry(&mut out, 2, 17, &flag_spelled(f), f.help);
    }
    out.push_str("\nMount options (-o):\n");
    for o in MOUNT_OPTIONS {
        entry(&mut out, 2, 25, &spelled(o), o.help);
    }
    entry(&mut out, 2, 25, &KERNEL_FLAGS.join(", "), "passed to the kernel");
    entry(&mut out, 2, 25, &fstab_accepted().join(", "), "accepted for mount(8) and fstab; no effect on zkfs");
    let unsupported: Vec<String> = UNSUPPORTED.iter().map(|(o, instead)| format!("{o} ({instead})")).collect();
    entry(&mut out, 2, 25, "Not supported:", &unsupported.join("; "));
    out.push_str("  Any other option is an error.\n\nCommands:\n");
    for c in COMMANDS {
        entry(&mut out, 2, 25, &format!("{} {}", c.name, c.args), c.help);
    }
    out.push_str(
        "\nWithout -f, zkfs returns once the filesystem is mounted and serves it in the\n\
         background. SIGINT, SIGTERM, `fusermount3 -u MOUNTPOINT` or `umount MOUNTPOINT`\n\
         unmount it and close the ZooKeeper session, so the mount's registrations\n\
         disappear at once. Every file and directory carries its znode's stat as extended\n\
         attributes: getfattr -d FILE.\n\nExit status:\n",
    );
    for (code, text) in EXIT_CODES {
        entry(&mut out, 2, 6, &code.to_string(), text);
    }
    out.push_str("\nThe errnos a program can meet, and more: man zkfs\n");
    out
}

/// Escapes plain text for roff: backslashes, hyphens (which would otherwise become
/// typographic dashes, breaking copy-and-paste of options), and control characters at
/// the start of a line.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// One man-page paragraph per entry of a list: `.TP`, the term in bold, the text.
fn man_entry(out: &mut String, term: &str, text: &str) {
    let _ = write!(out, ".TP\n.B {}\n{}\n", roff(term), roff(text));
}

/// The man page zkfs(8), in roff.
pub fn man_page() -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        ".\\\" Generated from src/cli/options.rs by scripts/gen-docs; do not edit.\n\
         .TH ZKFS 8 \"\" \"zkfs {}\" \"System Administration\"\n\
         .\\\" No hyphenation and a ragged right edge: options stay whole, to be copied.\n.nh\n.ad l\n\
         .SH NAME\nzkfs \\- mount Apache ZooKeeper as a filesystem\n.SH SYNOPSIS\n",
        env!("CARGO_PKG_VERSION")
    );
    for u in usage_lines() {
        let _ = write!(out, ".B zkfs\n{}\n.br\n", roff(&u));
    }
    out.push_str(".B mount \\-t fuse.zkfs\n[\\-o OPTIONS] CONNECT MOUNTPOINT\n");
    out.push_str(
        ".SH DESCRIPTION\n\
         zkfs mounts an Apache ZooKeeper tree so that hosts register, discover and configure\n\
         services with the tools they already have:\n\
         .BR ls ,\n.BR cat ,\n.BR touch ,\n.BR rm ,\n.B mkdir\nand inotify.\n\
         .PP\n\
         A persistent znode is a directory; its data is the file\n.B properties.json\n\
         in it, shown as a JSON object:\n.B >\nsets it,\n.B >>\nupdates it.\n\
         An ephemeral znode named HOST:PORT is a registration, a regular file;\n\
         .B touch DIR/HOST:PORT\nregisters, held by the mount's ZooKeeper session.\n\
         inotify reports changes made anywhere, through any ZooKeeper client.\n\
         .PP\n\
         Without\n.BR \\-f ,\nzkfs returns once the filesystem is mounted and serves it in the background.\n\
         SIGINT, SIGTERM,\n.B fusermount3 \\-u MOUNTPOINT\nor\n.B umount MOUNTPOINT\n\
         unmount it and close the ZooKeeper session, so the mount's registrations disappear at once.\n\
         Under systemd, zkfs reports readiness (READY=1 on $NOTIFY_SOCKET) once the mount serves.\n\
         .SH ARGUMENTS\n",
    );
    for (name, text) in ARGUMENTS {
        man_entry(&mut out, name, text);
    }
    out.push_str(".SH OPTIONS\n");
    for f in FLAGS {
        man_entry(&mut out, &flag_spelled(f), f.help);
    }
    out.push_str(".SH MOUNT OPTIONS\nGiven with \\-o, comma-separated, in fstab or to mount(8).\n");
    for o in MOUNT_OPTIONS {
        man_entry(&mut out, &spelled(o), o.help);
    }
    man_entry(&mut out, &KERNEL_FLAGS.join(", "), "passed to the kernel");
    man_entry(&mut out, &fstab_accepted().join(", "), "accepted for mount(8) and fstab; no effect on zkfs");
    for (o, instead) in UNSUPPORTED {
        man_entry(&mut out, o, &format!("not supported: {instead}"));
    }
    out.push_str(".PP\nAny other option is an error.\n.SH COMMANDS\n");
    for c in COMMANDS {
        man_entry(&mut out, &format!("{} {}", c.name, c.args), c.help);
    }
    out.push_str(".SH ERRORS\nWhat a program using the mount can meet:\n");
    for (errno, when) in ERRNOS {
        man_entry(&mut out, errno, when);
    }
    out.push_str(".SH EXIT STATUS\n");
    for (code, text) in EXIT_CODES {
        man_entry(&mut out, &code.to_string(), text);
    }
    out.push_str(
        ".SH ENVIRONMENT\n\
         .TP\n.B RUST_LOG\nlog filter, e.g. zkfs=debug (default zkfs=info with \\-f, zkfs=warn without)\n\
         .TP\n.B NOTIFY_SOCKET\nset by systemd for Type=notify services: zkfs sends READY=1 there once the mount serves\n\
         .SH FILES\n\
         .TP\n.B /etc/zkfs/NAME.conf\n\
         ZKFS_CONNECT, ZKFS_MOUNTPOINT and ZKFS_OPTIONS of the service zkfs@NAME\n\
         (an example is in /usr/share/doc/zkfs/examples/systemd/)\n\
         .SH EXAMPLES\n\
         .nf\n\
         zkfs zk1:2181,zk2:2181/services /mnt/zk\n\
         mount \\-t fuse.zkfs zk1:2181 /mnt/zk \\-o allow_other\n\
         touch /mnt/zk/fooservice/providers/10.0.0.5:8080\n\
         echo \\(aq{\"threads\": 2}\\(aq >> /mnt/zk/fooservice/properties.json\n\
         inotifywait \\-m \\-e create \\-e delete /mnt/zk/fooservice/providers\n\
         zkfs status /mnt/zk\n\
         .fi\n\
         .PP\nAn fstab line:\n\
         .PP\n.nf\n\
         zk1:2181,zk2:2181/services  /mnt/zk  fuse.zkfs  _netdev,allow_other  0 0\n\
         .fi\n\
         .PP\nA service per /etc/zkfs/NAME.conf:\n.B systemctl enable \\-\\-now zkfs@NAME\n\
         .SH SEE ALSO\n\
         .BR mount (8),\n.BR fstab (5),\n.BR mount.fuse3 (8),\n.BR fusermount3 (1),\n\
         .BR systemd.mount (5),\n.BR inotifywait (1),\n.BR getfattr (1)\n",
    );
    out
}

/// Markdown inline code for a table cell.
fn code(s: &str) -> String {
    format!("`{s}`")
}

/// The README's table of `-o` options (markdown).
pub fn readme_options() -> String {
    let mut out = String::from("| option | meaning |\n| --- | --- |\n");
    for o in MOUNT_OPTIONS {
        let _ = writeln!(out, "| {} | {} |", code(&spelled(o)), o.help);
    }
    let list = |names: &[&str]| names.iter().map(|n| code(n)).collect::<Vec<_>>().join(", ");
    let _ = writeln!(out, "| {} | passed to the kernel |", list(KERNEL_FLAGS));
    let _ = writeln!(out, "| {} | accepted for mount(8) and fstab; no effect on zkfs |", list(&fstab_accepted()));
    for (o, instead) in UNSUPPORTED {
        let _ = writeln!(out, "| {} | not supported: {instead} |", code(o));
    }
    out
}

/// The README's table of errnos (markdown).
pub fn readme_errors() -> String {
    let mut out = String::from("| errno | when |\n| --- | --- |\n");
    for (errno, when) in ERRNOS {
        let _ = writeln!(out, "| {} | {when} |", code(errno));
    }
    out
}

/// The README's table of exit statuses (markdown).
pub fn readme_exit_codes() -> String {
    let mut out = String::from("| exit status | when |\n| --- | --- |\n");
    for (status, when) in EXIT_CODES {
        let _ = writeln!(out, "| {status} | {when} |");
    }
    out
}

/// The bash completion script.
pub fn bash_completion() -> String {
    let flags: Vec<&str> = FLAGS.iter().flat_map(|f| f.names.iter().copied()).collect();
    let mut words: Vec<String> = MOUNT_OPTIONS
        .iter()
        .map(|o| if o.placeholder.is_some() { format!("{}=", o.name) } else { o.name.into() })
        .collect();
    words.extend(KERNEL_FLAGS.iter().chain(FSTAB_WORDS).map(|w| w.to_string()));
    words.extend(["fsname=", "subtype=", "comment=", "user="].map(String::from));
    let files: Vec<&str> = MOUNT_OPTIONS.iter().filter(|o| o.value == Value::File).map(|o| o.name).collect();
    let commands: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
    BASH_TEMPLATE
        .replace("@FLAGS@", &flags.join(" "))
        .replace("@OPTIONS@", &words.join(" "))
        .replace("@FILE_OPTIONS@", &files.iter().map(|f| format!("{f}=*")).collect::<Vec<_>>().join(" | "))
        .replace("@COMMANDS@", &commands.join(" "))
}

/// The completion function; `@...@` are filled from the tables. It reads the command
/// line from COMP_LINE/COMP_POINT rather than COMP_WORDS, because bash splits words at
/// `=` and `:` (COMP_WORDBREAKS), which both occur in mount options and connection
/// strings; the replies are then cut to the part bash replaces.
const BASH_TEMPLATE: &str = r#"# bash completion for zkfs(8).
# Generated from src/cli/options.rs by scripts/gen-docs; do not edit.

_zkfs_reply() { # CANDIDATE...: reply with the part of each after the last COMP_WORDBREAKS character of $cur
    local i keep=0 c
    for ((i = 0; i < ${#cur}; i++)); do
        [[ $COMP_WORDBREAKS == *"${cur:i:1}"* ]] && keep=$((i + 1))
    done
    COMPREPLY=()
    for c in "$@"; do
        [[ $c == "$cur"* ]] && COMPREPLY+=("${c:keep}")
    done
    if [[ ${#COMPREPLY[@]} -eq 1 && ( ${COMPREPLY[0]} == *= || ${COMPREPLY[0]} == */ ) ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}

_zkfs_files() { # PREFIX PATH: PREFIX followed by each file name starting with PATH (directories end in /)
    local f
    while IFS= read -r f; do
        [[ -d $f ]] && f+=/
        printf '%s\n' "$1$f"
    done < <(compgen -f -- "$2")
}

_zkfs() {
    local line=${COMP_LINE:0:COMP_POINT}
    local cur=${line##*[[:space:]]}
    local -a words
    read -r -a words <<<"${line:0:${#line}-${#cur}}"
    local prev=${words[${#words[@]}-1]}

    if [[ ( ${words[1]} == status || ${words[1]} == reload ) && ${#words[@]} -eq 2 ]]; then
        local -a mounts
        mapfile -t mounts < <(awk '$3 == "fuse.zkfs" { print $2 }' /proc/self/mounts 2>/dev/null)
        local -a files
        mapfile -t files < <(_zkfs_files "" "$cur")
        _zkfs_reply "${mounts[@]}" "${files[@]}"
        return
    fi
    if [[ ${#words[@]} -eq 1 && $cur != -* ]]; then
        _zkfs_reply @COMMANDS@
        return
    fi
    if [[ $prev == -o ]]; then
        local head=${cur%"${cur##*,}"} item=${cur##*,}
        case $item in
            @FILE_OPTIONS@)
                local -a files
                mapfile -t files < <(_zkfs_files "$head${item%%=*}=" "${item#*=}")
                _zkfs_reply "${files[@]}"
                ;;
            *)
                local o options=()
                for o in @OPTIONS@; do
                    options+=("$head$o")
                done
                _zkfs_reply "${options[@]}"
                # A comma may follow: no space after a completed option.
                compopt -o nospace 2>/dev/null
                ;;
        esac
        return
    fi
    if [[ $cur == -* ]]; then
        _zkfs_reply @FLAGS@
        return
    fi
    # The second positional argument is the mountpoint: a directory.
    local w positional=0 skip=false
    for w in "${words[@]:1}"; do
        if $skip; then
            skip=false
        elif [[ $w == -o ]]; then
            skip=true
        elif [[ $w != -* ]]; then
            positional=$((positional + 1))
        fi
    done
    if [[ $positional -eq 1 ]]; then
        local d dirs=()
        while IFS= read -r d; do dirs+=("$d/"); done < <(compgen -d -- "$cur")
        _zkfs_reply "${dirs[@]}"
    fi
}

complete -F _zkfs zkfs
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{self, Command};
    use crate::error::{ErrnoName, Error};

    fn parse_option(o: &str) -> Result<(), String> {
        match cli::parse(["-o", o, "h:1", "/m"].map(String::from)) {
            Ok(Command::Mount(_)) => Ok(()),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e),
        }
    }

    fn example(o: &MountOption) -> String {
        match o.value {
            Value::None => o.name.to_string(),
            Value::Number => format!("{}=5", o.name),
            Value::File => format!("{}=/some/file", o.name),
            Value::Word => format!("{}=alice", o.name),
        }
    }

    /// What an option needs beside it to be accepted (`tls_cert` needs `tls_ca`...).
    fn companions(o: &MountOption) -> &'static str {
        match o.name {
            "tls_cert" => ",tls_key=/k,tls_ca=/c",
            "tls_key" => ",tls_cert=/k,tls_ca=/c",
            "tls_no_verify_hostname" => ",tls_ca=/c",
            "sasl_user" => ",sasl_password_file=/p",
            "sasl_password_file" => ",sasl_user=alice",
            _ => "",
        }
    }

    #[test]
    fn every_documented_option_is_accepted_and_every_unsupported_one_refused() {
        for o in MOUNT_OPTIONS {
            assert_eq!(parse_option(&format!("{}{}", example(o), companions(o))), Ok(()), "{}", o.name);
        }
        for w in KERNEL_FLAGS.iter().chain(FSTAB_WORDS) {
            assert_eq!(parse_option(w), Ok(()), "{w}");
        }
        for p in ["user=bob", "fsname=zk", "subtype=zkfs", "comment=x", "x-systemd.automount"] {
            assert_eq!(parse_option(p), Ok(()), "{p}");
        }
        for (o, instead) in UNSUPPORTED {
            assert!(parse_option(o).is_err_and(|e| e.contains(instead.split(' ').next().unwrap_or(""))), "{o}");
        }
    }

    #[test]
    fn options_with_a_value_that_are_not_in_the_table_are_refused() {
        assert!(parse_option("colour=red").is_err());
        assert!(parse_option("bogus").is_err());
    }

    #[test]
    fn every_flag_is_accepted() {
        for f in FLAGS {
            for name in f.names {
                let mut args = vec![name.to_string()];
                if f.arg.is_some() {
                    args.push("ro".into());
                }
                args.extend(["h:1".to_string(), "/m".to_string()]);
                assert!(cli::parse(args).is_ok(), "{name}");
            }
        }
        for c in COMMANDS {
            // Every positional the usage names, with a value for each.
            let mut args = vec![c.name.to_string()];
            args.extend(
                c.args
                    .split(' ')
                    .filter(|a| !a.starts_with('['))
                    .map(|a| if a.contains(':') { "/m:/n" } else { "/m" }.to_string()),
            );
            assert!(cli::parse(args).is_ok(), "{}", c.name);
        }
    }

    /// One of each variant: the match makes a new variant fail to compile here until it
    /// is listed (and its errno described in ERRNOS). A variant that never reaches a
    /// program goes in the match only.
    fn one_of_each() -> Vec<Error> {
        let all = vec![
            Error::NotFound(String::new()),
            Error::Exists(String::new()),
            Error::NotEmpty(String::new()),
            Error::InvalidName(String::new()),
            Error::NameTooLong(String::new()),
            Error::InvalidDocument(String::new()),
            Error::TooLarge(String::new()),
            Error::NotPermitted(String::new()),
            Error::AccessDenied(String::new()),
            Error::ReadOnly,
            Error::ReadOnlyServer(String::new()),
            Error::Unsupported(""),
            Error::NotDir(String::new()),
            Error::IsDir(String::new()),
            Error::Unavailable(String::new()),
            Error::Stale,
            Error::Conflict(String::new()),
            Error::Locked(String::new()),
            Error::CrossDevice(String::new()),
            Error::Interrupted,
        ];
        for e in &all {
            match e {
                Error::NotFound(_)
                | Error::Exists(_)
                | Error::NotEmpty(_)
                | Error::InvalidName(_)
                | Error::NameTooLong(_)
                | Error::InvalidDocument(_)
                | Error::TooLarge(_)
                | Error::NotPermitted(_)
                | Error::AccessDenied(_)
                | Error::ReadOnly
                | Error::ReadOnlyServer(_)
                | Error::Unsupported(_)
                | Error::NotDir(_)
                | Error::IsDir(_)
                | Error::Unavailable(_)
                | Error::Stale
                | Error::Conflict(_)
                | Error::Locked(_)
                | Error::CrossDevice(_)
                | Error::Interrupted => {}
                // Never reaches a program: the request is run again where it may wait.
                Error::WouldWait => {}
            }
        }
        all
    }

    #[test]
    fn every_errno_zkfs_gives_is_described() {
        for e in one_of_each() {
            let name = ErrnoName(e.errno()).to_string();
            assert!(ERRNOS.iter().any(|(n, _)| *n == name), "{name} ({e:?}) is not in ERRNOS");
        }
    }

    #[test]
    fn help_lines_fit_a_terminal() {
        let help = help();
        for line in help.lines() {
            assert!(line.len() <= 80, "too long: {line}");
        }
        for o in MOUNT_OPTIONS {
            assert!(help.contains(&spelled(o)), "{}", o.name);
        }
    }

    #[test]
    fn roff_escapes_what_roff_would_eat() {
        assert_eq!(roff("-o a\\b"), "\\-o a\\eb");
        assert_eq!(roff(".TH"), "\\&.TH");
        assert_eq!(roff("'x"), "\\&'x");
    }
}
