//! Topic trees over the wire: levels and wildcards (checked case by case against a real
//! Mosquitto), one delivery per connection however many of its filters match, retained
//! messages and their limits, and the broker's own `$SYS` figures.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    find_program, require_tool, start_broker, start_broker_with, subscribed, wait_until, Raw, Tool,
    TIMEOUT,
};
use pubsub_lab::Config;

/// `(filter, topic, matches)`, MQTT 3.1.1's rules: `+` one whole level, `#` any number of
/// levels (zero too) and only last, empty levels are levels, names are case-sensitive, and
/// a filter starting with a wildcard does not match a topic starting with `$`.
const CASES: &[(&str, &str, bool)] = &[
    ("news", "news", true),
    ("news", "News", false),
    ("news", "news/tech", false),
    ("news/+", "news/tech", true),
    ("news/+", "news", false),
    ("news/+", "news/tech/ai", false),
    ("news/+", "news/", true),
    ("news/#", "news", true),
    ("news/#", "news/tech", true),
    ("news/#", "news/tech/ai", true),
    ("news/#", "newsroom", false),
    ("#", "news/tech", true),
    ("#", "/news", true),
    ("+", "news", true),
    ("+", "news/tech", false),
    ("+", "/news", false),
    ("+/+", "/news", true),
    ("/+", "/news", true),
    ("+/news", "/news", true),
    ("a//b", "a//b", true),
    ("a/+/b", "a//b", true),
    ("a/+/b", "a/b", false),
    ("+/+/+", "a/b/c", true),
    ("+/+", "a", false),
    ("+/#", "a", true),
    ("a/#", "a/", true),
    ("a/+", "a/b/", false),
    ("a/+/#", "a/b", true),
    ("home/+/temp", "home/kitchen/temp", true),
    ("home/+/temp", "home/kitchen/humidity", false),
    ("home/#", "home/kitchen/temp", true),
    ("#", "$lab/x", false),
    ("+/x", "$lab/x", false),
    ("$lab/#", "$lab/x", true),
    ("$lab/+", "$lab/x", true),
    ("a/$b", "a/$b", true),
    ("+/$b", "a/$b", true),
];

/// What our broker says for each case, one fresh subscriber per case: it subscribes to the
/// filter and to a sentinel topic, then one publisher sends the case's message and the
/// sentinel's. One publisher's messages keep their order, so a matched message comes
/// before the sentinel.
fn our_verdicts() -> Vec<bool> {
    let broker = start_broker();
    let mut publisher = Raw::connect(broker.addr());
    CASES
        .iter()
        .enumerate()
        .map(|(n, (filter, topic, _))| {
            let mut subscriber = Raw::connect(broker.addr());
            subscriber.send(&format!(
                "SUBSCRIBE {filter} s{n}\nSUBSCRIBE end/{n} s{n}\n"
            ));
            subscriber.sync();
            publisher.send(&format!(
                "PUBLISH {topic} case {n} p\nPUBLISH end/{n} end p\n"
            ));
            let first = subscriber.delivery();
            if first == format!("DELIVER end/{n} end p") {
                return false;
            }
            assert_eq!(first, format!("DELIVER {topic} case {n} p"));
            assert_eq!(subscriber.delivery(), format!("DELIVER end/{n} end p"));
            true
        })
        .collect()
}

fn disagreements(verdicts: &[bool]) -> Vec<String> {
    CASES
        .iter()
        .zip(verdicts)
        .filter(|((_, _, expected), verdict)| expected != *verdict)
        .map(|((filter, topic, expected), _)| {
            format!(
                "filter {filter:?} should {}match topic {topic:?}",
                if *expected { "" } else { "not " }
            )
        })
        .collect()
}

/// Every case of the table, over the wire.
#[test]
fn filters_match_topics_as_mqtt_says() {
    let wrong = disagreements(&our_verdicts());
    assert!(
        wrong.is_empty(),
        "the broker disagrees with MQTT 3.1.1: {wrong:#?}"
    );
}

