//! Who is subscribed to what: the broker's one piece of shared state.
//!
//! Three things behind one `parking_lot::Mutex`: a map from each exact topic to its
//! subscribers, a [`FilterTree`] of wildcard filters (`news/+`, `home/#`) with theirs, and
//! each topic's retained message. Every
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
//!   delivering to it even if the topic changes meanwhile. While nobody holds a wildcard
//!   filter that is all. With wildcard filters the snapshot also holds the subscribers of
//!   every matching filter, each subscriber once (a connection with `news/#` and `news/+`
//!   gets a message once), and is cached with the registry's *generation*, a number that
//!   changes whenever a wildcard subscription comes or goes. A publish whose cached snapshot
//!   is current costs the same map lookup. One a few generations old is checked against
//!   the filters that changed since (the last [`CHANGES_KEPT`]): if none matches its
//!   topic it is still right, so a class subscribing to `sport/+` does not make `news`
//!   walk the tree again. Otherwise the publish walks the tree ([`FilterTree::walk`]):
//!   for a topic of L levels at most three branches per level (the level's name, `+`,
//!   `#`), so O(L × matching filters), not O(filters held); then sorts references to the
//!   subscribers by id to drop repeats, and copies the few left. A topic nobody
//!   subscribes to exactly, reached only through filters, keeps its snapshot too, in a
//!   small bounded cache ([`WILDCARD_ONLY_CACHED`]). So one client holding 10,000 filters
//!   that match a topic costs its publishers one walk (milliseconds), not one per publish;
//!   NATS caches each subject's result in its sublist the same way, and Mosquitto walks
//!   its tree on every publish.
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
//! * **Retain** ([`Registry::retain`]): store the message and take the snapshot in one
//!   step, so no subscriber can join between the two and get the message twice or not at
//!   all.
//! * **A new subscription's retained messages**: a topic has one at most, offered under
//!   the lock in the step that registers the subscription (offering queues, it never
//!   writes). A wildcard filter may match the whole store (16 MiB), which must not be
//!   copied under the lock, nor all at once into a queue that `--max-pending-bytes`
//!   bounds: the lock is held only to copy *pointers* to the matching messages, a chunk
//!   of names at a time; the messages are offered outside it, the subscriber's own
//!   thread waiting for its client to read between chunks; and one last short hold
//!   registers the subscription and offers what changed meanwhile
//!   (`Registry::subscribe_to_filter`). Every retained message still comes before any
//!   live one.
//!
//! Topics are kept in a `BTreeMap`, so they are always in order for `TOPICS`, and an empty
//! topic is removed at once, giving its memory back. Retained messages are bounded in count
//! and bytes (`--max-retained`, `--max-retained-bytes`): they live until cleared, so without
//! a bound one client could fill the broker's memory a topic at a time. Each publisher id
//! (and, with an auth file, each user, over every id it goes by) may keep at most a share
//! of those topics and of those bytes (`--max-retained-per-client`,
//! `--max-retained-per-user`, `--max-retained-bytes-per-client`,
//! `--max-retained-bytes-per-user`), so that one client cannot take every place from a
//! class: the registry counts the topics and bytes of each id. Mosquitto keeps them in the
//! same kind of tree and writes them to `mosquitto.db`; ours live in memory.
//!
//! Subscriptions belong to a *subscriber* (a connection, an in-process subscription), not
//! to the id a client gives: two clients that both call themselves `sub1` both receive.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::batch::Batch;
use crate::keyed::KeyedList;
use crate::protocol::Listed;
use crate::stats::Totals;
use crate::subscriber::{Offer, Subscriber, SubscriberId};
use crate::topic;
use crate::tree::FilterTree;
use crate::uplink::Interest;

/// The subscribers of one topic at one moment: a snapshot that stays valid after the lock
/// is released.
pub type Subscribers = Arc<[Arc<dyn Subscriber>]>;

/// How many topics a leaving subscriber is removed from per hold of the lock: a few
/// microseconds of work (see [`Registry::unsubscribe_all`]).
pub const LEAVING_CHUNK: usize = 8;

/// How many bytes of retained messages a new wildcard subscription is offered before its
/// subscriber is asked to make room (see `Registry::subscribe_to_filter`): small beside
/// any `--max-pending-bytes` worth setting, large enough that a chunk is a few writes.
pub const RETAINED_CHUNK: usize = 32 * 1024;

/// How many retained message changes the registry remembers: a wildcard subscription whose
/// stream saw fewer changes than that offers the changed ones by looking at them alone in
/// its last hold of the lock (see `Registry::subscribe_to_filter`), not at the whole store.
pub const RETAINED_CHANGES_KEPT: usize = 256;

/// How many wildcard subscription changes the registry remembers (see
/// `Inner::still_current`): a publish whose snapshot is older than that many changes
/// builds a new one.
pub const CHANGES_KEPT: usize = 64;

/// How many topics without subscribers of their own keep a snapshot of the filters'
/// subscribers that reach them. Past it the cache is emptied and starts again: a client
/// publishing to a million names makes the cache useless, never big.
pub const WILDCARD_ONLY_CACHED: usize = 256;

/// How many names a listing looks at per hold of the lock: a few microseconds of work, so
/// a publisher never waits long for a `TOPICS` on a huge registry.
pub const LISTING_CHUNK: usize = 256;

/// Topics listed for `TOPICS`: see [`Registry::listing`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The names listed, sorted.
    pub topics: Vec<Listed>,
    /// How many more matched than were listed.
    pub more: usize,
}

/// What [`Registry::subscribe`] did.
#[derive(Debug, Clone)]
pub struct Subscribed {
    /// The topic or filter as the registry stores it: callers keep it to unsubscribe
    /// later, sharing the registry's copy of the text.
    pub name: Arc<str>,
    /// How many retained messages the new subscription was given.
    pub retained: usize,
    /// Whether the subscriber must be flushed for them to go out.
    pub flush: bool,
}

/// How many retained messages the broker keeps, and how many bytes of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainLimits<'a> {
    /// The most topics with a retained message (`--max-retained`).
    pub count: usize,
    /// The most bytes of them all together (`--max-retained-bytes`).
    pub bytes: usize,
    /// The most topics whose retained message one publisher id published
    /// (`--max-retained-per-client`).
    pub per_client: usize,
    /// For a logged-in user: its name, and the most topics of all the ids it goes by
    /// together (`--max-retained-per-user`). `None` for anonymous clients, who all share one
    /// user, and for the broker's own `$SYS` figures.
    pub per_user: Option<(&'a str, usize)>,
    /// The most bytes of retained messages one publisher id published
    /// (`--max-retained-bytes-per-client`).
    pub per_client_bytes: usize,
    /// The most bytes of retained messages of all the ids a logged-in user goes by
    /// (`--max-retained-bytes-per-user`), for the user [`per_user`](Self::per_user) names.
    pub per_user_bytes: usize,
}

