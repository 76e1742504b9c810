//! Lab 11 checks: the ACL filter check. On a broker with `--auth-file`, a `SUBSCRIBE` is
//! allowed when one of the user's `allow … subscribe <rule>` lines *covers* the filter
//! asked for: every topic the filter could ever match, the rule matches too. `covers`
//! (the lab 11 region in src/access.rs) decides it, level by level. These checks log in
//! as a user with one rule at a time and try filters on the wire, as `nc` would.

mod common;
mod labcheck;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};

use labcheck::Peer;
use pubsub_lab::{BrokerHandle, Config};

/// Where the work of this lab is; `labcheck`'s failure messages point there too.
const REGION: &str = "covers in src/access.rs";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A broker whose one user, `student`, may subscribe to `rule` only.
fn broker_with_rule(rule: &str) -> BrokerHandle {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("pubsub-lab11-{}-{n}", std::process::id()));
    std::fs::write(
        &path,
        format!("user student pass\nallow student subscribe {rule}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    common::start_broker_with(Config {
        auth_file: Some(path),
        // No $SYS figures: a subscription to them would be answered with them first.
        sys_interval: std::time::Duration::ZERO,
        ..Config::default()
    })
}

/// Whether `student`, allowed `rule`, may subscribe to `filter`, as the broker answers.
fn allowed(broker: &BrokerHandle, filter: &str) -> bool {
    let mut peer = Peer::connect(broker, "student");
    peer.send("AUTH student pass\nVERBOSE on\n");
    assert_eq!(peer.line("the OK of AUTH"), "OK AUTH student");
    assert_eq!(peer.line("the OK of VERBOSE"), "OK VERBOSE on");
    peer.send(&format!("SUBSCRIBE {filter} student\n"));
    let answer = peer.line(&format!("the answer to SUBSCRIBE {filter}"));
    if answer == format!("OK SUBSCRIBE {filter}") {
        return true;
    }
    assert_eq!(
        answer,
        format!("ERROR not allowed: student may not subscribe to {filter}"),
        "a SUBSCRIBE is answered OK or refused as not allowed"
    );
    false
}

/// A rule without wildcards covers exactly itself: not a level more, not a level less.
#[test]
fn a_plain_rule_covers_only_itself() {
    let broker = broker_with_rule("lab/alice/temp");
    assert!(
        allowed(&broker, "lab/alice/temp"),
        "the rule lab/alice/temp was refused for the very filter lab/alice/temp: {REGION} \
         must allow a filter whose levels are the rule's, one for one"
    );
    assert!(
        !allowed(&broker, "lab/alice/temp/secret"),
        "the rule lab/alice/temp allowed lab/alice/temp/secret: when the rule's levels run \
         out, the filter must have no level left over ({REGION} stopped comparing once the \
         rule was used up)"
    );
    assert!(
        !allowed(&broker, "lab/alice"),
        "the rule lab/alice/temp allowed lab/alice, a shorter filter: a filter that ends \
         before the rule does is not covered"
    );
    assert!(
        !allowed(&broker, "lab/bob/temp"),
        "the rule lab/alice/temp allowed lab/bob/temp: plain levels must be equal"
    );
    for filter in ["lab/+/temp", "lab/#", "lab/alice/+"] {
        assert!(
            !allowed(&broker, filter),
            "the rule lab/alice/temp allowed the filter {filter}, which also matches \
             topics of other users (lab/bob/temp): a plain level in the rule covers only \
             itself, never a wildcard in the filter. Did {REGION} match the rule against \
             the filter the wrong way round (the filter's wildcards matching the rule's \
             levels)?"
        );
    }
}

/// `+` in a rule covers any one level, `+` included, but not `#`, which stands for many.
#[test]
fn plus_in_a_rule_covers_one_level_never_all_of_them() {
    let broker = broker_with_rule("room/+");
    assert!(
        allowed(&broker, "room/a"),
        "the rule room/+ refused room/a: + in the rule covers any one level"
    );
    assert!(
        allowed(&broker, "room/+"),
        "the rule room/+ refused the filter room/+: + covers + (one level either way)"
    );
    assert!(
        !allowed(&broker, "room/#"),
        "the rule room/+ allowed room/#, which also matches room/a/b and room itself: \
         {REGION} treated the filter's # as if it were one more level name (as a topic \
         match would); # in the filter is covered only by # in the rule"
    );
    assert!(
        !allowed(&broker, "room/a/b"),
        "the rule room/+ allowed room/a/b: + is exactly one level"
    );
}

/// `#` in a rule covers whatever is left, wildcards included, and the level above it.
#[test]
fn hash_in_a_rule_covers_everything_below() {
    let broker = broker_with_rule("lab/#");
    for filter in ["lab", "lab/alice", "lab/+/temp", "lab/#"] {
        assert!(
            allowed(&broker, filter),
            "the rule lab/# refused {filter}: once the rule reaches #, everything that is \
             left of the filter is covered, wildcards too (and lab/# matches lab itself)"
        );
    }
    assert!(
        !allowed(&broker, "labx/a"),
        "the rule lab/# allowed labx/a: levels are compared whole, not as prefixes"
    );
}

/// A rule that starts with a wildcard does not cover the broker's own `$SYS` topics; a
/// rule that names `$SYS` does.
#[test]
fn a_wildcard_rule_does_not_cover_sys() {
    let broker = broker_with_rule("#");
    assert!(allowed(&broker, "news/+"), "the rule # refused news/+");
    assert!(
        !allowed(&broker, "$SYS/#"),
        "the rule # allowed $SYS/#: as in topic matching, a rule starting with + or # does \
         not reach topics starting with $ ({REGION} must refuse a $ filter for such a rule \
         before comparing levels)"
    );
    let broker = broker_with_rule("+/broker/+");
    assert!(
        allowed(&broker, "node/broker/uptime"),
        "the rule +/broker/+ refused node/broker/uptime"
    );
    assert!(
        !allowed(&broker, "$SYS/broker/uptime"),
        "the rule +/broker/+ allowed $SYS/broker/uptime: a rule starting with + does not \
         reach topics starting with $ either, not only one starting with # ({REGION} must \
         refuse a $ filter for a rule that starts with + or #)"
    );
    let broker = broker_with_rule("$SYS/#");
    assert!(
        allowed(&broker, "$SYS/broker/+"),
        "the rule $SYS/# refused $SYS/broker/+: a rule that names $SYS covers it"
    );
}
