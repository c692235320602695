//! Issue 25, items 1, 4, 4b: data another client wrote that zkfs cannot merge without
//! loss is refused by `>>` and shown as what it is; a tree file the mount or ZooKeeper
//! would refuse is refused by `validate` and by `import` before anything is created.

mod common;
mod shell;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Mount, Zk, ZkServer};
use shell::{q, sh, Ran};

fn setup() -> (ZkServer, Zk, Mount) {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let mount = Mount::new(&server.connect_string());
    (server, zk, mount)
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
        pid: 0,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn deep_json_from_another_client_is_shown_as_it_is_and_appending_to_it_changes_nothing() {
    let (_server, zk, mount) = setup();
    let deep = format!("{{\"keep\":1,\"a\":{}{}}}", "[".repeat(130), "]".repeat(130));
    zk.create("/n", deep.as_bytes());
    let props = mount.join("n/properties.json");

    assert_eq!(std::fs::read_to_string(&props).unwrap(), format!("{deep}\n"), "shown as stored, not as a string_value");
    // `>>` as a program makes it (dash's echo words every write error "I/O error").
    let mut f = std::fs::OpenOptions::new().append(true).open(&props).unwrap();
    let err = f.write_all(b"{\"z\":1}\n").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    drop(f);
    assert_eq!(zk.get("/n").unwrap(), deep.as_bytes(), "data unchanged");
    assert!(mount.log().contains("refused change to /n/properties.json"), "a log line: {}", mount.log());
    // `>` still replaces it.
    assert!(sh(&format!(r#"echo '{{"z":1}}' > {}"#, q(&props))).ok);
    assert_eq!(zk.get_json("/n"), serde_json::json!({"z": 1}));
}

#[test]
fn a_byte_order_mark_is_hidden_from_cat_and_kept_by_appending() {
    let (_server, zk, mount) = setup();
    zk.create("/b", b"\xEF\xBB\xBF{\"keep\": 1}");
    let props = mount.join("b/properties.json");
    assert_eq!(std::fs::read_to_string(&props).unwrap(), "{\n  \"keep\": 1\n}\n");
    assert!(sh(&format!(r#"echo '{{"z":2}}' >> {}"#, q(&props))).ok);
    assert_eq!(zk.get("/b").unwrap(), b"\xEF\xBB\xBF{\"keep\": 1,\"z\":2}");
}

#[test]
fn validate_and_import_refuse_what_the_mount_would_refuse_and_create_nothing() {
    let (_server, zk, mount) = setup();
    let root = mount.path().to_str().unwrap();
    let deep: String = (0..900).map(|i| format!("{}/abcd\n", " ".repeat(i))).collect();
    let cases = [
        ("/ok\n/bad\u{1b}]0;owned\u{7}\n", "character ZooKeeper refuses"),
        ("/ok\n/nul\u{0}x\n", "character ZooKeeper refuses"),
        (&*format!("/ok\n/{}\n", "n".repeat(256)), "256 bytes"),
        (&*deep, "too long"),
        (&*format!("/ok\n/big\n  v = '{}'\n", "x".repeat(1_000_001)), "more than the 1000000 bytes"),
        // zc.zk's import_tree makes this; a directory cannot show both.
        ("/ok\n/p\n  c -> /ok\n  /c\n", "has the name of a child"),
    ];
    for (text, why) in cases {
        let v = zkfs(&["validate", "-"], text);
        assert!(!v.ok && v.stderr.contains(why), "validate: {why}: {}", v.stderr);
        assert!(!v.stderr.contains('\u{1b}') && !v.stderr.contains('\u{0}'), "escaped: {:?}", v.stderr);
        let i = zkfs(&["import", "-", root], text);
        assert!(!i.ok && i.stderr.contains(why), "import: {why}: {}", i.stderr);
        assert!(!i.stderr.contains('\u{1b}'), "escaped: {:?}", i.stderr);
        assert_eq!(zk.children("/").into_iter().filter(|c| c != "zookeeper").count(), 0, "{why}: nothing created");
    }
    // A link in the mount where the file has a node: refused before the first change.
    zk.create("/l", br#"{"x ->": "/l"}"#);
    let i = zkfs(&["import", "-", root], "/a\n/l\n  /x\n");
    assert!(!i.ok && i.stderr.contains("symbolic link"), "{}", i.stderr);
    assert!(!zk.exists("/a") && !zk.exists("/l/x"), "nothing created");
}

#[test]
fn python2_long_literals_import_as_their_digits() {
    let (_server, zk, mount) = setup();
    let i = zkfs(&["import", "-", mount.path().to_str().unwrap()], "/n\n  big = 12345678901234567890L\n");
    assert!(i.ok, "{}", i.stderr);
    assert_eq!(zk.get_string("/n").unwrap(), r#"{"big":12345678901234567890}"#);
}

/// Issue 25 item 4: `import` applies its changes in one ZooKeeper transaction, so a
/// change the server refuses half-way (here a node readable by all but writable by
/// none: the checking pass reads it fine) leaves nothing of the file applied.
#[test]
fn an_import_the_server_refuses_half_way_changes_nothing() {
    let (_server, zk, mount) = setup();
    let client = zk.client().clone();
    zk.block_on(async move {
        let read_only = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_read());
        client.create("/locked", b"{}", &read_only).await.expect("create /locked");
    });
    zk.create("/kept", br#"{"v": 1}"#);
    let tree = "/aaa\n  x = 1\n  /deep\n/kept\n  v = 2\n/locked\n  /child\n";
    let ran = zkfs(&["import", "-", mount.path().to_str().unwrap()], tree);
    assert!(!ran.ok, "{}", ran.stdout);
    assert!(ran.stderr.contains("Permission denied") && ran.stderr.contains("nothing was changed"), "{}", ran.stderr);
    assert!(ran.stdout.is_empty(), "changes reported as made: {}", ran.stdout);
    assert!(!zk.exists("/aaa"), "the first node of the file was created");
    assert_eq!(zk.get_json("/kept"), serde_json::json!({"v": 1}), "an earlier change was applied");
    assert!(!zk.exists("/locked/child"));
}

/// A file larger than one transaction carries goes in ordered transactions, each all
/// or nothing; every change is made and reported, and the mount shows the result at
/// once.
#[test]
fn a_large_import_goes_in_ordered_transactions() {
    let (_server, zk, mount) = setup();
    let mut tree = String::from("/big\n  /links\n    first -> /big/n0\n");
    for i in 0..1500 {
        tree.push_str(&format!("  /n{i}\n    value = 'node {i} of the big tree'\n    /sub\n      x = {i}\n"));
    }
    let ran = zkfs(&["import", "-", mount.path().to_str().unwrap()], &tree);
    assert!(ran.ok, "{}", ran.stderr);
    assert_eq!(ran.stdout.lines().filter(|l| l.starts_with("add ")).count(), 3002, "{}", &ran.stdout[..500]);
    assert_eq!(zk.children("/big").len(), 1501);
    assert_eq!(zk.get_json("/big/n1499/sub"), serde_json::json!({"x": 1499}));
    // Shown when import returns, the link too.
    assert_eq!(std::fs::read_link(mount.join("big/links/first")).unwrap(), std::path::Path::new("../n0"));
    // Run again: nothing to change.
    let again = zkfs(&["import", "-", mount.path().to_str().unwrap()], &tree);
    assert!(again.ok && again.stdout.is_empty(), "{}{}", again.stdout, again.stderr);
}

/// The transaction attribute is an interface another program can reach: what it
/// refuses changes nothing.
#[test]
fn a_hostile_transaction_is_refused_and_changes_nothing() {
    let (_server, zk, mount) = setup();
    zk.create("/d", b"{}");
    zk.create("/d/e", b"{}");
    let set = |value: &str| {
        sh(&format!("setfattr -n user.zkfs.transaction -v {} {}", q(std::path::Path::new(value)), q(&mount.join("d"))))
    };
    for (value, errno) in [
        ("not json", "Invalid argument"),
        (r#"{"ops": [{"op": "create", "path": "../escape"}]}"#, "Invalid argument"),
        (r#"{"ops": [{"op": "create", "path": "x", "data": "[1]"}]}"#, "Invalid argument"),
        (r#"{"ops": [{"op": "chmod", "path": "e"}]}"#, "Invalid argument"),
        (
            r#"{"ops": [{"op": "create", "path": "ok"}, {"op": "delete", "path": "e", "version": 7}]}"#,
            "Stale file handle",
        ),
    ] {
        let ran = set(value);
        assert!(!ran.ok && ran.stderr.contains(errno), "{value}: {}", ran.stderr);
    }
    assert_eq!(zk.children("/d"), ["e"]);
    assert!(!zk.exists("/escape") && !zk.exists("/x"));
    let ran = sh(&format!("setfattr -n user.other -v 1 {}", q(&mount.join("d"))));
    assert!(!ran.ok && ran.stderr.contains("Operation not supported"), "{}", ran.stderr);
}
