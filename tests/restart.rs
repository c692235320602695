//! A crash and a restart without a flap (README "Restarts and crashes"): a zkfs killed
//! (SIGKILL, OOM) and started again on the same mountpoint within the session timeout
//! takes its ZooKeeper session back from its state file, so the host's registrations
//! never leave ZooKeeper: another host sees no change. Real server, real mounts.

mod common;
mod shell;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{wait_until, Mount, Zk, ZkServer};
use shell::{q, sh_ok};

const REG: &str = "/svc/providers/10.0.0.5:8080";
const TIMEOUT: u64 = 6;

/// The state file of `mount` (see src/zookeeper/saved.rs): the one naming its mountpoint.
fn state_file(mount: &Mount) -> Option<PathBuf> {
    let dir = std::fs::read_dir("/run/zkfs").ok()?;
    let want = format!("\"mountpoint\":\"{}\"", mount.path().display());
    dir.flatten().map(|e| e.path()).find(|p| {
        p.extension().is_some_and(|x| x == "session") && std::fs::read_to_string(p).is_ok_and(|t| t.contains(&want))
    })
}

/// Watches `path` from another client every 10 ms; counts the polls that found it gone.
struct Observer {
    stop: Arc<AtomicBool>,
    gone: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Observer {
    fn start(connect: &str, path: &'static str) -> Observer {
        let zk = Zk::connect(connect);
        let (stop, gone, polls) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, g, p) = (Arc::clone(&stop), Arc::clone(&gone), Arc::clone(&polls));
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if !zk.exists(path) {
                    g.fetch_add(1, Ordering::Relaxed);
                }
                p.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
            }
        });
        Observer { stop, gone, polls, thread: Some(thread) }
    }

    /// (polls that found it gone, polls).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("observer thread");
        }
        (self.gone.load(Ordering::Relaxed), self.polls.load(Ordering::Relaxed))
    }
}

fn setup() -> (ZkServer, Zk, Mount) {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/svc/providers");
    let mount = Mount::with_options(&server.connect_string(), &format!("session_timeout={TIMEOUT}"));
    (server, zk, mount)
}

#[test]
fn a_crash_and_a_restart_within_the_session_timeout_keep_the_registrations() {
    let (server, zk, mut mount) = setup();
    let reg = mount.join(REG);
    sh_ok(&format!(r#"echo '{{"weight": 3}}' > {}"#, q(&reg)));
    let owner = zk.stat(REG).expect("registered").ephemeral_owner;
    let observer = Observer::start(&server.connect_string(), REG);
    thread::sleep(Duration::from_millis(200));
    mount.crash_and_restart();
    assert!(mount.log().contains("resumed session"), "{}", mount.log());
    // Past the old process's session timeout: had the session not been taken back, the
    // server would have removed the registration by now.
    thread::sleep(Duration::from_secs(TIMEOUT + 2));
    let (gone, polls) = observer.finish();
    assert_eq!(gone, 0, "another host saw the registration gone in {gone} of {polls} polls");
    assert_eq!(zk.stat(REG).expect("still registered").ephemeral_owner, owner, "the same session holds it");
    // The new process holds it as the old one did: shown, counted, its data, and `rm`
    // and the unmount remove it.
    assert!(reg.exists(), "the restarted mount shows the registration");
    let status = sh_ok(&format!("{} status {}", env!("CARGO_BIN_EXE_zkfs"), q(mount.path())));
    assert!(status.contains(REG), "zkfs status lists the registration it holds again:\n{status}");
    let data: serde_json::Value = serde_json::from_slice(&std::fs::read(&reg).unwrap()).unwrap();
    assert_eq!(data["weight"], serde_json::json!(3), "its data: {data}");
    sh_ok(&format!("rm {}", q(&reg)));
    wait_until(Duration::from_secs(3), "rm removes it", || !zk.exists(REG));
    sh_ok(&format!("touch {}", q(&reg)));
    assert!(zk.exists(REG));
    mount.unmount();
    wait_until(Duration::from_secs(3), "the unmount removes the registration", || !zk.exists(REG));
}

#[test]
fn the_state_file_is_the_owners_alone_and_goes_with_a_clean_unmount() {
    let (_server, _zk, mut mount) = setup();
    wait_until(Duration::from_secs(3), "a state file in /run/zkfs while mounted", || state_file(&mount).is_some());
    let file = state_file(&mount).expect("a state file");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "{}: it holds the session password", file.display());
    assert_eq!(std::fs::metadata("/run/zkfs").unwrap().mode() & 0o077, 0, "/run/zkfs is the owner's alone");
    mount.unmount();
    assert!(!file.exists(), "a clean unmount closes the session and removes {}", file.display());
}

#[test]
fn after_the_session_timeout_a_restart_opens_a_new_session_and_works() {
    let (_server, zk, mut mount) = setup();
    let reg = mount.join(REG);
    sh_ok(&format!("touch {}", q(&reg)));
    let owner = zk.stat(REG).unwrap().ephemeral_owner;
    // Down for longer than the session timeout: the server expires the session.
    mount.stop_process();
    wait_until(Duration::from_secs(3 * TIMEOUT), "the server expires the frozen mount's session", || !zk.exists(REG));
    mount.crash_and_restart();
    assert!(mount.log().contains("is gone"), "the restart says the old session is gone:\n{}", mount.log());
    sh_ok(&format!("touch {}", q(&reg)));
    let now = zk.stat(REG).expect("registered on the new session").ephemeral_owner;
    assert_ne!(now, owner);
}

#[test]
fn a_state_file_others_can_read_is_refused_and_the_mount_opens_a_new_session() {
    let (_server, zk, mut mount) = setup();
    sh_ok(&format!("touch {}", q(&mount.join(REG))));
    wait_until(Duration::from_secs(3), "a state file", || state_file(&mount).is_some());
    let file = state_file(&mount).expect("a state file");
    let owner = zk.stat(REG).unwrap().ephemeral_owner;
    mount.stop_process();
    // Others could read it: never trusted (nor the password in it used).
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    mount.crash_and_restart();
    assert!(mount.log().contains("not resuming from it"), "{}", mount.log());
    let status = sh_ok(&format!("{} status {}", env!("CARGO_BIN_EXE_zkfs"), q(mount.path())));
    assert!(!status.contains(&format!("session_id: {owner:#x}")), "a new session:\n{status}");
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600, "saved anew, the owner's alone");
}

