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
const EXAMPLE: &str = include_str!("data/zc_zk_example.tree");

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

    // A node the mount refuses (data over ZooKeeper's limit) fails the import before
    // anything is created.
    let big = format!("/big\n  blob = '{}'\n", "x".repeat(1_100_000));
    let ran = zkfs(&["import", "-", root], &big);
    assert!(!ran.ok && ran.stderr.contains("/big: its properties are"), "{}", ran.stderr);
    assert!(!zk.exists("/big"));

    // Exporting a name the format cannot carry fails, naming it, rather than lose it.
    zk.create("/odd", br#"{"has space": 1}"#);
    common::wait_until(std::time::Duration::from_secs(10), "/odd shows", || mount.join("odd").is_dir());
    let ran = zkfs(&["export", path(&mount.join("odd"))], "");
    assert!(!ran.ok && ran.stderr.contains("has space"), "{}", ran.stderr);
}

fn is_link(p: &Path) -> bool {
    p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
}

#[test]
fn links_are_followed_by_ls_cd_and_readlink() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let mount = Mount::new(&server.connect_string());
    let root = path(mount.path());
    assert!(zkfs(&["import", "-", root], EXAMPLE).ok);
    zk.create_ephemeral("/cms/providers/1.2.3.4:5", br#"{"pid": 1}"#);

    // Given `providers -> /cms/providers` in /lb/pools/cms, the directory shows a
    // symlink that resolves inside the mount, whatever the mountpoint.
    let link = mount.join("lb/pools/cms/providers");
    assert_eq!(shell::ls(&mount.join("lb/pools/cms")), ["properties.json", "providers"]);
    assert!(is_link(&link));
    assert_eq!(std::fs::read_link(&link).unwrap().to_str(), Some("../../../cms/providers"));
    assert_eq!(std::fs::canonicalize(&link).unwrap(), mount.join("cms/providers"));
    // ls through the link and a path through it (zc.zk's README resolves
    // /lb/pools/cms/providers/1.2.3.4:5 to /cms/providers/1.2.3.4:5). The registration
    // made elsewhere shows once its echo has told the kernel (README "The live view").
    common::wait_until(std::time::Duration::from_secs(10), "the registration made elsewhere shows", || {
        shell::ls(&mount.join("cms/providers")).len() == 2
    });
    assert_eq!(shell::ls(&link), ["1.2.3.4:5", "properties.json"]);
    assert_eq!(shell::cat_json(&link.join("1.2.3.4:5")), json!({"pid": 1}));
    let ran = shell::sh(&format!("cd '{}' && pwd -P", link.display()));
    assert_eq!(ran.stdout.trim(), path(&mount.join("cms/providers")));

    // Relative targets resolve against the node holding them (zc.zk's README).
    assert!(zkfs(&["import", "-", root], "/a\n  /b\n    l -> c\n    l2 -> ../c\n    /c\n  /c\n").ok);
    assert_eq!(std::fs::read_link(mount.join("a/b/l2")).unwrap().to_str(), Some("../c"));
    assert_eq!(std::fs::canonicalize(mount.join("a/b/l")).unwrap(), mount.join("a/b/c"));
    assert_eq!(std::fs::canonicalize(mount.join("a/b/l2")).unwrap(), mount.join("a/c"));

    // A loop is ELOOP, not a hang.
    zk.create("/loop", br#"{"x ->": "/loop/y", "y ->": "x"}"#);
    common::wait_until(std::time::Duration::from_secs(10), "/loop shows", || mount.join("loop").is_dir());
    assert_eq!(std::fs::metadata(mount.join("loop/x")).unwrap_err().raw_os_error(), Some(libc::ELOOP));

    // A real child hides the link of the same name, as in zc.zk.
    zk.create("/lb/pools/cms/providers", b"");
    common::wait_until(std::time::Duration::from_secs(10), "the real child shows", || {
        link.symlink_metadata().is_ok_and(|m| m.is_dir())
    });
    assert_eq!(shell::ls(&link), ["properties.json"]);
    assert_eq!(std::fs::read_link(&link).unwrap_err().raw_os_error(), Some(libc::EINVAL));
    // and the export still writes the link, which is in the data.
    let exported = zkfs(&["export", path(&mount.join("lb/pools/cms"))], "");
    assert_eq!(exported.stdout, "/cms\n  address = '1.2.3.4:80'\n  providers -> /cms/providers\n  /providers\n");
}

#[test]
fn ln_s_and_rm_store_and_remove_the_key() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let mount = Mount::new(&server.connect_string());
    assert!(zkfs(&["import", "-", path(mount.path())], EXAMPLE).ok);
    zk.set("/retail/databases", br#"{"big": 123456789012345678901234567890, "main ->": "/cms/databases/main"}"#);
    let dbs = mount.join("retail/databases");
    common::wait_until(std::time::Duration::from_secs(10), "the new data shows", || {
        std::fs::read_to_string(dbs.join("properties.json")).is_ok_and(|t| t.contains("big"))
    });

    // ln -s with an absolute target inside the mount, and with a relative one.
    std::os::unix::fs::symlink(mount.join("cms/databases/main"), dbs.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../cms", dbs.join("rel")).unwrap();
    assert_eq!(
        zk.get_string("/retail/databases").as_deref(),
        Some(
            r#"{"big":123456789012345678901234567890,"main ->":"/cms/databases/main","abs ->":"/cms/databases/main","rel ->":"/cms"}"#
        ),
        "each link is one key; the other keys keep their bytes"
    );
    assert_eq!(std::fs::read_link(dbs.join("rel")).unwrap().to_str(), Some("../../cms"));
    assert_eq!(shell::cat_json(&dbs.join("properties.json"))["abs ->"], json!("/cms/databases/main"));
    assert_eq!(shell::ls(&dbs), ["abs", "main", "properties.json", "rel", "ugc"]);

    // rm removes the key and nothing else.
    std::fs::remove_file(dbs.join("abs")).unwrap();
    assert_eq!(
        zk.get_json("/retail/databases"),
        // Numbers compare as written (serde_json's arbitrary_precision is on).
        serde_json::from_str::<serde_json::Value>(
            r#"{"big": 123456789012345678901234567890, "main ->": "/cms/databases/main", "rel ->": "/cms"}"#
        )
        .unwrap()
    );
    assert!(zk.get_string("/retail/databases").unwrap().contains("123456789012345678901234567890"));
    assert!(!dbs.join("abs").exists() && shell::ls(&dbs).len() == 4);

    // Bad links are refused and change nothing.
    let before = zk.get("/retail/databases");
    let err = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, dbs.join(name)).unwrap_err().raw_os_error().unwrap_or_default()
    };
    assert_eq!(err("/etc/passwd", "out"), libc::EINVAL);
    assert_eq!(err("../../../../x", "up"), libc::EINVAL);
    assert_eq!(err("/cms", "main"), libc::EEXIST);
    assert_eq!(err("/cms", "ugc"), libc::EEXIST);
    assert_eq!(err("/cms", "properties.json"), libc::EEXIST);
    assert_eq!(zk.get("/retail/databases"), before);
    zk.create("/plain", b"just a string");
    common::wait_until(std::time::Duration::from_secs(10), "/plain shows", || mount.join("plain").is_dir());
    assert_eq!(
        std::os::unix::fs::symlink(mount.join("cms"), mount.join("plain/l")).unwrap_err().raw_os_error(),
        Some(libc::EPERM),
        "a node whose data is not a JSON object is not rewritten to hold a link"
    );
    assert_eq!(zk.get("/plain").as_deref(), Some(&b"just a string"[..]));
}

