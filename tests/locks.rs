//! SPEC "Registering servers": a registration held by a flock(2) lock lives exactly as
//! long as the lock; and the mount's end (SIGTERM, umount -l) is its registrations'
//! end at once, even while a program has its working directory inside the mount.

mod common;
mod shell;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::inotify::Inotify;
use common::procs::{send_signal, signal_group};
use common::{wait_until, Mount, Zk, ZkServer};
use nix::sys::signal::Signal;
use serde_json::json;
use shell::{ls, q, sh, sh_ok};

/// Longer than any removal zkfs makes "at once", far shorter than the session timeout
/// (10 s by default), so that a pass cannot come from a session expiring.
const AT_ONCE: Duration = Duration::from_secs(3);

const REG: &str = "/fooservice/providers/10.0.0.5:8080";

/// A bash script run in the background in its own process group, talking line by
/// line; the group is killed (SIGKILL) and the script reaped when dropped.
struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Script {
    fn start(script: &str) -> Script {
        Script::start_in(script, Path::new("/"))
    }

    fn start_in(script: &str, cwd: &Path) -> Script {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(cwd)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn bash");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Script { child, stdin, stdout }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the script prints.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from the script");
        line.trim_end().to_string()
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("write to the script");
    }

    /// SIGKILL to the script and everything it started.
    fn kill9(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(self.child.id(), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// Waits (≤10 s) for it to exit; true if it exited with status 0.
    fn exit_ok(&mut self) -> bool {
        let mut status = None;
        wait_until(Duration::from_secs(10), "the script exits", || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.is_some_and(|s| s.success())
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A process that opens `reg` (creating it), locks it with flock, says "locked" and
/// then sleeps holding the lock, alone: `exec` leaves no other process with the file.
fn holder(reg: &Path) -> Script {
    let mut s = Script::start(&format!("exec 9>>{} && flock 9 && echo locked && exec sleep 600", q(reg)));
    assert_eq!(s.line(), "locked");
    s
}

fn gone(zk: &Zk, what: &str) {
    wait_until(AT_ONCE, what, || !zk.exists(REG));
}

/// The mount learns of a removal by its lock through its watch, as of one made
/// elsewhere: a moment after ZooKeeper, not with it.
fn shown_gone(reg: &Path) {
    wait_until(AT_ONCE, "the mount shows the registration gone", || !reg.exists());
}

#[test]
fn flock_command_registers_for_exactly_as_long_as_its_command_runs() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    let stop = tempfile::tempdir().unwrap();
    let flag = stop.path().join("stop");
    let mut flock = Script::start(&format!(
        "flock {} bash -c 'echo locked; while [ ! -e {} ]; do sleep 0.02; done'",
        q(&reg),
        q(&flag)
    ));
    assert_eq!(flock.line(), "locked");
    // flock(1) created the registration (O_CREAT), held by the mount's session.
    let stat = zk.stat(REG).expect("flock created the registration");
    assert_ne!(stat.ephemeral_owner, 0);
    assert_eq!(zk.get_json(REG), json!({"pid": flock.pid()}));
    // Reading it, or writing properties to it, does not end it.
    sh_ok(&format!("cat {} >/dev/null", q(&reg)));
    sh_ok(&format!(r#"echo '{{"weight": 3}}' >> {}"#, q(&reg)));
    assert_eq!(zk.get_json(REG)["weight"], json!(3));

    std::fs::write(&flag, b"").unwrap();
    assert!(flock.exit_ok());
    gone(&zk, "the registration goes when the command exits");
    shown_gone(&reg);
    assert!(!mount.log().contains("panicked"));
}

#[test]
fn kill_9_of_the_holder_removes_the_registration_at_once() {
    let (_server, zk, mount) = common::fooservice();
    let mut holding = holder(&mount.join(REG));
    assert!(zk.exists(REG));
    holding.kill9();
    gone(&zk, "SIGKILL of the only holder removes the registration");
    shown_gone(&mount.join(REG));
}

#[test]
fn explicit_unlock_removes_the_registration_while_the_file_stays_open() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    let mut s = Script::start(&format!(
        "exec 9>>{r} && flock -s 9 && echo locked && read x && flock -u 9 && echo unlocked && read y \
         && if flock -n 9; then echo relocked; else echo refused; fi",
        r = q(&reg)
    ));
    assert_eq!(s.line(), "locked");
    assert!(zk.exists(REG));
    s.send("go");
    assert_eq!(s.line(), "unlocked");
    gone(&zk, "LOCK_UN of the last lock removes the registration");
    assert!(s.running(), "the descriptor is still open");
    // Locking the removed registration through the old descriptor fails: it is gone,
    // and a lock cannot bring it back.
    s.send("again");
    assert_eq!(s.line(), "refused");
    assert!(!zk.exists(REG));
    assert!(s.exit_ok());
}

#[test]
fn a_registration_never_locked_keeps_the_mounts_lifetime() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    sh_ok(&format!("touch {r} && cat {r} >/dev/null && echo '{{}}' >> {r}", r = q(&reg)));
    std::thread::sleep(Duration::from_millis(300));
    assert!(zk.exists(REG), "open, read, write and close of an unlocked registration keep it");
    // Locking it ties it to the lock from then on.
    let mut holding = holder(&reg);
    holding.kill9();
    gone(&zk, "a registration made with touch, then locked, goes with its lock");
}

#[test]
fn locks_conflict_as_on_a_local_disk_and_a_waiter_takes_over() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    let mut first = holder(&reg);

    let r = sh(&format!("flock -n {} true", q(&reg)));
    assert!(!r.ok, "a second exclusive flock -n must fail");
    let r = sh(&format!("flock -n -s {} true", q(&reg)));
    assert!(!r.ok, "a shared flock -n on an exclusively held registration must fail");
    assert!(zk.exists(REG), "a refused lock changes nothing");

    // More blocking waiters than fuser has worker threads: none of them may block the
    // mount, and each gets the lock in turn.
    let mut waiters: Vec<Script> =
        (0..6).map(|i| Script::start(&format!("flock {} bash -c 'echo got {i}; sleep 0.1'", q(&reg)))).collect();
    std::thread::sleep(Duration::from_millis(300));
    for w in &mut waiters {
        assert!(w.running(), "a waiter got the lock while it was held");
    }
    assert!(ls(&mount.join("/fooservice/providers")).contains(&"10.0.0.5:8080".to_string()), "the mount answers");
    sh_ok(&format!("cat {} >/dev/null", q(&reg)));

    first.kill9();
    for w in &mut waiters {
        assert!(w.exit_ok(), "each waiter got the lock once its holder died");
    }
    gone(&zk, "the registration goes with the last waiter's lock");
}

#[test]
fn a_second_mount_and_this_one_see_the_removal_as_in_delete() {
    let (server, zk, mount) = common::fooservice();
    let other = Mount::new(&server.connect_string());
    let mut holding = holder(&mount.join(REG));
    let other_dir = other.join("/fooservice/providers");
    wait_until(AT_ONCE, "the other mount shows the registration", || other_dir.join("10.0.0.5:8080").exists());
    let mut there = Inotify::new();
    there.watch(&other_dir);
    let mut here = Inotify::new();
    here.watch(&mount.join("/fooservice/providers"));

    holding.kill9();
    there.wait_for(AT_ONCE, "IN_DELETE on the other mount", |e| e.is(libc::IN_DELETE, "10.0.0.5:8080"));
    here.wait_for(AT_ONCE, "IN_DELETE on the holder's mount", |e| e.is(libc::IN_DELETE, "10.0.0.5:8080"));
    assert!(!zk.exists(REG));
}

#[test]
fn a_lock_on_another_sessions_registration_never_succeeds() {
    let (server, zk, mount) = common::fooservice();
    let other = Mount::new(&server.connect_string());
    // Held by a plain ZooKeeper client, and by another mount's lock.
    zk.create_ephemeral("/fooservice/providers/10.0.0.9:80", br#"{"pid": 42}"#);
    let mut holding = holder(&other.join(REG));
    wait_until(AT_ONCE, "this mount shows the other's registration", || mount.join(REG).exists());

    for name in ["10.0.0.9:80", "10.0.0.5:8080"] {
        let reg = mount.join("/fooservice/providers").join(name);
        for flags in ["-n", "-n -s", "", "-s"] {
            // Blocking or not, the answer comes at once: it fails (see README).
            let r = sh(&format!("timeout 5 flock {flags} {} echo got", q(&reg)));
            assert!(!r.ok && !r.stdout.contains("got"), "flock {flags} {name} on another session's registration");
        }
    }
    assert!(mount.log().contains("another ZooKeeper session"), "the reason is logged");
    assert!(zk.exists("/fooservice/providers/10.0.0.9:80") && zk.exists(REG), "a refused lock changes nothing");
    holding.kill9();
    gone(&zk, "the other mount's holder still holds it alone");
    assert_eq!(zk.get_json("/fooservice/providers/10.0.0.9:80"), json!({"pid": 42}));
}

/// A process with its working directory in the mount, which makes the unmount lazy.
fn busy(mount: &Mount) -> Script {
    let mut s = Script::start_in("echo in && exec sleep 600", &mount.join("/fooservice"));
    assert_eq!(s.line(), "in");
    s
}

fn registered_by_touch(mount: &Mount, zk: &Zk) -> PathBuf {
    let reg = mount.join(REG);
    sh_ok(&format!("touch {}", q(&reg)));
    assert!(zk.exists(REG));
    reg
}

#[test]
fn sigterm_on_a_busy_mount_removes_its_registrations_at_once() {
    let (_server, zk, mut mount) = common::fooservice();
    registered_by_touch(&mount, &zk);
    let mut cwd_inside = busy(&mount);
    send_signal(mount.pid(), Signal::SIGTERM);
    gone(&zk, "SIGTERM on a busy mount closes the session at once");
    cwd_inside.kill9();
    assert!(mount.wait_exit(Duration::from_secs(10)).is_some(), "zkfs exits once the mount is no longer used");
    assert!(!common::is_mounted(mount.path()));
}

#[test]
fn a_lazy_umount_from_outside_removes_its_registrations_at_once() {
    let (_server, zk, mut mount) = common::fooservice();
    registered_by_touch(&mount, &zk);
    let mut cwd_inside = busy(&mount);
    sh_ok(&format!("umount -l {}", q(mount.path())));
    gone(&zk, "umount -l of a busy mount closes the session at once");
    cwd_inside.kill9();
    assert!(mount.wait_exit(Duration::from_secs(10)).is_some(), "zkfs exits once the mount is no longer used");
}

#[test]
fn a_waiter_killed_while_waiting_never_takes_the_registration_over() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    let mut first = holder(&reg);
    // A waiting process must stay interruptible: `timeout` (SIGTERM), `flock -w`
    // (its alarm), SIGKILL. The outer timeout only keeps a failure from hanging.
    for waiter in ["timeout 1 flock", "flock -w 1", "timeout -s KILL 1 flock"] {
        let r = sh(&format!("timeout -s KILL 20 {waiter} {} echo got; echo status=$?", q(&reg)));
        assert!(!r.stdout.contains("got"), "{waiter}: the waiter got the lock: {}", r.stdout);
        assert!(!r.stdout.contains("status=137") || waiter.contains("KILL 1"), "{waiter} could not be interrupted");
        assert!(!r.stdout.contains("status=0"), "{waiter}: {}", r.stdout);
    }
    assert!(zk.exists(REG));
    first.kill9();
    gone(&zk, "no dead waiter holds the registration");
}

fn new_sessions(mount: &Mount) -> u32 {
    let status = sh_ok(&format!("{} status {}", env!("CARGO_BIN_EXE_zkfs"), q(mount.path())));
    status.lines().find_map(|l| l.strip_prefix("new_sessions: ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn a_locked_registration_survives_a_session_expiry_and_still_goes_with_its_lock() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/fooservice/providers");
    let mount = Mount::with_options(&server.connect_string(), "session_timeout=2");
    let mut holding = holder(&mount.join(REG));
    let old_owner = zk.stat(REG).unwrap().ephemeral_owner;
    // Never locked, and re-created after the one above (in path order): a marker.
    let plain = "/fooservice/providers/10.0.0.9:80";
    sh_ok(&format!("touch {}", q(&mount.join(plain))));

    mount.stop_process();
    wait_until(Duration::from_secs(15), "the frozen mount's session expired", || !zk.exists(REG));
    mount.cont_process();
    wait_until(Duration::from_secs(15), "the locked registration is back", || zk.exists(REG));
    assert_ne!(zk.stat(REG).unwrap().ephemeral_owner, old_owner, "re-created on the new session");

    holding.kill9();
    gone(&zk, "the re-created registration still goes with its lock");
    // Forgotten: another expiry does not bring it back.
    mount.stop_process();
    std::thread::sleep(Duration::from_secs(4));
    mount.cont_process();
    wait_until(Duration::from_secs(15), "the mount has its third session", || new_sessions(&mount) >= 2);
    wait_until(Duration::from_secs(15), "the plain registration is back", || zk.exists(plain));
    assert!(!zk.exists(REG), "a registration whose lock went was re-created after an expiry");
}

#[test]
fn a_lock_on_a_registration_removed_and_registered_again_leaves_the_new_one() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    let mut old = holder(&reg);
    sh_ok(&format!("rm {r} && touch {r}", r = q(&reg)));
    assert!(zk.exists(REG));
    old.kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert!(zk.exists(REG), "the release of a lock on the removed node took the new registration");
}

#[test]
fn only_the_user_who_mounted_can_hold_a_registration_with_a_lock() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/fooservice/providers");
    let mount = Mount::with_options(&server.connect_string(), "allow_other");
    let reg = mount.join(REG);
    sh_ok(&format!("touch {}", q(&reg)));
    // Another user may read the registration, but its lock would remove it at unlock.
    let as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
    assert!(sh(&format!("{as_nobody} cat {}", q(&reg))).ok, "another user can read it");
    let r = sh(&format!("{as_nobody} flock -n {} true", q(&reg)));
    assert!(!r.ok && r.stderr.contains("not permitted"), "another user locked it: {}", r.stderr);
    std::thread::sleep(Duration::from_millis(300));
    assert!(zk.exists(REG), "another user's lock removed the registration");
}

#[test]
fn flock_killed_between_its_create_and_its_lock_leaves_no_registration() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    // flock(1) opens read-only with O_CREAT, then locks. Stopping it in between (a
    // read-only create by python, which never locks) and killing it must not leave the
    // registration behind for the mount's lifetime.
    let mut opener = Script::start(&format!(
        "exec python3 -c 'import os, sys, time; os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT); print(\"created\", flush=True); time.sleep(600)' {}",
        q(&reg)
    ));
    assert_eq!(opener.line(), "created");
    assert!(zk.exists(REG));
    opener.kill9();
    gone(&zk, "a read-only create closed before any lock removes the registration");
    // A create for writing (touch, echo >) keeps the mount's lifetime.
    sh_ok(&format!("touch {}", q(&reg)));
    std::thread::sleep(Duration::from_millis(300));
    assert!(zk.exists(REG));
}

