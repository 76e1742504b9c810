//! The bridge: one NATS connection per broker, kept up for as long as the broker runs.
//!
//! # Threads
//!
//! ```text
//!  publishers' threads ── offer ──▶ [ pending HPUBs ] ──▶ nats (writer) ──▶ socket
//!  subscribe/unsubscribe ─ interest_changed ─▶ nats: SUB / UNSUB            │
//!                                                                            ▼
//!  local subscribers ◀── publish ── nats-reader ◀── MSG / HMSG / PING ── nats-server
//! ```
//!
//! * The thread **`nats`** owns the connection: it connects (to the servers of the
//!   [`Pool`]: the `--nats` seeds and the servers the cluster announced, the one just lost
//!   last, with a jittered backoff after each round that failed), says `CONNECT`, and then
//!   is the only one that *writes* to the socket: pending publishes, `SUB` and `UNSUB` as
//!   local interest changes, `PING` every [`PING_INTERVAL`], and the `PONG`s the reader
//!   owes. When the connection is lost it counts what could not be written, and starts
//!   again at once with the next server.
//! * The thread **`nats-reader`**, one per connection, is the only one that *reads*: it
//!   publishes each message that comes in to the local subscribers, through a publisher of
//!   its own that never offers them back to NATS, asks the writer to answer `PING`s, and
//!   hands each `INFO` the server sends when its cluster changes to the pool.
//!
//! # What is lost, and what is said about it
//!
//! Nothing is kept for later (see the [module docs](super)): a publish offered while there
//! is no connection is counted in `nats_unforwarded` and dropped. A blackout therefore
//! lasts from the loss to the next successful handshake, which with a cluster is one
//! connect to another node: milliseconds. The log says when the connection was lost, when
//! no server at all answers (throttled: at most twice per [`OUTAGE_REPORT_INTERVAL`]), and,
//! when the bridge is back, how long it was out and how many messages it could not forward.
//!
//! Publishers never touch the socket. Their [`offer`](Uplink::offer) appends `HPUB`s to a
//! pending buffer, bounded by `--max-pending-bytes`, and wakes the writer: a slow or absent
//! NATS server costs a publisher one copy, never a wait. (NATS's own server works the same
//! way: an outbound buffer per client, flushed by the client's own writer.)
//!
//! # Exactly once, with overlapping subscriptions
//!
//! NATS sends a client one copy of a message *per subscription* it matches: a broker whose
//! clients hold `news/+` and `news/tech` gets `news/tech` twice, with two subscription ids
//! (sids). The reader publishes a message only from the lowest-numbered of the current
//! subscriptions that match its subject, and drops the copies for the others. Sids only
//! grow, and a sid is forgotten as soon as its `UNSUB` is written, so in-flight copies for
//! a subscription that is going away are dropped, and a message that arrives before a new
//! subscription is known to the server has come through an older one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::pool::Pool;
use super::protocol::{self, Connect, Info, Msg, ServerOp, MAX_CONTROL_LINE};
use super::subject::{self, subject_of, subjects_of_filter, topic_of};
use crate::batch::Batch;
use crate::config::parse_nats_url;
use crate::protocol::TIMESTAMP_FORMAT;
use crate::router::{Publisher, Router};
use crate::text::escaped;
use crate::throttle::{and_more, Throttle, Verdict};
use crate::uplink::Uplink;

/// The header that carries the publisher id the local client gave.
pub const PUBLISHER_HEADER: &str = "Pubsub-Lab-Publisher";

/// The header that carries the time the first broker stamped the message with.
pub const TIME_HEADER: &str = "Pubsub-Lab-Time";

/// The publisher id given to a message that came without [`PUBLISHER_HEADER`] (published
/// by some other NATS client, such as `nats pub`).
pub const ANONYMOUS_PUBLISHER: &str = "nats";

/// How long one attempt to reach a server may take, and the handshake after it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often, at most, a broker that reaches no NATS server at all says so again, with what
/// it could not forward meanwhile: an instructor sees the outage go on without a line per
/// retry.
pub const OUTAGE_REPORT_INTERVAL: Duration = Duration::from_secs(30);

