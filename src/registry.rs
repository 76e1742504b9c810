//! Who is subscribed to what: the broker's one piece of shared state.
//!
//! A map from topic to that topic's subscribers, behind one `parking_lot::Mutex`. Every
//! thread that publishes or subscribes uses it, so the rules for the lock are strict, and
//! this module is the only place that takes it:
//!
//! * Callers never hold the guard; each method locks, does a few map operations, unlocks.
//! * No I/O under the lock, ever. One slow write while holding it would stall every
//!   client of every topic.
//!
//! # What each operation costs
//!
//! Each topic keeps its subscribers in a [`KeyedList`] (a list, with an index once it is
//! long, so finding one to remove never means walking a thousand), and beside it a
//! *snapshot*: the same subscribers as one shared array, [`Subscribers`], which is what a
//! publish takes.
//!
//! * **Publish** ([`Registry::subscribers`]): one map lookup and one atomic increment (a
//!   clone of the snapshot's `Arc`), done once per batch of publishes to a topic. The lock
//!   is released before anyone is written to; a publish that took a snapshot finishes
//!   delivering to it even if the topic changes meanwhile.
//! * **Subscribe, unsubscribe**: one lookup and one insert or removal, and the topic's
//!   snapshot is dropped. The next publish to that topic builds a new one (a copy of the
//!   topic's subscribers), so a topic costs one copy per publish *after* a change, never
//!   one per change.
//! * **Leaving** ([`Registry::unsubscribe_all`]): one removal per topic the leaving
//!   subscriber held, whatever the number of other subscribers, taking the lock in short
//!   turns. A thousand clients sharing a thousand topics all leave at once in a thousand
//!   small steps each, instead of each rebuilding a thousand lists of a thousand.
//! * **Counting** ([`Registry::totals`]): two counters kept up to date; nothing is walked.
//! * **Listing** ([`Registry::listing`]): the whole map, but a chunk at a time, letting go
//!   of the lock between chunks.
//!
//! Topics are kept in a `BTreeMap`, so they are always in order for `TOPICS`, and an empty
//! topic is removed at once, giving its memory back.
//!
//! Subscriptions belong to a *subscriber* (a connection, an in-process subscription), not
//! to the id a client gives: two clients that both call themselves `sub1` both receive.
//! Wildcard topics (MQTT's `news/+`) would be matched here too, with a tree of topic levels
//! beside the map; this module is the one place such matching goes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::keyed::KeyedList;
use crate::subscriber::{Subscriber, SubscriberId};
use crate::topic;

/// The subscribers of one topic at one moment: a snapshot that stays valid after the lock
/// is released.
pub type Subscribers = Arc<[Arc<dyn Subscriber>]>;

/// How many topics a leaving subscriber is removed from per hold of the lock: a few
/// microseconds of work (see [`Registry::unsubscribe_all`]).
pub const LEAVING_CHUNK: usize = 8;

/// How many topics a listing looks at per hold of the lock: a few microseconds of work, so
/// a publisher never waits long for a `TOPICS` on a huge registry.
pub const LISTING_CHUNK: usize = 256;

/// Topics listed for `TOPICS`: see [`Registry::listing`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The topics listed, sorted, each with its number of subscribers.
    pub topics: Vec<(String, usize)>,
    /// How many more matched than were listed.
    pub more: usize,
}

/// The topic registry. See the module docs.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Subscribers leaving take turns here, one at a time, before they take `inner`'s lock
    /// in short chunks: a thousand of them leaving at once then compete for the registry
    /// with everyone else as one, not as a thousand. (A lock that many threads hammer
    /// lets the ones already running take it again and again while a thread that went to
    /// sleep waiting for it waits on; that thread could be the one unrelated publisher.)
    leaving: Mutex<()>,
}

#[derive(Debug, Default)]
struct Inner {
    topics: BTreeMap<Arc<str>, Topic>,
    /// (topic, subscriber) pairs in all, kept so `STATS` never walks the map.
    subscriptions: usize,
}

