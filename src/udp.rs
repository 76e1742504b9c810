//! UDP: datagrams in, datagrams out, and the leases that stand in for connections.
//!
//! TCP gives a byte stream between two programs that both know the other is there: it
//! resends what is lost, keeps the bytes in order, slows the sender down for a slow
//! reader (`outbox.rs`), and tells each side when the other has gone. UDP gives none of
//! that. A datagram is one message, sent to an address, that arrives whole or not at all,
//! maybe twice, maybe after the one sent after it, and nobody is told either way. That is
//! why the classroom's first UDP tutorial (a ticker sending `Event at <time>` to port
//! 9999 every two seconds) is three lines long, and why it is the best lesson in what TCP
//! does for free.
//!
//! # Ingress: one thread, every datagram
//!
//! With `--udp-port`, the broker binds a UDP socket and one thread, `udp-<port>`, takes
//! every datagram on it (`UdpListener`). There is nothing to accept and no thread per
//! client, because there are no clients in the TCP sense: only datagrams, each with the
//! address it came from. A datagram is either:
//!
//! * **protocol lines** (its first word is a command): each line is executed as on TCP.
//!   `PUBLISH` and `PING` as usual; `SUBSCRIBE` subscribes the *sender's address*;
//!   commands that need a connection (`VERBOSE`, `QUIT`, and the listings, whose answers
//!   would be many datagrams to an address nobody proved is the sender's) are refused;
//! * **anything else**, published whole to `--udp-topic` (`udp`) with the publisher id
//!   `udp:<ip>:<port>`. So the tutorial's ticker works unchanged, and its events reach
//!   TCP subscribers of `udp` as ordinary `DELIVER` lines.
//!
//! Answers (`PONG`, `ERROR <reason>`) go back to the sender as one datagram each.
//!
//! # Egress: leases
//!
//! A UDP subscriber is an address ([`UdpSubscriber`]); each delivery is one datagram per
//! `DELIVER` line, sent from the broker's UDP port with `send_to`. But an address cannot
//! say it has gone: a subscriber that quits sends nothing, and the broker would send to
//! its address for ever. So a UDP subscription is a **lease**: it lasts `--udp-lease`
//! (60 s) from the last `SUBSCRIBE` or `PING` of that address, and then it is removed and
//! logged. A subscriber renews it by repeating itself, which also means a broker that
//! restarted learns its subscribers again at their next renewal: *soft state*, as in
//! IGMP, RSVP and DHCP.
//!
//! UDP subscribers take no connection slot (`--max-clients`): they hold no thread, no
//! socket and no buffer while idle, only an entry in the lease table. What bounds them is
//! `--udp-max-subscribers`: anyone can send a `SUBSCRIBE` with any source address (UDP
//! does not check it), and without a limit a hostile classroom could make the broker send
//! every message to a million addresses, or to a victim that never asked (a *reflection*
//! attack; a production protocol would first send a cookie to the address and subscribe
//! it only once the cookie comes back, as QUIC and DTLS do).
//!
//! # What is lost, and where
//!
//! * A `DELIVER` line longer than a datagram can be ([`MAX_DATAGRAM`]) is dropped and
//!   counted (`udp_datagrams_dropped`). Over a real network, datagrams above about
//!   1472 bytes are also split into IP fragments, and losing one fragment loses the whole.
//! * A receiver that reads slowly loses datagrams in its own kernel once its socket
//!   buffer is full: the broker cannot know, and does not wait. Nor does it queue for a
//!   UDP subscriber more than `--max-pending-bytes`; past it, deliveries are dropped.
//! * The one ingress thread publishes each datagram as it comes; while it waits for a
//!   slow TCP subscriber (backpressure, `outbox.rs`), datagrams queue in the UDP socket's
//!   buffer, and the kernel drops those that do not fit. UDP has no way to tell the
//!   sender to slow down: that is the difference.
//!
//! `STATS` counts `udp_datagrams_in`, `udp_datagrams_out`, `udp_datagrams_dropped` and
//! `udp_subscribers`; `bench udp` measures loss at a given rate.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::batch::Batch;
use crate::config::format_duration;
use crate::hooks::{ClientInfo, Transport};
use crate::keyed::KeyedList;
use crate::protocol::grammar;
use crate::protocol::{Command, CommandSpec, ProtocolError, Reply};
use crate::router::{Publisher, Router};
use crate::server::{reachable, Listener, Server};
use crate::stats::Stats;
use crate::subscriber::{Offer, Subscriber, SubscriberId};
use crate::text;
use crate::throttle::{and_more, Throttle, Verdict, QUIETING};

