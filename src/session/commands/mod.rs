//! What each command does: one file per command, as mini-redis keeps its `cmd/` folder.
//!
//! A command's syntax is its entry in the table of `protocol/command.rs`; what it does is
//! its handler here, a method of [`Session`] that runs once the gate (`Session::execute`)
//! has let the command through. [`Session::apply`] below is the one `match` from a parsed
//! [`Command`] to its handler. Each handler checks what the command may do (access rules
//! and limits, through the router), does it, and answers with a typed [`Reply`](crate::protocol::Reply)
//! or a refusal; the link writes either in the client's dialect.
//!
//! Adding a command: its table entry and `Command` variant (`protocol/command.rs`), a line
//! in `apply`, and a file here whose handler is `#[inline(never)]` (see `apply` for why).

use super::Session;
use crate::protocol::Command;

mod ack;
mod auth;
mod cancel;
mod clients;
mod durable;
mod help;
mod kick;
mod ping;
mod publish;
mod quit;
mod retain;
mod stats;
mod subscribe;
mod topics;
mod unretain;
mod unsubscribe;
mod verbose;

impl Session {
    /// The one place that decides which handler a command goes to.
    ///
    /// Every handler is marked `#[inline(never)]`, so that each is a call of its own. The
    /// compiler had inlined them all here, and a function's stack frame must hold what
    /// every inlined part needs: 560 bytes, which every command then paid on its way down.
    /// That pushed an idle connection's stack into a third 4 KiB page (see
    /// `CLIENT_STACK_SIZE` in `server.rs`). A call costs a `PUBLISH` a few instructions.
    pub(super) fn apply(&mut self, command: &Command<'_>) {
        match *command {
            Command::Auth { user, secret } => self.auth(user, secret.0),
            Command::Subscribe {
                topic,
                subscriber_id,
            } => self.subscribe(topic, subscriber_id),
            Command::Unsubscribe {
                topic,
                subscriber_id,
            } => self.unsubscribe(topic, subscriber_id),
            Command::UnsubscribeAll => self.unsubscribe_all(),
            Command::Publish {
                topic,
                message,
                publisher_id,
            } => self.publish(topic, message, publisher_id),
            Command::Retain {
                topic,
                message,
                publisher_id,
            } => self.retain(topic, message, publisher_id),
            Command::Unretain {
                topic,
                publisher_id,
            } => self.unretain(topic, publisher_id),
            Command::Durable {
                filter,
                subscriber_id,
            } => self.durable(filter, subscriber_id),
            Command::Ack { seq } => self.ack(seq),
            Command::Cancel {
                filter,
                subscriber_id,
            } => self.cancel(filter, subscriber_id),
            Command::Ping { token } => self.ping(token),
            Command::Topics { filter } => self.topics(filter),
            Command::Clients { filter } => self.clients(filter),
            Command::Kick { client } => self.kick(client),
            Command::Stats => self.stats(),
            Command::Verbose { on } => self.verbose(on),
            Command::Quit => self.quit(),
            Command::Help => self.help(),
        }
    }
}
