//! A TCP connection as a subscriber: its socket, the lines waiting to be written to it,
//! and what happens when it cannot keep up.
//!
//! Who writes to a subscriber's socket? Normally the thread of whichever *publisher* sent
//! the message: the subscriber's own thread is blocked in `read`, waiting for its client's
//! next command. Several publishers may deliver to the same subscriber at once, so the
//! writing side sits behind a mutex, and each [`Outbox`] keeps the lines offered to it but
//! not yet written:
//!
//! ```text
//!   publisher thread A ──offer──┐
//!                               ├──▶ Outbox { pending bytes, socket } ──write──▶ subscriber
//!   publisher thread B ──offer──┘         (one mutex per connection)
//! ```
//!
//! The outbox is the TCP line connection's [`Subscriber`] handle: the registry holds it,
//! [`offer`](Subscriber::offer) appends a batch's `DELIVER` lines to the pending bytes, and
//! [`flush`](Subscriber::flush) writes them, once per burst (see `router.rs`). The
//! connection's own replies go through the same pending bytes, so a reply and the
//! deliveries before it reach the client in order.
//!
//! # A subscriber that falls behind
//!
//! A publisher writes to a subscriber *in place* only while the subscriber keeps up: the
//! socket's send timeout is set to [`IN_PLACE_LIMIT`] (the kernel rounds it up to one tick
//! of its clock, 1 to 4 ms), so a write into a socket that stays full gives up almost at
//! once. A subscriber that is reading, only more slowly than it is written to, is written
//! to in place a little longer: for as long as each write moves something, up to
//! [`IN_PLACE_BUDGET`] (10 ms) per batch. What did not fit stays pending, and the
//! subscriber is *behind*: it gets a thread of its own, `writer-<n>`, which does its
//! writes from then on, for as long as it has any. Publishers only append to its pending
//! bytes meanwhile. When it has caught up and stayed caught up for [`WRITER_LINGER`], its
//! writer thread ends.
//!
//! ```text
//!   keeping up:  publisher ──write (≤ 1 tick idle, ≤ 10 ms in all)──▶ socket
//!   behind:      publisher ──append──▶ pending ──▶ writer-<n> ──write (≤ write timeout)──▶ socket
//! ```
//!
//! This is the NATS design within ours: in NATS, publishers append to a client's outbound
//! buffer and the client's own writer goroutine flushes it. Here the writer thread exists
//! only while it is needed, so ten thousand subscribers that keep up cost no extra thread.
//!
//! # Backpressure, and its limits
//!
//! A subscriber that reads steadily but more slowly than its publishers send (one reader
//! of ten busy publishers) must not lose messages for it: once it is more than
//! [`HIGH_WATER`] (1 MiB) behind, each publisher, at the end of its burst, waits for the
//! subscriber's writer to bring the backlog back down. That slows the publishers to the
//! subscriber's pace, as TCP itself does. But it waits only for a subscriber that is
//! *moving*: one that takes at least one [`WRITE_CHUNK`] (64 KiB) every [`DRAIN_PATIENCE`]
//! (250 ms, so 256 KiB/s: a `subscriber` printing to a terminal manages that, even built
//! for debugging on a busy laptop). A subscriber that drains more slowly than that is not
//! waited for again until it drains at that pace again: it must catch up by itself or be
//! cut off. So a publisher waits at most one tick, and then at most 250 ms once, for a
//! subscriber that has stopped, and not at all for one that stopped more than 250 ms ago:
//! ten subscribers that stall together hold their topic's healthy subscribers up once, by
//! a quarter of a second, not by ten write timeouts. (NATS does the same with a shorter,
//! per-burst "stall" of its fast producers, and cuts off more readily.)
//!
//! # A burst
//!
//! Publishers wait for room at the end of their bursts, but a thousand publishers that
//! each finish a 64 KB line at the same moment all offer before any of them gets there:
//! 64 MB for one subscriber at once, which would pass `--max-pending-bytes` though the
//! subscriber reads as fast as it can. So an offer that would take a subscriber past the
//! limit waits first (`Outbox::push_batch`), on the same terms as above: while the
//! subscriber is draining, and never longer than [`DRAIN_PATIENCE`] without a chunk
//! taken. The first publishers to fit go on, the others wait for the next half megabyte.
//! The limit is for subscribers that have stopped, not for bursts.
//!
//! # The rule: when a subscriber is cut off
//!
//! A subscriber is cut off as a *slow consumer* (its socket shut down, its subscriptions
//! removed, its slot freed, a warning logged) when either:
//!
//! 1. **it stops taking bytes while behind**: its writer thread could not write one
//!    64 KiB chunk within `--write-timeout` (2 s). A subscriber that is behind must so read
//!    at least 64 KiB per write timeout (32 KiB/s by default) until it has caught up; one
//!    that trickles a few bytes a second is treated as stalled;
//! 2. **its backlog passes `--max-pending-bytes`** (8 MiB by default): it fell further
//!    behind than the broker will hold for anyone (which only a subscriber that drains
//!    too slowly to be waited for can do).
//!
//! A subscriber that keeps up with what it is sent is never cut off, however slowly it
//! reads, and however many publishers burst at once; nor is one that is behind but drains
//! at 256 KiB/s or more (its publishers wait for it). The limits are NATS's kind, with
//! smaller defaults for a classroom machine: NATS uses a write deadline and `max_pending`
//! of 64 MiB; Redis cuts a pub/sub client whose output buffer passes 32 MB. A line is
//! written whole or the connection is closed: a cut line is never followed by another line.
//!
//! # One socket, one file descriptor
//!
//! The outbox owns the connection's only `TcpStream`. The connection's own thread reads
//! from it through [`Outbox::socket`] while others write to it: `&TcpStream` implements
//! both `Read` and `Write`, because the kernel keeps a socket's two directions apart. One
//! descriptor per client (not one per handle) is what lets the broker hold ten thousand
//! clients under a `ulimit -n` of twenty thousand.
//!
//! # Lines, and the bytes that carry them
//!
//! A line-protocol connection's lines go on the wire as they are. A WebSocket
//! connection's outbox is the same outbox, with the same pending bytes, writer thread and
//! cut-off rules, told at the handshake to wrap each line in a frame of its own
//! ([`Encoding::Framed`], with the framing function from `web/websocket.rs`): the outbox
//! knows lines, not WebSocket. Bytes that are already in the connection's wire format (an
//! HTTP response, a WebSocket pong) go in with [`Outbox::push_bytes`], as they are.
//!
//! Which lines is another matter, decided before the encoding: a connection that speaks
//! kn-sock's JSON dialect is told so ([`Outbox::set_dialect`]), and is offered each batch's
//! JSON lines instead of its `DELIVER` lines ([`Batch::lines_for`]). The dialect chooses
//! the lines, the encoding how they go on the wire.
//!
//! # Memory
//!
//! An outbox with nothing pending holds no buffer: the pending bytes are given back as soon
//! as they are written, so ten thousand idle subscribers cost nothing here.
//!
//! Except during a burst. A publisher in full flow offers a batch to each subscriber,
//! flushes them all, and reads its next chunk of publishes; giving every buffer back after
//! each write and taking it again a moment later made the allocator hand its pages back to
//! the kernel and fault them in again, batch after batch (14,355 page faults in one
//! `bench fanout` run, 1,388 with the buffers kept; `bench fanout --against` that build:
//! 1.08). So a publisher flushes with [`Subscriber::flush_in_burst`], which keeps the
//! emptied buffer, and calls [`Subscriber::rest`], which gives it back, on those it has
//! offered nothing since and on all of them when it goes quiet (see `Publisher::flush`
//! in `router.rs`). Redis does something alike for its clients' query buffers: its
//! periodic `clientsCron` shrinks them once a client has been idle for a while.
//!
//! What only a subscriber that fell behind needs, its writer thread's handle and when
//! that thread last wrote, is allocated when it falls behind (`Writer`): the many that
//! keep up carry a pointer instead of 40 bytes (`bench conns`).

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::batch::Batch;
use crate::clients::{Outward, Probe};
use crate::config::format_duration;
use crate::connections::Close;
use crate::peer::Peer;
use crate::protocol::{ClientState, Dialect, ProtocolError, Reply};
use crate::stats::Stats;
use crate::subscriber::{Offer, Subscriber, SubscriberId};
use crate::text::escaped;
use crate::trace::{self, Direction};

