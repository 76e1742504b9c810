//! Engine.IO's transports, server side: HTTP long-polling, the WebSocket, the upgrade from
//! one to the other, and the heartbeat. `engineio.rs` says what the packets are; this
//! module moves them. What the packets mean is the business of the layer above (Socket.IO,
//! `socketio_session.rs`; or the echo of `examples/socketio_echo.rs`), which gets a
//! [`Socket`] for each new session.
//!
//! A session outlives the requests that carry it: a long-polling client makes a new `GET`
//! for every answer and a `POST` for every send, each perhaps on another TCP connection.
//! So each session is a [`Channel`] kept in a table by its id (the `sid`), and has a
//! thread of its own, started by the layer above, that owns its [`Socket`]:
//!
//! ```text
//!   GET  ?sid=…  ─web-<n>─▶ waits on the channel's queue ─▶ "2␞4…"   (one thread per waiting poll)
//!   POST ?sid=…  ─web-<m>─▶ channel inbox ──▶ session thread: Socket::recv, the heartbeat
//!   publishers   ────────▶ channel queue (polling) or the WebSocket's Outbox
//!   GET  ?transport=websocket&sid=…  ─▶ 101, `2probe`/`3probe`, `5`: the WebSocket carries it from now on
//! ```
//!
//! Long-polling is what a thread-per-connection server pays most for: every client holds
//! a thread in a waiting `GET` all the time, and every message it receives costs a whole
//! HTTP request and response. That is why the client upgrades to a WebSocket as soon as it
//! can (one frame per message), and why the Node server (one event loop for everything)
//! never noticed the cost.
//!
//! Errors are the Node server's: `400` with `{"code":…,"message":…}` for a bad `EIO`,
//! transport, method or `sid`; a session that breaks the protocol (a bad packet, two polls
//! at once) is closed. A session whose client neither polls nor reads is bounded like
//! every other subscriber: its queue by `--max-pending-bytes` (then it is cut off as a slow
//! consumer), and its life by the ping timeout.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::engineio::{self, Packet, Settings};
use super::http::{self, Request, Response};
use super::websocket::{self, Decoder, Message, Opcode, Role, Violation};
use crate::outbox::{Outbox, Rules};
use crate::peer::Peer;
use crate::subscriber::{Offer, Subscriber};

/// The media type of a polling answer, as the Node server writes it.
const PAYLOAD: &str = "text/plain; charset=UTF-8";

/// What the layer above does with a new session: start a thread that owns its [`Socket`].
/// Given the socket and the connection that opened it.
pub type Opener = Box<dyn Fn(Socket, &Peer) + Send + Sync>;

/// Every Engine.IO session of one server, and how new ones start. See the module docs.
pub struct EngineIo {
    settings: Settings,
    rules: Arc<Rules>,
    table: Arc<Table>,
    max_sessions: usize,
    opener: Opener,
    /// Set by [`close_all`](Self::close_all): no new session starts after it.
    closed: AtomicBool,
}

/// The sessions by id.
type Table = Mutex<HashMap<String, Arc<Channel>>>;

/// How a request to the Engine.IO path is answered.
pub enum Answer {
    /// An HTTP response.
    Respond(Response),
    /// `101 Switching Protocols` (its bytes as the body, to be sent as they are): the
    /// connection becomes a WebSocket; see [`EngineIo::run_websocket`].
    WebSocket(Response, Upgrade),
}

/// A WebSocket about to start: the session it joins (none for a client that starts with a
/// WebSocket).
pub struct Upgrade {
    joins: Option<Arc<Channel>>,
    /// The session it names is upgrading or upgraded already: this one is closed at once.
    /// (After its `101`, as the Node server does: a client library takes a refused
    /// handshake for an error, and a closed WebSocket for what it is.)
    refused: bool,
}

/// One session, shared by its thread, its requests, its WebSocket and its publishers.
pub struct Channel {
    sid: String,
    state: Mutex<State>,
    /// Wakes the waiting poll: packets came, or the session closed.
    changed: Condvar,
    /// Wakes a thread waiting for the client to take what is queued
    /// ([`wait_until_drained`](Self::wait_until_drained)): a poll took it, the session
    /// moved to a WebSocket, or it closed.
    taken: Condvar,
    inbox: Sender<Packet>,
    rules: Arc<Rules>,
    table: Arc<Table>,
}

