//! Commands, client to broker: the one table of every command, and parsing a line into a
//! [`Command`].
//!
//! [`COMMANDS`] is the protocol's dictionary. Each entry holds a command's word, its
//! arguments as people read them, what it does, and the function that parses its
//! arguments. Parsing looks the word up there; `HELP` prints the table; an `ERROR` for
//! wrong arguments shows the entry's syntax; the "unknown command" error lists the classic
//! entries. Adding a command is one entry here, one [`Command`] variant, and its handler in
//! the session.

use super::error::{shorten, ProtocolError};
use crate::text;

/// One command of the protocol. See the module docs.
#[derive(Debug)]
pub struct CommandSpec {
    /// The command word, as `HELP` shows it. Matched in any letter case.
    pub word: &'static str,
    /// The arguments, as `HELP` and errors show them: `<topic> <subscriber_id>`.
    pub arguments: &'static str,
    /// What the command does, in a few words, for `HELP`.
    pub summary: &'static str,
    /// Whether the classic classroom broker had it (the three every client knows).
    pub classic: bool,
    /// Parses the arguments (the line after the word, separators trimmed); `None` when
    /// they do not fit [`arguments`](Self::arguments).
    parse: for<'a> fn(&'a str) -> Option<Command<'a>>,
}

impl CommandSpec {
    /// The words a command that takes one of a few takes (`on|off`: `on`, `off`); none for
    /// the others.
    pub fn choices(&self) -> Vec<&'static str> {
        let fixed = self.arguments.contains('|') && !self.arguments.contains(['<', '[', ' ']);
        if fixed {
            self.arguments.split('|').collect()
        } else {
            Vec::new()
        }
    }

    /// The whole syntax: `SUBSCRIBE <topic> <subscriber_id>`.
    pub fn syntax(&self) -> String {
        if self.arguments.is_empty() {
            self.word.to_string()
        } else {
            format!("{} {}", self.word, self.arguments)
        }
    }

    /// The entry whose word is `word`, in any letter case, as the classic broker accepted
    /// (`subscribe` typed by hand works). Topics and ids, by contrast, are case-sensitive.
    ///
    /// Comparing in place, instead of upper-casing a copy of the word first, keeps parsing
    /// free of allocations; words of another length are skipped at the first comparison.
    pub fn find(word: &str) -> Option<&'static CommandSpec> {
        COMMANDS
            .iter()
            .chain([&AUTH])
            .find(|spec| word.eq_ignore_ascii_case(spec.word))
    }
}

impl PartialEq for CommandSpec {
    fn eq(&self, other: &CommandSpec) -> bool {
        self.word == other.word
    }
}

impl Eq for CommandSpec {}

