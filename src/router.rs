//! The one road every message takes: "publish this to that topic", for every kind of
//! publisher and every kind of subscriber.
//!
//! The [`Router`] owns the registry and the counters, holds every publish and subscription
//! to the grammar (`protocol/grammar.rs`) and the broker's limits, checks the auth file's
//! rules for whoever asks (`access.rs`: a logged-in user, or `anonymous`), and asks the
//! embedding program's hooks (`hooks.rs`). That is why each of those rules holds for every
//! way in: every one of them comes through here. Each place messages come in from (every
//! client's session, whatever its way in: TCP, the JSON dialect, WebSocket, UDP, HTTP; the
//! embedding API through [`BrokerHandle::publish`](crate::BrokerHandle::publish); other
//! brokers through the NATS bridge) publishes through a [`Publisher`] of its own, which does
//! the rest:
//!
//! ```text
//!   publish(topic, message, id) ─▶ same topic as the batch so far?
//!        │ no: hand the old batch out; one registry lookup, one clock reading; new batch
//!        ▼
//!   batch.add ─▶ the DELIVER line is formatted once, for every subscriber
//!        │
//!   hand_out ─▶ Subscriber::offer to each subscriber of the batch (a copy, no I/O)
//!        │        (when the topic changes, before a reply, or at the end of a burst)
//!   flush ─────▶ Subscriber::flush to each subscriber offered to (the writes)
//!                 (once per burst: before the ingress waits for more input)
//! ```
//!
//! Batching is where the throughput comes from: a burst of 500 publishes to one topic read
//! in one `read` costs one registry lookup, one clock reading, and one offer and one write
//! per subscriber, not 500 of each. It is safe because a batch never outlives one burst of
//! input: every publish in it had arrived when the lookup was made, so a subscription made
//! before any of them was sent is in the snapshot. A publisher's own `SUBSCRIBE` hands the
//! batch out first (see the session), so it is seen by the very next publish; and the
//! timestamp, read once per batch, is at most one burst's handling time old.
//!
//! Who may do what (the auth file's rules, logging in, what a listing shows) is the
//! router's too, in `router/rules.rs`.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use crate::access::Action;
use crate::auth::Logins;
use crate::batch::Batch;
use crate::clients::Clients;
use crate::clock::Clock;
use crate::config::Config;
use crate::durable::Durables;
use crate::hooks::{self, ClientInfo, Hooks, Publish, PublishVerdict, Refusal, Transport};
use crate::protocol::grammar::{self, Limits};
use crate::protocol::ProtocolError;
use crate::registry::{Listing, Registry, RetainLimits, RetainRefused, Subscribers};
use crate::stats::Stats;
use crate::subscriber::{Offer, Subscriber, SubscriberId};
use crate::text;
use crate::topic;
use crate::uplink::{Interest, Uplink};

mod rules;

/// A batch at least this large is sent at once, without waiting for the end of the burst.
/// It bounds the memory one publisher's pending deliveries can take.
///
/// One full read (64 KiB, see `framing.rs`) of short publishes makes more bytes than that
/// of `DELIVER` lines, which add a timestamp to each: about two writes per subscriber per
/// read. The size is a trade between two workloads (`bench ... --against`, 7 to 9 rounds):
/// - at 32 KiB a read went out in three writes, and `bench fanout` (one publisher, 100
///   subscribers) made 12,600 `sendto` calls where it now makes 8,600: 1.05 times as fast
///   at 64 KiB;
/// - at 128 KiB, one write per read (4,900 to 5,200 calls, no more than the relay's
///   5,600), fan-out gained no more, and `bench fanin` (ten publishers, one subscriber)
///   lost: it ran at 0.89 of its speed at 32 KiB, and 0.95 of its speed at 64 KiB. Each
///   publisher then holds the one subscriber's outbox for a bigger write while the other
///   nine wait for it.
///
/// NATS queues all of a read's messages in each subscriber's outbound buffer, whatever
/// their size, and wakes the subscribers' writers once the read is parsed (`flushClients`
/// in its read loop); here the threshold also bounds what one batch can hold.
pub const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Routes publishes to subscribers. One per broker, shared by every thread. See the module
/// docs.
pub struct Router {
    config: Config,
    /// The limits on names, from `config`, as the grammar takes them (see `grammar.rs`).
    limits: Limits,
    registry: Registry,
    stats: Arc<Stats>,
    /// The embedding program's hooks, if it gave any (see `hooks.rs`). Without them, each
    /// publish and subscribe pays one check of this `Option`, and nothing else.
    hooks: Option<Arc<dyn Hooks>>,
    /// Every durable subscription (see `durable/`); each is also in the registry.
    durables: Arc<Durables>,
    /// Where local publishes also go, if anywhere (see `uplink.rs`): set once, at start.
    uplink: OnceLock<Arc<dyn Uplink>>,
    /// Who may do what, if the broker has an auth file (see `access.rs`).
    logins: Option<Logins>,
    /// Every client connected, and what each is doing (see `clients.rs`).
    clients: Arc<Clients>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.config)
            .field("hooks", &self.hooks.is_some())
            .field("uplink", &self.uplink.get().is_some())
            .field("access", &self.logins.is_some())
            .finish_non_exhaustive()
    }
}

