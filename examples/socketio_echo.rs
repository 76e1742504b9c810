//! The reference servers of the Engine.IO and Socket.IO protocols' own test suites, built
//! on the broker's Engine.IO and Socket.IO layers (`pubsub_lab::web::engineio_server`,
//! `pubsub_lab::web::socketio`) instead of the broker: so that someone else's tests check
//! our reading of the specifications.
//!
//! ```text
//!   cargo run --example socketio_echo -- engineio 3000
//!   git clone https://github.com/socketio/engine.io-protocol && cd engine.io-protocol/test-suite
//!   npm ci && npm test
//!
//!   cargo run --example socketio_echo -- socketio 3000
//!   git clone https://github.com/socketio/socket.io-protocol && cd socket.io-protocol/test-suite
//!   npm ci && npm test
//! ```
//!
//! The configuration is the one their READMEs give: a ping every 300 ms, 200 ms for its
//! pong, payloads up to 1,000,000 bytes. `engineio` echoes every message at
//! `/engine.io/`; `socketio` serves `/socket.io/`, where a client that connects (to `/` or
//! `/custom`, within a second) is sent the event `auth` with its auth data, `message` is
//! answered with `message-back` and the same arguments, and `message-with-ack` is
//! acknowledged with its arguments. It listens on localhost only.

use std::collections::HashSet;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pubsub_lab::json::Value;
use pubsub_lab::outbox::{Outbox, Rules};
use pubsub_lab::peer::Peer;
use pubsub_lab::stats::Stats;
use pubsub_lab::subscriber::Subscriber;
use pubsub_lab::web::engineio::{Packet as EnginePacket, Settings};
use pubsub_lab::web::engineio_server::{Answer, EngineIo, Incoming, Socket};
use pubsub_lab::web::http::{self, Parse, Response};
use pubsub_lab::web::socketio::{Assembler, Kind, Packet, MAIN};

/// The test suites' configuration.
const SETTINGS: Settings = Settings {
    ping_interval: Duration::from_millis(300),
    ping_timeout: Duration::from_millis(200),
    max_payload: 1_000_000,
};

/// The Socket.IO suite's `connectTimeout`: a session that sends no `CONNECT` within it is
/// closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The pause between the answer to a `CONNECT` and the `auth` event (see `socket_io`).
const BETWEEN_FRAMES: Duration = Duration::from_millis(20);

/// The namespaces the Socket.IO server has.
const NAMESPACES: [&str; 2] = [MAIN, "/custom"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (layer, port) = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some(layer @ ("engineio" | "socketio")), Some(port)) => match port.parse::<u16>() {
            Ok(port) => (layer.to_string(), port),
            Err(_) => usage(),
        },
        _ => usage(),
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {error}");
            std::process::exit(1);
        }
    };
    let (path, opener): (&str, fn(Socket, &Peer)) = match layer.as_str() {
        "engineio" => ("/engine.io/", |socket, _| {
            spawn("echo", move || echo(socket))
        }),
        _ => ("/socket.io/", |socket, _| {
            spawn("socketio", move || socket_io(socket))
        }),
    };
    let rules = Arc::new(Rules {
        write_timeout: Duration::from_secs(2),
        max_pending_bytes: 8 * SETTINGS.max_payload,
        stats: Arc::new(Stats::default()),
    });
    let engine = Arc::new(EngineIo::new(
        SETTINGS,
        Arc::clone(&rules),
        1000,
        Box::new(opener),
    ));
    println!("{layer} test server on http://localhost:{port}{path}");
    for (conn, stream) in (1..).zip(listener.incoming()) {
        let Ok(stream) = stream else { continue };
        let (engine, rules) = (Arc::clone(&engine), Arc::clone(&rules));
        spawn("http", move || serve(&engine, rules, stream, conn, path));
    }
}

fn usage() -> ! {
    eprintln!("usage: socketio_echo engineio|socketio PORT");
    std::process::exit(2);
}

fn spawn(name: &str, run: impl FnOnce() + Send + 'static) {
    if let Err(error) = thread::Builder::new().name(name.to_string()).spawn(run) {
        eprintln!("no thread for {name}: {error}");
    }
}

