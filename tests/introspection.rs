//! The commands a student types by hand to see what the broker is doing: `HELP`, `PING`,
//! `TOPICS`, `STATS`, `VERBOSE`, `QUIT`, and the broker's `--trace` view. None of them
//! may ever reach a client that did not ask for it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{start_broker, Raw, TIMEOUT};

/// Reads a multi-line reply up to its `END` line; returns the lines without the prefix.
fn multi_line(raw: &mut Raw, word: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = raw.line();
        if line == format!("END {word}") {
            return lines;
        }
        let rest = line
            .strip_prefix(&format!("{word} "))
            .unwrap_or_else(|| panic!("{line:?}"));
        lines.push(rest.to_string());
    }
}

#[test]
fn help_lists_every_command_then_ends() {
    let broker = start_broker();
    let mut raw = Raw::connect(broker.addr());
    raw.send("help\n");
    let lines = multi_line(&mut raw, "HELP");
    for command in [
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PUBLISH",
        "PING",
        "TOPICS",
        "STATS",
        "VERBOSE",
        "QUIT",
        "HELP",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(command)),
            "HELP does not mention {command}: {lines:#?}"
        );
    }
    raw.sync();
}

#[test]
fn ping_echoes_its_token() {
    let broker = start_broker();
    let mut raw = Raw::connect(broker.addr());
    raw.send("PING\nping abc\n");
    raw.expect("PONG");
    raw.expect("PONG abc");
}

#[test]
fn topics_counts_subscribers_per_topic() {
    let broker = start_broker();
    let mut a = Raw::connect(broker.addr());
    a.send("SUBSCRIBE weather a\nSUBSCRIBE news a\n");
    let mut b = Raw::connect(broker.addr());
    b.send("SUBSCRIBE weather b\n");
    b.sync();
    a.sync();
    a.send("TOPICS\n");
    assert_eq!(multi_line(&mut a, "TOPICS"), ["news 1", "weather 2"]);
    drop(b);
    common::wait_until("b is gone", || {
        broker.topic_counts().len() == 2 && broker.topic_counts()[1].1 == 1
    });
    a.send("UNSUBSCRIBE news a\nUNSUBSCRIBE weather a\nTOPICS\n");
    assert_eq!(multi_line(&mut a, "TOPICS"), Vec::<String>::new());
}

#[test]
fn stats_reports_every_counter() {
    let broker = start_broker();
    let mut sub = Raw::connect(broker.addr());
    sub.send("SUBSCRIBE t s\n");
    sub.sync();
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH t one p\nPUBLISH t two p\nPUBLISH nobody three p\nOOPS\n");
    publisher.expect("ERROR unknown command 'OOPS': expected SUBSCRIBE, UNSUBSCRIBE or PUBLISH (send HELP for all commands)");
    publisher.send("STATS\n");
    let stats = multi_line(&mut publisher, "STATS");
    let value = |name: &str| -> u64 {
        let line = stats
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {stats:#?}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    assert_eq!(value("connections_current"), 2);
    assert_eq!(value("connections_total"), 2);
    assert_eq!(value("topics"), 1);
    assert_eq!(value("subscriptions"), 1);
    assert_eq!(value("messages_published"), 3);
    assert_eq!(value("deliveries"), 2);
    assert_eq!(value("errors"), 1);
    assert_eq!(value("slow_consumers_disconnected"), 0);
    assert_eq!(value("connections_refused"), 0);
    assert!(value("uptime_seconds") < 3600);
}

#[test]
fn verbose_mode_acknowledges_every_accepted_command() {
    let broker = start_broker();
    let mut raw = Raw::connect(broker.addr());
    raw.send("VERBOSE on\n");
    raw.expect("OK VERBOSE on");
    raw.send("SUBSCRIBE weather me\n");
    raw.expect("OK SUBSCRIBE weather");
    raw.send("PUBLISH weather hi me\n");
    assert_eq!(raw.delivery(), "DELIVER weather hi me");
    raw.expect("OK PUBLISH weather 1");
    raw.send("PUBLISH empty hi me\n");
    raw.expect("OK PUBLISH empty 0");
    raw.send("UNSUBSCRIBE weather me\n");
    raw.expect("OK UNSUBSCRIBE weather");
    raw.send("VERBOSE off\n");
    raw.expect("OK VERBOSE off");
    raw.send("SUBSCRIBE weather me\n");
    raw.sync(); // no OK before the PONG
}

#[test]
fn verbose_mode_is_per_connection_and_off_by_default() {
    let broker = start_broker();
    let mut loud = Raw::connect(broker.addr());
    loud.send("VERBOSE on\n");
    loud.expect("OK VERBOSE on");
    let mut quiet = Raw::connect(broker.addr());
    quiet.send("SUBSCRIBE t q\nPUBLISH t hi q\n");
    assert_eq!(quiet.delivery(), "DELIVER t hi q");
    quiet.sync(); // no OK lines came before the PONG
}

#[test]
fn quit_says_bye_and_closes() {
    let broker = start_broker();
    let mut raw = Raw::connect(broker.addr());
    raw.send("SUBSCRIBE t me\nQUIT\nPING never-answered\n");
    raw.expect("BYE");
    assert_eq!(raw.read_to_eof(), "");
    common::wait_until("the connection is cleaned up", || {
        broker.topic_counts().is_empty()
    });
}

#[test]
fn error_replies_for_extension_commands_show_their_syntax() {
    let broker = start_broker();
    let mut raw = Raw::connect(broker.addr());
    raw.send("VERBOSE maybe\n");
    raw.expect("ERROR VERBOSE takes on or off, not 'maybe': send VERBOSE on or VERBOSE off");
    raw.send("VERBOSE on now\n");
    raw.expect("ERROR wrong number of arguments: expected VERBOSE on|off");
    raw.send("TOPICS please now\n");
    raw.expect("ERROR wrong number of arguments: expected TOPICS [filter]");
    raw.sync();
}

/// A broker binary whose stderr lines arrive on a channel, killed when dropped.
struct TracedBroker {
    child: Child,
    port: u16,
    stderr: mpsc::Receiver<String>,
}

impl TracedBroker {
    fn start() -> TracedBroker {
        TracedBroker::logging("warn", &["--trace"])
    }

    /// A broker logging at `level` (`RUST_LOG`), with `args` besides.
    fn logging(level: &str, args: &[&str]) -> TracedBroker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
            .args(["--port", "0", "--no-http"])
            .args(args)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the broker binary");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap();
        let (send, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        TracedBroker {
            child,
            port: port.parse().unwrap(),
            stderr,
        }
    }

    /// The next stderr line that contains `needle`.
    fn log_line_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let left = deadline
                .saturating_duration_since(std::time::Instant::now())
                .max(Duration::from_millis(1));
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => panic!("the trace never showed {needle:?}"),
            }
        }
    }
}

