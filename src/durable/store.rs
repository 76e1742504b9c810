//! Where durable subscriptions keep what they must not lose: the seq counter, and (with
//! `--data-dir`) the log on disk, written with *group commit*.
//!
//! # Group commit
//!
//! `fsync` is slow: a few milliseconds on a laptop's SSD, ten on a disk that spins. One per
//! message would cap a broker at a few hundred messages a second. So records are first
//! *appended* to a buffer in memory (cheap, under a short lock, no I/O: what a subscriber's
//! [`offer`](crate::subscriber::Subscriber::offer) may do), then *written* to the segment
//! file (one `write` for everything appended meanwhile), and, under `--fsync always`,
//! *flushed* to the disk by one `fsync` for every confirm that waits for it:
//!
//! ```text
//!   publisher threads ── append ──▶ buffer ── write ──▶ file      (no thread waits for the disk)
//!          │
//!          └── hand over confirms ──▶ waiters ──▶ committer: fsync ──▶ every waiter's confirms go out
//!                                          (log-commit thread: one fsync for all that waited)
//! ```
//!
//! A connection that read a burst of publishes hands their confirms to the log
//! ([`Store::release_after_commit`]) and goes back to reading; it does not wait for the
//! disk. The committer thread, `log-commit`, takes every waiter there is, from every
//! connection, calls `fsync` once, and sends each its confirms. While it waits for the disk
//! the publishers keep appending and handing over, and the next `fsync` carries all of
//! that: the busier the broker, the more confirms share each one. PostgreSQL, etcd and NATS
//! JetStream do the same; so does a thread that must wait itself (one whose connection
//! closes, say: [`Store::commit`]): one `fsync` runs at a time, the others wait for it
//! and find their records covered, or lead the next one (`Disk::flush_to`).
//!
//! Two details keep the groups big. The `fsync` runs outside the lock that writes take, so
//! records (and acknowledgements) are written while the disk is busy. And before each
//! `fsync` the committer waits, a little, for as many confirms as the last round carried
//! (`Disk::gather`): a publisher that keeps a window of publishes in flight sends its next
//! ones as the last confirms come back, and one round then carries them all.
//!
//! Under `interval` and `never`, nothing waits for the disk: confirms go out once the
//! records are written.
//!
//! # Segments, and why a segment is deleted only from the oldest end
//!
//! The log is split into files of about `segment_bytes` (see `log.rs`). A new segment
//! begins with a `START` record (the next seq) and a `DURABLE` record for every durable
//! subscription, so that an older segment is needed only for its messages. The store
//! counts, for each segment, the messages in it that are still held.
//!
//! A log of this kind has one trap: a record can *cancel* a record in an older segment.
//! `ACK 17` in segment 5 cancels `MESSAGE 17` in segment 3; `CANCEL` in segment 5 ends a
//! subscription whose `DURABLE` record and messages are in segment 3. Delete segment 5
//! because it holds no message any more, keep segment 3 because it still does, and the
//! next replay brings message 17 and the cancelled subscription back to life. So only the
//! *oldest* segments are deleted, once they and every segment before them hold nothing: the
//! records of a deleted segment then cancel only records that are gone too.
//!
//! That alone lets the log grow behind one message nobody acknowledges. So the store also
//! *checkpoints* the log at every start: replay adds every record up to the state they
//! describe (subscriptions, and the messages each holds), the state is written as records
//! into a new segment, flushed, and then every older segment is deleted, oldest first.
//! Nothing cancelling is needed after that, because nothing cancelled is left. This is
//! Redis's AOF rewrite and SQLite's checkpoint; a crash in the middle of it is harmless,
//! since replaying the old segments and then the checkpoint adds up to the same state.
//!
//! The other classic answer is *compaction* that copies the cancelling records forward
//! into newer segments (as Kafka keeps a key's tombstone), or that rewrites a segment
//! without what was cancelled. It keeps the log small while the broker runs, but every
//! rule about which record may go needs its own proof; a checkpoint has one rule ("write
//! what is live") and reuses replay to build it. The price: a start rewrites every message
//! held, and a broker that runs for months with one message never acknowledged keeps every
//! segment since it until the next start. Redis rewrites in the background for this
//! reason; a production broker would checkpoint when the log has grown, not only at a
//! start.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::log::{self, Cut, LogError, Record, Segment};
use super::queue::Queued;
use super::Holder;
use crate::config::{Config, FsyncPolicy};
use crate::protocol::{write_message, Held};

