//! Lab 04 checks: cleaning up when a subscriber leaves. However a connection ends (QUIT,
//! closing the socket, a reset), the broker must forget its subscriptions, or it keeps
//! sending to a socket nobody reads and `TOPICS` lists subscribers that are gone.
//! `Session::leave_all_topics` (the lab 04 region in src/session.rs) does it; `Drop` for
//! `Session` calls it however the connection's thread ends. These checks disconnect real
//! clients in different ways and ask the broker, over the protocol, what it still holds.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use pubsub_lab::BrokerHandle;

/// How long a check waits for any one line, or for the broker to forget a client.
const WAIT: Duration = Duration::from_secs(5);

/// Where the work of this lab is.
const REGION: &str = "Session::leave_all_topics in src/session.rs";

/// After QUIT, the subscriber is gone from every topic it had subscribed to.
#[test]
fn a_subscriber_that_quits_leaves_every_topic() {
    let broker = common::start_broker();
    let mut sub = Peer::connect(&broker, "sub1");
    sub.send("SUBSCRIBE weather sub1\nSUBSCRIBE news sub1\nSUBSCRIBE sports sub1\n");
    sub.send("QUIT\n");
    assert_eq!(sub.line("BYE"), "BYE");
    // The broker closes the connection only after its cleanup has run.
    sub.expect_closed();
    let mut observer = Peer::connect(&broker, "observer");
    assert_eq!(
        observer.topics(),
        Vec::<String>::new(),
        "sub1 subscribed to weather, news and sports, then quit and the broker closed its \
         connection; TOPICS must then list none of them: {REGION} must remove the \
         connection from every topic in self.subscriptions"
    );
}

/// A subscriber that just closes its socket, without QUIT, is forgotten too.
#[test]
fn a_subscriber_that_vanishes_leaves_every_topic() {
    let broker = common::start_broker();
    let mut sub = Peer::connect(&broker, "sub1");
    sub.send("SUBSCRIBE weather sub1\nSUBSCRIBE news sub1\n");
    sub.sync();
    drop(sub);
    let mut observer = Peer::connect(&broker, "observer");
    observer.wait_for_topics(
        &[],
        "sub1 subscribed to weather and news, then closed its socket without QUIT",
    );
}

/// When one of two subscribers leaves, the other stays subscribed and still receives messages.
#[test]
fn the_other_subscribers_stay() {
    let broker = common::start_broker();
    let mut stays = Peer::connect(&broker, "stays");
    stays.send("SUBSCRIBE weather stays\n");
    stays.sync();
    let mut leaves = Peer::connect(&broker, "leaves");
    leaves.send("SUBSCRIBE weather leaves\nQUIT\n");
    assert_eq!(leaves.line("BYE"), "BYE");
    leaves.expect_closed();
    let mut observer = Peer::connect(&broker, "observer");
    observer.wait_for_topics(
        &["weather 1"],
        "`stays` and `leaves` subscribed to weather, then `leaves` quit; only `leaves` may \
         be removed, and only from its own topics",
    );
    observer.send("PUBLISH weather still here observer\n");
    let line = stays.line("the DELIVER line published after `leaves` quit");
    assert!(
        line.starts_with("DELIVER weather still here observer "),
        "`stays` should still receive weather messages, got {line:?}"
    );
}

