//! `subscriber --durable` and `publisher --confirm`, run for real against a broker.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output};

use common::{start_broker, Raw};

fn run(binary: &str, addr: SocketAddr, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(binary)
        .args(args)
        .args(["--port", &addr.port().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the binary");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    // Bounded: each run below ends by itself within the client's own timeouts.
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The publisher waits for each confirm; the durable subscriber prints each MESSAGE and
/// acknowledges it, so a second run carries on where the first stopped.
#[test]
fn a_durable_subscriber_run_twice_gets_every_message_once_and_the_publisher_sees_confirms() {
    let broker = start_broker();
    let mut first = Raw::connect(broker.addr());
    first.send("DURABLE orders sub1\n");
    first.expect("OK DURABLE orders 0");
    drop(first);

    let published = run(
        env!("CARGO_BIN_EXE_publisher"),
        broker.addr(),
        &["pub1", "--confirm"],
        "orders one\norders two\norders three\n",
    );
    let said = text(&published.stderr);
    assert!(published.status.success(), "{said}");
    assert!(
        said.contains("published 3 message(s), 3 confirmed"),
        "{said}"
    );

    let subscriber = env!("CARGO_BIN_EXE_subscriber");
    let args = ["sub1", "--durable", "--topic", "orders", "--count", "2"];
    let once = run(subscriber, broker.addr(), &args, "");
    let lines = text(&once.stdout);
    let messages: Vec<&str> = lines
        .lines()
        .filter(|l| l.starts_with(">> MESSAGE "))
        .collect();
    assert_eq!(messages.len(), 2, "{lines}\n{}", text(&once.stderr));
    assert!(messages[0].contains(" orders one pub1 "), "{lines}");
    assert!(messages[1].contains(" orders two pub1 "), "{lines}");
    assert!(text(&once.stderr).contains("durable subscription to orders: 3 message(s) pending"));

    let args = ["sub1", "--durable", "--topic", "orders", "--count", "1"];
    let twice = run(subscriber, broker.addr(), &args, "");
    let lines = text(&twice.stdout);
    assert!(
        lines.contains(" orders three pub1 ") && !lines.contains(" orders one "),
        "the first run acknowledged what it printed, and only that: {lines}"
    );
}

/// A broker refuses an fsync policy it does not know, naming the choices.
#[test]
fn the_broker_refuses_an_unknown_fsync_policy() {
    let output = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["--port", "0", "--fsync", "sometimes"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = text(&output.stderr);
    assert!(
        said.contains("'sometimes' is not an fsync policy: use always, interval or never"),
        "{said}"
    );
}

/// `broker --salvage`: a log damaged in the middle stops a plain start, naming the flag;
/// with the flag the broker starts, keeps the intact records, and says what it moved where.
#[test]
fn the_broker_starts_from_a_damaged_log_only_with_salvage_and_says_what_it_lost() {
    use std::io::{BufRead, BufReader, Read};
    let dir = std::env::temp_dir().join(format!("pubsub-lab-salvage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let segment = dir.join("00000001.log");
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    for record in [
        "START 1\n",
        "DURABLE sub1 orders\n",
        "MESSAGE 1 sub1 orders orders pub1 2025-03-14 10:30:00 one\n",
        "MESSAGE 2 sub1 orders orders pub1 2025-03-14 10:30:00 two\n",
        "MESSAGE 3 sub1 orders orders pub1 2025-03-14 10:30:00 three\n",
    ] {
        starts.push(bytes.len());
        let crc = pubsub_lab::durable::crc32::crc32(record.as_bytes());
        bytes.extend_from_slice(&(record.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(record.as_bytes());
    }
    bytes[starts[3] + 8 + 40] ^= 0x01; // inside MESSAGE 2's payload
    std::fs::write(&segment, &bytes).unwrap();
    let broker = env!("CARGO_BIN_EXE_broker");
    let common = ["--port", "0", "--no-http", "--sys-interval", "0"];
    let refused = Command::new(broker)
        .args(common)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let said = text(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("CRC-32 does not match") && said.contains("start the broker with --salvage"),
        "{said}"
    );

    let mut child = Command::new(broker)
        .args(common)
        .arg("--data-dir")
        .arg(&dir)
        .arg("--salvage")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut said = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(first.contains("listening on"), "{first}\n{said}");
    assert!(
        said.contains("salvage: skipped damaged bytes of the log")
            && said.contains("what looks like MESSAGE seq 2")
            && said.contains("1 durable subscription(s) holding 2 message(s)")
            && said.contains(&format!(
                "{}",
                dir.join("quarantine").join("00000001.log.at-").display()
            )),
        "{said}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