/// How long a publisher's write to a subscriber may wait for room in its socket: a write
/// that moves nothing in that time makes the subscriber behind. The kernel rounds it up to
/// one tick (1 to 4 ms, by how it was built): the shortest wait a blocking socket can be
/// given.
pub const IN_PLACE_LIMIT: Duration = Duration::from_millis(1);

/// How long in all a publisher goes on writing one batch in place to a subscriber that is
/// reading, only not as fast as it is written to (one reader of ten busy publishers): each
/// write that moves some bytes within [`IN_PLACE_LIMIT`] earns another, until this has
/// passed. Handing such a subscriber to a writer thread at its first short write cost
/// `bench fanin` about a twentieth of its rate: its ten publishers then copied into its
/// backlog and waited for the writer, where they could have written themselves (434 to
/// 871 writes and 3,487 to 3,628 `futex` calls in a run, against 8,057 and 948 now). A
/// subscriber that moves nothing for a tick is still behind at once.
pub const IN_PLACE_BUDGET: Duration = Duration::from_millis(10);

/// How much of its backlog a writer thread writes at once; each chunk must be taken within
/// the write timeout (see the module docs for the rule).
pub const WRITE_CHUNK: usize = 64 * 1024;

/// How long a publisher waits for a subscriber that is far behind to take its next chunk
/// before it stops waiting for it: see "Backpressure" in the module docs.
pub const DRAIN_PATIENCE: Duration = Duration::from_millis(250);

/// The send timeout of a subscriber's socket while it is behind: how often its writer
/// thread looks whether the subscriber has taken more (see `write_backlog`).
pub const WRITER_POLL: Duration = Duration::from_millis(10);

/// How long a writer thread waits, caught up, for more to write before it ends: a
/// subscriber that falls behind now and then keeps its thread rather than start a new one
/// each time.
pub const WRITER_LINGER: Duration = Duration::from_secs(1);

/// Stack of a writer thread: it only writes, so it needs even less than a client thread.
const WRITER_STACK_SIZE: usize = 128 * 1024;

/// How far behind a subscriber may fall before its publishers wait for it (if it is
/// moving): enough for bursts to go by without anyone waiting, little enough to stay in
/// the processor's caches.
pub const HIGH_WATER: usize = 1024 * 1024;

/// What every outbox of one broker shares: its limits and the counters.
#[derive(Debug)]
pub struct Rules {
    /// `--write-timeout`: how long a subscriber that is behind may take to accept one chunk.
    pub write_timeout: Duration,
    /// `--max-pending-bytes`: the most a subscriber may have waiting in the broker.
    pub max_pending_bytes: usize,
    /// Where cut-offs are counted.
    pub stats: Arc<Stats>,
}

impl Rules {
    /// The backlog past which publishers wait for a subscriber that is moving:
    /// [`HIGH_WATER`], or half of `--max-pending-bytes` if that is smaller.
    fn high_water(&self) -> usize {
        HIGH_WATER.min(self.max_pending_bytes / 2)
    }

