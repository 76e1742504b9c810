//! The wire protocol: lines of text in, [`Command`]s out; [`Reply`]s and deliveries in, lines out.
//!
//! This is the *message* layer. It never touches a socket: [`crate::framing`] cuts the byte
//! stream into lines, this module turns one line into a value (or a [`ProtocolError`]) and
//! one value back into a line, and `session.rs` decides what to do with it. Because
//! everything here works on plain strings, every rule of the protocol is unit-tested at the
//! bottom of this file without opening a connection.
//!
//! Version 1 is the protocol of the classic classroom broker (port 9000), byte for byte:
//!
//! ```text
//! client -> broker   SUBSCRIBE <topic> <subscriber_id>
//! client -> broker   UNSUBSCRIBE <topic> <subscriber_id>
//! client -> broker   PUBLISH <topic> <message> <publisher_id>
//! broker -> client   DELIVER <topic> <message> <publisher_id> <YYYY-MM-DD HH:MM:SS>
//! ```
//!
//! Everything else (`HELP`, `PING`, `TOPICS`, `STATS`, `VERBOSE`, `QUIT`, and the `OK`,
//! `PONG`, `BYE` and `ERROR` replies) is an extension. A classic client never sends those
//! commands and never sends a malformed line, so it never sees an extension reply: the
//! extensions are invisible to it. The full reference is `labsheet/protocol.md`.

use std::fmt;

/// The port the classic classroom broker listened on, kept so that old clients work unchanged.
pub const DEFAULT_PORT: u16 = 9000;

/// Whether a byte separates tokens: a space or a tab. Runs of them count as one separator,
/// so a student typing `SUBSCRIBE  weather\tme` by hand is understood.
///
/// The helpers below search for separators byte by byte. Both are ASCII, and in UTF-8 an
/// ASCII byte never occurs inside another character, so every position they find is a
/// character boundary where a `&str` may be cut. (Searching with a `char` pattern gives the
/// same answers but decodes every character on the way, which showed up in profiles: the
/// broker parses millions of lines a second.)
fn is_separator(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn trim_start_separators(text: &str) -> &str {
    let skip = text.bytes().take_while(|&b| is_separator(b)).count();
    &text[skip..]
}

fn trim_end_separators(text: &str) -> &str {
    let keep = text.len() - text.bytes().rev().take_while(|&b| is_separator(b)).count();
    &text[..keep]
}

/// What `HELP` answers: one line per command, `<syntax>  <what it does>`.
pub const HELP_LINES: [&str; 9] = [
    "SUBSCRIBE <topic> <subscriber_id>          receive every message published to <topic>",
    "UNSUBSCRIBE <topic> <subscriber_id>        stop receiving <topic>",
    "PUBLISH <topic> <message> <publisher_id>   send <message> to every subscriber of <topic>",
    "PING [token]                               the broker answers PONG [token]",
    "TOPICS                                     list topics with their number of subscribers",
    "STATS                                      broker counters, one 'name value' per line",
    "VERBOSE on|off                             acknowledge every accepted command with OK",
    "QUIT                                       the broker answers BYE and closes",
    "HELP                                       this list",
];

/// One command sent by a client, borrowing its text from the line it was parsed from.
///
/// Borrowing (`&'a str`) instead of owning (`String`) means parsing a `PUBLISH` allocates
/// nothing: the broker handles hundreds of thousands of them a second, and each one would
/// otherwise cost three allocations only to be thrown away microseconds later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// Start receiving a topic on this connection.
    ///
    /// ```text
    /// SUBSCRIBE weather sub1
    /// ```
    Subscribe {
        /// The topic to receive.
        topic: &'a str,
        /// The id the client calls itself. It names the client in logs; it is not a key.
        subscriber_id: &'a str,
    },
    /// Stop receiving a topic on this connection. Unsubscribing something never subscribed
    /// is not an error.
    ///
    /// ```text
    /// UNSUBSCRIBE weather sub1
    /// ```
    Unsubscribe {
        /// The topic to stop receiving.
        topic: &'a str,
        /// The id the client calls itself.
        subscriber_id: &'a str,
    },
    /// Send a message to every connection subscribed to a topic.
    ///
    /// ```text
    /// PUBLISH weather Rainy   day ahead! pub1
    /// ```
    ///
    /// The message is everything between the topic and the last token, byte for byte
    /// (here `Rainy   day ahead!`, inner spaces kept).
    Publish {
        /// The topic to publish to.
        topic: &'a str,
        /// The message text; may contain spaces, never a newline.
        message: &'a str,
        /// The id the publisher calls itself; the broker passes it on in each `DELIVER`.
        publisher_id: &'a str,
    },
    /// List every command (extension).
    ///
    /// ```text
    /// HELP
    /// ```
    Help,
    /// Ask for a `PONG`, echoing an optional token (extension).
    ///
    /// ```text
    /// PING 42
    /// ```
    Ping {
        /// Echoed back in the `PONG`.
        token: Option<&'a str>,
    },
    /// List topics and their subscriber counts (extension).
    ///
    /// ```text
    /// TOPICS
    /// ```
    Topics,
    /// Show the broker's counters (extension).
    ///
    /// ```text
    /// STATS
    /// ```
    Stats,
    /// Turn acknowledgements on or off for this connection (extension).
    ///
    /// ```text
    /// VERBOSE on
    /// ```
    Verbose {
        /// `true` for `on`.
        on: bool,
    },
    /// Ask the broker to say `BYE` and close the connection (extension).
    ///
    /// ```text
    /// QUIT
    /// ```
    Quit,
}

