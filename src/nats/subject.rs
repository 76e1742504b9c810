//! Topics ↔ NATS subjects: the one mapping both directions of the bridge use.
//!
//! A topic's levels become a subject's tokens, under the prefix (`--nats-prefix`, default
//! `pubsub-lab`): topic `building/3/temp` is subject `pubsub-lab.building.3.temp`. Filters
//! map the same way, with `+` → `*` and `#` → `>`.
//!
//! A subject cannot carry everything a topic can: `.` separates tokens, `*` and `>` are
//! wildcards, and a token may not be empty (`a..b` is not a subject, while `a//b` is a
//! topic). So those are *escaped*, the way URLs escape, with `%` and two hex digits:
//!
//! | in a topic level | in the subject token |
//! |---|---|
//! | `.` | `%2E` |
//! | `*` | `%2A` |
//! | `>` | `%3E` |
//! | `%` itself | `%25` |
//! | a space, tab or control character (never in a topic, but never in a subject either) | `%20`, `%09`, … |
//! | an empty level | `%` alone |
//!
//! Everything else (letters, digits, `-`, `_`, `$`, any non-ASCII text) is kept as it is,
//! so subjects stay readable. The mapping is reversible: [`topic_of`] gives back exactly
//! the topic that [`subject_of`] was given, and it accepts only subjects [`subject_of`]
//! could have written (upper-case hex, and only for the characters above), so that two
//! subjects never name one topic.
//!
//! One rule does not carry over by itself. MQTT's `news/#` matches `news` as well as
//! `news/tech`, while NATS's `news.>` needs at least one more token. So a filter ending in
//! `/#` becomes two subscriptions ([`subjects_of_filter`]): `…news` and `…news.>`.

use std::fmt;

use crate::topic::{ALL_LEVELS, LEVEL_SEPARATOR, ONE_LEVEL};

/// The token that stands for an empty topic level.
pub const EMPTY_LEVEL: &str = "%";

/// Why a subject is not one a bridge could have written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectError {
    /// It does not start with the prefix and one more token.
    NotUnderPrefix,
    /// A `%` not followed by two upper-case hex digits of a character that is escaped.
    BadEscape,
    /// A wildcard token (`*`, `>`) where a message's subject must name one topic, or an
    /// empty token.
    NotATopic,
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectError::NotUnderPrefix => write!(f, "not under the bridge's prefix"),
            SubjectError::BadEscape => write!(f, "an escape the bridge does not write"),
            SubjectError::NotATopic => write!(f, "not the subject of one topic"),
        }
    }
}

impl std::error::Error for SubjectError {}

/// Whether `character` must be escaped in a subject token.
fn is_escaped(character: char) -> bool {
    matches!(character, '.' | '*' | '>' | '%')
        || character.is_ascii_whitespace()
        || character.is_ascii_control()
}

/// Appends topic level `level` as a subject token.
fn push_token(out: &mut String, level: &str) {
    if level.is_empty() {
        out.push_str(EMPTY_LEVEL);
        return;
    }
    for character in level.chars() {
        if is_escaped(character) {
            out.push_str(&format!("%{:02X}", character as u32));
        } else {
            out.push(character);
        }
    }
}

/// The subject a message published to `topic` goes to.
///
/// ```
/// use pubsub_lab::nats::subject::subject_of;
/// assert_eq!(subject_of("pubsub-lab", "building/3/temp"), "pubsub-lab.building.3.temp");
/// assert_eq!(subject_of("pubsub-lab", "v1.2/a*b//"), "pubsub-lab.v1%2E2.a%2Ab.%.%");
/// ```
pub fn subject_of(prefix: &str, topic: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + topic.len() + 8);
    subject.push_str(prefix);
    for level in topic.split(LEVEL_SEPARATOR) {
        subject.push('.');
        push_token(&mut subject, level);
    }
    subject
}

/// The subjects to subscribe to on NATS for local subscribers of `filter` (a valid filter,
/// or a plain topic): one, or two for a filter ending in `#` (see the module docs).
///
/// ```
/// use pubsub_lab::nats::subject::subjects_of_filter;
/// assert_eq!(subjects_of_filter("p", "room/+/temp"), ["p.room.*.temp"]);
/// assert_eq!(subjects_of_filter("p", "room/#"), ["p.room", "p.room.>"]);
/// assert_eq!(subjects_of_filter("p", "#"), ["p.>"]);
/// ```
pub fn subjects_of_filter(prefix: &str, filter: &str) -> Vec<String> {
    let mut subject = String::with_capacity(prefix.len() + filter.len() + 8);
    subject.push_str(prefix);
    let mut levels = filter.split(LEVEL_SEPARATOR).peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level == ALL_LEVELS && is_last {
            // `x/#` also matches `x` itself; `#` alone matches every topic, and every
            // topic has at least one level, which `>` needs.
            let parent = (subject.len() > prefix.len()).then(|| subject.clone());
            subject.push_str(".>");
            return parent.into_iter().chain([subject]).collect();
        }
        subject.push('.');
        if level == ONE_LEVEL {
            subject.push('*');
        } else {
            push_token(&mut subject, level);
        }
    }
    vec![subject]
}

