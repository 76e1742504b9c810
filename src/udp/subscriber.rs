//! A UDP subscriber: an address, to which each `DELIVER` line is one datagram, sent by
//! the UDP port's sender thread (`udp/sender.rs`), never by the publisher.
//!
//! A publisher offering a batch only copies its lines into the subscriber's pending
//! buffer, and, if that buffer was empty, pushes one token onto the sender's queue: "this
//! address has lines waiting". The sender takes them all when it comes to the token. So
//! a publisher pays a copy per lease, and a queue push only when the sender has caught up
//! with that lease; a sender that is behind means fewer pushes, not more. This is how NATS
//! treats its clients: append to the client's outbound buffer, and signal its writer only
//! when the buffer was empty.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::link::Shared;
use super::MAX_DATAGRAM;
use crate::batch::Batch;
use crate::router::Router;
use crate::stats::Stats;
use crate::subscriber::{Offer, Subscriber, SubscriberId};

/// The most bytes of lines that wait for the sender for one address (or
/// `--max-pending-bytes`, if that is less). The sender sends an address at most 1 MiB a
/// second (`udp/sender.rs`), so more would only wait to be withheld; and with 1,024 leases
/// this bounds what UDP deliveries can hold in the broker to 256 MiB, where
/// `--max-pending-bytes` alone would allow 8 GiB.
pub const MAX_PENDING_BYTES: usize = 256 * 1024;

/// How many filters a lease remembers having been replayed the retained messages of (see
/// [`UdpSubscriber::replay_retained`]). A lease that has subscribed to more distinct
/// filters than this in its life is replayed nothing for the next ones: a few dozen bytes
/// each, so at most about 64 KiB per lease.
pub const MAX_REPLAYED_FILTERS: usize = 1024;

/// A subscriber that is an address: each `DELIVER` line is one datagram to it. See the
/// module docs for its lease and what bounds it.
#[derive(Debug)]
pub struct UdpSubscriber {
    id: SubscriberId,
    addr: SocketAddr,
    /// The UDP port's shared state: its sender's queue, through which deliveries leave
    /// from the port the subscriber sent to (which is what lets them back through a NAT or
    /// a firewall that let the subscriber's datagrams out).
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    /// The most bytes of lines waiting for the sender: [`MAX_PENDING_BYTES`], or
    /// `--max-pending-bytes` if less.
    max_pending: usize,
    /// Lines waiting for the sender, shared with it through the token in its queue.
    pending: Arc<Mutex<Pending>>,
    /// A line too big for a datagram was reported once for this subscriber.
    warned_too_big: AtomicBool,
    /// The filters whose retained messages this lease was given already.
    replayed: Mutex<HashSet<Box<str>>>,
}

/// What waits for the sender: `DELIVER` lines, one datagram each.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) lines: Vec<u8>,
    closed: bool,
}

impl UdpSubscriber {
    pub(super) fn new(addr: SocketAddr, shared: &Arc<Shared>, router: &Router) -> UdpSubscriber {
        UdpSubscriber {
            id: SubscriberId::next(),
            addr,
            shared: Arc::clone(shared),
            stats: Arc::clone(&shared.stats),
            max_pending: router.config().max_pending_bytes.min(MAX_PENDING_BYTES),
            pending: Arc::new(Mutex::new(Pending::default())),
            warned_too_big: AtomicBool::new(false),
            replayed: Mutex::new(HashSet::new()),
        }
    }

    /// The address it receives at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ends it: it takes no more deliveries.
    pub(super) fn close(&self) {
        let mut pending = self.pending.lock();
        pending.closed = true;
        pending.lines = Vec::new();
    }

    /// Whether `line` fits in a datagram; a line that does not is dropped and counted,
    /// and said once per subscriber.
    fn fits(&self, line: &[u8]) -> bool {
        if line.len() <= MAX_DATAGRAM {
            return true;
        }
        if !self.warned_too_big.swap(true, Ordering::Relaxed) {
            log::warn!(
                "a DELIVER line of {} bytes is too big for a datagram (the most is \
                 {MAX_DATAGRAM}): dropped for UDP subscriber {}, and others will be",
                line.len(),
                self.addr
            );
        }
        self.stats
            .udp_datagrams_dropped
            .fetch_add(1, Ordering::Relaxed);
        false
    }
}

impl Subscriber for UdpSubscriber {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn offer(&self, batch: &Batch) -> Offer {
        let mut pending = self.pending.lock();
        if pending.closed {
            return Offer::Closed;
        }
        let lines = batch.lines();
        if pending.lines.len() + lines.len() > self.max_pending {
            // UDP promises nothing, and a subscriber this far behind is not waited for:
            // the batch is dropped, and counted.
            self.stats
                .udp_datagrams_dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            return Offer::Queued;
        }
        let was_empty = pending.lines.is_empty();
        if lines.len() > MAX_DATAGRAM {
            // Rare: only then is it worth looking for a line too big.
            for line in lines.split_inclusive(|&b| b == b'\n') {
                if self.fits(line) {
                    pending.lines.extend_from_slice(line);
                }
            }
        } else {
            pending.lines.extend_from_slice(lines);
        }
        if was_empty && !pending.lines.is_empty() {
            // Still under the lock: the sender cannot take the lines before the token is
            // queued, nor find the buffer empty with a token on its way.
            if !self
                .shared
                .outbox
                .pending(self.addr, &self.pending, &pending.lines)
            {
                // The queue is full (and counted): these lines would wait for a token
                // that never comes.
                pending.lines.clear();
            }
        }
        Offer::Queued
    }

    /// Nothing to do: the sender takes the pending lines when it comes to their token.
    fn flush(&self) {}

    /// Once per filter for the lease's whole life. A TCP client that unsubscribes and
    /// subscribes again pays for its store itself, reading it; a lease pays nothing, and
    /// each replay costs the port's one sender thread (and its budget for the address):
    /// `UNSUBSCRIBE #` and `SUBSCRIBE #` repeated in one datagram used to buy the whole
    /// store per pair (1,200 bytes bought 43 MB). A lease that ends (its last
    /// `UNSUBSCRIBE`, or its time) forgets, as a new lease must prove its address again.
    fn replay_retained(&self, filter: &str) -> bool {
        let mut replayed = self.replayed.lock();
        if replayed.contains(filter) || replayed.len() >= MAX_REPLAYED_FILTERS {
            return false;
        }
        replayed.insert(filter.into())
    }
}
