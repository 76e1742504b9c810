//! Lab 06 checks: the timestamp cache. Every `DELIVER` line ends with the broker's local
//! time, `YYYY-MM-DD HH:MM:SS`. Formatting it costs about as much as the rest of a
//! publish, and the text changes only once a second, so `Clock::now` (the lab 06 region in
//! src/clock.rs) keeps the last text and makes a new one only when the second changes.
//! Making it fast must not make it wrong: these checks compare what a real subscriber
//! receives with the clock on the wall, then drive `Clock` directly across a second
//! boundary.

mod common;
mod labcheck;

use std::collections::BTreeSet;
use std::process::Command;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local, NaiveDateTime, Timelike};
use pubsub_lab::clock::Clock;

use labcheck::Peer;

/// The protocol's timestamp format.
const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Where the work of this lab is; `labcheck`'s failure messages point there too.
const REGION: &str = "Clock::now in src/clock.rs";

/// A subscriber receives the local time of the publish, to the second.
#[test]
fn deliver_timestamps_are_the_local_time() {
    let broker = common::start_broker();
    let mut sub = Peer::subscribed(&broker, "sub1", "weather");
    let mut publisher = Peer::connect(&broker, "pub1");
    let before = whole_second(Local::now().naive_local());
    publisher.send("PUBLISH weather what time is it pub1\n");
    let line = sub.line("the DELIVER line of pub1's message");
    let after = Local::now().naive_local();
    let stamp = timestamp_of(&line);
    assert!(
        before <= stamp && stamp <= after,
        "the message was published between {before} and {after} (local time), but its \
         DELIVER line says {stamp}; {REGION} must give the current local time (chrono's \
         Local, not Utc) and a fresh text once the second has changed"
    );
}

