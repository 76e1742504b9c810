//! Hooks: code of the program that embeds the broker, called on the one road every client
//! takes, whatever its transport.
//!
//! A program that runs the broker ([`Broker::builder`](crate::Broker::builder)) can give
//! it one [`Hooks`] value. The broker then asks it, for every client of every transport
//! (the line protocol, kn-sock's JSON lines, UDP datagrams, HTTP's `POST /publish`, a
//! WebSocket, the program's own [`BrokerHandle::publish`](crate::BrokerHandle::publish)
//! and [`subscribe`](crate::BrokerHandle::subscribe)):
//!
//! | hook | when | it may |
//! |---|---|---|
//! | [`on_connect`](Hooks::on_connect) | a new client, before its first command is executed | observe, refuse |
//! | [`on_subscribe`](Hooks::on_subscribe) | a client asks for a topic | observe, refuse |
//! | [`on_unsubscribe`](Hooks::on_unsubscribe) | a client asks to stop receiving a topic | observe, refuse |
//! | [`on_publish`](Hooks::on_publish) | a client publishes | observe, refuse, rewrite the message |
//!
//! A refusal carries a reason, which the client is told in its own dialect: `ERROR
//! <reason>` on the line protocol, over UDP and in a WebSocket frame, `{"error":
//! "<reason>"}` in JSON, `403 Forbidden` with the reason as its body over HTTP. This is
//! what kn-sock's `handler_func` and Mosquitto's plugins (`mosquitto_auth_acl_check`) do;
//! the difference is where the calls sit. They are in the router (`router.rs`), which
//! every transport passes through, not in one transport's session, so a rule written
//! once holds for all of them, including transports added later.
//!
//! ```text
//!   line session ─┐
//!   JSON session ─┤
//!      WebSocket ─┼─▶ Router::subscribe ──▶ on_subscribe ──▶ registry
//!  POST /publish ─┤   Publisher::publish ─▶ on_publish ───▶ batch ──▶ subscribers
//!   UDP listener ─┤   Router::admit ──────▶ on_connect
//!   BrokerHandle ─┘
//! ```
//!
//! # Costs
//!
//! A broker without hooks pays one check of an `Option` per publish and per subscribe.
//! A hook runs on the client's own thread (the UDP listener's, for datagrams), inside the
//! broker's delivery path: a hook that takes a millisecond costs that client a
//! millisecond per publish, and every other client nothing. It must not block for long
//! (a database lookup per message belongs in a cache).
//!
//! # A hook that panics
//!
//! A panic in a hook is caught ([`std::panic::catch_unwind`]) and counts as a
//! **refusal**, with the reason [`HOOK_FAILED`]; the broker logs it as an error, and the
//! client and its connection carry on. Failing closed is the safe choice for code that
//! enforces rules: a naming rule, or an access check, that panics on some odd input
//! must not let that input through, or every bug in a guard becomes a way around it.
//! (Rust still prints the panic's message on stderr first, as it does for every panic:
//! that is the embedding program's bug, and its author should see it.)
//!
//! ```
//! use pubsub_lab::hooks::{ClientInfo, Hooks, Publish, PublishVerdict, Refusal};
//! use pubsub_lab::{Broker, Client};
//! use std::time::Duration;
//!
//! /// Shouting is rewritten; topics outside `class/` are refused.
//! struct Classroom;
//!
//! impl Hooks for Classroom {
//!     fn on_subscribe(&self, _client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
//!         if topic.starts_with("class/") { Ok(()) } else { Err("topics start with class/".into()) }
//!     }
//!     fn on_publish(&self, _client: ClientInfo<'_>, publish: &Publish<'_>) -> PublishVerdict {
//!         PublishVerdict::Rewrite(publish.message.to_lowercase())
//!     }
//! }
//!
//! let broker = Broker::builder().line("127.0.0.1:0").hooks(Classroom).bind()?.spawn()?;
//! let mut client = Client::connect(broker.addr())?;
//! client.subscribe("weather", "sub1")?;
//! let refused = client.ping().unwrap_err(); // the ERROR comes before the PONG
//! assert_eq!(refused.to_string(), "the broker refused the command: topics start with class/");
//! client.subscribe("class/news", "sub1")?;
//! client.ping()?;
//! client.publish("class/news", "HELLO", "pub1")?;
//! let delivery = client.recv_timeout(Duration::from_secs(5))?.expect("a delivery");
//! assert_eq!(delivery.message, "hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::text;

