//! ZooKeeper processes for the tests: [`ZkServer`], a throw-away standalone server on
//! a free loopback port, and [`Ensemble`], three servers forming a quorum. Both run
//! Debian's `zookeeper` with the classpath, JVM flags and zoo.cfg lines of
//! `scripts/zookeeper/`, the files `scripts/zk-server` reads too.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::procs::{send_signal, tail};
use super::{require, wait_until, Needs};

/// How long a ZooKeeper server may take to answer `ruok` after its start.
const ZK_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an ensemble may take until every running member serves clients.
const QUORUM_TIMEOUT: Duration = Duration::from_secs(30);

// The one configuration of a throw-away server, shared with scripts/zk-server; each
// file says why its lines are so.
const CLASSPATH: &str = include_str!("../../scripts/zookeeper/classpath");
const JVM_FLAGS: &str = include_str!("../../scripts/zookeeper/jvm-flags");
const ZOO_CFG: &str = include_str!("../../scripts/zookeeper/zoo.cfg");

/// The lines of one of those files, without comments and blank lines.
fn lines(file: &'static str) -> impl Iterator<Item = &'static str> {
    file.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The jars of the classpath: [`require`] checks they are installed.
pub(crate) fn jars() -> impl Iterator<Item = &'static Path> {
    lines(CLASSPATH).filter(|e| e.ends_with(".jar")).map(Path::new)
}

/// The zoo.cfg of a test server: where its data is, its port, and the shared lines.
fn common_config(data_dir: &Path, client_port: u16) -> String {
    format!("dataDir={}\nclientPort={client_port}\nclientPortAddress=127.0.0.1\n{ZOO_CFG}", data_dir.display())
}

/// Returns a loopback TCP port that nothing listens on.
///
/// Ports come from below the kernel's ephemeral range, so an outgoing connection
/// (of a ZooKeeper client, say) cannot take a port between its choice here and the
/// server's bind, and each is handed out once per test process. If that range is
/// unusable, falls back to asking the kernel for a free port (bind to port 0).
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.min(32_768));
    if high > low + 1_000 {
        let span = high - low;
        // Spread concurrent test processes over the range: by pid alone, processes
        // started one after another (close pids) walked the same ports and collided.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let seed = std::process::id().wrapping_mul(2_654_435_761).wrapping_add(nanos);
        let _ = NEXT.compare_exchange(0, (seed % u32::from(span)) as u16 + 1, Ordering::SeqCst, Ordering::SeqCst);
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let port = low + n % span;
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return port;
            }
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Sends a four-letter command to 127.0.0.1:`port` and returns the answer, or
/// `None` when nothing answers.
pub fn four_letter(port: u16, cmd: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(cmd.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The `Mode:` line of `srvr` (`standalone`, `leader`, `follower`), or `None`
/// while the server does not serve clients.
fn server_mode(port: u16) -> Option<String> {
    let out = four_letter(port, "srvr")?;
    out.lines().find_map(|l| l.strip_prefix("Mode: ")).map(|m| m.trim().to_string())
}

/// What a server needs beyond the shared configuration (a TLS port, SASL): zoo.cfg
/// lines, JVM flags and classpath entries. See `tests/common/secure.rs`.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// Lines appended to zoo.cfg.
    pub cfg: Vec<String>,
    /// JVM flags (`-Dname=value`) added to the shared ones.
    pub jvm: Vec<String>,
    /// Classpath entries added to the shared ones.
    pub classpath: Vec<String>,
}

/// One ZooKeeper JVM: its config file, log file, client port and process.
struct ZkProcess {
    cfg: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
    jvm: Vec<String>,
    classpath: Vec<String>,
}

impl ZkProcess {
    fn new(cfg: PathBuf, log: PathBuf, port: u16) -> ZkProcess {
        ZkProcess { cfg, log, port, child: None, jvm: Vec::new(), classpath: Vec::new() }
    }

    /// Starts the JVM (appending to the log) without waiting for it.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "ZooKeeper already running");
        require(Needs::ZooKeeper);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        let log2 = log.try_clone().expect("clone log file");
        let classpath: Vec<String> = lines(CLASSPATH).map(String::from).chain(self.classpath.iter().cloned()).collect();
        let child = Command::new("java")
            .args(lines(JVM_FLAGS))
            .args(&self.jvm)
            .arg("-cp")
            .arg(classpath.join(":"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&self.cfg)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run java for ZooKeeper (scripts/install-deps): {e}"));
        self.child = Some(child);
    }

    /// Panics with the log tail if the process has exited.
    fn check_alive(&mut self, doing: &str) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "ZooKeeper on port {} exited ({status}) while {doing}; end of {}:\n{}",
                    self.port,
                    self.log.display(),
                    tail(&self.log, 40)
                );
            }
        }
    }

    /// Waits until the server answers `ruok` with `imok`.
    fn wait_ruok(&mut self) {
        let deadline = Instant::now() + ZK_START_TIMEOUT;
        loop {
            if four_letter(self.port, "ruok").as_deref() == Some("imok") {
                return;
            }
            self.check_alive("starting");
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "ZooKeeper did not answer on 127.0.0.1:{} within {ZK_START_TIMEOUT:?}; end of {}:\n{}",
                    self.port,
                    self.log.display(),
                    tail(&self.log, 40)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the server answers `ruok` and then serves clients.
    ///
    /// `ruok` answers `imok` as soon as the client port is open, before the server
    /// has loaded its data; sessions opened then fail ("ZooKeeperServer not
    /// running"), so a standalone server is ready only once `srvr` shows its mode.
    fn wait_ready(&mut self) {
        self.wait_ruok();
        self.wait_serving(ZK_START_TIMEOUT);
    }

    /// Waits until the server serves clients (it is in a quorum, or standalone).
    fn wait_serving(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while server_mode(self.port).is_none() {
            self.check_alive("waiting for it to serve");
            if Instant::now() >= deadline {
                panic!(
                    "ZooKeeper on 127.0.0.1:{} did not serve within {timeout:?}; end of {}:\n{}",
                    self.port,
                    self.log.display(),
                    tail(&self.log, 40)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the JVM (SIGKILL) and reaps it. Idempotent.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, sig: Signal) {
        let pid = self.pid().expect("ZooKeeper is not running");
        send_signal(pid, sig);
    }
}

impl Drop for ZkProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A standalone ZooKeeper server on 127.0.0.1 with its data in a temporary
/// directory. Dropping it kills the server and removes the directory.
pub struct ZkServer {
    // Field order: the process is killed before its directory is removed.
    proc: ZkProcess,
    dir: TempDir,
}

impl ZkServer {
    /// Starts a server on a free loopback port and waits until it answers `ruok`
    /// and serves clients.
    pub fn start() -> ZkServer {
        ZkServer::start_with(|_| Extra::default())
    }

    /// [`ZkServer::start`] with what `extra` returns added to its configuration; it is
    /// given the server's directory (for files the configuration names).
    pub fn start_with(extra: impl FnOnce(&Path) -> Extra) -> ZkServer {
        let port = free_port();
        let dir = tempfile::Builder::new().prefix("zkfs-test-zk-").tempdir().expect("create temp dir for ZooKeeper");
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("create ZooKeeper data dir");
        let extra = extra(dir.path());
        let cfg = dir.path().join("zoo.cfg");
        let text: String = extra.cfg.iter().map(|l| format!("{l}\n")).collect();
        fs::write(&cfg, common_config(&data, port) + &text).expect("write zoo.cfg");
        let mut proc = ZkProcess::new(cfg, dir.path().join("zk.log"), port);
        proc.jvm = extra.jvm;
        proc.classpath = extra.classpath;
        proc.spawn();
        proc.wait_ready();
        ZkServer { proc, dir }
    }

    /// `127.0.0.1:PORT`, for zkfs and [`Zk::connect`].
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.proc.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.proc.port
    }

    /// The server's directory (zoo.cfg, data/, zk.log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        fs::read(&self.proc.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The JVM's process id, `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Whether the server process is running (it may be paused).
    pub fn is_running(&self) -> bool {
        self.proc.child.is_some()
    }

    /// Kills the server (SIGKILL, as a crash) and waits for it. Idempotent.
    /// Its data stays for [`ZkServer::restart`].
    pub fn stop(&mut self) {
        self.proc.kill();
    }

    /// Starts a stopped server again on the same port and data (stops it first if
    /// it runs); waits until it serves clients again. Sessions whose timeout has not
    /// passed meanwhile are still valid.
    pub fn restart(&mut self) {
        self.stop();
        self.proc.spawn();
        self.proc.wait_ready();
    }

    /// Freezes the JVM (SIGSTOP): connections stay open but nothing is answered.
    pub fn pause(&self) {
        self.proc.signal(Signal::SIGSTOP);
    }

    /// Lets a paused JVM run again (SIGCONT).
    pub fn resume(&self) {
        self.proc.signal(Signal::SIGCONT);
    }
}

/// Three ZooKeeper servers on loopback forming one ensemble.
/// Dropping it kills every member and removes their directories.
pub struct Ensemble {
    members: Vec<ZkProcess>,
    dir: TempDir,
}

impl Ensemble {
    /// Number of members.
    pub const SIZE: usize = 3;

    /// Starts three servers and waits until all of them serve clients (a leader
    /// has been elected and both followers have joined).
    pub fn new() -> Ensemble {
        Ensemble::with_extra(Extra::default())
    }

    /// [`Ensemble::new`] with `extra` added to every member's configuration.
    pub fn with_extra(extra: Extra) -> Ensemble {
        let dir =
            tempfile::Builder::new().prefix("zkfs-test-ensemble-").tempdir().expect("create temp dir for the ensemble");
        let ports: Vec<[u16; 3]> = (0..Self::SIZE).map(|_| [free_port(), free_port(), free_port()]).collect();
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, [_, quorum, election])| format!("server.{}=127.0.0.1:{quorum}:{election}\n", i + 1))
            .collect();
        let mut members = Vec::new();
        for (i, [client, _, _]) in ports.iter().enumerate() {
            let mdir = dir.path().join(format!("zk{}", i + 1));
            let data = mdir.join("data");
            fs::create_dir_all(&data).expect("create member data dir");
            fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("write myid");
            let cfg = mdir.join("zoo.cfg");
            let lines: String = extra.cfg.iter().map(|l| format!("{l}\n")).collect();
            let text = format!("{}initLimit=10\nsyncLimit=5\n{servers}{lines}", common_config(&data, *client));
            fs::write(&cfg, text).expect("write zoo.cfg");
            let mut member = ZkProcess::new(cfg, mdir.join("zk.log"), *client);
            member.jvm = extra.jvm.clone();
            member.classpath = extra.classpath.clone();
            members.push(member);
        }
        let mut ensemble = Ensemble { members, dir };
        for m in &mut ensemble.members {
            m.spawn();
        }
        for m in &mut ensemble.members {
            m.wait_serving(QUORUM_TIMEOUT);
        }
        ensemble
    }

    /// `127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn connect_string(&self) -> String {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.port)).collect::<Vec<_>>().join(",")
    }

    /// Client port of member `i` (0-based).
    pub fn port(&self, i: usize) -> u16 {
        self.members[i].port
    }

    /// Whether member `i`'s process is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Output of member `i` so far.
    pub fn log(&self, i: usize) -> String {
        fs::read(&self.members[i].log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Kills member `i` (SIGKILL) and waits for it. Idempotent.
    pub fn stop(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts a stopped member `i` again and waits until it answers `ruok`. It
    /// serves clients only once it has joined a quorum: see
    /// [`Ensemble::wait_serving`].
    pub fn start(&mut self, i: usize) {
        let m = &mut self.members[i];
        if m.child.is_none() {
            m.spawn();
        }
        m.wait_ruok();
    }

    /// Waits until member `i` serves clients (≤30 s).
    pub fn wait_serving(&mut self, i: usize) {
        self.members[i].wait_serving(QUORUM_TIMEOUT);
    }

    /// Freezes member `i` (SIGSTOP).
    pub fn pause(&self, i: usize) {
        self.members[i].signal(Signal::SIGSTOP);
    }

    /// Lets a paused member `i` run again (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.members[i].signal(Signal::SIGCONT);
    }

    /// `Mode:` of member `i` per `srvr` (`leader`, `follower`), `None` while it
    /// does not serve or is stopped.
    pub fn mode(&self, i: usize) -> Option<String> {
        if !self.is_running(i) {
            return None;
        }
        server_mode(self.members[i].port)
    }

    /// The index of the member that is leader now, if any.
    pub fn leader_index(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| self.mode(i).as_deref() == Some("leader"))
    }

    /// Waits (≤30 s) until some member is leader; returns its index.
    pub fn wait_for_leader(&self) -> usize {
        let mut leader = None;
        wait_until(QUORUM_TIMEOUT, "the ensemble has a leader", || {
            leader = self.leader_index();
            leader.is_some()
        });
        leader.unwrap()
    }
}
