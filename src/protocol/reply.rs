//! Replies, broker to the client whose command they answer (never to anyone else).

use std::io::Write;

use super::command::{AUTH, COMMANDS};
use super::error::ProtocolError;

/// What the line that says topics were left out of a `TOPICS` listing starts with, after
/// `TOPICS `: `TOPICS … and 990000 more`. No topic name contains a space, so no listed
/// topic can look like it.
pub const MORE_TOPICS: &str = "… and";

/// One line of a `TOPICS` reply: a topic or a wildcard filter that has subscribers, or a
/// topic with a retained message (`TOPICS sensors/1 0 retained`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The topic, or the filter (`news/+`).
    pub name: String,
    /// How many subscribers it has.
    pub subscribers: usize,
    /// Whether a retained message is kept for it.
    pub retained: bool,
}

/// What the line that says clients were left out of a `CLIENTS` listing starts with,
/// after `CLIENTS `, as for `TOPICS`: `CLIENTS … and 40 more`.
pub const MORE_CLIENTS: &str = "… and";

/// How a client is doing, as `CLIENTS` shows it: the outbox's phase (see `outbox.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Everything sent to it was written at once: `keeping-up`.
    KeepingUp,
    /// Lines wait for it and its own writer thread writes them: `behind`.
    Behind,
    /// It was cut off as a slow consumer, a moment ago (the listing keeps it a while so
    /// that an instructor can still see it): `cut-off`.
    CutOff,
}

impl ClientState {
    /// Every state, in the order of their words.
    pub const ALL: [ClientState; 3] = [
        ClientState::KeepingUp,
        ClientState::Behind,
        ClientState::CutOff,
    ];

    /// The state's word on the wire, which is also how `CLIENTS` filters by it.
    pub fn word(self) -> &'static str {
        match self {
            ClientState::KeepingUp => "keeping-up",
            ClientState::Behind => "behind",
            ClientState::CutOff => "cut-off",
        }
    }
}

/// One line of a `CLIENTS` reply: a connection and what it is doing, in the spirit of
/// Redis's `CLIENT LIST` and NATS's `/connz`. Made by `clients.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedClient {
    /// The connection's number, as the logs show it (`#3`); 0 for a UDP address.
    pub number: u64,
    /// How it came in: `line`, `json`, `websocket`, `socketio`, `udp`.
    pub way_in: &'static str,
    /// Its address and port.
    pub addr: String,
    /// Who it proved it is (`-` before `AUTH`, or without an auth file).
    pub user: String,
    /// The ids it used, the latest last (a few; see `clients.rs`).
    pub ids: Vec<String>,
    /// Seconds since it connected.
    pub connected_seconds: u64,
    /// How many topics and filters it subscribes to.
    pub subscriptions: usize,
    /// The first of them (see `clients.rs` for how many).
    pub filters: Vec<String>,
    /// Messages it published (`PUBLISH`, `RETAIN`).
    pub messages_in: u64,
    /// The bytes of every line it sent.
    pub bytes_in: u64,
    /// Messages delivered to it.
    pub messages_out: u64,
    /// The bytes of those deliveries.
    pub bytes_out: u64,
    /// Bytes waiting for it in the broker.
    pub pending_bytes: usize,
    /// How it is keeping up.
    pub state: ClientState,
    /// Its last command's word (`-` before its first).
    pub last_command: &'static str,
    /// Seconds since it last sent something.
    pub idle_seconds: u64,
}

impl ListedClient {
    /// Appends the line's fields after `CLIENTS `: `key=value` pairs as Redis's `CLIENT
    /// LIST` writes them, so a `grep state=behind` finds the slow ones. Lists are joined
    /// with commas (no topic or id holds a space, and a comma only rarely).
    pub fn write_fields(&self, out: &mut Vec<u8>) {
        let user = if self.user.is_empty() {
            "-"
        } else {
            &self.user
        };
        let ids = if self.ids.is_empty() {
            "-".to_string()
        } else {
            self.ids.join(",")
        };
        let filters = if self.filters.is_empty() {
            "-".to_string()
        } else {
            self.filters.join(",")
        };
        let _ = write!(
            out,
            "{} way={} addr={} user={user} ids={ids} age={} subs={} filters={filters} \
             msgs_in={} bytes_in={} msgs_out={} bytes_out={} pending={} state={} last={} idle={}",
            self.number,
            self.way_in,
            self.addr,
            self.connected_seconds,
            self.subscriptions,
            self.messages_in,
            self.bytes_in,
            self.messages_out,
            self.bytes_out,
            self.pending_bytes,
            self.state.word(),
            self.last_command,
            self.idle_seconds,
        );
    }
}

