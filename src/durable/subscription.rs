//! One durable subscription as a [`Subscriber`]: it takes every message its filter matches
//! whether or not anyone holds it, and sends them to whichever connection holds it now.
//!
//! The registry holds a [`Durable`] like any subscriber, from the first `DURABLE` until
//! `CANCEL` (or, with a log, from the broker's start), so messages published while its
//! client is away are queued, not lost. A connection *holds* it after `DURABLE`: the
//! subscription then sends that connection its messages, `--max-inflight` at a time, by
//! pushing `MESSAGE` lines into the connection's outbox, and takes its `ACK`s.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::log::Record;
use super::queue::{Queue, Queued};
use super::store::{Key, Store};
use super::Limits;
use crate::batch::Batch;
use crate::protocol::{write_message, Held, ProtocolError, Reply};
use crate::subscriber::{Offer, Subscriber, SubscriberId};
use crate::text::escaped;

/// The connection that holds a durable subscription, as the subscription sees it: lines
/// can be queued for it and flushed. (The line protocol's connections implement it with
/// their outbox; see `session.rs`.)
pub trait Holder: Send + Sync + fmt::Debug {
    /// Which connection this is.
    fn holder_id(&self) -> SubscriberId;
    /// Queues complete lines for it (no I/O), as [`Subscriber::offer`] does.
    fn push(&self, lines: &[u8]) -> Offer;
    /// Sends what was queued.
    fn send(&self);
}

/// One durable subscription. See the module docs.
#[derive(Debug)]
pub struct Durable {
    id: SubscriberId,
    key: Key,
    store: Arc<Store>,
    limits: Limits,
    /// The address of the anonymous client that made it, when that counts against a
    /// quota per address (see `Durables::check_quotas`); `None` for the others, and for
    /// those the log brought back (the log keeps no addresses).
    origin: Option<IpAddr>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    queue: Queue,
    holder: Option<Arc<dyn Holder>>,
    cancelled: bool,
    /// Whether dropping past `--max-queued` was logged already: once per subscription.
    drop_logged: bool,
    /// Bytes of retained messages it may still copy (`--max-durable-retained-bytes`); `None`
    /// once one did not fit, and every later one is skipped.
    retained_budget: Option<usize>,
    /// Lines being put together for the holder, kept to reuse its memory.
    out: Vec<u8>,
}

/// What [`Durable::attach`] did.
#[derive(Debug)]
pub struct Attached {
    /// Messages held for the subscription when it was attached: `OK DURABLE <filter>
    /// <pending>`.
    pub pending: usize,
    /// The connection that held it before, already told with an `ERROR`; the caller sends
    /// it that line.
    pub taken_from: Option<Arc<dyn Holder>>,
}

impl Durable {
    pub(super) fn new(
        key: Key,
        store: Arc<Store>,
        limits: Limits,
        held: Vec<Queued>,
        origin: Option<IpAddr>,
    ) -> Durable {
        let mut queue = Queue::default();
        for message in held {
            queue.push(message);
        }
        Durable {
            id: SubscriberId::next(),
            key,
            store,
            limits,
            origin,
            state: Mutex::new(State {
                queue,
                retained_budget: Some(limits.max_durable_retained_bytes),
                ..State::default()
            }),
        }
    }

    /// The address of the anonymous client that made it, if it counts against the quota
    /// per address.
    pub(super) fn origin(&self) -> Option<IpAddr> {
        self.origin
    }

    /// The subscriber id it belongs to.
    pub fn subscriber_id(&self) -> &str {
        &self.key.0
    }

    /// Its filter, as the registry keeps it.
    pub fn filter(&self) -> &Arc<str> {
        &self.key.1
    }