    /// The backlog down to which they then wait: half the high-water mark, so that they
    /// are woken once per half a megabyte drained, not once per chunk.
    fn low_water(&self) -> usize {
        self.high_water() / 2
    }
}

/// How the lines queued in an outbox become bytes on its socket. See "Lines, and the bytes
/// that carry them" in the module docs.
#[derive(Debug, Clone, Copy)]
pub enum Encoding {
    /// As they are: the line protocol.
    Lines,
    /// Each line, without its `\n`, appended by this function: one WebSocket text frame per
    /// line (`web::websocket::write_text_line`).
    Framed(fn(line: &[u8], out: &mut Vec<u8>)),
}

impl Encoding {
    /// Appends `lines` (complete lines, each ending in `\n`) to `out`, encoded.
    fn encode(self, lines: &[u8], out: &mut Vec<u8>) {
        match self {
            Encoding::Lines => out.extend_from_slice(lines),
            Encoding::Framed(frame) => {
                for line in lines.split_inclusive(|&b| b == b'\n') {
                    frame(line.strip_suffix(b"\n").unwrap_or(line), out);
                }
            }
        }
    }
}

/// One connection's socket and its pending lines. See the module docs.
#[derive(Debug)]
pub struct Outbox {
    id: SubscriberId,
    peer: Peer,
    rules: Arc<Rules>,
    socket: TcpStream,
    /// The connection speaks kn-sock's JSON lines, so deliveries are written as JSON (see
    /// `protocol/dialect.rs`). Set once, by the connection's thread at its first line,
    /// before it can be subscribed to anything.
    json: AtomicBool,
    state: Mutex<State>,
    /// Wakes the writer thread when bytes are appended for it, or the outbox closes.
    wake_writer: Condvar,
    /// Wakes publishers waiting for a subscriber that is far behind: the writer wrote a
    /// chunk, or the outbox closed.
    drained: Condvar,
    /// Wakes publishers waiting for room under `--max-pending-bytes` (see "A burst"), one
    /// at a time: each wakes the next if room is left. Waking a thousand of them at once
    /// would make the writer thread queue behind a thousand turns of the lock (a
    /// *thundering herd*) just when the subscriber should be drained fastest.
    room: Condvar,
    /// This outbox, for starting a writer thread that holds it.
    me: Weak<Outbox>,
}

/// What the writers share, behind the mutex.
#[derive(Debug)]
struct State {
    pending: Vec<u8>,
    phase: Phase,
    /// How lines become bytes on this connection.
    encoding: Encoding,
    /// Bytes the writer thread has taken from `pending` and is writing: part of the
    /// backlog, which `--max-pending-bytes` bounds.
    writing: usize,
    /// The writer thread, while there is one (and after it ended, until it is joined).
    writer: Option<Box<Writer>>,
    /// The subscriber is far behind and drained too slowly to be waited for: publishers
    /// no longer wait for it, until its backlog is below the high-water mark again.
    not_waited_for: bool,
    /// It was cut off as a slow consumer (not merely closed): `CLIENTS` says so.
    cut_off: bool,
    /// Deliveries offered to it, and their bytes, for `CLIENTS` (see `clients.rs`):
    /// counted here because every delivery takes this lock anyway, so counting costs no
    /// atomic of its own.
    delivered: u64,
    delivered_bytes: u64,
}

/// A subscriber's writer thread, from when it fell behind (see "Memory").
#[derive(Debug)]
struct Writer {
    thread: JoinHandle<()>,
    /// When the thread last wrote a whole chunk (or started): how a waiting publisher sees
    /// whether the subscriber is moving.
    progress_at: Instant,
}

impl State {
    /// How long the subscriber has taken no chunk: since its writer thread last wrote one
    /// (or started). Without a writer thread nothing drains it, so it counts as stalled.
    fn still_for(&self) -> Duration {
        self.writer
            .as_ref()
            .map_or(DRAIN_PATIENCE, |writer| writer.progress_at.elapsed())
    }
}

/// What a complete write in place does with the emptied buffer (see "Memory").
#[derive(Debug, Clone, Copy)]
enum AfterWrite {
    GiveBack,
    /// A publisher's burst: the next batch comes soon.
    Keep,
}

/// Who writes to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The subscriber keeps up: publishers write in place, each within [`IN_PLACE_LIMIT`].
    KeepingUp,
    /// The subscriber is behind: its writer thread writes; publishers only append.
    Behind,
    /// Closed, or cut off: nothing more is written.
    Closed,
}

impl Outbox {
    /// Takes charge of a connection's socket.
    ///
    /// # Errors
    /// Fails if the socket's options cannot be set (the client has already gone).
    pub fn new(peer: Peer, socket: TcpStream, rules: Arc<Rules>) -> io::Result<Arc<Outbox>> {
        socket.set_write_timeout(Some(IN_PLACE_LIMIT))?;
        // The outbox already gathers lines into as few writes as it can. Nagle's algorithm
        // would hold a second small write back until the client acknowledges the first, and
        // clients delay acknowledgements by up to 40 ms: every quiet moment would cost a
        // subscriber that long. So the kernel is told to send each write at once.
        socket.set_nodelay(true)?;
        Ok(Arc::new_cyclic(|me| Outbox {
            id: SubscriberId::next(),
            peer,
            rules,
            socket,
            json: AtomicBool::new(false),
            state: Mutex::new(State {
                pending: Vec::new(),
                phase: Phase::KeepingUp,
                encoding: Encoding::Lines,
                writing: 0,
                writer: None,
                not_waited_for: false,
                cut_off: false,
                delivered: 0,
                delivered_bytes: 0,
            }),
            wake_writer: Condvar::new(),
            drained: Condvar::new(),
            room: Condvar::new(),
            me: me.clone(),
        }))
    }

