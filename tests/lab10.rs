//! Lab 10 checks: a broker embedded in a program, with a hook that holds every topic to
//! the classroom's naming rule, `team<N>/<name>[/<name>...]`. `check_topic` (the lab 10
//! region in src/bin/classroom.rs) decides; the hooks in that file ask it about every
//! subscribe and every publish, on every transport. These checks start the classroom
//! broker from that very file and try topics a student would, over TCP, JSON and UDP.
//!
//! Every check first sends a topic that follows the rule and requires it to be accepted:
//! a `check_topic` that refuses everything (or panics, which the broker counts as a
//! refusal) must not pass a check about refusing.

mod common;
mod labcheck;

#[allow(dead_code)]
#[path = "../src/bin/classroom.rs"]
mod classroom;

use labcheck::Peer;
use pubsub_lab::BrokerHandle;

/// Where the work of this lab is; `labcheck`'s failure messages point there too.
const REGION: &str = "check_topic in src/bin/classroom.rs";

fn broker() -> BrokerHandle {
    classroom::classroom("127.0.0.1", 0, 0)
        .expect("the classroom broker binds 127.0.0.1:0")
        .spawn()
        .expect("the classroom broker starts")
}

/// Subscribes `peer` to `topic`, which follows the rule: no ERROR may come back.
#[track_caller]
fn accepted(peer: &mut Peer, topic: &str) {
    peer.send(&format!("SUBSCRIBE {topic} {}\nPING ok\n", peer.name));
    let line = peer.line(&format!("the PONG after SUBSCRIBE {topic}"));
    assert_eq!(
        line, "PONG ok",
        "{topic} follows the rule (team, digits, then lowercase names), so SUBSCRIBE \
         {topic} must be accepted; the broker answered {line:?} instead. {REGION} must \
         return Ok(()) for it (a panic, such as todo!(), counts as a refusal)"
    );
}

/// Subscribes `peer` to `topic`, which breaks the rule: one ERROR must come back.
#[track_caller]
fn refused(peer: &mut Peer, topic: &str, mistake: &str) -> String {
    peer.send(&format!("SUBSCRIBE {topic} {}\nPING refused\n", peer.name));
    let line = peer.line(&format!("the ERROR refusing SUBSCRIBE {topic}"));
    assert!(
        line.starts_with("ERROR "),
        "SUBSCRIBE {topic} must be refused with ERROR <reason> ({topic} {mistake}), but \
         the broker answered {line:?}: {REGION} returned Ok(()) for it"
    );
    assert_eq!(peer.line("the PONG after the ERROR"), "PONG refused");
    line
}

/// Topics that follow the rule are accepted, for subscribers and for publishers.
#[test]
fn topics_that_follow_the_rule_are_accepted() {
    let broker = broker();
    let mut alice = Peer::connect(&broker, "alice");
    for topic in [
        "team3/news",
        "team12/weather/today",
        "team1/week-2",
        "team07/a/b/c9",
        // Each name is one or more of a-z, 0-9 and `-`, in any order.
        "team3/2025",
        "team3/-",
    ] {
        accepted(&mut alice, topic);
    }
    let mut bob = Peer::connect(&broker, "bob");
    bob.send("PUBLISH team3/news hello team bob\n");
    let line = alice.line("bob's message to team3/news");
    assert!(
        line.starts_with("DELIVER team3/news hello team bob "),
        "bob published to team3/news, which follows the rule; alice should receive it, \
         but got {line:?}: {REGION} must return Ok(()) for publishes too"
    );
}

/// A refusal says what the rule is and which topic broke it, so a student can fix it.
#[test]
fn a_refusal_states_the_rule_and_the_topic() {
    let broker = broker();
    let mut alice = Peer::connect(&broker, "alice");
    accepted(&mut alice, "team3/news");
    let line = refused(&mut alice, "homework", "has no team");
    assert!(
        line.contains("team<N>/<name>") && line.contains("homework"),
        "the refusal should state the rule (team<N>/<name>) and name the topic refused \
         ('homework'), so the student who sent it knows what to send instead; it was \
         {line:?}. Did {REGION} refuse without saying why?"
    );
}

/// The first level is `team` followed by one or more digits, and nothing else.
#[test]
fn the_team_is_team_and_a_number() {
    let broker = broker();
    let mut alice = Peer::connect(&broker, "alice");
    accepted(&mut alice, "team3/news");
    for (topic, mistake) in [
        (
            "team/news",
            "has no team number: checking only that it starts with `team`?",
        ),
        (
            "teamwork/news",
            "starts with `team` but is not team<digits>: checking only the prefix?",
        ),
        ("team3a/news", "has a letter after the team number"),
        (
            "team\u{663}/news",
            "has an Arabic-Indic digit three: the rule's digits are 0-9 \
             (is_ascii_digit, not is_numeric or is_digit of a char)",
        ),
        (
            "team\u{b2}/news",
            "has a superscript two: the rule's digits are 0-9 (is_ascii_digit, not \
             is_numeric)",
        ),
        ("Team3/news", "has an upper-case T: the rule is lowercase"),
        (
            "news/team3",
            "has its team in the wrong place: the team comes first",
        ),
    ] {
        refused(&mut alice, topic, mistake);
    }
}

