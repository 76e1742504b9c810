//! Access control on the wire (`--auth-file`): every rule as a student sees it in `nc`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{auth_file, logged_in, start_broker, start_broker_with, stat, Raw};
use pubsub_lab::access::FAILURE_DELAY;
use pubsub_lab::web::base64;
use pubsub_lab::{Broker, BrokerHandle, Config, StartError};

const FILE: &str = "# the lab's users\n\
    user alice s3cret\n\
    user bob hunter2\n\
    allow alice publish lab/alice/#\n\
    allow * subscribe lab/#\n\
    allow bob subscribe $SYS/#\n\
    allow bob subscribe room/+\n\
    allow anonymous publish lab/sensors/#\n";

const REQUIRED: &str = "ERROR authentication required: send AUTH <user> <secret> first";

fn locked_broker(auth_timeout: Duration) -> BrokerHandle {
    start_broker_with(Config {
        auth_file: Some(auth_file(FILE, 0o600)),
        auth_timeout,
        ..Config::default()
    })
}

#[test]
fn before_auth_every_other_command_is_refused_and_after_it_they_work() {
    let broker = locked_broker(Duration::from_secs(30));
    let mut raw = Raw::connect(broker.addr());
    for line in [
        "SUBSCRIBE lab/x me",
        "PUBLISH lab/alice/x hi alice",
        "PING",
        "HELP",
        "STATS",
        "QUIT",
    ] {
        raw.send(&format!("{line}\n"));
        raw.expect(REQUIRED);
    }
    raw.send("AUTH alice s3cret\n");
    raw.expect("OK AUTH alice");
    raw.sync();
    raw.send("AUTH alice s3cret\n");
    raw.expect("ERROR already authenticated as alice: one AUTH per connection");
    raw.send("HELP\n");
    let mut help = Vec::new();
    loop {
        let line = raw.line();
        if line == "END HELP" {
            break;
        }
        help.push(line);
    }
    assert!(
        help.last()
            .unwrap()
            .starts_with("HELP AUTH <user> <secret>"),
        "a broker with access control lists AUTH: {help:#?}"
    );
}

#[test]
fn each_rule_applies_on_the_wire() {
    let broker = locked_broker(Duration::from_secs(30));
    let mut bob = logged_in(&broker, "bob", "hunter2");
    bob.send("SUBSCRIBE lab/+/temp bob\nSUBSCRIBE room/+ bob\nSUBSCRIBE # bob\n");
    bob.expect("ERROR not allowed: bob may not subscribe to #");
    // room/+ allows one level below room, so not room/# (which is every level below).
    bob.send("SUBSCRIBE room/# bob\nSUBSCRIBE other bob\n");
    bob.expect("ERROR not allowed: bob may not subscribe to room/#");
    bob.expect("ERROR not allowed: bob may not subscribe to other");
    bob.send("PUBLISH lab/bob/temp 20 bob\n");
    bob.expect("ERROR not allowed: bob may not publish to lab/bob/temp");
    bob.sync();

    let mut alice = logged_in(&broker, "alice", "s3cret");
    alice.send("SUBSCRIBE $SYS/# alice\n");
    alice.expect("ERROR not allowed: alice may not subscribe to $SYS/#");
    alice.send("PUBLISH lab/alice/temp 21 alice\n");
    alice.send("PUBLISH lab/alice/temp 22 alice:sensor1\n");
    alice.send("PUBLISH lab/bob/temp 23 alice\n");
    alice.expect("ERROR not allowed: alice may not publish to lab/bob/temp");
    alice.sync();
    assert_eq!(bob.delivery(), "DELIVER lab/alice/temp 21 alice");
    assert_eq!(bob.delivery(), "DELIVER lab/alice/temp 22 alice:sensor1");
    bob.sync();
    // Retaining is publishing: the same rules.
    alice.send("RETAIN lab/bob/temp 1 alice\nUNRETAIN lab/bob/temp alice\n");
    alice.expect("ERROR not allowed: alice may not publish to lab/bob/temp");
    alice.expect("ERROR not allowed: alice may not publish to lab/bob/temp");
    alice.sync();
}

