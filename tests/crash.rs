//! Crash tests with real processes and real files: the `broker` binary is killed with
//! `kill -9` (SIGKILL: no cleanup of any kind) while publishers wait for confirms and a
//! durable subscriber acknowledges, then started again on the same `--data-dir`.
//!
//! The promise checked: every message the broker confirmed is delivered to the durable
//! subscriber at least once, in per-publisher order, and no line is corrupt.
//! `PUBSUB_CRASH_CYCLES` (default 3) and `PUBSUB_CRASH_MESSAGES` (confirmed messages per
//! cycle before the kill, default 150) make a longer run; `PUBSUB_CRASH_FSYNC` picks the
//! `--fsync` policy (default `always`: a kill -9 must lose nothing confirmed under any).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pubsub_lab::protocol::Message;
use pubsub_lab::Client;

const PUBLISHERS: usize = 3;

/// What one subscriber session received: each message, and whether it was acknowledged.
type Session = Vec<(Message, bool)>;

/// How long one cycle may take before the test fails.
const CYCLE_LIMIT: Duration = Duration::from_secs(60);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Starts the broker binary on a free port with `--data-dir dir`; returns it and its
/// address, read from its first line.
fn start(dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
        // The subscriber leaves half the messages unacknowledged while the broker is
        // killed, so they pile up: room for every one of a long run.
        .args([
            "--port",
            "0",
            "--no-http",
            "--sys-interval",
            "0",
            "--max-queued",
            "1000000",
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the broker binary");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.split(';').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in the broker's first line: {first:?}"));
    (child, addr)
}

/// One publisher's messages: `<cycle>-<n>`, sent one at a time, each waiting for its
/// confirm, until the broker dies. Returns the numbers confirmed.
fn publish_until_killed(
    addr: SocketAddr,
    id: String,
    cycle: u64,
    confirmed: Arc<AtomicU64>,
) -> Vec<u64> {
    let mut done = Vec::new();
    let Ok(mut client) = Client::connect(addr) else {
        return done;
    };
    if client.verbose(true).is_err() {
        return done;
    }
    for n in 0.. {
        let text = format!("{cycle}-{n}");
        match client.publish_confirmed(&format!("orders/{id}"), &text, &id) {
            // Confirmed, and handed to the durable subscription (the one subscriber).
            Ok(deliveries) => {
                assert_eq!(deliveries, 1, "{text} reached no durable subscription");
                done.push(n);
                confirmed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => break,
        }
    }
    done
}

/// The durable subscriber: keeps each session's messages in order, until the connection
/// ends, or with `expect_all` until every pending message came. It acknowledges every
/// message in the last session, but only those with an even number while the broker is
/// being killed: the others must come back after the restart, from the log alone.
/// Returns every message received, and whether each was acknowledged.
fn receive(addr: SocketAddr, expect_all: bool) -> Session {
    let mut received = Vec::new();
    let Ok(mut client) = Client::connect(addr) else {
        return received;
    };
    let Ok(pending) = client.durable("orders/#", "crash-sub") else {
        return received;
    };
    loop {
        if expect_all && received.len() >= pending {
            return received;
        }
        match client.recv_message(Duration::from_secs(10)) {
            Ok(Some(message)) => {
                let even = message.message.ends_with(['0', '2', '4', '6', '8']);
                let ack = expect_all || even;
                if ack && client.ack(message.seq).is_err() {
                    return received;
                }
                received.push((message, ack));
            }
            Ok(None) if expect_all => {
                panic!("{} of {pending} pending messages came", received.len())
            }
            Ok(None) => {}
            Err(_) => return received,
        }
    }
}

#[test]
fn every_confirmed_message_survives_kill_9_in_order_and_whole() {
    let cycles = setting("PUBSUB_CRASH_CYCLES", 3);
    let per_cycle = setting("PUBSUB_CRASH_MESSAGES", 150);
    let dir = std::env::temp_dir().join(format!("pubsub-lab-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Confirmed numbers per publisher per cycle, and every session's messages.
    let mut confirmed: BTreeMap<(String, u64), Vec<u64>> = BTreeMap::new();
    let sessions: Arc<Mutex<Vec<Session>>> = Arc::default();
    for cycle in 0..cycles {
        let started = Instant::now();
        let (mut broker, addr) = start(&dir);
        if cycle == 0 {
            // The subscription exists before anything is published: only what it matched
            // is owed to it.
            let mut first = Client::connect(addr).unwrap();
            assert_eq!(first.durable("orders/#", "crash-sub").unwrap(), 0);
        }
        let count = Arc::new(AtomicU64::new(0));
        let subscriber = {
            let sessions = Arc::clone(&sessions);
            thread::spawn(move || {
                let session = receive(addr, false);
                sessions.lock().unwrap().push(session);
            })
        };
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let id = format!("p{p}");
                let count = Arc::clone(&count);
                thread::spawn(move || (id.clone(), publish_until_killed(addr, id, cycle, count)))
            })
            .collect();
        while count.load(Ordering::Relaxed) < per_cycle {
            assert!(
                started.elapsed() < CYCLE_LIMIT,
                "cycle {cycle}: too slow to confirm {per_cycle} messages"
            );
            thread::sleep(Duration::from_millis(5));
        }
        broker.kill().unwrap(); // SIGKILL: kill -9
        broker.wait().unwrap();
        for publisher in publishers {
            let (id, numbers) = publisher.join().unwrap();
            confirmed.insert((id, cycle), numbers);
        }
        subscriber.join().unwrap();
    }
    // The last start: what is still pending comes now.
    let (mut broker, addr) = start(&dir);
    let last = receive(addr, true);
    sessions.lock().unwrap().push(last);
    broker.kill().unwrap();
    broker.wait().unwrap();

    let sessions = sessions.lock().unwrap();
    let mut seen_seqs = BTreeSet::new();
    let mut delivered: BTreeSet<(String, u64, u64)> = BTreeSet::new();
    for session in sessions.iter() {
        let mut last_of: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (message, acknowledged) in session {
            let (cycle, n) = message
                .message
                .split_once('-')
                .and_then(|(c, n)| Some((c.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
                .unwrap_or_else(|| panic!("a corrupt message: {message}"));
            assert_eq!(
                message.topic,
                format!("orders/{}", message.publisher_id),
                "{message}"
            );
            // Handled: acknowledged, or received after the last restart. A message received
            // but not acknowledged before a kill only counts once it comes again.
            if *acknowledged {
                delivered.insert((message.publisher_id.clone(), cycle, n));
            }
            if !seen_seqs.insert(message.seq) {
                continue; // a duplicate, dropped by its seq as a client would
            }
            if let Some(before) = last_of.insert(message.publisher_id.clone(), (cycle, n)) {
                assert!(
                    before < (cycle, n),
                    "{}: {before:?} then {:?}: out of order",
                    message.publisher_id,
                    (cycle, n)
                );
            }
        }
    }
    let mut lost = Vec::new();
    let mut total = 0;
    for ((id, cycle), numbers) in &confirmed {
        for &n in numbers {
            total += 1;
            if !delivered.contains(&(id.clone(), *cycle, n)) {
                lost.push(format!("{id} {cycle}-{n}"));
            }
        }
    }
    eprintln!(
        "{cycles} kill -9 cycles: {total} confirmed messages, {} delivered ({} with duplicates), {} lost",
        delivered.len(),
        sessions.iter().map(Vec::len).sum::<usize>(),
        lost.len()
    );
    assert!(lost.is_empty(), "confirmed but never delivered: {lost:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
