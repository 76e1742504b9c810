//! The `troublemaker` program: each mode runs against a broker in this process, says what
//! it does, and stops by itself; the broker survives every one of them. The stall mode is
//! shown being cut off by the broker as a slow consumer, as lab 5 asks students to watch,
//! and so is the slow mode, which reads but cannot keep up with a flood.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{start_broker, start_broker_with, start_udp_broker, stat, wait_until, Raw, TIMEOUT};
use pubsub_lab::{BrokerHandle, Config};

/// A finished troublemaker run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Kills the troublemaker if the test fails while it still runs.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(broker: &BrokerHandle, args: &[&str]) -> (Running, [JoinHandle<String>; 2]) {
    start_on(broker.addr().port(), args)
}

/// As [`start`], against `port` (the broker's UDP port, for the udp-* modes).
fn start_on(port: u16, args: &[&str]) -> (Running, [JoinHandle<String>; 2]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_troublemaker"))
        .args(args)
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start troublemaker");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let output = [
        read_all(Box::new(child.stdout.take().unwrap())),
        read_all(Box::new(child.stderr.take().unwrap())),
    ];
    (Running(child), output)
}

/// Waits for the troublemaker to stop by itself, within `limit`.
fn finish(mut running: Running, output: [JoinHandle<String>; 2], limit: Duration) -> Run {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    drop(running);
    let [stdout, stderr] = output.map(|reader| reader.join().unwrap());
    assert!(
        status.is_some(),
        "troublemaker did not stop by itself\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    Run {
        code: status.and_then(|status| status.code()),
        stdout,
        stderr,
    }
}

/// Runs one mode to its end and checks it succeeded and said it was done.
fn run(broker: &BrokerHandle, mode: &str, args: &[&str]) -> Run {
    let mut all = vec![mode];
    all.extend_from_slice(args);
    let (running, output) = start(broker, &all);
    let run = finish(running, output, TIMEOUT);
    let context = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, Some(0), "{context}");
    assert!(
        run.stdout
            .lines()
            .next()
            .is_some_and(|l| l.starts_with(&format!("{mode}: "))),
        "{context}"
    );
    assert!(run.stdout.contains(&format!("{mode}: done")), "{context}");
    assert!(!run.stderr.contains("panicked"), "{context}");
    run
}

/// The broker still serves a clean subscriber and publisher.
fn assert_broker_works(addr: SocketAddr) {
    let mut subscriber = Raw::connect(addr);
    subscriber.send("SUBSCRIBE after sub\n");
    subscriber.sync();
    subscriber.send("PUBLISH after still fine sub\n");
    assert_eq!(subscriber.delivery(), "DELIVER after still fine sub");
}

