//! Logging in, once for every way in: a secret checked, a failure made slow, counted,
//! budgeted per address and per user, and logged at a throttled rate.
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
//! * One user may be failed [`FAILURES_PER_USER`] times per [`FAILURE_WINDOW`], from every
//!   address together; past that, attempts to log in as that user are refused at once,
//!   right secret or not, until the window ends. Guessers on all sixty machines of a lab
//!   together get no more guesses at one user's secret than that. The price: a guesser
//!   can keep a user out, a minute at a time. sshd has no such limit; Windows' account lockout and
//!   most web sites do, and pay the same price. Attempts refused for a spent budget, of
//!   an address or a user, are counted in `STATS` (`auth_locked_out`).
//! * A connection is closed after [`FAILURES_PER_CONNECTION`] failures (see `session.rs`),
//!   as sshd's `MaxAuthTries` closes a session.
//! * The log gets a few lines per interval and a count of the rest: a flood of guesses
//!   cannot flood the instructor's terminal.
//!
//! What is remembered per address and per user is bounded: old windows are forgotten, and
//! at most [`MAX_ADDRESSES`] addresses (and as many user names) are tracked at once.

use std::collections::HashMap;
use std::hash::Hash;
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

/// How many failed attempts to log in as one user are allowed per [`FAILURE_WINDOW`],
/// from every address together: three classrooms' worth of typos, and a distributed
/// guesser's whole allowance.
pub const FAILURES_PER_USER: u32 = 30;

/// The window of [`FAILURES_PER_ADDRESS`] and [`FAILURES_PER_USER`].
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

/// Failures per key (an address, a user name) in the current window, each key within a
/// budget of `limit`.
#[derive(Debug)]
struct Budgets<K> {
    limit: u32,
    windows: Mutex<HashMap<K, Window>>,
}

