//! One web connection, on its own thread: HTTP requests one after another, and perhaps,
//! at `GET /ws`, the switch to a WebSocket that carries the line protocol.
//!
//! The HTTP part reads like the line session: answer every complete request already read
//! (pipelined requests are answered in order), flush when about to block, then read more.
//! Each request must arrive whole within `--http-timeout` (10 s); an idle keep-alive
//! connection is closed after as long. A request the server cannot take gets its status
//! and a body that says why, and the connection is closed, gracefully: the answer is
//! written out first, then the sending side is shut, and what the client still sends is
//! read and dropped for a moment (a *lingering close*), because closing a socket with
//! unread bytes in it makes the kernel send a reset, which can destroy the answer on its
//! way to the client.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::base64;
use super::broadcast::Room;
use super::engineio_server::{Answer, EngineIo};
use super::http::{self, Parse, Request, Response, Version, HTML, JSON, TEXT};
use super::websocket::{self, Decoder, Message, Role, Violation};
use crate::connections::{Connections, Slot};
use crate::durable::Holder;
use crate::hooks::{ClientInfo, Transport};
use crate::json::{self, ObjectWriter, Value};
use crate::outbox::Outbox;
use crate::peer::Peer;
use crate::protocol::{self, Command, ProtocolError, Reply};
use crate::router::Router;
use crate::server::Server;
use crate::session::{Entry, Link, Quit, Session};
use crate::subscriber::Subscriber;
use crate::text::escaped;

/// The publisher id of an HTTP publish that names none.
pub const DEFAULT_PUBLISHER: &str = "http";

/// How much one read asks for.
const READ_CHUNK: usize = 16 * 1024;

/// How long a closing connection's last bytes from the client are read and dropped.
const LINGER: Duration = Duration::from_millis(500);

/// The most a lingering close reads before it gives up.
const LINGER_BYTES: usize = 256 * 1024;

/// The live view: one page, its style and script put in at their places.
fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        include_str!("page.html")
            .replace("/* page.css */", include_str!("page.css"))
            .replace("/* page.js */", include_str!("page.js"))
    })
}

/// Runs one web connection to its end.
pub(super) fn serve(
    server: &Arc<Server>,
    socketio: &Arc<EngineIo>,
    outbox: Arc<Outbox>,
    slot: Slot,
) {
    slot.connections().log_event(
        log::Level::Info,
        format_args!(
            "#{} connected from {} (web)",
            outbox.peer().conn(),
            outbox.peer().addr()
        ),
    );
    let router = Arc::clone(&server.router);
    let mut connection = HttpConnection {
        socketio: Arc::clone(socketio),
        engine_upgrade: None,
        connections: Arc::clone(&server.connections),
        router,
        outbox,
        slot: Some(slot),
        admitted: false,
        counted: false,
    };
    let Some(leftover) = connection.serve() else {
        return;
    };
    if let Some(upgrade) = connection.engine_upgrade.take() {
        // A Socket.IO client's WebSocket: Engine.IO's, to its end; the connection's own
        // cleanup (its Drop) follows.
        socketio.run_websocket(upgrade, &connection.outbox, &leftover);
        return;
    }
    // The slot goes to the WebSocket session, which does the cleanup from now on.
    if let Some(slot) = connection.slot.take() {
        let outbox = Arc::clone(&connection.outbox);
        let router = Arc::clone(&connection.router);
        drop(connection);
        websocket_session(server, router, outbox, slot, &leftover);
    }
}

/// What to do after a response.
enum Next {
    KeepAlive,
    Close,
    /// The response was `101`: a WebSocket from here on.
    Upgrade,
}

/// The HTTP part of a connection.
struct HttpConnection {
    /// The Socket.IO clients' Engine.IO sessions (see `engineio_server.rs`).
    socketio: Arc<EngineIo>,
    /// The `101` answered was Engine.IO's: the WebSocket that follows is a Socket.IO
    /// client's (see `socketio_session.rs`), not the line protocol's.
    engine_upgrade: Option<super::engineio_server::Upgrade>,
    router: Arc<Router>,
    outbox: Arc<Outbox>,
    /// The broker's table of connections, whose throttle the log lines go through.
    connections: Arc<Connections>,
    /// The connection's place in the table: `None` once handed to a WebSocket session.
    slot: Option<Slot>,
    /// The program's hooks let this connection in, at its first request.
    admitted: bool,
    /// The last response was the session core's refusal, which it counted in `errors`.
    counted: bool,
}

