//! Requests the mount makes for itself yield to the requests programs wait for.
//!
//! ZooKeeper answers a session's requests in order, so a request the mount sends for
//! itself — a multi-read learning the kinds of children listed by name
//! (`View::learn_kinds`) — delays every read sent after it by the time the server takes
//! to answer it (about a millisecond for 100 children). Sent between the reads of a
//! cold walk, such batches took the walk from 533 to 909 ms. So [`Foreground`] counts
//! the requests programs wait for (every `Session::call_async`, and a lookup's batch)
//! and notes when the last one ended, and background work takes its turn
//! ([`Foreground::turn`]) only once none has been out for [`QUIET`] — or, under steady
//! load, [`MAX_DEFER`] after it began to wait, so that it still progresses. One
//! background request is out at a time, for the whole mount.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long no foreground request may have been out before background work goes:
/// longer than the gap between the requests of a program reading one file after
/// another (a few hundred µs here), so a walk is not interleaved with batches.
pub const QUIET: Duration = Duration::from_millis(2);

/// The longest a background request waits for a quiet moment: under steady load the
/// mount still learns about 100 kinds per this period, and each such request delays at
/// most one foreground read.
pub const MAX_DEFER: Duration = Duration::from_millis(100);

/// The foreground's requests in flight, and the background's turn.
pub struct Foreground {
    out: AtomicUsize,
    /// When the last foreground request ended, in µs since `epoch`.
    last: AtomicU64,
    epoch: Instant,
    /// Held by the background request out (and the one waiting for its quiet moment):
    /// one at a time, in the order they asked. An async mutex, as it is held across
    /// that request's round trip; it guards nothing but that order, and its holder
    /// takes no other lock across an await, so it cannot deadlock.
    gate: tokio::sync::Mutex<()>,
}

/// A foreground request in flight; its end is noted when dropped.
pub struct Busy<'a>(&'a Foreground);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let f = self.0;
        f.last.store(f.now(), Ordering::SeqCst);
        f.out.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The background's turn: its one request may go while this is held.
pub struct Turn<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

impl Default for Foreground {
    fn default() -> Self {
        Foreground {
            out: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            epoch: Instant::now(),
            gate: Default::default(),
        }
    }
}

impl Foreground {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Marks a request a program waits for as out until the guard drops.
    pub fn busy(&self) -> Busy<'_> {
        self.out.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    /// How long no foreground request has been out (zero while one is).
    fn quiet_for(&self) -> Duration {
        if self.out.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.now().saturating_sub(self.last.load(Ordering::SeqCst)))
    }

    /// Waits for the background's turn: once the previous background request is done
    /// and no foreground request has been out for [`QUIET`], or [`MAX_DEFER`] after
    /// this began waiting. Hold the turn until the background request is answered.
    pub async fn turn(&self) -> Turn<'_> {
        let gate = self.gate.lock().await;
        let asked = Instant::now();
        loop {
            let quiet = self.quiet_for();
            let waited = asked.elapsed();
            if quiet >= QUIET || waited >= MAX_DEFER {
                return Turn(gate);
            }
            let left = (QUIET - quiet).min(MAX_DEFER - waited);
            tokio::time::sleep(left.max(Duration::from_micros(500))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_background_waits_for_a_quiet_moment_or_at_most_max_defer() {
        let f = Foreground::default();
        let start = Instant::now();
        drop(f.turn().await);
        assert!(start.elapsed() < MAX_DEFER, "nothing was out: the turn comes after QUIET");

        // A foreground request out all along: the turn still comes, after MAX_DEFER.
        let busy = f.busy();
        let start = Instant::now();
        let turn = f.turn().await;
        assert!(start.elapsed() >= MAX_DEFER, "went after {:?} although a read was out", start.elapsed());
        drop(turn);
        drop(busy);
    }

    #[test]
    fn quiet_is_measured_from_the_end_of_the_last_foreground_request() {
        let f = Foreground::default();
        let busy = f.busy();
        assert_eq!(f.quiet_for(), Duration::ZERO, "a request is out");
        drop(busy);
        assert!(f.quiet_for() < QUIET, "one just ended");
        std::thread::sleep(QUIET);
        assert!(f.quiet_for() >= QUIET);
    }
}