    /// Who is at the other end.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Makes deliveries to this connection be written in `dialect`.
    pub fn set_dialect(&self, dialect: Dialect) {
        self.json.store(dialect == Dialect::Json, Ordering::Relaxed);
    }

    /// The dialect deliveries to this connection are written in.
    pub fn dialect(&self) -> Dialect {
        if self.json.load(Ordering::Relaxed) {
            Dialect::Json
        } else {
            Dialect::Line
        }
    }

    /// The socket, for the connection's own thread to read from. Writing goes through
    /// [`push`](Self::push) and [`flush`](Subscriber::flush) only.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Queues one or more complete lines (a batch's deliveries). See [`Offer`] for what
    /// the caller must do next.
    pub fn push(&self, lines: &[u8]) -> Offer {
        let mut state = self.state.lock();
        if state.phase == Phase::Closed {
            return Offer::Closed;
        }
        let was_empty = state.pending.is_empty();
        self.trace(lines);
        let encoding = state.encoding;
        encoding.encode(lines, &mut state.pending);
        self.queued(&mut state, was_empty)
    }

    /// Queues the lines `write` appends, written straight into the pending bytes: how a
    /// connection queues its own replies without formatting them somewhere else first.
    /// (Lines that must be framed are framed from a copy.)
    pub fn push_with(&self, write: impl FnOnce(&mut Vec<u8>)) -> Offer {
        let mut state = self.state.lock();
        if state.phase == Phase::Closed {
            return Offer::Closed;
        }
        let was_empty = state.pending.is_empty();
        match state.encoding {
            Encoding::Lines => {
                let start = state.pending.len();
                write(&mut state.pending);
                self.trace(&state.pending[start..]);
            }
            encoding => {
                let mut lines = Vec::new();
                write(&mut lines);
                self.trace(&lines);
                encoding.encode(&lines, &mut state.pending);
            }
        }
        self.queued(&mut state, was_empty)
    }

    /// Queues a batch's lines, counting them as deliveries (see [`Outbox::outward`]).
    ///
    /// If they would take a draining subscriber past `--max-pending-bytes`, the publisher
    /// first waits for room (see "A burst" in the module docs).
    fn push_batch(&self, batch: &Batch, lines: &[u8]) -> Offer {
        let mut state = self.state.lock();
        self.make_room(&mut state, lines.len());
        if state.phase == Phase::Closed {
            return Offer::Closed;
        }
        state.delivered += batch.len() as u64;
        state.delivered_bytes += lines.len() as u64;
        let was_empty = state.pending.is_empty();
        self.trace(lines);
        let encoding = state.encoding;
        encoding.encode(lines, &mut state.pending);
        self.queued(&mut state, was_empty)
    }

    /// Queues bytes already in the connection's wire format (an HTTP response, a WebSocket
    /// control frame), as they are, whatever the encoding.
    pub fn push_bytes(&self, bytes: &[u8]) -> Offer {
        let mut state = self.state.lock();
        if state.phase == Phase::Closed {
            return Offer::Closed;
        }
        let was_empty = state.pending.is_empty();
        state.pending.extend_from_slice(bytes);
        self.queued(&mut state, was_empty)
    }

    /// How lines are written from now on (bytes already queued stay as they are): a web
    /// connection becomes a WebSocket at its handshake.
    pub fn set_encoding(&self, encoding: Encoding) {
        self.state.lock().encoding = encoding;
    }

    /// After bytes were appended: cut off a backlog over the limit, wake the writer thread,
    /// and tell the caller whether it must flush.
    fn queued(&self, state: &mut State, was_empty: bool) -> Offer {
        if let Some(backlog) = self.over_the_limit(state) {
            self.cut_off_backlog(state, backlog);
            return Offer::Closed;
        }
        match state.phase {
            Phase::Behind => {
                self.wake_writer.notify_one();
                // Far behind: the publisher's flush is where it waits for the subscriber.
                if self.worth_waiting_for(state) {
                    Offer::FlushNeeded
                } else {
                    Offer::Queued
                }
            }
            _ if was_empty => Offer::FlushNeeded,
            _ => Offer::Queued,
        }
    }

    /// Writes everything queued and waits until the client has taken it, or the outbox is
    /// closed: for a last answer before closing (an HTTP response with `Connection:
    /// close`, a WebSocket close frame). A client that stops taking bytes is cut off by
    /// the usual rules meanwhile, so the wait is bounded as every other write is.
    pub fn wait_until_written(&self) {
        let mut state = self.state.lock();
        if state.phase == Phase::KeepingUp && !state.pending.is_empty() {
            self.flush_in_place(&mut state, AfterWrite::GiveBack);
        }
        while state.phase == Phase::Behind && self.backlog(&state) > 0 {
            // The writer thread wakes us at each chunk written; the timeout only bounds a
            // wake-up missed between two checks.
            self.drained.wait_for(&mut state, WRITER_POLL);
        }
    }

    /// Marks the outbox closed and shuts the socket down, waking the connection's own
    /// thread and the writer thread. Lines still pending are dropped. Calling it twice is
    /// harmless.
    pub fn close(&self) {
        let mut state = self.state.lock();
        self.shut(&mut state);
    }

    /// Waits for the writer thread, if there is one, to end. Called by the connection's own
    /// thread after [`close`](Self::close), so every thread the outbox started is joined.
    pub fn join_writer(&self) {
        let writer = self.state.lock().writer.take();
        if let Some(writer) = writer {
            if writer.thread.join().is_err() {
                log::error!("the writer thread of {} panicked", self.peer);
            }
        }
    }

