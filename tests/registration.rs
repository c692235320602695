//! SPEC "Registering servers": touch registers, rm unregisters, bad names create nothing.

mod common;
mod shell;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::Mount;
use serde_json::json;
use shell::{ls, q, sh, sh_ok};

#[test]
fn touch_registers_an_ephemeral_node_with_the_pid_of_the_creating_process() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join("fooservice/providers/127.0.0.1:8080");
    let mut touch = Command::new("touch").arg(&reg).spawn().unwrap();
    let pid = touch.id();
    assert!(touch.wait().unwrap().success());

    let stat = zk.stat("/fooservice/providers/127.0.0.1:8080").expect("registered in ZooKeeper");
    assert_ne!(stat.ephemeral_owner, 0, "a registration is ephemeral");
    assert_eq!(zk.get_json("/fooservice/providers/127.0.0.1:8080"), json!({"pid": pid}));
    assert_eq!(ls(&mount.join("fooservice/providers")), vec!["127.0.0.1:8080", "properties.json"]);
    // Our own registration is writable by us; touching it again changes nothing.
    assert_ne!(reg.metadata().unwrap().permissions().mode() & 0o200, 0);
    let version = stat.version;
    sh_ok(&format!("touch {}", q(&reg)));
    assert_eq!(zk.stat("/fooservice/providers/127.0.0.1:8080").unwrap().version, version);
}