struct State {
    /// Packets for the next poll.
    queue: Vec<Packet>,
    queued_bytes: usize,
    /// A poll waits for them.
    polling: bool,
    transport: Carrier,
    closed: bool,
    /// When the pong to the last ping is due, while it is awaited.
    pong_due: Option<Instant>,
}

/// What carries the packets to the client now.
enum Carrier {
    /// Answers to its polls.
    Polling,
    /// Polls still, while a WebSocket is probed.
    Probing,
    /// The WebSocket of this outbox, one frame per packet.
    WebSocket(Arc<Outbox>),
}

/// One session, as its own thread holds it: what the client sends, and the heartbeat.
pub struct Socket {
    channel: Arc<Channel>,
    inbox: Receiver<Packet>,
    settings: Settings,
    next_ping: Instant,
    pong_due: Option<Instant>,
}

/// What the client sent, for the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// A `400` with the Node server's error object.
fn error(code: u8, message: &str) -> Response {
    let body = crate::json::ObjectWriter::new()
        .number("code", f64::from(code))
        .string("message", message)
        .finish();
    Response::new(400, http::JSON, body)
}

impl EngineIo {
    /// The sessions of a server with these settings, at most `max_sessions` at once; each
    /// new one is handed to `opener`. `rules` bound what waits for a client that polls.
    pub fn new(
        settings: Settings,
        rules: Arc<Rules>,
        max_sessions: usize,
        opener: Opener,
    ) -> EngineIo {
        EngineIo {
            settings,
            rules,
            table: Arc::new(Mutex::new(HashMap::new())),
            max_sessions,
            opener,
            closed: AtomicBool::new(false),
        }
    }

    /// Closes every session, and refuses new ones: the server is stopping. Each session's
    /// thread then ends at once, its `recv` returning `None` (the broker joins them as it
    /// joins its connections' threads). A handshake that comes later, on a connection not
    /// closed yet, is answered `503`: a session started now would outlive the broker.
    pub fn close_all(&self) {
        let channels: Vec<Arc<Channel>> = {
            let table = self.table.lock();
            // Under the table's lock, as `start` checks it: every session is either in
            // the table now, and closed here, or refused.
            self.closed.store(true, Ordering::Relaxed);
            table.values().cloned().collect()
        };
        for channel in channels {
            channel.close();
        }
    }

    /// Answers one request to the Engine.IO path, from `client`. A poll waits here for
    /// packets: the calling thread is the waiting request's.
    pub fn answer(&self, request: &Request<'_>, client: &Peer) -> Answer {
        Answer::Respond(match self.route(request, client) {
            Ok(answer) => return answer,
            Err(refusal) => refusal,
        })
    }

    fn route(&self, request: &Request<'_>, client: &Peer) -> Result<Answer, Response> {
        let query = |name: &str| http::form_value(request.query, name).ok().flatten();
        if query("EIO").as_deref() != Some(engineio::VERSION) {
            return Err(error(5, "Unsupported protocol version"));
        }
        let transport = query("transport");
        let websocket = match transport.as_deref() {
            Some("polling") => false,
            Some("websocket") => true,
            _ => return Err(error(0, "Transport unknown")),
        };
        let Some(sid) = query("sid") else {
            return match websocket {
                false if request.method == "GET" => Ok(Answer::Respond(self.open_polling(client)?)),
                false => Err(error(2, "Bad handshake method")),
                true => self.websocket(request, None),
            };
        };
        let Some(channel) = self.table.lock().get(&sid).cloned() else {
            return Err(error(1, "Session ID unknown"));
        };
        if channel.missed_its_pong() {
            // Its thread is about to close it: a request that comes after the deadline
            // must not find it open, however late that thread wakes.
            channel.close();
            return Err(error(1, "Session ID unknown"));
        }
        match (websocket, request.method) {
            (true, _) => self.websocket(request, Some(channel)),
            (false, "GET") => Ok(Answer::Respond(channel.poll(&self.settings))),
            (false, "POST") => Ok(Answer::Respond(channel.receive(request.body))),
            _ => Err(error(2, "Bad request method")),
        }
    }

