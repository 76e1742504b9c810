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

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

use pubsub_lab::config::format_duration;
use pubsub_lab::{BrokerHandle, Config};

use labcheck::{Peer, WAIT};

/// The broker's write timeout in these checks: short, so the checks are quick, yet long
/// enough that the subscriber which does read is never mistaken for a slow one.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// One flood message: big, so the stalled subscriber's buffers fill after a few megabytes.
const PAYLOAD_BYTES: usize = 32 * 1024;

/// How many flood messages go out between two looks at STATS: 256 KiB, a small step
/// next to the megabytes the stalled subscriber's socket buffers take.
const BATCH: usize = 8;

/// The most the flood sends before giving up: far more than any socket buffers hold.
const FLOOD_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// How many subscribers go away in turn, in the check that they are not slow consumers.
const GONE_TRIES: usize = 8;

/// How long the flood goes on once a subscriber is behind without a cut-off before it gives
/// up: ten write timeouts, where one is due. (Only a broker that never cuts off gets
/// here; a correct one is never near it, on however busy a machine.)
const BEHIND_LIMIT: Duration = Duration::from_secs(10);

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

/// The cut-off is logged as a warning, word for word as the labsheet gives it.
#[test]
fn the_cut_off_is_logged_as_the_labsheet_says() {
    LOG.install();
    let mut stall = Stall::start();
    let address = stall.stalled.local_addr();
    stall.flood();
    let expected = format!(
        "slow consumer stalled ({address}) disconnected: could not deliver within {}",
        format_duration(WRITE_TIMEOUT)
    );
    let deadline = Instant::now() + WAIT;
    let records = loop {
        let records = LOG.about(address);
        if !records.is_empty() || Instant::now() > deadline {
            break records;
        }
        thread::sleep(Duration::from_millis(20));
    };
    if records
        .iter()
        .any(|(level, text)| *level == Level::Warn && *text == expected)
    {
        return;
    }
    let logged: Vec<String> = records
        .iter()
        .map(|(level, text)| format!("{level} {text:?}"))
        .collect();
    let level_only = records.iter().any(|(_, text)| *text == expected);
    panic!(
        "when the stalled subscriber was cut off the broker logged {}; the labsheet asks \
         for the warning word for word, at warn level: WARN {expected:?}{}. Look at the \
         log::warn! in {REGION}",
        if logged.is_empty() {
            "nothing about it".to_string()
        } else {
            logged.join(", ")
        },
        if level_only {
            " (the words are right, the level is not: a cut-off is a warning, not info)"
        } else {
            ""
        }
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

/// A subscriber that goes away while it is behind (its socket reset while the broker
/// writes to it) is not a slow consumer: the write fails with an error other than a
/// timeout, which is not counted and not warned about; the broker forgets it all the same.
#[test]
fn a_subscriber_that_goes_away_is_not_a_slow_consumer() {
    LOG.install();
    // First the other branch, on a broker of its own: without it, a cut_off that does
    // nothing at all (or is still todo!()) would pass what follows.
    Stall::start().flood();
    let broker = common::start_broker_with(Config {
        // Never reached here: only going away may end these subscribers.
        write_timeout: Duration::from_secs(600),
        max_pending_bytes: 1 << 30,
        ..Config::default()
    });
    let mut publisher = Peer::connect(&broker, "pub1");
    let mut observer = Peer::connect(&broker, "observer");
    let line = format!("PUBLISH gone {} pub1\n", "x".repeat(PAYLOAD_BYTES));
    let batch = line.repeat(BATCH);
    // Several times: the reset reaches the broker's writer and the subscriber's own
    // thread at once, and which of them gets there first differs from run to run (only
    // the writer's failed write reaches the code of this lab).
    let mut addresses = Vec::new();
    for _ in 0..GONE_TRIES {
        let mut gone = Peer::connect(&broker, "gone");
        gone.send("SUBSCRIBE gone gone\n");
        gone.sync("its SUBSCRIBE");
        addresses.push(gone.local_addr());
        let mut sent = 0;
        while observer.stat("subscribers_behind") == 0 {
            assert!(
                sent < FLOOD_LIMIT_BYTES,
                "published {} MiB to a subscriber that never reads, and it never fell \
                 behind (STATS subscribers_behind stayed 0)",
                sent >> 20
            );
            publisher.send(&batch);
            sent += batch.len();
            publisher.sync("a batch of big publishes");
        }
        // Closing a socket with unread bytes resets the connection: the broker's next
        // write to it fails at once, with an error that is not a timeout.
        drop(gone);
        let deadline = Instant::now() + WAIT;
        while observer.stat("subscribers_behind") > 0 || observer.stat("subscriptions") > 0 {
            assert!(
                Instant::now() < deadline,
                "a subscriber that was behind reset its connection, and {WAIT:?} later \
                 STATS still counts it (subscribers_behind or subscriptions): for an \
                 error that is not a timeout, {REGION} must still shut the outbox"
            );
            thread::sleep(Duration::from_millis(20));
        }
        if observer.stat("slow_consumers_disconnected") > 0 {
            break;
        }
    }
    let counted = observer.stat("slow_consumers_disconnected");
    assert_eq!(
        counted, 0,
        "subscribers went away (reset their connections) while behind, and STATS \
         slow_consumers_disconnected is {counted}: a write that fails with another error \
         than a timeout is a client lost, not a slow consumer; in {REGION} only \
         is_timeout(error) is counted"
    );
    let warned: Vec<String> = addresses
        .iter()
        .flat_map(|address| LOG.about(*address))
        .filter(|(level, _)| *level == Level::Warn)
        .map(|(_, text)| text)
        .collect();
    assert!(
        warned.is_empty(),
        "subscribers that went away were logged as warnings: {warned:?}; a client lost \
         while writing to it is logged at info level, only a timeout is a warning (look \
         at the other branch of {REGION})"
    );
}

/// A broker, a subscriber that never reads, one that does, a publisher and an observer.
struct Stall {
    _broker: BrokerHandle,
    stalled: Peer,
    publisher: Peer,
    observer: Peer,
    /// The lines the reading subscriber receives, except the flood.
    healthy: mpsc::Receiver<String>,
    /// How many lines the reading subscriber has received, the flood included.
    received: Arc<AtomicUsize>,
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
        let received = Arc::new(AtomicUsize::new(0));
        let healthy = reading_subscriber(&broker, Arc::clone(&received));
        Stall {
            stalled,
            publisher: Peer::connect(&broker, "pub1"),
            observer: Peer::connect(&broker, "observer"),
            healthy,
            received,
            _broker: broker,
        }
    }

    /// Publishes big messages until STATS reports the cut-off; fails if it never does.
    ///
    /// Each batch is followed by a PING, and the flood goes on once its PONG proves the
    /// broker handled the batch. How long that takes depends on the machine: the broker
    /// waits for the reading subscriber to drain (backpressure), and a busy machine runs
    /// that reader slowly. So the PONG is waited for as long as the broker shows progress
    /// (more publishes handled, or the reader receiving), not for a fixed time.
    fn flood(&mut self) {
        labcheck::watch_broker_panics();
        let line = format!("PUBLISH weather {} pub1\n", "x".repeat(PAYLOAD_BYTES));
        let batch = line.repeat(BATCH);
        let mut sent = 0;
        let mut behind_since: Option<Instant> = None;
        while sent < FLOOD_LIMIT_BYTES {
            self.publisher.send(&batch);
            sent += batch.len();
            self.publisher.send("PING flood\n");
            let (observer, received) = (&mut self.observer, &self.received);
            let mut seen = (observer.stat("messages_published"), received.load(Relaxed));
            let line = self
                .publisher
                .line_while("the PONG after a batch of publishes", || {
                    let now = (observer.stat("messages_published"), received.load(Relaxed));
                    std::mem::replace(&mut seen, now) != now
                });
            assert_eq!(line, "PONG flood", "pub1 expected only a PONG");
            if self.observer.stat("slow_consumers_disconnected") > 0 {
                return;
            }
            if self.observer.stat("subscribers_behind") == 0 {
                behind_since = None;
            } else if labcheck::broker_thread_panicked() {
                panic!(
                    "a subscriber is behind, {} MiB into the flood, and a thread of the \
                     broker panicked (its message is above): a write that times out must \
                     count as a slow consumer in {REGION}, without a panic",
                    sent >> 20
                );
            } else if behind_since.get_or_insert_with(Instant::now).elapsed() > BEHIND_LIMIT {
                panic!(
                    "a subscriber has been behind for {BEHIND_LIMIT:?} (STATS \
                     subscribers_behind), {} MiB into the flood, and STATS \
                     slow_consumers_disconnected is still 0, with a write timeout of \
                     {WRITE_TIMEOUT:?}: a write that times out must count as a slow \
                     consumer in {REGION} (is_timeout(error) tells a subscriber that \
                     stopped reading from one that went away)",
                    sent >> 20
                );
            }
        }
        panic!(
            "published {} MiB to a subscriber that never reads, yet STATS \
             slow_consumers_disconnected stayed 0: a write that times out must count as a \
             slow consumer in {REGION} (is_timeout(error) tells a subscriber that stopped \
             reading from one that went away)",
            sent >> 20
        );
    }
}

/// Subscribes a client that reads everything on a thread of its own, counts the lines in
/// `received`, and passes on the ones that are not part of the flood.
fn reading_subscriber(broker: &BrokerHandle, counted: Arc<AtomicUsize>) -> mpsc::Receiver<String> {
    let mut peer = Peer::connect(broker, "reader");
    peer.send("SUBSCRIBE weather reader\n");
    peer.sync("its SUBSCRIBE");
    let (lines, received) = mpsc::channel();
    thread::spawn(move || {
        // Ends when the broker closes the connection or nothing comes for a while.
        while let Some(line) = peer.next_line() {
            counted.fetch_add(1, Relaxed);
            if !line.starts_with("DELIVER weather xxx") && lines.send(line).is_err() {
                return;
            }
        }
    });
    received
}

/// Every log record of this test program that names a client address, kept so that a
/// check can read what the broker logged.
static LOG: Recorder = Recorder {
    records: Mutex::new(Vec::new()),
};

struct Recorder {
    records: Mutex<Vec<(Level, String)>>,
}

impl Recorder {
    /// Makes this the program's logger (once; the checks run in one program).
    fn install(&'static self) {
        if log::set_logger(self).is_ok() {
            log::set_max_level(LevelFilter::Info);
        }
    }

    /// The records that mention `address`, in the order they were logged.
    fn about(&self, address: SocketAddr) -> Vec<(Level, String)> {
        let address = address.to_string();
        let records = self
            .records
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        records
            .iter()
            .filter(|(_, text)| text.contains(&address))
            .cloned()
            .collect()
    }
}

impl Log for Recorder {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= Level::Info
    }

    fn log(&self, record: &Record) {
        let text = record.args().to_string();
        if text.contains("127.0.0.1:") {
            let mut records = self
                .records
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            records.push((record.level(), text));
        }
    }

    fn flush(&self) {}
}
