//! UDP, on the wire: the classroom tutorial's ticker, protocol lines in datagrams,
//! subscriptions that are leases, and what is dropped and counted.

mod common;

use std::time::{Duration, Instant};

use common::{start_broker, start_udp_broker, stat, subscribed, wait_until, Raw, Udp, TIMEOUT};
use pubsub_lab::Config;

/// The tutorial's exact datagram (Python's `f"Event at {time.ctime()}"`, no line end)
/// reaches a TCP subscriber of `udp`, whole, from `udp:<ip>:<port>`.
#[test]
fn the_tutorials_ticker_reaches_a_tcp_subscriber() {
    let broker = start_udp_broker(Config::default());
    let mut subscriber = subscribed(broker.addr(), "udp", "sub1");
    let ticker = Udp::new(&broker);
    ticker.send("Event at Mon Dec  1 10:30:00 2026");
    assert_eq!(
        subscriber.delivery(),
        format!(
            "DELIVER udp Event at Mon Dec  1 10:30:00 2026 udp:{}",
            ticker.addr()
        )
    );
    // With a line end, as `echo ... | nc -u` sends it, it is the same message.
    ticker.send("Event at Mon Dec  1 10:30:02 2026\n");
    assert_eq!(
        subscriber.delivery(),
        format!(
            "DELIVER udp Event at Mon Dec  1 10:30:02 2026 udp:{}",
            ticker.addr()
        )
    );
    // Two events, and the ticker's request for a cookie (see `Udp::new`).
    assert_eq!(stat(&broker, "udp_datagrams_in"), 3);
}

/// `--udp-topic` moves the tutorial's events elsewhere.
#[test]
fn events_go_to_the_udp_topic() {
    let broker = start_udp_broker(Config {
        udp_topic: "ticks".into(),
        ..Config::default()
    });
    let mut subscriber = subscribed(broker.addr(), "ticks", "sub1");
    Udp::new(&broker).send("tick");
    assert!(subscriber.delivery().starts_with("DELIVER ticks tick udp:"));
}

/// A datagram of protocol lines is executed line by line, as on TCP; a bad line gets its
/// `ERROR` datagram and the lines after it still run.
#[test]
fn a_datagram_of_lines_is_executed_like_tcp_lines() {
    let broker = start_udp_broker(Config::default());
    let mut subscriber = subscribed(broker.addr(), "weather", "sub1");
    let client = Udp::new(&broker);
    client.send(
        "PUBLISH weather Rainy  day pub1\nPUBLSH weather oops pub1\r\nPUBLISH weather later pub1\n",
    );
    assert_eq!(subscriber.delivery(), "DELIVER weather Rainy  day pub1");
    assert_eq!(subscriber.delivery(), "DELIVER weather later pub1");
    assert_eq!(
        client.sync(),
        ["ERROR unknown command 'PUBLSH': expected SUBSCRIBE, UNSUBSCRIBE or PUBLISH (send HELP for all commands)\n"]
    );
    // What needs a connection is refused, saying where to send it.
    client.send("STATS\nQUIT");
    assert_eq!(
        client.sync(),
        [
            "ERROR STATS is not served over UDP, which has no connections: send it on the TCP port\n",
            "ERROR QUIT is not served over UDP, which has no connections: send it on the TCP port\n"
        ]
    );
    assert_eq!(stat(&broker, "errors"), 3);
}

