//! Lab 07 checks: the tree walk. A publish finds its wildcard subscribers by walking the
//! tree of filters one topic level at a time: `FilterTree::walk_from` (the lab 07 region in
//! src/tree.rs) visits the members of every filter that matches, each once, by MQTT's
//! rules: `+` is exactly one level (an empty one too), `#` any number of levels (zero
//! included), and a filter that starts with a wildcard does not match a topic that starts
//! with `$`. Most checks put filters in a `FilterTree` and walk it directly with chosen
//! topics; the last two watch real subscribers of a broker receive by the same rules.

mod common;
mod labcheck;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use labcheck::{Peer, WAIT};
use pubsub_lab::tree::FilterTree;
use pubsub_lab::Config;

/// Where the work of this lab is; `labcheck`'s failure messages point there too.
const REGION: &str = "FilterTree::walk_from in src/tree.rs";

/// A tree holding `filters`, each filter's members being its own text.
fn tree_of(filters: &[&str]) -> FilterTree<String> {
    let mut tree = FilterTree::default();
    for filter in filters {
        *tree.entry(filter) = filter.to_string();
    }
    tree
}

/// Each filter the walk visits for `topic`, with how many times it was visited.
fn visits(tree: &FilterTree<String>, topic: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    tree.walk(topic, &mut |filter| {
        *seen.entry(filter.clone()).or_insert(0) += 1
    });
    seen
}

/// Walks `tree` for every `(topic, filters that match it)` case, and fails with `rule` (what
/// the student got wrong, in words) if a case visits other filters than those. A filter
/// visited twice is reported as such, whatever the rule.
#[track_caller]
fn check_cases(filters: &[&str], cases: &[(&str, &[&str])], rule: &str) {
    let tree = tree_of(filters);
    for (topic, expected) in cases {
        let seen = visits(&tree, topic);
        let twice: Vec<String> = seen
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(filter, count)| format!("{filter:?} {count} times"))
            .collect();
        assert!(
            twice.is_empty(),
            "with the filters {filters:?} in the tree, the walk for topic {topic:?} visited \
             {}: a filter that matches must be visited once, never more than once. Visit a \
             node's `all_levels` in one place only (see {REGION})",
            twice.join(", ")
        );
        let got: Vec<&str> = seen.keys().map(String::as_str).collect();
        let mut wanted = expected.to_vec();
        wanted.sort_unstable();
        assert!(
            got == wanted,
            "with the filters {filters:?} in the tree, a publish to topic {topic:?} must reach \
             {wanted:?}, but the walk visited {got:?}. {rule} (see {REGION})"
        );
    }
}

/// A plain level matches only the same text (case included), and a filter matches only
/// once every level of the topic is matched: none may be left over.
#[test]
fn plain_levels_must_be_equal_and_no_level_left_over() {
    check_cases(
        &["home/+", "home/+/temp", "+/weather", "sport/#"],
        &[
            ("home/kitchen", &["home/+"]),
            ("home/kitchen/temp", &["home/+/temp"]),
            ("home/kitchen/humidity", &[]),
            ("Home/kitchen/temp", &[]),
            ("city/weather", &["+/weather"]),
            ("city/weather/today", &[]),
            ("sportsman", &[]),
        ],
        "A filter matches a topic only when its levels have taken every level of the \
         topic: no level may be left over (`home/+` does not match `home/kitchen/temp`). So \
         the members in `ends_here` are visited only when `rest` is None, never on the way \
         down. And a plain level matches only the same text, case included.",
    );
}

/// `+` takes exactly one level: not zero, not two or more.
#[test]
fn plus_matches_exactly_one_level() {
    check_cases(
        &["home/+", "home/+/temp", "+", "+/+"],
        &[
            ("home/kitchen", &["home/+", "+/+"]),
            ("home/kitchen/temp", &["home/+/temp"]),
            ("home/kitchen/fridge/temp", &[]),
            ("home", &["+"]),
            ("home/a/b", &[]),
        ],
        "`+` stands for exactly one level: not zero (`home/+` does not match `home`) and \
         not two (`home/+` does not match `home/a/b`). After the `+` child has taken one \
         level, the walk goes on into it with the rest of the topic, exactly as into a \
         plain child; walking it with `None` lets `+` take every level that is left.",
    );
}

