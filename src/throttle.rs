//! Logs in proportion to time, not to input.
//!
//! A log line per bad line lets a client that sends a hundred thousand two-byte lines
//! write twenty megabytes to the instructor's log (and terminal). A [`Throttle`] lets the
//! first few events of each interval through in full, counts the rest, and has the next
//! line that gets through say how many were left out. Whatever a client sends, it so
//! causes at most a few log lines per interval. (Production servers do the same: NATS
//! rate-limits its "slow consumer" and "stalled producer" warnings, the Linux kernel its
//! `printk`s.)

use std::time::{Duration, Instant};

/// Counts events in fixed windows and says which to log. See the module docs.
///
/// ```
/// use std::time::{Duration, Instant};
/// use pubsub_lab::throttle::{Throttle, Verdict};
/// let mut throttle = Throttle::new(2, Duration::from_secs(10));
/// let start = Instant::now();
/// assert_eq!(throttle.check(start), Verdict::Log { left_out: 0 });
/// assert_eq!(throttle.check(start), Verdict::Log { left_out: 0 });
/// assert_eq!(throttle.check(start), Verdict::LogLast);
/// assert_eq!(throttle.check(start), Verdict::Quiet);
/// assert_eq!(throttle.check(start), Verdict::Quiet);
/// // The next window's first event says what the last one left out.
/// let later = start + Duration::from_secs(11);
/// assert_eq!(throttle.check(later), Verdict::Log { left_out: 2 });
/// ```
#[derive(Debug, Clone)]
pub struct Throttle {
    burst: u32,
    interval: Duration,
    window_start: Option<Instant>,
    logged_in_window: u32,
    left_out: u64,
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `left_out` events before it were not logged (say so when it is not 0).
    Log {
        /// Events counted but not logged since the last one that was.
        left_out: u64,
    },
    /// The first event past this interval's share: log it, and say that the ones like it
    /// that follow in this interval will only be counted ([`QUIETING`]).
    LogLast,
    /// Count it, log nothing.
    Quiet,
}

/// What a line logged as [`Verdict::LogLast`] adds: the reader learns at once that a flood
/// has started, not only when the next interval's first line gives its count.
pub const QUIETING: &str = " (more like it follow: they are counted, not logged)";

impl Throttle {
    /// Lets `burst` events through per `interval`.
    pub fn new(burst: u32, interval: Duration) -> Throttle {
        Throttle {
            burst,
            interval,
            window_start: None,
            logged_in_window: 0,
            left_out: 0,
        }
    }

    /// Says whether the event happening `now` is to be logged.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let in_window = self
            .window_start
            .is_some_and(|start| now.duration_since(start) < self.interval);
        if !in_window {
            self.window_start = Some(now);
            self.logged_in_window = 0;
        }
        self.logged_in_window += 1;
        if self.logged_in_window <= self.burst {
            Verdict::Log {
                left_out: std::mem::take(&mut self.left_out),
            }
        } else if self.logged_in_window == self.burst + 1 && self.left_out == 0 {
            Verdict::LogLast
        } else {
            self.left_out += 1;
            Verdict::Quiet
        }
    }

    /// Events counted and not logged since the last one that was: for a last summary
    /// when the source goes away.
    pub fn left_out(&self) -> u64 {
        self.left_out
    }
}

/// The words to add to a logged line that stands for others left out: ` (and 9997 more
/// like it)`, or nothing.
pub fn and_more(left_out: u64) -> String {
    if left_out == 0 {
        String::new()
    } else {
        format!(" (and {left_out} more like it, not logged)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_in_proportion_to_time() {
        let mut throttle = Throttle::new(3, Duration::from_secs(1));
        let start = Instant::now();
        let mut logged = 0;
        // 100,000 events over ten seconds: 3 a second get through.
        for n in 0..100_000u64 {
            let now = start + Duration::from_micros(n * 100);
            if throttle.check(now) != Verdict::Quiet {
                logged += 1;
            }
        }
        // Three a second, and a fourth that says the rest are counted: four a second.
        assert_eq!(logged, 40);
    }

    #[test]
    fn nothing_is_left_out_below_the_burst() {
        let mut throttle = Throttle::new(3, Duration::from_secs(1));
        let start = Instant::now();
        for n in 0..10u64 {
            let now = start + Duration::from_secs(n);
            assert_eq!(throttle.check(now), Verdict::Log { left_out: 0 });
        }
        assert_eq!(throttle.left_out(), 0);
        assert_eq!(and_more(0), "");
        assert_eq!(and_more(5), " (and 5 more like it, not logged)");
    }
}
