//! A crowd, and what it must not do to the others: a mass of connections sharing the same
//! topics leaving at once must not freeze an unrelated pair; one address must not hold
//! every slot (but a lab on one machine, all on loopback, must work); `TOPICS` on a big
//! registry is bounded; and a flood of bad lines or of connections fills the log only in
//! proportion to time.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{start_broker_with, stat, wait_until, Raw};
use pubsub_lab::Config;

/// Hundreds of connections sharing hundreds of topics close at once: the registry
/// empties, and a publisher and subscriber of another topic carry on meanwhile, never
/// waiting long (leaving costs what the leaving connection holds, not what all hold).
#[test]
fn a_mass_leave_does_not_freeze_an_unrelated_pair() {
    const CONNS: usize = 400;
    const TOPICS: usize = 512;
    let broker = start_broker_with(Config {
        max_subscriptions: TOPICS,
        ..Config::default()
    });
    let subscribe_all: String = (0..TOPICS)
        .map(|t| format!("SUBSCRIBE shared-{t} m\n"))
        .collect();
    let crowd: Vec<Raw> = (0..CONNS)
        .map(|_| {
            let mut raw = Raw::connect(broker.addr());
            raw.send(&subscribe_all);
            raw
        })
        .collect();
    let mut crowd: Vec<Raw> = crowd
        .into_iter()
        .map(|mut raw| {
            raw.sync();
            raw
        })
        .collect();
    assert_eq!(stat(&broker, "subscriptions"), (CONNS * TOPICS) as u64);

    // The unrelated pair: one message every millisecond, and the longest gap between two.
    let mut listener = common::subscribed(broker.addr(), "pair", "listener");
    let stop = Arc::new(AtomicBool::new(false));
    let talking = Arc::clone(&stop);
    let addr = broker.addr();
    let talker = thread::spawn(move || {
        let mut raw = Raw::connect(addr);
        let mut n = 0u64;
        while !talking.load(Ordering::Relaxed) {
            raw.send(&format!("PUBLISH pair {n} talker\n"));
            n += 1;
            thread::sleep(Duration::from_millis(1));
        }
        raw.sync();
        n
    });
    let watcher = thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut last = Instant::now();
        let mut seen = 0u64;
        loop {
            let line = listener.delivery();
            longest = longest.max(last.elapsed());
            last = Instant::now();
            if line == "DELIVER pair last talker" {
                return (seen, longest);
            }
            seen += 1;
        }
    });
    thread::sleep(Duration::from_millis(50));
    for raw in crowd.drain(..) {
        raw.stream().shutdown(std::net::Shutdown::Both).unwrap();
    }
    wait_until("the registry is empty but for the pair", || {
        stat(&broker, "subscriptions") == 1
    });
    stop.store(true, Ordering::Relaxed);
    let sent = talker.join().unwrap();
    let mut last = Raw::connect(broker.addr());
    last.send("PUBLISH pair last talker\n");
    last.sync();
    let (seen, longest) = watcher.join().unwrap();
    assert_eq!(seen, sent, "the pair lost messages");
    assert!(
        longest < Duration::from_secs(1),
        "the unrelated pair waited {longest:?} while the crowd left"
    );
}

/// A lab run on one machine has every client on loopback: they are exempt from the share
/// per address, so more than `--max-clients-per-ip` of them are all served.
#[test]
fn clients_on_loopback_are_exempt_from_the_share_per_address() {
    let broker = start_broker_with(Config {
        max_clients_per_ip: 4,
        ..Config::default()
    });
    let mut clients: Vec<Raw> = (0..10).map(|_| Raw::connect(broker.addr())).collect();
    for client in &mut clients {
        client.sync();
    }
    assert_eq!(stat(&broker, "connections_current"), 10);
    assert_eq!(stat(&broker, "connections_refused"), 0);
}

