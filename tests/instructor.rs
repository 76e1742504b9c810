//! The instructor's view on the wire: `CLIENTS` (and its JSON and HTTP forms), `KICK`,
//! who may use them with an auth file, and `GET /metrics` read by Prometheus's own parser.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{auth_file, json_line, logged_in, stat, subscribed, Raw, RawHttp, Tool};
use pubsub_lab::json::Value;
use pubsub_lab::web::base64;
use pubsub_lab::{BrokerHandle, Config};

/// Sends `command` and returns the `CLIENTS` lines up to `END CLIENTS`, without their
/// first word.
fn clients(raw: &mut Raw, command: &str) -> Vec<String> {
    raw.send(&format!("{command}\n"));
    let mut lines = Vec::new();
    loop {
        let line = raw.line();
        if line == "END CLIENTS" {
            return lines;
        }
        let rest = line.strip_prefix("CLIENTS ");
        lines.push(
            rest.unwrap_or_else(|| panic!("not a CLIENTS line: {line:?}"))
                .to_string(),
        );
    }
}

/// The value of `key=` in a `CLIENTS` line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    line.split(' ')
        .find_map(|pair| pair.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// The line of the client that used `id`.
fn line_of<'a>(lines: &'a [String], id: &str) -> &'a str {
    lines
        .iter()
        .find(|line| field(line, "ids").split(',').any(|used| used == id))
        .unwrap_or_else(|| panic!("no client with id {id} in {lines:#?}"))
}

/// A subscriber, a publisher that sent three messages, and the listing that shows what
/// each did: ids, filters, messages in and out, state, last command.
#[test]
fn clients_lists_each_connection_with_what_it_does() {
    let broker = common::start_broker();
    let mut sub = subscribed(broker.addr(), "weather", "sub1");
    sub.send("SUBSCRIBE news/# sub1\n");
    sub.sync();
    let mut publisher = Raw::connect(broker.addr());
    for n in 0..3 {
        publisher.send(&format!("PUBLISH weather rain{n} pub1\n"));
    }
    publisher.sync();
    for n in 0..3 {
        assert_eq!(sub.delivery(), format!("DELIVER weather rain{n} pub1"));
    }
    let _watcher = subscribed(broker.addr(), "#", "watcher");
    let mut teacher = Raw::connect(broker.addr());
    let lines = clients(&mut teacher, "CLIENTS");
    assert_eq!(lines.len(), 4, "{lines:#?}");

    let sub_line = line_of(&lines, "sub1");
    assert_eq!(field(sub_line, "way"), "line");
    assert_eq!(field(sub_line, "subs"), "2");
    assert_eq!(field(sub_line, "filters"), "weather,news/#");
    assert_eq!(field(sub_line, "msgs_out"), "3");
    assert_eq!(field(sub_line, "state"), "keeping-up");
    assert_eq!(field(sub_line, "pending"), "0");
    assert_eq!(field(sub_line, "user"), "-");
    let sub_addr = sub.stream().local_addr().unwrap().to_string();
    assert_eq!(field(sub_line, "addr"), sub_addr);

    let pub_line = line_of(&lines, "pub1");
    assert_eq!(field(pub_line, "msgs_in"), "3");
    assert_eq!(field(pub_line, "last"), "PING");
    let publish_bytes = "PUBLISH weather rain0 pub1\n".len() * 3;
    assert!(field(pub_line, "bytes_in").parse::<usize>().unwrap() > publish_bytes);
    assert_eq!(field(pub_line, "subs"), "0");

    // The filters: an id (not the topic of that name, which `#` would receive), a topic
    // the clients receive, a number, a state.
    let by_id = clients(&mut teacher, "CLIENTS pub1");
    assert_eq!((by_id.len(), field(&by_id[0], "ids")), (1, "pub1"));
    let by_topic = clients(&mut teacher, "CLIENTS news/today");
    let receivers: Vec<&str> = by_topic.iter().map(|l| field(l, "ids")).collect();
    assert_eq!(receivers, ["sub1", "watcher"]);
    let number = sub_line.split(' ').next().unwrap();
    let by_number = clients(&mut teacher, &format!("CLIENTS #{number}"));
    assert_eq!((by_number.len(), field(&by_number[0], "ids")), (1, "sub1"));
    assert!(clients(&mut teacher, "CLIENTS behind").is_empty());
    assert_eq!(clients(&mut teacher, "CLIENTS keeping-up").len(), 4);
}

