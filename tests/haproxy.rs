//! examples/haproxy: a load balancer that follows the registry, run as a user would
//! run it. Real processes throughout: ZooKeeper, two zkfs mounts (the load balancer's
//! host and an application host), `zkfs template` with the example's template,
//! HAProxy and small HTTP servers, all on loopback. HAProxy must be installed
//! (`scripts/install-deps`).

mod common;
mod shell;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::procs::{send_signal, signal_group};
use common::{free_port, Mount, Zk, ZkServer};
use nix::sys::signal::Signal;
use shell::{q, sh_ok};
use tempfile::TempDir;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/haproxy/haproxy.cfg.tmpl");
/// The directory the example's template reads, relative to the mount.
const PROVIDERS: &str = "entries(\"fooservice/providers\")";
/// How long a registration change may take to reach HAProxy's traffic.
const FOLLOW: Duration = Duration::from_secs(15);
/// How long `zkfs template` and HAProxy may take to serve after the start.
const START: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Backends: HTTP servers that answer every request with their name

/// An HTTP server on a loopback port answering every request with its name.
/// Dropping it stops its thread and closes the port.
struct Backend {
    /// `LABEL@ADDRESS`: unique, so that another test's traffic can never pass for it.
    name: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// A backend on 127.0.0.1.
    fn start(label: &str) -> Backend {
        Backend::try_start(label, SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))).expect("bind a loopback port")
    }

    fn try_start(label: &str, addr: SocketAddr) -> io::Result<Backend> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let name = format!("{label}@{addr}");
        // Non-blocking accept, so that the thread sees `stop` without a connection.
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, body) = (stop.clone(), name.clone());
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => answer(conn, &body),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Backend { name, addr, stop, thread: Some(thread) })
    }

    /// The registration name: `127.0.0.1:PORT` or `[::1]:PORT`.
    fn registration(&self) -> String {
        self.addr.to_string()
    }
}

/// Reads one request (up to its blank line) and answers it with `name`. HAProxy's
/// health checks only connect and close: they get nothing.
fn answer(mut conn: TcpStream, name: &str) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}", name.len());
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The load balancer: zkfs template and the HAProxy it reloads

/// `zkfs template` rendering the example's template from a providers directory, with
/// HAProxy listening on a free loopback port.
///
/// Dropping it stops `zkfs template` (its process group, with a running
/// `haproxy -c`), then every HAProxy process it started: the one in the pidfile and
/// any older one still finishing requests after a reload (found by the temporary
/// config path on its command line, which nothing else has).
struct Balancer {
    templater: Option<Child>,
    /// A master-worker HAProxy started by the test (see `start_master_worker`).
    master: Option<Child>,
    port: u16,
    config: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    dir: TempDir,
}

/// What one request through the load balancer got: the status code and the body.
type Reply = (u16, String);

impl Balancer {
    /// The reload command runs HAProxy itself: `haproxy -D -p PIDFILE -sf OLD`.
    fn start(providers: &Path) -> Balancer {
        Balancer::launch(providers, false)
    }

    /// As with a distribution's haproxy.service: HAProxy runs in master-worker mode
    /// (`-W`, started here), and the reload command does what `systemctl reload
    /// haproxy` does, SIGUSR2 to the master.
    fn start_master_worker(providers: &Path) -> Balancer {
        Balancer::launch(providers, true)
    }

