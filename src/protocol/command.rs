//! Commands, client to broker: the one table of every command, and parsing a line into a
//! [`Command`].
//!
//! [`COMMANDS`] is the protocol's dictionary. Each entry holds a command's word, its
//! arguments (each with its name and its shape on the line), what it does, its action in
//! kn-sock's JSON dialect, and how its arguments become a [`Command`]. Everything about a
//! command's syntax is read from that entry, written once:
//!
//! * parsing a line splits the arguments by their shapes ([`Command::parse`]);
//! * a JSON line's members are found by the same arguments' names (`dialect.rs`);
//! * `HELP` prints the table, and an `ERROR` for wrong arguments shows the entry's syntax;
//! * a client writes a command back as a line from the same entry ([`Command::write_line`]).
//!
//! Adding a command is an entry here, a [`Command`] variant with its line in
//! [`Command::parts`], and its handler in `session/commands/` (one file per command, as
//! mini-redis keeps its `cmd/` folder). Production brokers keep the same idea in other
//! forms: Redis has a command table (`commands.def`) with each command's arity and flags,
//! generated from one JSON file per command.

use super::error::{shorten, ProtocolError};
use crate::{scan, text};

/// One command of the protocol. See the module docs.
#[derive(Debug)]
pub struct CommandSpec {
    /// The command word, as `HELP` shows it. Matched in any letter case.
    pub word: &'static str,
    /// The arguments, in the order the line gives them.
    pub arguments: &'static [Argument],
    /// What the command does, in a few words, for `HELP`.
    pub summary: &'static str,
    /// Whether the classic classroom broker had it (the three every client knows).
    pub classic: bool,
    /// Its action in kn-sock's JSON dialect (`"subscribe"`), if that dialect has it.
    pub json: Option<&'static str>,
    /// What the word means with no arguments at all, when that is not what an empty
    /// argument list means (`UNSUBSCRIBE` alone leaves every topic).
    alone: Option<Command<'static>>,
    /// Builds the command from its arguments, given in the order of
    /// [`arguments`](Self::arguments), each checked against its shape. It borrows them,
    /// so that they are not copied on the way in (see [`split`](Self::split)).
    build: for<'a> fn(&Arguments<'a>) -> Command<'a>,
}

/// One argument of a command: how the line, `HELP` and the JSON dialect name it, and its
/// shape on the line.
#[derive(Debug)]
pub struct Argument {
    /// Its name in `HELP` and errors: `subscriber_id` shows as `<subscriber_id>`.
    pub name: &'static str,
    /// What an error about its text calls it: `subscriber id`.
    pub what: &'static str,
    /// How it sits on the line.
    pub shape: Shape,
    /// The JSON members that may carry it, the first one present winning.
    pub json: &'static [&'static str],
    /// Whether it is the id the client calls itself, which a JSON line may leave out (the
    /// client's address stands in). An id is always a command's last argument.
    pub id: bool,
}

/// How an argument sits on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One token: `<topic>`.
    Word,
    /// Every byte from here to the last token, inner spacing kept: `<message>`. The last
    /// token is the one argument after it.
    Text,
    /// One token or none, at the end: `[token]`.
    Optional,
    /// One of a few words, in any letter case: `on|off`.
    OneOf(&'static [&'static str]),
}

/// A command's arguments as parsed, in the order of its entry's
/// [`arguments`](CommandSpec::arguments).
#[derive(Debug, Clone, Copy)]
pub struct Arguments<'a>([Option<&'a str>; 3]);

impl<'a> Arguments<'a> {
    /// Arguments found another way than on a line (a JSON line's members), which the
    /// caller has checked against their shapes.
    pub(crate) fn new(given: [Option<&'a str>; 3]) -> Arguments<'a> {
        Arguments(given)
    }

    /// Argument `n`, which its shape says is always there.
    fn given(&self, n: usize) -> &'a str {
        self.0[n].unwrap_or_default()
    }

    /// Argument `n`, which may be left out.
    fn optional(&self, n: usize) -> Option<&'a str> {
        self.0[n]
    }
}

