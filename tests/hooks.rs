//! The embedding program's hooks: called on connect, subscribe, unsubscribe and publish
//! for every transport, able to observe, refuse with a reason, or rewrite a message; a
//! hook that panics refuses and takes nothing down.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{
    get, json_line, member, post_json, stat, subscribed, wait_until, Raw, RawHttp, Udp, TIMEOUT,
};
use parking_lot::Mutex;
use pubsub_lab::hooks::{
    ClientInfo, Hooks, Publish, PublishVerdict, Refusal, Transport, HOOK_FAILED,
};
use pubsub_lab::protocol::ProtocolError;
use pubsub_lab::web::client::{Received, WebSocketClient};
use pubsub_lab::{Broker, BrokerHandle, Config};

/// A broker with `hooks`, taking TCP, UDP and the web on ports the OS picked.
fn broker_with(hooks: impl Hooks) -> BrokerHandle {
    Broker::builder()
        .config(Config::default())
        .line("127.0.0.1:0")
        .udp("127.0.0.1:0")
        .web("127.0.0.1:0")
        .hooks(hooks)
        .bind()
        .unwrap()
        .spawn()
        .unwrap()
}

/// Turns away every client that speaks JSON, and records every client it saw.
#[derive(Default)]
struct Doorman {
    seen: Arc<Mutex<Vec<(Transport, bool)>>>,
}

impl Hooks for Doorman {
    fn on_connect(&self, client: ClientInfo<'_>) -> Result<(), Refusal> {
        self.seen
            .lock()
            .push((client.transport, client.addr.is_some()));
        match client.transport {
            Transport::Json => Err("no JSON clients today".into()),
            _ => Ok(()),
        }
    }
}

/// `on_connect` sees each client once, before its first command, with its transport; a
/// refused client is told why in its dialect and disconnected, others go on.
#[test]
fn the_connect_hook_observes_and_refuses() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let broker = broker_with(Doorman {
        seen: Arc::clone(&seen),
    });
    let mut classic = Raw::connect(broker.addr());
    classic.sync();
    classic.sync();
    let mut json = Raw::connect(broker.addr());
    json.send("{\"action\": \"subscribe\", \"topic\": \"t\"}\n");
    assert_eq!(
        member(&json_line(&mut json), "error"),
        "no JSON clients today"
    );
    assert_eq!(json.read_to_eof(), "", "refused, then disconnected");
    assert!(
        broker.topic_counts().is_empty(),
        "its command was not executed"
    );
    let udp = Udp::new(&broker);
    udp.send("PING 1");
    assert_eq!(udp.recv(), "PONG 1\n");
    assert_eq!(
        *seen.lock(),
        [
            (Transport::Line, true),
            (Transport::Json, true),
            (Transport::Udp, true)
        ],
        "once per TCP connection, whatever it sends; per datagram for UDP without a lease"
    );
}

/// Counts subscriptions and refuses topics under `secret/`, on every transport.
#[derive(Default)]
struct Gate {
    subscribed: AtomicUsize,
    unsubscribed: AtomicUsize,
}