/// A hook's refusal, as the client is told it.
fn refused(refusal: Refusal) -> ProtocolError {
    ProtocolError::Refused(refusal.reason().to_string())
}

impl Router {
    /// A router with no subscribers and no hooks, enforcing `config`'s limits, with
    /// durable subscriptions in memory only.
    pub fn new(config: Config) -> Router {
        Router::with_hooks(config, None)
    }

    /// A router that asks `hooks` about every client, subscription and publish, with
    /// durable subscriptions in memory only.
    pub fn with_hooks(config: Config, hooks: Option<Arc<dyn Hooks>>) -> Router {
        let durables = Arc::new(Durables::in_memory(&config));
        Router::with_parts(config, hooks, durables)
    }

    /// A router that asks `hooks`, whose durable subscriptions are `durables` (restored
    /// from a log, say): each is registered as a subscriber of its filter now, without
    /// asking the hooks again (they agreed when it was made).
    pub fn with_parts(
        config: Config,
        hooks: Option<Arc<dyn Hooks>>,
        durables: Arc<Durables>,
    ) -> Router {
        let router = Router {
            limits: Limits {
                topic_bytes: config.max_topic_bytes,
                id_bytes: config.max_id_bytes,
                topic_levels: config.max_topic_levels,
            },
            config,
            registry: Registry::default(),
            stats: Arc::new(Stats::default()),
            hooks,
            durables,
            uplink: OnceLock::new(),
            logins: None,
            clients: Arc::default(),
        };
        for durable in router.durables.all() {
            let filter = Arc::clone(durable.filter());
            let subscriber: Arc<dyn Subscriber> = durable;
            let restored = grammar::check_filter(&filter, &router.limits)
                .map(|()| router.add_subscriber(&filter, &subscriber));
            if let Err(error) = restored {
                log::warn!("durable subscription to {filter} not restored: {error}");
            }
        }
        router
    }

    /// Every durable subscription of this broker.
    pub fn durables(&self) -> &Arc<Durables> {
        &self.durables
    }

    /// The settings it was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters behind `STATS`, shared with the subscribers that count their own
    /// events (a slow consumer cut off).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The client table: every session enters its client here (see `clients.rs`).
    pub fn clients(&self) -> &Arc<Clients> {
        &self.clients
    }

    /// Sends every local publish on to `uplink` too, and tells it about local interest
    /// from now on. Call it before any client connects; a second uplink is refused
    /// (returned).
    ///
    /// # Errors
    /// The uplink given, if one was set already.
    pub fn set_uplink(&self, uplink: Arc<dyn Uplink>) -> Result<(), Arc<dyn Uplink>> {
        self.registry.track_interest();
        self.uplink.set(uplink)
    }

    /// The topics and filters that got their first local subscriber or lost their last
    /// since the last call, oldest first: for the uplink.
    pub fn take_interest(&self) -> Vec<Interest> {
        self.registry.take_interest()
    }

    fn interest_changed(&self) {
        if let Some(uplink) = self.uplink.get() {
            uplink.interest_changed();
        }
    }

    /// The limits on names, for the grammar (see `grammar.rs`).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Asks the hooks whether a new client may go on (see
    /// [`Hooks::on_connect`]): every listener calls this before it executes a client's
    /// first command.
    ///
    /// # Errors
    /// [`ProtocolError::Refused`] with the hook's reason.
    pub fn admit(&self, client: ClientInfo<'_>) -> Result<(), ProtocolError> {
        match &self.hooks {
            None => Ok(()),
            Some(hooks) => {
                hooks::guarded("connect", client, Err, || hooks.on_connect(client)).map_err(refused)
            }
        }
    }

