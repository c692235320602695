//! Issue "edit configuration the way operators and their tools do": `sed -i`, vim, nano,
//! `jq … > tmp && mv`, `install`, `cp`, Python's `tempfile` + `os.replace` and an
//! Ansible-style atomic move, each through a real mount and checked with an independent
//! ZooKeeper client; and the temporary files those tools make stay on their mount.

mod common;
mod shell;

use std::path::Path;
use std::time::Duration;

use common::inotify::Inotify;
use common::{wait_until, Mount, Zk, ZkServer};
use serde_json::{json, Value};
use shell::{cat_json, ls, q, sh, sh_ok};

/// A server, a client and a mount with `/svc` (`{"threads": 2, "db": "main"}`) and
/// `/svc/providers`.
fn setup() -> (ZkServer, Zk, Mount) {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"threads": 2, "db": "main"}"#);
    zk.create("/svc/providers", b"");
    let mount = Mount::new(&server.connect_string());
    (server, zk, mount)
}

/// Runs `script` in directory `dir` and panics with its stderr unless it succeeds.
fn in_dir(dir: &Path, script: &str) -> String {
    sh_ok(&format!("cd {} && {script}", q(dir)))
}

/// What ZooKeeper and the mount show of a directory: no temporary file in either.
fn assert_no_temporary_files(zk: &Zk, mount: &Mount, znode: &str, expected: &[&str]) {
    let mut children = zk.children(znode);
    children.sort();
    assert_eq!(children, expected, "ZooKeeper holds a temporary file under {znode}");
    let mut listed: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    listed.push("properties.json".into());
    listed.sort();
    assert_eq!(ls(&mount.join(znode.trim_start_matches('/'))), listed, "ls shows a temporary file");
}

