//! SPEC "A live view" (the part that needs no inotify): changes made anywhere show in
//! `ls` and `cat` at once; read-only mounts refuse changes; removed nodes are not
//! served stale.

mod common;
mod shell;

use std::io::{Read, Seek};
use std::time::Duration;

use common::{wait_until, Mount, Zk, ZkServer};
use serde_json::json;
use shell::{cat_json, ls, q, sh};

const SOON: Duration = Duration::from_secs(2);

#[test]
fn changes_by_another_client_show_in_ls_and_cat() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    zk.create("/svc/conf", br#"{"v": 1}"#);
    let mount = Mount::new(&server.connect_string());
    // Warm every cache first.
    assert_eq!(ls(&mount.join("svc/providers")), vec!["properties.json"]);
    assert_eq!(cat_json(&mount.join("svc/conf/properties.json")), json!({"v": 1}));
    let _ = mount.join("svc/conf/properties.json").metadata().unwrap();

    zk.create_ephemeral("/svc/providers/1.2.3.4:80", b"");
    wait_until(SOON, "the new registration is listed", || ls(&mount.join("svc/providers")).len() == 2);
    zk.set("/svc/conf", br#"{"v": 2, "longer": "value than before"}"#);
    wait_until(SOON, "cat shows the new data", || {
        cat_json(&mount.join("svc/conf/properties.json")) == json!({"v": 2, "longer": "value than before"})
    });
    let size = mount.join("svc/conf/properties.json").metadata().unwrap().len();
    assert_eq!(size, std::fs::read(mount.join("svc/conf/properties.json")).unwrap().len() as u64);
    zk.delete("/svc/providers/1.2.3.4:80");
    wait_until(SOON, "the registration is gone", || ls(&mount.join("svc/providers")) == vec!["properties.json"]);
    zk.delete("/svc/conf");
    wait_until(SOON, "the node is gone", || !mount.join("svc/conf").exists());
    zk.create("/svc/conf", br#"{"v": 3}"#);
    wait_until(SOON, "the node is back with its new data", || {
        mount.join("svc/conf").exists() && cat_json(&mount.join("svc/conf/properties.json")) == json!({"v": 3})
    });
}

#[test]
fn a_node_removed_while_open_is_not_served_stale() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/n", br#"{"v": 1}"#);
    let mount = Mount::new(&server.connect_string());
    let mut f = std::fs::File::open(mount.join("n/properties.json")).unwrap();
    let mut before = String::new();
    f.read_to_string(&mut before).unwrap();
    assert!(before.contains("\"v\": 1"));
    zk.delete("/n");
    wait_until(SOON, "the node is gone", || !mount.join("n").exists());
    // Read again from the start, on the descriptor still open: the kernel must not
    // answer from the pages it kept.
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    let mut buf = String::new();
    let err = f.read_to_string(&mut buf).unwrap_err();
    assert!(matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESTALE)), "{err}; read {buf:?}");
}

#[test]
fn a_read_only_mount_refuses_every_change_with_erofs() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"v": 1}"#);
    let mut mount = Mount::with_options(&server.connect_string(), "ro");
    // Read-only in the kernel, as the mount table says. zkfs makes the mount read-only
    // just after it appears (it first takes a writable clone for its echo thread), and
    // the fixture returns as soon as it appears.
    wait_until(Duration::from_secs(5), "the mount table shows the mount read-only", || {
        common::mounts_at(mount.path()).pop().is_some_and(|e| e.options.iter().any(|o| o == "ro"))
    });
    for cmd in [
        format!(r#"echo '{{"v": 2}}' >> {}"#, q(&mount.join("svc/properties.json"))),
        format!("touch {}", q(&mount.join("svc/h:1"))),
        format!("mkdir {}", q(&mount.join("svc/d"))),
        format!("rmdir {}", q(&mount.join("svc"))),
    ] {
        let r = sh(&cmd);
        assert!(!r.ok && r.stderr.contains("Read-only file system"), "{cmd}: {}", r.stderr);
    }
    assert_eq!(zk.get_json("/svc"), json!({"v": 1}));
    assert_eq!(zk.children("/svc"), Vec::<String>::new());
    // And it still follows changes.
    zk.set("/svc", br#"{"v": 5}"#);
    wait_until(SOON, "the ro mount shows the change", || {
        cat_json(&mount.join("svc/properties.json")) == json!({"v": 5})
    });
    // Unmounted from outside, the read-only mount ends its daemon like any other.
    shell::sh_ok(&format!("umount {}", q(mount.path())));
    let status = mount.wait_exit(Duration::from_secs(10)).expect("zkfs exits when its ro mount is unmounted");
    assert!(status.success(), "{}", mount.log());
}
