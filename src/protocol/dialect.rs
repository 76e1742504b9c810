//! The two dialects of the TCP port: the line protocol, and the JSON lines of kn-sock (a
//! Python networking library whose pub/sub client students bring to class).
//!
//! Both are *lines*: framing (`framing.rs`) is the same. They differ in how a line says
//! what it wants and how the broker answers:
//!
//! ```text
//!   line:  SUBSCRIBE news sub1                    JSON:  {"action": "subscribe", "topic": "news"}
//!          PUBLISH news hello pub1                       {"action": "publish", "topic": "news", "message": "hello"}
//!          DELIVER news hello pub1 <date> <time>         {"topic": "news", "message": "hello", "publisher": "pub1", "timestamp": "<date> <time>"}
//!          ERROR <reason>                                {"error": "<reason>"}
//! ```
//!
//! A connection's **first line** decides its dialect for its whole life: one that starts
//! with `{` is JSON (no command of the line protocol starts with `{`, so a classic client
//! is never mistaken for a JSON one). After that, a JSON line becomes the same [`Command`]
//! a line would, checked against the same grammar, and the session executes it in the same
//! place; only the parsing here and the encoding of replies differ.
//!
//! kn-sock's client treats every line it receives as a message, so a JSON connection is
//! sent nothing it did not ask for: errors, deliveries, and the answers to `ping`,
//! `topics` and `stats`. Acknowledgements (`{"ok": "subscribe", ...}`) come only for a
//! command that has `"verbose": true`. The members a command may have:
//!
//! | action | members (`?` optional) |
//! |---|---|
//! | `subscribe`, `unsubscribe` | `topic`, `id`? |
//! | `publish`, `retain` | `topic`, `message`, `publisher`? (or `id`?) |
//! | `unretain` | `topic`, `publisher`? (or `id`?) |
//! | `ping` | `token`? |
//! | `topics` | `filter`? |
//! | `stats` | |
//! | `auth` | `user`, `secret` (first, on a broker with `--auth-file`) |
//!
//! and any of them `verbose`? (`true` for an acknowledgement). A missing id is the
//! client's address, `json:<ip>:<port>`. Unknown members are ignored.

use super::command::{Argument, Arguments, Command, CommandSpec, Shape};
use super::error::{shorten, ProtocolError};
use super::grammar::{check_message, check_word};
use super::reply::{Listed, ListedClient, Reply};
use crate::json::{self, ObjectWriter, Value};

/// How a TCP connection speaks. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The line protocol: `SUBSCRIBE news sub1`.
    Line,
    /// kn-sock's JSON lines: `{"action": "subscribe", "topic": "news"}`.
    Json,
}

impl Dialect {
    /// The dialect a connection whose first line is `line` speaks; `None` for a blank line,
    /// which decides nothing.
    ///
    /// ```
    /// use pubsub_lab::protocol::Dialect;
    /// assert_eq!(Dialect::of_first_line(br#" {"action": "subscribe"}"#), Some(Dialect::Json));
    /// assert_eq!(Dialect::of_first_line(b"SUBSCRIBE news sub1"), Some(Dialect::Line));
    /// assert_eq!(Dialect::of_first_line(b"  "), None);
    /// ```
    pub fn of_first_line(line: &[u8]) -> Option<Dialect> {
        let first = line.iter().find(|&&b| b != b' ' && b != b'\t')?;
        Some(if *first == b'{' {
            Dialect::Json
        } else {
            Dialect::Line
        })
    }

    /// Appends `reply` as this dialect writes it, each line ending in `\n`.
    ///
    /// ```
    /// use pubsub_lab::protocol::{Dialect, ProtocolError, Reply};
    /// let mut out = Vec::new();
    /// Dialect::Json.write_reply(&Reply::Error(&ProtocolError::BadMessage), &mut out);
    /// assert!(out.starts_with(br#"{"error":"a message must be one line"#));
    /// ```
    pub fn write_reply(self, reply: &Reply<'_>, out: &mut Vec<u8>) {
        match self {
            Dialect::Line => reply.write_lines(out),
            Dialect::Json => write_json_reply(reply, out),
        }
    }
}

/// One JSON line, parsed, from which [`command`](Self::command) borrows its text.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRequest {
    value: Value,
}

