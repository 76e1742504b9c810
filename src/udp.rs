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
//! * **protocol lines** (its first word is a command): each line is executed as on TCP,
//!   by the same session core (`session.rs`): each address has a session of its own, whose
//!   link (`udp/link.rs`) sends its answers as datagrams. `PUBLISH` and `PING` as usual;
//!   `SUBSCRIBE` subscribes the *sender's address*, once it has proven it receives (a
//!   cookie, below); commands that need a connection
//!   (`VERBOSE`, `QUIT`, `AUTH`, durable subscriptions, and the listings, whose answers
//!   would be many datagrams to an address nobody proved is the sender's) are refused.
//!   A datagram names no user: on a broker with an auth file (and `--udp-allow-anonymous`)
//!   its sender is `anonymous` to the rules;
//! * **anything else**, published whole to `--udp-topic` (`udp`) with the publisher id
//!   `udp:<ip>:<port>`. So the tutorial's ticker works unchanged, and its events reach
//!   TCP subscribers of `udp` as ordinary `DELIVER` lines.
//!
//! Answers (`PONG`, `ERROR <reason>`, `COOKIE <token>`) go back to the sender as one
//! datagram each, at most [`MAX_ANSWERS`] for one datagram.
//!
//! # Proof before a lease: cookies
//!
//! UDP does not check source addresses: a datagram "from" a victim's address is as easy
//! to send as one from your own. A broker that subscribed whatever address a `SUBSCRIBE`
//! claimed would send a victim every delivery and the whole retained store (a 13-byte
//! datagram bought 1.05 MB: ×80,538). So:
//!
//! ```text
//! client -> broker   SUBSCRIBE news ear         (padded with blank lines to 24 bytes)
//! broker -> client   COOKIE 3f1c9a0b7d2e4f56
//! client -> broker   COOKIE 3f1c9a0b7d2e4f56
//!                    SUBSCRIBE news ear         (one datagram: the lease starts)
//! ```
//!
//! * An address **proves itself** by sending a datagram whose first line is
//!   `COOKIE <token>`, with the token the broker sent it: only an address that receives
//!   could know it. The token is a keyed hash of the address and the minute
//!   (`udp/cookie.rs`), so the broker keeps nothing for an address until it is proven.
//! * A `SUBSCRIBE` that would start a lease, from an address not proven, is answered with
//!   `COOKIE <token>` and otherwise ignored. The address holding a lease is proven for
//!   the lease's life: renewing needs no cookie.
//! * **An address that has not proven itself is sent at most the bytes it sent**, in
//!   answer to each datagram: a `PONG` (as long as its `PING`), the `COOKIE` only if the
//!   datagram was at least its 24 bytes (so a client pads its first `SUBSCRIBE`, as QUIC
//!   pads its first packet), an `ERROR` only if it fits. What does not fit is withheld and
//!   counted (`udp_withheld`). Amplification is then at most ×1, whoever is the target.
//!
//! The tutorial's ticker only sends, and a `PUBLISH` gets no answer: neither needs a
//! cookie. `UdpClient` (and so `subscriber --udp`) does the exchange by itself.
//!
//! # Egress: leases
//!
//! A UDP subscriber is an address ([`UdpSubscriber`], in `udp/subscriber.rs`); each
//! delivery is one datagram per
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
//! `--udp-max-subscribers`, and [`MAX_LEASES_PER_IP`] for one machine: each of its ports
//! can prove itself, and without a share per machine one student could take every lease.
//!
//! Deliveries to a lease never cost its publisher a system call: a publisher copies the
//! `DELIVER` lines into the lease's buffer, and one thread, `udp-send-<port>`
//! (`udp/sender.rs`), sends every datagram of the port from a bounded queue that drops and
//! counts (`udp_queue_dropped`), within a budget per address (1,000 datagrams and 1 MiB a
//! second) for everything it is sent, answers and deliveries alike. A lease is replayed a
//! filter's retained messages once in its life: a `SUBSCRIBE` that renews the lease, or
//! that follows an `UNSUBSCRIBE` of the same filter, replays nothing
//! (`UdpSubscriber::replay_retained`).
//!
//! # What is lost, and where
//!
//! * A `DELIVER` line longer than a datagram can be ([`MAX_DATAGRAM`]) is dropped and
//!   counted (`udp_datagrams_dropped`). Over a real network, datagrams above about
//!   1472 bytes are also split into IP fragments, and losing one fragment loses the whole.
//! * A receiver that reads slowly loses datagrams in its own kernel once its socket
//!   buffer is full: the broker cannot know, and does not wait. Nor does it queue for a
//!   UDP subscriber more than 256 KiB (`udp/subscriber.rs`); past it, deliveries are dropped.
//! * The one ingress thread publishes each datagram as it comes; while it waits for a
//!   slow TCP subscriber (backpressure, `outbox.rs`), datagrams queue in the UDP socket's
//!   buffer, and the kernel drops those that do not fit. UDP has no way to tell the
//!   sender to slow down: that is the difference.
//!
//! * Past an address's budget, past [`MAX_ANSWERS`] answers to one datagram, or past the
//!   bytes an unproven address sent, datagrams are withheld (`udp_withheld`); past the
//!   sender's queue, dropped (`udp_queue_dropped`).
//!
//! `STATS` counts `udp_datagrams_in`, `udp_datagrams_out`, `udp_datagrams_dropped`,
//! `udp_subscribers`, `udp_withheld` and `udp_queue_dropped`; `bench udp` measures loss at
//! a given rate.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::format_duration;
use crate::hooks::{ClientInfo, Transport};
use crate::peer::Peer;
use crate::protocol::{Command, CommandSpec, ProtocolError, Reply};
use crate::router::Router;
use crate::server::{reachable, Listener, Server};
use crate::session::Session;
use crate::stats::Stats;
use crate::text;
use crate::throttle::{and_more, Throttle, Verdict, QUIETING};

