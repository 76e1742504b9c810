//! One gate for every client: the same rules hold on every way in. Each rule is a loop
//! over a table of ways in (TCP lines, kn-sock's JSON lines, WebSocket, UDP, HTTP, the
//! embedding API, the client library), so that adding a way in is adding a row, and a
//! way in that forgets a rule fails here.

mod common;

use std::time::Duration;

use common::{auth_file, json_line, logged_in, member, start_full_broker, Raw, RawHttp, Udp};
use pubsub_lab::web::client::{Received, WebSocketClient};
use pubsub_lab::{BrokerHandle, Client, Config, Error};

/// Every character some widespread line reader ends a line at, but `\n` (which ends the
/// line on every way in that reads lines, so it cannot sit inside a field there).
const LINE_BREAKS: [char; 9] = [
    '\r', '\u{0b}', '\u{0c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}', '\u{2029}',
];

/// The fields of a publish.
#[derive(Debug, Clone, Copy)]
enum Field {
    Topic,
    Message,
    Id,
}

/// A publish of `topic`, `message`, `id`, with `bad` put in the middle of `field`.
fn fields(field: Field, bad: char) -> (String, String, String) {
    let spoiled = |text: &str| format!("{text}{bad}DELIVER");
    match field {
        Field::Topic => (spoiled("lab/news"), "hello".into(), "pub1".into()),
        Field::Message => ("lab/news".into(), spoiled("hello"), "pub1".into()),
        Field::Id => ("lab/news".into(), "hello".into(), spoiled("pub1")),
    }
}

/// A string as a JSON string literal, every character outside printable ASCII escaped.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// One way in, as a test drives it: it publishes, and says whether it was refused, with
/// the reason in its own dialect.
struct Ways {
    broker: BrokerHandle,
    tcp: Raw,
    json: Raw,
    websocket: WebSocketClient,
    udp: Udp,
    client: Client,
}

const WAYS: [&str; 7] = [
    "tcp",
    "json",
    "websocket",
    "udp",
    "http",
    "in-process",
    "client",
];

impl Ways {
    fn new(broker: BrokerHandle) -> Ways {
        let tcp = Raw::connect(broker.addr());
        let json = Raw::connect(broker.addr());
        let websocket = WebSocketClient::connect(broker.web_addr().unwrap(), "/ws").unwrap();
        let udp = Udp::new(&broker);
        let client = Client::connect(broker.addr()).unwrap();
        Ways {
            broker,
            tcp,
            json,
            websocket,
            udp,
            client,
        }
    }

    /// Publishes through `way`: `Ok(())` if accepted, `Err(reason)` if refused.
    fn publish(&mut self, way: &str, topic: &str, message: &str, id: &str) -> Result<(), String> {
        match way {
            "tcp" => {
                self.tcp.send(&format!("PUBLISH {topic} {message} {id}\n"));
                refused_line(&mut self.tcp)
            }
            "json" => {
                self.json.send(&format!(
                    "{{\"action\": \"publish\", \"topic\": {}, \"message\": {}, \"publisher\": {}, \"verbose\": true}}\n",
                    json_string(topic),
                    json_string(message),
                    json_string(id)
                ));
                let answer = json_line(&mut self.json);
                match member(&answer, "error") {
                    error if error.is_empty() => {
                        assert_eq!(member(&answer, "ok"), "publish", "{answer:?}");
                        Ok(())
                    }
                    error => Err(error),
                }
            }
            "websocket" => {
                self.websocket
                    .send_text(&format!("PUBLISH {topic} {message} {id}"))
                    .unwrap();
                self.websocket.send_text("PING ws").unwrap();
                match self.websocket.recv(common::TIMEOUT).unwrap() {
                    Some(Received::Text(text)) if text == "PONG ws" => Ok(()),
                    Some(Received::Text(text)) => {
                        let after = self.websocket.recv(common::TIMEOUT).unwrap();
                        assert!(matches!(after, Some(Received::Text(ref t)) if t == "PONG ws"));
                        Err(text)
                    }
                    other => panic!("expected a text frame, got {other:?}"),
                }
            }
            "udp" => {
                self.udp.send(&format!("PUBLISH {topic} {message} {id}\n"));
                match self.udp.sync().as_slice() {
                    [] => Ok(()),
                    [error] => Err(error.clone()),
                    more => panic!("more than one answer: {more:?}"),
                }
            }
            "http" => {
                let body = format!(
                    "{{\"topic\": {}, \"message\": {}, \"publisher\": {}}}",
                    json_string(topic),
                    json_string(message),
                    json_string(id)
                );
                let answer = RawHttp::connect(&self.broker).ask(&common::post_json(&body));
                match answer.status {
                    200 | 404 => Ok(()),
                    _ => Err(format!("{} {}", answer.status, answer.body)),
                }
            }
            "in-process" => self
                .broker
                .publish(topic, message, id)
                .map(|_| ())
                .map_err(|error| error.to_string()),
            "client" => match self.client.publish(topic, message, id) {
                Ok(()) => Ok(()),
                Err(Error::InvalidArgument(reason)) => Err(reason),
                Err(other) => panic!("the client failed otherwise: {other}"),
            },
            other => unreachable!("no way in called {other}"),
        }
    }
}