    /// Subscribes `subscriber` (which `client` is) to `filter` (a topic, or a filter with
    /// wildcards), if the hooks agree, and hands it at once every retained message the
    /// filter matches, before any newer message. Returns the filter as the registry keeps
    /// it, or `None` if it was already subscribed.
    ///
    /// # Errors
    /// A filter or subscriber id (`client.id`) the grammar refuses (see `grammar.rs`), or
    /// [`ProtocolError::Refused`] with the hook's reason.
    pub fn subscribe(
        &self,
        client: ClientInfo<'_>,
        filter: &str,
        subscriber: &Arc<dyn Subscriber>,
    ) -> Result<Option<Arc<str>>, ProtocolError> {
        grammar::check_filter(filter, &self.limits)?;
        if let Some(id) = client.id {
            grammar::check_id("subscriber id", id, &self.limits)?;
        }
        if let Some(hooks) = &self.hooks {
            ask_subscribe_hooks(hooks.as_ref(), client, filter)?;
        }
        Ok(self.add_subscriber(filter, subscriber))
    }

    /// Puts `subscriber` in the registry under `filter` (checked already) and hands it the
    /// retained messages the filter matches.
    fn add_subscriber(&self, filter: &str, subscriber: &Arc<dyn Subscriber>) -> Option<Arc<str>> {
        let subscribed = self.registry.subscribe(filter, subscriber)?;
        self.interest_changed();
        if subscribed.retained > 0 {
            self.stats
                .delivered
                .fetch_add(subscribed.retained as u64, Ordering::Relaxed);
        }
        if subscribed.flush {
            subscriber.flush();
        }
        Some(subscribed.name)
    }

    /// Unsubscribes subscriber `id` (which `client` is) from `topic`, if the hooks agree;
    /// `false` if it was not subscribed.
    ///
    /// # Errors
    /// [`ProtocolError::Refused`] with the hook's reason.
    pub fn unsubscribe(
        &self,
        client: ClientInfo<'_>,
        topic: &str,
        id: SubscriberId,
    ) -> Result<bool, ProtocolError> {
        if let Some(hooks) = &self.hooks {
            hooks::guarded("unsubscribe", client, Err, || {
                hooks.on_unsubscribe(client, topic)
            })
            .map_err(refused)?;
        }
        let removed = self.registry.unsubscribe(topic, id);
        self.interest_changed();
        Ok(removed)
    }

    /// Unsubscribes subscriber `id` from every topic in `topics`, at once: for a subscriber
    /// that is leaving, so the hooks are not asked.
    pub fn unsubscribe_all<T: AsRef<str>>(
        &self,
        topics: impl IntoIterator<Item = T>,
        id: SubscriberId,
    ) {
        self.registry.unsubscribe_all(topics, id);
        self.interest_changed();
    }

    /// Forgets `topic`'s retained message, for a client: one that may publish to `topic`.
    /// Returns whether there was one.
    ///
    /// # Errors
    /// A topic or id the grammar refuses (see `grammar.rs`).
    pub fn unretain(&self, topic: &str, publisher_id: &str) -> Result<bool, ProtocolError> {
        grammar::check_topic(topic, &self.limits)?;
        grammar::check_id("publisher id", publisher_id, &self.limits)?;
        Ok(self.registry.unretain(topic))
    }

    /// The limits for retained messages, from the settings, for `user` (a logged-in one;
    /// `None` for anonymous clients and the broker itself).
    fn retain_limits<'a>(&self, user: Option<&'a str>) -> RetainLimits<'a> {
        RetainLimits {
            count: self.config.max_retained,
            bytes: self.config.max_retained_bytes,
            per_client: self.config.max_retained_per_client,
            per_user: user.map(|user| (user, self.config.max_retained_per_user)),
            per_client_bytes: self.config.max_retained_bytes_per_client,
            per_user_bytes: self.config.max_retained_bytes_per_user,
        }
    }

    /// Every topic with its number of subscribers, sorted.
    pub fn topic_counts(&self) -> Vec<(String, usize)> {
        self.registry.topic_counts()
    }

    /// What `TOPICS [filter]` lists for `user` (as for [`check_rule`](Self::check_rule)):
    /// at most `--max-topics-listed` topics, and how many more there were. With an auth
    /// file, only names the user may subscribe to: a listing must not tell a student the
    /// names of a classmate's private topics.
    ///
    /// # Errors
    /// A filter the grammar refuses.
    pub fn listing(
        &self,
        user: Option<&str>,
        filter: Option<&str>,
    ) -> Result<Listing, ProtocolError> {
        if let Some(filter) = filter {
            grammar::check_filter(filter, &self.limits)?;
        }
        // No filter lists what `#` matches: everything but the broker's own `$SYS` topics.
        let filter = filter.unwrap_or(topic::ALL_LEVELS);
        let visible = |name: &str| self.check_rule(user, Action::Subscribe, name).is_ok();
        let wanted = |name: &str| topic::matches(filter, name) && visible(name);
        Ok(self.registry.listing(wanted, self.config.max_topics_listed))
    }

    /// Every counter, as `STATS` lists them.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut counters = self.stats.snapshot(self.registry.totals());
        counters.extend(self.durables.counters());
        if self.logins.is_some() {
            let failures = self.stats.auth_failures.load(Ordering::Relaxed);
            counters.push(("auth_failures", failures));
            let locked_out = self.stats.auth_locked_out.load(Ordering::Relaxed);
            counters.push(("auth_locked_out", locked_out));
        }
        if let Some(uplink) = self.uplink.get() {
            counters.extend(uplink.counters());
        }
        counters
    }
}

