//! Log records on their way to the terminal, without ever making the broker wait for it.
//!
//! A terminal can stop reading: Ctrl-S pauses it, a tmux pane scrolled back holds its
//! output, a pipe into `less` waits for a key. A program that writes its log straight to
//! stderr then blocks in `write` on whichever thread logs next, holding up that client's
//! `PING`, a publisher's burst, even the accept loop. So records go through a bounded
//! queue to one thread, `log-writer`, that alone writes stderr. When the queue is full the
//! record is dropped and counted, and once the terminal reads again the writer says how
//! many were lost, in a line of its own. syslog and journald drop messages the same way
//! when their reader falls behind ("N messages suppressed").
//!
//! The thread that logs does as little as it can: it keeps the time as the clock gives it
//! and the message as text, and the writer adds the local time, the level and the line
//! end. Turning a time into local time means reading the time zone, and a formatter that
//! styles its output goes deep into the stack; a client's thread keeps every stack page it
//! ever touched for as long as it lives, so a broker with five thousand idle connections
//! would pay for that depth five thousand times.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How many log records may wait for the terminal: a few seconds of a busy broker's
/// `info` log, a fraction of a second of `trace`.
pub const QUEUED_RECORDS: usize = 4096;

/// How long a program that ends waits for its last records to be written.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// The logging side: a [`log::Log`] that filters as `RUST_LOG` says (env_logger's filter)
/// and queues each record that passes.
pub struct Queued {
    filter: env_logger::Logger,
    queue: Queue,
}

/// The queue's sending end.
pub struct Queue {
    records: SyncSender<Record>,
    counts: Arc<Counts>,
}

/// One record on its way: what the logging thread knew, not yet a line.
struct Record {
    /// When it was logged, as the clock gives it.
    at: SystemTime,
    /// Its level; `None` for the trace view, whose lines leave the level out so that the
    /// arrows line up.
    level: Option<log::Level>,
    /// The message.
    text: String,
}

impl Record {
    /// The line the terminal shows: local time, level, message.
    fn write_line(&self, out: &mut impl Write) -> io::Result<()> {
        let time = chrono::DateTime::<chrono::Local>::from(self.at).format("%H:%M:%S%.3f");
        match self.level {
            Some(level) => writeln!(out, "{time} {level:<5} {}", self.text),
            None => writeln!(out, "{time}  {}", self.text),
        }
    }
}

/// What both sides count.
#[derive(Debug, Default)]
struct Counts {
    /// Records queued and not written yet.
    waiting: AtomicU64,
    /// Records dropped since the writer last said so.
    dropped: AtomicU64,
}

/// Kept by `main` while the program runs; dropped at its end, it lets the writer finish
/// what is queued (for at most a second).
#[derive(Debug)]
pub struct LogGuard {
    counts: Arc<Counts>,
}

/// The queue, and the `log-writer` thread that empties it into `out`.
///
/// # Errors
/// The thread could not be started.
pub fn queue_to(out: impl Write + Send + 'static) -> io::Result<(Queue, LogGuard)> {
    let (records, queue) = mpsc::sync_channel(QUEUED_RECORDS);
    let counts = Arc::new(Counts::default());
    let writer_counts = Arc::clone(&counts);
    thread::Builder::new()
        .name("log-writer".to_string())
        .spawn(move || write_out(queue, out, &writer_counts))?;
    let guard = LogGuard {
        counts: Arc::clone(&counts),
    };
    Ok((Queue { records, counts }, guard))
}

impl Queued {
    /// Logs what `filter` lets through into `queue`.
    pub fn new(filter: env_logger::Logger, queue: Queue) -> Queued {
        Queued { filter, queue }
    }
}

