//! Why a line was refused: [`ProtocolError`], whose `Display` is the reason in the
//! `ERROR <reason>` line the client receives.

use std::fmt;
use std::net::IpAddr;

use super::command::{CommandSpec, COMMANDS};
use crate::json::JsonError;
use crate::text;

/// Why a line was refused. The broker answers each with one `ERROR <reason>` line, where
/// the reason is this value's `Display`, and then reads the next line as usual: a protocol
/// error never ends a connection.
///
/// Every reason says what was wrong and what to do instead, so that a student reading it in
/// `nc` can fix the line without opening the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The first word is not a command. Usually a typo; the reply lists the commands. Holds
    /// the word as the reply shows it: at most 32 characters, control characters escaped.
    UnknownCommand(String),
    /// A known command with too few or too many tokens; the reply shows its syntax.
    WrongArguments(&'static CommandSpec),
    /// A command that takes one of a few words (`VERBOSE on|off`) given another one; the
    /// reply lists the words it takes.
    NotAChoice {
        /// The command.
        spec: &'static CommandSpec,
        /// The word given, shortened like a command word.
        given: String,
    },
    /// The line is not UTF-8 text (a binary file pasted into `nc`, say).
    NotUtf8,
    /// The line holds a character that some line reader takes for a line break (a bare
    /// `\r`, U+2028, ...; see `text::is_line_break`): relayed, it would show other programs
    /// a line nobody sent. Holds the character.
    LineBreak(char),
    /// A topic, id or message from outside the line protocol's parser (a JSON string, a
    /// form field, the embedding API) with a character that some line reader takes for a
    /// line break (see `text::is_line_break`): relayed, it would show other programs a line
    /// nobody sent.
    LineBreakIn {
        /// What it was: `topic`, `publisher id`, `message`.
        what: &'static str,
        /// The character.
        character: char,
    },
    /// A topic or id with a control character (an escape sequence, say): topics and ids
    /// name things in logs and on screens, where they must print as they are.
    ControlCharacter {
        /// What it was: `topic`, or `subscriber or publisher id`.
        what: &'static str,
        /// The character.
        character: char,
    },
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
    /// A topic filter that breaks the rules of wildcards (see `topic.rs`).
    BadFilter(crate::topic::FilterError),
    /// A publish to a name with `+` or `#`: those are wildcards, for subscribing only.
    WildcardInName,
    /// A publish to one of the broker's own `$SYS` topics.
    ReservedTopic,
    /// A topic or filter with more levels than the broker accepts.
    TooManyLevels {
        /// The limit (`--max-topic-levels`).
        limit: usize,
    },
    /// A new retained message would pass one of the broker's limits for them.
    RetainedFull {
        /// Which limit: `--max-retained` or `--max-retained-bytes`.
        flag: &'static str,
        /// Its value.
        limit: usize,
    },
    /// A new retained topic would pass the quota of its publisher id
    /// (`--max-retained-per-client`). `UNRETAIN` one of its topics first, or publish without
    /// `RETAIN`.
    TooManyRetainedForClient {
        /// The publisher id.
        publisher_id: String,
        /// The limit per id.
        limit: usize,
    },
    /// A new retained topic would pass the quota of the logged-in user, over every id it
    /// goes by (`--max-retained-per-user`).
    TooManyRetainedForUser {
        /// The user.
        user: String,
        /// The limit per user.
        limit: usize,
    },
    /// A retained message would take its publisher id past its bytes of retained messages
    /// (`--max-retained-bytes-per-client`). `UNRETAIN` one of its topics first, retain a
    /// shorter message, or publish without `RETAIN`.
    RetainedBytesForClient {
        /// The publisher id.
        publisher_id: String,
        /// The limit per id, in bytes.
        limit: usize,
    },
    /// A retained message would take the logged-in user past its bytes of retained
    /// messages, over every id it goes by (`--max-retained-bytes-per-user`).
    RetainedBytesForUser {
        /// The user.
        user: String,
        /// The limit per user, in bytes.
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
    /// This connection already holds the most subscriptions with `+` or `#` one connection
    /// may have (`--max-wildcards`): each one is looked at by every publish. Unsubscribe
    /// from one, or subscribe to exact topics.
    TooManyWildcards {
        /// The limit per connection.
        limit: usize,
    },
    /// The logged-in user already holds the most subscriptions with `+` or `#` one user may
    /// have over all its connections (`--max-wildcards-per-user`). Unsubscribe from one on
    /// any of them, or subscribe to exact topics.
    TooManyWildcardsForUser {
        /// The user.
        user: String,
        /// The limit per user.
        limit: usize,
    },
    /// A topic or id that is not one word. The line protocol's grammar cannot produce it;
    /// text from elsewhere (the embedding API, other wire formats) can.
    NotOneWord {
        /// What it was: `topic`, `publisher id`, `subscriber id`.
        what: &'static str,
    },
    /// `ACK` with something that is not a seq (a whole number).
    BadSeq(String),
    /// `ACK` with a seq that no durable subscription held by this connection has in
    /// flight: acknowledged already, sent to another connection, or never sent.
    UnknownSeq(u64),
    /// A new durable subscription would pass the broker's limit of them.
    TooManyDurable {
        /// The limit (`--max-durable`).
        limit: usize,
    },
    /// A new durable subscription would pass the quota of its subscriber id, its owner
    /// (`--max-durable-per-client`). `CANCEL` one of that id's first.
    TooManyDurableForClient {
        /// The subscriber id.
        subscriber_id: String,
        /// The limit per id.
        limit: usize,
    },
    /// A new durable subscription would pass the quota of the logged-in user, over every
    /// id it goes by (`--max-durable-per-user`). `CANCEL` one of the user's first.
    TooManyDurableForUser {
        /// The user.
        user: String,
        /// The limit per user.
        limit: usize,
    },
    /// A new durable subscription would pass the quota of the anonymous clients of one
    /// address (`--max-durable-per-user`). `CANCEL` one of theirs first.
    TooManyDurableFromAddress {
        /// The address.
        ip: IpAddr,
        /// The limit per address.
        limit: usize,
    },
    /// Sent to a connection that held a durable subscription when another connection
    /// resumed it: the newer one holds it now (MQTT's session takeover).
    TakenOver {
        /// The subscription's filter.
        filter: String,
        /// Its subscriber id.
        subscriber_id: String,
    },
    /// In place of a confirm (`OK PUBLISH`): the broker could not write its log, so the
    /// message is not stored as promised. Holds the reason.
    NotStored(String),
    /// A message a `DELIVER` line could not carry unchanged: empty, more than one line, or
    /// starting or ending with a space or tab. Like `NotOneWord`, only text from outside
    /// the line protocol can be so.
    BadMessage,
    /// A hook of the program that embeds the broker said no (see `hooks.rs`). Holds the
    /// hook's reason, which is what the client is told, word for word.
    Refused(String),
    /// A line of the JSON dialect that is not JSON. Holds where and why.
    BadJson(JsonError),
    /// A line of the JSON dialect that is JSON but not an object with an `"action"`.
    NoAction,
    /// A JSON `"action"` the broker does not know. Holds it, shortened like a command word.
    UnknownAction(String),
    /// A JSON action without a member it needs, or with one that is not a string.
    MissingField {
        /// The action: `publish`.
        action: &'static str,
        /// The member: `message`.
        field: &'static str,
    },
    /// A command that needs a connection, sent in a datagram. Send it on the TCP port.
    NotOverUdp(&'static CommandSpec),
    /// Every UDP lease is taken (`--udp-max-subscribers`).
    TooManyUdpSubscribers {
        /// The limit.
        limit: usize,
    },
    /// The sender's IP address holds as many UDP leases as one address may
    /// (`udp::MAX_LEASES_PER_IP`). Subscribe over TCP, or end a lease first.
    TooManyUdpSubscribersFrom {
        /// The address.
        ip: IpAddr,
        /// The limit per address.
        limit: usize,
    },
    /// A command other than `AUTH` before `AUTH` succeeded, on a broker with
    /// `--auth-file`. Send `AUTH <user> <secret>` first.
    AuthRequired,
    /// `AUTH` with a user that does not exist or a wrong secret (which of the two is not
    /// said: that would tell a guesser which names exist). Answered after a delay.
    AuthFailed,
    /// `AUTH` from an address that failed too often lately (see `auth.rs`): refused
    /// without a look at the secret until its window ends.
    TooManyFailures {
        /// About how many seconds are left of the window.
        wait_secs: u64,
    },
    /// `AUTH` as a user whose failed logins, from every address together, used up their
    /// budget in the current window (`auth::FAILURES_PER_USER`). Wait, then check the
    /// user and the secret.
    UserOutOfAttempts {
        /// About how many seconds are left of the window.
        wait_secs: u64,
    },
    /// The last of the failed `AUTH`s one connection may make: it is closed after this.
    AuthGaveUp {
        /// How many failures that was.
        failures: u32,
    },
    /// `AUTH` on a broker without `--auth-file`: nothing to prove; carry on without it.
    AuthOff,
    /// A second `AUTH` on a connection that proved who it is already.
    AlreadyAuthenticated(String),
    /// No `AUTH` within `--auth-timeout`: the broker closes the connection after this.
    AuthTimeout(String),
    /// A datagram, on a broker with access control that does not take anonymous ones
    /// (`--udp-allow-anonymous`).
    UdpWithoutAuth,
    /// A publish or subscribe the auth file's rules do not allow this user.
    NotAllowed {
        /// The user.
        user: String,
        /// What was refused: `subscribe to`, `publish to`, `publish as`.
        action: &'static str,
        /// The filter, topic or publisher id.
        name: String,
    },
    /// `KICK` from a user the auth file does not mark `instructor`.
    NotInstructor(String),
    /// `KICK` on a broker without an auth file, from another machine: without users,
    /// only someone at the broker's own machine may kick (see `session.rs`).
    KickFromAfar,
    /// `KICK` with something that is not a client number.
    BadClientNumber(String),
    /// `KICK` of a number no connected client has (or a UDP address, which has none).
    NoSuchClient(u64),
    /// What a kicked client is told, just before its connection closes.
    Kicked {
        /// Who kicked it: a user, or a connection's number and address.
        by: String,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnknownCommand(word) => {
                let classic: Vec<&str> = COMMANDS
                    .iter()
                    .filter(|spec| spec.classic)
                    .map(|spec| spec.word)
                    .collect();
                let (last, others) = classic.split_last().expect("three classic commands");
                write!(
                    f,
                    "unknown command '{word}': expected {} or {last} (send HELP for all commands)",
                    others.join(", ")
                )
            }
            ProtocolError::WrongArguments(spec) => {
                write!(f, "wrong number of arguments: expected {}", spec.syntax())
            }
            ProtocolError::NotAChoice { spec, given } => {
                let commands: Vec<String> = spec
                    .choices()
                    .iter()
                    .map(|choice| format!("{} {choice}", spec.word))
                    .collect();
                write!(
                    f,
                    "{} takes {}, not '{given}': send {}",
                    spec.word,
                    spec.choices().join(" or "),
                    commands.join(" or ")
                )
            }
            ProtocolError::NotUtf8 => {
                write!(f, "line is not valid UTF-8 text: send commands as plain text")
            }
            ProtocolError::LineBreak(character) => write!(
                f,
                "line contains {}, which other programs read as a line break: \
                 send one command per line, with no other line breaks",
                text::describe(*character)
            ),
            ProtocolError::LineBreakIn { what, character } => write!(
                f,
                "{what} contains {}, which other programs read as a line break: \
                 send it on one line",
                text::describe(*character)
            ),
            ProtocolError::ControlCharacter { what, character } => write!(
                f,
                "{what} contains {}: topics and ids must be printable text",
                text::describe(*character)
            ),
            ProtocolError::LineTooLong { limit } => write!(
                f,
                "line longer than {limit} bytes was discarded: send shorter messages"
            ),
            ProtocolError::TopicTooLong { limit } => {
                write!(f, "topic longer than {limit} bytes: use a shorter topic")
            }
            ProtocolError::BadFilter(error) => write!(f, "bad topic filter: {error}"),
            ProtocolError::WildcardInName => write!(
                f,
                "cannot publish to a topic with + or #: they are wildcards, for SUBSCRIBE; \
                 publish to one exact topic such as news/tech"
            ),
            ProtocolError::ReservedTopic => write!(
                f,
                "$SYS topics are the broker's own figures: subscribe to them, do not publish"
            ),
            ProtocolError::TooManyLevels { limit } => write!(
                f,
                "topic has more than {limit} levels: use fewer / separators"
            ),
            ProtocolError::RetainedFull { flag, limit } => write!(
                f,
                "no room for another retained message ({flag} {limit}): UNRETAIN one first, \
                 or publish without RETAIN"
            ),
            ProtocolError::TooManyRetainedForClient {
                publisher_id,
                limit,
            } => write!(
                f,
                "publisher id {publisher_id} keeps retained messages on {limit} topics \
                 already, the most one id may: UNRETAIN one first, or publish without RETAIN"
            ),
            ProtocolError::TooManyRetainedForUser { user, limit } => write!(
                f,
                "user {user} keeps retained messages on {limit} topics already, the most one \
                 user may: UNRETAIN one first, or publish without RETAIN"
            ),
            ProtocolError::RetainedBytesForClient {
                publisher_id,
                limit,
            } => write!(
                f,
                "publisher id {publisher_id} would keep more than {limit} bytes of retained \
                 messages, the most one id may: UNRETAIN one first, retain a shorter message, \
                 or publish without RETAIN"
            ),
            ProtocolError::RetainedBytesForUser { user, limit } => write!(
                f,
                "user {user} would keep more than {limit} bytes of retained messages, the most \
                 one user may: UNRETAIN one first, retain a shorter message, or publish \
                 without RETAIN"
            ),
            ProtocolError::IdTooLong { limit } => write!(
                f,
                "subscriber or publisher id longer than {limit} bytes: use a shorter id"
            ),
            ProtocolError::TooManySubscriptions { limit } => write!(
                f,
                "too many subscriptions on this connection (limit {limit}): unsubscribe from some first"
            ),
            ProtocolError::TooManyWildcards { limit } => write!(
                f,
                "too many subscriptions with + or # on this connection (limit {limit}): \
                 unsubscribe from one first, or subscribe to exact topics"
            ),
            ProtocolError::TooManyWildcardsForUser { user, limit } => write!(
                f,
                "user {user} holds {limit} subscriptions with + or # already, over all its \
                 connections, the most one user may: unsubscribe from one first, or subscribe \
                 to exact topics"
            ),
            ProtocolError::NotOneWord { what } => write!(
                f,
                "a {what} must be one word, with no spaces or line breaks"
            ),
            ProtocolError::BadSeq(seq) => write!(
                f,
                "'{seq}' is not a seq: send ACK with the number from a MESSAGE line, as in ACK 17"
            ),
            ProtocolError::UnknownSeq(seq) => write!(
                f,
                "no message {seq} is waiting for an ACK on this connection (acknowledged \
                 already, or sent on a durable subscription this connection does not hold)"
            ),
            ProtocolError::TooManyDurable { limit } => write!(
                f,
                "the broker keeps at most {limit} durable subscriptions: CANCEL one you no \
                 longer need, or use SUBSCRIBE"
            ),
            ProtocolError::TooManyDurableForClient {
                subscriber_id,
                limit,
            } => write!(
                f,
                "subscriber id {subscriber_id} has {limit} durable subscriptions already, \
                 the most one id may have: CANCEL one it no longer needs, or use SUBSCRIBE"
            ),
            ProtocolError::TooManyDurableForUser { user, limit } => write!(
                f,
                "user {user} has {limit} durable subscriptions already, the most one user may \
                 have: CANCEL one you no longer need, or use SUBSCRIBE"
            ),
            ProtocolError::TooManyDurableFromAddress { ip, limit } => write!(
                f,
                "anonymous clients from {ip} have {limit} durable subscriptions already, the \
                 most one address may have without logging in: CANCEL one you no longer \
                 need, or use SUBSCRIBE"
            ),
            ProtocolError::TakenOver {
                filter,
                subscriber_id,
            } => write!(
                f,
                "durable subscription {filter} {subscriber_id} was taken over by another \
                 connection: its messages go there now"
            ),
            ProtocolError::NotStored(why) => write!(
                f,
                "message not stored, not confirmed ({why}): the operator must look at the broker"
            ),
            ProtocolError::BadMessage => write!(
                f,
                "a message must be one line of text, not empty, and not start or end with a space"
            ),
            ProtocolError::Refused(reason) => f.write_str(reason),
            ProtocolError::BadJson(error) => write!(f, "not a JSON command: {error}"),
            ProtocolError::NoAction => write!(
                f,
                "a JSON command is an object with an \"action\": {}",
                CommandSpec::json_actions().collect::<Vec<_>>().join(", ")
            ),
            ProtocolError::UnknownAction(action) => write!(
                f,
                "unknown action '{action}': expected {}",
                CommandSpec::json_actions().collect::<Vec<_>>().join(", ")
            ),
            ProtocolError::MissingField { action, field } => {
                write!(f, "\"{action}\" needs a \"{field}\" string")
            }
            ProtocolError::NotOverUdp(spec) => write!(
                f,
                "{} is not served over UDP, which has no connections: send it on the TCP port",
                spec.word
            ),
            ProtocolError::TooManyUdpSubscribers { limit } => write!(
                f,
                "too many UDP subscribers (limit {limit}): subscribe over TCP, or try later"
            ),
            ProtocolError::TooManyUdpSubscribersFrom { ip, limit } => write!(
                f,
                "too many UDP subscribers from {ip} (limit {limit}): subscribe over TCP, or end a lease"
            ),
            ProtocolError::AuthRequired => write!(
                f,
                "authentication required: send AUTH <user> <secret> first"
            ),
            ProtocolError::AuthFailed => {
                write!(f, "authentication failed: unknown user or wrong secret")
            }
            ProtocolError::TooManyFailures { wait_secs } => write!(
                f,
                "too many failed logins from your address: wait {wait_secs}s, then check your \
                 user and secret"
            ),
            ProtocolError::UserOutOfAttempts { wait_secs } => write!(
                f,
                "too many failed logins as this user: wait {wait_secs}s, then check your user \
                 and secret"
            ),
            ProtocolError::AuthGaveUp { failures } => write!(
                f,
                "authentication failed {failures} times: closing the connection; check your \
                 user and secret and connect again"
            ),
            ProtocolError::AuthOff => write!(
                f,
                "this broker has no access control (no --auth-file): send commands without AUTH"
            ),
            ProtocolError::AlreadyAuthenticated(user) => {
                write!(f, "already authenticated as {user}: one AUTH per connection")
            }
            ProtocolError::AuthTimeout(timeout) => write!(
                f,
                "authentication timeout: no AUTH within {timeout}, closing the connection"
            ),
            ProtocolError::UdpWithoutAuth => write!(
                f,
                "datagrams are refused on this broker (--auth-file): UDP cannot say who sends \
                 them; connect over TCP and send AUTH"
            ),
            ProtocolError::NotAllowed { user, action, name } => {
                write!(f, "not allowed: {user} may not {action} {name}")
            }
            ProtocolError::NotInstructor(user) => write!(
                f,
                "not allowed: only an instructor may KICK, and {user} is not one (an \
                 'instructor {user}' line in the auth file makes it one)"
            ),
            ProtocolError::KickFromAfar => write!(
                f,
                "not allowed: without an auth file, KICK is taken only from the broker's own \
                 machine (127.0.0.1)"
            ),
            ProtocolError::BadClientNumber(given) => write!(
                f,
                "'{given}' is not a client number: KICK <number>, as CLIENTS lists them"
            ),
            ProtocolError::NoSuchClient(number) => write!(
                f,
                "no client #{number} to kick: send CLIENTS for the connected ones (a UDP \
                 address has no connection to close)"
            ),
            ProtocolError::Kicked { by } => write!(
                f,
                "kicked by {by}: the instructor closed this connection; ask them why before \
                 connecting again"
            ),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Keeps error messages one readable line even when the offending word is a pasted file:
/// at most 32 characters, with control characters shown as escapes (`\u{0}`) rather than
/// sent back raw to the client's terminal.
pub(super) fn shorten(word: &str) -> String {
    const MAX_CHARS: usize = 32;
    let mut shown = String::new();
    for c in word.chars().take(MAX_CHARS) {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    if word.chars().count() > MAX_CHARS {
        shown.push_str("...");
    }
    shown
}

#[cfg(test)]
mod tests {
    use crate::protocol::Command;

    #[test]
    fn unknown_commands_name_the_word_and_the_classic_commands() {
        let error = Command::parse(b"PUBLSH weather hi pub1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown command 'PUBLSH': expected SUBSCRIBE, UNSUBSCRIBE or PUBLISH (send HELP for all commands)"
        );
    }

    #[test]
    fn a_huge_unknown_word_is_shortened_in_the_reply() {
        let word = "X".repeat(1000);
        let reason = Command::parse(word.as_bytes()).unwrap_err().to_string();
        assert!(reason.len() < 200, "{reason}");
    }

    #[test]
    fn control_characters_are_not_echoed_raw() {
        let reason = Command::parse("\u{0}\u{1b}[2J".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            reason.starts_with("unknown command '\\u{0}\\u{1b}[2J'"),
            "{reason}"
        );
    }
}