/// `SUBSCRIBE` over UDP subscribes the sender's address: each delivery is one datagram
/// per `DELIVER` line, even for a burst published in one TCP write.
#[test]
fn a_udp_subscriber_gets_a_datagram_per_delivery() {
    let broker = start_udp_broker(Config::default());
    let listener = Udp::new(&broker);
    listener.send("SUBSCRIBE news ear\n");
    assert!(
        listener.sync().is_empty(),
        "SUBSCRIBE is answered by nothing"
    );
    assert_eq!(broker.topic_counts(), [("news".to_string(), 1)]);
    assert_eq!(stat(&broker, "udp_subscribers"), 1);
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH news one pub1\nPUBLISH news two pub1\nPUBLISH news three pub1\n");
    publisher.sync();
    for word in ["one", "two", "three"] {
        let datagram = listener.recv();
        assert!(
            datagram.starts_with(&format!("DELIVER news {word} pub1 ")) && datagram.ends_with('\n'),
            "{datagram:?}"
        );
        assert_eq!(datagram.matches('\n').count(), 1, "one line per datagram");
    }
    // The program's own publishes take the same road.
    broker.publish("news", "four", "app").unwrap();
    assert!(listener.recv().starts_with("DELIVER news four app "));
    // UNSUBSCRIBE of its last topic ends the lease.
    listener.send("UNSUBSCRIBE news ear\n");
    listener.sync();
    assert!(broker.topic_counts().is_empty());
    assert_eq!(stat(&broker, "udp_subscribers"), 0);
    // UNSUBSCRIBE with no arguments leaves every topic, and so ends the lease.
    listener.send("SUBSCRIBE a ear\nSUBSCRIBE b ear\n");
    listener.sync();
    assert_eq!(stat(&broker, "udp_subscribers"), 1);
    listener.send("UNSUBSCRIBE\n");
    listener.sync();
    assert!(broker.topic_counts().is_empty());
    assert_eq!(stat(&broker, "udp_subscribers"), 0);
}

/// A lease that is not renewed ends: the address leaves every topic and gets nothing more.
#[test]
fn an_expired_lease_is_removed() {
    let broker = start_udp_broker(Config {
        udp_lease: Duration::from_millis(300),
        ..Config::default()
    });
    let listener = Udp::new(&broker);
    listener.send("SUBSCRIBE a ear\nSUBSCRIBE b ear\n");
    listener.sync();
    assert_eq!(broker.topic_counts().len(), 2);
    wait_until("the lease has expired", || broker.topic_counts().is_empty());
    assert_eq!(stat(&broker, "udp_subscribers"), 0);
    assert_eq!(broker.publish("a", "anyone?", "app").unwrap(), 0);
    assert_eq!(listener.try_recv(Duration::from_millis(200)), None);
}

/// `PING`, or the same `SUBSCRIBE` again, renews the lease: a subscriber that keeps
/// renewing stays for many leases' time; once it stops, its lease ends.
#[test]
fn a_lease_is_renewed_by_ping_or_by_subscribing_again() {
    let lease = Duration::from_millis(1500);
    let broker = start_udp_broker(Config {
        udp_lease: lease,
        ..Config::default()
    });
    let pinger = Udp::new(&broker);
    let resubscriber = Udp::new(&broker);
    pinger.send("SUBSCRIBE t pinger\n");
    resubscriber.send("SUBSCRIBE t again\n");
    pinger.sync();
    resubscriber.sync();
    let started = Instant::now();
    while started.elapsed() < 2 * lease {
        std::thread::sleep(Duration::from_millis(200));
        pinger.sync();
        resubscriber.send("SUBSCRIBE t again\n");
    }
    assert_eq!(
        broker.topic_counts(),
        [("t".to_string(), 2)],
        "both renewed for twice the lease, so both are still subscribed"
    );
    assert_eq!(broker.publish("t", "still there", "app").unwrap(), 2);
    assert!(pinger.recv().starts_with("DELIVER t still there app"));
    wait_until("both leases have expired", || {
        broker.topic_counts().is_empty()
    });
}

/// A `DELIVER` line too big for a datagram is dropped and counted; the next one is sent.
#[test]
fn a_line_too_big_for_a_datagram_is_dropped_and_counted() {
    let broker = start_udp_broker(Config::default());
    let listener = Udp::new(&broker);
    listener.send("SUBSCRIBE big ear\n");
    listener.sync();
    // The COOKIE, then the PONG of the sync: each counted just after it is sent.
    wait_until("the COOKIE and the PONG are counted", || {
        stat(&broker, "udp_datagrams_out") == 2
    });
    let huge = "x".repeat(65_500);
    let mut publisher = Raw::connect(broker.addr());
    publisher.send(&format!(
        "PUBLISH big {huge} pub1\nPUBLISH big small pub1\n"
    ));
    publisher.sync();
    assert!(listener.recv().starts_with("DELIVER big small pub1 "));
    assert_eq!(stat(&broker, "udp_datagrams_dropped"), 1);
    wait_until("the small delivery is counted", || {
        stat(&broker, "udp_datagrams_out") == 3
    });
}