/// A listing is bounded like `TOPICS`: the rest is counted on a last line.
#[test]
fn a_long_listing_says_how_many_more() {
    let broker = common::start_broker_with(Config {
        max_topics_listed: 2,
        ..Config::default()
    });
    // A PONG says a client's session has started, and so is in the table (counting
    // connections would not: the accept thread counts one before its session starts).
    let mut others: Vec<Raw> = (0..3).map(|_| Raw::connect(broker.addr())).collect();
    others.iter_mut().for_each(Raw::sync);
    let mut teacher = Raw::connect(broker.addr());
    teacher.send("CLIENTS\n");
    assert!(teacher.line().starts_with("CLIENTS "));
    assert!(teacher.line().starts_with("CLIENTS "));
    teacher.expect("CLIENTS … and 2 more");
    teacher.expect("END CLIENTS");
}

/// A subscriber that stops reading is `behind`, then, once cut off, still listed a while
/// as `cut-off`: what an instructor looks for when a student says "I get nothing".
#[test]
fn a_slow_subscriber_shows_as_behind_then_cut_off() {
    let broker = common::start_broker_with(Config {
        write_timeout: Duration::from_secs(1),
        ..Config::default()
    });
    let slow = common::stalled(broker.addr(), "flood", "slowpoke");
    let publisher = Raw::connect(broker.addr());
    let flooding = common::flood(&publisher, "flood", 400);
    let mut teacher = Raw::connect(broker.addr());
    common::wait_until("the stalled subscriber is listed as behind", || {
        let behind = clients(&mut teacher, "CLIENTS behind");
        behind.len() == 1 && field(&behind[0], "ids") == "slowpoke"
    });
    common::wait_until("the slow subscriber is cut off", || {
        stat(&broker, "slow_consumers_disconnected") == 1
    });
    flooding.join().unwrap();
    let cut_off = clients(&mut teacher, "CLIENTS cut-off");
    assert_eq!(cut_off.len(), 1, "{cut_off:#?}");
    assert_eq!(field(&cut_off[0], "ids"), "slowpoke");
    assert_eq!(field(&cut_off[0], "filters"), "flood");
    let by_id = clients(&mut teacher, "CLIENTS slowpoke");
    assert_eq!(by_id.len(), 1, "{by_id:#?}");
    assert_eq!(field(&by_id[0], "state"), "cut-off");
    drop(slow);
}

