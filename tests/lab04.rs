//! Lab 04 checks: cleaning up when a subscriber leaves. However a connection ends (QUIT,
//! closing the socket, a reset), the broker must forget its subscriptions, or it keeps
//! sending to a socket nobody reads and `TOPICS` lists subscribers that are gone.
//! `Session::leave_all_topics` (the lab 04 region in src/session.rs) does it; `Drop` for
//! `Session` calls it however the connection's thread ends. These checks disconnect real
//! clients in different ways and ask the broker, over the protocol, what it still holds.

mod common;
mod labcheck;

use std::thread;
use std::time::{Duration, Instant};

use labcheck::{Peer, WAIT};
use pubsub_lab::hooks::{ClientInfo, Hooks, Refusal};
use pubsub_lab::{Broker, Config};

/// Where the work of this lab is; `labcheck`'s failure messages point there too.
const REGION: &str = "Session::leave_all_topics in src/session.rs";

/// After QUIT, the subscriber is gone from every topic it had subscribed to.
#[test]
fn a_subscriber_that_quits_leaves_every_topic() {
    let broker = common::start_broker();
    let mut sub = Peer::connect(&broker, "sub1");
    sub.send("SUBSCRIBE weather sub1\nSUBSCRIBE news sub1\nSUBSCRIBE sports sub1\n");
    sub.send("QUIT\n");
    assert_eq!(sub.line("BYE"), "BYE");
    // The broker closes the connection only after its cleanup has run.
    sub.expect_closed();
    let mut observer = Peer::connect(&broker, "observer");
    assert_eq!(
        observer.topics(),
        Vec::<String>::new(),
        "sub1 subscribed to weather, news and sports, then quit and the broker closed its \
         connection; TOPICS must then list none of them: {REGION} must remove the \
         connection from every topic in self.subscriptions"
    );
}

/// A subscriber that just closes its socket, without QUIT, is forgotten too.
#[test]
fn a_subscriber_that_vanishes_leaves_every_topic() {
    let broker = common::start_broker();
    let mut sub = Peer::connect(&broker, "sub1");
    sub.send("SUBSCRIBE weather sub1\nSUBSCRIBE news sub1\n");
    sub.sync("its SUBSCRIBEs");
    drop(sub);
    let mut observer = Peer::connect(&broker, "observer");
    wait_for_topics(
        &mut observer,
        &[],
        "sub1 subscribed to weather and news, then closed its socket without QUIT",
    );
}

/// When one of two subscribers leaves, the other stays subscribed and still receives messages.
#[test]
fn the_other_subscribers_stay() {
    let broker = common::start_broker();
    let mut stays = Peer::connect(&broker, "stays");
    stays.send("SUBSCRIBE weather stays\n");
    stays.sync("its SUBSCRIBE");
    let mut leaves = Peer::connect(&broker, "leaves");
    leaves.send("SUBSCRIBE weather leaves\nQUIT\n");
    assert_eq!(leaves.line("BYE"), "BYE");
    leaves.expect_closed();
    let mut observer = Peer::connect(&broker, "observer");
    wait_for_topics(
        &mut observer,
        &["weather 1"],
        "`stays` and `leaves` subscribed to weather, then `leaves` quit; only `leaves` may \
         be removed, and only from its own topics",
    );
    observer.send("PUBLISH weather still here observer\n");
    let line = stays.line("the DELIVER line published after `leaves` quit");
    assert!(
        line.starts_with("DELIVER weather still here observer "),
        "`stays` should still receive weather messages, got {line:?}"
    );
}

/// `UNSUBSCRIBE` alone leaves every topic; the connection stays, and can subscribe again.
#[test]
fn unsubscribe_alone_leaves_every_topic_and_the_connection_can_subscribe_again() {
    let broker = common::start_broker();
    let mut sub = Peer::connect(&broker, "sub1");
    sub.send("SUBSCRIBE weather sub1\nSUBSCRIBE news sub1\nUNSUBSCRIBE\n");
    sub.sync("its SUBSCRIBEs and UNSUBSCRIBE");
    let mut observer = Peer::connect(&broker, "observer");
    assert_eq!(
        observer.topics(),
        Vec::<String>::new(),
        "sub1 subscribed to weather and news, then sent UNSUBSCRIBE with no arguments, \
         which runs {REGION}: TOPICS must list neither"
    );
    sub.send("SUBSCRIBE weather sub1\n");
    sub.sync("its second SUBSCRIBE to weather");
    observer.send("PUBLISH weather back again observer\n");
    observer.sync("its PUBLISH");
    sub.send("PING after\n");
    let line = sub.line("the DELIVER line of the message published after subscribing again");
    assert!(
        line.starts_with("DELIVER weather back again observer "),
        "sub1 left every topic, subscribed to weather again, and a message was published \
         to weather, but sub1 got {line:?}: the session still holds its old \
         subscriptions, so SUBSCRIBE took weather for a topic it already had. After \
         {REGION} the session must hold no subscription: empty self.subscriptions too"
    );
}

