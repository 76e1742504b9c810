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