/// The largest UDP payload over IPv4: 65,535 bytes of IP packet, less 20 of IP header and
/// 8 of UDP header. A `DELIVER` line longer than this cannot be sent as one datagram.
pub const MAX_DATAGRAM: usize = 65_507;

/// How long a `send_to` may wait for room in the socket's send buffer before the datagram
/// is dropped. Sending does not wait for the receiver, only for the local kernel, which
/// almost never makes it wait at all.
pub const SEND_TIMEOUT: Duration = Duration::from_millis(10);

/// How often, at most, the listener looks for expired leases: a quarter of the lease,
/// within these bounds. It does so between datagrams, waking up at least this often
/// (the socket's read timeout) when none come.
const MIN_TICK: Duration = Duration::from_millis(5);
const MAX_TICK: Duration = Duration::from_secs(1);

/// The most `ERROR` datagrams sent per second. Over UDP an answer goes to whatever source
/// address the datagram claimed, and an `ERROR` is longer than the datagram that caused
/// it: without a budget, a flood of bad datagrams with a forged source would turn the
/// broker into an amplifier aimed at someone else. Past it, bad datagrams are counted and
/// logged, not answered.
const ERRORS_ANSWERED_PER_SECOND: u32 = 100;

/// The most datagrams taken in one burst before what they published is delivered: enough
/// to make one write carry many deliveries, few enough that the first of them does not
/// wait long.
const MAX_BURST: usize = 64;

/// How many warnings about bad datagrams, and how many lease expiries, are logged per
/// interval; the rest are counted.
const LOGGED_PER_INTERVAL: u32 = 10;
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The UDP port: see the module docs.
pub(crate) struct UdpListener {
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
    router: Arc<Router>,
}

impl UdpListener {
    /// Takes charge of a bound socket, for `router`.
    ///
    /// # Errors
    /// Fails if the socket's options cannot be set.
    pub(crate) fn new(socket: UdpSocket, router: &Arc<Router>) -> io::Result<UdpListener> {
        let addr = socket.local_addr()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        router.stats().udp_enabled.store(true, Ordering::Relaxed);
        Ok(UdpListener {
            socket: Arc::new(socket),
            addr,
            router: Arc::clone(router),
        })
    }

    /// Where it takes datagrams.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Listener for UdpListener {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn thread_name(&self) -> String {
        format!("udp-{}", self.addr.port())
    }

    fn waker(&self) -> io::Result<Box<dyn Fn() + Send>> {
        // The listener is blocked in `recv_from`: a datagram of our own wakes it up, and
        // it sees the stop flag. (It would also wake by itself within a tick.)
        let target = reachable(self.addr);
        Ok(Box::new(move || {
            let local: SocketAddr = if target.is_ipv4() {
                ([127, 0, 0, 1], 0).into()
            } else {
                (std::net::Ipv6Addr::LOCALHOST, 0).into()
            };
            if let Ok(socket) = UdpSocket::bind(local) {
                let _ = socket.send_to(b"", target);
            }
        }))
    }

    fn serve(self: Box<Self>, server: Arc<Server>) {
        let lease = self.router.config().udp_lease;
        let tick = (lease / 4).clamp(MIN_TICK, MAX_TICK);
        let mut ingress = Ingress {
            publisher: Publisher::for_ingress(
                Arc::clone(&self.router),
                ClientInfo::new(Transport::Udp, None),
            ),
            socket: self.socket,
            router: self.router,
            leases: HashMap::new(),
            tick,
            next_check: Instant::now() + tick,
            bad: Throttle::new(LOGGED_PER_INTERVAL, LOG_INTERVAL),
            expiries: Throttle::new(LOGGED_PER_INTERVAL, LOG_INTERVAL),
            answered: Throttle::new(ERRORS_ANSWERED_PER_SECOND, Duration::from_secs(1)),
        };
        ingress.run(&server);
    }
}

