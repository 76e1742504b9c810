//! How a way in meets the session core: the [`Link`] trait (who the client is, where its
//! replies and deliveries go, what the way in carries), how a session starts ([`Entry`]),
//! and the link of a TCP connection or a WebSocket ([`TcpLink`]). The other links live
//! beside their ways in: `udp/link.rs`, `web/connection/requests.rs`, and Socket.IO's in
//! `web/socketio_session.rs`.

use std::sync::Arc;

use crate::clients::Probe;
use crate::connections::Slot;
use crate::durable::Holder;
use crate::outbox::Outbox;
use crate::peer::Peer;
use crate::protocol::{Command, Dialect, ProtocolError, Reply};
use crate::subscriber::Subscriber;

/// What a way in gives the session core: who the client is, where its deliveries and
/// replies go, and how to close it. The core (the [`Session`]) decides everything else, the
/// same for every way in; a link only moves what it is handed, in its own dialect. See
/// the module docs.
pub(crate) trait Link {
    /// The client, as logs name it.
    fn peer(&self) -> &Peer;
    /// The client as a subscriber: what the registry holds for its subscriptions.
    fn subscriber(&self) -> Arc<dyn Subscriber>;
    /// The client as the holder of durable subscriptions, if this way in can hold them:
    /// only a connection that stays can (a datagram's address, an HTTP request and a
    /// Socket.IO session cannot), so none by default.
    fn holder(&self) -> Option<Arc<dyn Holder>> {
        None
    }
    /// What `CLIENTS` shows of the bytes going out to the client, and how `KICK` closes
    /// it, if this way in has a connection of its own (see `clients.rs`).
    fn probe(&self) -> Option<Arc<dyn Probe>> {
        None
    }
    /// Whether this way in carries `command` at all (a datagram has no connection to
    /// hold `VERBOSE` or an `AUTH`, say). Asked before the command is executed.
    ///
    /// # Errors
    /// The refusal to answer with.
    fn carries(&self, _command: &Command<'_>) -> Result<(), ProtocolError> {
        Ok(())
    }
    /// From now on the client speaks `dialect` (decided by a TCP connection's first line).
    fn speak(&self, _dialect: Dialect) {}
    /// Queues a reply, in the client's dialect, to go out at the next [`flush`](Self::flush).
    fn reply(&self, reply: &Reply<'_>);
    /// Writes a reply, in the client's dialect, into `out`: for replies that must wait
    /// behind a confirm (see `Session::commit_and_release`), later queued with
    /// [`send`](Self::send).
    fn encode(&self, reply: &Reply<'_>, out: &mut Vec<u8>);
    /// Queues bytes [`encode`](Self::encode) wrote.
    fn send(&self, bytes: &[u8]);
    /// Writes out what was queued for the client.
    fn flush(&self);
    /// The client proved who it is: a deadline the way in set for that can go.
    fn authenticated(&self) {}
    /// Logs a warning about what the client sent (already throttled per client; the UDP
    /// port throttles them across every address too).
    fn warn(&self, level: log::Level, event: std::fmt::Arguments<'_>) {
        log::log!(level, "{event}");
    }
    /// Logs an event of this client's connection (the TCP port throttles them).
    fn log_event(&self, level: log::Level, event: std::fmt::Arguments<'_>) {
        log::log!(level, "{event}");
    }
    /// The session is over: close the way in, give back what it holds.
    fn close(&self);
}

/// How a new session starts, as for who its client is.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// On a broker with access control, the client must send `AUTH` first, within
    /// `--auth-timeout` (a TCP connection, a WebSocket).
    Login,
    /// The client cannot log in (a datagram): it is the user
    /// [`ANONYMOUS`](crate::access::ANONYMOUS) to the rules.
    Anonymous,
    /// The way in proved who the client is already (HTTP's Basic credentials); `None` for
    /// a request that gave none.
    As(Option<Arc<str>>),
}

/// A TCP connection (the line protocol or the JSON dialect) or a WebSocket, as a link:
/// its outbox takes replies as it takes deliveries, and its slot in the connection table
/// is given back when the session ends.
pub(crate) struct TcpLink {
    outbox: Arc<Outbox>,
    slot: Slot,
    dialect: std::cell::Cell<Dialect>,
}

impl TcpLink {
    /// The link of the connection whose outbox is `outbox`, holding `slot`.
    pub(crate) fn new(outbox: Arc<Outbox>, slot: Slot) -> TcpLink {
        TcpLink {
            outbox,
            slot,
            dialect: std::cell::Cell::new(Dialect::Line),
        }
    }
}

impl Link for TcpLink {
    fn peer(&self) -> &Peer {
        self.outbox.peer()
    }

    fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::clone(&self.outbox) as Arc<dyn Subscriber>
    }

    fn holder(&self) -> Option<Arc<dyn Holder>> {
        Some(Arc::clone(&self.outbox) as Arc<dyn Holder>)
    }

    fn probe(&self) -> Option<Arc<dyn Probe>> {
        Some(Arc::clone(&self.outbox) as Arc<dyn Probe>)
    }

    fn speak(&self, dialect: Dialect) {
        self.dialect.set(dialect);
        self.outbox.set_dialect(dialect);
    }

    fn reply(&self, reply: &Reply<'_>) {
        let dialect = self.dialect.get();
        self.outbox
            .push_with(|pending| dialect.write_reply(reply, pending));
    }

    fn encode(&self, reply: &Reply<'_>, out: &mut Vec<u8>) {
        self.dialect.get().write_reply(reply, out);
    }

    fn send(&self, bytes: &[u8]) {
        self.outbox.push(bytes);
    }

    fn flush(&self) {
        Subscriber::flush(&*self.outbox);
    }

    fn authenticated(&self) {
        if let Err(error) = self.outbox.socket().set_read_timeout(None) {
            log::debug!("{} read timeout not cleared: {error}", self.peer().tag());
        }
    }

    fn log_event(&self, level: log::Level, event: std::fmt::Arguments<'_>) {
        self.slot.connections().log_event(level, event);
    }

    fn close(&self) {
        self.outbox.close();
        self.outbox.join_writer();
        self.slot.connections().log_event(
            log::Level::Info,
            format_args!("{} disconnected", self.peer()),
        );
        // The slot itself is given back when the link is dropped, after this.
    }
}
