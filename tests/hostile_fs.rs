//! Issue 25 (the filesystem's side): what an adversarial operator tried — unmounts in
//! the middle of a burst of remote changes, editors on two hosts, unreadable siblings,
//! odd links, racing `touch`/`rm`, registrations deleted under their holder — and what
//! a user can rely on instead.

mod common;
mod shell;

use std::process::Command;
use std::time::Duration;

use common::{wait_until, Mount, Zk, ZkServer};
use shell::{ls, q, sh_ok};

/// Given a mount whose root was listed, when another client creates 200 children of
/// the root and the mount is unmounted (`how`) in the middle of that burst, then the
/// unmount succeeds at once (the echo thread never holds the mount busy), zkfs exits,
/// and the bare mountpoint underneath stays empty: no echo reached a directory that is
/// not the mount's.
fn a_burst_never_lands_beside_the_mount(how: &[&str]) {
    let server = ZkServer::start();
    let connect = server.connect_string();
    let zk = Zk::connect(&connect);
    for round in 0..6 {
        let mut mount = Mount::new(&connect);
        // Listed, so that the mount echoes every new child of the root.
        assert!(ls(mount.path()).contains(&"properties.json".to_string()));
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let other = Zk::connect(&connect);
                let opts = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
                other.block_on(async {
                    let names: Vec<String> = (0..200).map(|i| format!("/r{round}-{i}")).collect();
                    let sent: Vec<_> = names.iter().map(|n| other.client().create(n, b"", &opts)).collect();
                    for f in sent {
                        f.await.expect("create");
                    }
                });
            });
            wait_until(Duration::from_secs(10), "the burst has begun", || zk.exists(&format!("/r{round}-10")));
            let out = Command::new(how[0]).args(&how[1..]).arg(mount.path()).output().expect("run the unmount");
            assert!(
                out.status.success(),
                "round {round}: `{} {}` failed: {}",
                how.join(" "),
                mount.path().display(),
                String::from_utf8_lossy(&out.stderr)
            );
            writer.join().expect("writer");
        });
        let status = mount.wait_exit(Duration::from_secs(10));
        assert!(status.is_some(), "round {round}: zkfs still runs after `{}`; log:\n{}", how.join(" "), mount.log());
        let left: Vec<_> = std::fs::read_dir(mount.path()).expect("read the bare mountpoint").collect();
        assert!(left.is_empty(), "round {round}: echoes made {} entries in the bare mountpoint", left.len());
    }
}

#[test]
fn a_burst_during_fusermount_u_never_lands_beside_the_mount() {
    a_burst_never_lands_beside_the_mount(&["fusermount3", "-u"]);
}

#[test]
fn a_burst_during_a_lazy_umount_never_lands_beside_the_mount() {
    a_burst_never_lands_beside_the_mount(&["umount", "-l"]);
}

/// Runs `n` edits of `file` with `edit(i)` (a shell command); returns which succeeded.
fn edit_loop(n: usize, edit: impl Fn(usize) -> String) -> Vec<bool> {
    (0..n).map(|i| shell::sh(&edit(i)).ok).collect()
}

/// Given two mounts of one node, when two loops of 100 `sed -i` edits run at once, one
/// on each mount, each adding its own key, then every edit either survived or its `sed`
/// reported an error (ESTALE): none is silently overwritten.
#[test]
fn sed_i_from_two_hosts_loses_no_edit_silently() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/conf", b"{\n  \"seed\": 0\n}\n");
    let (a, b) = (Mount::new(&server.connect_string()), Mount::new(&server.connect_string()));
    let edit = |m: &Mount, tag: &'static str| {
        let file = q(&m.join("conf/properties.json"));
        move |i: usize| format!("sed -i 's/^{{/{{\\n  \"{tag}{i}\": {i},/' {file}")
    };
    let (ok_a, ok_b) = std::thread::scope(|s| {
        let ea = edit(&a, "a");
        let eb = edit(&b, "b");
        let ta = s.spawn(move || edit_loop(100, ea));
        let tb = s.spawn(move || edit_loop(100, eb));
        (ta.join().expect("loop a"), tb.join().expect("loop b"))
    });
    let stored = zk.get_json("/conf");
    let mut lost = Vec::new();
    for (tag, oks) in [("a", &ok_a), ("b", &ok_b)] {
        for (i, ok) in oks.iter().enumerate() {
            let kept = stored.get(format!("{tag}{i}")).is_some();
            if *ok && !kept {
                lost.push(format!("{tag}{i}"));
            }
            assert!(*ok || !kept, "{tag}{i} failed yet was stored");
        }
    }
    let failed = ok_a.iter().chain(&ok_b).filter(|ok| !**ok).count();
    eprintln!("{} of 200 edits stored, {failed} refused", 200 - failed - lost.len());
    assert!(lost.is_empty(), "edits reported done but overwritten: {lost:?}");
    assert!(failed < 200, "no edit got through at all");
}

