//! Faults: what the broker promises when clients misbehave, connections die and resources
//! run out. A subscriber that stops reading is cut off after the write timeout and holds
//! nobody else up for longer (and subscribers of other topics not at all); every kind of
//! disconnect leaves no subscription, thread or file descriptor behind; each limit answers
//! with a clear `ERROR` and the connection carries on; running out of file descriptors is
//! survived with a `ulimit -n` hint; `stop` ends every thread; and the real `subscriber`
//! and `publisher` programs behave sensibly when the broker goes away.
//!
//! Tests that count the process's threads and file descriptors take the [`GATE`]
//! exclusively, so no other test of this file has a broker or socket open while they count.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{
    big_message, flood, stalled, start_broker, start_broker_with, stat, subscribed, wait_until,
    wait_until_jammed, Raw, TIMEOUT,
};
use pubsub_lab::{BrokerHandle, Client, Config};

/// Ordinary tests share this gate; tests that count threads and descriptors hold it alone.
static GATE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GATE.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Threads the broker started (`accept-line`, `client-<n>`, `writer-<n>`), counted by name, so the test
/// harness's own threads do not disturb the count.
fn broker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| {
            ["client-", "writer-", "accept-"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
        })
        .count()
}

/// The process's open file descriptors, each as what it refers to (`socket:[4711]`,
/// `pipe:[815]`, a path). Compared as a set, not a count: a pipe of an earlier test's child
/// that closes meanwhile must not hide a socket the broker left open, nor look like one.
fn open_fds() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .map(|target| target.display().to_string())
        .collect()
}

/// Whether every descriptor open now was open in `before` too: nothing new is left.
fn nothing_new(before: &BTreeSet<String>) -> bool {
    open_fds().is_subset(before)
}

/// Asserts that the broker holds nothing for any client any more: no subscription, no
/// connection, no client thread, and no descriptor that was not open in `fds`.
fn assert_nothing_left(broker: &BrokerHandle, fds: BTreeSet<String>) {
    wait_until("no topic is left", || broker.topic_counts().is_empty());
    wait_until("no connection is left", || {
        stat(broker, "connections_current") == 0
    });
    wait_until("only the accept thread is left", || broker_threads() == 1);
    wait_until("every file descriptor is closed", || nothing_new(&fds));
}

fn with_write_timeout(write_timeout: Duration) -> Config {
    Config {
        write_timeout,
        ..Config::default()
    }
}

/// Reads `count` big deliveries on its own thread and checks each is whole and in order.
fn read_flood(mut raw: Raw, topic: &'static str, count: usize) -> JoinHandle<Raw> {
    thread::spawn(move || {
        for i in 0..count {
            assert_eq!(
                raw.delivery(),
                format!("DELIVER {topic} {} p", big_message(i))
            );
        }
        raw
    })
}

// ---------------------------------------------------------------------------------------
// Slow and stalled subscribers

#[test]
fn a_stalled_subscriber_is_cut_off_and_healthy_subscribers_of_its_topic_get_everything() {
    let _gate = shared();
    const MESSAGES: usize = 256; // 8 MiB: more than the kernel buffers between us hold
    let broker = start_broker_with(with_write_timeout(Duration::from_secs(1)));
    let before = subscribed(broker.addr(), "a", "before");
    let mut stalled = stalled(broker.addr(), "a", "stalled");
    let after = subscribed(broker.addr(), "a", "after");
    let readers = [
        read_flood(before, "a", MESSAGES),
        read_flood(after, "a", MESSAGES),
    ];
    let mut publisher = Raw::connect(broker.addr());
    let sender = flood(&publisher, "a", MESSAGES);

    publisher.expect("PONG flooded");
    sender.join().unwrap();
    let _healthy: Vec<Raw> = readers
        .into_iter()
        .map(|reader| {
            reader
                .join()
                .expect("a healthy subscriber missed a delivery")
        })
        .collect();
    // The healthy ones got everything without waiting for the stalled one to be cut off:
    // that happens on its own writer thread, within the write timeout.
    wait_until("the stalled subscriber is cut off", || {
        stat(&broker, "slow_consumers_disconnected") == 1
    });
    // Its own thread then cleans up: the topic keeps its two healthy subscribers.
    wait_until("the stalled subscriber has left the topic", || {
        broker.topic_counts() == [("a".to_string(), 2)]
    });

    // What reached the stalled subscriber before it was cut off: whole lines, in order,
    // and at most the very last one cut short, then end of file.
    let mut received = Vec::new();
    stalled.read_to_end(&mut received).expect("end of file");
    let text = String::from_utf8(received).unwrap();
    let mut lines: Vec<&str> = text.split('\n').collect();
    let unfinished = lines.pop().unwrap();
    assert_eq!(lines[0], "PONG");
    for (i, line) in lines[1..].iter().enumerate() {
        let expected = format!("DELIVER a {} p ", big_message(i));
        assert!(line.starts_with(&expected), "line {i} is not message {i}");
        assert_eq!(line.len(), expected.len() + "YYYY-MM-DD HH:MM:SS".len());
    }
    let next = format!("DELIVER a {}", big_message(lines.len() - 1));
    assert!(
        next.starts_with(unfinished),
        "a cut line that is not a prefix"
    );
}