impl HttpConnection {
    fn socket(&self) -> &TcpStream {
        self.outbox.socket()
    }

    /// Serves requests until the connection ends (`None`) or becomes a WebSocket
    /// (`Some(bytes the client sent after its handshake)`).
    fn serve(&mut self) -> Option<Vec<u8>> {
        let config = self.router.config();
        let (timeout, max_body) = (config.http_timeout, config.max_line_bytes);
        let mut input: Vec<u8> = Vec::new();
        let mut deadline = Instant::now() + timeout;
        loop {
            let mut start = 0;
            loop {
                match http::parse(&input[start..], max_body) {
                    Ok(Parse::Complete { request, len }) => {
                        let next = self.answer(&request);
                        start += len;
                        match next {
                            Next::KeepAlive => deadline = Instant::now() + timeout,
                            Next::Close => return self.close_gracefully(),
                            Next::Upgrade => return Some(input.split_off(start)),
                        }
                    }
                    Ok(Parse::Incomplete) => break,
                    Err(error) => {
                        log::debug!("#{} sent a bad request: {error}", self.outbox.peer().conn());
                        self.send(&Response::refusal(&error), false);
                        return self.close_gracefully();
                    }
                }
            }
            input.drain(..start);
            // About to block: write the answers. (What a request published was delivered
            // when its session ended, before its answer was queued.)
            self.outbox.flush();
            let left = deadline.saturating_duration_since(Instant::now());
            match read_some(self.socket(), &mut input, left) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(error) if is_timeout(&error) => {
                    if !input.is_empty() {
                        let text = format!(
                            "the request did not arrive whole within {}: send it all at once",
                            crate::config::format_duration(timeout)
                        );
                        self.send(&closing(Response::new(408, TEXT, text)), false);
                    }
                    return self.close_gracefully();
                }
                Err(error) => {
                    log::debug!("#{} read failed: {error}", self.outbox.peer().conn());
                    return None;
                }
            }
        }
    }

    /// Answers one request and says what comes next.
    fn answer(&mut self, request: &Request<'_>) -> Next {
        let head_only = request.method == "HEAD";
        let admission = match request.path {
            // A WebSocket is asked about at its handshake, as a WebSocket client (`route`).
            "/ws" => Ok(()),
            _ if self.admitted => Ok(()),
            _ => self.admit(Transport::Http),
        };
        let response = match admission {
            Ok(()) => self.route(request),
            Err(refusal) => refusal,
        };
        let upgrading = response.status == 101;
        let normal_404 = request.path == "/publish" && response.status == 404;
        let counted = std::mem::take(&mut self.counted);
        if response.status >= 400 && !normal_404 && !counted {
            self.router.stats().errors.fetch_add(1, Ordering::Relaxed);
        }
        log::debug!(
            "#{} {} {} {}",
            self.outbox.peer().conn(),
            escaped(request.method),
            escaped(request.path),
            response.status
        );
        if upgrading {
            self.outbox.push_bytes(&response.body);
            return Next::Upgrade;
        }
        let close = response.close || !request.keep_alive();
        let response = if close { closing(response) } else { response };
        self.send(&response, head_only);
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// The answer to a request from a client the hooks let in.
    fn route(&mut self, request: &Request<'_>) -> Response {
        match request.path {
            "/" => only_get(request).unwrap_or_else(|| {
                Response::new(200, HTML, page()).header("Cache-Control", "no-cache")
            }),
            "/ws" => handshake(request)
                .and_then(|answer| self.admit(Transport::WebSocket).map(|()| answer))
                .unwrap_or_else(|refusal| refusal),
            "/publish" if request.method == "POST" => match self.authenticated(request) {
                Ok(user) => self.publish(request, user.as_deref()),
                Err(refusal) => refusal,
            },
            "/publish" => not_allowed(request, "POST"),
            "/topics" => only_get(request).unwrap_or_else(|| match self.authenticated(request) {
                Ok(user) => self.topics(request, user.as_deref()),
                Err(refusal) => refusal,
            }),
            "/stats" => only_get(request).unwrap_or_else(|| match self.authenticated(request) {
                Ok(None) if self.router.access().is_some() => challenge(AUTH_REQUIRED),
                Ok(user) => self.stats(user.as_deref()),
                Err(refusal) => refusal,
            }),
            "/healthz" => only_get(request).unwrap_or_else(|| Response::new(200, TEXT, "ok")),
            "/socket.io/" => match self.socketio.answer(request, self.outbox.peer()) {
                Answer::Respond(response) => response,
                Answer::WebSocket(response, upgrade) => {
                    self.engine_upgrade = Some(upgrade);
                    response
                }
            },
            _ => Response::new(
                404,
                TEXT,
                "no such page: the live view is at /; also POST /publish, GET /topics, \
                 GET /stats, GET /healthz, and a WebSocket at /ws",
            ),
        }
    }

    /// Asks the program's hooks whether this client may go on (see `hooks.rs`): at the
    /// connection's first request, as an HTTP client, and at a WebSocket handshake, as a
    /// WebSocket client (a connection that made requests before becomes another kind of
    /// client there). A refusal is the `403` to answer, which closes the connection, as a
    /// refused TCP client is told why and disconnected.
    fn admit(&mut self, transport: Transport) -> Result<(), Response> {
        let client = ClientInfo::new(transport, Some(self.outbox.peer().addr()));
        match self.router.admit(client) {
            Ok(()) => {
                self.admitted = true;
                Ok(())
            }
            Err(error) => {
                if let Some(slot) = &self.slot {
                    slot.connections().log_event(
                        log::Level::Info,
                        format_args!(
                            "{} ({transport}) refused by the program's hook: {error}",
                            self.outbox.peer()
                        ),
                    );
                }
                Err(closing(Response::new(403, TEXT, error.to_string())))
            }
        }
    }

    fn send(&self, response: &Response, head_only: bool) {
        let mut bytes = Vec::with_capacity(160 + response.body.len());
        response.write(&mut bytes, head_only);
        self.outbox.push_bytes(&bytes);
    }

    /// On a broker with access control (`--auth-file`), who sends `request`: the user of
    /// its `Authorization: Basic` header (RFC 7617: base64 of `user:secret`), once the
    /// secret is right (`auth.rs` checks it, as it checks `AUTH`); `Ok(None)` for a request
    /// without the header, which the rules then take for [`ANONYMOUS`](crate::access::ANONYMOUS), and on a
    /// broker without access control. A wrong secret is a `401` with a
    /// `WWW-Authenticate` challenge, which makes a browser ask again; an address out of
    /// attempts, a `429`.
    fn authenticated(&self, request: &Request<'_>) -> Result<Option<String>, Response> {
        if self.router.access().is_none() {
            return Ok(None);
        }
        let Some(credentials) = request.header("Authorization") else {
            return Ok(None);
        };
        let decoded = credentials
            .strip_prefix("Basic ")
            .and_then(|encoded| base64::decode(encoded.trim()))
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|text| text.contains(':'));
        let Some(decoded) = decoded else {
            return Err(Response::new(
                400,
                TEXT,
                "the Authorization header must be Basic and base64 of user:secret",
            ));
        };
        let (user, secret) = decoded.split_once(':').unwrap_or_default();
        let peer = self.outbox.peer();
        match self.router.log_in(peer.addr().ip(), peer, user, secret) {
            Ok(name) => Ok(Some(name)),
            Err(error @ ProtocolError::TooManyFailures { wait_secs }) => Err(closing(
                Response::new(429, TEXT, error.to_string())
                    .header("Retry-After", wait_secs.to_string()),
            )),
            Err(error) => Err(challenge(&error.to_string())),
        }
    }

    /// `POST /publish`: the Flask labsheet's answers, `200 Message published to topic
    /// '<t>'` when at least one subscriber took it and `404 Topic '<t>' does not exist`
    /// when none did; `400` with the line protocol's reason for what it would refuse, and
    /// `403` with the reason for what the program's hooks or the auth file's rules refuse.
    /// `user` is who the request proved it is, on a broker with access control: the
    /// publisher id is then its name unless the request gives one, and is held to the
    /// same rules as over TCP.
    fn publish(&mut self, request: &Request<'_>, user: Option<&str>) -> Response {
        let (topic, message, publisher_id) = match publish_fields(request) {
            Ok(fields) => fields,
            Err(refusal) => return refusal,
        };
        let publisher_id = publisher_id
            .or_else(|| user.map(str::to_string))
            .unwrap_or_else(|| DEFAULT_PUBLISHER.to_string());
        self.through_the_core(
            user,
            Command::Publish {
                topic: &topic,
                message: &message,
                publisher_id: &publisher_id,
            },
        )
    }

    /// Runs one command through the session core (`session.rs`), as the user the request
    /// proved it is (or anonymous), and turns the core's reply into the response (see
    /// [`HttpLink`]). A request is a session of one command: its checks, its access rules,
    /// its hooks and its confirm (after the log, with `--data-dir`) are every other
    /// client's.
    fn through_the_core(&mut self, user: Option<&str>, command: Command<'_>) -> Response {
        let answer = Rc::new(RefCell::new(None));
        let link = HttpLink {
            outbox: Arc::clone(&self.outbox),
            connections: Arc::clone(&self.connections),
            user: user.is_some(),
            answer: Rc::clone(&answer),
        };
        let client = ClientInfo::new(Transport::Http, Some(self.outbox.peer().addr()));
        let entry = Entry::As(user.map(Arc::from));
        let mut session = Session::new(Arc::clone(&self.router), Box::new(link), client, entry);
        session.execute_acknowledged(command);
        session.flush();
        drop(session);
        let answered = answer.borrow_mut().take();
        self.counted = answered
            .as_ref()
            .is_some_and(|response| response.status >= 400 && response.status != 404);
        answered.unwrap_or_else(|| {
            Response::new(500, TEXT, "the broker gave no answer to this request")
        })
    }

    /// `GET /topics[?filter=news/%23]`: `{"topics": [{"topic": ..., "subscribers": n}],
    /// "more": m}`, what `TOPICS` lists.
    fn topics(&mut self, request: &Request<'_>, user: Option<&str>) -> Response {
        let filter = match http::form_value(request.query, "filter") {
            Ok(filter) => filter,
            Err(error) => return Response::new(400, TEXT, error.to_string()),
        };
        let filter = filter.as_deref().filter(|f| !f.is_empty());
        self.through_the_core(user, Command::Topics { filter })
    }

    /// `GET /stats`: every `STATS` counter as a member of one object.
    fn stats(&mut self, user: Option<&str>) -> Response {
        self.through_the_core(user, Command::Stats)
    }

    /// Writes the last answer out, shuts the sending side, and reads what the client
    /// still sends for a moment: the lingering close of the module docs.
    fn close_gracefully(&mut self) -> Option<Vec<u8>> {
        self.outbox.wait_until_written();
        linger(self.socket());
        None
    }
}

