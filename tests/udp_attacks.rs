//! UDP under attack: each attack of issue 22 against the UDP port, and the figure the broker
//! must hold it to. Loopback only, bounded in count and time.
//!
//! UDP does not check source addresses, so a "forged" source here is simply an address
//! that never echoes a cookie: what it receives is what a victim would.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{start_udp_broker, stat, subscribed, wait_until, Raw, Udp, TIMEOUT};
use pubsub_lab::udp::{cookie, sender, MAX_ANSWERS, MAX_LEASES_PER_IP};
use pubsub_lab::{BrokerHandle, Config};

/// A broker holding `count` retained messages of `size` bytes, on topics `r/<n>`, all
/// from one publisher id (which may keep more than its default share here).
fn broker_with_retained(count: usize, size: usize) -> BrokerHandle {
    let broker = start_udp_broker(Config {
        max_retained_bytes_per_client: usize::MAX,
        ..Config::default()
    });
    let mut publisher = Raw::connect(broker.addr());
    let body = "x".repeat(size);
    for n in 0..count {
        publisher.send(&format!("RETAIN r/{n} {body} keeper\n"));
    }
    publisher.sync();
    broker
}

/// Sends `datagrams` from an address that never echoes anything, then a `PING` of its
/// own, and returns (bytes it sent, bytes it received) up to that `PING` and its `PONG`:
/// on loopback, datagrams keep their order, so the `PONG` comes after every answer to
/// what was sent before it.
fn sent_and_received(victim: &Udp, datagrams: &[Vec<u8>]) -> (usize, usize) {
    let mut sent = 0;
    for datagram in datagrams {
        victim.send_bytes(datagram);
        sent += datagram.len();
    }
    let received: usize = victim.sync().iter().map(String::len).sum();
    (sent, received)
}

/// The reflection: a `SUBSCRIBE #` of 13 bytes, from an address that never proves itself,
/// used to make the broker send a victim its whole retained store (×80,538 before). Now
/// the address gets at most what it sent, and no lease.
#[test]
fn a_subscribe_from_an_address_that_never_echoes_gets_no_more_than_it_sent() {
    let broker = broker_with_retained(100, 10_000);
    let victim = Udp::unproven(&broker);
    let short = b"SUBSCRIBE # a".to_vec();
    let padded = b"SUBSCRIBE # a\n\n\n\n\n\n\n\n\n\n\n\n".to_vec();
    let with_a_wrong_cookie = b"COOKIE 0123456789abcdef\nSUBSCRIBE # a\n".to_vec();
    let (sent, received) =
        sent_and_received(&victim, &[short, padded, with_a_wrong_cookie.clone()]);
    eprintln!(
        "reflection: {sent} bytes sent, {received} received (x{:.2})",
        ratio(received, sent)
    );
    assert!(received <= sent, "{received} bytes back for {sent}");
    assert!(received > 0, "the padded ones are answered with a cookie");
    assert_eq!(stat(&broker, "udp_subscribers"), 0);
    assert!(broker.topic_counts().iter().all(|(topic, _)| topic != "#"));
    // Many of them, and many victims: still nothing but cookies, and no state.
    for _ in 0..20 {
        let victim = Udp::unproven(&broker);
        let (sent, received) =
            sent_and_received(&victim, std::slice::from_ref(&with_a_wrong_cookie));
        assert!(received <= sent);
    }
    assert_eq!(stat(&broker, "udp_subscribers"), 0);
}

/// 1,200 bytes of SUBSCRIBE/UNSUBSCRIBE pairs in one datagram, from an address that never
/// proves itself (43 MB of retained messages before): at most 1,200 bytes back.
#[test]
fn a_datagram_of_subscribe_unsubscribe_pairs_gets_no_more_than_it_sent() {
    let broker = broker_with_retained(100, 10_000);
    let victim = Udp::unproven(&broker);
    let mut pairs = Vec::new();
    while pairs.len() + 30 <= 1_200 {
        pairs.extend_from_slice(b"SUBSCRIBE # a\nUNSUBSCRIBE # a\n");
    }
    let (sent, received) = sent_and_received(&victim, &[pairs]);
    eprintln!(
        "pairs: {sent} bytes sent, {received} received (x{:.2})",
        ratio(received, sent)
    );
    assert!(received <= sent, "{received} bytes back for {sent}");
    assert_eq!(stat(&broker, "udp_subscribers"), 0);
    assert_eq!(
        stat(&broker, "deliveries"),
        0,
        "no retained message was replayed"
    );
}

