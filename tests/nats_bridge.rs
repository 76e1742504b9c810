//! The NATS bridge against real `nats-server` processes: brokers that share one server or a
//! cluster see each other's messages, exactly once, with the same `DELIVER` line; NATS is
//! asked only for what local clients hold; a server that dies and comes back costs local
//! delivery nothing; a broker given one node of a cluster learns the others, and when its
//! node dies moves to one of them within milliseconds.
//!
//! Interest is synchronised on NATS's own view of it: its monitoring port lists the
//! subjects each connection holds (`/connz?subs=1`) and those each route brought in
//! (`/routez?subs=1`). Once a subject is listed there, a message published after it is
//! routed to it.

mod common;
mod nats;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{start_broker_with, stat, subscribed, wait_until, Raw};
use nats::{NatsServer, Options, RawNats};
use pubsub_lab::nats::pool::MIN_BACKOFF;
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
    // A writer counts a message forwarded after its write returned, which may be after the
    // other broker delivered it.
    wait_until("a counts 19 forwarded", || stat(&a, "nats_forwarded") == 1);
    wait_until("b counts 21 and the fence forwarded", || {
        stat(&b, "nats_forwarded") == 2
    });
    assert_eq!(stat(&a, "nats_cluster_size"), 1, "a server alone");
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
fn three_brokers_on_a_three_node_cluster_and_a_broker_that_fails_over_when_its_node_dies() {
    if !nats::installed() {
        return;
    }
    let mut nodes = NatsServer::cluster(3);
    // Broker a knows two seeds; it starts on node 1.
    let a = bridged(&[nodes[0].url(), nodes[1].url()]);
    let b = bridged(&[nodes[1].url()]);
    let c = bridged(&[nodes[2].url()]);
    for broker in [&a, &b, &c] {
        wait_until("the broker hears of three nodes", || {
            stat(broker, "nats_cluster_size") == 3
        });
    }
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

    // Node 1 dies: a moves to node 2 (its other seed) or node 3 (which the cluster
    // announced), and subscribes again there, beside the broker already on that node.
    nodes[0].kill();
    wait_until("a is reconnected", || {
        stat(&a, "nats_reconnects") == 1 && stat(&a, "nats_connected") == 1
    });
    // The nodes that stayed told their clients, in a new INFO, that the cluster shrank.
    for broker in [&a, &b, &c] {
        wait_until("the broker hears that two nodes are left", || {
            stat(broker, "nats_cluster_size") == 2
        });
    }
    wait_until("a's node lists a's subscriptions", || {
        nodes[1..]
            .iter()
            .any(|node| node.subscriptions().len() == 2 * both.len())
    });
    // The other node already sends a's node the campus subjects (its broker holds them
    // there): once a's node lists a's subscriptions, a message from c reaches a.
    publish(c.addr(), "PUBLISH campus/after failover pubc");
    for subscriber in &mut subscribers {
        assert_eq!(subscriber.delivery(), "DELIVER campus/after failover pubc");
    }
}

/// The paced stream of the failover tests: one message every 2 ms, each carrying its number.
const RATE_PER_SECOND: u64 = 500;
const STREAM_LENGTH: u64 = 2_000;
/// The node dies once the subscriber has message 500 (a second into the stream).
const KILL_AFTER: u64 = 500;

/// Publishes `beat <n>` for n = 0, 1, … `STREAM_LENGTH - 1` to the broker at `addr`, at
/// [`RATE_PER_SECOND`] (each message on its own schedule, so that a thread that was late
/// catches up and the rate stays steady), then `beat end`.
fn paced_stream(addr: std::net::SocketAddr) -> JoinHandle<()> {
    let mut publisher = Raw::connect(addr);
    thread::spawn(move || {
        let start = Instant::now();
        for n in 0..STREAM_LENGTH {
            let due = start + Duration::from_micros(n * 1_000_000 / RATE_PER_SECOND);
            if let Some(early) = due.checked_duration_since(Instant::now()) {
                thread::sleep(early);
            }
            publisher.send(&format!("PUBLISH beat {n} pub\n"));
        }
        publisher.send("PUBLISH beat end pub\n");
        publisher.sync();
    })
}

/// Reads the stream on `subscriber` up to `beat end`, calling `kill` once message
/// [`KILL_AFTER`] is in. Returns how many messages never came, and the longest run of them.
/// A bridge that never finds another node fails it here: no line comes within the read
/// timeout.
fn missing_from_stream(subscriber: &mut Raw, mut kill: impl FnMut()) -> (u64, u64) {
    let (mut next, mut missing, mut longest_gap) = (0, 0, 0);
    let mut killed = false;
    loop {
        let line = subscriber.delivery();
        let body = line
            .strip_prefix("DELIVER beat ")
            .and_then(|rest| rest.strip_suffix(" pub"))
            .unwrap_or_else(|| panic!("not the stream: {line}"));
        if body == "end" {
            break;
        }
        let n: u64 = body.parse().unwrap();
        assert!(
            n >= next,
            "message {n} after message {}: out of order",
            next - 1
        );
        missing += n - next;
        longest_gap = longest_gap.max(n - next);
        next = n + 1;
        if n >= KILL_AFTER && !killed {
            kill();
            killed = true;
        }
    }
    assert!(
        killed,
        "the stream ended before message {KILL_AFTER} arrived"
    );
    missing += STREAM_LENGTH - next;
    (missing, longest_gap)
}

/// Brokers `publishing` on node 1 and `subscribing` on node 2 of a three-node cluster, each
/// given only its own node, knowing the cluster from `connect_urls`, and a subscriber to
/// `beat` on `subscribing` whose interest has reached node 1.
struct OneSeedEach {
    nodes: Vec<NatsServer>,
    publishing: BrokerHandle,
    subscribing: BrokerHandle,
    subscriber: Raw,
}

