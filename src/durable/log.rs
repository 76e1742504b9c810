//! The log on disk: segment files of records, each framed with its length and a CRC-32.
//!
//! Everything the broker must remember about durable subscriptions is *appended* here, never
//! changed in place: a subscription started, a message queued for it, a message
//! acknowledged, a subscription cancelled. To know the state after a restart, the broker
//! reads every record from the oldest segment to the newest and applies them in order
//! (*replay*). This is a write-ahead log, as in SQLite's WAL, Redis's AOF and NATS
//! JetStream's file store: appending is the cheapest write a disk does, and a crash can
//! only ever damage the end of the newest file.
//!
//! # One record
//!
//! ```text
//!   ┌────────────┬────────────┬──────────────────────────────────────────────┐
//!   │ length: u32│ crc32: u32 │ payload: `length` bytes of text, ending in \n │
//!   │ little end.│ of payload │ MESSAGE 17 sub1 orders/# orders/1 pub1 ...    │
//!   └────────────┴────────────┴──────────────────────────────────────────────┘
//! ```
//!
//! The payload is one line of text, so `strings 00000001.log` shows the log to a person.
//! Its first word says what happened ([`Record`]). The length says where the next record
//! starts; the CRC says whether these bytes are the ones that were written.
//!
//! # What a crash leaves, and what the broker does about it
//!
//! A process killed in the middle of a `write`, or a machine that loses power before the
//! disk has all of a write, leaves a *torn* last record: its header without all of its
//! payload, or a payload whose CRC does not match because part of it never reached the
//! disk. Replay cuts it off with a warning and starts normally: see [`replay`]. Was it
//! confirmed? After a `kill -9`, never: a confirm comes after the write. After a power cut
//! it depends on the policy the log was written with: under `--fsync always` a confirm
//! waits for the flush, so no; under `interval` or `never` it may have been, which is
//! what those policies trade for speed. The broker cannot know which of these happened,
//! so its warning says what was cut, and does not claim it was never confirmed.
//!
//! Damage anywhere *else* is a different matter: a record in the middle of the log that
//! fails its CRC means the disk or someone's editor changed bytes that had been written
//! whole. Skipping it could silently lose or reorder messages, so the broker refuses to
//! start and names the file and the offset ([`LogError`]); the operator decides.
//!
//! A damaged *length* in the newest segment that points past the end of the file looks
//! like a torn tail at first sight. What tells them apart is what follows: after a torn
//! tail nothing can be read, while after a damaged length the records that follow still
//! parse and check out. So the broker looks for a whole record after any record it cannot
//! read, and only an end that nothing readable follows is cut as torn.
//!
//! `broker --salvage` (as `redis-check-aof --fix` is for Redis) starts from a damaged log
//! all the same: every intact record is replayed, and the damaged bytes are copied to
//! `quarantine/` in the data directory and reported, so that an operator can see what was
//! lost (see [`replay`]).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::crc32::crc32;

/// Bytes before each payload: its length and its CRC, four bytes each.
pub const HEADER_BYTES: usize = 8;

/// The longest payload a record may have: a message of the longest line the broker
/// accepts (16 MiB), and room for the names. A length field above it is damage, not a
/// record.
pub const MAX_PAYLOAD: usize = 17 * 1024 * 1024;

/// The length of a timestamp as `DELIVER` writes it: `2025-03-14 10:30:00`.
const TIMESTAMP_CHARS: usize = 19;

/// What a segment file's name ends with: `00000001.log`.
pub const SEGMENT_SUFFIX: &str = ".log";

