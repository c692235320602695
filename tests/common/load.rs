//! Load and observers for hand-overs and restarts (tests/reload.rs, benches/reload.rs):
//! processes holding flocks on registrations, another client polling registrations,
//! and loops of requests through a mount that count failures and keep latencies.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{wait_until, Zk};

const SOON: Duration = Duration::from_secs(5);

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// A process holding a flock on a registration, killed on drop: one process (the
/// shell becomes `sleep`), so that its death releases the lock.
pub struct Holder(Child, tempfile::TempDir);

impl Holder {
    /// Starts the holder and waits until it holds the lock.
    pub fn start(file: &Path) -> Holder {
        let holder = Holder::asking(file);
        wait_until(SOON, "the holder holds its lock", || holder.holds());
        holder
    }

    /// Starts the holder, which may wait for the lock.
    pub fn asking(file: &Path) -> Holder {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec 9>>{}; flock 9; touch {}; exec sleep 600", q(file), q(&dir.path().join("got"))))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn flock");
        Holder(child, dir)
    }

    pub fn holds(&self) -> bool {
        self.1.path().join("got").exists()
    }

    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `paths` from another client every 10 ms; counts polls that found one gone.
pub struct Observer {
    stop: Arc<AtomicBool>,
    gone: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Observer {
    pub fn start(connect: &str, paths: Vec<String>) -> Observer {
        let zk = Zk::connect(connect);
        let (stop, gone) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (s, g) = (Arc::clone(&stop), Arc::clone(&gone));
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for p in &paths {
                    if !zk.exists(p) {
                        g.fetch_add(1, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        Observer { stop, gone, thread: Some(thread) }
    }

    pub fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("observer");
        }
        self.gone.load(Ordering::Relaxed)
    }
}

/// Loops of requests through a mount: each counts its failures and keeps how long
/// each request took.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<(Vec<String>, Vec<Duration>)>>,
}

/// What a [`Load`] saw.
pub struct Outcome {
    /// The failed requests, and why.
    pub errors: Vec<String>,
    /// How long each request took, sorted.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    /// The longest request, in ms.
    pub fn longest_ms(&self) -> f64 {
        self.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    /// The `p`th percentile, in ms.
    pub fn percentile_ms(&self, p: usize) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = (self.latencies.len() * p / 100).min(self.latencies.len() - 1);
        self.latencies[i].as_secs_f64() * 1e3
    }
}

impl Load {
    pub fn new() -> Load {
        Load { stop: Arc::default(), threads: Vec::new() }
    }

    /// Runs `op(i)` for i = 1, 2... every 2 ms until [`Load::finish`].
    pub fn run(&mut self, what: &'static str, op: impl Fn(u64) -> Result<(), String> + Send + 'static) {
        let stop = Arc::clone(&self.stop);
        self.threads.push(thread::spawn(move || {
            let (mut errors, mut took) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let t = Instant::now();
                if let Err(e) = op(i) {
                    errors.push(format!("{what} #{i}: {e}"));
                }
                took.push(t.elapsed());
                thread::sleep(Duration::from_millis(2));
            }
            (errors, took)
        }));
    }

    pub fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let (mut errors, mut latencies) = (Vec::new(), Vec::new());
        for t in self.threads {
            let (e, l) = t.join().expect("load thread");
            errors.extend(e);
            latencies.extend(l);
        }
        latencies.sort();
        Outcome { errors, latencies }
    }
}
