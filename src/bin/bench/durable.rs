//! Durable subscriptions, measured: what acknowledgements, the log and each `--fsync`
//! policy cost, and how long a broker takes to start from a big log.
//!
//! | scenario | setup | figures |
//! |---|---|---|
//! | `durable` | one publisher with confirms (`VERBOSE on`, at most [`WINDOW`] unconfirmed at a time) into `--subs` (10) durable subscribers that acknowledge every message; a broker with `--data-dir` and `--fsync P`, one run per policy | acknowledged deliveries per second; confirmed messages per second; order and loss checked per subscriber |
//! | `restart` | a log of `--msgs` (1,000,000) messages held for one durable subscription; the broker is killed and started again | the time from start to listening (the replay), and the log's size |
//!
//! The publisher keeps a window of publishes in flight, as NATS JetStream's asynchronous
//! publish does: a publisher that waited for each confirm before the next would measure
//! round trips, not the broker. The subscribers acknowledge in bursts: every `ACK` for
//! the lines one `read` brought, in one write.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::report::Outcome;
use crate::target::{Target, TargetKind};

/// How many publishes the publisher sends ahead of their confirms.
pub const WINDOW: u64 = 256;

/// The topic every durable subscriber takes.
const TOPIC: &str = "bench/durable";

/// A data directory of the bench's own, empty, for one run.
pub fn fresh_data_dir(name: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("pubsub-lab-bench-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Bytes and segments in a log directory.
fn log_size(dir: &Path) -> (u64, usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(bytes, files), m| (bytes + m.len(), files + 1))
}

struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let writer = TcpStream::connect(addr)?;
        writer.set_read_timeout(Some(timeout))?;
        writer.set_nodelay(true)?;
        let reader = BufReader::with_capacity(256 * 1024, writer.try_clone()?);
        Ok(Conn { writer, reader })
    }

    fn line(&mut self, line: &mut String) -> io::Result<()> {
        line.clear();
        if self.reader.read_line(line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line.ends_with('\n') {
            line.pop();
        }
        Ok(())
    }

    fn expect(&mut self, wanted: &str) -> io::Result<()> {
        let mut line = String::new();
        self.line(&mut line)?;
        if line == wanted {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "expected {wanted:?}, got {line:?}"
            )))
        }
    }
}

/// One `STATS` counter of the broker at `addr`.
fn stat(addr: SocketAddr, name: &str, timeout: Duration) -> io::Result<u64> {
    let mut conn = Conn::open(addr, timeout)?;
    conn.writer.write_all(b"STATS\n")?;
    let prefix = format!("STATS {name} ");
    let mut line = String::new();
    let mut value = None;
    loop {
        conn.line(&mut line)?;
        if line == "END STATS" {
            return value.ok_or_else(|| io::Error::other(format!("no counter {name}")));
        }
        if let Some(rest) = line.strip_prefix(&prefix) {
            value = rest.parse().ok();
        }
    }
}

fn failed(what: &str) -> impl Fn(io::Error) -> String + '_ {
    move |error| format!("{what}: {error}")
}

/// What one subscriber saw.
struct Received {
    messages: u64,
    disorder: u64,
    last: Instant,
}

/// A durable subscriber that acknowledges every message, until `expected` arrived.
fn subscriber(mut conn: Conn, expected: u64) -> JoinHandle<io::Result<Received>> {
    thread::spawn(move || {
        let mut got = Received {
            messages: 0,
            disorder: 0,
            last: Instant::now(),
        };
        let mut line = String::new();
        let mut acks = Vec::new();
        let mut next = 0u64;
        while got.messages < expected {
            conn.line(&mut line)?;
            let Some(rest) = line.strip_prefix("MESSAGE ") else {
                return Err(io::Error::other(format!("unexpected line {line:?}")));
            };
            let (seq, rest) = rest.split_once(' ').unwrap_or_default();
            // The message is `<n>-<padding>`, after the topic.
            let n = rest
                .split(' ')
                .nth(1)
                .and_then(|m| m.split('-').next())
                .and_then(|n| n.parse::<u64>().ok());
            if n != Some(next) {
                got.disorder += 1;
            }
            next = n.map_or(next, |n| n + 1);
            got.messages += 1;
            acks.extend_from_slice(b"ACK ");
            acks.extend_from_slice(seq.as_bytes());
            acks.push(b'\n');
            if conn.reader.buffer().is_empty() {
                conn.writer.write_all(&acks)?;
                acks.clear();
            }
        }
        conn.writer.write_all(&acks)?;
        got.last = Instant::now();
        Ok(got)
    })
}

/// Publishes `msgs` messages with confirms, [`WINDOW`] ahead. Returns when the last
/// confirm came.
fn publish_confirmed(
    addr: SocketAddr,
    msgs: u64,
    size: usize,
    timeout: Duration,
) -> Result<Instant, String> {
    let mut conn = Conn::open(addr, timeout).map_err(failed("the publisher"))?;
    conn.writer
        .write_all(b"VERBOSE on\n")
        .and_then(|()| conn.expect("OK VERBOSE on"))
        .map_err(failed("the publisher"))?;
    let padding = "x".repeat(size.saturating_sub(12).max(1));
    let (mut sent, mut confirmed) = (0u64, 0u64);
    let mut out = Vec::new();
    let mut line = String::new();
    while confirmed < msgs {
        out.clear();
        while sent < msgs && sent - confirmed < WINDOW {
            let _ = writeln!(out, "PUBLISH {TOPIC} {sent}-{padding} bench");
            sent += 1;
        }
        if !out.is_empty() {
            conn.writer.write_all(&out).map_err(failed("publishing"))?;
        }
        loop {
            conn.line(&mut line)
                .map_err(failed("waiting for confirms"))?;
            if line.starts_with("OK PUBLISH ") {
                confirmed += 1;
            } else {
                return Err(format!("instead of a confirm: {line}"));
            }
            if conn.reader.buffer().is_empty() {
                break;
            }
        }
    }
    Ok(Instant::now())
}