impl<K: Hash + Eq + Clone> Budgets<K> {
    fn new(limit: u32) -> Budgets<K> {
        Budgets {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt from `key`'s budget, as a failure, before the secret is even
    /// looked at; or says how long `key` must still wait, if it has none left. Taking and
    /// checking under one lock is what keeps the budget exact: guessers on many
    /// connections at once cannot all pass a check made before any of them is counted.
    fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock();
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(key) {
            forget_oldest(&mut windows, now);
        }
        let window = windows.entry(key.clone()).or_insert(Window {
            started: now,
            failures: 0,
        });
        let ends = window.started + FAILURE_WINDOW;
        if now >= ends {
            *window = Window {
                started: now,
                failures: 0,
            };
        } else if window.failures >= self.limit {
            return Err(ends - now);
        }
        window.failures += 1;
        Ok(())
    }

    /// Gives back an attempt [`take`](Self::take) took, which turned out not to be a
    /// failure (the secret was right, or another budget refused it first).
    fn give_back(&self, key: &K) {
        if let Some(window) = self.windows.lock().get_mut(key) {
            window.failures = window.failures.saturating_sub(1);
        }
    }
}

/// The users, and what is remembered of failed attempts. One per broker, in the router.
#[derive(Debug)]
pub struct Logins {
    access: Access,
    addresses: Budgets<IpAddr>,
    users: Budgets<String>,
    warnings: Mutex<Throttle>,
}

impl Logins {
    /// Logins against `access`'s users.
    pub fn new(access: Access) -> Logins {
        Logins {
            access,
            addresses: Budgets::new(FAILURES_PER_ADDRESS),
            users: Budgets::new(FAILURES_PER_USER),
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
    /// [`ProtocolError::AuthFailed`], [`ProtocolError::TooManyFailures`] for an address
    /// that used up its budget, or [`ProtocolError::UserOutOfAttempts`] for a user whose
    /// budget is used up.
    pub fn log_in(
        &self,
        from: IpAddr,
        who: &dyn std::fmt::Display,
        user: &str,
        secret: &str,
        stats: &Stats,
    ) -> Result<String, ProtocolError> {
        let now = Instant::now();
        if let Err(wait) = self.addresses.take(&from, now) {
            stats.auth_locked_out.fetch_add(1, Ordering::Relaxed);
            self.warn(now, format_args!("{who} is out of login attempts"));
            return Err(ProtocolError::TooManyFailures {
                wait_secs: wait.as_secs().max(1),
            });
        }
        let user_key = user.to_string();
        if let Err(wait) = self.users.take(&user_key, now) {
            self.addresses.give_back(&from);
            stats.auth_locked_out.fetch_add(1, Ordering::Relaxed);
            self.warn(
                now,
                format_args!(
                    "{who} tried to log in as {}, who is out of login attempts",
                    escaped(user)
                ),
            );
            return Err(ProtocolError::UserOutOfAttempts {
                wait_secs: wait.as_secs().max(1),
            });
        }
        if let Some(name) = self.access.authenticate(user, secret) {
            self.addresses.give_back(&from);
            self.users.give_back(&user_key);
            return Ok(name.to_string());
        }
        stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        // Only this client's own thread waits: a guesser gets one answer per delay,
        // everyone else is served as before.
        std::thread::sleep(FAILURE_DELAY);
        self.warn(
            now,
            format_args!("{who} failed to authenticate as {}", escaped(user)),
        );
        Err(ProtocolError::AuthFailed)
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
fn forget_oldest<K: Hash + Eq + Clone>(windows: &mut HashMap<K, Window>, now: Instant) {
    windows.retain(|_, window| now < window.started + FAILURE_WINDOW);
    if windows.len() >= MAX_ADDRESSES {
        let oldest = windows
            .iter()
            .min_by_key(|(_, window)| window.started)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            windows.remove(&key);
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
            assert!(logins.addresses.take(&from, now).is_ok());
        }
        assert!(logins.addresses.take(&from, now).is_err());
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
        assert!(logins.addresses.take(&from, later).is_ok());
        assert_eq!(stats.auth_locked_out.load(Ordering::Relaxed), 1);
    }

    /// Guesses at one user's secret from many addresses (each within its own budget) use
    /// up the user's: then even the right secret is refused, from anywhere, until the
    /// window ends; other users are not affected.
    #[test]
    fn a_user_out_of_attempts_is_refused_from_every_address() {
        let logins = Logins::new(Access::parse("user alice s3cret\nuser bob b0b\n").unwrap());
        let stats = Stats::default();
        let now = Instant::now();
        for n in 0..FAILURES_PER_USER {
            let from = IpAddr::from([10, 0, 1, (n % 200) as u8]);
            assert!(logins.users.take(&"alice".to_string(), now).is_ok());
            assert!(logins.addresses.take(&from, now).is_ok());
        }
        let fresh: IpAddr = "10.0.2.1".parse().unwrap();
        let refused = logins.log_in(fresh, &"#9", "alice", "s3cret", &stats);
        assert!(
            matches!(refused, Err(ProtocolError::UserOutOfAttempts { wait_secs }) if wait_secs <= 60),
            "{refused:?}"
        );
        assert_eq!(
            logins.log_in(fresh, &"#10", "bob", "b0b", &stats),
            Ok("bob".to_string())
        );
        assert_eq!(stats.auth_locked_out.load(Ordering::Relaxed), 1);
        assert_eq!(
            stats.auth_failures.load(Ordering::Relaxed),
            0,
            "nothing was checked"
        );
        assert!(logins
            .users
            .take(&"alice".to_string(), now + FAILURE_WINDOW)
            .is_ok());
    }

    /// Guesses on many connections at once from one address: exactly the budget's worth
    /// are looked at, however they interleave, and a right secret takes nothing from it.
    #[test]
    fn guesses_at_once_get_no_more_than_the_budget() {
        let logins = std::sync::Arc::new(logins());
        let stats = std::sync::Arc::new(Stats::default());
        let from: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(
            logins.log_in(from, &"#0", "alice", "s3cret", &stats),
            Ok("alice".to_string())
        );
        let start = std::sync::Arc::new(std::sync::Barrier::new(24));
        let guessers: Vec<_> = (0..24)
            .map(|n| {
                let (logins, stats, start) = (logins.clone(), stats.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    logins.log_in(from, &n, "alice", "guess", &stats)
                })
            })
            .collect();
        let answers: Vec<_> = guessers.into_iter().map(|g| g.join().unwrap()).collect();
        let looked_at = answers
            .iter()
            .filter(|a| matches!(a, Err(ProtocolError::AuthFailed)))
            .count();
        assert_eq!(looked_at, FAILURES_PER_ADDRESS as usize);
        assert_eq!(
            stats.auth_failures.load(Ordering::Relaxed),
            u64::from(FAILURES_PER_ADDRESS)
        );
    }

    #[test]
    fn the_table_of_addresses_stays_bounded() {
        let logins = logins();
        let now = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 10) {
            let _ = logins.addresses.take(&IpAddr::from(n.to_be_bytes()), now);
            let _ = logins.users.take(&format!("user{n}"), now);
        }
        assert_eq!(logins.addresses.windows.lock().len(), MAX_ADDRESSES);
        assert_eq!(logins.users.windows.lock().len(), MAX_ADDRESSES);
    }
}
