//! The hostile classroom, measured: what stalled subscribers, a crowd leaving at once, and
//! a huge `TOPICS` cost everyone else. Each scenario keeps an unrelated *pair* (or the
//! topic's healthy subscriber) talking throughout, and reports the longest it had to
//! wait, beside the broker's memory where that is the point.
//!
//! | scenario | setup | figures |
//! |---|---|---|
//! | `stalled` | `--stalled K` subscribers that never read, one healthy one, on one topic; a publisher sends `--msgs` messages of `--size` bytes, each followed by a `PING` | the healthy subscriber's longest wait, the publisher's longest wait for its `PONG`, when the stalled ones were cut off |
//! | `leave` | `--conns C` connections each subscribed to the same `--topics T` topics (`--unique`: each its own) | time to join, time for the registry to empty when all close at once, the pair's longest wait, memory before and after |
//! | `topics` | connections with 1024 topics each, `--topics N` in all | a `TOPICS` and a `STATS` on that registry: their time and size, the pair's longest wait, memory after the listing and after everyone left |

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::report::{Memory, Outcome};
use crate::target::Target;

/// Topics each connection of `topics` subscribes to: the broker's default limit.
pub const TOPICS_PER_CONN: usize = 1024;

/// How often the pair's publisher sends.
const PAIR_EVERY: Duration = Duration::from_millis(1);

/// One connection of a scenario, read line by line with a time limit.
pub struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let writer = TcpStream::connect(addr)?;
        writer.set_read_timeout(Some(timeout))?;
        writer.set_nodelay(true)?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(Conn { writer, reader })
    }

    fn send(&mut self, text: &str) -> io::Result<()> {
        self.writer.write_all(text.as_bytes())
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches('\n').to_string())
    }

    /// Reads lines until `wanted` one, skipping others.
    fn until(&mut self, wanted: &str) -> io::Result<()> {
        while self.line()? != wanted {}
        Ok(())
    }

    /// One `STATS` counter.
    fn stat(&mut self, name: &str) -> io::Result<u64> {
        self.send("STATS\n")?;
        let prefix = format!("STATS {name} ");
        let mut value = None;
        loop {
            let line = self.line()?;
            if line == "END STATS" {
                return value.ok_or_else(|| io::Error::other(format!("no counter {name}")));
            }
            if let Some(rest) = line.strip_prefix(&prefix) {
                value = rest.parse().ok();
            }
        }
    }
}

fn failed(what: &str) -> impl Fn(io::Error) -> String + '_ {
    move |error| format!("{what}: {error}")
}

/// A publisher and a subscriber of their own topic, talking every millisecond while the
/// scenario runs: the longest gap between two of its messages is how long the broker made
/// an unrelated client wait.
struct Pair {
    stop: Arc<AtomicBool>,
    talker: JoinHandle<io::Result<u64>>,
    listener: JoinHandle<io::Result<(u64, Duration)>>,
}