    fn trace(&self, lines: &[u8]) {
        if trace::enabled() {
            trace::lines(&self.peer, Direction::Out, lines);
        }
    }

    /// Whether the subscriber is far enough behind that its publishers should wait for it,
    /// and drains fast enough to be waited for.
    fn worth_waiting_for(&self, state: &State) -> bool {
        state.phase == Phase::Behind
            && self.backlog(state) > self.rules.high_water()
            && !state.not_waited_for
    }

    /// Backpressure: waits while the subscriber is far behind (past the high-water mark),
    /// until its backlog is down to the low-water mark, for as long as it keeps draining at
    /// least a chunk every [`DRAIN_PATIENCE`]. See the module docs.
    fn wait_for_room(&self, state: &mut parking_lot::MutexGuard<'_, State>) {
        if !self.worth_waiting_for(state) {
            return;
        }
        while state.phase == Phase::Behind
            && !state.not_waited_for
            && self.backlog(state) > self.rules.low_water()
        {
            // A subscriber that has not taken a chunk for a while already is not waited
            // for at all: a publisher pays for a subscriber that has just stopped, at most
            // once, and not even that for one that stopped a while ago.
            let still = state.still_for();
            if still >= DRAIN_PATIENCE {
                state.not_waited_for = true;
                break;
            }
            self.drained.wait_for(state, DRAIN_PATIENCE - still);
        }
    }

    /// Waits while `more` bytes would take the backlog past `--max-pending-bytes` and the
    /// subscriber is worth waiting for: it is draining, so the limit must not cut it off
    /// for a burst that many publishers sent at the same moment. Each waiting publisher
    /// looks again when the writer has drained to the low-water mark, and the first ones
    /// to fit go on; one that has stopped draining for [`DRAIN_PATIENCE`] is not waited for,
    /// and the limit applies to it as before.
    fn make_room(&self, state: &mut parking_lot::MutexGuard<'_, State>, more: usize) {
        if state.phase == Phase::KeepingUp
            && self.backlog(state) + more > self.rules.max_pending_bytes
        {
            // Publishers have queued more than the limit before any of them flushed: this
            // one writes what it can now, and the subscriber's writer takes over the rest.
            self.flush_in_place(state, AfterWrite::GiveBack);
        }
        while state.phase == Phase::Behind
            && !state.not_waited_for
            && self.backlog(state) + more > self.rules.max_pending_bytes
        {
            let still = state.still_for();
            if still >= DRAIN_PATIENCE {
                state.not_waited_for = true;
                // Nobody waits for it any more: the others need not wait out their time.
                self.room.notify_all();
                return;
            }
            self.room.wait_for(state, DRAIN_PATIENCE - still);
        }
        if state.phase == Phase::Behind && self.backlog(state) + more < self.rules.max_pending_bytes
        {
            // Room for this one and perhaps the next: it looks for itself.
            self.room.notify_one();
        }
    }

    fn backlog(&self, state: &State) -> usize {
        state.pending.len() + state.writing
    }

    /// The backlog, if it is over `--max-pending-bytes`.
    fn over_the_limit(&self, state: &State) -> Option<usize> {
        let backlog = self.backlog(state);
        (backlog > self.rules.max_pending_bytes).then_some(backlog)
    }

