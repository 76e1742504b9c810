//! The web listener's HTTP, on raw sockets: what `curl`, `requests` and a browser send,
//! and what a hostile or clumsy client sends (split and pipelined requests, oversize heads
//! and bodies, chunked bodies, a slowloris, wrong methods), each answered with its status
//! and a body that says why, while everyone else carries on.

mod common;

use std::time::{Duration, Instant};

use common::{get, post_json, subscribed, Raw, RawHttp};
use pubsub_lab::Config;

/// The Flask labsheet's answers: 404 while nobody subscribes, then 200, and the TCP
/// subscriber receives the message.
#[test]
fn publish_answers_404_until_someone_subscribes_then_200() {
    let broker = common::start_web_broker();
    let mut web = RawHttp::connect(&broker);
    let body = r#"{"topic": "weather", "message": "Rainy day ahead!", "publisher": "pub1"}"#;
    let answer = web.ask(&post_json(body));
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (404, "Topic 'weather' does not exist")
    );
    let mut sub = subscribed(broker.addr(), "weather", "sub1");
    let answer = web.ask(&post_json(body));
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "Message published to topic 'weather'")
    );
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(sub.delivery(), "DELIVER weather Rainy day ahead! pub1");
    let answer = web.ask(&post_json(r#"{"topic": "weather", "message": "no id"}"#));
    assert_eq!(answer.status, 200);
    assert_eq!(
        sub.delivery(),
        "DELIVER weather no id http",
        "the default publisher id"
    );
}

/// A form body and a text/plain body with `?topic=` publish too.
#[test]
fn forms_and_plain_text_publish() {
    let broker = common::start_web_broker();
    let mut sub = subscribed(broker.addr(), "news/tech", "sub1");
    let mut web = RawHttp::connect(&broker);
    let form = "topic=news%2Ftech&message=caf%C3%A9+au+lait&publisher=form1";
    let answer = web.ask(&format!(
        "POST /publish HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    ));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(sub.delivery(), "DELIVER news/tech café au lait form1");
    let answer = web.ask(
        "POST /publish?topic=news/tech HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\r\nplain  words!\r\n",
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(sub.delivery(), "DELIVER news/tech plain  words! http");
}

/// What the line protocol refuses, HTTP refuses with 400 and the same reason.
#[test]
fn a_bad_publish_gets_400_with_the_line_protocols_reason() {
    let broker = common::start_web_broker();
    let mut line = Raw::connect(broker.addr());
    line.send("PUBLISH bad\u{1b}topic hi p\n");
    let line_reason = line.line();
    let mut web = RawHttp::connect(&broker);
    let answer = web.ask(&post_json(
        r#"{"topic": "bad\u001btopic", "message": "hi"}"#,
    ));
    assert_eq!(answer.status, 400);
    assert_eq!(format!("ERROR {}", answer.body), line_reason);
    let cases = [
        (
            r#"{"topic": "two words", "message": "hi"}"#,
            "a topic must be one word, with no spaces or line breaks",
        ),
        (
            r#"{"topic": "t", "message": "two\nlines"}"#,
            "message contains U+000A (line feed), which other programs read as a line break",
        ),
        (
            r#"{"topic": "t", "message": ""}"#,
            "a message must be one line of text, not empty, and not start or end with a space",
        ),
        (
            r#"{"topic": "t", "message": "m", "publisher": "a b"}"#,
            "a publisher id must be one word, with no spaces or line breaks",
        ),
        (
            r#"{"topic": "t""#,
            "invalid JSON at byte 13: expected ',' or '}'",
        ),
        (r#"{"message": "m"}"#, "missing \"topic\""),
    ];
    for (body, reason) in cases {
        let answer = web.ask(&post_json(body));
        assert_eq!(answer.status, 400, "{body}");
        assert!(answer.body.starts_with(reason), "{body}: {}", answer.body);
    }
    let answer = web.ask(
        "POST /publish HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\nContent-Length: 1\r\n\r\nx",
    );
    assert_eq!(answer.status, 415);
    let counted = common::stat(&broker, "errors");
    assert_eq!(
        counted,
        1 + 1 + 6 + 1,
        "one line-protocol ERROR and eight refused publishes"
    );
}

/// `GET /topics`, `GET /topics?filter=`, `GET /stats` and `GET /healthz`.
#[test]
fn topics_stats_and_health_are_json_and_text() {
    let broker = common::start_web_broker();
    let _a = subscribed(broker.addr(), "news/tech", "a");
    let _b = subscribed(broker.addr(), "weather", "b");
    let _c = subscribed(broker.addr(), "weather", "c");
    let mut web = RawHttp::connect(&broker);
    let topics = web.ask(&get("/topics"));
    assert_eq!(topics.header("content-type"), Some("application/json"));
    assert_eq!(
        topics.body,
        "{\"topics\":[{\"topic\":\"news/tech\",\"subscribers\":1},{\"topic\":\"weather\",\"subscribers\":2}],\"more\":0}\n"
    );
    let filtered = web.ask(&get("/topics?filter=news/%23"));
    assert_eq!(
        filtered.body,
        "{\"topics\":[{\"topic\":\"news/tech\",\"subscribers\":1}],\"more\":0}\n"
    );
    let bad = web.ask(&get("/topics?filter=news%23"));
    assert_eq!(bad.status, 400);
    assert!(bad.body.starts_with("bad topic filter"), "{}", bad.body);
    let stats = web.ask(&get("/stats"));
    let value = pubsub_lab::json::parse(&stats.body).unwrap();
    assert_eq!(
        value.get("subscriptions"),
        Some(&pubsub_lab::json::Value::Number(3.0))
    );
    assert_eq!(
        value.get("connections_current"),
        Some(&pubsub_lab::json::Value::Number(4.0))
    );
    let health = web.ask(&get("/healthz"));
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
}

/// The live view is served at `/`, whole, and `HEAD` gives its head alone.
#[test]
fn the_page_is_served_at_the_root() {
    let broker = common::start_web_broker();
    let mut web = RawHttp::connect(&broker);
    let page = web.ask(&get("/?topic=weather"));
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.starts_with("<!doctype html>"));
    assert!(page.body.contains("new WebSocket") && page.body.contains("--accent"));
    web.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = web.answer_to(true);
    assert_eq!(
        head.header("content-length"),
        Some(page.body.len().to_string().as_str())
    );
    let after = web.ask(&get("/healthz"));
    assert_eq!(
        after.body, "ok",
        "nothing of the page's body followed the HEAD answer"
    );
}

/// A request that arrives a byte at a time is answered once it is whole.
#[test]
fn a_request_split_into_single_bytes_is_answered_once_whole() {
    let broker = common::start_web_broker();
    let _sub = subscribed(broker.addr(), "t", "s");
    let mut web = RawHttp::connect(&broker);
    for byte in post_json(r#"{"topic": "t", "message": "bit by bit"}"#).bytes() {
        web.send(std::str::from_utf8(&[byte]).unwrap());
    }
    assert_eq!(web.answer().status, 200);
}

/// Requests sent all at once are answered in order, on the one connection.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = common::start_web_broker();
    let mut sub = subscribed(broker.addr(), "t", "s");
    let mut web = RawHttp::connect(&broker);
    let mut burst = String::new();
    for i in 0..5 {
        burst.push_str(&post_json(&format!(
            r#"{{"topic": "t", "message": "m{i}"}}"#
        )));
    }
    burst.push_str(&get("/healthz"));
    burst.push_str(&post_json(r#"{"topic": "nobody", "message": "m"}"#));
    web.send(&burst);
    for _ in 0..5 {
        assert_eq!(web.answer().status, 200);
    }
    assert_eq!(web.answer().body, "ok");
    assert_eq!(web.answer().status, 404);
    for i in 0..5 {
        assert_eq!(sub.delivery(), format!("DELIVER t m{i} http"));
    }
}

/// `Connection: close` and HTTP/1.0 get one answer and then the end of the connection;
/// HTTP/1.1 keeps it open.
#[test]
fn keep_alive_unless_asked_to_close() {
    let broker = common::start_web_broker();
    let mut web = RawHttp::connect(&broker);
    assert_eq!(web.ask(&get("/healthz")).body, "ok");
    assert_eq!(
        web.ask(&get("/healthz")).body,
        "ok",
        "the same connection, kept alive"
    );
    let closing = web.ask("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(closing.header("connection"), Some("close"));
    assert!(web.read_to_eof().is_empty());
    let mut old = RawHttp::connect(&broker);
    let answer = old.ask("GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(
        (answer.status, answer.header("connection")),
        (200, Some("close"))
    );
    assert!(old.read_to_eof().is_empty());
}

/// Heads, bodies and chunked bodies past the limits get 431, 413 and 411, and the
/// connection is closed after the answer.
#[test]
fn limits_are_answered_with_their_status() {
    let broker = common::start_web_broker_with(Config {
        max_line_bytes: 1000,
        ..Config::default()
    });
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nCookie: {}\r\n\r\n",
        "c".repeat(9000)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-Y: z\r\n".repeat(65)
    );
    let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
    let big_body = "POST /publish HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 1001\r\n\r\n";
    let chunked = "POST /publish HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let cases = [
        (
            huge_header.as_str(),
            431,
            "request head larger than 8192 bytes",
        ),
        (many.as_str(), 431, "request head larger than"),
        (
            long_target.as_str(),
            414,
            "request line longer than 8192 bytes",
        ),
        (big_body, 413, "request body longer than 1000 bytes"),
        (chunked, 411, "send the body with a Content-Length"),
    ];
    for (request, status, reason) in cases {
        let mut web = RawHttp::connect(&broker);
        let answer = web.ask(request);
        assert_eq!(answer.status, status, "{reason}");
        assert!(answer.body.starts_with(reason), "{}", answer.body);
        assert_eq!(answer.header("connection"), Some("close"));
        web.read_to_eof();
    }
    let mut web = RawHttp::connect(&broker);
    assert_eq!(
        web.ask(&get("/healthz")).body,
        "ok",
        "and the broker carries on"
    );
}

/// Malformed requests, unknown paths and wrong methods.
#[test]
fn bad_requests_unknown_paths_and_wrong_methods() {
    let broker = common::start_web_broker();
    let cases = [
        (
            "GARBAGE\r\n\r\n",
            400,
            "bad request: the request line must be METHOD /path HTTP/1.1",
        ),
        (
            "GET / HTTP/1.1\r\n\r\n",
            400,
            "bad request: an HTTP/1.1 request must have exactly one Host",
        ),
        ("GET / HTTP/2.0\r\n\r\n", 505, "only HTTP/1.1 and HTTP/1.0"),
        (
            "GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n",
            404,
            "no such page: the live view is at /",
        ),
        (
            "DELETE /publish HTTP/1.1\r\nHost: t\r\n\r\n",
            405,
            "method DELETE is not allowed on /publish: use POST",
        ),
        (
            "GET /publish HTTP/1.1\r\nHost: t\r\n\r\n",
            405,
            "method GET is not allowed on /publish",
        ),
        (
            "POST /topics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            405,
            "method POST is not allowed on /topics: use GET, HEAD",
        ),
        (
            "BREW / HTTP/1.1\r\nHost: t\r\n\r\n",
            405,
            "method BREW is not allowed on /",
        ),
    ];
    for (request, status, reason) in cases {
        let mut web = RawHttp::connect(&broker);
        let answer = web.ask(request);
        assert_eq!(answer.status, status, "{request:?}");
        assert!(
            answer.body.starts_with(reason),
            "{request:?}: {}",
            answer.body
        );
        if status == 405 {
            assert!(answer.header("allow").is_some());
        }
    }
}

/// A request that never finishes (a slowloris) is answered 408 and closed after
/// `--http-timeout`; an idle keep-alive connection is closed without a word; meanwhile
/// other clients are served.
#[test]
fn a_slowloris_is_cut_off_after_the_timeout() {
    let timeout = Duration::from_millis(400);
    let broker = common::start_web_broker_with(Config {
        http_timeout: timeout,
        ..Config::default()
    });
    let mut slow = RawHttp::connect(&broker);
    let started = Instant::now();
    slow.send("POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n");
    slow.send("12");
    let mut other = RawHttp::connect(&broker);
    assert_eq!(
        other.ask(&get("/healthz")).body,
        "ok",
        "others are served meanwhile"
    );
    let answer = slow.answer();
    assert!(started.elapsed() >= timeout);
    assert_eq!(answer.status, 408);
    assert!(answer
        .body
        .starts_with("the request did not arrive whole within 400ms"));
    slow.read_to_eof();
    let mut idle = RawHttp::connect(&broker);
    assert!(
        idle.read_to_eof().is_empty(),
        "an idle connection is closed, with no answer"
    );
}

/// When every slot is taken, a web client is told so with 503 and a body.
#[test]
fn a_full_broker_answers_503() {
    let broker = common::start_web_broker_with(Config {
        max_clients: 1,
        ..Config::default()
    });
    let mut holder = Raw::connect(broker.addr());
    holder.sync();
    let mut web = RawHttp::connect(&broker);
    let answer = web.answer();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (503, "broker full (1 clients): try again later")
    );
    assert_eq!(common::stat(&broker, "connections_refused"), 1);
}

/// The WebSocket endpoint explains itself to a client that is not one.
#[test]
fn the_websocket_endpoint_refuses_what_is_not_a_handshake() {
    let broker = common::start_web_broker();
    let mut web = RawHttp::connect(&broker);
    let plain = web.ask(&get("/ws"));
    assert_eq!(plain.status, 426);
    assert!(plain
        .body
        .starts_with("this is the WebSocket of the live view"));
    let handshake = |version: &str, key: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
    };
    let old = web.ask(&handshake("8", "dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(
        (old.status, old.header("sec-websocket-version")),
        (426, Some("13"))
    );
    let bad_key = web.ask(&handshake("13", "short"));
    assert_eq!(bad_key.status, 400);
    let ok = web.ask(&handshake("13", "dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(ok.status, 101);
    assert_eq!(
        ok.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(ok.header("content-length"), None);
}

/// Stopping the broker closes keep-alive connections and joins their threads.
#[test]
fn stop_closes_web_connections() {
    let broker = common::start_web_broker();
    let mut web = RawHttp::connect(&broker);
    assert_eq!(web.ask(&get("/healthz")).body, "ok");
    broker.stop();
    assert!(web.read_to_eof().is_empty());
}

/// The `broker` binary's rule for its default web port: `web_if_free` starts without the
/// web when the port is taken, where `web` fails.
#[test]
fn a_taken_port_is_skipped_only_when_allowed() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap();
    let broker = pubsub_lab::Broker::builder()
        .line("127.0.0.1:0")
        .web_if_free(taken)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(broker.web_addr(), None);
    Raw::connect(broker.addr()).sync();
    let refused = pubsub_lab::Broker::builder()
        .line("127.0.0.1:0")
        .web(taken)
        .bind()
        .unwrap_err();
    assert!(
        matches!(
            refused,
            pubsub_lab::StartError::Bind {
                listener: "web",
                ..
            }
        ),
        "{refused}"
    );
}