impl Hooks for Gate {
    fn on_subscribe(&self, _client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
        if topic.starts_with("secret/") {
            return Err(format!("{topic} is not for you").into());
        }
        self.subscribed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn on_unsubscribe(&self, _client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
        if topic == "homework" {
            return Err("nobody unsubscribes from homework".into());
        }
        self.unsubscribed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// `on_subscribe` refuses with a reason on every transport; the refused client is not
/// subscribed and carries on.
#[test]
fn the_subscribe_hook_refuses_on_every_transport() {
    let gate = Arc::new(Gate::default());
    let broker = broker_with(SharedGate(Arc::clone(&gate)));
    let mut classic = Raw::connect(broker.addr());
    classic.send("SUBSCRIBE secret/exam sub1\nSUBSCRIBE news sub1\n");
    classic.expect("ERROR secret/exam is not for you");
    classic.sync();
    let mut json = Raw::connect(broker.addr());
    json.send("{\"action\": \"subscribe\", \"topic\": \"secret/exam\"}\n");
    assert_eq!(
        member(&json_line(&mut json), "error"),
        "secret/exam is not for you"
    );
    let udp = Udp::new(&broker);
    udp.send("SUBSCRIBE secret/exam ear\n");
    assert_eq!(udp.sync(), ["ERROR secret/exam is not for you\n"]);
    assert_eq!(
        stat(&broker, "udp_subscribers"),
        0,
        "a refused address holds no lease"
    );
    assert_eq!(
        broker.subscribe("secret/exam").unwrap_err(),
        ProtocolError::Refused("secret/exam is not for you".into())
    );
    assert_eq!(broker.topic_counts(), [("news".to_string(), 1)]);
    assert_eq!(gate.subscribed.load(Ordering::Relaxed), 1);
}

/// `on_unsubscribe` is asked about an explicit unsubscribe, and may refuse it (the client
/// stays subscribed); a client that leaves is not asked about.
#[test]
fn the_unsubscribe_hook_observes_and_refuses() {
    let gate = Arc::new(Gate::default());
    let broker = broker_with(SharedGate(Arc::clone(&gate)));
    let mut client = subscribed(broker.addr(), "homework", "s");
    client.send(
        "SUBSCRIBE news s\nUNSUBSCRIBE homework s\nUNSUBSCRIBE news s\nUNSUBSCRIBE never s\n",
    );
    client.expect("ERROR nobody unsubscribes from homework");
    client.sync();
    assert_eq!(broker.topic_counts(), [("homework".to_string(), 1)]);
    assert_eq!(
        gate.unsubscribed.load(Ordering::Relaxed),
        1,
        "asked about news only: never was not held"
    );
    drop(client);
    common::wait_until("the client has left", || broker.topic_counts().is_empty());
    assert_eq!(gate.unsubscribed.load(Ordering::Relaxed), 1);
}

struct SharedGate(Arc<Gate>);

impl Hooks for SharedGate {
    fn on_subscribe(&self, client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
        self.0.on_subscribe(client, topic)
    }
    fn on_unsubscribe(&self, client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
        self.0.on_unsubscribe(client, topic)
    }
}

/// Rewrites `darn` to `d**n`, refuses publishes from the id `spammer`, and records the
/// transport and id of everything it saw.
#[derive(Default)]
struct Editor {
    seen: Mutex<Vec<(Transport, String)>>,
}

impl Hooks for Editor {
    fn on_publish(&self, client: ClientInfo<'_>, publish: &Publish<'_>) -> PublishVerdict {
        self.seen
            .lock()
            .push((client.transport, client.id.unwrap_or_default().to_string()));
        if publish.publisher_id == "spammer" {
            PublishVerdict::Refuse("spam is not published".into())
        } else if publish.message.contains("darn") {
            PublishVerdict::Rewrite(publish.message.replace("darn", "d**n"))
        } else if publish.message == "break the line" {
            PublishVerdict::Rewrite("broken\nDELIVER news forged x 2025-01-01 00:00:00".into())
        } else {
            PublishVerdict::Allow
        }
    }
}

/// `on_publish` rewrites messages and refuses publishes on every transport, and sees who
/// published; a rewrite a `DELIVER` line could not carry is refused, not delivered.
#[test]
fn the_publish_hook_rewrites_and_refuses_on_every_transport() {
    let editor = Arc::new(Editor::default());
    let broker = broker_with(SharedEditor(Arc::clone(&editor)));
    let mut subscriber = subscribed(broker.addr(), "news", "sub1");
    let local = broker.subscribe("news").unwrap();
    let mut classic = Raw::connect(broker.addr());
    classic.send("PUBLISH news darn it pub1\nPUBLISH news buy now spammer\nPUBLISH news break the line pub1\n");
    classic.expect("ERROR spam is not published");
    classic.expect(&format!("ERROR {HOOK_FAILED}"));
    classic.sync();
    assert_eq!(subscriber.delivery(), "DELIVER news d**n it pub1");
    let mut json = Raw::connect(broker.addr());
    json.send("{\"action\": \"publish\", \"topic\": \"news\", \"message\": \"darn JSON\", \"publisher\": \"kn\"}\n");
    json.send("{\"action\": \"publish\", \"topic\": \"news\", \"message\": \"x\", \"publisher\": \"spammer\"}\n");
    assert_eq!(
        member(&json_line(&mut json), "error"),
        "spam is not published"
    );
    assert_eq!(subscriber.delivery(), "DELIVER news d**n JSON kn");
    let udp = Udp::new(&broker);
    udp.send("PUBLISH news darn datagrams u1");
    udp.send("PUBLISH news x spammer");
    assert_eq!(udp.sync(), ["ERROR spam is not published\n"]);
    assert_eq!(subscriber.delivery(), "DELIVER news d**n datagrams u1");
    assert_eq!(
        broker.publish("news", "darn program", "app"),
        Ok(2),
        "the program's own publishes take the same road"
    );
    assert_eq!(subscriber.delivery(), "DELIVER news d**n program app");
    subscriber.sync(); // nothing refused reached it
    let messages: Vec<String> = std::iter::from_fn(|| local.try_recv().unwrap())
        .map(|d| d.message)
        .collect();
    assert_eq!(
        messages,
        ["d**n it", "d**n JSON", "d**n datagrams", "d**n program"]
    );
    let transports: Vec<Transport> = editor.seen.lock().iter().map(|(t, _)| *t).collect();
    assert_eq!(
        transports,
        [
            Transport::Line,
            Transport::Line,
            Transport::Line,
            Transport::Json,
            Transport::Json,
            Transport::Udp,
            Transport::Udp,
            Transport::InProcess
        ]
    );
    assert_eq!(editor.seen.lock()[0].1, "pub1");
    assert_eq!(
        stat(&broker, "messages_published"),
        4,
        "refused publishes are not counted"
    );
}

struct SharedEditor(Arc<Editor>);

impl Hooks for SharedEditor {
    fn on_publish(&self, client: ClientInfo<'_>, publish: &Publish<'_>) -> PublishVerdict {
        self.0.on_publish(client, publish)
    }
}

/// Panics in every hook on the topic (or transport) `boom`.
struct Buggy;

impl Hooks for Buggy {
    fn on_connect(&self, client: ClientInfo<'_>) -> Result<(), Refusal> {
        if client.transport == Transport::Json {
            panic!("the connect hook has a bug");
        }
        Ok(())
    }
    fn on_subscribe(&self, _client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
        assert_ne!(topic, "boom", "the subscribe hook has a bug");
        Ok(())
    }
    fn on_unsubscribe(&self, _client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
        assert_ne!(topic, "stuck", "the unsubscribe hook has a bug");
        Ok(())
    }
    fn on_publish(&self, _client: ClientInfo<'_>, publish: &Publish<'_>) -> PublishVerdict {
        let index: usize = publish.message.len();
        // A bug: indexing past the end for long messages.
        let _ = [0u8; 8][index.min(100)];
        PublishVerdict::Allow
    }
}

/// A hook that panics counts as a refusal (the broker fails closed): the client is told
/// `HOOK_FAILED`, and its connection, the other clients and the broker carry on.
#[test]
fn a_panicking_hook_refuses_and_takes_nothing_down() {
    let broker = broker_with(Buggy);
    let mut client = subscribed(broker.addr(), "stuck", "s");
    client.send("SUBSCRIBE boom s\nUNSUBSCRIBE stuck s\nPUBLISH stuck a message far too long p\nPUBLISH stuck short p\n");
    let refused = format!("ERROR {HOOK_FAILED}");
    client.expect(&refused);
    client.expect(&refused);
    client.expect(&refused);
    assert_eq!(client.delivery(), "DELIVER stuck short p");
    client.sync();
    assert_eq!(broker.topic_counts(), [("stuck".to_string(), 1)]);
    let mut json = Raw::connect(broker.addr());
    json.send("{\"action\": \"subscribe\", \"topic\": \"t\"}\n");
    assert_eq!(member(&json_line(&mut json), "error"), HOOK_FAILED);
    assert_eq!(json.read_to_eof(), "");
    assert_eq!(
        broker.subscribe("boom").unwrap_err().to_string(),
        HOOK_FAILED,
        "in-process too"
    );
    // Everyone else is fine, and so is the refused client's connection. The JSON client's
    // connection leaves the count just after its socket closes, so that may take a moment.
    let mut other = subscribed(broker.addr(), "t", "other");
    other.sync();
    client.sync();
    wait_until(
        "the refused client, the other and no JSON client are connected",
        || stat(&broker, "connections_current") == 2,
    );
}

/// Without hooks nothing changes: every subscribe and publish is allowed as before.
#[test]
fn no_hooks_means_no_change() {
    let broker = common::start_broker();
    let mut client = subscribed(broker.addr(), "secret/exam", "s");
    client.send("PUBLISH secret/exam darn p\n");
    assert_eq!(client.delivery(), "DELIVER secret/exam darn p");
}

/// A WebSocket to the broker's web port, speaking the line protocol.
fn websocket(broker: &BrokerHandle) -> WebSocketClient {
    WebSocketClient::connect(broker.web_addr().unwrap(), "/ws").expect("a WebSocket")
}

/// The next text frame: one line of the line protocol.
fn frame(client: &mut WebSocketClient) -> String {
    match client.recv(TIMEOUT).unwrap() {
        Some(Received::Text(text)) => text,
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The editor's publish rules, and the gate's subscribe rule, for the web's clients.
struct WebRules(Arc<Editor>);

impl Hooks for WebRules {
    fn on_subscribe(&self, _client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
        if topic.starts_with("secret/") {
            return Err(format!("{topic} is not for you").into());
        }
        Ok(())
    }

    fn on_publish(&self, client: ClientInfo<'_>, publish: &Publish<'_>) -> PublishVerdict {
        self.0.on_publish(client, publish)
    }
}

/// The web's ingress takes the same road: a refusing publish hook refuses a `POST
/// /publish` (`403` with its reason, and the keep-alive connection carries on) and a
/// WebSocket `PUBLISH` (an `ERROR` frame); a rewrite reaches a TCP subscriber; the hook sees
/// each as its transport, with the id it gave; a WebSocket `SUBSCRIBE` is refused too.
#[test]
fn the_hooks_hold_over_http_and_websocket() {
    let editor = Arc::new(Editor::default());
    let broker = broker_with(WebRules(Arc::clone(&editor)));
    let mut subscriber = subscribed(broker.addr(), "news", "sub1");

    let mut http = RawHttp::connect(&broker);
    let refused = http.ask(&post_json(
        r#"{"topic": "news", "message": "buy now", "publisher": "spammer"}"#,
    ));
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (403, "spam is not published"),
        "a hook's refusal over HTTP is a 403 with the hook's reason"
    );
    let published = http.ask(&post_json(
        r#"{"topic": "news", "message": "darn the web", "publisher": "web1"}"#,
    ));
    assert_eq!(
        (published.status, published.body.as_str()),
        (200, "Message published to topic 'news'"),
        "the connection carries on after a refusal"
    );
    assert_eq!(subscriber.delivery(), "DELIVER news d**n the web web1");

    let mut ws = websocket(&broker);
    ws.send_text("PUBLISH news buy now spammer").unwrap();
    assert_eq!(frame(&mut ws), "ERROR spam is not published");
    ws.send_text("SUBSCRIBE secret/exam ws1").unwrap();
    assert_eq!(frame(&mut ws), "ERROR secret/exam is not for you");
    ws.send_text("PUBLISH news darn frames ws1").unwrap();
    ws.send_text("PING done").unwrap();
    assert_eq!(frame(&mut ws), "PONG done");
    assert_eq!(subscriber.delivery(), "DELIVER news d**n frames ws1");
    subscriber.sync(); // nothing refused reached it

    assert_eq!(
        *editor.seen.lock(),
        [
            (Transport::Http, "spammer".to_string()),
            (Transport::Http, "web1".to_string()),
            (Transport::WebSocket, "spammer".to_string()),
            (Transport::WebSocket, "ws1".to_string()),
        ]
    );
    assert_eq!(broker.topic_counts(), [("news".to_string(), 1)]);
    assert_eq!(
        stat(&broker, "messages_published"),
        2,
        "refused publishes are not counted"
    );
}

/// Refuses one transport, and records every client it saw.
struct WebDoorman {
    refuse: Transport,
    seen: Arc<Mutex<Vec<Transport>>>,
}

impl Hooks for WebDoorman {
    fn on_connect(&self, client: ClientInfo<'_>) -> Result<(), Refusal> {
        self.seen.lock().push(client.transport);
        if client.transport == self.refuse {
            return Err(format!("no {} clients today", client.transport).into());
        }
        Ok(())
    }
}

/// `on_connect` sees a web connection at its first request as an HTTP client, and again
/// at a WebSocket handshake as a WebSocket client; a refusal is a `403` with the reason,
/// and the connection is closed.
#[test]
fn the_connect_hook_sees_web_clients() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let broker = broker_with(WebDoorman {
        refuse: Transport::WebSocket,
        seen: Arc::clone(&seen),
    });
    let mut http = RawHttp::connect(&broker);
    assert_eq!(http.ask(&get("/healthz")).status, 200);
    assert_eq!(
        http.ask(&get("/healthz")).status,
        200,
        "asked once per connection"
    );
    let upgrade = "GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let refused = http.ask(upgrade);
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (403, "no websocket clients today")
    );
    assert!(http.read_to_eof().is_empty(), "refused, then closed");
    let error = WebSocketClient::connect(broker.web_addr().unwrap(), "/ws").unwrap_err();
    assert!(error.to_string().contains("403"), "{error}");
    assert_eq!(
        *seen.lock(),
        [Transport::Http, Transport::WebSocket, Transport::WebSocket]
    );
    wait_until("every refused web connection is closed", || {
        stat(&broker, "connections_current") == 0
    });

    let broker = broker_with(WebDoorman {
        refuse: Transport::Http,
        seen: Arc::new(Mutex::new(Vec::new())),
    });
    let mut http = RawHttp::connect(&broker);
    let refused = http.ask(&post_json(r#"{"topic": "t", "message": "m"}"#));
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (403, "no http clients today")
    );
    assert!(http.read_to_eof().is_empty(), "refused, then closed");
    let mut ws = websocket(&broker);
    ws.send_text("PING in").unwrap();
    assert_eq!(frame(&mut ws), "PONG in", "a WebSocket client is let in");
}
