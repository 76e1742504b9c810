//! Lab 01 checks: the `DELIVER` line. When a client publishes, every subscriber of the
//! topic receives `DELIVER <topic> <message> <publisher_id> <YYYY-MM-DD HH:MM:SS>` and a
//! `\n`. The broker builds that line in `protocol::write_delivery` (the lab 01 region in
//! src/protocol.rs). These checks call the function directly, then watch a real
//! subscriber receive the line over TCP, exactly as `nc` would show it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use pubsub_lab::protocol::{write_delivery, Delivery};
use pubsub_lab::BrokerHandle;

/// How long a check waits for any one line before it fails.
const WAIT: Duration = Duration::from_secs(5);

/// Where the work of this lab is.
const REGION: &str = "protocol::write_delivery in src/protocol.rs";

/// The example from the labsheet comes out byte for byte, newline included.
#[test]
fn write_delivery_writes_the_exact_line() {
    let mut out = Vec::new();
    write_delivery(
        &mut out,
        "weather",
        "Rainy day ahead!",
        "pub1",
        "2025-03-14 10:30:00",
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "DELIVER weather Rainy day ahead! pub1 2025-03-14 10:30:00\n",
        "{REGION} must write `DELIVER <topic> <message> <publisher_id> <timestamp>` with one \
         space between the parts and a `\\n` at the end"
    );
}

/// The line is added after what the buffer already holds, and a second call adds a second line.
#[test]
fn write_delivery_appends_to_the_buffer() {
    let mut out = b"earlier bytes\n".to_vec();
    write_delivery(&mut out, "t", "one", "p", "2025-03-14 10:30:00");
    write_delivery(&mut out, "t", "two", "p", "2025-03-14 10:30:01");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "earlier bytes\nDELIVER t one p 2025-03-14 10:30:00\nDELIVER t two p 2025-03-14 10:30:01\n",
        "{REGION} must append to `out` (extend it), not replace what is already there"
    );
}

/// A subscriber receives the line over TCP, and the subscriber program can read it back.
#[test]
fn a_subscriber_receives_the_deliver_line() {
    let broker = common::start_broker();
    let mut sub = Peer::subscribed(&broker, "sub1", "weather");
    let mut publisher = Peer::connect(&broker, "pub1");
    publisher.send("PUBLISH weather Rainy day ahead! pub1\n");
    let line = sub.line("the DELIVER line of pub1's message");
    let delivery = Delivery::parse(&line).unwrap_or_else(|| {
        panic!(
            "sub1 received {line:?}, which is not a DELIVER line: expected `DELIVER weather \
             Rainy day ahead! pub1 YYYY-MM-DD HH:MM:SS`; look at {REGION}"
        )
    });
    assert_eq!(
        (
            delivery.topic.as_str(),
            delivery.message.as_str(),
            delivery.publisher_id.as_str()
        ),
        ("weather", "Rainy day ahead!", "pub1"),
        "sub1 received {line:?}: the parts are in the wrong place; the order is topic, \
         message, publisher id, timestamp"
    );
}

/// Extra spaces and tabs inside a message reach the subscriber unchanged.
#[test]
fn the_message_keeps_its_inner_spacing() {
    let broker = common::start_broker();
    let mut sub = Peer::subscribed(&broker, "sub1", "weather");
    let mut publisher = Peer::connect(&broker, "pub1");
    publisher.send("PUBLISH weather   Rainy  day\tahead!   pub1\n");
    let line = sub.line("the DELIVER line of pub1's message");
    let without_time = strip_timestamp(&line);
    assert_eq!(
        without_time, "DELIVER weather Rainy  day\tahead! pub1",
        "the message is everything between the topic and the publisher id, byte for byte: \
         {REGION} must copy it as it is (do not split it into words and join them again)"
    );
}

/// Two publishes give two separate lines, and nothing else follows them.
#[test]
fn each_delivery_is_one_line() {
    let broker = common::start_broker();
    let mut sub = Peer::subscribed(&broker, "sub1", "news");
    let mut publisher = Peer::connect(&broker, "pub1");
    publisher.send("PUBLISH news first pub1\nPUBLISH news second pub1\n");
    for expected in ["DELIVER news first pub1", "DELIVER news second pub1"] {
        let line = sub.line("a DELIVER line for each of pub1's two messages");
        assert_eq!(
            strip_timestamp(&line),
            expected,
            "each DELIVER line must end with exactly one `\\n` (not `\\r\\n`, not none): \
             look at the end of {REGION}"
        );
    }
    sub.send("PING after\n");
    let line = sub.line("the PONG after the two deliveries");
    assert_eq!(
        line, "PONG after",
        "after the two DELIVER lines the broker sent something else; does {REGION} write \
         an extra line?"
    );
}

/// The line without its last two tokens (the timestamp), after checking their shape.
fn strip_timestamp(line: &str) -> &str {
    let parsed = line.rsplitn(3, ' ').collect::<Vec<_>>();
    let [time, date, rest] = parsed[..] else {
        panic!("{line:?} is too short to end with a `YYYY-MM-DD HH:MM:SS` timestamp");
    };
    let stamp = format!("{date} {time}");
    assert!(
        chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{line:?} should end with a timestamp like `2025-03-14 10:30:00`, but ends with \
         {stamp:?}; the timestamp is the last part of the line, after the publisher id"
    );
    rest
}

/// One client of the broker, reading lines with a time limit so a missing line fails
/// the check instead of hanging it.
struct Peer {
    name: &'static str,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Peer {
    fn connect(broker: &BrokerHandle, name: &'static str) -> Peer {
        let writer = TcpStream::connect(broker.addr()).expect("connect to the broker");
        writer
            .set_read_timeout(Some(WAIT))
            .expect("set a read timeout");
        let reader = BufReader::new(writer.try_clone().expect("clone the socket"));
        Peer {
            name,
            writer,
            reader,
        }
    }

    /// Connects and subscribes to `topic`; the PONG proves the subscription is in place.
    fn subscribed(broker: &BrokerHandle, name: &'static str, topic: &str) -> Peer {
        let mut peer = Peer::connect(broker, name);
        peer.send(&format!("SUBSCRIBE {topic} {name}\nPING ready\n"));
        let line = peer.line("the PONG after SUBSCRIBE");
        assert_eq!(line, "PONG ready", "{name} subscribed and sent PING");
        peer
    }

    fn send(&mut self, text: &str) {
        if let Err(error) = self.writer.write_all(text.as_bytes()) {
            panic!(
                "{} could not send {text:?}: {error}. The broker closed the connection; \
                 did it panic? (look for a `client-N` thread panic)",
                self.name
            );
        }
    }

    /// Reads one line; `waiting_for` says what was expected, for the failure message.
    fn line(&mut self, waiting_for: &str) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!(
                "{} waited for {waiting_for}, but the broker closed the connection; did it \
                 panic? (look for a `client-N` thread panic)",
                self.name
            ),
            Ok(_) => line.strip_suffix('\n').unwrap_or(&line).to_string(),
            Err(_) => panic!(
                "{} waited {WAIT:?} for {waiting_for}, but no line came{}; look at {REGION}",
                self.name,
                if line.is_empty() {
                    String::new()
                } else {
                    format!(" (only {line:?}, without its `\\n`)")
                }
            ),
        }
    }
}