#[test]
fn links_added_or_removed_elsewhere_give_events_and_show_at_once() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"threads": 1}"#);
    zk.create("/target", b"");
    let mount = Mount::new(&server.connect_string());
    let svc = mount.join("svc");
    assert_eq!(shell::ls(&svc), ["properties.json"]); // listed: the kernel caches it
    let mut watcher = common::inotify::Inotify::new();
    watcher.watch(&svc);
    let soon = std::time::Duration::from_secs(5);

    // A link added elsewhere is an IN_CREATE, like a child; ls shows it at once.
    zk.set("/svc", br#"{"threads": 1, "t ->": "/target"}"#);
    watcher.wait_for(soon, "IN_CREATE of the link", |e| e.is(libc::IN_CREATE, "t"));
    assert_eq!(shell::ls(&svc), ["properties.json", "t"]);
    assert!(is_link(&svc.join("t")));
    assert_eq!(std::fs::read_link(svc.join("t")).unwrap().to_str(), Some("../target"));

    // Retargeted elsewhere: readlink follows at once.
    zk.create("/other", b"");
    zk.set("/svc", br#"{"threads": 1, "t ->": "/other"}"#);
    common::wait_until(std::time::Duration::from_secs(10), "readlink shows the new target", || {
        std::fs::read_link(svc.join("t")).is_ok_and(|t| t.to_str() == Some("../other"))
    });

    // The retarget's own events (its echo is an unlink and a symlink) come after
    // readlink follows: taken now, so that the IN_DELETE awaited next is the removal's.
    watcher.wait_for(soon, "IN_CREATE of the retargeted link", |e| e.is(libc::IN_CREATE, "t"));
    watcher.collect(std::time::Duration::ZERO);

    // Removed elsewhere: IN_DELETE, and gone from ls, lookup and readlink.
    zk.set("/svc", br#"{"threads": 1}"#);
    watcher.wait_for(soon, "IN_DELETE of the link", |e| e.is(libc::IN_DELETE, "t"));
    assert_eq!(shell::ls(&svc), ["properties.json"]);
    assert!(!is_link(&svc.join("t")));

    // Added through properties.json on this mount: listed too.
    std::fs::write(svc.join("properties.json"), r#"{"u ->": "/target"}"#).unwrap();
    assert_eq!(shell::ls(&svc), ["properties.json", "u"]);
    assert_eq!(std::fs::canonicalize(svc.join("u")).unwrap(), mount.join("target"));
}

/// Output compared word by word (`ls` prints columns on a terminal, lines in a pipe).
fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

/// The README's "Configuration as text": its file and every command of its example,
/// run in order against a real mount, print what the README shows.
#[test]
fn readme_configuration_as_text_does_what_it_shows() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = readme.split("\n## Configuration as text\n").nth(1).expect("the README section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let block = |fence: &str| section.split(fence).nth(1).and_then(|b| b.split("```").next()).unwrap_or_default();
    let (file, script) = (block("```text\n"), block("```sh\n"));
    assert!(file.contains("providers -> /cms/providers") && script.contains("zkfs import"));

    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let mount = Mount::new(&server.connect_string());
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::write(work.path().join("services.txt"), file).expect("write services.txt");
    let bin = Path::new(env!("CARGO_BIN_EXE_zkfs")).parent().expect("the binary's directory");
    let search_path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let here = |text: &str| text.replace("/mnt/zk", path(mount.path()));

    let mut examples: Vec<(String, Vec<String>)> = Vec::new();
    for line in script.lines() {
        match (line.strip_prefix("# ").or(if line == "#" { Some("") } else { None }), examples.last_mut()) {
            (Some(out), Some(last)) => last.1.push(out.to_string()),
            _ => examples.push((line.to_string(), Vec::new())),
        }
    }
    assert!(examples.len() >= 10, "the README's example was not found");
    for (command, shown) in &examples {
        let out = Command::new("bash")
            .arg("-c")
            .arg(here(command))
            .current_dir(work.path())
            .env("PATH", &search_path)
            .output()
            .expect("run bash");
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(words(&printed), words(&here(&shown.join("\n"))), "`{command}`");
    }
    assert_eq!(zk.get_json("/cms"), json!({"type": "z4m cms", "threads": 4}));
    assert_eq!(zk.get_json("/lb/pools/cms")["service ->"], json!("/cms"));
}

/// `ln -s` is a versioned read-modify-write: a writer updating another key of the
/// same node at the same time (another host, another client) loses nothing, nor does
/// `ln -s`.
#[test]
fn ln_s_loses_no_key_to_a_concurrent_writer() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/busy", b"{}");
    let mount = Mount::new(&server.connect_string());
    let busy = mount.join("busy");
    common::wait_until(std::time::Duration::from_secs(10), "/busy shows", || busy.is_dir());

    let connect = server.connect_string();
    let writer = std::thread::spawn(move || {
        let other = Zk::connect(&connect);
        for i in 0..100 {
            loop {
                let (data, stat) = other.try_get("/busy").expect("get /busy");
                let mut v: serde_json::Value = serde_json::from_slice(&data).expect("JSON");
                v["n"] = json!(i);
                let bytes = serde_json::to_vec(&v).expect("encode");
                match other.block_on(other.client().set_data("/busy", &bytes, Some(stat.version))) {
                    Ok(_) => break,
                    Err(zookeeper_client::Error::BadVersion) => continue,
                    Err(e) => panic!("set /busy: {e}"),
                }
            }
        }
    });
    for i in 0..30 {
        std::os::unix::fs::symlink(mount.join("target"), busy.join(format!("l{i}"))).expect("ln -s");
    }
    writer.join().expect("writer");

    let v = zk.get_json("/busy");
    assert_eq!(v["n"], json!(99));
    for i in 0..30 {
        assert_eq!(v[format!("l{i} ->")], json!("/target"), "link l{i} lost: {v}");
    }
}

/// On a read-only mount import and ln -s change nothing and say why; export works.
#[test]
fn a_read_only_mount_refuses_import_and_links() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"threads": 1}"#);
    let mount = Mount::with_options(&server.connect_string(), "ro");
    let root = path(mount.path());
    let ran = zkfs(&["import", "-", root], "/svc\n  threads = 2\n");
    let refused = |ran: &Ran, first: &str| {
        !ran.ok
            && ran.stderr.contains(&format!("(from `{first}`) failed: Read-only file system"))
            && ran.stderr.contains("nothing was changed")
    };
    assert!(refused(&ran, "/svc threads change from 1 to 2"), "{}", ran.stderr);
    let ran = zkfs(&["import", "-", root], "/new\n");
    assert!(refused(&ran, "add /new"), "{}", ran.stderr);
    assert_eq!(
        std::os::unix::fs::symlink(mount.join("svc"), mount.join("svc/l")).unwrap_err().raw_os_error(),
        Some(libc::EROFS)
    );
    assert_eq!(zk.get_json("/svc"), json!({"threads": 1}));
    assert!(!zk.exists("/new"));
    assert_eq!(zkfs(&["export", root], "").stdout, "/svc\n  threads = 1\n");
    // A dry run needs no writes.
    assert_eq!(
        zkfs(&["import", "--dry-run", "-", root], "/svc\n  threads = 2\n").stdout,
        "/svc threads change from 1 to 2\n"
    );
}

/// zc.zk's README "Property links" example, imported under a directory of the mount.
#[test]
fn property_links_are_kept_and_written_as_read() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/test-property-links", b"");
    let mount = Mount::new(&server.connect_string());
    let dir = mount.join("test-property-links");
    common::wait_until(std::time::Duration::from_secs(10), "the directory shows", || dir.is_dir());
    let source = "\
/cms : z4m cms
  threads => /fooservice threads
  /providers
/fooservice
  secret = u'1234'
  threads = 3
";
    let ran = zkfs(&["import", "-", path(&dir)], source);
    assert!(ran.ok, "{}", ran.stderr);
    assert_eq!(
        zk.get_json("/test-property-links/cms"),
        json!({"type": "z4m cms", "threads =>": "/fooservice threads"})
    );
    let exported = zkfs(&["export", path(&dir)], "");
    assert_eq!(
        exported.stdout,
        "/test-property-links\n  /cms : z4m cms\n    threads => /fooservice threads\n    /providers\n  \
         /fooservice\n    secret = '1234'\n    threads = 3\n"
    );
    // zc.zk's README then imports `threads => /fooservice` over it.
    let ran = zkfs(&["import", "-", path(&dir)], "/cms\n  threads => /fooservice\n");
    assert_eq!(
        ran.stdout,
        "/test-property-links/cms threads => change from '/fooservice threads' to '/fooservice'\n\
         /test-property-links/cms remove property type = 'z4m cms'\n"
    );
    assert!(ran.stderr.contains("extra path not trimmed: /test-property-links/cms/providers"), "{}", ran.stderr);
    assert_eq!(zk.get_json("/test-property-links/cms"), json!({"threads =>": "/fooservice"}));
    // A node the mount cannot show as a directory is refused, naming it.
    let ran = zkfs(&["import", "-", path(&dir)], "/cms\n  /properties.json\n");
    assert!(!ran.ok && ran.stderr.contains("properties.json is the node's own properties file"), "{}", ran.stderr);
}