/// Whether a message given to [`Publisher::publish_checked`] has passed
/// [`grammar::check_message`] already (see [`Publisher::publish_parsed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageChecked {
    Yes,
    No,
}

/// The publishing side of one ingress: its batch, and the subscribers it must flush. See
/// the module docs for the road a publish takes through it.
#[derive(Debug)]
pub struct Publisher {
    router: Arc<Router>,
    /// A subscriber the owner flushes itself, after everyone else: a connection's own
    /// outbox, so that a reply (a `PONG`) is never written before the deliveries of the
    /// publishes that came before it have been written to their subscribers.
    own: Option<SubscriberId>,
    batch: Batch,
    /// Who receives the batch: `None` while the batch is empty.
    receivers: Option<Subscribers>,
    /// Subscribers this publisher offered to first, which it must flush before it waits.
    to_flush: Vec<Arc<dyn Subscriber>>,
    /// Subscribers it flushed last, which may keep a buffer for its next batch until it
    /// tells them to [`rest`](Subscriber::rest) (see "Memory" in `outbox.rs`).
    warm: Vec<Arc<dyn Subscriber>>,
    clock: Clock,
    /// Who publishes, as the hooks are told.
    client: ClientInfo<'static>,
    /// Whether its publishes go on to the router's uplink: all but the uplink's own.
    forwards: bool,
    /// Publishes accepted since the last hand-out, not yet added to the broker's
    /// `messages_published` (see [`count_published`](Self::count_published)).
    published: u64,
}

impl Publisher {
    /// A publisher for the program itself (the embedding API).
    pub fn new(router: Arc<Router>) -> Publisher {
        Publisher {
            router,
            own: None,
            batch: Batch::default(),
            receivers: None,
            to_flush: Vec::new(),
            warm: Vec::new(),
            clock: Clock::default(),
            client: ClientInfo::new(Transport::InProcess, None),
            forwards: true,
            published: 0,
        }
    }

    /// A publisher for an ingress that is not itself a subscriber, such as a listener of
    /// datagrams, publishing for `client`.
    pub fn for_ingress(router: Arc<Router>, client: ClientInfo<'static>) -> Publisher {
        let mut publisher = Publisher::new(router);
        publisher.client = client;
        publisher
    }

    /// A publisher for messages that came from the router's uplink: they reach local
    /// subscribers only, never the uplink again.
    pub fn from_uplink(router: Arc<Router>) -> Publisher {
        let mut publisher = Publisher::new(router);
        publisher.forwards = false;
        publisher
    }

    /// The uplink this publisher's batches go to, if any.
    fn uplink(&self) -> Option<&Arc<dyn Uplink>> {
        self.router.uplink.get().filter(|_| self.forwards)
    }

    /// Who receives a batch no local subscriber takes: nobody here, but an uplink still
    /// wants it.
    fn nobody_but_the_uplink(&self) -> Option<Subscribers> {
        self.uplink().map(|_| Subscribers::from(Vec::new()))
    }

    /// A publisher for a connection that is also the subscriber `own`, which the
    /// connection flushes itself after [`flush`](Self::flush).
    pub fn for_connection(
        router: Arc<Router>,
        own: SubscriberId,
        client: ClientInfo<'static>,
    ) -> Publisher {
        let mut publisher = Publisher::for_ingress(router, client);
        publisher.own = Some(own);
        publisher
    }

    /// Who the following publishes are from, as the hooks are told: a connection that
    /// learns its dialect, or a listener whose next datagram comes from someone else.
    pub fn set_client(&mut self, client: ClientInfo<'static>) {
        self.client = client;
    }

