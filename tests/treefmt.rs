//! SPEC "Tree export and import" and "The tree" → symbolic links: zc.zk's README example
//! tree imported through a real mount, followed through its links, exported and
//! re-imported; trim, dry run, validation, bad input.

mod common;
mod shell;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Mount, Zk, ZkServer};
use serde_json::json;

/// The example tree of zc.zk's README (src/zc/zk/README.txt, 2.1.0).
const EXAMPLE: &str = "\
/lb : ipvs
  /pools
    /cms
      # The address is fixed because it's
      # exposed externally
      address = '1.2.3.4:80'
      providers -> /cms/providers
    /retail
      address = '1.2.3.5:80'
      providers -> /cms/providers

/cms : z4m cms
  threads = 3
  /providers
  /databases
    /main
      /providers

/retail : z4m retail
  threads = 1
  /providers
  /databases
    main -> /cms/databases/main
    /ugc
      /providers
";

/// zc.zk's README: "Let's update our textual description".
const UPDATED: &str = "\
/lb : ipvs
  /pools
    /cms
      # The address is fixed because it's
      # exposed externally
      address = '1.2.3.4:80'
      providers -> /cms/providers

/cms : z4m cms
  threads = 4
  /providers
  /databases
    /main
      /providers
";

/// What zc.zk's README shows `export_tree()` print after importing EXAMPLE (with
/// Python 3's `repr` where Python 2 wrote `u'...'`).
const EXPORTED: &str = "\
/cms : z4m cms
  threads = 3
  /databases
    /main
      /providers
  /providers
/fooservice
  secret = '1234'
  threads = 3
  /providers
/lb : ipvs
  /pools
    /cms
      address = '1.2.3.4:80'
      providers -> /cms/providers
    /retail
      address = '1.2.3.5:80'
      providers -> /cms/providers
/retail : z4m retail
  threads = 1
  /databases
    main -> /cms/databases/main
    /ugc
      /providers
  /providers
";

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `zkfs ARGS` with `stdin` as its standard input.
fn zkfs(args: &[&str], stdin: &str) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zkfs"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zkfs");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait zkfs");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// zc.zk's README starts from a /fooservice with three registrations.
fn fooservice(zk: &Zk) {
    zk.create("/fooservice", br#"{"secret": "1234", "threads": 3}"#);
    zk.create("/fooservice/providers", b"");
    for port in [8080, 8081, 8082] {
        zk.create_ephemeral(&format!("/fooservice/providers/192.168.0.42:{port}"), br#"{"pid": 9999}"#);
    }
}

#[test]
fn zc_zk_example_is_imported_exported_and_reimported_unchanged() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    fooservice(&zk);
    let mount = Mount::new(&server.connect_string());
    let root = path(mount.path());

    // Given zc.zk's example tree on stdin, when it is imported into the mount's root:
    let ran = zkfs(&["import", "-", root], EXAMPLE);
    assert!(ran.ok, "{}", ran.stderr);
    assert!(ran.stdout.lines().any(|l| l == "add /lb/pools/cms"), "{}", ran.stdout);
    // then ZooKeeper holds it as zc.zk would have stored it,
    assert_eq!(zk.get_json("/lb/pools/cms"), json!({"address": "1.2.3.4:80", "providers ->": "/cms/providers"}));
    assert_eq!(zk.get_json("/cms"), json!({"type": "z4m cms", "threads": 3}));
    assert_eq!(zk.get_json("/retail/databases"), json!({"main ->": "/cms/databases/main"}));
    assert!(zk.exists("/retail/databases/ugc/providers"));
    // and export prints what zc.zk's export_tree printed, without /zookeeper and
    // without registrations.
    let exported = zkfs(&["export", root], "");
    assert!(exported.ok, "{}", exported.stderr);
    assert_eq!(exported.stdout, EXPORTED);

    // Re-importing the export changes nothing: its dry run has nothing to say.
    let again = zkfs(&["import", "--dry-run", "-", root], &exported.stdout);
    assert!(again.ok, "{}", again.stderr);
    assert_eq!(again.stdout, "");
    let mzxid = zk.stat("/lb/pools/cms").map(|s| s.mzxid);
    assert!(zkfs(&["import", "-", root], &exported.stdout).ok);
    assert_eq!(zk.stat("/lb/pools/cms").map(|s| s.mzxid), mzxid, "an unchanged node is not rewritten");

    // A subtree exports with its own node first; registrations only when asked.
    let sub = zkfs(&["export", path(&mount.join("fooservice"))], "");
    assert_eq!(sub.stdout, "/fooservice\n  secret = '1234'\n  threads = 3\n  /providers\n");
    let sub = zkfs(&["export", "--ephemeral", path(&mount.join("fooservice"))], "");
    assert_eq!(
        sub.stdout,
        "/fooservice\n  secret = '1234'\n  threads = 3\n  /providers\n    /192.168.0.42:8080\n      pid = 9999\n    \
         /192.168.0.42:8081\n      pid = 9999\n    /192.168.0.42:8082\n      pid = 9999\n"
    );
}

#[test]
fn trim_removes_only_inside_the_named_subtrees_and_never_registrations() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    fooservice(&zk);
    let mount = Mount::new(&server.connect_string());
    let root = path(mount.path());
    assert!(zkfs(&["import", "-", root], EXAMPLE).ok);

    // Without --trim, what the file lacks stays and is reported (zc.zk's wording).
    let ran = zkfs(&["import", "-", root], UPDATED);
    assert!(ran.ok, "{}", ran.stderr);
    assert_eq!(ran.stdout, "/cms threads change from 3 to 4\n");
    assert!(ran.stderr.contains("extra path not trimmed: /lb/pools/retail"), "{}", ran.stderr);
    assert_eq!(zk.get_json("/cms"), json!({"type": "z4m cms", "threads": 4}));

    // --dry-run --trim says what it would delete and deletes nothing.
    let ran = zkfs(&["import", "--trim", "--dry-run", "-", root], UPDATED);
    assert_eq!(ran.stdout, "would delete /lb/pools/retail\n");
    assert!(zk.exists("/lb/pools/retail"));

    // --trim deletes it; the top-level /retail and /fooservice, which the file does
    // not mention, stay.
    let ran = zkfs(&["import", "--trim", "-", root], UPDATED);
    assert!(ran.ok, "{}", ran.stderr);
    assert_eq!(ran.stdout, "delete /lb/pools/retail\n");
    assert!(!zk.exists("/lb/pools/retail"));
    assert!(zk.exists("/retail/databases/ugc/providers") && zk.exists("/fooservice/providers"));

    // A node holding registrations is never trimmed, nor a registration.
    zk.create("/fooservice/providers/old", b"");
    let ran = zkfs(&["import", "--trim", "-", root], "/fooservice\n  secret = '1234'\n  threads = 3\n");
    assert!(ran.ok, "{}", ran.stderr);
    assert!(ran.stderr.contains("not deleting /fooservice/providers: it holds a registration"), "{}", ran.stderr);
    assert!(zk.exists("/fooservice/providers/192.168.0.42:8080"));
    assert_eq!(ran.stdout, "delete /fooservice/providers/old\n");
    let ran = zkfs(&["import", "--trim", "-", root], "/fooservice\n  secret = '1234'\n  threads = 3\n  /providers\n");
    assert!(
        ran.stderr.contains("not deleting /fooservice/providers/192.168.0.42:8081: it is a registration"),
        "{}",
        ran.stderr
    );
    assert_eq!(ran.stdout, "");
    assert!(zk.exists("/fooservice/providers/192.168.0.42:8081"));
}