/// One HTTP connection: requests to `path` go to Engine.IO, until one becomes a WebSocket.
fn serve(engine: &EngineIo, rules: Arc<Rules>, stream: TcpStream, conn: u64, path: &str) {
    let Ok(addr) = stream.peer_addr() else { return };
    let Ok(outbox) = Outbox::new(Peer::new(conn, addr), stream, rules) else {
        return;
    };
    let mut input = Vec::new();
    loop {
        let parsed = http::parse(&input, SETTINGS.max_payload);
        let (answer, len) = match parsed {
            Ok(Parse::Complete { request, len }) if request.path == path => {
                (engine.answer(&request, outbox.peer()), len)
            }
            Ok(Parse::Complete { len, .. }) => {
                let missing = Response::new(404, http::TEXT, format!("try {path}"));
                (Answer::Respond(missing), len)
            }
            Ok(Parse::Incomplete) => {
                let mut chunk = [0u8; 16 * 1024];
                match outbox.socket().read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => input.extend_from_slice(&chunk[..n]),
                }
                continue;
            }
            Err(error) => (Answer::Respond(Response::refusal(&error)), input.len()),
        };
        match answer {
            Answer::Respond(response) => {
                let mut bytes = Vec::new();
                response.write(&mut bytes, false);
                outbox.push_bytes(&bytes);
                Subscriber::flush(&*outbox);
                input.drain(..len);
            }
            Answer::WebSocket(switching, upgrade) => {
                outbox.push_bytes(&switching.body);
                engine.run_websocket(upgrade, &outbox, &input[len..]);
                break;
            }
        }
    }
    outbox.wait_until_written();
    outbox.close();
    outbox.join_writer();
}

/// The Engine.IO suite's server: every message back as it came.
fn echo(mut socket: Socket) {
    while let Some(incoming) = socket.recv() {
        let packet = match incoming {
            Incoming::Text(text) => EnginePacket::Message(text),
            Incoming::Binary(bytes) => EnginePacket::Binary(bytes),
        };
        socket.channel().send(&[packet]);
        socket.channel().flush();
    }
}

/// The Socket.IO suite's server (see the module docs).
fn socket_io(mut socket: Socket) {
    let mut assembler = Assembler::default();
    let mut joined: HashSet<String> = HashSet::new();
    let mut connect_by = Some(Instant::now() + CONNECT_TIMEOUT);
    while let Some(incoming) = socket.recv_until(connect_by) {
        let packet = match incoming {
            Incoming::Text(text) => assembler.text(&text),
            Incoming::Binary(bytes) => assembler.binary(bytes),
        };
        let packet = match packet {
            Ok(Some(packet)) => packet,
            Ok(None) => continue,
            Err(_) => break, // a bad packet: the session closes
        };
        for (i, answer) in answer(&packet, &mut joined, socket.channel().sid())
            .iter()
            .enumerate()
        {
            if i > 0 {
                // The suite waits for each frame with a listener it adds only after the one
                // before was handled: two frames that reach it in one read lose the second.
                // The Node server sends its `auth` event a turn of its event loop after the
                // `CONNECT`, once the first write completed; this pause does the same.
                thread::sleep(BETWEEN_FRAMES);
            }
            send(&socket, answer);
        }
        if !joined.is_empty() {
            connect_by = None;
        }
    }
}

/// What the suite's server says to `packet`.
fn answer(packet: &Packet, joined: &mut HashSet<String>, sid: &str) -> Vec<Packet> {
    let namespace = packet.namespace.as_str();
    match packet.kind {
        Kind::Connect if NAMESPACES.contains(&namespace) => {
            joined.insert(namespace.to_string());
            let id = Value::Object(vec![("sid".into(), Value::String(sid.into()))]);
            let auth = packet.data.clone().unwrap_or(Value::Object(Vec::new()));
            vec![
                Packet::new(Kind::Connect, namespace, None, Some(id)),
                Packet::event(namespace, "auth", vec![auth]),
            ]
        }
        Kind::Connect => {
            let reason = Value::Object(vec![(
                "message".into(),
                Value::String("Invalid namespace".into()),
            )]);
            vec![Packet::new(
                Kind::ConnectError,
                namespace,
                None,
                Some(reason),
            )]
        }
        Kind::Disconnect => {
            joined.remove(namespace);
            Vec::new()
        }
        Kind::Event if namespace == MAIN && joined.contains(MAIN) => {
            let args = packet.args().to_vec();
            let mut reply = match packet.event_name() {
                Some("message") => Packet::event(MAIN, "message-back", args),
                Some("message-with-ack") if packet.id.is_some() => {
                    Packet::new(Kind::Ack, MAIN, packet.id, Some(Value::Array(args)))
                }
                _ => return Vec::new(),
            };
            reply.attachments = packet.attachments.clone();
            vec![reply]
        }
        _ => Vec::new(),
    }
}

/// Sends a packet and its attachments, each an Engine.IO message.
fn send(socket: &Socket, packet: &Packet) {
    let mut messages = vec![EnginePacket::Message(packet.text())];
    messages.extend(packet.attachments.iter().cloned().map(EnginePacket::Binary));
    socket.channel().send(&messages);
    socket.channel().flush();
}