#[test]
fn subscribers_of_other_topics_and_the_publisher_are_not_held_up_by_a_stalled_subscriber() {
    let _gate = shared();
    // A write timeout far longer than any wait below: if anything had to wait for the
    // stalled subscriber to be cut off, this test would time out.
    let broker = start_broker_with(with_write_timeout(Duration::from_secs(60)));
    let stalled = stalled(broker.addr(), "a", "stalled");
    let mut other = subscribed(broker.addr(), "b", "other");
    let mut flooder = Raw::connect(broker.addr());
    let sender = flood(&flooder, "a", 192); // 6 MiB: under --max-pending-bytes

    // Only once the stalled subscriber's buffers are full, and the broker says it is
    // behind (its writer thread is stuck writing to it), does measuring prove anything.
    wait_until_jammed(&stalled, broker.addr());
    wait_until("the stalled subscriber is behind", || {
        stat(&broker, "subscribers_behind") == 1
    });
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH b unaffected p\n");
    assert_eq!(other.delivery(), "DELIVER b unaffected p");
    publisher.sync();
    other.sync();
    // The flooder's own thread never waited for the stalled subscriber: its PING, sent
    // after the whole flood, is answered while the subscriber is still stalled.
    flooder.expect("PONG flooded");
    sender.join().unwrap();
    assert_eq!(stat(&broker, "slow_consumers_disconnected"), 0);
    assert_eq!(stat(&broker, "subscribers_behind"), 1);
    drop(stalled);
}

#[test]
fn a_slow_subscriber_that_keeps_reading_is_not_cut_off() {
    let _gate = shared();
    const MESSAGES: usize = 192; // 6 MiB: more than the kernel buffers between us hold
    let broker = start_broker_with(with_write_timeout(Duration::from_secs(2)));
    let mut slow = subscribed(broker.addr(), "t", "slow");
    let mut publisher = Raw::connect(broker.addr());
    let sender = flood(&publisher, "t", MESSAGES);
    // First fill every buffer between the broker and us, so that the broker must wait for
    // us (we are behind) from here on...
    wait_until_jammed(slow.stream(), broker.addr());
    wait_until("the slow subscriber is behind", || {
        stat(&broker, "subscribers_behind") == 1
    });
    // ...then read slowly but steadily: a pause after every message (32 KiB).
    for i in 0..MESSAGES {
        assert_eq!(slow.delivery(), format!("DELIVER t {} p", big_message(i)));
        thread::sleep(Duration::from_millis(2));
    }
    publisher.expect("PONG flooded");
    sender.join().unwrap();
    slow.sync();
    assert_eq!(stat(&broker, "slow_consumers_disconnected"), 0);
}

// ---------------------------------------------------------------------------------------
// Disconnects of every kind leave nothing behind