/// Why a message could not be retained: which limit it would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainRefused {
    /// Every one of [`RetainLimits::count`] places is taken by another topic.
    Count,
    /// Keeping it would pass [`RetainLimits::bytes`].
    Bytes,
    /// Its publisher id keeps [`RetainLimits::per_client`] topics already.
    Client,
    /// Its user keeps its [`RetainLimits::per_user`] topics already.
    User,
    /// Keeping it would take its publisher id past [`RetainLimits::per_client_bytes`].
    ClientBytes,
    /// Keeping it would take its user past [`RetainLimits::per_user_bytes`].
    UserBytes,
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
    /// Subscriptions to exact topics. Each [`Topic`] is boxed, so the map's nodes hold a
    /// pointer, not the topic: inserting a new name moves keys and values around on the
    /// stack (`BTreeMap` splits a full node), and that insert, in a new subscriber's
    /// `SUBSCRIBE`, is the deepest call an idle connection's thread ever makes. With the
    /// topics in the nodes it took 544 bytes of stack, and one connection in forty (those
    /// whose `malloc` had to grow its arena just then) went past a second 4 KiB page of
    /// stack; boxed, it takes 304 (see `CLIENT_STACK_SIZE` in `server.rs`).
    topics: BTreeMap<Arc<str>, Box<Topic>>,
    /// Subscriptions with wildcards.
    filters: FilterTree<Members>,
    /// Each wildcard filter with its number of subscribers, in order, for `TOPICS`.
    filter_names: BTreeMap<Arc<str>, usize>,
    /// Each topic's retained message: a batch of one delivery, kept as it was stamped.
    retained: BTreeMap<Arc<str>, Arc<Batch>>,
    /// The bytes of every retained message's `DELIVER` line, together.
    retained_bytes: usize,
    /// Changes whenever a retained message is kept, replaced or cleared: a new wildcard
    /// subscription compares it before and after its stream to know whether anything
    /// changed meanwhile (see [`Registry::subscribe_to_filter`]).
    retained_version: u64,
    /// The topics of the last [`RETAINED_CHANGES_KEPT`] retained versions, newest last:
    /// what a stream must look at again, rather than the whole store.
    retained_changes: VecDeque<Arc<str>>,
    /// How many of the retained messages each publisher id published, and their bytes,
    /// for the quotas.
    retained_by: BTreeMap<Arc<str>, Owned>,
    /// (topic or filter, subscriber) pairs in all.
    subscriptions: usize,
    /// Changes whenever a wildcard subscription comes or goes: a topic's snapshot made
    /// before may have lost or gained subscribers through a filter.
    generation: u64,
    /// The filters of the last [`CHANGES_KEPT`] generations, newest last: a snapshot a few
    /// generations old is still right if none of them matches its topic.
    changes: VecDeque<Arc<str>>,
    /// Snapshots of topics with no subscriber of their own, reached only through filters:
    /// at most [`WILDCARD_ONLY_CACHED`] of them (see [`Inner::subscribers`]).
    wildcard_only: HashMap<Arc<str>, (u64, Subscribers)>,
    /// Names that got their first subscriber or lost their last, in order, for an uplink
    /// (see `uplink.rs`); `None` (nothing kept) unless one asked for them.
    interest: Option<Vec<Interest>>,
}

#[derive(Debug, Default)]
struct Topic {
    members: Members,
    /// Everyone a publish to this topic reaches (its members, and the subscribers of every
    /// filter that matches it), as one array, with the [`Inner::generation`] it was made
    /// at: built by the first publish after a change. Boxed, so that a topic without one
    /// holds 8 bytes for it, not 24: most topics of an idle class are only subscribed to,
    /// never published to.
    snapshot: Option<Box<(u64, Subscribers)>>,
}

/// The subscribers of one topic or filter, by id (see `keyed.rs`: most have one or two).
#[derive(Debug, Default)]
struct Members(KeyedList<SubscriberId, Arc<dyn Subscriber>>);

impl Members {
    fn insert(&mut self, subscriber: &Arc<dyn Subscriber>) -> bool {
        self.0.insert(subscriber.id(), Arc::clone(subscriber))
    }

    fn remove(&mut self, id: SubscriberId) -> bool {
        self.0.remove(&id).is_some()
    }

    fn contains(&self, id: SubscriberId) -> bool {
        self.0.contains(&id)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<dyn Subscriber>> {
        self.0.iter().map(|(_, subscriber)| subscriber)
    }
}

impl Registry {
    /// Subscribes `subscriber` to `name`, a topic or a (valid) wildcard filter, and offers
    /// it every retained message that `name` matches, before any newer message on their
    /// topics. Returns `None` if that subscriber was already subscribed to `name`
    /// (subscribing twice delivers once), or was closed while its retained messages were
    /// offered (nothing is registered then).
    ///
    /// A topic has at most one retained message: it is offered under the lock, in the
    /// step that registers the subscription. A filter may match the whole store, which is
    /// streamed instead: see `subscribe_to_filter`. Either
    /// way a publisher that comes after the registration finds the subscription, and
    /// offers its message after them.
    pub fn subscribe(&self, name: &str, subscriber: &Arc<dyn Subscriber>) -> Option<Subscribed> {
        if topic::has_wildcard(name) {
            self.subscribe_to_filter(name, subscriber)
        } else {
            self.subscribe_to_topic(name, subscriber)
        }
    }

    fn subscribe_to_topic(
        &self,
        name: &str,
        subscriber: &Arc<dyn Subscriber>,
    ) -> Option<Subscribed> {
        let mut inner = self.inner.lock();
        let name = inner.shared_name(name);
        let entry = inner.topics.entry(Arc::clone(&name)).or_default();
        if !entry.members.insert(subscriber) {
            return None;
        }
        entry.snapshot = None;
        let first = entry.members.len() == 1;
        inner.note_interest(&name, first, true);
        inner.subscriptions += 1;
        let offered = match inner.retained.get(&name) {
            Some(delivery) => offer_retained_one(subscriber, &name, delivery),
            None => Offered::default(),
        };
        Some(offered.into_subscribed(name))
    }

    /// A wildcard subscription, and the retained messages it matches, in three steps:
    ///
    /// 1. **Snapshot**: the matching retained messages are collected under the lock,
    ///    [`LISTING_CHUNK`] names per hold. Only pointers are copied (each message is an
    ///    `Arc<Batch>`), never the messages.
    /// 2. **Stream**, outside the lock: the messages are offered to the subscriber
    ///    [`RETAINED_CHUNK`] bytes at a time, and between chunks the subscriber makes room
    ///    ([`Subscriber::wait_until_drained`]): a connection waits there until its client has read
    ///    most of what was sent. The thread that waits is the subscribing connection's
    ///    own, so a new `#` subscriber takes the whole store (16 MiB) at its own pace
    ///    without passing `--max-pending-bytes`, and nobody else waits for it.
    /// 3. **Register**, in one short hold of the lock: the subscription goes in, and the
    ///    retained messages that changed since step 1 (new, or replaced: another
    ///    `Arc`) are offered in the same hold. They are found from a log of the last
    ///    [`RETAINED_CHANGES_KEPT`] changes, so this hold lasts as long as the changes, not
    ///    the store (only more changes than that mean comparing the whole store). A
    ///    message published before this step was
    ///    not for this subscription; one published after finds it registered and comes
    ///    after. So every retained message still arrives before any live one of this
    ///    subscription, and a message replaced during the stream arrives in its newest
    ///    form, after the old one.
    ///
    /// Before this design the whole store was copied into the subscriber's queue under the
    /// lock: a new `#` subscriber was cut off before it read a line, and one re-subscribing
    /// to `#` in a loop held every publisher up for half a second at a time. Mosquitto
    /// sends a new subscription's retained messages from its single thread after the
    /// SUBACK, as part of the same loop that serves everyone.
    // Never inlined into `subscribe`, so that a `SUBSCRIBE` to a plain topic does not carry
    // this one's large stack frame (see `CLIENT_STACK_SIZE` in `server.rs`).
    #[inline(never)]
    fn subscribe_to_filter(
        &self,
        filter: &str,
        subscriber: &Arc<dyn Subscriber>,
    ) -> Option<Subscribed> {
        let id = subscriber.id();
        let version = {
            let mut inner = self.inner.lock();
            let held = inner
                .filters
                .get_mut(filter)
                .is_some_and(|members| members.contains(id));
            if held {
                return None;
            }
            inner.retained_version
        };
        let replay = subscriber.replay_retained(filter);
        let mut offered = Offered::default();
        let snapshot = if replay {
            self.retained_matching(filter)
        } else {
            Vec::new()
        };
        let mut since_room = 0;
        for (_, delivery) in &snapshot {
            if !offered.offer(subscriber, delivery) {
                return None;
            }
            since_room += delivery.lines().len();
            if since_room >= RETAINED_CHUNK {
                subscriber.wait_until_drained();
                offered.flush = false;
                since_room = 0;
            }
        }
        if since_room > 0 {
            // The last hold offers what changed meanwhile: into a queue drained to its
            // low-water mark, so that it does not wait for room while it holds the lock
            // (unless the changes alone pass the limit).
            subscriber.wait_until_drained();
            offered.flush = false;
        }
        let mut inner = self.inner.lock();
        let name = inner.shared_name(filter);
        if !inner.filters.entry(&name).insert(subscriber) {
            return None;
        }
        let count = inner.filter_names.entry(Arc::clone(&name)).or_default();
        *count += 1;
        let first = *count == 1;
        inner.filters_changed(&name);
        inner.note_interest(&name, first, true);
        inner.subscriptions += 1;
        if replay && inner.retained_version != version {
            for delivery in inner.retained_news(version, filter, &snapshot) {
                offered.offer(subscriber, delivery);
            }
        }
        Some(offered.into_subscribed(name))
    }