impl Queue {
    /// Queues one record, or drops and counts it when the queue is full: the terminal is
    /// not reading (or the writer is gone).
    fn push(&self, record: Record) {
        match self.records.try_send(record) {
            Ok(()) => {
                self.counts.waiting.fetch_add(1, Ordering::AcqRel);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl log::Log for Queued {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let trace = record.target() == crate::trace::TARGET;
        self.queue.push(Record {
            at: SystemTime::now(),
            level: (!trace).then_some(record.level()),
            text: record.args().to_string(),
        });
    }

    fn flush(&self) {}
}

/// The `log-writer` thread: writes each record, then, if any were dropped meanwhile, says
/// how many. It ends when the program does.
///
/// Each line is put together first and written whole, with one `write`: stderr is not
/// buffered, and `writeln!` straight into it made a system call per piece of the line (the
/// time, the level and its padding, the message, the line end): 2,448 for 407 lines of a
/// broker at `RUST_LOG=debug` (counted with `strace -e trace=write`), now 407.
fn write_out(queue: Receiver<Record>, mut out: impl Write, counts: &Counts) {
    let mut line = Vec::new();
    for record in queue {
        line.clear();
        let _ = record.write_line(&mut line);
        // A terminal that went away for good: nothing to do but keep the queue moving.
        let _ = out.write_all(&line);
        counts.waiting.fetch_sub(1, Ordering::AcqRel);
        let dropped = counts.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            line.clear();
            let time = chrono::Local::now().format("%H:%M:%S%.3f");
            let _ = writeln!(
                line,
                "{time} WARN  {dropped} log record(s) dropped while the terminal was not \
                 reading"
            );
            let _ = out.write_all(&line);
        }
        let _ = out.flush();
    }
}

impl LogGuard {
    /// Waits (for at most a second) until what was logged so far is written: before a
    /// program prints to stdout a line that must come after it on a terminal that shows
    /// both (the broker's `listening on` line, after its start-up records).
    pub fn settle(&self) {
        let deadline = Instant::now() + LAST_WORDS;
        while self.counts.waiting.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A terminal that takes nothing until told to, then everything.
    #[derive(Clone, Default)]
    struct Paused {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        seen: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Paused {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let (open, changed) = &*self.open;
            let mut guard = open.lock().unwrap();
            while !*guard {
                guard = changed.wait(guard).unwrap();
            }
            self.seen.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A terminal that keeps every `write` apart, as stderr's unbuffered writes are.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Each record reaches the terminal in one `write` of a whole line: one system call per
    /// line, not one per piece of it.
    #[test]
    fn each_record_is_one_write_of_a_whole_line() {
        let terminal = Writes::default();
        let (queued, guard) = queue_to(terminal.clone()).unwrap();
        for (n, level) in [Some(log::Level::Warn), None, Some(log::Level::Debug)]
            .into_iter()
            .enumerate()
        {
            queued.push(Record {
                at: SystemTime::now(),
                level,
                text: format!("record {n}"),
            });
        }
        // The writer thread may be slow to start on a busy machine: wait for its three
        // writes (or more, which the assertions below refuse), not for a fixed time.
        let deadline = Instant::now() + Duration::from_secs(10);
        while terminal.0.lock().unwrap().len() < 3 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        drop(guard);
        let writes = terminal.0.lock().unwrap().clone();
        let lines: Vec<String> = writes
            .iter()
            .map(|write| String::from_utf8(write.clone()).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        for (n, line) in lines.iter().enumerate() {
            assert!(line.ends_with(&format!(" record {n}\n")), "{line:?}");
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        }
    }

    /// While the terminal is paused, logging returns at once and the overflow is counted;
    /// once it reads again, the count is said.
    #[test]
    fn a_paused_terminal_drops_and_counts_never_blocks() {
        let terminal = Paused::default();
        let (queued, guard) = queue_to(terminal.clone()).unwrap();
        let total = QUEUED_RECORDS + 100;
        for n in 0..total {
            // Would block forever here if a push waited for the terminal.
            queued.push(Record {
                at: SystemTime::now(),
                level: Some(log::Level::Info),
                text: format!("record {n}"),
            });
        }
        // The writer holds one record in hand; the queue holds the next QUEUED_RECORDS.
        let dropped = queued.counts.dropped.load(Ordering::Relaxed);
        assert!((99..=100).contains(&dropped), "{dropped} dropped");
        {
            let (open, changed) = &*terminal.open;
            *open.lock().unwrap() = true;
            changed.notify_all();
        }
        drop(guard); // waits for the queue to be written out
        let seen = String::from_utf8(terminal.seen.lock().unwrap().clone()).unwrap();
        let first = seen.lines().next().unwrap_or_default();
        assert!(first.ends_with(" INFO  record 0"), "{first}");
        assert!(
            seen.contains(&format!("WARN  {dropped} log record(s) dropped")),
            "no count of the dropped records"
        );
    }
}