impl Drop for HttpConnection {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.outbox.close();
            self.outbox.join_writer();
            slot.connections().log_event(
                log::Level::Info,
                format_args!("#{} disconnected (web)", self.outbox.peer().conn()),
            );
        }
    }
}

/// An HTTP request, as the session core sees it: the core's one reply to it becomes the
/// response. `POST /publish` is a `PUBLISH` with an acknowledgement: `OK PUBLISH` with its
/// count of deliveries becomes the Flask labsheet's `200` (someone took it) or `404`
/// (nobody did), an `ERROR` a `400`, `401` or `403` (see [`refusal`]). `GET /topics` and
/// `GET /stats` are `TOPICS` and `STATS`, written as JSON.
struct HttpLink {
    outbox: Arc<Outbox>,
    connections: Arc<Connections>,
    /// Whether the request gave credentials (a refusal then is a `403`, not a `401`).
    user: bool,
    /// The response, once the core replied.
    answer: Rc<RefCell<Option<Response>>>,
}

impl Link for HttpLink {
    fn peer(&self) -> &Peer {
        self.outbox.peer()
    }

    fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::clone(&self.outbox) as Arc<dyn Subscriber>
    }

    fn holder(&self) -> Option<Arc<dyn Holder>> {
        None
    }

    fn carries(&self, command: &Command<'_>) -> Result<(), ProtocolError> {
        match command {
            Command::Publish { .. } | Command::Topics { .. } | Command::Stats => Ok(()),
            // Nothing else is sent by this module.
            other => Err(ProtocolError::WrongArguments(other.spec())),
        }
    }

    fn reply(&self, reply: &Reply<'_>) {
        let response = match reply {
            Reply::PublishOk {
                topic,
                deliveries: 0,
            } => Response::new(404, TEXT, format!("Topic '{topic}' does not exist")),
            Reply::PublishOk { topic, .. } => {
                Response::new(200, TEXT, format!("Message published to topic '{topic}'"))
            }
            Reply::Topics { topics, more } => {
                let listed: Vec<String> = topics.iter().map(protocol::listed_json).collect();
                let mut body = ObjectWriter::new();
                body.raw("topics", &format!("[{}]", listed.join(",")))
                    .number("more", *more as f64);
                json_response(body.finish())
            }
            Reply::Stats(counters) => {
                let mut body = ObjectWriter::new();
                for (name, value) in counters.iter() {
                    body.number(name, *value as f64);
                }
                json_response(body.finish())
            }
            Reply::Error(error) => refusal(error, self.user),
            other => {
                let mut line = Vec::new();
                other.write_lines(&mut line);
                Response::new(200, TEXT, String::from_utf8_lossy(&line).into_owned())
            }
        };
        *self.answer.borrow_mut() = Some(response);
    }

    fn encode(&self, reply: &Reply<'_>, out: &mut Vec<u8>) {
        reply.write_lines(out);
    }

    fn send(&self, _bytes: &[u8]) {
        // Only replies queued behind a confirm come here; a request has one command, so
        // its one reply is the confirm itself, which comes through `reply`.
    }

    fn flush(&self) {}

    fn warn(&self, level: log::Level, event: std::fmt::Arguments<'_>) {
        self.connections.log_event(level, event);
    }

    fn close(&self) {}
}