    /// A new session, and its thread.
    fn start(&self, carrier: Carrier, client: &Peer) -> Result<Arc<Channel>, Response> {
        let sid = engineio::new_sid();
        let (inbox, receiver) = mpsc::channel();
        let channel = Arc::new(Channel {
            sid: sid.clone(),
            state: Mutex::new(State {
                queue: Vec::new(),
                queued_bytes: 0,
                polling: false,
                transport: carrier,
                closed: false,
                pong_due: None,
            }),
            changed: Condvar::new(),
            taken: Condvar::new(),
            inbox,
            rules: Arc::clone(&self.rules),
            table: Arc::clone(&self.table),
        });
        {
            let mut table = self.table.lock();
            if self.closed.load(Ordering::Relaxed) {
                return Err(Response::new(503, http::TEXT, "the broker is stopping"));
            }
            if table.len() >= self.max_sessions {
                return Err(Response::new(
                    503,
                    http::TEXT,
                    "too many Engine.IO sessions: try again later",
                ));
            }
            table.insert(sid, Arc::clone(&channel));
        }
        let socket = Socket {
            channel: Arc::clone(&channel),
            inbox: receiver,
            settings: self.settings,
            next_ping: Instant::now() + self.settings.ping_interval,
            pong_due: None,
        };
        (self.opener)(socket, client);
        Ok(channel)
    }

    /// The handshake of a long-polling session: its `open` packet, as a payload.
    fn open_polling(&self, client: &Peer) -> Result<Response, Response> {
        let channel = self.start(Carrier::Polling, client)?;
        let open = Packet::Open(engineio::handshake(&channel.sid, true, &self.settings));
        Ok(Response::new(200, PAYLOAD, open.text()))
    }

    /// A WebSocket: a new session, or the upgrade of a polling one (refused if it is
    /// already upgrading or upgraded).
    fn websocket(
        &self,
        request: &Request<'_>,
        joins: Option<Arc<Channel>>,
    ) -> Result<Answer, Response> {
        let refused = joins
            .as_ref()
            .is_some_and(|channel| !matches!(channel.state.lock().transport, Carrier::Polling));
        let response = super::connection::handshake(request)?;
        Ok(Answer::WebSocket(response, Upgrade { joins, refused }))
    }

    /// Runs a WebSocket to its end, on the thread of the connection that sent the `101`.
    /// `leftover` is what the client sent after its handshake.
    pub fn run_websocket(&self, upgrade: Upgrade, outbox: &Arc<Outbox>, leftover: &[u8]) {
        // The `101` is still queued: the client waits for it before it sends a frame.
        Subscriber::flush(&**outbox);
        let _ = outbox.socket().set_read_timeout(None);
        if upgrade.refused {
            close_frame(
                outbox,
                websocket::POLICY_VIOLATION,
                "the session has a WebSocket",
            );
            return;
        }
        let mut decoder = Decoder::new(Role::Server, self.settings.max_payload);
        decoder.extend(leftover);
        let (channel, mut upgraded) = match upgrade.joins {
            Some(channel) => (channel, false),
            None => {
                let carrier = Carrier::WebSocket(Arc::clone(outbox));
                let Ok(channel) = self.start(carrier, outbox.peer()) else {
                    close_frame(outbox, websocket::GOING_AWAY, "too many sessions");
                    return;
                };
                let open = engineio::handshake(&channel.sid, false, &self.settings);
                channel.send(&[Packet::Open(open)]);
                channel.flush();
                (channel, true)
            }
        };
        let ending = read_frames(&channel, &mut decoder, outbox, &mut upgraded);
        if let Some(reason) = &ending {
            log::debug!("{} Engine.IO over WebSocket: {reason}", outbox.peer());
            close_frame(outbox, websocket::PROTOCOL_ERROR, "bad Engine.IO packet");
        }
        if upgraded || ending.is_some() {
            // The WebSocket carried the session (or broke the protocol): the session ends
            // with it. A probe that never upgraded leaves the polling session as it was.
            channel.close();
        } else {
            channel.state.lock().transport = Carrier::Polling;
        }
    }
}

/// Sends a close frame and waits until it is written.
fn close_frame(outbox: &Outbox, code: u16, reason: &str) {
    let mut frame = Vec::new();
    websocket::write_close(&mut frame, code, reason, None);
    outbox.push_bytes(&frame);
    outbox.wait_until_written();
}