/// One thing that happened, as the log remembers it. The text of each is its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// The first record of every segment: the next `seq` to give, so that numbers are
    /// never given twice even after the segments that held them are deleted.
    ///
    /// ```text
    /// START 1042
    /// ```
    Start {
        /// The next seq.
        next_seq: u64,
    },
    /// A durable subscription exists (started, or carried over into a new segment).
    ///
    /// ```text
    /// DURABLE sub1 orders/#
    /// ```
    Durable {
        /// Whose.
        subscriber_id: &'a str,
        /// To what.
        filter: &'a str,
    },
    /// A message queued for one durable subscription, with the seq it was given.
    ///
    /// ```text
    /// MESSAGE 17 sub1 orders/# orders/1 pub1 2025-03-14 10:30:00 two  words
    /// ```
    Message {
        /// Its number, unique in the broker.
        seq: u64,
        /// The subscription's id.
        subscriber_id: &'a str,
        /// The subscription's filter.
        filter: &'a str,
        /// The topic it was published to.
        topic: &'a str,
        /// Who published it.
        publisher_id: &'a str,
        /// When the broker handled the publish, as `DELIVER` writes it.
        timestamp: &'a str,
        /// The text, last so that its spaces need no quoting.
        message: &'a str,
    },
    /// A message that is never to be delivered again: acknowledged, or dropped from a
    /// subscription that held more than `--max-queued`.
    ///
    /// ```text
    /// ACK 17
    /// ```
    Ack {
        /// The seq of the message.
        seq: u64,
    },
    /// A durable subscription ended, with everything it held.
    ///
    /// ```text
    /// CANCEL sub1 orders/#
    /// ```
    Cancel {
        /// Whose.
        subscriber_id: &'a str,
        /// To what.
        filter: &'a str,
    },
}

impl<'a> Record<'a> {
    /// Appends the record, framed: length, CRC, payload.
    ///
    /// ```
    /// use pubsub_lab::durable::log::Record;
    /// let mut out = Vec::new();
    /// Record::Ack { seq: 17 }.write_framed(&mut out);
    /// assert_eq!(&out[..4], &7u32.to_le_bytes()); // "ACK 17\n" is 7 bytes
    /// assert_eq!(&out[8..], b"ACK 17\n");
    /// ```
    pub fn write_framed(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_BYTES]);
        // Writing into a Vec cannot fail.
        let _ = match *self {
            Record::Start { next_seq } => writeln!(out, "START {next_seq}"),
            Record::Durable {
                subscriber_id,
                filter,
            } => writeln!(out, "DURABLE {subscriber_id} {filter}"),
            Record::Message {
                seq,
                subscriber_id,
                filter,
                topic,
                publisher_id,
                timestamp,
                message,
            } => writeln!(
                out,
                "MESSAGE {seq} {subscriber_id} {filter} {topic} {publisher_id} {timestamp} {message}"
            ),
            Record::Ack { seq } => writeln!(out, "ACK {seq}"),
            Record::Cancel {
                subscriber_id,
                filter,
            } => writeln!(out, "CANCEL {subscriber_id} {filter}"),
        };
        let payload = &out[start + HEADER_BYTES..];
        let length = payload.len() as u32;
        let crc = crc32(payload);
        out[start..start + 4].copy_from_slice(&length.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// The seq a `MESSAGE` or an `ACK` record is about.
    pub fn seq(&self) -> Option<u64> {
        match *self {
            Record::Message { seq, .. } | Record::Ack { seq } => Some(seq),
            _ => None,
        }
    }

    /// Frames a payload already written (a record read back, which a checkpoint writes
    /// again as it is): length, CRC-32, payload, appended to `out`.
    pub fn write_payload_framed(payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32(payload).to_le_bytes());
        out.extend_from_slice(payload);
    }

    /// Reads a payload back; `None` if it is not a record this version writes.
    pub fn parse(payload: &'a [u8]) -> Option<Record<'a>> {
        let text = std::str::from_utf8(payload).ok()?.strip_suffix('\n')?;
        let (word, rest) = text.split_once(' ')?;
        let number = |text: &str| text.parse::<u64>().ok();
        let two = |rest: &'a str| {
            let (a, b) = rest.split_once(' ')?;
            (!a.is_empty() && !b.is_empty() && !b.contains(' ')).then_some((a, b))
        };
        match word {
            "START" => Some(Record::Start {
                next_seq: number(rest)?,
            }),
            "ACK" => Some(Record::Ack { seq: number(rest)? }),
            "DURABLE" => {
                let (subscriber_id, filter) = two(rest)?;
                Some(Record::Durable {
                    subscriber_id,
                    filter,
                })
            }
            "CANCEL" => {
                let (subscriber_id, filter) = two(rest)?;
                Some(Record::Cancel {
                    subscriber_id,
                    filter,
                })
            }
            "MESSAGE" => {
                // seq, id, filter, topic, publisher, then the timestamp (always 19
                // characters: `2025-03-14 10:30:00`) and the message after a space.
                let mut parts = rest.splitn(6, ' ');
                let seq = number(parts.next()?)?;
                let subscriber_id = parts.next()?;
                let filter = parts.next()?;
                let topic = parts.next()?;
                let publisher_id = parts.next()?;
                let rest = parts.next()?;
                let timestamp = rest.get(..TIMESTAMP_CHARS)?;
                let message = rest.get(TIMESTAMP_CHARS..)?.strip_prefix(' ')?;
                if message.is_empty() {
                    return None;
                }
                Some(Record::Message {
                    seq,
                    subscriber_id,
                    filter,
                    topic,
                    publisher_id,
                    timestamp,
                    message,
                })
            }
            _ => None,
        }
    }
}