impl JsonRequest {
    /// Parses one line of the JSON dialect; `Ok(None)` for a blank line.
    ///
    /// ```
    /// use pubsub_lab::protocol::{Command, JsonRequest};
    /// let request = JsonRequest::parse(br#"{"action": "publish", "topic": "news", "message": "hi"}"#)?
    ///     .expect("not blank");
    /// assert_eq!(
    ///     request.command("json:127.0.0.1:5000")?,
    ///     Command::Publish { topic: "news", message: "hi", publisher_id: "json:127.0.0.1:5000" }
    /// );
    /// # Ok::<(), pubsub_lab::protocol::ProtocolError>(())
    /// ```
    ///
    /// # Errors
    /// [`ProtocolError::NotUtf8`], [`ProtocolError::BadJson`], or
    /// [`ProtocolError::NoAction`] for JSON that is not an object with an `"action"`.
    pub fn parse(line: &[u8]) -> Result<Option<JsonRequest>, ProtocolError> {
        let text = std::str::from_utf8(line).map_err(|_| ProtocolError::NotUtf8)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        let value = json::parse(text).map_err(ProtocolError::BadJson)?;
        if value.get("action").is_none() {
            return Err(ProtocolError::NoAction);
        }
        Ok(Some(JsonRequest { value }))
    }

    /// Whether the client asked for an acknowledgement (`"verbose": true`).
    pub fn verbose(&self) -> bool {
        self.value.get("verbose").and_then(Value::as_bool) == Some(true)
    }

    /// The command this line asks for, held to the line protocol's grammar (one-word
    /// topics and ids, one-line messages), with `default_id` where it gives no id.
    ///
    /// # Errors
    /// [`ProtocolError::UnknownAction`], [`ProtocolError::MissingField`], or what the
    /// line protocol would answer for the same text.
    pub fn command<'a>(&'a self, default_id: &'a str) -> Result<Command<'a>, ProtocolError> {
        let field = |name: &str| self.value.get(name).and_then(Value::as_str);
        let action = field("action").ok_or(ProtocolError::NoAction)?;
        let (spec, action) = CommandSpec::for_json(action)
            .and_then(|spec| Some((spec, spec.json?)))
            .ok_or_else(|| ProtocolError::UnknownAction(shorten(action)))?;
        let mut given = [None; 3];
        for (slot, argument) in given.iter_mut().zip(spec.arguments) {
            let member = argument.json.iter().find_map(|&name| field(name));
            *slot = match member {
                Some(text) => Some(check_argument(argument, text)?),
                None if argument.id => Some(default_id),
                None if argument.shape == Shape::Optional => None,
                None => {
                    return Err(ProtocolError::MissingField {
                        action,
                        field: argument.json[0],
                    })
                }
            };
        }
        Ok(spec.build(&Arguments::new(given)))
    }
}

/// What [`Command::parse`] guarantees of a line's argument, for one taken from a JSON
/// member: the grammar's word (one word, no line break, no control character) for topics,
/// ids and tokens, and a message a `DELIVER` line can carry (see `grammar.rs`).
fn check_argument<'a>(argument: &Argument, text: &'a str) -> Result<&'a str, ProtocolError> {
    match argument.shape {
        Shape::Text => check_message(text)?,
        _ => check_word(argument.what, text)?,
    }
    Ok(text)
}

/// Appends one delivery as a JSON line: `{"topic":…,"message":…,"publisher":…,"timestamp":…}`.
/// kn-sock's client reads `topic` and `message` and keeps the rest.
///
/// ```
/// let mut out = String::new();
/// pubsub_lab::protocol::write_json_delivery(&mut out, "news", "say \"hi\"", "pub1", "2025-03-14 10:30:00");
/// assert_eq!(out, "{\"topic\":\"news\",\"message\":\"say \\\"hi\\\"\",\"publisher\":\"pub1\",\"timestamp\":\"2025-03-14 10:30:00\"}\n");
/// ```
pub fn write_json_delivery(
    out: &mut String,
    topic: &str,
    message: &str,
    publisher_id: &str,
    timestamp: &str,
) {
    // Written straight into the batch's buffer, member by member, rather than through an
    // `ObjectWriter`: this runs once per message, and a writer would allocate each time.
    for (start, value) in [
        ("{\"topic\":", topic),
        (",\"message\":", message),
        (",\"publisher\":", publisher_id),
        (",\"timestamp\":", timestamp),
    ] {
        out.push_str(start);
        json::write_string(out, value);
    }
    out.push_str("}\n");
}

