//! Logging in, once for every way in: a secret checked, a failure made slow, counted,
//! budgeted per address and logged at a throttled rate.
//!
//! A client proves who it is with `AUTH <user> <secret>` on the line protocol (TCP, the
//! JSON dialect, a WebSocket) or an `Authorization: Basic` header over HTTP. Each of those
//! is only a way of carrying the two words: what happens to them is decided here, so that
//! a guesser finds every door equally slow.
//!
//! * A wrong secret is answered after [`crate::access::FAILURE_DELAY`],
//!   on the guessing client's own thread (nobody else waits), and counted in `STATS`
//!   (`auth_failures`).
//! * One address may fail [`FAILURES_PER_ADDRESS`] times per [`FAILURE_WINDOW`]; past that
//!   its attempts are refused at once, without looking at the secret, until the window
//!   ends. Opening more connections does not buy more guesses. (sshd's `MaxStartups` and
//!   fail2ban do this for SSH; Mosquitto leaves it to the operator's firewall.)
//! * A connection is closed after [`FAILURES_PER_CONNECTION`] failures (see `session.rs`),
//!   as sshd's `MaxAuthTries` closes a session.
//! * The log gets a few lines per interval and a count of the rest: a flood of guesses
//!   cannot flood the instructor's terminal.
//!
//! What is remembered per address is bounded: old windows are forgotten, and at most
//! [`MAX_ADDRESSES`] addresses are tracked at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::access::{Access, FAILURE_DELAY};
use crate::protocol::ProtocolError;
use crate::stats::Stats;
use crate::text::escaped;
use crate::throttle::{and_more, Throttle, Verdict, QUIETING};

/// How many failed attempts one connection may make before it is closed.
pub const FAILURES_PER_CONNECTION: u32 = 3;

/// How many failed attempts one address may make per [`FAILURE_WINDOW`], over every
/// connection and every way in together: with the delay, a guesser gets ten guesses a
/// minute, while a student who mistypes a secret a few times never meets the limit.
pub const FAILURES_PER_ADDRESS: u32 = 10;

/// The window of [`FAILURES_PER_ADDRESS`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The most addresses whose failures are remembered at once. A lab network has a few
/// hundred; past this, windows that ended are forgotten first, and if none has, the
/// oldest is.
pub const MAX_ADDRESSES: usize = 4096;

/// How many failure warnings are logged per [`LOG_INTERVAL`]; the rest are counted.
const LOGGED_PER_INTERVAL: u32 = 5;
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One address's failures in the current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// The users, and what is remembered of failed attempts. One per broker, in the router.
#[derive(Debug)]
pub struct Logins {
    access: Access,
    windows: Mutex<HashMap<IpAddr, Window>>,
    warnings: Mutex<Throttle>,
}

impl Logins {
    /// Logins against `access`'s users.
    pub fn new(access: Access) -> Logins {
        Logins {
            access,
            windows: Mutex::new(HashMap::new()),
            warnings: Mutex::new(Throttle::new(LOGGED_PER_INTERVAL, LOG_INTERVAL)),
        }
    }

    /// The auth file's users and rules.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Checks `user`'s `secret` for a client at `from` (`who` names it in the log). Returns
    /// the user's name, or the refusal to answer with, after the delay; the failure is
    /// counted in `stats`.
    ///
    /// # Errors
    /// [`ProtocolError::AuthFailed`], or [`ProtocolError::TooManyFailures`] for an address
    /// that used up its budget.
    pub fn log_in(
        &self,
        from: IpAddr,
        who: &dyn std::fmt::Display,
        user: &str,
        secret: &str,
        stats: &Stats,
    ) -> Result<String, ProtocolError> {
        let now = Instant::now();
        if let Some(wait) = self.budget_spent(from, now) {
            self.warn(now, format_args!("{who} is out of login attempts"));
            return Err(ProtocolError::TooManyFailures {
                wait_secs: wait.as_secs().max(1),
            });
        }
        if let Some(name) = self.access.authenticate(user, secret) {
            return Ok(name.to_string());
        }
        stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        self.count_failure(from, now);
        // Only this client's own thread waits: a guesser gets one answer per delay,
        // everyone else is served as before.
        std::thread::sleep(FAILURE_DELAY);
        self.warn(
            now,
            format_args!("{who} failed to authenticate as {}", escaped(user)),
        );
        Err(ProtocolError::AuthFailed)
    }

    /// How long `from` must still wait, if it has used up its failures in this window.
    fn budget_spent(&self, from: IpAddr, now: Instant) -> Option<Duration> {
        let windows = self.windows.lock();
        let window = windows.get(&from)?;
        let ends = window.started + FAILURE_WINDOW;
        (window.failures >= FAILURES_PER_ADDRESS && now < ends).then(|| ends - now)
    }

    fn count_failure(&self, from: IpAddr, now: Instant) {
        let mut windows = self.windows.lock();
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&from) {
            forget_oldest(&mut windows, now);
        }
        let window = windows.entry(from).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= window.started + FAILURE_WINDOW {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures += 1;
    }

    fn warn(&self, now: Instant, event: std::fmt::Arguments<'_>) {
        let verdict = self.warnings.lock().check(now);
        match verdict {
            Verdict::Log { left_out } => log::warn!("{event}{}", and_more(left_out)),
            Verdict::LogLast => log::warn!("{event}{QUIETING}"),
            Verdict::Quiet => {}
        }
    }
}

/// Makes room in a full table: every window that ended goes; if none has, the oldest.
fn forget_oldest(windows: &mut HashMap<IpAddr, Window>, now: Instant) {
    windows.retain(|_, window| now < window.started + FAILURE_WINDOW);
    if windows.len() >= MAX_ADDRESSES {
        let oldest = windows
            .iter()
            .min_by_key(|(_, window)| window.started)
            .map(|(addr, _)| *addr);
        if let Some(addr) = oldest {
            windows.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logins() -> Logins {
        Logins::new(Access::parse("user alice s3cret\n").unwrap())
    }

    #[test]
    fn an_address_out_of_attempts_is_refused_without_a_look_at_the_secret() {
        let logins = logins();
        let from: IpAddr = "10.0.0.7".parse().unwrap();
        let now = Instant::now();
        for _ in 0..FAILURES_PER_ADDRESS {
            assert!(logins.budget_spent(from, now).is_none());
            logins.count_failure(from, now);
        }
        assert!(logins.budget_spent(from, now).is_some());
        let stats = Stats::default();
        let refused = logins.log_in(from, &"#1", "alice", "s3cret", &stats);
        assert!(matches!(
            refused,
            Err(ProtocolError::TooManyFailures { .. })
        ));
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        assert_eq!(
            logins.log_in(other, &"#2", "alice", "s3cret", &stats),
            Ok("alice".to_string())
        );
        // The window ends, and the address may try again.
        let later = now + FAILURE_WINDOW;
        assert!(logins.budget_spent(from, later).is_none());
    }

    #[test]
    fn the_table_of_addresses_stays_bounded() {
        let logins = logins();
        let now = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 10) {
            logins.count_failure(IpAddr::from(n.to_be_bytes()), now);
        }
        assert_eq!(logins.windows.lock().len(), MAX_ADDRESSES);
    }
}