    /// The retained messages `filter` matches, in topic order, collected
    /// [`LISTING_CHUNK`] names per hold of the lock.
    fn retained_matching(&self, filter: &str) -> Vec<(Arc<str>, Arc<Batch>)> {
        let mut matching = Vec::new();
        self.walk_in_chunks(
            |inner| &inner.retained,
            |_, topic, delivery| {
                if topic::matches(filter, topic) {
                    matching.push((Arc::clone(topic), Arc::clone(delivery)));
                }
            },
        );
        matching
    }

    /// Removes subscriber `id` from `name` (a topic or a filter). Returns `false` if it
    /// was not subscribed, which is not an error. A topic or filter with no subscribers
    /// left is removed.
    pub fn unsubscribe(&self, name: &str, id: SubscriberId) -> bool {
        self.inner.lock().remove(name, id)
    }

    /// Removes subscriber `id` from every topic or filter in `names`. Called when a
    /// connection closes.
    ///
    /// Leavers take turns among themselves (see `leaving`), and each takes the registry's
    /// lock once per [`LEAVING_CHUNK`] names, not once for them all: a thousand
    /// connections leaving a thousand topics each at the same moment then make a publisher
    /// wait for one chunk at a time, not for a thousand whole lists. (The subscriber is
    /// already closed when its cleanup gets here, so a publisher that still finds it in a
    /// topic only gets [`Offer::Closed`] back.)
    pub fn unsubscribe_all<T: AsRef<str>>(
        &self,
        names: impl IntoIterator<Item = T>,
        id: SubscriberId,
    ) {
        let _turn = self.leaving.lock();
        let mut names = names.into_iter().peekable();
        while names.peek().is_some() {
            let mut inner = self.inner.lock();
            for name in names.by_ref().take(LEAVING_CHUNK) {
                inner.remove(name.as_ref(), id);
            }
        }
    }

    /// Everyone a publish to `topic` reaches right now, each subscriber once, or `None`
    /// if nobody listens.
    pub fn subscribers(&self, topic: &str) -> Option<Subscribers> {
        self.inner.lock().subscribers(topic)
    }

    /// Keeps `delivery` (a batch of one) as `topic`'s retained message, replacing the one
    /// before, and returns who the delivery must go to now: the same as
    /// [`subscribers`](Self::subscribers), read under the same hold of the lock, so that
    /// every subscriber gets this message exactly once, either here or as its retained
    /// message when it subscribes.
    ///
    /// # Errors
    /// [`RetainRefused`] if keeping it would pass `limits`; nothing is kept then.
    pub fn retain(
        &self,
        topic: &str,
        delivery: Arc<Batch>,
        limits: RetainLimits,
    ) -> Result<Option<Subscribers>, RetainRefused> {
        let mut inner = self.inner.lock();
        let bytes = delivery.lines().len();
        let old = inner.retained.get(topic).cloned();
        let replaced = old.as_ref().map(|old| old.lines().len());
        if replaced.is_none() && inner.retained.len() >= limits.count {
            return Err(RetainRefused::Count);
        }
        let total = inner.retained_bytes - replaced.unwrap_or(0) + bytes;
        if total > limits.bytes {
            return Err(RetainRefused::Bytes);
        }
        inner.check_quotas(&delivery, old.as_deref(), limits)?;
        if let Some(old) = &old {
            inner.forget_owner(old);
        }
        let owner = publisher_of(&delivery).into();
        inner.retained_by.entry(owner).or_default().add(bytes);
        let name = inner.shared_name(topic);
        inner.retained.insert(Arc::clone(&name), delivery);
        inner.retained_bytes = total;
        inner.retained_changed(name);
        Ok(inner.subscribers(topic))
    }

    /// Forgets `topic`'s retained message. Returns whether it had one.
    pub fn unretain(&self, topic: &str) -> bool {
        let mut inner = self.inner.lock();
        match inner.retained.remove_entry(topic) {
            Some((name, old)) => {
                inner.retained_bytes -= old.lines().len();
                inner.forget_owner(&old);
                inner.retained_changed(name);
                true
            }
            None => false,
        }
    }

    /// Every topic and filter with its number of subscribers, sorted by name.
    pub fn topic_counts(&self) -> Vec<(String, usize)> {
        self.listing(every_topic, usize::MAX)
            .topics
            .into_iter()
            .filter(|listed| listed.subscribers > 0)
            .map(|listed| (listed.name, listed.subscribers))
            .collect()
    }

    /// The names `wanted` accepts, sorted, at most `limit` of them, and how many more
    /// matched: for `TOPICS` (the router decides what is wanted: a filter, and what the
    /// asking user may see). A name is a topic with subscribers, a wildcard
    /// filter with subscribers (`news/+`, which `news/#` matches as it would a topic of
    /// that name), or a topic with a retained message.
    ///
    /// A registry may hold a million topics. Walking them all under the lock would make
    /// every publisher wait for the walk, so each of the three maps is walked
    /// [`LISTING_CHUNK`] names at a time, letting go of the lock in between and carrying
    /// on after the last name seen. The listing is then not one instant's picture: a
    /// topic added or removed during the walk may or may not be in it, which for a listing
    /// is fine.
    pub fn listing(&self, wanted: impl Fn(&str) -> bool, limit: usize) -> Listing {
        let mut matched = 0;
        let mut lists: [Vec<Listed>; 3] = Default::default();
        let mut keep = |list: &mut Vec<Listed>, listed: Listed| {
            matched += 1;
            if list.len() < limit {
                list.push(listed);
            }
        };
        self.walk_in_chunks(
            |inner| &inner.topics,
            |inner, name, entry| {
                if wanted(name) {
                    let retained = inner.retained.contains_key(name);
                    keep(&mut lists[0], listed(name, entry.members.len(), retained));
                }
            },
        );
        self.walk_in_chunks(
            |inner| &inner.filter_names,
            |_, name, count| {
                if wanted(name) {
                    keep(&mut lists[1], listed(name, *count, false));
                }
            },
        );
        self.walk_in_chunks(
            |inner| &inner.retained,
            |inner, name, _| {
                // A retained topic with subscribers is listed once, above.
                if wanted(name) && !inner.topics.contains_key(name) {
                    keep(&mut lists[2], listed(name, 0, true));
                }
            },
        );
        let mut topics: Vec<Listed> = lists.into_iter().flatten().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics.truncate(limit);
        Listing {
            more: matched - topics.len(),
            topics,
        }
    }