/// The longest the committer waits, before an `fsync`, for a round of confirms to be as
/// big as the last (see `Disk::gather`): about two `fsync`s of an SSD.
const MAX_GATHER: Duration = Duration::from_millis(2);

/// A subscription's key: its subscriber id and its filter.
pub type Key = (Arc<str>, Arc<str>);

/// The counter of seqs, and the log if there is one. One per broker.
#[derive(Debug)]
pub struct Store {
    next_seq: AtomicU64,
    disk: Option<Disk>,
    /// Messages dropped from subscriptions that held more than `--max-queued`.
    pub dropped: AtomicU64,
    /// Retained messages not copied into a new subscription, past
    /// `--max-durable-retained-bytes`.
    pub retained_skipped: AtomicU64,
    /// Flushes of the log to the disk (`fsync`) since the start: beside the number of
    /// messages published, it shows how many confirms each one carried.
    pub fsyncs: AtomicU64,
}

#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    policy: FsyncPolicy,
    segment_bytes: u64,
    appended: Mutex<Appended>,
    files: Mutex<Files>,
    flushed: Mutex<Flushed>,
    /// Signalled when an `fsync` ends and when a waiter is queued: followers and the
    /// committer wait on it.
    changed: Condvar,
}

/// Records appended and not yet written, and the bookkeeping of segments.
#[derive(Debug)]
struct Appended {
    /// Records not yet written, each run with the segment it belongs in.
    chunks: Vec<(u64, Vec<u8>)>,
    /// Bytes appended since the start: the position a commit must reach.
    position: u64,
    /// The segment new records go in, and how many bytes it has.
    segment: u64,
    segment_bytes: u64,
    /// For each segment from the oldest on: how many of its messages are still held by a
    /// subscription.
    live: BTreeMap<u64, usize>,
    /// Every durable subscription, for the `DURABLE` records a new segment begins with.
    subscriptions: BTreeSet<Key>,
    /// Segments that hold nothing any more, to be deleted by the next commit.
    to_delete: Vec<u64>,
}

/// The file side: one commit at a time.
#[derive(Debug)]
struct Files {
    segment: Segment,
    /// The position written to the file.
    written: u64,
    /// Set by a write or a flush that failed, or a log that is no longer where it was:
    /// the log's end is then unknown, and nothing more is confirmed until the broker
    /// restarts.
    broken: Option<String>,
}

/// The flushing side: how far the disk has the log, whether a thread is in `fsync` now,
/// and the replies waiting for the disk.
#[derive(Debug, Default)]
struct Flushed {
    synced: u64,
    syncing: bool,
    waiters: Vec<Waiter>,
    /// How many confirms the last release sent: what the committer expects the next
    /// round to carry (see `Disk::gather`).
    last_round: usize,
    /// The committer thread is to end, once no waiter is left.
    stopping: bool,
}

/// What replay found for one subscription: its messages, oldest first.
#[derive(Debug)]
pub struct Restored {
    /// Whose and to what.
    pub key: Key,
    /// What it held.
    pub messages: Vec<Queued>,
}

/// What opening the store found: for the start line.
#[derive(Debug, Default)]
pub struct Report {
    /// Segments read.
    pub segments: usize,
    /// Records read.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
    /// How long the replay took.
    pub millis: u128,
    /// The checkpoint written: its segment number and its bytes.
    pub checkpoint: (u64, u64),
    /// The torn end of the log, cut off.
    pub cut: Option<Cut>,
    /// Damaged bytes that `--salvage` moved aside.
    pub quarantined: Vec<Cut>,
    /// Files in the directory that are not segments, left alone: why, for each.
    pub ignored: Vec<String>,
}

