//! The protocol as a student sees it in `nc`: raw lines written to a socket, exact lines
//! read back. A client written for the classic broker sends nothing but these lines, so if
//! these tests pass, such a client works unchanged.

mod common;

use std::thread;

use common::{start_broker, start_broker_with, wait_until, Raw};
use pubsub_lab::Config;

/// Subscribes `raw` to `topic` and waits until the broker has handled it.
fn subscribed(addr: std::net::SocketAddr, topic: &str, id: &str) -> Raw {
    let mut raw = Raw::connect(addr);
    raw.send(&format!("SUBSCRIBE {topic} {id}\n"));
    raw.sync();
    raw
}

#[test]
fn a_publish_reaches_every_subscriber_of_its_topic_byte_exact() {
    let broker = start_broker();
    let mut subs: Vec<Raw> = (1..=3)
        .map(|i| subscribed(broker.addr(), "weather", &format!("sub{i}")))
        .collect();
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH weather Rainy day ahead! pub1\n");
    for sub in &mut subs {
        let line = sub.line();
        let (start, stamp) = line.split_at("DELIVER weather Rainy day ahead! pub1 ".len());
        assert_eq!(start, "DELIVER weather Rainy day ahead! pub1 ");
        assert!(
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").is_ok(),
            "{line}"
        );
    }
}

#[test]
fn the_timestamp_is_the_brokers_local_time_now() {
    let broker = start_broker();
    let mut sub = subscribed(broker.addr(), "t", "s");
    let before = chrono::Local::now().naive_local();
    sub.send("PUBLISH t hi s\n");
    let line = sub.line();
    let after = chrono::Local::now().naive_local();
    let stamp = &line[line.len() - "YYYY-MM-DD HH:MM:SS".len()..];
    let stamp = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").unwrap();
    // The line carries whole seconds; allow for the truncation.
    assert!(
        stamp >= before - chrono::Duration::seconds(1) && stamp <= after,
        "{line}"
    );
}

#[test]
fn subscribers_of_other_topics_receive_nothing() {
    let broker = start_broker();
    let mut news = subscribed(broker.addr(), "news", "n");
    let mut weather = subscribed(broker.addr(), "weather", "w");
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH weather sunny p\n");
    publisher.sync();
    assert_eq!(weather.delivery(), "DELIVER weather sunny p");
    // A PONG as the very next line proves no DELIVER was sent to `news`: the publisher's
    // sync above returned only after its deliveries were written.
    news.sync();
}

#[test]
fn one_publishers_messages_arrive_in_order() {
    let broker = start_broker();
    let mut sub = subscribed(broker.addr(), "seq", "s");
    let mut publisher = Raw::connect(broker.addr());
    let burst: String = (0..500).map(|i| format!("PUBLISH seq m{i} p\n")).collect();
    publisher.send(&burst);
    for i in 0..500 {
        assert_eq!(sub.delivery(), format!("DELIVER seq m{i} p"));
    }
}

#[test]
fn the_publisher_receives_its_own_message_if_subscribed() {
    let broker = start_broker();
    let mut both = subscribed(broker.addr(), "echo", "me");
    both.send("PUBLISH echo hello me\n");
    assert_eq!(both.delivery(), "DELIVER echo hello me");
}

#[test]
fn after_unsubscribe_nothing_more_arrives() {
    let broker = start_broker();
    let mut sub = subscribed(broker.addr(), "t", "s");
    sub.send("UNSUBSCRIBE t s\n");
    sub.sync();
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH t gone p\n");
    publisher.sync();
    sub.sync();
    assert!(broker.topic_counts().is_empty());
}

#[test]
fn unsubscribe_without_arguments_leaves_every_topic_and_the_connection_can_subscribe_again() {
    let broker = start_broker();
    let mut sub = Raw::connect(broker.addr());
    sub.send("VERBOSE on\nSUBSCRIBE a s\nSUBSCRIBE b s\nUNSUBSCRIBE\n");
    for reply in [
        "OK VERBOSE on",
        "OK SUBSCRIBE a",
        "OK SUBSCRIBE b",
        "OK UNSUBSCRIBE",
    ] {
        assert_eq!(sub.line(), reply);
    }
    assert!(broker.topic_counts().is_empty());
    sub.send("SUBSCRIBE a s\n");
    assert_eq!(sub.line(), "OK SUBSCRIBE a");
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH a again p\n");
    assert_eq!(sub.delivery(), "DELIVER a again p");
}