/// The answer to the line just sent on a TCP connection: `Ok` if the `PING` after it
/// comes back first, `Err` with the `ERROR` line otherwise.
fn refused_line(raw: &mut Raw) -> Result<(), String> {
    raw.send("PING tcp\n");
    let first = raw.line();
    if first == "PONG tcp" {
        return Ok(());
    }
    raw.expect("PONG tcp");
    Err(first)
}

/// A line break in any field of a publish is refused on every way in, each in its own
/// dialect; no subscriber sees any of it; and every way in carries on.
#[test]
fn a_line_break_in_any_field_is_refused_on_every_way_in() {
    let broker = start_full_broker(Config::default());
    let mut watcher = Raw::connect(broker.addr());
    watcher.send("SUBSCRIBE # watcher\n");
    watcher.sync();
    let mut ways = Ways::new(broker);
    for way in WAYS {
        for field in [Field::Topic, Field::Message, Field::Id] {
            for bad in LINE_BREAKS {
                let (topic, message, id) = fields(field, bad);
                let outcome = ways.publish(way, &topic, &message, &id);
                assert!(
                    outcome.is_err(),
                    "{way} accepted U+{:04X} in the {field:?}",
                    bad as u32
                );
            }
        }
        // The same way in still publishes, and that is the first thing the watcher sees.
        let message = format!("fine-from-{way}");
        assert_eq!(ways.publish(way, "lab/news", &message, "pub1"), Ok(()));
        assert_eq!(
            watcher.delivery(),
            format!("DELIVER lab/news {message} pub1")
        );
    }
    watcher.sync();
}

/// A message the broker would refuse, or could not give back unchanged (padded with
/// spaces), is refused on every way in, never sent changed; the client library refuses it
/// before sending, with the broker's own reason.
#[test]
fn a_padded_message_is_refused_on_every_way_in_with_one_reason() {
    let broker = start_full_broker(Config::default());
    let reason = broker
        .publish("t", "  padded  ", "p")
        .expect_err("the embedding API refuses it")
        .to_string();
    let mut ways = Ways::new(broker);
    for way in ["json", "http", "in-process", "client"] {
        let refused = ways
            .publish(way, "t", "  padded  ", "p")
            .expect_err("a padded message is refused");
        assert!(refused.contains(&reason), "{way}: {refused}");
    }
}