    /// Calls `each` for every entry of the map `pick` chooses, in order, holding the lock
    /// for [`LISTING_CHUNK`] entries at a time (see [`listing`](Self::listing)).
    fn walk_in_chunks<V>(
        &self,
        pick: impl Fn(&Inner) -> &BTreeMap<Arc<str>, V>,
        mut each: impl FnMut(&Inner, &Arc<str>, &V),
    ) {
        let mut after: Option<Arc<str>> = None;
        loop {
            let inner = self.inner.lock();
            let from = match &after {
                None => Bound::Unbounded,
                Some(name) => Bound::Excluded(&**name),
            };
            let mut seen = 0;
            for (name, value) in pick(&inner).range::<str, _>((from, Bound::Unbounded)) {
                each(&inner, name, value);
                seen += 1;
                if seen == LISTING_CHUNK {
                    after = Some(Arc::clone(name));
                    break;
                }
            }
            if seen < LISTING_CHUNK {
                return;
            }
        }
    }

    /// Starts keeping the log of interest changes (see `uplink.rs`). The log starts with
    /// every topic and filter subscribed already (durable subscriptions restored from a
    /// log are, before any client connects).
    pub fn track_interest(&self) {
        let mut inner = self.inner.lock();
        if inner.interest.is_none() {
            let wanted = inner.topics.keys().chain(inner.filter_names.keys());
            let log = wanted
                .map(|name| Interest {
                    name: Arc::clone(name),
                    subscribed: true,
                })
                .collect();
            inner.interest = Some(log);
        }
    }

    /// Takes the interest changes logged since the last call, oldest first.
    pub fn take_interest(&self) -> Vec<Interest> {
        match &mut self.inner.lock().interest {
            Some(log) => std::mem::take(log),
            None => Vec::new(),
        }
    }

    /// The counts behind `STATS`.
    pub fn totals(&self) -> Totals {
        let inner = self.inner.lock();
        Totals {
            topics: inner.topics.len() + inner.filter_names.len(),
            subscriptions: inner.subscriptions,
            retained: inner.retained.len(),
        }
    }
}

fn listed(name: &str, subscribers: usize, retained: bool) -> Listed {
    Listed {
        name: name.to_string(),
        subscribers,
        retained,
    }
}

impl Inner {
    /// `name` as an `Arc`, sharing the copy the registry already has if it has one, so a
    /// topic's name is stored once however many subscribers and maps hold it.
    fn shared_name(&self, name: &str) -> Arc<str> {
        let known = self
            .topics
            .get_key_value(name)
            .map(|(known, _)| known)
            .or_else(|| {
                self.filter_names
                    .get_key_value(name)
                    .map(|(known, _)| known)
            })
            .or_else(|| self.retained.get_key_value(name).map(|(known, _)| known));
        known.map_or_else(|| Arc::from(name), Arc::clone)
    }

    /// Logs that `name` is now wanted (`subscribed`) or not, if `changed` and if an
    /// uplink asked for the log.
    fn note_interest(&mut self, name: &Arc<str>, changed: bool, subscribed: bool) {
        if let (true, Some(log)) = (changed, &mut self.interest) {
            log.push(Interest {
                name: Arc::clone(name),
                subscribed,
            });
        }
    }

    fn remove(&mut self, name: &str, id: SubscriberId) -> bool {
        if topic::has_wildcard(name) {
            return self.remove_from_filter(name, id);
        }
        let Some(entry) = self.topics.get_mut(name) else {
            return false;
        };
        if !entry.members.remove(id) {
            return false;
        }
        self.subscriptions -= 1;
        if entry.members.is_empty() {
            if let Some((name, _)) = self.topics.remove_entry(name) {
                self.note_interest(&name, true, false);
            }
        } else {
            entry.snapshot = None;
        }
        true
    }

    fn remove_from_filter(&mut self, filter: &str, id: SubscriberId) -> bool {
        let removed = self
            .filters
            .get_mut(filter)
            .is_some_and(|members| members.remove(id));
        if !removed {
            return false;
        }
        self.filters.remove_if(filter, Members::is_empty);
        self.subscriptions -= 1;
        if let Some(count) = self.filter_names.get_mut(filter) {
            *count -= 1;
            if *count == 0 {
                if let Some((name, _)) = self.filter_names.remove_entry(filter) {
                    self.note_interest(&name, true, false);
                }
            }
        }
        let name = self.shared_name(filter);
        self.filters_changed(&name);
        // A cached snapshot would keep the leaving subscriber's handle (and its socket)
        // alive until its topic is next published to: drop the ones it may be in.
        self.wildcard_only
            .retain(|topic, _| !topic::matches(filter, topic));
        true
    }

    /// `topic`'s retained message was kept, replaced or cleared: a new version, and the
    /// topic remembered.
    fn retained_changed(&mut self, topic: Arc<str>) {
        self.retained_version += 1;
        if self.retained_changes.len() == RETAINED_CHANGES_KEPT {
            self.retained_changes.pop_front();
        }
        self.retained_changes.push_back(topic);
    }

    /// The retained messages `filter` matches that are not in `snapshot` (taken at
    /// `version`): new since, or replaced (another `Arc`), in topic order. Only the topics
    /// that changed since are looked at if the log of changes reaches back that far, so
    /// the lock is held for the changes, not for the whole store; otherwise the whole store
    /// is compared.
    fn retained_news(
        &self,
        version: u64,
        filter: &str,
        snapshot: &[(Arc<str>, Arc<Batch>)],
    ) -> Vec<&Arc<Batch>> {
        let since = self.retained_version - version;
        let candidates: Vec<(&Arc<str>, &Arc<Batch>)> =
            if since <= self.retained_changes.len() as u64 {
                let mut changed: Vec<&Arc<str>> = self
                    .retained_changes
                    .iter()
                    .rev()
                    .take(since as usize)
                    .collect();
                changed.sort();
                changed.dedup();
                changed
                    .into_iter()
                    .filter_map(|topic| self.retained.get_key_value(&**topic))
                    .collect()
            } else {
                self.retained.iter().collect()
            };
        candidates
            .into_iter()
            .filter(|(topic, delivery)| {
                topic::matches(filter, topic) && !in_snapshot(snapshot, topic, delivery)
            })
            .map(|(_, delivery)| delivery)
            .collect()
    }

    /// A wildcard subscription to `filter` came or went: a new generation, and the filter
    /// remembered as its cause.
    fn filters_changed(&mut self, filter: &Arc<str>) {
        self.generation += 1;
        if self.changes.len() == CHANGES_KEPT {
            self.changes.pop_front();
        }
        self.changes.push_back(Arc::clone(filter));
    }