impl<'a> Command<'a> {
    /// Parses one line (without its `\n`; a trailing `\r` has already been dropped).
    ///
    /// Returns `Ok(None)` for a blank line, which the protocol ignores, and a
    /// [`ProtocolError`] that says what was expected for anything malformed.
    ///
    /// ```
    /// use pubsub_lab::protocol::Command;
    /// let line = b"publish weather Rainy  day pub1";
    /// assert_eq!(
    ///     Command::parse(line),
    ///     Ok(Some(Command::Publish { topic: "weather", message: "Rainy  day", publisher_id: "pub1" }))
    /// );
    /// assert_eq!(Command::parse(b"   "), Ok(None));
    /// ```
    pub fn parse(line: &'a [u8]) -> Result<Option<Command<'a>>, ProtocolError> {
        let line = std::str::from_utf8(line).map_err(|_| ProtocolError::NotUtf8)?;
        let line = trim_end_separators(trim_start_separators(line));
        if line.is_empty() {
            return Ok(None);
        }
        let (word, rest) = split_first_token(line);
        let Some(keyword) = Keyword::find(word) else {
            return Err(ProtocolError::UnknownCommand(shorten(word)));
        };
        let command = match keyword {
            Keyword::Subscribe => {
                let (topic, subscriber_id) = exactly_two(rest, keyword)?;
                Command::Subscribe {
                    topic,
                    subscriber_id,
                }
            }
            Keyword::Unsubscribe => {
                let (topic, subscriber_id) = exactly_two(rest, keyword)?;
                Command::Unsubscribe {
                    topic,
                    subscriber_id,
                }
            }
            Keyword::Publish => parse_publish(rest)?,
            Keyword::Help => no_arguments(rest, keyword, Command::Help)?,
            Keyword::Ping => parse_ping(rest)?,
            Keyword::Topics => no_arguments(rest, keyword, Command::Topics)?,
            Keyword::Stats => no_arguments(rest, keyword, Command::Stats)?,
            Keyword::Verbose => parse_verbose(rest)?,
            Keyword::Quit => no_arguments(rest, keyword, Command::Quit)?,
        };
        Ok(Some(command))
    }

    /// The id the client gave in this command, for the commands that carry one.
    pub fn client_id(&self) -> Option<&'a str> {
        match *self {
            Command::Subscribe { subscriber_id, .. }
            | Command::Unsubscribe { subscriber_id, .. } => Some(subscriber_id),
            Command::Publish { publisher_id, .. } => Some(publisher_id),
            _ => None,
        }
    }

    /// Appends this command as one wire line, `\n` included. Clients use it to send.
    ///
    /// ```
    /// use pubsub_lab::protocol::Command;
    /// let mut line = Vec::new();
    /// Command::Subscribe { topic: "weather", subscriber_id: "sub1" }.write_line(&mut line);
    /// assert_eq!(line, b"SUBSCRIBE weather sub1\n");
    /// ```
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let text = match self {
            Command::Subscribe {
                topic,
                subscriber_id,
            } => {
                format!("SUBSCRIBE {topic} {subscriber_id}")
            }
            Command::Unsubscribe {
                topic,
                subscriber_id,
            } => {
                format!("UNSUBSCRIBE {topic} {subscriber_id}")
            }
            Command::Publish {
                topic,
                message,
                publisher_id,
            } => {
                format!("PUBLISH {topic} {message} {publisher_id}")
            }
            Command::Help => "HELP".to_string(),
            Command::Ping { token: Some(token) } => format!("PING {token}"),
            Command::Ping { token: None } => "PING".to_string(),
            Command::Topics => "TOPICS".to_string(),
            Command::Stats => "STATS".to_string(),
            Command::Verbose { on } => format!("VERBOSE {}", if *on { "on" } else { "off" }),
            Command::Quit => "QUIT".to_string(),
        };
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
}

