//! Shared fixtures for zkfs's integration tests.
//!
//! Every `tests/*.rs` file does `mod common;` and uses what it needs:
//!
//! * [`ZkServer`] — a throw-away standalone ZooKeeper on a free loopback port;
//! * [`Ensemble`] — three ZooKeeper servers forming a quorum on loopback;
//! * [`Mount`] — a running `zkfs -f` process and its mountpoint;
//! * [`Zk`] — a synchronous ZooKeeper client, independent of the mount, to arrange
//!   and check what ZooKeeper holds;
//! * [`wait_until`] and [`is_mounted`].
//!
//! Every process a fixture starts is stopped by its `Drop`, also when a test panics.
//! ZooKeeper runs from Debian's `zookeeper` package (`scripts/install-deps`).
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use zookeeper_client as zk;

/// How long a ZooKeeper server may take to answer `ruok` after its start.
const ZK_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an ensemble may take until every running member serves clients.
const QUORUM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `zkfs` may take to appear in the mount table.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `zkfs` may take to exit after SIGTERM.
const TERM_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `f` every 5 ms until it returns true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------
// What the integration tests need from the machine

/// What an integration test needs that `cargo test` alone does not provide.
#[derive(Debug, Clone, Copy)]
pub enum Needs {
    /// Java and Debian's ZooKeeper jars (`scripts/install-deps` installs them).
    ZooKeeper,
    /// Root and the kernel's FUSE device: the tests mount filesystems.
    Fuse,
}

/// Panics with what is missing and how to get it, instead of failing obscurely later
/// (a spawn error, a mount that never appears). Every fixture that starts a server or
/// a mount calls it, so every integration test says what it needs.
pub fn require(needs: Needs) {
    let missing: Vec<&str> = match needs {
        Needs::ZooKeeper => {
            let java =
                std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("java").is_file()));
            let mut m = Vec::new();
            if !java {
                m.push("`java` on PATH");
            }
            if !Path::new("/usr/share/java/zookeeper.jar").is_file() {
                m.push("Debian's `zookeeper` package (/usr/share/java/zookeeper.jar)");
            }
            m
        }
        Needs::Fuse => {
            let mut m = Vec::new();
            // SAFETY: geteuid cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                m.push("root (the test mounts FUSE filesystems and uses other users' identities)");
            }
            if !Path::new("/dev/fuse").exists() {
                m.push("/dev/fuse (the fuse kernel module)");
            }
            if !Path::new("/usr/bin/fusermount3").exists() && !Path::new("/bin/fusermount3").exists() {
                m.push("`fusermount3` (the fuse3 package)");
            }
            m
        }
    };
    if !missing.is_empty() {
        panic!(
            "this integration test needs {}; run the whole suite with `scripts/test` as root, \
             which installs what is missing",
            missing.join(" and ")
        );
    }
}

// ---------------------------------------------------------------------------
// The usual world of a registration test

/// A fresh server holding `/fooservice/providers`, a client and a mount of it.
pub fn fooservice() -> (ZkServer, Zk, Mount) {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/fooservice/providers");
    let mount = Mount::new(&server.connect_string());
    (server, zk, mount)
}

// ---------------------------------------------------------------------------
// Ports

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

// ---------------------------------------------------------------------------
// ZooKeeper processes

/// Java classpath for Debian's ZooKeeper. zookeeper.jar names its other jars in its
/// manifest but no slf4j binding, so without the log4j one the server logs nothing;
/// /etc/zookeeper/conf holds the log4j.properties.
const ZK_CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:\
                            /usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar";

/// JVM flags for a small server that starts fast.
const ZK_JVM_FLAGS: &[&str] = &[
    "-Xms32m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xss512k",
    "-Djava.awt.headless=true",
    "-Dzookeeper.root.logger=INFO,CONSOLE",
    "-Dzookeeper.jmx.log4j.disable=true",
    "-Dzookeeper.admin.enableServer=false",
];