#[derive(Debug, Default)]
struct Topic {
    members: Members,
    /// `members` as one array, built by the first publish after a change.
    snapshot: Option<Subscribers>,
}

/// The subscribers of one topic, by id (see `keyed.rs`: most topics have one or two).
#[derive(Debug, Default)]
struct Members(KeyedList<SubscriberId, Arc<dyn Subscriber>>);

impl Members {
    fn insert(&mut self, subscriber: &Arc<dyn Subscriber>) -> bool {
        self.0.insert(subscriber.id(), Arc::clone(subscriber))
    }

    fn remove(&mut self, id: SubscriberId) -> bool {
        self.0.remove(&id).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn snapshot(&self) -> Subscribers {
        self.0
            .iter()
            .map(|(_, subscriber)| Arc::clone(subscriber))
            .collect()
    }
}

impl Registry {
    /// Adds `subscriber` to `topic`. Returns the topic's name as the registry stores it
    /// (callers keep it to unsubscribe later, sharing the registry's copy of the text), or
    /// `None` if that subscriber was already subscribed: subscribing twice delivers once.
    pub fn subscribe(&self, topic: &str, subscriber: &Arc<dyn Subscriber>) -> Option<Arc<str>> {
        let mut inner = self.inner.lock();
        let name = match inner.topics.get_key_value(topic) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(topic),
        };
        let entry = inner.topics.entry(Arc::clone(&name)).or_default();
        if !entry.members.insert(subscriber) {
            return None;
        }
        entry.snapshot = None;
        inner.subscriptions += 1;
        Some(name)
    }

    /// Removes subscriber `id` from `topic`. Returns `false` if it was not subscribed,
    /// which is not an error. A topic with no subscribers left is removed.
    pub fn unsubscribe(&self, topic: &str, id: SubscriberId) -> bool {
        self.inner.lock().remove(topic, id)
    }

    /// Removes subscriber `id` from every topic in `topics`. Called when a connection
    /// closes.
    ///
    /// Leavers take turns among themselves (see `leaving`), and each takes the registry's
    /// lock once per [`LEAVING_CHUNK`] topics, not once for them all: a thousand
    /// connections leaving a thousand topics each at the same moment then make a publisher
    /// wait for one chunk at a time, not for a thousand whole lists. (The subscriber is
    /// already closed when its cleanup gets here, so a publisher that still finds it in a
    /// topic only gets [`Offer::Closed`](crate::subscriber::Offer::Closed) back.)
    pub fn unsubscribe_all<T: AsRef<str>>(
        &self,
        topics: impl IntoIterator<Item = T>,
        id: SubscriberId,
    ) {
        let _turn = self.leaving.lock();
        let mut topics = topics.into_iter().peekable();
        while topics.peek().is_some() {
            let mut inner = self.inner.lock();
            for topic in topics.by_ref().take(LEAVING_CHUNK) {
                inner.remove(topic.as_ref(), id);
            }
        }
    }

    /// The subscribers of `topic` right now, or `None` if nobody listens.
    pub fn subscribers(&self, topic: &str) -> Option<Subscribers> {
        let mut inner = self.inner.lock();
        let entry = inner.topics.get_mut(topic)?;
        let snapshot = entry
            .snapshot
            .get_or_insert_with(|| entry.members.snapshot());
        Some(Arc::clone(snapshot))
    }

    /// Every topic with its number of subscribers, sorted by topic.
    pub fn topic_counts(&self) -> Vec<(String, usize)> {
        self.listing(None, usize::MAX).topics
    }