pub mod cookie;
mod link;
pub mod sender;
mod subscriber;

use cookie::Cookies;
use link::{Allowance, Shared, UdpLink};
pub use subscriber::UdpSubscriber;

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

/// The most answers one datagram gets (`PONG`s, `ERROR`s, a `COOKIE`). A datagram holds up
/// to 64 KiB of lines: without a cap, one datagram of `PING`s would get 13,000 `PONG`
/// datagrams back. A client that needs more answers sends more datagrams.
pub const MAX_ANSWERS: usize = 8;

/// The most leases one IP address may hold. Anyone may open as many UDP ports as they
/// like, and each proves itself with its own cookie: without this, one machine could take
/// every one of the `--udp-max-subscribers` leases and leave none for the class. Unlike
/// `--max-clients-per-ip`, loopback is not exempt: a lab on one machine needs a few leases,
/// not hundreds. (A production broker would make it a flag.)
pub const MAX_LEASES_PER_IP: usize = 16;

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
        let stats = Arc::clone(self.router.stats());
        let (outbox, sender) = match sender::spawn(Arc::clone(&self.socket), Arc::clone(&stats)) {
            Ok(started) => started,
            Err(error) => {
                log::error!("the UDP port cannot start its sender thread: {error}; UDP is off");
                return;
            }
        };
        let shared = Arc::new(Shared {
            outbox,
            stats,
            answered: Mutex::new(Throttle::new(
                ERRORS_ANSWERED_PER_SECOND,
                Duration::from_secs(1),
            )),
            warnings: Mutex::new(Throttle::new(LOGGED_PER_INTERVAL, LOG_INTERVAL)),
        });
        let mut ingress = Ingress {
            socket: self.socket,
            router: self.router,
            sessions: HashMap::new(),
            touched: Vec::new(),
            tick,
            next_check: Instant::now() + tick,
            expiries: Throttle::new(LOGGED_PER_INTERVAL, LOG_INTERVAL),
            cookies: Cookies::new(),
            shared,
        };
        ingress.run(&server);
        // Every lease has ended: what they queued is sent, then the sender stops.
        drop(ingress);
        sender.stop();
    }
}