/// The zoo.cfg lines every test server shares.
fn common_config(data_dir: &Path, client_port: u16) -> String {
    format!(
        "dataDir={}\n\
         clientPort={client_port}\n\
         clientPortAddress=127.0.0.1\n\
         admin.enableServer=false\n\
         4lw.commands.whitelist=*\n\
         tickTime=500\n\
         minSessionTimeout=1000\n\
         maxSessionTimeout=60000\n\
         # test servers: no fsync per transaction (data survives a killed process)\n\
         forceSync=no\n",
        data_dir.display()
    )
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

/// The last `n` lines of a file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// One ZooKeeper JVM: its config file, log file, client port and process.
struct ZkProcess {
    cfg: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl ZkProcess {
    fn new(cfg: PathBuf, log: PathBuf, port: u16) -> ZkProcess {
        ZkProcess { cfg, log, port, child: None }
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
        let child = Command::new("java")
            .args(ZK_JVM_FLAGS)
            .arg("-cp")
            .arg(ZK_CLASSPATH)
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

    fn signal(&self, sig: libc::c_int) {
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
        let port = free_port();
        let dir = tempfile::Builder::new().prefix("zkfs-test-zk-").tempdir().expect("create temp dir for ZooKeeper");
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("create ZooKeeper data dir");
        let cfg = dir.path().join("zoo.cfg");
        fs::write(&cfg, common_config(&data, port)).expect("write zoo.cfg");
        let mut proc = ZkProcess::new(cfg, dir.path().join("zk.log"), port);
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
        self.proc.signal(libc::SIGSTOP);
    }

    /// Lets a paused JVM run again (SIGCONT).
    pub fn resume(&self) {
        self.proc.signal(libc::SIGCONT);
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
            let text = format!("{}initLimit=10\nsyncLimit=5\n{servers}", common_config(&data, *client));
            fs::write(&cfg, text).expect("write zoo.cfg");
            members.push(ZkProcess::new(cfg, mdir.join("zk.log"), *client));
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
        self.members[i].signal(libc::SIGSTOP);
    }

    /// Lets a paused member `i` run again (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.members[i].signal(libc::SIGCONT);
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

// ---------------------------------------------------------------------------
// Mounts

/// Unescapes the octal escapes (`\040` for a space…) of /proc/self/mountinfo.
fn unescape_mount_path(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// `path` with its parent resolved (symlinks, `..`) but without touching `path`
/// itself, which may be a dead FUSE mount that fails every access.
fn mount_key(path: &Path) -> PathBuf {
    let path =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().expect("current dir").join(path) };
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf()).join(name),
        _ => path,
    }
}

/// The filesystem types mounted at `path` per /proc/self/mountinfo (topmost last).
pub fn mount_types(path: &Path) -> Vec<String> {
    let key = mount_key(path);
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    info.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let mount_point = unescape_mount_path(fields.get(4)?);
            let fstype = fields.get(sep + 1)?;
            (mount_point == key).then(|| fstype.to_string())
        })
        .collect()
}

/// Whether anything is mounted at `path` (per /proc/self/mountinfo; a dead FUSE
/// mount counts as mounted).
pub fn is_mounted(path: &Path) -> bool {
    !mount_types(path).is_empty()
}

/// Whether a FUSE filesystem is mounted at `path`.
pub fn is_fuse_mounted(path: &Path) -> bool {
    mount_types(path).iter().any(|t| t.starts_with("fuse"))
}