/// What a request without credentials is told on a broker with access control.
const AUTH_REQUIRED: &str = "authentication required: send your user and secret in an \
                             Authorization: Basic header (curl -u user:secret)";

/// A `401` with the challenge that makes a browser ask for a user and a secret.
fn challenge(body: &str) -> Response {
    Response::new(401, TEXT, body.to_string())
        .header("WWW-Authenticate", "Basic realm=\"pubsub-lab\"")
}

/// The HTTP answer to a refused publish: `400` for what the grammar refuses; `403` for
/// what the program's hooks or the auth file's rules refuse (as for a client the hooks do
/// not let in), but `401` when the rules refuse a request that gave no credentials, so
/// that a browser asks for them.
fn refusal(error: &ProtocolError, user: bool) -> Response {
    match error {
        ProtocolError::NotAllowed { .. } if !user => challenge(AUTH_REQUIRED),
        ProtocolError::Refused(_) | ProtocolError::NotAllowed { .. } => {
            Response::new(403, TEXT, error.to_string())
        }
        _ => Response::new(400, TEXT, error.to_string()),
    }
}

/// The same response, with the connection closed after it.
fn closing(response: Response) -> Response {
    Response {
        close: true,
        ..response
    }
}

fn json_response(mut body: String) -> Response {
    body.push('\n');
    Response::new(200, JSON, body).header("Cache-Control", "no-store")
}