/// What replay has found live so far: the state the records add up to. The checkpoint
/// writes it back as records.
#[derive(Debug)]
struct Live {
    next_seq: u64,
    subscriptions: BTreeSet<Key>,
    /// Every message held, by seq: whose it is, and its record's payload, which the
    /// checkpoint writes again as it is.
    messages: BTreeMap<u64, (Key, Box<[u8]>)>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            next_seq: 1,
            subscriptions: BTreeSet::new(),
            messages: BTreeMap::new(),
        }
    }
}

impl Live {
    /// One record of the log, applied in order.
    fn apply(&mut self, record: Record<'_>, payload: &[u8]) {
        match record {
            Record::Start { next_seq } => self.next_seq = self.next_seq.max(next_seq),
            Record::Durable {
                subscriber_id,
                filter,
            } => {
                self.subscriptions
                    .insert((subscriber_id.into(), filter.into()));
            }
            Record::Message {
                seq,
                subscriber_id,
                filter,
                ..
            } => {
                self.next_seq = self.next_seq.max(seq + 1);
                let key: Key = (subscriber_id.into(), filter.into());
                if self.subscriptions.contains(&key) {
                    self.messages.insert(seq, (key, payload.into()));
                }
            }
            Record::Ack { seq } => {
                self.messages.remove(&seq);
            }
            Record::Cancel {
                subscriber_id,
                filter,
            } => {
                let key: Key = (subscriber_id.into(), filter.into());
                self.subscriptions.remove(&key);
                self.messages.retain(|_, (owner, _)| *owner != key);
            }
        }
    }

    /// The checkpoint, as segment `number`: the records that replay to this state (the
    /// next seq, every subscription, every message held), the messages each subscription
    /// holds, and how many in all.
    fn checkpoint(&self, number: u64) -> (Vec<u8>, Vec<Restored>, usize) {
        let mut out = Vec::new();
        begin_segment(&mut out, self.next_seq, &self.subscriptions);
        let mut restored: BTreeMap<&Key, Vec<Queued>> = self
            .subscriptions
            .iter()
            .map(|key| (key, Vec::new()))
            .collect();
        let mut line = Vec::new();
        for (key, payload) in self.messages.values() {
            let Some(Record::Message {
                seq,
                topic,
                publisher_id,
                timestamp,
                message,
                ..
            }) = Record::parse(payload)
            else {
                continue; // Replay parsed it already.
            };
            Record::write_payload_framed(payload, &mut out);
            line.clear();
            write_message(&mut line, seq, topic, message, publisher_id, timestamp);
            if let Some(messages) = restored.get_mut(key) {
                messages.push(Queued {
                    seq,
                    segment: number,
                    line: line.as_slice().into(),
                });
            }
        }
        let restored: Vec<Restored> = restored
            .into_iter()
            .map(|(key, messages)| Restored {
                key: key.clone(),
                messages,
            })
            .collect();
        (out, restored, self.messages.len())
    }
}

impl Store {
    /// A store in memory only: durable subscriptions survive disconnects, not restarts.
    pub fn in_memory() -> Store {
        Store {
            next_seq: AtomicU64::new(1),
            disk: None,
            dropped: AtomicU64::new(0),
            retained_skipped: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
        }
    }

