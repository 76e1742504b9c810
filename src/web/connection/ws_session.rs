//! A WebSocket connection, once the handshake is done: the line protocol's session core
//! (`session.rs`), fed a command per text frame, and closed with the code that says why.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{is_timeout, linger, not_allowed};
use crate::connections::Slot;
use crate::outbox::Outbox;
use crate::router::Router;
use crate::server::Server;
use crate::session::{Quit, Session};
use crate::web::broadcast::Room;
use crate::web::http::{Request, Response, Version, TEXT};
use crate::web::websocket::{self, Decoder, Message, Role, Violation};

/// The WebSocket handshake: the `101` (its bytes as the body, to be sent as they are), or
/// the refusal that says what was missing.
pub(in crate::web) fn handshake(request: &Request<'_>) -> Result<Response, Response> {
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
pub(super) fn websocket_session(
    server: &Arc<Server>,
    router: Arc<Router>,
    outbox: Arc<Outbox>,
    slot: Slot,
    leftover: &[u8],
) {
    let conn = outbox.peer().conn();
    // From now on every line to this client is one text frame, and it may stay idle
    // as long as it likes, like any subscriber.
    outbox.set_encoding(crate::web::WEBSOCKET_LINES);
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