/// `None` for a `GET` or `HEAD`; the `405` otherwise.
fn only_get(request: &Request<'_>) -> Option<Response> {
    (!matches!(request.method, "GET" | "HEAD")).then(|| not_allowed(request, "GET, HEAD"))
}

fn not_allowed(request: &Request<'_>, allowed: &'static str) -> Response {
    let body = format!(
        "method {} is not allowed on {}: use {allowed}",
        escaped(request.method),
        escaped(request.path)
    );
    Response::new(405, TEXT, body).header("Allow", allowed)
}

/// The WebSocket handshake: the `101` (its bytes as the body, to be sent as they are), or
/// the refusal that says what was missing.
pub(super) fn handshake(request: &Request<'_>) -> Result<Response, Response> {
    if request.method != "GET" {
        return Err(not_allowed(request, "GET"));
    }
    let asks_for_websocket =
        request.has_token("upgrade", "websocket") && request.has_token("connection", "upgrade");
    if !asks_for_websocket {
        let body = "this is the WebSocket of the live view: open it with a WebSocket client, \
                    as the page at / does (new WebSocket(\"ws://<host>/ws\"))";
        return Err(Response::new(426, TEXT, body)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade"));
    }
    if request.version != Version::Http11 {
        return Err(Response::new(
            400,
            TEXT,
            "a WebSocket handshake is an HTTP/1.1 request",
        ));
    }
    if request.header("sec-websocket-version") != Some("13") {
        let body = "only WebSocket version 13 (RFC 6455) is spoken here";
        return Err(Response::new(426, TEXT, body).header("Sec-WebSocket-Version", "13"));
    }
    let key = request.header("sec-websocket-key").unwrap_or_default();
    if !websocket::is_valid_key(key) {
        let body = "Sec-WebSocket-Key must be 16 random bytes in base64";
        return Err(Response::new(400, TEXT, body));
    }
    Ok(Response::new(101, TEXT, websocket::handshake_response(key)))
}

/// The topic, message and publisher id (if it gives one) of a publish, from its body as
/// its `Content-Type` says; the refusal (`400` or `415`) otherwise.
fn publish_fields(request: &Request<'_>) -> Result<(String, String, Option<String>), Response> {
    let bad = |reason: String| Response::new(400, TEXT, reason);
    let query = |name: &str| http::form_value(request.query, name).map_err(|e| bad(e.to_string()));
    let text = || {
        std::str::from_utf8(request.body).map_err(|_| bad("the body is not UTF-8 text".to_string()))
    };
    let missing = |field: &str| {
        bad(format!(
            "missing \"{field}\": publish with {{\"topic\": \"...\", \"message\": \"...\", \
             \"publisher\": \"...\"}} (publisher optional), a form topic=...&message=..., \
             or text/plain with ?topic=..."
        ))
    };
    let (topic, message, publisher) = match request.media_type().as_deref() {
        Some("application/json") => {
            let value = json::parse(text()?).map_err(|error| bad(error.to_string()))?;
            if !matches!(value, Value::Object(_)) {
                return Err(bad(format!(
                    "the body must be a JSON object, not {}",
                    value.kind()
                )));
            }
            let field = |name: &str| match value.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(other) => Err(bad(format!(
                    "\"{name}\" must be a string, not {}",
                    other.kind()
                ))),
            };
            (field("topic")?, field("message")?, field("publisher")?)
        }
        Some("application/x-www-form-urlencoded") => {
            let form = text()?;
            let field = |name: &str| http::form_value(form, name).map_err(|e| bad(e.to_string()));
            let topic = field("topic")?.or(query("topic")?);
            let publisher = field("publisher")?.or(query("publisher")?);
            (topic, field("message")?, publisher)
        }
        Some("text/plain") => {
            let body = text()?;
            // `echo hi | curl --data-binary @-` sends the line's end too: it is not part of
            // the message.
            let body = body.strip_suffix('\n').unwrap_or(body);
            let body = body.strip_suffix('\r').unwrap_or(body);
            (query("topic")?, Some(body.to_string()), query("publisher")?)
        }
        other => {
            let body = format!(
                "{}: publish with Content-Type application/json ({{\"topic\": \"...\", \
                 \"message\": \"...\"}}), application/x-www-form-urlencoded, or text/plain \
                 with ?topic=...",
                match other {
                    Some(media) => format!("Content-Type {} is not understood", escaped(media)),
                    None => "no Content-Type".to_string(),
                }
            );
            return Err(Response::new(415, TEXT, body));
        }
    };
    let topic = topic.ok_or_else(|| missing("topic"))?;
    let message = message.ok_or_else(|| missing("message"))?;
    Ok((topic, message, publisher))
}