/// `+` matches an empty level as it matches any other (`news/`, `a//b`, `/a`).
#[test]
fn plus_matches_an_empty_level() {
    check_cases(
        &["news/+", "a/+/b", "+/a"],
        &[
            ("news/", &["news/+"]),
            ("a//b", &["a/+/b"]),
            ("/a", &["+/a"]),
            ("news", &[]),
        ],
        "`+` matches any one level, even an empty one: `news/` is the level `news` then an \
         empty level, `a//b` has three levels (the middle one empty), `/a` starts with an \
         empty one. Did `+` refuse an empty level (a test of `level.is_empty()`), or did \
         the walk skip it? An empty level is a level like any other.",
    );
}

/// An empty level is matched like any other, never skipped: `a//b` is not `a/b`.
#[test]
fn an_empty_level_is_a_level_not_skipped() {
    check_cases(
        &["a/b", "a/+", "+/+/+", "news", "news/#"],
        &[
            ("a//b", &["+/+/+"]),
            ("a/b", &["a/b", "a/+"]),
            ("news/", &["news/#"]),
        ],
        "An empty level is a level like any other, never skipped: `a//b` has three \
         levels, the middle one empty, so it is not `a/b`; `news/` has two, so it is not \
         `news`. Match an empty level as any other, with `children.get(\"\")` or the `+` \
         child, and go on with the rest of the topic after it.",
    );
}

/// `#` matches any number of levels, zero included: `news/#` matches `news` itself.
#[test]
fn hash_matches_any_number_of_levels_zero_included() {
    check_cases(
        &["news/#", "#", "a/+/#"],
        &[
            ("news", &["news/#", "#"]),
            ("news/tech", &["news/#", "#"]),
            ("news/tech/ai/2024", &["news/#", "#"]),
            ("news/", &["news/#", "#"]),
            ("newsroom", &["#"]),
            ("a/b", &["a/+/#", "#"]),
            ("a", &["#"]),
        ],
        "`#` matches any number of levels, zero included: `news/#` matches `news` itself, \
         and `a/+/#` matches `a/b`. Visit a node's `all_levels` members whenever the walk \
         reaches the node (unless `hidden`), also when no level of the topic is left \
         (`rest` is None).",
    );
}

/// A filter starting with `#` or `+` does not match a topic starting with `$`.
#[test]
fn a_first_level_wildcard_does_not_match_a_dollar_topic() {
    let filters = ["#", "+", "+/#", "+/broker/uptime"];
    check_cases(
        &filters,
        &[("$SYS/broker/uptime", &[]), ("$lab", &[])],
        "A filter that starts with a wildcard (`#`, `+/...`) must not match a topic that \
         starts with `$`, such as the broker's own `$SYS/broker/uptime`: so that `#` does \
         not drown a client in them. That is what `hidden` says: while it is true, skip the \
         node's `all_levels` members and its `+` child, and follow only the plain child.",
    );
    check_cases(
        &filters,
        &[
            ("lab", &["#", "+", "+/#"]),
            ("x/broker/uptime", &["#", "+/#", "+/broker/uptime"]),
        ],
        "These topics do not start with `$`, so nothing is hidden: the wildcards match \
         them as they match anything (see the other checks for the rule that fails here).",
    );
}

/// Below a `$` topic's first level, `#` and `+` work as anywhere: `$SYS/#` matches.
#[test]
fn wildcards_below_a_dollar_level_match() {
    check_cases(
        &["$SYS/#", "$SYS/+/uptime", "$SYS/broker/+", "a/#", "a/+"],
        &[
            (
                "$SYS/broker/uptime",
                &["$SYS/#", "$SYS/+/uptime", "$SYS/broker/+"],
            ),
            ("$SYS/broker", &["$SYS/#"]),
            ("a/$x", &["a/#", "a/+"]),
        ],
        "`hidden` holds for the first level only: a filter whose first level is `$SYS` \
         has matched it exactly, and below it `#` and `+` work as anywhere, so `$SYS/#` \
         and `$SYS/+/uptime` match `$SYS/broker/uptime`. Walk the children with `hidden` \
         false. (And a `$` further on, as in `a/$x`, hides nothing.)",
    );
}