/// Splits off the first token: `("SUBSCRIBE", "weather sub1")`. The rest keeps its
/// leading separators trimmed, and is empty when there is no second token.
fn split_first_token(text: &str) -> (&str, &str) {
    match text.bytes().position(is_separator) {
        Some(end) => (&text[..end], trim_start_separators(&text[end..])),
        None => (text, ""),
    }
}

fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split([' ', '\t']).filter(|token| !token.is_empty())
}

fn exactly_two(rest: &str, keyword: Keyword) -> Result<(&str, &str), ProtocolError> {
    let mut parts = tokens(rest);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(first), Some(second), None) => Ok((first, second)),
        _ => Err(ProtocolError::WrongArguments(keyword)),
    }
}

fn no_arguments<'a>(
    rest: &str,
    keyword: Keyword,
    command: Command<'a>,
) -> Result<Command<'a>, ProtocolError> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(ProtocolError::WrongArguments(keyword))
    }
}

/// `PUBLISH <topic> <message> <publisher_id>`: the topic is the first token, the id the
/// last, and the message is everything in between with its inner spacing untouched.
fn parse_publish(rest: &str) -> Result<Command<'_>, ProtocolError> {
    let wrong = || ProtocolError::WrongArguments(Keyword::Publish);
    let (topic, after_topic) = split_first_token(rest);
    // The id starts after the last separator. The run of separators before it belongs to
    // the gap, not to the message, so it is trimmed off the message's end.
    let id_start = after_topic
        .bytes()
        .rposition(is_separator)
        .ok_or_else(wrong)?
        + 1;
    let publisher_id = &after_topic[id_start..];
    let message = trim_end_separators(&after_topic[..id_start]);
    if topic.is_empty() || message.is_empty() {
        return Err(wrong());
    }
    Ok(Command::Publish {
        topic,
        message,
        publisher_id,
    })
}

fn parse_ping(rest: &str) -> Result<Command<'_>, ProtocolError> {
    let mut parts = tokens(rest);
    match (parts.next(), parts.next()) {
        (token, None) => Ok(Command::Ping { token }),
        _ => Err(ProtocolError::WrongArguments(Keyword::Ping)),
    }
}

fn parse_verbose(rest: &str) -> Result<Command<'_>, ProtocolError> {
    if rest.eq_ignore_ascii_case("on") {
        Ok(Command::Verbose { on: true })
    } else if rest.eq_ignore_ascii_case("off") {
        Ok(Command::Verbose { on: false })
    } else {
        Err(ProtocolError::WrongArguments(Keyword::Verbose))
    }
}

/// Keeps error messages one readable line even when the offending word is a pasted file:
/// at most 32 characters, with control characters shown as escapes (`\u{0}`) rather than
/// sent back raw to the client's terminal.
fn shorten(word: &str) -> String {
    const MAX_CHARS: usize = 32;
    let mut shown: String = word
        .chars()
        .take(MAX_CHARS)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if word.chars().count() > MAX_CHARS {
        shown.push_str("...");
    }
    shown
}

/// A command word. Its `Display` is the command's syntax, which is what an `ERROR` for
/// wrong arguments shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// `SUBSCRIBE <topic> <subscriber_id>`
    Subscribe,
    /// `UNSUBSCRIBE <topic> <subscriber_id>`
    Unsubscribe,
    /// `PUBLISH <topic> <message> <publisher_id>`
    Publish,
    /// `HELP`
    Help,
    /// `PING [token]`
    Ping,
    /// `TOPICS`
    Topics,
    /// `STATS`
    Stats,
    /// `VERBOSE on|off`
    Verbose,
    /// `QUIT`
    Quit,
}

