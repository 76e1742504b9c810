//! Lab 12 checks: the Engine.IO parser. A long-polling client `POST`s a *payload*, packets
//! joined by the record separator 0x1e, which `decode_payload` splits; each packet, and each
//! WebSocket text frame, is read by `Packet::parse` (the lab 12 regions in
//! src/web/engineio.rs). Each check follows one clause of those functions' documentation
//! and names it when it fails; the last one sends a payload to a real broker, as a
//! Socket.IO client does.
//!
//! The parser reads what the network sent: a wrong answer may panic, and a panic in the
//! broker would only close a connection without a word. So the checks call the functions
//! themselves, and turn a panic into a message that says which clause was broken.

mod common;

use std::panic::{self, AssertUnwindSafe};

use pubsub_lab::web::engineio::{decode_payload, BadPacket, Packet};
use pubsub_lab::BrokerHandle;

/// Where the work of this lab is; the failure messages point there too.
const REGION: &str = "Packet::parse and decode_payload in src/web/engineio.rs";

/// `Packet::parse(text)`, or a failure naming the clause a panic broke.
#[track_caller]
fn parse(text: &str) -> Result<Packet, BadPacket> {
    panic::catch_unwind(AssertUnwindSafe(|| Packet::parse(text))).unwrap_or_else(|_| {
        panic!(
            "Packet::parse({text:?}) panicked. Clause 1: the type is the first character (a \
             char, not a byte: text.chars(), never text[1..] or as_bytes()[0]); clause 4: \
             anything else, an empty text too, is a BadPacket, never a panic ({REGION})"
        )
    })
}

/// `decode_payload(body)`, or a failure that says it panicked.
#[track_caller]
fn decode(body: &str) -> Result<Vec<Packet>, BadPacket> {
    panic::catch_unwind(AssertUnwindSafe(|| decode_payload(body))).unwrap_or_else(|_| {
        panic!(
            "decode_payload({body:?}) panicked: a payload comes from the network, and a bad \
             one is a BadPacket, never a panic ({REGION})"
        )
    })
}

/// Clause 1: the type is the first character, `0` to `6` or `b`, and each is its packet.
#[test]
fn the_type_is_the_first_character() {
    for (text, packet) in [
        ("0{}", Packet::Open("{}".into())),
        ("1", Packet::Close),
        ("2", Packet::Ping(String::new())),
        ("3", Packet::Pong(String::new())),
        ("4hi", Packet::Message("hi".into())),
        ("5", Packet::Upgrade),
        ("6", Packet::Noop),
    ] {
        assert_eq!(
            parse(text),
            Ok(packet.clone()),
            "Packet::parse({text:?}): clause 1, the type is the first character; {text:?} \
             is {packet:?} ({REGION})"
        );
    }
    for text in ["é4", "€", "日本"] {
        assert!(
            parse(text).is_err(),
            "Packet::parse({text:?}) must be a BadPacket: clause 1, the type is the first \
             character, and {text:?} starts with no type ({REGION})"
        );
    }
}

/// Clause 2: the data is everything after the type, kept exactly as it came.
#[test]
fn the_data_is_everything_after_the_type() {
    assert_eq!(
        parse("4hello"),
        Ok(Packet::Message("hello".into())),
        "Packet::parse(\"4hello\"): clause 2, the data is everything after the type, so \
         the message is `hello`, without its type `4` ({REGION})"
    );
    assert_eq!(
        parse("2probe"),
        Ok(Packet::Ping("probe".into())),
        "Packet::parse(\"2probe\"): clause 2, the data is everything after the type: the \
         client's ping 2probe must keep its data `probe`, or the broker never answers \
         3probe and the client never upgrades to a WebSocket ({REGION})"
    );
    assert_eq!(
        parse("3probe"),
        Ok(Packet::Pong("probe".into())),
        "Packet::parse(\"3probe\"): clause 2, the data is everything after the type"
    );
    for (text, data) in [
        ("4", ""),
        ("4 two  spaces ", " two  spaces "),
        (
            "442[\"news\",{\"message\":\"é ✓\"}]",
            "42[\"news\",{\"message\":\"é ✓\"}]",
        ),
        ("4line one\nline two", "line one\nline two"),
    ] {
        assert_eq!(
            parse(text),
            Ok(Packet::Message(data.into())),
            "Packet::parse({text:?}): clause 2, the data is everything after the type, \
             kept exactly as it came: not trimmed, not cut ({REGION})"
        );
    }
}

/// Clause 3: after `b` comes base64, decoded into the message's bytes.
#[test]
fn after_b_comes_base64() {
    assert_eq!(
        parse("bAQIDBA=="),
        Ok(Packet::Binary(vec![1, 2, 3, 4])),
        "Packet::parse(\"bAQIDBA==\"): clause 3, after b comes base64: the message is the \
         decoded bytes 1 2 3 4, not the base64 text itself (base64::decode) ({REGION})"
    );
    assert_eq!(
        parse("b"),
        Ok(Packet::Binary(Vec::new())),
        "Packet::parse(\"b\"): clause 3, an empty base64 text is an empty binary message"
    );
    assert!(
        parse("b!!").is_err(),
        "Packet::parse(\"b!!\") must be a BadPacket: clause 3, after b comes base64, and \
         `!!` is not base64 ({REGION})"
    );
}