/// Appends `reply` as one JSON line. See the module docs for which ones a JSON client can
/// ask for; the others are written too, so that every reply has a JSON form.
/// One topic of a listing as a JSON object: `{"topic":"news","subscribers":2}`, with
/// `"retained":true` added for a topic that keeps a retained message. The JSON dialect's
/// `topics` reply and the web's `GET /topics` both list topics this way.
pub fn listed_json(listed: &Listed) -> String {
    let mut object = ObjectWriter::new();
    object
        .string("topic", &listed.name)
        .number("subscribers", listed.subscribers as f64);
    if listed.retained {
        object.raw("retained", "true");
    }
    object.finish()
}

/// One client of a listing as a JSON object, its fields named as on a `CLIENTS` line
/// (`{"number":3,"way":"line",...,"state":"behind"}`): the JSON dialect's `clients` reply
/// and the web's `GET /clients` both list clients this way.
pub fn client_json(client: &ListedClient) -> String {
    let strings = |items: &[String]| {
        let mut list = String::from("[");
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                list.push(',');
            }
            json::write_string(&mut list, item);
        }
        list.push(']');
        list
    };
    let mut object = ObjectWriter::new();
    object
        .number("number", client.number as f64)
        .string("way", client.way_in)
        .string("addr", &client.addr)
        .string("user", &client.user)
        .raw("ids", &strings(&client.ids))
        .number("age", client.connected_seconds as f64)
        .number("subs", client.subscriptions as f64)
        .raw("filters", &strings(&client.filters))
        .number("msgs_in", client.messages_in as f64)
        .number("bytes_in", client.bytes_in as f64)
        .number("msgs_out", client.messages_out as f64)
        .number("bytes_out", client.bytes_out as f64)
        .number("pending", client.pending_bytes as f64)
        .string("state", client.state.word())
        .string("last", client.last_command)
        .number("idle", client.idle_seconds as f64);
    object.finish()
}