#[test]
fn a_clean_close_leaves_nothing_behind() {
    let _gate = exclusive();
    let broker = start_broker();
    let fds = open_fds();
    let mut client = subscribed(broker.addr(), "t", "s");
    client.send("SUBSCRIBE u s\n");
    client.sync();
    assert_eq!(broker_threads(), 2);
    drop(client);
    assert_nothing_left(&broker, fds);
}

#[test]
fn a_reset_connection_leaves_nothing_behind() {
    let _gate = exclusive();
    let broker = start_broker();
    let fds = open_fds();
    let client = subscribed(broker.addr(), "t", "s");
    // Closing a socket whose received data was never read makes Linux send a reset (RST)
    // instead of a normal close.
    let mut stream = client.stream().try_clone().unwrap();
    stream.write_all(b"HELP\n").unwrap();
    wait_until("the HELP reply is waiting unread", || {
        client.stream().peek(&mut [0u8; 64]).unwrap() == 64
    });
    drop((client, stream));
    assert_nothing_left(&broker, fds);
}

#[test]
fn a_close_in_the_middle_of_a_line_leaves_nothing_behind() {
    let _gate = exclusive();
    let broker = start_broker();
    let fds = open_fds();
    let mut client = subscribed(broker.addr(), "t", "s");
    client.send("SUBSCRIBE u s\nUNSUBSCRIBE t");
    drop(client);
    assert_nothing_left(&broker, fds);
}

#[test]
fn a_close_while_a_delivery_is_being_written_leaves_nothing_behind() {
    let _gate = exclusive();
    let broker = start_broker_with(with_write_timeout(Duration::from_secs(60)));
    let fds = open_fds();
    let stalled = stalled(broker.addr(), "t", "stalled");
    let mut flooder = Raw::connect(broker.addr());
    let sender = flood(&flooder, "t", 512);
    wait_until("the flood fills the stalled subscriber's buffers", || {
        stalled.peek(&mut [0u8; 65536]).unwrap() == 65536
    });
    drop(stalled);
    // The broker's write to the closed subscriber fails at once with a reset rather than
    // waiting for the 60 s write timeout, so the flood completes.
    flooder.expect("PONG flooded");
    sender.join().unwrap();
    assert_eq!(stat(&broker, "slow_consumers_disconnected"), 0);
    drop(flooder);
    assert_nothing_left(&broker, fds);
}

#[test]
fn a_half_close_is_answered_in_full_then_closed_and_leaves_nothing_behind() {
    let _gate = exclusive();
    let broker = start_broker();
    let fds = open_fds();
    let mut client = subscribed(broker.addr(), "t", "s");
    client.send("PING last\nTOPICS\n");
    client.shutdown_write();
    assert_eq!(client.read_to_eof(), "PONG last\nTOPICS t 1\nEND TOPICS\n");
    drop(client);
    assert_nothing_left(&broker, fds);
}

// ---------------------------------------------------------------------------------------
// Limits

#[test]
fn the_connection_over_max_clients_is_told_and_closed_and_the_slot_frees_when_one_leaves() {
    let _gate = shared();
    let broker = start_broker_with(Config {
        max_clients: 2,
        ..Config::default()
    });
    let mut first = Raw::connect(broker.addr());
    let mut second = Raw::connect(broker.addr());
    first.sync();
    second.sync();
    let mut third = Raw::connect(broker.addr());
    assert_eq!(third.read_to_eof(), "ERROR broker full (2 clients)\n");
    assert_eq!(stat(&broker, "connections_refused"), 1);
    second.sync(); // the others are unaffected

    drop(first);
    wait_until("the first client's slot is free", || {
        stat(&broker, "connections_current") == 1
    });
    let mut fourth = Raw::connect(broker.addr());
    fourth.sync();
}

#[test]
fn an_overlong_line_is_refused_and_the_connection_carries_on() {
    let _gate = shared();
    let broker = start_broker();
    let mut client = subscribed(broker.addr(), "t", "s");
    let mut line = format!("PUBLISH t {} s", "x".repeat(65536));
    line.truncate(65537);
    client.send(&line);
    client.send("\nPUBLISH t fine s\n");
    client.expect("ERROR line longer than 65536 bytes was discarded: send shorter messages");
    assert_eq!(client.delivery(), "DELIVER t fine s");
    client.sync();
}