impl Keyword {
    const ALL: [(&'static str, Keyword); 9] = [
        ("PUBLISH", Keyword::Publish),
        ("SUBSCRIBE", Keyword::Subscribe),
        ("UNSUBSCRIBE", Keyword::Unsubscribe),
        ("HELP", Keyword::Help),
        ("PING", Keyword::Ping),
        ("TOPICS", Keyword::Topics),
        ("STATS", Keyword::Stats),
        ("VERBOSE", Keyword::Verbose),
        ("QUIT", Keyword::Quit),
    ];

    /// The keyword `word` names, in any letter case, as the classic broker accepted
    /// (`subscribe` typed by hand works). Topics and ids, by contrast, are case-sensitive.
    ///
    /// Comparing in place, instead of upper-casing a copy of the word first, keeps parsing
    /// free of allocations; `PUBLISH` comes first because it is by far the most common.
    pub fn find(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .iter()
            .find(|(name, _)| word.eq_ignore_ascii_case(name))
            .map(|&(_, keyword)| keyword)
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Keyword::Subscribe => "SUBSCRIBE <topic> <subscriber_id>",
            Keyword::Unsubscribe => "UNSUBSCRIBE <topic> <subscriber_id>",
            Keyword::Publish => "PUBLISH <topic> <message> <publisher_id>",
            Keyword::Help => "HELP",
            Keyword::Ping => "PING [token]",
            Keyword::Topics => "TOPICS",
            Keyword::Stats => "STATS",
            Keyword::Verbose => "VERBOSE on|off",
            Keyword::Quit => "QUIT",
        })
    }
}