/// A reply the broker sends to the client whose command it answers.
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
    /// `OK UNSUBSCRIBE`, for `UNSUBSCRIBE` with no arguments, in verbose mode only.
    UnsubscribeAllOk,
    /// `OK RETAIN <topic> <deliveries>`, sent in verbose mode only.
    RetainOk {
        /// The topic published to.
        topic: &'a str,
        /// How many subscribers the message was handed to now.
        deliveries: usize,
    },
    /// `OK UNRETAIN <topic>`, sent in verbose mode only.
    UnretainOk(&'a str),
    /// `OK PUBLISH <topic> <deliveries>`, sent in verbose mode only.
    PublishOk {
        /// The topic published to.
        topic: &'a str,
        /// How many subscribers the message was handed to.
        deliveries: usize,
    },
    /// `OK DURABLE <filter> <pending>`, the answer to `DURABLE` (always sent): the
    /// subscription is held by this connection now, and `pending` messages follow.
    DurableOk {
        /// The filter.
        filter: &'a str,
        /// How many messages it held (waiting, or sent before and not acknowledged).
        pending: usize,
    },
    /// `OK ACK <seq>`, sent in verbose mode only.
    AckOk(u64),
    /// `OK CANCEL <filter> <dropped>`, the answer to `CANCEL` (always sent).
    CancelOk {
        /// The filter.
        filter: &'a str,
        /// How many messages it held, now dropped.
        dropped: usize,
    },
    /// `OK VERBOSE on|off`, the answer to `VERBOSE` (sent whatever the mode was).
    VerboseOk(bool),
    /// `PONG [token]`.
    Pong(Option<&'a str>),
    /// The `HELP` listing: one line per entry of [`COMMANDS`].
    Help,
    /// The `HELP` listing of a broker with access control: [`COMMANDS`] and [`AUTH`].
    HelpWithAuth,
    /// `OK AUTH <user>`: the client is that user from now on (sent whatever the mode).
    AuthOk(&'a str),
    /// `TOPICS <topic> <subscribers>` lines, a `TOPICS … and <n> more` line if some were
    /// left out, then `END TOPICS`.
    Topics {
        /// The topics listed, with their numbers of subscribers.
        topics: &'a [Listed],
        /// How many more there were.
        more: usize,
    },
    /// `STATS <name> <value>` lines, then `END STATS`.
    Stats(&'a [(&'static str, u64)]),
    /// `CLIENTS <number> way=... state=... ...` lines, a `CLIENTS … and <n> more` line if
    /// some were left out, then `END CLIENTS`.
    Clients {
        /// The clients listed, by number.
        clients: &'a [ListedClient],
        /// How many more there were.
        more: usize,
    },
    /// `OK KICK <number>`: that client was told why and disconnected.
    KickOk(u64),
    /// `BYE`, just before the broker closes the connection after `QUIT`.
    Bye,
}

