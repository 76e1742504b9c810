//! The web: the broker over HTTP and WebSocket, and the live view a browser opens.
//!
//! "The web is another transport": a browser tab is one more client of the same broker.
//! The web listener (port 8080 by default in the `broker` binary) takes TCP connections
//! like the line listener, one thread each (`web-<n>`), one slot each in the connection
//! table; what differs is the first bytes. Each connection speaks HTTP/1.1 (`http.rs`),
//! request after request on the same connection (*keep-alive*), until it asks for a
//! WebSocket at `GET /ws`; from then on it speaks WebSocket frames (`websocket.rs`), each
//! text frame carrying exactly one line of the line protocol:
//!
//! ```text
//!   browser                          web-<n> thread                     the broker
//!   GET /              ─HTTP─▶  answer: the live view (page.html)
//!   GET /ws (upgrade)  ─HTTP─▶  101, then a Session (session.rs) ──▶  router, registry
//!   [SUBSCRIBE weather web-1] ─frame─▶  handle_line ─────────────────▶  subscribe
//!   ◀─frame─ [DELIVER weather Rainy day pub1 2025-03-14 10:30:00]   ◀── Outbox, one frame per line
//!   POST /publish      ─HTTP─▶  Publisher::publish, hand_out  ─────▶  every subscriber
//! ```
//!
//! Nothing here is a second broker. A WebSocket connection runs the line protocol's own
//! `Session` (`session.rs`: the same parsing, replies, `ERROR` reasons and cleanup),
//! and its subscriber handle is the TCP connection's own [`Outbox`] (the same pending
//! bytes, writer thread, backpressure and cut-off), told to write each line as a frame
//! ([`Encoding::Framed`]). `POST /publish` goes through a [`Publisher`](crate::router::Publisher)
//! like any ingress. So a WebSocket client and a TCP client on one topic see the same
//! messages, and a browser tab that stops reading is cut off like any slow subscriber.
//!
//! The same road means the same rules: the embedding program's hooks (`hooks.rs`) see an
//! HTTP client ([`Transport::Http`](crate::hooks::Transport::Http)) and a WebSocket one
//! ([`Transport::WebSocket`](crate::hooks::Transport::WebSocket)) as they see every other,
//! and a refusal is answered in the web's own words: `403` with the reason over HTTP, an
//! `ERROR <reason>` frame over a WebSocket.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the listener and admitting a connection |
//! | `connection.rs` | one connection: HTTP requests, then perhaps a WebSocket session |
//! | `http.rs` | requests parsed with limits, responses written |
//! | `websocket.rs` | the handshake, frames, masking, the close codes |
//! | `sha1.rs`, `base64.rs` | what the handshake's `Sec-WebSocket-Accept` is made of |
//! | `engineio.rs` | Engine.IO 4: the packets under Socket.IO, and long-polling payloads |
//! | `engineio_server.rs` | its transports: long-polling, the WebSocket, the upgrade, the heartbeat |
//! | `socketio.rs` | Socket.IO 5: namespaces, events, acknowledgements, binary attachments |
//! | `socketio_session.rs` | a Socket.IO client (at `/socket.io/`) as a session of the core and a subscriber |
//! | `broadcast.rs` | `/ws` as a broadcast room on one topic (`--ws-broadcast`) |
//! | `client.rs` | a small blocking WebSocket client, for the benchmark and tests |
//! | `metrics.rs` | `GET /metrics`: the figures in Prometheus's text format |
//! | `page.html`, `page.css`, `page.js` | the live view, compiled into the binary |
//! | `class.html`, `class.css`, `class.js` | the class picture at `/class`: clients and topics as a live graph, for the projector |
//! | `live.js` | what both pages share: the WebSocket that reconnects, reading a `DELIVER` line, the themes |
//!
//! Socket.IO is the same again, one layer up: its clients' events become the session
//! core's commands and its deliveries their events (`socketio_session.rs`), whether the
//! client long-polls or has upgraded to a WebSocket. A long-polling client's session
//! outlives the HTTP requests that carry it, so the listener keeps the sessions
//! ([`engineio_server::EngineIo`]), each with a thread of its own.
//!
//! What a production web server does beyond this: HTTP/2 and TLS, compression
//! (`permessage-deflate` for WebSocket), an `Origin` check so that only its own pages may
//! open a WebSocket, and authentication. This one checks no `Origin`: any page a browser
//! on this machine opens may talk to it, as any program may talk to port 9000.