    /// Writes `bytes` in place. Each `write` waits at most [`IN_PLACE_LIMIT`] for room; one
    /// that comes back short moved some bytes first, so the subscriber is reading, and the
    /// next goes on, for up to [`IN_PLACE_BUDGET`] in all. Returns how many went out; fewer
    /// than all means the subscriber is behind.
    fn write_in_place(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        // Set at the first short write: a batch that goes out whole never reads the clock.
        let mut budget_ends = None;
        loop {
            match (&self.socket).write(&bytes[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(len) => written += len,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                // Nothing moved for a whole tick: the subscriber is not reading.
                Err(error) if is_timeout(&error) => return Ok(written),
                Err(error) => return Err(error),
            }
            if written == bytes.len() {
                return Ok(written);
            }
            let ends = *budget_ends.get_or_insert_with(|| Instant::now() + IN_PLACE_BUDGET);
            if Instant::now() >= ends {
                return Ok(written);
            }
        }
    }

    /// Writes what is pending, or, for a subscriber that is behind, waits for room (see
    /// "Backpressure").
    fn flush_then(&self, buffer: AfterWrite) {
        let mut state = self.state.lock();
        match state.phase {
            Phase::KeepingUp if !state.pending.is_empty() => {
                self.flush_in_place(&mut state, buffer);
            }
            Phase::Behind => self.wait_for_room(&mut state),
            _ => {}
        }
    }

    /// Writes what is pending, in place. Called with the lock held; the write is bounded
    /// by [`IN_PLACE_LIMIT`]. Once all is written the buffer is given back, or, in a
    /// publisher's burst, kept for its next batch (see "Memory").
    fn flush_in_place(&self, state: &mut State, buffer: AfterWrite) {
        match self.write_in_place(&state.pending) {
            Ok(written) if written == state.pending.len() => match buffer {
                AfterWrite::GiveBack => state.pending = Vec::new(),
                AfterWrite::Keep => state.pending.clear(),
            },
            Ok(written) => {
                state.pending.drain(..written);
                self.fall_behind(state);
            }
            Err(error) => self.cut_off(state, &error),
        }
    }

    /// The subscriber could not take a write at once: its writer thread takes over.
    fn fall_behind(&self, state: &mut State) {
        state.phase = Phase::Behind;
        self.rules
            .stats
            .subscribers_behind
            .fetch_add(1, Ordering::Relaxed);
        if let Some(old) = state.writer.take() {
            // A writer that lingered and ended; it is done, so this does not wait.
            let _ = old.thread.join();
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let spawned = thread::Builder::new()
            .name(format!("writer-{}", self.peer.conn()))
            .stack_size(WRITER_STACK_SIZE)
            .spawn(move || me.write_while_behind());
        match spawned {
            Ok(thread) => {
                state.writer = Some(Box::new(Writer {
                    thread,
                    progress_at: Instant::now(),
                }));
            }
            Err(error) => {
                log::error!("{} could not get a writer thread: {error}", self.peer);
                self.shut(state);
            }
        }
    }

    /// The writer thread's body: writes the backlog chunk by chunk until it has caught up
    /// and stayed caught up for [`WRITER_LINGER`], or the subscriber is cut off.
    fn write_while_behind(&self) {
        if let Err(error) = self.socket.set_write_timeout(Some(WRITER_POLL)) {
            let mut state = self.state.lock();
            self.cut_off(&mut state, &error);
            return;
        }
        let mut taken = Vec::new();
        loop {
            {
                let mut state = self.state.lock();
                loop {
                    if state.phase == Phase::Closed {
                        return;
                    }
                    if !state.pending.is_empty() {
                        std::mem::swap(&mut taken, &mut state.pending);
                        state.writing = taken.len();
                        break;
                    }
                    let waited = self.wake_writer.wait_for(&mut state, WRITER_LINGER);
                    if waited.timed_out() && state.pending.is_empty() {
                        self.catch_up(&mut state);
                        return;
                    }
                }
            }
            // The lock is not held while writing: publishers keep appending meanwhile.
            if let Err(error) = self.write_backlog(&taken) {
                let mut state = self.state.lock();
                // Closed meanwhile (the broker stopping, the client leaving): that is why
                // the write failed, not the subscriber being slow.
                if state.phase != Phase::Closed {
                    self.cut_off(&mut state, &error);
                }
                return;
            }
            // Kept, emptied, for the next round: while the subscriber is behind, its two
            // buffers trade places round after round instead of being grown again each
            // time. Both are given back when it catches up (the thread's end drops this
            // one; `catch_up` the other).
            taken.clear();
        }
    }

    /// One more chunk is out: the backlog shrank, and the subscriber is moving. A chunk
    /// within [`DRAIN_PATIENCE`] of the last one makes it worth waiting for again (if it
    /// was not); once the backlog is down to the low-water mark, publishers waiting for it
    /// go on.
    fn chunk_written(&self, len: usize) {
        let mut state = self.state.lock();
        state.writing -= len;
        // `None` only once the writer was joined: the outbox is closed.
        let since_last = state.writer.as_mut().map(|writer| {
            let now = Instant::now();
            let since_last = now.duration_since(writer.progress_at);
            writer.progress_at = now;
            since_last
        });
        if since_last.is_some_and(|since_last| since_last <= DRAIN_PATIENCE) {
            // Draining at the pace worth waiting for again (after a hiccup, say): a
            // subscriber that only trickles never gets here.
            state.not_waited_for = false;
        }
        if self.backlog(&state) <= self.rules.low_water() {
            state.not_waited_for = false;
            self.drained.notify_all();
            self.room.notify_one();
        }
    }

    /// Caught up: publishers write in place again, with the short limit.
    fn catch_up(&self, state: &mut State) {
        state.pending = Vec::new();
        if self.socket.set_write_timeout(Some(IN_PLACE_LIMIT)).is_ok() {
            state.phase = Phase::KeepingUp;
            self.rules
                .stats
                .subscribers_behind
                .fetch_sub(1, Ordering::Relaxed);
        } else {
            self.shut(state);
        }
    }

    /// Writes all of `bytes` for a subscriber that is behind, or fails when it has not
    /// taken a whole [`WRITE_CHUNK`] within the write timeout (rule 1 of the module docs).
    ///
    /// Each `write` waits at most [`WRITER_POLL`] (the socket's send timeout while the
    /// subscriber is behind) and hands over whatever fits. Polling like this, rather than
    /// one long blocking write, lets the writer see the subscriber move as it moves: the
    /// kernel wakes a blocked writer only once a third of the send buffer (up to megabytes)
    /// is free, so a subscriber reading steadily would otherwise look stalled for most of a
    /// second at a time. The time limit runs per chunk taken, not per system call, so a
    /// client that lets a few bytes through now and then does not restart the clock.
    fn write_backlog(&self, mut bytes: &[u8]) -> io::Result<()> {
        let mut clock = ChunkClock::start(Instant::now(), self.rules.write_timeout);
        while !bytes.is_empty() {
            let mut written = 0;
            match (&self.socket).write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(len) => {
                    bytes = &bytes[len..];
                    written = len;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if is_timeout(&error) => {}
                Err(error) => return Err(error),
            }
            match clock.wrote(written, bytes.is_empty(), Instant::now()) {
                Progress::Chunk(len) => self.chunk_written(len),
                Progress::Waiting => {}
                Progress::TimedOut => return Err(io::ErrorKind::TimedOut.into()),
            }
        }
        Ok(())
    }

    /// The backlog passed `--max-pending-bytes` (rule 2): cut off.
    fn cut_off_backlog(&self, state: &mut State, backlog: usize) {
        self.rules
            .stats
            .slow_consumers
            .fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "slow consumer {} ({}) disconnected: {backlog} bytes waiting for it, more than \
             --max-pending-bytes {}",
            escaped(&self.peer.client_id()),
            self.peer.addr(),
            self.rules.max_pending_bytes
        );
        state.cut_off = true;
        self.shut(state);
    }

    /// A write failed: the subscriber stopped reading (a timeout, rule 1) or went away (a
    /// reset, a broken pipe). Either way nothing more can be sent to it.
    fn cut_off(&self, state: &mut State, error: &io::Error) {
        // What `CLIENTS` shows, set here and not in lab 5's exercise below, so that a
        // student's answer shows the same.
        state.cut_off = is_timeout(error);
        // lab:begin 05 slow-consumer cut-off
        if is_timeout(error) {
            self.rules
                .stats
                .slow_consumers
                .fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "slow consumer {} ({}) disconnected: could not deliver within {}",
                escaped(&self.peer.client_id()),
                self.peer.addr(),
                format_duration(self.rules.write_timeout)
            );
        } else {
            log::info!("{} lost while writing to it: {error}", self.peer);
        }
        self.shut(state);
        // lab:end 05
    }

