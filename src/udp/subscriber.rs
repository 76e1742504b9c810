//! A UDP subscriber: an address, to which each `DELIVER` line is one datagram.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::link::Shared;
use super::MAX_DATAGRAM;
use crate::batch::Batch;
use crate::router::Router;
use crate::stats::Stats;
use crate::subscriber::{Offer, Subscriber, SubscriberId};

/// A subscriber that is an address: each `DELIVER` line is one datagram to it. See the
/// module docs for its lease and what bounds it.
#[derive(Debug)]
pub struct UdpSubscriber {
    id: SubscriberId,
    addr: SocketAddr,
    /// The broker's UDP port, shared with the listener: replies and deliveries come from
    /// the port the subscriber sent to, which is what lets them back through a NAT or a
    /// firewall that let the subscriber's datagrams out.
    socket: Arc<UdpSocket>,
    stats: Arc<Stats>,
    /// `--max-pending-bytes`: the most lines queued between two flushes.
    max_pending: usize,
    pending: Mutex<Pending>,
    /// Held while sending, so that two publishers flushing at once cannot interleave (and
    /// so reorder) their datagrams; offers only take `pending`'s lock and go on meanwhile.
    sending: Mutex<()>,
    /// A line too big for a datagram was reported once for this subscriber.
    warned_too_big: AtomicBool,
}

#[derive(Debug, Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

impl UdpSubscriber {
    pub(super) fn new(addr: SocketAddr, shared: &Shared, router: &Router) -> UdpSubscriber {
        UdpSubscriber {
            id: SubscriberId::next(),
            addr,
            socket: Arc::clone(&shared.socket),
            stats: Arc::clone(&shared.stats),
            max_pending: router.config().max_pending_bytes,
            pending: Mutex::new(Pending::default()),
            sending: Mutex::new(()),
            warned_too_big: AtomicBool::new(false),
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

    fn send(&self, datagram: &[u8]) {
        if datagram.len() > MAX_DATAGRAM {
            if !self.warned_too_big.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "a DELIVER line of {} bytes is too big for a datagram (the most is \
                     {MAX_DATAGRAM}): dropped for UDP subscriber {}, and others will be",
                    datagram.len(),
                    self.addr
                );
            }
            self.count(&self.stats.udp_datagrams_dropped);
            return;
        }
        match self.socket.send_to(datagram, self.addr) {
            Ok(_) => self.count(&self.stats.udp_datagrams_out),
            Err(_) => self.count(&self.stats.udp_datagrams_dropped),
        }
    }

    fn count(&self, counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
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
        pending.lines.extend_from_slice(lines);
        if was_empty {
            Offer::FlushNeeded
        } else {
            Offer::Queued
        }
    }

    fn flush(&self) {
        let _turn = self.sending.lock();
        let lines = std::mem::take(&mut self.pending.lock().lines);
        for line in lines.split_inclusive(|&b| b == b'\n') {
            self.send(line);
        }
    }
}