/// Every filter that matches is visited exactly once, however many overlap.
#[test]
fn each_matching_filter_is_visited_once() {
    let filters = [
        "#",
        "+/+",
        "+/tech",
        "news/#",
        "news/+",
        "news/tech",
        "news/tech/#",
    ];
    check_cases(
        &filters,
        &[("news/tech", &filters), ("news", &["#", "news/#"])],
        "Every filter that matches must be visited, each once.",
    );
}

/// A level is cut at its `/` whatever letters it holds: non-ASCII levels (`zürich`,
/// `café`, `東京`) match as plain levels, under `+` and under `#`.
#[test]
fn levels_with_non_ascii_letters_are_cut_at_the_slash() {
    check_cases(
        &[
            "zürich/wetter",
            "zürich/+",
            "+/wetter",
            "café/#",
            "+/+/brûlée",
            "東京/+",
        ],
        &[
            ("zürich/wetter", &["zürich/wetter", "zürich/+", "+/wetter"]),
            ("zürich/föhn", &["zürich/+"]),
            ("café/crème/brûlée", &["café/#", "+/+/brûlée"]),
            ("café", &["café/#"]),
            ("東京/天気", &["東京/+"]),
            ("東京", &[]),
        ],
        "A level is all the text up to the next `/`, whatever letters it holds (`+` \
         matches this one level, whatever its text). The indexes of a `str` count bytes, \
         and a non-ASCII letter takes two or more of them: cut with \
         `split_once(LEVEL_SEPARATOR)`, not at a count of characters \
         (`chars().position(..)`), which is not a byte index once a level holds a \
         non-ASCII letter.",
    );
}

/// A topic as deep as the broker allows (32 levels) is walked to its end.
#[test]
fn deep_topics_are_walked_to_the_end() {
    let levels: Vec<String> = (0..32).map(|n| n.to_string()).collect();
    let topic = levels.join("/");
    let all_plus = vec!["+"; 32].join("/");
    let last_plus = format!("{}/+", levels[..31].join("/"));
    let deep_hash = format!("{}/#", levels[..31].join("/"));
    let too_deep = format!("{topic}/+");
    let filters = [
        all_plus.as_str(),
        last_plus.as_str(),
        deep_hash.as_str(),
        too_deep.as_str(),
        "0/#",
        "+/1/#",
    ];
    check_cases(
        &filters,
        &[(
            topic.as_str(),
            &[
                all_plus.as_str(),
                last_plus.as_str(),
                deep_hash.as_str(),
                "0/#",
                "+/1/#",
            ],
        )],
        "A topic of 32 levels (the broker's `--max-topic-levels`) is walked one level at a \
         time down to its last level, and only there do the filters that end with it match.",
    );
}

