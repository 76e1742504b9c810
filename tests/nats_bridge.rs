//! The NATS bridge against real `nats-server` processes: brokers that share one server or a
//! cluster see each other's messages, exactly once, with the same `DELIVER` line; NATS is
//! asked only for what local clients hold; a server that dies and comes back costs local
//! delivery nothing.
//!
//! Interest is synchronised on NATS's own view of it: its monitoring port lists the
//! subjects each connection holds (`/connz?subs=1`) and those each route brought in
//! (`/routez?subs=1`). Once a subject is listed there, a message published after it is
//! routed to it.

mod common;
mod nats;

use std::time::{Duration, Instant};

use common::{start_broker_with, stat, subscribed, wait_until, Raw};
use nats::{NatsServer, Options, RawNats};
use pubsub_lab::{BrokerHandle, Config};

/// A broker bridged to `urls`, once its bridge is connected.
fn bridged(urls: &[String]) -> BrokerHandle {
    let broker = start_broker_with(Config {
        nats: urls.to_vec(),
        ..Config::default()
    });
    wait_until("the bridge is connected", || {
        stat(&broker, "nats_connected") == 1
    });
    broker
}

fn subjects(list: &[&str]) -> Vec<String> {
    let mut list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    list.sort();
    list
}

fn wait_for_subjects(server: &NatsServer, expected: &[&str]) {
    let expected = subjects(expected);
    let mut seen = Vec::new();
    let deadline = Instant::now() + common::TIMEOUT;
    while Instant::now() < deadline {
        seen = server.subscriptions();
        if seen == expected {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nats-server holds {seen:?}, expected {expected:?}");
}

fn publish(addr: std::net::SocketAddr, line: &str) {
    let mut publisher = Raw::connect(addr);
    publisher.send(&format!("{line}\n"));
    publisher.sync();
}

#[test]
fn two_brokers_on_one_nats_server_exchange_messages_both_ways_exactly_once() {
    if !nats::installed() {
        return;
    }
    let server = NatsServer::start();
    let (a, b) = (bridged(&[server.url()]), bridged(&[server.url()]));
    // Three overlapping filters on A: NATS sends A three copies of room/1/temp.
    let mut on_a = subscribed(a.addr(), "room/+/temp", "subA");
    on_a.send("SUBSCRIBE room/# subA\nSUBSCRIBE room/1/temp subA\n");
    on_a.sync();
    let mut on_b = subscribed(b.addr(), "room/#", "subB");
    wait_for_subjects(
        &server,
        &[
            "pubsub-lab.room.*.temp",
            "pubsub-lab.room",
            "pubsub-lab.room.>",
            "pubsub-lab.room.1.temp",
            "pubsub-lab.room",
            "pubsub-lab.room.>",
        ],
    );

    publish(b.addr(), "PUBLISH room/1/temp 21 pubB");
    let local = on_b.line();
    assert!(local.starts_with("DELIVER room/1/temp 21 pubB "), "{local}");
    assert_eq!(
        on_a.line(),
        local,
        "the remote subscriber gets the very DELIVER line, time and publisher id included"
    );

    publish(a.addr(), "PUBLISH room/2/temp 19 pubA");
    let local = on_a.line();
    assert!(local.starts_with("DELIVER room/2/temp 19 pubA "), "{local}");
    assert_eq!(on_b.line(), local);

    // Had A received 21 more than once, or its own 19 back from NATS, the copies would come
    // before this, on the same connection.
    publish(b.addr(), "PUBLISH room/fence done pubB");
    assert_eq!(on_a.delivery(), "DELIVER room/fence done pubB");
    assert_eq!(on_b.delivery(), "DELIVER room/fence done pubB");
    on_a.sync();
    assert_eq!(stat(&a, "nats_received"), 2, "21 and the fence, once each");
    assert_eq!(stat(&a, "nats_forwarded"), 1);
    assert_eq!(stat(&b, "nats_forwarded"), 2);
}

#[test]
fn the_bridge_subscribes_on_nats_to_exactly_what_local_clients_hold() {
    if !nats::installed() {
        return;
    }
    let server = NatsServer::start();
    let (a, b) = (bridged(&[server.url()]), bridged(&[server.url()]));
    wait_for_subjects(&server, &[]);
    let mut first = subscribed(b.addr(), "news/#", "s1");
    wait_for_subjects(&server, &["pubsub-lab.news", "pubsub-lab.news.>"]);
    let mut second = subscribed(b.addr(), "news/#", "s2");
    let fence = subscribed(b.addr(), "fence", "s3");
    // The interest log is read in order: when `fence` is on NATS, a second news/# would be.
    wait_for_subjects(
        &server,
        &["pubsub-lab.news", "pubsub-lab.news.>", "pubsub-lab.fence"],
    );
    assert_eq!(stat(&b, "nats_subscriptions"), 3);

    first.send("UNSUBSCRIBE news/# s1\n");
    first.sync();
    drop(fence); // the last subscriber of fence leaves: its subject goes
    wait_for_subjects(&server, &["pubsub-lab.news", "pubsub-lab.news.>"]);
    second.send("QUIT\n");
    wait_for_subjects(&server, &[]);
    second.read_to_eof();

    // Nothing on B asks for quiet: NATS never sends it there.
    let mut on_b = subscribed(b.addr(), "x", "s4");
    wait_for_subjects(&server, &["pubsub-lab.x"]);
    publish(a.addr(), "PUBLISH quiet nobody-here pubA");
    publish(a.addr(), "PUBLISH x after pubA");
    assert_eq!(on_b.delivery(), "DELIVER x after pubA");
    assert_eq!(stat(&b, "nats_received"), 1, "only x reached B");
}

#[test]
fn every_mapped_character_crosses_and_plain_nats_clients_are_heard_and_checked() {
    if !nats::installed() {
        return;
    }
    let server = NatsServer::start();
    let (a, b) = (bridged(&[server.url()]), bridged(&[server.url()]));
    let topic = "v1.2/a*b/>/100%//end";
    let mut exact = subscribed(b.addr(), topic, "exact");
    let mut all = subscribed(b.addr(), "#", "all");
    wait_for_subjects(
        &server,
        &["pubsub-lab.v1%2E2.a%2Ab.%3E.100%25.%.end", "pubsub-lab.>"],
    );
    publish(a.addr(), &format!("PUBLISH {topic} hi pubA"));
    let expected = format!("DELIVER {topic} hi pubA");
    assert_eq!(exact.delivery(), expected);
    assert_eq!(all.delivery(), expected);

    // A NATS client that is no broker: no headers, so publisher id "nats" and local time.
    let mut outsider = RawNats::connect(&server);
    outsider.send(b"PUB pubsub-lab.plain 11\r\nhello world\r\n");
    // What no local client could have sent is refused: two lines, a forged id.
    outsider.send(b"PUB pubsub-lab.bad 9\r\ntwo\nlines\r\n");
    let forged = "NATS/1.0\r\nPubsub-Lab-Publisher: a b\r\n\r\n";
    outsider.send(
        format!(
            "HPUB pubsub-lab.bad {} {}\r\n{forged}x\r\n",
            forged.len(),
            forged.len() + 1
        )
        .as_bytes(),
    );
    outsider.send(b"PUB pubsub-lab.last 4\r\ndone\r\n");
    outsider.sync();
    assert_eq!(all.delivery(), "DELIVER plain hello world nats");
    assert_eq!(all.delivery(), "DELIVER last done nats");
    assert_eq!(stat(&b, "nats_refused"), 2);
}

#[test]
fn a_nats_server_killed_under_load_costs_local_delivery_nothing_and_the_bridge_comes_back() {
    if !nats::installed() {
        return;
    }
    let mut server = NatsServer::start();
    let port = server.port;
    let (a, b) = (bridged(&[server.url()]), bridged(&[server.url()]));
    let mut local = subscribed(a.addr(), "load", "local");
    let mut remote = subscribed(b.addr(), "load", "remote");
    wait_for_subjects(&server, &["pubsub-lab.load", "pubsub-lab.load"]);

    let mut publisher = Raw::connect(a.addr());
    let burst = |publisher: &mut Raw, from: usize, to: usize| {
        let lines: String = (from..to)
            .map(|i| format!("PUBLISH load m{i} pubA\n"))
            .collect();
        publisher.send(&lines);
    };
    burst(&mut publisher, 0, 500);
    server.kill();
    burst(&mut publisher, 500, 1000);
    wait_until("A sees NATS gone", || stat(&a, "nats_connected") == 0);
    burst(&mut publisher, 1000, 1100);
    publisher.sync();
    for i in 0..1100 {
        assert_eq!(local.delivery(), format!("DELIVER load m{i} pubA"));
    }
    assert!(
        stat(&a, "nats_unforwarded") >= 100,
        "the 100 published while NATS was down are counted: {}",
        stat(&a, "nats_unforwarded")
    );

    let server = NatsServer::start_with(Options {
        port: Some(port),
        name: "again".to_string(),
        ..Options::default()
    });
    for broker in [&a, &b] {
        wait_until("the bridge is back", || stat(broker, "nats_connected") == 1);
        assert_eq!(stat(broker, "nats_reconnects"), 1);
    }
    wait_for_subjects(&server, &["pubsub-lab.load", "pubsub-lab.load"]);
    publisher.send("PUBLISH load after pubA\n");
    assert_eq!(local.delivery(), "DELIVER load after pubA");
    // B got some of the first burst before the server died; after it, `after` comes.
    loop {
        let line = remote.delivery();
        if line == "DELIVER load after pubA" {
            break;
        }
        assert!(line.starts_with("DELIVER load m"), "{line}");
    }
}

#[test]
fn three_brokers_on_a_three_node_cluster_and_a_broker_that_fails_over_to_another_seed() {
    if !nats::installed() {
        return;
    }
    let mut nodes = NatsServer::cluster(3);
    // Broker a knows two seeds; it starts on node 1.
    let a = bridged(&[nodes[0].url(), nodes[1].url()]);
    let b = bridged(&[nodes[1].url()]);
    let c = bridged(&[nodes[2].url()]);
    let mut subscribers: Vec<Raw> = [&a, &b, &c]
        .iter()
        .map(|broker| subscribed(broker.addr(), "campus/#", "sub"))
        .collect();
    let both = ["pubsub-lab.campus", "pubsub-lab.campus.>"];
    for (n, node) in nodes.iter().enumerate() {
        wait_for_subjects(node, &both);
        wait_until(
            &format!("node {} hears of the other two brokers", n + 1),
            || node.routed_subscriptions().len() == 4,
        );
    }
    for (name, broker) in [("a", &a), ("b", &b), ("c", &c)] {
        publish(
            broker.addr(),
            &format!("PUBLISH campus/{name} hello pub{name}"),
        );
        let line = format!("DELIVER campus/{name} hello pub{name}");
        for subscriber in &mut subscribers {
            assert_eq!(subscriber.delivery(), line);
        }
    }

    // Node 1 dies: a moves to its other seed, node 2, and subscribes again there.
    nodes[0].kill();
    wait_until("a is reconnected", || {
        stat(&a, "nats_reconnects") == 1 && stat(&a, "nats_connected") == 1
    });
    wait_for_subjects(
        &nodes[1],
        &[
            "pubsub-lab.campus",
            "pubsub-lab.campus.>",
            "pubsub-lab.campus",
            "pubsub-lab.campus.>",
        ],
    );
    // Node 3 already sends node 2 the campus subjects (b holds them there): once node 2
    // lists a's subscriptions, a message from c reaches a.
    publish(c.addr(), "PUBLISH campus/after failover pubc");
    for subscriber in &mut subscribers {
        assert_eq!(subscriber.delivery(), "DELIVER campus/after failover pubc");
    }
}
