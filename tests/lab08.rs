//! Lab 08 checks: reading a record of the log. `read_frame` (the lab 08 region in
//! src/durable/log.rs) gets the bytes at some offset of a segment file and must say
//! whether they begin with a whole record (its length and CRC-32 check out), a record cut
//! short by a crash (*torn*: the broker cuts it off and starts), or damage (the broker
//! refuses to start). These checks give it records whole, cut at every byte and with
//! flipped bytes, then start real brokers from logs a crash and a disk would leave.

mod common;
mod labcheck;

use std::fs;
use std::path::Path;

use pubsub_lab::durable::crc32::crc32;
use pubsub_lab::durable::log::{
    read_frame, segment_path, Frame, Record, HEADER_BYTES, MAX_PAYLOAD,
};
use pubsub_lab::durable::Durables;
use pubsub_lab::{Broker, Config};

/// Where the work of this lab is.
const REGION: &str = "read_frame in src/durable/log.rs";

fn framed(records: &[Record<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        record.write_framed(&mut out);
    }
    out
}

fn sample() -> Vec<Record<'static>> {
    vec![
        Record::Start { next_seq: 1 },
        Record::Durable {
            subscriber_id: "shop1",
            filter: "orders",
        },
        Record::Message {
            seq: 1,
            subscriber_id: "shop1",
            filter: "orders",
            topic: "orders",
            publisher_id: "pub1",
            timestamp: "2025-03-14 10:30:00",
            message: "2 pizzas",
        },
        Record::Ack { seq: 1 },
    ]
}

fn config(dir: &Path) -> Config {
    Config {
        data_dir: Some(dir.to_path_buf()),
        ..Config::default()
    }
}

/// Whole records are read back one after another: payload, and where the next begins.
#[test]
fn whole_records_are_read_back_one_after_another() {
    let records = sample();
    let bytes = framed(&records);
    let mut offset = 0;
    for record in &records {
        let mut payload = Vec::new();
        record.write_framed(&mut payload);
        let expected = &payload[HEADER_BYTES..];
        match read_frame(&bytes[offset..]) {
            Frame::Whole { payload, size } => {
                assert_eq!(
                    payload, expected,
                    "at offset {offset}, {REGION} returned the wrong payload: it is the \
                     `length` bytes right after the 8-byte header (length, then CRC)"
                );
                assert_eq!(
                    size,
                    HEADER_BYTES + expected.len(),
                    "at offset {offset}, `size` must be the header's 8 bytes plus the \
                     payload's length: the next record starts there. Did you forget the header?"
                );
                offset += size;
            }
            other => panic!(
                "at offset {offset} there is a whole record, but {REGION} returned {other:?}: \
                 is the CRC-32 computed over the payload alone (not the header)? Is the length \
                 read little-endian?"
            ),
        }
    }
}

/// A record cut at any byte (a crash in the middle of a write) is torn, never whole.
#[test]
fn a_record_cut_at_any_byte_is_torn() {
    let bytes = framed(&sample()[2..3]);
    for end in 1..bytes.len() {
        let frame = std::panic::catch_unwind(|| read_frame(&bytes[..end]));
        match frame {
            Ok(Frame::Torn) => {}
            Ok(other) => panic!(
                "the first {end} of the record's {} bytes must be Frame::Torn (a write cut \
                 short by a crash, which the broker cuts off), but {REGION} returned {other:?}: \
                 accepting a torn record would deliver half a message; calling it damage \
                 would stop the broker from starting after every crash",
                bytes.len()
            ),
            Err(_) => panic!(
                "{REGION} panicked on the first {end} of a record's {} bytes: check that there \
                 are 8 bytes of header, and `length` bytes after it, before slicing",
                bytes.len()
            ),
        }
    }
}

/// A flipped byte anywhere in the payload, or in the stored CRC, is damage, with the
/// record's size, header included, as its length field says.
#[test]
fn a_flipped_byte_is_damage() {
    let bytes = framed(&sample()[2..3]);
    for at in 4..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x04;
        let frame = read_frame(&damaged);
        assert!(
            matches!(frame, Frame::Damaged { .. }),
            "with byte {at} of a record flipped, {REGION} returned {frame:?} instead of \
             Frame::Damaged: compare crc32(payload) with the CRC stored in bytes 4..8, and \
             accept nothing that does not match"
        );
        let Frame::Damaged { size, .. } = frame else {
            unreachable!("just checked")
        };
        assert_eq!(
            size,
            Some(bytes.len()),
            "with byte {at} of a {}-byte record flipped, {REGION} returned Damaged with \
             size {size:?}: for a CRC that does not match, the doc of Frame::Damaged asks \
             for the size its length field says, header included (the broker uses it to \
             tell a damaged last record from damage in the middle)",
            bytes.len()
        );
    }
}