#[test]
fn unsubscribing_something_never_subscribed_is_silently_fine() {
    let broker = start_broker();
    let mut raw = Raw::connect(broker.addr());
    raw.send("UNSUBSCRIBE nothing me\n");
    raw.sync();
}

#[test]
fn subscribing_twice_on_one_connection_delivers_once() {
    let broker = start_broker();
    let mut sub = Raw::connect(broker.addr());
    sub.send("SUBSCRIBE t s\nSUBSCRIBE t s\n");
    sub.sync();
    sub.send("PUBLISH t once s\n");
    assert_eq!(sub.delivery(), "DELIVER t once s");
    sub.sync();
    assert_eq!(broker.topic_counts(), [("t".to_string(), 1)]);
}

#[test]
fn two_connections_with_the_same_id_both_receive() {
    let broker = start_broker();
    let mut first = subscribed(broker.addr(), "t", "twin");
    let mut second = subscribed(broker.addr(), "t", "twin");
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH t hello p\n");
    assert_eq!(first.delivery(), "DELIVER t hello p");
    assert_eq!(second.delivery(), "DELIVER t hello p");
    // And one of them leaving does not unsubscribe the other.
    drop(first);
    wait_until("the first twin is gone", || {
        broker.topic_counts() == [("t".to_string(), 1)]
    });
    publisher.send("PUBLISH t again p\n");
    assert_eq!(second.delivery(), "DELIVER t again p");
}

#[test]
fn a_disconnect_removes_all_of_its_subscriptions_at_once() {
    let broker = start_broker();
    let mut sub = Raw::connect(broker.addr());
    sub.send("SUBSCRIBE a s\nSUBSCRIBE b s\nSUBSCRIBE c s\n");
    sub.sync();
    assert_eq!(broker.topic_counts().len(), 3);
    drop(sub);
    wait_until("the registry is empty", || broker.topic_counts().is_empty());
    // Publishing now attempts no delivery: nothing is counted as delivered.
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH a late p\n");
    publisher.sync();
    assert_eq!(common::stat(&broker, "deliveries"), 0);
}

#[test]
fn a_command_split_over_many_writes_is_understood() {
    let broker = start_broker();
    let mut sub = Raw::connect(broker.addr());
    for piece in ["SUBS", "CRIBE we", "ather", " s1", "\n"] {
        sub.send(piece);
        // Give each piece its own TCP segment; the broker must not care either way.
        thread::yield_now();
    }
    sub.sync();
    let mut publisher = Raw::connect(broker.addr());
    for byte in "PUBLISH weather split up p\n".bytes() {
        publisher.send_bytes(&[byte]);
    }
    assert_eq!(sub.delivery(), "DELIVER weather split up p");
}

#[test]
fn many_commands_in_one_write_are_all_handled() {
    let broker = start_broker();
    let mut raw = Raw::connect(broker.addr());
    raw.send("SUBSCRIBE a me\nSUBSCRIBE b me\r\nPUBLISH a one me\nPUBLISH b two me\n");
    assert_eq!(raw.delivery(), "DELIVER a one me");
    assert_eq!(raw.delivery(), "DELIVER b two me");
}

#[test]
fn spaces_inside_a_message_are_kept_exactly() {
    let broker = start_broker();
    let mut sub = subscribed(broker.addr(), "t", "s");
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH t  two  spaces,\tone tab   and three   p\n");
    assert_eq!(
        sub.delivery(),
        "DELIVER t two  spaces,\tone tab   and three p"
    );
}

#[test]
fn runs_of_separators_and_any_case_are_accepted() {
    let broker = start_broker();
    let mut sub = Raw::connect(broker.addr());
    sub.send("subscribe \t weather   s1  \n");
    sub.sync();
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("Publish   weather hi\tp1\n");
    assert_eq!(sub.delivery(), "DELIVER weather hi p1");
}

#[test]
fn blank_lines_are_ignored() {
    let broker = start_broker();
    let mut raw = Raw::connect(broker.addr());
    raw.send("\n\r\n   \n\t\n");
    raw.sync();
}

#[test]
fn a_last_line_without_newline_is_processed_before_close() {
    let broker = start_broker();
    let mut sub = subscribed(broker.addr(), "t", "s");
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH t first p\nPUBLISH t last p");
    publisher.shutdown_write();
    assert_eq!(sub.delivery(), "DELIVER t first p");
    assert_eq!(sub.delivery(), "DELIVER t last p");
}