/// What the bytes at some offset of a segment hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole record whose CRC matches: its payload, and how many bytes it took with its
    /// header (where the next record starts).
    Whole {
        /// The payload.
        payload: &'a [u8],
        /// Header and payload together.
        size: usize,
    },
    /// Fewer bytes than the record needs: the end of a record that was being written.
    Torn,
    /// A record whose length is impossible or whose CRC does not match.
    Damaged {
        /// Why it is not a record, for the error.
        why: &'static str,
        /// For a CRC that does not match: how many bytes the record takes with its header,
        /// as its length field says (they are all in the bytes given, or it would be
        /// torn). `None` for an impossible length (0, or more than [`MAX_PAYLOAD`]): such
        /// a field is garbage, and says nothing about where anything ends.
        size: Option<usize>,
    },
}

/// Reads the record at the start of `bytes` (which must not be empty): checks that the
/// header is whole, that the length is possible and fits, and that the CRC matches.
pub fn read_frame(bytes: &[u8]) -> Frame<'_> {
    // lab:begin 08 reading a record
    if bytes.len() < HEADER_BYTES {
        return Frame::Torn;
    }
    let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let stored_crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if length == 0 || length > MAX_PAYLOAD {
        return Frame::Damaged {
            why: "impossible record length",
            size: None,
        };
    }
    let size = HEADER_BYTES + length;
    if bytes.len() < size {
        return Frame::Torn;
    }
    let payload = &bytes[HEADER_BYTES..size];
    if crc32(payload) != stored_crc {
        return Frame::Damaged {
            why: "CRC-32 does not match",
            size: Some(size),
        };
    }
    Frame::Whole { payload, size }
    // lab:end 08
}

/// A log that cannot be read back: which file, where, and what is wrong.
#[derive(Debug)]
pub struct LogError {
    /// The file, if the error is about one.
    pub path: PathBuf,
    /// The byte offset in it, if the error is about one record.
    pub offset: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(
                f,
                "{} at offset {offset}: {}",
                self.path.display(),
                self.what
            ),
            None => write!(f, "{}: {}", self.path.display(), self.what),
        }
    }
}

impl std::error::Error for LogError {}

fn io_error(path: &Path, error: &io::Error) -> LogError {
    LogError {
        path: path.to_path_buf(),
        offset: None,
        what: error.to_string(),
    }
}

/// The directory, inside the data directory, where `--salvage` moves damaged bytes.
pub const QUARANTINE_DIR: &str = "quarantine";

