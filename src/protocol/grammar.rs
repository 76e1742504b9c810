//! The one grammar of names and messages: what a topic, a filter, an id and a message may
//! be, for every way in.
//!
//! A line read from the TCP port is cut into words by [`Command::parse`](super::Command),
//! so its topic can hold no space and its message no line break. Every other way in gets its
//! text from somewhere else: a JSON string (the JSON dialect, `POST /publish`), a form
//! field, a datagram, a NATS message, a Rust `&str` (the embedding API, the client
//! library). A JSON string can hold `\u2028`, which Python's `str.splitlines()` takes for a
//! line break; if one way in forgot to check for it, a subscriber on another would read a
//! `DELIVER` line nobody sent. So the rules live here, once, and the router applies them to
//! every publish and subscription whichever way it came (see `router.rs`); the client
//! library asks the same functions before it sends, so it refuses exactly what the broker
//! would, with the broker's reason.
//!
//! | what | rules |
//! |---|---|
//! | topic (to publish to) | one word; no line break, no control character; at most `--max-topic-bytes` and `--max-topic-levels`; no wildcard; not `$SYS/...` |
//! | filter (to subscribe to) | the same, but wildcards where `topic.rs` allows them, and `$SYS` allowed |
//! | id (subscriber or publisher) | one word; no line break, no control character; at most `--max-id-bytes` |
//! | message | not empty; no line break (any of `text::is_line_break`'s); no space or tab at either end, which the line protocol could not carry back unchanged |
//!
//! The limits are the broker's settings; a client does not know them, so it checks with
//! [`Limits::NONE`] and leaves the lengths to the broker. Production brokers draw the same
//! line: MQTT clients check a topic's UTF-8 and wildcards, and only the server knows its
//! `max_topic_length`.

use super::ProtocolError;
use crate::text;
use crate::topic;

/// The broker's limits on names, from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest topic or filter, in bytes (`--max-topic-bytes`).
    pub topic_bytes: usize,
    /// The longest subscriber or publisher id, in bytes (`--max-id-bytes`).
    pub id_bytes: usize,
    /// The most levels a topic or filter may have (`--max-topic-levels`).
    pub topic_levels: usize,
}

impl Limits {
    /// No limits: the rules that hold whatever the broker's settings, for a client that
    /// does not know them.
    pub const NONE: Limits = Limits {
        topic_bytes: usize::MAX,
        id_bytes: usize::MAX,
        topic_levels: usize::MAX,
    };
}

/// Checks a topic a client publishes to (or retains, or unretains).
///
/// ```
/// use pubsub_lab::protocol::grammar::{check_topic, Limits};
/// assert!(check_topic("lab/news", &Limits::NONE).is_ok());
/// assert!(check_topic("lab/\u{2028}DELIVER", &Limits::NONE).is_err());
/// assert!(check_topic("lab/#", &Limits::NONE).is_err());
/// ```
///
/// # Errors
/// What [`check_word`] refuses, [`ProtocolError::TopicTooLong`],
/// [`ProtocolError::TooManyLevels`], [`ProtocolError::WildcardInName`] or
/// [`ProtocolError::ReservedTopic`].
pub fn check_topic(topic: &str, limits: &Limits) -> Result<(), ProtocolError> {
    check_name(topic, limits)?;
    if topic::has_wildcard(topic) {
        return Err(ProtocolError::WildcardInName);
    }
    if topic::is_reserved(topic) {
        return Err(ProtocolError::ReservedTopic);
    }
    Ok(())
}

/// Checks a filter a client subscribes to: a topic, or a pattern with `+` and `#` where
/// MQTT allows them (see `topic.rs`). Every topic is also a filter, one that matches itself.
///
/// # Errors
/// What [`check_word`] refuses, [`ProtocolError::TopicTooLong`],
/// [`ProtocolError::TooManyLevels`] or [`ProtocolError::BadFilter`].
pub fn check_filter(filter: &str, limits: &Limits) -> Result<(), ProtocolError> {
    check_name(filter, limits)?;
    topic::check_filter(filter).map_err(ProtocolError::BadFilter)
}

/// What topics and filters share: one printable word, within the length and the levels.
fn check_name(name: &str, limits: &Limits) -> Result<(), ProtocolError> {
    check_word("topic", name)?;
    if name.len() > limits.topic_bytes {
        return Err(ProtocolError::TopicTooLong {
            limit: limits.topic_bytes,
        });
    }
    if topic::levels(name) > limits.topic_levels {
        return Err(ProtocolError::TooManyLevels {
            limit: limits.topic_levels,
        });
    }
    Ok(())
}

/// Checks a subscriber or publisher id. `what` names it in the error (`publisher id`).
///
/// # Errors
/// What [`check_word`] refuses, or [`ProtocolError::IdTooLong`].
pub fn check_id(what: &'static str, id: &str, limits: &Limits) -> Result<(), ProtocolError> {
    check_word(what, id)?;
    if id.len() > limits.id_bytes {
        return Err(ProtocolError::IdTooLong {
            limit: limits.id_bytes,
        });
    }
    Ok(())
}