#[test]
fn stall_is_cut_off_by_the_broker_and_says_so() {
    let broker = start_broker_with(Config {
        write_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let (running, output) = start(&broker, &["stall", "--duration", "20s"]);
    wait_until("the stalled subscriber is subscribed", || {
        broker.topic_counts() == [("weather".to_string(), 1)]
    });
    // 8 MiB for a subscriber that never reads: more than the kernel buffers hold.
    let mut publisher = TcpStream::connect(broker.addr()).unwrap();
    let body = "x".repeat(32 * 1024);
    let flood: String = (0..256)
        .map(|i| format!("PUBLISH weather {i}{body} p\n"))
        .collect();
    let sender = thread::spawn(move || publisher.write_all(flood.as_bytes()));
    wait_until("the broker cut the stalled subscriber off", || {
        stat(&broker, "slow_consumers_disconnected") == 1
    });
    let run = finish(running, output, TIMEOUT);
    sender.join().unwrap().unwrap();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("stall: stall was cut off by the broker"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("1 of 1 stalled connection(s) cut off"),
        "{}",
        run.stdout
    );
    assert!(broker.topic_counts().is_empty());
    assert_broker_works(broker.addr());
}

#[test]
fn slow_reads_what_is_published_one_line_at_a_time_and_stops() {
    let broker = start_broker();
    let (running, output) = start(&broker, &["slow", "--duration", "3s", "--every", "10ms"]);
    wait_until("the slow subscriber is subscribed", || {
        broker.topic_counts() == [("weather".to_string(), 1)]
    });
    let mut publisher = Raw::connect(broker.addr());
    for i in 0..5 {
        publisher.send(&format!("PUBLISH weather drizzle{i} p\n"));
    }
    publisher.sync();
    let run = finish(running, output, TIMEOUT);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("slow: done after"), "{}", run.stdout);
    assert!(run.stdout.contains("read 5 line(s)"), "{}", run.stdout);
}

/// A `slow` reader that cannot keep up with a flood is cut off by the broker even though
/// it never stops reading, and it says so as soon as it happens (not minutes later, after
/// reading everything its kernel had buffered), with what it read and what the broker said.
#[test]
fn slow_that_does_not_keep_up_is_cut_off_and_says_when() {
    let broker = start_broker_with(Config {
        write_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let (running, output) = start(&broker, &["slow", "--every", "200ms", "--duration", "60s"]);
    wait_until("the slow subscriber is subscribed", || {
        broker.topic_counts() == [("weather".to_string(), 1)]
    });
    // Publish until the broker gives up on it: five lines a second cannot keep up.
    let stop = Arc::new(AtomicBool::new(false));
    let mut publisher = TcpStream::connect(broker.addr()).unwrap();
    let sender = {
        let stop = Arc::clone(&stop);
        let line = format!("PUBLISH weather {} p\n", "x".repeat(32 * 1024));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && publisher.write_all(line.as_bytes()).is_ok() {}
        })
    };
    wait_until("the broker cut the slow subscriber off", || {
        stat(&broker, "slow_consumers_disconnected") == 1
    });
    stop.store(true, Ordering::Relaxed);
    let run = finish(running, output, TIMEOUT);
    sender.join().unwrap();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("slow: slow was cut off by the broker after")
            && run
                .stdout
                .contains("without an ERROR line (its log says why)"),
        "slow did not say it was cut off, and why it was not told:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("; cut off by the broker"),
        "{}",
        run.stdout
    );
    assert_broker_works(broker.addr());
}

#[test]
fn halfline_holds_half_a_command_then_the_broker_joins_the_halves() {
    let broker = start_broker();
    let run = run(&broker, "halfline", &["--duration", "1s", "--conns", "2"]);
    assert!(
        run.stdout.contains("'OK PUBLISH weather 0'"),
        "{}",
        run.stdout
    );
    assert_eq!(stat(&broker, "messages_published"), 2);
    assert_broker_works(broker.addr());
}

#[test]
fn flood_publishes_until_its_count_and_the_broker_confirms_them() {
    let broker = start_broker();
    let run = run(&broker, "flood", &["--count", "2000", "--conns", "2"]);
    assert!(
        run.stdout.contains("published 4000 messages"),
        "{}",
        run.stdout
    );
    assert_eq!(stat(&broker, "messages_published"), 4000);
    assert_broker_works(broker.addr());
}

#[test]
fn garbage_is_answered_with_errors_and_the_broker_carries_on() {
    let broker = start_broker();
    let run = run(&broker, "garbage", &["--count", "200", "--seed", "7"]);
    assert!(run.stdout.contains("seed 7"), "{}", run.stdout);
    assert!(
        run.stdout.contains("the broker still answers PING"),
        "{}",
        run.stdout
    );
    assert!(stat(&broker, "errors") > 0);
    assert_broker_works(broker.addr());
}

#[test]
fn churn_subscribes_and_unsubscribes_until_its_count_and_leaves_nothing() {
    let broker = start_broker();
    let run = run(&broker, "churn", &["--count", "1000", "--conns", "3"]);
    assert!(
        run.stdout.contains("3000 subscribe/unsubscribe pairs"),
        "{}",
        run.stdout
    );
    wait_until("no subscription is left", || {
        broker.topic_counts().is_empty()
    });
    assert_broker_works(broker.addr());
}

