//! kn-sock's JSON lines on the line protocol's port: a connection whose first line starts
//! with `{` speaks JSON for its whole life, and messages cross between the dialects.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{json_line, member, start_broker, start_udp_broker, subscribed, Raw, Udp};
use pubsub_lab::json::Value;
use pubsub_lab::Config;

/// A JSON connection, subscribed to `topic`; a `ping` proves the subscription is in place.
fn json_subscriber(raw: &mut Raw, topic: &str) {
    raw.send(&format!(
        "{{\"action\": \"subscribe\", \"topic\": \"{topic}\"}}\n"
    ));
    json_sync(raw);
}

/// `{"action": "ping"}` and its `{"pong": ...}`: every line before it was handled.
fn json_sync(raw: &mut Raw) {
    raw.send("{\"action\": \"ping\", \"token\": \"sync\"}\n");
    let pong = json_line(raw);
    assert_eq!(member(&pong, "pong"), "sync", "{pong:?}");
}

/// kn-sock's publisher reaches a classic subscriber: a plain `DELIVER` line, with the
/// publisher id it gave, or its address when it gave none.
#[test]
fn a_json_publisher_reaches_a_classic_subscriber() {
    let broker = start_broker();
    let mut classic = subscribed(broker.addr(), "news/technology", "sub1");
    let mut json = Raw::connect(broker.addr());
    json.send("{\"action\": \"publish\", \"topic\": \"news/technology\", \"message\": \"Rust 2.0 \\\"released\\\"\"}\n");
    json.send("{\"action\": \"publish\", \"topic\": \"news/technology\", \"message\": \"again\", \"publisher\": \"kn1\"}\n");
    let me = json.stream().local_addr().unwrap();
    assert_eq!(
        classic.delivery(),
        format!("DELIVER news/technology Rust 2.0 \"released\" json:{me}")
    );
    assert_eq!(classic.delivery(), "DELIVER news/technology again kn1");
    json_sync(&mut json); // nothing came back to the publisher before its pong
}

/// `retain` keeps a message for later subscribers of either dialect, `topics` marks it,
/// `unretain` forgets it, and a `retain` with a line break is refused as the line protocol
/// would refuse it.
#[test]
fn a_json_client_retains_and_unretains() {
    let broker = start_broker();
    let mut json = Raw::connect(broker.addr());
    json.send("{\"action\": \"retain\", \"topic\": \"home/temp\", \"message\": \"21.5C\", \"publisher\": \"kn1\"}\n");
    json.send("{\"action\": \"topics\", \"filter\": \"home/#\"}\n");
    let listed = json.line();
    assert!(
        listed.contains("{\"topic\":\"home/temp\",\"subscribers\":0,\"retained\":true}"),
        "{listed}"
    );
    let mut classic = Raw::connect(broker.addr());
    classic.send("SUBSCRIBE home/# sub1\n");
    assert_eq!(classic.delivery(), "DELIVER home/temp 21.5C kn1");
    json.send("{\"action\": \"retain\", \"topic\": \"home/temp\", \"message\": \"a\\rb\"}\n");
    let refused = json_line(&mut json);
    assert!(member(&refused, "error").contains("U+000D"), "{refused:?}");
    json.send("{\"action\": \"unretain\", \"topic\": \"home/temp\"}\n");
    json_sync(&mut json);
    let mut later = Raw::connect(broker.addr());
    later.send("SUBSCRIBE home/# later\n");
    later.sync(); // nothing kept any more
}

/// A classic publisher reaches a JSON subscriber, as one JSON object per delivery.
#[test]
fn a_classic_publisher_reaches_a_json_subscriber() {
    let broker = start_broker();
    let mut json = Raw::connect(broker.addr());
    json_subscriber(&mut json, "weather");
    let mut classic = Raw::connect(broker.addr());
    classic.send("PUBLISH weather Rainy  day ahead! pub1\nPUBLISH weather tab\there pub1\n");
    classic.sync();
    let first = json_line(&mut json);
    assert_eq!(member(&first, "topic"), "weather");
    assert_eq!(member(&first, "message"), "Rainy  day ahead!");
    assert_eq!(member(&first, "publisher"), "pub1");
    let stamp = member(&first, "timestamp");
    assert!(
        chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{stamp:?}"
    );
    assert_eq!(member(&json_line(&mut json), "message"), "tab\there");
}