#[test]
fn a_shell_killed_between_its_append_open_and_its_lock_leaves_no_registration() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    // zkfs-health's cycle: register (open to append, lock), deregister (close), then
    // open to register again — and be killed before the lock, as by SIGKILL.
    let mut shell = Script::start(&format!(
        "exec 9>>{r} && flock -n 9 && echo locked && read x && exec 9>&- && echo closed && read y \
         && exec 9>>{r} && echo created && exec sleep 600",
        r = q(&reg)
    ));
    assert_eq!(shell.line(), "locked");
    shell.send("close");
    assert_eq!(shell.line(), "closed");
    gone(&zk, "the close of the only lock's file removes the registration");
    shell.send("open again");
    assert_eq!(shell.line(), "created");
    assert!(zk.exists(REG), "registered again by the open");
    shell.kill9();
    gone(&zk, "an append create closed before any lock removes the registration");
    shown_gone(&mount.join(REG));

    // A create that writes (echo >>) keeps the mount's lifetime.
    sh_ok(&format!(r#"echo '{{"weight": 3}}' >> {}"#, q(&reg)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(zk.get_json(REG)["weight"], json!(3), "echo >> of a new registration kept it");
}

/// A shell that opens (`exec 9>>REG`), locks (`flock -n 9`) and closes (`exec 9>&-`)
/// the registration on command, one line each, and says how each went.
fn opener(reg: &Path) -> Script {
    Script::start(&format!(
        "while read cmd; do case $cmd in \
           open) exec 9>>{r} && echo opened || echo failed;; \
           lock) flock -n 9 && echo locked || echo failed;; \
           close) exec 9>&- && echo closed;; \
         esac; done",
        r = q(reg)
    ))
}

/// Regression (seen once under load in the test above): the mount still showed a
/// registration its lock's close had removed, so the kernel's open of the name went to
/// the old file instead of creating one — "created", and no registration. Here the
/// open comes right after ZooKeeper (not yet the mount) has seen the removal.
#[test]
fn an_append_open_right_after_the_removal_by_a_close_registers_again() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    let mut events = Inotify::new();
    events.watch(&mount.join("/fooservice/providers"));
    let mut shell = opener(&reg);
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        shell.send("open");
        assert_eq!(shell.line(), "opened", "round {round}");
        assert!(zk.exists(REG), "round {round}: the open did not register");
        shell.send("lock");
        assert_eq!(shell.line(), "locked", "round {round}");
        assert!(zk.exists(REG), "round {round}: the lock holds no registration");
        shell.send("close");
        assert_eq!(shell.line(), "closed", "round {round}");
        gone(&zk, "the close of the only lock's file removes the registration");
    }
    shown_gone(&reg);
    // This mount's watchers hear each removal and each new registration, in order.
    let seen: Vec<&str> = events
        .collect(Duration::from_millis(500))
        .iter()
        .filter(|e| e.name == "10.0.0.5:8080")
        .filter_map(|e| match e.mask & (libc::IN_CREATE | libc::IN_DELETE) {
            libc::IN_CREATE => Some("create"),
            libc::IN_DELETE => Some("delete"),
            _ => None,
        })
        .collect();
    assert_eq!(seen, ["create", "delete"].repeat(ROUNDS), "events on the registering mount");
}

