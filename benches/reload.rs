//! A reload and a crash under load (issue 20, item 3): what another host and the
//! programs using the mount see.
//!
//! One mount with 8 flock-held registrations and one plain one; a `cat` loop, an `ls`
//! loop, a `stat` loop and `>>` writes of `properties.json`, each every 2 ms; another
//! host following the registrations with inotify (a second mount) and with a native
//! client polling them every 10 ms (what a kazoo-like load balancer sees). Then:
//!
//! * `zkfs reload` ROUNDS times in a row (the target: 0 registrations seen gone, 0
//!   failed requests, the longest request ≤ 200 ms);
//! * SIGKILL and a restart within the session timeout (the target: 0 registrations
//!   seen gone; requests made while no zkfs runs fail with ENOTCONN, and the flocks
//!   go with the old process: said, not hidden);
//!
//! beside the reference of the same run: the same load for as long with no reload.
//!
//! Run with `scripts/bench reload` (release build).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::inotify::Inotify;
use common::load::{Holder, Load, Observer, Outcome};
use common::{wait_until, Mount, Zk, ZkServer};

const ROUNDS: usize = 10;
const GAP: Duration = Duration::from_millis(500);

fn load(mount: &Mount) -> Load {
    let mut load = Load::new();
    let props: PathBuf = mount.join("/svc/properties.json");
    let providers: PathBuf = mount.join("/svc/providers");
    let p = props.clone();
    load.run("cat", move |_| {
        let text = std::fs::read(&p).map_err(|e| e.to_string())?;
        serde_json::from_slice::<serde_json::Value>(&text).map(drop).map_err(|e| e.to_string())
    });
    let d = providers.clone();
    load.run("ls", move |_| {
        std::fs::read_dir(&d)
            .map(|r| {
                r.count();
            })
            .map_err(|e| e.to_string())
    });
    let d = providers.clone();
    load.run("stat", move |_| std::fs::metadata(d.join("10.0.0.3:80")).map(drop).map_err(|e| e.to_string()));
    load.run(">>", move |i| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&props).map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut f, format!(r#"{{"n": {i}}}"#).as_bytes()).map_err(|e| e.to_string())
    });
    load
}

fn row(what: &str, o: &Outcome, gone: usize, deleted: usize) {
    println!(
        "  {what:<34} {:>6} requests  {:>4} failed  p50 {:6.2} ms  p99 {:6.2} ms  longest {:7.2} ms  \
         gone {gone}  IN_DELETE {deleted}",
        o.latencies.len(),
        o.errors.len(),
        o.percentile_ms(50),
        o.percentile_ms(99),
        o.longest_ms()
    );
}

fn main() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    zk.set("/svc", br#"{"n": 0}"#);
    let mut mount = Mount::with_options(&server.connect_string(), "session_timeout=10");
    let other = Mount::new(&server.connect_string());
    let mut regs: Vec<String> = (1..=8).map(|i| format!("/svc/providers/10.0.0.{i}:80")).collect();
    let holders: Vec<Holder> = regs.iter().map(|r| Holder::start(&mount.join(r))).collect();
    std::fs::write(mount.join("/svc/providers/10.0.1.1:80"), b"").unwrap();
    regs.push("/svc/providers/10.0.1.1:80".into());
    wait_until(Duration::from_secs(5), "9 registrations", || regs.iter().all(|r| zk.exists(r)));
    let mut ino = Inotify::new();
    ino.watch(&other.join("/svc/providers"));
    let deletions = |ino: &mut Inotify| {
        ino.collect(Duration::from_millis(300)).into_iter().filter(|e| e.mask & libc::IN_DELETE != 0).count()
    };
    let window = GAP * ROUNDS as u32 + Duration::from_millis(ROUNDS as u64 * 100);
    println!("zkfs reload and a crash under load ({} registrations, 8 held by flock; 4 loops every 2 ms):", regs.len());

    // The reference: the same load, as long, nothing happening.
    let observer = Observer::start(&server.connect_string(), regs.clone());
    let l = load(&mount);
    std::thread::sleep(window);
    let quiet = l.finish();
    row("no reload (reference)", &quiet, observer.finish(), deletions(&mut ino));

    let observer = Observer::start(&server.connect_string(), regs.clone());
    let l = load(&mount);
    let mut took = Vec::new();
    for _ in 0..ROUNDS {
        std::thread::sleep(GAP);
        let t = Instant::now();
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_zkfs")).arg("reload").arg(mount.path()).output().unwrap();
        assert!(out.status.success(), "zkfs reload: {}", String::from_utf8_lossy(&out.stderr));
        took.push(t.elapsed());
    }
    std::thread::sleep(GAP);
    let reloaded = l.finish();
    row(&format!("{ROUNDS} x zkfs reload"), &reloaded, observer.finish(), deletions(&mut ino));
    took.sort();
    println!(
        "  zkfs reload itself: median {:.1} ms, longest {:.1} ms; longest request {:.1}x the reference's",
        took[took.len() / 2].as_secs_f64() * 1e3,
        took[took.len() - 1].as_secs_f64() * 1e3,
        reloaded.longest_ms() / quiet.longest_ms().max(0.001)
    );

    let observer = Observer::start(&server.connect_string(), regs.clone());
    let l = load(&mount);
    std::thread::sleep(GAP);
    let t = Instant::now();
    mount.crash_and_restart();
    let restarted = t.elapsed();
    std::thread::sleep(GAP);
    let crashed = l.finish();
    row("SIGKILL + restart", &crashed, observer.finish(), deletions(&mut ino));
    println!(
        "  restart to serving: {:.0} ms; the flocks went with the killed process (their holders' descriptors \
         give ENOTCONN), their registrations stay while the holders live (gone counts all {} registrations)",
        restarted.as_secs_f64() * 1e3,
        regs.len()
    );
    drop(holders);
    drop(other);
    mount.unmount();
}
