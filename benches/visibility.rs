//! How long a node created elsewhere stays invisible on a mount (issue 25, item 10):
//! the mount hides a child it heard of until its echo `mknod`/`mkdir` has told the
//! kernel (so that watchers get their IN_CREATE before anyone can see the child).
//!
//! Another session creates 400 registrations, one at a time, in a directory the mount
//! has listed; right after each create is acknowledged, this process `stat`s the new
//! name on the mount in a loop until it exists. Beside it, in the same run, the
//! reference: a second native client's `exists` of the same node sent right after the
//! acknowledgement (what any other ZooKeeper client would see), for every other create. Median, p99 and worst.
//!
//! Run with `scripts/bench visibility`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Mount, Zk, ZkServer};

const N: usize = 200;

fn summary(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[v.len() * 99 / 100]), ms(v[v.len() - 1]))
}

fn main() {
    let server = ZkServer::start();
    let writer = Zk::connect(&server.connect_string());
    let other = Zk::connect(&server.connect_string());
    writer.mkdir_p("/svc/providers");
    let mount = Mount::new(&server.connect_string());
    let dir = mount.join("svc/providers");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "listed once: only properties.json");
    let (mut hidden, mut native) = (Vec::new(), Vec::new());
    for i in 0..2 * N {
        let name = format!("10.2.{}.{}:80", i / 250, i % 250);
        let path = format!("/svc/providers/{name}");
        writer.create_ephemeral(&path, b"{}");
        let acked = Instant::now();
        if i % 2 == 0 {
            let file = dir.join(&name);
            while std::fs::symlink_metadata(&file).is_err() {
                assert!(acked.elapsed() < Duration::from_secs(10), "{name} never appeared");
            }
            hidden.push(acked.elapsed());
        } else {
            assert!(other.exists(&path));
            native.push(acked.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (m, p, w) = summary(hidden);
    let (nm, np, nw) = summary(native);
    println!("a registration created elsewhere -> visible ({N} creates, each after its acknowledgement):");
    println!("  on the mount (stat in a loop)   median {m:6.2} ms  p99 {p:6.2} ms  worst {w:6.2} ms");
    println!("  another native client's exists  median {nm:6.2} ms  p99 {np:6.2} ms  worst {nw:6.2} ms");
    println!("  ratio of medians: {:.1}x", m / nm);
}
