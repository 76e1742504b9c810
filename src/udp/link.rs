//! An address of the UDP port as the session core sees it (see `session.rs`): where its
//! answers go, and what the links of every address share (the budgets and throttles that
//! hold across forged source addresses).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::sender::Outbox;
use super::subscriber::UdpSubscriber;
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
    /// Every datagram leaves through the sender's queue (`udp/sender.rs`).
    pub(super) outbox: Outbox,
    pub(super) stats: Arc<Stats>,
    /// Keeps `ERROR` answers within [`ERRORS_ANSWERED_PER_SECOND`](super::ERRORS_ANSWERED_PER_SECOND).
    pub(super) answered: Mutex<Throttle>,
    /// Keeps the warnings about bad datagrams to a few per interval.
    pub(super) warnings: Mutex<Throttle>,
}

impl Shared {
    /// Sends one answer datagram, if `allowance` lets it; an `ERROR` only within the
    /// budget of errors too.
    pub(super) fn answer(&self, to: SocketAddr, reply: &Reply<'_>, allowance: &Allowance) {
        let mut datagram = Vec::new();
        reply.write_lines(&mut datagram);
        if matches!(reply, Reply::Error(_))
            && self.answered.lock().check(Instant::now()) == Verdict::Quiet
        {
            self.stats
                .udp_datagrams_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.answer_bytes(to, datagram, allowance);
    }

    /// Sends `datagram` to `to` as an answer, if `allowance` lets it.
    pub(super) fn answer_bytes(&self, to: SocketAddr, datagram: Vec<u8>, allowance: &Allowance) {
        if allowance.take(datagram.len()) {
            self.outbox.datagram(to, datagram);
        } else {
            self.stats.udp_withheld.fetch_add(1, Ordering::Relaxed);
        }
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

/// What the datagram being handled may still be answered with: at most
/// [`MAX_ANSWERS`](super::MAX_ANSWERS) datagrams, and, from an address that has not proven
/// it receives (see `udp/cookie.rs`), at most as many bytes as it sent. The listener sets
/// it afresh for each datagram; the address's link spends it.
#[derive(Debug, Default)]
pub(super) struct Allowance {
    answers: Cell<usize>,
    /// `None`: the address has proven itself, its bytes are bounded by the sender's
    /// budget only.
    bytes: Cell<Option<usize>>,
}

impl Allowance {
    /// A fresh allowance for one datagram of `received` bytes, from an address that has
    /// (`proven`) or has not proven itself.
    pub(super) fn for_datagram(received: usize, proven: bool) -> Allowance {
        let allowance = Allowance::default();
        allowance.reset(received, proven);
        allowance
    }

    /// Starts over, for the next datagram.
    pub(super) fn reset(&self, received: usize, proven: bool) {
        self.answers.set(super::MAX_ANSWERS);
        self.bytes.set((!proven).then_some(received));
    }

    /// Whether one more answer of `len` bytes may go; spends it if so.
    pub(super) fn take(&self, len: usize) -> bool {
        if self.answers.get() == 0 {
            return false;
        }
        if let Some(bytes) = self.bytes.get() {
            if len > bytes {
                return false;
            }
            self.bytes.set(Some(bytes - len));
        }
        self.answers.set(self.answers.get() - 1);
        true
    }
}

/// An address, as the session core sees it: its deliveries are datagrams
/// ([`UdpSubscriber`]), and so is each answer, sent when the session flushes (after the
/// deliveries of what came before it, as over TCP).
pub(super) struct UdpLink {
    pub(super) peer: Peer,
    pub(super) subscriber: Arc<UdpSubscriber>,
    pub(super) shared: Arc<Shared>,
    /// What the datagram being handled may still be answered with (the listener's lease
    /// holds the other handle, to reset it).
    pub(super) allowance: Rc<Allowance>,
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
        if let Reply::Error(_) = reply {
            // Sent at once, through the budget; the rest wait for the flush.
            self.shared.answer(self.peer.addr(), reply, &self.allowance);
            return;
        }
        let mut datagram = Vec::new();
        self.encode(reply, &mut datagram);
        self.send(&datagram);
    }

    fn encode(&self, reply: &Reply<'_>, out: &mut Vec<u8>) {
        reply.write_lines(out);
    }

    fn send(&self, bytes: &[u8]) {
        if self.allowance.take(bytes.len()) {
            self.answers.borrow_mut().push(bytes.to_vec());
        } else {
            self.shared
                .stats
                .udp_withheld
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {
        // Its deliveries went onto the sender's queue (as a token) when they were offered,
        // so the answers, queued now, cannot overtake them.
        for datagram in self.answers.borrow_mut().drain(..) {
            self.shared.outbox.datagram(self.peer.addr(), datagram);
        }
    }

    fn warn(&self, level: log::Level, event: std::fmt::Arguments<'_>) {
        self.shared.warn(level, event);
    }

    fn close(&self) {
        self.subscriber.close();
    }
}