    /// Opens the log in `config.data_dir` (creating the directory if need be), replays
    /// it (with `config.salvage`, past damage: see [`log::replay`]), and *checkpoints* it:
    /// writes what is live into a new segment, flushes it, and deletes every older one.
    /// See the module docs.
    ///
    /// # Errors
    /// A [`LogError`] for a damaged log or one that cannot be read or written.
    pub fn open(config: &Config, dir: &Path) -> Result<(Store, Vec<Restored>, Report), LogError> {
        let started = Instant::now();
        std::fs::create_dir_all(dir).map_err(|error| LogError {
            path: dir.to_path_buf(),
            offset: None,
            what: error.to_string(),
        })?;
        let mut live = Live::default();
        let replayed = log::replay(dir, config.salvage, |record, payload| {
            live.apply(record, payload);
        })?;
        let number = replayed.highest.checked_add(1).ok_or_else(|| LogError {
            path: dir.to_path_buf(),
            offset: None,
            what: "no segment number is left above the highest one: move the log away".into(),
        })?;
        let (checkpoint, restored, held) = live.checkpoint(number);
        let mut segment = Segment::create(dir, number)?;
        let io = |error: std::io::Error| LogError {
            path: log::segment_path(dir, number),
            offset: None,
            what: error.to_string(),
        };
        segment.write(&checkpoint).map_err(io)?;
        segment.sync().map_err(io)?;
        // The checkpoint is on the disk: nothing older is needed. Oldest first, so that a
        // crash in the middle leaves a log that still replays to the same state.
        for &old in &replayed.segments {
            if let Err(error) = log::delete(dir, old) {
                ::log::warn!("could not delete log segment {old}: {error}; the next start will");
            }
        }
        let position = checkpoint.len() as u64;
        let store = Store {
            next_seq: AtomicU64::new(live.next_seq),
            dropped: AtomicU64::new(0),
            retained_skipped: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            disk: Some(Disk {
                dir: dir.to_path_buf(),
                policy: config.fsync,
                segment_bytes: config.segment_bytes,
                appended: Mutex::new(Appended {
                    chunks: Vec::new(),
                    position,
                    segment: number,
                    segment_bytes: position,
                    live: BTreeMap::from([(number, held)]),
                    subscriptions: live.subscriptions,
                    to_delete: Vec::new(),
                }),
                files: Mutex::new(Files {
                    segment,
                    written: position,
                    broken: None,
                }),
                flushed: Mutex::new(Flushed {
                    synced: position,
                    ..Flushed::default()
                }),
                changed: Condvar::new(),
            }),
        };
        let report = Report {
            segments: replayed.segments.len(),
            records: replayed.records,
            bytes: replayed.bytes,
            millis: started.elapsed().as_millis(),
            checkpoint: (number, position),
            cut: replayed.cut,
            quarantined: replayed.quarantined,
            ignored: replayed.ignored,
        };
        Ok((store, restored, report))
    }

    /// Where the log is, if there is one.
    pub fn dir(&self) -> Option<&Path> {
        self.disk.as_ref().map(|disk| disk.dir.as_path())
    }

    /// The fsync policy, if there is a log.
    pub fn policy(&self) -> Option<FsyncPolicy> {
        self.disk.as_ref().map(|disk| disk.policy)
    }

    /// A new seq: higher than every one given before, in this run or any earlier one.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Appends a record to the buffer (no I/O). Returns the segment it goes in (0 without
    /// a log). A `MESSAGE` record counts as held in its segment until [`done`](Self::done).
    pub fn append(&self, record: &Record<'_>) -> u64 {
        let Some(disk) = &self.disk else {
            return 0;
        };
        let mut appended = disk.appended.lock();
        // (A log at the last segment number there is stays in it: it cannot roll over.)
        if appended.segment_bytes >= disk.segment_bytes && appended.segment < u64::MAX {
            // A new segment: it begins with what a replay needs from the older ones.
            appended.segment += 1;
            let new = appended.segment;
            appended.live.insert(new, 0);
            appended.finish_segments();
            let mut first = Vec::new();
            begin_segment(
                &mut first,
                self.next_seq.load(Ordering::Relaxed),
                &appended.subscriptions,
            );
            appended.segment_bytes = 0;
            push_bytes(&mut appended, &first);
        }
        match *record {
            Record::Durable {
                subscriber_id,
                filter,
            } => {
                appended
                    .subscriptions
                    .insert((subscriber_id.into(), filter.into()));
            }
            Record::Cancel {
                subscriber_id,
                filter,
            } => {
                appended
                    .subscriptions
                    .remove(&(Arc::from(subscriber_id), Arc::from(filter)));
            }
            Record::Message { .. } => {
                let segment = appended.segment;
                *appended.live.entry(segment).or_default() += 1;
            }
            Record::Start { .. } | Record::Ack { .. } => {}
        }
        let mut bytes = Vec::new();
        record.write_framed(&mut bytes);
        push_bytes(&mut appended, &bytes);
        appended.segment
    }

    /// A message in `segment` is no longer held (acknowledged, dropped or cancelled). The
    /// oldest segments, once they hold nothing, are deleted at the next commit.
    pub fn done(&self, segment: u64) {
        let Some(disk) = &self.disk else {
            return;
        };
        let mut appended = disk.appended.lock();
        if let Some(count) = appended.live.get_mut(&segment) {
            *count = count.saturating_sub(1);
        }
        appended.finish_segments();
    }