const TOPIC: Argument = word("topic", "topic", &["topic"]);
const FILTER: Argument = word("filter", "filter", &["filter"]);
const MESSAGE: Argument = Argument {
    name: "message",
    what: "message",
    shape: Shape::Text,
    json: &["message"],
    id: false,
};
const SUBSCRIBER_ID: Argument = Argument {
    id: true,
    ..word("subscriber_id", "subscriber id", &["id"])
};
const PUBLISHER_ID: Argument = Argument {
    id: true,
    ..word("publisher_id", "publisher id", &["publisher", "id"])
};

const fn word(name: &'static str, what: &'static str, json: &'static [&'static str]) -> Argument {
    Argument {
        name,
        what,
        shape: Shape::Word,
        json,
        id: false,
    }
}

const fn optional(name: &'static str, json: &'static [&'static str]) -> Argument {
    Argument {
        shape: Shape::Optional,
        ..word(name, name, json)
    }
}

impl CommandSpec {
    /// The words a command that takes one of a few takes (`on|off`: `on`, `off`); none for
    /// the others.
    pub fn choices(&self) -> &'static [&'static str] {
        match self.arguments {
            [Argument {
                shape: Shape::OneOf(choices),
                ..
            }] => choices,
            _ => &[],
        }
    }

    /// The whole syntax: `SUBSCRIBE <topic> <subscriber_id>`.
    pub fn syntax(&self) -> String {
        let mut syntax = self.word.to_string();
        for argument in self.arguments {
            syntax.push(' ');
            match argument.shape {
                Shape::Word | Shape::Text => syntax.push_str(&format!("<{}>", argument.name)),
                Shape::Optional => syntax.push_str(&format!("[{}]", argument.name)),
                Shape::OneOf(choices) => syntax.push_str(&choices.join("|")),
            }
        }
        syntax
    }

    /// The entry whose word is `word`, in any letter case, as the classic broker accepted
    /// (`subscribe` typed by hand works). Topics and ids, by contrast, are case-sensitive.
    ///
    /// Comparing in place, instead of upper-casing a copy of the word first, keeps parsing
    /// free of allocations; words of another length are skipped at the first comparison.
    /// (Redis looks its commands up in a hash table, which at fifteen words would cost
    /// more than these comparisons.)
    pub fn find(word: &str) -> Option<&'static CommandSpec> {
        let table = || COMMANDS.iter().copied().chain([&AUTH]);
        // Clients send the words in capitals: one exact comparison per entry finds those,
        // and only a word typed otherwise (`subscribe`) takes the slower search.
        table()
            .find(|spec| spec.word == word)
            .or_else(|| table().find(|spec| word.eq_ignore_ascii_case(spec.word)))
    }

    /// The entry whose JSON action is `action` (exactly: JSON is case-sensitive).
    pub fn for_json(action: &str) -> Option<&'static CommandSpec> {
        COMMANDS
            .into_iter()
            .chain([&AUTH])
            .find(|spec| spec.json == Some(action))
    }

    /// The command these arguments make, each given in the order of
    /// [`arguments`](Self::arguments) and already checked against its shape.
    pub fn build<'a>(&self, arguments: &Arguments<'a>) -> Command<'a> {
        (self.build)(arguments)
    }

    /// Splits `rest` (the line after the word, separators trimmed) into this command's
    /// arguments by their shapes, written into `given`; `false` when they do not fit.
    ///
    /// It fills the caller's `given` rather than returning the arguments, because a
    /// returned array is copied on its way out: in wider pieces than it was written, and
    /// the processor then waits for the narrow writes to land (a "store-forwarding" stall,
    /// a fifth of `Command::parse`'s time in `perf annotate` when it was returned).
    fn split<'a>(&self, rest: &'a str, given: &mut Arguments<'a>) -> bool {
        let mut rest = rest;
        for (n, argument) in self.arguments.iter().enumerate() {
            if argument.shape == Shape::Text {
                // The text ends where the last token, the argument after it, starts. The
                // run of separators between them belongs to the gap, not to the text.
                let Some(last) = scan::last(rest.as_bytes(), separators) else {
                    return false;
                };
                let text = trim_end_separators(&rest[..last + 1]);
                if text.is_empty() {
                    return false;
                }
                given.0[n] = Some(text);
                given.0[n + 1] = Some(&rest[last + 1..]);
                return true;
            }
            let (token, after) = split_first_token(rest);
            given.0[n] = match argument.shape {
                _ if token.is_empty() && argument.shape == Shape::Optional => None,
                _ if token.is_empty() => return false,
                Shape::OneOf(choices) => {
                    match choices.iter().find(|c| token.eq_ignore_ascii_case(c)) {
                        Some(choice) => Some(*choice),
                        None => return false,
                    }
                }
                _ => Some(token),
            };
            rest = after;
        }
        rest.is_empty()
    }

    /// The JSON actions, in the order of the table, as errors list them.
    pub fn json_actions() -> impl Iterator<Item = &'static str> {
        COMMANDS
            .into_iter()
            .chain([&AUTH])
            .filter_map(|spec| spec.json)
    }
}