/// Every command, in the order `HELP` lists them. See the module docs.
pub const COMMANDS: [CommandSpec; 16] = [
    CommandSpec {
        word: "SUBSCRIBE",
        arguments: "<topic> <subscriber_id>",
        summary: "receive every message published to <topic> (wildcards: + one level, # all below)",
        classic: true,
        parse: parse_subscribe,
    },
    CommandSpec {
        word: "UNSUBSCRIBE",
        arguments: "<topic> <subscriber_id>",
        summary: "stop receiving <topic> (with no arguments: every topic)",
        classic: true,
        parse: parse_unsubscribe,
    },
    CommandSpec {
        word: "PUBLISH",
        arguments: "<topic> <message> <publisher_id>",
        summary: "send <message> to every subscriber of <topic>",
        classic: true,
        parse: parse_publish,
    },
    CommandSpec {
        word: "RETAIN",
        arguments: "<topic> <message> <publisher_id>",
        summary: "publish, and keep <message> for every later subscriber of <topic>",
        classic: false,
        parse: parse_retain,
    },
    CommandSpec {
        word: "UNRETAIN",
        arguments: "<topic> <publisher_id>",
        summary: "forget the message kept for <topic>",
        classic: false,
        parse: parse_unretain,
    },
    CommandSpec {
        word: "DURABLE",
        arguments: "<filter> <subscriber_id>",
        summary: "start or resume a durable subscription: MESSAGE lines, kept until ACKed",
        classic: false,
        parse: parse_durable,
    },
    CommandSpec {
        word: "ACK",
        arguments: "<seq>",
        summary: "acknowledge MESSAGE <seq>: the broker will not send it again",
        classic: false,
        parse: parse_ack,
    },
    CommandSpec {
        word: "CANCEL",
        arguments: "<filter> <subscriber_id>",
        summary: "end a durable subscription, dropping the messages it holds",
        classic: false,
        parse: parse_cancel,
    },
    CommandSpec {
        word: "PING",
        arguments: "[token]",
        summary: "the broker answers PONG [token]",
        classic: false,
        parse: parse_ping,
    },
    CommandSpec {
        word: "TOPICS",
        arguments: "[filter]",
        summary: "list topics (matching [filter]) with their subscribers",
        classic: false,
        parse: parse_topics,
    },
    CommandSpec {
        word: "CLIENTS",
        arguments: "[filter]",
        summary: "list clients (matching a #number, state, id or topic) and what each does",
        classic: false,
        parse: |rest| one_optional(rest).map(|filter| Command::Clients { filter }),
    },
    CommandSpec {
        word: "KICK",
        arguments: "<client>",
        summary: "close client <client> (its CLIENTS number), telling it why: instructors",
        classic: false,
        parse: |rest| one_optional(rest)?.map(|client| Command::Kick { client }),
    },
    CommandSpec {
        word: "STATS",
        arguments: "",
        summary: "broker counters, one 'name value' per line",
        classic: false,
        parse: |rest| rest.is_empty().then_some(Command::Stats),
    },
    CommandSpec {
        word: "VERBOSE",
        arguments: "on|off",
        summary: "acknowledge every accepted command with OK",
        classic: false,
        parse: parse_verbose,
    },
    CommandSpec {
        word: "QUIT",
        arguments: "",
        summary: "the broker answers BYE and closes",
        classic: false,
        parse: |rest| rest.is_empty().then_some(Command::Quit),
    },
    CommandSpec {
        word: "HELP",
        arguments: "",
        summary: "this list",
        classic: false,
        parse: |rest| rest.is_empty().then_some(Command::Help),
    },
];

/// `AUTH`, apart from [`COMMANDS`]: `HELP` lists it only on a broker that asks for it
/// (`--auth-file`), so a broker without access control shows the classic table unchanged.
pub const AUTH: CommandSpec = CommandSpec {
    word: "AUTH",
    arguments: "<user> <secret>",
    summary: "say who you are, first, on a broker with access control",
    classic: false,
    parse: |rest| {
        exactly_two(rest).map(|(user, secret)| Command::Auth {
            user,
            secret: Secret(secret),
        })
    },
};

/// A secret as `AUTH` carries it. Its `Debug` never shows it, so logging a command (as
/// `RUST_LOG=debug` does) cannot leak one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret<'a>(pub &'a str);