    /// The router this publisher publishes through.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Adds a publish to the batch (starting a new batch if the topic changed). Returns how
    /// many subscribers the topic has; the message reaches them at the next
    /// [`hand_out`](Self::hand_out) and is written at the next [`flush`](Self::flush).
    ///
    /// # Errors
    /// A topic or id over the broker's limits, or a hook's refusal.
    pub fn publish(
        &mut self,
        topic: &str,
        message: &str,
        publisher_id: &str,
    ) -> Result<usize, ProtocolError> {
        self.publish_stamped(topic, message, publisher_id, None)
    }

    /// Publishes like [`publish`](Self::publish) a message cut from a line that
    /// [`Command::parse`](crate::protocol::Command::parse) read: the parser searched the
    /// whole line for line breaks, and cut the message non-empty and unpadded, so
    /// [`grammar::check_message`] could only agree, and is not asked again. Every other way
    /// in (JSON, HTTP, WebSocket, a datagram, the program itself) goes through `publish`,
    /// whose message is checked here. (Searching each message twice, and each id at every
    /// publish, cost 7% of a fanned-in publish's instructions: see the README's
    /// performance section.)
    pub(crate) fn publish_parsed(
        &mut self,
        topic: &str,
        message: &str,
        publisher_id: &str,
    ) -> Result<usize, ProtocolError> {
        self.publish_checked(topic, message, publisher_id, None, MessageChecked::Yes)
    }