    /// Writes everything appended so far to the log, and, if `durable` and the policy is
    /// `always`, flushes it to the disk: when this returns `Ok`, every record appended
    /// before the call is stored as the policy promises. Then deletes the segments that
    /// are finished. The caller waits; [`release_after_commit`](Self::release_after_commit)
    /// is the way that does not.
    ///
    /// # Errors
    /// A sentence saying why the log could not be written; the log is then *broken*, and
    /// every later commit fails too (the broker must be restarted, which replays it).
    pub fn commit(&self, durable: bool) -> Result<(), String> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        let result = self.commit_to(disk, durable);
        if let Err(why) = &result {
            disk.release(Some(why));
        }
        result
    }

    fn commit_to(&self, disk: &Disk, durable: bool) -> Result<(), String> {
        let (position, to_delete) = disk.write_appended()?;
        if durable && disk.policy == FsyncPolicy::Always {
            disk.flush_to(position, &self.fsyncs)?;
        }
        if to_delete.is_empty() {
            return Ok(());
        }
        if disk.policy != FsyncPolicy::Never {
            // The newer segments carry what a replay needs from the ones deleted (their
            // subscriptions, the next seq): they reach the disk before the old ones go.
            disk.flush_to(position, &self.fsyncs)?;
        }
        for segment in to_delete {
            match log::delete(&disk.dir, segment) {
                Ok(()) => {
                    ::log::debug!("deleted log segment {segment}: every message in it is done")
                }
                Err(error) => ::log::warn!("could not delete log segment {segment}: {error}"),
            }
        }
        Ok(())
    }

    /// Sends `replies` (the confirms of publishes, and what queued behind them) to `holder` once everything
    /// appended so far is stored as the policy promises, then flushes `holder`: with
    /// `--fsync always`, after the next `fsync`, which the committer thread (see the module
    /// docs) makes for every waiting connection at once; the caller does not wait for it.
    /// Under the other policies the records are written now, and the replies go at once.
    ///
    /// `pending`, if given, counts the calls not released yet: a connection holds its
    /// other replies back while it is above zero, so that none overtakes a confirm. If the
    /// log cannot be written, each confirm becomes an `ERROR` saying so (see
    /// `protocol/held.rs`).
    pub fn release_after_commit(
        &self,
        replies: Held,
        holder: &Arc<dyn Holder>,
        pending: Option<&Arc<AtomicUsize>>,
    ) {
        if let Some(pending) = pending {
            pending.fetch_add(1, Ordering::AcqRel);
        }
        let confirms = replies.confirms();
        let waiter = Waiter {
            target: 0,
            holder: Arc::clone(holder),
            replies,
            confirms,
            pending: pending.cloned(),
        };
        match &self.disk {
            Some(disk) if disk.policy == FsyncPolicy::Always => disk.enqueue(waiter),
            _ => {
                let stored = self.commit(false);
                waiter.release(stored.as_ref().err().map(String::as_str));
            }
        }
    }

    /// The committer: the thread that makes every `fsync` the waiting connections need,
    /// until [`stop_committer`](Self::stop_committer). Returns at once without a log, or
    /// under a policy other than `always`.
    pub fn run_committer(&self) {
        let Some(disk) = &self.disk else {
            return;
        };
        let mut flushed = disk.flushed.lock();
        loop {
            if !flushed.waiters.is_empty() {
                disk.gather(&mut flushed);
                // Whatever was appended until now rides this fsync: the publishes of every
                // connection that wrote since the last one.
                parking_lot::MutexGuard::unlocked(&mut flushed, || {
                    let _ = self.commit(true);
                });
                continue;
            }
            if flushed.stopping {
                return;
            }
            disk.changed.wait(&mut flushed);
        }
    }

    /// Ends [`run_committer`](Self::run_committer), once it has released every waiter.
    pub fn stop_committer(&self) {
        if let Some(disk) = &self.disk {
            disk.flushed.lock().stopping = true;
            disk.changed.notify_all();
        }
    }

    /// Writes and flushes to the disk whatever is not there yet: `--fsync interval`'s
    /// once-a-second flush.
    pub fn sync(&self) {
        let Some(disk) = &self.disk else {
            return;
        };
        let flushed = disk
            .write_appended()
            .and_then(|(position, _)| disk.flush_to(position, &self.fsyncs));
        if let Err(why) = flushed {
            ::log::error!("could not flush the log to the disk: {why}");
        }
    }
}