/// Publishes handled one by one, for more than two seconds, are each stamped with the
/// second they were handled in: the stamps follow the clock and never go backwards.
#[test]
fn timestamps_follow_the_clock_and_never_go_backwards() {
    let broker = common::start_broker();
    let mut sub = Peer::subscribed(&broker, "sub1", "ticks");
    let mut publisher = Peer::connect(&broker, "pub1");
    let mut previous: Option<NaiveDateTime> = None;
    let mut seconds = BTreeSet::new();
    // One publish at a time, each answered (PONG) before the next is sent, so that each is
    // handled on its own and reads the clock itself; about ten a second until three
    // different seconds have been seen (at most 50, a bound if the clock stands still).
    for n in 0..50 {
        let before = whole_second(Local::now().naive_local());
        publisher.send(&format!("PUBLISH ticks tick-{n} pub1\nPING {n}\n"));
        assert_eq!(
            publisher.line("the PONG after a publish"),
            format!("PONG {n}")
        );
        let after = Local::now().naive_local();
        let stamp = timestamp_of(&sub.line(&format!("the DELIVER line of tick-{n}")));
        assert!(
            before <= stamp && stamp <= after,
            "tick-{n} was handled between {before} and {after}, but it is stamped {stamp}: \
             {REGION} gave a text made for an earlier second; it must make a new one when \
             the second changes"
        );
        if let Some(previous) = previous {
            assert!(
                previous <= stamp,
                "tick-{n} is stamped {stamp}, before the message published ahead of it \
                 ({previous}): {REGION} returned an old text"
            );
        }
        previous = Some(stamp);
        seconds.insert(stamp);
        if seconds.len() == 3 {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("50 publishes over five seconds saw only the seconds {seconds:?}: does the clock move?");
}

/// Within one second, the clock gives the same, correct, text every time.
#[test]
fn the_clock_is_steady_within_a_second() {
    let mut clock = Clock::default();
    // Retried if a second boundary falls between the calls, which can happen once.
    for _ in 0..3 {
        let start = SystemTime::now();
        let first = clock.now().to_string();
        let second = clock.now().to_string();
        let end = SystemTime::now();
        if unix_second(start) != unix_second(end) {
            continue;
        }
        let expected = text_of(start);
        assert_eq!(
            first, expected,
            "Clock::now() should give the local time as `YYYY-MM-DD HH:MM:SS`"
        );
        assert_eq!(
            second, expected,
            "a second call within the same second should give the same text"
        );
        return;
    }
    panic!("the system clock jumped a second on every try; is it being changed?");
}

/// When the second changes, the clock gives the new time, not the cached one.
#[test]
fn the_clock_moves_on_with_the_second() {
    let mut clock = Clock::default();
    let old = clock.now().to_string();
    sleep_into_next_second();
    let start = SystemTime::now();
    let new = clock.now().to_string();
    let end = SystemTime::now();
    assert!(
        new == text_of(start) || new == text_of(end),
        "after the second changed, Clock::now() gave {new:?} (it gave {old:?} a second \
         before) but the time is {}: the cached text must be made again when the Unix \
         second changes; look at what {REGION} compares",
        text_of(end)
    );
}

/// The time zone the checks of local time are run in again: 5 h 45 min ahead of UTC
/// (Nepal's offset, which no machine is in by accident), written as a POSIX rule so that
/// no time-zone database is needed.
const ZONE: &str = "<+0545>-05:45";

/// The checks run again in [`ZONE`].
const IN_ZONE: [&str; 3] = [
    "timestamps_are_local_in_a_zone_that_is_not_utc",
    "deliver_timestamps_are_the_local_time",
    "the_clock_is_steady_within_a_second",
];

/// In a time zone that is not UTC, the broker still stamps the local time. The machine
/// that runs the checks is often set to UTC, where a clock that gives UTC looks right; so
/// this runs the checks of local time again, in a test program of their own, with `TZ`
/// set to 5:45 ahead of UTC.
#[test]
fn timestamps_are_local_in_a_zone_that_is_not_utc() {
    if std::env::var("TZ").as_deref() == Ok(ZONE) {
        // In the program started below: make sure the zone took, or this proves nothing.
        let offset = Local::now().offset().local_minus_utc();
        assert_eq!(
            offset,
            5 * 3600 + 45 * 60,
            "with TZ={ZONE}, chrono's Local is {offset} s from UTC, not 5:45: the zone did \
             not take, so this check cannot test {REGION}"
        );
        return;
    }
    let program = std::env::current_exe().expect("the test program's path");
    let output = Command::new(program)
        .args(IN_ZONE)
        .args(["--exact", "--test-threads=1"])
        .env("TZ", ZONE)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the checks again in another time zone");
    if output.status.success() {
        return;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said: Vec<&str> = stdout
        .lines()
        .skip_while(|line| !line.contains("panicked at"))
        .skip(1)
        .take_while(|line| !line.is_empty() && !line.starts_with("note: "))
        .collect();
    panic!(
        "with the time zone set 5:45 ahead of UTC (TZ={ZONE}), a check of local time \
         failed: {}",
        if said.is_empty() {
            stdout.to_string()
        } else {
            said.join("\n")
        }
    );
}

/// Sleeps until just after the next whole second of the system clock.
fn sleep_into_next_second() {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    let into_second = Duration::from_nanos(u64::from(since_epoch.subsec_nanos()));
    thread::sleep(Duration::from_secs(1) - into_second + Duration::from_millis(20));
}

fn unix_second(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// `time` as the protocol writes it: local time, to the second.
fn text_of(time: SystemTime) -> String {
    DateTime::<Local>::from(time).format(FORMAT).to_string()
}

fn whole_second(time: NaiveDateTime) -> NaiveDateTime {
    time.with_nanosecond(0).expect("0 ns is valid")
}

/// The timestamp at the end of a DELIVER line; fails the check if it is malformed.
fn timestamp_of(line: &str) -> NaiveDateTime {
    let parts: Vec<&str> = line.rsplitn(3, ' ').collect();
    let stamp = match parts[..] {
        [time, date, _] => format!("{date} {time}"),
        _ => String::new(),
    };
    NaiveDateTime::parse_from_str(&stamp, FORMAT).unwrap_or_else(|_| {
        panic!(
            "the DELIVER line {line:?} should end with a timestamp like \
             `2025-03-14 10:30:00`; look at the text {REGION} returns"
        )
    })
}
