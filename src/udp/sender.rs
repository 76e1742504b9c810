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
//! * **A budget for the whole port**: at most [`PORT_DATAGRAMS_PER_SECOND`] datagrams and
//!   [`PORT_BYTES_PER_SECOND`] bytes a second in all. A thousand leases on `#`, each within
//!   its own budget, still asked this thread for 200,000 datagrams a second, and a
//!   datagram over loopback costs the sender its delivery too: the thread took most of
//!   the machine's time from the TCP clients beside it. DNS servers bound their answers
//!   the same way (response rate limiting), per client and in all.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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

/// The most datagrams the port sends in a second, to every address together: sixty
/// students' subscribers at a few hundred deliveries a second each, and about a tenth of
/// one core's time.
pub const PORT_DATAGRAMS_PER_SECOND: u32 = 20_000;

/// The most bytes the port sends in a second, to every address together: 16 MiB.
pub const PORT_BYTES_PER_SECOND: usize = 16 << 20;

/// What one [`Budget`] allows in each window.
#[derive(Debug, Clone, Copy)]
struct Share {
    datagrams: u32,
    bytes: usize,
}

/// One address's share of a second.
const ADDRESS_SHARE: Share = Share {
    datagrams: DATAGRAMS_PER_SECOND,
    bytes: BYTES_PER_SECOND,
};

/// The whole port's share of a second.
const PORT_SHARE: Share = Share {
    datagrams: PORT_DATAGRAMS_PER_SECOND,
    bytes: PORT_BYTES_PER_SECOND,
};

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
        pending: Arc<Pending>,
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

    /// Queues a token for the lines of `pending`: `false` if the queue is full, for the
    /// caller to drop the lines and count them.
    pub(super) fn pending(&self, to: SocketAddr, pending: &Arc<Pending>) -> bool {
        let job = Job::Pending {
            to,
            pending: Arc::clone(pending),
        };
        self.queue.try_send(job).is_ok()
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
        port: Budget::new(Instant::now()),
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

/// The thread's state: the socket, each address's budget and the port's, its alone.
struct Sender {
    socket: Arc<UdpSocket>,
    stats: Arc<Stats>,
    budgets: HashMap<SocketAddr, Budget>,
    port: Budget,
}

/// What one address (or the whole port) has been sent in the current window.
struct Budget {
    started: Instant,
    datagrams: u32,
    bytes: usize,
}

impl Budget {
    fn new(now: Instant) -> Budget {
        Budget {
            started: now,
            datagrams: 0,
            bytes: 0,
        }
    }

    /// Whether `len` more bytes fit in `share`, now (a new window starts empty).
    fn has_room(&mut self, len: usize, now: Instant, share: Share) -> bool {
        if now.duration_since(self.started) >= WINDOW {
            *self = Budget::new(now);
        }
        self.datagrams < share.datagrams && self.bytes + len <= share.bytes
    }

    /// Counts `len` more bytes, which [`has_room`](Self::has_room) allowed.
    fn count(&mut self, len: usize) {
        self.datagrams += 1;
        self.bytes += len;
    }
}

impl Sender {
    fn run(mut self, jobs: &Receiver<Job>) {
        loop {
            match jobs.recv() {
                Ok(Job::Answer { to, datagram }) => self.send(to, &[datagram]),
                Ok(Job::Pending { to, pending }) => {
                    // Taken out under the lanes' locks, sent outside them: publishers go
                    // on offering meanwhile.
                    let lanes = pending.take();
                    let datagrams: Vec<&[u8]> = lanes
                        .iter()
                        .flat_map(|lines| lines.split_inclusive(|&b| b == b'\n'))
                        .collect();
                    self.send(to, &datagrams);
                }
                Ok(Job::Stop) | Err(_) => return,
            }
        }
    }

    /// Sends `datagrams` to `to`, as many as its budget and the port's allow; the rest are
    /// withheld and counted (the budget is looked up once for them all).
    fn send<D: AsRef<[u8]>>(&mut self, to: SocketAddr, datagrams: &[D]) {
        let now = Instant::now();
        let budget = budget_of(&mut self.budgets, to, now);
        let port = &mut self.port;
        let allowed = datagrams
            .iter()
            .map(|datagram| datagram.as_ref().len())
            .take_while(|&len| {
                let room =
                    budget.has_room(len, now, ADDRESS_SHARE) && port.has_room(len, now, PORT_SHARE);
                if room {
                    budget.count(len);
                    port.count(len);
                }
                room
            })
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

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// `to`'s budget, forgetting those whose window is over once too many are kept.
fn budget_of(
    budgets: &mut HashMap<SocketAddr, Budget>,
    to: SocketAddr,
    now: Instant,
) -> &mut Budget {
    if budgets.len() >= BUDGETS_KEPT && !budgets.contains_key(&to) {
        budgets.retain(|_, budget| now.duration_since(budget.started) < WINDOW);
        if budgets.len() >= BUDGETS_KEPT {
            // Thousands of addresses in one second: forged ones, most likely. Each is
            // still sent at most what it sent (see `udp.rs`), so forgetting every budget
            // costs at most one window's worth more to the real ones.
            budgets.clear();
        }
    }
    budgets.entry(to).or_insert_with(|| Budget::new(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes one datagram of `len` bytes from `budget` if it fits `share`.
    fn take(budget: &mut Budget, len: usize, now: Instant, share: Share) -> bool {
        let room = budget.has_room(len, now, share);
        if room {
            budget.count(len);
        }
        room
    }

    #[test]
    fn a_budget_lets_its_share_through_each_second() {
        let start = Instant::now();
        for share in [ADDRESS_SHARE, PORT_SHARE] {
            let mut budget = Budget::new(start);
            for _ in 0..share.datagrams {
                assert!(take(&mut budget, 10, start, share));
            }
            assert!(!take(&mut budget, 10, start, share), "the share is spent");
            assert!(
                take(&mut budget, 10, start + WINDOW, share),
                "a new second, a new share"
            );
            assert!(
                !take(&mut budget, share.bytes, start + WINDOW, share),
                "bytes count too"
            );
        }
    }
}
