//! Lab 05 checks: slow consumers. A subscriber that stops reading fills its socket
//! buffers and falls behind; its writer thread's next write makes no progress, and after
//! `--write-timeout` the broker must give up on it: count it, close it, and go on serving
//! everyone else.
//! `Outbox::cut_off` (the lab 05 region in src/outbox.rs) is what runs when a write fails.
//! Each check stalls a real subscriber (it subscribes, then never reads) under a broker
//! with a short write timeout, floods its topic until the broker reports the cut-off,
//! then looks at one consequence.

mod common;
mod labcheck;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pubsub_lab::{BrokerHandle, Config};

use labcheck::{Peer, WAIT};

/// The broker's write timeout in these checks: short, so the checks are quick, yet long
/// enough that the subscriber which does read is never mistaken for a slow one.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// One flood message: big, so the stalled subscriber's buffers fill after a few megabytes.
const PAYLOAD_BYTES: usize = 32 * 1024;

/// The most the flood sends before giving up: far more than any socket buffers hold.
const FLOOD_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// Where the work of this lab is; `labcheck`'s failure messages point there too.
const REGION: &str = "Outbox::cut_off in src/outbox.rs";

/// The publisher is still served after a subscriber of its topic stalled.
#[test]
fn the_publisher_keeps_being_served() {
    let mut stall = Stall::start();
    stall.flood();
    stall.publisher.send("PING still-there\n");
    let line = stall.publisher.line("`PONG still-there` after the flood");
    assert_eq!(line, "PONG still-there");
}

/// The stalled subscriber's connection is closed by the broker.
#[test]
fn the_stalled_subscriber_is_disconnected() {
    let mut stall = Stall::start();
    stall.flood();
    // Read what the kernel still holds for it: after that must come end of file.
    let mut rest = Vec::new();
    if let Err(error) = stall.stalled.read_to_end(&mut rest) {
        panic!(
            "the stalled subscriber's connection was still open {WAIT:?} after its \
             buffered lines ({} bytes) ({error}): after a failed write, {REGION} must shut \
             the socket down (so the subscriber's own thread wakes up and cleans up)",
            rest.len()
        );
    }
}

/// STATS counts the cut-off in `slow_consumers_disconnected`, exactly once.
#[test]
fn the_cut_off_is_counted_once() {
    let mut stall = Stall::start();
    stall.flood();
    // More publishes after the cut-off must not count it again.
    stall
        .publisher
        .send("PUBLISH weather more pub1\nPUBLISH weather more pub1\n");
    stall.publisher.sync("the publishes after the cut-off");
    let value = stall.observer.stat("slow_consumers_disconnected");
    assert_eq!(
        value, 1,
        "one subscriber stalled, so STATS slow_consumers_disconnected must be 1: when the \
         write timed out (ErrorKind::WouldBlock or TimedOut), {REGION} must count it once"
    );
}

/// A subscriber that keeps reading receives the messages published after the cut-off.
#[test]
fn the_other_subscribers_keep_receiving() {
    let mut stall = Stall::start();
    stall.flood();
    stall
        .publisher
        .send("PUBLISH weather after the cut-off pub1\n");
    let wanted = "DELIVER weather after the cut-off pub1 ";
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stall.healthy.recv_timeout(left) {
            Ok(line) if line.starts_with(wanted) => return,
            Ok(_) => {}
            Err(_) => panic!(
                "the subscriber that kept reading did not receive the message published \
                 after the cut-off within {WAIT:?}: once a slow consumer is cut off, the \
                 publisher must go on delivering to everyone else (does {REGION} panic?)"
            ),
        }
    }
}

/// A broker, a subscriber that never reads, one that does, a publisher and an observer.
struct Stall {
    _broker: BrokerHandle,
    stalled: Peer,
    publisher: Peer,
    observer: Peer,
    /// The lines the reading subscriber receives, except the flood.
    healthy: mpsc::Receiver<String>,
}

impl Stall {
    fn start() -> Stall {
        let broker = common::start_broker_with(Config {
            write_timeout: WRITE_TIMEOUT,
            // A backlog limit the flood never reaches: here the subscriber must be cut off
            // for not taking bytes (the write timeout), which is this lab's code.
            max_pending_bytes: 1 << 30,
            ..Config::default()
        });
        let mut stalled = Peer::connect(&broker, "stalled");
        stalled.send("SUBSCRIBE weather stalled\n");
        stalled.sync("its SUBSCRIBE");
        let healthy = reading_subscriber(&broker);
        Stall {
            stalled,
            publisher: Peer::connect(&broker, "pub1"),
            observer: Peer::connect(&broker, "observer"),
            healthy,
            _broker: broker,
        }
    }

    /// Publishes big messages until STATS reports the cut-off; fails if it never does.
    fn flood(&mut self) {
        let line = format!("PUBLISH weather {} pub1\n", "x".repeat(PAYLOAD_BYTES));
        let batch = line.repeat(32);
        let mut sent = 0;
        while sent < FLOOD_LIMIT_BYTES {
            self.publisher.send(&batch);
            sent += batch.len();
            self.publisher.sync("a batch of big publishes");
            if self.observer.stat("slow_consumers_disconnected") > 0 {
                return;
            }
        }
        panic!(
            "published {} MiB to a subscriber that never reads, yet STATS \
             slow_consumers_disconnected stayed 0: a write that times out must count as a \
             slow consumer in {REGION}",
            sent >> 20
        );
    }
}

/// Subscribes a client that reads everything on a thread of its own, and passes on the
/// lines that are not part of the flood.
fn reading_subscriber(broker: &BrokerHandle) -> mpsc::Receiver<String> {
    let mut peer = Peer::connect(broker, "reader");
    peer.send("SUBSCRIBE weather reader\n");
    peer.sync("its SUBSCRIBE");
    let (lines, received) = mpsc::channel();
    thread::spawn(move || {
        // Ends when the broker closes the connection or nothing comes for a while.
        while let Some(line) = peer.next_line() {
            if !line.starts_with("DELIVER weather xxx") && lines.send(line).is_err() {
                return;
            }
        }
    });
    received
}
