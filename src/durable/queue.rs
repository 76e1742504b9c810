//! One durable subscription's messages: those waiting to be sent, and those sent but not
//! yet acknowledged (*in flight*). Pure bookkeeping: no I/O, no clock of its own, no lock,
//! so every rule is unit-tested here.
//!
//! ```text
//!   queued ─▶ waiting (seq order) ──send: while fewer than --max-inflight in flight──▶ in flight
//!                ▲                                                                     │
//!                └──── requeue: the holder went away, or --ack-timeout passed ─────────┤
//!                                                                        ACK <seq> ────┴─▶ gone
//! ```
//!
//! The queue also counts the bytes of the lines it holds, for `--max-queued-bytes`: what
//! to drop past it is the subscription's rule (`subscription.rs`), not the queue's.
//!
//! A message keeps its seq for ever, so a redelivery is byte for byte the line sent before
//! (the `MESSAGE` line is kept formatted), and a client that has seen a seq can drop the
//! duplicate. Requeued messages go back in seq order *before* newer ones, so a subscriber
//! sees the messages of one publisher in the order they were published, at least once,
//! even across redeliveries.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// One message held for a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Its seq (see the protocol reference): unique in the broker, never changed.
    pub seq: u64,
    /// The log segment its record is in (0 when nothing is stored on disk): the segment
    /// can only be deleted once every message in it is gone.
    pub segment: u64,
    /// The `MESSAGE` line, `\n` included, as it is sent every time.
    pub line: Box<[u8]>,
}

/// The messages of one durable subscription. See the module docs.
#[derive(Debug, Default)]
pub struct Queue {
    /// Not sent yet, or to be sent again, oldest (lowest seq) first.
    waiting: VecDeque<Queued>,
    /// Sent and not acknowledged, by seq, with when each was sent.
    in_flight: BTreeMap<u64, (Queued, Instant)>,
    /// The bytes of every line held, waiting and in flight: what `--max-queued-bytes`
    /// bounds. (Each message costs a few dozen bytes more of bookkeeping, not counted.)
    bytes: usize,
}

