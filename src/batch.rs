//! A batch: consecutive publishes to one topic, formatted once, handed to every subscriber.
//!
//! A publisher that sends a burst to one topic would otherwise look the topic up, read the
//! clock and take each subscriber's lock once per message; gathered in a [`Batch`], it does
//! each once per burst. The router fills a batch as publishes arrive and offers the whole
//! of it to each subscriber (see `router.rs`).
//!
//! The batch holds its deliveries in the one form nearly every subscriber wants, the
//! `DELIVER` lines of the line protocol, written once by
//! [`write_delivery`](crate::protocol::write_delivery) and then only copied. Beside the
//! bytes it notes where each message and publisher id sit in them, so a subscriber that
//! wants the parts instead (an in-process [`Subscription`](crate::Subscription), another
//! wire format) can have them without parsing anything.
//!
//! The second form is kn-sock's JSON lines ([`Batch::lines_for`]), for subscribers that
//! speak that dialect. It too is written once per batch, by the first such subscriber
//! offered the batch, and then only copied: a hundred JSON subscribers cost one encoding.
//!
//! A third form belongs to a layer above the batch, which the batch cannot name without
//! importing it: Socket.IO's events (`web/socketio_session.rs`). [`Batch::encoded`] keeps
//! whatever that layer makes, by its type, made once per batch in the same way.

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use crate::protocol::{self, Delivery, Dialect, TIMESTAMP_FORMAT};
use crate::scan;

/// `DELIVER` lines for consecutive publishes to one topic. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    topic: String,
    timestamp: String,
    lines: Vec<u8>,
    /// For each delivery: where its message and its publisher id are in `lines`.
    parts: Vec<(Range<usize>, Range<usize>)>,
    /// The same deliveries as JSON lines, written when first asked for. A lock, not a
    /// cell, because a retained batch is shared by every thread that subscribes.
    json: OnceLock<String>,
    /// The deliveries as a layer above encodes them: see [`Batch::encoded`].
    encoded: Encoded,
}

/// The slot of [`Batch::encoded`]. A clone starts empty: a copy of a batch is kept by a
/// subscriber that encodes it again if it must.
#[derive(Default)]
struct Encoded(OnceLock<Box<dyn Any + Send + Sync>>);

impl Clone for Encoded {
    fn clone(&self) -> Encoded {
        Encoded::default()
    }
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.0.get().is_some() {
            "made"
        } else {
            "empty"
        };
        write!(f, "Encoded({state})")
    }
}

/// One publish in a batch, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published<'a> {
    /// The message text.
    pub message: &'a str,
    /// The id the publisher gave.
    pub publisher_id: &'a str,
}

impl Batch {
    /// Empties the batch and starts it afresh for `topic`, stamped `timestamp`. The buffers
    /// are kept, so a busy publisher reuses their memory batch after batch.
    pub fn start(&mut self, topic: &str, timestamp: &str) {
        self.clear();
        self.topic.push_str(topic);
        self.timestamp.push_str(timestamp);
    }

    /// Adds one publish: formats its `DELIVER` line and notes where its parts are.
    /// Inlined into the publish path, like `write_delivery`: a call's entry and exit cost
    /// 15 to 25 instructions of a message's 1,600, each time.
    #[inline]
    pub fn add(&mut self, message: &str, publisher_id: &str) {
        // JSON (or another encoding) written before this delivery would be missing it.
        self.json.take();
        self.encoded.0.take();
        let start = self.lines.len();
        protocol::write_delivery(
            &mut self.lines,
            &self.topic,
            message,
            publisher_id,
            &self.timestamp,
        );
        // "DELIVER <topic> " comes before the message, " " between message and id.
        let message_start = start + "DELIVER ".len() + self.topic.len() + 1;
        let message_end = message_start + message.len();
        let id_end = message_end + 1 + publisher_id.len();
        self.parts
            .push((message_start..message_end, message_end + 1..id_end));
    }

    /// Forgets every delivery, keeping the buffers' memory.
    pub fn clear(&mut self) {
        self.topic.clear();
        self.timestamp.clear();
        self.lines.clear();
        self.parts.clear();
        self.json.take();
        self.encoded.0.take();
    }

    /// Gives back the buffers' memory, for a publisher that has gone quiet.
    pub fn release(&mut self) {
        *self = Batch::default();
    }

    /// The topic every delivery in the batch was published to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether the last delivery added was published as `publisher_id`. Compares bytes:
    /// no UTF-8 to decode for a question asked at every publish (and with [`scan::same`],
    /// no call to `memcmp` either).
    pub fn last_published_by(&self, publisher_id: &str) -> bool {
        self.parts.last().is_some_and(|(_, id)| {
            self.lines
                .get(id.clone())
                .is_some_and(|last| scan::same(last, publisher_id.as_bytes()))
        })
    }

    /// Whether this batch's deliveries were published to `topic`: asked at every publish,
    /// so compared with [`scan::same`].
    pub fn is_for(&self, topic: &str) -> bool {
        scan::same(self.topic.as_bytes(), topic.as_bytes())
    }

    /// When the broker handled these publishes, as `DELIVER` writes it.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }

    /// How many deliveries the batch holds.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether the batch holds no delivery.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Every delivery as a `DELIVER` line, each ending in `\n`.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Every delivery as `dialect` writes it: `DELIVER` lines, or JSON lines (written on
    /// the first call for the batch, and kept).
    pub fn lines_for(&self, dialect: Dialect) -> &[u8] {
        match dialect {
            Dialect::Line => &self.lines,
            Dialect::Json => self
                .json
                .get_or_init(|| {
                    let mut json = String::with_capacity(self.lines.len() * 2);
                    for published in self.published() {
                        protocol::write_json_delivery(
                            &mut json,
                            &self.topic,
                            published.message,
                            published.publisher_id,
                            &self.timestamp,
                        );
                    }
                    json
                })
                .as_bytes(),
        }
    }

    /// The deliveries as `encode` writes them, for a layer above that has a wire format of
    /// its own (Socket.IO's events): `encode` runs for the first subscriber that asks, and
    /// every other subscriber of the batch shares what it made, as the JSON lines are
    /// shared. The batch keeps one such form; `None` if it already holds one of another
    /// type (then the caller encodes for itself).
    pub fn encoded<T: Any + Send + Sync>(&self, encode: impl FnOnce(&Batch) -> T) -> Option<&T> {
        self.encoded
            .0
            .get_or_init(|| Box::new(encode(self)))
            .downcast_ref()
    }

    /// Every delivery as its parts.
    pub fn published(&self) -> impl Iterator<Item = Published<'_>> + '_ {
        self.parts.iter().map(|(message, publisher_id)| Published {
            message: self.text(message),
            publisher_id: self.text(publisher_id),
        })
    }

    /// Every delivery as an owned [`Delivery`], for subscribers that keep them.
    pub fn deliveries(&self) -> impl Iterator<Item = Delivery> + '_ {
        let timestamp = chrono::NaiveDateTime::parse_from_str(&self.timestamp, TIMESTAMP_FORMAT)
            .unwrap_or_default();
        self.published().map(move |published| Delivery {
            topic: self.topic.clone(),
            message: published.message.to_string(),
            publisher_id: published.publisher_id.to_string(),
            timestamp,
        })
    }

    fn text(&self, range: &Range<usize>) -> &str {
        // The bytes were copied in from `&str`s at exactly these places, so they are UTF-8
        // and the ranges fall on character boundaries.
        std::str::from_utf8(&self.lines[range.clone()]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoding_is_made_once_per_batch_and_made_again_after_a_change() {
        let mut batch = Batch::default();
        batch.start("news", "2025-03-14 10:30:00");
        batch.add("hi", "pub1");
        let mut made = 0;
        let mut count = |batch: &Batch| {
            made += 1;
            batch.len()
        };
        assert_eq!(batch.encoded(&mut count), Some(&1));
        assert_eq!(
            batch.encoded(&mut count),
            Some(&1),
            "shared, not made again"
        );
        assert_eq!(batch.encoded(|_| "another type"), None);
        batch.add("again", "pub1");
        assert_eq!(
            batch.encoded(&mut count),
            Some(&2),
            "a new delivery: made again"
        );
        assert_eq!(made, 2);
        assert!(batch.clone().encoded(|_| "a copy starts empty").is_some());
    }

    #[test]
    fn a_batch_knows_who_published_its_last_delivery() {
        let mut batch = Batch::default();
        batch.start("news", "2025-03-14 10:30:00");
        assert!(!batch.last_published_by("pub1"), "nothing published yet");
        batch.add("hi", "pub1");
        assert!(batch.last_published_by("pub1"));
        assert!(!batch.last_published_by("pub"), "a prefix is another id");
        batch.add("pub1", "p2");
        assert!(
            !batch.last_published_by("pub1"),
            "the message is not the id"
        );
        assert!(batch.last_published_by("p2"));
    }

    #[test]
    fn a_batch_holds_the_lines_and_the_parts_of_each_publish() {
        let mut batch = Batch::default();
        batch.start("news", "2025-03-14 10:30:00");
        batch.add("two  spaces", "pub1");
        batch.add("é", "p2");
        assert_eq!(
            batch.lines(),
            b"DELIVER news two  spaces pub1 2025-03-14 10:30:00\n\
              DELIVER news \xc3\xa9 p2 2025-03-14 10:30:00\n"
        );
        let parts: Vec<(&str, &str)> = batch
            .published()
            .map(|p| (p.message, p.publisher_id))
            .collect();
        assert_eq!(parts, [("two  spaces", "pub1"), ("é", "p2")]);
        let delivery = batch.deliveries().next().unwrap();
        assert_eq!(
            delivery.to_string(),
            "DELIVER news two  spaces pub1 2025-03-14 10:30:00"
        );
        assert_eq!(batch.len(), 2);
        assert_eq!(
            batch.lines_for(Dialect::Json).split(|&b| b == b'\n').next(),
            Some(
                &br#"{"topic":"news","message":"two  spaces","publisher":"pub1","timestamp":"2025-03-14 10:30:00"}"#[..]
            )
        );
        batch.add("late", "p3");
        batch.clear();
        batch.start("news", "2025-03-14 10:30:01");
        batch.add("fresh", "p4");
        let json = String::from_utf8(batch.lines_for(Dialect::Json).to_vec()).unwrap();
        assert!(json.contains("fresh") && !json.contains("late"), "{json}");
    }

    #[test]
    fn starting_again_forgets_the_previous_deliveries() {
        let mut batch = Batch::default();
        batch.start("a", "2025-03-14 10:30:00");
        batch.add("m", "p");
        batch.start("b", "2025-03-14 10:30:01");
        assert!(batch.is_empty());
        assert_eq!(batch.topic(), "b");
        assert_eq!(batch.timestamp(), "2025-03-14 10:30:01");
    }
}