/// The listener thread's state: the lease table is its alone, so it needs no lock.
struct Ingress {
    socket: Arc<UdpSocket>,
    router: Arc<Router>,
    /// Every datagram's publishes go through this one publisher, which batches them.
    publisher: Publisher,
    leases: HashMap<SocketAddr, Lease>,
    tick: Duration,
    next_check: Instant,
    bad: Throttle,
    expiries: Throttle,
    /// Keeps `ERROR` answers within [`ERRORS_ANSWERED_PER_SECOND`].
    answered: Throttle,
}

/// One address's subscription: its handle, its topics, and when it ends.
struct Lease {
    subscriber: Arc<UdpSubscriber>,
    /// The same subscriber, as the registry holds it.
    handle: Arc<dyn Subscriber>,
    topics: KeyedList<Arc<str>, ()>,
    expires: Instant,
    /// The id it gave last, for the logs.
    id: String,
}

impl Ingress {
    fn stats(&self) -> &Stats {
        self.router.stats()
    }

    /// Takes datagrams until the broker stops.
    fn run(&mut self, server: &Server) {
        if let Err(error) = self.socket.set_read_timeout(Some(self.tick)) {
            log::error!("the UDP port cannot wait with a timeout: {error}; UDP is off");
            return;
        }
        let mut buffer = vec![0u8; 65_536];
        loop {
            let received = self.socket.recv_from(&mut buffer);
            if server.is_stopping() {
                break;
            }
            match received {
                Ok((len, from)) => {
                    self.stats()
                        .udp_datagrams_in
                        .fetch_add(1, Ordering::Relaxed);
                    self.datagram(&buffer[..len], from);
                    self.rest_of_burst(&mut buffer);
                    // The end of a burst: deliver what it published, one write per
                    // subscriber for the whole burst.
                    self.publisher.flush();
                }
                Err(error) if is_timeout(&error) => {}
                Err(error) => {
                    // Some systems report an earlier send's ICMP error here; nothing to do
                    // but carry on, without spinning.
                    log::debug!("the UDP port could not receive: {error}");
                    thread::sleep(MIN_TICK);
                }
            }
            self.expire(Instant::now());
        }
        self.leave_all();
    }

    /// Takes the datagrams already waiting, up to [`MAX_BURST`], without waiting for more:
    /// a burst of datagrams then costs one flush, as a burst of lines read in one `read`
    /// does on TCP. (Two system calls to switch the socket to non-blocking and back are
    /// what it costs a lone datagram.)
    fn rest_of_burst(&mut self, buffer: &mut [u8]) {
        if self.socket.set_nonblocking(true).is_err() {
            return;
        }
        for _ in 0..MAX_BURST {
            match self.socket.recv_from(buffer) {
                Ok((len, from)) => {
                    self.stats()
                        .udp_datagrams_in
                        .fetch_add(1, Ordering::Relaxed);
                    self.datagram(&buffer[..len], from);
                }
                Err(_) => break,
            }
        }
        let _ = self.socket.set_nonblocking(false);
    }