/// The file of segment `number` in `dir`: at least eight digits, so that `ls` lists the
/// first hundred million in order; past them the name simply grows a digit.
pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:08}{SEGMENT_SUFFIX}"))
}

/// The number of a file named as [`segment_path`] names segments, or `None`. Only the
/// name that number is written as counts: `000000001.log` is not segment 1.
fn segment_number(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let number: u64 = stem.parse().ok()?;
    (format!("{number:08}") == stem).then_some(number)
}

/// What a data directory holds: files named like segments, by number (oldest first), and
/// every other entry, which the log leaves alone.
#[derive(Debug, Default)]
struct Listing {
    named_like_segments: Vec<u64>,
    others: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listing, LogError> {
    let entries = fs::read_dir(dir).map_err(|error| io_error(dir, &error))?;
    let mut listing = Listing::default();
    for entry in entries {
        let entry = entry.map_err(|error| io_error(dir, &error))?;
        let name = entry.file_name();
        match name.to_str().and_then(segment_number) {
            Some(number) => listing.named_like_segments.push(number),
            None if name == QUARANTINE_DIR => {}
            None => listing.others.push(entry.path()),
        }
    }
    listing.named_like_segments.sort_unstable();
    listing.others.sort();
    Ok(listing)
}

/// Whether a file that begins with `head` can be a segment this broker wrote: empty (made,
/// nothing written yet: a crash right after it was created), or beginning with a `START`
/// record, whole or cut short, as every segment does. Anything else that is named like a
/// segment is somebody else's file, and the broker must neither replay nor cut it.
fn begins_like_a_segment(head: &[u8]) -> bool {
    const START: &[u8] = b"START ";
    if head.len() >= 4 {
        // "START 1\n" to "START 18446744073709551615\n".
        let length = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if !(START.len() + 2..=START.len() + 21).contains(&length) {
            return false;
        }
    }
    let payload = head.get(HEADER_BYTES..).unwrap_or(&[]);
    let legible = payload.len().min(START.len());
    payload[..legible] == START[..legible]
}

/// The first bytes of a file: enough to tell a segment from something else.
fn head_of(path: &Path) -> Result<Vec<u8>, LogError> {
    let mut head = Vec::with_capacity(HEADER_BYTES + 8);
    File::open(path)
        .and_then(|file| file.take((HEADER_BYTES + 8) as u64).read_to_end(&mut head))
        .map_err(|error| io_error(path, &error))?;
    Ok(head)
}

/// Bytes of a segment that replay did not apply: where, how many, and what they seem to
/// hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The segment.
    pub path: PathBuf,
    /// Where the bytes start in it.
    pub offset: u64,
    /// How many.
    pub bytes: u64,
    /// What they seem to hold, as far as it is legible: see [`sketch`].
    pub what: String,
    /// Where `--salvage` copied them, if it did.
    pub moved_to: Option<PathBuf>,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {}, {} bytes ({})",
            self.path.display(),
            self.offset,
            self.bytes,
            self.what
        )
    }
}

/// What [`replay`] read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The segments read, oldest first.
    pub segments: Vec<u64>,
    /// The highest number a file named like a segment has, segment or not (0 if none):
    /// the next segment is numbered above it, so it never meets a file already there.
    pub highest: u64,
    /// Whole records read.
    pub records: u64,
    /// Bytes of them.
    pub bytes: u64,
    /// The torn end of the newest segment, cut off and not applied.
    pub cut: Option<Cut>,
    /// Damaged bytes that `--salvage` skipped and copied aside.
    pub quarantined: Vec<Cut>,
    /// Entries of the directory that are not segments, left as they are: why, for each.
    pub ignored: Vec<String>,
}