    fn launch(providers: &Path, master_worker: bool) -> Balancer {
        require_haproxy();
        let dir = tempfile::Builder::new().prefix("zkfs-test-haproxy-").tempdir().expect("create temp dir");
        let port = free_port();
        let example = fs::read_to_string(TEMPLATE).unwrap_or_else(|e| panic!("read {TEMPLATE}: {e}"));
        assert!(example.contains("bind *:8080"), "{TEMPLATE} no longer binds *:8080; update this test");
        assert!(example.contains(PROVIDERS), "{TEMPLATE} no longer reads {PROVIDERS}; update this test");
        let root = providers.parent().expect("providers has a parent");
        let name = providers.file_name().expect("providers has a name").to_string_lossy();
        let template = dir.path().join("haproxy.cfg.tmpl");
        let example = example
            .replace("bind *:8080", &format!("bind 127.0.0.1:{port}"))
            .replace(PROVIDERS, &format!("entries({name:?})"));
        fs::write(&template, example).unwrap();
        let config = dir.path().join("haproxy.cfg");
        let pidfile = dir.path().join("haproxy.pid");
        let log = dir.path().join("zkfs-template.log");
        let out = append(&log);
        let reload = if master_worker {
            format!("[ ! -s {0} ] || kill -USR2 \"$(cat {0})\"", q(&pidfile))
        } else {
            format!("haproxy -D -f {0} -p {1} -sf $(cat {1} 2>/dev/null)", q(&config), q(&pidfile))
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkfs"));
        cmd.arg("template")
            .arg("--root")
            .arg(root)
            .arg("--wait")
            .arg("100ms:1s")
            .arg("-t")
            .arg(format!("{}:{}", template.display(), config.display()))
            .arg("--check")
            .arg("haproxy -c -f {}")
            .arg("--reload")
            .arg(reload);
        let templater = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its own process group, so that Drop stops a running check along with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("run zkfs template: {e}"));
        let mut lb = Balancer { templater: Some(templater), master: None, port, config, pidfile, log, dir };
        if master_worker {
            if !lb.poll(START, |lb| lb.config.exists()) {
                panic!("zkfs template wrote no config within {START:?}\n{}", lb.report());
            }
            let master = Command::new("haproxy")
                .arg("-W")
                .arg("-f")
                .arg(&lb.config)
                .arg("-p")
                .arg(&lb.pidfile)
                .stdin(Stdio::null())
                .stdout(append(&lb.log))
                .stderr(append(&lb.log))
                .spawn()
                .expect("run haproxy -W");
            lb.master = Some(master);
        }
        if !lb.poll(START, |_| lb_get(port).is_ok()) {
            panic!("HAProxy did not answer on 127.0.0.1:{port} within {START:?}\n{}", lb.report());
        }
        lb
    }