/// The topic of a message that arrived on `subject`: the reverse of [`subject_of`].
///
/// ```
/// use pubsub_lab::nats::subject::topic_of;
/// assert_eq!(topic_of("pubsub-lab", "pubsub-lab.v1%2E2.a%2Ab.%.%").unwrap(), "v1.2/a*b//");
/// assert!(topic_of("pubsub-lab", "other.news").is_err());
/// ```
///
/// # Errors
/// [`SubjectError`]: not a subject [`subject_of`] writes under `prefix`.
pub fn topic_of(prefix: &str, subject: &str) -> Result<String, SubjectError> {
    let rest = subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or(SubjectError::NotUnderPrefix)?;
    let mut topic = String::with_capacity(rest.len());
    for (index, token) in rest.split('.').enumerate() {
        if index > 0 {
            topic.push(LEVEL_SEPARATOR);
        }
        push_level(&mut topic, token)?;
    }
    Ok(topic)
}

/// Appends subject token `token` as a topic level.
fn push_level(topic: &mut String, token: &str) -> Result<(), SubjectError> {
    if token == EMPTY_LEVEL {
        return Ok(());
    }
    if token.is_empty() || token == "*" || token == ">" {
        return Err(SubjectError::NotATopic);
    }
    let mut characters = token.chars();
    while let Some(character) = characters.next() {
        if character != '%' {
            if is_escaped(character) {
                return Err(SubjectError::BadEscape);
            }
            topic.push(character);
            continue;
        }
        let hex: String = characters.by_ref().take(2).collect();
        let canonical = hex.len() == 2
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        let decoded = u8::from_str_radix(&hex, 16).ok().map(char::from);
        match decoded {
            Some(decoded) if canonical && is_escaped(decoded) => topic.push(decoded),
            _ => return Err(SubjectError::BadEscape),
        }
    }
    Ok(())
}

/// Whether a subject has a wildcard token (`*` or `>`).
pub fn has_wildcard(subject: &str) -> bool {
    subject.split('.').any(|token| token == "*" || token == ">")
}

/// Whether NATS delivers a message on `subject` to a subscription to `pattern`: `*` is
/// any one token, `>` one or more.
///
/// ```
/// use pubsub_lab::nats::subject::matches;
/// assert!(matches("p.news.*", "p.news.tech"));
/// assert!(matches("p.news.>", "p.news.tech.ai"));
/// assert!(!matches("p.news.>", "p.news"));
/// ```
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in pattern.split('.') {
        match (wanted, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (wanted, Some(token)) if wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_character_goes_there_and_back() {
        let topics = [
            "news",
            "building/3/room/301/temperature",
            "a.b",
            "a*b",
            "a>b",
            "100%",
            "%2E",
            "*",
            ">",
            "/",
            "//",
            "/a/",
            "a//b",
            "%",
            "$SYS/broker",
            "café/☕",
            ".*>%",
        ];
        for topic in topics {
            let subject = subject_of("pubsub-lab", topic);
            assert!(
                subject
                    .split('.')
                    .all(|token| !token.is_empty() && token != "*" && token != ">"),
                "{topic:?} gave {subject:?}, which has an empty or wildcard token"
            );
            assert!(!subject.contains(char::is_whitespace));
            assert_eq!(
                topic_of("pubsub-lab", &subject).as_deref(),
                Ok(topic),
                "via {subject:?}"
            );
        }
        assert_eq!(subject_of("p", "a.b"), "p.a%2Eb");
        assert_eq!(subject_of("p", "/"), "p.%.%");
        assert_eq!(subject_of("p", "100%"), "p.100%25");
    }

    #[test]
    fn only_subjects_the_bridge_writes_are_read() {
        for subject in [
            "p.a%2eb", "p.a%2", "p.a%41", "p.%ZZ", "p.a%", "p..a", "p.*", "p.a.>",
        ] {
            assert!(topic_of("p", subject).is_err(), "{subject:?} was read");
        }
        assert_eq!(topic_of("p", "p"), Err(SubjectError::NotUnderPrefix));
        assert_eq!(topic_of("p", "px.a"), Err(SubjectError::NotUnderPrefix));
        assert_eq!(topic_of("campus.lab", "campus.lab.x").as_deref(), Ok("x"));
    }

    #[test]
    fn filters_become_nats_wildcards() {
        assert_eq!(subjects_of_filter("p", "news"), ["p.news"]);
        assert_eq!(subjects_of_filter("p", "+/+"), ["p.*.*"]);
        assert_eq!(
            subjects_of_filter("p", "+/a.b/#"),
            ["p.*.a%2Eb", "p.*.a%2Eb.>"]
        );
        assert_eq!(subjects_of_filter("p", "a//+"), ["p.a.%.*"]);
    }
}
