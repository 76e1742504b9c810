//! The live view in a real browser: headless Chromium (Debian's `chromium` package) opens
//! `/?topic=weather`, a message is published over TCP and another over HTTP, and the page
//! shows both, read back through the DOM.
//!
//! The test drives Chromium through its DevTools protocol: JSON commands over a
//! WebSocket that Chromium serves (`--remote-debugging-port`). The client end of that
//! WebSocket is this crate's own (`web::client`), talking to Chromium's server, which is
//! an independent implementation of RFC 6455: so this test also checks our client's
//! handshake, masking and framing against a real server. No chromedriver needed.
//!
//! It also saves screenshots of the page, light and dark, to `target/09-live-view.png` and
//! `target/09-live-view-dark.png`, or into the folder `PUBSUB_LAB_SCREENSHOTS` names (which
//! is how the pictures in `labsheet/` are made). The class picture (`/class`) is checked
//! the same way, with a small class on the broker, and pictured for lab 5
//! (`05-class-picture.png`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pubsub_lab::json::{self, Value};
use pubsub_lab::web::base64;
use pubsub_lab::web::client::{Received, WebSocketClient};
use pubsub_lab::{Broker, Config};

/// Chromium takes seconds to start on a busy machine with two cores.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// A headless Chromium with a fresh profile, killed when dropped.
struct Chromium {
    child: Child,
    profile: PathBuf,
}

