//! Deliveries on a durable subscription, broker to subscriber: the `MESSAGE` line.
//!
//! ```text
//! MESSAGE <seq> <topic> <message> <publisher_id> <YYYY-MM-DD HH:MM:SS>
//! ```
//!
//! It is a `DELIVER` line with a number in front: the *seq* the broker gave the message
//! when it queued it for this subscription. The client sends `ACK <seq>` once it has
//! handled the message; until then the broker keeps it, and sends it again (the same line,
//! the same seq) if the subscription is resumed or the acknowledgement is overdue. A
//! client that remembers the seqs it has handled can so drop every duplicate.

use std::fmt;

use super::delivery::TIMESTAMP_FORMAT;

/// Appends `MESSAGE <seq> <topic> <message> <publisher_id> <timestamp>\n`.
///
/// ```
/// let mut line = Vec::new();
/// pubsub_lab::protocol::write_message(&mut line, 17, "orders", "2 pizzas", "shop", "2025-03-14 10:30:00");
/// assert_eq!(line, b"MESSAGE 17 orders 2 pizzas shop 2025-03-14 10:30:00\n");
/// ```
pub fn write_message(
    out: &mut Vec<u8>,
    seq: u64,
    topic: &str,
    message: &str,
    publisher_id: &str,
    timestamp: &str,
) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = writeln!(
        out,
        "MESSAGE {seq} {topic} {message} {publisher_id} {timestamp}"
    );
}

/// One message received on a durable subscription, parsed from its `MESSAGE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The number to acknowledge it with (`ACK <seq>`); the same on every redelivery.
    pub seq: u64,
    /// The topic it was published to.
    pub topic: String,
    /// The message text, inner spacing kept.
    pub message: String,
    /// The id the publisher gave.
    pub publisher_id: String,
    /// When the broker handled the publish, in the broker's local time.
    pub timestamp: chrono::NaiveDateTime,
}

impl Message {
    /// Parses a `MESSAGE` line (without its `\n`). Returns `None` for any other line.
    ///
    /// ```
    /// use pubsub_lab::protocol::Message;
    /// let m = Message::parse("MESSAGE 17 orders 2  pizzas shop 2025-03-14 10:30:00").unwrap();
    /// assert_eq!((m.seq, m.topic.as_str(), m.message.as_str()), (17, "orders", "2  pizzas"));
    /// assert_eq!(m.to_string(), "MESSAGE 17 orders 2  pizzas shop 2025-03-14 10:30:00");
    /// ```
    pub fn parse(line: &str) -> Option<Message> {
        let rest = line.strip_prefix("MESSAGE ")?;
        let (seq, rest) = rest.split_once(' ')?;
        let seq = seq.parse().ok()?;
        let (topic, rest) = rest.split_once(' ')?;
        let (rest, time) = rest.rsplit_once(' ')?;
        let (rest, date) = rest.rsplit_once(' ')?;
        let (message, publisher_id) = rest.rsplit_once(' ')?;
        let timestamp =
            chrono::NaiveDateTime::parse_from_str(&format!("{date} {time}"), TIMESTAMP_FORMAT)
                .ok()?;
        Some(Message {
            seq,
            topic: topic.to_string(),
            message: message.to_string(),
            publisher_id: publisher_id.to_string(),
            timestamp,
        })
    }
}

impl fmt::Display for Message {
    /// The `MESSAGE` line, without its `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MESSAGE {} {} {} {} {}",
            self.seq,
            self.topic,
            self.message,
            self.publisher_id,
            self.timestamp.format(TIMESTAMP_FORMAT)
        )
    }
}