/// How long a connection must have lasted for its loss to start a fresh round of tries.
/// A server that accepts the handshake and then drops the bridge at once (one that is
/// shutting down, or refusing it for a reason it gives only after) counts as a failed try,
/// so that even it is retried with backoff, not in a tight loop.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(1);

/// How often the writer pings the server; two pings without a `PONG` and the connection
/// is taken for dead. (A server that is killed closes its sockets, which the reader sees at
/// once; the pings find one that froze or a network that went silent.)
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// Pings sent without an answer before the connection is given up.
pub const MAX_PINGS_OUTSTANDING: u64 = 2;

/// How long a write to the server may block before the connection is given up.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The bridge thread, and what it shares with the publishers. Owned by the broker's
/// handle, stopped and joined with it.
#[derive(Debug)]
pub struct Bridge {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What publishers, the writer and the reader share. It is the router's
/// [`Uplink`].
#[derive(Debug)]
struct Shared {
    /// The servers to try: taken by the `nats` thread to connect, by the reader when an
    /// `INFO` announces a change. Its own lock, never held with `state`'s.
    pool: Mutex<Pool>,
    prefix: String,
    max_pending_bytes: usize,
    state: Mutex<State>,
    /// Wakes the writer: something to write, interest changed, connection lost, stop.
    wake: Condvar,
    counts: Counts,
}

/// The part that changes, behind the bridge's own lock (never the registry's: publishers
/// take this one without holding that one, and the writer takes that one without holding
/// this one, so the two are never waited for in a ring).
#[derive(Debug, Default)]
struct State {
    stopping: bool,
    /// A connection is up: only then are publishes queued, otherwise they are counted as
    /// not forwarded.
    connected: bool,
    /// The reader saw the connection end.
    lost: Option<String>,
    /// `HPUB`s waiting for the writer, and how many messages they hold.
    pending: Vec<u8>,
    pending_messages: u64,
    /// The largest payload the server takes (from its `INFO`).
    max_payload: usize,
    /// `PING`s from the server that the writer must answer.
    pongs_owed: usize,
    interest_changed: bool,
    /// A clone of the connection's socket, for `stop` to wake both threads.
    socket: Option<TcpStream>,
}

/// The bridge's figures in `STATS`.
#[derive(Debug, Default)]
struct Counts {
    connected: AtomicU64,
    cluster_size: AtomicU64,
    /// The last cluster size announced, kept while disconnected, to notice a cluster that
    /// shrank.
    cluster_size_before: AtomicU64,
    reconnects: AtomicU64,
    forwarded: AtomicU64,
    unforwarded: AtomicU64,
    received: AtomicU64,
    refused: AtomicU64,
    subscriptions: AtomicU64,
    pings_outstanding: AtomicU64,
}

impl Bridge {
    /// Starts the bridge to the servers in the router's settings (`--nats`), and makes it
    /// the router's uplink. Returns at once: the connection is made on the bridge's thread,
    /// and local delivery works whether or not it ever succeeds.
    ///
    /// # Errors
    /// The router has no NATS server to connect to (`--nats` not given), the thread could
    /// not be started, or the router has an uplink already.
    pub fn start(router: Arc<Router>) -> io::Result<Bridge> {
        let config = router.config();
        let pool = Pool::new(&config.nats);
        if pool.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no NATS server to bridge to",
            ));
        }
        let shared = Arc::new(Shared {
            counts: Counts::default(),
            pool: Mutex::new(pool),
            prefix: config.nats_prefix.clone(),
            max_pending_bytes: config.max_pending_bytes,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        router
            .set_uplink(Arc::clone(&shared) as Arc<dyn Uplink>)
            .map_err(|_| io::Error::other("the broker has an uplink already"))?;
        let running = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("nats".to_string())
            .spawn(move || run(&running, &router))?;
        Ok(Bridge {
            shared,
            thread: Some(thread),
        })
    }

    /// Closes the connection and waits for the bridge's threads to end.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        {
            let mut state = self.shared.state.lock();
            state.stopping = true;
            if let Some(socket) = &state.socket {
                // Wakes the reader from its blocking read.
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the nats bridge thread panicked");
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl Shared {
    /// Takes the servers a server announced (`connect_urls` of an `INFO`) into the pool,
    /// and says so when that changed what the bridge knows.
    fn learn(&self, connect_urls: &[String]) {
        // A server alone announces nothing; a node of a cluster announces every node of the
        // part of the cluster it is in, itself included.
        let size = connect_urls.len().max(1) as u64;
        self.counts.cluster_size.store(size, Ordering::Relaxed);
        let before = self
            .counts
            .cluster_size_before
            .swap(size, Ordering::Relaxed);
        if size < before {
            // The one sign a bridge has of a split: every node is up and takes clients,
            // but the one it is on no longer announces the others.
            log::warn!(
                "nats bridge: the NATS cluster announced {before} servers, now {size}: a node \
                 stopped, or the cluster is split (compare /routez on each node)"
            );
        }
        let mut pool = self.pool.lock();
        if !pool.announced(connect_urls) {
            return;
        }
        let servers = escaped(&pool.urls().join(" ")).to_string();
        drop(pool);
        log::info!(
            "nats bridge knows these NATS servers now, in the order it would try them: {servers}"
        );
    }
}

impl Uplink for Shared {
    fn offer(&self, batch: &Batch) {
        if batch.topic().starts_with('$') {
            return;
        }
        let subject = subject_of(&self.prefix, batch.topic());
        let headers = |id| [(PUBLISHER_HEADER, id), (TIME_HEADER, batch.timestamp())];
        let mut state = self.state.lock();
        if !state.connected || subject.len() + 64 > MAX_CONTROL_LINE {
            // Down, or a subject the server would refuse (and hang up on us for).
            self.counts
                .unforwarded
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            return;
        }
        let was_empty = state.pending.is_empty();
        let mut refused = 0;
        for published in batch.published() {
            let full = state.pending.len() >= self.max_pending_bytes;
            if full || published.message.len() > state.max_payload {
                refused += 1;
                continue;
            }
            protocol::write_pub(
                &mut state.pending,
                &subject,
                &headers(published.publisher_id),
                published.message.as_bytes(),
            );
            state.pending_messages += 1;
        }
        drop(state);
        if refused > 0 {
            self.counts
                .unforwarded
                .fetch_add(refused, Ordering::Relaxed);
        }
        if was_empty {
            self.wake.notify_all();
        }
    }

    fn interest_changed(&self) {
        self.state.lock().interest_changed = true;
        self.wake.notify_all();
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counts = &self.counts;
        vec![
            ("nats_connected", read(&counts.connected)),
            ("nats_cluster_size", read(&counts.cluster_size)),
            ("nats_reconnects", read(&counts.reconnects)),
            ("nats_subscriptions", read(&counts.subscriptions)),
            ("nats_forwarded", read(&counts.forwarded)),
            ("nats_unforwarded", read(&counts.unforwarded)),
            ("nats_received", read(&counts.received)),
            ("nats_refused", read(&counts.refused)),
        ]
    }
}

/// The `nats` thread: connect, serve, lose, connect again (at once, to the next server of
/// the pool; after a pause when a whole round of them failed), until the broker stops.
fn run(shared: &Arc<Shared>, router: &Arc<Router>) {
    let mut wanted = Wanted::default();
    let mut ever_connected = false;
    // Before the first connection nothing is forwarded either: that is an outage too.
    let mut outage = Outage::from_now(&shared.counts);
    let mut reports = Throttle::new(1, OUTAGE_REPORT_INTERVAL);
    let mut failed_in_round = 0;
    while !shared.state.lock().stopping {
        wanted.update(router, None);
        let Some(url) = shared.pool.lock().next_to_try() else {
            return; // `Bridge::start` refuses an empty pool
        };
        let failure = match Connection::open(&url) {
            Ok(connection) => {
                if ever_connected {
                    shared.counts.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                ever_connected = true;
                log::info!(
                    "nats bridge connected to {url} (nats-server {}, server id {}); subject prefix {}",
                    escaped(&connection.info.version),
                    escaped(&connection.info.server_id),
                    shared.prefix
                );
                outage.report_end(&shared.counts);
                shared.learn(&connection.info.connect_urls);
                let before = Outage::from_now(&shared.counts);
                let why = connection.serve(shared, router, &mut wanted);
                if shared.state.lock().stopping {
                    break;
                }
                // What the connection could not write counts in this outage.
                outage = Outage {
                    since: Instant::now(),
                    ..before
                };
                log::warn!("nats bridge lost {url}: {why}; local delivery goes on, reconnecting");
                if before.since.elapsed() >= STABLE_CONNECTION {
                    failed_in_round = 0;
                    shared.pool.lock().connected();
                    continue;
                }
                why
            }
            Err(error) => {
                log::debug!("nats bridge cannot reach {url}: {error}");
                error
            }
        };
        failed_in_round += 1;
        let servers = shared.pool.lock().len();
        if failed_in_round >= servers {
            failed_in_round = 0;
            outage.report_ongoing(&shared.counts, &mut reports, servers, &failure);
            let pause = shared.pool.lock().pause();
            wait(shared, router, &mut wanted, pause);
        }
    }
}

/// A time without a connection to NATS, to say what it cost.
struct Outage {
    since: Instant,
    /// `nats_unforwarded` when the connection before it was made (or the bridge started),
    /// so that what that connection held when it was lost counts too.
    unforwarded_before: u64,
}

impl Outage {
    fn from_now(counts: &Counts) -> Outage {
        Outage {
            since: Instant::now(),
            unforwarded_before: counts.unforwarded.load(Ordering::Relaxed),
        }
    }

    fn unforwarded(&self, counts: &Counts) -> u64 {
        let now = counts.unforwarded.load(Ordering::Relaxed);
        now.saturating_sub(self.unforwarded_before)
    }

    /// The bridge is connected again: says what the outage cost, if anything. Not
    /// throttled: it comes once per connection made, and the pool's backoff bounds those.
    fn report_end(&self, counts: &Counts) {
        let lost = self.unforwarded(counts);
        if lost > 0 {
            log::warn!(
                "nats bridge: {lost} messages were not forwarded, those published in the {:.3} s \
                 without NATS and those the lost connection still held (STATS nats_unforwarded \
                 counts them)",
                self.since.elapsed().as_secs_f64()
            );
        }
    }

    /// No server of the pool answered: says so, throttled, with what is lost so far.
    fn report_ongoing(&self, counts: &Counts, reports: &mut Throttle, servers: usize, error: &str) {
        let line = format!(
            "nats bridge has no lasting connection to any of the {servers} NATS servers it \
             knows (the last: {error}) for {:.1} s, {} messages not forwarded so far; local \
             delivery goes on, retrying with backoff",
            self.since.elapsed().as_secs_f64(),
            self.unforwarded(counts)
        );
        match reports.check(Instant::now()) {
            Verdict::Quiet => {}
            Verdict::Log { left_out } => log::warn!("{line}{}", and_more(left_out)),
            Verdict::LogLast => log::warn!("{line}{}", crate::throttle::QUIETING),
        }
    }
}

/// Waits `pause` (or until the broker stops), keeping up with interest meanwhile so that
/// the registry's log does not grow while NATS is down.
fn wait(shared: &Shared, router: &Router, wanted: &mut Wanted, pause: Duration) {
    let until = Instant::now() + pause;
    let mut state = shared.state.lock();
    while !state.stopping && Instant::now() < until {
        if std::mem::take(&mut state.interest_changed) {
            drop(state);
            wanted.update(router, None);
            state = shared.state.lock();
            continue;
        }
        shared.wake.wait_until(&mut state, until);
    }
}

/// A connection that said `CONNECT` and got its `PONG`.
struct Connection {
    socket: TcpStream,
    info: Info,
    /// Bytes read after the handshake's `PONG`: the start of what the reader reads.
    unread: Vec<u8>,
}

impl Connection {
    /// Connects to `url` and does the handshake: `INFO` in, `CONNECT` and `PING` out,
    /// `PONG` in (or `-ERR`: refused).
    fn open(url: &str) -> Result<Connection, String> {
        let (host, port) = parse_nats_url(url)?;
        let addrs = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|error| crate::error::describe(&error))?;
        let mut last_error = String::from("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(socket) => return Connection::handshake(socket),
                Err(error) => last_error = crate::error::describe(&error),
            }
        }
        Err(last_error)
    }

    fn handshake(mut socket: TcpStream) -> Result<Connection, String> {
        let describe = |error: io::Error| crate::error::describe(&error);
        socket.set_nodelay(true).map_err(describe)?;
        socket
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(describe)?;
        socket
            .set_write_timeout(Some(WRITE_TIMEOUT))
            .map_err(describe)?;
        let mut unread = Vec::new();
        let info = match next_op(&mut socket, &mut unread)? {
            ServerOp::Info(info) => info,
            other => return Err(format!("the server began with {other:?}, not INFO")),
        };
        if !info.headers {
            return Err(
                "the server does not carry headers (nats-server 2.2 or later is needed)"
                    .to_string(),
            );
        }
        let mut hello = Vec::new();
        protocol::write_connect(
            &mut hello,
            &Connect {
                name: "pubsub-lab",
                no_echo: true,
            },
        );
        protocol::write_ping(&mut hello);
        socket.write_all(&hello).map_err(describe)?;
        loop {
            match next_op(&mut socket, &mut unread)? {
                ServerOp::Pong => break,
                ServerOp::Err(text) => {
                    return Err(format!("the server refused us: {}", escaped(&text)))
                }
                ServerOp::Ok | ServerOp::Info(_) | ServerOp::Ping | ServerOp::Msg(_) => {}
            }
        }
        socket.set_read_timeout(None).map_err(describe)?;
        Ok(Connection {
            socket,
            info,
            unread,
        })
    }

    /// Serves the connection until it is lost or the broker stops: starts its reader, then
    /// writes. Returns why it ended.
    fn serve(self, shared: &Arc<Shared>, router: &Arc<Router>, wanted: &mut Wanted) -> String {
        let Ok(reader_socket) = self.socket.try_clone() else {
            return "the socket could not be shared with a reader thread".to_string();
        };
        let sids = Arc::new(Mutex::new(Sids::default()));
        let mut out = Vec::new();
        {
            let mut state = shared.state.lock();
            if state.stopping {
                return "stopping".to_string();
            }
            state.connected = true;
            state.lost = None;
            state.pongs_owed = 0;
            state.max_payload = self.info.max_payload;
            state.socket = self.socket.try_clone().ok();
        }
        shared.counts.connected.store(1, Ordering::Relaxed);
        shared.counts.pings_outstanding.store(0, Ordering::Relaxed);
        // What local clients hold now, subscribed again on this connection.
        wanted.update(router, None);
        sids.lock().subscribe_all(wanted, &shared.prefix, &mut out);
        shared
            .counts
            .subscriptions
            .store(sids.lock().len() as u64, Ordering::Relaxed);
        let reader = {
            let (shared, router, sids) =
                (Arc::clone(shared), Arc::clone(router), Arc::clone(&sids));
            let unread = self.unread;
            thread::Builder::new()
                .name("nats-reader".to_string())
                .spawn(move || {
                    let why = read_loop(reader_socket, unread, &shared, router, &sids);
                    shared.state.lock().lost = Some(why);
                    shared.wake.notify_all();
                })
        };
        let why = match reader {
            Ok(reader) => {
                let why = write_loop(&self.socket, shared, router, wanted, &sids, out);
                let _ = self.socket.shutdown(Shutdown::Both);
                let _ = reader.join();
                why
            }
            Err(error) => format!("no reader thread: {}", crate::error::describe(&error)),
        };
        let mut state = shared.state.lock();
        state.connected = false;
        state.socket = None;
        state.pending.clear();
        let lost = std::mem::take(&mut state.pending_messages);
        drop(state);
        shared.counts.unforwarded.fetch_add(lost, Ordering::Relaxed);
        shared.counts.connected.store(0, Ordering::Relaxed);
        shared.counts.cluster_size.store(0, Ordering::Relaxed);
        shared.counts.subscriptions.store(0, Ordering::Relaxed);
        why
    }
}

/// Reads one whole operation during the handshake.
fn next_op(socket: &mut TcpStream, unread: &mut Vec<u8>) -> Result<ServerOp, String> {
    loop {
        match ServerOp::parse(unread, protocol::DEFAULT_MAX_PAYLOAD) {
            Ok(Some((op, used))) => {
                unread.drain(..used);
                return Ok(op);
            }
            Ok(None) => {}
            Err(error) => return Err(error.to_string()),
        }
        let mut chunk = [0; 4096];
        match socket.read(&mut chunk) {
            Ok(0) => return Err("the server closed the connection".to_string()),
            Ok(read) => unread.extend_from_slice(&chunk[..read]),
            Err(error) => return Err(crate::error::describe(&error)),
        }
    }
}

/// The writer's loop: waits for something to write, writes it. Returns why it ended.
fn write_loop(
    mut socket: &TcpStream,
    shared: &Shared,
    router: &Router,
    wanted: &mut Wanted,
    sids: &Mutex<Sids>,
    mut out: Vec<u8>,
) -> String {
    let mut next_ping = Instant::now() + PING_INTERVAL;
    loop {
        let mut messages = 0;
        let mut pongs = 0;
        let mut interest = false;
        if out.is_empty() {
            let mut state = shared.state.lock();
            loop {
                if state.stopping {
                    return "stopping".to_string();
                }
                if let Some(why) = state.lost.take() {
                    return why;
                }
                let work =
                    !state.pending.is_empty() || state.pongs_owed > 0 || state.interest_changed;
                if work || Instant::now() >= next_ping {
                    break;
                }
                shared.wake.wait_until(&mut state, next_ping);
            }
            // Swap buffers: publishers go on filling an empty one while we write.
            std::mem::swap(&mut out, &mut state.pending);
            messages = std::mem::take(&mut state.pending_messages);
            pongs = std::mem::take(&mut state.pongs_owed);
            interest = std::mem::take(&mut state.interest_changed);
        }
        if interest {
            let mut sids = sids.lock();
            wanted.update(router, Some((&mut sids, &shared.prefix, &mut out)));
            shared
                .counts
                .subscriptions
                .store(sids.len() as u64, Ordering::Relaxed);
        }
        for _ in 0..pongs {
            protocol::write_pong(&mut out);
        }
        if Instant::now() >= next_ping {
            let outstanding = shared
                .counts
                .pings_outstanding
                .fetch_add(1, Ordering::Relaxed);
            if outstanding >= MAX_PINGS_OUTSTANDING {
                shared
                    .counts
                    .unforwarded
                    .fetch_add(messages, Ordering::Relaxed);
                return format!("no PONG to {MAX_PINGS_OUTSTANDING} PINGs");
            }
            protocol::write_ping(&mut out);
            next_ping = Instant::now() + PING_INTERVAL;
        }
        if let Err(error) = socket.write_all(&out) {
            shared
                .counts
                .unforwarded
                .fetch_add(messages, Ordering::Relaxed);
            return crate::error::describe(&error);
        }
        shared
            .counts
            .forwarded
            .fetch_add(messages, Ordering::Relaxed);
        out.clear();
        // Give back a buffer that a burst made large.
        if out.capacity() > 1024 * 1024 {
            out = Vec::new();
        }
    }
}

/// The reader's loop: reads operations and acts on them. Returns why it ended.
fn read_loop(
    mut socket: TcpStream,
    mut unread: Vec<u8>,
    shared: &Shared,
    router: Arc<Router>,
    sids: &Mutex<Sids>,
) -> String {
    let max_payload = shared.state.lock().max_payload;
    let mut publisher = Publisher::from_uplink(router);
    let mut refusals = Throttle::new(5, Duration::from_secs(10));
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let mut start = 0;
        loop {
            match ServerOp::parse(&unread[start..], max_payload) {
                Ok(Some((op, used))) => {
                    start += used;
                    match op {
                        ServerOp::Msg(msg) => {
                            deliver(&msg, shared, &mut publisher, sids, &mut refusals)
                        }
                        ServerOp::Ping => {
                            shared.state.lock().pongs_owed += 1;
                            shared.wake.notify_all();
                        }
                        ServerOp::Pong => {
                            shared.counts.pings_outstanding.store(0, Ordering::Relaxed)
                        }
                        ServerOp::Err(text) => {
                            log::warn!("nats server says: -ERR {}", escaped(&text));
                        }
                        // The cluster changed: a node joined or left.
                        ServerOp::Info(info) => shared.learn(&info.connect_urls),
                        ServerOp::Ok => {}
                    }
                }
                Ok(None) => break,
                Err(error) => return format!("the server sent {error}"),
            }
        }
        unread.drain(..start);
        // Nothing whole is left to handle: write what was published before waiting, which
        // may be for as long as the NATS server is quiet, so keep no buffers meanwhile.
        publisher.release();
        match socket.read(&mut chunk) {
            Ok(0) => return "the server closed the connection".to_string(),
            Ok(read) => unread.extend_from_slice(&chunk[..read]),
            Err(error) => return crate::error::describe(&error),
        }
    }
}