/// Detaches whatever is mounted at `path` (`fusermount3 -u -z`, then umount2
/// with MNT_DETACH as a fallback).
pub fn force_unmount(path: &Path) {
    if !is_mounted(path) {
        return;
    }
    let _ = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if is_mounted(path) {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(c) = std::ffi::CString::new(mount_key(path).as_os_str().as_bytes()) {
            // SAFETY: `c` is a valid NUL-terminated path.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// A running `zkfs -f` and its mountpoint (a temporary directory).
///
/// Dropping it unmounts (SIGTERM, and SIGKILL plus a lazy unmount if zkfs does not
/// exit within 10 s), then removes the mountpoint and the log.
pub struct Mount {
    child: Option<Child>,
    pid: u32,
    status: Option<ExitStatus>,
    mountpoint: PathBuf,
    // Never removed while still mounted: `remove_dir_all` would delete through the
    // mount, i.e. in ZooKeeper. See `Drop`.
    mount_dir: Option<TempDir>,
    log_path: PathBuf,
    log_dir: TempDir,
}

impl Mount {
    /// Mounts `connect` with no `-o` options; see [`Mount::with_options`].
    pub fn new(connect: &str) -> Mount {
        Mount::with_options(connect, "")
    }

    /// Runs `zkfs -f [-o OPTS] CONNECT MOUNTPOINT` on a fresh temporary mountpoint
    /// and waits (≤15 s) until the mount shows up in /proc/self/mountinfo.
    /// `opts` is the `-o` argument (`"ro,session_timeout=4"`); empty means none.
    /// zkfs logs with `RUST_LOG=zkfs=debug` unless `RUST_LOG` is set already.
    /// Panics with zkfs's output if it exits before mounting.
    pub fn with_options(connect: &str, opts: &str) -> Mount {
        require(Needs::Fuse);
        let mount_dir = tempfile::Builder::new().prefix("zkfs-test-mnt-").tempdir().expect("create temp mountpoint");
        let mountpoint = mount_key(mount_dir.path());
        let log_dir = tempfile::Builder::new().prefix("zkfs-test-log-").tempdir().expect("create temp log dir");
        let log_path = log_dir.path().join("zkfs.log");
        let log = File::create(&log_path).expect("create zkfs log");
        let log2 = log.try_clone().expect("clone log file");

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkfs"));
        cmd.arg("-f");
        if !opts.is_empty() {
            cmd.arg("-o").arg(opts);
        }
        cmd.arg(connect).arg(&mountpoint).stdin(Stdio::null()).stdout(log).stderr(log2);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "zkfs=debug");
        }
        let child = cmd.spawn().expect("spawn zkfs");
        let pid = child.id();
        let mut mount =
            Mount { child: Some(child), pid, status: None, mountpoint, mount_dir: Some(mount_dir), log_path, log_dir };

        let deadline = Instant::now() + MOUNT_TIMEOUT;
        while !is_fuse_mounted(&mount.mountpoint) {
            if let Some(status) = mount.try_wait() {
                panic!(
                    "zkfs exited ({status}) before mounting {connect} at {}; its output:\n{}",
                    mount.mountpoint.display(),
                    mount.log()
                );
            }
            if Instant::now() >= deadline {
                let log = mount.log();
                mount.kill9();
                panic!(
                    "zkfs did not mount {connect} at {} within {MOUNT_TIMEOUT:?}; its output:\n{log}",
                    mount.mountpoint.display()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
        mount
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// `rel` under the mountpoint (`rel` may start with `/`).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        self.mountpoint.join(rel.strip_prefix("/").unwrap_or(rel))
    }

    /// The zkfs process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// zkfs's output (stdout and stderr) so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The exit status if zkfs has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.status = Some(status);
                    self.child = None;
                }
            }
        }
        self.status
    }

    /// Waits up to `timeout` for zkfs to exit by itself (after `fusermount3 -u`,
    /// say); its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM (and SIGCONT, in case it is stopped) and waits ≤10 s for zkfs
    /// to exit; returns its exit status, `None` if it still runs. Does nothing else:
    /// a test of a clean shutdown checks [`is_mounted`] afterwards.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            send_signal(self.pid, libc::SIGTERM);
            send_signal(self.pid, libc::SIGCONT);
        }
        self.wait_exit(TERM_TIMEOUT)
    }

    /// Stops zkfs and makes sure nothing stays mounted: SIGTERM and ≤10 s for it to
    /// exit, SIGKILL if it did not, then `fusermount3 -u -z` if the mount is still
    /// there. Idempotent. Returns zkfs's exit status.
    pub fn unmount(&mut self) -> Option<ExitStatus> {
        if self.terminate().is_none() {
            eprintln!("zkfs (pid {}) ignored SIGTERM for {TERM_TIMEOUT:?}; killing it", self.pid);
            self.kill_process();
        }
        force_unmount(&self.mountpoint);
        self.status
    }

    /// Kills zkfs with SIGKILL (a crash), then lazily unmounts the dead mount.
    pub fn kill9(&mut self) {
        self.kill_process();
        force_unmount(&self.mountpoint);
    }

    /// SIGKILL and reap, leaving any mount in place.
    fn kill_process(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.status = Some(status);
            }
        }
    }

    /// Freezes zkfs (SIGSTOP): requests to the mount block until
    /// [`Mount::cont_process`].
    pub fn stop_process(&self) {
        if self.child.is_some() {
            send_signal(self.pid, libc::SIGSTOP);
        }
    }

    /// Lets a frozen zkfs run again (SIGCONT).
    pub fn cont_process(&self) {
        if self.child.is_some() {
            send_signal(self.pid, libc::SIGCONT);
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.unmount();
        if is_mounted(&self.mountpoint) {
            // Removing the directory now would delete through the mount: leak it.
            eprintln!("{} is still mounted; leaving it in place", self.mountpoint.display());
            if let Some(dir) = self.mount_dir.take() {
                std::mem::forget(dir);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// ZooKeeper client

/// A synchronous ZooKeeper client for tests, independent of any mount.
///
/// Methods panic with the path and the error unless they return a `Result`.
/// Dropping it closes its session and waits (≤2 s) until the close is done, so
/// its ephemeral nodes are gone at once. It owns its own runtime: use it from
/// plain `#[test]` functions, not from inside an async runtime.
pub struct Zk {
    client: Option<zk::Client>,
    rt: tokio::runtime::Runtime,
}

impl Zk {
    /// Connects with the client's default session timeout (6 s).
    pub fn connect(connect: &str) -> Zk {
        Zk::connect_with(connect, zk::Client::connector())
    }

    /// Connects with the given session timeout.
    pub fn connect_with_timeout(connect: &str, session_timeout: Duration) -> Zk {
        Zk::connect_with(connect, zk::Client::connector().with_session_timeout(session_timeout))
    }

    fn connect_with(connect: &str, connector: zk::Connector) -> Zk {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
        let client = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(20), connector.connect(connect)).await })
            .unwrap_or_else(|_| panic!("connect to ZooKeeper {connect}: timed out after 20 s"))
            .unwrap_or_else(|e| panic!("connect to ZooKeeper {connect}: {e}"));
        Zk { client: Some(client), rt }
    }

    /// The underlying async client, for what this wrapper lacks; drive its
    /// futures with [`Zk::block_on`].
    pub fn client(&self) -> &zk::Client {
        self.client.as_ref().expect("client")
    }

    /// Runs a future on this client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The session id.
    pub fn session_id(&self) -> i64 {
        self.client().session_id().0
    }

    /// Creates a persistent node; `Err` as ZooKeeper says (NodeExists, NoNode…).
    pub fn try_create(&self, path: &str, data: &[u8]) -> Result<zk::Stat, zk::Error> {
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        self.block_on(self.client().create(path, data, &opts)).map(|(stat, _)| stat)
    }

    /// Creates a persistent node.
    pub fn create(&self, path: &str, data: &[u8]) {
        self.try_create(path, data).unwrap_or_else(|e| panic!("create {path}: {e}"));
    }

    /// Creates an ephemeral node held by this client's session.
    pub fn create_ephemeral(&self, path: &str, data: &[u8]) {
        let opts = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        self.block_on(self.client().create(path, data, &opts))
            .unwrap_or_else(|e| panic!("create ephemeral {path}: {e}"));
    }

    /// Creates `path` and its missing ancestors as persistent nodes (`mkdir -p`).
    pub fn mkdir_p(&self, path: &str) {
        if path == "/" {
            return;
        }
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        self.block_on(self.client().mkdir(path, &opts)).unwrap_or_else(|e| panic!("mkdir -p {path}: {e}"));
    }

    /// The node's data and stat; `Err(NoNode)` if it does not exist.
    pub fn try_get(&self, path: &str) -> Result<(Vec<u8>, zk::Stat), zk::Error> {
        self.block_on(self.client().get_data(path))
    }

    /// The node's data, `None` if it does not exist.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        match self.try_get(path) {
            Ok((data, _)) => Some(data),
            Err(zk::Error::NoNode) => None,
            Err(e) => panic!("get {path}: {e}"),
        }
    }

    /// The node's data as UTF-8 text, `None` if it does not exist.
    pub fn get_string(&self, path: &str) -> Option<String> {
        self.get(path).map(|d| String::from_utf8(d).unwrap_or_else(|e| panic!("data of {path} is not UTF-8: {e}")))
    }

    /// The node's data parsed as JSON; panics if the node is missing or its data
    /// is not JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let data = self.get(path).unwrap_or_else(|| panic!("get_json {path}: no such node"));
        serde_json::from_slice(&data)
            .unwrap_or_else(|e| panic!("data of {path} is not JSON ({e}): {:?}", String::from_utf8_lossy(&data)))
    }

    /// The node's stat, `None` if it does not exist.
    pub fn stat(&self, path: &str) -> Option<zk::Stat> {
        self.block_on(self.client().check_stat(path)).unwrap_or_else(|e| panic!("stat {path}: {e}"))
    }

    /// Whether the node exists.
    pub fn exists(&self, path: &str) -> bool {
        self.stat(path).is_some()
    }

    /// Sets the node's data (any version); `Err` as ZooKeeper says.
    pub fn try_set(&self, path: &str, data: &[u8]) -> Result<zk::Stat, zk::Error> {
        self.block_on(self.client().set_data(path, data, None))
    }

    /// Sets the node's data (any version).
    pub fn set(&self, path: &str, data: &[u8]) {
        self.try_set(path, data).unwrap_or_else(|e| panic!("set {path}: {e}"));
    }

    /// Deletes the node (any version); `Err` as ZooKeeper says (NoNode, NotEmpty…).
    pub fn try_delete(&self, path: &str) -> Result<(), zk::Error> {
        self.block_on(self.client().delete(path, None))
    }

    /// Deletes the node (any version).
    pub fn delete(&self, path: &str) {
        self.try_delete(path).unwrap_or_else(|e| panic!("delete {path}: {e}"));
    }

    /// Deletes the node and everything below it; a missing node is fine. For `/`,
    /// deletes everything but `/zookeeper`.
    pub fn delete_all(&self, path: &str) {
        for child in self.try_children(path).unwrap_or_default() {
            let child_path = if path == "/" {
                if child == "zookeeper" {
                    continue;
                }
                format!("/{child}")
            } else {
                format!("{path}/{child}")
            };
            self.delete_all(&child_path);
        }
        if path == "/" {
            return;
        }
        match self.try_delete(path) {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => panic!("delete_all {path}: {e}"),
        }
    }

    /// The node's children; `Err(NoNode)` if it does not exist.
    pub fn try_children(&self, path: &str) -> Result<Vec<String>, zk::Error> {
        let mut children = self.block_on(self.client().list_children(path))?;
        children.sort();
        Ok(children)
    }

    /// The node's children, sorted.
    pub fn children(&self, path: &str) -> Vec<String> {
        self.try_children(path).unwrap_or_else(|e| panic!("children of {path}: {e}"))
    }
}