/// The reason a client is given when a hook panicked: see the module docs.
pub const HOOK_FAILED: &str = "refused: the broker's hook failed on this request";

/// The longest reason a client is told; a longer one is cut (hooks are code of the
/// program, but their reasons may quote what a client sent).
pub const MAX_REASON_BYTES: usize = 512;

/// How a client reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// The classic line protocol over TCP.
    Line,
    /// kn-sock's JSON lines, on the line protocol's TCP port.
    Json,
    /// Datagrams on `--udp-port`.
    Udp,
    /// HTTP requests to the web port (`POST /publish`).
    Http,
    /// A WebSocket on the web port (`GET /ws`), carrying the line protocol.
    WebSocket,
    /// A Socket.IO client on the web port (`/socket.io/`), over long-polling or WebSocket.
    SocketIo,
    /// The program itself, through [`BrokerHandle`](crate::BrokerHandle).
    InProcess,
}

impl Transport {
    /// Its name, as logs, `CLIENTS` and `/metrics` show it: `line`, `websocket`...
    pub fn word(self) -> &'static str {
        match self {
            Transport::Line => "line",
            Transport::Json => "json",
            Transport::Udp => "udp",
            Transport::Http => "http",
            Transport::WebSocket => "websocket",
            Transport::SocketIo => "socketio",
            Transport::InProcess => "in-process",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// Who is asking: what a hook knows about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo<'a> {
    /// How it reaches the broker.
    pub transport: Transport,
    /// Its address (`None` for the program itself).
    pub addr: Option<SocketAddr>,
    /// The id it gave in this request (a `SUBSCRIBE`'s subscriber id, a `PUBLISH`'s
    /// publisher id); `None` when it gave none (at connect, in-process). Ids are not
    /// authenticated: anyone can claim any id.
    pub id: Option<&'a str>,
}

impl ClientInfo<'static> {
    /// A client of `transport` at `addr`, before it has given an id.
    pub fn new(transport: Transport, addr: Option<SocketAddr>) -> ClientInfo<'static> {
        ClientInfo {
            transport,
            addr,
            id: None,
        }
    }
}

impl ClientInfo<'_> {
    /// The same client, with the id it gave in one request.
    pub fn with_id(self, id: &str) -> ClientInfo<'_> {
        ClientInfo {
            transport: self.transport,
            addr: self.addr,
            id: Some(id),
        }
    }
}

/// One publish, as a hook sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The message.
    pub message: &'a str,
    /// The id the publisher gave.
    pub publisher_id: &'a str,
}

/// A hook's "no", with the reason the client is told. Line breaks and control characters
/// in it are shown escaped, so a reason can never make a client read a second line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(String);

impl Refusal {
    /// A refusal with this reason.
    pub fn new(reason: impl Into<String>) -> Refusal {
        let reason = reason.into();
        let mut safe = text::escaped(&reason).to_string();
        if safe.is_empty() {
            safe.push_str("refused");
        }
        if safe.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !safe.is_char_boundary(end) {
                end -= 1;
            }
            safe.truncate(end);
            safe.push('…');
        }
        Refusal(safe)
    }

    /// The reason, as the client is told it.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Refusal {
        Refusal::new(reason)
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal::new(reason)
    }
}

