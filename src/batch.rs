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

use std::ops::Range;
use std::sync::OnceLock;

use crate::protocol::{self, Delivery, Dialect, TIMESTAMP_FORMAT};

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
    pub fn add(&mut self, message: &str, publisher_id: &str) {
        // JSON written before this delivery would be missing it.
        self.json.take();
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
    }

    /// Gives back the buffers' memory, for a publisher that has gone quiet.
    pub fn release(&mut self) {
        *self = Batch::default();
    }

    /// The topic every delivery in the batch was published to.
    pub fn topic(&self) -> &str {
        &self.topic
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