impl Drop for TracedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A publisher keeps its burst's buffers (a read buffer grown on the heap, its publisher)
/// while it sends, and gives them back once it has sent nothing for a while; then it
/// publishes again as before.
#[test]
fn a_publisher_gone_quiet_gives_its_burst_s_buffers_back() {
    let broker = TracedBroker::logging("pubsub_lab::session=debug", &[]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], broker.port));
    let mut sub = Raw::connect(addr);
    sub.send("SUBSCRIBE weather sub1\n");
    sub.sync();
    let mut publisher = Raw::connect(addr);
    // More than the reader's first buffer holds: it grows onto the heap.
    let burst = "PUBLISH weather a message long enough to need a bigger buffer pub1\n".repeat(20);
    publisher.send(&burst);
    publisher.sync();
    let quiet = broker.log_line_with("is quiet: its burst's buffers are given back");
    assert!(
        quiet.contains("#2"),
        "the publisher's connection is #2: {quiet}"
    );
    for _ in 0..20 {
        assert_eq!(
            sub.delivery(),
            "DELIVER weather a message long enough to need a bigger buffer pub1"
        );
    }
    publisher.send("PUBLISH weather after the pause pub1\n");
    assert_eq!(sub.delivery(), "DELIVER weather after the pause pub1");
}

#[test]
fn trace_shows_each_line_with_direction_connection_and_id_aligned() {
    let broker = TracedBroker::start();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], broker.port));
    let mut sub = Raw::connect(addr);
    sub.send("SUBSCRIBE weather sub1\n");
    sub.sync();
    let mut publisher = Raw::connect(addr);
    publisher.send("PUBLISH weather Rainy day ahead! pub1\n");
    let delivered = sub.line();

    // `HH:MM:SS.mmm  #1   sub1     <- SUBSCRIBE weather sub1`: the columns line up.
    let subscribe = broker.log_line_with("<- SUBSCRIBE weather sub1");
    let publish = broker.log_line_with("<- PUBLISH weather Rainy day ahead! pub1");
    let deliver = broker.log_line_with("-> DELIVER weather");
    let after_time = |line: &str| {
        line.split_once("  ")
            .map(|(_, rest)| rest.to_string())
            .unwrap()
    };
    assert_eq!(
        after_time(&subscribe),
        "#1   sub1     <- SUBSCRIBE weather sub1"
    );
    assert_eq!(
        after_time(&publish),
        "#2   pub1     <- PUBLISH weather Rainy day ahead! pub1"
    );
    assert_eq!(
        after_time(&deliver),
        format!("#1   sub1     -> {delivered}")
    );
}

/// With UDP and the web on, `STATS` lists every counter once, the UDP ones among them, and
/// the web's `GET /stats` lists exactly the same names.
#[test]
fn stats_with_every_listener_lists_each_counter_once() {
    let broker = pubsub_lab::Broker::builder()
        .line("127.0.0.1:0")
        .udp("127.0.0.1:0")
        .web("127.0.0.1:0")
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let mut raw = Raw::connect(broker.addr());
    raw.send("STATS\n");
    let names: Vec<String> = multi_line(&mut raw, "STATS")
        .iter()
        .map(|line| line.split(' ').next().unwrap().to_string())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "a counter listed twice: {names:?}"
    );
    assert!(names.iter().any(|n| n == "udp_datagrams_in"), "{names:?}");
    let mut http = common::RawHttp::connect(&broker);
    let answer = http.ask(&common::get("/stats"));
    assert_eq!(answer.status, 200);
    let body = pubsub_lab::json::parse(answer.body.trim_end()).unwrap();
    let pubsub_lab::json::Value::Object(members) = body else {
        panic!("not an object: {}", answer.body);
    };
    let web_names: Vec<String> = members.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(
        web_names, names,
        "GET /stats and STATS list the same counters"
    );
}