/// What [`Hooks::on_publish`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishVerdict {
    /// Deliver the message as it is.
    Allow,
    /// Deliver this message instead. It must still be one line of text a `DELIVER` line
    /// can carry; if not, the publish is refused and the broker logs the hook's mistake.
    Rewrite(String),
    /// Deliver nothing; the publisher is told why.
    Refuse(Refusal),
}

impl From<Result<(), Refusal>> for PublishVerdict {
    /// `Ok` allows, `Err` refuses: so a check written for `on_subscribe` serves here too.
    fn from(result: Result<(), Refusal>) -> PublishVerdict {
        match result {
            Ok(()) => PublishVerdict::Allow,
            Err(refusal) => PublishVerdict::Refuse(refusal),
        }
    }
}

/// The program's hooks. Every method has a default that allows everything, so a program
/// writes only the ones it needs. See the module docs.
pub trait Hooks: Send + Sync + 'static {
    /// A new client, before its first command is executed: for TCP when its first line
    /// arrives (which also tells its dialect), for UDP each datagram from an address that
    /// holds no lease (UDP has no connections; a lease is the nearest thing), for the web
    /// at a connection's first request ([`Transport::Http`]) and at a WebSocket handshake
    /// ([`Transport::WebSocket`], asked again if the connection made other requests
    /// before). A refused TCP client is told why and disconnected; a refused datagram is
    /// answered and dropped; a refused web request is answered `403` with the reason, and
    /// the connection closed.
    fn on_connect(&self, client: ClientInfo<'_>) -> Result<(), Refusal> {
        let _ = client;
        Ok(())
    }

    /// A client asks to receive `topic` (the topic is already checked against the
    /// broker's own limits). Called again if it asks again.
    fn on_subscribe(&self, client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
        let _ = (client, topic);
        Ok(())
    }

    /// A client asks to stop receiving `topic`, which it holds. Not called when a client
    /// leaves every topic at once (its connection closes, its lease expires, its
    /// subscription is dropped, or it sends `UNSUBSCRIBE` with no arguments): everything it
    /// held goes then, and there is nothing to refuse.
    fn on_unsubscribe(&self, client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
        let _ = (client, topic);
        Ok(())
    }

    /// A client publishes (topic, message and id already checked against the broker's
    /// limits).
    fn on_publish(&self, client: ClientInfo<'_>, publish: &Publish<'_>) -> PublishVerdict {
        let _ = (client, publish);
        PublishVerdict::Allow
    }
}

/// Runs one hook, turning a panic into a refusal (see the module docs). `what` names the
/// hook in the log.
pub(crate) fn guarded<T>(
    what: &str,
    client: ClientInfo<'_>,
    refused: impl FnOnce(Refusal) -> T,
    hook: impl FnOnce() -> T,
) -> T {
    match catch_unwind(AssertUnwindSafe(hook)) {
        Ok(verdict) => verdict,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string());
            log::error!(
                "the {what} hook panicked ({}), so the request of a {} client{} was refused: {}",
                text::escaped(&message),
                client.transport,
                client
                    .addr
                    .map_or_else(String::new, |addr| format!(" at {addr}")),
                "fix the hook"
            );
            refused(Refusal::new(HOOK_FAILED))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_cannot_carry_a_line_break() {
        let refusal = Refusal::new("no\nDELIVER news forged x 2025-01-01 00:00:00");
        assert!(!refusal.reason().contains('\n'), "{refusal}");
        assert_eq!(Refusal::new("").reason(), "refused");
        assert!(Refusal::new("é".repeat(600)).reason().len() <= MAX_REASON_BYTES + 3);
    }

    #[test]
    fn a_panic_is_a_refusal() {
        let client = ClientInfo::new(Transport::InProcess, None);
        let verdict: Result<(), Refusal> = guarded("test", client, Err, || panic!("boom"));
        assert_eq!(verdict, Err(Refusal::new(HOOK_FAILED)));
    }
}