/// Reads every record of every segment in `dir`, oldest first, handing each to `visit`
/// with its payload.
///
/// *Torn or damaged?* A crash can only leave a torn record at the very end of the newest
/// segment: a record cut short, one whose CRC fails and that ends the file, or one followed
/// only by zero bytes (what a file extended but not yet written holds after a power cut).
/// That end is cut off (the file is truncated before it, so nothing is ever read after
/// garbage) and reported in [`Replayed::cut`]. But a record that cannot be read *and is
/// followed by whole records* is not the end of a crash, even when its length runs past
/// the end of the file: a flipped bit in a length field looks exactly like that. It is
/// damage, as any unreadable record elsewhere is.
///
/// With `salvage` false, damage stops the replay: a [`LogError`] names the file and the
/// record's offset, and nothing after it is applied. With `salvage` true (`broker
/// --salvage`, like `redis-check-aof --fix`), the damaged bytes, up to the next whole
/// record, are copied to a file in [`QUARANTINE_DIR`] and skipped, and replay carries on:
/// every intact record is kept, and [`Replayed::quarantined`] says what was lost.
///
/// A file named like a segment that does not begin as every segment does (with `START`)
/// is not replayed, cut or moved: it is listed in [`Replayed::ignored`], as is any other
/// file in the directory.
///
/// # Errors
/// Damage (without `salvage`), or a file that cannot be read or written.
pub fn replay(
    dir: &Path,
    salvage: bool,
    mut visit: impl FnMut(Record<'_>, &[u8]),
) -> Result<Replayed, LogError> {
    let listing = list(dir)?;
    let mut replayed = Replayed {
        highest: listing.named_like_segments.last().copied().unwrap_or(0),
        ..Replayed::default()
    };
    for path in &listing.others {
        replayed.ignored.push(format!(
            "{}: not a segment of the log (segments are named like 00000001.log): ignored, \
             left as it is",
            path.display()
        ));
    }
    for number in listing.named_like_segments {
        let path = segment_path(dir, number);
        if begins_like_a_segment(&head_of(&path)?) {
            replayed.segments.push(number);
        } else {
            replayed.ignored.push(format!(
                "{}: named like a segment, but it does not begin with a START record as every \
                 segment does: not replayed, left as it is",
                path.display()
            ));
        }
    }
    let newest = replayed.segments.last().copied();
    for number in replayed.segments.clone() {
        let path = segment_path(dir, number);
        let bytes = fs::read(&path).map_err(|error| io_error(&path, &error))?;
        let is_newest = Some(number) == newest;
        let mut offset = 0;
        let mut last_seq = None;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            let frame = read_frame(rest);
            let why = match frame {
                Frame::Whole { payload, size } => match Record::parse(payload) {
                    Some(record) => {
                        last_seq = record.seq().or(last_seq);
                        visit(record, payload);
                        replayed.records += 1;
                        replayed.bytes += size as u64;
                        offset += size;
                        continue;
                    }
                    None => "the CRC matches but the record is not one this broker writes",
                },
                Frame::Torn => "the record runs past the end of the file",
                Frame::Damaged { why, .. } => why,
            };
            let next = next_record(&bytes, offset + 1);
            if is_newest && next.is_none() && is_torn_end(rest, frame) {
                cut_off(&path, offset)?;
                replayed.cut = Some(Cut {
                    path: path.clone(),
                    offset: offset as u64,
                    bytes: rest.len() as u64,
                    what: format!("one record whose write did not finish: {}", sketch(rest)),
                    moved_to: None,
                });
                break;
            }
            let end = next.unwrap_or(bytes.len());
            let around = around(last_seq, bytes.get(end..));
            let what = match (next, frame) {
                (Some(_), Frame::Torn) if is_newest => format!(
                    "{why}, yet whole records follow it: its length is damaged, this is not \
                     the torn end a crash leaves"
                ),
                (None, Frame::Torn) => format!("{why}, in a segment that is not the newest"),
                _ => why.to_string(),
            };
            if !salvage {
                return Err(LogError {
                    path,
                    offset: Some(offset as u64),
                    what: format!(
                        "{what}: the log is damaged before its end ({}{around}); start the \
                         broker with --salvage to keep every intact record and move the \
                         damaged bytes aside, or restore the file from a copy",
                        sketch(rest)
                    ),
                });
            }
            let moved_to = quarantine(dir, &path, offset, &bytes[offset..end])?;
            replayed.quarantined.push(Cut {
                path: path.clone(),
                offset: offset as u64,
                bytes: (end - offset) as u64,
                what: format!("{what}; they begin with {}{around}", sketch(rest)),
                moved_to: Some(moved_to),
            });
            offset = end;
        }
    }
    Ok(replayed)
}

