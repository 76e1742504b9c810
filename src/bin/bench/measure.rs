//! What every benchmark message carries, and what a subscriber learns from it.
//!
//! Each message's text starts with three numbers, then padding up to `--size` bytes:
//!
//! ```text
//!   PUBLISH bench-0 3:1207:84519302:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx pub3
//!                   │ │    │
//!                   │ │    └ send time: nanoseconds since the run's base instant
//!                   │ └ sequence number, counted per publisher from 0
//!                   └ the publisher's index on its topic
//! ```
//!
//! Publishers and subscribers live in the same bench process, so "nanoseconds since one
//! shared `Instant`" is a clock they all agree on, with no clock synchronisation needed.
//! A subscriber keeps a [`Tally`]: how many messages arrived, how many broke a
//! publisher's order (a gap, a duplicate or a reordering), and a [`Histogram`] of
//! latencies.

use pubsub_lab::text::push_decimal;
use std::time::{Duration, Instant};

/// Nanoseconds from `base` to now: the clock written into every message.
pub fn nanos_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Appends one `PUBLISH <topic> <payload> pub<publisher>` line whose payload is padded
/// to `size` bytes (or longer, if the three numbers alone need more).
pub fn write_publish(
    out: &mut Vec<u8>,
    topic: &str,
    publisher: usize,
    seq: u64,
    sent_ns: u64,
    size: usize,
) {
    out.extend_from_slice(b"PUBLISH ");
    out.extend_from_slice(topic.as_bytes());
    out.push(b' ');
    let payload_start = out.len();
    push_decimal(out, publisher as u64);
    out.push(b':');
    push_decimal(out, seq);
    out.push(b':');
    push_decimal(out, sent_ns);
    out.push(b':');
    let written = out.len() - payload_start;
    out.resize(out.len() + size.saturating_sub(written), b'x');
    out.extend_from_slice(b" pub");
    push_decimal(out, publisher as u64);
    out.push(b'\n');
}

/// The three numbers a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The publisher's index on its topic.
    pub publisher: usize,
    /// Sequence number, from 0, per publisher.
    pub seq: u64,
    /// Send time (for paced runs: the intended send time), in ns since the base instant.
    pub sent_ns: u64,
}

/// Reads the stamp from a received line: our broker's `DELIVER <topic> <payload> ...`,
/// its JSON dialect's `{"topic":"<topic>","message":"<payload>",...}`, or the relay's
/// forwarded `PUBLISH <topic> <payload> ...`. Any other line gives `None`.
pub fn parse_stamp(line: &[u8]) -> Option<Stamp> {
    const JSON_MESSAGE: &[u8] = b"\",\"message\":\"";
    const SOCKETIO_MESSAGE: &[u8] = b"\",{\"message\":\"";
    let mut payload = if let Some(event) = line.strip_prefix(b"42[\"") {
        // A Socket.IO delivery: `42["<topic>",{"message":"<payload>"}]`.
        let at = event
            .windows(SOCKETIO_MESSAGE.len())
            .position(|window| window == SOCKETIO_MESSAGE)?;
        &event[at + SOCKETIO_MESSAGE.len()..]
    } else if let Some(json) = line.strip_prefix(b"{\"topic\":\"") {
        // The bench's topics and payloads need no escapes, so the message starts right
        // after the topic's closing quote.
        let at = json
            .windows(JSON_MESSAGE.len())
            .position(|window| window == JSON_MESSAGE)?;
        &json[at + JSON_MESSAGE.len()..]
    } else {
        let rest = line
            .strip_prefix(b"DELIVER ")
            .or_else(|| line.strip_prefix(b"PUBLISH "))?;
        let topic_end = rest.iter().position(|&b| b == b' ')?;
        &rest[topic_end + 1..]
    };
    let publisher = take_number(&mut payload)?;
    let seq = take_number(&mut payload)?;
    let sent_ns = take_number(&mut payload)?;
    Some(Stamp {
        publisher: usize::try_from(publisher).ok()?,
        seq,
        sent_ns,
    })
}

/// Parses digits up to a `:` and moves past it.
fn take_number(text: &mut &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (i, &byte) in text.iter().enumerate() {
        match byte {
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
            }
            b':' if i > 0 => {
                *text = &text[i + 1..];
                return Some(value);
            }
            _ => return None,
        }
    }
    None
}

/// A latency histogram with buckets about 6% wide at every scale, from nanoseconds to
/// hours, in a fixed 8 KiB: each power of two is split into 16 equal buckets (the idea
/// behind HdrHistogram, at its simplest). Recording is an array increment.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

/// Buckets per power of two, as a number of bits.
const SUB_BITS: u32 = 4;
const SUB_BUCKETS: u64 = 1 << SUB_BITS;

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; 64 * SUB_BUCKETS as usize],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    /// Counts one value (nanoseconds).
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// p50, p90, p99 and max, or `None` if nothing was recorded.
    pub fn percentiles(&self) -> Option<Percentiles> {
        (self.total > 0).then(|| Percentiles {
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            max: Duration::from_nanos(self.max),
        })
    }

    /// The middle of the bucket holding the value below which a fraction `q` of the
    /// values lie (never more than the largest value seen).
    fn quantile(&self, q: f64) -> Duration {
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = bucket_range(bucket);
                return Duration::from_nanos((low + width / 2).min(self.max));
            }
        }
        Duration::from_nanos(self.max)
    }
}

