//! When to render: `wait=MIN:MAX` debounce and `splay`, and the durations they take.
//!
//! A change starts a window: the render happens once changes have stopped for MIN, and
//! at the latest MAX after the first change, so a burst of a hundred registrations
//! gives one render and a never-ending trickle still renders every MAX. Splay is a
//! random delay per apply, so that a fleet of load balancers that all heard the same
//! change reloads over the splay interval instead of in the same second.

use std::time::{Duration, Instant};

/// Debounce settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// Quiet time after the last change.
    pub min: Duration,
    /// Longest delay after the first change.
    pub max: Duration,
}

impl Default for Wait {
    fn default() -> Wait {
        Wait { min: Duration::from_millis(200), max: Duration::from_secs(2) }
    }
}

/// Parses `MIN[:MAX]` (MAX defaults to 4×MIN, as consul-template's).
pub fn parse_wait(s: &str) -> Result<Wait, String> {
    let (min, max) = match s.split_once(':') {
        Some((a, b)) => (parse_duration(a)?, parse_duration(b)?),
        None => {
            let min = parse_duration(s)?;
            (min, min * 4)
        }
    };
    if max < min {
        return Err(format!("wait {s}: MAX must not be less than MIN"));
    }
    Ok(Wait { min, max })
}

/// Parses `250ms`, `2s`, `1.5s`, `5m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?}: expected e.g. 250ms, 2s, 5m");
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let secs = n * scale;
    if !secs.is_finite() || !(0.0..=86400.0 * 7.0).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The debounce window.
#[derive(Debug, Default)]
pub struct Debounce {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debounce {
    /// A change was heard at `now`.
    pub fn change(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When to render, if a change is pending.
    pub fn due(&self, wait: &Wait) -> Option<Instant> {
        Some((self.last? + wait.min).min(self.first? + wait.max))
    }

    /// The render started: changes from now on open a new window.
    pub fn clear(&mut self) {
        *self = Debounce::default();
    }
}

/// A random delay in `[0, splay)`.
pub fn splay(splay: Duration) -> Duration {
    if splay.is_zero() {
        return Duration::ZERO;
    }
    let max = u64::try_from(splay.as_micros()).unwrap_or(u64::MAX).max(1);
    Duration::from_micros(fastrand::u64(0..max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        for bad in ["", "x", "-1s", "2d", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_wait("1s:5s"), Ok(Wait { min: Duration::from_secs(1), max: Duration::from_secs(5) }));
        assert_eq!(parse_wait("1s"), Ok(Wait { min: Duration::from_secs(1), max: Duration::from_secs(4) }));
        assert!(parse_wait("5s:1s").is_err());
    }

    #[test]
    fn a_burst_renders_once_after_the_quiet_time_and_a_trickle_by_max() {
        let wait = Wait { min: Duration::from_millis(200), max: Duration::from_secs(2) };
        let t = Instant::now();
        let mut d = Debounce::default();
        assert_eq!(d.due(&wait), None);
        for i in 0..100 {
            d.change(t + Duration::from_millis(i * 5));
        }
        assert_eq!(d.due(&wait), Some(t + Duration::from_millis(495 + 200)));
        // A change every 100 ms forever: rendered at MAX after the first.
        for i in 0..100 {
            d.change(t + Duration::from_millis(i * 100));
        }
        assert_eq!(d.due(&wait), Some(t + Duration::from_secs(2)));
        d.clear();
        assert_eq!(d.due(&wait), None);
    }

    #[test]
    fn splay_stays_below_its_bound() {
        assert_eq!(splay(Duration::ZERO), Duration::ZERO);
        let bound = Duration::from_millis(50);
        let draws: Vec<Duration> = (0..200).map(|_| splay(bound)).collect();
        assert!(draws.iter().all(|d| *d < bound));
        assert!(draws.iter().any(|d| *d != draws[0]), "not random: {:?}", &draws[..5]);
    }
}
