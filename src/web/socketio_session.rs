//! A Socket.IO client as a client of the broker: its events become the session core's
//! commands (`session.rs`), and the broker's deliveries become its events.
//!
//! The Flask-SocketIO labsheet's subscriber is the model. It connects, emits `subscribe`
//! with `{"topic": …}`, and listens for the event named after the topic, whose data is
//! `{"message": …}`; a `publish` event with `{"topic": …, "message": …}` publishes:
//!
//! ```text
//!   client                                     broker
//!   40                              ──▶  CONNECT "/"             (the hooks: Transport::SocketIo)
//!                                   ◀──  40{"sid":"socketio-1a2b3c4d"}
//!   42["subscribe",{"topic":"news"}] ──▶  SUBSCRIBE news socketio-1a2b3c4d
//!   421["publish",{"topic":"news","message":"hi"}] ──▶ PUBLISH news hi …, acknowledged:
//!                                   ◀──  431[{"ok":"OK PUBLISH news 1"}]
//!                                   ◀──  42["news",{"message":"hi"}]   (a delivery)
//! ```
//!
//! The event names and their fields are those of kn-sock's JSON dialect
//! (`protocol/dialect.rs`): an event is that dialect's object with the event's name as its
//! `"action"`, so `subscribe`, `unsubscribe`, `publish` (and `ping`, `topics`, `stats`,
//! `auth`) mean the same over both, and are parsed in one place. An event that asks for an
//! acknowledgement gets the session core's reply in it (`{"ok": "<reply>"}` or
//! `{"error": "<reason>"}`); a refused event that did not ask gets an `error` event.
//!
//! The client is one more subscriber on the router ([`SocketIoSubscriber`]): its
//! deliveries go into its Engine.IO session's queue (long-polling) or its WebSocket's
//! outbox, each bounded by `--max-pending-bytes` and cut off past it, like every other
//! subscriber. Its subscriptions, its count in `TOPICS` and `STATS`, and its cleanup are
//! the session core's.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::engineio::{Packet as EnginePacket, Settings};
use super::engineio_server::{Channel, EngineIo, Incoming, Opener, Shared, Socket};
use super::socketio::{Assembler, Kind, Packet, MAIN};
use crate::batch::Batch;
use crate::clients::{Outward, Probe};
use crate::connections::Connections;
use crate::hooks::{ClientInfo, Transport};
use crate::json::{self, ObjectWriter, Value};
use crate::outbox::Rules;
use crate::peer::Peer;
use crate::protocol::{ClientState, Command, JsonRequest, ProtocolError, Reply};
use crate::router::Router;
use crate::server::CLIENT_STACK_SIZE;
use crate::session::{Entry, Link, Session};
use crate::subscriber::{Offer, Subscriber, SubscriberId};

/// How long a new session may take to join the main namespace (`CONNECT`) before it is
/// closed: the Node server's default `connectTimeout`. Without it, a client that opened a
/// session and answered pings but never connected would hold a thread for ever.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// The broker's Engine.IO sessions, as its flags set them: each new one a Socket.IO
/// client of `router`, its thread kept in `connections` to be joined when the broker
/// stops. Their number is bounded by `--max-clients`, their payloads by
/// `--max-line-bytes` (the largest request body the web port reads).
pub(crate) fn engine(
    router: &Arc<Router>,
    rules: &Arc<Rules>,
    connections: &Arc<Connections>,
) -> EngineIo {
    let config = router.config();
    let settings = Settings {
        ping_interval: config.socketio_ping_interval,
        ping_timeout: config.socketio_ping_timeout,
        max_payload: config.max_line_bytes,
    };
    EngineIo::new(
        settings,
        Arc::clone(rules),
        config.max_clients,
        opener(Arc::clone(router), Arc::clone(connections)),
    )
}

/// What the broker's Engine.IO sessions are: each gets a thread, `socketio-<n>`, that runs
/// [`serve`], `<n>` the number of the connection that opened it. The thread is kept
/// with the connections' threads: a session is a client, whose thread the broker waits
/// for when it stops, like every other (after `EngineIo::close_all` has ended it).
fn opener(router: Arc<Router>, connections: Arc<Connections>) -> Opener {
    Box::new(move |socket, opened_by| {
        let router = Arc::clone(&router);
        let peer = Peer::new(opened_by.conn(), opened_by.addr());
        let spawned = thread::Builder::new()
            .name(format!("socketio-{}", peer.conn()))
            .stack_size(CLIENT_STACK_SIZE)
            .spawn(move || serve(router, socket, peer));
        match spawned {
            Ok(thread) => connections.adopt(thread),
            Err(error) => log::error!("a Socket.IO session could not get a thread: {error}"),
        }
    })
}

