//! Deliveries, broker to subscriber: the `DELIVER` line.

use std::fmt;

/// The timestamp format of `DELIVER` lines: the broker's local time, to the second.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Appends `DELIVER <topic> <message> <publisher_id> <timestamp>\n`, the one line every
/// subscriber of `topic` receives for a publish.
///
/// The broker calls this once per `PUBLISH` and hands the same bytes to every subscriber,
/// rather than formatting the line again for each of them.
///
/// ```
/// let mut line = Vec::new();
/// pubsub_lab::protocol::write_delivery(&mut line, "weather", "Rainy day", "pub1", "2025-03-14 10:30:00");
/// assert_eq!(line, b"DELIVER weather Rainy day pub1 2025-03-14 10:30:00\n");
/// ```
// Inlined into `Batch::add`, on every publish's path: see there why.
#[inline]
pub fn write_delivery(
    out: &mut Vec<u8>,
    topic: &str,
    message: &str,
    publisher_id: &str,
    timestamp: &str,
) {
    // lab:begin 01 the DELIVER line
    for part in [
        &b"DELIVER "[..],
        topic.as_bytes(),
        b" ",
        message.as_bytes(),
        b" ",
    ] {
        out.extend_from_slice(part);
    }
    for part in [publisher_id.as_bytes(), b" ", timestamp.as_bytes(), b"\n"] {
        out.extend_from_slice(part);
    }
    // lab:end 01
}

/// One message as a subscriber receives it: parsed from a `DELIVER` line by a client, or
/// handed over whole to an in-process [`Subscription`](crate::Subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic it was published to.
    pub topic: String,
    /// The message text, inner spacing kept.
    pub message: String,
    /// The id the publisher gave.
    pub publisher_id: String,
    /// When the broker handled the publish, in the broker's local time.
    pub timestamp: chrono::NaiveDateTime,
}

impl Delivery {
    /// Parses a `DELIVER` line (without its `\n`). Returns `None` for any other line.
    ///
    /// The timestamp is the last two tokens, the publisher id the one before them, the topic
    /// the second, and the message everything in between, exactly as sent.
    ///
    /// ```
    /// use pubsub_lab::protocol::Delivery;
    /// let d = Delivery::parse("DELIVER weather Rainy  day pub1 2025-03-14 10:30:00").unwrap();
    /// assert_eq!((d.topic.as_str(), d.message.as_str(), d.publisher_id.as_str()),
    ///            ("weather", "Rainy  day", "pub1"));
    /// assert_eq!(d.timestamp.to_string(), "2025-03-14 10:30:00");
    /// ```
    pub fn parse(line: &str) -> Option<Delivery> {
        let rest = line.strip_prefix("DELIVER ")?;
        let (topic, rest) = rest.split_once(' ')?;
        let (rest, time) = rest.rsplit_once(' ')?;
        let (rest, date) = rest.rsplit_once(' ')?;
        let (message, publisher_id) = rest.rsplit_once(' ')?;
        let timestamp =
            chrono::NaiveDateTime::parse_from_str(&format!("{date} {time}"), TIMESTAMP_FORMAT)
                .ok()?;
        Some(Delivery {
            topic: topic.to_string(),
            message: message.to_string(),
            publisher_id: publisher_id.to_string(),
            timestamp,
        })
    }

    /// The wire line for this delivery, `\n` included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = Vec::new();
        let timestamp = self.timestamp.format(TIMESTAMP_FORMAT).to_string();
        write_delivery(
            &mut line,
            &self.topic,
            &self.message,
            &self.publisher_id,
            &timestamp,
        );
        line
    }
}

impl fmt::Display for Delivery {
    /// The `DELIVER` line, without its `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.to_line();
        f.write_str(String::from_utf8_lossy(&line[..line.len() - 1]).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_round_trip_through_their_line() {
        let mut line = Vec::new();
        write_delivery(
            &mut line,
            "news",
            "two  spaces",
            "pub1",
            "2025-03-14 10:30:00",
        );
        assert_eq!(line, b"DELIVER news two  spaces pub1 2025-03-14 10:30:00\n");
        let text = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
        let delivery = Delivery::parse(text).unwrap();
        assert_eq!(delivery.topic, "news");
        assert_eq!(delivery.message, "two  spaces");
        assert_eq!(delivery.publisher_id, "pub1");
        assert_eq!(delivery.to_line(), line);
        assert_eq!(delivery.to_string(), text);
    }
}