    fn shut(&self, state: &mut State) {
        if state.phase == Phase::Behind {
            self.rules
                .stats
                .subscribers_behind
                .fetch_sub(1, Ordering::Relaxed);
        }
        if state.phase != Phase::Closed {
            state.phase = Phase::Closed;
            // The lines still waiting will never be written: count them as dropped.
            let lost = state.pending.iter().filter(|&&byte| byte == b'\n').count();
            self.rules
                .stats
                .dropped
                .fetch_add(lost as u64, Ordering::Relaxed);
            state.pending = Vec::new();
            // Shutting down (rather than waiting for the last handle to be dropped) acts at
            // once: the connection's own thread, blocked in `read`, wakes up with end of
            // file and runs its cleanup, and a writer thread blocked in `write` fails. An
            // error here only means the peer is already gone.
            let _ = self.socket.shutdown(Shutdown::Both);
            self.wake_writer.notify_all();
            self.drained.notify_all();
            self.room.notify_all();
        }
    }
}

/// Whether a write error is the send timeout running out (the subscriber is not reading).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Subscriber for Outbox {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn offer(&self, batch: &Batch) -> Offer {
        self.push_batch(batch, batch.lines_for(self.dialect()))
    }

    fn flush(&self) {
        self.flush_then(AfterWrite::GiveBack);
    }

    fn flush_in_burst(&self) {
        self.flush_then(AfterWrite::Keep);
    }

    fn rest(&self) {
        let mut state = self.state.lock();
        if state.pending.is_empty() {
            state.pending = Vec::new();
        }
    }

    /// For a stream the connection's own thread offers (retained messages): writes what is
    /// pending, then, if the subscriber is behind, waits until its backlog is down to the
    /// low-water mark or the outbox closes. Unlike a publisher's wait (see
    /// "Backpressure"), it is not cut short for a subscriber that drains slowly: the
    /// thread waiting is the subscriber's own, so it holds up nobody else, and one that
    /// stops reading is cut off by its writer thread after `--write-timeout`, which ends
    /// the wait.
    fn wait_until_drained(&self) {
        let mut state = self.state.lock();
        if state.phase == Phase::KeepingUp && !state.pending.is_empty() {
            self.flush_in_place(&mut state, AfterWrite::GiveBack);
        }
        while state.phase == Phase::Behind && self.backlog(&state) > self.rules.low_water() {
            // Woken at the low-water mark; the timeout only bounds a wake-up missed
            // between two checks.
            self.drained.wait_for(&mut state, WRITER_POLL);
        }
    }

    /// A subscriber that keeps up and has nothing pending is written to straight from the
    /// publisher's batch, rather than have it copied in only to be written out at once.
    fn deliver(&self, batch: &Batch) -> bool {
        let lines = batch.lines_for(self.dialect());
        let mut state = self.state.lock();
        let as_they_are = matches!(state.encoding, Encoding::Lines);
        if state.phase != Phase::KeepingUp || !state.pending.is_empty() || !as_they_are {
            drop(state);
            let offered = self.push_batch(batch, lines);
            self.flush();
            return offered != Offer::Closed;
        }
        state.delivered += batch.len() as u64;
        state.delivered_bytes += lines.len() as u64;
        self.trace(lines);
        match self.write_in_place(lines) {
            Ok(written) if written == lines.len() => true,
            Ok(written) => {
                state.pending.extend_from_slice(&lines[written..]);
                if let Some(backlog) = self.over_the_limit(&state) {
                    self.cut_off_backlog(&mut state, backlog);
                    return false;
                }
                self.fall_behind(&mut state);
                true
            }
            Err(error) => {
                self.cut_off(&mut state, &error);
                false
            }
        }
    }
}

/// What `CLIENTS` shows of a connection's outbound side (see `clients.rs`), and how
/// `KICK` closes it.
impl Probe for Outbox {
    fn outward(&self) -> Outward {
        let state = self.state.lock();
        let client_state = match state.phase {
            Phase::KeepingUp => ClientState::KeepingUp,
            Phase::Behind => ClientState::Behind,
            Phase::Closed if state.cut_off => ClientState::CutOff,
            Phase::Closed => ClientState::KeepingUp,
        };
        Outward {
            messages: state.delivered,
            bytes: state.delivered_bytes,
            pending: self.backlog(&state),
            state: client_state,
        }
    }

    /// The reason goes out first if it can go at once (a client that is behind would not
    /// read it before the lines ahead of it anyway, and the instructor's thread must not
    /// wait for it): written in place (see `write_in_place`), then the socket is shut.
    fn kick(&self, reason: &ProtocolError) {
        let dialect = self.dialect();
        self.push_with(|pending| dialect.write_reply(&Reply::Error(reason), pending));
        let mut state = self.state.lock();
        if state.phase == Phase::KeepingUp && !state.pending.is_empty() {
            if let Ok(written) = self.write_in_place(&state.pending) {
                state.pending.drain(..written);
            }
        }
        self.shut(&mut state);
    }
}

