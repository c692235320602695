//! `zkfs validate` and `zkfs import` at scale (issue 25, item 5: parsing was
//! quadratic in the number of siblings).
//!
//! Rows:
//! * validate of a generated file of 1,000,000 sibling nodes (seconds), beside the
//!   time to read the same file (the reference: what a linear parse costs at least);
//! * import of 100,000 nodes into a mount, beside a native client (zookeeper-client,
//!   one create after another) creating the same 100,000 nodes: a ratio.
//!
//! `ZKFS_BENCH_SCALE=small` runs a tenth of each. Run with `scripts/bench transfer`.
//! The server and the mount are stopped by the fixtures' `Drop`, also on a panic.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mount, Zk, ZkServer};

fn zkfs(args: &[&str], stdin: &[u8]) -> (Duration, bool, String) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zkfs"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zkfs");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("feed zkfs");
    }
    let out = child.wait_with_output().expect("wait zkfs");
    (start.elapsed(), out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn main() {
    let small = std::env::var("ZKFS_BENCH_SCALE").as_deref() == Ok("small");
    let (lines, nodes) = if small { (100_000, 10_000) } else { (1_000_000, 100_000) };

    // validate: N siblings, each with a property, under one node.
    let mut text = String::from("/top\n");
    for i in 0..lines / 2 {
        text.push_str(&format!("  /n{i}\n    v = {i}\n"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tree.txt");
    std::fs::write(&file, &text).expect("write the tree");
    let start = Instant::now();
    let read = std::fs::read(&file).expect("read back").len();
    let reference = start.elapsed();
    let (took, ok, err) = zkfs(&["validate", file.to_str().unwrap()], b"");
    assert!(ok, "validate: {err}");
    println!(
        "validate {lines} lines ({read} bytes): {:.2} s (reading the file: {:.3} s)",
        took.as_secs_f64(),
        reference.as_secs_f64()
    );

    // import beside a native client.
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.create("/native", b"");
    let start = Instant::now();
    for i in 0..nodes {
        zk.create(&format!("/native/n{i}"), br#"{"v":1}"#);
    }
    let native = start.elapsed();
    let mount = Mount::new(&server.connect_string());
    let mut tree = String::from("/imported\n");
    for i in 0..nodes {
        tree.push_str(&format!("  /n{i}\n    v = 1\n"));
    }
    let (took, ok, err) = zkfs(&["import", "-", mount.path().to_str().unwrap()], tree.as_bytes());
    assert!(ok, "import: {err}");
    assert_eq!(zk.children("/imported").len(), nodes);
    println!(
        "import {nodes} nodes: {:.2} s; native creates: {:.2} s; ratio {:.2}x",
        took.as_secs_f64(),
        native.as_secs_f64(),
        took.as_secs_f64() / native.as_secs_f64()
    );
}
