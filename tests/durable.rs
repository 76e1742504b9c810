//! Durable subscriptions on the wire, as a student sees them in `nc`: `DURABLE`,
//! `MESSAGE`, `ACK`, `CANCEL`, each rule and each new `ERROR` (in memory; the log is in
//! `tests/durable_log.rs`).

mod common;

use std::time::Duration;

use common::{start_broker, start_broker_with, stat, Raw};
use pubsub_lab::{Client, Config};

/// Splits a `MESSAGE` line into its seq and the rest without the timestamp.
fn message(raw: &mut Raw) -> (u64, String) {
    let line = raw.line();
    let rest = line
        .strip_prefix("MESSAGE ")
        .unwrap_or_else(|| panic!("expected a MESSAGE line, got {line:?}"));
    let (seq, rest) = rest.split_once(' ').unwrap();
    let (rest, _time) = rest.rsplit_once(' ').unwrap();
    let (rest, _date) = rest.rsplit_once(' ').unwrap();
    (seq.parse().expect("a numeric seq"), rest.to_string())
}

fn publish(addr: std::net::SocketAddr, topic: &str, messages: &[&str]) {
    let mut publisher = Raw::connect(addr);
    for text in messages {
        publisher.send(&format!("PUBLISH {topic} {text} pub1\n"));
    }
    publisher.sync();
}

/// Messages published while nobody holds the subscription wait for it, in order.
#[test]
fn a_durable_subscription_keeps_collecting_while_nobody_holds_it() {
    let broker = start_broker();
    let mut first = Raw::connect(broker.addr());
    first.send("DURABLE orders shop1\n");
    first.expect("OK DURABLE orders 0");
    drop(first);
    common::wait_until("the first holder has gone", || {
        stat(&broker, "connections_current") == 0
    });
    publish(broker.addr(), "orders", &["one", "two  spaced", "three"]);

    let mut again = Raw::connect(broker.addr());
    again.send("DURABLE orders shop1\n");
    again.expect("OK DURABLE orders 3");
    let received: Vec<(u64, String)> = (0..3).map(|_| message(&mut again)).collect();
    let texts: Vec<&str> = received.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "orders one pub1",
            "orders two  spaced pub1",
            "orders three pub1"
        ]
    );
    assert!(
        received.windows(2).all(|w| w[0].0 < w[1].0),
        "seqs increase within a subscription: {received:?}"
    );
    again.sync();
    assert_eq!(stat(&broker, "durable_subscriptions"), 1);
}

/// The reply comes first, then the pending messages; a classic SUBSCRIBE of the same
/// topic on another connection still gets DELIVER lines only.
#[test]
fn durable_and_classic_subscribers_of_one_topic_each_get_their_own_lines() {
    let broker = start_broker();
    let mut classic = Raw::connect(broker.addr());
    classic.send("SUBSCRIBE news me\n");
    classic.sync();
    let mut durable = Raw::connect(broker.addr());
    durable.send("DURABLE news me\n");
    durable.expect("OK DURABLE news 0");
    publish(broker.addr(), "news", &["hello"]);
    assert_eq!(classic.delivery(), "DELIVER news hello pub1");
    assert_eq!(message(&mut durable).1, "news hello pub1");
}

/// A message not acknowledged is sent again on resume, byte for byte with its seq; an
/// acknowledged one never comes back.
#[test]
fn unacknowledged_messages_come_again_with_the_same_seq_and_acknowledged_ones_never() {
    let broker = start_broker();
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE orders shop1\n");
    holder.expect("OK DURABLE orders 0");
    publish(broker.addr(), "orders", &["a", "b", "c"]);
    let a = holder.line();
    let b = holder.line();
    let c = holder.line();
    let seq_of = |line: &str| line.split(' ').nth(1).unwrap().to_string();
    holder.send(&format!("ACK {}\n", seq_of(&b)));
    holder.sync();
    // The subscriber "crashes" between receipt and ACK of a and c.
    drop(holder);

    let mut again = Raw::connect(broker.addr());
    again.send("DURABLE orders shop1\n");
    again.expect("OK DURABLE orders 2");
    assert_eq!(again.line(), a, "redelivered with the same seq, unchanged");
    assert_eq!(again.line(), c);
    again.sync();
}