/// Publishes a message from NATS to the local subscribers, if it is the one copy to
/// publish (see the module docs) and a message a local client could have sent.
fn deliver(
    msg: &Msg,
    shared: &Shared,
    publisher: &mut Publisher,
    sids: &Mutex<Sids>,
    refusals: &mut Throttle,
) {
    if !sids.lock().is_first_match(msg.sid, &msg.subject) {
        return;
    }
    shared.counts.received.fetch_add(1, Ordering::Relaxed);
    let publisher_id = msg.header(PUBLISHER_HEADER).unwrap_or(ANONYMOUS_PUBLISHER);
    let timestamp = msg
        .header(TIME_HEADER)
        .filter(|stamp| chrono::NaiveDateTime::parse_from_str(stamp, TIMESTAMP_FORMAT).is_ok());
    let result = topic_of(&shared.prefix, &msg.subject)
        .map_err(|error| error.to_string())
        .and_then(|topic| {
            let message = std::str::from_utf8(&msg.payload)
                .map_err(|_| "a payload that is not UTF-8 text".to_string())?;
            publisher
                .publish_stamped(&topic, message, publisher_id, timestamp)
                .map_err(|error| error.to_string())
        });
    if let Err(why) = result {
        shared.counts.refused.fetch_add(1, Ordering::Relaxed);
        match refusals.check(Instant::now()) {
            Verdict::Quiet => {}
            Verdict::Log { left_out } => log::warn!(
                "nats bridge refused a message on {}: {}{}",
                escaped(&msg.subject),
                escaped(&why),
                and_more(left_out)
            ),
            Verdict::LogLast => log::warn!(
                "nats bridge refused a message on {}: {}{}",
                escaped(&msg.subject),
                escaped(&why),
                crate::throttle::QUIETING
            ),
        }
    }
}