/// `--udp-max-subscribers` caps the addresses holding a lease; the next one is told why,
/// and an address that already holds one may add topics.
#[test]
fn the_number_of_udp_subscribers_is_capped() {
    let broker = start_udp_broker(Config {
        udp_max_subscribers: 2,
        ..Config::default()
    });
    let clients: Vec<Udp> = (0..3).map(|_| Udp::new(&broker)).collect();
    for client in &clients[..2] {
        client.send("SUBSCRIBE t ear\n");
        assert!(client.sync().is_empty());
    }
    clients[2].send("SUBSCRIBE t ear\n");
    assert_eq!(
        clients[2].sync(),
        ["ERROR too many UDP subscribers (limit 2): subscribe over TCP, or try later\n"]
    );
    clients[0].send("SUBSCRIBE u ear\n");
    assert!(clients[0].sync().is_empty());
    assert_eq!(
        broker.topic_counts(),
        [("t".to_string(), 2), ("u".to_string(), 1)]
    );
}

/// STATS counts datagrams in and out; a broker without UDP lists no UDP counters at all,
/// so its `STATS` is what it always was.
#[test]
fn stats_count_datagrams_and_only_when_udp_is_on() {
    let broker = start_udp_broker(Config::default());
    let client = Udp::new(&broker);
    client.send("PING a");
    assert_eq!(client.recv(), "PONG a\n");
    client.send("hello");
    client.sync();
    // Each datagram is counted just after it is sent: the COOKIE and two PONGs.
    wait_until("both PONGs are counted", || {
        stat(&broker, "udp_datagrams_out") == 3
    });
    let mut observer = Raw::connect(broker.addr());
    observer.send("STATS\n");
    let mut lines = Vec::new();
    loop {
        let line = observer.line();
        if line == "END STATS" {
            break;
        }
        lines.push(line);
    }
    assert!(
        lines.contains(&"STATS udp_datagrams_in 4".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"STATS udp_datagrams_out 3".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"STATS udp_datagrams_dropped 0".to_string()));

    let tcp_only = start_broker();
    assert!(tcp_only
        .stats()
        .iter()
        .all(|(name, _)| !name.starts_with("udp")));
    assert_eq!(tcp_only.udp_addr(), None);
}

/// A datagram that cannot be a message is answered with the line protocol's reason.
#[test]
fn a_datagram_that_cannot_be_published_is_answered() {
    let broker = start_udp_broker(Config::default());
    let client = Udp::new(&broker);
    client.send_bytes(b"\xff\xfe binary");
    assert_eq!(
        client.sync(),
        ["ERROR line is not valid UTF-8 text: send commands as plain text\n"]
    );
    client.send("two\nlines");
    assert_eq!(client.sync().len(), 1);
    assert_eq!(stat(&broker, "messages_published"), 0);
    // Every wait here is bounded: the broker still answers.
    let started = Instant::now();
    client.send("PING z");
    assert_eq!(client.recv(), "PONG z\n");
    assert!(started.elapsed() < TIMEOUT);
}

/// A flood of bad datagrams is not answered datagram for datagram: over UDP the answer
/// goes to whatever address the sender claimed, so answers are kept to a budget per
/// second, and the rest are counted as dropped.
#[test]
fn a_flood_of_bad_datagrams_is_not_answered_in_full() {
    let broker = start_udp_broker(Config::default());
    let client = Udp::new(&broker);
    let started = Instant::now();
    let mut answers = Vec::new();
    // In rounds, so that no datagram of ours is dropped for want of room in the broker's
    // socket buffer: UDP would drop the PING of the sync too.
    for _ in 0..5 {
        for _ in 0..50 {
            client.send("PUBLISH oops");
        }
        answers.extend(client.sync());
    }
    let seconds = started.elapsed().as_secs() as usize;
    assert!(
        !answers.is_empty() && answers.len() <= 101 * (seconds + 1),
        "{} answers in {seconds}s",
        answers.len()
    );
    assert!(answers
        .iter()
        .all(|a| a.starts_with("ERROR wrong number of arguments")));
    assert_eq!(stat(&broker, "errors"), 250, "every one is still counted");
    wait_until("the unanswered ones are counted", || {
        stat(&broker, "udp_datagrams_dropped") == 250 - answers.len() as u64
    });
}

