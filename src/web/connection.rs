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

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::base64;
use super::engineio_server::{Answer, EngineIo};
use super::http::{self, Parse, Request, Response, HTML, JSON, METRICS, TEXT};
use super::metrics;
use crate::connections::{Connections, Slot};
use crate::hooks::{ClientInfo, Transport};
use crate::outbox::Outbox;
use crate::protocol::ProtocolError;
use crate::router::Router;
use crate::server::Server;
use crate::subscriber::Subscriber;
use crate::text::escaped;

mod requests;
mod ws_session;

use requests::{challenge, AUTH_REQUIRED};
pub(in crate::web) use ws_session::handshake;
use ws_session::websocket_session;

/// The publisher id of an HTTP publish that names none.
pub const DEFAULT_PUBLISHER: &str = "http";

/// How much one read asks for.
const READ_CHUNK: usize = 16 * 1024;

/// How long a closing connection's last bytes from the client are read and dropped.
const LINGER: Duration = Duration::from_millis(500);

/// The most a lingering close reads before it gives up.
const LINGER_BYTES: usize = 256 * 1024;

/// The live view: one page, its style and scripts put in at their places (`live.js` is
/// what it shares with the class picture).
fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        include_str!("page.html")
            .replace("/* page.css */", include_str!("page.css"))
            .replace("/* live.js */", include_str!("live.js"))
            .replace("/* page.js */", include_str!("page.js"))
    })
}

/// The class picture (`/class`), put together the same way: the live view's style (its
/// colours and panels), the picture's own style, and its script.
fn class_page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        include_str!("class.html")
            .replace("/* page.css */", include_str!("page.css"))
            .replace("/* class.css */", include_str!("class.css"))
            .replace("/* live.js */", include_str!("live.js"))
            .replace("/* class.js */", include_str!("class.js"))
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
        if let Some(refusal) = self.cross_site(request) {
            return refusal;
        }
        match request.path {
            "/" => only_get(request).unwrap_or_else(|| {
                Response::new(200, HTML, page()).header("Cache-Control", "no-cache")
            }),
            "/class" => only_get(request).unwrap_or_else(|| {
                Response::new(200, HTML, class_page()).header("Cache-Control", "no-cache")
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
            "/clients" => only_get(request).unwrap_or_else(|| match self.authenticated(request) {
                Ok(None) if self.router.access().is_some() => challenge(AUTH_REQUIRED),
                Ok(user) => self.clients(request, user.as_deref()),
                Err(refusal) => refusal,
            }),
            // The figures of `/stats`, in the format monitoring systems scrape; on a
            // broker with access control, for any user (Prometheus sends Basic
            // credentials: `basic_auth` in its scrape config).
            "/metrics" => only_get(request).unwrap_or_else(|| match self.authenticated(request) {
                Ok(None) if self.router.access().is_some() => challenge(AUTH_REQUIRED),
                Ok(_) => Response::new(200, METRICS, metrics::page(&self.router))
                    .header("Cache-Control", "no-store"),
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
                "no such page: the live view is at / (the class picture at /class); also \
                 POST /publish, GET /topics, GET /clients, GET /stats, GET /metrics, \
                 GET /healthz, and a WebSocket at /ws",
            ),
        }
    }

    /// On a broker with access control, the `403` for a request that acts (`POST
    /// /publish`, the WebSocket at `/ws`) sent by a page of another site. A browser adds
    /// the credentials it has cached for this broker (HTTP Basic) to any request any page
    /// makes to it, and a cross-site form POST needs no JavaScript: without this check,
    /// any page the instructor opens could publish as the instructor (cross-site request
    /// forgery). The browser names the page's site in `Origin`; a program (curl, Python's
    /// requests) sends none, and is not a browser holding someone else's credentials.
    /// Production servers do the same (Django's CSRF check, RFC 6455's advice for
    /// WebSocket servers).
    fn cross_site(&self, request: &Request<'_>) -> Option<Response> {
        self.router.access()?;
        if !matches!(request.path, "/publish" | "/ws") {
            return None;
        }
        let origin = request.header("Origin")?;
        let host = request.header("Host").unwrap_or_default();
        let same_site = origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host));
        (!same_site).then(|| {
            closing(Response::new(
                403,
                TEXT,
                format!(
                    "cross-site request refused: a page of {} may not act on this broker \
                     with your credentials; open the page from this broker, or use a client \
                     that is not a browser",
                    escaped(origin)
                ),
            ))
        })
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
            Err(
                error @ (ProtocolError::TooManyFailures { wait_secs }
                | ProtocolError::UserOutOfAttempts { wait_secs }),
            ) => Err(closing(
                Response::new(429, TEXT, error.to_string())
                    .header("Retry-After", wait_secs.to_string()),
            )),
            Err(error) => Err(challenge(&error.to_string())),
        }
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

pub(super) fn not_allowed(request: &Request<'_>, allowed: &'static str) -> Response {
    let body = format!(
        "method {} is not allowed on {}: use {allowed}",
        escaped(request.method),
        escaped(request.path)
    );
    Response::new(405, TEXT, body).header("Allow", allowed)
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

#[cfg(test)]
mod tests {
    use super::requests::publish_fields;
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