/// The same, with the open right after the close: the removal is still on its way to
/// ZooKeeper when the open comes (so the open must wait for it, then create), or the
/// kernel's RELEASE of the closed file even reaches zkfs after the open (so only the
/// lock can tell: it registers again). Either way the lock holds a registration.
#[test]
fn an_append_open_right_after_a_close_registers_again_and_its_lock_holds_it() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    let mut events = Inotify::new();
    events.watch(&mount.join("/fooservice/providers"));
    let mut shell = opener(&reg);
    for round in 0..30 {
        shell.send("open");
        assert_eq!(shell.line(), "opened", "round {round}");
        shell.send("lock");
        assert_eq!(shell.line(), "locked", "round {round}");
        assert!(zk.exists(REG), "round {round}: the lock holds no registration");
        assert!(reg.exists(), "round {round}: the mount does not show the registration its lock holds");
        shell.send("close");
        assert_eq!(shell.line(), "closed", "round {round}");
    }
    gone(&zk, "the last close removes the registration");
    shown_gone(&reg);
    // Never a creation of a name shown already, nor a removal of one not shown: each
    // new registration after its predecessor's removal. (When the lock registered it
    // again, no create passed through the kernel: a removal follows a removal then.)
    let seen: Vec<u32> = events
        .collect(Duration::from_millis(500))
        .iter()
        .filter(|e| e.name == "10.0.0.5:8080")
        .map(|e| e.mask & (libc::IN_CREATE | libc::IN_DELETE))
        .filter(|m| *m != 0)
        .collect();
    assert!(!seen.windows(2).any(|w| w == [libc::IN_CREATE, libc::IN_CREATE]), "two creations in a row: {seen:?}");
    assert_eq!(seen.first(), Some(&libc::IN_CREATE));
    assert_eq!(seen.last(), Some(&libc::IN_DELETE));
}