#[test]
fn nobody_publishes_as_someone_else() {
    let broker = locked_broker(Duration::from_secs(30));
    let mut bob = logged_in(&broker, "bob", "hunter2");
    bob.send("SUBSCRIBE lab/# bob\n");
    bob.sync();
    let mut alice = logged_in(&broker, "alice", "s3cret");
    // Allowed once, to this topic as alice: the same topic under another id is not.
    alice.send("PUBLISH lab/alice/news first alice\n");
    assert_eq!(bob.delivery(), "DELIVER lab/alice/news first alice");
    for forged in ["bob", "alicex", "bob:alice"] {
        alice.send(&format!("PUBLISH lab/alice/news hi {forged}\n"));
        alice.expect(&format!(
            "ERROR not allowed: alice may not publish as {forged}"
        ));
    }
    alice.sync();
    bob.sync(); // nothing arrived before the PONG
}

#[test]
fn wrong_secrets_are_answered_late_counted_and_do_not_say_which_part_was_wrong() {
    let broker = locked_broker(Duration::from_secs(30));
    let mut raw = Raw::connect(broker.addr());
    for attempt in ["AUTH alice hunter2", "AUTH carol s3cret"] {
        let started = Instant::now();
        raw.send(&format!("{attempt}\n"));
        raw.expect("ERROR authentication failed: unknown user or wrong secret");
        assert!(
            started.elapsed() >= FAILURE_DELAY,
            "{attempt} was answered after {:?}",
            started.elapsed()
        );
    }
    raw.send("PING\n");
    raw.expect(REQUIRED);
    // The third failure on one connection ends it, as sshd's MaxAuthTries does.
    raw.send("AUTH alice s3cre\n");
    raw.expect(
        "ERROR authentication failed 3 times: closing the connection; check your user and \
         secret and connect again",
    );
    assert_eq!(raw.read_to_eof(), "");
    assert_eq!(stat(&broker, "auth_failures"), 3);
    logged_in(&broker, "alice", "s3cret");
}

#[test]
fn no_auth_within_the_timeout_closes_the_connection_even_one_that_keeps_talking() {
    let broker = locked_broker(Duration::from_millis(300));
    let mut chatty = Raw::connect(broker.addr());
    let mut silent = Raw::connect(broker.addr());
    let started = Instant::now();
    let closing = "ERROR authentication timeout: no AUTH within 300ms, closing the connection";
    // A client that sends a line every 50 ms never lets a read time out: the deadline is
    // counted from the connection's start, not from its last line.
    loop {
        chatty.send("PING\n");
        let line = chatty.line();
        if line == closing {
            break;
        }
        assert_eq!(line, REQUIRED);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "still open after {:?}: the deadline moves with every line",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(silent.read_to_eof(), format!("{closing}\n"));
}

#[test]
fn without_an_auth_file_auth_is_refused_and_everything_works_as_before() {
    let broker = start_broker();
    let mut raw = Raw::connect(broker.addr());
    raw.send("AUTH alice s3cret\n");
    raw.expect(
        "ERROR this broker has no access control (no --auth-file): send commands without AUTH",
    );
    raw.send("SUBSCRIBE anything me\nPUBLISH anything hi someone\n");
    assert_eq!(raw.delivery(), "DELIVER anything hi someone");
}

#[test]
fn a_bad_auth_file_is_refused_at_start_with_the_line_and_one_others_can_write_too() {
    let start = |path: PathBuf| {
        Broker::bind(
            "127.0.0.1:0",
            Config {
                auth_file: Some(path),
                ..Config::default()
            },
        )
        .map(|_| ())
    };
    let bad = auth_file("user alice s3cret\nallow alice read lab/#\n", 0o600);
    let Err(StartError::Config(error)) = start(bad) else {
        panic!("a bad line was accepted");
    };
    assert_eq!(error.flag, "--auth-file");
    assert!(
        error.rule.starts_with("line 2: 'read' is not an action"),
        "{}",
        error.rule
    );
    let open = auth_file(FILE, 0o666);
    let Err(StartError::Config(error)) = start(open) else {
        panic!("a file anyone may write was accepted");
    };
    assert!(
        error.rule.starts_with("others can write to it (mode 666)"),
        "{}",
        error.rule
    );
}

#[test]
fn the_clients_log_in_with_user_and_the_secret_from_the_environment() {
    let broker = locked_broker(Duration::from_secs(30));
    let mut bob = logged_in(&broker, "bob", "hunter2");
    bob.send("SUBSCRIBE lab/# bob\n");
    bob.sync();
    let port = broker.addr().port().to_string();
    let publish = |secret: &str| {
        Command::new(env!("CARGO_BIN_EXE_publisher"))
            .args(["alice", "--port", &port, "--user", "alice"])
            .args(["--topic", "lab/alice/news", "hello", "class"])
            .env("PUBSUB_SECRET", secret)
            .output()
            .unwrap()
    };
    let ok = publish("s3cret");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(bob.delivery(), "DELIVER lab/alice/news hello class alice");
    let refused = publish("wrong");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("authentication failed"), "{stderr}");
}

