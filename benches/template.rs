//! `zkfs template` beside the loop people write by hand (issue 23, item 6):
//! `inotifywait -m DIR | while read; do render; reload; done`, both on the same mount,
//! in the same run, fed by another ZooKeeper session (another host) registering.
//!
//! Rows:
//! * reloads for a burst of 100 registrations made as fast as one client can;
//! * time from one registration's create (acknowledged by ZooKeeper) to the reloaded
//!   output naming it (median and worst of 20), with `--wait 50ms:1s` and with the
//!   default `--wait 200ms:2s`.
//!
//! Run with `scripts/bench template`. Servers, mounts and both loops are stopped by
//! `Drop`, also on a panic.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::signal_group;
use common::{Mount, Zk, ZkServer};
use nix::sys::signal::Signal;

/// A running reload loop: its output file and its reload log.
struct Loop {
    child: Child,
    out: PathBuf,
    reloads: PathBuf,
}

impl Loop {
    fn reloads(&self) -> usize {
        fs::read_to_string(&self.reloads).unwrap_or_default().lines().count()
    }

    fn shows(&self, name: &str) -> bool {
        fs::read_to_string(&self.out).unwrap_or_default().contains(name)
    }

    /// Waits until the reload count stays put for `quiet`.
    fn settle(&self, quiet: Duration) -> usize {
        let mut last = (self.reloads(), Instant::now());
        loop {
            thread::sleep(Duration::from_millis(50));
            let n = self.reloads();
            if n != last.0 {
                last = (n, Instant::now());
            } else if last.1.elapsed() >= quiet {
                return n;
            }
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        signal_group(self.child.id(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).spawn().expect("spawn")
}

/// `zkfs template` over one template listing the providers.
fn template(root: &Path, work: &Path, tag: &str, wait: &str) -> Loop {
    let tmpl = work.join(format!("{tag}.tmpl"));
    fs::write(&tmpl, "{% for e in entries('svc/providers') %}server {{ e.name }}\n{% endfor %}").unwrap();
    let (out, reloads) = (work.join(format!("{tag}.out")), work.join(format!("{tag}.reloads")));
    let spec = format!("{}:{}:echo r >> {}", tmpl.display(), out.display(), reloads.display());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkfs"));
    cmd.arg("template").arg("--root").arg(root).arg("--wait").arg(wait).arg("-t").arg(spec);
    Loop { child: spawn(cmd), out, reloads }
}

/// The hand-written loop: every inotify event renders (`ls`) and reloads.
fn by_hand(dir: &Path, work: &Path) -> Loop {
    let (out, reloads) = (work.join("hand.out"), work.join("hand.reloads"));
    let script = format!(
        "render() {{ ls {dir} | grep : | sed 's/^/server /' > {out}.tmp && mv {out}.tmp {out}; echo r >> {reloads}; }}; \
         render; inotifywait -q -m -e create,delete,modify,moved_to,moved_from {dir} | while read -r _; do render; done",
        dir = dir.display(),
        out = out.display(),
        reloads = reloads.display()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script);
    Loop { child: spawn(cmd), out, reloads }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn main() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    zk.create_ephemeral("/svc/providers/10.1.0.0:80", b"{}");
    let mount = Mount::new(&server.connect_string());
    let work = tempfile::tempdir().unwrap();
    let loops = [
        ("zkfs template --wait 50ms:1s", template(mount.path(), work.path(), "fast", "50ms:1s")),
        ("zkfs template (default wait)", template(mount.path(), work.path(), "default", "200ms:2s")),
        ("inotifywait | while read loop", by_hand(&mount.join("svc/providers"), work.path())),
    ];
    for (name, l) in &loops {
        wait_for(&format!("{name}: first output"), Duration::from_secs(20), || l.shows("10.1.0.0:80"));
    }
    let before: Vec<usize> = loops.iter().map(|(_, l)| l.settle(Duration::from_secs(3))).collect();

    // A burst of 100 registrations.
    let start = Instant::now();
    for i in 1..=100 {
        zk.create_ephemeral(&format!("/svc/providers/10.1.1.{i}:80"), b"{}");
    }
    println!("burst of 100 registrations (one client, {} ms):", start.elapsed().as_millis());
    for ((name, l), before) in loops.iter().zip(&before) {
        wait_for(&format!("{name}: the burst's last"), Duration::from_secs(30), || l.shows("10.1.1.100:80"));
        let after = l.settle(Duration::from_secs(3));
        println!("  {name:32} reloads: {}", after - before);
    }

    // Latency of one change, 20 times.
    println!("one registration -> reloaded output naming it (20 changes, 3 s apart):");
    let mut took: Vec<Vec<Duration>> = vec![Vec::new(); loops.len()];
    for i in 0..20 {
        let name = format!("10.1.2.{i}:80");
        let start = Instant::now();
        zk.create_ephemeral(&format!("/svc/providers/{name}"), b"{}");
        let mut done = vec![None; loops.len()];
        wait_for("every loop shows the change", Duration::from_secs(30), || {
            for (k, (_, l)) in loops.iter().enumerate() {
                if done[k].is_none() && l.shows(&name) {
                    done[k] = Some(start.elapsed());
                }
            }
            done.iter().all(Option::is_some)
        });
        for (k, d) in done.into_iter().enumerate() {
            took[k].push(d.unwrap());
        }
        thread::sleep(Duration::from_millis(2500));
    }
    let hand = {
        let mut t = took[2].clone();
        t.sort();
        t[t.len() / 2]
    };
    for ((name, _), t) in loops.iter().zip(&mut took) {
        t.sort();
        let median = t[t.len() / 2];
        println!(
            "  {name:32} median {:7.1} ms  worst {:7.1} ms  ({:.1}x the hand-written loop's median)",
            median.as_secs_f64() * 1e3,
            t[t.len() - 1].as_secs_f64() * 1e3,
            median.as_secs_f64() / hand.as_secs_f64()
        );
    }
    drop(zk);
}