/// Runs one Socket.IO client to its end (see the module docs).
fn serve(router: Arc<Router>, mut socket: Socket, peer: Peer) {
    log::info!("{peer} opened a Socket.IO session");
    let channel = Arc::clone(socket.channel());
    let id = format!("socketio-{}", &channel.sid()[..8]);
    let ack = Rc::new(Cell::new(None));
    let link = SocketIoLink {
        peer,
        subscriber: Arc::new(SocketIoSubscriber {
            id: SubscriberId::next(),
            channel: Arc::clone(&channel),
            delivered: AtomicU64::new(0),
        }),
        channel: Arc::clone(&channel),
        ack: Rc::clone(&ack),
    };
    let client = ClientInfo::new(Transport::SocketIo, Some(link.peer.addr()));
    let session = Session::new(Arc::clone(&router), Box::new(link), client, Entry::Login);
    let mut client = SocketIoClient {
        router,
        session,
        channel,
        ack,
        id,
        connected: false,
    };
    let mut assembler = Assembler::default();
    // Until its first `CONNECT`, the client has CONNECT_TIMEOUT.
    let mut connect_by = Some(Instant::now() + CONNECT_TIMEOUT);
    // On a broker with access control, a client must also log in within `--auth-timeout`.
    let wait_until = |connect_by: Option<Instant>, session: &Session| {
        let must_auth = session.auth_time_left().map(|left| Instant::now() + left);
        connect_by.into_iter().chain(must_auth).min()
    };
    while let Some(incoming) = socket.recv_until(wait_until(connect_by, &client.session)) {
        let packet = match incoming {
            Incoming::Text(text) => assembler.text(&text),
            Incoming::Binary(bytes) => assembler.binary(bytes),
        };
        match packet {
            Ok(Some(packet)) => client.handle(packet),
            Ok(None) => {}
            Err(bad) => {
                log::debug!("{} sent a {bad}", client.session.peer());
                break;
            }
        }
        if client.connected {
            connect_by = None;
        }
        if let Some(reason) = client.session.quit_reason() {
            // No `AUTH` in time, or too many wrong ones: the core says so, and the
            // session ends, as a TCP connection would.
            log::debug!("{} is done: {reason:?}", client.session.peer());
            client.session.flush();
            break;
        }
        client.session.flush();
        client.session.rest();
    }
    log::info!("{} left its Socket.IO session", client.session.peer());
    // The session is dropped here: its cleanup, then the link closes the channel.
}

/// The Socket.IO side of one client: what it has joined, and how its events are run.
struct SocketIoClient {
    router: Arc<Router>,
    session: Session,
    channel: Arc<Channel>,
    /// The ack id of the event being executed, shared with the link that writes replies.
    ack: Rc<Cell<Option<u64>>>,
    /// The id the client is known by in the broker (its subscriber and publisher id).
    id: String,
    /// Whether it has joined the main namespace.
    connected: bool,
}

impl SocketIoClient {
    fn handle(&mut self, packet: Packet) {
        match packet.kind {
            Kind::Connect => self.connect(&packet),
            Kind::Disconnect if packet.namespace == MAIN && self.connected => {
                self.connected = false;
                self.session.execute(&Command::UnsubscribeAll);
            }
            Kind::Event if packet.namespace == MAIN && self.connected => self.event(&packet),
            // What is sent to a namespace the client has not joined is dropped, as the
            // Node server does; the server asks for no acknowledgements.
            _ => {}
        }
    }

    /// `CONNECT`: only the main namespace exists. The program's hooks decide whether the
    /// client may join; on a broker with access control, its auth data
    /// (`{"user": …, "secret": …}`) is its `AUTH`.
    fn connect(&mut self, packet: &Packet) {
        if packet.namespace != MAIN {
            return self.refuse_connect(&packet.namespace, "Invalid namespace");
        }
        let client = ClientInfo::new(Transport::SocketIo, Some(self.session.peer().addr()));
        if let Err(error) = self.router.admit(client) {
            return self.refuse_connect(MAIN, &error.to_string());
        }
        let auth = packet.data.as_ref();
        let field = |name| auth.and_then(|data| data.get(name)).and_then(Value::as_str);
        if let (Some(user), Some(secret)) = (field("user"), field("secret")) {
            self.session.execute(&Command::Auth {
                user,
                secret: crate::protocol::Secret(secret),
            });
        }
        self.connected = true;
        let sid = ObjectWriter::new().string("sid", &self.id).finish();
        let answer = Packet::new(Kind::Connect, MAIN, None, json::parse(&sid).ok());
        self.channel.send(&[EnginePacket::Message(answer.text())]);
    }