impl Chromium {
    fn open(url: &str) -> Chromium {
        // A profile of its own for each browser: two browsers of one test run (the tests
        // run in parallel) that shared one would hand their pages to each other, and each
        // removes its profile when it ends.
        static BROWSERS: AtomicUsize = AtomicUsize::new(0);
        let profile = std::env::temp_dir().join(format!(
            "pubsub-lab-chromium-{}-{}",
            std::process::id(),
            BROWSERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1600,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start chromium ({error}): the browser test needs Debian's \
                     chromium package (apt-get install chromium; .ci/run installs it)"
                )
            });
        Chromium { child, profile }
    }

    /// The DevTools port, from the file Chromium writes into its profile once it listens.
    fn devtools_port(&self) -> u16 {
        let file = self.profile.join("DevToolsActivePort");
        let deadline = Instant::now() + BROWSER_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Some(port) = text.lines().next().and_then(|l| l.parse().ok()) {
                    return port;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not start its DevTools in time"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One HTTP/1.0 request on a fresh connection; returns status and body.
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let Some(status) = answer.get(9..12).and_then(|s| s.parse().ok()) else {
        return (0, answer);
    };
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The page's DevTools WebSocket, and the commands sent on it.
struct DevTools {
    socket: WebSocketClient,
    next_id: u64,
}

impl DevTools {
    fn attach(port: u16) -> DevTools {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + BROWSER_TIMEOUT;
        let path = loop {
            let (_, body) = http(
                addr,
                &format!("GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
            );
            let targets = json::parse(&body).unwrap_or(Value::Null);
            let page = match &targets {
                Value::Array(targets) => targets
                    .iter()
                    .find(|t| t.get("type").and_then(Value::as_str) == Some("page"))
                    .and_then(|t| t.get("webSocketDebuggerUrl").and_then(Value::as_str))
                    .map(str::to_string),
                _ => None,
            };
            if let Some(url) = page {
                break url.split_once(&format!("{port}")).unwrap().1.to_string();
            }
            assert!(Instant::now() < deadline, "chromium opened no page: {body}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let socket = WebSocketClient::connect(addr, &path).expect("a WebSocket to DevTools");
        DevTools { socket, next_id: 1 }
    }

    /// Sends one command and returns its `result`.
    fn call(&mut self, method: &str, params: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.socket
            .send_text(&format!(
                r#"{{"id":{id},"method":"{method}","params":{params}}}"#
            ))
            .unwrap();
        let deadline = Instant::now() + BROWSER_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let Some(Received::Text(text)) = self.socket.recv(BROWSER_TIMEOUT).unwrap() else {
                continue;
            };
            let answer = json::parse(&text).unwrap();
            if answer.get("id") == Some(&Value::Number(id as f64)) {
                if let Some(error) = answer.get("error") {
                    panic!("{method} failed: {error:?}");
                }
                return answer.get("result").cloned().unwrap_or(Value::Null);
            }
        }
    }

    /// Evaluates a JavaScript expression that returns a string, in the page.
    fn eval(&mut self, expression: &str) -> String {
        let mut params = pubsub_lab::json::ObjectWriter::new();
        params
            .string("expression", expression)
            .raw("returnByValue", "true");
        let result = self.call("Runtime.evaluate", &params.finish());
        result
            .get("result")
            .and_then(|r| r.get("value"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// What the page shows: its connection state, and each row of its message table.
fn page_state(devtools: &mut DevTools) -> (String, Vec<Vec<String>>) {
    let text = devtools.eval(
        "JSON.stringify([document.querySelector('#state').dataset.state, \
         [...document.querySelectorAll('#messages tbody tr')].map(r => [...r.cells].map(c => c.textContent))])",
    );
    let value = json::parse(&text).unwrap_or(Value::Null);
    let Value::Array(parts) = value else {
        return (String::new(), Vec::new());
    };
    let state = parts[0].as_str().unwrap_or_default().to_string();
    let rows = match &parts[1] {
        Value::Array(rows) => rows
            .iter()
            .map(|row| match row {
                Value::Array(cells) => cells
                    .iter()
                    .map(|c| c.as_str().unwrap_or_default().to_string())
                    .collect(),
                _ => Vec::new(),
            })
            .collect(),
        _ => Vec::new(),
    };
    (state, rows)
}

/// The page subscribes to `?topic=weather` on load, and shows a message published over TCP
/// and one published over HTTP, newest first.
#[test]
fn the_live_view_shows_what_is_published_over_tcp_and_http() {
    if !common::require_tool(
        common::Tool::Program("chromium"),
        "sudo apt-get install -y chromium",
    ) {
        return;
    }
    let broker = Broker::builder()
        .config(Config::default())
        .line("127.0.0.1:0")
        .web("127.0.0.1:0")
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let web = broker.web_addr().unwrap();
    let browser = Chromium::open(&format!("http://{web}/?topic=weather"));
    let mut devtools = DevTools::attach(browser.devtools_port());
    common::wait_until_within(
        BROWSER_TIMEOUT,
        "the page has subscribed to weather",
        || broker.topic_counts() == [("weather".to_string(), 1)],
    );

    let mut tcp = common::Raw::connect(broker.addr());
    tcp.send("PUBLISH weather Rainy  day, over TCP pub-tcp\n");
    tcp.sync();
    let body =
        r#"{"topic": "weather", "message": "Sunny later, over HTTP", "publisher": "pub-http"}"#;
    let (status, said) = http(
        web,
        &format!(
            "POST /publish HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(
        (status, said.as_str()),
        (200, "Message published to topic 'weather'")
    );

    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let (state, rows) = loop {
        let (state, rows) = page_state(&mut devtools);
        if rows.len() >= 2 || Instant::now() > deadline {
            break (state, rows);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(state, "connected");
    let shown: Vec<&[String]> = rows.iter().map(|row| &row[1..]).collect();
    assert_eq!(
        shown,
        [
            ["weather", "pub-http", "Sunny later, over HTTP"]
                .map(String::from)
                .as_slice(),
            ["weather", "pub-tcp", "Rainy  day, over TCP"]
                .map(String::from)
                .as_slice(),
        ],
        "the page's message table, newest first"
    );
    assert_eq!(
        rows[0][0].len(),
        "10:30:00".len(),
        "the time column: {rows:?}"
    );

    // Let the topic and counter panels fill in, then keep a picture of the page.
    let _ = devtools.eval("poll(), ''");
    common::wait_until_within(BROWSER_TIMEOUT, "the topic list shows weather", || {
        devtools.eval("document.querySelector('#topics tbody').textContent") == "weather1"
    });
    let folder = std::env::var_os("PUBSUB_LAB_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    // Tall enough for every panel.
    devtools.call(
        "Emulation.setDeviceMetricsOverride",
        r#"{"width":1600,"height":1200,"deviceScaleFactor":1,"mobile":false}"#,
    );
    for (scheme, file) in [
        ("light", "09-live-view.png"),
        ("dark", "09-live-view-dark.png"),
    ] {
        devtools.call(
            "Emulation.setEmulatedMedia",
            &format!(r#"{{"features":[{{"name":"prefers-color-scheme","value":"{scheme}"}}]}}"#),
        );
        // Wait out the new rows' highlight, so the picture shows the page at rest.
        let _ = devtools.eval(
            "document.querySelectorAll('tr.new').forEach(r => r.classList.remove('new')), ''",
        );
        let shot = devtools.call("Page.captureScreenshot", r#"{"format":"png"}"#);
        let png = base64::decode(shot.get("data").and_then(Value::as_str).unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(folder.join(file), png).unwrap();
    }
}

/// Where the screenshots go: `PUBSUB_LAB_SCREENSHOTS`, or `target/`.
fn screenshot_folder() -> PathBuf {
    std::env::var_os("PUBSUB_LAB_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The number `CLIENTS` gives the client that used `id`.
fn number_of(raw: &mut common::Raw, id: &str) -> String {
    raw.send(&format!("CLIENTS {id}\n"));
    let line = raw.line();
    raw.expect("END CLIENTS");
    let number = line
        .strip_prefix("CLIENTS ")
        .and_then(|l| l.split(' ').next());
    number
        .unwrap_or_else(|| panic!("{id} is not listed: {line:?}"))
        .to_string()
}

/// The class picture at `/class` draws a small class: two subscribers (one with a
/// wildcard), a publisher, the topics between them with an edge per subscription, and a
/// subscriber that stopped reading, marked as cut off; its table lists them all.
#[test]
fn the_class_picture_shows_the_clients_and_topics_of_a_lab() {
    if !common::require_tool(
        common::Tool::Program("chromium"),
        "sudo apt-get install -y chromium",
    ) {
        return;
    }
    let broker = common::start_web_broker_with(Config {
        write_timeout: Duration::from_secs(1),
        ..Config::default()
    });
    let web = broker.web_addr().unwrap();
    let browser = Chromium::open(&format!("http://{web}/class"));
    let mut devtools = DevTools::attach(browser.devtools_port());
    common::wait_until_within(BROWSER_TIMEOUT, "the picture watches every topic", || {
        broker.topic_counts() == [("#".to_string(), 1)]
    });

    let mut sub1 = common::subscribed(broker.addr(), "weather", "sub1");
    let _sub2 = common::subscribed(broker.addr(), "news/#", "sub2");
    let mut publisher = common::Raw::connect(broker.addr());
    publisher.send("PUBLISH weather Rainy pub1\nPUBLISH news/today Elections pub1\n");
    publisher.sync();
    assert_eq!(sub1.delivery(), "DELIVER weather Rainy pub1");

    // A student whose subscriber stopped reading, while a flood goes to its topic.
    let slow = common::stalled(broker.addr(), "flood", "slowpoke");
    let flooder = common::Raw::connect(broker.addr());
    let flooding = common::flood(&flooder, "flood", 400);
    common::wait_until("the stalled subscriber is cut off", || {
        common::stat(&broker, "slow_consumers_disconnected") == 1
    });
    flooding.join().unwrap();
    drop(slow);

    let mut teacher = common::Raw::connect(broker.addr());
    let sub1_number = number_of(&mut teacher, "sub1");
    let pub1_number = number_of(&mut teacher, "pub1");
    let wanted = [
        format!("t:weather>c{sub1_number}"),
        format!("c{pub1_number}>t:weather"),
    ];
    let read = |devtools: &mut DevTools| {
        devtools.eval(
            "JSON.stringify({\
               topics: [...document.querySelectorAll('#picture [data-topic]')].map(t => t.dataset.topic).sort(),\
               clients: [...document.querySelectorAll('#picture .client')].map(c => c.classList[1] + ' ' + c.querySelector('text').textContent).sort(),\
               edges: [...document.querySelectorAll('#picture [data-edge]')].map(e => e.dataset.edge),\
               rows: document.querySelectorAll('#clients tbody tr').length})",
        )
    };
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let (shown, seen) = loop {
        let seen = read(&mut devtools);
        let value = json::parse(&seen).unwrap_or(Value::Null);
        let has = |key: &str, item: &str| {
            matches!(value.get(key), Some(Value::Array(items))
                if items.iter().any(|i| i.as_str() == Some(item)))
        };
        let complete = ["weather", "news/#", "news/today", "flood"]
            .iter()
            .all(|t| has("topics", t))
            && wanted.iter().all(|e| has("edges", e))
            && matches!(value.get("clients"), Some(Value::Array(c))
                if c.iter().any(|c| c.as_str().is_some_and(|c| c.starts_with("cut-off ") && c.ends_with(" slowpoke"))));
        if complete || Instant::now() > deadline {
            break (value, seen);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let clients: Vec<&str> = match shown.get("clients") {
        Some(Value::Array(clients)) => clients.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for expected in [
        format!("keeping-up #{sub1_number} sub1"),
        format!("keeping-up #{pub1_number} pub1"),
    ] {
        assert!(
            clients.contains(&expected.as_str()),
            "{expected:?} not drawn: {seen}"
        );
    }
    assert!(
        clients
            .iter()
            .any(|c| c.starts_with("cut-off ") && c.ends_with(" slowpoke")),
        "the cut-off subscriber is not marked: {seen}"
    );
    for edge in &wanted {
        assert!(seen.contains(edge.as_str()), "no edge {edge}: {seen}");
    }
    assert!(
        seen.contains("t:news/today>t:news/#"),
        "the wildcard's match: {seen}"
    );
    assert!(
        matches!(shown.get("rows"), Some(Value::Number(n)) if *n >= 6.0),
        "the client table: {seen}"
    );

    devtools.call(
        "Emulation.setDeviceMetricsOverride",
        r#"{"width":1600,"height":900,"deviceScaleFactor":1,"mobile":false}"#,
    );
    for (scheme, file) in [
        ("light", "05-class-picture.png"),
        ("dark", "05-class-picture-dark.png"),
    ] {
        devtools.call(
            "Emulation.setEmulatedMedia",
            &format!(r#"{{"features":[{{"name":"prefers-color-scheme","value":"{scheme}"}}]}}"#),
        );
        // Messages on their way, for the picture: published until a dot is drawn.
        common::wait_until_within(BROWSER_TIMEOUT, "a message is pictured on its way", || {
            publisher.send("PUBLISH weather Sunny pub1\nPUBLISH news/today Results pub1\n");
            publisher.sync();
            devtools.eval("String(document.querySelectorAll('#pulses circle').length)") != "0"
        });
        let shot = devtools.call("Page.captureScreenshot", r#"{"format":"png"}"#);
        let png = base64::decode(shot.get("data").and_then(Value::as_str).unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(screenshot_folder().join(file), png).unwrap();
    }
}