/// Given a node read by an editor, when another client changes it before the editor's
/// replace, then `mv` of the edited copy fails with ESTALE ("Stale file handle") and the
/// other client's change stays; run again after a fresh read, the edit applies.
#[test]
fn a_replace_based_on_a_stale_read_is_refused() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/conf", br#"{"v": 1}"#);
    let mount = Mount::new(&server.connect_string());
    let file = mount.join("conf/properties.json");
    let tmp = mount.join("conf/.edit.tmp");
    // A single process that reads and then renames: Python, as an editor would.
    let py = r#"
import os, sys, time
f, tmp, flag = sys.argv[1:4]
open(f).read()
with open(tmp, "w") as t:
    t.write('{"v": 2}\n')
while not os.path.exists(flag):
    time.sleep(0.01)
try:
    os.replace(tmp, f)
except OSError as e:
    print(e.errno)
    os.unlink(tmp)
    sys.exit(1)
"#;
    let flag = tempfile::NamedTempFile::new().expect("flag").into_temp_path();
    let flag_path = flag.to_path_buf();
    std::fs::remove_file(&flag_path).expect("remove flag");
    let editor = Command::new("python3")
        .args(["-c", py])
        .arg(&file)
        .arg(&tmp)
        .arg(&flag_path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    wait_until(Duration::from_secs(10), "the editor wrote its copy", || tmp.exists());
    zk.set("/conf", br#"{"v": 1, "other": true}"#);
    std::fs::write(&flag_path, b"").expect("flag");
    let out = editor.wait_with_output().expect("editor");
    assert!(!out.status.success(), "the replace of a stale read succeeded");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), libc::ESTALE.to_string());
    assert_eq!(zk.get_json("/conf"), serde_json::json!({"v": 1, "other": true}));
    // Read again, replace again: it applies.
    sh_ok(&format!("sed -i 's/\"v\": 1/\"v\": 3/' {}", q(&file)));
    assert_eq!(zk.get_json("/conf")["v"], serde_json::json!(3));
}

/// Given `/acl2/open` (open ACL) beside `/acl2/zsecret` (readable by alice only), then on
/// a mount without alice's credentials — listed first or not — both are listed, the
/// open one reads, the secret one gives EACCES (never ENOENT beside an EEXIST), and
/// `zkfs export` of the directory skips it with a warning.
#[test]
fn one_unreadable_sibling_hides_nothing() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let client = zk.client().clone();
    zk.block_on(async move {
        let open = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
        client.create("/acl2", b"", &open).await.expect("create /acl2");
        client.create("/acl2/open", br#"{"x": 1}"#, &open).await.expect("create /acl2/open");
        client.auth("digest", b"alice:s3cret").await.expect("auth");
        let mine = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::creator_all());
        client.create("/acl2/zsecret", br#"{"db": "main"}"#, &mine).await.expect("create /acl2/zsecret");
    });
    let listed_first = Mount::new(&server.connect_string());
    let walked = Mount::new(&server.connect_string());
    assert_eq!(ls(&listed_first.join("acl2")), ["open", "properties.json", "zsecret"]);
    for m in [&listed_first, &walked] {
        assert_eq!(shell::cat_json(&m.join("acl2/open/properties.json")), serde_json::json!({"x": 1}));
        let r = shell::sh(&format!("cat {}", q(&m.join("acl2/zsecret/properties.json"))));
        assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
        // Its attributes need its data's stat, which the ACL guards too: EACCES, not
        // ENOENT; and `mkdir` is refused the same way (or as existing).
        let e = std::fs::metadata(m.join("acl2/zsecret")).map(|md| md.is_dir());
        assert!(matches!(&e, Ok(true)) || e.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::EACCES)), "{e:?}");
        let r = shell::sh(&format!("mkdir {}", q(&m.join("acl2/zsecret"))));
        assert!(!r.ok && (r.stderr.contains("Permission denied") || r.stderr.contains("exists")), "{}", r.stderr);
        assert_eq!(ls(&m.join("acl2")), ["open", "properties.json", "zsecret"]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_zkfs")).arg("export").arg(walked.join("acl2")).output().expect("export");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "export failed: {stderr}");
    assert!(stdout.contains("/open") && stdout.contains("x = 1"), "{stdout}");
    assert!(!stdout.contains("zsecret"), "{stdout}");
    assert!(stderr.contains("zsecret"), "no warning names the skipped node: {stderr}");
}

/// Given one registration name, when 25 `touch` and 25 `rm -f` of it race on one mount,
/// then every `touch` succeeds (none says "Stale file handle").
#[test]
fn touch_racing_rm_on_one_mount_always_succeeds() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc");
    let mount = Mount::new(&server.connect_string());
    let file = q(&mount.join("svc/10.0.0.1:80"));
    let results: Vec<(bool, shell::Ran)> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..50)
            .map(|i| {
                let cmd = if i % 2 == 0 { format!("touch {file}") } else { format!("rm -f {file}") };
                s.spawn(move || (i % 2 == 0, shell::sh(&cmd)))
            })
            .collect();
        runs.into_iter().map(|r| r.join().expect("run")).collect()
    });
    let failed: Vec<&str> = results.iter().filter(|(_, r)| !r.ok).map(|(_, r)| r.stderr.as_str()).collect();
    assert!(failed.is_empty(), "{} of 50 failed: {failed:?}", failed.len());
}

