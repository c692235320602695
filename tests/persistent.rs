//! SPEC "Persistent nodes": mkdir, rmdir, rm -r; impossible operations fail clearly.

mod common;
mod shell;

use common::{Mount, Zk, ZkServer};
use shell::{ls, q, sh, sh_ok};

#[test]
fn mkdir_creates_persistent_nodes_and_rmdir_removes_empty_ones() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let mount = Mount::new(&server.connect_string());
    sh_ok(&format!("mkdir {}", q(&mount.join("a"))));
    sh_ok(&format!("mkdir -p {}", q(&mount.join("a/b/c"))));
    assert!(zk.exists("/a/b/c"));
    assert_eq!(zk.stat("/a/b/c").unwrap().ephemeral_owner, 0);
    assert_eq!(zk.get("/a/b/c").unwrap(), b"");

    let r = sh(&format!("rmdir {}", q(&mount.join("a/b"))));
    assert!(!r.ok && r.stderr.contains("not empty"), "{}", r.stderr);
    assert!(zk.exists("/a/b/c"));
    sh_ok(&format!("rmdir {}", q(&mount.join("a/b/c"))));
    assert!(!zk.exists("/a/b/c"));

    let r = sh(&format!("mkdir {}", q(&mount.join("a"))));
    assert!(!r.ok && r.stderr.contains("exists"), "{}", r.stderr);
}

#[test]
fn rm_r_removes_a_subtree_and_keeps_what_it_cannot() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/gone/x/y");
    zk.create("/gone/x/properties-holder", br#"{"k": 1}"#);
    let mount = Mount::new(&server.connect_string());
    sh_ok(&format!("touch {}", q(&mount.join("gone/x/y/h:1"))));
    sh_ok(&format!("rm -r {}", q(&mount.join("gone"))));
    assert!(!zk.exists("/gone"));
    assert_eq!(ls(mount.path()), vec!["properties.json", "zookeeper"]);

    // Another session's registration stops rm -r below it, and nothing else is lost.
    zk.mkdir_p("/kept/dir");
    zk.create("/kept/dir/conf", br#"{"v": 1}"#);
    zk.create_ephemeral("/kept/dir/other:1", b"");
    let r = sh(&format!("rm -r {}", q(&mount.join("kept"))));
    assert!(!r.ok);
    assert!(zk.exists("/kept/dir/other:1"));
    assert_eq!(zk.get("/kept/dir").unwrap(), b"");
}

#[test]
fn operations_zookeeper_cannot_do_fail_with_a_clear_errno() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/a");
    let mount = Mount::new(&server.connect_string());
    let r = sh(&format!("mv {} {}", q(&mount.join("a")), q(&mount.join("b"))));
    assert!(!r.ok && r.stderr.contains("not supported"), "{}", r.stderr);
    let r = sh(&format!("ln {} {}", q(&mount.join("a/properties.json")), q(&mount.join("l"))));
    assert!(!r.ok && r.stderr.contains("not supported"), "{}", r.stderr);
    let r = sh(&format!("ln -s /etc {}", q(&mount.join("s"))));
    assert!(!r.ok && r.stderr.contains("not supported"), "{}", r.stderr);
    let r = sh(&format!("chmod 700 {}", q(&mount.join("a"))));
    assert!(!r.ok && r.stderr.contains("not permitted"), "{}", r.stderr);
    // Tools set a file's mode after writing it (install, vim, Ansible): accepted, and
    // the mode shown stays the one zkfs derives.
    sh_ok(&format!("chmod 600 {}", q(&mount.join("a/properties.json"))));
    assert_eq!(sh_ok(&format!("stat -c %a {}", q(&mount.join("a/properties.json")))).trim(), "644");
    let r = sh(&format!("mkfifo {}", q(&mount.join("a/f:1"))));
    assert!(!r.ok, "mkfifo succeeded");
    assert_eq!(zk.children("/a"), Vec::<String>::new());
    assert!(zk.exists("/a"));
}