/// Mosquitto, the reference, run on a free port.
struct Mosquitto {
    child: Child,
    port: u16,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        // A port the OS has just handed out and taken back: free, and not a fixed one.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("pubsub-lab-mosquitto-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let mosquitto = find_program("mosquitto").expect("checked by the test");
        let child = Command::new(mosquitto)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run mosquitto (Debian's package `mosquitto`; .ci/run installs it)");
        let mosquitto = Mosquitto { child, port };
        wait_until("mosquitto accepts connections", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        mosquitto
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What Mosquitto says for each case, asked by `tests/topic_trees/mosquitto_cases.py`
/// through Eclipse Paho's MQTT client.
fn mosquitto_verdicts() -> Vec<bool> {
    let mosquitto = Mosquitto::start();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/topic_trees/mosquitto_cases.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .arg(mosquitto.port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3 (with paho-mqtt; .ci/run installs it)");
    let mut stdin = child.stdin.take().unwrap();
    for (filter, topic, _) in CASES {
        writeln!(stdin, "{filter} {topic}").unwrap();
    }
    drop(stdin);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // The script bounds each of its own waits; this bounds the whole run.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = stdout.lines().map_while(Result::ok).collect();
        let _ = sender.send(lines);
    });
    let lines = receiver
        .recv_timeout(TIMEOUT * 6)
        .expect("the Mosquitto cases finish within a minute");
    assert!(
        child.wait().unwrap().success(),
        "the Paho script failed; see its output above"
    );
    assert_eq!(lines.len(), CASES.len(), "one verdict per case: {lines:?}");
    lines
        .iter()
        .enumerate()
        .map(|(n, line)| match line.split_once(' ') {
            Some((number, verdict)) if number == n.to_string() => verdict == "match",
            _ => panic!("unexpected line from the Paho script: {line:?}"),
        })
        .collect()
}

/// The table is Mosquitto's behaviour, not our reading of the standard: the same cases,
/// asked of a real Mosquitto.
#[test]
fn mosquitto_agrees_with_every_case() {
    if !require_tool(
        Tool::Program("mosquitto"),
        "sudo apt-get install -y mosquitto",
    ) || !require_tool(Tool::Python(&["paho.mqtt.client"]), "pip install paho-mqtt")
    {
        return;
    }
    let wrong = disagreements(&mosquitto_verdicts());
    assert!(
        wrong.is_empty(),
        "Mosquitto disagrees with the table: {wrong:#?}"
    );
}

/// `news/#`, `news/+` and `news/tech` all match `news/tech`: the connection gets it once.
#[test]
fn overlapping_filters_deliver_once_per_connection() {
    let broker = start_broker();
    let mut subscriber = Raw::connect(broker.addr());
    subscriber.send("SUBSCRIBE news/# s\nSUBSCRIBE news/+ s\nSUBSCRIBE news/tech s\n");
    subscriber.sync();
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH news/tech once p\nPUBLISH news/tech twice p\n");
    assert_eq!(subscriber.delivery(), "DELIVER news/tech once p");
    assert_eq!(subscriber.delivery(), "DELIVER news/tech twice p");
    subscriber.sync(); // nothing else came
                       // After leaving two of the three, the third still holds.
    subscriber.send("UNSUBSCRIBE news/# s\nUNSUBSCRIBE news/tech s\n");
    subscriber.sync();
    publisher.send("PUBLISH news/tech still p\n");
    assert_eq!(subscriber.delivery(), "DELIVER news/tech still p");
}

/// Each rule a name or filter can break has its own `ERROR`, and the connection goes on.
#[test]
fn bad_names_and_filters_are_refused_naming_the_rule() {
    let broker = start_broker_with(Config {
        max_topic_levels: 3,
        ..Config::default()
    });
    let mut client = Raw::connect(broker.addr());
    let cases = [
        (
            "PUBLISH news/+ hi p",
            "cannot publish to a topic with + or #",
        ),
        (
            "PUBLISH news/# hi p",
            "cannot publish to a topic with + or #",
        ),
        (
            "RETAIN news/+ hi p",
            "cannot publish to a topic with + or #",
        ),
        (
            "PUBLISH $SYS/broker/uptime 0 p",
            "$SYS topics are the broker's own figures",
        ),
        (
            "RETAIN $SYS/x 0 p",
            "$SYS topics are the broker's own figures",
        ),
        (
            "SUBSCRIBE news+ s",
            "bad topic filter: a wildcard must be a whole level",
        ),
        (
            "SUBSCRIBE a/b# s",
            "bad topic filter: a wildcard must be a whole level",
        ),
        (
            "SUBSCRIBE #/news s",
            "bad topic filter: # must be the last level",
        ),
        (
            "UNSUBSCRIBE news+ s",
            "bad topic filter: a wildcard must be a whole level",
        ),
        ("SUBSCRIBE a/b/c/d s", "topic has more than 3 levels"),
        ("PUBLISH a/b/c/d hi p", "topic has more than 3 levels"),
    ];
    for (line, reason) in cases {
        client.send(&format!("{line}\n"));
        let answer = client.line();
        assert!(
            answer.starts_with(&format!("ERROR {reason}")),
            "{line:?} should be refused with {reason:?}, got {answer:?}"
        );
    }
    client.send("SUBSCRIBE a/b/c s\n");
    client.sync(); // three levels are fine, and the connection carries on
}

/// A retained message reaches later subscribers, exact and wildcard, as the `DELIVER` line
/// first sent, with the original publisher and time, before the `PONG` that follows.
#[test]
fn a_retained_message_reaches_later_subscribers_as_first_delivered() {
    let broker = start_broker();
    let mut live = subscribed(broker.addr(), "home/temp", "live");
    let mut sensor = Raw::connect(broker.addr());
    sensor.send("RETAIN home/temp 21.5C sensor\n");
    let first = live.line();
    assert!(
        first.starts_with("DELIVER home/temp 21.5C sensor "),
        "{first:?}"
    );
    for filter in ["home/temp", "home/#", "+/temp", "#"] {
        let mut later = Raw::connect(broker.addr());
        later.send(&format!("SUBSCRIBE {filter} later\n"));
        assert_eq!(later.line(), first, "a new subscriber of {filter}");
        later.sync();
    }
    // The subscriber who saw it live is not sent it again.
    live.sync();
}

/// RETAIN replaces the kept message, UNRETAIN forgets it, and TOPICS marks the topics
/// that keep one.
#[test]
fn retain_replaces_unretain_clears_and_topics_marks_them() {
    let broker = start_broker();
    let mut sensor = Raw::connect(broker.addr());
    sensor.send("RETAIN home/temp 20C sensor\nRETAIN home/temp 22C sensor\n");
    sensor.send("RETAIN home/door open sensor\nPUBLISH home/light on sensor\n");
    sensor.sync();
    sensor.send("TOPICS home/#\n");
    // A topic with a retained message and no subscriber is listed with 0.
    sensor.expect("TOPICS home/door 0 retained");
    sensor.expect("TOPICS home/temp 0 retained");
    sensor.expect("END TOPICS");
    let mut later = Raw::connect(broker.addr());
    later.send("SUBSCRIBE home/temp later\n");
    assert_eq!(later.delivery(), "DELIVER home/temp 22C sensor");
    later.sync();
    sensor.send("UNRETAIN home/temp sensor\n");
    sensor.sync();
    let mut after = Raw::connect(broker.addr());
    after.send("SUBSCRIBE home/# after\n");
    assert_eq!(after.delivery(), "DELIVER home/door open sensor");
    after.sync(); // home/temp's was forgotten, home/light was never kept
}

/// Messages published while a subscriber joins never overtake the retained one.
#[test]
fn the_retained_message_comes_before_newer_ones() {
    let broker = start_broker();
    let mut sensor = Raw::connect(broker.addr());
    sensor.send("RETAIN feed kept sensor\n");
    sensor.sync();
    let addr = broker.addr();
    let flood = std::thread::spawn(move || {
        let mut publisher = Raw::connect(addr);
        for i in 0..2000 {
            publisher.send(&format!("PUBLISH feed live{i} flood\n"));
        }
        publisher.sync();
    });
    for n in 0..20 {
        let mut subscriber = Raw::connect(broker.addr());
        subscriber.send(&format!("SUBSCRIBE feed s{n}\n"));
        assert_eq!(
            subscriber.delivery(),
            "DELIVER feed kept sensor",
            "subscriber {n}"
        );
    }
    flood.join().unwrap();
}

/// `--max-retained` and `--max-retained-bytes`: a clear `ERROR` naming the flag; replacing
/// a kept message needs no new room.
#[test]
fn retained_limits_refuse_with_the_flag_to_change() {
    let broker = start_broker_with(Config {
        max_retained: 2,
        max_retained_bytes: 200,
        sys_interval: Duration::ZERO,
        ..Config::default()
    });
    let mut sensor = Raw::connect(broker.addr());
    sensor.send("RETAIN a one s\nRETAIN b two s\nRETAIN b three s\n");
    sensor.sync();
    sensor.send("RETAIN c four s\n");
    let answer = sensor.line();
    assert!(
        answer.starts_with("ERROR no room for another retained message (--max-retained 2)"),
        "{answer:?}"
    );
    sensor.send(&format!("RETAIN a {} s\n", "x".repeat(300)));
    let answer = sensor.line();
    assert!(
        answer.starts_with("ERROR no room for another retained message (--max-retained-bytes 200)"),
        "{answer:?}"
    );
    // The refused RETAIN kept nothing: the old message of `a` is still the one.
    let mut later = Raw::connect(broker.addr());
    later.send("SUBSCRIBE a later\n");
    assert_eq!(later.delivery(), "DELIVER a one s");
    later.sync();
}

/// `$SYS/broker/...` figures are retained, published by `broker`, refreshed every
/// `--sys-interval`; `#` does not match them, and a classic `TOPICS` does not list them.
#[test]
fn sys_figures_are_retained_refreshed_and_hidden_from_hash() {
    let broker = start_broker_with(Config {
        sys_interval: Duration::from_millis(100),
        ..Config::default()
    });
    let mut everything = subscribed(broker.addr(), "#", "everything");
    let mut dashboard = Raw::connect(broker.addr());
    dashboard.send("SUBSCRIBE $SYS/broker/clients/connected dash\n");
    let kept = dashboard.delivery();
    assert!(
        kept.starts_with("DELIVER $SYS/broker/clients/connected "),
        "{kept:?}"
    );
    assert!(kept.ends_with(" broker"), "published by `broker`: {kept:?}");
    // The next round is live: it reaches `dash`, and would have reached `everything`
    // before `dash` if `#` matched it.
    let live = dashboard.delivery();
    assert_eq!(live, "DELIVER $SYS/broker/clients/connected 2 broker");
    everything.sync();
    everything.send("TOPICS\n");
    everything.expect("TOPICS # 1");
    everything.expect("END TOPICS");
    everything.send("TOPICS $SYS/broker/clients/+\n");
    let listed = everything.line();
    assert!(
        listed.starts_with("TOPICS $SYS/broker/clients/"),
        "{listed:?}"
    );
}

/// `--sys-interval 0` turns the figures off.
#[test]
fn sys_interval_zero_publishes_no_figures() {
    let broker = start_broker_with(Config {
        sys_interval: Duration::ZERO,
        ..Config::default()
    });
    let mut dashboard = Raw::connect(broker.addr());
    dashboard.send("SUBSCRIBE $SYS/# dash\n");
    dashboard.sync();
    dashboard.send("TOPICS $SYS/#\n");
    dashboard.expect("TOPICS $SYS/# 1");
    dashboard.expect("END TOPICS");
}

/// A classic client that never uses `/`, `+` or `#` sees exactly what it saw before.
#[test]
fn a_classic_client_sees_no_change() {
    let broker = start_broker();
    let mut subscriber = Raw::connect(broker.addr());
    subscriber.send("SUBSCRIBE weather sub1\n");
    subscriber.sync();
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH weather Snow tonight pub1\n");
    assert_eq!(subscriber.delivery(), "DELIVER weather Snow tonight pub1");
    publisher.send("TOPICS\n");
    publisher.expect("TOPICS weather 1");
    publisher.expect("END TOPICS");
}
