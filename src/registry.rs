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
//! Each topic keeps its subscribers in a list (`Members`), and beside it a *snapshot*:
//! the same subscribers as one shared array, [`Subscribers`], which is what a publish
//! takes. A topic with many subscribers also keeps an index from [`SubscriberId`] to the
//! place in the list, so finding one to remove never means walking the list.
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
//!   subscriber held, whatever the number of other subscribers. A thousand clients sharing
//!   a thousand topics all leave at once in a thousand small steps each, instead of each
//!   rebuilding a thousand lists of a thousand.
//! * **Counting** ([`Registry::totals`]): two counters kept up to date; nothing is walked.
//!
//! Topics are kept in a `BTreeMap`, so they are always in order for `TOPICS`, and an empty
//! topic is removed at once, giving its memory back.
//!
//! Subscriptions belong to a *subscriber* (a connection, an in-process subscription), not
//! to the id a client gives: two clients that both call themselves `sub1` both receive.
//! Wildcard topics (MQTT's `news/+`) would be matched here too, with a tree of topic levels
//! beside the map; this module is the one place such matching goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::subscriber::{Subscriber, SubscriberId};

/// The subscribers of one topic at one moment: a snapshot that stays valid after the lock
/// is released.
pub type Subscribers = Arc<[Arc<dyn Subscriber>]>;

/// The topic registry. See the module docs.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
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

/// Above this many subscribers a topic keeps an index of them. Below it, a search of the
/// list is as fast as a lookup and the index would only cost memory: a hash table's
/// smallest allocation is larger than a list of ten.
const INDEX_FROM: usize = 16;

/// The subscribers of one topic: a list, and an index into it once the list is long.
///
/// Removal swaps the last subscriber into the removed one's place (`swap_remove`), so it
/// moves one entry whatever the length, and the index follows that one move.
#[derive(Debug, Default)]
struct Members {
    list: Vec<(SubscriberId, Arc<dyn Subscriber>)>,
    // Boxed so that the many small topics, which have no index, pay 8 bytes for the field
    // rather than a whole empty `HashMap` (48): the box is the point, whatever Clippy says.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<SubscriberId, usize>>>,
}

impl Members {
    fn position(&self, id: SubscriberId) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&id).copied(),
            None => self.list.iter().position(|(member, _)| *member == id),
        }
    }

    fn insert(&mut self, subscriber: &Arc<dyn Subscriber>) -> bool {
        let id = subscriber.id();
        if self.position(id).is_some() {
            return false;
        }
        if self.list.capacity() == 0 {
            // Most topics have one subscriber: room for exactly one.
            self.list.reserve_exact(1);
        }
        self.list.push((id, Arc::clone(subscriber)));
        match &mut self.index {
            Some(index) => {
                index.insert(id, self.list.len() - 1);
            }
            None if self.list.len() > INDEX_FROM => {
                let positions = self.list.iter().enumerate().map(|(at, (id, _))| (*id, at));
                self.index = Some(Box::new(positions.collect()));
            }
            None => {}
        }
        true
    }

    fn remove(&mut self, id: SubscriberId) -> bool {
        let Some(position) = self.position(id) else {
            return false;
        };
        self.list.swap_remove(position);
        if let Some(index) = &mut self.index {
            index.remove(&id);
            if let Some((moved, _)) = self.list.get(position) {
                index.insert(*moved, position);
            }
            if self.list.len() < INDEX_FROM / 2 {
                self.index = None;
            }
        }
        true
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn snapshot(&self) -> Subscribers {
        self.list
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

    /// Removes subscriber `id` from every topic in `topics`, under one lock, so it
    /// disappears from the registry at once. Called when a connection closes.
    pub fn unsubscribe_all<T: AsRef<str>>(
        &self,
        topics: impl IntoIterator<Item = T>,
        id: SubscriberId,
    ) {
        let mut inner = self.inner.lock();
        for topic in topics {
            inner.remove(topic.as_ref(), id);
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

    /// Every topic with its number of subscribers, sorted by topic, for `TOPICS`.
    pub fn topic_counts(&self) -> Vec<(String, usize)> {
        let inner = self.inner.lock();
        inner
            .topics
            .iter()
            .map(|(topic, entry)| (topic.to_string(), entry.members.len()))
            .collect()
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
    fn a_big_topic_finds_its_members_through_the_index_as_they_come_and_go() {
        let registry = Registry::default();
        let members: Vec<_> = (0..100).map(|_| nobody()).collect();
        for member in &members {
            registry.subscribe("big", member);
        }
        // Remove every other one, in an order that moves entries around the list.
        for member in members.iter().rev().step_by(2) {
            assert!(registry.unsubscribe("big", member.id()));
        }
        for (n, member) in members.iter().enumerate() {
            let subscribed_again = registry.subscribe("big", member).is_some();
            assert_eq!(subscribed_again, n % 2 == 1, "member {n}");
        }
        assert_eq!(registry.totals(), (1, 100));
        for member in &members {
            assert!(registry.unsubscribe("big", member.id()));
        }
        assert_eq!(registry.totals(), (0, 0));
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