/// While no server answers, an open right after the close cannot learn whether the
/// removal went through: it fails (EIO) within about the session timeout, registers
/// nothing, and once the ensemble is back the same open registers again.
#[test]
fn an_append_open_right_after_a_close_fails_while_no_server_answers_and_registers_after() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/fooservice/providers");
    let mount = Mount::with_options(&server.connect_string(), "session_timeout=4");
    let reg = mount.join(REG);
    let mut shell = opener(&reg);
    shell.send("open");
    assert_eq!(shell.line(), "opened");
    shell.send("lock");
    assert_eq!(shell.line(), "locked");
    server.pause();
    shell.send("close");
    assert_eq!(shell.line(), "closed");
    // The kernel sends the close's RELEASE without waiting: the open must come after
    // zkfs has it, i.e. once the removal it starts is waiting for a server.
    wait_until(Duration::from_secs(10), "the removal waits for a server", || {
        mount.log().contains(&format!("cannot remove {REG} yet"))
    });
    shell.send("open");
    assert_eq!(shell.line(), "failed", "an open of a registration whose removal no server confirms");
    server.resume();
    // Once a server answers, the removal goes through within about a session timeout
    // (the mount reconnects, or the server expires its session and so its ephemeral).
    // A new client asks: the old one may itself still be reconnecting.
    let zk = Zk::connect(&server.connect_string());
    wait_until(Duration::from_secs(15), "the removal goes through once a server answers", || !zk.exists(REG));
    wait_until(Duration::from_secs(15), "an open registers again", || {
        shell.send("open");
        shell.line() == "opened" && zk.exists(REG)
    });
    shell.send("lock");
    assert_eq!(shell.line(), "locked");
    assert!(zk.exists(REG));
    assert!(!mount.log().contains("panicked"));
}

