//! A TCP connection as a subscriber: its socket, and the lines waiting to be written to it.
//!
//! Who writes to a subscriber's socket? Not the subscriber's own thread (it is blocked in
//! `read`, waiting for that client's next command) but the thread of whichever *publisher*
//! sent the message. Several publishers may deliver to the same subscriber at once, so the
//! socket's writing side sits behind a mutex, and each [`Outbox`] keeps the lines offered
//! to it but not yet written:
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
//! whose kernel still lets a few bytes through now and then must not restart the clock.
//! Every later offer to a closed outbox returns at once, so the other subscribers of that
//! topic are held up once, for at most the timeout. Subscribers of other topics are not
//! held up at all: nobody writes while holding the registry lock.
//!
//! Production brokers make the same kind of promise: NATS closes a "slow consumer" after a
//! write deadline, Redis closes a pub/sub client whose output buffer passes a limit. A line
//! is written whole or the connection is closed: a cut line is never followed by another
//! line.
//!
//! # Memory
//!
//! An outbox with nothing pending holds no buffer: the pending bytes are given back as soon
//! as they are written, so ten thousand idle subscribers cost nothing here.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::batch::Batch;
use crate::config::format_duration;
use crate::connections::Close;
use crate::peer::Peer;
use crate::stats::Stats;
use crate::subscriber::{Offer, Subscriber, SubscriberId};
use crate::trace::{self, Direction};

/// One connection's socket and its pending lines. See the module docs.
#[derive(Debug)]
pub struct Outbox {
    id: SubscriberId,
    peer: Peer,
    write_timeout: Duration,
    stats: Arc<Stats>,
    socket: TcpStream,
    state: Mutex<State>,
}

/// What the writers share, behind the mutex.
#[derive(Debug, Default)]
struct State {
    pending: Vec<u8>,
    closed: bool,
}

impl Outbox {
    /// Takes charge of a connection's socket. `write_timeout` is how long one flush may
    /// take before the client is cut off as a slow consumer.
    ///
    /// # Errors
    /// Fails if the socket's options cannot be set (the client has already gone).
    pub fn new(
        peer: Peer,
        socket: TcpStream,
        write_timeout: Duration,
        stats: Arc<Stats>,
    ) -> io::Result<Outbox> {
        socket.set_write_timeout(Some(write_timeout))?;
        // The outbox already gathers lines into as few writes as it can. Nagle's algorithm
        // would hold a second small write back until the client acknowledges the first, and
        // clients delay acknowledgements by up to 40 ms: every quiet moment would cost a
        // subscriber that long. So the kernel is told to send each write at once.
        socket.set_nodelay(true)?;
        Ok(Outbox {
            id: SubscriberId::next(),
            peer,
            write_timeout,
            stats,
            socket,
            state: Mutex::new(State::default()),
        })
    }

    /// Who is at the other end.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The socket, for the connection's own thread to read from. Writing goes through
    /// [`push`](Self::push) and [`flush`](Subscriber::flush) only.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Queues one or more complete lines (a batch's deliveries). See [`Offer`] for what
    /// the caller must do next.
    pub fn push(&self, lines: &[u8]) -> Offer {
        self.push_with(|pending| pending.extend_from_slice(lines))
    }

    /// Queues the lines `write` appends, written straight into the pending bytes: how a
    /// connection queues its own replies without formatting them somewhere else first.
    pub fn push_with(&self, write: impl FnOnce(&mut Vec<u8>)) -> Offer {
        let mut state = self.state.lock();
        if state.closed {
            return Offer::Closed;
        }
        let was_empty = state.pending.is_empty();
        let start = state.pending.len();
        write(&mut state.pending);
        self.trace(&state.pending[start..]);
        if was_empty {
            Offer::FlushNeeded
        } else {
            Offer::Queued
        }
    }

    /// Marks the outbox closed and shuts the socket down, waking the connection's own
    /// thread. Lines still pending are dropped. Calling it twice is harmless.
    pub fn close(&self) {
        let mut state = self.state.lock();
        self.shut(&mut state);
    }

    fn trace(&self, lines: &[u8]) {
        if trace::enabled() {
            trace::lines(&self.peer, Direction::Out, lines);
        }
    }

    fn write_pending(&self, state: &mut State) {
        let result = self.write_within_timeout(&state.pending);
        // Written or not, the bytes are done with; give their memory back.
        state.pending = Vec::new();
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
                self.peer.client_id(),
                self.peer.addr(),
                format_duration(self.write_timeout)
            );
        } else {
            log::info!("{} lost while writing to it: {error}", self.peer);
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

impl Subscriber for Outbox {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn offer(&self, batch: &Batch) -> Offer {
        self.push(batch.lines())
    }

    fn flush(&self) {
        let mut state = self.state.lock();
        if !state.pending.is_empty() {
            self.write_pending(&mut state);
        }
    }

    /// With nothing pending, the batch is written straight from the publisher's buffer,
    /// rather than copied in only to be written out at once.
    fn deliver(&self, batch: &Batch) -> bool {
        let mut state = self.state.lock();
        if state.closed {
            return false;
        }
        if !state.pending.is_empty() {
            self.trace(batch.lines());
            state.pending.extend_from_slice(batch.lines());
            self.write_pending(&mut state);
            return !state.closed;
        }
        self.trace(batch.lines());
        if let Err(error) = self.write_within_timeout(batch.lines()) {
            self.cut_off(&mut state, &error);
            return false;
        }
        true
    }
}

impl Close for Outbox {
    fn close(&self) {
        Outbox::close(self);
    }
}