/// Reads once into the end of `input`, waiting at most `timeout`.
fn read_some(socket: &TcpStream, input: &mut Vec<u8>, timeout: Duration) -> io::Result<usize> {
    if timeout.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    socket.set_read_timeout(Some(timeout))?;
    let filled = input.len();
    input.resize(filled + READ_CHUNK, 0);
    let read = loop {
        match (&*socket).read(&mut input[filled..]) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    input.truncate(filled + *read.as_ref().unwrap_or(&0));
    read
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Shuts the sending side and reads what the client still sends, for a moment, so that
/// closing does not reset the connection under the last answer.
fn linger(socket: &TcpStream) {
    let _ = socket.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut scratch = [0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*socket).read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// How a WebSocket connection ended, from the server's side.
enum Ending {
    /// End of file, or the socket failed: nothing more to say.
    Gone,
    /// The client sent a close frame: answer it.
    ClientClosed(Option<u16>),
    /// We close: after `QUIT`, or a frame we do not take.
    Close(u16, &'static str),
}

/// A WebSocket connection, to its end: the line protocol's [`Session`], fed from frames.
fn websocket_session(
    server: &Arc<Server>,
    router: Arc<Router>,
    outbox: Arc<Outbox>,
    slot: Slot,
    leftover: &[u8],
) {
    let conn = outbox.peer().conn();
    // From now on every line to this client is one text frame, and it may stay idle
    // as long as it likes, like any subscriber.
    outbox.set_encoding(super::WEBSOCKET_LINES);
    let _ = outbox.socket().set_read_timeout(None);
    let mut decoder = Decoder::new(Role::Server, router.config().max_line_bytes);
    decoder.extend(leftover);
    slot.connections().log_event(
        log::Level::Info,
        format_args!("#{conn} speaks WebSocket now"),
    );
    let (mut session, room) = match &router.config().ws_broadcast {
        Some(topic) => {
            let (session, room) = Room::join(Arc::clone(&router), Arc::clone(&outbox), slot, topic);
            (session, Some(room))
        }
        None => (
            Session::websocket(Arc::clone(&router), Arc::clone(&outbox), slot),
            None,
        ),
    };
    let ending = websocket_read_loop(&mut session, room.as_ref(), &mut decoder, &outbox);
    let mut frame = Vec::new();
    match ending {
        Ending::Gone => {}
        Ending::ClientClosed(code) => {
            // Echo the client's code, as RFC 6455 suggests; then the server closes.
            session.flush();
            websocket::write_close(&mut frame, code.unwrap_or(websocket::NORMAL), "", None);
            outbox.push_bytes(&frame);
            outbox.wait_until_written();
        }
        Ending::Close(code, reason) => {
            // An auth timeout is the session's to report (it has, in its log and its
            // ERROR line); the others are frames that broke the protocol.
            if code != websocket::NORMAL && code != websocket::POLICY_VIOLATION {
                router.stats().errors.fetch_add(1, Ordering::Relaxed);
                server.connections.log_event(
                    log::Level::Warn,
                    format_args!(
                        "{} broke the WebSocket protocol: {reason} ({code})",
                        outbox.peer()
                    ),
                );
            }
            session.flush();
            websocket::write_close(&mut frame, code, reason, None);
            outbox.push_bytes(&frame);
            outbox.wait_until_written();
            // Wait, briefly, for the client's answering close frame.
            linger(outbox.socket());
        }
    }
    // `session` is dropped here: the line session's own cleanup.
}

/// No `AUTH` within `--auth-timeout`: the session's `ERROR` line, then a close frame.
fn auth_timeout(session: &mut Session) -> Ending {
    let _ = session.auth_timed_out();
    Ending::Close(websocket::POLICY_VIOLATION, "authentication timeout")
}

/// Handles messages until the connection ends: each text frame a line of the line
/// protocol, or, in a broadcast room (`--ws-broadcast`), a message to it.
fn websocket_read_loop(
    session: &mut Session,
    room: Option<&Room>,
    decoder: &mut Decoder,
    outbox: &Outbox,
) -> Ending {
    loop {
        loop {
            let message = match decoder.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(Violation { code, reason }) => return Ending::Close(code, reason),
            };
            match message {
                Message::Text(text) if room.is_some() => {
                    if let Some(room) = room {
                        room.say(session, text);
                    }
                }
                Message::Text(text) => {
                    // One command per frame; a line's end after it is not part of it.
                    let line = text.strip_suffix('\n').unwrap_or(text);
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    session.handle_line(line.as_bytes());
                    match session.quit_reason() {
                        None => {}
                        Some(Quit::AuthTimeout) => {
                            return Ending::Close(
                                websocket::POLICY_VIOLATION,
                                "authentication timeout",
                            )
                        }
                        Some(Quit::AuthFailed) => {
                            return Ending::Close(
                                websocket::POLICY_VIOLATION,
                                "authentication failed",
                            )
                        }
                        Some(Quit::Bye | Quit::Refused) => {
                            return Ending::Close(websocket::NORMAL, "bye")
                        }
                    }
                }
                Message::Binary(_) => {
                    return Ending::Close(
                        websocket::UNSUPPORTED_DATA,
                        "send commands as text frames",
                    )
                }
                Message::Ping(payload) => {
                    let mut pong = Vec::new();
                    websocket::write_frame(&mut pong, websocket::Opcode::Pong, payload, None);
                    outbox.push_bytes(&pong);
                }
                Message::Pong(_) => {}
                Message::Close(close) => return Ending::ClientClosed(close.map(|(code, _)| code)),
            }
        }
        session.flush();
        session.rest();
        // On a broker with access control, a client that has not sent `AUTH` may wait
        // only until its deadline, as over TCP.
        let must_auth = session.auth_time_left();
        if let Some(left) = must_auth {
            if left.is_zero() || outbox.socket().set_read_timeout(Some(left)).is_err() {
                return auth_timeout(session);
            }
        }
        match decoder.read_from(outbox.socket()) {
            Err(error) if must_auth.is_some() && is_timeout(&error) => {
                return auth_timeout(session)
            }
            Ok(0) | Err(_) => return Ending::Gone,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Request<'_> {
        match http::parse(text.as_bytes(), 1 << 16) {
            Ok(Parse::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn publish_fields_come_from_json_forms_and_plain_text() {
        let post = |target: &str, media: &str, body: &str| {
            format!(
                "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {media}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let json = post(
            "/publish",
            "application/json",
            r#"{"topic": "weather", "message": "Rainy day"}"#,
        );
        assert_eq!(
            publish_fields(&request(&json)).unwrap(),
            ("weather".into(), "Rainy day".into(), None)
        );
        let form = post(
            "/publish?publisher=p2",
            "application/x-www-form-urlencoded",
            "topic=news%2Ftech&message=a+b",
        );
        assert_eq!(
            publish_fields(&request(&form)).unwrap(),
            ("news/tech".into(), "a b".into(), Some("p2".into()))
        );
        let plain = post("/publish?topic=t", "text/plain; charset=utf-8", "hi\n");
        assert_eq!(
            publish_fields(&request(&plain)).unwrap(),
            ("t".into(), "hi".into(), None)
        );
    }

    #[test]
    fn publish_fields_say_what_is_missing_or_wrong() {
        let cases = [
            (
                "application/json",
                "{\"topic\": 1, \"message\": \"m\"}",
                400,
                "\"topic\" must be a string, not a number",
            ),
            (
                "application/json",
                "[1]",
                400,
                "the body must be a JSON object, not an array",
            ),
            (
                "application/json",
                "{\"topic\": \"t\"}",
                400,
                "missing \"message\"",
            ),
            (
                "application/json",
                "{\"topic\" \"t\"}",
                400,
                "invalid JSON at byte 9",
            ),
            ("text/plain", "hi", 400, "missing \"topic\""),
            (
                "image/png",
                "hi",
                415,
                "Content-Type image/png is not understood",
            ),
        ];
        for (media, body, status, reason) in cases {
            let text = format!(
                "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: {media}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let refusal = publish_fields(&request(&text)).unwrap_err();
            assert_eq!(refusal.status, status, "{body}");
            let said = String::from_utf8(refusal.body).unwrap();
            assert!(said.starts_with(reason), "{said}");
        }
    }

    #[test]
    fn the_page_has_its_style_and_script_inside() {
        let page = page();
        assert!(!page.contains("/* page.css */") && !page.contains("/* page.js */"));
        assert!(page.contains("new WebSocket"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no CDN, no links out"
        );
    }
}
