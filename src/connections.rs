//! The table of open connections: the slots (`--max-clients` in all, and
//! `--max-clients-per-ip` for any one address), how to close each connection when the
//! broker stops, the threads to wait for, and the log of comings and goings.
//!
//! Every listener admits its connections here, whatever protocol they speak, so the limits
//! count every client of the broker. A connection holds a [`Slot`] for as long as it
//! lives; dropping the slot (in the connection's cleanup, however its thread ends) gives it
//! back. When the broker stops, [`Connections::close_all_and_join`] closes every connection
//! that is still open, which wakes its thread, and waits for each thread to end.
//!
//! # Fair slots
//!
//! Without a limit per address, one student's script holding a thousand idle connections
//! locks the whole class out. So no address may hold more than `--max-clients-per-ip`
//! (64 by default, room for a dozen terminals and a benchmark's handful) at once. Peers on
//! loopback are exempt: a lab run on one machine has every client on `127.0.0.1`.
//!
//! An idle connection may stay as long as it likes: a subscriber waiting for its topic is
//! idle too, so the broker cannot tell a forgotten `nc` from a patient listener. A peer
//! whose machine vanished (unplugged, asleep) is only found out when the broker next
//! writes to it: `std::net` has no way to set TCP keepalives, which would probe it. An
//! instructor who finds the room full of such connections can see them with `CLIENTS`
//! (their `idle=` seconds, see `clients.rs`) and `KICK` them, or lower
//! `--max-clients-per-ip`.
//!
//! # A log that a flood cannot fill
//!
//! Each connection and each departure is logged, but through one [`Throttle`]: a burst of
//! thousands of connections produces a few lines a second and a count, not a line each.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::peer::{counts_per_address, ConnId};
use crate::stats::Stats;
use crate::throttle::{and_more, Throttle, Verdict, QUIETING};

/// How many connection events (a client arriving, leaving, or refused) are logged in full
/// per [`EVENT_INTERVAL`]; the rest are counted.
const EVENT_BURST: u32 = 20;

/// The interval of the connection events' throttle.
const EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// Something the broker can close to make a connection's thread end.
pub trait Close: Send + Sync {
    /// Closes the connection; its thread wakes up and runs its cleanup.
    fn close(&self);
}

/// The connection table. See the module docs.
pub struct Connections {
    max: usize,
    max_per_ip: usize,
    stats: Arc<Stats>,
    table: Mutex<Table>,
    events: Mutex<Throttle>,
}

#[derive(Default)]
struct Table {
    open: HashMap<ConnId, Arc<dyn Close>>,
    /// Connections per address, for the addresses that count (not loopback).
    per_ip: HashMap<IpAddr, usize>,
    /// Every connection thread not yet known to have finished.
    threads: Vec<JoinHandle<()>>,
}

/// Why a connection is not admitted. Its `Display` is the reason its client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken (`--max-clients`).
    Full {
        /// The limit.
        max: usize,
    },
    /// Its address already holds its share (`--max-clients-per-ip`).
    TooManyFrom {
        /// The address.
        ip: IpAddr,
        /// The limit per address.
        max: usize,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Full { max } => write!(f, "broker full ({max} clients)"),
            Refusal::TooManyFrom { ip, max } => {
                write!(f, "too many connections from {ip} ({max})")
            }
        }
    }
}

impl Refusal {
    /// What the operator can do about it, for the log.
    pub fn remedy(&self) -> &'static str {
        match self {
            Refusal::Full { .. } => "raise --max-clients to allow more",
            Refusal::TooManyFrom { .. } => {
                "raise --max-clients-per-ip if that machine really needs more"
            }
        }
    }
}

/// A connection's place in the table; dropping it frees the place.
pub struct Slot {
    connections: Arc<Connections>,
    conn: ConnId,
    ip: IpAddr,
}

impl Connections {
    /// An empty table admitting at most `max` connections at once, and at most
    /// `max_per_ip` from any one address other than loopback.
    pub fn new(max: usize, max_per_ip: usize, stats: Arc<Stats>) -> Arc<Connections> {
        Arc::new(Connections {
            max,
            max_per_ip,
            stats,
            table: Mutex::new(Table::default()),
            events: Mutex::new(Throttle::new(EVENT_BURST, EVENT_INTERVAL)),
        })
    }

