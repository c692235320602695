//! Live benchmark: zkfs against a throw-away local ZooKeeper, side by side with a
//! native ZooKeeper client and with tmpfs.
//!
//! (a) Remote change → notification latency (`live/latency.rs`): a native client changes ZooKeeper;
//!     one observer is an inotify watch on the mount, the other (the floor) a
//!     second native client holding persistent watches.
//! (b) Warm reads (`live/reads.rs`): `read_dir`/`read` in-process and `ls`/`cat` as commands on the
//!     mount and on tmpfs, and the native round trips they stand in for.
//! (c) Under stress (`live/stress.rs`): a warm read while writes wait on a frozen
//!     ZooKeeper, against the same read with none waiting; the last event of a
//!     5,000-registration burst, against a native watch's.
//!
//! Run with `scripts/bench` (or `cargo bench --bench live`): a few seconds after the
//! release build, about 20 s more if the mount delivers no events for remote changes.
//! Every process and directory it creates is removed by the fixtures' `Drop`, also
//! when it panics.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "live/latency.rs"]
mod latency;
#[path = "live/reads.rs"]
mod reads;
#[path = "live/stress.rs"]
mod stress;
mod support;

use std::fs;
use std::time::{Duration, Instant};

use common::{wait_until, Mount, Zk, ZkServer};

/// Children of /bench/many.
pub const MANY_CHILDREN: usize = 100;
/// Approximate size of /bench's data.
pub const DATA_SIZE: usize = 200;

const RERUN: &str = "scripts/bench live   (= scripts/install-deps && cargo bench --bench live)";

fn main() {
    // zkfs logs at debug level under the fixtures unless RUST_LOG says otherwise;
    // a benchmark measures the mount, not its logging. Set before any thread starts.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();

    let started = Instant::now();
    eprintln!("zkfs live benchmark: starting ZooKeeper and the mount...");
    let server = ZkServer::start();
    let connect = server.connect_string();
    let admin = Zk::connect(&connect);
    setup_tree(&admin);
    let mount = Mount::new(&connect);
    wait_until(Duration::from_secs(10), "the mount shows /bench/many", || {
        fs::read_dir(mount.join("/bench/many")).map(|d| d.count() > MANY_CHILDREN).unwrap_or(false)
    });

    println!();
    println!("zkfs live benchmark");
    println!("environment: {}", environment(&server, &rust_log));
    println!("re-run:      {RERUN}");
    println!();

    let latency = latency::latency_section(&connect, &admin, &mount);
    let reads = reads::reads_section(&admin, &mount);
    println!();
    let stress = stress::stress_section();

    println!();
    let (met, total) = (latency.0 + reads.0 + stress.0, latency.1 + reads.1 + stress.1);
    println!("targets met: {met} of {total}; total time {:.1} s", started.elapsed().as_secs_f64());
    println!("re-run:      {RERUN}");
    // `mount`, `admin` and `server` drop here in reverse order: unmount, close the
    // session, stop ZooKeeper.
}

/// `/bench` (≈200 bytes of JSON), `/bench/providers` (empty) and `/bench/many`
/// (100 persistent children).
fn setup_tree(admin: &Zk) {
    admin.mkdir_p("/bench/providers");
    admin.set("/bench", &bench_data(0));
    admin.mkdir_p("/bench/many");
    for i in 0..MANY_CHILDREN {
        admin.create(&format!("/bench/many/node-{i:03}"), b"");
    }
}

/// A JSON object of about [`DATA_SIZE`] bytes whose `revision` is `n`.
pub fn bench_data(n: usize) -> Vec<u8> {
    let make = |pad: usize| {
        serde_json::json!({
            "service": "bench",
            "revision": n,
            "weight": 3,
            "timeout_ms": 1500,
            "tags": ["live", "benchmark", "zookeeper"],
            "description": "z".repeat(pad),
        })
        .to_string()
        .into_bytes()
    };
    let base = make(0).len();
    make(DATA_SIZE.saturating_sub(base))
}

/// Kernel, CPUs, ZooKeeper version, zkfs commit, log level.
fn environment(server: &ZkServer, rust_log: &str) -> String {
    format!("{}, RUST_LOG={rust_log}", support::environment(server))
}
