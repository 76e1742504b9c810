//! The in-process subscriber: a program that embeds the broker receives messages through a
//! [`Subscription`], with no socket at all.
//!
//! ```text
//!   publisher thread ──offer──▶ Mailbox { queue, condvar } ──recv_timeout──▶ your thread
//! ```
//!
//! It is the second kind of [`Subscriber`] after the TCP connection, and the simplest: an
//! offer copies each delivery into a queue and wakes the receiving thread; there is nothing
//! to flush.
//!
//! # Slow consumers
//!
//! The queue is bounded (`Config::mailbox_messages`, 10,000 by default). A publisher never
//! waits for an in-process subscriber: when an offer would take the queue past its bound,
//! the subscription is *cut off*, exactly as a TCP subscriber that stops reading is. It
//! takes no more messages; the receiver still gets those already queued, and then
//! [`CutOff`]. Dropping messages silently instead would hide the problem; blocking the
//! publisher would let one slow consumer stall every topic that publisher writes to.
//! (NATS's Go client does the same for its channels: a slow consumer gets an error, not a
//! blocked server.)

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::batch::Batch;
use crate::hooks::{ClientInfo, Transport};
use crate::protocol::{Delivery, ProtocolError};
use crate::router::Router;
use crate::stats::Stats;
use crate::subscriber::{Offer, Subscriber, SubscriberId};

/// Messages on one topic, received inside the program that runs the broker. Made by
/// [`BrokerHandle::subscribe`](crate::BrokerHandle::subscribe); dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    mailbox: Arc<Mailbox>,
    router: Arc<Router>,
    topic: Arc<str>,
}

/// The subscription fell further behind than its queue holds and was cut off; it receives
/// nothing more. Subscribe again to carry on (messages in between are lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutOff {
    /// How many messages the queue held.
    pub capacity: usize,
}

impl fmt::Display for CutOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cut off as a slow consumer: more than {} messages were waiting; receive faster, \
             or raise Config::mailbox_messages",
            self.capacity
        )
    }
}

impl std::error::Error for CutOff {}

impl Subscription {
    /// Subscribes a new mailbox to `topic`, a topic or a filter with wildcards (if the
    /// hooks agree).
    pub(crate) fn open(router: Arc<Router>, topic: &str) -> Result<Subscription, ProtocolError> {
        let mailbox = Arc::new(Mailbox {
            id: SubscriberId::next(),
            capacity: router.config().mailbox_messages,
            stats: Arc::clone(router.stats()),
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
        });
        let handle: Arc<dyn Subscriber> = Arc::clone(&mailbox) as Arc<dyn Subscriber>;
        let program = ClientInfo::new(Transport::InProcess, None);
        let topic = router
            .subscribe(program, topic, &handle)?
            .expect("a new mailbox is subscribed to nothing yet");
        Ok(Subscription {
            mailbox,
            router,
            topic,
        })
    }

    /// The topic (or filter) this subscription receives.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Waits up to `timeout` for the next message; `Ok(None)` if none came in time.
    ///
    /// # Errors
    /// [`CutOff`] once the subscription was cut off and every message queued before it has
    /// been received.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Delivery>, CutOff> {
        let deadline = Instant::now() + timeout;
        let mut state = self.mailbox.state.lock();
        loop {
            if let Some(delivery) = state.queue.pop_front() {
                return Ok(Some(delivery));
            }
            if state.cut_off {
                return Err(CutOff {
                    capacity: self.mailbox.capacity,
                });
            }
            if self
                .mailbox
                .arrived
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return Ok(state.queue.pop_front());
            }
        }
    }

    /// The next message if one is waiting, without waiting.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn try_recv(&self) -> Result<Option<Delivery>, CutOff> {
        self.recv_timeout(Duration::ZERO)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.router.unsubscribe_all([&self.topic], self.mailbox.id);
    }
}

/// The subscriber handle the registry holds for a [`Subscription`].
#[derive(Debug)]
struct Mailbox {
    id: SubscriberId,
    capacity: usize,
    stats: Arc<Stats>,
    state: Mutex<State>,
    arrived: Condvar,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Delivery>,
    cut_off: bool,
}

impl Subscriber for Mailbox {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn offer(&self, batch: &Batch) -> Offer {
        let mut state = self.state.lock();
        if state.cut_off {
            return Offer::Closed;
        }
        if state.queue.len() + batch.len() > self.capacity {
            state.cut_off = true;
            self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "slow consumer: an in-process subscription to {} was cut off with {} messages waiting",
                crate::text::escaped(batch.topic()),
                state.queue.len()
            );
            self.arrived.notify_all();
            return Offer::Closed;
        }
        state.queue.extend(batch.deliveries());
        self.arrived.notify_all();
        Offer::Queued
    }

    fn flush(&self) {}
}