/// Confirms waiting in `waiters`.
fn waiting_confirms(waiters: &[Waiter]) -> usize {
    waiters.iter().map(|waiter| waiter.confirms).sum()
}

/// Replies that go out once the log is on the disk up to `target`.
struct Waiter {
    target: u64,
    holder: Arc<dyn Holder>,
    replies: Held,
    /// How many of the replies are confirms, for `Disk::gather`.
    confirms: usize,
    pending: Option<Arc<AtomicUsize>>,
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Waiter {{ target: {}, {} replies }}",
            self.target,
            self.replies.replies.len()
        )
    }
}

impl Waiter {
    /// Pushes the replies to the holder (the confirms as refusals if the log is `broken`),
    /// and counts the waiter released. Returns the holder, to be flushed.
    fn push(self, broken: Option<&str>) -> Arc<dyn Holder> {
        if !self.replies.is_empty() {
            let mut out = Vec::new();
            self.replies.write(broken, &mut out);
            self.holder.push(&out);
        }
        if let Some(pending) = &self.pending {
            pending.fetch_sub(1, Ordering::AcqRel);
        }
        self.holder
    }

    fn release(self, broken: Option<&str>) {
        self.push(broken).send();
    }
}

impl Disk {
    /// Writes what was appended to the segment file (no flush), under the files' lock,
    /// which no `fsync` holds. Returns the position written, and the segments finished
    /// meanwhile.
    fn write_appended(&self) -> Result<(u64, Vec<u64>), String> {
        let mut files = self.files.lock();
        if let Some(broken) = &files.broken {
            return Err(broken.clone());
        }
        let (chunks, position, to_delete) = {
            let mut appended = self.appended.lock();
            (
                std::mem::take(&mut appended.chunks),
                appended.position,
                std::mem::take(&mut appended.to_delete),
            )
        };
        if chunks.is_empty() {
            return Ok((files.written, to_delete));
        }
        if let Err(why) = self.write_in_place(&mut files, &chunks) {
            ::log::error!("{why}");
            files.broken = Some(why.clone());
            return Err(why);
        }
        files.written = position;
        Ok((position, to_delete))
    }