// ---------------------------------------------------------------------------
// The lifetime rules (README "Registrations that live as long as a process", the
// table): within one session a removal by anyone is final; a new session re-creates
// every registration the mount holds, where its directory still exists.

/// An admin deletes a registration a process holds with flock: it is not re-created,
/// the mount no longer counts it as held, the holder's descriptor reads ENOENT, a new
/// registration of the name is a new one, and the old holder's exit leaves it.
#[test]
fn an_admins_delete_of_a_held_registration_is_final_and_the_old_lock_leaves_the_new_one() {
    let (_server, zk, mount) = common::fooservice();
    let reg = mount.join(REG);
    let mut old = holder(&reg);
    zk.delete(REG);
    shown_gone(&reg);
    wait_until(AT_ONCE, "zkfs status no longer lists it", || {
        !sh_ok(&format!("{} status {}", env!("CARGO_BIN_EXE_zkfs"), q(mount.path()))).contains("10.0.0.5:8080")
    });
    wait_until(AT_ONCE, "the log says the delete is final", || mount.log().contains("not re-created"));
    // The holder's descriptor leads to a node that is gone.
    let read = sh(&format!("cat /proc/{}/fd/9", old.pid()));
    assert!(!zk.exists(REG), "an admin's delete was undone");
    assert!(!read.ok, "reading the removed registration succeeded: {:?}", read.stdout);
    // Registered again by someone else on this host: a new registration.
    let mut new = holder(&reg);
    let czxid = zk.stat(REG).unwrap().czxid;
    old.kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(zk.stat(REG).map(|s| s.czxid), Some(czxid), "the old holder's exit removed the new registration");
    new.kill9();
    gone(&zk, "the new one goes with its own lock");
}

