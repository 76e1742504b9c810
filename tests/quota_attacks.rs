//! Quotas under attack (issue 22): one client hoarding durable subscriptions, a forgotten
//! durable subscription filling memory, `DURABLE`/`CANCEL` in a loop filling the disk with
//! retained messages, a connection (or a user's many connections) subscribing to
//! thousands of wildcard filters, and one client filling the retained store, by topics or
//! by bytes. Each
//! test plays the attack as it was measured and asserts that a classmate is unaffected.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{auth_file, logged_in, start_broker_with, stat, Raw};
use pubsub_lab::config::{
    DEFAULT_MAX_DURABLE_PER_CLIENT, DEFAULT_MAX_DURABLE_RETAINED_BYTES,
    DEFAULT_MAX_RETAINED_BYTES_PER_CLIENT, DEFAULT_MAX_RETAINED_PER_CLIENT, DEFAULT_MAX_WILDCARDS,
    DEFAULT_MAX_WILDCARDS_PER_USER,
};
use pubsub_lab::Config;

fn logged(dir: &Path) -> Config {
    Config {
        data_dir: Some(dir.to_path_buf()),
        sys_interval: Duration::ZERO,
        ..Config::default()
    }
}

/// The bytes of every file in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(fs::Metadata::is_file)
        .map(|metadata| metadata.len())
        .sum()
}

/// Sends `DURABLE <filter> <id>` for each filter, in one write, and returns how many
/// were refused with `refusal`; every other reply must be an `OK DURABLE`.
fn durable_burst(raw: &mut Raw, id: &str, filters: &[String], refusal: &str) -> usize {
    let lines: String = filters
        .iter()
        .map(|filter| format!("DURABLE {filter} {id}\n"))
        .collect();
    raw.send(&lines);
    let mut refused = 0;
    for filter in filters {
        let line = raw.line();
        if line == refusal {
            refused += 1;
        } else {
            assert!(line.starts_with(&format!("OK DURABLE {filter} ")), "{line}");
        }
    }
    refused
}

/// The attack as measured on the old main: one client sends 1,100 `DURABLE` lines with
/// one subscriber id, which took every one of `--max-durable` (1024) and refused every
/// classmate, even after a restart. Now its id stops at `--max-durable-per-client`, and the
/// classmate's `DURABLE` succeeds, before and after the broker restarts from its log.
#[test]
fn one_client_cannot_make_a_classmates_durable_fail_even_after_a_restart() {
    let dir = common::fresh_dir("hoard");
    let filters: Vec<String> = (0..1100).map(|n| format!("hoard/{n}")).collect();
    let refusal = format!(
        "ERROR subscriber id mallory has {DEFAULT_MAX_DURABLE_PER_CLIENT} durable \
         subscriptions already, the most one id may have: CANCEL one it no longer needs, \
         or use SUBSCRIBE"
    );
    let broker = start_broker_with(logged(&dir));
    let mut mallory = Raw::connect(broker.addr());
    let refused = durable_burst(&mut mallory, "mallory", &filters, &refusal);
    assert_eq!(refused, 1100 - DEFAULT_MAX_DURABLE_PER_CLIENT);
    let mut classmate = Raw::connect(broker.addr());
    classmate.send("DURABLE orders alice\n");
    classmate.expect("OK DURABLE orders 0");
    broker.stop();

    let broker = start_broker_with(logged(&dir));
    assert_eq!(
        stat(&broker, "durable_subscriptions") as usize,
        DEFAULT_MAX_DURABLE_PER_CLIENT + 1
    );
    let mut mallory = Raw::connect(broker.addr());
    let refused = durable_burst(&mut mallory, "mallory", &filters[1000..], &refusal);
    assert_eq!(
        refused, 100,
        "the quota is counted from the log at the start"
    );
    let mut classmate = Raw::connect(broker.addr());
    classmate.send("DURABLE orders alice\nDURABLE invoices alice\n");
    classmate.expect("OK DURABLE orders 0");
    classmate.expect("OK DURABLE invoices 0");
    broker.stop();
    fs::remove_dir_all(&dir).unwrap();
}

