//! One client connection's socket, and the lines waiting to be written to it.
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
//! [`Outbox::push`] only appends lines to the buffer. The bytes go out when the pushing
//! thread calls [`Outbox::flush`], which it does just before it would block waiting for its
//! own client's next command, or at once when the buffer passes [`FLUSH_THRESHOLD`] (a
//! batch that big, pushed when nothing else is waiting, is written straight away without
//! being copied into the buffer first). A
//! publisher that sends 500 messages in one burst so costs each subscriber one `write`
//! system call, not 500. Whoever pushes into an empty buffer is responsible for the flush;
//! [`Pushed::NowPending`] tells them so.
//!
//! # One socket, one file descriptor
//!
//! The outbox owns the connection's only `TcpStream`. The connection's own thread reads
//! from it through [`Outbox::socket`] while publishers write to it: `&TcpStream`
//! implements both `Read` and `Write`, because the kernel keeps a socket's two directions
//! apart. The mutex serialises the *writers* so their lines never interleave; the reader
//! needs no lock. One descriptor per client (not one per handle) is what lets the broker
//! hold ten thousand clients under a `ulimit -n` of twenty thousand.
//!
//! # Slow consumers
//!
//! Each flush must be done within `--write-timeout` (2 s by default). A subscriber that
//! stops reading fills its kernel buffers; the write then blocks, and when the time is up
//! the outbox gives up: it marks itself closed, shuts the socket down (which wakes the
//! subscriber's own thread, whose cleanup removes its subscriptions), and logs a warning.
//! The time limit is for the whole flush, not for each system call: a stalled client
//! whose kernel still lets a few bytes through now and then must not restart the clock. Every later push to a closed outbox returns at once,
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
use std::time::{Duration, Instant};

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
    /// The lines went out at once: together with what was pending they passed
    /// [`FLUSH_THRESHOLD`].
    Written,
    /// The connection is gone (closed, or cut off as a slow consumer); the line was dropped.
    Closed,
}

/// One connection's socket and its pending lines. See the module docs.
#[derive(Debug)]
pub struct Outbox {
    conn: ConnId,
    peer: SocketAddr,
    write_timeout: Duration,
    stats: Arc<Stats>,
    socket: TcpStream,
    state: Mutex<State>,
}

/// What the writers share, behind the mutex.
#[derive(Debug)]
struct State {
    pending: Vec<u8>,
    closed: bool,
    /// The id the client last used, for logs. Kept here because it is read when writing.
    client_id: String,
}

impl Outbox {
    /// Takes charge of a connection's socket. `write_timeout` is how long one flush may
    /// take before the client is cut off as a slow consumer.
    ///
    /// # Errors
    /// Fails if the socket's options cannot be set (the client has already gone).
    pub fn new(
        conn: ConnId,
        socket: TcpStream,
        write_timeout: Duration,
        stats: Arc<Stats>,
    ) -> io::Result<Outbox> {
        let peer = socket.peer_addr()?;
        socket.set_write_timeout(Some(write_timeout))?;
        // The outbox already gathers lines into as few writes as it can. Nagle's algorithm
        // would hold a second small write back until the client acknowledges the first, and
        // clients delay acknowledgements by up to 40 ms: every quiet moment would cost a
        // subscriber that long. So the kernel is told to send each write at once.
        socket.set_nodelay(true)?;
        Ok(Outbox {
            conn,
            peer,
            write_timeout,
            stats,
            socket,
            state: Mutex::new(State {
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

    /// The socket, for the connection's own thread to read from. Writing goes through
    /// [`push`](Self::push) and [`flush`](Self::flush) only.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
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
        if was_empty && lines.len() >= FLUSH_THRESHOLD {
            // A full batch with nothing queued before it: write it straight from the
            // caller's buffer, rather than copy it into ours only to write it out at once.
            if let Err(error) = self.write_within_timeout(lines) {
                self.cut_off(&mut state, &error);
                return Pushed::Closed;
            }
            return Pushed::Written;
        }
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
        self.shut(&mut state);
    }

    fn write_pending(&self, state: &mut State) {
        let result = self.write_within_timeout(&state.pending);
        state.pending.clear();
        if let Err(error) = result {
            self.cut_off(state, &error);
        }
    }

    /// Writes all of `bytes`, or fails once the write timeout has passed in all.
    ///
    /// The kernel's send timeout (SO_SNDTIMEO) bounds each `write` call. `write_all` would
    /// start that clock afresh after every partial write, so a client that lets a few bytes
    /// through every second could hold a publisher for ever. After a partial write, the
    /// socket's timeout is therefore cut to the time left. A burst that fits in the kernel
    /// buffer, which is nearly all of them, goes out in one call and never gets there.
    fn write_within_timeout(&self, mut bytes: &[u8]) -> io::Result<()> {
        let deadline = Instant::now() + self.write_timeout;
        let mut shortened = false;
        let result = loop {
            if bytes.is_empty() {
                break Ok(());
            }
            match (&self.socket).write(bytes) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => bytes = &bytes[written..],
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => break Err(error),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && !bytes.is_empty() {
                break Err(io::ErrorKind::TimedOut.into());
            }
            if !bytes.is_empty() {
                self.socket.set_write_timeout(Some(left))?;
                shortened = true;
            }
        };
        if shortened {
            self.socket.set_write_timeout(Some(self.write_timeout))?;
        }
        result
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
            log::warn!(
                "slow consumer {} ({}) disconnected: could not deliver within {}",
                state.client_id,
                self.peer,
                crate::cli::format_duration(self.write_timeout)
            );
        } else {
            log::info!(
                "#{} {} ({}) lost while writing to it: {error}",
                self.conn,
                state.client_id,
                self.peer
            );
        }
        self.shut(state);
        // lab:end 05
    }

    fn shut(&self, state: &mut State) {
        if !state.closed {
            state.closed = true;
            state.pending = Vec::new();
            // Shutting down (rather than waiting for the last handle to be dropped) acts at
            // once: the connection's own thread, blocked in `read`, wakes up with end of
            // file and runs its cleanup. An error here only means the peer is already gone.
            let _ = self.socket.shutdown(Shutdown::Both);
        }
    }
}