#[test]
fn topics_and_ids_over_their_limits_are_refused_and_at_the_limit_accepted() {
    let _gate = shared();
    let broker = start_broker();
    let mut client = Raw::connect(broker.addr());
    let (topic_max, topic_over) = ("t".repeat(256), "t".repeat(257));
    let (id_max, id_over) = ("i".repeat(64), "i".repeat(65));
    client.send(&format!("SUBSCRIBE {topic_over} s\n"));
    client.expect("ERROR topic longer than 256 bytes: use a shorter topic");
    client.send(&format!("PUBLISH t hi {id_over}\n"));
    client.expect("ERROR subscriber or publisher id longer than 64 bytes: use a shorter id");
    client.send(&format!("SUBSCRIBE {topic_max} {id_max}\n"));
    client.send(&format!("PUBLISH {topic_max} hi {id_max}\n"));
    assert_eq!(
        client.delivery(),
        format!("DELIVER {topic_max} hi {id_max}")
    );
    client.sync();
}

#[test]
fn subscriptions_over_the_limit_are_refused_until_one_is_given_back() {
    let _gate = shared();
    let broker = start_broker_with(Config {
        max_subscriptions: 3,
        ..Config::default()
    });
    let mut client = Raw::connect(broker.addr());
    client.send("SUBSCRIBE a s\nSUBSCRIBE b s\nSUBSCRIBE c s\nSUBSCRIBE a s\n");
    client.sync(); // subscribing again to a topic held already is not a new subscription
    client.send("SUBSCRIBE d s\n");
    client.expect(
        "ERROR too many subscriptions on this connection (limit 3): unsubscribe from some first",
    );
    client.send("UNSUBSCRIBE a s\nSUBSCRIBE d s\nTOPICS\n");
    for line in ["TOPICS b 1", "TOPICS c 1", "TOPICS d 1", "END TOPICS"] {
        client.expect(line);
    }
    // The limit is per connection: another client may subscribe to its own three.
    let mut other = subscribed(broker.addr(), "e", "o");
    other.sync();
}

/// A `broker` or other program of this crate, killed when the test ends, whose output is
/// collected as it comes and printed if the test fails.
struct Program {
    name: String,
    child: Child,
    stdout: Collected,
    stderr: Collected,
}

impl Program {
    fn start(command: &mut Command) -> Program {
        let name = format!("{command:?}");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Program {
            name,
            child,
            stdout,
            stderr,
        }
    }

    /// Starts the `broker` binary on `port` (0: any free port) and returns it with its port.
    fn broker(port: u16, shell_prefix: &str) -> (Program, u16) {
        let script = format!(
            "{shell_prefix} exec \"$BROKER\" --port {port} --no-http --write-timeout 500ms"
        );
        let broker = Program::start(
            Command::new("bash")
                .args(["-c", &script])
                .env("BROKER", env!("CARGO_BIN_EXE_broker")),
        );
        let mut port = 0;
        wait_until("the broker says where it listens", || {
            let out = broker.stdout();
            port = out
                .lines()
                .next()
                .and_then(|line| line.split("127.0.0.1:").nth(1))
                .and_then(|rest| rest.split(';').next())
                .and_then(|port| port.parse().ok())
                .unwrap_or(0);
            port != 0
        });
        (broker, port)
    }

    fn stdout(&self) -> String {
        self.stdout.text()
    }

    fn stderr(&self) -> String {
        self.stderr.text()
    }

    fn wait_for_output(&self, what: &str) {
        wait_until(&format!("{} prints {what:?}", self.name), || {
            self.stdout().contains(what) || self.stderr().contains(what)
        });
    }

    /// Waits for the program to exit by itself and returns its exit code. Its output is
    /// then complete: everything it wrote has been read.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.stdout.finish();
                self.stderr.finish();
                return status.code();
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
        // Its pipes are closed now: wait for their readers, so that no test counting open
        // files sees this one's still open.
        self.stdout.finish();
        self.stderr.finish();
        if thread::panicking() {
            eprintln!(
                "--- {} stdout:\n{}--- stderr:\n{}",
                self.name,
                self.stdout(),
                self.stderr()
            );
        }
    }
}