#[test]
fn sed_i_sets_properties_and_own_registrations() {
    let (_server, zk, mount) = setup();
    let svc = mount.join("svc");
    in_dir(&svc, r#"sed -i 's/"threads": 2/"threads": 5/' properties.json"#);
    assert_eq!(zk.get_json("/svc"), json!({"threads": 5, "db": "main"}));
    assert_eq!(cat_json(&svc.join("properties.json")), json!({"threads": 5, "db": "main"}));

    // A registration keeps its pid through a whole-file replacement.
    let reg = svc.join("providers/10.0.0.5:8080");
    sh_ok(&format!("touch {}", q(&reg)));
    let pid = zk.get_json("/svc/providers/10.0.0.5:8080")["pid"].clone();
    in_dir(&svc.join("providers"), r#"sed -i 's/}/, "weight": 3}/' 10.0.0.5:8080"#);
    assert_eq!(zk.get_json("/svc/providers/10.0.0.5:8080"), json!({"pid": pid, "weight": 3}));
    let owner = zk.stat("/svc/providers/10.0.0.5:8080").expect("registration").ephemeral_owner;
    assert_ne!(owner, 0, "still an ephemeral node");
    assert_no_temporary_files(&zk, &mount, "/svc", &["providers"]);
    assert_no_temporary_files(&zk, &mount, "/svc/providers", &["10.0.0.5:8080"]);
}

#[test]
fn a_replaced_file_follows_changes_made_elsewhere_afterwards() {
    let (_server, zk, mount) = setup();
    let file = mount.join("svc/properties.json");
    assert_eq!(cat_json(&file)["threads"], json!(2));
    in_dir(&mount.join("svc"), r#"sed -i 's/"threads": 2/"threads": 5/' properties.json"#);
    assert_eq!(cat_json(&file)["threads"], json!(5));
    // The kernel had the temporary file's inode under the name; it must not keep it.
    zk.set("/svc", br#"{"threads": 6, "db": "a much longer value than before"}"#);
    wait_until(Duration::from_secs(5), "the mount shows the change made elsewhere", || {
        cat_json(&file) == json!({"threads": 6, "db": "a much longer value than before"})
    });
    in_dir(&mount.join("svc"), r#"sed -i 's/"threads": 6/"threads": 7/' properties.json"#);
    assert_eq!(zk.get_json("/svc"), json!({"threads": 7, "db": "a much longer value than before"}));
}

/// vim writes through its swap file, a probe file (`4913`) and a backup (`FILE~`),
/// and with `backupcopy` "auto" or "no" tries to rename the original away.
#[test]
fn vim_with_its_swap_and_backup_files() {
    let (_server, zk, mount) = setup();
    let svc = mount.join("svc");
    // The test mount lives under /tmp, which vim's default 'backupskip' exempts from
    // backups; clear it so that vim behaves as on an ordinary mountpoint.
    let variants = [
        "-u NONE -N -c 'set backupskip='",
        "-u NONE -N -c 'set backupskip=' -c 'set backupcopy=no'",
        "-u NONE -N -c 'set backupskip=' -c 'set backupcopy=yes'",
        "-u NONE -N -c 'set backupskip=' -c 'set backup'",
        "-u DEFAULTS -c 'set backupskip='",
        "-u NONE -N",
    ];
    for (i, options) in variants.iter().enumerate() {
        let threads = 10 + i;
        in_dir(
            &svc,
            &format!(
                r#"timeout 30 vim {options} -es -c '%s/"threads": [0-9]*/"threads": {threads}/' -c wq properties.json </dev/null"#
            ),
        );
        assert_eq!(zk.get_json("/svc"), json!({"threads": threads, "db": "main"}), "vim {options}");
        if options.contains("set backup'") {
            // vim keeps the previous content in properties.json~: a file of this mount only.
            let backup = in_dir(&svc, "cat properties.json~");
            assert!(backup.contains(&format!("\"threads\": {}", threads - 1)), "{backup}");
            assert!(!zk.exists("/svc/properties.json~"));
        }
    }
    assert_no_temporary_files(&zk, &mount, "/svc", &["providers"]);

    // A registration file, edited the same way, keeps its pid.
    sh_ok(&format!("touch {}", q(&svc.join("providers/h1:80"))));
    let pid = zk.get_json("/svc/providers/h1:80")["pid"].clone();
    let created = zk.stat("/svc/providers/h1:80").unwrap().czxid;
    in_dir(
        &svc.join("providers"),
        r#"timeout 30 vim -u NONE -N -c 'set backupskip=' -es -c '%s/}/, "zone": "a"}/' -c wq h1:80 </dev/null"#,
    );
    assert_eq!(zk.get_json("/svc/providers/h1:80"), json!({"pid": pid, "zone": "a"}));
    // vim renamed the file away (EXDEV), copied it and unlinked it: never unregistered.
    assert_eq!(zk.stat("/svc/providers/h1:80").unwrap().czxid, created, "the server was unregistered meanwhile");
    assert_no_temporary_files(&zk, &mount, "/svc/providers", &["h1:80"]);
}

#[test]
fn nano_saves_in_place_with_or_without_backup_and_lock_files() {
    if sh("command -v nano").stdout.is_empty() {
        eprintln!("SKIPPED: nano is not installed (scripts/install-deps installs it)");
        return;
    }
    let (_server, zk, mount) = setup();
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/editing/nano.py");
    for (threads, options) in [(3, ""), (4, "--backup"), (5, "--locking")] {
        let before = threads - 1;
        in_dir(
            &mount.join("svc"),
            &format!(r#"python3 {driver} properties.json '"threads": {before}' '"threads": {threads}' {options}"#),
        );
        assert_eq!(zk.get_json("/svc"), json!({"threads": threads, "db": "main"}), "nano {options}");
    }
    assert_no_temporary_files(&zk, &mount, "/svc", &["providers"]);
}

#[test]
fn jq_then_mv_from_the_same_directory_and_from_another_filesystem() {
    let (_server, zk, mount) = setup();
    let svc = mount.join("svc");
    in_dir(&svc, "jq '.threads = 7' properties.json > tmp && mv tmp properties.json");
    assert_eq!(zk.get_json("/svc"), json!({"threads": 7, "db": "main"}));
    assert!(!sh(&format!("stat {}", q(&svc.join("tmp")))).ok, "the temporary file outlived its rename");

    let elsewhere = tempfile::tempdir().unwrap();
    let tmp = elsewhere.path().join("p.json");
    in_dir(&svc, &format!("jq '.threads = 8' properties.json > {} && mv {} properties.json", q(&tmp), q(&tmp)));
    assert_eq!(zk.get_json("/svc"), json!({"threads": 8, "db": "main"}));
    assert!(!tmp.exists());
    // The properties never went away for anyone else.
    assert_eq!(cat_json(&svc.join("properties.json")), json!({"threads": 8, "db": "main"}));
    assert_no_temporary_files(&zk, &mount, "/svc", &["providers"]);
}

#[test]
fn install_and_cp_replace_properties() {
    let (_server, zk, mount) = setup();
    let svc = mount.join("svc");
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), r#"{"threads": 9}"#).unwrap();
    in_dir(&svc, &format!("install {} properties.json", q(src.path())));
    assert_eq!(zk.get_json("/svc"), json!({"threads": 9}));
    std::fs::write(src.path(), r#"{"threads": 10}"#).unwrap();
    in_dir(&svc, &format!("install -m 644 {} properties.json", q(src.path())));
    assert_eq!(zk.get_json("/svc"), json!({"threads": 10}));
    std::fs::write(src.path(), r#"{"threads": 11, "db": "b"}"#).unwrap();
    in_dir(&svc, &format!("cp {} properties.json", q(src.path())));
    assert_eq!(zk.get_json("/svc"), json!({"threads": 11, "db": "b"}));
    // Bad content fails the write that brings it, and changes nothing.
    std::fs::write(src.path(), "[1, 2]").unwrap();
    assert!(!sh(&format!("cd {} && install {} properties.json", q(&svc), q(src.path()))).ok);
    assert!(!sh(&format!("cd {} && cp {} properties.json", q(&svc), q(src.path()))).ok);
    assert_eq!(zk.get_json("/svc"), json!({"threads": 11, "db": "b"}));
    assert_no_temporary_files(&zk, &mount, "/svc", &["providers"]);
}

#[test]
fn python_tempfile_and_os_replace() {
    let (_server, zk, mount) = setup();
    let script = format!(
        r#"
import json, os, tempfile
d = {dir:?}
fd, tmp = tempfile.mkstemp(dir=d)
with os.fdopen(fd, "w") as f:
    json.dump({{"threads": 12, "db": "main"}}, f)
os.replace(tmp, os.path.join(d, "properties.json"))
assert not os.path.exists(tmp)
with tempfile.NamedTemporaryFile("w", dir=d, delete=False) as f:
    f.write('{{"threads": 13}}')
os.replace(f.name, os.path.join(d, "properties.json"))
"#,
        dir = mount.join("svc").to_str().unwrap()
    );
    sh_ok(&format!("python3 -c {}", q(Path::new(&script))));
    assert_eq!(zk.get_json("/svc"), json!({"threads": 13}));
    assert_no_temporary_files(&zk, &mount, "/svc", &["providers"]);
}

/// What Ansible's `atomic_move` does (module_utils/basic.py): a temporary file in the
/// destination's directory, written and synced, given the destination's mode and owner,
/// then renamed over it.
const ATOMIC_MOVE: &str = r#"
import json, os, sys, tempfile
dest, content = sys.argv[1], sys.argv[2]
d, name = os.path.split(dest)
st = os.stat(dest) if os.path.exists(dest) else None
fd, tmp = tempfile.mkstemp(prefix=".ansible_tmp", dir=d, suffix=name)
try:
    os.write(fd, content.encode())
    os.fsync(fd)
    os.close(fd)
    if st:
        os.chmod(tmp, st.st_mode & 0o7777)
        os.chown(tmp, st.st_uid, st.st_gid)
    os.rename(tmp, dest)
except OSError as e:
    os.unlink(tmp)
    sys.exit("atomic_move failed: %s" % e)
"#;

fn atomic_move(dest: &Path, content: &str) -> shell::Ran {
    sh(&format!("python3 -c {} {} {}", q(Path::new(ATOMIC_MOVE)), q(dest), q(Path::new(content))))
}

#[test]
fn an_ansible_style_atomic_move_sets_properties_and_registers() {
    let (_server, zk, mount) = setup();
    let r = atomic_move(&mount.join("svc/properties.json"), r#"{"threads": 14, "db": "main"}"#);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(zk.get_json("/svc"), json!({"threads": 14, "db": "main"}));

    // Onto a free HOST:PORT name: one create, the renaming process's pid and the content.
    let r = atomic_move(&mount.join("svc/providers/10.0.0.7:80"), r#"{"weight": 2}"#);
    assert!(r.ok, "{}", r.stderr);
    let data = zk.get_json("/svc/providers/10.0.0.7:80");
    assert_eq!(data["weight"], json!(2));
    assert!(data["pid"].is_u64(), "{data}");
    assert_eq!(zk.stat("/svc/providers/10.0.0.7:80").unwrap().version, 0, "registered in one create");
    // Onto it again: a set that keeps the pid.
    let r = atomic_move(&mount.join("svc/providers/10.0.0.7:80"), r#"{"weight": 5}"#);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(zk.get_json("/svc/providers/10.0.0.7:80"), json!({"pid": data["pid"], "weight": 5}));
    assert_ne!(zk.stat("/svc/providers/10.0.0.7:80").unwrap().ephemeral_owner, 0);

    // Onto another session's registration: refused, nothing changed.
    zk.create_ephemeral("/svc/providers/10.0.0.8:80", br#"{"pid": 42}"#);
    let r = atomic_move(&mount.join("svc/providers/10.0.0.8:80"), r#"{"weight": 9}"#);
    assert!(!r.ok && r.stderr.contains("not permitted"), "{}", r.stderr);
    assert_eq!(zk.get_json("/svc/providers/10.0.0.8:80"), json!({"pid": 42}));
    assert_no_temporary_files(&zk, &mount, "/svc/providers", &["10.0.0.7:80", "10.0.0.8:80"]);
}

/// Salt's `salt.utils.files.copyfile`: `mkstemp(prefix=<target's name>)` in the target's
/// directory, then `shutil.move` and the old owner and mode; Puppet's `replace_file`:
/// a temporary file named `<target's name><date>-<pid>-<random>`, then a rename.
const SALT_AND_PUPPET: &str = r#"
import os, shutil, sys, tempfile
dest, salt, puppet = sys.argv[1:4]
d, name = os.path.split(dest)
st = os.stat(dest)
fd, tgt = tempfile.mkstemp(prefix=name, dir=d)
os.write(fd, salt.encode())
os.close(fd)
shutil.move(tgt, dest)
os.chown(dest, st.st_uid, st.st_gid)
os.chmod(dest, st.st_mode)
tmp = os.path.join(d, "%s20261128-%d-1x2y3z" % (name, os.getpid()))
with open(tmp, "w") as f:
    f.write(puppet)
os.rename(tmp, dest)
"#;

#[test]
fn salt_and_puppet_style_replacements_of_a_registration() {
    let (_server, zk, mount) = setup();
    let reg = mount.join("svc/providers/10.0.0.9:8080");
    sh_ok(&format!("touch {}", q(&reg)));
    let before = zk.stat("/svc/providers/10.0.0.9:8080").unwrap();
    let pid = zk.get_json("/svc/providers/10.0.0.9:8080")["pid"].clone();
    let script =
        format!("python3 -c {} {} '{{\"weight\": 1}}' '{{\"weight\": 2}}'", q(Path::new(SALT_AND_PUPPET)), q(&reg));
    sh_ok(&script);
    let after = zk.stat("/svc/providers/10.0.0.9:8080").unwrap();
    assert_eq!(zk.get_json("/svc/providers/10.0.0.9:8080"), json!({"pid": pid, "weight": 2}));
    assert_eq!((after.czxid, after.version), (before.czxid, before.version + 2), "two sets of one registration");
    assert_no_temporary_files(&zk, &mount, "/svc/providers", &["10.0.0.9:8080"]);
}

#[test]
fn content_that_is_not_one_json_object_fails_the_rename_and_changes_nothing() {
    let (_server, zk, mount) = setup();
    let svc = mount.join("svc");
    let before = zk.stat("/svc").unwrap();
    for (i, bad) in ["[1, 2]", "{\"threads\": ", "", "{} {}", "{bad}"].iter().enumerate() {
        let tmp = format!("bad{i}");
        std::fs::write(svc.join(&tmp), bad).unwrap();
        let r = sh(&format!("cd {} && mv {tmp} properties.json", q(&svc)));
        assert!(!r.ok, "mv of {bad:?} succeeded");
        let e = std::fs::rename(svc.join(&tmp), svc.join("properties.json")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{bad:?}");
        // As on a local disk after a failed rename, the temporary file is still there.
        assert_eq!(std::fs::read_to_string(svc.join(&tmp)).unwrap(), *bad);
        std::fs::remove_file(svc.join(&tmp)).unwrap();
    }
    let after = zk.stat("/svc").unwrap();
    assert_eq!((after.version, after.mzxid), (before.version, before.mzxid), "the node was written");
    assert_eq!(zk.get_json("/svc"), json!({"threads": 2, "db": "main"}));
    assert!(mount.log().contains("refused rename of /svc/bad0 onto /svc/properties.json"), "{}", mount.log());
    assert_no_temporary_files(&zk, &mount, "/svc", &["providers"]);
}

#[test]
fn renaming_properties_away_copies_it_and_leaves_it_in_place() {
    let (_server, zk, mount) = setup();
    let svc = mount.join("svc");
    in_dir(&svc, "mv properties.json properties.json.bak");
    assert_eq!(zk.get_json("/svc"), json!({"threads": 2, "db": "main"}));
    assert_eq!(cat_json(&svc.join("properties.json")), json!({"threads": 2, "db": "main"}));
    assert_eq!(cat_json(&svc.join("properties.json.bak")), json!({"threads": 2, "db": "main"}));
    // And back: the copy is applied as a set.
    in_dir(&svc, r#"sed -i 's/main/other/' properties.json.bak && mv properties.json.bak properties.json"#);
    assert_eq!(zk.get_json("/svc"), json!({"threads": 2, "db": "other"}));
    // A registration moved away is copied too, and stays registered.
    sh_ok(&format!("touch {}", q(&svc.join("providers/h:1"))));
    let created = zk.stat("/svc/providers/h:1").unwrap().czxid;
    in_dir(&svc.join("providers"), "mv h:1 h.bak");
    assert_eq!(zk.stat("/svc/providers/h:1").map(|s| s.czxid), Some(created));
    assert_eq!(cat_json(&svc.join("providers/h.bak")), zk.get_json("/svc/providers/h:1"));
    // Another session's registration cannot be removed, so mv fails after its copy.
    zk.create_ephemeral("/svc/providers/h:2", br#"{"pid": 42}"#);
    let remote = svc.join("providers/h:2");
    wait_until(std::time::Duration::from_secs(10), "the mount shows h:2", || remote.exists());
    let r = sh(&format!("cd {} && mv h:2 h2.bak", q(&svc.join("providers"))));
    assert!(!r.ok && r.stderr.contains("not permitted"), "{}", r.stderr);
    assert!(zk.exists("/svc/providers/h:2"));
    // Directories still cannot move.
    let r = sh(&format!("cd {} && mv providers elsewhere", q(&svc)));
    assert!(!r.ok && r.stderr.contains("not supported"), "{}", r.stderr);
    assert_no_temporary_files(&zk, &mount, "/svc", &["providers"]);
    assert_no_temporary_files(&zk, &mount, "/svc/providers", &["h:1", "h:2"]);
}

#[test]
fn a_second_mount_never_sees_temporary_files() {
    let (server, zk, mount) = setup();
    let other = Mount::new(&server.connect_string());
    let svc = mount.join("svc");
    in_dir(&svc, r#"echo '{"threads": 3}' > new.json && touch providers/.10.0.0.5:80.swp providers/sedAbC123"#);
    assert_eq!(cat_json(&svc.join("new.json")), json!({"threads": 3}));
    for name in ["new.json", "providers/.10.0.0.5:80.swp", "providers/sedAbC123"] {
        assert!(!sh(&format!("stat {}", q(&other.join("svc").join(name)))).ok, "{name} seen on the other mount");
    }
    assert_no_temporary_files(&zk, &other, "/svc", &["providers"]);
    assert_no_temporary_files(&zk, &mount, "/svc/providers", &[]);
    // Applied here, the change shows there; the temporary file is gone everywhere.
    in_dir(&svc, "mv new.json properties.json");
    wait_until(Duration::from_secs(5), "the other mount shows the change", || {
        cat_json(&other.join("svc/properties.json")) == json!({"threads": 3})
    });
    assert!(!sh(&format!("stat {}", q(&svc.join("new.json")))).ok);
    // Removing the directory takes its temporary files with it.
    in_dir(&svc, "rm -r providers");
    assert!(!zk.exists("/svc/providers"));
    assert!(!sh(&format!("stat {}", q(&svc.join("providers/sedAbC123")))).ok);
}

#[test]
fn a_read_only_mount_makes_no_temporary_files() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"threads": 2}"#);
    let mount = Mount::with_options(&server.connect_string(), "ro");
    let r = sh(&format!(r#"cd {} && sed -i 's/2/3/' properties.json"#, q(&mount.join("svc"))));
    assert!(!r.ok && r.stderr.contains("Read-only"), "{}", r.stderr);
    assert_eq!(zk.get_json("/svc"), json!({"threads": 2}));
    let value: Value = cat_json(&mount.join("svc/properties.json"));
    assert_eq!(value, json!({"threads": 2}));
}

#[test]
fn with_zookeeper_down_a_rename_fails_and_keeps_its_temporary_file() {
    let mut server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"threads": 2}"#);
    let mount = Mount::with_options(&server.connect_string(), "session_timeout=4");
    let svc = mount.join("svc");
    assert_eq!(cat_json(&svc.join("properties.json")), json!({"threads": 2}));
    in_dir(&svc, r#"echo '{"threads": 3}' > new.json"#);
    server.stop();
    let r = sh(&format!("cd {} && timeout 30 mv new.json properties.json", q(&svc)));
    assert!(!r.ok && r.stderr.contains("Input/output error"), "{}", r.stderr);
    // The temporary file lives in the mount, not in ZooKeeper: still there, still whole.
    assert_eq!(cat_json(&svc.join("new.json")), json!({"threads": 3}));
    server.restart();
    wait_until(Duration::from_secs(30), "the mount writes again", || {
        sh(&format!("cd {} && mv new.json properties.json", q(&svc))).ok
    });
    let zk = Zk::connect(&server.connect_string());
    assert_eq!(zk.get_json("/svc"), json!({"threads": 3}));
}

#[test]
fn a_rename_gives_its_own_events_here_and_a_modify_on_other_mounts() {
    let (server, _zk, mount) = setup();
    let other = Mount::new(&server.connect_string());
    let _ = cat_json(&mount.join("svc/properties.json"));
    let _ = cat_json(&other.join("svc/properties.json"));
    let mut here = Inotify::new();
    here.watch(&mount.join("svc"));
    let mut there = Inotify::new();
    there.watch(&other.join("svc"));
    in_dir(&mount.join("svc"), r#"echo '{"threads": 4}' > new.json && mv new.json properties.json"#);
    there
        .wait_for(Duration::from_secs(5), "IN_MODIFY on the other mount", |e| e.is(libc::IN_MODIFY, "properties.json"));
    let events = here.collect(Duration::from_millis(800));
    let count = |mask: u32, name: &str| events.iter().filter(|e| e.is(mask, name)).count();
    assert_eq!(count(libc::IN_MOVED_FROM, "new.json"), 1, "{events:?}");
    assert_eq!(count(libc::IN_MOVED_TO, "properties.json"), 1, "{events:?}");
    assert_eq!(count(libc::IN_MODIFY, "properties.json"), 0, "an echo of the mount's own change: {events:?}");
    // The other mount heard of the change once, and never of the temporary file.
    let events = there.collect(Duration::from_millis(800));
    assert!(events.iter().all(|e| e.name == "properties.json"), "{events:?}");
    assert_eq!(cat_json(&other.join("svc/properties.json")), json!({"threads": 4}));
}