/// With an auth file, a user's quota covers every id it goes by (`alice`, `alice:1`...):
/// making up ids does not get past it, after a restart either, and bob is unaffected.
#[test]
fn a_user_that_makes_up_ids_meets_its_quota_and_another_user_does_not() {
    let dir = common::fresh_dir("user");
    let file = auth_file(
        "user alice s3cret\nuser bob hunter2\nallow * subscribe lab/#\n",
        0o600,
    );
    let config = Config {
        auth_file: Some(file.clone()),
        max_durable_per_client: 2,
        max_durable_per_user: 3,
        ..logged(&dir)
    };
    let refusal = "ERROR user alice has 3 durable subscriptions already, the most one user \
                   may have: CANCEL one you no longer need, or use SUBSCRIBE";
    let broker = start_broker_with(config.clone());
    let mut alice = logged_in(&broker, "alice", "s3cret");
    let filters: Vec<String> = (0..2).map(|n| format!("lab/{n}")).collect();
    assert_eq!(durable_burst(&mut alice, "alice", &filters, refusal), 0);
    assert_eq!(durable_burst(&mut alice, "alice:2", &filters, refusal), 1);
    assert_eq!(durable_burst(&mut alice, "alice:3", &filters, refusal), 2);
    let mut bob = logged_in(&broker, "bob", "hunter2");
    assert_eq!(durable_burst(&mut bob, "bob:1", &filters, refusal), 0);
    broker.stop();

    let broker = start_broker_with(config);
    let mut alice = logged_in(&broker, "alice", "s3cret");
    assert_eq!(durable_burst(&mut alice, "alice:4", &filters, refusal), 2);
    alice.send("CANCEL lab/0 alice\n");
    alice.expect("OK CANCEL lab/0 0");
    assert_eq!(durable_burst(&mut alice, "alice:4", &filters, refusal), 1);
    let mut bob = logged_in(&broker, "bob", "hunter2");
    assert_eq!(durable_burst(&mut bob, "bob:2", &filters[..1], refusal), 0);
    broker.stop();
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_file(&file).unwrap();
}

/// A subscription nobody reads holds at most `--max-queued-bytes` of messages: past it
/// the oldest are dropped, as past `--max-queued`, and counted in `durable_dropped`.
#[test]
fn a_subscription_nobody_reads_holds_at_most_max_queued_bytes() {
    const BOUND: usize = 16 * 1024;
    let broker = start_broker_with(Config {
        max_queued_bytes: BOUND,
        ..Config::default()
    });
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE big me\n");
    holder.expect("OK DURABLE big 0");
    drop(holder);
    common::wait_until("the holder has gone", || {
        stat(&broker, "connections_current") == 0
    });
    let text = "x".repeat(1000);
    let mut publisher = Raw::connect(broker.addr());
    let burst: String = (0..100)
        .map(|n| format!("PUBLISH big {n:03}{text} pub1\n"))
        .collect();
    publisher.send(&burst);
    publisher.sync();

    let mut again = Raw::connect(broker.addr());
    again.send("DURABLE big me\n");
    let reply = again.line();
    let pending: usize = reply
        .strip_prefix("OK DURABLE big ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{reply}"));
    let held: Vec<String> = (0..pending).map(|_| again.line()).collect();
    let held_bytes: usize = held.iter().map(|line| line.len() + 1).sum();
    assert!(
        held_bytes <= BOUND && held_bytes + held[0].len() + 1 > BOUND,
        "{pending} messages of {held_bytes} bytes held, for a bound of {BOUND}"
    );
    assert_eq!(stat(&broker, "durable_dropped") as usize, 100 - pending);
    let oldest_kept = format!(" big {:03}", 100 - pending);
    assert!(held[0].contains(&oldest_kept), "{}", held[0]);
}