    /// Whether a snapshot of `topic` made at generation `made` is still right: none of the
    /// wildcard subscriptions that came or went since matches `topic`. Without this, one
    /// client subscribing to `sport/+` would make every topic in the broker build its
    /// snapshot again, walking the tree, whether or not `sport/+` concerns it.
    fn still_current(&self, topic: &str, made: u64) -> bool {
        let since = self.generation - made;
        since <= self.changes.len() as u64
            && self
                .changes
                .iter()
                .rev()
                .take(since as usize)
                .all(|filter| !topic::matches(filter, topic))
    }

    /// See [`Registry::subscribers`]. With no wildcard subscription anywhere this is one
    /// map lookup and one reference count, as it was before filters existed.
    fn subscribers(&mut self, topic: &str) -> Option<Subscribers> {
        if let Some(cached) = self.cached_snapshot(topic) {
            return Some(cached);
        }
        let generation = self.generation;
        let snapshot = self.everyone_reached(topic)?;
        match self.topics.get_mut(topic) {
            Some(entry) => entry.snapshot = Some(Box::new((generation, Arc::clone(&snapshot)))),
            None => {
                // Reached through filters only. Keeping a snapshot for every name published
                // to would let a client fill the broker's memory with names: the cache is
                // bounded, and emptied when full.
                if self.wildcard_only.len() >= WILDCARD_ONLY_CACHED {
                    self.wildcard_only.clear();
                }
                let name = self.shared_name(topic);
                self.wildcard_only
                    .insert(name, (generation, Arc::clone(&snapshot)));
            }
        }
        Some(snapshot)
    }

    /// `topic`'s snapshot if one is cached and still right, marked current.
    fn cached_snapshot(&mut self, topic: &str) -> Option<Subscribers> {
        let made = match self.topics.get(topic) {
            Some(entry) => entry.snapshot.as_ref()?.0,
            None => self.wildcard_only.get(topic)?.0,
        };
        if made != self.generation && !self.still_current(topic, made) {
            return None;
        }
        let generation = self.generation;
        let cached = match self.topics.get_mut(topic) {
            Some(entry) => entry.snapshot.as_deref_mut()?,
            None => self.wildcard_only.get_mut(topic)?,
        };
        cached.0 = generation;
        Some(Arc::clone(&cached.1))
    }

    /// Everyone a publish to `topic` reaches, each once, built from the topic's members
    /// and a walk of the filter tree ([`FilterTree::walk`]).
    fn everyone_reached(&self, topic: &str) -> Option<Subscribers> {
        let mut everyone: Vec<&Arc<dyn Subscriber>> = match self.topics.get(topic) {
            Some(entry) => entry.members.iter().collect(),
            None => Vec::new(),
        };
        let exact = everyone.len();
        self.filters
            .walk(topic, &mut |members| everyone.extend(members.iter()));
        if everyone.len() > exact {
            // Subscribed through two filters (`news/#` and `news/+`), or a filter and the
            // topic itself: one delivery each all the same. References are sorted, not
            // clones: one client holding ten thousand matching filters costs ten thousand
            // pointers compared, and one reference count.
            everyone.sort_unstable_by_key(|subscriber| subscriber.id());
            everyone.dedup_by_key(|subscriber| subscriber.id());
        }
        if everyone.is_empty() {
            return None;
        }
        Some(everyone.into_iter().cloned().collect())
    }
}

/// The retained messages offered to a new subscription so far: see [`Subscribed`].
#[derive(Debug, Default)]
struct Offered {
    taken: usize,
    flush: bool,
}

impl Offered {
    /// Offers one retained message. Returns `false` if the subscriber is closed.
    fn offer(&mut self, subscriber: &Arc<dyn Subscriber>, delivery: &Batch) -> bool {
        match subscriber.offer_retained(delivery) {
            Offer::FlushNeeded => self.flush = true,
            Offer::Queued => {}
            Offer::Closed => return false,
        }
        self.taken += 1;
        true
    }

    fn into_subscribed(self, name: Arc<str>) -> Subscribed {
        Subscribed {
            name,
            retained: self.taken,
            flush: self.flush,
        }
    }
}

/// A new subscriber of `name` is offered its retained message: one message at most, so
/// offering it only copies it into the subscriber's queue. A call of its own, never
/// inlined, so that a `SUBSCRIBE` to a topic without one does not carry its stack frame
/// (see `CLIENT_STACK_SIZE` in `server.rs`).
#[inline(never)]
fn offer_retained_one(subscriber: &Arc<dyn Subscriber>, name: &str, delivery: &Batch) -> Offered {
    let mut offered = Offered::default();
    if subscriber.replay_retained(name) {
        offered.offer(subscriber, delivery);
    }
    offered
}

/// Whether `topic`'s retained message `delivery` is the one in `snapshot` (sorted by
/// topic): the same `Arc`, not merely equal bytes, so a message replaced by an identical
/// one still counts as new.
fn in_snapshot(snapshot: &[(Arc<str>, Arc<Batch>)], topic: &str, delivery: &Arc<Batch>) -> bool {
    snapshot
        .binary_search_by(|(name, _)| (**name).cmp(topic))
        .is_ok_and(|at| Arc::ptr_eq(&snapshot[at].1, delivery))
}

/// The publisher id of a retained message (a batch of one).
fn publisher_of(delivery: &Batch) -> &str {
    delivery
        .published()
        .next()
        .map_or("", |published| published.publisher_id)
}

/// What one publisher id (or one user, over all its ids) keeps in the retained store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Owned {
    /// Topics whose retained message it published.
    topics: usize,
    /// The bytes of those messages' `DELIVER` lines.
    bytes: usize,
}

/// Which part of a share a retained message would pass.
enum Over {
    Topics,
    Bytes,
}

impl Owned {
    /// One more message of `bytes`.
    fn add(&mut self, bytes: usize) {
        self.topics += 1;
        self.bytes += bytes;
    }

    /// Which of `topics` and `bytes` this share would pass with a new message of
    /// `new_bytes`, in place of one of its own of `replaced` bytes if it replaces one
    /// (then it needs no new topic).
    fn over(
        &self,
        replaced: Option<usize>,
        new_bytes: usize,
        (topics, bytes): (usize, usize),
    ) -> Option<Over> {
        if replaced.is_none() && self.topics >= topics {
            return Some(Over::Topics);
        }
        // What it replaces is among what it keeps, so this cannot go below zero; saturating
        // all the same, as nothing a client sends may make the broker panic.
        if self.bytes.saturating_sub(replaced.unwrap_or(0)) + new_bytes > bytes {
            return Some(Over::Bytes);
        }
        None
    }
}