/// Each malformed line gets exactly one ERROR line, and the connection still works.
#[test]
fn every_kind_of_bad_line_gets_one_error_and_the_connection_carries_on() {
    let broker = start_broker_with(Config {
        max_line_bytes: 1000,
        ..Config::default()
    });
    let mut raw = Raw::connect(broker.addr());
    let cases: [(&[u8], &str); 8] = [
        (
            b"PUBLSH weather hi p\n",
            "ERROR unknown command 'PUBLSH': expected SUBSCRIBE, UNSUBSCRIBE or PUBLISH (send HELP for all commands)",
        ),
        (b"SUBSCRIBE weather\n", "ERROR wrong number of arguments: expected SUBSCRIBE <topic> <subscriber_id>"),
        (b"SUBSCRIBE a b c\n", "ERROR wrong number of arguments: expected SUBSCRIBE <topic> <subscriber_id>"),
        (b"UNSUBSCRIBE a\n", "ERROR wrong number of arguments: expected UNSUBSCRIBE <topic> <subscriber_id>"),
        (b"PUBLISH weather p\n", "ERROR wrong number of arguments: expected PUBLISH <topic> <message> <publisher_id>"),
        (b"PUBLISH\n", "ERROR wrong number of arguments: expected PUBLISH <topic> <message> <publisher_id>"),
        (b"PUBLISH t \xff\xfe p\n", "ERROR line is not valid UTF-8 text: send commands as plain text"),
        (b"\x00\x01\x02binary\n", ""),
    ];
    for (line, expected) in cases {
        raw.send_bytes(line);
        let reply = raw.line();
        if expected.is_empty() {
            assert!(reply.starts_with("ERROR unknown command"), "{reply}");
        } else {
            assert_eq!(reply, expected);
        }
        raw.sync();
    }
    let long = format!("PUBLISH t {} p\n", "x".repeat(5000));
    raw.send(&long);
    raw.expect("ERROR line longer than 1000 bytes was discarded: send shorter messages");
    raw.sync();
    assert_eq!(common::stat(&broker, "errors"), 9);
}

#[test]
fn an_overlong_line_is_discarded_and_the_next_line_is_read_as_usual() {
    let broker = start_broker_with(Config {
        max_line_bytes: 100,
        ..Config::default()
    });
    let mut raw = Raw::connect(broker.addr());
    raw.send("SUBSCRIBE t me\n");
    // A long line in pieces, with the next command in the same write as its end.
    raw.send(&"y".repeat(300));
    raw.send(&"y".repeat(300));
    raw.send("\nPUBLISH t after me\n");
    raw.expect("ERROR line longer than 100 bytes was discarded: send shorter messages");
    assert_eq!(raw.delivery(), "DELIVER t after me");
}

#[test]
fn a_classic_client_never_sees_anything_but_deliver_lines() {
    let broker = start_broker();
    let mut sub = Raw::connect(broker.addr());
    sub.send("SUBSCRIBE weather sub1\n");
    let mut publisher = Raw::connect(broker.addr());
    // The classic protocol has no acknowledgement; poll the broker's view instead.
    wait_until("sub1 is subscribed", || !broker.topic_counts().is_empty());
    publisher.send("PUBLISH weather one pub1\nPUBLISH weather two pub1\n");
    publisher.send("UNSUBSCRIBE weather pub1\n");
    assert_eq!(sub.delivery(), "DELIVER weather one pub1");
    assert_eq!(sub.delivery(), "DELIVER weather two pub1");
    publisher.shutdown_write();
    assert_eq!(
        publisher.read_to_eof(),
        "",
        "the publisher must receive nothing at all"
    );
}

#[test]
fn every_publish_of_a_burst_has_its_id_checked_not_only_the_first() {
    // The broker checks an id once per run of publishes under it (see
    // `Publisher::publish_checked`): a bad id in the middle of a burst is still refused.
    let broker = start_broker();
    let mut sub = subscribed(broker.addr(), "t", "s");
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH t one pub1\nPUBLISH t two pub\u{1}1\nPUBLISH t three pub1\n");
    let refusal = publisher.line();
    assert!(
        refusal.starts_with("ERROR publisher id contains U+0001"),
        "{refusal}"
    );
    assert!(sub.line().starts_with("DELIVER t one pub1 "));
    assert!(sub.line().starts_with("DELIVER t three pub1 "));
}