/// The broker's limits hold on every way in, with the same reason. (The client library
/// is not in this row: it does not know the broker's settings, and leaves the lengths to
/// the broker, whose `ERROR` it then reads like any other.)
#[test]
fn the_limits_hold_on_every_way_in_with_one_reason() {
    let broker = start_full_broker(Config {
        max_topic_bytes: 16,
        max_id_bytes: 8,
        ..Config::default()
    });
    let mut ways = Ways::new(broker);
    for way in WAYS.iter().filter(|&&way| way != "client") {
        let too_long = ways
            .publish(way, "a-topic-longer-than-16", "m", "p")
            .expect_err("a topic over the limit is refused");
        assert!(
            too_long.contains("topic longer than 16 bytes"),
            "{way}: {too_long}"
        );
        let long_id = ways
            .publish(way, "t", "m", "an-id-over-8")
            .expect_err("an id over the limit is refused");
        assert!(
            long_id.contains("id longer than 8 bytes"),
            "{way}: {long_id}"
        );
    }
}

const FILE: &str = "user alice s3cret\n\
    user bob hunter2\n\
    user carol c4rol\n\
    allow * subscribe lab/#\n\
    allow * publish lab/#\n\
    allow carol subscribe private/carol/#\n\
    allow carol publish private/carol/#\n\
    allow anonymous subscribe lab/#\n\
    allow anonymous publish lab/#\n";

fn locked(config: Config) -> BrokerHandle {
    start_full_broker(Config {
        auth_file: Some(auth_file(FILE, 0o600)),
        udp_allow_anonymous: true,
        ..config
    })
}

/// An anonymous datagram is the user `anonymous` to the rules: it reads and writes what
/// `allow anonymous` lines allow, and neither a classmate's private topics nor anything as
/// a classmate.
#[test]
fn anonymous_datagrams_follow_the_rules_for_anonymous() {
    let broker = locked(Config::default());
    let mut carol = logged_in(&broker, "carol", "c4rol");
    carol.send("SUBSCRIBE private/carol/# carol\nSUBSCRIBE lab/# carol\n");
    carol.sync();
    let udp = Udp::new(&broker);
    udp.send("SUBSCRIBE private/carol/# spy\n");
    assert_eq!(
        udp.sync(),
        ["ERROR not allowed: anonymous may not subscribe to private/carol/#\n"]
    );
    udp.send("PUBLISH lab/news forged alice\n");
    udp.send("PUBLISH lab/news forged alice:phone\n");
    udp.send("PUBLISH private/carol/x forged ticker\n");
    assert_eq!(
        udp.sync(),
        [
            "ERROR not allowed: anonymous may not publish as alice\n",
            "ERROR not allowed: anonymous may not publish as alice:phone\n",
            "ERROR not allowed: anonymous may not publish to private/carol/x\n",
        ]
    );
    carol.send("PUBLISH private/carol/diary secret carol\n");
    assert_eq!(carol.delivery(), "DELIVER private/carol/diary secret carol");
    udp.send("PUBLISH lab/news hello ticker\n");
    assert!(udp.sync().is_empty());
    assert_eq!(carol.delivery(), "DELIVER lab/news hello ticker");
    // What anonymous may read, it reads.
    udp.send("SUBSCRIBE lab/# listener\n");
    assert!(udp.sync().is_empty());
    carol.send("PUBLISH lab/news hi carol\n");
    assert!(udp.recv().starts_with("DELIVER lab/news hi carol "));
}