impl Inner {
    /// Whether the publisher id of `delivery` (its *owner*) may keep it, in place of
    /// `previous`, the topic's retained message before, if any: taking over a topic from
    /// another id is a new topic for the owner, replacing its own message is not, but its
    /// bytes count either way (a short message replaced by a long one needs the room).
    /// Counted per id, and for a user over every id it goes by (`alice`, `alice:sensor1`:
    /// the ids of one user sort together), in topics and in bytes. (Mosquitto bounds
    /// neither; NATS bounds what one account, its user, may store, in bytes.)
    fn check_quotas(
        &self,
        delivery: &Batch,
        previous: Option<&Batch>,
        limits: RetainLimits<'_>,
    ) -> Result<(), RetainRefused> {
        let owner = publisher_of(delivery);
        let bytes = delivery.lines().len();
        // The bytes of `previous`, if it counts for whoever `counts_for` accepts.
        let replaced = |counts_for: &dyn Fn(&str) -> bool| {
            previous
                .filter(|old| counts_for(publisher_of(old)))
                .map(|old| old.lines().len())
        };
        let of_client = self.retained_by.get(owner).copied().unwrap_or_default();
        let per_client = (limits.per_client, limits.per_client_bytes);
        match of_client.over(replaced(&|id| id == owner), bytes, per_client) {
            Some(Over::Topics) => return Err(RetainRefused::Client),
            Some(Over::Bytes) => return Err(RetainRefused::ClientBytes),
            None => {}
        }
        let Some((user, limit)) = limits.per_user else {
            return Ok(());
        };
        let users = |id: &str| crate::access::may_publish_as(user, id);
        let of_user = self
            .retained_by
            .range::<str, _>((Bound::Included(user), Bound::Unbounded))
            .take_while(|(id, _)| id.starts_with(user))
            .filter(|(id, _)| users(id))
            .fold(Owned::default(), |sum, (_, owned)| Owned {
                topics: sum.topics + owned.topics,
                bytes: sum.bytes + owned.bytes,
            });
        match of_user.over(replaced(&users), bytes, (limit, limits.per_user_bytes)) {
            Some(Over::Topics) => Err(RetainRefused::User),
            Some(Over::Bytes) => Err(RetainRefused::UserBytes),
            None => Ok(()),
        }
    }

    /// One retained message, `old`, fewer for its publisher id.
    fn forget_owner(&mut self, old: &Batch) {
        let owner = publisher_of(old);
        if let Some(owned) = self.retained_by.get_mut(owner) {
            owned.topics -= 1;
            owned.bytes -= old.lines().len();
            if owned.topics == 0 {
                self.retained_by.remove(owner);
            }
        }
    }
}