impl PartialEq for CommandSpec {
    fn eq(&self, other: &CommandSpec) -> bool {
        self.word == other.word
    }
}

impl Eq for CommandSpec {}

/// `SUBSCRIBE <topic> <subscriber_id>`: the classic way to start receiving.
pub static SUBSCRIBE: CommandSpec = CommandSpec {
    word: "SUBSCRIBE",
    arguments: &[TOPIC, SUBSCRIBER_ID],
    summary: "receive every message published to <topic> (wildcards: + one level, # all below)",
    classic: true,
    json: Some("subscribe"),
    alone: None,
    build: |a| Command::Subscribe {
        topic: a.given(0),
        subscriber_id: a.given(1),
    },
};

/// `UNSUBSCRIBE <topic> <subscriber_id>`, or `UNSUBSCRIBE` alone for every topic.
pub static UNSUBSCRIBE: CommandSpec = CommandSpec {
    word: "UNSUBSCRIBE",
    arguments: &[TOPIC, SUBSCRIBER_ID],
    summary: "stop receiving <topic> (with no arguments: every topic)",
    classic: true,
    json: Some("unsubscribe"),
    alone: Some(Command::UnsubscribeAll),
    build: |a| Command::Unsubscribe {
        topic: a.given(0),
        subscriber_id: a.given(1),
    },
};

/// `PUBLISH <topic> <message> <publisher_id>`: the message is everything between the
/// topic and the last token, byte for byte.
pub static PUBLISH: CommandSpec = CommandSpec {
    word: "PUBLISH",
    arguments: &[TOPIC, MESSAGE, PUBLISHER_ID],
    summary: "send <message> to every subscriber of <topic>",
    classic: true,
    json: Some("publish"),
    alone: None,
    build: |a| Command::Publish {
        topic: a.given(0),
        message: a.given(1),
        publisher_id: a.given(2),
    },
};

/// `RETAIN <topic> <message> <publisher_id>`: read exactly as `PUBLISH`.
pub static RETAIN: CommandSpec = CommandSpec {
    word: "RETAIN",
    arguments: &[TOPIC, MESSAGE, PUBLISHER_ID],
    summary: "publish, and keep <message> for every later subscriber of <topic>",
    classic: false,
    json: Some("retain"),
    alone: None,
    build: |a| Command::Retain {
        topic: a.given(0),
        message: a.given(1),
        publisher_id: a.given(2),
    },
};

/// `UNRETAIN <topic> <publisher_id>`.
pub static UNRETAIN: CommandSpec = CommandSpec {
    word: "UNRETAIN",
    arguments: &[TOPIC, PUBLISHER_ID],
    summary: "forget the message kept for <topic>",
    classic: false,
    json: Some("unretain"),
    alone: None,
    build: |a| Command::Unretain {
        topic: a.given(0),
        publisher_id: a.given(1),
    },
};