/// The listener thread's state: the table of addresses is its alone, so it needs no lock.
struct Ingress {
    socket: Arc<UdpSocket>,
    router: Arc<Router>,
    /// A session per address: every one that holds a lease, and those that sent a
    /// datagram in the current burst (until its end).
    sessions: HashMap<SocketAddr, Lease>,
    /// The addresses that sent a datagram in the current burst: only their sessions have
    /// anything to flush or end at its end, however many leases there are.
    touched: Vec<SocketAddr>,
    tick: Duration,
    next_check: Instant,
    expiries: Throttle,
    /// The secret that makes and checks cookies (`udp/cookie.rs`).
    cookies: Cookies,
    /// What every address's link shares.
    shared: Arc<Shared>,
}

/// One address: its session, the core every client has (see `session.rs`), and when its
/// lease ends, if it holds one.
struct Lease {
    session: Session,
    /// `None` while it holds no subscription: then it lasts until the end of the burst.
    expires: Option<Instant>,
    /// It echoed a cookie: it receives what is sent to it. Every lease is proven (a lease
    /// starts only for a proven address); an address without one is proven only for the
    /// datagrams of this burst that carried its cookie.
    proven: bool,
    /// What the datagram being handled may be answered with; its link holds it too.
    allowance: Rc<Allowance>,
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
                    // subscriber for the whole burst, then the answers.
                    self.end_of_burst();
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