/// Whether an unreadable record that nothing readable follows is what a crash leaves at
/// the end of a file: cut short, or a last record whose CRC fails, or one followed by
/// zeros only.
fn is_torn_end(rest: &[u8], frame: Frame<'_>) -> bool {
    match frame {
        Frame::Torn => true,
        Frame::Damaged { size, .. } => size == Some(rest.len()) || rest.iter().all(|&b| b == 0),
        Frame::Whole { .. } => false,
    }
}

/// The first offset at or after `from` where a whole record this broker writes begins: where
/// replay can carry on after damage. A random match needs a plausible length *and* a
/// matching CRC-32 of the bytes it covers: about one chance in four billion per place.
fn next_record(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| {
        matches!(read_frame(&bytes[at..]), Frame::Whole { payload, .. }
            if Record::parse(payload).is_some())
    })
}

/// The records on either side of damage, by seq, for the report: "seq 17 before, seq 20
/// after" says which messages and acknowledgements may have been in it.
fn around(before: Option<u64>, after: Option<&[u8]>) -> String {
    let after = after.and_then(|bytes| match read_frame(bytes) {
        Frame::Whole { payload, .. } => Record::parse(payload).and_then(|r| r.seq()),
        _ => None,
    });
    match (before, after) {
        (Some(a), Some(b)) => format!("; around the damage: seq {a} before, seq {b} after"),
        (Some(a), None) => format!("; around the damage: seq {a} before"),
        (None, Some(b)) => format!("; around the damage: seq {b} after"),
        (None, None) => String::new(),
    }
}

/// What the bytes of a record that cannot be read seem to hold, for a warning: its kind and
/// seq, as far as they are legible (they are not checked: the CRC failed or is missing).
pub fn sketch(record: &[u8]) -> String {
    let payload = record.get(HEADER_BYTES..).unwrap_or(&[]);
    let text = String::from_utf8_lossy(&payload[..payload.len().min(64)]);
    let words: Vec<&str> = text.splitn(3, [' ', '\n']).collect();
    let known = ["START", "DURABLE", "MESSAGE", "ACK", "CANCEL"];
    match words.as_slice() {
        [kind @ ("MESSAGE" | "ACK"), seq, _] if seq.parse::<u64>().is_ok() => {
            format!("what looks like {kind} seq {seq}")
        }
        [kind, ..] if known.contains(kind) => {
            format!("what looks like a {kind} record, its seq or names not legible")
        }
        _ => "nothing legible as a record".to_string(),
    }
}

/// Truncates segment `path` to `offset` bytes, and makes that durable: what follows is a
/// torn end, and the file is never read past it again.
fn cut_off(path: &Path, offset: usize) -> Result<(), LogError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|error| io_error(path, &error))?;
    file.set_len(offset as u64)
        .and_then(|()| file.sync_all())
        .map_err(|error| io_error(path, &error))
}

/// Copies damaged bytes of segment `path` (from `offset`) to a file of their own in
/// [`QUARANTINE_DIR`], flushed to the disk before the segment can be deleted. Returns it.
fn quarantine(dir: &Path, path: &Path, offset: usize, bytes: &[u8]) -> Result<PathBuf, LogError> {
    let quarantine = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&quarantine).map_err(|error| io_error(&quarantine, &error))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let moved_to = quarantine.join(format!("{name}.at-{offset}"));
    File::create(&moved_to)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(|error| io_error(&moved_to, &error))?;
    sync_dir(&quarantine)?;
    Ok(moved_to)
}