    fn refuse_connect(&self, namespace: &str, reason: &str) {
        let data = Value::Object(vec![("message".into(), Value::String(reason.into()))]);
        let refusal = Packet::new(Kind::ConnectError, namespace, None, Some(data));
        self.channel.send(&[EnginePacket::Message(refusal.text())]);
    }

    /// An `EVENT`: kn-sock's JSON object with the event's name as its action, run by the
    /// session core, acknowledged if the client asked.
    fn event(&mut self, packet: &Packet) {
        self.ack.set(packet.id);
        let request = packet
            .event_name()
            .ok_or(ProtocolError::NoAction)
            .and_then(|name| as_json_request(name, packet.args()));
        match request {
            Ok(request) => match request.command(&self.id) {
                Ok(command) if packet.id.is_some() => self.session.execute_acknowledged(&command),
                Ok(command) => self.session.execute(&command),
                Err(error) => self.session.refuse(&error),
            },
            Err(error) => self.session.refuse(&error),
        }
        self.ack.set(None);
    }
}

/// An event as a line of kn-sock's JSON dialect: its first argument, an object, with the
/// event's name as `"action"`.
fn as_json_request(name: &str, args: &[Value]) -> Result<JsonRequest, ProtocolError> {
    let mut members = vec![("action".to_string(), Value::String(name.to_string()))];
    match args.first() {
        Some(Value::Object(fields)) => {
            members.extend(fields.iter().filter(|(key, _)| key != "action").cloned())
        }
        None => {}
        Some(_) => return Err(ProtocolError::NoAction),
    }
    let mut line = String::new();
    json::write_value(&mut line, &Value::Object(members));
    JsonRequest::parse(line.as_bytes())?.ok_or(ProtocolError::NoAction)
}

/// The Socket.IO packet that answers `reply`: an `ACK` of the event being executed, or,
/// for a refusal nobody asked to be acknowledged, an `error` event.
fn reply_packet(reply: &Reply<'_>, ack: Option<u64>) -> Option<Packet> {
    let answer = match reply {
        Reply::Error(error) => ("error", error.to_string()),
        other => {
            let mut line = Vec::new();
            other.write_lines(&mut line);
            let text = String::from_utf8_lossy(&line);
            ("ok", text.trim_end().to_string())
        }
    };
    let object = Value::Object(vec![(
        answer.0.to_string(),
        Value::String(answer.1.clone()),
    )]);
    match ack {
        Some(id) => Some(Packet::new(
            Kind::Ack,
            MAIN,
            Some(id),
            Some(Value::Array(vec![object])),
        )),
        None if answer.0 == "error" => {
            let message = Value::Object(vec![("message".into(), Value::String(answer.1))]);
            Some(Packet::event(MAIN, "error", vec![message]))
        }
        None => None,
    }
}

/// A delivery, as the Flask server emits it: the event named after the topic, with
/// `{"message": …}`.
///
/// ```text
///   42["news",{"message":"hi"}]
/// ```
fn delivery_event(topic: &str, message: &str) -> EnginePacket {
    // Written in one go, without a JSON value in between: every delivery passes here.
    let mut text = String::with_capacity(topic.len() + message.len() + 24);
    text.push_str("2[");
    json::write_string(&mut text, topic);
    text.push_str(",{\"message\":");
    json::write_string(&mut text, message);
    text.push_str("}]");
    EnginePacket::Message(text)
}

/// Every delivery of a batch as the event [`delivery_event`] writes, for every Socket.IO
/// subscriber of the batch at once.
fn delivery_events(batch: &Batch) -> Shared {
    let topic = batch.topic();
    Shared::new(
        batch
            .published()
            .map(|published| delivery_event(topic, published.message))
            .collect(),
    )
}

/// A Socket.IO client as the registry holds it: deliveries go to its Engine.IO session
/// (see [`Channel::send`] for the bound on what waits for it).
pub(crate) struct SocketIoSubscriber {
    id: SubscriberId,
    channel: Arc<Channel>,
    /// Deliveries offered to it, for `CLIENTS` (see `clients.rs`): one relaxed add per
    /// batch, on a path that formats a packet per message anyway.
    delivered: AtomicU64,
}