impl Reply<'_> {
    /// Appends the reply as wire lines, each ending in `\n`.
    ///
    /// ```
    /// use pubsub_lab::protocol::{Listed, Reply};
    /// let mut out = Vec::new();
    /// Reply::Pong(Some("42")).write_lines(&mut out);
    /// let weather = Listed { name: "weather".to_string(), subscribers: 2, retained: true };
    /// Reply::Topics { topics: &[weather], more: 0 }.write_lines(&mut out);
    /// assert_eq!(out, b"PONG 42\nTOPICS weather 2 retained\nEND TOPICS\n");
    /// ```
    pub fn write_lines(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail, so the `let _ =` below loses nothing.
        let _ = match self {
            Reply::Error(reason) => writeln!(out, "ERROR {reason}"),
            Reply::SubscribeOk(topic) => writeln!(out, "OK SUBSCRIBE {topic}"),
            Reply::UnsubscribeOk(topic) => writeln!(out, "OK UNSUBSCRIBE {topic}"),
            Reply::UnsubscribeAllOk => writeln!(out, "OK UNSUBSCRIBE"),
            Reply::PublishOk { topic, deliveries } => {
                writeln!(out, "OK PUBLISH {topic} {deliveries}")
            }
            Reply::RetainOk { topic, deliveries } => {
                writeln!(out, "OK RETAIN {topic} {deliveries}")
            }
            Reply::UnretainOk(topic) => writeln!(out, "OK UNRETAIN {topic}"),
            Reply::DurableOk { filter, pending } => writeln!(out, "OK DURABLE {filter} {pending}"),
            Reply::AckOk(seq) => writeln!(out, "OK ACK {seq}"),
            Reply::CancelOk { filter, dropped } => writeln!(out, "OK CANCEL {filter} {dropped}"),
            Reply::VerboseOk(on) => writeln!(out, "OK VERBOSE {}", if *on { "on" } else { "off" }),
            Reply::Pong(Some(token)) => writeln!(out, "PONG {token}"),
            Reply::Pong(None) => writeln!(out, "PONG"),
            Reply::AuthOk(user) => writeln!(out, "OK AUTH {user}"),
            Reply::Help | Reply::HelpWithAuth => {
                let auth = matches!(self, Reply::HelpWithAuth).then_some(&AUTH);
                for spec in COMMANDS.into_iter().chain(auth) {
                    let _ = writeln!(out, "HELP {:<42} {}", spec.syntax(), spec.summary);
                }
                writeln!(out, "END HELP")
            }
            Reply::Topics { topics, more } => {
                for listed in topics.iter() {
                    let retained = if listed.retained { " retained" } else { "" };
                    let _ = writeln!(
                        out,
                        "TOPICS {} {}{retained}",
                        listed.name, listed.subscribers
                    );
                }
                if *more > 0 {
                    let _ = writeln!(out, "TOPICS {MORE_TOPICS} {more} more");
                }
                writeln!(out, "END TOPICS")
            }
            Reply::Stats(counters) => {
                for (name, value) in counters.iter() {
                    let _ = writeln!(out, "STATS {name} {value}");
                }
                writeln!(out, "END STATS")
            }
            Reply::Clients { clients, more } => {
                for client in clients.iter() {
                    out.extend_from_slice(b"CLIENTS ");
                    client.write_fields(out);
                    out.push(b'\n');
                }
                if *more > 0 {
                    let _ = writeln!(out, "CLIENTS {MORE_CLIENTS} {more} more");
                }
                writeln!(out, "END CLIENTS")
            }
            Reply::KickOk(number) => writeln!(out, "OK KICK {number}"),
            Reply::Bye => writeln!(out, "BYE"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_never_start_like_a_delivery() {
        let error = ProtocolError::NotUtf8;
        let topics = [Listed {
            name: "DELIVER".to_string(),
            subscribers: 1,
            retained: true,
        }];
        let stats = [("published", 3)];
        let replies = [
            Reply::Error(&error),
            Reply::SubscribeOk("DELIVER"),
            Reply::UnsubscribeOk("t"),
            Reply::UnsubscribeAllOk,
            Reply::RetainOk {
                topic: "t",
                deliveries: 1,
            },
            Reply::UnretainOk("t"),
            Reply::PublishOk {
                topic: "t",
                deliveries: 2,
            },
            Reply::DurableOk {
                filter: "t",
                pending: 3,
            },
            Reply::AckOk(1),
            Reply::CancelOk {
                filter: "t",
                dropped: 0,
            },
            Reply::VerboseOk(true),
            Reply::Pong(Some("DELIVER")),
            Reply::Help,
            Reply::HelpWithAuth,
            Reply::AuthOk("DELIVER"),
            Reply::Topics {
                topics: &topics,
                more: 3,
            },
            Reply::Stats(&stats),
            Reply::Clients {
                clients: &[a_client()],
                more: 2,
            },
            Reply::KickOk(3),
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

    /// A client as a listing shows it, for the tests.
    pub(crate) fn a_client() -> ListedClient {
        ListedClient {
            number: 3,
            way_in: "line",
            addr: "127.0.0.1:5000".to_string(),
            user: String::new(),
            ids: vec!["DELIVER".to_string()],
            connected_seconds: 12,
            subscriptions: 2,
            filters: vec!["weather".to_string(), "news/#".to_string()],
            messages_in: 1,
            bytes_in: 30,
            messages_out: 5,
            bytes_out: 400,
            pending_bytes: 0,
            state: ClientState::Behind,
            last_command: "PING",
            idle_seconds: 1,
        }
    }

    #[test]
    fn a_client_is_one_line_of_key_value_pairs() {
        let mut out = Vec::new();
        Reply::Clients {
            clients: &[a_client()],
            more: 0,
        }
        .write_lines(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CLIENTS 3 way=line addr=127.0.0.1:5000 user=- ids=DELIVER age=12 subs=2 \
             filters=weather,news/# msgs_in=1 bytes_in=30 msgs_out=5 bytes_out=400 pending=0 \
             state=behind last=PING idle=1\nEND CLIENTS\n"
        );
    }

    #[test]
    fn help_lists_every_command_from_the_table_in_aligned_columns() {
        let mut out = Vec::new();
        Reply::Help.write_lines(&mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), COMMANDS.len() + 1);
        assert_eq!(
            lines[0],
            "HELP SUBSCRIBE <topic> <subscriber_id>          receive every message published to <topic> \
             (wildcards: + one level, # all below)"
        );
        assert_eq!(
            lines[2],
            "HELP PUBLISH <topic> <message> <publisher_id>   send <message> to every subscriber of <topic>"
        );
        for (line, spec) in lines.iter().zip(&COMMANDS) {
            assert!(
                line.starts_with(&format!("HELP {}", spec.syntax())),
                "{line}"
            );
            assert_eq!(line.find(spec.summary), Some(48), "{line}");
        }
        assert_eq!(lines.last(), Some(&"END HELP"));
    }
}