/// A subscriber that reads `DELIVER` lines until the one on `done`, and returns the topics
/// of those before it.
fn topics_until_done(peer: &mut Peer) -> Vec<String> {
    let mut topics = Vec::new();
    loop {
        let line = peer.line("its DELIVER lines, up to the one on topic `done`");
        let topic = line
            .strip_prefix("DELIVER ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("{} expected DELIVER lines, got {line:?}", peer.name));
        if topic == "done" {
            return topics;
        }
        topics.push(topic.to_string());
    }
}

/// Real subscribers of a broker receive what their filters match, each message once.
#[test]
fn subscribers_receive_what_their_filters_match() {
    let broker = common::start_broker_with(Config {
        sys_interval: Duration::ZERO,
        ..Config::default()
    });
    let published = [
        "home/kitchen/temp",
        "home/kitchen",
        "home",
        "home//temp",
        "home/kitchen/fridge/temp",
        "$lab/x",
        "news",
        "news/tech",
    ];
    // (id, filters, topics it must receive, the rule it shows)
    let subscribers: [(&'static str, &[&str], &[&str], &str); 4] = [
        (
            "alice",
            &["home/+/temp"],
            &["home/kitchen/temp", "home//temp"],
            "`+` is exactly one level, an empty one too",
        ),
        (
            "bob",
            &["home/#"],
            &[
                "home/kitchen/temp",
                "home/kitchen",
                "home",
                "home//temp",
                "home/kitchen/fridge/temp",
            ],
            "`#` is any number of levels, zero included: `home/#` matches `home`",
        ),
        (
            "carol",
            &["#"],
            &[
                "home/kitchen/temp",
                "home/kitchen",
                "home",
                "home//temp",
                "home/kitchen/fridge/temp",
                "news",
                "news/tech",
            ],
            "`#` matches every topic except those starting with `$` (the `hidden` flag)",
        ),
        (
            "dave",
            &["$lab/+", "news/#", "news/+"],
            &["$lab/x", "news", "news/tech"],
            "`$lab/+` matches `$lab/x` (`hidden` stops only a wildcard at the first level), \
             `news/#` matches `news`, and a connection whose filters overlap (`news/#` and \
             `news/+` both match `news/tech`) gets each message once",
        ),
    ];
    let mut peers: Vec<Peer> = subscribers
        .iter()
        .map(|(id, filters, _, _)| {
            let mut peer = Peer::connect(&broker, id);
            for filter in filters.iter().copied().chain(["done"]) {
                peer.send(&format!("SUBSCRIBE {filter} {id}\n"));
            }
            peer.sync("its SUBSCRIBEs");
            peer
        })
        .collect();
    let mut publisher = Peer::connect(&broker, "publisher");
    for topic in published.iter().chain(&["done"]) {
        publisher.send(&format!("PUBLISH {topic} hello publisher\n"));
    }
    publisher.sync("its PUBLISHes");
    for (peer, (id, filters, expected, rule)) in peers.iter_mut().zip(&subscribers) {
        let got = topics_until_done(peer);
        assert_eq!(
            got, *expected,
            "{id} subscribed to {filters:?}, and the publisher sent to {published:?} in \
             that order: {id} must receive {expected:?}, but received {got:?}. The rule: \
             {rule}. The broker finds who matches with FilterTree::walk, that is {REGION}"
        );
    }
}

/// The broker's live `$SYS` figures reach a `$SYS/...` filter, and never `#`.
#[test]
fn live_sys_figures_reach_sys_filters_and_never_hash() {
    let broker = common::start_broker_with(Config {
        sys_interval: Duration::from_millis(100),
        ..Config::default()
    });
    let mut everything = Peer::subscribed(&broker, "everything", "#");
    let mut dash = Peer::connect(&broker, "dash");
    // The figures kept from the last round come at once, before the PONG; they are
    // matched without the tree. The next rounds go through the walk.
    dash.send("SUBSCRIBE $SYS/broker/+ dash\nPING kept\n");
    while dash.line("the PONG after SUBSCRIBE") != "PONG kept" {}
    let deadline = Instant::now() + WAIT;
    let mut seen = BTreeMap::new();
    // A topic seen twice live: a whole round went out after dash (and everything) had
    // subscribed, to every subscriber it matched.
    while seen.values().all(|count| *count < 2) {
        assert!(
            Instant::now() < deadline,
            "dash subscribed to $SYS/broker/+ and the broker publishes its figures every \
             100 ms, but in {WAIT:?} dash received only {seen:?}. `$SYS/broker/+` must match \
             `$SYS/broker/uptime`: `hidden` holds for the first level only (see {REGION})"
        );
        let line = dash.line(
            "the live $SYS/broker/uptime and $SYS/broker/version figures, every 100 ms; \
             `$SYS/broker/+` must match them: `hidden` holds for the first level only",
        );
        let topic = line.split(' ').nth(1).unwrap_or_default().to_string();
        assert!(
            line.starts_with("DELIVER $SYS/broker/"),
            "dash subscribed to $SYS/broker/+ only, and received {line:?}"
        );
        *seen.entry(topic).or_insert(0) += 1;
    }
    everything.send("PING after\n");
    let line = everything.line("the PONG of its PING");
    assert_eq!(
        line, "PONG after",
        "everything subscribed to `#`, and received {line:?} where nothing was due: `#` \
         must not match the broker's `$SYS` figures (a filter starting with a wildcard does \
         not match a topic starting with `$`: that is `hidden`, see {REGION})"
    );
}