/// The one case zkfs cannot tell apart: an admin's delete while the mount is frozen,
/// then the session expires. A new session re-creates every registration it holds
/// (the expiry removed them all), this one too; a registration whose directory is
/// gone is dropped for good, and said so.
#[test]
fn a_new_session_re_creates_what_the_mount_holds_where_its_directory_exists() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/fooservice/providers");
    zk.mkdir_p("/gone/providers");
    let mount = Mount::with_options(&server.connect_string(), "session_timeout=2");
    let _holding = holder(&mount.join(REG));
    let doomed = "/gone/providers/10.0.0.7:80";
    sh_ok(&format!("touch {}", q(&mount.join(doomed))));
    mount.stop_process();
    zk.delete(REG); // unseen by the frozen mount
    wait_until(Duration::from_secs(15), "the frozen mount's session expired", || !zk.exists(doomed));
    zk.delete_all("/gone");
    mount.cont_process();
    wait_until(Duration::from_secs(15), "the held registration is back on the new session", || zk.exists(REG));
    wait_until(AT_ONCE, "the one whose directory went is dropped, logged", || {
        mount.log().contains("cannot re-create registration /gone/providers/10.0.0.7:80")
    });
    assert!(!zk.exists("/gone"), "a registration's directory was re-created");
    let status = sh_ok(&format!("{} status {}", env!("CARGO_BIN_EXE_zkfs"), q(mount.path())));
    assert!(status.contains("registration_count: 1\n"), "only the held one is held: {status}");
    assert!(status.contains("last_error: re-creating /gone/providers/10.0.0.7:80"), "and says why: {status}");
}

/// Another session took the name while this mount's session was expiring: the name is
/// left to it, and this mount no longer counts it as held.
#[test]
fn a_name_another_session_took_during_an_expiry_is_left_to_it() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    zk.mkdir_p("/fooservice/providers");
    let mount = Mount::with_options(&server.connect_string(), "session_timeout=2");
    sh_ok(&format!("touch {}", q(&mount.join(REG))));
    mount.stop_process();
    wait_until(Duration::from_secs(15), "the frozen mount's session expired", || !zk.exists(REG));
    zk.create_ephemeral(REG, br#"{"pid": 1}"#);
    mount.cont_process();
    wait_until(Duration::from_secs(15), "the mount has a new session", || new_sessions(&mount) >= 1);
    wait_until(AT_ONCE, "it says the name is held elsewhere", || {
        mount.log().contains("cannot re-create registration /fooservice/providers/10.0.0.5:8080")
    });
    assert_eq!(zk.stat(REG).map(|s| s.ephemeral_owner), Some(zk.session_id()), "the other session keeps it");
    let status = sh_ok(&format!("{} status {}", env!("CARGO_BIN_EXE_zkfs"), q(mount.path())));
    assert!(status.contains("registration_count: 0\n"), "{status}");
}
