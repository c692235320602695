//! The `zkfs` command: parse, connect, mount, serve, and clean up on every way out.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use log::{error, info, warn};
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, setsid, ForkResult};

use zkfs::cli::{self, Command, Config};
use zkfs::fs::Fs;
use zkfs::kernel::echo;
use zkfs::kernel::handover;
use zkfs::kernel::mount::{self, Access, Spec};
use zkfs::kernel::readonly::EchoRoot;
use zkfs::model::inodes::ROOT_INO;
use zkfs::model::view::View;
use zkfs::zookeeper::session::Session;

fn main() -> ExitCode {
    zkfs::model::memory::compact_arenas();
    // Taken now: after a package upgrade the path holds the new binary, which a
    // reload runs (/proc/self/exe then names the old one, deleted).
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let config = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Mount(c)) => c,
        Ok(Command::Status(mountpoint)) => {
            return match zkfs::fs::status::print(&mountpoint) {
                Ok(()) => ExitCode::SUCCESS,
                Err(msg) => {
                    eprintln!("zkfs: {msg}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Command::Reload(mountpoint)) => return zkfs::cli::reload::run(&mountpoint),
        Ok(Command::HandoverFormat) => return printed(&format!("{}\n", zkfs::fs::HANDOVER_FORMAT)),
        Ok(Command::Tree(command)) => return zkfs::cli::transfer::run(&command),
        Ok(Command::Template(command)) => return zkfs::cli::template::run(&command),
        Ok(Command::Snapshot(dir, out)) => return zkfs::cli::snapshot::run(&dir, &out),
        Ok(Command::Help) => return printed(&zkfs::cli::options::help()),
        Ok(Command::Version) => return printed(&format!("zkfs {}\n", env!("CARGO_PKG_VERSION"))),
        Err(msg) => {
            eprintln!("zkfs: {msg}");
            return ExitCode::from(2);
        }
    };
    let silent = match zkfs::cli::logging::init_mount(
        config.foreground,
        config.log_file.as_deref(),
        config.security.tls.is_some(),
    ) {
        Ok(warning) => warning,
        Err(msg) => {
            eprintln!("zkfs: {msg}");
            return ExitCode::FAILURE;
        }
    };

    // A process image started by `zkfs reload` serves the mount it was handed; it must
    // not look at the mountpoint before it serves it (the kernel would ask this very
    // process, which would wait for itself).
    let handed = match handover::taken_over(&args, &config.connect) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(msg)) => {
            error!("cannot take the mount over: {msg}");
            eprintln!("zkfs: cannot take the mount over: {msg}");
            return ExitCode::FAILURE;
        }
    };
    let mountpoint = match &handed {
        Some((_, h)) => h.mountpoint.clone(),
        None => match zkfs::kernel::mountpoint::prepare(&config.mountpoint) {
            Ok(p) => p,
            Err(msg) => {
                eprintln!("zkfs: {msg}");
                return ExitCode::FAILURE;
            }
        },
    };
    let credentials = match config.credentials.as_deref().map(zkfs::zookeeper::auth::read_credentials).transpose() {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("zkfs: {msg}");
            return ExitCode::FAILURE;
        }
    };
    let security =
        match zkfs::zookeeper::secure::Security::load(&config.security, zkfs::cli::first_host(&config.connect)) {
            Ok(s) => Arc::new(s),
            Err(msg) => {
                eprintln!("zkfs: {msg}");
                return ExitCode::FAILURE;
            }
        };
    // Signals are blocked before any thread starts, so every thread inherits the mask
    // and only the signal thread, in sigwait, receives them.
    block_signals();

    let ready = if config.foreground || handed.is_some() {
        None
    } else {
        match daemonize() {
            Ok(Some(pipe)) => Some(pipe),
            Ok(None) => unreachable!("the parent exits in daemonize"),
            Err(msg) => {
                eprintln!("zkfs: {msg}");
                return ExitCode::FAILURE;
            }
        }
    };
    let image = Image { exe, args, handed };
    match run(&config, &mountpoint, credentials, security, ready, silent, image) {
        Ok(()) => ExitCode::SUCCESS,
        Err((msg, ready)) => {
            match ready {
                Some(mut pipe) => {
                    let _ = pipe.write_all(msg.as_bytes());
                }
                None => eprintln!("zkfs: {msg}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Prints `text`: a closed stdout (`zkfs --help | head -1`) is no panic.
fn printed(text: &str) -> ExitCode {
    match zkfs::fs::status::to_stdout(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zkfs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGUSR2] {
        set.add(s);
    }
    set
}

fn block_signals() {
    // pthread_sigmask fails only for an invalid `how`, which this is not.
    let _ = signal_set().thread_block();
}

type ReadyPipe = std::fs::File;

/// Forks: the parent waits until the child says it is mounted (or why not) and exits
/// with that; the child returns the pipe to report on. Must run before any thread.
fn daemonize() -> Result<Option<ReadyPipe>, String> {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {}", std::io::Error::from(e)))?;
    // SAFETY: no other thread runs yet, so the child's copy of memory is consistent.
    match unsafe { fork() } {
        Err(e) => Err(format!("fork: {}", std::io::Error::from(e))),
        Ok(ForkResult::Child) => {
            drop(read_end);
            // Detaches the child from the terminal's session; it fails only for a
            // process group leader, which a fresh child is not.
            let _ = setsid();
            Ok(Some(std::fs::File::from(write_end)))
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(write_end);
            let mut msg = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut msg);
            if msg == "OK" {
                std::process::exit(0);
            }
            if msg.is_empty() {
                msg = "the background process died before mounting (run with -f to see why)".into();
            }
            eprintln!("zkfs: {msg}");
            std::process::exit(1);
        }
    }
}

type Failure = (String, Option<ReadyPipe>);

/// This process image: the binary a reload runs, its command line, and what an
/// earlier image handed over, if it was started by a reload.
struct Image {
    exe: PathBuf,
    args: Vec<std::ffi::OsString>,
    handed: Option<(std::os::fd::OwnedFd, handover::Handed)>,
}

fn run(
    config: &Config,
    mountpoint: &Path,
    credentials: Option<Vec<u8>>,
    security: Arc<zkfs::zookeeper::secure::Security>,
    mut ready: Option<ReadyPipe>,
    silent: Option<String>,
    image: Image,
) -> Result<(), Failure> {
    let Image { exe, args, handed } = image;
    let (fuse_fd, handed_session, handed) = match handed {
        Some((fd, h)) => (Some(fd), Some(h.session), Some((h.fs, h.notes, h.reloads))),
        None => (None, None, None),
    };
    let rt =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("zkfs-zk").enable_all().build()
        {
            Ok(rt) => rt,
            Err(e) => return Err((format!("cannot start the runtime: {e}"), ready)),
        };
    // A crashed zkfs of this mount left its session here: taken back if still alive.
    let state = zkfs::zookeeper::saved::StateFile::new(&config.connect, mountpoint);
    let opened = Session::open_or_take_over(
        rt.handle().clone(),
        &config.connect,
        config.session_timeout,
        credentials,
        security,
        Some(state),
        handed_session,
    );
    let session = match rt.block_on(opened) {
        Ok(s) => s,
        Err(msg) => return Err((msg, ready)),
    };
    let (notes_tx, notes_rx) = std::sync::mpsc::channel();
    let (view, changes) = View::new(Arc::clone(&session), notes_tx.clone());
    view.set_resync_window(config.resync_window);
    let (session_tx, session_rx) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = session.supervise(session_tx);
    let events = view.start(changes, session_rx);
    if let Err(e) = rt.block_on(view.arm()) {
        session.give_up();
        return Err((format!("cannot watch {}: {e}", config.connect), ready));
    }
    let fs = Arc::new(Fs::new(view, config.read_only));
    fs.set_mountpoint(mountpoint.to_path_buf());
    let handed_notes = match handed {
        Some((handed_fs, notes, reloads)) => {
            fs.take_over(handed_fs);
            fs.reloaded(reloads);
            fs.view().rearm_handed();
            notes
        }
        None => Vec::new(),
    };
    if let Err(e) = fs.getattr(ROOT_INO) {
        session.give_up();
        return Err((format!("cannot read the root of {}: {e}", config.connect), ready));
    }

    let access = if config.allow_other {
        Access::All
    } else if config.allow_root {
        Access::RootAndOwner
    } else {
        Access::Owner
    };
    let spec = Spec {
        fsname: config.connect.clone(),
        default_permissions: config.default_permissions,
        kernel_flags: config.kernel_flags.clone(),
        access,
    };
    let taking_over = fuse_fd.is_some();
    let mounted = match fuse_fd {
        Some(fd) => mount::adopt(Arc::clone(&fs), fd, &spec),
        None => match mount::mount(Arc::clone(&fs), mountpoint, &spec) {
            Ok(m) => m,
            Err(e) => {
                session.give_up();
                return Err((format!("cannot mount at {}: {e}", mountpoint.display()), ready));
            }
        },
    };
    if taking_over {
        // The requests the earlier image held, sent again to this one: they are read
        // once fuser's threads run.
        if let Err(e) = mounted.cache().resend() {
            error!("cannot have the kernel send the held requests again: {e}; they wait until unmounted");
        }
        info!("took over {} at {} (reload {})", config.connect, mountpoint.display(), fs.reloads().done);
    } else {
        info!("mounted {} at {}", config.connect, mountpoint.display());
    }
    let queue = zkfs::kernel::echo::EchoQueue::new(notes_rx, notes_tx.clone());
    for note in handed_notes {
        let _ = notes_tx.send(note);
    }
    let echo_root = if config.read_only { EchoRoot::read_only(mountpoint) } else { EchoRoot::read_write(mountpoint) };
    match echo_root {
        Ok(echo_root) => {
            if let Err(e) = echo::spawn(mounted.cache(), Arc::clone(&queue), echo_root, Arc::clone(&fs)) {
                warn!("cannot start the echo thread: {e}; changes made elsewhere will give no inotify events");
            }
        }
        Err(e) => warn!("cannot find the new mount ({e}); changes made elsewhere will give no inotify events"),
    }
    let running = handover::Running {
        fs: Arc::clone(&fs),
        session: Arc::clone(&session),
        gate: mounted.gate(),
        echo: queue,
        cache: mounted.cache(),
        fuse_fd: mounted.fuse_fd(),
        connect: config.connect.clone(),
        mountpoint: mountpoint.to_path_buf(),
        exe,
        args,
        notify: zkfs::cli::notify::notify,
    };
    spawn_signal_thread(mountpoint.to_path_buf(), running);
    zkfs::kernel::unmounted::close_session_when_unmounted(mountpoint, Arc::clone(&session));

    if let Some(pipe) = ready.as_mut() {
        if let Some(warning) = silent {
            eprintln!("{warning}");
        }
        let _ = pipe.write_all(b"OK");
        drop(ready.take());
        detach_stdio();
    }
    zkfs::cli::notify::ready_when_serving(
        mountpoint,
        format!("mounted {} at {}", config.connect, mountpoint.display()),
    );
    let served = mounted.run();
    info!("unmounted {}", mountpoint.display());
    zkfs::cli::notify::notify("STOPPING=1");
    session.close();
    supervisor.abort();
    events.abort();
    drop(fs);
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = served {
        error!("the FUSE session ended with an error: {e}");
    }
    Ok(())
}

/// Waits for SIGINT/SIGTERM/SIGHUP and unmounts; the FUSE session then ends and the
/// main thread closes the ZooKeeper session. SIGUSR2 hands the mount over to the
/// binary zkfs was started from (`zkfs reload`, see `kernel/handover.rs`).
fn spawn_signal_thread(mountpoint: PathBuf, running: handover::Running) {
    let spawned = std::thread::Builder::new().name("zkfs-signals".into()).spawn(move || {
        loop {
            match signal_set().wait() {
                Ok(Signal::SIGUSR2) => {
                    running.reload();
                    continue;
                }
                Ok(sig) => info!("signal {} ({sig}): unmounting {}", sig as i32, mountpoint.display()),
                Err(e) => warn!("sigwait: {e}; unmounting {}", mountpoint.display()),
            }
            break;
        }
        mount::unmount(&mountpoint);
    });
    if let Err(e) = spawned {
        // Every other thread blocks these signals, so unblocking them here lets the
        // kernel deliver them to this thread with their default action: the process
        // ends (without a clean unmount) instead of ignoring SIGTERM forever.
        let _ = signal_set().thread_unblock();
        warn!("cannot start the signal thread: {e}; SIGINT/SIGTERM will end zkfs without unmounting cleanly");
    }
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = (dup2_stdin(&null), dup2_stdout(&null), dup2_stderr(&null));
    }
    let _ = std::env::set_current_dir("/");
}