fn one_seed_each() -> OneSeedEach {
    let nodes = NatsServer::cluster(3);
    let publishing = bridged(&[nodes[0].url()]);
    let subscribing = bridged(&[nodes[1].url()]);
    for broker in [&publishing, &subscribing] {
        wait_until("the broker knows the three nodes from its one seed", || {
            stat(broker, "nats_cluster_size") == 3
        });
    }
    let subscriber = subscribed(subscribing.addr(), "beat", "sub");
    wait_until("node 1 hears of the subscription on node 2", || {
        nodes[0].routed_subscriptions() == ["pubsub-lab.beat"]
    });
    OneSeedEach {
        nodes,
        publishing,
        subscribing,
        subscriber,
    }
}

/// What the stream lost, as messages and as time, checked against the promise: at most a
/// second of messages.
fn assert_at_most_a_second_lost(what: &str, (missing, longest_gap): (u64, u64)) {
    let lost_ms = missing * 1000 / RATE_PER_SECOND;
    eprintln!(
        "{what}: {missing} of {STREAM_LENGTH} messages lost ({lost_ms} ms of the stream), \
         longest gap {longest_gap}"
    );
    assert!(
        missing <= RATE_PER_SECOND,
        "{what}: {missing} messages lost, {lost_ms} ms of a stream at {RATE_PER_SECOND}/s: \
         more than a second"
    );
}

#[test]
fn one_seed_is_enough_when_the_publishers_node_dies_the_broker_moves_to_an_announced_one() {
    if !nats::installed() {
        return;
    }
    let mut cluster = one_seed_each();
    let stream = paced_stream(cluster.publishing.addr());
    let nodes = &mut cluster.nodes;
    let lost = missing_from_stream(&mut cluster.subscriber, || nodes[0].kill());
    stream.join().unwrap();
    // Its only seed is dead: the node it is on now, it learned from the cluster.
    assert_eq!(stat(&cluster.publishing, "nats_connected"), 1);
    assert_eq!(stat(&cluster.publishing, "nats_reconnects"), 1);
    assert_eq!(stat(&cluster.subscribing, "nats_reconnects"), 0);
    assert_at_most_a_second_lost("publisher's node killed", lost);
    assert!(
        stat(&cluster.publishing, "nats_unforwarded") <= lost.0,
        "what the bridge could not forward is part of what was lost"
    );
}

#[test]
fn one_seed_is_enough_when_the_subscribers_node_dies_the_broker_subscribes_on_another() {
    if !nats::installed() {
        return;
    }
    let mut cluster = one_seed_each();
    let stream = paced_stream(cluster.publishing.addr());
    let nodes = &mut cluster.nodes;
    let lost = missing_from_stream(&mut cluster.subscriber, || nodes[1].kill());
    stream.join().unwrap();
    assert_eq!(stat(&cluster.subscribing, "nats_connected"), 1);
    assert_eq!(stat(&cluster.subscribing, "nats_reconnects"), 1);
    assert_eq!(stat(&cluster.publishing, "nats_reconnects"), 0);
    assert_at_most_a_second_lost("subscriber's node killed", lost);
}

/// Plays a NATS server that takes one client's handshake (`INFO` out, up to `PING` in,
/// `PONG` out) and hangs up at once; returns when the handshake began.
fn handshake_and_hang_up(listener: &TcpListener) -> Instant {
    let mut accepted: Option<TcpStream> = None;
    wait_until("the bridge connects", || match listener.accept() {
        Ok((socket, _)) => {
            accepted = Some(socket);
            true
        }
        Err(error) if error.kind() == ErrorKind::WouldBlock => false,
        Err(error) => panic!("accept: {error}"),
    });
    let began = Instant::now();
    let mut socket = accepted.unwrap();
    socket.set_nonblocking(false).unwrap();
    socket.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    socket
        .write_all(b"INFO {\"server_id\":\"flaky\",\"version\":\"2.9.10\",\"headers\":true}\r\n")
        .unwrap();
    let mut seen = Vec::new();
    while !seen.windows(6).any(|window| window == b"PING\r\n") {
        let mut chunk = [0; 1024];
        let read = socket
            .read(&mut chunk)
            .expect("the bridge's CONNECT and PING");
        assert!(read > 0, "the bridge hung up during its handshake");
        seen.extend_from_slice(&chunk[..read]);
    }
    socket.write_all(b"PONG\r\n").unwrap();
    began
}

/// No nats-server hangs up on a client right after accepting it on purpose (one shutting
/// down comes close), so a listener on port 0 plays that server. Each such connection
/// counts as a failed try: four handshakes take at least the three backoff waits between
/// them (half of 100, 200 and 400 ms at the least, with jitter), not a tight loop.
#[test]
fn a_server_that_hangs_up_after_every_handshake_is_retried_with_backoff() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let broker = start_broker_with(Config {
        nats: vec![format!("nats://{}", listener.local_addr().unwrap())],
        ..Config::default()
    });
    let first = handshake_and_hang_up(&listener);
    for _ in 0..3 {
        handshake_and_hang_up(&listener);
    }
    let fourth = first.elapsed();
    // The least the three waits can be, less the polling of `wait_until` (5 ms each).
    let least = MIN_BACKOFF * 7 / 2 - Duration::from_millis(20);
    assert!(
        fourth >= least,
        "four handshakes within {fourth:?}: the bridge reconnected without backing off"
    );
    wait_until("the bridge counts its reconnections", || {
        stat(&broker, "nats_reconnects") == 3
    });
}
