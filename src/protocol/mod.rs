//! The wire protocol: lines of text in, [`Command`]s out; [`Reply`]s and deliveries in,
//! lines out.
//!
//! This is the *message* layer. It never touches a socket: [`crate::framing`] cuts the byte
//! stream into lines, this module turns one line into a value (or a [`ProtocolError`]) and
//! one value back into a line, and the session decides what to do with it. Because
//! everything here works on plain strings, every rule of the protocol is unit-tested beside
//! the code without opening a connection.
//!
//! | file | direction | what |
//! |---|---|---|
//! | `command.rs` | client → broker | [`COMMANDS`], the table of every command; [`Command::parse`] |
//! | `reply.rs` | broker → that client | [`Reply`]: `OK`, `PONG`, `HELP`, `TOPICS`, `STATS`, `BYE` |
//! | `delivery.rs` | broker → subscribers | [`write_delivery`], the `DELIVER` line; [`Delivery`] |
//! | `message.rs` | broker → durable subscribers | [`write_message`], the `MESSAGE` line; [`Message`] |
//! | `error.rs` | broker → that client | [`ProtocolError`], the reason in an `ERROR` line |
//! | `held.rs` | broker → that client | [`Held`]: replies that wait for the durable log, confirms kept as values until it answers |
//! | `grammar.rs` | both | [`grammar`]: what a topic, filter, id and message may be, for every way in |
//! | `dialect.rs` | both | [`Dialect`]: the same commands and replies as kn-sock's JSON lines |
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

mod command;
mod delivery;
mod dialect;
mod error;
pub mod grammar;
mod held;
mod message;
mod reply;

pub use command::{Argument, Arguments, Command, CommandSpec, Secret, Shape, AUTH, COMMANDS};
pub use delivery::{write_delivery, Delivery, TIMESTAMP_FORMAT};
pub use dialect::{client_json, listed_json, write_json_delivery, Dialect, JsonRequest};
pub use error::ProtocolError;
pub use held::{Held, HeldReply};
pub use message::{write_message, Message};
pub use reply::{ClientState, Listed, ListedClient, Reply, MORE_CLIENTS, MORE_TOPICS};