/// The topics and filters local clients hold, as the registry's interest log tells them.
#[derive(Debug, Default)]
struct Wanted(BTreeSet<Arc<str>>);

impl Wanted {
    /// Reads the registry's interest log. With a connection (`sids`, the prefix, and where
    /// to write), subscribes to what came and unsubscribes from what went.
    fn update(
        &mut self,
        router: &Router,
        mut connection: Option<(&mut Sids, &String, &mut Vec<u8>)>,
    ) {
        for change in router.take_interest() {
            if change.name.starts_with('$') {
                continue; // the broker's own topics stay local
            }
            let changed = if change.subscribed {
                self.0.insert(Arc::clone(&change.name))
            } else {
                self.0.remove(&change.name)
            };
            if let (true, Some((sids, prefix, out))) = (changed, connection.as_mut()) {
                if change.subscribed {
                    sids.subscribe(&change.name, prefix, out);
                } else {
                    sids.unsubscribe(&change.name, out);
                }
            }
        }
    }
}

/// One connection's NATS subscriptions: which sids stand for which local name, and what
/// subject each has, to find the one copy of a message to publish.
#[derive(Debug, Default)]
struct Sids {
    next: u64,
    /// Local topic or filter → its sids (two for a filter ending in `#`).
    by_name: HashMap<Arc<str>, Vec<u64>>,
    /// Subjects without wildcards → their sids, lowest first.
    exact: HashMap<String, BTreeSet<u64>>,
    /// Sids of subjects with wildcards, with the subject.
    wild: BTreeMap<u64, String>,
}

