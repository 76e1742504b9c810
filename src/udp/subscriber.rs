//! A UDP subscriber: an address, to which each `DELIVER` line is one datagram, sent by
//! the UDP port's sender thread (`udp/sender.rs`), never by the publisher.
//!
//! A publisher offering a batch only copies its lines into the subscriber's pending
//! buffer, and, if no token is on its way, pushes one onto the sender's queue: "this
//! address has lines waiting". The sender takes them all when it comes to the token. So
//! a publisher pays a copy per lease, and a queue push only when the sender has caught up
//! with that lease; a sender that is behind means fewer pushes, not more. This is how NATS
//! treats its clients: append to the client's outbound buffer, and signal its writer only
//! when the buffer was empty.
//!
//! The buffer is split into [`LANES`] lanes, each with its own lock, and a publishing
//! thread always copies into the same one. With one lock per lease, two publishers to a
//! topic that a thousand leases match walked the leases in the same order, the second
//! waiting at each lock for the first: whenever the first was preempted holding one (two
//! cores, a busy sender thread), the second waited the rest of the first's time slice, and
//! an unrelated TCP pair's message took up to 224 ms to pass through 1,024 leases. With
//! lanes, they take different locks. A publisher's lines stay in order, because its lane
//! is always the same; lines of two publishers had no order between them anyway.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::link::Shared;
use super::MAX_DATAGRAM;
use crate::batch::Batch;
use crate::router::Router;
use crate::stats::Stats;
use crate::subscriber::{Offer, Subscriber, SubscriberId};

/// The most bytes of lines that wait for the sender for one address, all its lanes
/// together (or `--max-pending-bytes`, if that is less). The sender sends an address at
/// most 1 MiB a second (`udp/sender.rs`), so more would only wait to be withheld; and with
/// 1,024 leases this bounds what UDP deliveries can hold in the broker to 256 MiB, where
/// `--max-pending-bytes` alone would allow 8 GiB.
pub const MAX_PENDING_BYTES: usize = 256 * 1024;

/// How many filters a lease remembers having been replayed the retained messages of (see
/// [`UdpSubscriber::replay_retained`]). A lease that has subscribed to more distinct
/// filters than this in its life is replayed nothing for the next ones: a few dozen bytes
/// each, so at most about 64 KiB per lease.
pub const MAX_REPLAYED_FILTERS: usize = 1024;

/// How many lanes a lease's waiting lines are kept in (see the module docs): a few, since
/// it takes two publishers in the same lane to wait for each other, and each lane is a
/// lock and an empty buffer per lease.
pub const LANES: usize = 4;

/// A subscriber that is an address: each `DELIVER` line is one datagram to it. See the
/// module docs for its lease and what bounds it.
#[derive(Debug)]
pub struct UdpSubscriber {
    id: SubscriberId,
    addr: SocketAddr,
    /// The UDP port's shared state: its sender's queue, through which deliveries leave
    /// from the port the subscriber sent to (which is what lets them back through a NAT or
    /// a firewall that let the subscriber's datagrams out).
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    /// The most bytes of lines waiting for the sender: [`MAX_PENDING_BYTES`], or
    /// `--max-pending-bytes` if less.
    max_pending: usize,
    /// Lines waiting for the sender, shared with it through the token in its queue.
    pending: Arc<Pending>,
    /// A line too big for a datagram was reported once for this subscriber.
    warned_too_big: AtomicBool,
    /// The filters whose retained messages this lease was given already.
    replayed: Mutex<HashSet<Box<str>>>,
}

/// What waits for the sender: `DELIVER` lines, one datagram each, in lanes.
#[derive(Debug, Default)]
pub(super) struct Pending {
    lanes: [Mutex<Vec<u8>>; LANES],
    /// The bytes in all the lanes, changed under the lock of the lane that changes: what
    /// the bound on them is checked against.
    bytes: AtomicUsize,
    /// A token for these lines is in the sender's queue: lines added now go with it.
    queued: AtomicBool,
    closed: AtomicBool,
}

