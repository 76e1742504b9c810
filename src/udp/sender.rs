//! The UDP port's sender: one thread, `udp-send-<port>`, that sends every datagram the
//! broker sends over UDP (answers and deliveries), from a bounded queue, within a budget
//! per address.
//!
//! Why a thread of its own: a TCP publisher hands a message to every subscriber. For a TCP
//! subscriber that is a copy into its outbox (`outbox.rs`); if a UDP subscriber's delivery
//! were a `send_to` on the publisher's thread, a thousand leases on `#` would make every
//! publish a thousand system calls, and the publisher (and every subscriber waiting for
//! it) would pay for them. So a publisher only pushes onto this queue, and this thread
//! pays. It is NATS's rule in spirit: publishers never write to a subscriber's socket.
//!
//! What bounds it:
//!
//! * **The queue** holds at most [`QUEUE_CAPACITY`] jobs: an answer, or a token saying
//!   that a subscriber has lines waiting (`udp/subscriber.rs`; a subscriber has at most
//!   one token queued, however many lines wait behind it). When it is full, what does not
//!   fit is dropped and counted (`udp_queue_dropped`), never waited for: UDP promises
//!   nothing, and a publisher must not wait for datagrams.
//! * **A budget per address**: at most [`DATAGRAMS_PER_SECOND`] datagrams and
//!   [`BYTES_PER_SECOND`] bytes a second to one address, answers and deliveries alike;
//!   the rest are dropped and counted (`udp_withheld`). Whatever an address (or someone
//!   forging it) asks for, this is the most it is sent. Mosquitto and NATS have no such
//!   budget because TCP slows a sender down for them; over UDP, nothing does.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::subscriber::Pending;
use crate::stats::Stats;

/// The most jobs waiting for the sender: a token for each of 1,024 leases, and room for
/// answers. Past it, datagrams are dropped, as a kernel drops them when a socket's buffer
/// is full.
pub const QUEUE_CAPACITY: usize = 4096;

/// The most datagrams sent to one address in a second. A classroom subscriber receives a
/// few a second; a thousand is a busy topic. Past it, the address is sent nothing more
/// until the second is over.
pub const DATAGRAMS_PER_SECOND: u32 = 1000;

/// The most bytes sent to one address in a second: 1 MiB.
pub const BYTES_PER_SECOND: usize = 1 << 20;

/// The budget's window.
const WINDOW: Duration = Duration::from_secs(1);

/// How many addresses' budgets are kept before the ones whose window is over are
/// forgotten (a forgotten address starts a fresh window, which is what it would have).
const BUDGETS_KEPT: usize = 4096;

/// What the rest of the UDP port hands the sender.
enum Job {
    /// One datagram (an answer) to `to`.
    Answer { to: SocketAddr, datagram: Vec<u8> },
    /// A subscriber at `to` has lines waiting: one datagram per line.
    Pending {
        to: SocketAddr,
        pending: Arc<Mutex<Pending>>,
    },
    /// The broker is stopping: send what came before, then end.
    Stop,
}

/// The way into the sender's queue. Cheap to share: publishers' threads push through it.
#[derive(Debug)]
pub(super) struct Outbox {
    queue: SyncSender<Job>,
    stats: Arc<Stats>,
}

