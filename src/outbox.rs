//! The write half of one client connection, shared by every thread that sends to it.
//!
//! Who writes to a subscriber's socket? Not the subscriber's own thread (it is blocked in
//! `read`, waiting for that client's next command) but the thread of whichever *publisher*
//! sent the message. Several publishers may deliver to the same subscriber at once, so the
//! socket sits behind a mutex, and each [`Outbox`] also keeps a small buffer of lines not
//! yet written:
//!
//! ```text
//!   publisher thread A ──push──┐
//!                              ├──▶ Outbox { pending bytes, socket } ──write──▶ subscriber
//!   publisher thread B ──push──┘         (one mutex per connection)
//! ```
//!
//! # Batching
//!
//! [`Outbox::push`] only appends a line to the buffer. The bytes go out when the pushing
//! thread calls [`Outbox::flush`], which it does just before it would block waiting for its
//! own client's next command, or at once when the buffer passes [`FLUSH_THRESHOLD`]. A
//! publisher that sends 500 messages in one burst so costs each subscriber one `write`
//! system call, not 500. Whoever pushes into an empty buffer is responsible for the flush;
//! [`Pushed::NowPending`] tells them so.
//!
//! # Slow consumers
//!
//! Writes run with a socket write timeout (`--write-timeout`, 2 s by default). A
//! subscriber that stops reading fills its kernel buffers; the next write then makes no
//! progress, and after the timeout the outbox gives up: it marks itself closed, shuts the
//! socket down (which wakes the subscriber's own thread, whose cleanup removes its
//! subscriptions), and logs a warning. Every later push to a closed outbox returns at once,
//! so the other subscribers of that topic are held up once, for at most the timeout.
//! Subscribers of other topics are not held up at all: nobody writes while holding the
//! registry lock.
//!
//! This is the simplest mechanism that keeps that promise: no extra thread per connection
//! (which would double the broker's memory) and no unbounded queue. Production brokers make
//! the same kind of promise: NATS closes a "slow consumer" after a write deadline, Redis
//! closes a pub/sub client whose output buffer passes a limit. A line is written whole or
//! the connection is closed: a cut line is never followed by another line.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::stats::Stats;

/// A buffer at least this large is written out at once, without waiting for the pushing
/// thread to run out of input. It bounds the memory a subscriber's pending lines can take,
/// and is large enough that a burst still goes out in few system calls.
pub const FLUSH_THRESHOLD: usize = 32 * 1024;

/// The number the broker gives each connection, in the order they arrived (`#1`, `#2`, …).
/// Logs and the trace view name connections by it.
pub type ConnId = u64;

/// What happened to a pushed line.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The buffer was empty before: the caller must [`flush`](Outbox::flush) this outbox
    /// before it next blocks.
    NowPending,
    /// Lines were already pending; whoever queued the first of them will flush.
    AlreadyPending,
    /// The line went out at once because the buffer was full enough.
    Written,
    /// The connection is gone (closed, or cut off as a slow consumer); the line was dropped.
    Closed,
}

/// The write half of one connection. See the module docs.
#[derive(Debug)]
pub struct Outbox {
    conn: ConnId,
    peer: SocketAddr,
    stats: Arc<Stats>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    socket: TcpStream,
    pending: Vec<u8>,
    closed: bool,
    /// The id the client last used, for logs. Kept here because it is read when writing.
    client_id: String,
}

impl Outbox {
    /// Wraps the write half of a connection. `write_timeout` is how long a write may make no
    /// progress before the client is cut off as a slow consumer.
    pub fn new(
        conn: ConnId,
        socket: TcpStream,
        write_timeout: Duration,
        stats: Arc<Stats>,
    ) -> io::Result<Outbox> {
        let peer = socket.peer_addr()?;
        // A kernel send timeout (SO_SNDTIMEO) applies to each `write` call, and `write_all`
        // calls `write` again after every partial success, so this really means "no
        // progress for this long", not "the whole batch within this long".
        socket.set_write_timeout(Some(write_timeout))?;
        // The outbox already gathers lines into as few writes as it can. Nagle's algorithm
        // would hold a second small write back until the client acknowledges the first, and
        // clients delay acknowledgements by up to 40 ms: every quiet moment would cost a
        // subscriber that long. So the kernel is told to send each write at once.
        socket.set_nodelay(true)?;
        Ok(Outbox {
            conn,
            peer,
            stats,
            state: Mutex::new(State {
                socket,
                pending: Vec::new(),
                closed: false,
                client_id: String::from("-"),
            }),
        })
    }