impl Sids {
    fn len(&self) -> usize {
        self.wild.len() + self.exact.values().map(BTreeSet::len).sum::<usize>()
    }

    fn subscribe_all(&mut self, wanted: &Wanted, prefix: &str, out: &mut Vec<u8>) {
        for name in &wanted.0 {
            self.subscribe(name, prefix, out);
        }
    }

    fn subscribe(&mut self, name: &Arc<str>, prefix: &str, out: &mut Vec<u8>) {
        let mut sids = Vec::new();
        for subject in subjects_of_filter(prefix, name) {
            self.next += 1;
            let sid = self.next;
            protocol::write_sub(out, &subject, sid);
            if subject::has_wildcard(&subject) {
                self.wild.insert(sid, subject);
            } else {
                self.exact.entry(subject).or_default().insert(sid);
            }
            sids.push(sid);
        }
        self.by_name.insert(Arc::clone(name), sids);
    }

    fn unsubscribe(&mut self, name: &str, out: &mut Vec<u8>) {
        for sid in self.by_name.remove(name).unwrap_or_default() {
            protocol::write_unsub(out, sid);
            if self.wild.remove(&sid).is_none() {
                self.exact.retain(|_, sids| {
                    sids.remove(&sid);
                    !sids.is_empty()
                });
            }
        }
    }

