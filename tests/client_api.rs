//! The library's `Client`, as the binaries, the benchmark and student code use it.

mod common;

use std::time::Duration;

use common::{start_broker, Raw, TIMEOUT};
use pubsub_lab::{Client, Error};

#[test]
fn subscribe_publish_receive_gives_a_parsed_delivery() {
    let broker = start_broker();
    let mut sub = Client::connect(broker.addr()).unwrap();
    sub.subscribe("weather", "sub1").unwrap();
    sub.ping().unwrap();
    let mut publisher = Client::connect(broker.addr()).unwrap();
    publisher.publish("weather", "Rainy  day", "pub1").unwrap();
    let delivery = sub.recv_timeout(TIMEOUT).unwrap().expect("a delivery");
    assert_eq!(delivery.topic, "weather");
    assert_eq!(delivery.message, "Rainy  day");
    assert_eq!(delivery.publisher_id, "pub1");
    let age = chrono::Local::now().naive_local() - delivery.timestamp;
    assert!(
        age.num_seconds().abs() <= 2,
        "timestamp {} is not now",
        delivery.timestamp
    );
}

#[test]
fn recv_timeout_returns_none_when_nothing_comes() {
    let broker = start_broker();
    let mut sub = Client::connect(broker.addr()).unwrap();
    sub.subscribe("quiet", "s").unwrap();
    assert!(sub
        .recv_timeout(Duration::from_millis(50))
        .unwrap()
        .is_none());
}

#[test]
fn deliveries_arriving_during_a_ping_are_kept_for_recv() {
    let broker = start_broker();
    let mut sub = Client::connect(broker.addr()).unwrap();
    // Subscribing and publishing on one connection puts the DELIVER before the PONG.
    sub.subscribe("t", "s").unwrap();
    sub.publish("t", "early", "s").unwrap();
    sub.ping().unwrap();
    assert_eq!(sub.recv_timeout(TIMEOUT).unwrap().unwrap().message, "early");
}

#[test]
fn unsubscribe_stops_deliveries() {
    let broker = start_broker();
    let mut sub = Client::connect(broker.addr()).unwrap();
    sub.subscribe("t", "s").unwrap();
    sub.unsubscribe("t", "s").unwrap();
    sub.publish("t", "unheard", "s").unwrap();
    sub.ping().unwrap();
    assert!(sub
        .recv_timeout(Duration::from_millis(20))
        .unwrap()
        .is_none());
}

#[test]
fn topics_and_stats_are_parsed() {
    let broker = start_broker();
    let mut client = Client::connect(broker.addr()).unwrap();
    client.subscribe("b", "me").unwrap();
    client.subscribe("a", "me").unwrap();
    assert_eq!(
        client.topics().unwrap(),
        [("a".to_string(), 1), ("b".to_string(), 1)]
    );
    let stats = client.stats().unwrap();
    assert!(
        stats.contains(&("subscriptions".to_string(), 2)),
        "{stats:?}"
    );
}

#[test]
fn arguments_that_would_break_the_line_are_refused_before_sending() {
    let broker = start_broker();
    let mut client = Client::connect(broker.addr()).unwrap();
    let refused = |result: Result<(), Error>| matches!(result, Err(Error::InvalidArgument(_)));
    assert!(refused(client.subscribe("two words", "me")));
    assert!(refused(client.subscribe("t", "")));
    assert!(refused(client.publish(
        "t",
        "line\nPUBLISH t injected me",
        "me"
    )));
    assert!(refused(client.publish("t", "  ", "me")));
    assert!(refused(client.publish("t", "hi", "my id")));
    // Nothing reached the broker.
    client.ping().unwrap();
    assert_eq!(common::stat(&broker, "errors"), 0);
    assert_eq!(common::stat(&broker, "messages_published"), 0);
}

#[test]
fn a_refused_command_is_reported_with_the_brokers_reason() {
    let broker = start_broker();
    let mut client = Client::connect(broker.addr()).unwrap();
    client.subscribe(&"t".repeat(300), "me").unwrap();
    match client.recv_timeout(TIMEOUT) {
        Err(Error::Refused(reason)) => assert!(
            reason.starts_with("topic longer than 256 bytes"),
            "{reason}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    client.ping().expect("the connection is still usable");
}

#[test]
fn connecting_to_nothing_says_to_start_the_broker() {
    // Bind a port and free it again, so that nobody listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = Client::connect(addr).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Connect { .. }));
    assert_eq!(
        message,
        format!("could not connect to {addr}: connection refused. Is the broker running? Start it with: cargo run --bin broker -- --port {}", addr.port())
    );
}

#[test]
fn a_broker_that_goes_away_is_reported_as_closed() {
    let broker = start_broker();
    let mut client = Client::connect(broker.addr()).unwrap();
    client.ping().unwrap();
    broker.stop();
    assert!(matches!(client.recv_timeout(TIMEOUT), Err(Error::Closed)));
}

#[test]
fn finish_returns_once_the_broker_handled_everything() {
    let broker = start_broker();
    let mut sub = Raw::connect(broker.addr());
    sub.send("SUBSCRIBE t s\n");
    sub.sync();
    let mut publisher = Client::connect(broker.addr()).unwrap();
    for i in 0..100 {
        publisher.publish("t", &format!("m{i}"), "p").unwrap();
    }
    publisher.send_raw(b"NONSENSE\n").unwrap();
    let errors = publisher.finish(TIMEOUT).unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    // Everything was handled before finish returned, so the counter is final.
    assert_eq!(common::stat(&broker, "messages_published"), 100);
    for i in 0..100 {
        assert_eq!(sub.delivery(), format!("DELIVER t m{i} p"));
    }
}

/// With acknowledgements on, every request still gets its own answer: the `OK` lines that
/// acknowledge earlier commands are skipped, never taken for the answer to a later one.
#[test]
fn requests_stay_in_step_with_verbose_on() {
    let broker = start_broker();
    let mut client = Client::connect(broker.addr()).unwrap();
    client.verbose(true).unwrap();
    client.ping().unwrap();
    client.subscribe("t", "me").unwrap();
    assert_eq!(client.topics().unwrap(), [("t".to_string(), 1)]);
    client.publish("t", "hello", "me").unwrap();
    client.ping().unwrap();
    assert_eq!(
        client.recv_timeout(TIMEOUT).unwrap().unwrap().message,
        "hello"
    );
    client.verbose(false).unwrap();
    client.ping().unwrap();
}

/// A `VERBOSE on` sent as a raw line (as a tool or the troublemaker might) does not put
/// the client out of step either.
#[test]
fn an_acknowledgement_nobody_waits_for_does_not_break_the_next_request() {
    let broker = start_broker();
    let mut client = Client::connect(broker.addr()).unwrap();
    client.send_raw(b"VERBOSE on\n").unwrap();
    client.ping().unwrap();
    client.stats().unwrap();
    client.ping().unwrap();
}