/// A length of zero is damage, not an empty record: every record has a payload, and
/// garbage that starts with four zero bytes (and the CRC of nothing) must not be read as
/// one.
#[test]
fn a_length_of_zero_is_damage_not_an_empty_record() {
    let mut bytes = 0u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32(b"").to_le_bytes());
    bytes.extend_from_slice(b"ACK 1\n");
    let frame = read_frame(&bytes);
    assert!(
        matches!(frame, Frame::Damaged { size: None, .. }),
        "a length field of 0 (with the CRC-32 of no bytes after it) is impossible, but \
         {REGION} returned {frame:?}: the exercise says a length of 0 is Damaged, with no \
         size (the doc of Frame::Damaged: `None` for an impossible length). Check \
         `length == 0` before reading a payload"
    );
}

/// A length longer than any record can be is damage, not a torn record: it is garbage,
/// and taking it for the end of the log would silently drop what follows. Exactly
/// `MAX_PAYLOAD` is possible.
#[test]
fn a_length_over_max_payload_is_damage_not_a_torn_record() {
    for length in [MAX_PAYLOAD + 1, u32::MAX as usize] {
        let mut bytes = (length as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&crc32(b"").to_le_bytes());
        bytes.extend_from_slice(b"ACK 1\n");
        let frame = read_frame(&bytes);
        assert!(
            matches!(frame, Frame::Damaged { size: None, .. }),
            "a length field of {length} is more than MAX_PAYLOAD ({MAX_PAYLOAD}), so \
             impossible, but {REGION} returned {frame:?}: it must be Damaged with no size. \
             Check the length against MAX_PAYLOAD before comparing it with what is left"
        );
    }
    let mut bytes = (MAX_PAYLOAD as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32(b"").to_le_bytes());
    bytes.extend_from_slice(b"ACK 1\n");
    let frame = read_frame(&bytes);
    assert_eq!(
        frame,
        Frame::Torn,
        "a length field of exactly MAX_PAYLOAD ({MAX_PAYLOAD}) is possible (only more is \
         not), and the bytes given stop long before it, so {REGION} must say Torn"
    );
}

/// A broker starts from a log whose last record is torn, without it.
#[test]
fn a_broker_starts_from_a_log_with_a_torn_tail_and_does_not_deliver_it() {
    let dir = common::fresh_dir("torn");
    let mut bytes = framed(&sample()[..3]);
    bytes.truncate(bytes.len() - 5);
    fs::write(segment_path(&dir, 1), &bytes).unwrap();
    let durables = Durables::open(&config(&dir)).unwrap_or_else(|error| {
        panic!(
            "a log whose last record was cut short by a crash must open, with the torn record \
             cut off, but it failed: {error}. {REGION} must return Frame::Torn for it"
        )
    });
    let held: Vec<usize> = durables.all().iter().map(|d| d.held()).collect();
    assert_eq!(
        held,
        [0],
        "the only message's record was torn: it was never confirmed, and must not be \
         delivered. Does {REGION} accept a record shorter than its length?"
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// A broker refuses to start from a log damaged in the middle, naming file and offset.
#[test]
fn a_broker_refuses_a_log_damaged_in_the_middle() {
    let dir = common::fresh_dir("damaged");
    let records = sample();
    let mut bytes = framed(&records);
    let offset = framed(&records[..2]).len();
    bytes[offset + HEADER_BYTES + 9] ^= 0x01; // inside the MESSAGE record's payload
    fs::write(segment_path(&dir, 1), &bytes).unwrap();
    match Broker::bind("127.0.0.1:0", config(&dir)) {
        Ok(_) => panic!(
            "the MESSAGE record in the middle of the log has a flipped byte, but the broker \
             started: {REGION} must return Frame::Damaged when the CRC-32 does not match"
        ),
        Err(error) => {
            let said = error.to_string();
            assert!(
                said.contains(&format!("at offset {offset}")) && said.contains("CRC-32"),
                "the broker refused to start, but said {said:?}: it should name the record's \
                 offset ({offset}) and the CRC-32"
            );
        }
    }
    fs::remove_dir_all(&dir).unwrap();
}