impl std::fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

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
    /// Stop receiving every topic this connection subscribed to (extension: `UNSUBSCRIBE`
    /// with no arguments, as in Redis). The connection stays open and may subscribe again.
    ///
    /// ```text
    /// UNSUBSCRIBE
    /// ```
    UnsubscribeAll,
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
    /// Publish like `PUBLISH`, and keep the message as the topic's retained one, replacing
    /// the one before: every later subscription to the topic (or to a filter matching it)
    /// receives it at once (extension, MQTT's retained messages).
    ///
    /// ```text
    /// RETAIN sensors/kitchen/temp 21.5 sensor7
    /// ```
    Retain {
        /// The topic to publish to.
        topic: &'a str,
        /// The message text, as for `PUBLISH`.
        message: &'a str,
        /// The id the publisher calls itself.
        publisher_id: &'a str,
    },
    /// Forget a topic's retained message (extension). Forgetting one that is not there is
    /// not an error.
    ///
    /// ```text
    /// UNRETAIN sensors/kitchen/temp sensor7
    /// ```
    Unretain {
        /// The topic whose retained message goes.
        topic: &'a str,
        /// The id the client calls itself.
        publisher_id: &'a str,
    },
    /// Start, or resume, the durable subscription of `subscriber_id` to `filter`
    /// (extension). It belongs to the id, not to the connection: it keeps collecting
    /// messages while nobody holds it. The broker answers `OK DURABLE <filter> <pending>`,
    /// then sends the pending messages as `MESSAGE` lines.
    ///
    /// ```text
    /// DURABLE orders/# shop1
    /// ```
    Durable {
        /// The topic or filter.
        filter: &'a str,
        /// Whose subscription it is.
        subscriber_id: &'a str,
    },
    /// Acknowledge one message received on a durable subscription (extension).
    ///
    /// ```text
    /// ACK 17
    /// ```
    Ack {
        /// The seq of its `MESSAGE` line, as sent (checked by the session, so that a bad
        /// one gets its own error).
        seq: &'a str,
    },
    /// End a durable subscription, dropping what it holds (extension).
    ///
    /// ```text
    /// CANCEL orders/# shop1
    /// ```
    Cancel {
        /// The topic or filter.
        filter: &'a str,
        /// Whose subscription it is.
        subscriber_id: &'a str,
    },
    /// Ask for a `PONG`, echoing an optional token (extension).
    ///
    /// ```text
    /// PING 42
    /// ```
    Ping {
        /// Echoed back in the `PONG`.
        token: Option<&'a str>,
    },
    /// List topics and their subscriber counts, all of them or those a filter matches
    /// (extension).
    ///
    /// ```text
    /// TOPICS news/#
    /// ```
    Topics {
        /// Only topics this filter matches (see `topic.rs`).
        filter: Option<&'a str>,
    },
    /// List the connected clients and what each is doing, all of them or those a filter
    /// picks (extension; see `clients.rs`): `#3` for a number, `behind` for a state, else
    /// an id a client used or a topic it receives. With an auth file, only an instructor
    /// sees other users' clients.
    ///
    /// ```text
    /// CLIENTS behind
    /// ```
    Clients {
        /// Which clients.
        filter: Option<&'a str>,
    },
    /// Close a client's connection, telling it why (extension; instructors only).
    ///
    /// ```text
    /// KICK 3
    /// ```
    Kick {
        /// Its number, as `CLIENTS` lists it (`3` or `#3`; checked by the session).
        client: &'a str,
    },
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
    /// List every command (extension).
    ///
    /// ```text
    /// HELP
    /// ```
    Help,
    /// Say who the client is, on a broker with `--auth-file` (extension; see `access.rs`).
    ///
    /// ```text
    /// AUTH alice s3cret
    /// ```
    Auth {
        /// The user's name, as in the auth file.
        user: &'a str,
        /// Its secret.
        secret: Secret<'a>,
    },
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
        if let Some(character) = text::line_break_in(line) {
            return Err(ProtocolError::LineBreak(character));
        }
        let line = trim_end_separators(trim_start_separators(line));
        if line.is_empty() {
            return Ok(None);
        }
        let (word, rest) = split_first_token(line);
        let Some(spec) = CommandSpec::find(word) else {
            return Err(ProtocolError::UnknownCommand(shorten(word)));
        };
        match (spec.parse)(rest) {
            Some(command) => Ok(Some(command)),
            // One word where the command takes one of a few (`VERBOSE yes`): the count was
            // right, the word was not, and the answer says which words there are.
            None if !spec.choices().is_empty() && tokens(rest).count() == 1 => {
                Err(ProtocolError::NotAChoice {
                    spec,
                    given: shorten(rest),
                })
            }
            None => Err(ProtocolError::WrongArguments(spec)),
        }
    }

    /// This command's entry in [`COMMANDS`].
    pub fn spec(&self) -> &'static CommandSpec {
        let word = match self {
            Command::Subscribe { .. } => "SUBSCRIBE",
            Command::Unsubscribe { .. } | Command::UnsubscribeAll => "UNSUBSCRIBE",
            Command::Publish { .. } => "PUBLISH",
            Command::Retain { .. } => "RETAIN",
            Command::Unretain { .. } => "UNRETAIN",
            Command::Durable { .. } => "DURABLE",
            Command::Ack { .. } => "ACK",
            Command::Cancel { .. } => "CANCEL",
            Command::Ping { .. } => "PING",
            Command::Topics { .. } => "TOPICS",
            Command::Clients { .. } => "CLIENTS",
            Command::Kick { .. } => "KICK",
            Command::Stats => "STATS",
            Command::Verbose { .. } => "VERBOSE",
            Command::Quit => "QUIT",
            Command::Help => "HELP",
            Command::Auth { .. } => "AUTH",
        };
        CommandSpec::find(word).expect("every command has an entry in COMMANDS")
    }

    /// The id the client gave in this command, for the commands that carry one.
    pub fn client_id(&self) -> Option<&'a str> {
        match *self {
            Command::Subscribe { subscriber_id, .. }
            | Command::Unsubscribe { subscriber_id, .. }
            | Command::Durable { subscriber_id, .. }
            | Command::Cancel { subscriber_id, .. } => Some(subscriber_id),
            Command::Publish { publisher_id, .. }
            | Command::Retain { publisher_id, .. }
            | Command::Unretain { publisher_id, .. } => Some(publisher_id),
            _ => None,
        }
    }

    /// Appends this command as one wire line, `\n` included: its word, then its arguments
    /// separated by single spaces. Clients use it to send.
    ///
    /// ```
    /// use pubsub_lab::protocol::Command;
    /// let mut line = Vec::new();
    /// Command::Subscribe { topic: "weather", subscriber_id: "sub1" }.write_line(&mut line);
    /// assert_eq!(line, b"SUBSCRIBE weather sub1\n");
    /// ```
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.spec().word.as_bytes());
        let arguments: [Option<&str>; 3] = match *self {
            Command::Subscribe {
                topic,
                subscriber_id,
            }
            | Command::Unsubscribe {
                topic,
                subscriber_id,
            } => [Some(topic), Some(subscriber_id), None],
            Command::Durable {
                filter,
                subscriber_id,
            }
            | Command::Cancel {
                filter,
                subscriber_id,
            } => [Some(filter), Some(subscriber_id), None],
            Command::Ack { seq } => [Some(seq), None, None],
            Command::Publish {
                topic,
                message,
                publisher_id,
            }
            | Command::Retain {
                topic,
                message,
                publisher_id,
            } => [Some(topic), Some(message), Some(publisher_id)],
            Command::Unretain {
                topic,
                publisher_id,
            } => [Some(topic), Some(publisher_id), None],
            Command::Ping { token }
            | Command::Topics { filter: token }
            | Command::Clients { filter: token } => [token, None, None],
            Command::Kick { client } => [Some(client), None, None],
            Command::Verbose { on } => [Some(if on { "on" } else { "off" }), None, None],
            Command::Auth { user, secret } => [Some(user), Some(secret.0), None],
            Command::UnsubscribeAll | Command::Stats | Command::Quit | Command::Help => [None; 3],
        };
        for argument in arguments.into_iter().flatten() {
            out.push(b' ');
            out.extend_from_slice(argument.as_bytes());
        }
        out.push(b'\n');
    }
}

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