/// One 64 KiB datagram of `PING` lines (13,000 `PONG`s before) gets at most
/// `MAX_ANSWERS` answers, even from a proven address; the rest are counted as withheld.
#[test]
fn a_datagram_of_pings_gets_a_few_answers() {
    let broker = start_udp_broker(Config::default());
    for client in [Udp::new(&broker), Udp::unproven(&broker)] {
        let before = stat(&broker, "udp_withheld");
        let pings = "PING\n".repeat(65_000 / 5);
        client.send(&pings);
        let answers = client.sync();
        eprintln!(
            "pings: 13,000 PINGs in one datagram, {} answers",
            answers.len()
        );
        assert_eq!(answers.len(), MAX_ANSWERS);
        assert!(answers.iter().all(|answer| answer == "PONG\n"));
        assert_eq!(
            stat(&broker, "udp_withheld") - before,
            13_000 - MAX_ANSWERS as u64
        );
    }
}

/// A proven address that asks for more than its budget (ten thousand deliveries, after
/// the retained store) is sent at most its budget of datagrams per second; renewing its
/// subscription, or leaving and subscribing again, replays nothing.
#[test]
fn a_proven_address_is_sent_no_more_than_its_budget() {
    let broker = broker_with_retained(100, 100);
    let greedy = Udp::new(&broker);
    let out_before = stat(&broker, "udp_datagrams_out");
    let started = Instant::now();
    greedy.send("SUBSCRIBE # a\n");
    // Renewing it replays nothing.
    for _ in 0..100 {
        greedy.send("SUBSCRIBE # a\n");
    }
    // Nor does leaving and coming back, for as long as the lease lives.
    for _ in 0..100 {
        greedy.send("UNSUBSCRIBE # a\nSUBSCRIBE # a\n");
    }
    assert_eq!(greedy.sync().len(), 100, "the store, once");
    let mut publisher = Raw::connect(broker.addr());
    let body = "x".repeat(100);
    for _ in 0..100 {
        publisher.send(&format!("PUBLISH t {body} p\n").repeat(100));
    }
    publisher.sync();
    let replayed = 100 + 100 * 100;
    wait_until(
        "every replayed message is sent, withheld or dropped",
        || {
            stat(&broker, "udp_datagrams_out") - out_before
                + stat(&broker, "udp_withheld")
                + stat(&broker, "udp_queue_dropped")
                + stat(&broker, "udp_datagrams_dropped")
                >= replayed
        },
    );
    // Budget windows start when the address is first sent something: at most one more
    // than the whole seconds elapsed.
    let windows = started.elapsed().as_secs() + 2;
    let sent = stat(&broker, "udp_datagrams_out") - out_before;
    eprintln!(
        "budget: {replayed} replayed to one address in {:?}: {sent} sent, {} withheld, {} \
         dropped",
        started.elapsed(),
        stat(&broker, "udp_withheld"),
        stat(&broker, "udp_datagrams_dropped")
    );
    assert!(
        sent <= u64::from(sender::DATAGRAMS_PER_SECOND) * windows,
        "{sent} datagrams in {windows} windows"
    );
    assert_eq!(
        stat(&broker, "deliveries"),
        replayed,
        "the store once, then every live message"
    );
}

/// Many ports of one machine: each proves itself, but one IP address holds at most
/// `MAX_LEASES_PER_IP` leases; the next is told why.
#[test]
fn one_address_holds_a_few_leases() {
    let broker = start_udp_broker(Config::default());
    let clients: Vec<Udp> = (0..MAX_LEASES_PER_IP + 2)
        .map(|_| Udp::new(&broker))
        .collect();
    let mut refused = Vec::new();
    for client in &clients {
        client.send("SUBSCRIBE t ear\n");
        refused.extend(client.sync());
    }
    assert_eq!(
        refused,
        vec![
            format!(
                "ERROR too many UDP subscribers from 127.0.0.1 (limit {MAX_LEASES_PER_IP}): subscribe over TCP, or end a lease\n"
            );
            2
        ]
    );
    assert_eq!(stat(&broker, "udp_subscribers"), MAX_LEASES_PER_IP as u64);
    // A lease that ends makes room.
    clients[0].send("UNSUBSCRIBE\n");
    clients[0].sync();
    let last = clients.last().unwrap();
    last.send("SUBSCRIBE t ear\n");
    assert!(last.sync().is_empty());
}