#[test]
fn writing_json_while_creating_registers_with_those_properties() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join("fooservice/providers/[::1]:8081");
    let r = sh(&format!(r#"echo '{{"weight": 3}}' > {}"#, q(&reg)));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(zk.get_json("/fooservice/providers/[::1]:8081"), json!({"pid": r.pid, "weight": 3}));
    // Later writes keep the pid too.
    sh_ok(&format!(r#"echo '{{"weight": 5}}' > {}"#, q(&reg)));
    assert_eq!(zk.get_json("/fooservice/providers/[::1]:8081"), json!({"pid": r.pid, "weight": 5}));
    sh_ok(&format!(r#"echo '{{"zone": "a"}}' >> {}"#, q(&reg)));
    assert_eq!(zk.get_json("/fooservice/providers/[::1]:8081"), json!({"pid": r.pid, "weight": 5, "zone": "a"}));
}

#[test]
fn only_host_port_names_become_registrations() {
    let (_server, zk, mount) = common::fooservice();
    let dir = mount.join("fooservice/providers");
    // A typo of HOST:PORT is refused, so that nobody believes they registered.
    for bad in ["host:0", "host:70000", "host:http", ":80", "[::1:80"] {
        let r = sh(&format!("touch {}", q(&dir.join(bad))));
        assert!(!r.ok, "touch {bad} succeeded");
        assert!(r.stderr.contains("Invalid argument"), "{bad}: {}", r.stderr);
        let r = sh(&format!(r#"echo '{{}}' > {}"#, q(&dir.join(bad))));
        assert!(!r.ok, "echo > {bad} succeeded");
    }
    assert!(mount.log().contains("HOST:PORT"), "the reason is logged");
    // Other names (an editor's swap, probe or backup file) are temporary files of this
    // mount: the program that made them finds them, ZooKeeper and `ls` never do.
    for tmp in [".x.swp", "4913", "x~", "#x#", "host"] {
        sh_ok(&format!("touch {}", q(&dir.join(tmp))));
        sh_ok(&format!("stat {}", q(&dir.join(tmp))));
    }
    assert_eq!(zk.children("/fooservice/providers"), Vec::<String>::new(), "a temporary name created a node");
    assert_eq!(ls(&dir), vec!["properties.json".to_string()]);
}

#[test]
fn rm_removes_own_registrations_but_not_another_sessions() {
    let (_server, zk, mount) = common::fooservice();
    let dir = mount.join("fooservice/providers");
    sh_ok(&format!("touch {}", q(&dir.join("10.0.0.1:80"))));
    zk.create_ephemeral("/fooservice/providers/10.0.0.2:80", br#"{"pid": 42}"#);

    sh_ok(&format!("rm {}", q(&dir.join("10.0.0.1:80"))));
    assert!(!zk.exists("/fooservice/providers/10.0.0.1:80"));

    let r = sh(&format!("rm -f {}", q(&dir.join("10.0.0.2:80"))));
    assert!(!r.ok && r.stderr.contains("not permitted"), "{}", r.stderr);
    let r = sh(&format!(r#"echo '{{"weight": 1}}' >> {}"#, q(&dir.join("10.0.0.2:80"))));
    assert!(!r.ok, "changed another session's registration");
    assert_eq!(zk.get_json("/fooservice/providers/10.0.0.2:80"), json!({"pid": 42}));
}

#[test]
fn registrations_of_one_mount_are_visible_on_another() {
    let (server, zk, mount_a) = common::fooservice();
    let mount_b = Mount::new(&server.connect_string());
    sh_ok(&format!("touch {}", q(&mount_a.join("fooservice/providers/a.example:1"))));
    common::wait_until(std::time::Duration::from_secs(2), "mount B shows A's registration", || {
        ls(&mount_b.join("fooservice/providers")).contains(&"a.example:1".to_string())
    });
    // B cannot remove A's registration.
    assert!(!sh(&format!("rm -f {}", q(&mount_b.join("fooservice/providers/a.example:1")))).ok);
    assert!(zk.exists("/fooservice/providers/a.example:1"));
}

#[test]
fn a_change_made_elsewhere_the_instant_a_registration_is_made_is_not_lost() {
    // zkfs keeps the node its create returned (so `touch` needs no read back); a change
    // made elsewhere right after the create must still win over that copy.
    let (_server, zk, mount) = common::fooservice();
    for i in 0..20 {
        let name = format!("10.0.1.{}:80", i + 1);
        let path = format!("/fooservice/providers/{name}");
        let reg = mount.join(format!("fooservice/providers/{name}"));
        let want = json!({"pid": 1, "weight": i});
        std::thread::scope(|s| {
            let setter = s.spawn(|| {
                // Sets the data as soon as the node exists.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while zk.try_set(&path, want.to_string().as_bytes()).is_err() {
                    assert!(std::time::Instant::now() < deadline, "{path} never appeared");
                }
            });
            sh_ok(&format!("touch {}", q(&reg)));
            setter.join().unwrap();
        });
        let stat = zk.stat(&path).unwrap();
        common::wait_until(std::time::Duration::from_secs(5), "the mount shows the change", || {
            shell::cat_json(&reg) == want
                && reg.metadata().unwrap().modified().unwrap()
                    == std::time::UNIX_EPOCH + std::time::Duration::from_millis(stat.mtime as u64)
        });
    }
}

#[test]
fn a_registration_made_elsewhere_while_the_mount_makes_it_is_shown() {
    // The mount does not read back the nodes it creates; when another client makes the
    // same node in the same instant and the mount's create fails, it must show anyway.
    let (_server, zk, mount) = common::fooservice();
    let dir = mount.join("fooservice/providers");
    let _ = ls(&dir);
    let mut lost = 0;
    for i in 0..20 {
        let name = format!("10.0.2.{}:80", i + 1);
        let path = format!("/fooservice/providers/{name}");
        let reg = dir.join(&name);
        let touched = std::thread::scope(|s| {
            let other = s.spawn(|| {
                let opts = zookeeper_client::CreateMode::Ephemeral.with_acls(zookeeper_client::Acls::anyone_all());
                zk.block_on(zk.client().create(&path, b"", &opts)).is_ok()
            });
            let touched = sh(&format!("touch {}", q(&reg))).ok;
            other.join().unwrap();
            touched
        });
        assert!(zk.stat(&path).is_some(), "one of the two made {path}");
        if touched {
            // The mount's create won (or the other's node was echoed before `touch`
            // looked): not this test's case.
            continue;
        }
        lost += 1;
        common::wait_until(std::time::Duration::from_secs(5), "the registration shows", || {
            ls(&dir).contains(&name) && reg.metadata().is_ok_and(|m| m.is_file())
        });
    }
    eprintln!("{lost} of 20 creates lost the race");
}