fn exactly_two(rest: &str) -> Option<(&str, &str)> {
    let mut parts = tokens(rest);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(first), Some(second), None) => Some((first, second)),
        _ => None,
    }
}

fn parse_subscribe(rest: &str) -> Option<Command<'_>> {
    let (topic, subscriber_id) = exactly_two(rest)?;
    Some(Command::Subscribe {
        topic,
        subscriber_id,
    })
}

fn parse_unsubscribe(rest: &str) -> Option<Command<'_>> {
    if rest.is_empty() {
        return Some(Command::UnsubscribeAll);
    }
    let (topic, subscriber_id) = exactly_two(rest)?;
    Some(Command::Unsubscribe {
        topic,
        subscriber_id,
    })
}

/// `RETAIN <topic> <message> <publisher_id>`: read exactly as `PUBLISH`.
fn parse_retain(rest: &str) -> Option<Command<'_>> {
    match parse_publish(rest)? {
        Command::Publish {
            topic,
            message,
            publisher_id,
        } => Some(Command::Retain {
            topic,
            message,
            publisher_id,
        }),
        _ => None,
    }
}

fn parse_unretain(rest: &str) -> Option<Command<'_>> {
    let (topic, publisher_id) = exactly_two(rest)?;
    Some(Command::Unretain {
        topic,
        publisher_id,
    })
}