/// Values below 16 get a bucket each; above, the top bit picks the power of two and the
/// next four bits the sixteenth within it.
fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // value is in [2^exponent, 2^(exponent+1))
    let sub = (value >> (exponent - SUB_BITS)) & (SUB_BUCKETS - 1);
    ((exponent - SUB_BITS + 1) as u64 * SUB_BUCKETS + sub) as usize
}

/// The lowest value of a bucket and its width: the inverse of [`bucket_of`].
fn bucket_range(bucket: usize) -> (u64, u64) {
    let bucket = bucket as u64;
    if bucket < SUB_BUCKETS {
        return (bucket, 1);
    }
    let exponent = bucket / SUB_BUCKETS + u64::from(SUB_BITS) - 1;
    let sub = bucket % SUB_BUCKETS;
    let shift = exponent - u64::from(SUB_BITS);
    ((SUB_BUCKETS + sub) << shift, 1 << shift)
}

/// The latency figures a run reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest value seen.
    pub max: Duration,
}

/// What one subscriber saw.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// The sequence number expected next from each publisher on the topic.
    next_seq: Vec<u64>,
    /// Messages received (lines with a valid stamp).
    pub received: u64,
    /// Messages that were not the next one expected from their publisher: each gap,
    /// duplicate or reordering counts once. Zero when per-publisher order held.
    pub disorder: u64,
    /// Latency of every message: arrival minus (intended) send time.
    pub latency: Histogram,
    /// When the last message arrived, in ns since the base instant.
    pub last_arrival_ns: u64,
}

impl Tally {
    /// A tally for a topic with `publishers` publishers.
    pub fn new(publishers: usize) -> Tally {
        Tally {
            next_seq: vec![0; publishers],
            ..Tally::default()
        }
    }

    /// Counts one message that arrived at `arrival_ns`.
    pub fn record(&mut self, stamp: Stamp, arrival_ns: u64) {
        self.received += 1;
        match self.next_seq.get_mut(stamp.publisher) {
            Some(next) if *next == stamp.seq => *next += 1,
            Some(next) => {
                self.disorder += 1;
                *next = (*next).max(stamp.seq + 1);
            }
            None => self.disorder += 1,
        }
        self.latency
            .record(arrival_ns.saturating_sub(stamp.sent_ns));
        self.last_arrival_ns = self.last_arrival_ns.max(arrival_ns);
    }

    /// Adds another subscriber's tally to this one (the per-publisher positions are not
    /// merged: they only mean something for one subscriber).
    pub fn merge(&mut self, other: &Tally) {
        self.received += other.received;
        self.disorder += other.disorder;
        self.latency.merge(&other.latency);
        self.last_arrival_ns = self.last_arrival_ns.max(other.last_arrival_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_line_parses_back_to_its_stamp() {
        let mut line = Vec::new();
        write_publish(&mut line, "bench-0", 3, 1207, 84_519_302, 64);
        let text = String::from_utf8(line.clone()).unwrap();
        let payload = text.split(' ').nth(2).unwrap();
        assert_eq!(payload.len(), 64);
        assert!(text.ends_with(" pub3\n"));
        let stamp = parse_stamp(&line[..line.len() - 1]).unwrap();
        assert_eq!(
            stamp,
            Stamp {
                publisher: 3,
                seq: 1207,
                sent_ns: 84_519_302
            }
        );
        let deliver = format!("DELIVER bench-0 {payload} pub3 2025-03-14 10:30:00");
        assert_eq!(parse_stamp(deliver.as_bytes()), Some(stamp));
        let json = format!(
            "{{\"topic\":\"bench-0\",\"message\":\"{payload}\",\"publisher\":\"pub3\",\"timestamp\":\"x\"}}"
        );
        assert_eq!(parse_stamp(json.as_bytes()), Some(stamp));
        assert_eq!(parse_stamp(b"PONG x"), None);
        assert_eq!(parse_stamp(b"{\"pong\":\"s1\"}"), None);
    }

    #[test]
    fn buckets_cover_every_value_and_are_narrow() {
        for value in [0, 1, 15, 16, 17, 31, 32, 1000, 123_456_789, u64::MAX / 3] {
            let (low, width) = bucket_range(bucket_of(value));
            assert!(low <= value && value - low < width, "{value}");
            assert!(width == 1 || width * 16 <= low, "{value}: bucket too wide");
        }
    }

    #[test]
    fn percentiles_come_from_the_recorded_values() {
        let mut histogram = Histogram::default();
        for micros in 1..=100 {
            histogram.record(micros * 1000);
        }
        let p = histogram.percentiles().unwrap();
        let near = |d: Duration, micros: f64| (d.as_secs_f64() * 1e6 / micros - 1.0).abs() < 0.07;
        assert!(near(p.p50, 50.0) && near(p.p99, 99.0), "{p:?}");
        assert_eq!(p.max, Duration::from_micros(100));
    }

    #[test]
    fn the_tally_counts_gaps_and_duplicates_as_disorder() {
        let mut tally = Tally::new(1);
        for seq in [0, 1, 3, 3, 4] {
            let stamp = Stamp {
                publisher: 0,
                seq,
                sent_ns: 0,
            };
            tally.record(stamp, 10);
        }
        assert_eq!((tally.received, tally.disorder), (5, 2));
    }
}