/// A UDP ticker's events reach a JSON subscriber too: one road for every message.
#[test]
fn a_udp_ticker_reaches_a_json_subscriber() {
    let broker = start_udp_broker(Config::default());
    let mut json = Raw::connect(broker.addr());
    json_subscriber(&mut json, "udp");
    Udp::new(&broker).send("Event at Mon Dec  1 10:30:00 2026");
    let event = json_line(&mut json);
    assert_eq!(
        member(&event, "message"),
        "Event at Mon Dec  1 10:30:00 2026"
    );
    assert!(member(&event, "publisher").starts_with("udp:127.0.0.1:"));
}

/// Nothing is sent back unasked: kn-sock's client reads every line as a message. Bad
/// lines get `{"error": ...}` with the line protocol's own reason, and the connection
/// carries on; `"verbose": true` asks for an acknowledgement.
#[test]
fn errors_are_json_and_acknowledgements_come_only_when_asked() {
    let broker = start_broker();
    let mut json = Raw::connect(broker.addr());
    json.send("{\"action\": \"subscribe\", \"topic\": \"t\"}\n");
    json.send("{\"action\": \"publish\", \"topic\": \"elsewhere\", \"message\": \"m\"}\n");
    json_sync(&mut json);
    let cases = [
        ("{\"action\": \"dance\"}", "unknown action 'dance': expected subscribe, unsubscribe, publish, retain, unretain, ping, topics, clients, kick, stats, auth"),
        ("{\"action\": \"publish\", \"topic\": \"t\"}", "\"publish\" needs a \"message\" string"),
        ("{\"topic\": \"t\"}", "a JSON command is an object with an \"action\": subscribe, unsubscribe, publish, retain, unretain, ping, topics, clients, kick, stats, auth"),
        ("{\"action\": \"subscribe\", \"topic\": \"two words\"}", "a topic must be one word, with no spaces or line breaks"),
        ("{\"action\": \"publish\", \"topic\": \"t\", \"message\": \"a\\u2028DELIVER t forged x 2025-01-01 00:00:00\"}", "message contains U+2028 (line separator), which other programs read as a line break: send it on one line"),
        ("{nope", "not a JSON command: invalid JSON at byte 1: expected a member name in quotes"),
        ("SUBSCRIBE t classic", "not a JSON command: invalid JSON at byte 0: expected a value"),
    ];
    for (line, reason) in cases {
        json.send(&format!("{line}\n"));
        let answer = json_line(&mut json);
        assert_eq!(
            answer,
            Value::Object(vec![("error".into(), Value::String(reason.into()))]),
            "for {line}"
        );
    }
    let long = format!(
        "{{\"action\": \"publish\", \"topic\": \"t\", \"message\": \"{}\"}}\n",
        "x".repeat(70_000)
    );
    json.send(&long);
    assert_eq!(
        member(&json_line(&mut json), "error"),
        "line longer than 65536 bytes was discarded: send shorter messages"
    );
    json.send("{\"action\": \"subscribe\", \"topic\": \"u\", \"verbose\": true}\n");
    let ack = json_line(&mut json);
    assert_eq!(
        (member(&ack, "ok"), member(&ack, "topic")),
        ("subscribe".into(), "u".into())
    );
    json.send("{\"action\": \"publish\", \"topic\": \"u\", \"message\": \"to myself\", \"verbose\": true}\n");
    let delivery = json_line(&mut json);
    assert_eq!(member(&delivery, "message"), "to myself");
    let ack = json_line(&mut json);
    assert_eq!(member(&ack, "ok"), "publish");
    assert_eq!(ack.get("deliveries"), Some(&Value::Number(1.0)));
    json_sync(&mut json);
}

