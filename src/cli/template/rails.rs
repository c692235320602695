//! The shrink guard: a directory that loses more than a set share of its registrations
//! at once is held back, not applied, until that state has lasted a hold time.
//!
//! Why: a registry hiccup or an expired session on the registrars' side makes many
//! registrations vanish together, and they usually come back within a session
//! timeout. Applying that would empty (or gut) every load balancer of the fleet at the
//! same second. A real scale-down persists, and is applied after the hold, loudly.
//! Small directories (fewer than `min` entries before) are never held: two servers
//! going to none is an ordinary change. Pinterest's ZooKeeper update monitor and
//! Finagle's serverset stabilizer do the same.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The guard's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shrink {
    /// Hold when a directory loses more than this share (0..1] of its entries.
    pub fraction: f64,
    /// Only directories that had at least this many entries are held.
    pub min: usize,
    /// How long a shrink must last before it is applied.
    pub hold: Duration,
}

impl Default for Shrink {
    fn default() -> Shrink {
        Shrink { fraction: 0.5, min: 3, hold: Duration::from_secs(30) }
    }
}

/// One directory that shrank too much.
#[derive(Debug, Clone, PartialEq)]
pub struct Loss {
    /// The directory.
    pub dir: PathBuf,
    /// Entries in the output applied last.
    pub from: usize,
    /// Entries now.
    pub to: usize,
}

/// What to do with a render.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Write it.
    Apply,
    /// Write it, although it shrinks: the shrink lasted the hold time.
    ApplyAfterHold(Vec<Loss>),
    /// Keep the old output until `until`, then look again.
    Hold(Vec<Loss>, Instant),
}

/// The guard of one template: the entry counts of the output applied last.
#[derive(Debug, Default)]
pub struct Guard {
    applied: Option<BTreeMap<PathBuf, usize>>,
    held_since: Option<Instant>,
}

impl Guard {
    /// Judges a render that saw `counts` at `now`.
    pub fn judge(&mut self, shrink: &Shrink, counts: &BTreeMap<PathBuf, usize>, now: Instant) -> Verdict {
        let Some(applied) = &self.applied else { return Verdict::Apply };
        let losses: Vec<Loss> = counts
            .iter()
            .filter_map(|(dir, &to)| {
                let from = *applied.get(dir)?;
                let lost = from.saturating_sub(to) as f64;
                (from >= shrink.min && lost > shrink.fraction * from as f64).then(|| Loss {
                    dir: dir.clone(),
                    from,
                    to,
                })
            })
            .collect();
        if losses.is_empty() {
            self.held_since = None;
            return Verdict::Apply;
        }
        let since = *self.held_since.get_or_insert(now);
        if now >= since + shrink.hold {
            Verdict::ApplyAfterHold(losses)
        } else {
            Verdict::Hold(losses, since + shrink.hold)
        }
    }

    /// Records that the output with `counts` is in place (written, or found identical).
    pub fn applied(&mut self, counts: &BTreeMap<PathBuf, usize>) {
        self.applied = Some(counts.clone());
        self.held_since = None;
    }

    /// Whether a shrink is being held.
    pub fn holding(&self) -> bool {
        self.held_since.is_some()
    }
}

/// `dir: 10 → 2 entries (-80%)`, for the log and the status.
pub fn describe(losses: &[Loss]) -> String {
    let parts: Vec<String> = losses
        .iter()
        .map(|l| {
            let pct = 100 * (l.from - l.to.min(l.from)) / l.from.max(1);
            format!("{}: {} -> {} entries (-{pct}%)", l.dir.display(), l.from, l.to)
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(n: usize) -> BTreeMap<PathBuf, usize> {
        BTreeMap::from([(PathBuf::from("/p"), n)])
    }

    #[test]
    fn first_render_and_small_changes_apply() {
        let s = Shrink::default();
        let mut g = Guard::default();
        let t = Instant::now();
        assert_eq!(g.judge(&s, &counts(10), t), Verdict::Apply);
        g.applied(&counts(10));
        assert_eq!(g.judge(&s, &counts(5), t), Verdict::Apply, "exactly half is not more than half");
        assert_eq!(g.judge(&s, &counts(20), t), Verdict::Apply);
        g.applied(&counts(2));
        assert_eq!(g.judge(&s, &counts(0), t), Verdict::Apply, "below min");
    }

    #[test]
    fn a_big_shrink_is_held_then_applied_if_it_lasts() {
        let s = Shrink::default();
        let mut g = Guard::default();
        let t = Instant::now();
        g.applied(&counts(10));
        let loss = vec![Loss { dir: "/p".into(), from: 10, to: 2 }];
        assert_eq!(g.judge(&s, &counts(2), t), Verdict::Hold(loss.clone(), t + s.hold));
        assert!(g.holding());
        // Still shrunk later: the hold counts from the first sight.
        assert_eq!(
            g.judge(&s, &counts(1), t + s.hold / 2),
            Verdict::Hold(vec![Loss { to: 1, ..loss[0].clone() }], t + s.hold)
        );
        assert_eq!(g.judge(&s, &counts(2), t + s.hold), Verdict::ApplyAfterHold(loss));
        assert_eq!(describe(&[Loss { dir: "/p".into(), from: 10, to: 2 }]), "/p: 10 -> 2 entries (-80%)");
    }

    #[test]
    fn a_shrink_that_recovers_is_never_applied() {
        let s = Shrink::default();
        let mut g = Guard::default();
        let t = Instant::now();
        g.applied(&counts(10));
        assert!(matches!(g.judge(&s, &counts(0), t), Verdict::Hold(..)));
        assert_eq!(g.judge(&s, &counts(9), t + Duration::from_secs(1)), Verdict::Apply);
        assert!(!g.holding());
        // A new shrink starts a new hold.
        assert!(matches!(g.judge(&s, &counts(0), t + s.hold * 2), Verdict::Hold(_, u) if u == t + s.hold * 3));
    }
}
