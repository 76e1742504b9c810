//! An uplink: somewhere beyond this broker that local messages go on to, such as the NATS
//! bridge (see `nats/`).
//!
//! The router knows only this small trait, so routing never depends on what is on the
//! other side. Two things flow through it:
//!
//! * **Messages out.** Every batch of local publishes is [offered](Uplink::offer) to the
//!   uplink as well as to the local subscribers, on the publisher's own thread. Like
//!   [`Subscriber::offer`](crate::subscriber::Subscriber::offer), an offer only copies into
//!   a queue and never waits on a socket: a slow or absent uplink costs local delivery
//!   nothing. Messages that came *from* the uplink are published through a
//!   [`Publisher::from_uplink`](crate::router::Publisher::from_uplink), which does not offer
//!   them back.
//! * **Interest.** The uplink wants to know which topics and filters local clients hold,
//!   to ask the other side for exactly those. The registry keeps a log of names that got
//!   their first subscriber or lost their last; the router
//!   [wakes](Uplink::interest_changed) the uplink after each change, and the uplink reads
//!   the log with [`Router::take_interest`](crate::router::Router::take_interest).

use std::fmt;

use crate::batch::Batch;

/// Where local messages go beyond this broker. See the module docs.
pub trait Uplink: Send + Sync + fmt::Debug {
    /// Takes a batch of local publishes to send on: a copy into a queue, no I/O.
    fn offer(&self, batch: &Batch);

    /// The set of topics and filters with local subscribers changed: read
    /// [`Router::take_interest`](crate::router::Router::take_interest) soon.
    fn interest_changed(&self);

    /// The uplink's own figures, added to `STATS`.
    fn counters(&self) -> Vec<(&'static str, u64)>;
}

/// A change in local interest: `name` (a topic or filter) got its first subscriber
/// (`subscribed: true`) or lost its last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interest {
    /// The topic or filter.
    pub name: std::sync::Arc<str>,
    /// Whether it is wanted now.
    pub subscribed: bool,
}