/// `DURABLE #` then `CANCEL #`, in a loop, on a broker with 512 KiB of retained messages:
/// each new subscription copied them all into the log (260 bytes of commands wrote
/// 11.1 MB). Now each copies at most `--max-durable-retained-bytes`, skips and counts the
/// rest, and the log grows by no more than that for each loop.
#[test]
fn durable_and_cancel_in_a_loop_write_at_most_the_copy_bound_each() {
    const RETAINED: usize = 128;
    const LOOPS: usize = 10;
    let dir = common::fresh_dir("copy");
    let broker = start_broker_with(logged(&dir));
    let mut publisher = Raw::connect(broker.addr());
    let text = "r".repeat(4000);
    // Four publisher ids, each within its share of retained bytes.
    let retains: String = (0..RETAINED)
        .map(|n| format!("RETAIN kept/{n} {text} pub{}\n", n % 4))
        .collect();
    publisher.send(&retains);
    publisher.sync();
    assert_eq!(stat(&broker, "retained") as usize, RETAINED);
    let before = dir_bytes(&dir);

    let mut looper = Raw::connect(broker.addr());
    for _ in 0..LOOPS {
        looper.send("DURABLE # loop\n");
        let reply = looper.line();
        let pending: usize = reply
            .strip_prefix("OK DURABLE # ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{reply}"));
        assert!(
            pending > 0 && pending * 4000 <= DEFAULT_MAX_DURABLE_RETAINED_BYTES,
            "{pending} retained messages copied"
        );
        for _ in 0..pending {
            assert!(looper.line().starts_with("MESSAGE "));
        }
        looper.send("CANCEL # loop\n");
        looper.expect(&format!("OK CANCEL # {pending}"));
    }
    looper.sync();
    broker.stop();
    let written = dir_bytes(&dir) - before;
    let most = (LOOPS * (DEFAULT_MAX_DURABLE_RETAINED_BYTES + 4096)) as u64;
    assert!(
        written <= most,
        "{LOOPS} loops wrote {written} bytes to the log; at most {most} expected"
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// The retained messages past the copy bound are counted in `STATS`.
#[test]
fn retained_messages_past_the_copy_bound_are_counted() {
    let broker = start_broker_with(Config {
        max_durable_retained_bytes: 1000,
        ..Config::default()
    });
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("RETAIN a/1 one pub1\nRETAIN a/2 two pub1\nRETAIN a/3 three pub1\n");
    publisher.sync();
    let mut durable = Raw::connect(broker.addr());
    durable.send("DURABLE a/+ me\n");
    durable.expect("OK DURABLE a/+ 3");
    assert_eq!(stat(&broker, "durable_retained_skipped"), 0);
    let text = "x".repeat(600);
    publisher.send(&format!("RETAIN b/1 {text} pub1\nRETAIN b/2 {text} pub1\n"));
    publisher.sync();
    let mut second = Raw::connect(broker.addr());
    second.send("DURABLE b/+ me\n");
    second.expect("OK DURABLE b/+ 1");
    assert_eq!(stat(&broker, "durable_retained_skipped"), 1);
}

/// One connection subscribing to thousands of wildcard filters made every publish that
/// they matched cost 5.2 ms. Now it stops at `--max-wildcards` (exact topics are still
/// fine), and a classmate's wildcard subscription works and receives.
#[test]
fn one_connection_stops_at_its_wildcard_budget_and_a_classmate_does_not() {
    let broker = start_broker_with(Config::default());
    let mut mallory = Raw::connect(broker.addr());
    let filters: String = (0..DEFAULT_MAX_WILDCARDS + 10)
        .map(|n| format!("SUBSCRIBE room/+/{n} mallory\n"))
        .collect();
    mallory.send("VERBOSE on\n");
    mallory.expect("OK VERBOSE on");
    mallory.send(&filters);
    let refusal = format!(
        "ERROR too many subscriptions with + or # on this connection (limit \
         {DEFAULT_MAX_WILDCARDS}): unsubscribe from one first, or subscribe to exact topics"
    );
    for n in 0..DEFAULT_MAX_WILDCARDS + 10 {
        let line = mallory.line();
        if n < DEFAULT_MAX_WILDCARDS {
            assert_eq!(line, format!("OK SUBSCRIBE room/+/{n}"));
        } else {
            assert_eq!(line, refusal);
        }
    }
    mallory.send("SUBSCRIBE room/1/exact mallory\nUNSUBSCRIBE room/+/0 mallory\n");
    mallory.expect("OK SUBSCRIBE room/1/exact");
    mallory.expect("OK UNSUBSCRIBE room/+/0");
    mallory.send("SUBSCRIBE room/# mallory\n");
    mallory.expect("OK SUBSCRIBE room/#");

    let mut classmate = Raw::connect(broker.addr());
    classmate.send("SUBSCRIBE room/+/temp alice\n");
    classmate.sync();
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH room/1/temp 21 pub1\n");
    publisher.sync();
    assert_eq!(classmate.delivery(), "DELIVER room/1/temp 21 pub1");
}

/// Reads the `ERROR` lines a burst got back up to the `PONG` of a `PING` sent after it.
fn errors_until_synced(raw: &mut Raw) -> Vec<String> {
    raw.send("PING retained\n");
    let mut errors = Vec::new();
    loop {
        let line = raw.line();
        if line == "PONG retained" {
            return errors;
        }
        assert!(line.starts_with("ERROR "), "{line}");
        errors.push(line);
    }
}

/// One client retaining on topic after topic took the whole retained store
/// (`--max-retained`) from a class. Now one publisher id keeps at most
/// `--max-retained-per-client` topics; replacing its own is always allowed, and a
/// classmate's `RETAIN` succeeds.
#[test]
fn one_client_cannot_fill_the_retained_store_for_its_classmates() {
    let broker = start_broker_with(Config {
        max_retained: DEFAULT_MAX_RETAINED_PER_CLIENT + 20,
        sys_interval: Duration::ZERO,
        ..Config::default()
    });
    let mut mallory = Raw::connect(broker.addr());
    let burst: String = (0..DEFAULT_MAX_RETAINED_PER_CLIENT + 20)
        .map(|n| format!("RETAIN fill/{n} x mallory\n"))
        .collect();
    mallory.send(&burst);
    let errors = errors_until_synced(&mut mallory);
    assert_eq!(errors.len(), 20);
    assert_eq!(
        errors[0],
        format!(
            "ERROR publisher id mallory keeps retained messages on \
             {DEFAULT_MAX_RETAINED_PER_CLIENT} topics already, the most one id may: UNRETAIN \
             one first, or publish without RETAIN"
        )
    );
    mallory.send("RETAIN fill/0 again mallory\n");
    assert!(errors_until_synced(&mut mallory).is_empty());

    let mut classmate = Raw::connect(broker.addr());
    classmate.send("VERBOSE on\nRETAIN home/temp 21 alice\n");
    classmate.expect("OK VERBOSE on");
    classmate.expect("OK RETAIN home/temp 0");
    assert_eq!(
        stat(&broker, "retained") as usize,
        DEFAULT_MAX_RETAINED_PER_CLIENT + 1
    );
}

/// With an auth file, a user's retained topics over every id it goes by count together;
/// another user is unaffected.
#[test]
fn a_user_keeps_at_most_its_share_of_retained_topics_over_all_its_ids() {
    let file = auth_file(
        "user alice s3cret\nuser bob hunter2\nallow * publish lab/#\n",
        0o600,
    );
    let broker = start_broker_with(Config {
        auth_file: Some(file.clone()),
        max_retained_per_client: 2,
        max_retained_per_user: 3,
        sys_interval: Duration::ZERO,
        ..Config::default()
    });
    let mut alice = logged_in(&broker, "alice", "s3cret");
    alice.send("RETAIN lab/1 x alice\nRETAIN lab/2 x alice\nRETAIN lab/3 x alice\n");
    let errors = errors_until_synced(&mut alice);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("ERROR publisher id alice keeps"),
        "{errors:?}"
    );
    alice.send("RETAIN lab/3 x alice:2\nRETAIN lab/4 x alice:2\n");
    assert_eq!(
        errors_until_synced(&mut alice),
        [
            "ERROR user alice keeps retained messages on 3 topics already, the most one user \
          may: UNRETAIN one first, or publish without RETAIN"
        ]
    );
    let mut bob = logged_in(&broker, "bob", "hunter2");
    bob.send("RETAIN lab/5 x bob\nRETAIN lab/6 x bob:2\n");
    assert!(errors_until_synced(&mut bob).is_empty());
    assert_eq!(stat(&broker, "retained"), 5);
    fs::remove_file(&file).unwrap();
}