#[test]
fn dupid_shows_that_every_connection_with_the_same_id_receives() {
    let broker = start_broker();
    let run = run(
        &broker,
        "dupid",
        &["--conns", "3", "--count", "2", "--every", "10ms"],
    );
    assert!(
        run.stdout.contains("the broker counts 3 subscriber(s)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("every connection received every message"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_mode_stops_by_itself_after_its_duration() {
    let broker = start_broker();
    let started = Instant::now();
    run(&broker, "stall", &["--duration", "500ms"]);
    assert!(started.elapsed() >= Duration::from_millis(500));
}

/// udp-reflect plays a forged source against a broker with a retained store: it gets
/// cookies back, never the store, and never more bytes than it sent; no lease starts.
#[test]
fn udp_reflect_gets_no_more_than_it_sent() {
    // One keeper holds the whole store: more than one id's share by default.
    let broker = start_udp_broker(Config {
        max_retained_bytes_per_client: usize::MAX,
        ..Config::default()
    });
    let mut keeper = Raw::connect(broker.addr());
    let body = "x".repeat(10_000);
    for n in 0..50 {
        keeper.send(&format!("RETAIN r/{n} {body} keeper\n"));
    }
    keeper.sync();
    let port = broker.udp_addr().unwrap().port();
    let (running, output) = start_on(port, &["udp-reflect", "--count", "10"]);
    let run = finish(running, output, TIMEOUT);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "udp-reflect: done: sent 12380 bytes in 30 datagrams; received 480 bytes \
             (x0.04): 20 COOKIE, 0 DELIVER"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(stat(&broker, "udp_subscribers"), 0);
    assert_broker_works(broker.addr());
}

/// udp-flood sends datagrams of 13,000 PINGs from a proven address: each gets 8 PONGs.
#[test]
fn udp_flood_gets_a_few_pongs_per_datagram() {
    let broker = start_udp_broker(Config::default());
    let port = broker.udp_addr().unwrap().port();
    let (running, output) = start_on(port, &["udp-flood", "--count", "3"]);
    let run = finish(running, output, TIMEOUT);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "udp-flood: done: sent 3 datagrams of 13,000 PINGs; 24 PONGs came back (8.0 per \
             datagram)"
        ),
        "{}",
        run.stdout
    );
    assert_broker_works(broker.addr());
}

/// retained-flood fills the store until the broker refuses a message; resubscribe then
/// reads the whole store (twice `--max-pending-bytes`) round after round, streamed at its
/// pace, and is never cut off.
#[test]
fn retained_flood_fills_the_store_and_resubscribe_reads_it_whole_every_round() {
    let broker = start_broker_with(Config {
        max_retained_bytes: 2 * 1024 * 1024,
        max_pending_bytes: 1024 * 1024,
        sys_interval: Duration::ZERO,
        ..Config::default()
    });
    let flood = run(&broker, "retained-flood", &["--topic", "store"]);
    assert!(
        flood.stdout.contains(
            "the store is full, the broker said 'ERROR no room for another retained message"
        ),
        "{}",
        flood.stdout
    );
    let kept = stat(&broker, "retained");
    assert!((120..128).contains(&kept), "{kept} of 16 KiB in 2 MiB");
    let again = run(&broker, "resubscribe", &["--count", "3"]);
    for said in [
        format!("resubscribe: round 1 brought {kept} message(s)"),
        "resubscribe: done: 3 round(s)".to_string(),
        format!(", {} message(s) and", 3 * kept),
        "never cut off".to_string(),
    ] {
        assert!(again.stdout.contains(&said), "{said}\n{}", again.stdout);
    }
    assert_eq!(stat(&broker, "slow_consumers_disconnected"), 0);
    assert_broker_works(broker.addr());
}