impl Pair {
    fn start(addr: SocketAddr, timeout: Duration) -> Result<Pair, String> {
        let mut listener = Conn::open(addr, timeout).map_err(failed("the pair's subscriber"))?;
        listener
            .send("SUBSCRIBE pair listener\nPING ready\n")
            .and_then(|()| listener.until("PONG ready"))
            .map_err(failed("the pair's subscriber"))?;
        let mut talker = Conn::open(addr, timeout).map_err(failed("the pair's publisher"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let talker = thread::spawn(move || {
            let mut sent = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                talker.send(&format!("PUBLISH pair {sent} talker\n"))?;
                sent += 1;
                thread::sleep(PAIR_EVERY);
            }
            talker.send("PUBLISH pair end talker\n")?;
            Ok(sent)
        });
        let listener = thread::spawn(move || {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            let mut seen = 0u64;
            loop {
                let line = listener.line()?;
                longest = longest.max(last.elapsed());
                last = Instant::now();
                if line.starts_with("DELIVER pair end ") {
                    return Ok((seen, longest));
                }
                seen += 1;
            }
        });
        Ok(Pair {
            stop,
            talker,
            listener,
        })
    }

    /// Stops the pair; returns its longest wait, and a note if it lost anything.
    fn finish(self) -> Result<(Duration, Option<String>), String> {
        self.stop.store(true, Ordering::Relaxed);
        let sent = join(self.talker, "the pair's publisher")?;
        let (seen, longest) = join(self.listener, "the pair's subscriber")?;
        let lost = (seen != sent).then(|| format!("the pair lost {} of {sent}", sent - seen));
        Ok((longest, lost))
    }
}

fn join<T>(thread: JoinHandle<io::Result<T>>, what: &str) -> Result<T, String> {
    thread
        .join()
        .map_err(|_| format!("{what} panicked"))?
        .map_err(failed(what))
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

fn outcome(workload: &'static str, setup: String, target: &Target) -> Outcome {
    Outcome {
        workload,
        setup,
        target: target.label.clone(),
        published: 0,
        expected: 0,
        delivered: 0,
        disorder: 0,
        seconds: 0.0,
        rate: None,
        latency: None,
        memory: None,
        timed_out: false,
        notes: Vec::new(),
        lossy: false,
    }
}

/// A subscriber that never reads: subscribed, and its `PONG` arrived, unread.
fn stalled(addr: SocketAddr, n: usize) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(format!("SUBSCRIBE room stalled{n}\nPING\n").as_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut peeked = [0u8; 5];
    while stream.peek(&mut peeked)? < 5 {
        if Instant::now() > deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(stream)
}

/// `stalled`: see the module docs.
pub fn run_stalled(
    target: &Target,
    stalled_count: usize,
    msgs: u64,
    size: usize,
    timeout: Duration,
) -> Result<Outcome, String> {
    let setup = format!("{stalled_count} stalled, 1 healthy, {msgs} msgs of {size} B");
    let mut result = outcome("stalled", setup, target);
    let stalled: Vec<TcpStream> = (0..stalled_count)
        .map(|n| stalled(target.addr, n))
        .collect::<io::Result<_>>()
        .map_err(failed("a stalled subscriber"))?;
    let mut healthy = Conn::open(target.addr, timeout).map_err(failed("the healthy subscriber"))?;
    healthy
        .send("SUBSCRIBE room healthy\nPING ready\n")
        .and_then(|()| healthy.until("PONG ready"))
        .map_err(failed("the healthy subscriber"))?;
    let reader = thread::spawn(move || -> io::Result<(u64, Duration)> {
        let mut longest = Duration::ZERO;
        let mut last = Instant::now();
        for n in 0..msgs {
            let line = healthy.line()?;
            longest = longest.max(last.elapsed());
            last = Instant::now();
            if !line.starts_with(&format!("DELIVER room {n}-")) {
                return Ok((n, longest));
            }
        }
        Ok((msgs, longest))
    });
    let mut publisher = Conn::open(target.addr, timeout).map_err(failed("the publisher"))?;
    let body = "x".repeat(size);
    let started = Instant::now();
    let mut publisher_longest = Duration::ZERO;
    for n in 0..msgs {
        let sent = Instant::now();
        publisher
            .send(&format!("PUBLISH room {n}-{body} pub\nPING {n}\n"))
            .and_then(|()| publisher.until(&format!("PONG {n}")))
            .map_err(failed("the publisher"))?;
        publisher_longest = publisher_longest.max(sent.elapsed());
    }
    let published_in = started.elapsed();
    let (received, healthy_longest) = join(reader, "the healthy subscriber")?;
    let mut cut_off = 0;
    let mut cut_off_in = None;
    while started.elapsed() < timeout {
        cut_off = publisher
            .stat("slow_consumers_disconnected")
            .map_err(failed("STATS"))?;
        if cut_off as usize >= stalled_count {
            cut_off_in = Some(started.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    drop(stalled);
    result.published = msgs;
    result.expected = msgs;
    result.delivered = received;
    result.seconds = published_in.as_secs_f64();
    result.notes.push(format!(
        "healthy subscriber: longest wait {}; publisher: longest wait for its PONG {}",
        millis(healthy_longest),
        millis(publisher_longest)
    ));
    result.notes.push(match cut_off_in {
        Some(after) => format!(
            "all {stalled_count} stalled cut off {:.2} s after publishing began",
            after.as_secs_f64()
        ),
        None => format!("{cut_off} of {stalled_count} stalled cut off within the timeout"),
    });
    Ok(result)
}

/// Opens `conns` connections, each subscribed to `topics` topics named by `name`, and
/// returns them once every one is in place.
pub fn crowd(
    addr: SocketAddr,
    conns: usize,
    topics: usize,
    name: impl Fn(usize, usize) -> String,
    timeout: Duration,
) -> Result<Vec<Conn>, String> {
    let mut crowd = Vec::with_capacity(conns);
    for conn in 0..conns {
        let mut joining = Conn::open(addr, timeout).map_err(failed("a member of the crowd"))?;
        let lines: String = (0..topics)
            .map(|topic| format!("SUBSCRIBE {} m{conn}\n", name(conn, topic)))
            .chain(std::iter::once("PING joined\n".to_string()))
            .collect();
        joining
            .send(&lines)
            .map_err(failed("a member of the crowd"))?;
        crowd.push(joining);
        // A window of unanswered connections, so that none waits in the listen backlog.
        let open = crowd.len();
        if open % 50 == 0 {
            for member in &mut crowd[open - 50..] {
                member.until("PONG joined").map_err(failed("joining"))?;
            }
        }
    }
    let done = crowd.len() - crowd.len() % 50;
    for member in &mut crowd[done..] {
        member.until("PONG joined").map_err(failed("joining"))?;
    }
    Ok(crowd)
}

/// Closes every member of the crowd at once, then waits until the registry holds only
/// `remaining` subscriptions. Returns how long that took.
fn leave(
    crowd: Vec<Conn>,
    control: &mut Conn,
    remaining: u64,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    for member in &crowd {
        let _ = member.writer.shutdown(Shutdown::Both);
    }
    drop(crowd);
    loop {
        let left = control.stat("subscriptions").map_err(failed("STATS"))?;
        if left <= remaining {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            return Err(format!("{left} subscriptions were left after {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn kib(value: Option<u64>) -> String {
    value.map_or_else(|| "?".to_string(), |kib| format!("{} MiB", kib / 1024))
}

/// `leave`: see the module docs.
pub fn run_leave(
    target: &Target,
    conns: usize,
    topics: usize,
    unique: bool,
    timeout: Duration,
) -> Result<Outcome, String> {
    let kind = if unique { "unique" } else { "shared" };
    let mut result = outcome(
        "leave",
        format!("{conns} conns x {topics} {kind} topics"),
        target,
    );
    let before = target.rss_kib();
    let pair = Pair::start(target.addr, timeout)?;
    let joined = Instant::now();
    let name = move |conn: usize, topic: usize| {
        if unique {
            format!("c{conn}-t{topic}")
        } else {
            format!("shared-{topic}")
        }
    };
    let crowd = crowd(target.addr, conns, topics, name, timeout)?;
    let joined_in = joined.elapsed();
    let (join_wait, join_lost) = pair.finish()?;
    let with_crowd = target.rss_kib();
    let pair = Pair::start(target.addr, timeout)?;
    let mut control = Conn::open(target.addr, timeout).map_err(failed("the control connection"))?;
    thread::sleep(Duration::from_millis(100));
    let emptied_in = leave(crowd, &mut control, 1, timeout)?;
    thread::sleep(Duration::from_millis(100));
    let (longest, lost) = pair.finish()?;
    let after = target.rss_kib();
    result.seconds = emptied_in.as_secs_f64();
    result.memory = Some(Memory {
        conns,
        before_kib: before,
        after_kib: with_crowd,
        threads: None,
    });
    result.notes.push(format!(
        "joined in {:.2} s (the pair's longest wait {}); emptied in {:.2} s when all closed \
         at once (the pair's longest wait {})",
        joined_in.as_secs_f64(),
        millis(join_wait),
        emptied_in.as_secs_f64(),
        millis(longest)
    ));
    result.notes.push(format!(
        "broker memory: {} before, {} with the crowd, {} after it left",
        kib(before),
        kib(with_crowd),
        kib(after)
    ));
    result.notes.extend(join_lost);
    result.notes.extend(lost);
    Ok(result)
}

/// `topics`: see the module docs.
pub fn run_topics(target: &Target, topics: usize, timeout: Duration) -> Result<Outcome, String> {
    let conns = topics.div_ceil(TOPICS_PER_CONN);
    let mut result = outcome(
        "topics",
        format!("{topics} topics on {conns} conns"),
        target,
    );
    let before = target.rss_kib();
    let name = |conn: usize, topic: usize| format!("c{conn}-t{topic}");
    let crowd = crowd(target.addr, conns, TOPICS_PER_CONN, name, timeout)?;
    let with_topics = target.rss_kib();
    let pair = Pair::start(target.addr, timeout)?;
    let mut asker = Conn::open(target.addr, timeout).map_err(failed("the TOPICS connection"))?;
    thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    asker.send("TOPICS\n").map_err(failed("TOPICS"))?;
    let mut listed = 0u64;
    while asker.line().map_err(failed("TOPICS"))? != "END TOPICS" {
        listed += 1;
    }
    let topics_in = asked.elapsed();
    let asked = Instant::now();
    asker.stat("subscriptions").map_err(failed("STATS"))?;
    let stats_in = asked.elapsed();
    thread::sleep(Duration::from_millis(100));
    let after_listing = target.rss_kib();
    let (longest, lost) = pair.finish()?;
    let mut control = asker;
    leave(crowd, &mut control, 0, timeout)?;
    thread::sleep(Duration::from_millis(200));
    let after = target.rss_kib();
    result.notes.push(format!(
        "TOPICS: {listed} lines in {}; STATS in {}; the pair's longest wait {}",
        millis(topics_in),
        millis(stats_in),
        millis(longest)
    ));
    result.notes.push(format!(
        "broker memory: {} before, {} with the topics, {} after the listing (its reader still \
         connected), {} after everyone left",
        kib(before),
        kib(with_topics),
        kib(after_listing),
        kib(after)
    ));
    result.notes.extend(lost);
    Ok(result)
}