/// `DURABLE <filter> <subscriber_id>`.
pub static DURABLE: CommandSpec = CommandSpec {
    word: "DURABLE",
    arguments: &[FILTER, SUBSCRIBER_ID],
    summary: "start or resume a durable subscription: MESSAGE lines, kept until ACKed",
    classic: false,
    json: None,
    alone: None,
    build: |a| Command::Durable {
        filter: a.given(0),
        subscriber_id: a.given(1),
    },
};

/// `ACK <seq>`.
pub static ACK: CommandSpec = CommandSpec {
    word: "ACK",
    arguments: &[word("seq", "seq", &["seq"])],
    summary: "acknowledge MESSAGE <seq>: the broker will not send it again",
    classic: false,
    json: None,
    alone: None,
    build: |a| Command::Ack { seq: a.given(0) },
};

/// `CANCEL <filter> <subscriber_id>`.
pub static CANCEL: CommandSpec = CommandSpec {
    word: "CANCEL",
    arguments: &[FILTER, SUBSCRIBER_ID],
    summary: "end a durable subscription, dropping the messages it holds",
    classic: false,
    json: None,
    alone: None,
    build: |a| Command::Cancel {
        filter: a.given(0),
        subscriber_id: a.given(1),
    },
};

/// `PING [token]`.
pub static PING: CommandSpec = CommandSpec {
    word: "PING",
    arguments: &[optional("token", &["token"])],
    summary: "the broker answers PONG [token]",
    classic: false,
    json: Some("ping"),
    alone: None,
    build: |a| Command::Ping {
        token: a.optional(0),
    },
};

/// `TOPICS [filter]`.
pub static TOPICS: CommandSpec = CommandSpec {
    word: "TOPICS",
    arguments: &[optional("filter", &["filter"])],
    summary: "list topics (matching [filter]) with their subscribers",
    classic: false,
    json: Some("topics"),
    alone: None,
    build: |a| Command::Topics {
        filter: a.optional(0),
    },
};

/// `CLIENTS [filter]`: the instructor's view (see `clients.rs`).
pub static CLIENTS: CommandSpec = CommandSpec {
    word: "CLIENTS",
    arguments: &[optional("filter", &["filter"])],
    summary: "list clients (matching a #number, state, id or topic) and what each does",
    classic: false,
    json: Some("clients"),
    alone: None,
    build: |a| Command::Clients {
        filter: a.optional(0),
    },
};

/// `KICK <client>`: an instructor closes a client's connection.
pub static KICK: CommandSpec = CommandSpec {
    word: "KICK",
    arguments: &[word("client", "client", &["client"])],
    summary: "close client <client> (its CLIENTS number), telling it why: instructors",
    classic: false,
    json: Some("kick"),
    alone: None,
    build: |a| Command::Kick { client: a.given(0) },
};

/// `STATS`.
pub static STATS: CommandSpec = CommandSpec {
    word: "STATS",
    arguments: &[],
    summary: "broker counters, one 'name value' per line",
    classic: false,
    json: Some("stats"),
    alone: None,
    build: |_| Command::Stats,
};

/// `VERBOSE on|off`.
pub static VERBOSE: CommandSpec = CommandSpec {
    word: "VERBOSE",
    arguments: &[Argument {
        shape: Shape::OneOf(&["on", "off"]),
        ..word("mode", "mode", &[])
    }],
    summary: "acknowledge every accepted command with OK",
    classic: false,
    json: None,
    alone: None,
    build: |a| Command::Verbose {
        on: a.given(0) == "on",
    },
};

/// `QUIT`.
pub static QUIT: CommandSpec = CommandSpec {
    word: "QUIT",
    arguments: &[],
    summary: "the broker answers BYE and closes",
    classic: false,
    json: None,
    alone: None,
    build: |_| Command::Quit,
};

