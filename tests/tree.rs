//! SPEC "The tree": directories, registration files, properties.json, true stat.

mod common;
mod shell;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, UNIX_EPOCH};

use common::{Mount, Zk, ZkServer};
use serde_json::json;
use shell::{cat_json, ls};

#[test]
fn persistent_nodes_are_directories_and_ephemeral_nodes_read_only_files() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/fooservice/providers");
    zk.create_ephemeral("/fooservice/providers/10.0.0.1:80", br#"{"pid": 1}"#);
    let mount = Mount::new(&server.connect_string());

    assert_eq!(ls(&mount.join("fooservice")), vec!["properties.json", "providers"]);
    assert_eq!(ls(&mount.join("fooservice/providers")), vec!["10.0.0.1:80", "properties.json"]);
    assert!(mount.join("fooservice/providers").metadata().unwrap().is_dir());
    let reg = mount.join("fooservice/providers/10.0.0.1:80").metadata().unwrap();
    assert!(reg.is_file());
    assert_eq!(reg.permissions().mode() & 0o222, 0, "another session's registration must be read-only");
    // Ephemeral nodes cannot have children, so a registration is no directory.
    assert_eq!(
        std::fs::create_dir(mount.join("fooservice/providers/10.0.0.1:80/x")).unwrap_err().raw_os_error(),
        Some(libc::ENOTDIR)
    );
    assert_eq!(cat_json(&mount.join("fooservice/providers/10.0.0.1:80")), json!({"pid": 1}));
}

#[test]
fn properties_follow_zc_zk_rules() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/object", br#"{"database": "/db", "threads": 1}"#);
    zk.create("/empty", b"");
    zk.create("/text", b"hello world");
    zk.create("/array", b"[1, 2]");
    let mount = Mount::new(&server.connect_string());

    assert_eq!(cat_json(&mount.join("object/properties.json")), json!({"database": "/db", "threads": 1}));
    assert_eq!(cat_json(&mount.join("empty/properties.json")), json!({}));
    assert_eq!(cat_json(&mount.join("text/properties.json")), json!({"string_value": "hello world"}));
    assert_eq!(cat_json(&mount.join("array/properties.json")), json!({"string_value": "[1, 2]"}));
    // The root has properties too.
    assert_eq!(cat_json(&mount.join("properties.json")), json!({}));
}

#[test]
fn stat_tells_the_truth() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"a": "bcd"}"#);
    zk.create("/svc/child1", b"");
    zk.create("/svc/child2", b"");
    zk.create_ephemeral("/svc/h:1", b"");
    let mount = Mount::new(&server.connect_string());

    let props = mount.join("svc/properties.json");
    let shown = std::fs::read(&props).unwrap();
    let meta = props.metadata().unwrap();
    assert_eq!(meta.len(), shown.len() as u64, "size must be what cat prints");
    let stat = zk.stat("/svc").unwrap();
    assert_eq!(meta.modified().unwrap(), UNIX_EPOCH + Duration::from_millis(stat.mtime as u64));
    let dir = mount.join("svc").metadata().unwrap();
    // 1 whatever it holds, as on btrfs: counting subdirectories would mean listing
    // the directory and reading every child (README "Choices").
    assert_eq!(dir.nlink(), 1, "a directory's link count is 1");
    assert_eq!(mount.join("svc/child1").metadata().unwrap().nlink(), 1);
    assert_eq!(dir.modified().unwrap(), UNIX_EPOCH + Duration::from_millis(stat.mtime as u64));
    let reg = mount.join("svc/h:1").metadata().unwrap();
    assert_eq!(reg.len(), std::fs::read(mount.join("svc/h:1")).unwrap().len() as u64);
    assert_eq!(reg.nlink(), 1);
}

#[test]
fn find_walks_every_directory_although_their_link_count_is_1() {
    // `find` may skip the entries of a directory whose link count says it has no more
    // subdirectories; with 1 ("unknown", as on btrfs) it must look at every entry.
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/a/b/c");
    zk.mkdir_p("/svc/a/d");
    zk.create_ephemeral("/svc/a/b/h:1", b"");
    let mount = Mount::new(&server.connect_string());

    let out = std::process::Command::new("find").arg(mount.join("svc")).arg("-type").arg("d").output().unwrap();
    assert!(out.status.success(), "find failed: {}", String::from_utf8_lossy(&out.stderr));
    let root = mount.join("svc");
    let mut dirs: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| std::path::Path::new(l).strip_prefix(&root).unwrap().display().to_string())
        .collect();
    dirs.sort();
    assert_eq!(dirs, ["", "a", "a/b", "a/b/c", "a/d"]);
    let out =
        std::process::Command::new("find").arg(&root).arg("-type").arg("f").arg("-name").arg("h:1").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), root.join("a/b/h:1").display().to_string());
}

#[test]
fn a_cold_cat_of_a_deep_file_and_a_cold_listing_show_every_kind_right() {
    // Reading one deep file reads the nodes on its path, not every sibling; what is
    // shown afterwards — siblings looked up one by one, listings — must still be right.
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/a/b/c");
    zk.set("/a/b/c", br#"{"deep": true}"#);
    for i in 0..20 {
        zk.create(&format!("/a/b/dir{i:02}"), br#"{"x": 1}"#);
        zk.create_ephemeral(&format!("/a/b/10.0.0.{i}:80"), br#"{"pid": 1}"#);
    }
    zk.create_ephemeral("/a/h:1", b"");
    let mount = Mount::new(&server.connect_string());

    assert_eq!(cat_json(&mount.join("a/b/c/properties.json")), json!({"deep": true}));
    // Siblings never listed, looked up one by one: each has its kind.
    let reg = mount.join("a/b/10.0.0.7:80").metadata().unwrap();
    assert!(reg.is_file(), "an ephemeral sibling is a file");
    assert_eq!(reg.permissions().mode() & 0o222, 0);
    assert_eq!(cat_json(&mount.join("a/b/10.0.0.7:80")), json!({"pid": 1}));
    assert!(mount.join("a/b/dir03").metadata().unwrap().is_dir(), "a persistent sibling is a directory");
    assert!(mount.join("a/h:1").metadata().unwrap().is_file());
    assert_eq!(
        mount.join("a/b/nosuch").metadata().unwrap_err().raw_os_error(),
        Some(libc::ENOENT),
        "a child ZooKeeper does not have"
    );
    // A cold listing: the kinds readdir reports (d_type, no stat) are right.
    let mut kinds: Vec<(String, bool)> = std::fs::read_dir(mount.join("a/b"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.file_type().unwrap().is_dir())
        })
        .collect();
    kinds.sort();
    let mut expected: Vec<(String, bool)> = vec![("c".into(), true), ("properties.json".into(), false)];
    for i in 0..20 {
        expected.push((format!("dir{i:02}"), true));
        expected.push((format!("10.0.0.{i}:80"), false));
    }
    expected.sort();
    assert_eq!(kinds, expected);
    // A child made elsewhere after the walk shows, with its kind.
    zk.create("/a/b/c/later", b"");
    common::wait_until(Duration::from_secs(3), "the new directory shows", || mount.join("a/b/c/later").is_dir());
    assert_eq!(ls(&mount.join("a/b/c")), vec!["later", "properties.json"]);
}