impl Outbox {
    /// Queues one datagram for `to`; dropped and counted if the queue is full.
    pub(super) fn datagram(&self, to: SocketAddr, datagram: Vec<u8>) {
        if self.queue.try_send(Job::Answer { to, datagram }).is_err() {
            self.stats.udp_queue_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a token for the lines of `pending` (whose lock the caller holds, so they
    /// are given as `lines`): `false` if the queue is full, and the lines are counted as
    /// dropped (the caller drops them).
    pub(super) fn pending(
        &self,
        to: SocketAddr,
        pending: &Arc<Mutex<Pending>>,
        lines: &[u8],
    ) -> bool {
        let job = Job::Pending {
            to,
            pending: Arc::clone(pending),
        };
        match self.queue.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let count = lines.iter().filter(|&&b| b == b'\n').count();
                self.stats
                    .udp_queue_dropped
                    .fetch_add(count as u64, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The sender thread: its handle and the way to stop it.
pub(super) struct SenderThread {
    handle: JoinHandle<()>,
    queue: SyncSender<Job>,
}

impl SenderThread {
    /// Sends what is queued, then ends the thread and waits for it.
    pub(super) fn stop(self) {
        // A blocking send: the queue may be full, and Stop must not be dropped.
        let _ = self.queue.send(Job::Stop);
        if self.handle.join().is_err() {
            log::error!("the UDP sender thread panicked");
        }
    }
}

/// Starts the sender for `socket`: the outbox to push to, and the thread.
///
/// # Errors
/// Fails if the thread cannot be started.
pub(super) fn spawn(
    socket: Arc<UdpSocket>,
    stats: Arc<Stats>,
) -> io::Result<(Outbox, SenderThread)> {
    let (queue, jobs) = mpsc::sync_channel(QUEUE_CAPACITY);
    let port = socket.local_addr()?.port();
    let sender = Sender {
        socket,
        stats: Arc::clone(&stats),
        budgets: HashMap::new(),
    };
    let handle = thread::Builder::new()
        .name(format!("udp-send-{port}"))
        .spawn(move || sender.run(&jobs))?;
    let outbox = Outbox {
        queue: queue.clone(),
        stats,
    };
    Ok((outbox, SenderThread { handle, queue }))
}

/// The thread's state: the socket and each address's budget, its alone.
struct Sender {
    socket: Arc<UdpSocket>,
    stats: Arc<Stats>,
    budgets: HashMap<SocketAddr, Budget>,
}

/// What one address has been sent in the current window.
struct Budget {
    started: Instant,
    datagrams: u32,
    bytes: usize,
}

impl Budget {
    /// Whether `len` more bytes may go, now; counts them if so.
    fn take(&mut self, len: usize, now: Instant) -> bool {
        if now.duration_since(self.started) >= WINDOW {
            *self = Budget {
                started: now,
                datagrams: 0,
                bytes: 0,
            };
        }
        if self.datagrams >= DATAGRAMS_PER_SECOND || self.bytes + len > BYTES_PER_SECOND {
            return false;
        }
        self.datagrams += 1;
        self.bytes += len;
        true
    }
}

impl Sender {
    fn run(mut self, jobs: &Receiver<Job>) {
        loop {
            match jobs.recv() {
                Ok(Job::Answer { to, datagram }) => self.send(to, &[datagram]),
                Ok(Job::Pending { to, pending }) => {
                    // Taken out under the lock, sent outside it: publishers go on
                    // offering meanwhile.
                    let lines = std::mem::take(&mut pending.lock().lines);
                    let datagrams: Vec<&[u8]> = lines.split_inclusive(|&b| b == b'\n').collect();
                    self.send(to, &datagrams);
                }
                Ok(Job::Stop) | Err(_) => return,
            }
        }
    }

    /// Sends `datagrams` to `to`, as many as its budget allows; the rest are withheld and
    /// counted (the budget is looked up once for them all).
    fn send<D: AsRef<[u8]>>(&mut self, to: SocketAddr, datagrams: &[D]) {
        let now = Instant::now();
        let budget = self.budget(to, now);
        let allowed = datagrams
            .iter()
            .take_while(|datagram| budget.take(datagram.as_ref().len(), now))
            .count();
        let withheld = datagrams.len() - allowed;
        if withheld > 0 {
            self.stats
                .udp_withheld
                .fetch_add(withheld as u64, Ordering::Relaxed);
        }
        for datagram in &datagrams[..allowed] {
            match self.socket.send_to(datagram.as_ref(), to) {
                Ok(_) => self.count(&self.stats.udp_datagrams_out),
                Err(_) => self.count(&self.stats.udp_datagrams_dropped),
            }
        }
    }

    /// `to`'s budget, forgetting those whose window is over once too many are kept.
    fn budget(&mut self, to: SocketAddr, now: Instant) -> &mut Budget {
        if self.budgets.len() >= BUDGETS_KEPT && !self.budgets.contains_key(&to) {
            self.budgets
                .retain(|_, budget| now.duration_since(budget.started) < WINDOW);
            if self.budgets.len() >= BUDGETS_KEPT {
                // Thousands of addresses in one second: forged ones, most likely. Each is
                // still sent at most what it sent (see `udp.rs`), so forgetting every
                // budget costs at most one window's worth more to the real ones.
                self.budgets.clear();
            }
        }
        self.budgets.entry(to).or_insert(Budget {
            started: now,
            datagrams: 0,
            bytes: 0,
        })
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_lets_its_share_through_each_second() {
        let start = Instant::now();
        let mut budget = Budget {
            started: start,
            datagrams: 0,
            bytes: 0,
        };
        for _ in 0..DATAGRAMS_PER_SECOND {
            assert!(budget.take(10, start));
        }
        assert!(!budget.take(10, start), "the second's share is spent");
        assert!(budget.take(10, start + WINDOW), "a new second, a new share");
        assert!(
            !budget.take(BYTES_PER_SECOND, start + WINDOW),
            "bytes count too"
        );
    }
}
