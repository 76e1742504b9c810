//! Durable subscriptions with `--data-dir`: what survives a restart, what the log holds,
//! and what the broker does with a log a crash or a disk has damaged.

mod common;

use std::fs;
use std::path::Path;

use common::{start_broker_with, stat, Raw};
use pubsub_lab::config::FsyncPolicy;
use pubsub_lab::durable::log::{read_frame, segment_path, Frame};
use pubsub_lab::durable::Durables;
use pubsub_lab::{Broker, Config, StartError};

fn config(dir: &Path) -> Config {
    Config {
        data_dir: Some(dir.to_path_buf()),
        sys_interval: std::time::Duration::ZERO,
        ..Config::default()
    }
}

/// Publishes with confirms: returns once each `OK PUBLISH` came.
fn publish_confirmed(raw: &mut Raw, topic: &str, messages: &[&str]) {
    raw.send("VERBOSE on\n");
    raw.expect("OK VERBOSE on");
    for text in messages {
        raw.send(&format!("PUBLISH {topic} {text} pub1\n"));
        let line = raw.line();
        assert!(line.starts_with(&format!("OK PUBLISH {topic} ")), "{line}");
    }
}

/// Every record of a segment: (offset, payload as text).
fn records(path: &Path) -> Vec<(usize, String)> {
    let bytes = fs::read(path).unwrap();
    let mut offset = 0;
    let mut all = Vec::new();
    while offset < bytes.len() {
        let Frame::Whole { payload, size } = read_frame(&bytes[offset..]) else {
            panic!("no whole record at {offset} of {}", path.display());
        };
        all.push((
            offset,
            String::from_utf8_lossy(payload).trim_end().to_string(),
        ));
        offset += size;
    }
    all
}

/// A log with one subscription and three confirmed messages, the first acknowledged;
/// the broker then stopped.
fn make_log(dir: &Path) -> Vec<String> {
    let broker = start_broker_with(config(dir));
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE orders shop1\n");
    holder.expect("OK DURABLE orders 0");
    let mut publisher = Raw::connect(broker.addr());
    publish_confirmed(&mut publisher, "orders", &["one", "two", "three"]);
    let lines: Vec<String> = (0..3).map(|_| holder.line()).collect();
    let seq = lines[0].split(' ').nth(1).unwrap().to_string();
    holder.send(&format!("ACK {seq}\n"));
    holder.sync();
    broker.stop();
    lines
}

/// Subscriptions and their unacknowledged messages come back after a restart, with the
/// same seqs; acknowledged ones do not; new messages get higher seqs.
#[test]
fn durable_subscriptions_and_their_messages_survive_a_restart() {
    let dir = common::fresh_dir("restart");
    let before = make_log(&dir);
    let broker = start_broker_with(config(&dir));
    assert_eq!(stat(&broker, "durable_subscriptions"), 1);
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE orders shop1\n");
    holder.expect("OK DURABLE orders 2");
    assert_eq!(holder.line(), before[1]);
    assert_eq!(holder.line(), before[2]);
    let mut publisher = Raw::connect(broker.addr());
    publish_confirmed(&mut publisher, "orders", &["four"]);
    let last_seq = |line: &str| line.split(' ').nth(1).unwrap().parse::<u64>().unwrap();
    let four = holder.line();
    assert!(
        last_seq(&four) > last_seq(&before[2]),
        "{four} after {}",
        before[2]
    );
    broker.stop();
    fs::remove_dir_all(&dir).unwrap();
}