    /// Group commit: returns once the log is on the disk up to `target`. One thread at a
    /// time calls `fsync` (the *leader*); a thread that finds one at it waits for it (a
    /// *follower*), and then either its records rode that `fsync`, or it leads the next,
    /// which takes everything written meanwhile. After each `fsync` its leader releases
    /// every waiter it covered.
    fn flush_to(&self, target: u64, fsyncs: &AtomicU64) -> Result<(), String> {
        let mut flushed = self.flushed.lock();
        while flushed.synced < target {
            if flushed.syncing {
                self.changed.wait(&mut flushed);
                continue;
            }
            flushed.syncing = true;
            let synced = parking_lot::MutexGuard::unlocked(&mut flushed, || self.sync_written());
            flushed.syncing = false;
            self.changed.notify_all();
            match synced {
                Ok(position) => {
                    flushed.synced = flushed.synced.max(position);
                    fsyncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(why) => return Err(why),
            }
        }
        drop(flushed);
        self.release(None);
        Ok(())
    }

    /// Flushes the segment file to the disk, without holding the files' lock: writers go
    /// on meanwhile. Returns the position it covers.
    fn sync_written(&self) -> Result<u64, String> {
        let (position, file) = {
            let files = self.files.lock();
            if let Some(broken) = &files.broken {
                return Err(broken.clone());
            }
            (files.written, files.segment.handle())
        };
        let synced = file.and_then(|file| file.sync_data());
        match synced {
            Ok(()) => Ok(position),
            Err(error) => {
                let why = format!(
                    "could not flush the log in {} to the disk: {error}; nothing more will be \
                     confirmed until the broker restarts",
                    self.dir.display()
                );
                ::log::error!("{why}");
                self.files.lock().broken = Some(why.clone());
                Err(why)
            }
        }
    }

    /// Before an `fsync`, the committer waits until as many confirms wait as the last
    /// `fsync` released, or [`MAX_GATHER`] has passed. Publishers that keep a window of
    /// publishes in flight (as the bench's does, and NATS JetStream's asynchronous
    /// publish) send the next ones as the confirms of the last come back: waiting for
    /// them makes each round carry one whole window's worth, instead of splitting it
    /// between two `fsync`s. A lone publisher that waits for each confirm waits for
    /// nothing here: the last round released one confirm, and one is waiting.
    /// (PostgreSQL's `commit_delay` is the same idea with a fixed wait.)
    fn gather(&self, flushed: &mut parking_lot::MutexGuard<'_, Flushed>) {
        let deadline = Instant::now() + MAX_GATHER;
        while !flushed.stopping && waiting_confirms(&flushed.waiters) < flushed.last_round {
            if self.changed.wait_until(flushed, deadline).timed_out() {
                return;
            }
        }
    }

    /// Queues a waiter for the committer thread, and wakes it.
    fn enqueue(&self, mut waiter: Waiter) {
        waiter.target = self.appended.lock().position;
        let mut flushed = self.flushed.lock();
        // A holder already waiting to be flushed, with nothing to push, needs no second
        // waiter: the one it has is moved to the new target. (Each publisher's burst
        // asks every durable subscription it reached to be flushed.)
        let id = waiter.holder.holder_id();
        let queued = waiter.replies.is_empty()
            && flushed
                .waiters
                .iter_mut()
                .rev()
                .find(|w| w.replies.is_empty() && w.holder.holder_id() == id)
                .map(|w| w.target = waiter.target)
                .is_some();
        if !queued {
            flushed.waiters.push(waiter);
        }
        drop(flushed);
        self.changed.notify_all();
    }

    /// Releases the waiters the disk now covers (every one, refused, if the log is
    /// `broken`). The lines are pushed under the lock, so that the replies of one
    /// connection keep their order whoever releases them; the holders are flushed after.
    fn release(&self, broken: Option<&str>) {
        let mut holders: Vec<Arc<dyn Holder>> = Vec::new();
        {
            let mut flushed = self.flushed.lock();
            let synced = flushed.synced;
            let waiters = std::mem::take(&mut flushed.waiters);
            let mut released = 0;
            for waiter in waiters {
                if broken.is_some() || waiter.target <= synced {
                    released += waiter.confirms;
                    let holder = waiter.push(broken);
                    if !holders.iter().any(|h| h.holder_id() == holder.holder_id()) {
                        holders.push(holder);
                    }
                } else {
                    flushed.waiters.push(waiter);
                }
            }
            if released > 0 {
                flushed.last_round = released;
            }
        }
        for holder in holders {
            holder.send();
        }
    }

    /// Writes `chunks`, and checks that the log is still where replay will look for it.
    /// On failure, the sentence for the operator: what went wrong, that nothing more is
    /// confirmed, and what to do.
    fn write_in_place(&self, files: &mut Files, chunks: &[(u64, Vec<u8>)]) -> Result<(), String> {
        let dir = self.dir.display();
        if let Err(error) = self.write(files, chunks) {
            return Err(format!(
                "could not write the log in {dir}: {error}; nothing more will be confirmed \
                 until the broker restarts"
            ));
        }
        match files.segment.still_in_place() {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "the log's data directory {dir} was deleted, moved or replaced while the broker \
                 ran (segment {} is not there any more); nothing more will be confirmed: put \
                 the directory back, or restart the broker to begin a new log there (what the \
                 missing files held is lost)",
                files.segment.number
            )),
            Err(error) => Err(format!(
                "cannot check the log in {dir}: {error}; nothing more will be confirmed until \
                 the broker restarts"
            )),
        }
    }

    fn write(&self, files: &mut Files, chunks: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
        for (segment, bytes) in chunks {
            if *segment != files.segment.number {
                // The old segment is finished: it goes to the disk before the new one
                // starts, so a replay never finds a newer segment without the older one.
                if self.policy != FsyncPolicy::Never {
                    files.segment.sync()?;
                }
                files.segment = Segment::create(&self.dir, *segment)
                    .map_err(|error| std::io::Error::other(error.to_string()))?;
            }
            files.segment.write(bytes)?;
        }
        Ok(())
    }
}