pub mod base64;
mod broadcast;
pub mod client;
mod connection;
pub mod engineio;
pub mod engineio_server;
pub mod http;
pub mod metrics;
pub mod sha1;
pub mod socketio;
pub(crate) mod socketio_session;
pub mod websocket;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use crate::connections::Close;
use crate::outbox::{Encoding, Outbox};
use crate::peer::Peer;
use crate::server::{self, Listener, Server};
use engineio_server::EngineIo;

/// The web's listener: HTTP and WebSocket, one thread per connection.
pub(crate) struct WebListener {
    listener: TcpListener,
}

impl WebListener {
    pub(crate) fn new(listener: TcpListener) -> WebListener {
        WebListener { listener }
    }
}

impl Listener for WebListener {
    fn name(&self) -> &'static str {
        "web"
    }

    fn waker(&self) -> io::Result<Box<dyn Fn() + Send>> {
        // As for the line listener: a connection of our own wakes a blocked accept().
        let addr = server::reachable(self.listener.local_addr()?);
        Ok(Box::new(move || {
            let _ = TcpStream::connect(addr);
        }))
    }

    fn serve(self: Box<Self>, server: Arc<Server>) {
        // The Socket.IO clients' sessions outlive the requests that carry them: the
        // listener keeps them, for every connection it serves.
        let socketio = Arc::new(socketio_session::engine(
            &server.router,
            &server.outbox_rules,
            &server.connections,
        ));
        for incoming in self.listener.incoming() {
            if server.is_stopping() {
                break;
            }
            match incoming {
                Ok(stream) => admit(&server, &socketio, stream),
                Err(error) => server::back_off(&error),
            }
        }
        socketio.close_all();
    }
}

/// Gives a new web connection a slot and a thread, or answers `503` when the broker is
/// full. The connection gets an [`Outbox`] at once, as a line connection does: its HTTP
/// responses go out through it (a client that does not read them is cut off by the usual
/// rules), and if it becomes a WebSocket, the same outbox is its subscriber handle.
fn admit(server: &Arc<Server>, socketio: &Arc<EngineIo>, stream: TcpStream) {
    let conn = server.next_conn();
    let Ok(addr) = stream.peer_addr() else {
        log::debug!("#{conn} left before it could be served");
        return;
    };
    let outbox = match Outbox::new(
        Peer::new(conn, addr),
        stream,
        Arc::clone(&server.outbox_rules),
    ) {
        Ok(outbox) => outbox,
        Err(error) => {
            log::debug!("#{conn} left before it could be served: {error}");
            return;
        }
    };
    let closer = Arc::clone(&outbox) as Arc<dyn Close>;
    let slot = match server.connections.claim(conn, addr.ip(), closer) {
        Ok(slot) => slot,
        Err(refusal) => {
            server.connections.log_event(
                log::Level::Warn,
                format_args!(
                    "#{conn} from {} (web) refused: {refusal}; {}",
                    addr.ip(),
                    refusal.remedy()
                ),
            );
            let mut answer = Vec::new();
            let body = format!("{refusal}: try again later");
            http::Response {
                close: true,
                ..http::Response::new(503, http::TEXT, body)
            }
            .write(&mut answer, false);
            server::refuse(outbox.socket(), &String::from_utf8_lossy(&answer));
            return;
        }
    };
    let thread_server = Arc::clone(server);
    let thread_outbox = Arc::clone(&outbox);
    let socketio = Arc::clone(socketio);
    let spawned = thread::Builder::new()
        .name(format!("web-{conn}"))
        .stack_size(server::CLIENT_STACK_SIZE)
        .spawn(move || connection::serve(&thread_server, &socketio, thread_outbox, slot));
    match spawned {
        Ok(thread) => server.connections.adopt(thread),
        Err(error) => {
            log::error!("#{conn} could not get a thread: {error}; lower --max-clients");
            outbox.close();
        }
    }
}

/// How a WebSocket connection's outbox writes lines: one text frame each.
pub(crate) const WEBSOCKET_LINES: Encoding = Encoding::Framed(websocket::write_text_line);