    /// Publishes like [`publish`](Self::publish), stamped `timestamp` (as `DELIVER` writes
    /// it) instead of now if given: for a message that another broker stamped already.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub fn publish_stamped(
        &mut self,
        topic: &str,
        message: &str,
        publisher_id: &str,
        timestamp: Option<&str>,
    ) -> Result<usize, ProtocolError> {
        self.publish_checked(topic, message, publisher_id, timestamp, MessageChecked::No)
    }

    /// [`publish_stamped`](Self::publish_stamped), told whether the message was checked
    /// already. The checks run in the grammar's order (id, message, topic), so a publish
    /// with more than one thing wrong is refused for the same one every way. Inlined into
    /// its callers, like `Batch::add`: together they save about 30 instructions a message.
    #[inline]
    fn publish_checked(
        &mut self,
        topic: &str,
        message: &str,
        publisher_id: &str,
        timestamp: Option<&str>,
        message_checked: MessageChecked,
    ) -> Result<usize, ProtocolError> {
        let same_stamp = timestamp.is_none() || timestamp == Some(self.batch.timestamp());
        let batching = self.receivers.is_some() && self.batch.is_for(topic) && same_stamp;
        // An id that is the batch's last delivery's passed this check when it was added: a
        // publisher sends a burst under one id, so most of a burst is checked once.
        if !(batching && self.batch.last_published_by(publisher_id)) {
            grammar::check_id("publisher id", publisher_id, &self.router.limits)?;
        }
        if message_checked == MessageChecked::No {
            grammar::check_message(message)?;
        }
        if !batching {
            // A topic that is already the batch's passed this check when it started it.
            grammar::check_topic(topic, &self.router.limits)?;
        }
        let message = self.ask_publish_hook(topic, message, publisher_id)?;
        self.published += 1;
        if batching && self.batch.lines().len() >= FLUSH_THRESHOLD {
            self.send_now();
        } else if !batching {
            self.hand_out();
        }
        if self.receivers.is_none() {
            // The registry lock is taken and released inside this call: from here on we
            // hold a snapshot of the subscriber list and no lock at all.
            let found = self.router.registry.subscribers(topic);
            let Some(subscribers) = found.or_else(|| self.nobody_but_the_uplink()) else {
                return Ok(0);
            };
            match timestamp {
                Some(stamp) => self.batch.start(topic, stamp),
                None => self.batch.start(topic, self.clock.now()),
            }
            self.receivers = Some(subscribers);
        }
        self.batch.add(&message, publisher_id);
        Ok(self
            .receivers
            .as_ref()
            .map_or(0, |receivers| receivers.len()))
    }

    /// Publishes like [`publish`](Self::publish), and keeps the message as `topic`'s
    /// retained one, so that every later subscriber of the topic gets it at once. Unlike a
    /// publish, it goes out on its own, not in a batch: storing it and finding who must
    /// get it now are one step in the registry (see `Registry::retain`), and it is offered
    /// before this returns. `user` is the logged-in user who asks (`None`: anonymous), for
    /// its quota. Returns how many subscribers took it.
    ///
    /// # Errors
    /// What [`publish`](Self::publish) refuses, [`ProtocolError::RetainedFull`], or a
    /// quota: [`ProtocolError::TooManyRetainedForClient`],
    /// [`ProtocolError::TooManyRetainedForUser`], [`ProtocolError::RetainedBytesForClient`],
    /// [`ProtocolError::RetainedBytesForUser`].
    pub fn retain(
        &mut self,
        topic: &str,
        message: &str,
        publisher_id: &str,
        user: Option<&str>,
    ) -> Result<usize, ProtocolError> {
        grammar::check_publish(topic, message, publisher_id, &self.router.limits)?;
        let message = self.ask_publish_hook(topic, message, publisher_id)?;
        let limits = self.router.retain_limits(user);
        let receivers = self.retain_within(topic, &message, publisher_id, limits)?;
        self.router.stats.published.fetch_add(1, Ordering::Relaxed);
        Ok(receivers)
    }

    /// Asks the publish hook about one message: the message to publish (the client's, or
    /// the hook's rewrite of it), or the hook's refusal. Inlined, with the asking itself
    /// apart, so that a broker without hooks pays one test per publish for them and not a
    /// call.
    #[inline]
    fn ask_publish_hook<'m>(
        &self,
        topic: &str,
        message: &'m str,
        publisher_id: &str,
    ) -> Result<Cow<'m, str>, ProtocolError> {
        match &self.router.hooks {
            None => Ok(Cow::Borrowed(message)),
            Some(hooks) => self.ask_hooks(hooks.as_ref(), topic, message, publisher_id),
        }
    }

    /// [`ask_publish_hook`](Self::ask_publish_hook) on a broker that has hooks.
    fn ask_hooks<'m>(
        &self,
        hooks: &dyn Hooks,
        topic: &str,
        message: &'m str,
        publisher_id: &str,
    ) -> Result<Cow<'m, str>, ProtocolError> {
        let publish = Publish {
            topic,
            message,
            publisher_id,
        };
        let client = self.client.with_id(publisher_id);
        let verdict = hooks::guarded("publish", client, PublishVerdict::Refuse, || {
            hooks.on_publish(client, &publish)
        });
        match verdict {
            PublishVerdict::Allow => Ok(Cow::Borrowed(message)),
            PublishVerdict::Refuse(refusal) => Err(refused(refusal)),
            PublishVerdict::Rewrite(new) => Ok(Cow::Owned(checked_rewrite(new)?)),
        }
    }

    /// [`retain`](Self::retain) without the rules for clients: the broker's own `$SYS`
    /// figures (see `sys.rs`).
    pub(crate) fn retain_unchecked(
        &mut self,
        topic: &str,
        message: &str,
        publisher_id: &str,
    ) -> Result<usize, ProtocolError> {
        // The broker's own figures are not a client's: no quota per id.
        let limits = RetainLimits {
            per_client: usize::MAX,
            per_client_bytes: usize::MAX,
            ..self.router.retain_limits(None)
        };
        self.retain_within(topic, message, publisher_id, limits)
    }

    /// Keeps the message as `topic`'s retained one within `limits`, and offers it.
    fn retain_within(
        &mut self,
        topic: &str,
        message: &str,
        publisher_id: &str,
        limits: RetainLimits<'_>,
    ) -> Result<usize, ProtocolError> {
        // What this publisher batched before goes first.
        self.hand_out();
        self.batch.start(topic, self.clock.now());
        self.batch.add(message, publisher_id);
        let stored = Arc::new(self.batch.clone());
        match self.router.registry.retain(topic, stored, limits) {
            Err(refused) => {
                self.batch.clear();
                Err(retain_refusal(refused, limits, publisher_id))
            }
            Ok(receivers) => {
                self.receivers = receivers.or_else(|| self.nobody_but_the_uplink());
                Ok(self.hand_out())
            }
        }
    }

    /// Offers the batch to each of its subscribers, and empties it. Returns how many
    /// subscribers took it.
    pub fn hand_out(&mut self) -> usize {
        self.count_published();
        let Some(subscribers) = self.receivers.take() else {
            return 0;
        };
        if let Some(uplink) = self.uplink() {
            uplink.offer(&self.batch);
        }
        let receivers = self.fan_out(&subscribers);
        self.count_deliveries(receivers, subscribers.len());
        receivers
    }

    /// Offers the batch to every subscriber; returns how many took it. Subscribers that
    /// had nothing queued before are remembered, to be flushed before this thread waits.
    fn fan_out(&mut self, subscribers: &[Arc<dyn Subscriber>]) -> usize {
        // lab:begin 02 fan-out
        let mut receivers = 0;
        for subscriber in subscribers {
            match subscriber.offer(&self.batch) {
                Offer::FlushNeeded => {
                    self.to_flush.push(Arc::clone(subscriber));
                    receivers += 1;
                }
                Offer::Queued => receivers += 1,
                Offer::Closed => {}
            }
        }
        receivers
        // lab:end 02
    }

    /// A batch that has grown big: offers and flushes it at once (a subscriber with
    /// nothing queued is written to straight from the batch, without a copy). The owner's
    /// own subscriber is only offered to: it is flushed last, by the owner.
    fn send_now(&mut self) {
        self.count_published();
        let Some(subscribers) = self.receivers.take() else {
            return;
        };
        if let Some(uplink) = self.uplink() {
            uplink.offer(&self.batch);
        }
        let mut receivers = 0;
        for subscriber in subscribers.iter() {
            if Some(subscriber.id()) == self.own {
                if subscriber.offer(&self.batch) != Offer::Closed {
                    receivers += 1;
                }
            } else if subscriber.deliver(&self.batch) {
                receivers += 1;
            }
        }
        self.count_deliveries(receivers, subscribers.len());
    }

    /// Adds the publishes accepted since the last hand-out to the broker's
    /// `messages_published`, before anyone is offered them (so a subscriber that has a
    /// message never finds it uncounted), and before any reply to this publisher (each
    /// hands out first). Once per batch, not per publish: one counter that every
    /// publisher's thread adds to moves its cache line between cores at each add, and with
    /// ten publishers into one subscriber that one instruction took a tenth of the
    /// broker's time (`perf record` of `bench fanin`). NATS does the same: a client
    /// counts the messages of what it read, and the server's totals are added to once per
    /// read (`readLoop` in its `client.go`).
    fn count_published(&mut self) {
        if self.published > 0 {
            let published = std::mem::take(&mut self.published);
            self.router
                .stats
                .published
                .fetch_add(published, Ordering::Relaxed);
        }
    }

    /// Counts the batch as delivered to `receivers` of its `offered` subscribers (the
    /// others had closed: lost to them), and empties it.
    fn count_deliveries(&mut self, receivers: usize, offered: usize) {
        let stats = &self.router.stats;
        let count = |subscribers: usize| (subscribers * self.batch.len()) as u64;
        stats
            .delivered
            .fetch_add(count(receivers), Ordering::Relaxed);
        if offered > receivers {
            stats
                .dropped
                .fetch_add(count(offered - receivers), Ordering::Relaxed);
        }
        self.batch.clear();
    }

    /// Hands the batch out and writes to every subscriber this publisher offered to, except
    /// its owner's own. Call it before waiting for more input.
    ///
    /// The owner calls this when it has nothing more to publish *for now*: more may come
    /// at once, so the subscribers keep their buffers for it ([`Subscriber::flush_in_burst`]).
    /// Those flushed last time and offered nothing since are told to give theirs back.
    /// An owner that goes quiet calls [`release`](Self::release) instead.
    pub fn flush(&mut self) {
        self.hand_out();
        self.rest_the_warm();
        for subscriber in &self.to_flush {
            if Some(subscriber.id()) != self.own {
                subscriber.flush_in_burst();
            }
        }
        // Flushed now, warm until the next flush: swapping keeps both lists' memory.
        std::mem::swap(&mut self.warm, &mut self.to_flush);
    }

    /// Flushes, and gives back the memory this publisher and the subscribers it flushed
    /// kept for the next batch: for an ingress that goes quiet, so that an idle connection
    /// holds no buffer.
    pub fn release(&mut self) {
        self.flush();
        self.rest_the_warm();
        self.batch.release();
        self.to_flush = Vec::new();
        self.warm = Vec::new();
    }

    /// Tells the subscribers flushed last time that this publisher is done with them; one
    /// offered something since still has it pending, and keeps its buffer.
    fn rest_the_warm(&mut self) {
        for subscriber in self.warm.drain(..) {
            subscriber.rest();
        }
    }
}

