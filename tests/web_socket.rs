//! The line protocol over WebSocket, from raw sockets: the same lines as TCP, one per
//! frame; frames the broker does not take closed with their code; a WebSocket subscriber
//! that stops reading cut off like a TCP one. (`tests/web_python.rs` runs an independent
//! client, Python's `websocket-client`.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{subscribed, wait_until, Raw, TIMEOUT};
use pubsub_lab::web::client::{Received, WebSocketClient};
use pubsub_lab::web::websocket::{self, Opcode};
use pubsub_lab::{BrokerHandle, Config};

fn open(broker: &BrokerHandle) -> WebSocketClient {
    let client = WebSocketClient::connect(broker.web_addr().unwrap(), "/ws").unwrap();
    client.stream().set_read_timeout(Some(TIMEOUT)).unwrap();
    client
}

fn text(client: &mut WebSocketClient) -> String {
    match client.recv(TIMEOUT).unwrap() {
        Some(Received::Text(text)) => text,
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn closed(client: &mut WebSocketClient) -> (u16, String) {
    loop {
        match client.recv(TIMEOUT).unwrap() {
            Some(Received::Closed(Some(close))) => return close,
            Some(Received::Text(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A raw socket that has done the handshake and sends frames it builds itself.
fn raw_websocket(broker: &BrokerHandle) -> TcpStream {
    let mut stream = TcpStream::connect(broker.web_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let key = websocket::random_key();
    stream
        .write_all(websocket::handshake_request("t", "/ws", &key).as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    stream
}

/// Reads one unmasked server frame: (opcode bits, payload).
fn server_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[1] & 0x80, 0, "a server frame must not be masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut two = [0u8; 2];
            stream.read_exact(&mut two).unwrap();
            usize::from(u16::from_be_bytes(two))
        }
        127 => panic!("no frame here is that long"),
        len => usize::from(len),
    };
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).unwrap();
    (head[0], payload)
}

/// A WebSocket subscriber and a TCP subscriber on one topic see the same lines, whichever
/// way each message was published.
#[test]
fn websocket_and_tcp_subscribers_see_the_same_lines() {
    let broker = common::start_web_broker();
    let mut tcp = subscribed(broker.addr(), "weather", "tcp1");
    let mut ws = open(&broker);
    ws.send_text("SUBSCRIBE weather ws1").unwrap();
    ws.send_text("PING ready").unwrap();
    assert_eq!(text(&mut ws), "PONG ready");
    // One publisher at a time: two publishers' messages may interleave differently at
    // different subscribers.
    tcp.send("PUBLISH weather from  TCP tcp1\n");
    let (from_tcp, from_ws) = (tcp.line(), text(&mut ws));
    assert_eq!(from_tcp, from_ws, "the same DELIVER line, byte for byte");
    assert!(
        from_tcp.starts_with("DELIVER weather from  TCP tcp1 "),
        "{from_tcp}"
    );
    ws.send_text("PUBLISH weather from WebSocket ws1").unwrap();
    let (from_tcp, from_ws) = (tcp.line(), text(&mut ws));
    assert_eq!(from_tcp, from_ws, "the same DELIVER line, byte for byte");
    assert!(
        from_ws.starts_with("DELIVER weather from WebSocket ws1 "),
        "{from_ws}"
    );
    ws.send_text("TOPICS").unwrap();
    assert_eq!(text(&mut ws), "TOPICS weather 2");
    assert_eq!(
        text(&mut ws),
        "END TOPICS",
        "a multi-line reply is one frame per line"
    );
    ws.send_text("PUBLSH weather oops ws1").unwrap();
    assert!(text(&mut ws).starts_with("ERROR unknown command 'PUBLSH'"));
    ws.send_text("VERBOSE on\n").unwrap();
    assert_eq!(
        text(&mut ws),
        "OK VERBOSE on",
        "a line end after the command is dropped"
    );
    ws.send_text("QUIT").unwrap();
    assert_eq!(text(&mut ws), "BYE");
    assert_eq!(closed(&mut ws).0, websocket::NORMAL);
    ws.close(websocket::NORMAL).unwrap();
    ws.drain().unwrap();
    wait_until("the WebSocket subscriber is gone", || {
        broker.topic_counts() == [("weather".to_string(), 1)]
    });
}

/// Frames the broker does not take are answered with a close frame naming why, and the
/// connection ends; the broker and other clients carry on.
#[test]
fn bad_frames_are_closed_with_their_code() {
    let broker = common::start_web_broker_with(Config {
        max_line_bytes: 1000,
        ..Config::default()
    });
    let mask = Some([1, 2, 3, 4]);
    let frame = |opcode, payload: &[u8], mask| {
        let mut out = Vec::new();
        websocket::write_frame(&mut out, opcode, payload, mask);
        out
    };
    let cases = [
        (
            frame(Opcode::Text, b"PING", None),
            websocket::PROTOCOL_ERROR,
            "a client's frames must be masked",
        ),
        (
            frame(Opcode::Text, &[b'a'; 1001], mask),
            websocket::TOO_BIG,
            "message too big",
        ),
        (
            frame(Opcode::Text, &[0xc3, 0x28], mask),
            websocket::INVALID_DATA,
            "a text message that is not UTF-8",
        ),
        (
            frame(Opcode::Binary, b"PING", mask),
            websocket::UNSUPPORTED_DATA,
            "send commands as text frames",
        ),
        (
            frame(Opcode::Continuation, b"PING", mask),
            websocket::PROTOCOL_ERROR,
            "a continuation frame with no message to continue",
        ),
    ];
    for (bytes, code, reason) in cases {
        let mut stream = raw_websocket(&broker);
        stream.write_all(&bytes).unwrap();
        let (opcode, payload) = server_frame(&mut stream);
        assert_eq!(opcode, 0x88, "a close frame for {reason}");
        assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            code,
            "{reason}"
        );
        assert_eq!(&payload[2..], reason.as_bytes());
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    assert_eq!(common::stat(&broker, "errors"), 5);
    let mut tcp = Raw::connect(broker.addr());
    tcp.sync();
}

/// A ping is answered with a pong carrying the same bytes, and a fragmented message with
/// a ping between its pieces is one command.
#[test]
fn pings_are_answered_and_fragments_are_joined() {
    let broker = common::start_web_broker();
    let mut stream = raw_websocket(&broker);
    let key = Some([9, 9, 9, 9]);
    let mut bytes = Vec::new();
    websocket::write_header(&mut bytes, false, Opcode::Text, 3, key);
    bytes.extend(b"PIN".iter().map(|b| b ^ 9));
    websocket::write_frame(&mut bytes, Opcode::Ping, b"are you there", key);
    websocket::write_header(&mut bytes, true, Opcode::Continuation, 6, key);
    bytes.extend(b"G both".iter().map(|b| b ^ 9));
    stream.write_all(&bytes).unwrap();
    assert_eq!(server_frame(&mut stream), (0x8a, b"are you there".to_vec()));
    assert_eq!(server_frame(&mut stream), (0x81, b"PONG both".to_vec()));
}

/// A WebSocket speaks the line protocol from its first frame: kn-sock's JSON dialect is
/// the TCP port's, so a first frame that starts with `{` is a bad command (answered, the
/// connection carrying on), not a switch of dialect.
#[test]
fn a_websocket_speaks_the_line_protocol_even_if_its_first_frame_is_json() {
    let broker = common::start_web_broker();
    let mut client = open(&broker);
    client
        .send_text(r#"{"action": "subscribe", "topic": "news"}"#)
        .unwrap();
    let answer = text(&mut client);
    assert!(answer.starts_with("ERROR unknown command"), "{answer}");
    client.send_text("PING still-here").unwrap();
    assert_eq!(text(&mut client), "PONG still-here");
    assert!(broker.topic_counts().is_empty());
}

/// A WebSocket subscriber that never reads is cut off as a slow consumer, as a TCP one
/// is; a TCP subscriber of the same topic keeps receiving.
#[test]
fn a_websocket_subscriber_that_never_reads_is_cut_off() {
    let broker = common::start_web_broker_with(Config {
        write_timeout: Duration::from_millis(500),
        max_pending_bytes: 1 << 30,
        ..Config::default()
    });
    let mut stalled = raw_websocket(&broker);
    let mut subscribe = Vec::new();
    websocket::write_frame(
        &mut subscribe,
        Opcode::Text,
        b"SUBSCRIBE flood stalled",
        Some([7; 4]),
    );
    websocket::write_frame(&mut subscribe, Opcode::Text, b"PING", Some([7; 4]));
    stalled.write_all(&subscribe).unwrap();
    assert_eq!(server_frame(&mut stalled), (0x81, b"PONG".to_vec()));
    let mut healthy = subscribed(broker.addr(), "flood", "healthy");
    // The healthy one reads all along, on a thread of its own, until the message after.
    let reader = std::thread::spawn(move || loop {
        if healthy.line().starts_with("DELIVER flood after p ") {
            return healthy;
        }
    });
    let publisher = Raw::connect(broker.addr());
    let flooding = common::flood(&publisher, "flood", 2000);
    wait_until("the stalled WebSocket is cut off", || {
        common::stat(&broker, "slow_consumers_disconnected") == 1
    });
    flooding.join().unwrap();
    let mut publisher = publisher;
    publisher.send("PUBLISH flood after p\n");
    let _healthy = reader
        .join()
        .expect("the healthy subscriber received the message after the cut-off");
    wait_until("the cut-off subscriber's subscription is removed", || {
        broker.topic_counts() == [("flood".to_string(), 1)]
    });
}

/// A burst big enough to be sent at once (the router's `FLUSH_THRESHOLD`, 64 KiB) still
/// reaches a WebSocket subscriber as one frame per line, not as raw lines.
#[test]
fn a_big_burst_reaches_a_websocket_subscriber_as_frames() {
    let broker = common::start_web_broker();
    let mut ws = open(&broker);
    ws.send_text("SUBSCRIBE big w").unwrap();
    ws.send_text("PING").unwrap();
    assert_eq!(text(&mut ws), "PONG");
    let mut publisher = Raw::connect(broker.addr());
    let messages: Vec<String> = (0..4)
        .map(|i| format!("m{i}-{}", "x".repeat(20_000)))
        .collect();
    let burst: String = messages
        .iter()
        .map(|m| format!("PUBLISH big {m} p\n"))
        .collect();
    publisher.send(&burst);
    for message in &messages {
        let line = text(&mut ws);
        assert!(
            line.starts_with(&format!("DELIVER big {message} p ")),
            "{}",
            &line[..60.min(line.len())]
        );
    }
}

/// Stopping the broker ends WebSocket sessions and joins their threads.
#[test]
fn stop_ends_websocket_sessions() {
    let broker = common::start_web_broker();
    let mut ws = open(&broker);
    ws.send_text("SUBSCRIBE t w").unwrap();
    ws.send_text("PING").unwrap();
    assert_eq!(text(&mut ws), "PONG");
    broker.stop();
    assert!(ws.recv(TIMEOUT).is_err(), "the connection ended");
}