/// Clause 4: an empty text, or a first character that is no type, is a BadPacket.
#[test]
fn anything_else_is_a_bad_packet() {
    assert!(
        parse("").is_err(),
        "Packet::parse(\"\") must be a BadPacket: clause 4, an empty text has no type"
    );
    for text in ["7", "9hello", "x", "abc", " 4hi", "Bhi"] {
        let got = parse(text);
        assert!(
            got.is_err(),
            "Packet::parse({text:?}) gave {got:?}: clause 4, a packet whose first character \
             is no type is a BadPacket (the broker then closes the session), not a message \
             ({REGION})"
        );
    }
}

/// decode_payload, clause 1: packets are separated by the record separator 0x1e, never
/// by a newline, and each is parsed.
#[test]
fn packets_are_separated_by_the_record_separator() {
    assert_eq!(
        decode("4hello\x1e3\x1ebAQIDBA=="),
        Ok(vec![
            Packet::Message("hello".into()),
            Packet::Pong(String::new()),
            Packet::Binary(vec![1, 2, 3, 4]),
        ]),
        "decode_payload: clause 1, the packets are separated by the record separator \
         (0x1e, RECORD_SEPARATOR), and each is parsed with Packet::parse ({REGION})"
    );
    assert_eq!(
        decode("4one line\nand another"),
        Ok(vec![Packet::Message("one line\nand another".into())]),
        "decode_payload: clause 1, only the record separator 0x1e separates packets: a \
         newline is part of a message ({REGION})"
    );
    assert_eq!(
        decode("6"),
        Ok(vec![Packet::Noop]),
        "decode_payload: clause 1, a payload without a record separator is one packet"
    );
}

/// decode_payload, clause 2: an empty packet is bad, between two separators or at
/// either end.
#[test]
fn an_empty_packet_is_bad() {
    for body in ["4a\x1e", "\x1e4a", "4a\x1e\x1e4b", ""] {
        let got = decode(body);
        assert!(
            got.is_err(),
            "decode_payload({body:?}) gave {got:?}: clause 2, an empty packet is bad (a \
             payload starts and ends with a packet, and two separators never touch), so \
             the payload is refused ({REGION})"
        );
    }
}

/// decode_payload, clause 3: one bad packet refuses the whole payload, the packets before
/// it too.
#[test]
fn one_bad_packet_refuses_the_whole_payload() {
    for body in ["4a\x1e9\x1e4b", "4a\x1e4b\x1eb!!", "x\x1e4a"] {
        let got = decode(body);
        assert!(
            got.is_err(),
            "decode_payload({body:?}) gave {got:?}: clause 3, one bad packet refuses the \
             whole payload, the good packets before and after it too ({REGION})"
        );
    }
}

/// One Engine.IO request, on a connection of its own: the status and the body.
fn request(broker: &BrokerHandle, method: &str, query: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{method} /socket.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: lab12\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = common::RawHttp::connect(broker).ask(&request);
    (answer.status, answer.body)
}

/// A Socket.IO client that sends several packets in one `POST`, as `python-socketio`
/// does, is understood packet by packet; a payload with a bad packet closes its session.
#[test]
fn a_polling_client_sends_a_payload_of_packets() {
    let broker = common::start_web_broker();
    let (status, open) = request(&broker, "GET", "", "");
    assert_eq!(status, 200, "the handshake: {open}");
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a sid in the handshake")
        .to_string();
    let session = format!("&sid={sid}");
    let payload = "40\x1e421[\"subscribe\",{\"topic\":\"news\"}]";
    let (status, body) = request(&broker, "POST", &session, payload);
    assert_eq!(
        (status, body.as_str()),
        (200, "ok"),
        "a client POSTed {payload:?}, two packets separated by 0x1e (Socket.IO's CONNECT, \
         then a subscribe event), and the broker refused it: decode_payload, clause 1 \
         ({REGION})"
    );
    let mut answers = String::new();
    while !answers.contains("431[") {
        let (status, body) = request(&broker, "GET", &session, "");
        assert_eq!(status, 200, "a poll: {body}");
        assert!(
            !body.starts_with('6') && !body.starts_with('1'),
            "the session ended before it answered the subscribe event ({body:?}): \
             decode_payload must give both packets of {payload:?}, in order ({REGION})"
        );
        answers.push_str(&body);
    }
    assert!(
        answers.starts_with("40{\"sid\":"),
        "the connect (the first packet of the payload) must be answered first, then the \
         subscribe: {answers:?}"
    );
    let (status, body) = request(&broker, "POST", &session, "42[\"publish\"]\x1e9");
    assert_eq!(
        status, 400,
        "a payload whose second packet has no type (9) must be refused with 400, and the \
         session closed: decode_payload, clause 3, one bad packet refuses the whole \
         payload; got {status} {body:?} ({REGION})"
    );
    let (status, body) = request(&broker, "GET", &session, "");
    assert_eq!(
        (status, body.contains("Session ID unknown")),
        (400, true),
        "after a bad payload the session is closed: got {status} {body:?}"
    );
}