/// A broker with the auth file, the web and UDP, all on free ports.
fn locked_broker_with_web_and_udp(udp_allow_anonymous: bool) -> BrokerHandle {
    common::start_full_broker(Config {
        auth_file: Some(auth_file(FILE, 0o600)),
        udp_allow_anonymous,
        ..Config::default()
    })
}

/// `POST /publish` with JSON, and `Authorization: Basic` of `credentials` if given.
fn post(broker: &BrokerHandle, credentials: Option<&str>, body: &str) -> common::Answer {
    let authorization = credentials.map_or(String::new(), |pair| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::encode(pair.as_bytes())
        )
    });
    common::RawHttp::connect(broker).ask(&format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\n{authorization}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// The web takes the same users: HTTP with `Authorization: Basic` (a `401` challenge
/// without it, a late `401` for a wrong secret), the same rules for what and as whom a
/// user publishes, and the user's name as the publisher id when the request gives none.
#[test]
fn the_web_takes_the_same_users_and_rules() {
    let broker = locked_broker_with_web_and_udp(false);
    let mut reader = logged_in(&broker, "bob", "hunter2");
    reader.send("SUBSCRIBE lab/# bob\n");
    reader.sync();
    let message = r#"{"topic": "lab/alice/temp", "message": "21"}"#;

    let answer = post(&broker, None, message);
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Basic realm=\"pubsub-lab\"")
    );
    assert!(
        answer.body.starts_with("authentication required"),
        "{}",
        answer.body
    );
    let stats = common::RawHttp::connect(&broker)
        .ask("GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(stats.status, 401, "GET /stats needs a user too: {stats:?}");

    let asked = Instant::now();
    let answer = post(&broker, Some("alice:wrong"), message);
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(
        answer.body,
        "authentication failed: unknown user or wrong secret"
    );
    assert!(
        asked.elapsed() >= FAILURE_DELAY,
        "a wrong secret is answered late"
    );
    assert_eq!(stat(&broker, "auth_failures"), 1);

    let answer = post(&broker, Some("alice:s3cret"), message);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(reader.delivery(), "DELIVER lab/alice/temp 21 alice");

    let as_bob = r#"{"topic": "lab/alice/temp", "message": "21", "publisher": "bob"}"#;
    let answer = post(&broker, Some("alice:s3cret"), as_bob);
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.body, "not allowed: alice may not publish as bob");
    let elsewhere = r#"{"topic": "lab/bob/temp", "message": "21"}"#;
    let answer = post(&broker, Some("alice:s3cret"), elsewhere);
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(
        answer.body,
        "not allowed: alice may not publish to lab/bob/temp"
    );
    reader.sync(); // neither refused publish reached anyone
}

/// A WebSocket speaks the line protocol, so `AUTH` is its first frame, as over TCP; one
/// that sends none within `--auth-timeout` is told so and closed with code 1008.
#[test]
fn a_websocket_sends_auth_first_or_is_closed() {
    use pubsub_lab::web::client::{Received, WebSocketClient};
    let broker = locked_broker_with_web_and_udp(false);
    let web = broker.web_addr().unwrap();
    let frame = |client: &mut WebSocketClient| match client.recv(common::TIMEOUT).unwrap() {
        Some(Received::Text(text)) => text,
        other => panic!("expected a text frame, got {other:?}"),
    };
    let mut client = WebSocketClient::connect(web, "/ws").unwrap();
    client.send_text("SUBSCRIBE lab/# web").unwrap();
    assert_eq!(frame(&mut client), REQUIRED);
    client.send_text("AUTH bob hunter2").unwrap();
    assert_eq!(frame(&mut client), "OK AUTH bob");
    client.send_text("SUBSCRIBE # bob").unwrap();
    assert_eq!(
        frame(&mut client),
        "ERROR not allowed: bob may not subscribe to #"
    );

    let short = start_short_timeout_web_broker();
    let mut silent = WebSocketClient::connect(short.web_addr().unwrap(), "/ws").unwrap();
    let told = frame(&mut silent);
    assert!(
        told.starts_with("ERROR authentication timeout: no AUTH within 300ms"),
        "{told}"
    );
    match silent.recv(common::TIMEOUT).unwrap() {
        Some(Received::Closed(Some((1008, _)))) => {}
        other => panic!("expected a close frame with 1008, got {other:?}"),
    }
}