impl std::fmt::Debug for SocketIoSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SocketIoSubscriber({})", self.channel.sid())
    }
}

impl Subscriber for SocketIoSubscriber {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn offer(&self, batch: &Batch) -> Offer {
        self.delivered
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        // Formatted (and framed) by the first Socket.IO subscriber offered the batch, and
        // shared by the others, as the JSON dialect's lines are.
        match batch.encoded(delivery_events) {
            Some(shared) => self.channel.send_shared(shared),
            None => self.channel.send_shared(&delivery_events(batch)),
        }
    }

    fn flush(&self) {
        self.channel.flush();
    }

    /// Between the chunks of a retained store streamed to a new subscription: the
    /// session's polls (or its WebSocket) take them before more are queued.
    fn wait_until_drained(&self) {
        self.channel.wait_until_drained();
    }
}

/// What `CLIENTS` shows of a Socket.IO client, and how `KICK` closes it: its Engine.IO
/// session keeps what waits for it (bounded, see [`Channel::send`]), so no bytes pending
/// are shown here, and a client that falls too far behind is closed by the channel.
impl Probe for SocketIoSubscriber {
    fn outward(&self) -> Outward {
        Outward {
            messages: self.delivered.load(Ordering::Relaxed),
            bytes: 0,
            pending: 0,
            state: ClientState::KeepingUp,
        }
    }

    /// The reason goes as the `error` event every refusal is, then the session closes.
    fn kick(&self, reason: &ProtocolError) {
        if let Some(packet) = reply_packet(&Reply::Error(reason), None) {
            self.channel.send(&[EnginePacket::Message(packet.text())]);
            self.channel.flush();
        }
        self.channel.close();
    }
}

/// The session core's way to a Socket.IO client (see `session.rs`'s `Link`).
struct SocketIoLink {
    peer: Peer,
    subscriber: Arc<SocketIoSubscriber>,
    channel: Arc<Channel>,
    ack: Rc<Cell<Option<u64>>>,
}

impl Link for SocketIoLink {
    fn peer(&self) -> &Peer {
        &self.peer
    }

    fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::clone(&self.subscriber) as Arc<dyn Subscriber>
    }

    fn probe(&self) -> Option<Arc<dyn Probe>> {
        Some(Arc::clone(&self.subscriber) as Arc<dyn Probe>)
    }

    fn reply(&self, reply: &Reply<'_>) {
        if let Some(packet) = reply_packet(reply, self.ack.get()) {
            self.channel.send(&[EnginePacket::Message(packet.text())]);
        }
    }

    fn encode(&self, reply: &Reply<'_>, out: &mut Vec<u8>) {
        if let Some(packet) = reply_packet(reply, self.ack.get()) {
            out.extend_from_slice(packet.text().as_bytes());
            // A packet's JSON never holds a raw line break: it separates them here.
            out.push(b'\n');
        }
    }

    fn send(&self, bytes: &[u8]) {
        let packets: Vec<EnginePacket> = String::from_utf8_lossy(bytes)
            .lines()
            .map(|text| EnginePacket::Message(text.to_string()))
            .collect();
        self.channel.send(&packets);
    }

    fn flush(&self) {
        self.channel.flush();
    }

    fn close(&self) {
        self.channel.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_the_event_named_after_the_topic() {
        let packet = delivery_event("news/tech", "say \"hi\"");
        assert_eq!(packet.text(), r#"42["news/tech",{"message":"say \"hi\""}]"#);
    }

    #[test]
    fn events_are_kn_socks_actions() {
        let args = [json::parse(r#"{"topic":"news","message":"hi","action":"stats"}"#).unwrap()];
        let request = as_json_request("publish", &args).unwrap();
        assert_eq!(
            request.command("me"),
            Ok(Command::Publish {
                topic: "news",
                message: "hi",
                publisher_id: "me"
            })
        );
        assert!(as_json_request("publish", &[Value::Number(1.0)]).is_err());
    }

    #[test]
    fn replies_are_acks_or_error_events() {
        let ok = reply_packet(&Reply::SubscribeOk("news"), Some(4)).unwrap();
        assert_eq!(ok.text(), r#"34[{"ok":"OK SUBSCRIBE news"}]"#);
        assert!(reply_packet(&Reply::SubscribeOk("news"), None).is_none());
        let refused = reply_packet(&Reply::Error(&ProtocolError::NoAction), None).unwrap();
        assert!(
            refused.text().starts_with(r#"2["error",{"message":"#),
            "{}",
            refused.text()
        );
    }
}