/// `HELP`.
pub static HELP: CommandSpec = CommandSpec {
    word: "HELP",
    arguments: &[],
    summary: "this list",
    classic: false,
    json: None,
    alone: None,
    build: |_| Command::Help,
};

/// Every command, in the order `HELP` lists them. See the module docs.
pub static COMMANDS: [&CommandSpec; 16] = [
    &SUBSCRIBE,
    &UNSUBSCRIBE,
    &PUBLISH,
    &RETAIN,
    &UNRETAIN,
    &DURABLE,
    &ACK,
    &CANCEL,
    &PING,
    &TOPICS,
    &CLIENTS,
    &KICK,
    &STATS,
    &VERBOSE,
    &QUIT,
    &HELP,
];

/// `AUTH`, apart from [`COMMANDS`]: `HELP` lists it only on a broker that asks for it
/// (`--auth-file`), so a broker without access control shows the classic table unchanged.
pub static AUTH: CommandSpec = CommandSpec {
    word: "AUTH",
    arguments: &[
        word("user", "user", &["user"]),
        word("secret", "secret", &["secret"]),
    ],
    summary: "say who you are, first, on a broker with access control",
    classic: false,
    json: Some("auth"),
    alone: None,
    build: |a| Command::Auth {
        user: a.given(0),
        secret: Secret(a.given(1)),
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
        if rest.is_empty() {
            if let Some(alone) = spec.alone {
                return Ok(Some(alone));
            }
        }
        let mut arguments = Arguments([None; 3]);
        if spec.split(rest, &mut arguments) {
            return Ok(Some(spec.build(&arguments)));
        }
        // One word where the command takes one of a few (`VERBOSE yes`): the count was
        // right, the word was not, and the answer says which words there are.
        if !spec.choices().is_empty() && tokens(rest).count() == 1 {
            return Err(ProtocolError::NotAChoice {
                spec,
                given: shorten(rest),
            });
        }
        Err(ProtocolError::WrongArguments(spec))
    }

    /// This command's entry in [`COMMANDS`] and its arguments, in the entry's order: the
    /// one place that knows which variant belongs to which entry. Inlined, so that a
    /// caller that wants only the entry (the session notes every command's: see
    /// `clients.rs`) does not pay for building the arguments.
    #[inline]
    pub fn parts(&self) -> (&'static CommandSpec, [Option<&'a str>; 3]) {
        match *self {
            Command::Subscribe {
                topic,
                subscriber_id,
            } => (&SUBSCRIBE, [Some(topic), Some(subscriber_id), None]),
            Command::Unsubscribe {
                topic,
                subscriber_id,
            } => (&UNSUBSCRIBE, [Some(topic), Some(subscriber_id), None]),
            Command::UnsubscribeAll => (&UNSUBSCRIBE, [None; 3]),
            Command::Publish {
                topic,
                message,
                publisher_id,
            } => (&PUBLISH, [Some(topic), Some(message), Some(publisher_id)]),
            Command::Retain {
                topic,
                message,
                publisher_id,
            } => (&RETAIN, [Some(topic), Some(message), Some(publisher_id)]),
            Command::Unretain {
                topic,
                publisher_id,
            } => (&UNRETAIN, [Some(topic), Some(publisher_id), None]),
            Command::Durable {
                filter,
                subscriber_id,
            } => (&DURABLE, [Some(filter), Some(subscriber_id), None]),
            Command::Ack { seq } => (&ACK, [Some(seq), None, None]),
            Command::Cancel {
                filter,
                subscriber_id,
            } => (&CANCEL, [Some(filter), Some(subscriber_id), None]),
            Command::Ping { token } => (&PING, [token, None, None]),
            Command::Topics { filter } => (&TOPICS, [filter, None, None]),
            Command::Clients { filter } => (&CLIENTS, [filter, None, None]),
            Command::Kick { client } => (&KICK, [Some(client), None, None]),
            Command::Stats => (&STATS, [None; 3]),
            Command::Verbose { on } => {
                (&VERBOSE, [Some(if on { "on" } else { "off" }), None, None])
            }
            Command::Quit => (&QUIT, [None; 3]),
            Command::Help => (&HELP, [None; 3]),
            Command::Auth { user, secret } => (&AUTH, [Some(user), Some(secret.0), None]),
        }
    }

    /// This command's entry in [`COMMANDS`].
    #[inline]
    pub fn spec(&self) -> &'static CommandSpec {
        self.parts().0
    }

    /// The id the client gave in this command, for the commands that carry one: always
    /// their last argument, as in the classic protocol.
    pub fn client_id(&self) -> Option<&'a str> {
        let (spec, arguments) = self.parts();
        let last = spec.arguments.len().checked_sub(1)?;
        spec.arguments[last].id.then_some(arguments[last]).flatten()
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
        let (spec, arguments) = self.parts();
        out.extend_from_slice(spec.word.as_bytes());
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
/// The helpers below search for separators by their bytes. Both are ASCII, and in UTF-8 an
/// ASCII byte never occurs inside another character, so every position they find is a
/// character boundary where a `&str` may be cut. (Searching with a `char` pattern gives the
/// same answers but decodes every character on the way, which showed up in profiles: the
/// broker parses millions of lines a second.)
fn is_separator(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// [`is_separator`] for eight bytes at once (see `scan.rs`): the search for the end of a
/// token, where a byte-by-byte loop cost a tenth of the broker's time in `perf`.
fn separators(word: u64) -> u64 {
    scan::bytes_equal(word, b' ') | scan::bytes_equal(word, b'\t')
}

// The runs of separators the trims below skip are nearly always one byte or none: a loop
// of bytes is the cheapest way there.
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
    match scan::first(text.as_bytes(), separators) {
        Some(end) => (&text[..end], trim_start_separators(&text[end..])),
        None => (text, ""),
    }
}

fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split([' ', '\t']).filter(|token| !token.is_empty())
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

    /// What `split` and `client_id` rely on: a text is followed by exactly one word, which
    /// ends the line, and an id is the last argument.
    #[test]
    fn texts_and_ids_sit_where_the_parser_looks_for_them() {
        for spec in COMMANDS.into_iter().chain([&AUTH]) {
            let arguments = spec.arguments;
            for (n, argument) in arguments.iter().enumerate() {
                if argument.shape == Shape::Text {
                    assert_eq!(n + 2, arguments.len(), "{}", spec.word);
                    assert_eq!(arguments[n + 1].shape, Shape::Word, "{}", spec.word);
                }
                if argument.id {
                    assert_eq!(n + 1, arguments.len(), "{}", spec.word);
                }
            }
        }
    }

    #[test]
    fn the_json_actions_and_the_help_syntax_come_from_the_table() {
        let actions: Vec<&str> = CommandSpec::json_actions().collect();
        assert_eq!(
            actions,
            [
                "subscribe",
                "unsubscribe",
                "publish",
                "retain",
                "unretain",
                "ping",
                "topics",
                "clients",
                "kick",
                "stats",
                "auth"
            ]
        );
        assert_eq!(
            spec("PUBLISH").syntax(),
            "PUBLISH <topic> <message> <publisher_id>"
        );
        assert_eq!(spec("PING").syntax(), "PING [token]");
        assert_eq!(spec("VERBOSE").syntax(), "VERBOSE on|off");
        assert_eq!(spec("STATS").syntax(), "STATS");
        assert_eq!(
            Command::Unretain {
                topic: "t",
                publisher_id: "p"
            }
            .client_id(),
            Some("p")
        );
        assert_eq!(Command::Ping { token: Some("x") }.client_id(), None);
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
        for spec in COMMANDS {
            assert!(words.contains(&spec.word), "{} has no command", spec.word);
        }
    }
}