/// 1,024 leases on `#` (from 64 loopback addresses, sixteen each), whose sockets never
/// read, as forged ones would not: a TCP publisher floods a topic they
/// all match, while an unrelated TCP publisher->subscriber pair goes on. The flood's
/// publisher pays a copy per lease, never a `send_to`; the pair loses nothing. Its worst
/// latency is printed beside the same run without leases: a test cannot promise a figure
/// on a loaded machine, only that nothing is lost.
#[test]
fn a_thousand_leases_cost_an_unrelated_tcp_pair_nothing() {
    let broker = start_udp_broker(Config::default());
    let (alone_took, alone_worst) = flood_beside_a_pair(&broker);
    let udp = broker.udp_addr().unwrap();
    // Kept open to the end: a port closed could be handed to the next socket, which would
    // then find a lease already there.
    let _leases: Vec<UdpSocket> = (1..=64u8)
        .flat_map(|ip| (0..MAX_LEASES_PER_IP).map(move |_| ip))
        .map(|ip| lease_from(([127, 0, 1, ip], 0).into(), udp))
        .collect();
    wait_until("1,024 leases", || stat(&broker, "udp_subscribers") == 1024);
    let out_before = stat(&broker, "udp_datagrams_out");
    let started = Instant::now();
    let (flood_took, worst) = flood_beside_a_pair(&broker);
    // The port's budget bounds what the sender sends in all, whatever each address may
    // have: windows start before the flood and end after it, so two more than the whole
    // seconds elapsed.
    let windows = started.elapsed().as_secs() + 2;
    let sent = stat(&broker, "udp_datagrams_out") - out_before;
    assert!(
        sent <= u64::from(sender::PORT_DATAGRAMS_PER_SECOND) * windows,
        "{sent} datagrams in {windows} windows of the port's budget"
    );
    eprintln!(
        "1,024 leases: 2,000 flood publishes took {flood_took:?} ({alone_took:?} without \
         leases); the pair's worst latency {worst:?} ({alone_worst:?} without leases); \
         udp_datagrams_out {}, udp_queue_dropped {}, udp_withheld {}",
        stat(&broker, "udp_datagrams_out"),
        stat(&broker, "udp_queue_dropped"),
        stat(&broker, "udp_withheld"),
    );
}

/// Floods `flood/x` with 2,000 publishes from one TCP publisher while a pair on `pair`
/// sends 200 messages, one every 5 ms; checks that the pair loses nothing and gets
/// everything in order. Returns how long the flood took and the pair's worst latency.
fn flood_beside_a_pair(broker: &BrokerHandle) -> (Duration, Duration) {
    let mut pair_subscriber = subscribed(broker.addr(), "pair", "reader");
    let (stamps, sent_at) = mpsc::channel::<(u32, Instant)>();
    let pair_addr = broker.addr();
    const PAIR_MESSAGES: u32 = 200;
    let pair = thread::spawn(move || {
        let mut publisher = Raw::connect(pair_addr);
        for n in 0..PAIR_MESSAGES {
            stamps.send((n, Instant::now())).unwrap();
            publisher.send(&format!("PUBLISH pair {n} writer\n"));
            // The pair publishes at a steady pace, as a classroom publisher would.
            thread::sleep(Duration::from_millis(5));
        }
        publisher.sync();
    });
    let flood_addr = broker.addr();
    let flood = thread::spawn(move || {
        let mut publisher = Raw::connect(flood_addr);
        let started = Instant::now();
        for n in 0..2_000 {
            publisher.send(&format!("PUBLISH flood/x {n} flooder\n"));
        }
        publisher.sync();
        started.elapsed()
    });
    let mut worst = Duration::ZERO;
    for n in 0..PAIR_MESSAGES {
        let delivery = pair_subscriber.delivery();
        let arrived = Instant::now();
        let (sent_n, sent) = sent_at.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(sent_n, n);
        assert_eq!(
            delivery,
            format!("DELIVER pair {n} writer"),
            "nothing lost, in order"
        );
        worst = worst.max(arrived - sent);
    }
    pair.join().unwrap();
    let flood_took = flood.join().unwrap();
    pair_subscriber.sync();
    (flood_took, worst)
}

/// Proves `local` (an IP to bind, port 0) to the broker at `udp` and subscribes it to `#`;
/// returns the socket, which nobody reads from then on.
fn lease_from(local: SocketAddr, udp: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(local).expect("bind a loopback address");
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let probe = b"SUBSCRIBE # a\n\n\n\n\n\n\n\n\n\n\n\n";
    socket.send_to(probe, udp).unwrap();
    let mut buffer = [0u8; 64];
    let (len, _) = socket.recv_from(&mut buffer).expect("a COOKIE");
    let token = cookie_token(&buffer[..len]);
    socket
        .send_to(
            format!("COOKIE {token}\nSUBSCRIBE # a\nPING done\n").as_bytes(),
            udp,
        )
        .unwrap();
    let (len, _) = socket.recv_from(&mut buffer).expect("a PONG");
    assert_eq!(&buffer[..len], b"PONG done\n");
    socket
}

fn cookie_token(answer: &[u8]) -> String {
    let text = std::str::from_utf8(answer).unwrap();
    assert_eq!(text.len(), cookie::ANSWER_BYTES, "{text:?}");
    text.strip_prefix("COOKIE ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("expected COOKIE <token>, got {text:?}"))
        .to_string()
}

fn ratio(received: usize, sent: usize) -> f64 {
    received as f64 / sent.max(1) as f64
}