/// A child's pipe, read line by line on a thread of its own, so the test can look at what
/// arrived so far while the child runs.
struct Collected {
    text: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Collected {
    /// What arrived so far.
    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits until the reader has reached the end of the pipe, so [`text`](Self::text) is
    /// all the child wrote. Only once the child has exited: then the end comes at once.
    fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }
}

fn collect(pipe: impl Read + Send + 'static) -> Collected {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    let reader = thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    Collected {
        text,
        reader: Some(reader),
    }
}

#[test]
fn out_of_file_descriptors_the_broker_warns_with_the_remedy_and_recovers() {
    let _gate = shared();
    let (broker, port) = Program::broker(0, "ulimit -n 32;");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // Each client costs the broker several descriptors; 40 of them cannot all fit in 32.
    // The kernel completes their connections anyway; the broker's accept() then fails.
    let crowd: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    broker.wait_for_output("ulimit -n");
    let stderr = broker.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");

    drop(crowd);
    let mut client = Client::connect(addr).unwrap();
    client.ping().expect("the broker serves clients again");
    client.subscribe("t", "s").unwrap();
    client.publish("t", "still here", "s").unwrap();
    let delivery = client.recv_timeout(TIMEOUT).unwrap().expect("a delivery");
    assert_eq!(delivery.message, "still here");
    // 40 clients are far below --max-clients: nobody may have been told "broker full".
    let stderr = broker.stderr();
    assert!(!stderr.contains("broker full"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Stopping

#[test]
fn stop_closes_every_connection_and_joins_every_thread() {
    let _gate = exclusive();
    let fds = open_fds();
    let threads = broker_threads();
    let broker = start_broker_with(with_write_timeout(Duration::from_secs(60)));
    let mut idle = subscribed(broker.addr(), "t", "idle");
    let mut half_line = Raw::connect(broker.addr());
    half_line.send("PUBLISH t half");
    // A stalled subscriber with a writer thread stuck writing to it, for good measure:
    // stop must not wait for the 60 s write timeout.
    let stalled = stalled(broker.addr(), "t", "stalled");
    let flooder = Raw::connect(broker.addr());
    let sender = flood(&flooder, "t", 192);
    wait_until_jammed(&stalled, broker.addr());
    // `idle` does not read either, so both subscribers of `t` fall behind.
    wait_until("both subscribers of t have a writer thread", || {
        stat(&broker, "subscribers_behind") == 2
    });
    // The accept thread, four connection threads, and the two writers.
    assert_eq!(broker_threads(), threads + 7);

    let (done, stopped) = mpsc::channel();
    thread::spawn(move || {
        broker.stop();
        let _ = done.send(());
    });
    stopped
        .recv_timeout(TIMEOUT)
        .expect("stop() returns in bounded time");
    assert_eq!(broker_threads(), threads, "every broker thread was joined");

    let _ = idle.read_to_eof();
    let _ = half_line.read_to_eof();
    // The flood thread may be blocked writing into a window the broker never reopened
    // before closing; the kernel would only give up on that after about a minute, so end
    // it from here.
    let _ = flooder.stream().shutdown(std::net::Shutdown::Both);
    sender.join().unwrap();
    drop((idle, half_line, stalled, flooder));
    wait_until("every file descriptor is closed", || nothing_new(&fds));
}

// ---------------------------------------------------------------------------------------
// The real clients when the broker goes away

#[test]
fn subscriber_with_reconnect_survives_a_broker_restart_and_resubscribes() {
    let _gate = shared();
    let (mut broker, port) = Program::broker(0, "");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let subscriber = Program::start(
        Command::new(env!("CARGO_BIN_EXE_subscriber"))
            .args(["sub1", "--topic", "t", "--reconnect", "--port"])
            .arg(port.to_string())
            .stdin(Stdio::null()),
    );
    wait_for_subscribers(addr, "t", 1);

    broker.kill();
    subscriber.wait_for_output("the broker went away (connection closed); reconnecting");
    subscriber.wait_for_output("trying again in 1s");
    let _broker = restart_on(port);
    wait_for_subscribers(addr, "t", 1);

    let mut publisher = Client::connect(addr).unwrap();
    publisher.publish("t", "after the restart", "pub1").unwrap();
    subscriber.wait_for_output(">> DELIVER t after the restart pub1 ");
    assert!(!subscriber.stderr().contains("panicked"));
}

/// Starts a broker on the port a killed one used. The port may linger briefly in the
/// kernel's tables; a few tries get past that.
fn restart_on(port: u16) -> Program {
    wait_until("the old broker's port is free", || {
        TcpListener::bind(("127.0.0.1", port)).is_ok()
    });
    Program::broker(port, "").0
}

fn wait_for_subscribers(addr: SocketAddr, topic: &str, count: usize) {
    wait_until(&format!("{count} subscriber(s) of {topic}"), || {
        Client::connect(addr)
            .and_then(|mut client| client.topics())
            .is_ok_and(|topics| topics.contains(&(topic.to_string(), count)))
    });
}

#[test]
fn publisher_exits_non_zero_with_a_message_when_the_broker_dies_mid_stream() {
    let _gate = shared();
    let (mut broker, port) = Program::broker(0, "");
    let mut publisher = Program::start(
        Command::new(env!("CARGO_BIN_EXE_publisher"))
            .args(["pub1", "--port", &port.to_string()])
            .stdin(Stdio::piped()),
    );
    let mut stdin = publisher.child.stdin.take().unwrap();
    let feeder = thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT;
        let mut n = 0u64;
        while Instant::now() < deadline {
            if writeln!(stdin, "t message {n}").is_err() {
                return; // the publisher has exited
            }
            n += 1;
        }
    });
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_until("the publisher has published a few messages", || {
        Client::connect(addr)
            .and_then(|mut client| client.stats())
            .is_ok_and(|stats| {
                stats
                    .iter()
                    .any(|(name, value)| name == "messages_published" && *value > 100)
            })
    });

    broker.kill();
    let code = publisher.exit_code();
    feeder.join().unwrap();
    assert_ne!(code, Some(0));
    assert_ne!(code, None, "killed by a signal rather than exiting");
    let stderr = publisher.stderr();
    assert!(stderr.contains("the broker went away"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_client_cut_off_as_a_slow_consumer_sees_the_connection_closed() {
    let _gate = shared();
    let broker = start_broker_with(with_write_timeout(Duration::from_millis(300)));
    let stalled = stalled(broker.addr(), "t", "stalled");
    let mut client = Client::from_stream(stalled).unwrap();
    let mut publisher = Raw::connect(broker.addr());
    let sender = flood(&publisher, "t", 256);
    publisher.expect("PONG flooded");
    sender.join().unwrap();
    wait_until("the slow consumer was cut off", || {
        stat(&broker, "slow_consumers_disconnected") == 1
    });
    let outcome = loop {
        match client.next_line(TIMEOUT) {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(outcome, Err(pubsub_lab::Error::Closed)),
        "{outcome:?}"
    );
}

/// `--reconnect` also covers the first connection: started before its broker, the
/// subscriber says why it waits, keeps trying, and subscribes once the broker is up.
#[test]
fn subscriber_with_reconnect_waits_for_a_broker_that_is_not_up_yet() {
    let _gate = shared();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let subscriber = Program::start(
        Command::new(env!("CARGO_BIN_EXE_subscriber"))
            .args(["sub1", "--topic", "t", "--reconnect", "--port"])
            .arg(port.to_string())
            .stdin(Stdio::null()),
    );
    subscriber.wait_for_output("connection refused");
    subscriber.wait_for_output("trying again in 1s");
    let _broker = restart_on(port);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for_subscribers(addr, "t", 1);
    let mut publisher = Client::connect(addr).unwrap();
    publisher.publish("t", "at last", "pub1").unwrap();
    subscriber.wait_for_output(">> DELIVER t at last pub1 ");
}

/// A subscriber cut off as a slow consumer is told that, not that the broker went away:
/// the broker is still running.
#[test]
fn a_subscriber_cut_off_as_a_slow_consumer_says_so() {
    let _gate = shared();
    let broker = start_broker_with(with_write_timeout(Duration::from_millis(300)));
    // Nobody reads the subscriber's stdout yet: once the pipe is full it stops reading its
    // socket, exactly like a subscriber on a terminal that was suspended.
    let mut subscriber = Command::new(env!("CARGO_BIN_EXE_subscriber"))
        .args(["slow", "--topic", "t", "--port"])
        .arg(broker.addr().port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = collect(subscriber.stderr.take().unwrap());
    wait_for_subscribers(broker.addr(), "t", 1);
    let mut publisher = Raw::connect(broker.addr());
    let sender = flood(&publisher, "t", 512);
    publisher.expect("PONG flooded");
    sender.join().unwrap();
    wait_until("the slow subscriber was cut off", || {
        stat(&broker, "slow_consumers_disconnected") == 1
    });
    // Now let it print what it had, see the end of its connection, and explain it.
    let mut drained = subscriber.stdout.take().unwrap();
    let drain = thread::spawn(move || std::io::copy(&mut drained, &mut std::io::sink()));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = subscriber.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = subscriber.kill();
            panic!("the subscriber did not exit: {}", stderr.text());
        }
        thread::sleep(Duration::from_millis(10));
    };
    drain.join().unwrap().unwrap();
    assert!(!status.success());
    stderr.finish();
    let stderr = stderr.text();
    assert!(
        stderr.contains("the broker closed our connection but is still running"),
        "{stderr}"
    );
    assert!(stderr.contains("slow consumer"), "{stderr}");
}

/// Against a full broker, `subscriber --reconnect` keeps trying, says why it waits, and
/// gets in once a slot frees.
#[test]
fn subscriber_with_reconnect_waits_out_a_full_broker() {
    let _gate = shared();
    let broker = start_broker_with(Config {
        max_clients: 1,
        ..Config::default()
    });
    let mut holder = Raw::connect(broker.addr());
    holder.sync();
    let subscriber = Program::start(
        Command::new(env!("CARGO_BIN_EXE_subscriber"))
            .args(["sub1", "--topic", "t", "--reconnect", "--port"])
            .arg(broker.addr().port().to_string())
            .stdin(Stdio::null()),
    );
    subscriber.wait_for_output(
        "the broker refused the connection: broker full (1 clients); trying again in 1s",
    );
    subscriber.wait_for_output("trying again in 2s");
    drop(holder);
    // The one slot is the subscriber's now, so ask the broker directly, not over TCP.
    wait_until("the subscriber got in", || {
        broker.topic_counts() == [("t".to_string(), 1)]
    });
    broker.publish("t", "in at last", "app").unwrap();
    subscriber.wait_for_output(">> DELIVER t in at last app ");
    assert!(!subscriber.stderr().contains("panicked"));
    assert!(!subscriber.stderr().contains("not connected"));
}

/// A publisher whose lines the broker refuses reads the `ERROR`s as they come and stops
/// with the broker's reason, instead of sending on until it is cut off as a slow
/// consumer and blaming the broker for going away.
#[test]
fn a_publisher_stops_with_the_brokers_reason_when_its_lines_are_refused() {
    let _gate = shared();
    let (_broker, port) = Program::broker(0, "");
    let mut publisher = Program::start(
        Command::new(env!("CARGO_BIN_EXE_publisher"))
            .args(["pub1", "--port", &port.to_string()])
            .stdin(Stdio::piped()),
    );
    let mut stdin = publisher.child.stdin.take().unwrap();
    let long_topic = "t".repeat(300);
    let feeder = thread::spawn(move || {
        for n in 0..200_000 {
            if writeln!(stdin, "{long_topic} message {n}").is_err() {
                return; // the publisher has stopped
            }
        }
    });
    let code = publisher.exit_code();
    feeder.join().unwrap();
    assert_eq!(code, Some(1));
    let stderr = publisher.stderr();
    assert!(
        stderr.contains(
            "publisher pub1: the broker refused: ERROR topic longer than 256 bytes: use a shorter topic"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("went away"), "{stderr}");
}