/// A team alone is not a topic: at least one name must follow it.
#[test]
fn a_team_alone_is_not_a_topic() {
    let broker = broker();
    let mut alice = Peer::connect(&broker, "alice");
    accepted(&mut alice, "team3/news");
    refused(
        &mut alice,
        "team3",
        "is a team with no name after it: allowing a single level?",
    );
    refused(
        &mut alice,
        "team3/",
        "ends with an empty name: allowing empty levels?",
    );
}

/// Every level after the team follows the rule, not only the first one.
#[test]
fn every_name_follows_the_rule() {
    let broker = broker();
    let mut alice = Peer::connect(&broker, "alice");
    accepted(&mut alice, "team3/weather/week-2");
    for (topic, mistake) in [
        (
            "team3/News",
            "has an upper-case letter: allowing upper case?",
        ),
        (
            "team3/news/Today",
            "has an upper-case third level: checking only the second level?",
        ),
        ("team3//news", "has an empty level: allowing empty levels?"),
        (
            "team3/news/",
            "ends with an empty level: allowing empty levels?",
        ),
        (
            "team3/a_b",
            "has an underscore: allowing characters other than a-z, 0-9 and -?",
        ),
        (
            "team3/caf\u{e9}",
            "has a non-ASCII letter: the rule is a-z, 0-9 and -",
        ),
        (
            "team3/week\u{b2}",
            "has a superscript two: the rule's digits are 0-9 (is_ascii_digit, not \
             is_numeric)",
        ),
        (
            "team3/\u{3a9}mega",
            "has a Greek capital letter: the rule is lowercase a-z",
        ),
    ] {
        refused(&mut alice, topic, mistake);
    }
}

/// The rule holds for publishers too, whatever their transport: a classic publisher, a
/// kn-sock JSON client, a UDP datagram.
#[test]
fn the_rule_holds_for_publishers_on_every_transport() {
    let broker = broker();
    let mut alice = Peer::connect(&broker, "alice");
    accepted(&mut alice, "team3/news");
    let mut bob = Peer::connect(&broker, "bob");
    bob.send("PUBLISH homework copy this bob\nPING done\n");
    let line = bob.line("the ERROR refusing PUBLISH homework");
    assert!(
        line.starts_with("ERROR "),
        "bob published to homework, which has no team; he should get ERROR <reason>, but \
         got {line:?}: the hook's on_publish asks {REGION} too"
    );
    let mut json = common::Raw::connect(broker.addr());
    json.send("{\"action\": \"publish\", \"topic\": \"homework\", \"message\": \"x\"}\n");
    let answer = common::json_line(&mut json);
    assert!(
        !common::member(&answer, "error").is_empty(),
        "a kn-sock client published to homework and should get {{\"error\": ...}}, but got \
         {answer:?}"
    );
    let udp = common::Udp::new(&broker);
    udp.send("PUBLISH homework x datagram\nPUBLISH team3/news from udp datagram\n");
    let before_pong = udp.sync();
    assert_eq!(
        before_pong.len(),
        1,
        "one ERROR datagram for homework: {before_pong:?}"
    );
    let line = alice.line("the datagram's message to team3/news");
    assert!(
        line.starts_with("DELIVER team3/news from udp datagram "),
        "only the datagram's publish to team3/news should reach alice, got {line:?}"
    );
    alice.expect_nothing_more("nothing published to homework may be delivered");
}

/// The lab's tick, sent by hand as the lab sends it (`printf ... | nc -u -w1`, the real
/// `nc`) to the classroom's UDP port, reaches a subscriber of the classroom's own UDP topic
/// `team0/ticks`.
#[test]
fn a_tick_sent_with_nc_reaches_the_udp_topic() {
    if !common::require_tool(
        common::Tool::Program("nc"),
        "sudo apt-get install -y netcat-openbsd",
    ) {
        return;
    }
    let broker = broker();
    let mut sub = Peer::connect(&broker, "sub");
    accepted(&mut sub, "team0/ticks");
    let port = broker
        .udp_addr()
        .expect("the classroom takes datagrams")
        .port();
    let step = labcheck::SheetStep::find(
        "10-datagrams-and-dialects.md",
        "printf 'Event at",
        9999,
        port,
    );
    step.run();
    let line = sub.line("the DELIVER of the tick that nc sent");
    assert!(
        line.starts_with("DELIVER team0/ticks Event at Mon Dec  1 10:30:00 2026 udp:127.0.0.1:"),
        "`{}` sends one datagram that is not a command, so the classroom publishes it to \
         its UDP topic team0/ticks, which follows the rule (team0, then `ticks`); the \
         subscriber got {line:?}. {REGION} must accept team0/ticks, for the subscriber \
         and for the datagram's publish",
        step.command
    );
}