/// Reads a session's WebSocket until it ends: `None` when the client closed or left,
/// the reason when it broke the protocol.
fn read_frames(
    channel: &Arc<Channel>,
    decoder: &mut Decoder,
    outbox: &Arc<Outbox>,
    upgraded: &mut bool,
) -> Option<String> {
    loop {
        loop {
            let packet = match decoder.next_message() {
                Ok(Some(Message::Text(text))) => match Packet::parse(text) {
                    Ok(packet) => packet,
                    Err(bad) => return Some(bad.to_string()),
                },
                Ok(Some(Message::Binary(bytes))) => Packet::Binary(bytes.to_vec()),
                Ok(Some(Message::Ping(payload))) => {
                    let mut pong = Vec::new();
                    websocket::write_frame(&mut pong, Opcode::Pong, payload, None);
                    outbox.push_bytes(&pong);
                    Subscriber::flush(&**outbox);
                    continue;
                }
                Ok(Some(Message::Pong(_))) => continue,
                Ok(Some(Message::Close(_))) => return None,
                Ok(None) => break,
                Err(Violation { reason, .. }) => return Some(reason.to_string()),
            };
            match packet {
                Packet::Ping(probe) if !*upgraded && probe == "probe" => channel.probe(outbox),
                Packet::Upgrade if !*upgraded => {
                    channel.upgrade(outbox);
                    *upgraded = true;
                }
                packet if *upgraded => {
                    if !channel.deliver(packet) {
                        return None;
                    }
                }
                other => return Some(format!("{other:?} before the upgrade")),
            }
        }
        match decoder.read_from(outbox.socket()) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

impl Channel {
    /// The session's id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Queues packets for the client: on its WebSocket's outbox, or for its next poll.
    /// A client that polls too little to keep its queue under `--max-pending-bytes` is cut
    /// off, as a slow consumer.
    pub fn send(&self, packets: &[Packet]) -> Offer {
        self.queue_or_write(packets, || Cow::Owned(frames(packets)))
    }

    /// [`send`](Self::send) for packets that many sessions get (a delivery to every
    /// Socket.IO subscriber of a topic): framed for a WebSocket once, by the first
    /// session on one, then only copied.
    pub fn send_shared(&self, shared: &Shared) -> Offer {
        self.queue_or_write(&shared.packets, || Cow::Borrowed(shared.frames()))
    }

    /// `packets` for the next poll, or, framed by `framed`, on the session's WebSocket.
    fn queue_or_write<'a>(
        &self,
        packets: &[Packet],
        framed: impl FnOnce() -> Cow<'a, [u8]>,
    ) -> Offer {
        let mut state = self.state.lock();
        if state.closed {
            return Offer::Closed;
        }
        if let Carrier::WebSocket(outbox) = &state.transport {
            let outbox = Arc::clone(outbox);
            drop(state);
            return outbox.push_bytes(&framed());
        }
        let was_empty = state.queue.is_empty();
        state.queued_bytes += packets.iter().map(packet_len).sum::<usize>();
        state.queue.extend_from_slice(packets);
        if state.queued_bytes > self.rules.max_pending_bytes {
            let backlog = state.queued_bytes;
            drop(state);
            self.rules
                .stats
                .slow_consumers
                .fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "Engine.IO session {} cut off: {backlog} bytes waited for its polls, over \
                 --max-pending-bytes {}",
                self.sid,
                self.rules.max_pending_bytes
            );
            self.close();
            return Offer::Closed;
        }
        self.changed.notify_all();
        if was_empty {
            Offer::FlushNeeded
        } else {
            Offer::Queued
        }
    }

    /// Waits until the client has taken most of what is queued for it: for a thread that
    /// sends a lot at once (a new subscription streaming the retained store, `registry.rs`)
    /// and must not pass `--max-pending-bytes` with it. On a WebSocket the outbox waits; on
    /// long-polling, until polls have taken the queue down to a quarter of the limit. A
    /// client that polls nothing for `--write-timeout` is not waited for longer: what comes
    /// next cuts it off as a slow consumer, as it would a stalled socket.
    pub fn wait_until_drained(&self) {
        let mut state = self.state.lock();
        loop {
            if state.closed {
                return;
            }
            if let Carrier::WebSocket(outbox) = &state.transport {
                let outbox = Arc::clone(outbox);
                drop(state);
                return Subscriber::wait_until_drained(&*outbox);
            }
            if state.queued_bytes <= self.rules.max_pending_bytes / 4 {
                return;
            }
            if self
                .taken
                .wait_for(&mut state, self.rules.write_timeout)
                .timed_out()
            {
                return;
            }
        }
    }

    /// Writes what [`send`](Self::send) queued on a WebSocket (a poll takes its packets
    /// itself).
    pub fn flush(&self) {
        let outbox = match &self.state.lock().transport {
            Carrier::WebSocket(outbox) => Arc::clone(outbox),
            _ => return,
        };
        Subscriber::flush(&*outbox);
    }

    /// Ends the session: its waiting poll is answered, its thread's `recv` ends, its
    /// WebSocket is closed, and its id is forgotten. Calling it twice is harmless.
    pub fn close(&self) {
        let outbox = {
            let mut state = self.state.lock();
            if state.closed {
                return;
            }
            state.closed = true;
            match &state.transport {
                Carrier::WebSocket(outbox) => Some(Arc::clone(outbox)),
                _ => None,
            }
        };
        self.changed.notify_all();
        self.taken.notify_all();
        let _ = self.inbox.send(Packet::Close);
        self.table.lock().remove(&self.sid);
        if let Some(outbox) = outbox {
            close_frame(&outbox, websocket::NORMAL, "");
            outbox.close();
        }
    }

    /// Whether the pong to the last ping is overdue.
    fn missed_its_pong(&self) -> bool {
        let state = self.state.lock();
        state.pong_due.is_some_and(|due| Instant::now() >= due)
    }

    /// A packet from the client, for the session's thread; `false` if it has ended.
    fn deliver(&self, packet: Packet) -> bool {
        self.inbox.send(packet).is_ok()
    }

    /// A `GET`: waits for packets (the server pings at least every ping interval, so the
    /// wait ends by then), and answers them as a payload. A second poll while one waits
    /// breaks the protocol: the first is answered `close`, this one `400`, and the session
    /// ends.
    fn poll(&self, settings: &Settings) -> Response {
        let mut state = self.state.lock();
        if state.closed || matches!(state.transport, Carrier::WebSocket(_)) {
            return error(1, "Session ID unknown");
        }
        if state.polling {
            state.queue = vec![Packet::Close];
            drop(state);
            log::debug!("Engine.IO session {} polled twice at once", self.sid);
            self.close();
            return error(3, "Bad request: a poll is already waiting");
        }
        state.polling = true;
        // The session's thread pings or closes it within the interval and the timeout:
        // this bound, twice that, only frees the thread should that thread be stuck.
        let deadline = Instant::now() + 2 * (settings.ping_interval + settings.ping_timeout);
        while state.queue.is_empty() && !state.closed {
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.polling = false;
        let mut packets = std::mem::take(&mut state.queue);
        state.queued_bytes = 0;
        self.taken.notify_all();
        if packets.is_empty() {
            // Nothing came (the session ended, or the wait was bounded): a `noop` ends
            // the request cleanly; the next poll learns the rest.
            packets.push(Packet::Noop);
        }
        drop(state);
        Response::new(200, PAYLOAD, engineio::encode_payload(&packets))
    }

    /// A `POST`: the payload's packets go to the session's thread. A bad payload ends the
    /// session.
    fn receive(&self, body: &[u8]) -> Response {
        let decoded = std::str::from_utf8(body)
            .map_err(|_| engineio::BadPacket("the payload is not UTF-8".into()))
            .and_then(engineio::decode_payload);
        match decoded {
            Ok(packets) => {
                for packet in packets {
                    if !self.deliver(packet) {
                        return error(1, "Session ID unknown");
                    }
                }
                Response::new(200, PAYLOAD, "ok")
            }
            Err(bad) => {
                log::debug!("Engine.IO session {} sent {bad}", self.sid);
                self.close();
                error(3, &bad.to_string())
            }
        }
    }

    /// `2probe` on a WebSocket joining this session: answer `3probe` on it, and end the
    /// waiting poll with a `noop`, so that the client can switch.
    fn probe(&self, outbox: &Arc<Outbox>) {
        let mut state = self.state.lock();
        state.transport = Carrier::Probing;
        state.queue.push(Packet::Noop);
        drop(state);
        self.changed.notify_all();
        outbox.push_bytes(&frames(&[Packet::Pong("probe".into())]));
        Subscriber::flush(&**outbox);
    }

    /// `5`: the client switched. What waited for a poll goes on the WebSocket, which
    /// carries everything from now on.
    fn upgrade(&self, outbox: &Arc<Outbox>) {
        let mut state = self.state.lock();
        let waiting: Vec<Packet> = std::mem::take(&mut state.queue)
            .into_iter()
            .filter(|packet| *packet != Packet::Noop)
            .collect();
        state.queued_bytes = 0;
        state.transport = Carrier::WebSocket(Arc::clone(outbox));
        // Pushed under the lock, so that no publisher's packet overtakes them.
        outbox.push_bytes(&frames(&waiting));
        drop(state);
        self.changed.notify_all();
        self.taken.notify_all();
        Subscriber::flush(&**outbox);
    }
}

/// How many bytes a packet takes in a payload, near enough to bound a queue.
fn packet_len(packet: &Packet) -> usize {
    match packet {
        Packet::Message(text) | Packet::Open(text) => text.len() + 2,
        Packet::Binary(bytes) => bytes.len() * 4 / 3 + 4,
        _ => 2,
    }
}

/// Packets for many sessions at once, made once: see [`Channel::send_shared`].
#[derive(Debug)]
pub struct Shared {
    packets: Vec<Packet>,
    /// The packets as WebSocket frames, made when a session on a WebSocket first asks.
    frames: OnceLock<Vec<u8>>,
}

impl Shared {
    /// `packets`, to be sent to many sessions.
    pub fn new(packets: Vec<Packet>) -> Shared {
        Shared {
            packets,
            frames: OnceLock::new(),
        }
    }

    fn frames(&self) -> &[u8] {
        self.frames.get_or_init(|| frames(&self.packets))
    }
}

/// Packets as WebSocket frames: text frames, and binary ones for binary messages.
fn frames(packets: &[Packet]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packets.iter().map(packet_len).sum::<usize>() + 16);
    for packet in packets {
        match packet {
            Packet::Binary(bytes) => websocket::write_frame(&mut out, Opcode::Binary, bytes, None),
            Packet::Message(text) => {
                // The commonest packet, a delivery, framed without a copy of its text.
                websocket::write_header(&mut out, true, Opcode::Text, 1 + text.len(), None);
                out.push(b'4');
                out.extend_from_slice(text.as_bytes());
            }
            other => websocket::write_frame(&mut out, Opcode::Text, other.text().as_bytes(), None),
        }
    }
    out
}

