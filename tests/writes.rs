//! SPEC "Changing configuration": `>` sets, `>>` updates, errors reach the writer and
//! change nothing.

mod common;
mod shell;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use common::{Mount, Zk, ZkServer};
use serde_json::{json, Value};
use shell::{cat_json, q, sh};

fn setup() -> (ZkServer, Zk, Mount) {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"database": "/db", "threads": 1}"#);
    let mount = Mount::new(&server.connect_string());
    (server, zk, mount)
}

#[test]
fn truncating_write_sets_and_appending_write_updates() {
    let (_server, zk, mount) = setup();
    let props = mount.join("svc/properties.json");

    let r = sh(&format!(r#"echo '{{"threads": 2, "secret": "123"}}' >> {}"#, q(&props)));
    assert!(r.ok, "{}", r.stderr);
    let merged = json!({"database": "/db", "threads": 2, "secret": "123"});
    assert_eq!(zk.get_json("/svc"), merged);
    // Read right after the write: no stale cache.
    assert_eq!(cat_json(&props), merged);

    let r = sh(&format!(r#"echo '{{"threads": 3, "secret": "1234"}}' > {}"#, q(&props)));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(zk.get_json("/svc"), json!({"threads": 3, "secret": "1234"}));
    assert_eq!(cat_json(&props), json!({"threads": 3, "secret": "1234"}));
    assert_eq!(props.metadata().unwrap().len(), std::fs::read(&props).unwrap().len() as u64);
}

#[test]
fn string_value_is_stored_as_the_bare_string() {
    let (_server, zk, mount) = setup();
    let props = mount.join("svc/properties.json");
    assert!(sh(&format!(r#"echo '{{"string_value": "plain text"}}' > {}"#, q(&props))).ok);
    assert_eq!(zk.get("/svc").unwrap(), b"plain text");
    assert_eq!(cat_json(&props), json!({"string_value": "plain text"}));
}

#[test]
fn a_document_in_many_writes_and_lines_is_applied_once_complete() {
    let (_server, zk, mount) = setup();
    let props = mount.join("svc/properties.json");
    let mut f = OpenOptions::new().write(true).truncate(true).open(&props).unwrap();
    for piece in ["{\n", "  \"a\": \"one\",\n", "  \"b\": [1,\n 2]\n", "}\n"] {
        f.write_all(piece.as_bytes()).unwrap();
        f.flush().unwrap();
    }
    drop(f);
    assert_eq!(zk.get_json("/svc"), json!({"a": "one", "b": [1, 2]}));

    // A large document through `cat file >`.
    let big: serde_json::Map<String, Value> =
        (0..5000).map(|i| (format!("key{i}"), json!(format!("value {i}")))).collect();
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), serde_json::to_vec_pretty(&big).unwrap()).unwrap();
    let r = sh(&format!("cat {} > {}", q(src.path()), q(&props)));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(zk.get_json("/svc"), Value::Object(big));
}

/// Given `/svc` with known data, when `input` is written with `>` or `>>` from a shell,
/// then the shell reports an error and the data is exactly as before.
fn refused(props: &Path, zk: &Zk, input: &str) {
    let before = zk.get("/svc").unwrap();
    let before_version = zk.stat("/svc").unwrap().version;
    for redirect in [">", ">>"] {
        let r = sh(&format!("printf '%s' '{input}' {redirect} {}", q(props)));
        assert!(!r.ok, "writing {input:?} with {redirect} succeeded");
        assert!(!r.stderr.is_empty(), "no error message for {input:?}");
    }
    assert_eq!(zk.get("/svc").unwrap(), before, "{input:?} changed the data");
    assert_eq!(zk.stat("/svc").unwrap().version, before_version, "{input:?} wrote to ZooKeeper");
}

#[test]
fn anything_but_one_json_object_fails_the_write_and_changes_nothing() {
    let (_server, zk, mount) = setup();
    let props = mount.join("svc/properties.json");
    for bad in ["[1]", "4", "{bad", "\"text\"", "{\"a\": 1} {\"b\": 2}", "{\"a\": 1}}", "null"] {
        refused(&props, &zk, bad);
    }
}

#[test]
fn the_write_that_brings_bad_bytes_fails_with_einval() {
    let (_server, zk, mount) = setup();
    let mut f = OpenOptions::new().append(true).open(mount.join("svc/properties.json")).unwrap();
    f.write_all(b"{\"a\":").unwrap();
    let err = f.write_all(b" nope}").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    drop(f);
    assert_eq!(zk.get_json("/svc"), json!({"database": "/db", "threads": 1}));
}

#[test]
fn a_document_incomplete_at_close_fails_there_and_changes_nothing() {
    let (_server, zk, mount) = setup();
    let mut f = OpenOptions::new().write(true).truncate(true).open(mount.join("svc/properties.json")).unwrap();
    f.write_all(b"{\"threads\": ").unwrap();
    // close(2) itself, which reports the flush error (dropping a File ignores it).
    assert_eq!(nix::unistd::close(f), Err(nix::errno::Errno::EINVAL), "close of an incomplete document");
    assert_eq!(zk.get_json("/svc"), json!({"database": "/db", "threads": 1}));
    assert!(mount.log().contains("incomplete JSON object"), "the reason is logged");
}

#[test]
fn data_larger_than_zookeeper_accepts_fails_with_efbig_and_changes_nothing() {
    let (_server, zk, mount) = setup();
    let mut f = OpenOptions::new().write(true).truncate(true).open(mount.join("svc/properties.json")).unwrap();
    let big = format!("{{\"blob\": \"{}\"}}", "x".repeat(1_500_000));
    let err = f.write_all(big.as_bytes()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG));
    drop(f);
    assert_eq!(zk.get_json("/svc"), json!({"database": "/db", "threads": 1}));
    // The session survived: writes still work.
    assert!(sh(&format!(r#"echo '{{"ok": 1}}' >> {}"#, q(&mount.join("svc/properties.json")))).ok);
    assert_eq!(zk.get_json("/svc")["ok"], json!(1));
}

#[test]
fn concurrent_updates_from_two_mounts_lose_nothing() {
    let (server, zk, mount_a) = setup();
    let mount_b = Mount::new(&server.connect_string());
    let writers: Vec<_> = [(&mount_a, "a"), (&mount_a, "b"), (&mount_b, "c"), (&mount_b, "d")]
        .into_iter()
        .map(|(m, who)| {
            let props = m.join("svc/properties.json");
            let who = who.to_string();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let r = sh(&format!(r#"echo '{{"{who}{i}": {i}}}' >> {}"#, q(&props)));
                    assert!(r.ok, "{}", r.stderr);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let data = zk.get_json("/svc");
    for who in ["a", "b", "c", "d"] {
        for i in 0..50 {
            assert_eq!(data[format!("{who}{i}")], json!(i), "{who}{i} lost: {data}");
        }
    }
    assert_eq!(data["database"], json!("/db"));
}