    /// Messages it holds, waiting or in flight.
    pub fn held(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Makes `holder` the connection that holds this subscription, and sends it the
    /// `OK DURABLE <filter> <pending>` reply, then its messages: those in flight to an
    /// earlier holder first (they are sent again, with their seqs), then the waiting ones.
    /// A different connection that held it is told, with one `ERROR` line, that it no
    /// longer does (MQTT's session takeover).
    pub fn attach(&self, holder: Arc<dyn Holder>) -> Attached {
        let mut state = self.state.lock();
        let previous = state.holder.replace(Arc::clone(&holder));
        let taken_from = previous.filter(|old| old.holder_id() != holder.holder_id());
        if let Some(old) = &taken_from {
            let error = ProtocolError::TakenOver {
                filter: self.key.1.to_string(),
                subscriber_id: self.key.0.to_string(),
            };
            old.push(&reply_line(Reply::Error(&error)));
        }
        state.queue.requeue_all();
        let pending = state.queue.len();
        holder.push(&reply_line(Reply::DurableOk {
            filter: &self.key.1,
            pending,
        }));
        self.send_more(&mut state);
        Attached {
            pending,
            taken_from,
        }
    }

    /// The holder `holder` lets go of the subscription (its connection closed): what was
    /// in flight to it waits to be sent again. Nothing happens if another holds it now.
    pub fn release(&self, holder: SubscriberId) {
        let mut state = self.state.lock();
        if state.holder.as_ref().map(|h| h.holder_id()) == Some(holder) {
            state.holder = None;
            state.queue.requeue_all();
        }
    }

    /// `ACK <seq>` from the connection `holder`: the message is done, and the next waiting
    /// one, if any, goes out. `false` if `holder` does not hold this subscription or no
    /// message with that seq is in flight on it.
    pub fn ack(&self, seq: u64, holder: SubscriberId) -> bool {
        let mut state = self.state.lock();
        if state.holder.as_ref().map(|h| h.holder_id()) != Some(holder) {
            return false;
        }
        let Some(message) = state.queue.ack(seq) else {
            return false;
        };
        self.store.append(&Record::Ack { seq });
        self.store.done(message.segment);
        self.send_more(&mut state);
        true
    }

    /// Sends again what has waited `--ack-timeout` for its `ACK`. Returns the holder to
    /// flush, if anything was sent.
    pub(super) fn resend_overdue(&self, now: Instant) -> Option<Arc<dyn Holder>> {
        let mut state = self.state.lock();
        state.holder.as_ref()?;
        if state.queue.requeue_overdue(now, self.limits.ack_timeout) == 0 {
            return None;
        }
        log::debug!(
            "durable {} {}: acknowledgements overdue, sending again",
            escaped(&self.key.0),
            escaped(&self.key.1)
        );
        self.send_more(&mut state)
            .then(|| state.holder.clone())
            .flatten()
    }

    /// Ends the subscription: drops what it holds and lets go of its holder. Returns how
    /// many messages were dropped.
    pub(super) fn cancel(&self) -> usize {
        let mut state = self.state.lock();
        state.cancelled = true;
        let dropped = state.queue.drain();
        for message in &dropped {
            self.store.done(message.segment);
        }
        state.holder = None;
        dropped.len()
    }

    /// Drops the oldest messages, waiting or in flight, while the subscription holds more
    /// than `--max-queued` messages or `--max-queued-bytes` (the newest is always kept,
    /// however long). One path for both bounds: a dropped message is acknowledged in the
    /// log as if its subscriber had, and counted in `STATS` as `durable_dropped`.
    ///
    /// Dropping the *oldest* is what Mosquitto does past its `max_queued_messages` and
    /// `max_queued_bytes`, and NATS JetStream's default `discard: old` past a stream's
    /// `max_msgs` and `max_bytes`. The other choice, refusing the new message, would
    /// make a forgotten subscription hold back every publisher.
    fn drop_what_is_too_much(&self, state: &mut State) {
        while self.limits.holds_too_much(&state.queue) {
            let Some(oldest) = state.queue.drop_oldest() else {
                return;
            };
            self.store.append(&Record::Ack { seq: oldest.seq });
            self.store.done(oldest.segment);
            self.store.dropped.fetch_add(1, Ordering::Relaxed);
            if !state.drop_logged {
                state.drop_logged = true;
                log::warn!(
                    "durable subscription {} {} holds more than --max-queued {} messages or \
                     --max-queued-bytes {}: dropping the oldest (counted in STATS \
                     durable_dropped; logged once)",
                    escaped(&self.key.0),
                    escaped(&self.key.1),
                    self.limits.max_queued,
                    self.limits.max_queued_bytes
                );
            }
        }
    }

    /// Queues what the holder has room for in flight, and pushes it. Returns whether the
    /// holder must be flushed.
    fn send_more(&self, state: &mut State) -> bool {
        let Some(holder) = state.holder.clone() else {
            return false;
        };
        let mut out = std::mem::take(&mut state.out);
        out.clear();
        let flush = if state
            .queue
            .send(self.limits.max_inflight, Instant::now(), &mut out)
            > 0
        {
            match holder.push(&out) {
                Offer::Closed => {
                    // The connection is gone: what was just sent waits for the next one.
                    state.holder = None;
                    state.queue.requeue_all();
                    false
                }
                Offer::FlushNeeded | Offer::Queued => true,
            }
        } else {
            false
        };
        state.out = out;
        flush
    }
}

/// A reply as one line of bytes.
fn reply_line(reply: Reply<'_>) -> Vec<u8> {
    let mut line = Vec::new();
    reply.write_lines(&mut line);
    line
}

impl Subscriber for Durable {
    fn id(&self) -> SubscriberId {
        self.id
    }