#[test]
fn bad_files_are_refused_with_their_line_and_change_nothing() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let mount = Mount::new(&server.connect_string());
    let root = path(mount.path());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tree.txt");
    let canary = dir.path().join("evaluated");

    assert!(zkfs(&["validate", "-"], EXAMPLE).ok);
    for (text, line) in [
        (format!("/a\n  x = 1\n  b = __import__('os').system('touch {}')\n", canary.display()), 3),
        ("/a\n  x = 1\n      y = 2\n".to_string(), 3),
        ("/a\n  /b\n    l -> x y\n".to_string(), 3),
        ("x = 1\n".to_string(), 1),
        ("/a\n\n  p = {'unclosed': 1\n".to_string(), 3),
    ] {
        std::fs::write(&file, &text).expect("write tree file");
        let ran = zkfs(&["validate", path(&file)], "");
        assert!(!ran.ok, "{text}");
        assert!(ran.stderr.contains(&format!("tree.txt: line {line}: ")), "{text}: {}", ran.stderr);
        let ran = zkfs(&["import", path(&file), root], "");
        assert!(!ran.ok && ran.stderr.contains(&format!("line {line}")), "{}", ran.stderr);
        assert!(!zk.exists("/a"), "a file with an error changes nothing");
    }
    assert!(!canary.exists(), "a value was evaluated as code");

    // Not a zkfs directory, /zookeeper, a missing file, a bad flag: one clear line.
    let ran = zkfs(&["export", path(dir.path())], "");
    assert!(!ran.ok && ran.stderr.contains("not in a zkfs mount"), "{}", ran.stderr);
    let ran = zkfs(&["export", path(&mount.join("zookeeper"))], "");
    assert!(!ran.ok && ran.stderr.contains("/zookeeper"), "{}", ran.stderr);
    let ran = zkfs(&["import", "-", root], "/zookeeper\n  x = 1\n");
    assert!(!ran.ok && ran.stderr.contains("/zookeeper"), "{}", ran.stderr);
    let ran = zkfs(&["import", "/nonexistent/tree.txt", root], "");
    assert!(!ran.ok && ran.stderr.contains("/nonexistent/tree.txt"), "{}", ran.stderr);
    let ran = zkfs(&["import", "--force", "-", root], "");
    assert!(!ran.ok && ran.stderr.contains("unknown flag --force"), "{}", ran.stderr);

    // A node the mount refuses (data over ZooKeeper's limit) fails the import loudly.
    let big = format!("/big\n  blob = '{}'\n", "x".repeat(1_100_000));
    let ran = zkfs(&["import", "-", root], &big);
    assert!(!ran.ok && ran.stderr.contains("/big: cannot set its properties"), "{}", ran.stderr);

    // Exporting a name the format cannot carry fails, naming it, rather than lose it.
    zk.create("/odd", br#"{"has space": 1}"#);
    let ran = zkfs(&["export", path(&mount.join("odd"))], "");
    assert!(!ran.ok && ran.stderr.contains("has space"), "{}", ran.stderr);
}