/// The cookie exchange, on the wire: an address that has not proven itself is answered
/// `COOKIE <token>` (if its datagram was at least as long as that answer), and subscribed
/// only when a datagram starts with that line.
#[test]
fn a_lease_starts_only_when_the_cookie_comes_back() {
    let broker = start_udp_broker(Config::default());
    let client = Udp::unproven(&broker);
    // Shorter than the answer would be: no answer at all, and no lease.
    client.send("SUBSCRIBE news ear\n");
    assert!(client.sync().is_empty());
    // Padded: a cookie, 16 hex digits, and still no lease.
    client.send("SUBSCRIBE news ear\n\n\n\n\n\n");
    let answers = client.sync();
    assert_eq!(answers.len(), 1, "{answers:?}");
    let token = answers[0]
        .strip_prefix("COOKIE ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .expect("COOKIE <token>");
    assert_eq!(token.len(), 16);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(broker.topic_counts().is_empty());
    // A wrong token is no proof: another cookie comes instead.
    client.send("COOKIE 0000000000000000\nSUBSCRIBE news ear\n");
    assert!(client.sync()[0].starts_with("COOKIE "));
    assert!(broker.topic_counts().is_empty());
    // Echoed: the lease starts, and renewing it needs no cookie.
    client.send(&format!("COOKIE {token}\nSUBSCRIBE news ear\n"));
    assert!(client.sync().is_empty());
    assert_eq!(broker.topic_counts(), [("news".to_string(), 1)]);
    client.send("SUBSCRIBE news ear\n");
    assert!(client.sync().is_empty());
    broker.publish("news", "proven", "app").unwrap();
    assert!(client.recv().starts_with("DELIVER news proven app "));
    // Another port of the same machine cannot use that token.
    let other = Udp::unproven(&broker);
    other.send(&format!("COOKIE {token}\nSUBSCRIBE news ear\n"));
    assert!(other.sync()[0].starts_with("COOKIE "));
    assert_eq!(broker.topic_counts(), [("news".to_string(), 1)]);
}

/// An address that has not proven itself gets no answer longer than its datagram: a
/// short bad datagram's `ERROR` is withheld (and counted), a `PONG` is not.
#[test]
fn an_unproven_address_is_sent_no_more_than_it_sent() {
    let broker = start_udp_broker(Config::default());
    let client = Udp::unproven(&broker);
    client.send("PUBLISH oops");
    assert!(
        client.sync().is_empty(),
        "the ERROR is longer than the datagram"
    );
    assert_eq!(stat(&broker, "errors"), 1, "it is still counted");
    wait_until("the withheld ERROR is counted", || {
        stat(&broker, "udp_withheld") == 1
    });
    // A PONG is as long as its PING with a line end; without one, it is a byte longer.
    client.send("PING a\n");
    assert_eq!(client.recv(), "PONG a\n");
    client.send("PING b");
    assert!(client.sync().is_empty());
}

/// The subscriber program's client does the cookie exchange by itself.
#[test]
fn the_udp_client_proves_its_address_by_itself() {
    let broker = start_udp_broker(Config::default());
    let mut client = pubsub_lab::client::UdpClient::connect(broker.udp_addr().unwrap()).unwrap();
    client.subscribe("a", "s").unwrap();
    client.ping().unwrap();
    assert_eq!(broker.topic_counts(), [("a".to_string(), 1)]);
    broker.publish("a", "hello", "app").unwrap();
    let delivery = client.recv_timeout(TIMEOUT).unwrap().expect("a delivery");
    assert_eq!(delivery.message, "hello");
}