    /// Gives each message a seq, appends its record to the log (in memory: the commit
    /// comes at [`flush`](Self::flush)), queues it, drops the oldest past `--max-queued`
    /// or `--max-queued-bytes`,
    /// and pushes what the holder has room for.
    fn offer(&self, batch: &Batch) -> Offer {
        let mut state = self.state.lock();
        if state.cancelled {
            return Offer::Closed;
        }
        let (subscriber_id, filter) = (&*self.key.0, &*self.key.1);
        for published in batch.published() {
            let seq = self.store.next_seq();
            let segment = self.store.append(&Record::Message {
                seq,
                subscriber_id,
                filter,
                topic: batch.topic(),
                publisher_id: published.publisher_id,
                timestamp: batch.timestamp(),
                message: published.message,
            });
            let mut line = Vec::with_capacity(batch.lines().len() / batch.len().max(1) + 24);
            write_message(
                &mut line,
                seq,
                batch.topic(),
                published.message,
                published.publisher_id,
                batch.timestamp(),
            );
            state.queue.push(Queued {
                seq,
                segment,
                line: line.into(),
            });
            self.drop_what_is_too_much(&mut state);
        }
        self.send_more(&mut state);
        // Always flushed by whoever offered: the flush is the commit of the log.
        Offer::FlushNeeded
    }

    /// Copies a retained message as [`offer`](Self::offer) does any other, while the
    /// subscription has copied fewer than `--max-durable-retained-bytes` of them; past it,
    /// this one and every later one are skipped, counted in `STATS` as
    /// `durable_retained_skipped`, and logged once. (It answers `Queued` all the same: the
    /// subscription is not closed, only full of retained messages.)
    ///
    /// Why a bound: a new durable subscription writes each message it takes to the log,
    /// so without one, `DURABLE #` copied the whole retained store (up to 16 MiB) to the
    /// disk, and `DURABLE`/`CANCEL` in a loop wrote 11.1 MB for 260 bytes of commands.
    /// The classic protocol does not change: `OK DURABLE <filter> <pending>` counts what
    /// the subscription holds. NATS JetStream bounds the same thing with a consumer's
    /// `deliver_policy` (`last_per_subject`, `new`), MQTT does not let a persistent
    /// session take retained messages more than once per `SUBSCRIBE`.
    fn offer_retained(&self, batch: &Batch) -> Offer {
        let bytes = batch.lines().len();
        {
            let mut state = self.state.lock();
            match state.retained_budget {
                Some(left) if bytes <= left => state.retained_budget = Some(left - bytes),
                budget => {
                    state.retained_budget = None;
                    self.store
                        .retained_skipped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    if budget.is_some() {
                        log::warn!(
                            "durable subscription {} {} copied --max-durable-retained-bytes {} \
                             of retained messages: the rest are not copied (counted in STATS \
                             durable_retained_skipped)",
                            escaped(&self.key.0),
                            escaped(&self.key.1),
                            self.limits.max_durable_retained_bytes
                        );
                    }
                    return Offer::Queued;
                }
            }
        }
        self.offer(batch)
    }

    /// Writes the log (see `store.rs`), then has the holder sent what was pushed to it
    /// once the records are stored as the policy promises: a message is not delivered
    /// before it is stored, so its seq can never be given again to another after a crash.
    /// Under `--fsync always` the committer thread sends it after its next `fsync`, and the
    /// publisher's thread goes on meanwhile.
    fn flush(&self) {
        // A failed write is logged by the store, and refused to publishers that wait for
        // a confirm; the messages stay queued in memory.
        let _ = self.store.commit(false);
        let holder = self.state.lock().holder.clone();
        if let Some(holder) = holder {
            self.store
                .release_after_commit(Held::nothing(), &holder, None);
        }
    }
}