impl Drop for Zk {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let mut watcher = client.state_watcher();
        // The session closes in the background once the last Client is gone.
        drop(client);
        self.rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while !watcher.peek_state().is_terminated() {
                    watcher.changed().await;
                }
            })
            .await;
        });
    }
}

// ---------------------------------------------------------------------------
// Background mounts (zkfs without -f)

/// A temporary mountpoint for a zkfs that daemonises itself. Dropping it unmounts
/// lazily if still mounted — which ends the daemon — before the directory goes.
pub struct BackgroundMount {
    dir: Option<TempDir>,
}

impl BackgroundMount {
    /// A fresh empty mountpoint.
    pub fn new() -> BackgroundMount {
        BackgroundMount {
            dir: Some(tempfile::Builder::new().prefix("zkfs-test-bg-").tempdir().expect("temp mountpoint")),
        }
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }
}

impl Drop for BackgroundMount {
    fn drop(&mut self) {
        force_unmount(self.path());
        if is_mounted(self.path()) {
            // Removing it now would delete through the mount: leak it.
            if let Some(dir) = self.dir.take() {
                std::mem::forget(dir);
            }
        }
    }
}

/// The running zkfs whose command line names `mountpoint`: its pid and argv (from /proc).
pub fn daemon_of(mountpoint: &Path) -> Option<(i32, Vec<String>)> {
    let wanted = mountpoint.to_str()?.trim_end_matches('/');
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        // A zombie's cmdline is empty.
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        let argv: Vec<String> =
            cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into()).collect();
        let is_zkfs = argv.first().and_then(|a| Path::new(a).file_name()).is_some_and(|n| n == "zkfs");
        (is_zkfs && argv.iter().skip(1).any(|a| a.trim_end_matches('/') == wanted)).then_some((pid, argv))
    })
}
