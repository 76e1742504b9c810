//! Lab 01 checks: the `DELIVER` line. When a client publishes, every subscriber of the
//! topic receives `DELIVER <topic> <message> <publisher_id> <YYYY-MM-DD HH:MM:SS>` and a
//! `\n`. The broker builds that line in `protocol::write_delivery` (the lab 01 region in
//! src/protocol/delivery.rs). These checks call the function directly, then watch a real
//! subscriber receive the line over TCP, exactly as `nc` would show it.

mod common;
mod labcheck;

use pubsub_lab::protocol::{write_delivery, Delivery};

use labcheck::Peer;

/// Where the work of this lab is; `labcheck`'s failure messages point there too.
const REGION: &str = "protocol::write_delivery in src/protocol/delivery.rs";

/// The example from the labsheet comes out byte for byte, newline included.
#[test]
fn write_delivery_writes_the_exact_line() {
    let mut out = Vec::new();
    let (topic, message, id, time) = ("weather", "Rainy day ahead!", "pub1", "2025-03-14 10:30:00");
    write_delivery(&mut out, topic, message, id, time);
    let got = String::from_utf8_lossy(&out);
    let expected = format!("DELIVER {topic} {message} {id} {time}\n");
    assert_eq!(
        got,
        expected,
        "{REGION} must write `DELIVER <topic> <message> <publisher_id> <timestamp>` with one \
         space between the parts and a `\\n` at the end; {}",
        diagnose(&got, &expected, id, time)
    );
}

/// Names the likely mistake behind a wrong line, for the failure message.
fn diagnose(got: &str, expected: &str, id: &str, time: &str) -> &'static str {
    if got.ends_with("\r\n") {
        "this line ends with `\\r\\n`: the protocol ends every line with `\\n` alone, not `\\r\\n`"
    } else if !got.ends_with('\n') {
        "this line has no `\\n` at the end, so a subscriber never sees it end"
    } else if got.contains(&format!("{time} {id}")) {
        "the timestamp comes before the publisher id: the parts are in the wrong place; the \
         order is topic, message, publisher id, timestamp"
    } else if got.len() < expected.len() && got.split_whitespace().eq(expected.split_whitespace()) {
        "the words are right but spaces are missing: copy the message byte for byte"
    } else {
        "compare the two lines part by part"
    }
}

/// The line is added after what the buffer already holds, and a second call adds a second line.
#[test]
fn write_delivery_appends_to_the_buffer() {
    let mut out = b"earlier bytes\n".to_vec();
    write_delivery(&mut out, "t", "one", "p", "2025-03-14 10:30:00");
    write_delivery(&mut out, "t", "two", "p", "2025-03-14 10:30:01");
    let got = String::from_utf8_lossy(&out);
    let expected =
        "earlier bytes\nDELIVER t one p 2025-03-14 10:30:00\nDELIVER t two p 2025-03-14 10:30:01\n";
    let why = if !got.starts_with("earlier bytes\n") {
        format!(
            "what `out` held before the call is gone: {REGION} must append to `out` (extend \
             it), not clear it or replace it"
        )
    } else if !got.contains(" one ") {
        format!(
            "the first call's line is gone after the second call: {REGION} must append to \
             `out`, not replace what the first call wrote"
        )
    } else {
        let lines = got.strip_prefix("earlier bytes\n").unwrap_or(&got);
        let wanted = expected.strip_prefix("earlier bytes\n").unwrap_or(expected);
        format!(
            "{REGION} appends, but the lines are wrong; {}",
            diagnose(lines, wanted, "p", "2025-03-14 10:30:01")
        )
    };
    assert_eq!(got, expected, "{why}");
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
             Rainy day ahead! pub1 YYYY-MM-DD HH:MM:SS`; {}; look at {REGION}",
            if line.ends_with('\r') {
                "it ends with `\\r`, the protocol's lines end with `\\n` alone"
            } else if line.ends_with(" pub1") {
                "the timestamp comes before the publisher id: the parts are in the wrong place"
            } else {
                "the parts are topic, message, publisher id and timestamp, in that order"
            }
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
        let got = strip_timestamp(&line);
        let why = if expected.ends_with("first pub1") && got == "DELIVER news second pub1" {
            // Both publishes went into one batch: the second call to write_delivery
            // wrote over the first one's line.
            format!(
                "the first message's line never arrived, the second's did: the broker writes \
                 both lines into one buffer, so {REGION} must append to `out`, not clear or \
                 replace what it holds"
            )
        } else {
            format!(
                "each DELIVER line must end with exactly one `\\n` (not `\\r\\n`, not none): \
                 look at the end of {REGION}"
            )
        };
        assert_eq!(got, expected, "{why}");
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
    assert!(
        !line.ends_with('\r'),
        "{line:?} ends with `\\r`: each DELIVER line must end with `\\n` alone, not \
         `\\r\\n`; look at the end of {REGION}"
    );
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