    /// One datagram: protocol lines, or one message for `--udp-topic`, handled by the
    /// session of the address it came from. A first line `COOKIE <token>` proves the
    /// address (see `udp/cookie.rs`); the rest is the datagram.
    fn datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return; // nothing in it (the broker's own wake-up call is empty)
        }
        let received = bytes.len();
        let (cookie, bytes) = split_cookie(bytes);
        let echoed = cookie.is_some_and(|token| self.cookies.is_valid(from, token));
        let commands = is_command(bytes);
        let held = self.sessions.get(&from).is_some_and(|lease| lease.proven);
        let (subscribes, only_subscribes) = subscribes_in(bytes);
        if commands && !echoed && !held && subscribes {
            // Not proven, and it wants a lease: nothing is kept of its SUBSCRIBEs. Its
            // other lines, if any, are still handled, below.
            self.send_cookie(from, received);
            if only_subscribes {
                return;
            }
        }
        if cookie.is_some() && bytes.iter().all(u8::is_ascii_whitespace) {
            return; // a cookie alone proves an address for nothing that follows
        }
        if self.router.access().is_some() && !self.router.config().udp_allow_anonymous {
            // A datagram's source address proves nothing, and there is no connection to
            // hold an `AUTH`: on a broker with access control, UDP is shut unless asked.
            let error = ProtocolError::UdpWithoutAuth;
            self.shared.warn(
                log::Level::Warn,
                format_args!("udp {from} sent a bad datagram: {error}"),
            );
            self.stats().errors.fetch_add(1, Ordering::Relaxed);
            let allowance = Allowance::for_datagram(received, echoed || held);
            return self.shared.answer(from, &Reply::Error(&error), &allowance);
        }
        let Some(mut lease) = self.lease_of(from, received, echoed) else {
            return;
        };
        lease.proven |= echoed;
        lease.allowance.reset(received, lease.proven);
        let renews = if commands {
            let mut renews = false;
            for line in bytes.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                renews |= self.line(&mut lease, line, from);
            }
            renews
        } else {
            event(&mut lease.session, bytes, &self.router);
            false
        };
        if renews && lease.session.subscription_count() > 0 {
            lease.expires = Some(Instant::now() + self.router.config().udp_lease);
        }
        self.sessions.insert(from, lease);
        self.touched.push(from);
    }

    /// Answers `COOKIE <token>` to an address that asked for a lease without proving
    /// itself, if that is no bigger than the `received` bytes of its datagram.
    fn send_cookie(&self, from: SocketAddr, received: usize) {
        let answer = format!("COOKIE {}\n", self.cookies.token(from)).into_bytes();
        let allowance = Allowance::for_datagram(received, false);
        self.shared.answer_bytes(from, answer, &allowance);
    }

    /// The session of `from`: its lease's, or a new one, if the hooks let it in (an
    /// address without a lease is asked about afresh, datagram by datagram).
    fn lease_of(&mut self, from: SocketAddr, received: usize, echoed: bool) -> Option<Lease> {
        if let Some(lease) = self.sessions.remove(&from) {
            return Some(lease);
        }
        let client = ClientInfo::new(Transport::Udp, Some(from));
        if let Err(error) = self.router.admit(client) {
            self.stats().errors.fetch_add(1, Ordering::Relaxed);
            self.shared.warn(
                log::Level::Info,
                format_args!("udp {from} was refused: {error}"),
            );
            let allowance = Allowance::for_datagram(received, echoed);
            self.shared.answer(from, &Reply::Error(&error), &allowance);
            return None;
        }
        let allowance = Rc::new(Allowance::default());
        let link = UdpLink {
            peer: Peer::datagrams(from),
            subscriber: Arc::new(UdpSubscriber::new(from, &self.shared, &self.router)),
            shared: Arc::clone(&self.shared),
            allowance: Rc::clone(&allowance),
            answers: RefCell::new(Vec::new()),
        };
        let session = Session::datagrams(Arc::clone(&self.router), Box::new(link), client);
        Some(Lease {
            session,
            expires: None,
            proven: false,
            allowance,
        })
    }

    /// One line of a datagram of commands. Returns whether it renews the address's lease
    /// (`SUBSCRIBE` and `PING` do).
    fn line(&mut self, lease: &mut Lease, line: &[u8], from: SocketAddr) -> bool {
        let limit = self.router.config().max_line_bytes;
        if line.len() > limit {
            lease.session.refuse(&ProtocolError::LineTooLong { limit });
            return false;
        }
        let subscribe = first_word(line).eq_ignore_ascii_case(b"SUBSCRIBE");
        if subscribe && lease.session.subscription_count() == 0 {
            if !lease.proven {
                return false; // it was sent a cookie instead (see `datagram`)
            }
            if let Err(error) = self.room_for_a_lease(from.ip()) {
                lease.session.refuse(&error);
                return false;
            }
        }
        lease.session.handle_line(line);
        subscribe || first_word(line).eq_ignore_ascii_case(b"PING")
    }

    /// Whether a new lease for an address at `ip` is within `--udp-max-subscribers` and
    /// [`MAX_LEASES_PER_IP`].
    fn room_for_a_lease(&self, ip: IpAddr) -> Result<(), ProtocolError> {
        let limit = self.router.config().udp_max_subscribers;
        if self.lease_count() >= limit {
            return Err(ProtocolError::TooManyUdpSubscribers { limit });
        }
        let from_ip = self
            .sessions
            .iter()
            .filter(|(addr, lease)| addr.ip() == ip && lease.session.subscription_count() > 0)
            .count();
        if from_ip >= MAX_LEASES_PER_IP {
            return Err(ProtocolError::TooManyUdpSubscribersFrom {
                ip,
                limit: MAX_LEASES_PER_IP,
            });
        }
        Ok(())
    }

    /// How many addresses hold a lease.
    fn lease_count(&self) -> usize {
        self.sessions
            .values()
            .filter(|lease| lease.session.subscription_count() > 0)
            .count()
    }

    /// The burst is over: the sessions that hold no subscription (any more) end, and every
    /// session writes what it queued. (The count of leases is kept first, so that an
    /// answer never comes before the figure it changed.)
    fn end_of_burst(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        let ending: Vec<SocketAddr> = touched
            .iter()
            .filter(|from| {
                self.sessions
                    .get(from)
                    .is_some_and(|lease| lease.session.subscription_count() == 0)
            })
            .copied()
            .collect();
        let ended: Vec<(SocketAddr, Lease)> = ending
            .into_iter()
            .filter_map(|from| self.sessions.remove_entry(&from))
            .collect();
        let renewed = Instant::now() + self.router.config().udp_lease;
        for from in &touched {
            if let Some(lease) = self.sessions.get_mut(from) {
                lease.expires.get_or_insert(renewed);
            }
        }
        self.keep_count();
        for from in &touched {
            if let Some(lease) = self.sessions.get_mut(from) {
                lease.session.flush();
            }
        }
        // The buffer is kept for the next burst.
        touched.clear();
        self.touched = touched;
        for (from, lease) in ended {
            if lease.expires.is_some() {
                log::info!("udp {from} left every topic: its lease ends");
            }
            // Dropping the session writes out what it queued.
        }
    }

    /// `udp_subscribers` follows the lease table.
    fn keep_count(&self) {
        self.stats()
            .udp_subscribers
            .store(self.lease_count() as u64, Ordering::Relaxed);
    }

    /// Removes the leases that ran out, at most once per tick.
    fn expire(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + self.tick;
        let expired: Vec<SocketAddr> = self
            .sessions
            .iter()
            .filter(|(_, lease)| lease.expires.is_some_and(|at| at <= now))
            .map(|(addr, _)| *addr)
            .collect();
        let lease_for = format_duration(self.router.config().udp_lease);
        for addr in expired {
            let Some(lease) = self.sessions.remove(&addr) else {
                continue;
            };
            let topics = lease.session.subscription_count();
            let id = lease.session.client_id();
            // Dropping the session takes it out of every topic it holds.
            drop(lease);
            let event = format!(
                "udp subscriber {addr} {} expired: no SUBSCRIBE or PING for {lease_for}; \
                 removed from {topics} topic(s)",
                text::escaped(&id)
            );
            match self.expiries.check(now) {
                Verdict::Log { left_out } => log::info!("{event}{}", and_more(left_out)),
                Verdict::LogLast => log::info!("{event}{QUIETING}"),
                Verdict::Quiet => {}
            }
        }
        self.keep_count();
    }

    /// The broker is stopping: every lease ends.
    fn leave_all(&mut self) {
        self.sessions.clear();
        self.stats().udp_subscribers.store(0, Ordering::Relaxed);
    }
}