/// Checks one word of a command (a topic, an id, a user's name): not empty, no line break,
/// no other control character, no space. The line break is looked for first, so that the
/// reason names the danger (a forged line) rather than the character class.
///
/// # Errors
/// [`ProtocolError::NotOneWord`], [`ProtocolError::LineBreakIn`] or
/// [`ProtocolError::ControlCharacter`].
pub fn check_word(what: &'static str, word: &str) -> Result<(), ProtocolError> {
    // Nearly every word is plain printable ASCII: one pass says so, and the slower checks
    // below, which name what is wrong, run only for the rest. (Every publish checks its
    // publisher id, so this is on the hot path.)
    if !word.is_empty() && word.bytes().all(|b| b > b' ' && b < 0x7f) {
        return Ok(());
    }
    if word.is_empty() {
        return Err(ProtocolError::NotOneWord { what });
    }
    if let Some(character) = text::line_break_in(word) {
        return Err(ProtocolError::LineBreakIn { what, character });
    }
    if let Some(character) = text::control_in(word) {
        return Err(ProtocolError::ControlCharacter { what, character });
    }
    if word.contains(' ') {
        return Err(ProtocolError::NotOneWord { what });
    }
    Ok(())
}

/// Checks a message: what a `DELIVER` line can carry and give back unchanged. Control
/// characters other than line breaks are allowed (programs get the bytes as sent; people
/// see them escaped, see `text.rs`).
///
/// ```
/// use pubsub_lab::protocol::grammar::check_message;
/// assert!(check_message("Rainy day ahead!").is_ok());
/// assert!(check_message("  padded  ").is_err());
/// assert!(check_message("one\u{2029}two").is_err());
/// ```
///
/// # Errors
/// [`ProtocolError::BadMessage`] or [`ProtocolError::LineBreakIn`].
pub fn check_message(message: &str) -> Result<(), ProtocolError> {
    if let Some(character) = text::line_break_in(message) {
        return Err(ProtocolError::LineBreakIn {
            what: "message",
            character,
        });
    }
    let padded = |c: char| c == ' ' || c == '\t';
    if message.is_empty() || message.starts_with(padded) || message.ends_with(padded) {
        return Err(ProtocolError::BadMessage);
    }
    Ok(())
}

/// Checks a subscription's names, as `SUBSCRIBE` and `UNSUBSCRIBE` give them: a filter and
/// a subscriber id.
///
/// # Errors
/// What [`check_filter`] or [`check_id`] refuses.
pub fn check_subscription(
    filter: &str,
    subscriber_id: &str,
    limits: &Limits,
) -> Result<(), ProtocolError> {
    check_filter(filter, limits)?;
    check_id("subscriber id", subscriber_id, limits)
}

/// Checks a whole publish: topic, message and publisher id.
///
/// # Errors
/// What [`check_topic`], [`check_message`] or [`check_id`] refuses.
pub fn check_publish(
    topic: &str,
    message: &str,
    publisher_id: &str,
    limits: &Limits,
) -> Result<(), ProtocolError> {
    check_topic(topic, limits)?;
    check_id("publisher id", publisher_id, limits)?;
    check_message(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character some line reader splits at (see `text::is_line_break`) is refused in
    /// every field, each with the reason that names the field.
    #[test]
    fn every_line_break_is_refused_in_every_field() {
        let breaks = [
            '\n', '\r', '\u{0b}', '\u{0c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}',
            '\u{2029}',
        ];
        for c in breaks {
            let text = format!("a{c}b");
            let limits = Limits::NONE;
            assert_eq!(
                check_topic(&text, &limits),
                Err(ProtocolError::LineBreakIn {
                    what: "topic",
                    character: c
                })
            );
            assert!(check_filter(&text, &limits).is_err(), "{c:?}");
            assert_eq!(
                check_id("publisher id", &text, &limits),
                Err(ProtocolError::LineBreakIn {
                    what: "publisher id",
                    character: c
                })
            );
            assert_eq!(
                check_message(&text),
                Err(ProtocolError::LineBreakIn {
                    what: "message",
                    character: c
                })
            );
        }
    }

    #[test]
    fn limits_apply_only_when_given() {
        let long = "t".repeat(300);
        let limits = Limits {
            topic_bytes: 256,
            id_bytes: 64,
            topic_levels: 3,
        };
        assert!(check_topic(&long, &Limits::NONE).is_ok());
        assert_eq!(
            check_topic(&long, &limits),
            Err(ProtocolError::TopicTooLong { limit: 256 })
        );
        assert_eq!(
            check_filter("a/b/c/d", &limits),
            Err(ProtocolError::TooManyLevels { limit: 3 })
        );
        assert_eq!(
            check_id("subscriber id", &long, &limits),
            Err(ProtocolError::IdTooLong { limit: 64 })
        );
    }

    #[test]
    fn messages_keep_inner_spaces_and_controls_but_not_padding() {
        assert!(check_message("a  b\tc\u{1b}[31m").is_ok());
        assert_eq!(check_message(" a"), Err(ProtocolError::BadMessage));
        assert_eq!(check_message("a\t"), Err(ProtocolError::BadMessage));
        assert_eq!(check_message(""), Err(ProtocolError::BadMessage));
    }

    #[test]
    fn names_are_one_printable_word() {
        assert_eq!(
            check_word("topic", "two words"),
            Err(ProtocolError::NotOneWord { what: "topic" })
        );
        assert_eq!(
            check_word("topic", "tab\there"),
            Err(ProtocolError::ControlCharacter {
                what: "topic",
                character: '\t'
            })
        );
        assert!(check_topic("$SYS/broker/uptime", &Limits::NONE).is_err());
        assert!(check_filter("$SYS/#", &Limits::NONE).is_ok());
    }
}
