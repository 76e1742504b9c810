//! Socket.IO clients against the broker: the real ones students bring (python-socketio
//! running the Flask labsheet's subscriber logic, socket.io-client from npm under Node;
//! `.ci/run` installs both), and raw Engine.IO requests for what a well-behaved client
//! never does (two polls at once, a missed pong, a client that vanishes or stops reading).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    auth_file, post_json, require_tool, start_full_broker, stat, subscribed, wait_until, Answer,
    Raw, RawHttp, Tool, Udp, TIMEOUT,
};
use pubsub_lab::web::websocket::{self, Decoder, Message, Opcode, Role};
use pubsub_lab::{Broker, BrokerHandle, Config};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio")
}

fn has_python_socketio() -> bool {
    require_tool(
        Tool::Python(&["socketio"]),
        "pip install \"python-socketio[client]\", as .ci/run does",
    )
}

fn has_node_client() -> bool {
    require_tool(
        Tool::Node {
            package: "socket.io-client",
            folder: scripts(),
        },
        "apt-get install nodejs npm, then npm ci in tests/socketio, as .ci/run does",
    )
}

/// Short heartbeats, so that what waits for a missed pong waits a moment.
fn quick_pings() -> Config {
    Config {
        socketio_ping_interval: Duration::from_millis(100),
        socketio_ping_timeout: Duration::from_millis(100),
        ..Config::default()
    }
}

fn subscribers(broker: &BrokerHandle, topic: &str) -> usize {
    broker
        .topic_counts()
        .into_iter()
        .find(|(name, _)| name == topic)
        .map_or(0, |(_, count)| count)
}

/// A client program, its output read line by line with a time limit; killed when dropped.
struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// The lines [`until`](Self::until) went past.
    skipped: Vec<String>,
}