/// A datagram that is not a command: published whole, as the tutorial's ticker needs,
/// to `--udp-topic`, as `udp:<address>`.
fn event(session: &mut Session, bytes: &[u8], router: &Router) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return session.refuse(&ProtocolError::NotUtf8);
    };
    let message = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let limit = router.config().max_line_bytes;
    if message.len() > limit {
        return session.refuse(&ProtocolError::LineTooLong { limit });
    }
    let publisher_id = format!("udp:{}", session.peer().addr());
    session.execute(&Command::Publish {
        topic: &router.config().udp_topic,
        message,
        publisher_id: &publisher_id,
    });
}

/// Splits off a first line `COOKIE <token>`: the token, if there is one, and the rest.
fn split_cookie(bytes: &[u8]) -> (Option<&str>, &[u8]) {
    let (first, rest) = match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => (&bytes[..end], &bytes[end + 1..]),
        None => (bytes, &[][..]),
    };
    match cookie::parse_line(first) {
        Some(token) => (Some(token), rest),
        None => (None, bytes),
    }
}

/// Whether a datagram of commands holds a `SUBSCRIBE` (the one command that starts a
/// lease, and so the one that needs a proven address), and whether that is all it holds
/// (blank lines aside).
fn subscribes_in(bytes: &[u8]) -> (bool, bool) {
    let words = bytes
        .split(|&b| b == b'\n')
        .map(first_word)
        .filter(|word| !word.is_empty());
    let (mut any, mut all) = (false, true);
    for word in words {
        let subscribe = word.eq_ignore_ascii_case(b"SUBSCRIBE");
        any |= subscribe;
        all &= subscribe;
    }
    (any, all)
}

/// A line's first word, as bytes.
fn first_word(line: &[u8]) -> &[u8] {
    line.split(u8::is_ascii_whitespace)
        .find(|word| !word.is_empty())
        .unwrap_or_default()
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