/// `PUBLISH <topic> <message> <publisher_id>`: the topic is the first token, the id the
/// last, and the message is everything in between with its inner spacing untouched.
fn parse_publish(rest: &str) -> Option<Command<'_>> {
    let (topic, after_topic) = split_first_token(rest);
    // The id starts after the last separator. The run of separators before it belongs to
    // the gap, not to the message, so it is trimmed off the message's end.
    let id_start = after_topic.bytes().rposition(is_separator)? + 1;
    let publisher_id = &after_topic[id_start..];
    let message = trim_end_separators(&after_topic[..id_start]);
    if topic.is_empty() || message.is_empty() {
        return None;
    }
    Some(Command::Publish {
        topic,
        message,
        publisher_id,
    })
}

fn parse_durable(rest: &str) -> Option<Command<'_>> {
    let (filter, subscriber_id) = exactly_two(rest)?;
    Some(Command::Durable {
        filter,
        subscriber_id,
    })
}

fn parse_cancel(rest: &str) -> Option<Command<'_>> {
    let (filter, subscriber_id) = exactly_two(rest)?;
    Some(Command::Cancel {
        filter,
        subscriber_id,
    })
}

fn parse_ack(rest: &str) -> Option<Command<'_>> {
    let mut parts = tokens(rest);
    match (parts.next(), parts.next()) {
        (Some(seq), None) => Some(Command::Ack { seq }),
        _ => None,
    }
}

fn parse_topics(rest: &str) -> Option<Command<'_>> {
    one_optional(rest).map(|filter| Command::Topics { filter })
}

/// At most one token: `Some(None)` for none, `Some(Some(token))` for one, `None` for more.
fn one_optional(rest: &str) -> Option<Option<&str>> {
    let mut parts = tokens(rest);
    match (parts.next(), parts.next()) {
        (token, None) => Some(token),
        _ => None,
    }
}

fn parse_ping(rest: &str) -> Option<Command<'_>> {
    let mut parts = tokens(rest);
    match (parts.next(), parts.next()) {
        (token, None) => Some(Command::Ping { token }),
        _ => None,
    }
}

