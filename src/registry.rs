//! Who is subscribed to what: the broker's one piece of shared state.
//!
//! A `HashMap` from topic to that topic's subscribers, behind one `parking_lot::Mutex`.
//! Every client thread uses it, so the rules for the lock are strict, and this module is
//! the only place that takes it:
//!
//! * Callers never hold the guard; each method locks, does a few map operations, unlocks.
//! * No socket I/O under the lock, ever. One slow write while holding it would stall every
//!   client of every topic.
//!
//! # Copy-on-write subscriber lists
//!
//! Each topic's subscribers are kept as an `Arc<Vec<…>>`. A publish clones that `Arc`
//! (one atomic increment, no copying of the list) and lets go of the lock before writing
//! to anyone. Subscribing or unsubscribing builds a new list and swaps it in; a publish
//! that took the old list finishes delivering to it. That makes publishing, the common
//! operation, as cheap under the lock as it can be, and costs subscribe/unsubscribe a copy
//! of one topic's list, which is rare by comparison.
//!
//! Subscriptions belong to a *connection*, not to the id the client gives: two clients that
//! both call themselves `sub1` both receive. A production broker with wildcard topics
//! (MQTT's `news/+`) keeps a tree of topic levels here instead of a flat map; this module
//! is the one place such matching would go.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::outbox::{ConnId, Outbox};

/// The subscribers of one topic at one moment: a snapshot that stays valid after the lock
/// is released.
pub type Subscribers = Arc<Vec<Arc<Outbox>>>;

/// The topic registry. See the module docs.
#[derive(Debug, Default)]
pub struct Registry {
    topics: Mutex<HashMap<String, Subscribers>>,
}

impl Registry {
    /// Adds `outbox` to the subscribers of `topic`. Returns `false` if that connection was
    /// already subscribed (subscribing twice delivers once).
    pub fn subscribe(&self, topic: &str, outbox: &Arc<Outbox>) -> bool {
        let mut topics = self.topics.lock();
        let subscribers = topics.entry(topic.to_string()).or_default();
        if subscribers.iter().any(|s| s.conn() == outbox.conn()) {
            return false;
        }
        let mut list = Vec::with_capacity(subscribers.len() + 1);
        list.extend(subscribers.iter().cloned());
        list.push(Arc::clone(outbox));
        *subscribers = Arc::new(list);
        true
    }

    /// Removes connection `conn` from the subscribers of `topic`. Returns `false` if it was
    /// not subscribed, which is not an error. A topic with no subscribers left is removed.
    pub fn unsubscribe(&self, topic: &str, conn: ConnId) -> bool {
        let mut topics = self.topics.lock();
        Self::remove_from(&mut topics, topic, conn)
    }

    /// Removes connection `conn` from every topic in `topics`, under one lock, so the
    /// connection disappears from the registry at once. Called when a connection closes.
    pub fn unsubscribe_all<'a>(&self, topics: impl IntoIterator<Item = &'a String>, conn: ConnId) {
        let mut map = self.topics.lock();
        for topic in topics {
            Self::remove_from(&mut map, topic, conn);
        }
    }

    fn remove_from(map: &mut HashMap<String, Subscribers>, topic: &str, conn: ConnId) -> bool {
        let Some(subscribers) = map.get_mut(topic) else {
            return false;
        };
        let before = subscribers.len();
        let list: Vec<_> = subscribers
            .iter()
            .filter(|s| s.conn() != conn)
            .cloned()
            .collect();
        let removed = list.len() < before;
        if list.is_empty() {
            map.remove(topic);
        } else if removed {
            *subscribers = Arc::new(list);
        }
        removed
    }

    /// The subscribers of `topic` right now (empty if nobody listens).
    pub fn subscribers(&self, topic: &str) -> Option<Subscribers> {
        self.topics.lock().get(topic).cloned()
    }

    /// Every topic with its number of subscribers, sorted by topic, for `TOPICS`.
    pub fn topic_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = {
            let topics = self.topics.lock();
            topics
                .iter()
                .map(|(topic, subs)| (topic.clone(), subs.len()))
                .collect()
        };
        // Sorting happens after the lock is released: it is work nobody else must wait for.
        counts.sort();
        counts
    }

    /// `(topics, subscriptions)`: how many topics have subscribers, and how many
    /// (topic, connection) pairs there are in all.
    pub fn totals(&self) -> (usize, usize) {
        let topics = self.topics.lock();
        (topics.len(), topics.values().map(|subs| subs.len()).sum())
    }
}