/// A publisher dropped in a burst (the program's one-off publish) still lets its
/// subscribers give their buffers back.
impl Drop for Publisher {
    fn drop(&mut self) {
        self.rest_the_warm();
    }
}

/// Asks the hooks whether `client` may subscribe to `filter`. Its own function, never
/// inlined: the call through `catch_unwind` needs a large stack frame, and inlined it made
/// every `SUBSCRIBE`'s frame that large, hooks or not (see `CLIENT_STACK_SIZE` in
/// `server.rs`).
#[inline(never)]
fn ask_subscribe_hooks(
    hooks: &dyn Hooks,
    client: ClientInfo<'_>,
    filter: &str,
) -> Result<(), ProtocolError> {
    hooks::guarded("subscribe", client, Err, || {
        hooks.on_subscribe(client, filter)
    })
    .map_err(refused)
}

/// Why the registry did not keep a retained message, as the client is told it.
fn retain_refusal(refused: RetainRefused, limits: RetainLimits<'_>, id: &str) -> ProtocolError {
    match refused {
        RetainRefused::Count => ProtocolError::RetainedFull {
            flag: "--max-retained",
            limit: limits.count,
        },
        RetainRefused::Bytes => ProtocolError::RetainedFull {
            flag: "--max-retained-bytes",
            limit: limits.bytes,
        },
        RetainRefused::Client => ProtocolError::TooManyRetainedForClient {
            publisher_id: id.to_string(),
            limit: limits.per_client,
        },
        RetainRefused::User => {
            let (user, limit) = limits.per_user.unwrap_or_default();
            ProtocolError::TooManyRetainedForUser {
                user: user.to_string(),
                limit,
            }
        }
        RetainRefused::ClientBytes => ProtocolError::RetainedBytesForClient {
            publisher_id: id.to_string(),
            limit: limits.per_client_bytes,
        },
        RetainRefused::UserBytes => ProtocolError::RetainedBytesForUser {
            user: limits.per_user.unwrap_or_default().0.to_string(),
            limit: limits.per_user_bytes,
        },
    }
}