/// Once everyone has left, STATS shows no subscriptions and only the connection asking.
#[test]
fn stats_return_to_zero_when_everyone_has_left() {
    let broker = common::start_broker();
    for name in ["sub1", "sub2", "sub3"] {
        let mut sub = Peer::connect(&broker, name);
        sub.send(&format!(
            "SUBSCRIBE weather {name}\nSUBSCRIBE {name}-inbox {name}\n"
        ));
        sub.sync("its SUBSCRIBEs");
        // Half-close: the broker sees end of file, cleans up, and closes its side.
        sub.shutdown_write();
        sub.expect_closed();
    }
    let mut observer = Peer::connect(&broker, "observer");
    let wanted = [
        ("subscriptions", "0"),
        ("topics", "0"),
        ("connections_current", "1"),
    ];
    // The connection count drops just after the socket closes, so this may take a moment.
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = observer.stats();
        let value = |name: &str| {
            stats
                .iter()
                .find(|(counter, _)| counter == name)
                .map_or("missing".to_string(), |(_, value)| value.clone())
        };
        let wrong: Vec<String> = wanted
            .iter()
            .filter(|(name, expected)| value(name) != *expected)
            .map(|(name, expected)| format!("{name} is {} (expected {expected})", value(name)))
            .collect();
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "three subscribers came and left, but {WAIT:?} later STATS says {}; the cleanup \
             in Drop for Session must run to the end (does {REGION} panic?)",
            wrong.join(", ")
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A connection that leaves is removed from every topic and filter even when a hook
/// refuses `UNSUBSCRIBE`: leaving is not a request the hooks may turn down.
#[test]
fn a_leaver_goes_even_where_unsubscribe_is_refused() {
    let broker = Broker::builder()
        .config(Config::default())
        .line("127.0.0.1:0")
        .hooks(NoUnsubscribe)
        .bind()
        .expect("bind 127.0.0.1:0")
        .spawn()
        .expect("start the broker");
    let mut sub = Peer::connect(&broker, "sub1");
    sub.send("SUBSCRIBE weather sub1\nSUBSCRIBE home/+ sub1\nUNSUBSCRIBE weather sub1\n");
    let refused = sub.line("the ERROR for `UNSUBSCRIBE weather`, which this broker's hook refuses");
    assert_eq!(
        refused, "ERROR unsubscribing is not allowed here",
        "this check's broker has a hook that refuses every UNSUBSCRIBE"
    );
    sub.send("QUIT\n");
    assert_eq!(sub.line("BYE"), "BYE");
    sub.expect_closed();
    let mut observer = Peer::connect(&broker, "observer");
    wait_for_topics(
        &mut observer,
        &[],
        "sub1 subscribed to the topic weather and the filter home/+ on a broker whose hook \
         refuses every UNSUBSCRIBE, then quit. A connection that is gone must leave \
         everything, whatever the hooks say: Router::unsubscribe asks the hooks, one topic \
         at a time; Router::unsubscribe_all, for a connection that leaves, does not",
    );
}

/// The hooks of [`a_leaver_goes_even_where_unsubscribe_is_refused`]'s broker: every
/// `UNSUBSCRIBE` is refused.
struct NoUnsubscribe;

impl Hooks for NoUnsubscribe {
    fn on_unsubscribe(&self, _client: ClientInfo<'_>, _topic: &str) -> Result<(), Refusal> {
        Err("unsubscribing is not allowed here".into())
    }
}

/// Asks TOPICS until it lists exactly `expected`, or fails after [`WAIT`]. The broker
/// cleans up on the leaving client's own thread, which `observer` cannot watch.
fn wait_for_topics(observer: &mut Peer, expected: &[&str], story: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut topics = observer.topics();
        topics.sort();
        if topics == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{story}. {WAIT:?} later TOPICS still says {topics:?} instead of \
             {expected:?}: when a connection ends, {REGION} must remove it from every \
             topic it subscribed to"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