/// Why a line was refused. The broker answers each with one `ERROR <reason>` line, where
/// the reason is this value's `Display`, and then reads the next line as usual: a protocol
/// error never ends a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The first word is not a command. Usually a typo; the reply lists the commands.
    UnknownCommand(String),
    /// A known command with too few or too many tokens; the reply shows the syntax.
    WrongArguments(Keyword),
    /// The line is not UTF-8 text (a binary file pasted into `nc`, say).
    NotUtf8,
    /// The line was longer than the broker's limit; it was discarded without being stored.
    LineTooLong {
        /// The limit in bytes (`--max-line-bytes`).
        limit: usize,
    },
    /// A topic longer than the broker accepts.
    TopicTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A subscriber or publisher id longer than the broker accepts.
    IdTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// This connection already holds the most subscriptions one connection may have.
    TooManySubscriptions {
        /// The limit per connection.
        limit: usize,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnknownCommand(word) => write!(
                f,
                "unknown command '{word}': expected SUBSCRIBE, UNSUBSCRIBE or PUBLISH (send HELP for all commands)"
            ),
            ProtocolError::WrongArguments(usage) => {
                write!(f, "wrong number of arguments: expected {usage}")
            }
            ProtocolError::NotUtf8 => {
                write!(f, "line is not valid UTF-8 text: send commands as plain text")
            }
            ProtocolError::LineTooLong { limit } => write!(
                f,
                "line longer than {limit} bytes was discarded: send shorter messages"
            ),
            ProtocolError::TopicTooLong { limit } => {
                write!(f, "topic longer than {limit} bytes: use a shorter topic")
            }
            ProtocolError::IdTooLong { limit } => write!(
                f,
                "subscriber or publisher id longer than {limit} bytes: use a shorter id"
            ),
            ProtocolError::TooManySubscriptions { limit } => write!(
                f,
                "too many subscriptions on this connection (limit {limit}): unsubscribe from some first"
            ),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A reply the broker sends to the client whose command it answers (never to others).
///
/// Every reply starts with a word that no other line starts with, so a client can tell a
/// reply from a `DELIVER` by its first word alone. Multi-line replies (`HELP`, `TOPICS`,
/// `STATS`) repeat their command word at the start of each line and end with
/// `END <command>`:
///
/// ```text
/// TOPICS weather 2
/// TOPICS news 1
/// END TOPICS
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `ERROR <reason>`: the line was refused; the connection carries on.
    Error(&'a ProtocolError),
    /// `OK SUBSCRIBE <topic>`, sent in verbose mode only.
    SubscribeOk(&'a str),
    /// `OK UNSUBSCRIBE <topic>`, sent in verbose mode only.
    UnsubscribeOk(&'a str),
    /// `OK PUBLISH <topic> <deliveries>`, sent in verbose mode only.
    PublishOk {
        /// The topic published to.
        topic: &'a str,
        /// How many connections the message was handed to.
        deliveries: usize,
    },
    /// `OK VERBOSE on|off`, the answer to `VERBOSE` (sent whatever the mode was).
    VerboseOk(bool),
    /// `PONG [token]`.
    Pong(Option<&'a str>),
    /// The `HELP` listing.
    Help,
    /// `TOPICS <topic> <subscribers>` lines, then `END TOPICS`.
    Topics(&'a [(String, usize)]),
    /// `STATS <name> <value>` lines, then `END STATS`.
    Stats(&'a [(&'static str, u64)]),
    /// `BYE`, just before the broker closes the connection after `QUIT`.
    Bye,
}

impl Reply<'_> {
    /// Appends the reply as wire lines, each ending in `\n`.
    ///
    /// ```
    /// use pubsub_lab::protocol::Reply;
    /// let mut out = Vec::new();
    /// Reply::Pong(Some("42")).write_lines(&mut out);
    /// Reply::Topics(&[("weather".to_string(), 2)]).write_lines(&mut out);
    /// assert_eq!(out, b"PONG 42\nTOPICS weather 2\nEND TOPICS\n");
    /// ```
    pub fn write_lines(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing into a Vec cannot fail, so the `let _ =` below loses nothing.
        let _ = match self {
            Reply::Error(reason) => writeln!(out, "ERROR {reason}"),
            Reply::SubscribeOk(topic) => writeln!(out, "OK SUBSCRIBE {topic}"),
            Reply::UnsubscribeOk(topic) => writeln!(out, "OK UNSUBSCRIBE {topic}"),
            Reply::PublishOk { topic, deliveries } => {
                writeln!(out, "OK PUBLISH {topic} {deliveries}")
            }
            Reply::VerboseOk(on) => writeln!(out, "OK VERBOSE {}", if *on { "on" } else { "off" }),
            Reply::Pong(Some(token)) => writeln!(out, "PONG {token}"),
            Reply::Pong(None) => writeln!(out, "PONG"),
            Reply::Help => {
                for line in HELP_LINES {
                    let _ = writeln!(out, "HELP {line}");
                }
                writeln!(out, "END HELP")
            }
            Reply::Topics(topics) => {
                for (topic, subscribers) in topics.iter() {
                    let _ = writeln!(out, "TOPICS {topic} {subscribers}");
                }
                writeln!(out, "END TOPICS")
            }
            Reply::Stats(counters) => {
                for (name, value) in counters.iter() {
                    let _ = writeln!(out, "STATS {name} {value}");
                }
                writeln!(out, "END STATS")
            }
            Reply::Bye => writeln!(out, "BYE"),
        };
    }
}

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

/// One message as a subscriber receives it, parsed from a `DELIVER` line.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Option<Command<'_>>, ProtocolError> {
        Command::parse(line.as_bytes())
    }

    #[test]
    fn the_three_classic_commands_parse() {
        assert_eq!(
            parse("SUBSCRIBE weather sub1"),
            Ok(Some(Command::Subscribe {
                topic: "weather",
                subscriber_id: "sub1"
            }))
        );
        assert_eq!(
            parse("UNSUBSCRIBE weather sub1"),
            Ok(Some(Command::Unsubscribe {
                topic: "weather",
                subscriber_id: "sub1"
            }))
        );
        assert_eq!(
            parse("PUBLISH weather Rainy day ahead! pub1"),
            Ok(Some(Command::Publish {
                topic: "weather",
                message: "Rainy day ahead!",
                publisher_id: "pub1"
            }))
        );
    }

    #[test]
    fn command_words_ignore_case_but_topics_do_not() {
        assert_eq!(
            parse("subscribe Weather Sub1"),
            Ok(Some(Command::Subscribe {
                topic: "Weather",
                subscriber_id: "Sub1"
            }))
        );
    }

    #[test]
    fn runs_of_spaces_and_tabs_separate_tokens() {
        assert_eq!(
            parse("  SUBSCRIBE \t weather\t\tsub1  "),
            Ok(Some(Command::Subscribe {
                topic: "weather",
                subscriber_id: "sub1"
            }))
        );
    }

    #[test]
    fn a_message_keeps_its_inner_spacing_byte_for_byte() {
        assert_eq!(
            parse("PUBLISH t  a   b\tc  p"),
            Ok(Some(Command::Publish {
                topic: "t",
                message: "a   b\tc",
                publisher_id: "p"
            }))
        );
    }

    #[test]
    fn blank_lines_are_ignored() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse(" \t "), Ok(None));
    }

    #[test]
    fn wrong_token_counts_say_what_was_expected() {
        let expect = |line, usage| {
            assert_eq!(
                parse(line),
                Err(ProtocolError::WrongArguments(usage)),
                "{line}"
            );
        };
        expect("SUBSCRIBE weather", Keyword::Subscribe);
        expect("SUBSCRIBE weather sub1 extra", Keyword::Subscribe);
        expect("UNSUBSCRIBE", Keyword::Unsubscribe);
        expect("PUBLISH weather pub1", Keyword::Publish);
        expect("PUBLISH", Keyword::Publish);
        expect("PING a b", Keyword::Ping);
        expect("VERBOSE maybe", Keyword::Verbose);
        expect("TOPICS now", Keyword::Topics);
        let reason = ProtocolError::WrongArguments(Keyword::Subscribe).to_string();
        assert_eq!(
            reason,
            "wrong number of arguments: expected SUBSCRIBE <topic> <subscriber_id>"
        );
    }

    #[test]
    fn unknown_commands_name_the_word_and_the_commands() {
        let error = parse("PUBLSH weather hi pub1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown command 'PUBLSH': expected SUBSCRIBE, UNSUBSCRIBE or PUBLISH (send HELP for all commands)"
        );
    }

    #[test]
    fn a_huge_unknown_word_is_shortened_in_the_reply() {
        let word = "X".repeat(1000);
        let reason = parse(&word).unwrap_err().to_string();
        assert!(reason.len() < 200, "{reason}");
    }

    #[test]
    fn control_characters_are_not_echoed_raw() {
        let reason = parse("\u{0}\u{1b}[2J").unwrap_err().to_string();
        assert!(
            reason.starts_with("unknown command '\\u{0}\\u{1b}[2J'"),
            "{reason}"
        );
    }

    #[test]
    fn non_utf8_is_an_error_value() {
        assert_eq!(
            Command::parse(b"PUBLISH t \xff\xfe p"),
            Err(ProtocolError::NotUtf8)
        );
    }

    #[test]
    fn extension_commands_parse() {
        assert_eq!(parse("help"), Ok(Some(Command::Help)));
        assert_eq!(parse("PING"), Ok(Some(Command::Ping { token: None })));
        assert_eq!(
            parse("ping 7"),
            Ok(Some(Command::Ping { token: Some("7") }))
        );
        assert_eq!(parse("Topics"), Ok(Some(Command::Topics)));
        assert_eq!(parse("STATS"), Ok(Some(Command::Stats)));
        assert_eq!(parse("VERBOSE On"), Ok(Some(Command::Verbose { on: true })));
        assert_eq!(
            parse("verbose off"),
            Ok(Some(Command::Verbose { on: false }))
        );
        assert_eq!(parse("QUIT"), Ok(Some(Command::Quit)));
    }

    #[test]
    fn commands_round_trip_through_their_line() {
        let commands = [
            Command::Subscribe {
                topic: "a",
                subscriber_id: "b",
            },
            Command::Unsubscribe {
                topic: "a",
                subscriber_id: "b",
            },
            Command::Publish {
                topic: "a",
                message: "x  y",
                publisher_id: "p",
            },
            Command::Help,
            Command::Ping { token: None },
            Command::Ping { token: Some("t") },
            Command::Topics,
            Command::Stats,
            Command::Verbose { on: true },
            Command::Verbose { on: false },
            Command::Quit,
        ];
        for command in commands {
            let mut line = Vec::new();
            command.write_line(&mut line);
            assert_eq!(line.pop(), Some(b'\n'));
            assert_eq!(Command::parse(&line), Ok(Some(command)));
        }
    }

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
    }

    #[test]
    fn replies_never_start_like_a_delivery() {
        let error = ProtocolError::NotUtf8;
        let topics = [("DELIVER".to_string(), 1)];
        let stats = [("published", 3)];
        let replies = [
            Reply::Error(&error),
            Reply::SubscribeOk("DELIVER"),
            Reply::UnsubscribeOk("t"),
            Reply::PublishOk {
                topic: "t",
                deliveries: 2,
            },
            Reply::VerboseOk(true),
            Reply::Pong(Some("DELIVER")),
            Reply::Help,
            Reply::Topics(&topics),
            Reply::Stats(&stats),
            Reply::Bye,
        ];
        for reply in replies {
            let mut out = Vec::new();
            reply.write_lines(&mut out);
            for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(
                    !line.starts_with(b"DELIVER"),
                    "{:?}",
                    String::from_utf8_lossy(line)
                );
            }
        }
    }

    #[test]
    fn multi_line_replies_end_with_their_terminator() {
        let mut out = Vec::new();
        Reply::Help.write_lines(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), HELP_LINES.len() + 1);
        assert!(text
            .lines()
            .all(|l| l.starts_with("HELP ") || l == "END HELP"));
        assert!(text.ends_with("END HELP\n"));
    }
}