/// A message a publish hook wrote: it must be what a `PUBLISH` line could carry, or the
/// hook would make subscribers read lines nobody sent.
fn checked_rewrite(message: String) -> Result<String, ProtocolError> {
    let broken = text::line_break_in(&message)
        .map(|c| format!("a {}", text::describe(c)))
        .or_else(|| {
            grammar::check_message(&message)
                .err()
                .map(|_| "an empty or padded message".to_string())
        });
    match broken {
        None => Ok(message),
        Some(what) => {
            log::error!("the publish hook rewrote a message into {what}, which cannot be delivered; fix the hook");
            Err(ProtocolError::Refused(hooks::HOOK_FAILED.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// A subscriber that notes how it is flushed and told to rest.
    #[derive(Debug)]
    struct Noted {
        id: SubscriberId,
        calls: Mutex<Vec<&'static str>>,
    }

    impl Subscriber for Noted {
        fn id(&self) -> SubscriberId {
            self.id
        }
        fn offer(&self, _batch: &Batch) -> Offer {
            Offer::FlushNeeded
        }
        fn flush(&self) {
            self.calls.lock().push("flush");
        }
        fn flush_in_burst(&self) {
            self.calls.lock().push("flush_in_burst");
        }
        fn rest(&self) {
            self.calls.lock().push("rest");
        }
    }

    /// A publisher's flush keeps its subscribers' buffers warm for the next batch; the
    /// next flush rests those it offered nothing since, and `release` rests them all.
    #[test]
    fn a_publisher_rests_the_subscribers_it_kept_warm() {
        let router = Arc::new(Router::new(Config::default()));
        let client = ClientInfo::new(Transport::InProcess, None);
        let noted = || {
            Arc::new(Noted {
                id: SubscriberId::next(),
                calls: Mutex::new(Vec::new()),
            })
        };
        let (a, b) = (noted(), noted());
        for (topic, subscriber) in [("a", &a), ("b", &b)] {
            let subscriber = Arc::clone(subscriber) as Arc<dyn Subscriber>;
            router.subscribe(client, topic, &subscriber).unwrap();
        }
        let mut publisher = Publisher::new(Arc::clone(&router));
        publisher.publish("a", "one", "p").unwrap();
        publisher.publish("b", "two", "p").unwrap();
        publisher.flush();
        publisher.publish("a", "three", "p").unwrap();
        publisher.flush();
        assert_eq!(
            *a.calls.lock(),
            ["flush_in_burst", "rest", "flush_in_burst"]
        );
        assert_eq!(*b.calls.lock(), ["flush_in_burst", "rest"]);
        publisher.release();
        assert_eq!(a.calls.lock().last(), Some(&"rest"));
        assert_eq!(b.calls.lock().len(), 2, "b was rested already");
    }
}