    /// Whether `sid` is the lowest of the current sids whose subject matches `subject`:
    /// the copy of the message to publish.
    fn is_first_match(&self, sid: u64, subject: &str) -> bool {
        let lowest_exact = self
            .exact
            .get(subject)
            .and_then(|sids| sids.first().copied());
        let lowest_wild = self
            .wild
            .iter()
            .find(|(_, pattern)| subject::matches(pattern, subject))
            .map(|(sid, _)| *sid);
        let lowest = match (lowest_exact, lowest_wild) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        lowest == Some(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sids_for(names: &[&str]) -> (Sids, String) {
        let mut sids = Sids::default();
        let mut out = Vec::new();
        for name in names {
            sids.subscribe(&Arc::from(*name), "p", &mut out);
        }
        (sids, String::from_utf8(out).unwrap())
    }

    #[test]
    fn each_local_name_becomes_its_subscriptions() {
        let (sids, out) = sids_for(&["news/+", "news/#", "news/tech"]);
        assert_eq!(
            out,
            "SUB p.news.* 1\r\nSUB p.news 2\r\nSUB p.news.> 3\r\nSUB p.news.tech 4\r\n"
        );
        assert_eq!(sids.len(), 4);
    }

    #[test]
    fn only_the_lowest_matching_sid_publishes_a_message() {
        let (mut sids, _) = sids_for(&["news/+", "news/#", "news/tech"]);
        // news.tech matches sids 1 (news.*), 3 (news.>) and 4 (news.tech): one copy is 1's.
        assert!(sids.is_first_match(1, "p.news.tech"));
        assert!(!sids.is_first_match(3, "p.news.tech"));
        assert!(!sids.is_first_match(4, "p.news.tech"));
        assert!(sids.is_first_match(2, "p.news"));
        assert!(sids.is_first_match(3, "p.news.tech.ai"));
        let mut out = Vec::new();
        sids.unsubscribe("news/+", &mut out);
        assert_eq!(out, b"UNSUB 1\r\n");
        assert!(
            !sids.is_first_match(1, "p.news.tech"),
            "a copy for a sid that is gone"
        );
        assert!(sids.is_first_match(3, "p.news.tech"));
        sids.unsubscribe("news/#", &mut out);
        assert!(sids.is_first_match(4, "p.news.tech"));
        assert!(!sids.is_first_match(9, "p.other"), "a sid never given");
    }
}