    /// Polls `f` every 20 ms until it is true (→ true) or `timeout` passes (→ false);
    /// panics with `zkfs template`'s output if it exits meanwhile.
    fn poll(&mut self, timeout: Duration, mut f: impl FnMut(&Balancer) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            if let Some(Ok(Some(status))) = self.templater.as_mut().map(Child::try_wait) {
                panic!("zkfs template exited ({status})\n{}", self.report());
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn report(&self) -> String {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"));
        format!(
            "--- zkfs template's output:\n{}--- {}:\n{}",
            read(&self.log),
            self.config.display(),
            read(&self.config)
        )
    }

    /// Waits until requests reach exactly the backends `names`: a round of requests
    /// (four per backend, so round-robin visits each) all succeed and together hit
    /// that set. With no names, until HAProxy answers 503 (no server).
    fn wait_reaching(&mut self, names: &[&str]) {
        let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        let port = self.port;
        let mut seen = Vec::new();
        let reached = self.poll(FOLLOW, |_| {
            seen = (0..4 * names.len().max(1)).map(|_| lb_get(port)).collect();
            let got: Result<BTreeSet<String>, _> = seen
                .iter()
                .map(|r| match r {
                    Ok((200, body)) => Ok(body.clone()),
                    Ok((503, _)) if names.is_empty() => Ok(String::new()),
                    other => Err(format!("{other:?}")),
                })
                .collect();
            match got {
                Ok(got) if names.is_empty() => got == BTreeSet::from([String::new()]),
                Ok(got) => got == want,
                Err(_) => false,
            }
        });
        if !reached {
            let seen: Vec<String> = seen
                .iter()
                .map(|r| match r {
                    Ok((200, body)) => body.clone(),
                    Ok((status, _)) => status.to_string(),
                    Err(e) => e.clone(),
                })
                .collect();
            panic!(
                "requests did not reach exactly {want:?} within {FOLLOW:?}; last round: {seen:?}\n{}",
                self.report()
            );
        }
        // And it stays so: the old HAProxy process no longer takes connections.
        for _ in 0..10 {
            match lb_get(port) {
                Ok((200, body)) => assert!(want.contains(&body), "request reached {body}, not one of {want:?}"),
                Ok((503, _)) => assert!(names.is_empty(), "503 while {want:?} are registered"),
                other => panic!("request through HAProxy failed: {other:?}\n{}", self.report()),
            }
        }
    }

    /// The `server` lines of the config `zkfs template` wrote, sorted.
    fn server_lines(&self) -> Vec<String> {
        let config = fs::read_to_string(&self.config).unwrap_or_default();
        let mut lines: Vec<String> =
            config.lines().map(str::trim).filter(|l| l.starts_with("server ")).map(String::from).collect();
        lines.sort();
        lines
    }

    /// Every live HAProxy process running our config: its command line names it.
    fn haproxy_pids(&self) -> Vec<i32> {
        let needle = self.config.as_os_str().as_encoded_bytes();
        let mut pids: Vec<i32> = fs::read_to_string(&self.pidfile)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&pid| is_our_haproxy(pid, needle))
            .collect();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                if !pids.contains(&pid) && is_our_haproxy(pid, needle) {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

/// Whether `pid` is a live (not zombie) `haproxy` whose command line contains `needle`.
fn is_our_haproxy(pid: i32, needle: &[u8]) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    // /proc/PID/stat: "pid (comm) STATE ..."
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
    comm.trim() == "haproxy" && !zombie && cmdline.windows(needle.len()).any(|w| w == needle)
}

/// `path` opened for appending (several processes log to one file).
fn append(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(mut templater) = self.templater.take() {
            let group = templater.id();
            signal_group(group, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(templater.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            // Whatever is left of the group (haproxy -c), and zkfs template.
            signal_group(group, Signal::SIGKILL);
            let _ = templater.wait();
        }
        // SIGTERM stops HAProxy at once (SIGUSR1 would wait for open connections); a
        // master stops its workers.
        if let Some(mut master) = self.master.take() {
            send_signal(master.id(), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(master.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            let _ = master.kill();
            let _ = master.wait();
        }
        for sig in [Signal::SIGTERM, Signal::SIGKILL] {
            let pids = self.haproxy_pids();
            if pids.is_empty() {
                break;
            }
            for &pid in &pids {
                send_signal(pid, sig);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.haproxy_pids().is_empty() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
        }
        let left = self.haproxy_pids();
        if !left.is_empty() {
            eprintln!("HAProxy processes {left:?} of {} did not exit", self.dir.path().display());
        }
    }
}

/// Fails (not skips) the test when HAProxy is missing: CI installs it.
fn require_haproxy() {
    match Command::new("haproxy").arg("-v").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`haproxy -v` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("haproxy is not installed ({e}): run scripts/install-deps, which installs it"),
    }
}

/// One `GET /` through the load balancer on 127.0.0.1:`port`.
fn lb_get(port: u16) -> Result<Reply, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).map_err(|e| format!("receive: {e}"))?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP reply: {reply:?}"))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad reply {head:?}"))?;
    Ok((status, body.to_string()))
}

// ---------------------------------------------------------------------------

fn touch(path: &Path) {
    sh_ok(&format!("touch {}", q(path)));
}

fn rm(path: &Path) {
    sh_ok(&format!("rm {}", q(path)));
}

#[test]
fn haproxy_follows_registrations_made_on_any_host() {
    // Locals drop in reverse order: the load balancer first, ZooKeeper last.
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let lb_host = Mount::new(&server.connect_string());
    let mut app_host = Mount::new(&server.connect_string());
    let (a, b, c) = (Backend::start("server-A"), Backend::start("server-B"), Backend::start("server-C"));
    let providers = lb_host.join("svc/providers");

    // No provider yet: HAProxy starts all the same and answers 503.
    let mut lb = Balancer::start(&providers);
    lb.wait_reaching(&[]);

    // A registers on the balancer's host, B on the application host: zkfs echoes
    // B's registration as an inotify event on the balancer's mount.
    touch(&lb_host.join("svc/providers").join(a.registration()));
    touch(&app_host.join("svc/providers").join(b.registration()));
    lb.wait_reaching(&[&a.name, &b.name]);
    assert_eq!(lb.server_lines().len(), 2, "{:?}", lb.server_lines());

    // B unregisters on its host: traffic stops reaching it (B still runs).
    rm(&app_host.join("svc/providers").join(b.registration()));
    lb.wait_reaching(&[&a.name]);

    // C registers on the application host: traffic reaches it.
    touch(&app_host.join("svc/providers").join(c.registration()));
    lb.wait_reaching(&[&a.name, &c.name]);

    // The application host goes away (its mount ends): its registration goes with it.
    app_host.unmount();
    assert!(!zk.exists(&format!("/svc/providers/{}", c.registration())));
    lb.wait_reaching(&[&a.name]);

    // The last provider goes: 503 again, HAProxy still up.
    rm(&providers.join(a.registration()));
    lb.wait_reaching(&[]);
    assert_eq!(lb.server_lines(), Vec::<String>::new());
}

#[test]
fn only_host_port_entries_become_servers_and_ipv6_works() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers/not-a-server:1");
    zk.set("/svc/providers", br#"{"comment": "properties.json is no server"}"#);
    let mut mount = Mount::new(&server.connect_string());
    let providers = mount.join("svc/providers");
    let v4 = Backend::start("server-v4");
    // ::1 may be missing where IPv6 is disabled; then the IPv6 entry is only checked
    // in the config, against a port nothing listens on.
    let v6 = Backend::try_start("server-v6", SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).ok();
    let v6_registration = v6.as_ref().map_or_else(|| format!("[::1]:{}", free_port()), Backend::registration);

    touch(&providers.join(v4.registration()));
    sh_ok(&format!(r#"echo '{{"weight": 3}}' > {}"#, q(&providers.join(&v6_registration))));
    let mut lb = Balancer::start(&providers);
    let v6_server = v6_registration.replace(['[', ']'], "");
    let mut want =
        vec![format!("server {0} {0}", v4.registration()), format!("server {v6_server} {v6_server} weight 3")];
    want.sort();
    if !lb.poll(START, |lb| lb.server_lines() == want) {
        panic!("the config's servers are not {want:?}\n{}", lb.report());
    }
    let serving: Vec<&str> = match &v6 {
        Some(v6) => vec![&v4.name, &v6.name],
        None => {
            eprintln!("no IPv6 loopback here: checked the config only");
            vec![&v4.name]
        }
    };
    lb.wait_reaching(&serving);

    // The balancer's own mount goes away: `zkfs template` keeps the last output (it
    // says so) and HAProxy keeps serving the last servers it had, not none.
    mount.unmount();
    if !lb.poll(START, |lb| lb.report().contains("OUTAGE (old output kept)")) {
        panic!("no outage reported\n{}", lb.report());
    }
    lb.wait_reaching(&serving);
    assert_eq!(lb.server_lines(), want);
}

#[test]
fn a_reload_command_drives_an_haproxy_run_by_something_else() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let mount = Mount::new(&server.connect_string());
    let providers = mount.join("svc/providers");
    let (a, b) = (Backend::start("server-A"), Backend::start("server-B"));
    touch(&providers.join(a.registration()));

    let mut lb = Balancer::start_master_worker(&providers);
    lb.wait_reaching(&[&a.name]);
    touch(&providers.join(b.registration()));
    lb.wait_reaching(&[&a.name, &b.name]);
    rm(&providers.join(a.registration()));
    lb.wait_reaching(&[&b.name]);
}