/// Sends `SUBSCRIBE <filter> <id>` for each filter, in one write, with `VERBOSE on`, and
/// returns how many were taken; every other reply must be `refusal`.
fn subscribe_burst(raw: &mut Raw, id: &str, filters: &[String], refusal: &str) -> usize {
    let lines: String = filters
        .iter()
        .map(|filter| format!("SUBSCRIBE {filter} {id}\n"))
        .collect();
    raw.send("VERBOSE on\n");
    raw.expect("OK VERBOSE on");
    raw.send(&lines);
    let mut taken = 0;
    for filter in filters {
        let line = raw.line();
        if line == format!("OK SUBSCRIBE {filter}") {
            taken += 1;
        } else {
            assert_eq!(line, refusal);
        }
    }
    taken
}

/// The budget per connection alone let one user with many connections add them up (64 ×
/// `--max-clients-per-ip`, 4,096 filters). With an auth file, a user's wildcard filters
/// count over all its connections: alice's third connection is refused, exact topics
/// still work, bob is unaffected and receives, and alice's places come back when she
/// unsubscribes or a connection leaves.
#[test]
fn a_users_wildcard_filters_count_over_all_its_connections() {
    let file = auth_file(
        "user alice s3cret\nuser bob hunter2\nallow * subscribe room/#\n\
         allow * publish room/#\n",
        0o600,
    );
    let broker = start_broker_with(Config {
        auth_file: Some(file.clone()),
        sys_interval: Duration::ZERO,
        ..Config::default()
    });
    let refusal = format!(
        "ERROR user alice holds {DEFAULT_MAX_WILDCARDS_PER_USER} subscriptions with + or # \
         already, over all its connections, the most one user may: unsubscribe from one \
         first, or subscribe to exact topics"
    );
    let filters = |connection: usize| -> Vec<String> {
        (0..DEFAULT_MAX_WILDCARDS)
            .map(|n| format!("room/+/{connection}/{n}"))
            .collect()
    };
    let mut alices: Vec<Raw> = (0..3)
        .map(|_| logged_in(&broker, "alice", "s3cret"))
        .collect();
    let taken: Vec<usize> = (alices.iter_mut().enumerate())
        .map(|(n, alice)| subscribe_burst(alice, "alice", &filters(n), &refusal))
        .collect();
    assert_eq!(taken.iter().sum::<usize>(), DEFAULT_MAX_WILDCARDS_PER_USER);
    assert_eq!(taken[2], 0, "{taken:?}");
    alices[2].send("SUBSCRIBE room/1/exact alice\n");
    alices[2].expect("OK SUBSCRIBE room/1/exact");

    let mut bob = logged_in(&broker, "bob", "hunter2");
    bob.send("SUBSCRIBE room/+/temp bob\n");
    bob.sync();
    bob.send("PUBLISH room/1/temp 21 bob\n");
    assert_eq!(bob.delivery(), "DELIVER room/1/temp 21 bob");

    alices[0].send("UNSUBSCRIBE room/+/0/0 alice\n");
    alices[0].expect("OK UNSUBSCRIBE room/+/0/0");
    let again = ["room/#".to_string(), "room/+".to_string()];
    assert_eq!(
        subscribe_burst(&mut alices[2], "alice", &again, &refusal),
        1
    );

    // A connection that leaves gives its places back (the session's cleanup runs before
    // its slot is counted free).
    drop(alices.remove(1));
    common::wait_until("alice's second connection has left", || {
        stat(&broker, "connections_current") == 3
    });
    let mut fourth = logged_in(&broker, "alice", "s3cret");
    assert_eq!(
        subscribe_burst(&mut fourth, "alice", &filters(4), &refusal),
        DEFAULT_MAX_WILDCARDS
    );
    fs::remove_file(&file).unwrap();
}