fn start_short_timeout_web_broker() -> BrokerHandle {
    common::start_web_broker_with(Config {
        auth_file: Some(auth_file(FILE, 0o600)),
        auth_timeout: Duration::from_millis(300),
        ..Config::default()
    })
}

/// Datagrams cannot say who sends them: with an auth file they are refused with a reason,
/// unless the broker is started with `--udp-allow-anonymous`.
#[test]
fn datagrams_are_refused_unless_anonymous_ones_are_allowed() {
    let broker = locked_broker_with_web_and_udp(false);
    let udp = common::Udp::new(&broker);
    udp.send("PUBLISH lab/alice/temp 21 alice");
    assert_eq!(
        udp.recv(),
        "ERROR datagrams are refused on this broker (--auth-file): UDP cannot say who sends \
         them; connect over TCP and send AUTH\n"
    );

    // Let in, a datagram is the user `anonymous`, with the rules written for it.
    let open = locked_broker_with_web_and_udp(true);
    let mut reader = logged_in(&open, "bob", "hunter2");
    reader.send("SUBSCRIBE lab/# bob\n");
    reader.sync();
    let udp = common::Udp::new(&open);
    udp.send("PUBLISH lab/alice/temp 21 ticker");
    assert_eq!(
        udp.recv(),
        "ERROR not allowed: anonymous may not publish to lab/alice/temp\n"
    );
    udp.send("PUBLISH lab/sensors/temp 21 ticker");
    assert_eq!(reader.delivery(), "DELIVER lab/sensors/temp 21 ticker");
}

/// Durable subscriptions follow the same rules: the filter must be one the user may
/// subscribe to, and the subscriber id one the user may go by (its name, or `name:...`),
/// so nobody resumes, takes over or cancels a classmate's durable subscription.
#[test]
fn durable_subscriptions_follow_the_rules_and_belong_to_their_user() {
    let broker = locked_broker(Duration::from_secs(30));
    let mut alice = logged_in(&broker, "alice", "s3cret");
    alice.send("DURABLE # alice\n");
    alice.expect("ERROR not allowed: alice may not subscribe to #");
    alice.send("DURABLE lab/# alice:phone\n");
    alice.expect("OK DURABLE lab/# 0");
    let mut bob = logged_in(&broker, "bob", "hunter2");
    bob.send("DURABLE lab/# alice:phone\n");
    bob.expect("ERROR not allowed: bob may not hold durable subscriptions as alice:phone");
    bob.send("CANCEL lab/# alice:phone\n");
    bob.expect("ERROR not allowed: bob may not hold durable subscriptions as alice:phone");
    bob.sync();
    alice.sync(); // still hers: no takeover ERROR came
}

/// A page of another site cannot act with the credentials a browser cached for the broker:
/// with an auth file, `POST /publish` and the WebSocket refuse a request whose `Origin` is
/// not the broker's own (`403`), while a page the broker served, and a program that sends
/// no `Origin` (curl), go on.
#[test]
fn a_page_of_another_site_cannot_act_with_cached_credentials() {
    let broker = locked_broker_with_web_and_udp(false);
    let web = broker.web_addr().unwrap();
    let mut reader = logged_in(&broker, "bob", "hunter2");
    reader.send("SUBSCRIBE lab/# bob\n");
    reader.sync();
    let body = r#"{"topic": "lab/alice/temp", "message": "21"}"#;
    let publish = |origin: &str| {
        common::RawHttp::connect(&broker).ask(&format!(
            "POST /publish HTTP/1.1\r\nHost: {web}\r\n{origin}Authorization: Basic {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            base64::encode(b"alice:s3cret"),
            body.len()
        ))
    };
    let forged = publish("Origin: http://evil.example\r\n");
    assert_eq!(forged.status, 403, "{forged:?}");
    assert!(
        forged
            .body
            .starts_with("cross-site request refused: a page of http://evil.example"),
        "{}",
        forged.body
    );
    let websocket = common::RawHttp::connect(&broker).ask(&format!(
        "GET /ws HTTP/1.1\r\nHost: {web}\r\nOrigin: http://evil.example\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ));
    assert_eq!(websocket.status, 403, "{websocket:?}");
    // The broker's own page, and a program with no Origin, publish as before.
    assert_eq!(publish(&format!("Origin: http://{web}\r\n")).status, 200);
    assert_eq!(publish("").status, 200);
    assert_eq!(reader.delivery(), "DELIVER lab/alice/temp 21 alice");
    assert_eq!(reader.delivery(), "DELIVER lab/alice/temp 21 alice");
    reader.sync(); // the forged one never arrived
}