/// The JSON dialect's `clients` action and `GET /clients` give the same figures as
/// objects.
#[test]
fn clients_in_json_and_over_http() {
    let broker = common::start_web_broker();
    let _sub = subscribed(broker.addr(), "weather", "sub1");
    let mut json = Raw::connect(broker.addr());
    json.send("{\"action\": \"clients\", \"filter\": \"sub1\"}\n");
    let reply = json_line(&mut json);
    let Some(Value::Array(listed)) = reply.get("clients") else {
        panic!("no clients array in {reply:?}");
    };
    assert_eq!(listed.len(), 1, "{reply:?}");
    assert_eq!(common::member(&listed[0], "state"), "keeping-up");
    assert_eq!(common::member(&listed[0], "way"), "line");
    assert!(matches!(listed[0].get("subs"), Some(Value::Number(n)) if *n == 1.0));

    json.send("{\"action\": \"clients\", \"filter\": \"json:\"}\n");
    let everyone = json_line(&mut json);
    assert!(matches!(everyone.get("clients"), Some(Value::Array(a)) if a.is_empty()));

    // A JSON client is kicked in its own dialect, and kicks in it too.
    let mut other = Raw::connect(broker.addr());
    other.send("{\"action\": \"subscribe\", \"topic\": \"quiet\", \"id\": \"jsonsub\"}\n");
    other.send("{\"action\": \"ping\"}\n");
    // The answer to the ping proves the subscribe was handled.
    assert!(json_line(&mut other).get("pong").is_some());
    json.send("{\"action\": \"clients\", \"filter\": \"jsonsub\"}\n");
    let found = json_line(&mut json);
    let Some(Value::Array(found)) = found.get("clients") else {
        panic!("no clients array in {found:?}");
    };
    let Some(Value::Number(number)) = found[0].get("number") else {
        panic!("no number in {found:?}");
    };
    json.send(&format!(
        "{{\"action\": \"kick\", \"client\": \"{number}\"}}\n"
    ));
    assert_eq!(common::member(&json_line(&mut json), "ok"), "kick");
    let told = pubsub_lab::json::parse(other.read_to_eof().trim_end()).unwrap();
    assert!(
        common::member(&told, "error").starts_with("kicked by #"),
        "{told:?}"
    );

    let answer = RawHttp::connect(&broker).ask(&common::get("/clients?filter=weather"));
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = pubsub_lab::json::parse(&answer.body).unwrap();
    let Some(Value::Array(listed)) = body.get("clients") else {
        panic!("no clients array in {}", answer.body);
    };
    assert_eq!(listed.len(), 1, "{}", answer.body);
    let ids = listed[0].get("ids");
    assert!(
        matches!(ids, Some(Value::Array(ids)) if ids[0].as_str() == Some("sub1")),
        "{}",
        answer.body
    );
}

/// Without an auth file, a client on the broker's machine may kick: the kicked client
/// reads why, then the connection ends; a bad number is answered, not obeyed.
#[test]
fn kick_closes_a_connection_and_tells_it_why() {
    let broker = common::start_broker();
    let mut victim = subscribed(broker.addr(), "weather", "noisy");
    let mut teacher = subscribed(broker.addr(), "staffroom", "teacher");
    let listed = clients(&mut teacher, "CLIENTS noisy");
    let number = listed[0].split(' ').next().unwrap().to_string();
    teacher.send(&format!("KICK {number}\n"));
    teacher.expect(&format!("OK KICK {number}"));
    let told = victim.read_to_eof();
    let listed = clients(&mut teacher, "CLIENTS teacher");
    let teacher_number = listed[0].split(' ').next().unwrap();
    assert_eq!(
        told,
        format!(
            "ERROR kicked by #{teacher_number} (127.0.0.1): the instructor closed this \
             connection; ask them why before connecting again\n"
        )
    );
    common::wait_until("the kicked client is gone", || {
        stat(&broker, "connections_current") == 1
    });
    assert!(clients(&mut teacher, "CLIENTS noisy").is_empty());

    teacher.send("KICK 999\n");
    assert!(teacher.line().starts_with("ERROR no client #999 to kick"));
    teacher.send("KICK everyone\n");
    assert!(teacher
        .line()
        .starts_with("ERROR 'everyone' is not a client number"));
    teacher.send("KICK\n");
    assert_eq!(
        teacher.line(),
        "ERROR wrong number of arguments: expected KICK <client>"
    );
}

const FILE: &str = "user alice a1\nuser bob b2\nuser carol c3\n\
                    allow * subscribe lab/#\n\
                    instructor alice\n";

fn locked_broker() -> BrokerHandle {
    common::start_web_broker_with(Config {
        auth_file: Some(auth_file(FILE, 0o600)),
        ..Config::default()
    })
}