/// The count quota alone let one publisher id keep 160 retained messages of 64 KiB, 10 MiB
/// of the 16 MiB store. Now it keeps at most `--max-retained-bytes-per-client`: the
/// longest messages past it are refused whole, replacing one with a shorter one works,
/// `UNRETAIN` gives the bytes back, and a classmate's `RETAIN` succeeds.
#[test]
fn one_client_cannot_take_the_retained_bytes_of_its_classmates() {
    let broker = start_broker_with(Config {
        sys_interval: Duration::ZERO,
        ..Config::default()
    });
    let text = "x".repeat(60_000);
    let mut mallory = Raw::connect(broker.addr());
    let burst: String = (0..20)
        .map(|n| format!("RETAIN big/{n} {text} mallory\n"))
        .collect();
    mallory.send(&burst);
    let errors = errors_until_synced(&mut mallory);
    let kept = DEFAULT_MAX_RETAINED_BYTES_PER_CLIENT / (text.len() + 40);
    assert_eq!(
        errors.len(),
        20 - kept,
        "{} kept",
        stat(&broker, "retained")
    );
    assert_eq!(
        errors[0],
        format!(
            "ERROR publisher id mallory would keep more than \
             {DEFAULT_MAX_RETAINED_BYTES_PER_CLIENT} bytes of retained messages, the most one \
             id may: UNRETAIN one first, retain a shorter message, or publish without RETAIN"
        )
    );
    assert_eq!(stat(&broker, "retained") as usize, kept);
    mallory.send(&format!(
        "RETAIN big/0 short mallory\nRETAIN big/{kept} {text} mallory\n"
    ));
    assert!(errors_until_synced(&mut mallory).is_empty());
    mallory.send(&format!("RETAIN big/19 {text} mallory\n"));
    assert_eq!(errors_until_synced(&mut mallory).len(), 1);
    mallory.send(&format!(
        "UNRETAIN big/1 mallory\nRETAIN big/19 {text} mallory\n"
    ));
    assert!(errors_until_synced(&mut mallory).is_empty());

    let mut classmate = Raw::connect(broker.addr());
    classmate.send(&format!("VERBOSE on\nRETAIN home/photo {text} alice\n"));
    classmate.expect("OK VERBOSE on");
    classmate.expect("OK RETAIN home/photo 0");
}

