//! Subscriber handles: what the registry holds for each subscriber, of whatever kind.
//!
//! A subscriber is anything that can take a [`Batch`] of deliveries: a TCP connection
//! speaking the line protocol ([`Outbox`](crate::outbox::Outbox)), a program embedding the
//! broker ([`Subscription`](crate::Subscription)), and later browsers, datagram
//! addresses and bridges to other brokers. The registry and the router know them only by
//! this trait, so a new kind of subscriber is a new type implementing it, and nothing in
//! the delivery path changes.
//!
//! The trait is split in two the way the work is: [`offer`](Subscriber::offer) only queues
//! (no I/O, so it is cheap and never waits on a network), and
//! [`flush`](Subscriber::flush) sends what was queued, which the router does once per burst
//! for each subscriber rather than once per message. That split is what lets one
//! `write` system call carry hundreds of deliveries.
//!
//! Each kind decides for itself what happens when its consumer is slow, and documents it:
//! there is no one answer for a socket and a queue in memory.
//!
//! A trait object (`Arc<dyn Subscriber>`) rather than an enum of every kind: the registry
//! then stores one pointer per subscription whatever the kind, and adding a kind does not
//! touch the registry or the router. The price is one indirect call per offer, which is
//! nothing beside the copy the offer makes.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::Batch;

/// What a subscriber did with an offered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued, and this subscriber had nothing queued before: whoever offered must call
    /// [`Subscriber::flush`] on it before it next waits for anything.
    FlushNeeded,
    /// Queued; someone else is already due to flush it (or it needs no flushing).
    Queued,
    /// The subscriber is gone (closed, or cut off as a slow consumer): nothing was queued.
    Closed,
}

/// A subscriber's identity in the registry, unique among all subscribers of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(u64);

impl SubscriberId {
    /// A number no other subscriber has had.
    pub fn next() -> SubscriberId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SubscriberId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A handle to one subscriber, of any kind. See the module docs.
pub trait Subscriber: Send + Sync + fmt::Debug {
    /// Who this is, for the registry to find it again on unsubscribe.
    fn id(&self) -> SubscriberId;

    /// Queues the batch's deliveries. Never blocks on I/O.
    fn offer(&self, batch: &Batch) -> Offer;

    /// Sends what [`offer`](Self::offer) queued. Each kind bounds how long this may take.
    fn flush(&self);

    /// Like [`flush`](Self::flush), from a publisher in the middle of a burst: the next
    /// batch is on its way, so a kind that queues into a buffer may keep the buffer for it
    /// rather than give it back and take it again a moment later. The publisher promises
    /// to call [`rest`](Self::rest) once it goes quiet.
    fn flush_in_burst(&self) {
        self.flush();
    }

    /// The publisher that flushed this subscriber in a burst has gone quiet: give back a
    /// buffer kept for it, if nothing is waiting in it.
    fn rest(&self) {}

    /// Sends what was queued and waits until this subscriber has drained most of it: called
    /// between the chunks of a stream that the subscriber's *own* thread offers (a new
    /// wildcard subscription's retained messages, see `registry.rs`), so waiting holds up
    /// nobody else. A kind that keeps a backlog waits until it is low again (bounded by its
    /// own rules for a subscriber that stops reading); the default, for kinds that do not
    /// wait for their consumer, only flushes.
    fn wait_until_drained(&self) {
        self.flush();
    }

    /// Whether a new subscription to `filter` should be offered the retained messages it
    /// matches, asked once the subscription is known to be new. The default is always: a
    /// connection that unsubscribes and subscribes again asks for the store again, as an
    /// MQTT client does. A UDP lease answers yes once per filter for its whole life
    /// (`udp/subscriber.rs`): its datagrams cost the broker's one sender thread, not the
    /// lease.
    fn replay_retained(&self, _filter: &str) -> bool {
        true
    }

    /// Queues a retained message (a batch of one) for a subscription that has just begun.
    /// Most kinds take it as any other; a durable subscription, which writes what it
    /// takes to its log, copies only so many bytes of them (see `durable/subscription.rs`).
    fn offer_retained(&self, batch: &Batch) -> Offer {
        self.offer(batch)
    }

    /// Offers and flushes at once: for a batch that is already big enough to send now. A
    /// kind that can send straight from the batch's bytes, without queueing a copy, does so
    /// here. Returns whether the subscriber took the batch.
    fn deliver(&self, batch: &Batch) -> bool {
        match self.offer(batch) {
            Offer::FlushNeeded | Offer::Queued => {
                self.flush();
                true
            }
            Offer::Closed => false,
        }
    }
}