    /// The connection's number.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Remembers the id the client gave in its latest command, so logs can name it.
    pub fn set_client_id(&self, id: &str) {
        let mut state = self.state.lock();
        if state.client_id != id {
            state.client_id = id.to_string();
        }
    }

    /// The id the client last gave, or `-` before its first command with an id.
    pub fn client_id(&self) -> String {
        self.state.lock().client_id.clone()
    }

    /// Queues one or more complete lines. See [`Pushed`] for what the caller must do next.
    pub fn push(&self, lines: &[u8]) -> Pushed {
        // parking_lot's lock() returns the guard directly: its mutexes are not poisoned
        // when a thread panics while holding one, so there is no Result to unwrap.
        let mut state = self.state.lock();
        if state.closed {
            return Pushed::Closed;
        }
        if crate::trace::enabled() {
            crate::trace::lines(
                self.conn,
                &state.client_id,
                crate::trace::Direction::Out,
                lines,
            );
        }
        let was_empty = state.pending.is_empty();
        state.pending.extend_from_slice(lines);
        if state.pending.len() >= FLUSH_THRESHOLD {
            self.write_pending(&mut state);
            return if state.closed {
                Pushed::Closed
            } else {
                Pushed::Written
            };
        }
        if was_empty {
            Pushed::NowPending
        } else {
            Pushed::AlreadyPending
        }
    }

    /// Writes out everything pending. Returns `false` if the connection is closed.
    pub fn flush(&self) -> bool {
        let mut state = self.state.lock();
        if !state.pending.is_empty() {
            self.write_pending(&mut state);
        }
        !state.closed
    }

    /// Marks the outbox closed and shuts the socket down, waking the connection's own
    /// thread. Lines still pending are dropped. Calling it twice is harmless.
    pub fn close(&self) {
        let mut state = self.state.lock();
        Self::shut(&mut state);
    }

    /// Whether the outbox was closed (by [`close`](Self::close) or a failed write).
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    fn write_pending(&self, state: &mut State) {
        let result = state.socket.write_all(&state.pending);
        state.pending.clear();
        if let Err(error) = result {
            self.cut_off(state, &error);
        }
    }

    /// A write failed: the subscriber stopped reading (timeout) or went away (reset, broken
    /// pipe). Either way nothing more can be sent to it.
    fn cut_off(&self, state: &mut State, error: &io::Error) {
        // lab:begin 05 slow-consumer cut-off
        let timed_out = matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        if timed_out {
            self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            let timeout = state
                .socket
                .write_timeout()
                .ok()
                .flatten()
                .unwrap_or_default();
            log::warn!(
                "slow consumer {} ({}) disconnected: no progress writing for {}",
                state.client_id,
                self.peer,
                crate::cli::format_duration(timeout)
            );
        } else {
            log::info!(
                "#{} {} ({}) lost while writing to it: {error}",
                self.conn,
                state.client_id,
                self.peer
            );
        }
        Self::shut(state);
        // lab:end 05
    }

    fn shut(state: &mut State) {
        if !state.closed {
            state.closed = true;
            state.pending = Vec::new();
            // Shutting down (rather than just dropping our handle) reaches the other clone
            // of this socket too: the connection's own thread, blocked in `read`, wakes up
            // with end-of-file and runs its cleanup. An error here only means the peer is
            // already gone.
            let _ = state.socket.shutdown(Shutdown::Both);
        }
    }
}