/// At most --max-inflight messages are outstanding; each ACK lets one more go.
#[test]
fn at_most_max_inflight_messages_wait_for_an_ack_and_the_rest_wait() {
    let broker = start_broker_with(Config {
        max_inflight: 2,
        ..Config::default()
    });
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE jobs w1\n");
    holder.expect("OK DURABLE jobs 0");
    publish(broker.addr(), "jobs", &["1", "2", "3", "4"]);
    let (first, text) = message(&mut holder);
    assert_eq!(text, "jobs 1 pub1");
    assert_eq!(message(&mut holder).1, "jobs 2 pub1");
    holder.sync(); // nothing else came: two in flight
    holder.send(&format!("ACK {first}\n"));
    assert_eq!(message(&mut holder).1, "jobs 3 pub1");
    holder.sync();
    assert_eq!(stat(&broker, "durable_held"), 3);
}

/// With no ACK within --ack-timeout, the message comes again while the subscription is
/// held.
#[test]
fn a_message_not_acknowledged_in_time_is_sent_again() {
    let broker = start_broker_with(Config {
        ack_timeout: Duration::from_millis(100),
        ..Config::default()
    });
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE jobs w1\n");
    holder.expect("OK DURABLE jobs 0");
    publish(broker.addr(), "jobs", &["slow"]);
    let first = holder.line();
    let again = holder.line(); // bounded by the read timeout
    assert_eq!(again, first);
    let seq = first.split(' ').nth(1).unwrap();
    holder.send(&format!("ACK {seq}\n"));
    holder.sync();
}

/// A second connection resuming a held subscription takes it over; the first is told
/// with one ERROR line, and can no longer acknowledge.
#[test]
fn a_newer_connection_takes_a_subscription_over_and_the_older_is_told_once() {
    let broker = start_broker();
    let mut old = Raw::connect(broker.addr());
    old.send("DURABLE orders shop1\n");
    old.expect("OK DURABLE orders 0");
    publish(broker.addr(), "orders", &["x"]);
    let (seq, _) = message(&mut old);

    let mut new = Raw::connect(broker.addr());
    new.send("DURABLE orders shop1\n");
    new.expect("OK DURABLE orders 1");
    assert_eq!(
        message(&mut new).0,
        seq,
        "what was in flight goes to the new holder"
    );
    old.expect(
        "ERROR durable subscription orders shop1 was taken over by another connection: \
         its messages go there now",
    );
    old.send(&format!("ACK {seq}\n"));
    old.expect(&format!(
        "ERROR no message {seq} is waiting for an ACK on this connection (acknowledged \
         already, or sent on a durable subscription this connection does not hold)"
    ));
    old.sync();
    publish(broker.addr(), "orders", &["y"]);
    assert_eq!(message(&mut new).1, "orders y pub1");
    old.sync(); // nothing more for the old one
}

/// Bad ACKs and bad filters get one ERROR each, and the connection carries on.
#[test]
fn bad_acks_and_filters_are_answered_with_one_error_each() {
    let broker = start_broker();
    let mut client = Raw::connect(broker.addr());
    client.send("ACK abc\n");
    client.expect(
        "ERROR 'abc' is not a seq: send ACK with the number from a MESSAGE line, as in ACK 17",
    );
    client.send("ACK 99\n");
    client.expect(
        "ERROR no message 99 is waiting for an ACK on this connection (acknowledged already, \
         or sent on a durable subscription this connection does not hold)",
    );
    client.send("ACK\n");
    client.expect("ERROR wrong number of arguments: expected ACK <seq>");
    client.send("DURABLE orders\n");
    client.expect("ERROR wrong number of arguments: expected DURABLE <filter> <subscriber_id>");
    client.send("DURABLE a/#/b me\n");
    let line = client.line();
    assert!(line.starts_with("ERROR bad topic filter: "), "{line}");
    client.send("CANCEL a/#/b me\n");
    assert!(client.line().starts_with("ERROR bad topic filter: "));
    client.sync();
    assert_eq!(stat(&broker, "durable_subscriptions"), 0);
}

/// An ACK of the same seq twice: the second is an error (the message is gone).
#[test]
fn a_message_is_acknowledged_once() {
    let broker = start_broker();
    let mut holder = Raw::connect(broker.addr());
    holder.send("VERBOSE on\n");
    holder.expect("OK VERBOSE on");
    holder.send("DURABLE t me\n");
    holder.expect("OK DURABLE t 0");
    publish(broker.addr(), "t", &["m"]);
    let (seq, _) = message(&mut holder);
    holder.send(&format!("ACK {seq}\nACK {seq}\n"));
    holder.expect(&format!("OK ACK {seq}"));
    assert!(holder
        .line()
        .starts_with(&format!("ERROR no message {seq} ")));
}

