//! The broker's counters, as `STATS` reports them.
//!
//! Each counter is an atomic integer that threads bump without any lock, so counting adds
//! no waiting to the delivery path. `Relaxed` ordering is enough: each counter is only ever
//! read as a number on its own, never used to decide what another thread may see.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The registry's counts, kept up to date by the registry, so that `STATS` never walks it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Topics and wildcard filters with at least one subscriber.
    pub topics: usize,
    /// (topic or filter, subscriber) pairs.
    pub subscriptions: usize,
    /// Retained messages kept.
    pub retained: usize,
}

/// Counters shared by every thread of one broker.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// Connections open right now.
    pub connections_current: AtomicU64,
    /// Connections accepted since the broker started (refused ones not counted).
    pub connections_total: AtomicU64,
    /// Connections refused because the broker was full.
    pub connections_refused: AtomicU64,
    /// `PUBLISH` and `RETAIN` commands handled (the broker's own `$SYS` figures are not
    /// counted).
    pub published: AtomicU64,
    /// `DELIVER` lines handed to subscribers (one publish to three subscribers is three).
    pub delivered: AtomicU64,
    /// Lines that never reached their subscriber: offered to one already closed, or
    /// waiting for one when it was cut off or went away.
    pub dropped: AtomicU64,
    /// `ERROR` replies sent.
    pub errors: AtomicU64,
    /// Subscribers cut off because they stopped reading or fell too far behind.
    pub slow_consumers: AtomicU64,
    /// Subscribers whose own writer thread writes to them: behind now, or caught up less
    /// than a second ago (see `outbox.rs`).
    pub subscribers_behind: AtomicU64,
    /// The broker takes datagrams (`--udp-port`): only then does `STATS` list the UDP
    /// counters below, so a broker without UDP shows exactly what it always did.
    pub udp_enabled: AtomicBool,
    /// Datagrams received on the UDP port.
    pub udp_datagrams_in: AtomicU64,
    /// Datagrams sent from it: deliveries, one per `DELIVER` line, and replies.
    pub udp_datagrams_out: AtomicU64,
    /// Datagrams the broker could not send: a `DELIVER` line too big for one, a
    /// subscriber too far behind, or the operating system refusing.
    pub udp_datagrams_dropped: AtomicU64,
    /// Addresses holding a UDP lease right now.
    pub udp_subscribers: AtomicU64,
    /// Datagrams the broker chose not to send: past an address's budget, past the answers
    /// one datagram may get, or more bytes than an address that has not proven itself sent
    /// (see `udp.rs`).
    pub udp_withheld: AtomicU64,
    /// Datagrams dropped because the UDP sender's queue was full (see `udp/sender.rs`).
    pub udp_queue_dropped: AtomicU64,
    /// `AUTH` commands with an unknown user or a wrong secret (listed by `STATS` only on a
    /// broker with access control).
    pub auth_failures: AtomicU64,
    /// `AUTH` attempts refused without a look at the secret, because the address's or the
    /// user's failures used up their budget (see `auth.rs`; listed with `auth_failures`).
    pub auth_locked_out: AtomicU64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            started: Instant::now(),
            connections_current: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            subscribers_behind: AtomicU64::new(0),
            udp_enabled: AtomicBool::new(false),
            udp_datagrams_in: AtomicU64::new(0),
            udp_datagrams_out: AtomicU64::new(0),
            udp_datagrams_dropped: AtomicU64::new(0),
            udp_subscribers: AtomicU64::new(0),
            udp_withheld: AtomicU64::new(0),
            udp_queue_dropped: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            auth_locked_out: AtomicU64::new(0),
        }
    }
}

impl Stats {
    /// Every counter as `(name, value)`, in the order `STATS` prints them. The registry's
    /// counts come from the caller, who asks it.
    pub fn snapshot(&self, registry: Totals) -> Vec<(&'static str, u64)> {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut counters = vec![
            ("uptime_seconds", self.started.elapsed().as_secs()),
            ("connections_current", read(&self.connections_current)),
            ("connections_total", read(&self.connections_total)),
            ("connections_refused", read(&self.connections_refused)),
            ("topics", registry.topics as u64),
            ("subscriptions", registry.subscriptions as u64),
            ("messages_published", read(&self.published)),
            ("deliveries", read(&self.delivered)),
            ("errors", read(&self.errors)),
            ("slow_consumers_disconnected", read(&self.slow_consumers)),
            ("subscribers_behind", read(&self.subscribers_behind)),
            ("messages_dropped", read(&self.dropped)),
            ("retained", registry.retained as u64),
        ];
        if self.udp_enabled.load(Ordering::Relaxed) {
            counters.extend([
                ("udp_datagrams_in", read(&self.udp_datagrams_in)),
                ("udp_datagrams_out", read(&self.udp_datagrams_out)),
                ("udp_datagrams_dropped", read(&self.udp_datagrams_dropped)),
                ("udp_subscribers", read(&self.udp_subscribers)),
                ("udp_withheld", read(&self.udp_withheld)),
                ("udp_queue_dropped", read(&self.udp_queue_dropped)),
            ]);
        }
        counters
    }
}