/// `flock REG sleep 120` on `mount`, once the registration is made and the state file
/// saves it as held by that process.
fn held_by_flock(zk: &Zk, mount: &Mount) -> std::process::Child {
    // Its own process group: flock(1) and the `sleep` it runs, which shares the locked
    // open file, end together (`kill_holder`).
    let holder = std::process::Command::new("flock")
        .arg(mount.join(REG))
        .args(["sleep", "120"])
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("flock(1)");
    wait_until(Duration::from_secs(5), "flock holds the registration, saved as held by it", || {
        zk.exists(REG)
            && state_file(mount)
                .and_then(|f| std::fs::read_to_string(f).ok())
                .is_some_and(|t| t.contains(&format!(r#""locked":[{{"path":"{REG}""#)))
    });
    holder
}

/// Ends flock(1) and its command, which both have the locked file open.
fn kill_holder(holder: &mut std::process::Child) {
    let group = nix::unistd::Pid::from_raw(holder.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    holder.wait().unwrap();
}

/// A registration a flock holds: after a crash the holder's descriptor is dead (its
/// lock went with the old process), but the holder lives on, so its registration stays
/// until the holder exits — followed by pidfd — and not a moment longer.
#[test]
fn a_registration_held_by_a_flock_stays_while_its_holder_lives_and_goes_when_it_exits() {
    let (server, zk, mut mount) = setup();
    let mut holder = held_by_flock(&zk, &mount);
    let observer = Observer::start(&server.connect_string(), REG);
    mount.crash_and_restart();
    thread::sleep(Duration::from_secs(TIMEOUT + 1));
    let (gone, polls) = observer.finish();
    assert_eq!(gone, 0, "the registration went in {gone} of {polls} polls while its holder lives");
    assert!(mount.log().contains("for as long as pid"), "{}", mount.log());
    kill_holder(&mut holder);
    wait_until(Duration::from_secs(3), "the holder's exit removes its registration", || !zk.exists(REG));
}

/// The holder exited while no zkfs ran: the restarted zkfs removes its registration.
#[test]
fn a_registration_whose_holder_exited_while_zkfs_was_down_goes_at_the_restart() {
    let (_server, zk, mut mount) = setup();
    let mut holder = held_by_flock(&zk, &mount);
    mount.crash();
    kill_holder(&mut holder);
    assert!(zk.exists(REG), "the session lives on while zkfs is down");
    mount.restart();
    wait_until(Duration::from_secs(3), "the restart removes the dead holder's registration", || !zk.exists(REG));
    assert!(mount.log().contains("exited while no zkfs ran"), "{}", mount.log());
}