/// The first line decides for good: a classic client is never taken for a JSON one, and
/// a JSON connection stays JSON (a line-protocol line later is a JSON error).
#[test]
fn the_first_line_decides_the_dialect() {
    let broker = start_broker();
    let mut classic = Raw::connect(broker.addr());
    classic.send("\n  \nPING 1\n{\"action\": \"ping\"}\n");
    classic.expect("PONG 1");
    assert!(classic
        .line()
        .starts_with("ERROR unknown command '{\"action\":'"));
    let mut json = Raw::connect(broker.addr());
    json.send("\n  {\"action\": \"topics\"}\n");
    let topics = json_line(&mut json);
    assert_eq!(topics.get("topics"), Some(&Value::Array(vec![])));
    json.send("{\"action\": \"stats\"}\n");
    let stats = json_line(&mut json);
    assert!(matches!(stats.get("stats"), Some(Value::Object(counters)) if counters.len() > 5));
}

/// Unsubscribing stops deliveries to a JSON subscriber.
#[test]
fn a_json_subscriber_can_unsubscribe() {
    let broker = start_broker();
    let mut json = Raw::connect(broker.addr());
    json_subscriber(&mut json, "t");
    assert_eq!(broker.topic_counts(), [("t".to_string(), 1)]);
    json.send("{\"action\": \"unsubscribe\", \"topic\": \"t\", \"id\": \"me\"}\n");
    json_sync(&mut json);
    assert!(broker.topic_counts().is_empty());
}

/// kn-sock's own `PubSubClient` (PyPI `kn-sock` 0.3.0), unchanged, against our broker:
/// it subscribes, receives a classic publisher's message, publishes to a classic
/// subscriber, unsubscribes and then receives nothing more. `.ci/run` installs it.
#[test]
fn kn_socks_own_client_works_unchanged() {
    // kn-sock imports `requests` without declaring it.
    if !common::require_tool(
        common::Tool::Python(&["kn_sock", "requests"]),
        "pip install requests && pip install --no-deps kn-sock==0.3.0",
    ) {
        return;
    }
    let broker = start_broker();
    let mut classic = subscribed(broker.addr(), "news/classroom", "classic");
    let port = broker.addr().port();
    let script = format!(
        r#"
import sys, time
from kn_sock import PubSubClient

client = PubSubClient("127.0.0.1", {port})
client.subscribe("news/technology")
client.publish("news/classroom", "hello from kn-sock")
# Our message to ourselves proves the subscription is in place before the classic
# publisher is told to go on.
client.publish("news/technology", "ready")
first = client.recv(timeout=10)
assert first["message"] == "ready", first
print("SUBSCRIBED", flush=True)
got = client.recv(timeout=10)
assert got is not None, "no message from the classic publisher"
assert got["topic"] == "news/technology", got
print("GOT", got["message"], got["publisher"], flush=True)
client.unsubscribe("news/technology")
client.publish("news/technology", "after unsubscribe")
client.publish("news/classroom", "bye")
late = client.recv(timeout=1.5)
print("LATE", late, flush=True)
client.close()
"#
    );
    let mut python = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (CI installs it)");
    let stdout = python.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    let first = next();
    if first != "SUBSCRIBED" {
        let output = python.wait_with_output().unwrap();
        panic!(
            "kn-sock's client did not subscribe ({first:?}); stderr:\n{}\n(install it with \
             `pip install --no-deps kn-sock==0.3.0`, as .ci/run does)",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let me = classic.delivery();
    assert!(
        me.starts_with("DELIVER news/classroom hello from kn-sock json:127.0.0.1:"),
        "{me}"
    );
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH news/technology Rust 2.0 released classic-pub\n");
    publisher.sync();
    assert_eq!(next(), "GOT Rust 2.0 released classic-pub");
    // After its unsubscribe, its own publish to the topic reaches nobody, and the
    // "bye" that follows it proves the unsubscribe was handled.
    assert!(classic
        .delivery()
        .starts_with("DELIVER news/classroom bye json:"));
    assert_eq!(next(), "LATE None");
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(broker
        .topic_counts()
        .iter()
        .all(|(topic, _)| topic != "news/technology"));
    let _ = std::io::stdout().flush();
}
