//! examples/health, end to end against real servers on loopback: `zkfs-health` keeps a
//! server registered only while its check (HTTP, TCP, any command) passes, with
//! rise/fall counts and a pause between flips, and a dead checker deregisters; the
//! systemd units' commands register a service for exactly as long as it runs.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::procs::signal_group;
use common::{free_port, wait_until, Mount};
use nix::sys::signal::Signal;
use serde_json::json;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/health/zkfs-health");
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/health/fooservice.service");
const HEALTH_UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/health/fooservice-health.service");
const REG: &str = "/fooservice/providers/10.0.0.5:8080";
/// Far below the 10 s session timeout: a removal within it is the lock's doing.
const AT_ONCE: Duration = Duration::from_secs(3);
/// Generous for a registration that needs a few checks first.
const CHECKS: Duration = Duration::from_secs(15);

/// A process group (a checker, or a service with its flock), SIGKILLed when dropped.
struct Group(Child);

impl Group {
    fn spawn(program: &str, args: &[String]) -> Group {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        Group(child)
    }

    /// Signals the whole group, as systemd's stop does.
    fn signal(&self, sig: Signal) {
        signal_group(self.0.id(), sig);
    }

    /// SIGKILL of the leader alone: the checker dies, its children stay.
    fn kill9_leader(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// `python3 -m http.server` on a free loopback port, serving `dir`.
struct Http {
    port: u16,
    _server: Group,
}

impl Http {
    fn start(dir: &Path) -> Http {
        let port = free_port();
        let server = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null()) // one access log line per check
            .process_group(0)
            .spawn()
            .expect("spawn python3 -m http.server");
        let server = Group(server);
        wait_until(Duration::from_secs(10), "the HTTP server listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Http { port, _server: server }
    }
}

fn checker(mount: &Mount, options: &[&str], check: &[&str]) -> Group {
    let mut args: Vec<String> = options.iter().map(|s| s.to_string()).collect();
    args.push(mount.join(REG).display().to_string());
    args.extend(check.iter().map(|s| s.to_string()));
    Group::spawn(SCRIPT, &args)
}

const FAST: &[&str] = &["--rise", "2", "--fall", "2", "--interval", "0.1", "--timeout", "1", "--hold", "0"];

#[test]
fn an_http_checked_server_is_registered_while_healthy_and_a_dead_checker_deregisters() {
    let (_server, zk, mount) = common::fooservice();
    let docroot = tempfile::tempdir().unwrap();
    let health = docroot.path().join("health");
    std::fs::write(&health, "ok").unwrap();
    let http = Http::start(docroot.path());
    let url = format!("http://127.0.0.1:{}/health", http.port);
    let mut options = FAST.to_vec();
    options.extend(["--properties", r#"{"weight": 3}"#]);
    let mut checker = checker(&mount, &options, &["--http", &url]);

    wait_until(CHECKS, "registered once the check passes", || zk.exists(REG));
    wait_until(AT_ONCE, "registered with its properties", || zk.get_json(REG).get("weight") == Some(&json!(3)));
    std::fs::remove_file(&health).unwrap(); // now 404
    wait_until(CHECKS, "deregistered once the check fails", || !zk.exists(REG));
    std::fs::write(&health, "ok").unwrap();
    wait_until(CHECKS, "registered again once the check passes again", || zk.exists(REG));

    checker.kill9_leader();
    wait_until(AT_ONCE, "the checker's death (SIGKILL) deregisters at once", || !zk.exists(REG));
}

#[test]
fn a_tcp_checked_server_follows_its_listener() {
    let (_server, zk, mount) = common::fooservice();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut checker = checker(&mount, FAST, &["--tcp", &target]);
    wait_until(CHECKS, "registered while the port accepts", || zk.exists(REG));
    drop(listener);
    wait_until(CHECKS, "deregistered once the port refuses", || !zk.exists(REG));
    assert!(checker.exited().is_none(), "the checker keeps checking");
}

#[test]
fn rise_fall_and_hold_keep_a_flapping_server_from_churning_the_registry() {
    let (_server, zk, mount) = common::fooservice();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("up");
    let flag_s = flag.display().to_string();
    std::fs::write(&flag, "").unwrap();
    let options = ["--rise", "1", "--fall", "1", "--interval", "0.05", "--hold", "2"];
    let _checker = checker(&mount, &options, &["--", "test", "-e", &flag_s]);
    wait_until(CHECKS, "registered by a passing command", || zk.exists(REG));
    // Failing at once: the hold keeps the fresh registration for 2 s at least.
    std::fs::remove_file(&flag).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(zk.exists(REG), "deregistered within the hold after registering");
    wait_until(CHECKS, "deregistered once the hold is over", || !zk.exists(REG));

    // Rise counts: with --rise 3 and a check that passes only every other time, the
    // server is never registered.
    let counter = dir.path().join("n");
    let flapping =
        format!("n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) >{c}; [ $((n % 2)) = 0 ]", c = counter.display());
    let other = "/fooservice/providers/10.0.0.6:8080";
    let args: Vec<String> = ["--rise", "3", "--fall", "1", "--interval", "0.05", "--hold", "0"]
        .iter()
        .map(|s| s.to_string())
        .chain([mount.join(other).display().to_string(), "--".into(), "sh".into(), "-c".into(), flapping])
        .collect();
    let _flapper = Group::spawn(SCRIPT, &args);
    wait_until(CHECKS, "the flapping check ran a dozen times", || {
        std::fs::read_to_string(&counter).ok().and_then(|n| n.trim().parse::<u32>().ok()).is_some_and(|n| n > 12)
    });
    assert!(!zk.exists(other), "a check that never passes 3 times in a row registered the server");
}

#[test]
fn a_checker_refuses_to_take_another_sessions_registration() {
    let (_server, zk, mount) = common::fooservice();
    zk.create_ephemeral(REG, br#"{"pid": 1}"#);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut args: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
    args.extend([mount.join(REG).display().to_string(), "--".into(), "true".into()]);
    let checker =
        Command::new(SCRIPT).args(&args).stderr(std::fs::File::create(&log).unwrap()).process_group(0).spawn().unwrap();
    let _checker = Group(checker);
    wait_until(CHECKS, "the checker says why it cannot register", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("held by another ZooKeeper session")
    });
    assert_eq!(zk.get_json(REG), json!({"pid": 1}), "another session's registration is left alone");
}

/// The unit's ExecStart, split into words, with the mount and the service replaced.
fn exec_start(unit: &str, mount: &Mount, replace: &[(&str, String)]) -> Vec<String> {
    let text = std::fs::read_to_string(unit).unwrap();
    let mut line = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart").to_string();
    line = line.replace("/mnt/zk", mount.path().to_str().unwrap());
    for (from, to) in replace {
        assert!(line.contains(from), "{unit}: ExecStart has no {from}");
        line = line.replace(from, to);
    }
    line.split_whitespace().map(String::from).collect()
}

#[test]
fn the_systemd_unit_registers_the_service_for_exactly_as_long_as_it_runs() {
    let (server, zk, mount) = common::fooservice();
    let other_host = Mount::new(&server.connect_string());
    let port = free_port();
    let service = format!("python3 -m http.server {port} --bind 127.0.0.1 --directory /nonexistent");
    let argv = exec_start(UNIT, &mount, &[("/usr/local/bin/fooservice --port 8080", service.clone())]);
    let started = Group::spawn(&argv[0], &argv[1..]);
    wait_until(CHECKS, "the service answers", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(zk.exists(REG), "registered while it runs");

    // The same unit on another host fails at once (flock -n): the address is held.
    let argv_b = exec_start(UNIT, &other_host, &[("/usr/local/bin/fooservice --port 8080", service)]);
    let mut standby = Group::spawn(&argv_b[0], &argv_b[1..]);
    wait_until(AT_ONCE, "the standby gives up", || standby.exited().is_some());
    assert!(!standby.exited().unwrap().success());

    started.signal(Signal::SIGTERM); // systemctl stop
    wait_until(AT_ONCE, "deregistered when the service stops", || !zk.exists(REG));
    // Now the standby's unit (restarted by systemd) takes the address over.
    let argv_b = exec_start(UNIT, &other_host, &[("/usr/local/bin/fooservice --port 8080", "sleep 600".into())]);
    let _taken = Group::spawn(&argv_b[0], &argv_b[1..]);
    wait_until(AT_ONCE, "the other host registers the address", || zk.exists(REG));
}

#[test]
fn the_health_unit_registers_while_healthy_and_stops_with_its_service() {
    let (_server, zk, mount) = common::fooservice();
    let docroot = tempfile::tempdir().unwrap();
    std::fs::write(docroot.path().join("health"), "ok").unwrap();
    let http = Http::start(docroot.path());
    let script: PathBuf = SCRIPT.into();
    let argv = exec_start(
        HEALTH_UNIT,
        &mount,
        &[
            ("/usr/local/bin/zkfs-health", script.display().to_string()),
            ("http://10.0.0.5:8080/health", format!("http://127.0.0.1:{}/health", http.port)),
        ],
    );
    let checker = Group::spawn(&argv[0], &argv[1..]);
    wait_until(CHECKS, "registered after two passing checks", || zk.exists(REG));
    checker.signal(Signal::SIGTERM); // BindsTo=: stopped with the service
    wait_until(AT_ONCE, "deregistered when the checker stops", || !zk.exists(REG));
}
