//! Issue "mount it like any filesystem": authentication and ACLs, and status for
//! operators (extended attributes, `zkfs status`).

mod common;
mod shell;

use std::os::unix::fs::PermissionsExt;

use common::{Mount, Zk, ZkServer};
use serde_json::json;
use shell::{cat_json, q, sh, sh_ok};
use zookeeper_client::{Acl, Acls, CreateMode, Permission};

const ZKFS: &str = env!("CARGO_BIN_EXE_zkfs");

fn credentials(text: &str, mode: u32) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    f
}

/// A client authenticated as alice, and /secret readable and writable by alice only.
fn alice(server: &ZkServer) -> Zk {
    let zk = Zk::connect(&server.connect_string());
    let client = zk.client().clone();
    zk.block_on(async move {
        client.auth("digest", b"alice:s3cret").await.expect("auth");
        let opts = CreateMode::Persistent.with_acls(Acls::creator_all());
        client.create("/secret", br#"{"db": "main"}"#, &opts).await.expect("create /secret");
    });
    zk
}

fn acl(zk: &Zk, path: &str) -> Vec<Acl> {
    let client = zk.client().clone();
    let path = path.to_string();
    zk.block_on(async move { client.get_acl(&path).await.expect("get_acl").0 })
}

#[test]
fn what_an_acl_forbids_gives_eacces_and_a_log_line() {
    let server = ZkServer::start();
    let _alice = alice(&server);
    let mount = Mount::new(&server.connect_string());
    let r = sh(&format!("cat {}", q(&mount.join("secret/properties.json"))));
    assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
    let r = sh(&format!("touch {}", q(&mount.join("secret/10.0.0.1:80"))));
    assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(mount.log().contains("ZooKeeper ACL denies access to /secret"), "no log line:\n{}", mount.log());
}

#[test]
fn with_credentials_the_mount_acts_as_that_user_and_protects_its_registrations() {
    let server = ZkServer::start();
    let alice = alice(&server);
    let creds = credentials("alice:s3cret\n", 0o600);
    let mount = Mount::with_options(&server.connect_string(), &format!("credentials={}", creds.path().display()));
    assert_eq!(cat_json(&mount.join("secret/properties.json")), json!({"db": "main"}));
    sh_ok(&format!(r#"echo '{{"threads": 2}}' >> {}"#, q(&mount.join("secret/properties.json"))));
    assert_eq!(alice.get_json("/secret"), json!({"db": "main", "threads": 2}));

    // A registration: anyone may read it, only alice may change it; and the mount can.
    sh_ok(&format!(r#"echo '{{"weight": 1}}' > {}"#, q(&mount.join("secret/10.0.0.1:80"))));
    let reg_acl = acl(&alice, "/secret/10.0.0.1:80");
    assert!(reg_acl.iter().any(|a| a.scheme() == "world" && a.permission() == Permission::READ), "{reg_acl:?}");
    assert!(reg_acl.iter().any(|a| a.scheme() == "digest" && a.id().starts_with("alice:")), "{reg_acl:?}");
    let anonymous = Zk::connect(&server.connect_string());
    assert!(anonymous.get("/secret/10.0.0.1:80").is_some(), "others can read a registration");
    assert!(anonymous.try_set("/secret/10.0.0.1:80", b"{}").is_err(), "others cannot change it");
    sh_ok(&format!(r#"echo '{{"weight": 2}}' >> {}"#, q(&mount.join("secret/10.0.0.1:80"))));
    assert_eq!(alice.get_json("/secret/10.0.0.1:80")["weight"], json!(2));

    // A directory made by the mount inherits its parent's ACL.
    sh_ok(&format!("mkdir {}", q(&mount.join("secret/providers"))));
    assert_eq!(acl(&alice, "/secret/providers"), acl(&alice, "/secret"));
}

#[test]
fn credentials_readable_by_others_or_missing_are_refused() {
    let server = ZkServer::start();
    let dir = tempfile::tempdir().unwrap();
    let open = credentials("alice:s3cret\n", 0o644);
    for (creds, expect) in [(open.path().to_path_buf(), "chmod 600"), (dir.path().join("none"), "No such file")] {
        let out = std::process::Command::new(ZKFS)
            .args(["-f", "-o", &format!("credentials={}", creds.display()), &server.connect_string()])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        assert!(!common::is_mounted(dir.path()));
    }
}

#[test]
fn every_node_shows_its_stat_as_extended_attributes() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"a": 1}"#);
    zk.set("/svc", br#"{"a": 2}"#);
    zk.create("/svc/child", b"");
    let mount = Mount::new(&server.connect_string());
    let stat = zk.stat("/svc").unwrap();
    let out = sh_ok(&format!("getfattr -d --absolute-names {}", q(&mount.join("svc/properties.json"))));
    for expected in [
        format!("user.zk.version=\"{}\"", stat.version),
        format!("user.zk.num_children=\"{}\"", stat.num_children),
        format!("user.zk.mzxid=\"{:#x}\"", stat.mzxid),
        format!("user.zk.ctime=\"{}\"", stat.ctime),
        "user.zk.ephemeral_owner=\"0x0\"".to_string(),
    ] {
        assert!(out.contains(&expected), "{expected} missing in:\n{out}");
    }
    sh_ok(&format!("touch {}", q(&mount.join("svc/h:1"))));
    let owner = zk.stat("/svc/h:1").unwrap().ephemeral_owner;
    let out = sh_ok(&format!("getfattr -n user.zk.ephemeral_owner --only-values {}", q(&mount.join("svc/h:1"))));
    assert_eq!(out, format!("{owner:#x}"));
    let r = sh(&format!("setfattr -n user.x -v 1 {}", q(&mount.join("svc/h:1"))));
    assert!(!r.ok);
}

/// The errno of `getxattr(path, name)`, or 0 if it answered.
fn getxattr_errno(path: &std::path::Path, name: &str) -> i32 {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    let n = std::ffi::CString::new(name).expect("name without NUL");
    // SAFETY: valid C strings; a NULL buffer of size 0 asks for the value's size only.
    let rc = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    if rc < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    }
}

#[test]
fn security_labels_and_acls_are_unsupported_so_ls_l_and_cp_a_work_as_on_a_plain_filesystem() {
    // Given a service with registrations.
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"a": 1}"#);
    let mount = Mount::new(&server.connect_string());
    sh_ok(&format!("cd {} && touch 10.0.0.1:80 10.0.0.2:80 10.0.0.3:80", q(&mount.join("svc"))));
    let file = mount.join("svc/10.0.0.1:80");
    // SELinux labels, capabilities, POSIX ACLs, trusted attributes: not supported at all
    // (EOPNOTSUPP, which `ls -l` remembers for the whole filesystem instead of asking
    // every file again); an unknown `user.` attribute is only absent.
    for path in [file.clone(), mount.join("svc"), mount.join("svc/properties.json")] {
        for name in ["security.selinux", "security.capability", "system.posix_acl_access", "trusted.x"] {
            assert_eq!(getxattr_errno(&path, name), libc::EOPNOTSUPP, "{name} of {}", path.display());
        }
        assert_eq!(getxattr_errno(&path, "user.other"), libc::ENODATA, "user.other of {}", path.display());
        assert_eq!(getxattr_errno(&path, "user.zk.version"), 0, "user.zk.version of {}", path.display());
    }
    assert_eq!(getxattr_errno(&mount.join("svc"), "system.posix_acl_default"), libc::EOPNOTSUPP);
    // `ls -l` shows every entry with its plain mode: no ACL `+`, no label `.`.
    let out = sh_ok(&format!("ls -l {}", q(&mount.join("svc"))));
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("total")).collect();
    assert_eq!(lines.len(), 4, "{out}");
    for line in &lines {
        let mode = line.split_whitespace().next().unwrap_or_default();
        assert_eq!(mode.len(), 10, "a mode without ACL or label marker: {line}");
    }
    assert!(lines.iter().any(|l| l.starts_with("-rw-r--r--") && l.ends_with(" 10.0.0.2:80")), "{out}");
    // `cp -a` (which copies ACLs and attributes) of the whole directory works and
    // copies the content.
    let copy = tempfile::tempdir().expect("temp dir");
    sh_ok(&format!("cp -a {} {}", q(&mount.join("svc")), q(copy.path())));
    assert_eq!(cat_json(&copy.path().join("svc/properties.json")), json!({"a": 1}));
    assert!(copy.path().join("svc/10.0.0.3:80").is_file());
}

#[test]
fn zkfs_status_reports_the_session_and_what_it_holds() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc");
    let mount = Mount::new(&server.connect_string());
    sh_ok(&format!("touch {}", q(&mount.join("svc/10.0.0.1:80"))));
    let owner = zk.stat("/svc/10.0.0.1:80").unwrap().ephemeral_owner;
    let out = sh_ok(&format!("{ZKFS} status {}", q(mount.path())));
    assert!(out.contains(&format!("session_id: {owner:#x}")), "{out}");
    assert!(out.contains("state: connected"), "{out}");
    assert!(out.contains(&format!("server: {}", server.connect_string())), "{out}");
    assert!(out.contains("registration_count: 1") && out.contains("/svc/10.0.0.1:80"), "{out}");
    assert!(out.contains("reconnects: 0"), "{out}");
    // The same through the root's attributes.
    let attr = sh_ok(&format!("getfattr -n user.zkfs.state --only-values {}", q(mount.path())));
    assert_eq!(attr, "connected");
    let r = sh(&format!("{ZKFS} status /tmp"));
    assert!(!r.ok && r.stderr.contains("not a zkfs mount"), "{}", r.stderr);
}

#[test]
fn with_allow_other_and_default_permissions_other_users_can_read_but_not_change() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"a": 1}"#);
    let mount = Mount::with_options(&server.connect_string(), "allow_other,default_permissions");
    let as_nobody =
        |cmd: String| sh(&format!("setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c {}", shell_quote(&cmd)));
    let r = as_nobody(format!("cat {}", q(&mount.join("svc/properties.json"))));
    assert!(r.ok && r.stdout.contains("\"a\": 1"), "{}", r.stderr);
    for cmd in [
        format!(r#"echo '{{"b": 2}}' >> {}"#, q(&mount.join("svc/properties.json"))),
        format!("touch {}", q(&mount.join("svc/10.0.0.1:80"))),
        format!("mkdir {}", q(&mount.join("svc/x"))),
    ] {
        let r = as_nobody(cmd.clone());
        assert!(!r.ok && r.stderr.contains("Permission denied"), "{cmd}: {}", r.stderr);
    }
    assert_eq!(zk.get_json("/svc"), json!({"a": 1}));
    assert_eq!(zk.children("/svc"), Vec::<String>::new());
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