/// What `#` matches: every name but the broker's own `$SYS` ones.
pub fn every_topic(name: &str) -> bool {
    topic::matches(topic::ALL_LEVELS, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscriber that keeps the topics of the batches it is offered.
    #[derive(Debug)]
    struct Recorder {
        id: SubscriberId,
        offered: Mutex<Vec<String>>,
    }

    impl Subscriber for Recorder {
        fn id(&self) -> SubscriberId {
            self.id
        }
        fn offer(&self, batch: &Batch) -> Offer {
            self.offered.lock().push(batch.topic().to_string());
            Offer::Queued
        }
        fn flush(&self) {}
    }

    fn recorder() -> Arc<Recorder> {
        Arc::new(Recorder {
            id: SubscriberId::next(),
            offered: Mutex::new(Vec::new()),
        })
    }

    fn nobody() -> Arc<dyn Subscriber> {
        recorder()
    }

    fn totals(topics: usize, subscriptions: usize, retained: usize) -> Totals {
        Totals {
            topics,
            subscriptions,
            retained,
        }
    }

    fn ids(subscribers: &Subscribers) -> Vec<SubscriberId> {
        subscribers.iter().map(|s| s.id()).collect()
    }

    fn one_delivery(topic: &str, message: &str) -> Arc<Batch> {
        let mut batch = Batch::default();
        batch.start(topic, "2025-03-14 10:30:00");
        batch.add(message, "p");
        Arc::new(batch)
    }

    const ROOMY: RetainLimits = RetainLimits {
        count: 10,
        bytes: 10_000,
        per_client: 10,
        per_user: None,
        per_client_bytes: 10_000,
        per_user_bytes: 10_000,
    };

    #[test]
    fn subscribing_twice_counts_once_and_the_name_is_shared() {
        let registry = Registry::default();
        let (a, b) = (nobody(), nobody());
        let first = registry.subscribe("t", &a).unwrap().name;
        assert!(registry.subscribe("t", &a).is_none());
        let second = registry.subscribe("t", &b).unwrap().name;
        assert!(Arc::ptr_eq(&first, &second), "one copy of the topic's name");
        assert_eq!(registry.totals(), totals(1, 2, 0));
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
        for topic in ["x", "y", "z", "x/#"] {
            registry.subscribe(topic, &a);
        }
        registry.subscribe("y", &b);
        assert_eq!(registry.totals(), totals(4, 5, 0));
        registry.unsubscribe_all(["x", "y", "z", "x/#"], a.id());
        assert_eq!(registry.totals(), totals(1, 1, 0));
        assert_eq!(registry.topic_counts(), [("y".to_string(), 1)]);
        assert!(registry.subscribers("x").is_none());
    }

    #[test]
    fn a_subscriber_matching_through_several_filters_is_reached_once() {
        let registry = Registry::default();
        let (a, b) = (nobody(), nobody());
        for filter in ["news/#", "news/+", "news/tech"] {
            registry.subscribe(filter, &a);
        }
        registry.subscribe("+/tech", &b);
        let reached = registry.subscribers("news/tech").unwrap();
        let mut expected = vec![a.id(), b.id()];
        expected.sort();
        assert_eq!(ids(&reached), expected);
        assert_eq!(ids(&registry.subscribers("news").unwrap()), [a.id()]);
        assert!(registry.subscribers("sport").is_none());
    }

    #[test]
    fn a_cached_snapshot_follows_wildcard_subscriptions_that_come_and_go() {
        let registry = Registry::default();
        let (a, b) = (nobody(), nobody());
        registry.subscribe("news/tech", &a);
        assert_eq!(registry.subscribers("news/tech").unwrap().len(), 1);
        registry.subscribe("news/+", &b);
        assert_eq!(registry.subscribers("news/tech").unwrap().len(), 2);
        assert!(registry.unsubscribe("news/+", b.id()));
        assert_eq!(registry.subscribers("news/tech").unwrap().len(), 1);
    }

    /// A topic of 14 levels, `l0/l1/.../l13`, and 10,000 filters that all match it (each
    /// level its own name or `+`), held by one subscriber: the attack of issue 22.
    fn ten_thousand_filters_on_one_topic(registry: &Registry) -> (String, Arc<dyn Subscriber>) {
        let levels: Vec<String> = (0..14).map(|level| format!("l{level}")).collect();
        let attacker = nobody();
        for n in 0..10_000u32 {
            let filter: Vec<&str> = (0..14)
                .map(|level| match n >> level & 1 {
                    1 => "+",
                    _ => levels[level].as_str(),
                })
                .collect();
            registry.subscribe(&filter.join("/"), &attacker);
        }
        (levels.join("/"), attacker)
    }

    /// How long `publish` takes, per call, over `times` calls.
    fn per_call(times: u32, mut publish: impl FnMut()) -> std::time::Duration {
        let start = std::time::Instant::now();
        for _ in 0..times {
            publish();
        }
        start.elapsed() / times
    }

    /// Ten thousand matching filters cost one walk, not one per publish, even while
    /// wildcard subscriptions elsewhere come and go. Prints what a publish costs (run with
    /// `cargo test --release --lib ten_thousand -- --nocapture` for the figures).
    #[test]
    fn ten_thousand_filters_matching_a_topic_cost_one_walk_not_one_per_publish() {
        let registry = Registry::default();
        let (topic, attacker) = ten_thousand_filters_on_one_topic(&registry);
        let elsewhere = nobody();
        let walked = per_call(20, || {
            // A change that matches the topic: each publish walks the tree again.
            registry.subscribe("l0/#", &elsewhere);
            assert_eq!(registry.subscribers(&topic).unwrap().len(), 2);
            registry.unsubscribe("l0/#", elsewhere.id());
        });
        let first = registry.subscribers(&topic).unwrap();
        assert_eq!(ids(&first), [attacker.id()], "each subscriber once");
        let cached = per_call(10_000, || {
            registry.subscribe("sport/+", &elsewhere);
            let reached = registry.subscribers(&topic).unwrap();
            registry.unsubscribe("sport/+", elsewhere.id());
            assert!(
                Arc::ptr_eq(&first, &reached),
                "an unrelated change keeps it"
            );
        });
        println!("10,000 filters matching {topic}: {walked:?} per publish walking the tree, {cached:?} per publish (with a subscribe and an unsubscribe elsewhere) from the cache");
        registry.subscribe("l0/+/#", &elsewhere);
        assert_eq!(
            registry.subscribers(&topic).unwrap().len(),
            2,
            "a related one counts"
        );
    }

    #[test]
    fn a_subscriber_that_left_is_not_kept_alive_by_a_cached_snapshot() {
        let registry = Registry::default();
        let a = nobody();
        registry.subscribe("news/+", &a);
        assert_eq!(registry.subscribers("news/tech").unwrap().len(), 1);
        assert_eq!(
            Arc::strong_count(&a),
            3,
            "ours, the filter's, the cached snapshot's"
        );
        assert!(registry.unsubscribe("news/+", a.id()));
        assert_eq!(Arc::strong_count(&a), 1);
        assert!(registry.subscribers("news/tech").is_none());
    }

    #[test]
    fn a_new_subscription_is_offered_the_retained_messages_it_matches() {
        let registry = Registry::default();
        for topic in ["room/1/temp", "room/2/temp", "room/2/light", "$SYS/x"] {
            registry
                .retain(topic, one_delivery(topic, "21"), ROOMY)
                .unwrap();
        }
        let wild = recorder();
        let handle: Arc<dyn Subscriber> = Arc::clone(&wild) as Arc<dyn Subscriber>;
        let subscribed = registry.subscribe("room/+/temp", &handle).unwrap();
        assert_eq!(subscribed.retained, 2);
        assert_eq!(*wild.offered.lock(), ["room/1/temp", "room/2/temp"]);
        let exact = recorder();
        let handle: Arc<dyn Subscriber> = Arc::clone(&exact) as Arc<dyn Subscriber>;
        registry.subscribe("room/2/light", &handle);
        assert_eq!(*exact.offered.lock(), ["room/2/light"]);
        assert_eq!(registry.totals().retained, 4);
        assert!(registry.unretain("room/1/temp"));
        assert!(!registry.unretain("room/1/temp"));
        let late = recorder();
        let handle: Arc<dyn Subscriber> = Arc::clone(&late) as Arc<dyn Subscriber>;
        registry.subscribe("#", &handle);
        assert_eq!(
            *late.offered.lock(),
            ["room/2/light", "room/2/temp"],
            "cleared ones are gone, and # does not match $SYS"
        );
    }

    /// A subscriber that keeps the lines it is offered, and runs `on_room` (once) the first
    /// time it is asked to make room: to change the store in the middle of a stream.
    struct Streamed {
        id: SubscriberId,
        lines: Mutex<Vec<String>>,
        rooms: Mutex<usize>,
        on_room: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl std::fmt::Debug for Streamed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Streamed({:?})", self.id)
        }
    }

    impl Subscriber for Streamed {
        fn id(&self) -> SubscriberId {
            self.id
        }
        fn offer(&self, batch: &Batch) -> Offer {
            let text = String::from_utf8_lossy(batch.lines()).into_owned();
            self.lines.lock().push(text);
            Offer::Queued
        }
        fn flush(&self) {}
        fn wait_until_drained(&self) {
            *self.rooms.lock() += 1;
            let on_room = self.on_room.lock().take();
            if let Some(on_room) = on_room {
                on_room();
            }
        }
    }

    fn streamed(on_room: Option<Box<dyn FnOnce() + Send>>) -> Arc<Streamed> {
        Arc::new(Streamed {
            id: SubscriberId::next(),
            lines: Mutex::new(Vec::new()),
            rooms: Mutex::new(0),
            on_room: Mutex::new(on_room),
        })
    }

    const BIG: RetainLimits = RetainLimits {
        count: 1000,
        bytes: 1 << 20,
        per_client: 1000,
        per_user: None,
        per_client_bytes: 1 << 20,
        per_user_bytes: 1 << 20,
    };

    /// A store of `count` retained messages of about 1 KiB, on `r/000`, `r/001`...
    fn store_of(count: usize) -> Arc<Registry> {
        let registry = Arc::new(Registry::default());
        for n in 0..count {
            let topic = format!("r/{n:03}");
            let body = format!("{n}-{}", "x".repeat(1000));
            registry
                .retain(&topic, one_delivery(&topic, &body), BIG)
                .unwrap();
        }
        registry
    }

    #[test]
    fn a_wildcard_subscription_is_streamed_the_store_making_room_between_chunks() {
        let registry = store_of(100);
        let sub = streamed(None);
        let handle: Arc<dyn Subscriber> = Arc::clone(&sub) as Arc<dyn Subscriber>;
        assert_eq!(registry.subscribe("r/#", &handle).unwrap().retained, 100);
        let lines = sub.lines.lock();
        assert_eq!(lines.len(), 100);
        assert!(lines.windows(2).all(|pair| pair[0] < pair[1]), "in order");
        drop(lines);
        // About 100 KiB in chunks of RETAINED_CHUNK bytes, and room made once more for
        // the rest before the last hold of the lock.
        assert_eq!(*sub.rooms.lock(), 100 * 1024 / RETAINED_CHUNK + 1);
        assert!(registry.subscribe("r/#", &handle).is_none(), "once");
        assert_eq!(sub.lines.lock().len(), 100, "nothing offered twice");
    }

    #[test]
    fn a_message_retained_or_replaced_during_the_stream_comes_last_in_its_newest_form() {
        let registry = store_of(100);
        let during = Arc::clone(&registry);
        let change = Box::new(move || {
            // r/000 has gone out already; r/099 has not; r/new is new.
            for topic in ["r/000", "r/099", "r/new"] {
                during
                    .retain(topic, one_delivery(topic, "newest"), BIG)
                    .unwrap();
            }
        });
        let sub = streamed(Some(change));
        let handle: Arc<dyn Subscriber> = Arc::clone(&sub) as Arc<dyn Subscriber>;
        let subscribed = registry.subscribe("r/#", &handle).unwrap();
        let lines = sub.lines.lock();
        let newest: Vec<&String> = lines.iter().filter(|l| l.contains("newest")).collect();
        assert_eq!(newest.len(), 3, "each newest form once: {newest:?}");
        assert!(lines[..lines.len() - 3]
            .iter()
            .all(|line| !line.contains("newest")));
        assert!(lines[lines.len() - 3].starts_with("DELIVER r/000 "));
        assert!(lines[lines.len() - 1].starts_with("DELIVER r/new "));
        assert_eq!(subscribed.retained, lines.len());
        // 100 in the snapshot (r/099 in its old form: the change came after it was taken),
        // then the three changed.
        assert_eq!(lines.len(), 103);
    }

    #[test]
    fn more_changes_during_the_stream_than_are_remembered_are_found_all_the_same() {
        let registry = store_of(100);
        let during = Arc::clone(&registry);
        let change = Box::new(move || {
            for round in 0..3 {
                for n in 0..100 {
                    let topic = format!("r/{n:03}");
                    let body = format!("newest{round}");
                    during
                        .retain(&topic, one_delivery(&topic, &body), BIG)
                        .unwrap();
                }
            }
        });
        const _: () = assert!(300 > RETAINED_CHANGES_KEPT, "more changes than are kept");
        let sub = streamed(Some(change));
        let handle: Arc<dyn Subscriber> = Arc::clone(&sub) as Arc<dyn Subscriber>;
        registry.subscribe("r/#", &handle).unwrap();
        let lines = sub.lines.lock();
        assert_eq!(
            lines.len(),
            200,
            "the snapshot, then each topic in its newest form"
        );
        assert!(lines[100..].iter().all(|line| line.contains(" newest2 ")));
    }

    #[test]
    fn retaining_returns_who_must_get_the_message_and_respects_the_limits() {
        let registry = Registry::default();
        let a = nobody();
        registry.subscribe("t/+", &a);
        let limits = RetainLimits {
            count: 2,
            bytes: 200,
            ..ROOMY
        };
        let receivers = registry.retain("t/1", one_delivery("t/1", "x"), limits);
        assert_eq!(ids(&receivers.unwrap().unwrap()), [a.id()]);
        assert!(registry
            .retain("t/2", one_delivery("t/2", "x"), limits)
            .is_ok());
        assert_eq!(
            registry
                .retain("t/3", one_delivery("t/3", "x"), limits)
                .err(),
            Some(RetainRefused::Count)
        );
        assert!(
            registry
                .retain("t/2", one_delivery("t/2", "y"), limits)
                .is_ok(),
            "replacing takes no new place"
        );
        let big = "z".repeat(200);
        assert_eq!(
            registry
                .retain("t/2", one_delivery("t/2", &big), limits)
                .err(),
            Some(RetainRefused::Bytes)
        );
        assert_eq!(registry.totals().retained, 2);
    }

    fn delivery_from(topic: &str, publisher_id: &str) -> Arc<Batch> {
        let mut batch = Batch::default();
        batch.start(topic, "2025-03-14 10:30:00");
        batch.add("m", publisher_id);
        Arc::new(batch)
    }

    #[test]
    fn each_id_and_each_user_keeps_at_most_its_share_of_retained_topics() {
        let registry = Registry::default();
        let limits = RetainLimits {
            per_client: 2,
            per_user: Some(("alice", 3)),
            ..ROOMY
        };
        let retain =
            |topic: &str, id: &str| registry.retain(topic, delivery_from(topic, id), limits);
        assert!(retain("a/1", "alice").is_ok());
        assert!(retain("a/2", "alice").is_ok());
        assert_eq!(retain("a/3", "alice").err(), Some(RetainRefused::Client));
        assert!(
            retain("a/2", "alice").is_ok(),
            "replacing its own takes no new place"
        );
        assert!(retain("a/3", "alice:2").is_ok());
        assert_eq!(retain("a/4", "alice:3").err(), Some(RetainRefused::User));
        assert!(
            retain("a/3", "alice:3").is_ok(),
            "taking over a topic of the same user"
        );
        let alicea = RetainLimits {
            per_user: Some(("alicea", 3)),
            ..limits
        };
        assert!(registry
            .retain("b/1", delivery_from("b/1", "alicea"), alicea)
            .is_ok());
        assert!(registry.unretain("a/1"));
        assert!(
            retain("a/4", "alice:3").is_ok(),
            "UNRETAIN gave the place back, and alicea's topic is not alice's"
        );
        let anonymous = RetainLimits {
            per_user: None,
            ..limits
        };
        assert!(
            registry
                .retain("a/4", delivery_from("a/4", "bob"), anonymous)
                .is_ok(),
            "taking a topic over moves it to the new id"
        );
        assert!(retain("a/5", "alice:3").is_ok());
    }

    fn sized_delivery(topic: &str, publisher_id: &str, message: &str) -> Arc<Batch> {
        let mut batch = Batch::default();
        batch.start(topic, "2025-03-14 10:30:00");
        batch.add(message, publisher_id);
        Arc::new(batch)
    }

    #[test]
    fn each_id_and_each_user_keeps_at_most_its_share_of_retained_bytes() {
        let registry = Registry::default();
        // The line of a ten-byte message from `alice`; `alice:2`'s is two bytes longer, so
        // an id keeps two of those and no more, a user four.
        let line = sized_delivery("a/1", "alice", "0123456789").lines().len();
        let limits = RetainLimits {
            per_client_bytes: 2 * line + 4,
            per_user: Some(("alice", 10)),
            per_user_bytes: 4 * line,
            ..ROOMY
        };
        let retain = |topic: &str, id: &str, message: &str| {
            let delivery = sized_delivery(topic, id, message);
            registry.retain(topic, delivery, limits).err()
        };
        assert_eq!(retain("a/1", "alice", "0123456789"), None);
        assert_eq!(retain("a/2", "alice", "0123456789"), None);
        assert_eq!(
            retain("a/3", "alice", "0"),
            Some(RetainRefused::ClientBytes)
        );
        assert_eq!(
            retain("a/2", "alice", "0123456789+++++"),
            Some(RetainRefused::ClientBytes),
            "a longer message in place of its own needs the room"
        );
        assert_eq!(
            retain("a/2", "alice", "012345678"),
            None,
            "a shorter one fits"
        );
        assert_eq!(retain("a/3", "alice:2", "0123456789"), None);
        assert_eq!(
            retain("a/4", "alice:3", "0123456789"),
            Some(RetainRefused::UserBytes)
        );
        assert_eq!(
            retain("a/3", "alice:3", "0123456789"),
            None,
            "taking over a topic of the same user, with as many bytes"
        );
        assert!(registry.unretain("a/1"));
        assert_eq!(
            retain("a/4", "alice:3", "0123456789"),
            None,
            "UNRETAIN gave the bytes back"
        );
        assert_eq!(registry.totals().retained, 3);
    }

    #[test]
    fn the_interest_log_names_first_subscribers_and_last_ones_out() {
        let registry = Registry::default();
        let (a, b) = (nobody(), nobody());
        registry.subscribe("before", &a);
        registry.track_interest();
        for name in ["t", "t", "f/#"] {
            registry.subscribe(name, &a);
            registry.subscribe(name, &b);
        }
        registry.unsubscribe("t", a.id());
        registry.unsubscribe_all(["t", "f/#"], b.id());
        registry.unsubscribe("f/#", a.id());
        let log: Vec<(String, bool)> = registry
            .take_interest()
            .into_iter()
            .map(|change| (change.name.to_string(), change.subscribed))
            .collect();
        // What was subscribed before the log began comes first: the uplink learns of it too.
        let expected = [
            ("before", true),
            ("t", true),
            ("f/#", true),
            ("t", false),
            ("f/#", false),
        ];
        let expected: Vec<(String, bool)> =
            expected.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        assert_eq!(log, expected);
        assert!(registry.take_interest().is_empty(), "taken once");
    }

    #[test]
    fn a_listing_shows_topics_filters_and_retained_topics_once_each_in_order() {
        let registry = Registry::default();
        let a = nobody();
        for name in ["b", "a/+", "c"] {
            registry.subscribe(name, &a);
        }
        for topic in ["c", "d"] {
            registry
                .retain(topic, one_delivery(topic, "m"), ROOMY)
                .unwrap();
        }
        let line = |name: &str, subscribers, retained| Listed {
            name: name.to_string(),
            subscribers,
            retained,
        };
        let all = registry.listing(every_topic, 10);
        assert_eq!(
            all.topics,
            [
                line("a/+", 1, false),
                line("b", 1, false),
                line("c", 1, true),
                line("d", 0, true),
            ]
        );
        let first_two = registry.listing(every_topic, 2);
        assert_eq!(first_two.topics.len(), 2);
        assert_eq!(first_two.more, 2);
    }
}