impl Socket {
    /// The session this socket is.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// Waits for the client's next message, pinging it meanwhile: `None` once the session
    /// has ended (the client closed it, broke the protocol, or missed a pong).
    pub fn recv(&mut self) -> Option<Incoming> {
        self.recv_until(None)
    }

    /// As [`recv`](Self::recv), but if no message comes by `deadline`, closes the session
    /// and gives `None`: for a layer above that waits for a first packet only so long.
    pub fn recv_until(&mut self, deadline: Option<Instant>) -> Option<Incoming> {
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                log::debug!(
                    "Engine.IO session {} sent nothing in time",
                    self.channel.sid
                );
                self.channel.close();
                return None;
            }
            if self.pong_due.is_some_and(|due| now >= due) {
                log::debug!("Engine.IO session {} missed its pong", self.channel.sid);
                self.channel.close();
                return None;
            }
            if self.pong_due.is_none() && now >= self.next_ping {
                self.channel.send(&[Packet::Ping(String::new())]);
                self.channel.flush();
                self.pong_due = Some(now + self.settings.ping_timeout);
                self.channel.state.lock().pong_due = self.pong_due;
            }
            let heartbeat = self.pong_due.unwrap_or(self.next_ping);
            let wake = deadline.map_or(heartbeat, |deadline| deadline.min(heartbeat));
            let wait = wake
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            match self.inbox.recv_timeout(wait) {
                Ok(Packet::Pong(_)) => {
                    self.pong_due = None;
                    self.channel.state.lock().pong_due = None;
                    self.next_ping = Instant::now() + self.settings.ping_interval;
                }
                Ok(Packet::Message(text)) => return Some(Incoming::Text(text)),
                Ok(Packet::Binary(bytes)) => return Some(Incoming::Binary(bytes)),
                Ok(Packet::Close) | Err(RecvTimeoutError::Disconnected) => {
                    self.channel.close();
                    return None;
                }
                Ok(Packet::Ping(_) | Packet::Noop | Packet::Upgrade) => {}
                Ok(Packet::Open(_)) => {
                    log::debug!("Engine.IO session {} sent an open packet", self.channel.sid);
                    self.channel.close();
                    return None;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl Drop for Socket {
    /// However the session's thread ends, the session ends with it.
    fn drop(&mut self) {
        self.channel.close();
    }
}