impl Appended {
    /// Moves the oldest segments that hold no message any more, up to the first that
    /// does, to the list to delete. Only the oldest: a segment in the middle that holds
    /// nothing may still hold the `ACK` or `CANCEL` records that cancel messages and
    /// subscriptions of an older one, and deleting it would bring them back.
    fn finish_segments(&mut self) {
        while let Some((&oldest, &held)) = self.live.first_key_value() {
            if held > 0 || oldest >= self.segment {
                break;
            }
            self.live.remove(&oldest);
            self.to_delete.push(oldest);
        }
    }
}

fn push_bytes(appended: &mut Appended, bytes: &[u8]) {
    let segment = appended.segment;
    match appended.chunks.last_mut() {
        Some((last, chunk)) if *last == segment => chunk.extend_from_slice(bytes),
        _ => appended.chunks.push((segment, bytes.to_vec())),
    }
    appended.position += bytes.len() as u64;
    appended.segment_bytes += bytes.len() as u64;
}

/// The records a segment begins with: the next seq, and every subscription.
fn begin_segment(out: &mut Vec<u8>, next_seq: u64, subscriptions: &BTreeSet<Key>) {
    Record::Start { next_seq }.write_framed(out);
    for (subscriber_id, filter) in subscriptions {
        Record::Durable {
            subscriber_id,
            filter,
        }
        .write_framed(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Dialect, HeldReply};
    use crate::subscriber::{Offer, SubscriberId};

    /// A connection as the store sees it: what was pushed to it, and how often it was sent.
    #[derive(Debug)]
    struct Connection {
        id: SubscriberId,
        pushed: Mutex<Vec<u8>>,
    }

    impl Holder for Connection {
        fn holder_id(&self) -> SubscriberId {
            self.id
        }
        fn push(&self, lines: &[u8]) -> Offer {
            self.pushed.lock().extend_from_slice(lines);
            Offer::FlushNeeded
        }
        fn send(&self) {}
    }

    fn open(name: &str) -> (Store, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("pubsub-lab-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = Config {
            data_dir: Some(dir.clone()),
            ..Config::default()
        };
        let (store, _, _) = Store::open(&config, &dir).unwrap();
        (store, dir)
    }

    /// Five connections each hand over a confirm: none goes out before the disk has it,
    /// and one commit, one `fsync`, sends all five.
    #[test]
    fn one_fsync_releases_the_confirms_of_every_waiting_connection() {
        let (store, dir) = open("group");
        let pending = Arc::new(AtomicUsize::new(0));
        let connections: Vec<Arc<Connection>> = (0..5)
            .map(|_| {
                Arc::new(Connection {
                    id: SubscriberId::next(),
                    pushed: Mutex::default(),
                })
            })
            .collect();
        for (n, connection) in connections.iter().enumerate() {
            store.append(&Record::Ack { seq: n as u64 });
            let holder: Arc<dyn Holder> = Arc::clone(connection) as Arc<dyn Holder>;
            let confirm = Held {
                dialect: Dialect::Line,
                replies: vec![HeldReply::Confirm {
                    topic: "t".into(),
                    deliveries: n,
                }],
            };
            store.release_after_commit(confirm, &holder, Some(&pending));
        }
        assert_eq!(pending.load(Ordering::Acquire), 5);
        assert!(connections.iter().all(|c| c.pushed.lock().is_empty()));
        let before = store.fsyncs.load(Ordering::Relaxed);
        store.commit(true).unwrap();
        assert_eq!(store.fsyncs.load(Ordering::Relaxed) - before, 1);
        assert_eq!(pending.load(Ordering::Acquire), 0);
        for (n, connection) in connections.iter().enumerate() {
            assert_eq!(
                *connection.pushed.lock(),
                format!("OK PUBLISH t {n}\n").into_bytes()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