/// With an auth file, a user's retained bytes over every id it goes by count together;
/// another user is unaffected.
#[test]
fn a_user_keeps_at_most_its_share_of_retained_bytes_over_all_its_ids() {
    let file = auth_file(
        "user alice s3cret\nuser bob hunter2\nallow * publish lab/#\n",
        0o600,
    );
    let broker = start_broker_with(Config {
        auth_file: Some(file.clone()),
        max_retained_bytes_per_client: 1000,
        max_retained_bytes_per_user: 1500,
        sys_interval: Duration::ZERO,
        ..Config::default()
    });
    let text = "x".repeat(400);
    let mut alice = logged_in(&broker, "alice", "s3cret");
    alice.send(&format!(
        "RETAIN lab/1 {text} alice\nRETAIN lab/2 {text} alice\nRETAIN lab/3 {text} alice\n"
    ));
    let errors = errors_until_synced(&mut alice);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("ERROR publisher id alice would keep more than 1000 bytes"),
        "{errors:?}"
    );
    alice.send(&format!(
        "RETAIN lab/3 {text} alice:2\nRETAIN lab/4 {text} alice:3\n"
    ));
    assert_eq!(
        errors_until_synced(&mut alice),
        [
            "ERROR user alice would keep more than 1500 bytes of retained messages, the most \
             one user may: UNRETAIN one first, retain a shorter message, or publish without \
             RETAIN"
        ]
    );
    let mut bob = logged_in(&broker, "bob", "hunter2");
    bob.send(&format!(
        "RETAIN lab/5 {text} bob\nRETAIN lab/6 {text} bob:2\n"
    ));
    assert!(errors_until_synced(&mut bob).is_empty());
    assert_eq!(stat(&broker, "retained"), 5);
    fs::remove_file(&file).unwrap();
}