fn parse_verbose(rest: &str) -> Option<Command<'_>> {
    if rest.eq_ignore_ascii_case("on") {
        Some(Command::Verbose { on: true })
    } else if rest.eq_ignore_ascii_case("off") {
        Some(Command::Verbose { on: false })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Option<Command<'_>>, ProtocolError> {
        Command::parse(line.as_bytes())
    }

    fn spec(word: &str) -> &'static CommandSpec {
        CommandSpec::find(word).unwrap()
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
    fn unsubscribe_without_arguments_leaves_every_topic_but_one_argument_is_wrong() {
        assert_eq!(parse("UNSUBSCRIBE"), Ok(Some(Command::UnsubscribeAll)));
        assert_eq!(parse("unsubscribe  \t"), Ok(Some(Command::UnsubscribeAll)));
        assert!(parse("UNSUBSCRIBE weather").is_err());
        let mut line = Vec::new();
        Command::UnsubscribeAll.write_line(&mut line);
        assert_eq!(line, b"UNSUBSCRIBE\n");
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
    fn a_word_verbose_does_not_take_gets_the_words_it_takes() {
        let refusal = parse("VERBOSE yes").unwrap_err();
        assert_eq!(
            refusal,
            ProtocolError::NotAChoice {
                spec: spec("VERBOSE"),
                given: "yes".to_string()
            }
        );
        assert_eq!(
            refusal.to_string(),
            "VERBOSE takes on or off, not 'yes': send VERBOSE on or VERBOSE off"
        );
        assert!(spec("PING").choices().is_empty());
        assert!(spec("SUBSCRIBE").choices().is_empty());
    }

    #[test]
    fn wrong_token_counts_say_what_was_expected() {
        let expect = |line, word| {
            assert_eq!(
                parse(line),
                Err(ProtocolError::WrongArguments(spec(word))),
                "{line}"
            );
        };
        expect("SUBSCRIBE weather", "SUBSCRIBE");
        expect("SUBSCRIBE weather sub1 extra", "SUBSCRIBE");
        expect("UNSUBSCRIBE weather", "UNSUBSCRIBE");
        expect("PUBLISH weather pub1", "PUBLISH");
        expect("PUBLISH", "PUBLISH");
        expect("PING a b", "PING");
        expect("TOPICS a b", "TOPICS");
        expect("QUIT now", "QUIT");
        expect("DURABLE orders", "DURABLE");
        expect("ACK", "ACK");
        expect("ACK 1 2", "ACK");
        expect("CANCEL orders", "CANCEL");
        expect("VERBOSE on off", "VERBOSE");
        let reason = ProtocolError::WrongArguments(spec("SUBSCRIBE")).to_string();
        assert_eq!(
            reason,
            "wrong number of arguments: expected SUBSCRIBE <topic> <subscriber_id>"
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
        assert_eq!(parse("Topics"), Ok(Some(Command::Topics { filter: None })));
        assert_eq!(
            parse("TOPICS news/#"),
            Ok(Some(Command::Topics {
                filter: Some("news/#")
            }))
        );
        assert_eq!(parse("STATS"), Ok(Some(Command::Stats)));
        assert_eq!(parse("VERBOSE On"), Ok(Some(Command::Verbose { on: true })));
        assert_eq!(
            parse("verbose off"),
            Ok(Some(Command::Verbose { on: false }))
        );
        assert_eq!(parse("QUIT"), Ok(Some(Command::Quit)));
    }

    #[test]
    fn a_line_break_inside_a_line_is_refused_wherever_it_is() {
        for (line, character) in [
            (
                "PUBLISH news Lab at 9\rDELIVER news FORGED admin 2020-01-01 09:00:00 admin",
                '\r',
            ),
            ("PUBLISH news a\u{2028}b p", '\u{2028}'),
            ("PUBLISH news a\u{85}b p", '\u{85}'),
            ("PUBLISH news a\u{2029}b p", '\u{2029}'),
            ("PUBLISH news a\u{0b}b p", '\u{0b}'),
            ("SUBSCRIBE ne\rws me", '\r'),
            ("PING \r", '\r'),
        ] {
            assert_eq!(
                parse(line),
                Err(ProtocolError::LineBreak(character)),
                "{line:?}"
            );
        }
        assert!(parse("PUBLISH news it's 5°C — “cold” €2 p").is_ok());
        assert!(
            parse("PUBLISH news \u{1b}[31mred\u{1b}[0m p").is_ok(),
            "ESC is relayed"
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
    fn every_table_entry_is_the_spec_of_its_command() {
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
            Command::Retain {
                topic: "t/1",
                message: "21.5  C",
                publisher_id: "p",
            },
            Command::Unretain {
                topic: "t/1",
                publisher_id: "p",
            },
            Command::UnsubscribeAll,
            Command::Durable {
                filter: "orders/#",
                subscriber_id: "shop1",
            },
            Command::Ack { seq: "17" },
            Command::Cancel {
                filter: "orders/#",
                subscriber_id: "shop1",
            },
            Command::Ping { token: None },
            Command::Ping { token: Some("t") },
            Command::Topics { filter: None },
            Command::Topics {
                filter: Some("a/+"),
            },
            Command::Clients { filter: None },
            Command::Clients {
                filter: Some("behind"),
            },
            Command::Kick { client: "3" },
            Command::Stats,
            Command::Verbose { on: true },
            Command::Verbose { on: false },
            Command::Quit,
            Command::Help,
        ];
        for command in commands {
            let mut line = Vec::new();
            command.write_line(&mut line);
            assert_eq!(line.pop(), Some(b'\n'));
            assert_eq!(Command::parse(&line), Ok(Some(command)), "round trip");
            let word = std::str::from_utf8(&line)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            assert_eq!(command.spec().word, word);
        }
        let words: Vec<&str> = commands.iter().map(|c| c.spec().word).collect();
        for spec in &COMMANDS {
            assert!(words.contains(&spec.word), "{} has no command", spec.word);
        }
    }
}