/// The confirm comes after the message is in the log file, under every policy.
#[test]
fn a_confirm_comes_only_once_the_message_is_in_the_log() {
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ] {
        let dir = common::fresh_dir(&format!("confirm-{policy}"));
        let broker = start_broker_with(Config {
            fsync: policy,
            ..config(&dir)
        });
        let mut holder = Raw::connect(broker.addr());
        holder.send("DURABLE orders/# shop1\n");
        holder.expect("OK DURABLE orders/# 0");
        let mut publisher = Raw::connect(broker.addr());
        publish_confirmed(&mut publisher, "orders/1", &["confirmed  text"]);
        let text: String = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| {
                String::from_utf8_lossy(&fs::read(entry.unwrap().path()).unwrap()).into_owned()
            })
            .collect();
        assert!(
            text.contains("shop1 orders/# orders/1 pub1 ") && text.contains(" confirmed  text\n"),
            "--fsync {policy}: the confirmed message is not in the log yet: {text:?}"
        );
        broker.stop();
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// A segment is deleted once every message in it is acknowledged.
#[test]
fn segments_whose_messages_are_all_acknowledged_are_deleted() {
    let dir = common::fresh_dir("segments");
    let broker = start_broker_with(Config {
        segment_bytes: 4096,
        ..config(&dir)
    });
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE t me\n");
    holder.expect("OK DURABLE t 0");
    let mut publisher = Raw::connect(broker.addr());
    let text = "x".repeat(100);
    let messages: Vec<&str> = (0..200).map(|_| text.as_str()).collect();
    publish_confirmed(&mut publisher, "t", &messages);
    let segments = || {
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert!(
        segments().len() >= 5,
        "20 KiB in 4 KiB segments: {:?}",
        segments()
    );
    for _ in 0..200 {
        let line = holder.line();
        let seq = line.split(' ').nth(1).unwrap();
        holder.send(&format!("ACK {seq}\n"));
    }
    holder.sync();
    let left = segments();
    assert!(
        left.len() <= 1,
        "every message is acknowledged, so only the newest segment is needed: {left:?}"
    );
    assert!(left[0].as_str() >= "00000005.log", "{left:?}");
    broker.stop();
    // And the log still replays to the same state: one subscription, nothing held.
    let durables = Durables::open(&config(&dir)).unwrap();
    assert_eq!(durables.all().len(), 1);
    assert_eq!(durables.all()[0].held(), 0);
    fs::remove_dir_all(&dir).unwrap();
}

/// A log cut anywhere inside its last record (a crash in the middle of a write) opens:
/// the torn record is cut off and not delivered, everything before it is kept.
#[test]
fn a_log_cut_at_every_byte_of_its_last_record_opens_without_that_record() {
    let dir = common::fresh_dir("torn-source");
    make_log(&dir);
    let segment = segment_path(&dir, 1);
    let bytes = fs::read(&segment).unwrap();
    let all = records(&segment);
    let (last_offset, last) = all.last().unwrap().clone();
    assert!(last.starts_with("ACK "), "{last}");
    // The last record is the ACK of message one; cutting it brings message one back.
    let work = common::fresh_dir("torn");
    for cut in last_offset..bytes.len() {
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).unwrap();
        fs::write(segment_path(&work, 1), &bytes[..cut]).unwrap();
        let durables = Durables::open(&config(&work))
            .unwrap_or_else(|error| panic!("cut at {cut} of {}: {error}", bytes.len()));
        let held: Vec<usize> = durables.all().iter().map(|d| d.held()).collect();
        assert_eq!(held, [3], "cut at {cut}: the torn ACK must not count");
        assert!(
            !segment_path(&work, 1).exists(),
            "cut at {cut}: the checkpoint replaces the old segment"
        );
    }
    // The whole log: message one is acknowledged.
    let durables = Durables::open(&config(&dir)).unwrap();
    assert_eq!(durables.all()[0].held(), 2);
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_dir_all(&work).unwrap();
}