impl Close for Outbox {
    fn close(&self) {
        Outbox::close(self);
    }
}

/// Rule 1's clock, for one backlog being written: the write timeout runs from the last
/// whole [`WRITE_CHUNK`] taken, not from the last byte, so that a client that lets a few
/// bytes through now and then cannot keep a stalled connection alive.
#[derive(Debug)]
struct ChunkClock {
    timeout: Duration,
    deadline: Instant,
    towards_chunk: usize,
}

/// What a write meant for [`ChunkClock`].
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// A whole chunk (or the last of the backlog) is out: this many bytes since the last.
    Chunk(usize),
    /// Not a chunk yet, and still within the timeout.
    Waiting,
    /// No whole chunk within the timeout: the subscriber is stalled.
    TimedOut,
}

impl ChunkClock {
    fn start(now: Instant, timeout: Duration) -> ChunkClock {
        ChunkClock {
            timeout,
            deadline: now + timeout,
            towards_chunk: 0,
        }
    }

    /// `written` more bytes went out at `now` (`done`: they were the backlog's last).
    fn wrote(&mut self, written: usize, done: bool, now: Instant) -> Progress {
        self.towards_chunk += written;
        if self.towards_chunk >= WRITE_CHUNK || done {
            let len = std::mem::take(&mut self.towards_chunk);
            self.deadline = now + self.timeout;
            Progress::Chunk(len)
        } else if now >= self.deadline {
            Progress::TimedOut
        } else {
            Progress::Waiting
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Rule 1, on its own clock (no socket, no real time): a trickle of bytes that never
    /// makes a whole chunk within the timeout is a stall, however often a byte goes out;
    /// a steady reader's chunks each restart the clock. The end-to-end test is
    /// `a_trickling_reader_is_cut_off_like_a_stalled_one` in `tests/slow_consumers.rs`.
    #[test]
    fn a_trickle_of_bytes_does_not_restart_the_clock() {
        let start = Instant::now();
        let timeout = Duration::from_millis(500);
        let mut trickle = ChunkClock::start(start, timeout);
        let mut verdict = Progress::Waiting;
        let mut at = start;
        for _ in 0..20 {
            at += Duration::from_millis(100);
            verdict = trickle.wrote(1024, false, at);
            if verdict != Progress::Waiting {
                break;
            }
        }
        assert_eq!(verdict, Progress::TimedOut);
        assert_eq!(at, start + timeout);

        let mut steady = ChunkClock::start(start, timeout);
        for step in 1..=20 {
            let at = start + Duration::from_millis(400) * step;
            assert_eq!(
                steady.wrote(WRITE_CHUNK, false, at),
                Progress::Chunk(WRITE_CHUNK)
            );
        }
        assert_eq!(steady.wrote(10, true, start), Progress::Chunk(10));
    }
    use std::net::TcpListener;

    fn outbox() -> (Arc<Outbox>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (broker_side, addr) = listener.accept().unwrap();
        let rules = Arc::new(Rules {
            write_timeout: Duration::from_secs(1),
            max_pending_bytes: 8 << 20,
            stats: Arc::new(Stats::default()),
        });
        (
            Outbox::new(Peer::new(1, addr), broker_side, rules).unwrap(),
            client,
        )
    }

    /// A big reply is written and its buffer given back: an outbox that once sent a
    /// megabyte does not keep a megabyte.
    #[test]
    fn the_pending_bytes_are_given_back_once_written() {
        let (outbox, mut client) = outbox();
        let big = "TOPICS t 1\n".repeat(100_000);
        let len = big.len();
        let reader = std::thread::spawn(move || {
            let mut received = vec![0u8; len];
            client.read_exact(&mut received).unwrap();
        });
        assert_eq!(outbox.push(big.as_bytes()), Offer::FlushNeeded);
        assert!(outbox.state.lock().pending.capacity() >= big.len());
        outbox.flush();
        // In place, or by the writer thread: either way, once all is out, nothing is held.
        reader.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while outbox.state.lock().pending.capacity() != 0 || outbox.state.lock().writing != 0 {
            assert!(Instant::now() < deadline, "the buffer was kept");
            std::thread::sleep(Duration::from_millis(5));
        }
        outbox.close();
        outbox.join_writer();
    }

    /// In a publisher's burst the emptied buffer is kept for the next batch, and given back
    /// when the publisher rests; an ordinary flush gives it back at once.
    #[test]
    fn a_burst_keeps_the_buffer_until_the_publisher_rests() {
        let (outbox, mut client) = outbox();
        let lines = b"DELIVER t m p 2026-01-01 00:00:00\n";
        let mut received = vec![0u8; lines.len()];

        assert_eq!(outbox.push(lines), Offer::FlushNeeded);
        outbox.flush_in_burst();
        client.read_exact(&mut received).unwrap();
        assert_eq!(&received[..], lines);
        let state = outbox.state.lock();
        assert!(state.pending.is_empty(), "all was written in place");
        assert!(
            state.pending.capacity() > 0,
            "the buffer was given back in a burst"
        );
        drop(state);

        outbox.rest();
        assert_eq!(outbox.state.lock().pending.capacity(), 0, "kept after rest");

        assert_eq!(outbox.push(lines), Offer::FlushNeeded);
        outbox.flush();
        client.read_exact(&mut received).unwrap();
        assert_eq!(
            outbox.state.lock().pending.capacity(),
            0,
            "kept after a flush"
        );
        outbox.close();
        outbox.join_writer();
    }
}