/// With an auth file, a student sees only its own clients and cannot kick; the
/// instructor sees everyone and kicks, named in what the kicked client reads.
#[test]
fn a_student_sees_only_their_own_clients_and_cannot_kick() {
    let broker = locked_broker();
    let mut bob = logged_in(&broker, "bob", "b2");
    let mut bob_again = logged_in(&broker, "bob", "b2");
    bob_again.send("SUBSCRIBE lab/x bob\n");
    bob_again.sync();
    let mut carol = logged_in(&broker, "carol", "c3");
    carol.send("SUBSCRIBE lab/y carol\n");
    carol.sync();
    let mut alice = logged_in(&broker, "alice", "a1");

    let bobs = clients(&mut bob, "CLIENTS");
    assert_eq!(bobs.len(), 2, "{bobs:#?}");
    assert!(bobs.iter().all(|line| field(line, "user") == "bob"));
    assert!(clients(&mut bob, "CLIENTS carol").is_empty());
    assert!(clients(&mut bob, "CLIENTS lab/y").is_empty());

    let everyone = clients(&mut alice, "CLIENTS");
    assert_eq!(everyone.len(), 4, "{everyone:#?}");
    let carols = clients(&mut alice, "CLIENTS carol");
    let number = carols[0].split(' ').next().unwrap().to_string();

    bob.send(&format!("KICK {number}\n"));
    assert_eq!(
        bob.line(),
        "ERROR not allowed: only an instructor may KICK, and bob is not one (an 'instructor \
         bob' line in the auth file makes it one)"
    );
    carol.sync();

    alice.send(&format!("KICK {number}\n"));
    alice.expect(&format!("OK KICK {number}"));
    assert!(carol
        .read_to_eof()
        .starts_with("ERROR kicked by alice: the instructor closed this connection"));

    common::wait_until("carol's connection is closed", || {
        stat(&broker, "connections_current") == 3
    });
    // Over HTTP too, as the user the request proves it is.
    let ask = |credentials: &str| {
        RawHttp::connect(&broker).ask(&format!(
            "GET /clients HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\r\n",
            base64::encode(credentials.as_bytes())
        ))
    };
    let as_bob = pubsub_lab::json::parse(&ask("bob:b2").body).unwrap();
    assert!(matches!(as_bob.get("clients"), Some(Value::Array(a)) if a.len() == 2));
    let as_alice = pubsub_lab::json::parse(&ask("alice:a1").body).unwrap();
    assert!(matches!(as_alice.get("clients"), Some(Value::Array(a)) if a.len() == 3));
    let anonymous = RawHttp::connect(&broker).ask(&common::get("/clients"));
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
}

/// `GET /metrics`, read by `prometheus_client`'s own parser of the text format: every
/// `STATS` figure is there with its type, and the clients by way in.
#[test]
fn metrics_are_read_by_prometheus_client() {
    if !common::require_tool(
        Tool::Python(&["prometheus_client"]),
        "pip install prometheus_client",
    ) {
        return;
    }
    let broker = common::start_web_broker();
    let mut sub = subscribed(broker.addr(), "weather", "sub1");
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH weather rain pub1\n");
    publisher.sync();
    assert_eq!(sub.delivery(), "DELIVER weather rain pub1");
    let url = format!("http://{}/metrics", broker.web_addr().unwrap());
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             text = urllib.request.urlopen(sys.argv[1]).read().decode()\n\
             for family in text_string_to_metric_families(text):\n\
             \x20   for sample in family.samples:\n\
             \x20       labels = ','.join(f'{k}={v}' for k, v in sorted(sample.labels.items()))\n\
             \x20       print(family.type, sample.name, labels, int(sample.value))\n",
            &url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("python3 (and pip install prometheus_client: .ci/run does)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "counter pubsub_lab_messages_published_total  1",
        "counter pubsub_lab_connections_total  3",
        "counter pubsub_lab_deliveries_total  1",
        "gauge pubsub_lab_connections_current  3",
        "gauge pubsub_lab_subscriptions  1",
        "counter pubsub_lab_durable_fsyncs_total  0",
        "gauge pubsub_lab_clients way_in=line 2",
    ] {
        assert!(
            parsed.lines().any(|line| line == expected),
            "{expected:?} not in:\n{parsed}"
        );
    }
}