    /// The topics `filter` matches (all if `None`), sorted, with their numbers of
    /// subscribers, at most `limit` of them, and how many more matched: for `TOPICS`.
    ///
    /// A registry may hold a million topics. Walking them all under the lock would make
    /// every publisher wait for the walk, so the walk goes [`LISTING_CHUNK`] topics at a
    /// time, letting go of the lock in between and carrying on after the last name it
    /// saw. The listing is then not one instant's picture: a topic added or removed
    /// during the walk may or may not be in it, which for a listing is fine.
    pub fn listing(&self, filter: Option<&str>, limit: usize) -> Listing {
        let mut listing = Listing::default();
        let mut after: Option<Arc<str>> = None;
        loop {
            let inner = self.inner.lock();
            let from = match &after {
                None => Bound::Unbounded,
                Some(name) => Bound::Excluded(&**name),
            };
            let mut seen = 0;
            for (name, entry) in inner.topics.range::<str, _>((from, Bound::Unbounded)) {
                if filter.map_or(true, |filter| topic::matches(filter, name)) {
                    if listing.topics.len() < limit {
                        listing.topics.push((name.to_string(), entry.members.len()));
                    } else {
                        listing.more += 1;
                    }
                }
                seen += 1;
                if seen == LISTING_CHUNK {
                    after = Some(Arc::clone(name));
                    break;
                }
            }
            if seen < LISTING_CHUNK {
                return listing;
            }
        }
    }

    /// `(topics, subscriptions)`: how many topics have subscribers, and how many
    /// (topic, subscriber) pairs there are in all.
    pub fn totals(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.topics.len(), inner.subscriptions)
    }
}

impl Inner {
    fn remove(&mut self, topic: &str, id: SubscriberId) -> bool {
        let Some(entry) = self.topics.get_mut(topic) else {
            return false;
        };
        if !entry.members.remove(id) {
            return false;
        }
        self.subscriptions -= 1;
        if entry.members.is_empty() {
            self.topics.remove(topic);
        } else {
            entry.snapshot = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;
    use crate::subscriber::Offer;

    #[derive(Debug)]
    struct Nobody(SubscriberId);

    impl Subscriber for Nobody {
        fn id(&self) -> SubscriberId {
            self.0
        }
        fn offer(&self, _: &Batch) -> Offer {
            Offer::Queued
        }
        fn flush(&self) {}
    }

    fn nobody() -> Arc<dyn Subscriber> {
        Arc::new(Nobody(SubscriberId::next()))
    }

    #[test]
    fn subscribing_twice_counts_once_and_the_name_is_shared() {
        let registry = Registry::default();
        let (a, b) = (nobody(), nobody());
        let first = registry.subscribe("t", &a).unwrap();
        assert!(registry.subscribe("t", &a).is_none());
        let second = registry.subscribe("t", &b).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "one copy of the topic's name");
        assert_eq!(registry.totals(), (1, 2));
        assert_eq!(registry.subscribers("t").unwrap().len(), 2);
    }

    #[test]
    fn a_snapshot_taken_before_a_change_keeps_its_subscribers() {
        let registry = Registry::default();
        let (a, b) = (nobody(), nobody());
        registry.subscribe("t", &a);
        registry.subscribe("t", &b);
        let before = registry.subscribers("t").unwrap();
        assert!(registry.unsubscribe("t", a.id()));
        assert!(!registry.unsubscribe("t", a.id()));
        assert_eq!(before.len(), 2);
        assert_eq!(registry.subscribers("t").unwrap().len(), 1);
    }

    #[test]
    fn the_last_one_out_removes_the_topic_and_the_counters_follow() {
        let registry = Registry::default();
        let (a, b) = (nobody(), nobody());
        for topic in ["x", "y", "z"] {
            registry.subscribe(topic, &a);
        }
        registry.subscribe("y", &b);
        assert_eq!(registry.totals(), (3, 4));
        registry.unsubscribe_all(["x", "y", "z"], a.id());
        assert_eq!(registry.totals(), (1, 1));
        assert_eq!(registry.topic_counts(), [("y".to_string(), 1)]);
        assert!(registry.subscribers("x").is_none());
    }
}
