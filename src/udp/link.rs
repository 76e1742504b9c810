//! An address of the UDP port as the session core sees it (see `session.rs`): where its
//! answers go, and what the links of every address share (the budgets and throttles that
//! hold across forged source addresses).

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::subscriber::UdpSubscriber;
use crate::durable::Holder;
use crate::peer::Peer;
use crate::protocol::{Command, ProtocolError, Reply};
use crate::session::Link;
use crate::stats::Stats;
use crate::subscriber::Subscriber;
use crate::throttle::{and_more, Throttle, Verdict, QUIETING};

/// What the links of every address share. Budgets and throttles are the listener's, not
/// each address's: a datagram's source address is whatever its sender wrote, so a flood
/// from a million forged addresses must meet the same limits as one from a single one.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) socket: Arc<UdpSocket>,
    pub(super) stats: Arc<Stats>,
    /// Keeps `ERROR` answers within [`ERRORS_ANSWERED_PER_SECOND`].
    pub(super) answered: Mutex<Throttle>,
    /// Keeps the warnings about bad datagrams to a few per interval.
    pub(super) warnings: Mutex<Throttle>,
}

impl Shared {
    /// Sends one answer datagram; an `ERROR` only within the budget.
    pub(super) fn answer(&self, to: SocketAddr, reply: &Reply<'_>) {
        if matches!(reply, Reply::Error(_))
            && self.answered.lock().check(Instant::now()) == Verdict::Quiet
        {
            self.stats
                .udp_datagrams_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut datagram = Vec::new();
        reply.write_lines(&mut datagram);
        let counter = match self.socket.send_to(&datagram, to) {
            Ok(_) => &self.stats.udp_datagrams_out,
            Err(_) => &self.stats.udp_datagrams_dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn warn(&self, level: log::Level, event: std::fmt::Arguments<'_>) {
        let verdict = self.warnings.lock().check(Instant::now());
        match verdict {
            Verdict::Log { left_out } => log::log!(level, "{event}{}", and_more(left_out)),
            Verdict::LogLast => log::log!(level, "{event}{QUIETING}"),
            Verdict::Quiet => {}
        }
    }
}

/// An address, as the session core sees it: its deliveries are datagrams
/// ([`UdpSubscriber`]), and so is each answer, sent when the session flushes (after the
/// deliveries of what came before it, as over TCP).
pub(super) struct UdpLink {
    pub(super) peer: Peer,
    pub(super) subscriber: Arc<UdpSubscriber>,
    pub(super) shared: Arc<Shared>,
    /// Answers waiting for the next flush.
    pub(super) answers: RefCell<Vec<Vec<u8>>>,
}

impl Link for UdpLink {
    fn peer(&self) -> &Peer {
        &self.peer
    }

    fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::clone(&self.subscriber) as Arc<dyn Subscriber>
    }

    fn holder(&self) -> Option<Arc<dyn Holder>> {
        None
    }

    /// What an address can do: subscribe and unsubscribe (its lease), publish, and ping.
    /// The rest needs a connection: `VERBOSE`, `QUIT` and `AUTH` have nothing to hold them,
    /// durable subscriptions nobody to resume them, and the listings would be many
    /// datagrams to an address nobody proved is the sender's.
    fn carries(&self, command: &Command<'_>) -> Result<(), ProtocolError> {
        match command {
            Command::Subscribe { .. }
            | Command::Unsubscribe { .. }
            | Command::UnsubscribeAll
            | Command::Publish { .. }
            | Command::Ping { .. } => Ok(()),
            other => Err(ProtocolError::NotOverUdp(other.spec())),
        }
    }

    fn reply(&self, reply: &Reply<'_>) {
        let mut datagram = Vec::new();
        self.encode(reply, &mut datagram);
        if let Reply::Error(_) = reply {
            // Sent at once, through the budget; the rest wait for the flush.
            self.shared.answer(self.peer.addr(), reply);
            return;
        }
        self.answers.borrow_mut().push(datagram);
    }

    fn encode(&self, reply: &Reply<'_>, out: &mut Vec<u8>) {
        reply.write_lines(out);
    }

    fn send(&self, bytes: &[u8]) {
        self.answers.borrow_mut().push(bytes.to_vec());
    }

    fn flush(&self) {
        // Its own deliveries first (the session's publisher leaves them to us), then the
        // answers, which must not overtake them.
        Subscriber::flush(&*self.subscriber);
        let stats = &self.shared.stats;
        for datagram in self.answers.borrow_mut().drain(..) {
            let counter = match self.shared.socket.send_to(&datagram, self.peer.addr()) {
                Ok(_) => &stats.udp_datagrams_out,
                Err(_) => &stats.udp_datagrams_dropped,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn warn(&self, level: log::Level, event: std::fmt::Arguments<'_>) {
        self.shared.warn(level, event);
    }

    fn close(&self) {
        self.subscriber.close();
    }
}