/// Once everyone has left, STATS shows no subscriptions and only the connection asking.
#[test]
fn stats_return_to_zero_when_everyone_has_left() {
    let broker = common::start_broker();
    for name in ["sub1", "sub2", "sub3"] {
        let mut sub = Peer::connect(&broker, name);
        sub.send(&format!(
            "SUBSCRIBE weather {name}\nSUBSCRIBE {name}-inbox {name}\n"
        ));
        sub.sync();
        // Half-close: the broker sees end of file, cleans up, and closes its side.
        sub.writer.shutdown(Shutdown::Write).expect("half-close");
        sub.expect_closed();
    }
    let mut observer = Peer::connect(&broker, "observer");
    let wanted = [
        ("subscriptions", "0"),
        ("topics", "0"),
        ("connections_current", "1"),
    ];
    // The connection count drops just after the socket closes, so this may take a moment.
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = observer.stats();
        let value = |name: &str| {
            stats
                .iter()
                .find(|(counter, _)| counter == name)
                .map_or("missing".to_string(), |(_, value)| value.clone())
        };
        let wrong: Vec<String> = wanted
            .iter()
            .filter(|(name, expected)| value(name) != *expected)
            .map(|(name, expected)| format!("{name} is {} (expected {expected})", value(name)))
            .collect();
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "three subscribers came and left, but {WAIT:?} later STATS says {}; the cleanup \
             in Drop for Session must run to the end (does {REGION} panic?)",
            wrong.join(", ")
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// One client of the broker, reading lines with a time limit so a missing line fails
/// the check instead of hanging it.
struct Peer {
    name: &'static str,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Peer {
    fn connect(broker: &BrokerHandle, name: &'static str) -> Peer {
        let writer = TcpStream::connect(broker.addr()).expect("connect to the broker");
        writer
            .set_read_timeout(Some(WAIT))
            .expect("set a read timeout");
        let reader = BufReader::new(writer.try_clone().expect("clone the socket"));
        Peer {
            name,
            writer,
            reader,
        }
    }

    fn send(&mut self, text: &str) {
        if let Err(error) = self.writer.write_all(text.as_bytes()) {
            panic!(
                "{} could not send: {error}. The broker closed the connection; did it \
                 panic? (look for a `client-N` thread panic)",
                self.name
            );
        }
    }

    /// PING, and wait for its PONG: every line sent before has been handled.
    fn sync(&mut self) {
        self.send("PING sync\n");
        assert_eq!(self.line("the PONG of its PING"), "PONG sync");
    }

    /// Reads one line; `waiting_for` says what was expected, for the failure message.
    fn line(&mut self, waiting_for: &str) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!(
                "{} waited for {waiting_for}, but the broker closed the connection; did it \
                 panic? (look for a `client-N` thread panic)",
                self.name
            ),
            Ok(_) => line.strip_suffix('\n').unwrap_or(&line).to_string(),
            Err(_) => panic!(
                "{} waited {WAIT:?} for {waiting_for}, but no line came",
                self.name
            ),
        }
    }

    /// Waits for the broker to close this connection, which it does after its cleanup.
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        if let Err(error) = self.reader.read_to_end(&mut rest) {
            panic!(
                "the broker did not close {}'s connection within {WAIT:?} ({error}): the \
                 cleanup in Drop for Session did not finish; does {REGION} panic? (look \
                 for a `client-N` thread panic)",
                self.name
            );
        }
    }

    /// `TOPICS`, as `<topic> <subscribers>` lines.
    fn topics(&mut self) -> Vec<String> {
        self.send("TOPICS\n");
        self.lines_until("END TOPICS", "TOPICS ")
    }

    /// `STATS`, as (name, value) pairs.
    fn stats(&mut self) -> Vec<(String, String)> {
        self.send("STATS\n");
        self.lines_until("END STATS", "STATS ")
            .into_iter()
            .filter_map(|line| {
                let (name, value) = line.split_once(' ')?;
                Some((name.to_string(), value.to_string()))
            })
            .collect()
    }

    fn lines_until(&mut self, end: &str, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line(&format!("`{end}`"));
            if line == end {
                return lines;
            }
            lines.push(line.strip_prefix(prefix).unwrap_or(&line).to_string());
        }
    }

    /// Asks TOPICS until it lists exactly `expected`, or fails after [`WAIT`]. The broker
    /// cleans up on the leaving client's own thread, which this client cannot watch.
    fn wait_for_topics(&mut self, expected: &[&str], story: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut topics = self.topics();
            topics.sort();
            if topics == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{story}. {WAIT:?} later TOPICS still says {topics:?} instead of \
                 {expected:?}: when a connection ends, {REGION} must remove it from every \
                 topic it subscribed to"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}