impl Client {
    fn start(mut command: Command) -> Client {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the client");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Client {
            child,
            stdin,
            lines,
            skipped: Vec::new(),
        }
    }

    /// The next line the client prints.
    #[track_caller]
    fn line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .expect("the client printed nothing in time")
    }

    /// Reads lines until one starts with `prefix`, and returns it.
    #[track_caller]
    fn until(&mut self, prefix: &str) -> String {
        loop {
            let line = self.line();
            if line.starts_with(prefix) {
                return line;
            }
            self.skipped.push(line);
        }
    }

    fn tell(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn publish_over_http(broker: &BrokerHandle, topic: &str, message: &str) -> Answer {
    let body = format!(r#"{{"topic": "{topic}", "message": "{message}"}}"#);
    RawHttp::connect(broker).ask(&post_json(&body))
}

/// The Flask labsheet's subscriber, run by python-socketio's client (long-polling, then
/// the upgrade): what is published over TCP, HTTP, UDP and kn-sock's JSON reaches it;
/// what it publishes reaches a TCP, a JSON and a UDP subscriber; `/publish` counts it; and
/// `unsubscribe` stops its messages.
#[test]
fn the_flask_labsheets_subscriber_runs_on_python_socketio() {
    if !has_python_socketio() {
        return;
    }
    let broker = start_full_broker(Config::default());
    let url = format!("http://{}", broker.web_addr().unwrap());
    let mut command = Command::new("python3");
    command
        .arg(scripts().join("subscriber.py"))
        .args([&url, "news", "weather"]);
    let mut python = Client::start(command);
    assert_eq!(python.until("ready"), "ready websocket", "it upgraded");
    assert_eq!(subscribers(&broker, "news"), 1);

    let mut tcp = Raw::connect(broker.addr());
    tcp.send("PUBLISH news over-tcp tcp1\n");
    assert_eq!(python.line(), "Received message on news: over-tcp");
    assert_eq!(publish_over_http(&broker, "news", "over http").status, 200);
    assert_eq!(python.line(), "Received message on news: over http");
    let udp = Udp::new(&broker);
    udp.send("PUBLISH news over-udp udp1");
    assert_eq!(python.line(), "Received message on news: over-udp");
    let mut json = Raw::connect(broker.addr());
    json.send("{\"action\": \"publish\", \"topic\": \"news\", \"message\": \"over json\"}\n");
    assert_eq!(python.line(), "Received message on news: over json");

    let mut line_sub = subscribed(broker.addr(), "news", "tcp2");
    let mut json_sub = Raw::connect(broker.addr());
    json_sub.send("{\"action\": \"subscribe\", \"topic\": \"news\", \"verbose\": true}\n");
    json_sub.line();
    let udp_sub = Udp::new(&broker);
    udp_sub.send("SUBSCRIBE news udp2");
    udp_sub.sync();
    python.tell("publish news from socket.io");
    assert_eq!(
        python.until("published"),
        "published {'ok': 'OK PUBLISH news 4'}"
    );
    assert!(line_sub
        .delivery()
        .starts_with("DELIVER news from socket.io socketio-"));
    assert!(json_sub.line().contains("from socket.io"));
    assert!(udp_sub
        .recv()
        .starts_with("DELIVER news from socket.io socketio-"));

    assert_eq!(publish_over_http(&broker, "weather", "sunny").status, 200);
    python.until("Received message on weather: sunny");
    let own = "Received message on news: from socket.io";
    assert!(
        python.skipped.iter().any(|line| line == own),
        "its own, too"
    );
    python.tell("unsubscribe weather");
    python.until("unsubscribed");
    assert_eq!(publish_over_http(&broker, "weather", "rain").status, 404);
    python.tell("quit");
    assert_eq!(python.until("bye"), "bye");
    wait_until("the client's subscriptions are gone", || {
        subscribers(&broker, "news") == 3
    });
}

/// socket.io-client under Node, on each transport alone: it subscribes, receives what a
/// TCP client publishes, and publishes to a TCP subscriber.
#[test]
fn nodes_socket_io_client_works_on_websocket_alone_and_on_polling_alone() {
    if !has_node_client() {
        return;
    }
    let broker = start_full_broker(Config::default());
    let url = format!("http://{}", broker.web_addr().unwrap());
    for transport in ["websocket", "polling"] {
        let mut command = Command::new("node");
        command
            .arg(scripts().join("subscriber.js"))
            .args([&url, transport, "news"]);
        let mut node = Client::start(command);
        assert_eq!(node.until("ready"), format!("ready {transport}"));
        let mut tcp = subscribed(broker.addr(), "news", "tcp1");
        Raw::connect(broker.addr()).send(&format!("PUBLISH news to-{transport} tcp2\n"));
        assert_eq!(node.line(), format!("message news to-{transport}"));
        assert!(tcp.delivery().contains(&format!("to-{transport}")));
        node.tell("publish news from node");
        assert!(tcp
            .delivery()
            .starts_with("DELIVER news from node socketio-"));
        assert_eq!(
            node.until("published"),
            r#"published {"ok":"OK PUBLISH news 2"}"#
        );
        node.tell("quit");
        node.until("bye");
        wait_until("the client left", || subscribers(&broker, "news") == 1);
    }
}

/// One Engine.IO request on a connection of its own.
fn engine_request(broker: &BrokerHandle, method: &str, query: &str, body: &str) -> Answer {
    let request = format!(
        "{method} /socket.io/?{query} HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    RawHttp::connect(broker).ask(&request)
}

/// Opens a long-polling session: its id.
fn open(broker: &BrokerHandle) -> String {
    let answer = engine_request(broker, "GET", "EIO=4&transport=polling", "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let handshake = pubsub_lab::json::parse(&answer.body[1..]).unwrap();
    common::member(&handshake, "sid")
}

fn poll(broker: &BrokerHandle, sid: &str) -> Answer {
    engine_request(
        broker,
        "GET",
        &format!("EIO=4&transport=polling&sid={sid}"),
        "",
    )
}

fn post(broker: &BrokerHandle, sid: &str, payload: &str) -> Answer {
    engine_request(
        broker,
        "POST",
        &format!("EIO=4&transport=polling&sid={sid}"),
        payload,
    )
}

/// A long-polling Socket.IO client subscribed to `topic`: its session id.
fn polling_subscriber(broker: &BrokerHandle, topic: &str) -> String {
    let sid = open(broker);
    let subscribe = format!("40\x1e42[\"subscribe\",{{\"topic\":\"{topic}\"}}]");
    assert_eq!(post(broker, &sid, &subscribe).body, "ok");
    assert!(poll(broker, &sid).body.starts_with("40{\"sid\":"));
    wait_until("the client is subscribed", || {
        subscribers(broker, topic) == 1
    });
    sid
}

/// The handshake, and a `400` with the reason for a bad `EIO`, transport, method or sid.
#[test]
fn the_handshake_and_its_refusals() {
    let broker = start_full_broker(quick_pings());
    let answer = engine_request(&broker, "GET", "EIO=4&transport=polling", "");
    assert!(answer.body.starts_with("0{\"sid\":\""), "{}", answer.body);
    assert!(answer.body.ends_with(
        r#""upgrades":["websocket"],"pingInterval":100,"pingTimeout":100,"maxPayload":65536}"#
    ));
    for (method, query, reason) in [
        (
            "GET",
            "EIO=3&transport=polling",
            "Unsupported protocol version",
        ),
        ("GET", "transport=polling", "Unsupported protocol version"),
        ("GET", "EIO=4&transport=carrier-pigeon", "Transport unknown"),
        ("POST", "EIO=4&transport=polling", "Bad handshake method"),
        (
            "GET",
            "EIO=4&transport=polling&sid=nope",
            "Session ID unknown",
        ),
    ] {
        let answer = engine_request(&broker, method, query, "");
        assert_eq!(answer.status, 400, "{query}");
        assert!(answer.body.contains(reason), "{query}: {}", answer.body);
    }
}

/// Two polls at once break the protocol: the one that waited is answered `close`, the
/// other `400`, and the session (its subscription too) is gone.
#[test]
fn two_polls_at_once_close_the_session() {
    let broker = start_full_broker(Config::default());
    let sid = polling_subscriber(&broker, "news");
    let request =
        format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: test\r\n\r\n");
    let (mut first, mut second) = (RawHttp::connect(&broker), RawHttp::connect(&broker));
    first.send(&request);
    second.send(&request);
    // Which of the two the broker took first is the kernel's business: one waits, the
    // other finds it waiting.
    let mut answers = [first.answer(), second.answer()].map(|a| (a.status, a.body));
    answers.sort();
    assert_eq!(answers[0], (200, "1".to_string()));
    assert_eq!(answers[1].0, 400);
    wait_until("the subscription is gone", || {
        subscribers(&broker, "news") == 0
    });
    assert_eq!(poll(&broker, &sid).status, 400);
}

/// A client that stops answering pings is closed after the ping timeout, and its
/// subscription goes with it.
#[test]
fn a_client_that_misses_its_pong_is_closed() {
    let broker = start_full_broker(quick_pings());
    let sid = polling_subscriber(&broker, "news");
    assert_eq!(poll(&broker, &sid).body, "2", "the server pings");
    wait_until("the session is closed", || {
        subscribers(&broker, "news") == 0
    });
    assert_eq!(poll(&broker, &sid).status, 400);
}

/// A client that answers its pings keeps its session past many ping timeouts.
#[test]
fn a_client_that_answers_its_pings_stays() {
    let broker = start_full_broker(quick_pings());
    let sid = polling_subscriber(&broker, "news");
    for _ in 0..5 {
        assert_eq!(poll(&broker, &sid).body, "2");
        assert_eq!(post(&broker, &sid, "3").body, "ok");
    }
    assert_eq!(subscribers(&broker, "news"), 1);
}

/// A client that vanishes while its poll waits: the broker learns it from the missed pong.
#[test]
fn a_client_that_disappears_mid_poll_is_closed() {
    let broker = start_full_broker(quick_pings());
    let sid = polling_subscriber(&broker, "news");
    let mut vanishing = RawHttp::connect(&broker);
    vanishing.send(&format!(
        "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: test\r\n\r\n"
    ));
    drop(vanishing);
    wait_until("the session is closed", || {
        subscribers(&broker, "news") == 0
    });
    assert_eq!(poll(&broker, &sid).status, 400);
}

/// A long-polling client that stops polling is cut off as a slow consumer once more than
/// `--max-pending-bytes` wait for it.
#[test]
fn a_client_that_stops_polling_is_cut_off() {
    let broker = start_full_broker(Config {
        max_pending_bytes: 64 * 1024,
        ..Config::default()
    });
    polling_subscriber(&broker, "news");
    let message = "x".repeat(1000);
    for _ in 0..100 {
        broker.publish("news", &message, "p1").unwrap();
    }
    wait_until("it is cut off", || subscribers(&broker, "news") == 0);
    assert_eq!(stat(&broker, "slow_consumers_disconnected"), 1);
}

/// A WebSocket that opens a session, subscribes and never reads again: cut off by the
/// outbox's rules, as any subscriber.
#[test]
fn a_websocket_client_that_stops_reading_is_cut_off() {
    let broker = start_full_broker(Config {
        max_pending_bytes: 256 * 1024,
        write_timeout: Duration::from_millis(200),
        ..Config::default()
    });
    let mut stream = TcpStream::connect(broker.web_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let key = websocket::random_key();
    let request =
        websocket::handshake_request("test", "/socket.io/?EIO=4&transport=websocket", &key);
    stream.write_all(request.as_bytes()).unwrap();
    let mut decoder = Decoder::new(Role::Client, 1 << 20);
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut stream, &mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let text = |stream: &mut TcpStream, decoder: &mut Decoder| loop {
        if let Some(Message::Text(text)) = decoder.next_message().unwrap() {
            return text.to_string();
        }
        decoder.read_from(&mut *stream).unwrap();
    };
    assert!(text(&mut stream, &mut decoder).starts_with("0{\"sid\""));
    for packet in ["40", "42[\"subscribe\",{\"topic\":\"news\"}]"] {
        let mut frame = Vec::new();
        websocket::write_frame(
            &mut frame,
            Opcode::Text,
            packet.as_bytes(),
            Some(websocket::random_mask()),
        );
        stream.write_all(&frame).unwrap();
    }
    assert!(text(&mut stream, &mut decoder).starts_with("40{\"sid\""));
    wait_until("it is subscribed", || subscribers(&broker, "news") == 1);
    let message = "x".repeat(32 * 1024);
    wait_until("it is cut off", || {
        let _ = broker.publish("news", &message, "p1");
        subscribers(&broker, "news") == 0
    });
    assert_eq!(stat(&broker, "slow_consumers_disconnected"), 1);
}

/// `--ws-broadcast chat`: the Go tutorial's page works unchanged. Each frame a page sends
/// reaches every page, the sender too, as the same text, and a TCP subscriber of the
/// topic; what a TCP client publishes there reaches the pages. No `ERROR` anywhere.
#[test]
fn the_go_tutorials_page_talks_in_a_broadcast_room() {
    if !require_tool(
        Tool::Python(&["websocket"]),
        "pip install websocket-client, as .ci/run does",
    ) {
        return;
    }
    let broker = start_full_broker(Config {
        ws_broadcast: Some("chat".to_string()),
        ..Config::default()
    });
    let mut tcp = subscribed(broker.addr(), "chat", "tcp1");
    let url = format!("ws://{}/ws", broker.web_addr().unwrap());
    let mut command = Command::new("python3");
    command.arg(scripts().join("go_page.py")).arg(&url);
    let mut pages = Client::start(command);
    for name in ["A", "B"] {
        let frame = format!(
            r#"{{"email": "{}@example.com", "content": "hello from {name}"}}"#,
            name.to_lowercase()
        );
        assert_eq!(pages.line(), format!("A {frame}"));
        assert_eq!(pages.line(), format!("B {frame}"));
        assert!(tcp
            .delivery()
            .starts_with(&format!("DELIVER chat {frame} ws-")));
    }
    assert_eq!(pages.line(), "waiting");
    Raw::connect(broker.addr()).send("PUBLISH chat {\"content\":\"from tcp\"} tcp2\n");
    pages.tell("go on");
    assert_eq!(pages.line(), r#"A {"content":"from tcp"}"#);
    assert_eq!(pages.line(), r#"B {"content":"from tcp"}"#);
}

/// Posts a payload to a long-polling session and answers what the next poll brings.
fn exchange(broker: &BrokerHandle, sid: &str, payload: &str) -> String {
    assert_eq!(post(broker, sid, payload).body, "ok");
    poll(broker, sid).body
}

/// The same gate as every client: on a broker with an auth file, the `CONNECT`'s auth data
/// is the client's `AUTH`, and the rules decide what it may subscribe to; without it, the
/// client is anonymous until it logs in.
#[test]
fn a_socket_io_client_passes_the_same_access_rules() {
    let path = auth_file("user alice s3cret\nallow alice subscribe lab/#\n", 0o600);
    let broker = start_full_broker(Config {
        auth_file: Some(path.clone()),
        ..Config::default()
    });
    let sid = open(&broker);
    let connected = exchange(&broker, &sid, r#"40{"user":"alice","secret":"s3cret"}"#);
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");
    let refused = exchange(&broker, &sid, r#"421["subscribe",{"topic":"private/x"}]"#);
    assert_eq!(
        refused,
        r#"431[{"error":"not allowed: alice may not subscribe to private/x"}]"#
    );
    let allowed = exchange(&broker, &sid, r#"422["subscribe",{"topic":"lab/x"}]"#);
    assert_eq!(allowed, r#"432[{"ok":"OK SUBSCRIBE lab/x"}]"#);

    let anonymous = open(&broker);
    exchange(&broker, &anonymous, "40");
    let refused = exchange(&broker, &anonymous, r#"421["subscribe",{"topic":"lab/x"}]"#);
    assert!(
        refused.starts_with(r#"431[{"error":"authentication required"#),
        "{refused}"
    );
    let _ = std::fs::remove_file(path);
}

/// The program's hooks see a Socket.IO client as one, at its `CONNECT`, and their refusal
/// is the protocol's `CONNECT_ERROR` with their reason.
#[test]
fn the_hooks_see_a_socket_io_client_and_may_refuse_it() {
    struct NoSocketIo;
    impl pubsub_lab::hooks::Hooks for NoSocketIo {
        fn on_connect(
            &self,
            client: pubsub_lab::hooks::ClientInfo<'_>,
        ) -> Result<(), pubsub_lab::hooks::Refusal> {
            match client.transport {
                pubsub_lab::hooks::Transport::SocketIo => {
                    Err(pubsub_lab::hooks::Refusal::new("no Socket.IO today"))
                }
                _ => Ok(()),
            }
        }
    }
    // Pings often (so that a poll is answered soon), patient with pongs.
    let config = Config {
        socketio_ping_interval: Duration::from_millis(100),
        socketio_ping_timeout: TIMEOUT,
        ..Config::default()
    };
    let broker = Broker::builder()
        .config(config)
        .line("127.0.0.1:0")
        .web("127.0.0.1:0")
        .hooks(NoSocketIo)
        .bind()
        .expect("bind 127.0.0.1:0")
        .spawn()
        .expect("start the broker");
    let sid = open(&broker);
    assert_eq!(
        exchange(&broker, &sid, "40"),
        r#"44{"message":"no Socket.IO today"}"#
    );
    let ignored = exchange(&broker, &sid, r#"42["subscribe",{"topic":"news"}]"#);
    assert_eq!(ignored, "2", "only the next ping: nothing was subscribed");
    assert_eq!(subscribers(&broker, "news"), 0);
}

/// When the broker stops, it waits for every Socket.IO session's thread, as it waits for
/// every connection's: a session still busy in a publish hook has finished it by the time
/// `stop` returns. (A broker that left the thread running would return while the hook
/// still works, and the program that embeds it could unload what the hook uses.)
#[test]
fn stopping_the_broker_waits_for_its_socket_io_sessions() {
    use pubsub_lab::hooks::{ClientInfo, Hooks, Publish, PublishVerdict, Transport};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    struct SlowPublish {
        entered: Mutex<mpsc::Sender<()>>,
        finished: Arc<AtomicBool>,
    }
    impl Hooks for SlowPublish {
        fn on_publish(&self, client: ClientInfo<'_>, _publish: &Publish<'_>) -> PublishVerdict {
            if matches!(client.transport, Transport::SocketIo) {
                let _ = self.entered.lock().unwrap().send(());
                // Work that takes a while (not a wait for anything): long enough that a
                // `stop` that did not join this thread would return first.
                thread::sleep(Duration::from_millis(300));
                self.finished.store(true, Ordering::SeqCst);
            }
            PublishVerdict::Allow
        }
    }
    let (entered, hook_entered) = mpsc::channel();
    let finished = Arc::new(AtomicBool::new(false));
    let broker = Broker::builder()
        .config(Config::default())
        .line("127.0.0.1:0")
        .web("127.0.0.1:0")
        .hooks(SlowPublish {
            entered: Mutex::new(entered),
            finished: Arc::clone(&finished),
        })
        .bind()
        .expect("bind 127.0.0.1:0")
        .spawn()
        .expect("start the broker");
    let sid = open(&broker);
    let payload = "40\x1e42[\"publish\",{\"topic\":\"news\",\"message\":\"hi\"}]";
    assert_eq!(post(&broker, &sid, payload).body, "ok");
    hook_entered
        .recv_timeout(TIMEOUT)
        .expect("the session's thread runs the publish hook");
    broker.stop();
    assert!(
        finished.load(Ordering::SeqCst),
        "stop returned while the Socket.IO session's thread was still in its publish hook: \
         the session's thread was not joined"
    );
}

/// A Socket.IO client is one line of `CLIENTS` (`way=socketio`), with its deliveries
/// counted, and `KICK` ends its session. (The reason goes as an `error` event, which a
/// long-polling client reads only if a poll of its is waiting at that moment, as a real
/// client's nearly always is; this test's polls are not, so it checks the end.)
#[test]
fn a_socket_io_client_is_listed_and_can_be_kicked() {
    let broker = start_full_broker(Config::default());
    let sid = polling_subscriber(&broker, "news");
    let mut teacher = common::Raw::connect(broker.addr());
    teacher.send("PUBLISH news hi teacher\n");
    teacher.sync();
    assert!(poll(&broker, &sid)
        .body
        .contains(r#"42["news",{"message":"hi"}]"#));
    teacher.send("CLIENTS news\n");
    let line = teacher.line();
    teacher.expect("END CLIENTS");
    assert!(line.contains(" way=socketio "), "{line}");
    assert!(line.contains(" msgs_out=1 "), "{line}");
    let number = line.split(' ').nth(1).unwrap().to_string();

    teacher.send(&format!("KICK {number}\n"));
    teacher.expect(&format!("OK KICK {number}"));
    wait_until("the kicked client's subscription is gone", || {
        subscribers(&broker, "news") == 0
    });
    assert_eq!(poll(&broker, &sid).status, 400);
}

/// A new long-polling subscriber to `#` facing a retained store four times
/// `--max-pending-bytes`: the store is streamed at the pace of its polls, so it receives
/// every retained message and is not cut off (queued at once, the store would pass the
/// limit before its first poll).
#[test]
fn a_polling_subscriber_gets_a_retained_store_bigger_than_its_queue() {
    const MESSAGES: usize = 256;
    let broker = start_full_broker(Config {
        max_pending_bytes: 64 * 1024,
        sys_interval: Duration::ZERO,
        ..Config::default()
    });
    let mut publisher = common::Raw::connect(broker.addr());
    let body = "x".repeat(1000);
    for n in 0..MESSAGES {
        publisher.send(&format!("RETAIN r/{n:03} {body} keeper{n}\n"));
    }
    publisher.sync();
    assert_eq!(stat(&broker, "retained"), MESSAGES as u64);
    let sid = open(&broker);
    let subscribe = "40\x1e42[\"subscribe\",{\"topic\":\"#\"}]";
    assert_eq!(post(&broker, &sid, subscribe).body, "ok");
    let mut received = 0;
    let deadline = Instant::now() + common::TIMEOUT;
    while received < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "{received} of {MESSAGES} retained messages arrived"
        );
        let answer = poll(&broker, &sid);
        assert_eq!(
            answer.status, 200,
            "cut off after {received}: {}",
            answer.body
        );
        received += answer.body.matches("42[\"r/").count();
    }
    assert_eq!(received, MESSAGES);
    assert_eq!(stat(&broker, "slow_consumers_disconnected"), 0);
}