impl Pending {
    /// The lane of the calling thread: the same one each time.
    fn lane(&self) -> &Mutex<Vec<u8>> {
        &self.lanes[lane_of_this_thread()]
    }

    /// Whether a token must be queued for lines just added: `true` for the first adder
    /// since the sender last took the lines, who must then queue it.
    fn needs_token(&self) -> bool {
        !self.queued.swap(true, Ordering::AcqRel)
    }

    /// Takes every lane's lines, for the sender. It first says that no token is queued,
    /// so that a line added from then on brings a new one: a line is either taken here
    /// or has a token coming.
    pub(super) fn take(&self) -> [Vec<u8>; LANES] {
        self.queued.store(false, Ordering::Release);
        let lanes = std::array::from_fn(|lane| self.empty(&self.lanes[lane]));
        if self.closed.load(Ordering::Acquire) {
            // The lease ended while these were on their way in: they are not sent.
            return Default::default();
        }
        lanes
    }

    /// Takes the lines of one lane, and counts them out.
    fn empty(&self, lane: &Mutex<Vec<u8>>) -> Vec<u8> {
        let mut lane = lane.lock();
        self.bytes.fetch_sub(lane.len(), Ordering::Relaxed);
        std::mem::take(&mut *lane)
    }

    /// Empties every lane; returns how many lines were in them.
    fn clear(&self) -> usize {
        let count = |lines: Vec<u8>| lines.iter().filter(|&&b| b == b'\n').count();
        self.lanes.iter().map(|lane| count(self.empty(lane))).sum()
    }
}

/// The lane the calling thread copies into: threads are numbered as they first publish to
/// a lease, so that two publishers that start one after the other take different lanes.
fn lane_of_this_thread() -> usize {
    static THREADS: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static LANE: usize = THREADS.fetch_add(1, Ordering::Relaxed) % LANES;
    }
    LANE.with(|lane| *lane)
}

impl UdpSubscriber {
    pub(super) fn new(addr: SocketAddr, shared: &Arc<Shared>, router: &Router) -> UdpSubscriber {
        UdpSubscriber {
            id: SubscriberId::next(),
            addr,
            shared: Arc::clone(shared),
            stats: Arc::clone(&shared.stats),
            max_pending: router.config().max_pending_bytes.min(MAX_PENDING_BYTES),
            pending: Arc::new(Pending::default()),
            warned_too_big: AtomicBool::new(false),
            replayed: Mutex::new(HashSet::new()),
        }
    }

    /// The address it receives at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ends it: it takes no more deliveries.
    pub(super) fn close(&self) {
        self.pending.closed.store(true, Ordering::Release);
        self.pending.clear();
    }

    /// Whether `line` fits in a datagram; a line that does not is dropped and counted,
    /// and said once per subscriber.
    fn fits(&self, line: &[u8]) -> bool {
        if line.len() <= MAX_DATAGRAM {
            return true;
        }
        if !self.warned_too_big.swap(true, Ordering::Relaxed) {
            log::warn!(
                "a DELIVER line of {} bytes is too big for a datagram (the most is \
                 {MAX_DATAGRAM}): dropped for UDP subscriber {}, and others will be",
                line.len(),
                self.addr
            );
        }
        self.stats
            .udp_datagrams_dropped
            .fetch_add(1, Ordering::Relaxed);
        false
    }
}

impl Subscriber for UdpSubscriber {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn offer(&self, batch: &Batch) -> Offer {
        if self.pending.closed.load(Ordering::Acquire) {
            return Offer::Closed;
        }
        let lines = batch.lines();
        let mut lane = self.pending.lane().lock();
        if self.pending.bytes.load(Ordering::Relaxed) + lines.len() > self.max_pending {
            // UDP promises nothing, and a subscriber this far behind is not waited for:
            // the batch is dropped, and counted.
            self.stats
                .udp_datagrams_dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            return Offer::Queued;
        }
        let before = lane.len();
        if lines.len() > MAX_DATAGRAM {
            // Rare: only then is it worth looking for a line too big.
            for line in lines.split_inclusive(|&b| b == b'\n') {
                if self.fits(line) {
                    lane.extend_from_slice(line);
                }
            }
        } else {
            lane.extend_from_slice(lines);
        }
        let added = lane.len() - before;
        self.pending.bytes.fetch_add(added, Ordering::Relaxed);
        drop(lane);
        if added > 0
            && self.pending.needs_token()
            && !self.shared.outbox.pending(self.addr, &self.pending)
        {
            // The queue is full: these lines would wait for a token that never comes, so
            // they are dropped, and counted.
            let dropped = self.pending.clear();
            self.pending.queued.store(false, Ordering::Release);
            self.stats
                .udp_queue_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        Offer::Queued
    }