/// Over HTTP, a request without credentials is anonymous too: allowed what anonymous is,
/// and challenged (`401`) for the rest, never let through as someone.
#[test]
fn an_http_request_without_credentials_is_anonymous() {
    let broker = locked(Config::default());
    let mut carol = logged_in(&broker, "carol", "c4rol");
    carol.send("SUBSCRIBE lab/# carol\n");
    carol.sync();
    let post = |body: &str| RawHttp::connect(&broker).ask(&common::post_json(body));
    let as_alice = post(r#"{"topic": "lab/news", "message": "forged", "publisher": "alice"}"#);
    assert_eq!(as_alice.status, 401, "{as_alice:?}");
    let private = post(r#"{"topic": "private/carol/x", "message": "forged", "publisher": "x"}"#);
    assert_eq!(private.status, 401, "{private:?}");
    let fine = post(r#"{"topic": "lab/news", "message": "hello", "publisher": "visitor"}"#);
    assert_eq!(fine.status, 200, "{fine:?}");
    assert_eq!(carol.delivery(), "DELIVER lab/news hello visitor");
    carol.sync();
}

/// A listing shows each user only the topics it may subscribe to: `TOPICS` over TCP and a
/// WebSocket, and `GET /topics`, for a user and for anonymous.
#[test]
fn listings_show_only_what_the_user_may_subscribe_to() {
    let broker = locked(Config::default());
    let mut carol = logged_in(&broker, "carol", "c4rol");
    carol.send("RETAIN private/carol/pinned note carol\nRETAIN lab/pinned note carol\n");
    carol.sync();
    let listed_to = |raw: &mut Raw| {
        raw.send("TOPICS\n");
        let mut lines = Vec::new();
        loop {
            let line = raw.line();
            if line == "END TOPICS" {
                return lines;
            }
            lines.push(line);
        }
    };
    let carols = listed_to(&mut carol);
    assert!(
        carols.iter().any(|l| l.contains("private/carol/pinned")),
        "{carols:?}"
    );
    let mut bob = logged_in(&broker, "bob", "hunter2");
    let bobs = listed_to(&mut bob);
    assert!(bobs.iter().any(|l| l.contains("lab/pinned")), "{bobs:?}");
    assert!(
        !bobs.iter().any(|l| l.contains("private")),
        "bob sees carol's topic: {bobs:?}"
    );

    let mut web = WebSocketClient::connect(broker.web_addr().unwrap(), "/ws").unwrap();
    web.send_text("AUTH bob hunter2").unwrap();
    web.send_text("TOPICS").unwrap();
    let mut frames = Vec::new();
    loop {
        match web.recv(common::TIMEOUT).unwrap() {
            Some(Received::Text(text)) if text == "END TOPICS" => break,
            Some(Received::Text(text)) => frames.push(text),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
    assert!(
        frames.iter().any(|l| l.contains("lab/pinned")),
        "{frames:?}"
    );
    assert!(!frames.iter().any(|l| l.contains("private")), "{frames:?}");

    let get = |authorization: &str| {
        RawHttp::connect(&broker).ask(&format!(
            "GET /topics HTTP/1.1\r\nHost: x\r\n{authorization}Connection: close\r\n\r\n"
        ))
    };
    let basic = |pair: &str| {
        format!(
            "Authorization: Basic {}\r\n",
            pubsub_lab::web::base64::encode(pair.as_bytes())
        )
    };
    for (who, answer) in [("bob", get(&basic("bob:hunter2"))), ("anonymous", get(""))] {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(answer.body.contains("lab/pinned"), "{who}: {}", answer.body);
        assert!(!answer.body.contains("private"), "{who}: {}", answer.body);
    }
    let carols = get(&basic("carol:c4rol"));
    assert!(carols.body.contains("private/carol/pinned"), "{carols:?}");
}

/// A connection that pipelines `AUTH` guesses gets three answers and is closed: the
/// failures per connection are counted, not only the time.
#[test]
fn pipelined_guesses_end_the_connection_after_three() {
    let broker = locked(Config {
        auth_timeout: Duration::from_secs(30),
        ..Config::default()
    });
    let mut raw = Raw::connect(broker.addr());
    raw.send(&"AUTH alice guess\n".repeat(40));
    let answers = raw.read_to_eof();
    let lines: Vec<&str> = answers.lines().collect();
    assert_eq!(
        lines,
        [
            "ERROR authentication failed: unknown user or wrong secret",
            "ERROR authentication failed: unknown user or wrong secret",
            "ERROR authentication failed 3 times: closing the connection; check your user \
             and secret and connect again",
        ]
    );
    assert_eq!(common::stat(&broker, "auth_failures"), 3);
}

/// The `AUTH` deadline holds at every line, not only while the connection waits for
/// input: a line handled after the deadline ends the connection, even a right `AUTH`.
#[test]
fn the_auth_deadline_holds_at_every_line() {
    let broker = locked(Config {
        // Shorter than one failure's delay, so the second line comes after it.
        auth_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let mut raw = Raw::connect(broker.addr());
    raw.send("AUTH alice wrong\nAUTH alice s3cret\nPING\n");
    let answers = raw.read_to_eof();
    let lines: Vec<&str> = answers.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        "ERROR authentication failed: unknown user or wrong secret"
    );
    assert!(
        lines[1].starts_with("ERROR authentication timeout"),
        "{lines:?}"
    );
}

/// One address has a budget of failures over every connection and every way in: more
/// connections do not buy more guesses, and HTTP shares it (`429`).
#[test]
fn an_address_has_one_budget_of_failures_on_every_way_in() {
    let broker = locked(Config {
        auth_timeout: Duration::from_secs(30),
        ..Config::default()
    });
    let guessers: Vec<_> = (0..4)
        .map(|_| {
            let addr = broker.addr();
            std::thread::spawn(move || {
                let mut raw = Raw::connect(addr);
                raw.send(&"AUTH alice guess\n".repeat(3));
                raw.read_to_eof()
            })
        })
        .collect();
    let answers: String = guessers.into_iter().map(|t| t.join().unwrap()).collect();
    let out_of_budget = answers.matches("too many failed logins").count();
    let failed = answers.matches("authentication failed").count();
    // Ten guesses were looked at; the connections that asked for more were refused once,
    // at once, and closed.
    assert_eq!(failed, 10, "{answers}");
    assert!((1..=2).contains(&out_of_budget), "{answers}");
    assert_eq!(common::stat(&broker, "auth_failures"), 10);
    // Even the right secret waits for the window now, over TCP and over HTTP.
    let mut raw = Raw::connect(broker.addr());
    raw.send("AUTH alice s3cret\n");
    let refused = raw.line();
    assert!(
        refused.starts_with("ERROR too many failed logins from your address"),
        "{refused}"
    );
    let answer = RawHttp::connect(&broker).ask(&format!(
        "GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
        pubsub_lab::web::base64::encode(b"alice:s3cret")
    ));
    assert_eq!(answer.status, 429, "{answer:?}");
    assert!(answer.header("retry-after").is_some(), "{answer:?}");
}

/// A JSON client's confirms come in JSON, including the ones that wait for the log, and
/// `"verbose": true` acknowledges every command that has an acknowledgement: publish,
/// retain and unretain alike.
#[test]
fn confirms_reach_a_json_client_in_json() {
    let dir = std::env::temp_dir().join(format!("pubsub-lab-gate-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let broker = common::start_broker_with(Config {
        data_dir: Some(dir.clone()),
        ..Config::default()
    });
    // A durable subscription, so that what is published to `t` is written to the log.
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE t holder\n");
    holder.expect("OK DURABLE t 0");
    let mut json = Raw::connect(broker.addr());
    for (action, extra, ok) in [
        ("publish", r#", "message": "m""#, "publish"),
        ("retain", r#", "message": "m""#, "retain"),
        ("unretain", "", "unretain"),
    ] {
        json.send(&format!(
            "{{\"action\": \"{action}\", \"topic\": \"t\"{extra}, \"verbose\": true}}\n"
        ));
        let answer = json_line(&mut json);
        assert_eq!(member(&answer, "ok"), ok, "{action}: {answer:?}");
        assert_eq!(member(&answer, "topic"), "t", "{action}: {answer:?}");
    }
    // The log can no longer be written (its directory is gone): the confirm becomes the
    // error that says so, still in JSON.
    std::fs::remove_dir_all(&dir).unwrap();
    json.send(
        "{\"action\": \"publish\", \"topic\": \"t\", \"message\": \"m\", \"verbose\": true}\n",
    );
    let answer = json_line(&mut json);
    assert!(
        member(&answer, "error").starts_with("message not stored, not confirmed"),
        "{answer:?}"
    );
    broker.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