    /// Takes a slot for connection `conn` from `ip`, which `closer` can close.
    ///
    /// # Errors
    /// A [`Refusal`] when the broker, or that address's share of it, is full.
    pub fn claim(
        self: &Arc<Self>,
        conn: ConnId,
        ip: IpAddr,
        closer: Arc<dyn Close>,
    ) -> Result<Slot, Refusal> {
        let mut table = self.table.lock();
        let refusal = if table.open.len() >= self.max {
            Some(Refusal::Full { max: self.max })
        } else if counts_per_address(ip)
            && table.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip
        {
            Some(Refusal::TooManyFrom {
                ip,
                max: self.max_per_ip,
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        table.open.insert(conn, closer);
        if counts_per_address(ip) {
            *table.per_ip.entry(ip).or_default() += 1;
        }
        self.stats
            .connections_current
            .fetch_add(1, Ordering::Relaxed);
        self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            connections: Arc::clone(self),
            conn,
            ip,
        })
    }

    /// Keeps a connection's thread, to be joined when the broker stops. Threads already
    /// finished are let go of here (dropping a finished thread's handle is all it needs),
    /// but only when the list is full: looking at every handle at every new connection made
    /// a crowd of 10,000 connecting at once cost about fifty million looks (each arrival
    /// looking at the handles of all the connections before it: 10,000 × 10,000 / 2).
    pub fn adopt(&self, thread: JoinHandle<()>) {
        let mut table = self.table.lock();
        let threads = &mut table.threads;
        if threads.len() == threads.capacity() {
            threads.retain(|thread| !thread.is_finished());
            // Room for as many again as are left: the next look is that many connections
            // away, so each handle is looked at a few times in all, not once per arrival.
            threads.reserve(threads.len().max(1));
        }
        threads.push(thread);
    }

    /// Logs a connection arriving, leaving or being refused, at `level`, unless a flood of
    /// them has used up this second's share; the next line that gets through says how
    /// many were left out.
    pub fn log_event(&self, level: log::Level, event: fmt::Arguments<'_>) {
        if !log::log_enabled!(level) {
            return;
        }
        let verdict = self.events.lock().check(Instant::now());
        match verdict {
            Verdict::Log { left_out } => log::log!(level, "{event}{}", and_more(left_out)),
            Verdict::LogLast => log::log!(level, "{event}{QUIETING}"),
            Verdict::Quiet => {}
        }
    }

    /// Closes every open connection, then waits for every connection thread to end,
    /// and for every thread those threads started meanwhile (a web connection may have
    /// started a Socket.IO session's thread just before it was closed).
    pub fn close_all_and_join(&self) {
        let open: Vec<Arc<dyn Close>> = self.table.lock().open.values().cloned().collect();
        for connection in open {
            connection.close();
        }
        loop {
            let threads = std::mem::take(&mut self.table.lock().threads);
            if threads.is_empty() {
                return;
            }
            // Joined without the lock: each thread's cleanup takes it to free its slot.
            for thread in threads {
                if thread.join().is_err() {
                    log::error!("a connection thread panicked");
                }
            }
        }
    }

    fn free(&self, conn: ConnId, ip: IpAddr) {
        let mut table = self.table.lock();
        if table.open.remove(&conn).is_none() {
            return;
        }
        if let Some(count) = table.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                table.per_ip.remove(&ip);
            }
        }
        self.stats
            .connections_current
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slot {
    /// The table this slot is in, for logging through its throttle.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.free(self.conn, self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl Close for Nothing {
        fn close(&self) {}
    }

    fn table(max: usize, max_per_ip: usize) -> Arc<Connections> {
        Connections::new(max, max_per_ip, Arc::new(Stats::default()))
    }

    #[test]
    fn one_address_gets_its_share_and_no_more_and_gets_it_back() {
        let connections = table(100, 2);
        let student: IpAddr = "10.0.0.7".parse().unwrap();
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        let first = connections.claim(1, student, Arc::new(Nothing)).unwrap();
        let _second = connections.claim(2, student, Arc::new(Nothing)).unwrap();
        let refused = connections
            .claim(3, student, Arc::new(Nothing))
            .err()
            .unwrap();
        assert_eq!(
            refused.to_string(),
            "too many connections from 10.0.0.7 (2)"
        );
        assert!(
            connections.claim(4, other, Arc::new(Nothing)).is_ok(),
            "others are not affected"
        );
        drop(first);
        assert!(
            connections.claim(5, student, Arc::new(Nothing)).is_ok(),
            "a freed slot is theirs again"
        );
    }

    #[test]
    fn loopback_is_exempt_from_the_share_but_not_from_the_total() {
        let connections = table(5, 2);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let slots: Vec<Slot> = (0..5)
            .map(|conn| connections.claim(conn, local, Arc::new(Nothing)).unwrap())
            .collect();
        let refused = connections
            .claim(9, local, Arc::new(Nothing))
            .err()
            .unwrap();
        assert_eq!(refused.to_string(), "broker full (5 clients)");
        drop(slots);
        let v6: IpAddr = "::1".parse().unwrap();
        assert!(connections.claim(10, v6, Arc::new(Nothing)).is_ok());
    }

    /// A thread that has ended, by the time it is handed over.
    fn finished_thread() -> JoinHandle<()> {
        let thread = std::thread::spawn(|| {});
        let deadline = Instant::now() + Duration::from_secs(10);
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "a thread that does nothing never ended"
            );
            std::thread::yield_now();
        }
        thread
    }

    #[test]
    fn finished_threads_are_let_go_of_and_a_running_one_is_kept() {
        let connections = table(1000, 1000);
        let (release, held) = std::sync::mpsc::channel::<()>();
        connections.adopt(std::thread::spawn(move || {
            let _ = held.recv();
        }));
        for _ in 0..100 {
            connections.adopt(finished_thread());
        }
        {
            let table = connections.table.lock();
            let running = table.threads.iter().filter(|t| !t.is_finished()).count();
            assert_eq!(running, 1, "the running thread is kept, to be joined");
            assert!(
                table.threads.len() <= 8,
                "{} handles kept for 100 finished threads and a running one",
                table.threads.len()
            );
        }
        release.send(()).unwrap();
        connections.close_all_and_join();
        assert!(connections.table.lock().threads.is_empty());
    }
}