/// `TOPICS` lists at most `--max-topics-listed` topics and says how many more there are;
/// `TOPICS <filter>` lists those the filter matches; a bad filter gets the rule.
#[test]
fn topics_is_bounded_and_takes_a_filter() {
    let broker = start_broker_with(Config {
        max_topics_listed: 3,
        ..Config::default()
    });
    let mut client = Raw::connect(broker.addr());
    for topic in ["a/1", "a/2", "a/3", "a/4", "b/1", "b/2", "c"] {
        client.send(&format!("SUBSCRIBE {topic} me\n"));
    }
    client.send("TOPICS\n");
    for line in [
        "TOPICS a/1 1",
        "TOPICS a/2 1",
        "TOPICS a/3 1",
        "TOPICS … and 4 more",
        "END TOPICS",
    ] {
        client.expect(line);
    }
    client.send("TOPICS b/+\n");
    for line in ["TOPICS b/1 1", "TOPICS b/2 1", "END TOPICS"] {
        client.expect(line);
    }
    client.send("TOPICS a#\n");
    client.expect(
        "ERROR bad topic filter: a wildcard must be a whole level: write news/+ or news/#, not news+ or news#",
    );
    let mut api = pubsub_lab::Client::connect(broker.addr()).unwrap();
    assert_eq!(
        api.topics_matching(Some("a/#")).unwrap(),
        (
            vec![("a/1".into(), 1), ("a/2".into(), 1), ("a/3".into(), 1)],
            1
        )
    );
}

/// The `broker` program with its log on, and a way to read what it logged.
struct LoggingBroker {
    child: std::process::Child,
    port: u16,
}

impl LoggingBroker {
    fn start() -> LoggingBroker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
            .args(["--port", "0", "--no-http"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        LoggingBroker { child, port }
    }

    fn connect(&self) -> Raw {
        Raw::connect(([127, 0, 0, 1], self.port).into())
    }

    /// Stops the broker and returns its whole log.
    fn log(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        log
    }
}

/// A hundred thousand bad lines from one client get a hundred thousand `ERROR`s, but only
/// a handful of log lines, the last of which says how many were left out.
#[test]
fn a_flood_of_bad_lines_writes_a_few_log_lines() {
    let broker = LoggingBroker::start();
    let mut client = broker.connect();
    let flood = "x\n".repeat(100_000);
    let stream = client.stream().try_clone().unwrap();
    let sender = thread::spawn(move || (&stream).write_all(flood.as_bytes()).unwrap());
    for _ in 0..100_000 {
        assert!(client.line().starts_with("ERROR unknown command 'x'"));
    }
    sender.join().unwrap();
    client.send("QUIT\n");
    let _ = client.read_to_eof();
    // The broker logs the disconnection after the summary of what it left out.
    let mut probe = broker.connect();
    probe.sync();
    drop(probe);
    let log = broker.log();
    let bad = log.lines().filter(|l| l.contains("bad line")).count();
    assert!(bad <= 10, "{bad} log lines about bad lines:\n{log}");
    assert!(log.contains("more bad lines, not logged"), "{log}");
}

/// Two thousand connections coming and going as fast as they can produce log lines in
/// proportion to the seconds it takes, with a count of the rest.
#[test]
fn a_flood_of_connections_writes_a_few_log_lines_a_second() {
    let broker = LoggingBroker::start();
    let started = Instant::now();
    for _ in 0..2000 {
        let mut raw = broker.connect();
        raw.send("QUIT\n");
        let _ = raw.read_to_eof();
    }
    let seconds = started.elapsed().as_secs() + 1;
    let mut probe = broker.connect();
    probe.sync();
    let log = broker.log();
    let lines = log.lines().count() as u64;
    assert!(
        lines <= 2 + 20 * (seconds + 1),
        "{lines} log lines for 2000 connections in {seconds}s"
    );
    assert!(
        log.contains("(more like it follow: they are counted, not logged)"),
        "{log}"
    );
}

/// A stalled subscriber that is cut off frees its slot: a full broker lets the next client
/// in as soon as the stalled one is gone.
#[test]
fn a_slot_held_by_a_stalled_subscriber_is_freed_when_it_is_cut_off() {
    let broker = start_broker_with(Config {
        max_clients: 2,
        write_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let mut stalled = common::stalled(broker.addr(), "t", "stalled");
    let mut publisher = Raw::connect(broker.addr());
    let mut refused = Raw::connect(broker.addr());
    assert_eq!(refused.line(), "ERROR broker full (2 clients)");
    let sender = common::flood(&publisher, "t", 256);
    publisher.expect("PONG flooded");
    sender.join().unwrap();
    wait_until("the stalled subscriber is cut off", || {
        stat(&broker, "slow_consumers_disconnected") == 1
    });
    let _ = stalled.read_to_end(&mut Vec::new());
    wait_until("the stalled subscriber's slot is free", || {
        stat(&broker, "connections_current") == 1
    });
    let mut next = Raw::connect(broker.addr());
    next.sync();
}
