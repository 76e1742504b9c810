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
//! disk. That record was never confirmed to anyone (confirms come after the write), so
//! replay cuts it off with a warning and starts normally: see [`replay`].
//!
//! Damage anywhere *else* is a different matter: a record in the middle of the log that
//! fails its CRC means the disk or someone's editor changed bytes that had been written
//! whole. Skipping it could silently lose or reorder messages, so the broker refuses to
//! start and names the file and the offset ([`LogError`]); the operator decides.
//!
//! One ambiguity is left, as in every log of this kind: a damaged *length* in the newest
//! segment that points past the end of the file looks exactly like a torn tail, and is cut
//! off as one.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
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

/// The file of segment `number` in `dir`.
pub fn segment_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:08}{SEGMENT_SUFFIX}"))
}

/// The numbers of the segments in `dir`, oldest first. Other files are left alone.
///
/// # Errors
/// The directory cannot be read.
pub fn segments(dir: &Path) -> Result<Vec<u32>, LogError> {
    let entries = fs::read_dir(dir).map_err(|error| io_error(dir, &error))?;
    let mut numbers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| io_error(dir, &error))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
            continue;
        };
        if stem.len() == 8 {
            if let Ok(number) = stem.parse() {
                numbers.push(number);
            }
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// What [`replay`] read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The segments read, oldest first.
    pub segments: Vec<u32>,
    /// Whole records read.
    pub records: u64,
    /// Bytes of them.
    pub bytes: u64,
    /// A torn last record, cut off: the file, the offset it started at, and how many bytes
    /// were cut.
    pub cut: Option<(PathBuf, u64, u64)>,
}

/// Reads every record of every segment in `dir`, oldest first, handing each to `visit`
/// with the number of its segment.
///
/// A torn record at the end of the newest segment is cut off (the file is truncated
/// before it, so that nothing is ever appended after garbage) and reported in
/// [`Replayed::cut`]; so is a damaged record that ends exactly at the end of that file,
/// or is followed only by zero bytes (what a file extended but not yet written holds after
/// a power cut).
///
/// # Errors
/// A damaged record anywhere else, or a torn one in an older segment, is a [`LogError`]
/// naming the file and the record's offset: replay stops there and applies nothing after
/// it. So is a file that cannot be read.
pub fn replay(dir: &Path, mut visit: impl FnMut(u32, Record<'_>)) -> Result<Replayed, LogError> {
    let mut replayed = Replayed {
        segments: segments(dir)?,
        ..Replayed::default()
    };
    let newest = replayed.segments.last().copied();
    for &number in &replayed.segments {
        let path = segment_path(dir, number);
        let bytes = fs::read(&path).map_err(|error| io_error(&path, &error))?;
        let is_newest = Some(number) == newest;
        let mut offset = 0;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            let damage = |what: String| LogError {
                path: path.clone(),
                offset: Some(offset as u64),
                what,
            };
            let tail = match read_frame(rest) {
                Frame::Whole { payload, size } => {
                    let Some(record) = Record::parse(payload) else {
                        return Err(damage(
                            "the CRC matches but the record is not one this broker writes"
                                .to_string(),
                        ));
                    };
                    visit(number, record);
                    replayed.records += 1;
                    replayed.bytes += size as u64;
                    offset += size;
                    continue;
                }
                Frame::Torn => is_newest,
                Frame::Damaged { size, .. } => {
                    let ends_the_file = size == Some(rest.len());
                    let zeros_after = rest.iter().all(|&b| b == 0);
                    is_newest && (ends_the_file || zeros_after)
                }
            };
            if !tail {
                let why = match read_frame(rest) {
                    Frame::Damaged { why, .. } => why,
                    _ => "record cut short in a segment that is not the newest",
                };
                return Err(damage(format!(
                    "{why}: the log is damaged before its end; move the file away to \
                     start without what it holds, or restore it from a copy"
                )));
            }
            let cut = (bytes.len() - offset) as u64;
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|error| io_error(&path, &error))?;
            file.set_len(offset as u64)
                .and_then(|()| file.sync_all())
                .map_err(|error| io_error(&path, &error))?;
            replayed.cut = Some((path.clone(), offset as u64, cut));
            break;
        }
    }
    Ok(replayed)
}

/// The segment being appended to.
#[derive(Debug)]
pub struct Segment {
    /// Its number.
    pub number: u32,
    /// Bytes in it so far.
    pub bytes: u64,
    file: File,
}

impl Segment {
    /// Creates segment `number` in `dir` (which must not have it yet), and makes its
    /// directory entry durable, so that a crash cannot lose the file itself.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(dir: &Path, number: u32) -> Result<Segment, LogError> {
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
            file,
        })
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
pub fn delete(dir: &Path, number: u32) -> io::Result<()> {
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