/// A flipped byte in a record in the middle stops the start with an error naming the
/// file and the record's offset.
#[test]
fn a_flipped_byte_in_the_middle_of_the_log_stops_the_start_and_names_file_and_offset() {
    let dir = common::fresh_dir("flipped");
    make_log(&dir);
    let segment = segment_path(&dir, 1);
    let all = records(&segment);
    let (offset, payload) = all
        .iter()
        .find(|(_, payload)| payload.contains(" two"))
        .unwrap()
        .clone();
    assert!(payload.starts_with("MESSAGE "), "{payload}");
    let seq = seq_of(&payload);
    let mut bytes = fs::read(&segment).unwrap();
    bytes[offset + 8 + payload.len() - 2] ^= 0x01; // "two" -> "twn"
    fs::write(&segment, &bytes).unwrap();
    let error = Broker::bind("127.0.0.1:0", config(&dir)).unwrap_err();
    assert!(matches!(error, StartError::Storage(_)), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot start from the log: {} at offset {offset}: CRC-32 does not match: the log \
             is damaged before its end (what looks like MESSAGE seq {seq}; around the damage: \
             seq {before} before, seq {after} after); start the broker with --salvage to keep \
             every intact record and move the damaged bytes aside, or restore the file from a \
             copy",
            segment.display(),
            before = seq - 1,
            after = seq + 1,
        )
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// Under `--fsync interval`, the log reaches the disk within about a second, by the timer
/// thread, with no confirm waiting for it; under `always`, each confirm's commit flushes.
#[test]
fn interval_flushes_the_log_about_once_a_second_and_always_at_every_confirm() {
    for (policy, name) in [
        (FsyncPolicy::Interval, "interval"),
        (FsyncPolicy::Always, "always"),
    ] {
        let dir = common::fresh_dir(&format!("flushes-{name}"));
        let broker = start_broker_with(Config {
            fsync: policy,
            ..config(&dir)
        });
        let mut holder = Raw::connect(broker.addr());
        holder.send("DURABLE t me\n");
        holder.expect("OK DURABLE t 0");
        let before = stat(&broker, "durable_fsyncs");
        let mut publisher = Raw::connect(broker.addr());
        publish_confirmed(&mut publisher, "t", &["one"]);
        if policy == FsyncPolicy::Always {
            assert!(
                stat(&broker, "durable_fsyncs") > before,
                "--fsync always: the confirm came before any fsync"
            );
        } else {
            common::wait_until("the timer thread flushes the log", || {
                stat(&broker, "durable_fsyncs") > before
            });
        }
        broker.stop();
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// The seq of a `MESSAGE` line.
fn seq_of(line: &str) -> u64 {
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Stops the broker and starts another on the same log: a plain restart.
fn restart(broker: pubsub_lab::BrokerHandle, dir: &Path) -> pubsub_lab::BrokerHandle {
    broker.stop();
    start_broker_with(config(dir))
}

/// The first sequence: an acknowledged message stays acknowledged however many
/// times the broker restarts, even once the segment that holds the `ACK` holds nothing
/// else.
#[test]
fn an_acknowledged_message_does_not_come_back_after_plain_restarts() {
    let dir = common::fresh_dir("resurrect-ack");
    let broker = start_broker_with(config(&dir));
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE t sub\n");
    holder.expect("OK DURABLE t 0");
    publish_confirmed(&mut Raw::connect(broker.addr()), "t", &["m1", "m2"]);
    let broker = restart(broker, &dir);
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE t sub\n");
    holder.expect("OK DURABLE t 2");
    let m1 = holder.line();
    let m2 = holder.line();
    assert!(m1.contains(" m1 ") && m2.contains(" m2 "), "{m1} / {m2}");
    holder.send(&format!("ACK {}\n", seq_of(&m1)));
    holder.sync();
    let broker = restart(broker, &dir);
    publish_confirmed(&mut Raw::connect(broker.addr()), "t", &["m3"]);
    let broker = restart(broker, &dir);
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE t sub\n");
    holder.expect("OK DURABLE t 2");
    assert_eq!(holder.line(), m2);
    assert!(holder.line().contains(" m3 "));
    broker.stop();
    fs::remove_dir_all(&dir).unwrap();
}

/// The second sequence: a cancelled subscription stays cancelled however many
/// times the broker restarts, even while an older segment still holds its `DURABLE`
/// record (kept for another subscription's message).
#[test]
fn a_cancelled_subscription_does_not_come_back_after_plain_restarts() {
    let dir = common::fresh_dir("resurrect-cancel");
    let broker = start_broker_with(config(&dir));
    for id in ["keep", "gone"] {
        let mut holder = Raw::connect(broker.addr());
        holder.send(&format!("DURABLE t {id}\n"));
        holder.expect("OK DURABLE t 0");
    }
    publish_confirmed(&mut Raw::connect(broker.addr()), "t", &["m1", "m2"]);
    let broker = restart(broker, &dir);
    let mut canceller = Raw::connect(broker.addr());
    canceller.send("CANCEL t gone\n");
    canceller.expect("OK CANCEL t 2");
    let broker = restart(broker, &dir);
    publish_confirmed(&mut Raw::connect(broker.addr()), "t", &["m3"]);
    let broker = restart(broker, &dir);
    assert_eq!(stat(&broker, "durable_subscriptions"), 1);
    assert_eq!(stat(&broker, "durable_held"), 3, "m1, m2 and m3 for keep");
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE t gone\n");
    holder.expect("OK DURABLE t 0");
    broker.stop();
    fs::remove_dir_all(&dir).unwrap();
}

/// A log of `count` confirmed messages held for one subscription, in segment 1; the broker
/// then stopped. Returns the `MESSAGE` lines.
fn make_long_log(dir: &Path, count: usize) -> Vec<String> {
    let broker = start_broker_with(config(dir));
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE t sub\n");
    holder.expect("OK DURABLE t 0");
    let texts: Vec<String> = (0..count).map(|i| format!("message-{i}")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    publish_confirmed(&mut Raw::connect(broker.addr()), "t", &texts);
    let lines = (0..count).map(|_| holder.line()).collect();
    broker.stop();
    lines
}

/// The `MESSAGE` lines a broker on `dir` holds for `DURABLE t sub`.
fn held_lines(broker: &pubsub_lab::BrokerHandle) -> Vec<String> {
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE t sub\n");
    let ok = holder.line();
    let count: usize = ok.strip_prefix("OK DURABLE t ").unwrap().parse().unwrap();
    (0..count).map(|_| holder.line()).collect()
}

/// One damaged length byte in the middle of the newest segment: the record's length now
/// runs past the end of the file, as a torn end's would, but whole records follow it. That
/// is damage, not a torn end: the broker refuses to start rather than cut the 20 records
/// after it, and `--salvage` loses that one record only, with its bytes kept aside.
#[test]
fn a_damaged_length_in_the_middle_of_the_newest_segment_is_damage_not_a_torn_end() {
    let dir = common::fresh_dir("damaged-length");
    let lines = make_long_log(&dir, 40);
    let segment = segment_path(&dir, 1);
    let (offset, payload) = records(&segment)
        .into_iter()
        .find(|(_, payload)| payload.ends_with(" message-19"))
        .unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    bytes[offset + 2] ^= 0x01; // the length grows by 64 KiB, past the end of the file
    fs::write(&segment, &bytes).unwrap();
    let error = Broker::bind("127.0.0.1:0", config(&dir)).unwrap_err();
    let said = error.to_string();
    assert!(
        said.contains(&format!("at offset {offset}: the record runs past the end of the file, yet whole records follow it"))
            && said.contains(&format!("MESSAGE seq {}", seq_of(&payload)))
            && said.contains("--salvage"),
        "{said}"
    );
    assert_eq!(fs::read(&segment).unwrap(), bytes, "nothing was cut");

    let broker = start_broker_with(Config {
        salvage: true,
        ..config(&dir)
    });
    let mut expected = lines.clone();
    expected.remove(19);
    assert_eq!(held_lines(&broker), expected, "every intact record is kept");
    broker.stop();
    let moved = dir
        .join("quarantine")
        .join(format!("00000001.log.at-{offset}"));
    assert_eq!(
        fs::read(&moved).unwrap(),
        &bytes[offset..offset + 8 + payload.len() + 1],
        "the damaged record's bytes, and only them, are kept aside"
    );
    assert!(
        !segment.exists(),
        "the checkpoint replaced the damaged segment"
    );
    // The salvaged log is whole again: it starts without --salvage.
    let broker = start_broker_with(config(&dir));
    assert_eq!(held_lines(&broker), expected);
    broker.stop();
    fs::remove_dir_all(&dir).unwrap();
}

/// What the salvage reports for a flipped byte: where, how many bytes, what they seem to
/// hold, the seqs around them, and where they went.
#[test]
fn salvage_says_what_it_moved_aside() {
    let dir = common::fresh_dir("salvage-report");
    make_long_log(&dir, 5);
    let segment = segment_path(&dir, 1);
    let (offset, payload) = records(&segment)
        .into_iter()
        .find(|(_, payload)| payload.ends_with(" message-2"))
        .unwrap();
    let seq = seq_of(&payload);
    let mut bytes = fs::read(&segment).unwrap();
    bytes[offset + 8 + payload.len() - 1] ^= 0x01; // message-2 -> message-3
    fs::write(&segment, &bytes).unwrap();
    let replayed = pubsub_lab::durable::log::replay(&dir, true, |_, _| {}).unwrap();
    let [lost] = replayed.quarantined.as_slice() else {
        panic!("{replayed:?}")
    };
    assert_eq!(lost.offset, offset as u64);
    assert_eq!(lost.bytes, 8 + payload.len() as u64 + 1);
    assert_eq!(
        lost.what,
        format!(
            "CRC-32 does not match; they begin with what looks like MESSAGE seq {seq}; around \
             the damage: seq {} before, seq {} after",
            seq - 1,
            seq + 1
        )
    );
    assert!(lost.moved_to.as_ref().unwrap().exists());
    fs::remove_dir_all(&dir).unwrap();
}

/// A file named like a segment that is not one, and a file named otherwise, are left
/// alone: the log starts without them, and neither is changed.
#[test]
fn files_that_are_not_segments_are_ignored_and_never_cut() {
    let dir = common::fresh_dir("strays");
    let before = make_long_log(&dir, 3);
    // Random-looking bytes, numbered above every segment.
    let stray: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(dir.join("00000099.log"), &stray).unwrap();
    fs::write(dir.join("notes.txt"), "the operator's notes").unwrap();
    let broker = start_broker_with(config(&dir));
    assert_eq!(held_lines(&broker), before);
    broker.stop();
    assert_eq!(fs::read(dir.join("00000099.log")).unwrap(), stray);
    assert_eq!(
        fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "the operator's notes"
    );
    let replayed = pubsub_lab::durable::log::replay(&dir, false, |_, _| {}).unwrap();
    assert_eq!(
        replayed.segments,
        [100],
        "new segments go above the stray one"
    );
    assert_eq!(replayed.ignored.len(), 2, "{:?}", replayed.ignored);
    fs::remove_dir_all(&dir).unwrap();
}

/// Past segment 99999999 the names grow a digit, and replay reads them in order.
#[test]
fn segment_numbers_go_on_past_eight_digits() {
    let dir = common::fresh_dir("overflow");
    let before = make_long_log(&dir, 20);
    fs::rename(segment_path(&dir, 1), dir.join("99999999.log")).unwrap();
    let broker = start_broker_with(config(&dir));
    let texts: Vec<String> = (20..40).map(|i| format!("message-{i}")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    publish_confirmed(&mut Raw::connect(broker.addr()), "t", &texts);
    broker.stop();
    assert!(dir.join("100000000.log").exists());
    let broker = start_broker_with(config(&dir));
    let held = held_lines(&broker);
    assert_eq!(held.len(), 40, "{held:?}");
    assert_eq!(held[..20], before[..]);
    broker.stop();
    assert!(dir.join("100000001.log").exists());
    fs::remove_dir_all(&dir).unwrap();
}

/// The data directory deleted, or replaced by another, while the broker runs: the broker
/// notices at the next write and confirms nothing more, rather than confirm into files no
/// start will ever read.
#[test]
fn a_data_directory_deleted_or_replaced_while_the_broker_runs_stops_the_confirms() {
    for replaced in [false, true] {
        let dir = common::fresh_dir(&format!("deleted-{replaced}"));
        let broker = start_broker_with(config(&dir));
        let mut holder = Raw::connect(broker.addr());
        holder.send("DURABLE t sub\n");
        holder.expect("OK DURABLE t 0");
        let mut publisher = Raw::connect(broker.addr());
        publish_confirmed(&mut publisher, "t", &["kept"]);
        fs::remove_dir_all(&dir).unwrap();
        if replaced {
            fs::create_dir_all(&dir).unwrap();
        }
        for text in ["lost-1", "lost-2"] {
            publisher.send(&format!("PUBLISH t {text} pub1\n"));
            let line = publisher.line();
            assert!(
                line.starts_with(
                    "ERROR message not stored, not confirmed (the log's data \
                                  directory "
                ) && line.contains("was deleted, moved or replaced while the broker ran"),
                "replaced: {replaced}: {line}"
            );
        }
        broker.stop();
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Confirms wait for the disk, and every reply after them waits behind them: a `PONG`, and
/// an `OK DURABLE`, which the subscription sends itself, never overtake a confirm.
#[test]
fn replies_after_confirms_that_wait_for_the_disk_keep_their_order() {
    let dir = common::fresh_dir("order");
    // Twenty durable subscriptions of one id: more than --max-durable-per-client allows.
    let broker = start_broker_with(Config {
        max_durable_per_client: 20,
        ..config(&dir)
    });
    let mut holder = Raw::connect(broker.addr());
    holder.send("DURABLE t sub\n");
    holder.expect("OK DURABLE t 0");
    let mut client = Raw::connect(broker.addr());
    client.send("VERBOSE on\n");
    client.expect("OK VERBOSE on");
    for round in 0..20 {
        // The `PING` in a write of its own, so that it usually comes in a read of its own,
        // while the confirms before it still wait for the disk.
        client.send(&format!("PUBLISH t a{round} p\nPUBLISH t b{round} p\n"));
        client.send(&format!("PING x{round}\n"));
        client.send(&format!("DURABLE u{round} me\n"));
        client.expect("OK PUBLISH t 1");
        client.expect("OK PUBLISH t 1");
        client.expect(&format!("PONG x{round}"));
        client.expect(&format!("OK DURABLE u{round} 0"));
    }
    broker.stop();
    fs::remove_dir_all(&dir).unwrap();
}
