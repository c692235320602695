//! `zkfs template`: real ZooKeeper, a real mount, the real `zkfs template` process.
//! Registrations are made by another ZooKeeper session (another host), so every change
//! reaches the template through the mount's inotify echo, as in production. Reloads are
//! counted by a reload command that appends a line to a file.
//!
//! Each test waits for what a user would see (the output file, the status file) and
//! uses a later change as a sync point to show that something did *not* happen (no
//! reload for a flap), rather than sleeping and asserting on time.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::signal_group;
use common::{Mount, Zk, ZkServer};
use nix::sys::signal::Signal;
use std::os::unix::process::CommandExt;
use tempfile::TempDir;

const TEMPLATE: &str = "backend providers\n\
{% for e in entries('svc/providers') %}    server {{ e.name }} {{ e.address }}:{{ e.port }} weight {{ e.data.weight|default(1) }}\n\
{% endfor %}";
/// How long a change may take to reach the output.
const FOLLOW: Duration = Duration::from_secs(20);

/// A running `zkfs template` over one template, its files in a temporary directory.
struct Templater {
    child: Option<Child>,
    dir: TempDir,
}

impl Templater {
    /// Runs `zkfs template --root ROOT -t T:OUT:RELOAD --status S ARGS...`.
    fn start(root: &Path, template: &str, args: &[&str]) -> Templater {
        let mut t = Templater::prepare(template);
        let log = fs::File::create(t.path("log")).unwrap();
        let child = t
            .command(root, args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("run zkfs template");
        t.child = Some(child);
        t
    }

    fn prepare(template: &str) -> Templater {
        let dir = tempfile::Builder::new().prefix("zkfs-test-template-").tempdir().unwrap();
        fs::write(dir.path().join("lb.tmpl"), template).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        Templater { child: None, dir }
    }

    fn command(&self, root: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkfs"));
        let spec = format!(
            "{}:{}:echo reloaded >> {}",
            self.path("lb.tmpl").display(),
            self.output_path().display(),
            self.path("reloads").display()
        );
        cmd.arg("template").arg("--root").arg(root).arg("-t").arg(spec).arg("--status").arg(self.path("status"));
        cmd.args(args);
        cmd
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn output_path(&self) -> PathBuf {
        self.path("out/lb.cfg")
    }

    fn output(&self) -> String {
        fs::read_to_string(self.output_path()).unwrap_or_default()
    }

    /// The `server` lines' names, in order.
    fn servers(&self) -> Vec<String> {
        self.output()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server "))
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }

    fn reloads(&self) -> usize {
        fs::read_to_string(self.path("reloads")).unwrap_or_default().lines().count()
    }

    fn status(&self) -> String {
        fs::read_to_string(self.path("status")).unwrap_or_default()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("log")).unwrap_or_default()
    }

    fn report(&self) -> String {
        format!("--- log:\n{}--- status:\n{}--- output:\n{}", self.log(), self.status(), self.output())
    }

    /// Waits until `f` holds; panics with the log if it does not within FOLLOW, or if
    /// the process exits.
    fn wait(&mut self, what: &str, mut f: impl FnMut(&Templater) -> bool) {
        let deadline = Instant::now() + FOLLOW;
        while !f(self) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("zkfs template exited ({status}) waiting until {what}\n{}", self.report());
            }
            assert!(Instant::now() < deadline, "timed out waiting until {what}\n{}", self.report());
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_servers(&mut self, want: &[String]) {
        let what = format!("the output's servers are {want:?}");
        self.wait(&what, |t| t.servers() == want);
    }
}

impl Drop for Templater {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_group(child.id(), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            signal_group(child.id(), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// ZooKeeper with /svc/providers, a second session registering (another host), a mount.
fn world() -> (ZkServer, Zk, Mount) {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let mount = Mount::new(&server.connect_string());
    (server, zk, mount)
}

fn addr(i: usize) -> String {
    format!("10.0.{}.{}:80", i / 250, i % 250 + 1)
}

fn names(range: impl IntoIterator<Item = usize>) -> Vec<String> {
    let mut v: Vec<String> = range.into_iter().map(addr).collect();
    v.sort();
    v
}

fn register(zk: &Zk, i: usize) {
    zk.create_ephemeral(&format!("/svc/providers/{}", addr(i)), b"{}");
}

fn unregister(zk: &Zk, i: usize) {
    zk.delete(&format!("/svc/providers/{}", addr(i)));
}

#[test]
fn renders_registrations_their_data_and_ipv6_and_reloads_only_when_the_output_changes() {
    let (_server, zk, mount) = world();
    register(&zk, 1);
    zk.create_ephemeral("/svc/providers/[::1]:8080", br#"{"weight": 3}"#);
    zk.create("/svc/providers/not-a-server", b"");
    let mut t = Templater::start(mount.path(), TEMPLATE, &["--wait", "100ms:1s"]);
    t.wait("the first output is in place", |t| t.reloads() == 1);
    assert_eq!(
        t.output(),
        "backend providers\n    server 10.0.0.2:80 10.0.0.2:80 weight 1\n    server [::1]:8080 ::1:8080 weight 3\n"
    );
    // A change the template does not show: rendered again, same output, no reload.
    zk.set("/svc/providers", br#"{"comment": "not in the template"}"#);
    // Sync point: a change it shows.
    register(&zk, 2);
    t.wait_servers(&[addr(1), addr(2), "[::1]:8080".into()]);
    t.wait("the reload after the second change", |t| t.reloads() >= 2);
    assert_eq!(t.reloads(), 2, "{}", t.report());
    assert!(t.status().contains("\tok"), "{}", t.status());
}

#[test]
fn a_burst_of_100_registrations_gives_one_reload() {
    let (_server, zk, mount) = world();
    register(&zk, 0);
    let mut t = Templater::start(mount.path(), TEMPLATE, &["--wait", "2s:30s"]);
    t.wait("the first output is in place", |t| t.reloads() == 1);
    for i in 1..=100 {
        register(&zk, i);
    }
    t.wait_servers(&names(0..=100));
    // Sync point: one more change, after the burst's render.
    register(&zk, 101);
    t.wait_servers(&names(0..=101));
    t.wait("the last reload", |t| t.reloads() >= 3);
    assert_eq!(t.reloads(), 3, "the burst was not one reload\n{}", t.report());
}

#[test]
fn a_flapping_provider_causes_no_reload() {
    let (_server, zk, mount) = world();
    register(&zk, 1);
    register(&zk, 2);
    let mut t = Templater::start(mount.path(), TEMPLATE, &["--wait", "2s:30s"]);
    t.wait("the first output is in place", |t| t.reloads() == 1);
    // Provider 2 goes and comes back twenty times, faster than the quiet time.
    for _ in 0..20 {
        unregister(&zk, 2);
        thread::sleep(Duration::from_millis(20));
        register(&zk, 2);
        thread::sleep(Duration::from_millis(20));
    }
    register(&zk, 3);
    t.wait_servers(&names(1..=3));
    t.wait("the reload for provider 3", |t| t.reloads() >= 2);
    assert_eq!(t.reloads(), 2, "the flaps caused reloads\n{}", t.report());
}

#[test]
fn a_shrink_of_80_percent_is_held_then_applied_when_it_lasts() {
    let (_server, zk, mount) = world();
    for i in 0..10 {
        register(&zk, i);
    }
    // A quiet time of 1 s: the eight removals are one change.
    let mut t = Templater::start(mount.path(), TEMPLATE, &["--wait", "1s:10s", "--hold", "5s"]);
    t.wait_servers(&names(0..10));
    for i in 2..10 {
        unregister(&zk, i);
    }
    t.wait("the shrink is held", |t| t.status().contains("HELD"));
    assert_eq!(t.servers(), names(0..10), "the shrink was applied at once\n{}", t.report());
    assert!(t.status().contains("10 -> 2 entries (-80%)"), "{}", t.status());
    assert!(t.log().contains("HELD"), "not in the log\n{}", t.report());
    // It lasts: applied after the hold, loudly, with one reload.
    t.wait_servers(&names(0..2));
    assert!(t.log().contains("applying it"), "{}", t.report());
    assert_eq!(t.reloads(), 2, "{}", t.report());

    // A shrink that recovers within the hold is never applied.
    for i in 2..10 {
        register(&zk, i);
    }
    t.wait_servers(&names(0..10));
    for i in 2..10 {
        unregister(&zk, i);
    }
    t.wait("the second shrink is held", |t| t.status().contains("HELD"));
    for i in 2..10 {
        register(&zk, i);
    }
    t.wait("the hold ends", |t| t.status().contains("\tok"));
    assert_eq!(t.servers(), names(0..10), "{}", t.report());
    assert_eq!(t.reloads(), 3, "the recovered shrink caused a reload\n{}", t.report());
}

#[test]
fn when_the_mount_goes_the_last_output_stays() {
    let (_server, zk, mut mount) = world();
    register(&zk, 1);
    register(&zk, 2);
    let mut t = Templater::start(mount.path(), TEMPLATE, &["--wait", "100ms:1s"]);
    t.wait_servers(&names(1..=2));
    let before = t.output();
    mount.unmount();
    t.wait("the outage is in the status", |t| t.status().contains("OUTAGE"));
    assert!(t.status().contains("is the mount there") || t.status().contains("not a directory of a zkfs mount"));
    assert_eq!(t.output(), before, "an outage changed the output");
    assert_eq!(t.reloads(), 1);
    assert!(t.child.as_mut().unwrap().try_wait().unwrap().is_none(), "zkfs template exited\n{}", t.report());
}

#[test]
fn a_failed_check_keeps_the_old_output_and_says_why() {
    let (_server, zk, mount) = world();
    register(&zk, 1);
    let check = "if grep -q bad.example {}; then echo 'bad.example is forbidden' >&2; exit 1; fi";
    let mut t = Templater::start(mount.path(), TEMPLATE, &["--wait", "100ms:1s", "--check", check]);
    t.wait_servers(&names(1..=1));
    zk.create_ephemeral("/svc/providers/bad.example:80", b"{}");
    t.wait("the check failure is in the status", |t| t.status().contains("CHECK FAILED"));
    assert!(t.status().contains("bad.example is forbidden"), "{}", t.status());
    assert_eq!(t.servers(), names(1..=1));
    assert_eq!(t.reloads(), 1);
    // Fixed: applied at the next change.
    zk.delete("/svc/providers/bad.example:80");
    register(&zk, 2);
    t.wait_servers(&names(1..=2));
    assert_eq!(fs::read_dir(t.path("out")).unwrap().count(), 1, "a candidate was left behind");
}

#[test]
fn a_template_error_names_its_line_and_keeps_the_old_output() {
    let (_server, zk, mount) = world();
    register(&zk, 1);
    let mut t = Templater::start(mount.path(), TEMPLATE, &["--wait", "100ms:1s"]);
    t.wait_servers(&names(1..=1));
    fs::write(t.path("lb.tmpl"), "backend x\n\n{% for e in entries('svc/providers') %}{{ e.nosuch }}{% endfor %}\n")
        .unwrap();
    register(&zk, 2);
    t.wait("the template error is in the status", |t| t.status().contains("TEMPLATE ERROR"));
    assert!(t.status().contains("lb.tmpl:3:"), "no line number: {}", t.status());
    assert_eq!(t.servers(), names(1..=1));

    // --once says the same on stderr and fails.
    let out = t.command(mount.path(), &["--once"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("lb.tmpl:3:"), "{stderr}");
    assert_eq!(t.servers(), names(1..=1));
}

#[test]
fn an_unwritable_output_directory_is_an_error_and_changes_nothing() {
    let (_server, zk, mount) = world();
    register(&zk, 1);
    let t = Templater::prepare(TEMPLATE);
    fs::remove_dir(t.path("out")).unwrap();
    // A file where the output directory should be: even root cannot write there.
    fs::write(t.path("out"), "not a directory").unwrap();
    let out = t.command(mount.path(), &["--once"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("WRITE FAILED") && stderr.contains("cannot write"), "{stderr}");
    assert_eq!(fs::read_to_string(t.path("out")).unwrap(), "not a directory");
    assert_eq!(t.reloads(), 0);
    assert!(t.status().contains("WRITE FAILED"), "{}", t.status());
}

#[test]
fn once_renders_and_exits() {
    let (_server, zk, mount) = world();
    register(&zk, 1);
    let t = Templater::prepare(TEMPLATE);
    let out = t.command(mount.path(), &["--once"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(t.servers(), names(1..=1));
    assert_eq!(t.reloads(), 1);
    // Again: identical output, no reload.
    let out = t.command(mount.path(), &["-once"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(t.reloads(), 1);
}