    /// Nothing to do: the sender takes the pending lines when it comes to their token.
    fn flush(&self) {}

    /// Once per filter for the lease's whole life. A TCP client that unsubscribes and
    /// subscribes again pays for its store itself, reading it; a lease pays nothing, and
    /// each replay costs the port's one sender thread (and its budget for the address):
    /// `UNSUBSCRIBE #` and `SUBSCRIBE #` repeated in one datagram used to buy the whole
    /// store per pair (1,200 bytes bought 43 MB). A lease that ends (its last
    /// `UNSUBSCRIBE`, or its time) forgets, as a new lease must prove its address again.
    fn replay_retained(&self, filter: &str) -> bool {
        let mut replayed = self.replayed.lock();
        if replayed.contains(filter) || replayed.len() >= MAX_REPLAYED_FILTERS {
            return false;
        }
        replayed.insert(filter.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// Publishers that start one after the other copy into different lanes, and each
    /// keeps its lane: a publisher holding its lane's lock (as one preempted in the middle
    /// of a copy does) leaves the next one free to go on. (Threads are numbered across the
    /// whole test binary: no other unit test of the library publishes to a lease, so the
    /// numbers taken here are consecutive. One that did would make this test flaky.)
    #[test]
    fn publishers_in_turn_take_different_lanes() {
        let pending = Pending::default();
        let held = pending.lane().lock();
        let lane_of_each: Vec<usize> = (1..LANES)
            .map(|_| {
                thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            assert!(
                                pending.lane().try_lock().is_some(),
                                "a publisher waits for another's lane"
                            );
                            assert_eq!(lane_of_this_thread(), lane_of_this_thread());
                            lane_of_this_thread()
                        })
                        .join()
                        .unwrap()
                })
            })
            .chain([lane_of_this_thread()])
            .collect();
        drop(held);
        let distinct: HashSet<usize> = lane_of_each.iter().copied().collect();
        assert_eq!(distinct.len(), LANES, "{lane_of_each:?}");
    }

    /// What the sender takes is every lane's lines, counted out, and taking them makes
    /// the next line ask for a token again. (Lanes by index: `lane()` numbers threads,
    /// which is the other test's to watch.)
    #[test]
    fn the_sender_takes_every_lane_and_the_next_line_brings_a_token() {
        let pending = Pending::default();
        let add = |lane: usize, lines: &[u8]| {
            pending.lanes[lane].lock().extend_from_slice(lines);
            pending.bytes.fetch_add(lines.len(), Ordering::Relaxed);
        };
        let lines: [&[u8]; 2] = [b"DELIVER t a p x\n", b"DELIVER t b q x\n"];
        add(0, lines[0]);
        add(LANES - 1, lines[1]);
        assert!(pending.needs_token(), "the first line asks for one");
        assert!(!pending.needs_token(), "a token is on its way");
        assert_eq!(pending.take().concat(), lines.concat());
        assert_eq!(pending.bytes.load(Ordering::Relaxed), 0, "counted out");
        assert!(
            pending.needs_token(),
            "taken: the next line needs a new token"
        );
        assert_eq!(pending.clear(), 0);
        add(1, &lines.concat());
        assert_eq!(pending.clear(), 2);
        assert_eq!(pending.bytes.load(Ordering::Relaxed), 0, "counted out");
        // A line that came in as the lease ended is not sent.
        add(2, lines[0]);
        pending.closed.store(true, Ordering::Release);
        assert!(pending.take().concat().is_empty(), "sent after its lease");
    }
}