/// CANCEL ends the subscription and drops what it held; nothing is kept after it.
#[test]
fn cancel_drops_what_the_subscription_holds_and_stops_collecting() {
    let broker = start_broker();
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE orders shop1\n");
    holder.expect("OK DURABLE orders 0");
    drop(holder);
    publish(broker.addr(), "orders", &["1", "2"]);
    let mut client = Raw::connect(broker.addr());
    client.send("CANCEL orders shop1\n");
    client.expect("OK CANCEL orders 2");
    client.send("CANCEL orders shop1\n");
    client.expect("OK CANCEL orders 0");
    assert_eq!(stat(&broker, "durable_subscriptions"), 0);
    assert!(
        broker.topic_counts().is_empty(),
        "{:?}",
        broker.topic_counts()
    );
    publish(broker.addr(), "orders", &["3"]);
    client.send("DURABLE orders shop1\n");
    client.expect("OK DURABLE orders 0");
    client.sync();
}

/// Filters work as for SUBSCRIBE; one connection holding two subscriptions gets a
/// different seq for each copy of a message, so each ACK is unambiguous.
#[test]
fn seqs_are_unique_across_subscriptions_so_one_connection_can_ack_both() {
    let broker = start_broker();
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE orders/# shop1\nDURABLE orders/+/paid shop1\n");
    holder.expect("OK DURABLE orders/# 0");
    holder.expect("OK DURABLE orders/+/paid 0");
    publish(broker.addr(), "orders/7/paid", &["yes"]);
    let (a, text_a) = message(&mut holder);
    let (b, text_b) = message(&mut holder);
    assert_eq!(
        (text_a.as_str(), text_b.as_str()),
        ("orders/7/paid yes pub1", "orders/7/paid yes pub1")
    );
    assert_ne!(a, b);
    holder.send(&format!("ACK {a}\nACK {b}\n"));
    holder.sync();
    assert_eq!(stat(&broker, "durable_held"), 0);
}

/// Past --max-queued, the oldest messages are dropped and counted.
#[test]
fn a_subscription_nobody_reads_keeps_only_the_newest_max_queued() {
    let broker = start_broker_with(Config {
        max_queued: 3,
        ..Config::default()
    });
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE t me\n");
    holder.expect("OK DURABLE t 0");
    drop(holder);
    publish(broker.addr(), "t", &["1", "2", "3", "4", "5"]);
    let mut again = Raw::connect(broker.addr());
    again.send("DURABLE t me\n");
    again.expect("OK DURABLE t 3");
    for expected in ["t 3 pub1", "t 4 pub1", "t 5 pub1"] {
        assert_eq!(message(&mut again).1, expected);
    }
    assert_eq!(stat(&broker, "durable_dropped"), 2);
}

/// The client API: durable, recv_message, ack, cancel.
#[test]
fn the_client_api_resumes_acknowledges_and_cancels() {
    let broker = start_broker();
    let mut subscriber = Client::connect(broker.addr()).unwrap();
    assert_eq!(subscriber.durable("orders", "shop1").unwrap(), 0);
    let mut publisher = Client::connect(broker.addr()).unwrap();
    publisher.verbose(true).unwrap();
    assert_eq!(
        publisher
            .publish_confirmed("orders", "2 pizzas", "pub1")
            .unwrap(),
        1
    );
    let message = subscriber
        .recv_message(common::TIMEOUT)
        .unwrap()
        .expect("a message");
    assert_eq!(
        (
            message.topic.as_str(),
            message.message.as_str(),
            message.publisher_id.as_str()
        ),
        ("orders", "2 pizzas", "pub1")
    );
    subscriber.ack(message.seq).unwrap();
    subscriber.ping().unwrap();
    assert_eq!(stat(&broker, "durable_held"), 0);
    assert_eq!(subscriber.cancel("orders", "shop1").unwrap(), 0);
}

/// The broker keeps at most --max-durable durable subscriptions; resuming one is always
/// allowed, and a cancelled one makes room.
#[test]
fn at_most_max_durable_subscriptions_are_kept() {
    let broker = start_broker_with(Config {
        max_durable: 2,
        ..Config::default()
    });
    let mut client = Raw::connect(broker.addr());
    client.send("DURABLE a me\nDURABLE b me\nDURABLE c me\n");
    client.expect("OK DURABLE a 0");
    client.expect("OK DURABLE b 0");
    client.expect(
        "ERROR the broker keeps at most 2 durable subscriptions: CANCEL one you no longer \
         need, or use SUBSCRIBE",
    );
    client.send("DURABLE a me\nCANCEL b me\nDURABLE c me\n");
    client.expect("OK DURABLE a 0");
    client.expect("OK CANCEL b 0");
    client.expect("OK DURABLE c 0");
    assert_eq!(stat(&broker, "durable_subscriptions"), 2);
}