/// `durable`: see the module docs. `policy` names the `--fsync` the target was started
/// with; `dir` is its data directory.
pub fn run_durable(
    target: &Target,
    subs: usize,
    msgs: u64,
    size: usize,
    policy: &str,
    dir: &Path,
    timeout: Duration,
) -> Result<Outcome, String> {
    let mut outcome = Outcome {
        workload: "durable",
        setup: format!("{subs} durable subs, fsync {policy}"),
        target: target.label.clone(),
        published: msgs,
        expected: msgs * subs as u64,
        delivered: 0,
        disorder: 0,
        seconds: 0.0,
        rate: None,
        latency: None,
        memory: None,
        timed_out: false,
        notes: Vec::new(),
        lossy: false,
    };
    let mut readers = Vec::new();
    for i in 0..subs {
        let mut conn = Conn::open(target.addr, timeout).map_err(failed("a subscriber"))?;
        conn.writer
            .write_all(format!("DURABLE {TOPIC} sub{i}\n").as_bytes())
            .and_then(|()| conn.expect(&format!("OK DURABLE {TOPIC} 0")))
            .map_err(failed("a subscriber"))?;
        readers.push(subscriber(conn, msgs));
    }
    let started = Instant::now();
    let confirmed_at = publish_confirmed(target.addr, msgs, size, timeout)?;
    let mut last = confirmed_at;
    for reader in readers {
        match reader.join() {
            Ok(Ok(got)) => {
                outcome.delivered += got.messages;
                outcome.disorder += got.disorder;
                last = last.max(got.last);
            }
            Ok(Err(error)) => outcome.notes.push(format!("a subscriber stopped: {error}")),
            Err(_) => outcome.notes.push("a subscriber panicked".to_string()),
        }
    }
    outcome.seconds = (last - started).as_secs_f64();
    outcome.rate = Some(outcome.delivered as f64 / outcome.seconds);
    let confirm_rate = msgs as f64 / (confirmed_at - started).as_secs_f64();
    let (bytes, files) = log_size(dir);
    let fsyncs = stat(target.addr, "durable_fsyncs", timeout).unwrap_or(0);
    let fsynced = if fsyncs == 0 {
        "no fsync during the run".to_string()
    } else {
        format!(
            "{fsyncs} fsyncs ({:.0} messages each)",
            msgs as f64 / fsyncs as f64
        )
    };
    outcome.notes.push(format!(
        "{confirm_rate:.0} confirmed messages/s; every delivery acknowledged; {fsynced}; log \
         now {:.1} MiB in {files} segment(s)",
        bytes as f64 / (1024.0 * 1024.0)
    ));
    let _ = fs::remove_dir_all(dir);
    Ok(outcome)
}

/// `restart`: see the module docs.
pub fn run_restart(
    kind: &TargetKind,
    msgs: u64,
    size: usize,
    timeout: Duration,
) -> Result<Outcome, String> {
    let dir = fresh_data_dir("restart")?;
    let flags = vec![
        "--data-dir".to_string(),
        dir.display().to_string(),
        "--fsync".to_string(),
        "never".to_string(),
        "--max-queued".to_string(),
        msgs.max(1).to_string(),
    ];
    let filled = {
        let target = Target::start_with(kind, 16, &flags)?;
        let mut conn = Conn::open(target.addr, timeout).map_err(failed("the subscriber"))?;
        conn.writer
            .write_all(format!("DURABLE {TOPIC} sub0\nQUIT\n").as_bytes())
            .and_then(|()| conn.expect(&format!("OK DURABLE {TOPIC} 0")))
            .map_err(failed("the subscriber"))?;
        let started = Instant::now();
        publish_confirmed(target.addr, msgs, size, timeout)?;
        started.elapsed()
        // The broker is killed here, as a crash would.
    };
    let (bytes, files) = log_size(&dir);
    let started = Instant::now();
    let target = Target::start_with(kind, 16, &flags)?;
    let restart = started.elapsed();
    let mut conn = Conn::open(target.addr, timeout).map_err(failed("the subscriber"))?;
    conn.writer
        .write_all(format!("DURABLE {TOPIC} sub0\n").as_bytes())
        .and_then(|()| conn.expect(&format!("OK DURABLE {TOPIC} {msgs}")))
        .map_err(failed("after the restart"))?;
    drop(conn);
    drop(target);
    let _ = fs::remove_dir_all(&dir);
    Ok(Outcome {
        workload: "restart",
        setup: format!("log of {msgs} messages"),
        target: kind.label(),
        published: msgs,
        expected: 0,
        delivered: 0,
        disorder: 0,
        seconds: restart.as_secs_f64(),
        rate: None,
        latency: None,
        memory: None,
        timed_out: false,
        lossy: false,
        notes: vec![format!(
            "started again in {:.2} s from {:.0} MiB in {files} segment(s), every message \
             pending; filling it took {:.1} s ({:.0} confirmed messages/s, fsync never)",
            restart.as_secs_f64(),
            bytes as f64 / (1024.0 * 1024.0),
            filled.as_secs_f64(),
            msgs as f64 / filled.as_secs_f64()
        )],
    })
}