    /// One datagram: protocol lines, or one message for `--udp-topic`.
    fn datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return; // nothing in it (the broker's own wake-up call is empty)
        }
        if self.router.access().is_some() && !self.router.config().udp_allow_anonymous {
            // A datagram's source address proves nothing, and there is no connection to
            // hold an `AUTH`: on a broker with access control, UDP is shut unless asked.
            return self.answer_error(from, &ProtocolError::UdpWithoutAuth);
        }
        let client = ClientInfo::new(Transport::Udp, Some(from));
        // A lease is UDP's nearest thing to a connection: an address without one is asked
        // about afresh, datagram by datagram.
        if !self.leases.contains_key(&from) {
            if let Err(error) = self.router.admit(client) {
                return self.answer_error(from, &error);
            }
        }
        self.publisher.set_client(client);
        if is_command(bytes) {
            for line in bytes.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                self.line(line, from);
            }
        } else {
            self.event(bytes, from);
        }
    }

    /// One line of a datagram of commands.
    fn line(&mut self, line: &[u8], from: SocketAddr) {
        let limit = self.router.config().max_line_bytes;
        if line.len() > limit {
            return self.answer_error(from, &ProtocolError::LineTooLong { limit });
        }
        match Command::parse(line) {
            Ok(Some(command)) => self.execute(command, from),
            Ok(None) => {}
            Err(error) => self.answer_error(from, &error),
        }
    }

    fn execute(&mut self, command: Command<'_>, from: SocketAddr) {
        log::debug!("udp {from} {command:?}");
        match command {
            Command::Subscribe {
                topic,
                subscriber_id,
            } => self.subscribe(from, topic, subscriber_id),
            Command::Unsubscribe {
                topic,
                subscriber_id,
            } => self.unsubscribe(from, topic, subscriber_id),
            Command::UnsubscribeAll => {
                self.publisher.hand_out();
                if let Some(lease) = self.leases.remove(&from) {
                    self.end(&lease);
                    log::info!("udp {from} {} unsubscribed from every topic", lease.id);
                }
                self.keep_count();
            }
            Command::Publish {
                topic,
                message,
                publisher_id,
            } => self.publish(from, topic, message, publisher_id),
            Command::Ping { token } => {
                self.renew(from);
                // As on TCP, a PONG comes after the deliveries of what came before it.
                self.publisher.flush();
                self.answer(from, &Reply::Pong(token));
            }
            other => self.answer_error(from, &ProtocolError::NotOverUdp(other.spec())),
        }
    }

    /// A datagram that is not a command: published whole, as the tutorial's ticker needs.
    fn event(&mut self, bytes: &[u8], from: SocketAddr) {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return self.answer_error(from, &ProtocolError::NotUtf8);
        };
        let message = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let limit = self.router.config().max_line_bytes;
        if message.len() > limit {
            return self.answer_error(from, &ProtocolError::LineTooLong { limit });
        }
        let topic = self.router.config().udp_topic.clone();
        self.publish(from, &topic, message, &format!("udp:{from}"));
    }

    /// A publish from a datagram, under the auth file's rules for `anonymous` (a datagram
    /// names no user).
    fn publish(&mut self, from: SocketAddr, topic: &str, message: &str, publisher_id: &str) {
        let published = self
            .router
            .check_publish_rules(None, topic, publisher_id)
            .and_then(|()| self.publisher.publish(topic, message, publisher_id));
        if let Err(error) = published {
            self.answer_error(from, &error);
        }
    }

    fn subscribe(&mut self, from: SocketAddr, topic: &str, id: &str) {
        // A datagram names no user: the auth file's rules for `anonymous` apply.
        if let Err(error) = self.router.check_subscribe(None, topic, id) {
            return self.answer_error(from, &error);
        }
        // Deliveries still in the batch were published before this.
        self.publisher.hand_out();
        let config = self.router.config();
        let (limit, max_topics, lease_for) = (
            config.udp_max_subscribers,
            config.max_subscriptions,
            config.udp_lease,
        );
        if !self.leases.contains_key(&from) && self.leases.len() >= limit {
            return self.answer_error(from, &ProtocolError::TooManyUdpSubscribers { limit });
        }
        let mut lease = match self.leases.remove(&from) {
            Some(lease) => lease,
            None => self.new_lease(from),
        };
        let outcome = if lease.topics.contains(topic) {
            Ok(())
        } else if lease.topics.len() >= max_topics {
            Err(ProtocolError::TooManySubscriptions { limit: max_topics })
        } else {
            let client = ClientInfo::new(Transport::Udp, Some(from)).with_id(id);
            self.router
                .subscribe(client, topic, &lease.handle)
                .map(|name| {
                    if let Some(name) = name {
                        lease.topics.insert(name, ());
                    }
                    log::info!(
                        "udp {from} {id} subscribed to {topic} (lease {})",
                        format_duration(lease_for)
                    );
                })
        };
        lease.expires = Instant::now() + lease_for;
        lease.id.clear();
        lease.id.push_str(id);
        self.keep(from, lease);
        if let Err(error) = outcome {
            self.answer_error(from, &error);
        }
    }

    fn unsubscribe(&mut self, from: SocketAddr, topic: &str, id: &str) {
        if let Err(error) = grammar::check_subscription(topic, id, self.router.limits()) {
            return self.answer_error(from, &error);
        }
        self.publisher.hand_out();
        let Some(mut lease) = self.leases.remove(&from) else {
            return;
        };
        let mut outcome = Ok(());
        if lease.topics.contains(topic) {
            let client = ClientInfo::new(Transport::Udp, Some(from)).with_id(id);
            outcome = self
                .router
                .unsubscribe(client, topic, lease.handle.id())
                .map(|_| {
                    lease.topics.remove(topic);
                    log::info!("udp {from} {id} unsubscribed from {topic}");
                });
        }
        self.keep(from, lease);
        if let Err(error) = outcome {
            self.answer_error(from, &error);
        }
    }

    fn new_lease(&self, from: SocketAddr) -> Lease {
        let config = self.router.config();
        let subscriber = Arc::new(UdpSubscriber {
            id: SubscriberId::next(),
            addr: from,
            socket: Arc::clone(&self.socket),
            stats: Arc::clone(self.router.stats()),
            max_pending: config.max_pending_bytes,
            pending: Mutex::new(Pending::default()),
            sending: Mutex::new(()),
            warned_too_big: AtomicBool::new(false),
        });
        Lease {
            handle: Arc::clone(&subscriber) as Arc<dyn Subscriber>,
            subscriber,
            topics: KeyedList::default(),
            expires: Instant::now(),
            id: String::new(),
        }
    }

    /// Puts a lease back in the table, or ends it if it holds no topic any more.
    fn keep(&mut self, from: SocketAddr, lease: Lease) {
        if lease.topics.is_empty() {
            lease.subscriber.close();
        } else {
            self.leases.insert(from, lease);
        }
        self.keep_count();
    }

    /// `udp_subscribers` follows the lease table.
    fn keep_count(&self) {
        self.stats()
            .udp_subscribers
            .store(self.leases.len() as u64, Ordering::Relaxed);
    }

    /// `PING` renews the lease of the address it came from, if it holds one.
    fn renew(&mut self, from: SocketAddr) {
        let lease_for = self.router.config().udp_lease;
        if let Some(lease) = self.leases.get_mut(&from) {
            lease.expires = Instant::now() + lease_for;
        }
    }

    /// Removes the leases that ran out, at most once per tick.
    fn expire(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + self.tick;
        let expired: Vec<SocketAddr> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.expires <= now)
            .map(|(addr, _)| *addr)
            .collect();
        let lease_for = format_duration(self.router.config().udp_lease);
        for addr in expired {
            let Some(lease) = self.leases.remove(&addr) else {
                continue;
            };
            let topics = lease.topics.len();
            self.end(&lease);
            let event = format!(
                "udp subscriber {addr} {} expired: no SUBSCRIBE or PING for {lease_for}; \
                 removed from {topics} topic(s)",
                text::escaped(&lease.id)
            );
            match self.expiries.check(now) {
                Verdict::Log { left_out } => log::info!("{event}{}", and_more(left_out)),
                Verdict::LogLast => log::info!("{event}{QUIETING}"),
                Verdict::Quiet => {}
            }
        }
        self.stats()
            .udp_subscribers
            .store(self.leases.len() as u64, Ordering::Relaxed);
    }

    /// Takes a lease's subscriber out of every topic it holds.
    fn end(&self, lease: &Lease) {
        let topics = lease.topics.iter().map(|(topic, ())| topic);
        self.router.unsubscribe_all(topics, lease.handle.id());
        lease.subscriber.close();
    }

    /// The broker is stopping: every lease ends.
    fn leave_all(&mut self) {
        self.publisher.flush();
        for (_, lease) in self.leases.drain() {
            let topics = lease.topics.iter().map(|(topic, ())| topic);
            self.router.unsubscribe_all(topics, lease.handle.id());
            lease.subscriber.close();
        }
        self.stats().udp_subscribers.store(0, Ordering::Relaxed);
    }

    /// Answers the sender with one datagram.
    fn answer(&self, to: SocketAddr, reply: &Reply<'_>) {
        let mut datagram = Vec::new();
        reply.write_lines(&mut datagram);
        let counter = match self.socket.send_to(&datagram, to) {
            Ok(_) => &self.stats().udp_datagrams_out,
            Err(_) => &self.stats().udp_datagrams_dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers a bad datagram, or a refused one, with `ERROR <reason>`.
    fn answer_error(&mut self, to: SocketAddr, error: &ProtocolError) {
        self.stats().errors.fetch_add(1, Ordering::Relaxed);
        let (level, what) = match error {
            ProtocolError::Refused(_) => (log::Level::Info, "was refused"),
            _ => (log::Level::Warn, "sent a bad datagram"),
        };
        match self.bad.check(Instant::now()) {
            Verdict::Log { left_out } => {
                log::log!(level, "udp {to} {what}: {error}{}", and_more(left_out));
            }
            Verdict::LogLast => log::log!(level, "udp {to} {what}: {error}{QUIETING}"),
            Verdict::Quiet => {}
        }
        if self.answered.check(Instant::now()) == Verdict::Quiet {
            self.stats()
                .udp_datagrams_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.answer(to, &Reply::Error(error));
    }
}

/// Whether a datagram is protocol lines: its first word is a command word (in any case).
/// The tutorial's `Event at ...` is not.
fn is_command(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let rest = &bytes[start..];
    let end = rest
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(CommandSpec::find)
        .is_some()
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A subscriber that is an address: each `DELIVER` line is one datagram to it. See the
/// module docs for its lease and what bounds it.
#[derive(Debug)]
pub struct UdpSubscriber {
    id: SubscriberId,
    addr: SocketAddr,
    /// The broker's UDP port, shared with the listener: replies and deliveries come from
    /// the port the subscriber sent to, which is what lets them back through a NAT or a
    /// firewall that let the subscriber's datagrams out.
    socket: Arc<UdpSocket>,
    stats: Arc<Stats>,
    /// `--max-pending-bytes`: the most lines queued between two flushes.
    max_pending: usize,
    pending: Mutex<Pending>,
    /// Held while sending, so that two publishers flushing at once cannot interleave (and
    /// so reorder) their datagrams; offers only take `pending`'s lock and go on meanwhile.
    sending: Mutex<()>,
    /// A line too big for a datagram was reported once for this subscriber.
    warned_too_big: AtomicBool,
}

#[derive(Debug, Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

impl UdpSubscriber {
    /// The address it receives at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ends it: it takes no more deliveries.
    fn close(&self) {
        let mut pending = self.pending.lock();
        pending.closed = true;
        pending.lines = Vec::new();
    }

    fn send(&self, datagram: &[u8]) {
        if datagram.len() > MAX_DATAGRAM {
            if !self.warned_too_big.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "a DELIVER line of {} bytes is too big for a datagram (the most is \
                     {MAX_DATAGRAM}): dropped for UDP subscriber {}, and others will be",
                    datagram.len(),
                    self.addr
                );
            }
            self.count(&self.stats.udp_datagrams_dropped);
            return;
        }
        match self.socket.send_to(datagram, self.addr) {
            Ok(_) => self.count(&self.stats.udp_datagrams_out),
            Err(_) => self.count(&self.stats.udp_datagrams_dropped),
        }
    }

    fn count(&self, counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Subscriber for UdpSubscriber {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn offer(&self, batch: &Batch) -> Offer {
        let mut pending = self.pending.lock();
        if pending.closed {
            return Offer::Closed;
        }
        let lines = batch.lines();
        if pending.lines.len() + lines.len() > self.max_pending {
            // UDP promises nothing, and a subscriber this far behind is not waited for:
            // the batch is dropped, and counted.
            self.stats
                .udp_datagrams_dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            return Offer::Queued;
        }
        let was_empty = pending.lines.is_empty();
        pending.lines.extend_from_slice(lines);
        if was_empty {
            Offer::FlushNeeded
        } else {
            Offer::Queued
        }
    }

    fn flush(&self) {
        let _turn = self.sending.lock();
        let lines = std::mem::take(&mut self.pending.lock().lines);
        for line in lines.split_inclusive(|&b| b == b'\n') {
            self.send(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tutorials_events_are_not_commands_and_commands_are() {
        assert!(!is_command(b"Event at Mon Dec  1 10:30:00 2026"));
        assert!(!is_command(b"\xff\xfe"));
        assert!(is_command(b"PUBLISH t m p\n"));
        assert!(is_command(b"  ping"));
        assert!(is_command(b"SUBSCRIBE\n"));
    }
}