/// The segment being appended to.
#[derive(Debug)]
pub struct Segment {
    /// Its number.
    pub number: u64,
    /// Bytes in it so far.
    pub bytes: u64,
    path: PathBuf,
    file: File,
}

impl Segment {
    /// Creates segment `number` in `dir` (which must not have it yet), and makes its
    /// directory entry durable, so that a crash cannot lose the file itself.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(dir: &Path, number: u64) -> Result<Segment, LogError> {
        let path = segment_path(dir, number);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|error| io_error(&path, &error))?;
        sync_dir(dir)?;
        Ok(Segment {
            number,
            bytes: 0,
            path,
            file,
        })
    }

    /// Whether the file being written is still the one at its path in the data directory.
    /// A directory deleted, moved or replaced while the broker runs does not stop its
    /// writes: they go into a file that no name leads to any more, which no start will
    /// ever replay. So the broker asks, after each write, before it confirms anything.
    ///
    /// # Errors
    /// What the operating system said about the open file.
    pub fn still_in_place(&self) -> io::Result<bool> {
        let at_path = match fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        };
        let open = self.file.metadata()?;
        Ok(same_file(&at_path, &open))
    }

    /// Appends `bytes` (whole records) to the file: into the operating system's cache,
    /// which a crash of this process does not lose, but a power cut may.
    ///
    /// # Errors
    /// What the operating system said (a full disk, say).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// A second handle on the file, for a thread that flushes it while others write.
    ///
    /// # Errors
    /// What the operating system said.
    pub fn handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Waits until everything written is on the disk itself (`fsync`): what survives a
    /// power cut.
    ///
    /// # Errors
    /// What the operating system said.
    pub fn sync(&self) -> io::Result<()> {
        // `sync_data` is `fdatasync`: the data and the file's length, not its times.
        self.file.sync_data()
    }
}

/// Whether two metadata describe the same file: the same device and inode number. (Where
/// there are no inodes, a file of that name is taken to be it.)
#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    true
}

/// Makes the directory's entries durable: a new file's name, or a deleted one's absence.
fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|error| io_error(dir, &error))
}

/// Deletes segment `number` from `dir`.
///
/// # Errors
/// What the operating system said.
pub fn delete(dir: &Path, number: u64) -> io::Result<()> {
    fs::remove_file(segment_path(dir, number))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(records: &[Record<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for record in records {
            record.write_framed(&mut out);
        }
        out
    }

    #[test]
    fn every_record_reads_back_as_written() {
        let records = [
            Record::Start { next_seq: 1042 },
            Record::Durable {
                subscriber_id: "sub1",
                filter: "orders/#",
            },
            Record::Message {
                seq: 17,
                subscriber_id: "sub1",
                filter: "orders/#",
                topic: "orders/1",
                publisher_id: "pub1",
                timestamp: "2025-03-14 10:30:00",
                message: "two  words ",
            },
            Record::Ack { seq: 17 },
            Record::Cancel {
                subscriber_id: "sub1",
                filter: "orders/#",
            },
        ];
        let bytes = framed(&records);
        let mut offset = 0;
        for expected in records {
            let Frame::Whole { payload, size } = read_frame(&bytes[offset..]) else {
                panic!("no whole record at {offset}");
            };
            assert_eq!(Record::parse(payload), Some(expected));
            offset += size;
        }
        assert_eq!(offset, bytes.len());
    }

    #[test]
    fn a_record_cut_anywhere_is_torn_and_a_flipped_byte_is_damage() {
        let bytes = framed(&[Record::Ack { seq: 5 }]);
        for end in 1..bytes.len() {
            assert_eq!(read_frame(&bytes[..end]), Frame::Torn, "cut at {end}");
        }
        for at in 4..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            assert!(
                matches!(read_frame(&damaged), Frame::Damaged { .. }),
                "byte {at}"
            );
        }
    }
}
