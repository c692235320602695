//! SPEC "Changing configuration" and "The tree": what is not written is not touched,
//! and what a file shows is bounded by its data.

mod common;
mod shell;

use std::io::Write;

use common::{Mount, Zk, ZkServer};
use shell::{q, sh};

fn setup(data: &[u8]) -> (ZkServer, Zk, Mount) {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", data);
    let mount = Mount::new(&server.connect_string());
    (server, zk, mount)
}

#[test]
fn append_keeps_every_other_key_byte_for_byte() {
    let stored = br#"{"big": 123456789012345678901234567890, "e":1E2,"f":1.10,"s":"caf\u00e9"}"#;
    let (_server, zk, mount) = setup(stored);
    let props = mount.join("svc/properties.json");

    let r = sh(&format!(r#"echo '{{"f": 2.50, "new": 1E3}}' >> {}"#, q(&props)));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(
        zk.get_string("/svc").unwrap(),
        r#"{"big": 123456789012345678901234567890, "e":1E2,"f":2.50,"s":"caf\u00e9","new":1E3}"#
    );
}

#[test]
fn numbers_are_stored_and_shown_as_written() {
    let (_server, zk, mount) = setup(b"{}");
    let props = mount.join("svc/properties.json");

    let r = sh(&format!(r#"printf '{{"big": 123456789012345678901234567890, "f": 1.10}}\n' > {}"#, q(&props)));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(zk.get_string("/svc").unwrap(), r#"{"big":123456789012345678901234567890,"f":1.10}"#);

    zk.set("/svc", br#"{"e":1E2,"f":1.10}"#);
    common::wait_until(std::time::Duration::from_secs(5), "the new data is shown", || {
        std::fs::read_to_string(&props).is_ok_and(|t| t.contains("1E2"))
    });
    assert_eq!(std::fs::read_to_string(&props).unwrap(), "{\n  \"e\": 1E2,\n  \"f\": 1.10\n}\n");
}

#[test]
fn append_onto_data_that_is_not_utf8_fails_and_changes_nothing() {
    let stored = b"\xff\xfe binary \x00\x01";
    let (_server, zk, mount) = setup(stored);
    let props = mount.join("svc/properties.json");

    let mut f = std::fs::OpenOptions::new().append(true).open(&props).unwrap();
    let err = f.write_all(b"{\"new\": 1}\n").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    drop(f);
    assert_eq!(zk.get("/svc").unwrap(), stored);
    assert!(mount.log().contains("not valid UTF-8"), "the refusal is logged with its reason:\n{}", mount.log());

    // `>` still replaces it.
    let r = sh(&format!(r#"echo '{{"new": 1}}' > {}"#, q(&props)));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(zk.get_string("/svc").unwrap(), r#"{"new":1}"#);
}

/// VmHWM or VmRSS of a process, in bytes.
fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    let kb: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap();
    kb * 1024
}

#[test]
fn a_deeply_nested_node_shows_at_most_twice_its_size_and_costs_memory_in_proportion() {
    // About a megabyte nested as deep as serde_json reads (127 levels): pretty-printed
    // in full, each of its 495,000 numbers would take a line of 254 spaces (~117 MB).
    let inner = vec!["1"; 495_000].join(",");
    let hostile = format!("{}[{}]{}", r#"{"a":"#.repeat(126), inner, "}".repeat(126));
    assert!(hostile.len() < 1_000_000, "{} bytes", hostile.len());
    let (_server, zk, mount) = setup(b"{}");
    for i in 0..4 {
        zk.create(&format!("/svc/n{i}"), hostile.as_bytes());
    }
    let before = memory(mount.pid(), "VmHWM:");
    for i in 0..4 {
        let props = mount.join(format!("svc/n{i}/properties.json"));
        let size = props.metadata().unwrap().len();
        let shown = std::fs::read(&props).unwrap();
        assert_eq!(shown.len() as u64, size, "stat size is what cat prints");
        assert!(size <= 2 * hostile.len() as u64 + 64, "{size} bytes shown for {} bytes of data", hostile.len());
        let a: serde_json::Value = serde_json::from_slice(&shown).unwrap();
        assert_eq!(a, serde_json::from_str::<serde_json::Value>(&hostile).unwrap(), "the same document");
    }
    let grown = memory(mount.pid(), "VmHWM:").saturating_sub(before);
    let rss = memory(mount.pid(), "VmRSS:");
    eprintln!("peak RSS grew by {grown} bytes reading 4 nodes of {} bytes; RSS now {rss}", hostile.len());
    // Data and rendering of four nodes stay cached (≤ 3 MB each); reading them cost
    // well over 100 MB each before rendering was bounded.
    assert!(grown < 40 << 20, "peak RSS grew by {grown} bytes");
}
