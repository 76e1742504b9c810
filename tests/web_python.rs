//! The web against the clients students bring: Python's `requests` running the Flask
//! labsheet's publisher logic, Python's `websocket-client`, and kn-sock's `PubSubClient`
//! (all from PyPI; `.ci/run` installs them), the other side of each test, not written to
//! agree with us.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{subscribed, Tool};
use pubsub_lab::Config;

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/web")
        .join(name)
        .display()
        .to_string()
}

fn python() -> Command {
    let mut command = Command::new("python3");
    command.stdin(Stdio::null());
    command
}

/// The Flask labsheet's publisher gets 404 while nobody subscribes, then 200, and the TCP
/// subscriber receives its message.
#[test]
fn the_flask_labsheets_publisher_works_unchanged() {
    if !common::require_tool(Tool::Python(&["requests"]), "pip install requests") {
        return;
    }
    let broker = common::start_web_broker();
    let base = format!("http://{}", broker.web_addr().unwrap());
    let run = || {
        let output = python()
            .args([
                &script("flask_publisher.py"),
                &base,
                "weather",
                "Rainy day ahead!",
                "pub1",
            ])
            .output()
            .expect("python3 (and pip install requests: .ci/run does)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(run(), "404 Topic 'weather' does not exist\n");
    let mut sub = subscribed(broker.addr(), "weather", "sub1");
    assert_eq!(run(), "200 Message published to topic 'weather'\n");
    assert_eq!(sub.delivery(), "DELIVER weather Rainy day ahead! pub1");
}

/// websocket-client's checks pass: masked and fragmented frames, ping, the close
/// handshake, the size limit, and a delivery from a TCP publisher.
#[test]
fn an_independent_websocket_client_passes() {
    if !common::require_tool(Tool::Python(&["websocket"]), "pip install websocket-client") {
        return;
    }
    let broker = common::start_web_broker_with(Config {
        max_line_bytes: 4096,
        ..Config::default()
    });
    let url = format!("ws://{}/ws", broker.web_addr().unwrap());
    let mut child = python()
        .args([&script("ws_client.py"), &url, "4096"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (and pip install websocket-client: .ci/run does)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        seen.push(line);
    }
    let mut publisher = common::Raw::connect(broker.addr());
    publisher.send("PUBLISH weather from tcp pubtcp\n");
    publisher.sync();
    seen.extend(lines.map(Result::unwrap));
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "websocket-client failed after {seen:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert!(seen.iter().all(|line| line.starts_with("ok ")), "{seen:?}");
}

/// Messages cross every way in and out: the UDP tutorial's datagram and a kn-sock publish
/// reach a WebSocket subscriber (websocket-client, as a browser would be), and a WebSocket
/// publish reaches kn-sock's client; a TCP subscriber sees the same.
#[test]
fn datagrams_and_kn_sock_reach_a_websocket_and_back() {
    if !common::require_tool(
        Tool::Python(&["websocket", "kn_sock", "requests"]),
        "pip install websocket-client requests && pip install --no-deps kn-sock==0.3.0",
    ) {
        return;
    }
    let broker = pubsub_lab::Broker::builder()
        .line("127.0.0.1:0")
        .udp("127.0.0.1:0")
        .web("127.0.0.1:0")
        .bind()
        .expect("bind 127.0.0.1:0 for TCP, UDP and the web")
        .spawn()
        .expect("start the broker");
    let mut classic = subscribed(broker.addr(), "weather", "classic");
    let url = format!("ws://{}/ws", broker.web_addr().unwrap());
    let output = python()
        .args([
            &script("crossing.py"),
            &url,
            &broker.addr().port().to_string(),
            &broker.udp_addr().unwrap().port().to_string(),
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("python3 (and pip install websocket-client, kn-sock: .ci/run does)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the crossing failed after:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(
        classic
            .delivery()
            .starts_with("DELIVER weather ready json:127.0.0.1:"),
        "kn-sock's own message"
    );
    assert_eq!(
        classic.delivery(),
        "DELIVER weather from the browser browser1"
    );
}