/// Given two mounts (two sessions), when both `touch` one name at once, then each
/// `touch` either succeeds (its mount holds the registration) or fails with EPERM ("a
/// registration of another session"), never EEXIST; afterwards `touch`, `>` and `rm`
/// of the other session's registration all fail with EPERM, and its own `touch` works.
#[test]
fn touch_of_one_name_from_two_mounts_follows_one_rule() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc");
    let (a, b) = (Mount::new(&server.connect_string()), Mount::new(&server.connect_string()));
    // Both directories known to the kernel, so that each mount echoes the other's.
    assert!(ls(&a.join("svc")).len() == 1 && ls(&b.join("svc")).len() == 1);
    for round in 0..10 {
        let name = format!("svc/10.0.0.{round}:80");
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| shell::sh(&format!("touch {}", q(&a.join(&name)))));
            let tb = s.spawn(|| shell::sh(&format!("touch {}", q(&b.join(&name)))));
            (ta.join().expect("a"), tb.join().expect("b"))
        });
        for r in [&ra, &rb] {
            assert!(r.ok || r.stderr.contains("Operation not permitted"), "round {round}: {}", r.stderr);
        }
        assert!(ra.ok || rb.ok, "round {round}: neither touch succeeded: {} / {}", ra.stderr, rb.stderr);
        let (mine, theirs) = if ra.ok && !rb.ok {
            (&a, &b)
        } else if rb.ok && !ra.ok {
            (&b, &a)
        } else {
            continue;
        };
        sh_ok(&format!("touch {}", q(&mine.join(&name))));
        for cmd in [
            format!("touch {}", q(&theirs.join(&name))),
            format!("echo '{{}}' > {}", q(&theirs.join(&name))),
            format!("rm {}", q(&theirs.join(&name))),
        ] {
            let r = shell::sh(&cmd);
            assert!(!r.ok && r.stderr.contains("Operation not permitted"), "round {round}: `{cmd}`: {}", r.stderr);
        }
    }
}

/// Issue 25 item 7: a link another client made too long for the kernel, and one it
/// retargets.
#[test]
fn a_link_too_long_to_show_is_enametoolong_and_a_retarget_is_heard() {
    use common::inotify::Inotify;
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/x", b"{}");
    zk.create("/y", b"{}");
    let long = format!("/{}", "a".repeat(5000));
    zk.create("/d", format!(r#"{{"long ->": "{long}", "l ->": "/x"}}"#).as_bytes());
    let mount = Mount::new(&server.connect_string());
    let err = std::fs::read_link(mount.join("d/long")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG), "{err}");
    wait_until(Duration::from_secs(5), "the log names the link", || mount.log().contains("/d/long"));
    assert_eq!(std::fs::read_link(mount.join("d/l")).unwrap(), std::path::Path::new("../x"), "its sibling reads");

    let mut ino = Inotify::new();
    ino.watch(&mount.join("d"));
    zk.set("/d", format!(r#"{{"long ->": "{long}", "l ->": "/y"}}"#).as_bytes());
    ino.wait_for(Duration::from_secs(10), "IN_DELETE of the retargeted link", |e| e.is(libc::IN_DELETE, "l"));
    ino.wait_for(Duration::from_secs(10), "IN_CREATE of the retargeted link", |e| e.is(libc::IN_CREATE, "l"));
    assert_eq!(std::fs::read_link(mount.join("d/l")).unwrap(), std::path::Path::new("../y"));
    assert!(ls(&mount.join("d")).contains(&"l".to_string()));
}

/// Issue 25 item 6: a directory's child counters are as fresh as its listing.
#[test]
fn user_zk_attributes_of_a_directory_follow_its_children() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/d", b"{}");
    let mount = Mount::new(&server.connect_string());
    let attr = |name: &str, rel: &str| {
        sh_ok(&format!("getfattr -n user.zk.{name} --only-values {}", q(&mount.join(rel)))).trim().to_string()
    };
    assert!(ls(&mount.join("d")).iter().all(|n| n == "properties.json"));
    assert_eq!(attr("num_children", "d"), "0");
    // Another host adds two children and removes one.
    zk.create("/d/a", b"{}");
    zk.create_ephemeral("/d/h:1", b"{}");
    zk.delete("/d/a");
    wait_until(Duration::from_secs(10), "the listing shows h:1 alone", || {
        ls(&mount.join("d")) == ["h:1", "properties.json"]
    });
    let stat = zk.stat("/d").unwrap();
    for rel in ["d", "d/properties.json"] {
        assert_eq!(attr("num_children", rel), "1", "{rel}");
        assert_eq!(attr("cversion", rel), stat.cversion.to_string(), "{rel}");
        assert_eq!(attr("pzxid", rel), format!("{:#x}", stat.pzxid), "{rel}");
    }
}
