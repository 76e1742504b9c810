//! The broker inside a program: `BrokerHandle::publish` and `BrokerHandle::subscribe` take
//! the same road as a TCP client's messages, in both directions, and an in-process
//! subscriber that falls behind is cut off like a slow TCP one.

mod common;

use common::{start_broker, start_broker_with, stat, Raw, TIMEOUT};
use pubsub_lab::protocol::ProtocolError;
use pubsub_lab::{Config, CutOff};

/// A message published by the program reaches a TCP subscriber as an ordinary `DELIVER`
/// line, with the publisher id the program gave, before `publish` returns.
#[test]
fn the_program_publishes_to_a_tcp_subscriber() {
    let broker = start_broker();
    let mut subscriber = Raw::connect(broker.addr());
    subscriber.send("SUBSCRIBE weather sub1\n");
    subscriber.sync();
    assert_eq!(
        broker
            .publish("weather", "Rainy  day ahead!", "app")
            .unwrap(),
        1
    );
    assert_eq!(
        subscriber.delivery(),
        "DELIVER weather Rainy  day ahead! app"
    );
    assert_eq!(broker.publish("nobody-listens", "hello", "app").unwrap(), 0);
    assert_eq!(stat(&broker, "messages_published"), 2);
    assert_eq!(stat(&broker, "deliveries"), 1);
}

/// A TCP client's publishes reach an in-process subscription, whole and in order.
#[test]
fn a_tcp_publisher_reaches_the_programs_subscription() {
    let broker = start_broker();
    let subscription = broker.subscribe("weather").unwrap();
    assert_eq!(broker.topic_counts(), [("weather".to_string(), 1)]);
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH weather first pub1\nPUBLISH weather second  one pub2\n");
    publisher.sync();
    let first = subscription.recv_timeout(TIMEOUT).unwrap().expect("first");
    let second = subscription.recv_timeout(TIMEOUT).unwrap().expect("second");
    assert_eq!(
        (first.topic.as_str(), first.message.as_str()),
        ("weather", "first")
    );
    assert_eq!(first.publisher_id, "pub1");
    assert_eq!(
        (second.message.as_str(), second.publisher_id.as_str()),
        ("second  one", "pub2")
    );
    let age = chrono::Local::now().naive_local() - first.timestamp;
    assert!(age.num_seconds().abs() <= 2, "stamped {}", first.timestamp);
    assert_eq!(subscription.try_recv(), Ok(None));
}

/// Dropping the subscription unsubscribes it.
#[test]
fn dropping_a_subscription_unsubscribes() {
    let broker = start_broker();
    let subscription = broker.subscribe("t").unwrap();
    assert_eq!(broker.topic_counts().len(), 1);
    drop(subscription);
    assert!(broker.topic_counts().is_empty());
    assert_eq!(broker.publish("t", "into the void", "app").unwrap(), 0);
}

/// What the line protocol's grammar cannot express is refused with a reason, not sent.
#[test]
fn text_the_line_protocol_cannot_carry_is_refused() {
    let broker = start_broker();
    let _listener = broker.subscribe("t").unwrap();
    let refused = [
        (
            ("two words", "m", "app"),
            ProtocolError::NotOneWord { what: "topic" },
        ),
        (
            ("t", "m", "my app"),
            ProtocolError::NotOneWord {
                what: "publisher id",
            },
        ),
        (
            ("t", "two\nlines", "app"),
            ProtocolError::LineBreakIn {
                what: "message",
                character: '\n',
            },
        ),
        (("t", " padded", "app"), ProtocolError::BadMessage),
        (("t", "", "app"), ProtocolError::BadMessage),
    ];
    for ((topic, message, id), error) in refused {
        assert_eq!(broker.publish(topic, message, id), Err(error));
    }
    let long_topic = "x".repeat(300);
    assert_eq!(
        broker.publish(&long_topic, "m", "app"),
        Err(ProtocolError::TopicTooLong { limit: 256 })
    );
    assert_eq!(
        broker.subscribe("a b").unwrap_err().to_string(),
        "a topic must be one word, with no spaces or line breaks"
    );
    assert_eq!(stat(&broker, "messages_published"), 0);
}

/// A subscription that falls further behind than its queue holds is cut off: it keeps what
/// it had, then reports `CutOff`, and publishers never wait for it.
#[test]
fn an_in_process_subscriber_that_falls_behind_is_cut_off() {
    let broker = start_broker_with(Config {
        mailbox_messages: 3,
        ..Config::default()
    });
    let subscription = broker.subscribe("t").unwrap();
    for n in 0..3 {
        assert_eq!(broker.publish("t", &format!("m{n}"), "app").unwrap(), 1);
    }
    assert_eq!(broker.publish("t", "one too many", "app").unwrap(), 0);
    assert_eq!(stat(&broker, "slow_consumers_disconnected"), 1);
    for n in 0..3 {
        let delivery = subscription.recv_timeout(TIMEOUT).unwrap().unwrap();
        assert_eq!(delivery.message, format!("m{n}"));
    }
    assert_eq!(subscription.try_recv(), Err(CutOff { capacity: 3 }));
    assert_eq!(broker.publish("t", "still nobody", "app").unwrap(), 0);
}