impl Queue {
    /// Every message held: waiting and in flight.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.len()
    }

    /// The bytes of every message held, waiting and in flight.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages sent and not acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Adds a newly published message, after every other (its seq is the highest yet).
    pub fn push(&mut self, message: Queued) {
        self.bytes += message.line.len();
        self.waiting.push_back(message);
    }

    /// Removes the oldest message held, waiting or in flight: for a subscription that holds
    /// more than `--max-queued` messages or `--max-queued-bytes`.
    pub fn drop_oldest(&mut self) -> Option<Queued> {
        let oldest_in_flight = self.in_flight.keys().next().copied();
        let dropped = match (oldest_in_flight, self.waiting.front()) {
            (Some(seq), Some(waiting)) if waiting.seq < seq => self.waiting.pop_front(),
            (Some(seq), _) => self.in_flight.remove(&seq).map(|(message, _)| message),
            (None, _) => self.waiting.pop_front(),
        };
        self.forget(dropped)
    }

    /// Moves waiting messages into flight, oldest first, while fewer than `max_in_flight`
    /// are in flight, appending each one's line to `out`. Returns how many it moved.
    pub fn send(&mut self, max_in_flight: usize, now: Instant, out: &mut Vec<u8>) -> usize {
        let mut sent = 0;
        while self.in_flight.len() < max_in_flight {
            let Some(message) = self.waiting.pop_front() else {
                break;
            };
            out.extend_from_slice(&message.line);
            self.in_flight.insert(message.seq, (message, now));
            sent += 1;
        }
        sent
    }

    /// Acknowledges the message in flight with `seq`, which is then gone. `None` if no
    /// message with that seq is in flight (acknowledged already, never sent, or unknown).
    pub fn ack(&mut self, seq: u64) -> Option<Queued> {
        let acknowledged = self.in_flight.remove(&seq).map(|(message, _)| message);
        self.forget(acknowledged)
    }

    /// Takes a message that left the queue off its byte count.
    fn forget(&mut self, gone: Option<Queued>) -> Option<Queued> {
        if let Some(message) = &gone {
            self.bytes -= message.line.len();
        }
        gone
    }

    /// Puts every message in flight back with the waiting ones, to be sent again: the
    /// subscription's holder went away or was replaced. Returns how many.
    pub fn requeue_all(&mut self) -> usize {
        let all = std::mem::take(&mut self.in_flight);
        self.requeue(all.into_values().map(|(message, _)| message).collect())
    }

    /// Puts the messages sent at or before `now - timeout` back with the waiting ones:
    /// their acknowledgement is overdue. Returns how many.
    pub fn requeue_overdue(&mut self, now: Instant, timeout: Duration) -> usize {
        let overdue: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, (_, sent))| now.saturating_duration_since(*sent) >= timeout)
            .map(|(&seq, _)| seq)
            .collect();
        let messages = overdue
            .iter()
            .filter_map(|seq| self.in_flight.remove(seq))
            .map(|(message, _)| message)
            .collect();
        self.requeue(messages)
    }

    /// Merges `messages` (in seq order) into the waiting ones, keeping seq order.
    fn requeue(&mut self, messages: Vec<Queued>) -> usize {
        let count = messages.len();
        if count == 0 {
            return 0;
        }
        let waiting = std::mem::take(&mut self.waiting);
        let mut requeued = messages.into_iter().peekable();
        let mut waiting = waiting.into_iter().peekable();
        while let (Some(a), Some(b)) = (requeued.peek(), waiting.peek()) {
            let next = if a.seq < b.seq {
                requeued.next()
            } else {
                waiting.next()
            };
            self.waiting.extend(next);
        }
        self.waiting.extend(requeued);
        self.waiting.extend(waiting);
        count
    }

    /// Empties the queue, returning every message it held: the subscription was
    /// cancelled.
    pub fn drain(&mut self) -> Vec<Queued> {
        let mut all: Vec<Queued> = std::mem::take(&mut self.in_flight)
            .into_values()
            .map(|(message, _)| message)
            .collect();
        all.extend(self.waiting.drain(..));
        self.bytes = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> Queued {
        Queued {
            seq,
            segment: 0,
            line: format!("MESSAGE {seq} t m p 2025-03-14 10:30:00\n")
                .into_bytes()
                .into(),
        }
    }

    fn seqs(out: &[u8]) -> Vec<u64> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|line| line.split(' ').nth(1).unwrap().parse().unwrap())
            .collect()
    }

    fn queue_of(range: std::ops::RangeInclusive<u64>) -> Queue {
        let mut queue = Queue::default();
        for seq in range {
            queue.push(message(seq));
        }
        queue
    }

    #[test]
    fn at_most_max_in_flight_are_sent_and_each_ack_makes_room_for_one_more() {
        let now = Instant::now();
        let mut queue = queue_of(1..=5);
        let mut out = Vec::new();
        assert_eq!(queue.send(2, now, &mut out), 2);
        assert_eq!(seqs(&out), [1, 2]);
        out.clear();
        assert_eq!(queue.send(2, now, &mut out), 0, "two in flight already");
        assert!(queue.ack(1).is_some());
        assert!(queue.ack(1).is_none(), "an acknowledged message is gone");
        assert!(
            queue.ack(4).is_none(),
            "a message not sent yet cannot be acknowledged"
        );
        queue.send(2, now, &mut out);
        assert_eq!(seqs(&out), [3]);
        assert_eq!((queue.len(), queue.in_flight()), (4, 2));
    }

    #[test]
    fn requeued_messages_come_again_with_their_seq_before_newer_ones_and_acked_ones_never() {
        let now = Instant::now();
        let mut queue = queue_of(1..=4);
        let mut out = Vec::new();
        queue.send(3, now, &mut out);
        queue.ack(2);
        queue.push(message(5));
        assert_eq!(queue.requeue_all(), 2);
        out.clear();
        queue.send(10, now, &mut out);
        assert_eq!(seqs(&out), [1, 3, 4, 5]);
    }

    #[test]
    fn only_overdue_messages_are_requeued() {
        let start = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut queue = queue_of(1..=3);
        let mut out = Vec::new();
        queue.send(1, start, &mut out);
        queue.send(2, start + Duration::from_secs(10), &mut out);
        assert_eq!(
            queue.requeue_overdue(start + Duration::from_secs(29), timeout),
            0
        );
        assert_eq!(
            queue.requeue_overdue(start + Duration::from_secs(30), timeout),
            1
        );
        out.clear();
        queue.send(3, start + Duration::from_secs(30), &mut out);
        assert_eq!(seqs(&out), [1, 3]);
    }

    #[test]
    fn the_bytes_held_follow_every_message_in_and_out() {
        let now = Instant::now();
        let mut queue = queue_of(1..=3);
        let line = message(1).line.len();
        assert_eq!(queue.bytes(), 3 * line);
        let mut out = Vec::new();
        queue.send(2, now, &mut out);
        assert_eq!(queue.bytes(), 3 * line, "in flight is still held");
        queue.ack(1);
        queue.drop_oldest();
        assert_eq!(queue.bytes(), line);
        queue.requeue_all();
        assert_eq!(queue.bytes(), line, "a requeue moves, it does not add");
        queue.drain();
        assert_eq!(queue.bytes(), 0);
    }

    #[test]
    fn the_oldest_message_is_dropped_first_wherever_it_is() {
        let now = Instant::now();
        let mut queue = queue_of(1..=3);
        let mut out = Vec::new();
        queue.send(1, now, &mut out);
        assert_eq!(queue.drop_oldest().map(|m| m.seq), Some(1));
        assert_eq!(queue.drop_oldest().map(|m| m.seq), Some(2));
        assert_eq!(queue.drain().len(), 1);
        assert!(queue.is_empty());
    }
}