fn write_json_reply(reply: &Reply<'_>, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::new();
    match reply {
        Reply::Error(error) => {
            object.string("error", &error.to_string());
        }
        Reply::SubscribeOk(topic) => {
            object.string("ok", "subscribe").string("topic", topic);
        }
        Reply::UnsubscribeOk(topic) => {
            object.string("ok", "unsubscribe").string("topic", topic);
        }
        Reply::UnsubscribeAllOk => {
            object.string("ok", "unsubscribe");
        }
        Reply::PublishOk { topic, deliveries } => {
            object
                .string("ok", "publish")
                .string("topic", topic)
                .number("deliveries", *deliveries as f64);
        }
        Reply::RetainOk { topic, deliveries } => {
            object
                .string("ok", "retain")
                .string("topic", topic)
                .number("deliveries", *deliveries as f64);
        }
        Reply::UnretainOk(topic) => {
            object.string("ok", "unretain").string("topic", topic);
        }
        // Durable subscriptions have no JSON action yet; their answers have a JSON form
        // all the same, so that every reply has one.
        Reply::DurableOk { filter, pending } => {
            object
                .string("ok", "durable")
                .string("filter", filter)
                .number("pending", *pending as f64);
        }
        Reply::AckOk(seq) => {
            object.string("ok", "ack").number("seq", *seq as f64);
        }
        Reply::CancelOk { filter, dropped } => {
            object
                .string("ok", "cancel")
                .string("filter", filter)
                .number("dropped", *dropped as f64);
        }
        Reply::VerboseOk(on) => {
            object
                .string("ok", "verbose")
                .raw("on", if *on { "true" } else { "false" });
        }
        Reply::Pong(Some(token)) => {
            object.string("pong", token);
        }
        Reply::Pong(None) => {
            object.raw("pong", "null");
        }
        Reply::AuthOk(user) => {
            object.string("ok", "auth").string("user", user);
        }
        // The JSON dialect lists its actions, `auth` among them, with or without access
        // control.
        Reply::Help | Reply::HelpWithAuth => {
            let mut actions = String::from("[");
            for (n, action) in CommandSpec::json_actions().enumerate() {
                if n > 0 {
                    actions.push(',');
                }
                json::write_string(&mut actions, action);
            }
            actions.push(']');
            object.raw("help", &actions);
        }
        Reply::Topics { topics, more } => {
            let mut list = String::from("[");
            for (n, listed) in topics.iter().enumerate() {
                if n > 0 {
                    list.push(',');
                }
                list.push_str(&listed_json(listed));
            }
            list.push(']');
            object.raw("topics", &list).number("more", *more as f64);
        }
        Reply::Clients { clients, more } => {
            let listed: Vec<String> = clients.iter().map(client_json).collect();
            object
                .raw("clients", &format!("[{}]", listed.join(",")))
                .number("more", *more as f64);
        }
        Reply::KickOk(number) => {
            object.string("ok", "kick").number("client", *number as f64);
        }
        Reply::Stats(counters) => {
            let mut stats = ObjectWriter::new();
            for (name, value) in counters.iter() {
                stats.number(name, *value as f64);
            }
            object.raw("stats", &stats.finish());
        }
        Reply::Bye => {
            object.raw("bye", "true");
        }
    }
    out.extend_from_slice(object.finish().as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(line: &str) -> Result<Command<'static>, ProtocolError> {
        let request = JsonRequest::parse(line.as_bytes())?.expect("not blank");
        let leaked: &'static JsonRequest = Box::leak(Box::new(request));
        leaked.command("json:1.2.3.4:5")
    }

    #[test]
    fn kn_socks_three_actions_become_the_line_protocols_commands() {
        assert_eq!(
            command(r#"{"action": "subscribe", "topic": "news/technology"}"#),
            Ok(Command::Subscribe {
                topic: "news/technology",
                subscriber_id: "json:1.2.3.4:5"
            })
        );
        assert_eq!(
            command(r#"{"action": "unsubscribe", "topic": "t", "id": "me"}"#),
            Ok(Command::Unsubscribe {
                topic: "t",
                subscriber_id: "me"
            })
        );
        assert_eq!(
            command(r#"{"action": "publish", "topic": "t", "message": "a  b", "publisher": "p"}"#),
            Ok(Command::Publish {
                topic: "t",
                message: "a  b",
                publisher_id: "p"
            })
        );
    }

    #[test]
    fn bad_json_lines_get_the_line_protocols_reasons() {
        assert!(matches!(command("{"), Err(ProtocolError::BadJson(_))));
        assert_eq!(command("[1]"), Err(ProtocolError::NoAction));
        assert_eq!(
            command(r#"{"action": "dance"}"#),
            Err(ProtocolError::UnknownAction("dance".into()))
        );
        assert_eq!(
            command(r#"{"action": "publish", "topic": "t"}"#),
            Err(ProtocolError::MissingField {
                action: "publish",
                field: "message"
            })
        );
        assert_eq!(
            command(r#"{"action": "subscribe", "topic": "two words"}"#),
            Err(ProtocolError::NotOneWord { what: "topic" })
        );
        assert_eq!(
            command(r#"{"action": "publish", "topic": "t", "message": "a\rDELIVER t forged"}"#),
            Err(ProtocolError::LineBreakIn {
                what: "message",
                character: '\r'
            })
        );
        assert_eq!(
            command(r#"{"action": "publish", "topic": "t", "message": " padded"}"#),
            Err(ProtocolError::BadMessage)
        );
    }

    #[test]
    fn replies_are_one_json_object_each() {
        let topics = [Listed {
            name: "a\"b".to_string(),
            subscribers: 2,
            retained: true,
        }];
        for reply in [
            Reply::Error(&ProtocolError::BadMessage),
            Reply::Pong(None),
            Reply::Topics {
                topics: &topics,
                more: 1,
            },
            Reply::Stats(&[("published", 3)]),
            Reply::Help,
        ] {
            let mut out = Vec::new();
            Dialect::Json.write_reply(&reply, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            assert!(matches!(json::parse(&text), Ok(Value::Object(_))), "{text}");
        }
    }
}
