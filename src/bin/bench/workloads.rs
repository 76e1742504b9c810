//! The workloads: who connects, who publishes what, and what counts as arrived.
//!
//! Four of them are one shape, a [`Flow`]: some topics, each with its own publishers and
//! subscribers.
//!
//! | workload | topics | publishers per topic | subscribers per topic | pacing |
//! |---|---|---|---|---|
//! | `fanout` | 1 | 1 | `--subs` | as fast as possible |
//! | `fanin` | 1 | `--pubs` | 1 | as fast as possible |
//! | `pairs` | `--pairs` | 1 | 1 | as fast as possible |
//! | `latency` | 1 | 1 | `--subs` | `--rate` messages/s |
//! | `wildcard` | [`ROOMS`] topics `room/<n>/temp`, in turn | 1 | `--subs`, all on `room/+/temp` | as fast as possible |
//!
//! A run goes: open every subscriber and make sure it is subscribed (see
//! [`open_subscribers`]); connect every publisher; start them all at one instant; wait
//! until every subscriber has all it expects, or the timeout. Each subscriber has a thread
//! that reads big chunks and takes the time once per chunk: every line in a chunk arrived
//! together. Publishers build many lines in a buffer and write it in one call, so the
//! bench client is not what limits the figures.
//!
//! `json-fan` is `fanout` with subscribers that speak kn-sock's JSON lines, to set the
//! cost of the JSON dialect beside the line protocol's. `udp` is one publisher sending
//! datagrams at `--rate` to TCP subscribers: its publishes per second, and what was lost
//! ([`run_udp`]).
//!
//! `wsfanout` is `fanout` with WebSocket subscribers (at the broker's web port, one
//! `DELIVER` line per text frame), the publisher still on TCP: the difference is what the
//! web costs a subscriber. `http` (in `web.rs`) publishes over HTTP instead.
//!
//! The fifth, `conns`, is different: many idle subscribers held by one thread, the
//! target's memory before and after, then probes that must each arrive ([`run_conns`]).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::measure::{nanos_since, parse_stamp, write_publish, Histogram, Tally};
use crate::report::{Memory, Outcome, Progress};
use crate::target::{sleep_until, SyncMethod, Target, AUTH_SECRET};
use pubsub_lab::web::client::WebSocketClient;
use pubsub_lab::web::websocket::{self, Decoder, Message, Opcode};

/// A publisher writes once it has this many bytes of lines ready: big enough that the
/// system call is a small part of the cost, small enough to start flowing at once.
const BATCH_BYTES: usize = 64 * 1024;

/// Connections opened before waiting for their `PONG`s: below the listen backlog (128 on
/// Linux for `std`), so no connection attempt is dropped and retried a second later.
const OPEN_WINDOW: usize = 100;

/// Stack of the bench's own subscriber and publisher threads; their buffers are on the heap.
const THREAD_STACK: usize = 256 * 1024;

/// How many messages `conns` sends to random idle subscribers.
pub const PROBES: usize = 100;

/// Seed of the random choice of probed topics: fixed, so every run probes the same ones.
const PROBE_SEED: u64 = 0x5eed_0fc0_ffee;

/// The five workloads a run can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// One publisher, many subscribers on one topic.
    Fanout,
    /// Many publishers into one subscriber.
    Fanin,
    /// Independent publisher/subscriber pairs, a topic each.
    Pairs,
    /// Fan-out at a fixed rate, for latency.
    Latency,
    /// Idle connections: memory and reachability.
    Conns,
    /// Fan-out through one wildcard filter, to topics that change with every message.
    Wildcard,
    /// Fan-out to subscribers that speak kn-sock's JSON lines.
    JsonFanout,
    /// Datagrams from one publisher at a rate, to TCP subscribers.
    Udp,
    /// Fan-out to WebSocket subscribers.
    WsFanout,
    /// Fan-out to Socket.IO subscribers, over WebSocket.
    SioFanout,
}

impl Workload {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fanout => "fanout",
            Workload::Fanin => "fanin",
            Workload::Pairs => "pairs",
            Workload::Latency => "latency",
            Workload::Conns => "conns",
            Workload::Wildcard => "wildcard",
            Workload::JsonFanout => "json-fan",
            Workload::Udp => "udp",
            Workload::WsFanout => "wsfanout",
            Workload::SioFanout => "siofanout",
        }
    }
}

/// How many topics `wildcard` publishes to, one after another: a sensor network's rooms.
pub const ROOMS: u64 = 10;

/// Topics, each with its publishers and subscribers. See the module docs.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Which workload this is, for reports.
    pub workload: Workload,
    /// Number of topics.
    pub topics: usize,
    /// Publishers on each topic.
    pub pubs: usize,
    /// Subscribers on each topic.
    pub subs: usize,
    /// Messages each publisher sends.
    pub msgs: u64,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages per second per publisher, or `None` for as fast as possible.
    pub rate: Option<f64>,
    /// The subscribers speak kn-sock's JSON lines.
    pub json: bool,
    /// Where the publishers connect, if not to the target: another broker bridged to the
    /// target through NATS (`--publish-addr`), to measure delivery across brokers.
    pub publish_addr: Option<std::net::SocketAddr>,
}

impl Flow {
    /// The parameters, as a report shows them.
    pub fn describe(&self) -> String {
        let each = if self.topics * self.pubs > 1 {
            " each"
        } else {
            ""
        };
        let shape = match self.workload {
            Workload::Fanin => format!("{} pubs", self.pubs),
            Workload::Pairs => format!("{} pairs", self.topics),
            _ if self.json => format!("{} JSON subs", self.subs),
            Workload::WsFanout => format!("{} WebSocket subs", self.subs),
            Workload::SioFanout => format!("{} Socket.IO subs", self.subs),
            _ => format!("{} subs", self.subs),
        };
        let rate = self
            .rate
            .map_or_else(String::new, |rate| format!(" at {rate}/s"));
        format!("{shape}, {} msgs{each}{rate}, {} B", self.msgs, self.size)
    }

    /// Every connection the run opens at once.
    pub fn connections(&self) -> usize {
        self.topics * (self.pubs + self.subs)
    }

    fn expected_per_subscriber(&self) -> u64 {
        self.pubs as u64 * self.msgs
    }

    /// What the subscribers of topic number `topic` subscribe to.
    fn subscriber_topic(&self, topic: usize) -> String {
        match self.workload {
            Workload::Wildcard => "room/+/temp".to_string(),
            _ => topic_name(topic),
        }
    }

    /// Where the publishers of topic number `topic` publish, message `seq` to entry
    /// `seq % len`: made once, so that the bench's own publishers do not format a topic
    /// per message.
    fn publish_topics(&self, topic: usize) -> Vec<String> {
        match self.workload {
            Workload::Wildcard => (0..ROOMS).map(|room| format!("room/{room}/temp")).collect(),
            _ => vec![topic_name(topic)],
        }
    }
}

/// Runs one flow against `target`, bounded by `timeout`.
pub fn run_flow(target: &Target, flow: &Flow, timeout: Duration) -> Result<Outcome, String> {
    let base = Instant::now();
    let deadline = base + timeout;
    let label = format!("{} on {}", flow.workload.name(), target.label);
    let mut progress = Progress::new(&label, base);
    let mut notes = sync_notes(target);

    let subscriber_topics: Vec<String> = (0..flow.topics)
        .flat_map(|topic| (0..flow.subs).map(move |_| flow.subscriber_topic(topic)))
        .collect();
    let via = match flow.workload {
        Workload::WsFanout => Via::WebSocket,
        Workload::SioFanout => Via::SocketIo,
        _ if flow.json => Via::Json,
        _ => Via::Lines,
    };
    let readers = open_subscribers(target, &subscriber_topics, via, deadline, &mut progress)
        .map_err(|(_, message)| message)?;
    // Every socket of the run, so that a timeout can wake every thread blocked on one.
    let mut sockets = Vec::new();
    let arrived = Arc::new(AtomicU64::new(0));
    let (tallies_tx, tallies) = mpsc::channel();
    let mut subscriber_threads = Vec::new();
    for (index, reader) in readers.into_iter().enumerate() {
        sockets.push(clone_socket(reader.get_ref())?);
        let (tx, arrived) = (tallies_tx.clone(), Arc::clone(&arrived));
        let (pubs, expected) = (flow.pubs, flow.expected_per_subscriber());
        let thread = spawn(format!("bench-sub-{index}"), move || {
            let tally = receive(reader, pubs, expected, base, &arrived);
            let _ = tx.send(tally);
        })?;
        subscriber_threads.push(thread);
    }
    drop(tallies_tx);

    // Every publisher connects first and starts at this one instant.
    let start = Instant::now() + Duration::from_millis(20);
    let publisher_threads = start_publishers(target, flow, base, start, &mut sockets)?;

    let total_expected = flow.expected_per_subscriber() * subscriber_topics.len() as u64;
    let expected_tallies = subscriber_threads.len();
    let waited = wait_for_tallies(
        &tallies,
        expected_tallies,
        deadline,
        |done| progress.update(done, total_expected, "deliveries"),
        &arrived,
    );
    progress.finish();
    let (mut tally, timed_out) = (waited.0, waited.1);
    if timed_out {
        // Shutting the sockets down wakes every thread blocked on them, so each reports
        // what it has and ends.
        for socket in &sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
        notes.push(format!(
            "timed out after {}: the figures are for what arrived",
            pubsub_lab::config::format_duration(timeout)
        ));
    }
    for one in tallies.iter() {
        tally.merge(&one);
    }
    join_all(subscriber_threads);
    let mut published = 0;
    for thread in publisher_threads {
        match thread.join() {
            Ok((sent, None)) => published += sent,
            Ok((sent, Some(error))) => {
                published += sent;
                if !timed_out {
                    notes.push(format!("a publisher stopped: {error}"));
                }
            }
            Err(_) => notes.push("a publisher thread panicked".to_string()),
        }
    }

    let start_ns = start.duration_since(base).as_nanos() as u64;
    let seconds = tally.last_arrival_ns.saturating_sub(start_ns) as f64 / 1e9;
    let mut outcome = Outcome {
        workload: flow.workload.name(),
        setup: flow.describe(),
        target: target.label.clone(),
        published,
        expected: total_expected,
        delivered: tally.received,
        disorder: tally.disorder,
        seconds,
        rate: (seconds > 0.0).then(|| tally.received as f64 / seconds),
        latency: tally.latency.percentiles(),
        memory: None,
        timed_out,
        notes,
        lossy: false,
    };
    explain_trouble(target, &mut outcome);
    Ok(outcome)
}

/// Connects every publisher of a flow and starts its thread, which waits for `start`.
fn start_publishers(
    target: &Target,
    flow: &Flow,
    base: Instant,
    start: Instant,
    sockets: &mut Vec<TcpStream>,
) -> Result<Vec<JoinHandle<Sent>>, String> {
    let mut threads = Vec::new();
    for topic in 0..flow.topics {
        for index in 0..flow.pubs {
            let stream = TcpStream::connect(flow.publish_addr.unwrap_or(target.addr))
                .map_err(|e| format!("cannot connect publisher {index}: {e}"))?;
            let _ = stream.set_nodelay(true);
            if target.login {
                // The OK AUTH that answers it is never read: one short line.
                (&stream)
                    .write_all(format!("AUTH pub{index} {AUTH_SECRET}\n").as_bytes())
                    .map_err(|e| format!("cannot log publisher {index} in: {e}"))?;
            }
            sockets.push(clone_socket(&stream)?);
            let publisher = Publisher {
                topics: flow.publish_topics(topic),
                index,
                flow: flow.clone(),
                base,
                start,
            };
            let name = format!("bench-pub-{topic}-{index}");
            threads.push(spawn(name, move || publisher.run(stream))?);
        }
    }
    Ok(threads)
}

/// Merges subscribers' tallies as they finish, showing progress, until all `count` are in
/// or `deadline` passes. Returns the merged tally and whether the deadline passed.
fn wait_for_tallies(
    tallies: &mpsc::Receiver<Tally>,
    count: usize,
    deadline: Instant,
    mut progress: impl FnMut(u64),
    arrived: &AtomicU64,
) -> (Tally, bool) {
    let mut tally = Tally::default();
    let mut finished = 0;
    while finished < count {
        let now = Instant::now();
        if now >= deadline {
            return (tally, true);
        }
        let wait = (deadline - now).min(Duration::from_millis(200));
        match tallies.recv_timeout(wait) {
            Ok(one) => {
                tally.merge(&one);
                finished += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        progress(arrived.load(Ordering::Relaxed));
    }
    (tally, false)
}

/// Runs `conns`: `conns` idle subscribers, one topic each; the target's memory before and
/// after; then [`PROBES`] messages to random topics, each of which must arrive.
pub fn run_conns(
    target: &Target,
    conns: usize,
    size: usize,
    timeout: Duration,
) -> Result<Outcome, String> {
    check_fd_limit(conns + PROBES)?;
    let base = Instant::now();
    let deadline = base + timeout;
    let mut progress = Progress::new(&format!("conns on {}", target.label), base);
    let mut notes = sync_notes(target);

    let before = target.rss_kib();
    let topics: Vec<String> = (0..conns).map(|i| format!("idle-{i}")).collect();
    let opened = open_subscribers(target, &topics, Via::Lines, deadline, &mut progress);
    progress.finish();
    let opened_in = base.elapsed();
    let (mut readers, failure) = match opened {
        Ok(readers) => (readers, None),
        Err((readers, message)) => (readers, Some(message)),
    };
    notes.push(format!(
        "{} connections opened and subscribed in {:.1}s",
        readers.len(),
        opened_in.as_secs_f64()
    ));
    let memory = Memory {
        conns: readers.len(),
        before_kib: before,
        after_kib: target.rss_kib(),
        threads: target.threads(),
    };
    if let Some(message) = failure {
        // Report what was reached: how far it got and what the target said is the result.
        notes.push(format!(
            "stopped at {} of {conns} connections: {message}",
            readers.len()
        ));
        readers.clear();
    }

    let mut latency = Histogram::default();
    let mut random = XorShift(PROBE_SEED);
    let mut line = Vec::new();
    let mut timed_out = false;
    for seq in 0..PROBES as u64 {
        if readers.is_empty() {
            break;
        }
        let chosen = (random.next() % readers.len() as u64) as usize;
        let mut publisher = TcpStream::connect(target.addr)
            .map_err(|e| format!("cannot connect the probe publisher: {e}"))?;
        let _ = publisher.set_nodelay(true);
        line.clear();
        if target.login {
            line.extend_from_slice(format!("AUTH pub0 {AUTH_SECRET}\n").as_bytes());
        }
        let sent_ns = nanos_since(base);
        write_publish(&mut line, &topics[chosen], 0, seq, sent_ns, size);
        publisher
            .write_all(&line)
            .map_err(|e| format!("cannot send probe {seq}: {e}"))?;
        match wait_for_probe(&mut readers[chosen], seq, base, deadline) {
            Some(arrival_ns) => latency.record(arrival_ns.saturating_sub(sent_ns)),
            None if Instant::now() >= deadline => {
                timed_out = true;
                break;
            }
            None => notes.push(format!("probe {seq} to {} did not arrive", topics[chosen])),
        }
    }
    if timed_out {
        notes.push("timed out: the figures are for what arrived".to_string());
    }
    let mut outcome = Outcome {
        workload: Workload::Conns.name(),
        setup: format!("{conns} conns, {PROBES} probes"),
        target: target.label.clone(),
        published: PROBES as u64,
        expected: PROBES as u64,
        delivered: latency.count(),
        disorder: 0,
        seconds: opened_in.as_secs_f64(),
        rate: None,
        latency: latency.percentiles(),
        memory: Some(memory),
        timed_out,
        notes,
        lossy: false,
    };
    explain_trouble(target, &mut outcome);
    Ok(outcome)
}

/// What a publisher did: messages written, and the error that stopped it early, if any.
type Sent = (u64, Option<io::Error>);

/// One publisher of a flow, run on its own thread.
struct Publisher {
    topics: Vec<String>,
    index: usize,
    flow: Flow,
    base: Instant,
    start: Instant,
}

impl Publisher {
    /// Sends every message; returns how many were written, and the error that stopped it
    /// early, if any.
    fn run(self, mut stream: TcpStream) -> Sent {
        sleep_until(self.start);
        let mut sent = 0;
        let mut buffer = Vec::with_capacity(BATCH_BYTES + 1024);
        let start_ns = nanos_since(self.base);
        while sent < self.flow.msgs {
            buffer.clear();
            let now_ns = nanos_since(self.base);
            let mut next = sent;
            match self.flow.rate {
                None => {
                    while next < self.flow.msgs && buffer.len() < BATCH_BYTES {
                        self.line(&mut buffer, next, now_ns);
                        next += 1;
                    }
                }
                Some(rate) => {
                    // Every message that is due goes now, carrying the time it was *meant*
                    // to leave: if the target held us back, that shows as latency.
                    let due = |seq: u64| start_ns + (seq as f64 * 1e9 / rate) as u64;
                    while next < self.flow.msgs && due(next) <= now_ns {
                        self.line(&mut buffer, next, due(next));
                        next += 1;
                    }
                    if buffer.is_empty() {
                        let wait = due(next).saturating_sub(now_ns);
                        thread::sleep(Duration::from_nanos(wait));
                        continue;
                    }
                }
            }
            if let Err(error) = stream.write_all(&buffer) {
                return (sent, Some(error));
            }
            sent = next;
        }
        (sent, None)
    }

    fn line(&self, buffer: &mut Vec<u8>, seq: u64, sent_ns: u64) {
        write_publish(
            buffer,
            &self.topics[(seq % self.topics.len() as u64) as usize],
            self.index,
            seq,
            sent_ns,
            self.flow.size,
        );
    }
}

/// A subscriber's loop: read chunks, stamp them with their arrival time, tally every line,
/// until `expected` messages arrived or the connection ends.
pub fn receive(
    mut reader: Reader,
    publishers: usize,
    expected: u64,
    base: Instant,
    arrived: &AtomicU64,
) -> Tally {
    let mut tally = Tally::new(publishers);
    let mut arrival_ns = nanos_since(base);
    loop {
        let before = tally.received;
        while let Some(line) = reader.next_line() {
            if let Some(stamp) = parse_stamp(line) {
                tally.record(stamp, arrival_ns);
            }
        }
        arrived.fetch_add(tally.received - before, Ordering::Relaxed);
        if tally.received >= expected {
            return tally;
        }
        match reader.fill() {
            Ok(true) => arrival_ns = nanos_since(base),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Ok(false) | Err(_) => return tally,
        }
    }
}

/// How a workload's subscribers reach the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The line protocol over TCP.
    Lines,
    /// kn-sock's JSON lines over TCP.
    Json,
    /// The line protocol over a WebSocket at the target's web port.
    WebSocket,
    /// Socket.IO over a WebSocket at the target's web port (`/socket.io/`).
    SocketIo,
}

/// Connects one subscriber per entry of `topics` (to that topic), the way `via` says, and
/// returns them once each is known to be subscribed: with `PING`/`PONG` (in the
/// subscriber's dialect) if the target answers it, else after a settle delay. If one
/// fails, the error comes with the subscribers confirmed so far.
pub fn open_subscribers(
    target: &Target,
    topics: &[String],
    via: Via,
    deadline: Instant,
    progress: &mut Progress,
) -> Result<Vec<Reader>, (Vec<Reader>, String)> {
    let json = via == Via::Json;
    let mut readers = Vec::with_capacity(topics.len());
    let mut line = Vec::new();
    for window_start in (0..topics.len()).step_by(OPEN_WINDOW) {
        let window_end = (window_start + OPEN_WINDOW).min(topics.len());
        for (index, topic) in topics
            .iter()
            .enumerate()
            .take(window_end)
            .skip(window_start)
        {
            let opened = match via {
                Via::WebSocket => open_websocket(target, "/ws"),
                Via::SocketIo => open_websocket(target, SOCKETIO_PATH),
                Via::Lines | Via::Json => {
                    TcpStream::connect(target.addr).map(|stream| Reader::Lines(Lines::new(stream)))
                }
            };
            let mut reader = match opened {
                Ok(reader) => reader,
                Err(e) => {
                    readers.truncate(window_start);
                    let message = format!(
                        "cannot open connection {} of {}: {e}",
                        index + 1,
                        topics.len()
                    );
                    return Err((readers, message));
                }
            };
            line.clear();
            if via == Via::SocketIo {
                if let Err(e) = socketio_subscribe(&mut reader, target, topic, index) {
                    readers.truncate(window_start);
                    return Err((
                        readers,
                        format!("cannot subscribe connection {}: {e}", index + 1),
                    ));
                }
                readers.push(reader);
                continue;
            }
            if target.login {
                // Answered OK AUTH before the PONG, which the wait for the PONG skips.
                line.extend_from_slice(format!("AUTH bench {AUTH_SECRET}\n").as_bytes());
            }
            let (subscribe, ping) = if json {
                (
                    format!("{{\"action\":\"subscribe\",\"topic\":\"{topic}\",\"id\":\"sub{index}\"}}\n"),
                    format!("{{\"action\":\"ping\",\"token\":\"s{index}\"}}\n"),
                )
            } else {
                (
                    format!("SUBSCRIBE {topic} sub{index}\n"),
                    format!("PING s{index}\n"),
                )
            };
            line.extend_from_slice(subscribe.as_bytes());
            if target.sync == SyncMethod::Ping {
                line.extend_from_slice(ping.as_bytes());
            }
            if let Err(e) = reader.send_lines(&line) {
                readers.truncate(window_start);
                return Err((
                    readers,
                    format!("cannot subscribe connection {}: {e}", index + 1),
                ));
            }
            readers.push(reader);
        }
        if target.sync == SyncMethod::Ping {
            for index in window_start..readers.len() {
                let pong = match via {
                    Via::Json => format!("{{\"pong\":\"s{index}\"}}"),
                    // The acknowledgement of the `ping` event, with the core's reply in it.
                    Via::SocketIo => format!("431[{{\"ok\":\"PONG s{index}\"}}]"),
                    Via::Lines | Via::WebSocket => format!("PONG s{index}"),
                };
                if let Err(message) = wait_for_pong(&mut readers[index], index, &pong, deadline) {
                    readers.truncate(index);
                    return Err((readers, message));
                }
            }
        }
        progress.update(readers.len() as u64, topics.len() as u64, "subscribers");
    }
    if let SyncMethod::Settle(delay) = target.sync {
        thread::sleep(delay);
    }
    Ok(readers)
}

/// Reads until `PONG s<index>`; lines before it are skipped. Leaves the socket without a
/// read timeout, as the subscriber threads want it.
fn wait_for_pong(
    reader: &mut Reader,
    index: usize,
    expected: &str,
    deadline: Instant,
) -> Result<(), String> {
    let mut seen = Vec::new();
    let found = read_until(reader, deadline, |line| {
        if line == expected.as_bytes() {
            return true;
        }
        seen.push(String::from_utf8_lossy(line).into_owned());
        false
    });
    let _ = reader.get_ref().set_read_timeout(None);
    match found {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "connection {} closed before its subscription was confirmed{}",
            index + 1,
            if seen.is_empty() {
                String::new()
            } else {
                format!("; the target said: {}", seen.join(" / "))
            }
        )),
        Err(error) => Err(format!(
            "no PONG on connection {} ({error}): the target is overloaded or does not answer PING",
            index + 1
        )),
    }
}

/// Reads on an idle subscriber until probe `seq` arrives; its arrival time, or `None`.
fn wait_for_probe(reader: &mut Reader, seq: u64, base: Instant, deadline: Instant) -> Option<u64> {
    let found = read_until(reader, deadline, |line| {
        parse_stamp(line).is_some_and(|stamp| stamp.seq == seq)
    });
    matches!(found, Ok(true)).then(|| nanos_since(base))
}

/// Reads lines until `wanted` says yes (`Ok(true)`), the connection closes (`Ok(false)`),
/// or `deadline` passes (an error).
fn read_until(
    reader: &mut Reader,
    deadline: Instant,
    mut wanted: impl FnMut(&[u8]) -> bool,
) -> io::Result<bool> {
    loop {
        while let Some(line) = reader.next_line() {
            if wanted(line) {
                return Ok(true);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "timed out"));
        }
        reader.get_ref().set_read_timeout(Some(left))?;
        match reader.fill() {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// Every connection takes a file descriptor in the bench, and one in the target: say so
/// plainly rather than fail half-way with "too many open files".
fn check_fd_limit(connections: usize) -> Result<(), String> {
    let needed = connections + 64;
    let Some(limit) = open_files_limit() else {
        return Ok(());
    };
    if needed as u64 > limit {
        return Err(format!(
            "{connections} connections need about {needed} open files, but the limit is {limit}: \
             raise it first (ulimit -n {}) or ask for fewer with --conns",
            needed.next_power_of_two()
        ));
    }
    Ok(())
}

/// The soft limit on open files, from `/proc/self/limits` (`None` if unlimited or unknown).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Notes on how this target was synchronised, when it was not the usual way.
fn sync_notes(target: &Target) -> Vec<String> {
    match target.sync {
        SyncMethod::Ping => Vec::new(),
        SyncMethod::Settle(delay) => vec![format!(
            "the target does not answer PING: waited {} for subscriptions to settle",
            pubsub_lab::config::format_duration(delay)
        )],
    }
}

/// When messages went missing, what the target logged is likely the reason.
fn explain_trouble(target: &Target, outcome: &mut Outcome) {
    if !outcome.is_clean() {
        // The first few lines name the cause; the rest tend to repeat it.
        for line in target.log_tail().into_iter().take(3) {
            outcome.notes.push(format!("{} said: {line}", target.label));
        }
    }
}

pub fn topic_name(topic: usize) -> String {
    format!("bench-{topic}")
}

/// A subscriber's connection: TCP lines, or WebSocket frames carrying one line each.
pub enum Reader {
    /// The line protocol over TCP.
    Lines(Lines),
    /// The line protocol over a WebSocket: one text frame per line.
    Frames {
        /// The connection.
        stream: TcpStream,
        /// The frames read, and the messages in them.
        decoder: Decoder,
    },
}

impl Reader {
    fn get_ref(&self) -> &TcpStream {
        match self {
            Reader::Lines(lines) => lines.get_ref(),
            Reader::Frames { stream, .. } => stream,
        }
    }

    /// The next line already read, if any (for a WebSocket, a frame that is not text is
    /// an empty line). Never blocks.
    fn next_line(&mut self) -> Option<&[u8]> {
        match self {
            Reader::Lines(lines) => lines.next_line(),
            Reader::Frames { stream, decoder } => match decoder.next_message() {
                Ok(Some(Message::Text("2"))) => {
                    // An Engine.IO ping (Socket.IO subscribers only): answer it, or the
                    // broker closes the session after its ping timeout.
                    let mut pong = Vec::new();
                    let mask = Some(websocket::random_mask());
                    websocket::write_frame(&mut pong, Opcode::Text, b"3", mask);
                    let _ = (&*stream).write_all(&pong);
                    Some(b"")
                }
                Ok(Some(Message::Text(text))) => Some(text.as_bytes()),
                Ok(Some(_)) => Some(b""),
                Ok(None) | Err(_) => None,
            },
        }
    }

    /// Blocks for more bytes: `Ok(false)` at end of file.
    fn fill(&mut self) -> io::Result<bool> {
        match self {
            Reader::Lines(lines) => lines.fill(),
            Reader::Frames { stream, decoder } => Ok(decoder.read_from(&*stream)? > 0),
        }
    }

    /// Sends lines: as they are over TCP, one masked text frame each over a WebSocket.
    fn send_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            Reader::Lines(reader) => (&reader.stream).write_all(lines),
            Reader::Frames { stream, .. } => {
                let mut frames = Vec::new();
                for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    websocket::write_frame(
                        &mut frames,
                        Opcode::Text,
                        line,
                        Some(websocket::random_mask()),
                    );
                }
                (&*stream).write_all(&frames)
            }
        }
    }
}

/// Where a Socket.IO client opens its WebSocket (no long-polling first).
const SOCKETIO_PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// A Socket.IO subscriber's first frames: `CONNECT` (with the bench's user as its auth
/// data, if the target wants a login), the `subscribe` event, and a `ping` event whose
/// acknowledgement tells it is subscribed.
fn socketio_subscribe(
    reader: &mut Reader,
    target: &Target,
    topic: &str,
    index: usize,
) -> io::Result<()> {
    let connect = if target.login {
        format!("40{{\"user\":\"bench\",\"secret\":\"{AUTH_SECRET}\"}}")
    } else {
        "40".to_string()
    };
    let subscribe = format!("42[\"subscribe\",{{\"topic\":\"{topic}\",\"id\":\"sub{index}\"}}]");
    let ping = format!("421[\"ping\",{{\"token\":\"s{index}\"}}]");
    let mut lines = Vec::new();
    for packet in [connect, subscribe, ping] {
        lines.extend_from_slice(packet.as_bytes());
        lines.push(b'\n');
    }
    reader.send_lines(&lines)
}

/// Opens a WebSocket to the target's web port, at `path`.
fn open_websocket(target: &Target, path: &str) -> io::Result<Reader> {
    let addr = target.web_addr.ok_or_else(|| {
        io::Error::new(
            ErrorKind::Unsupported,
            "the target serves no web (start it with --http-port)",
        )
    })?;
    let (stream, decoder) = WebSocketClient::connect(addr, path)?.into_parts();
    Ok(Reader::Frames { stream, decoder })
}

/// The read side of a bench connection: big reads, cut into lines.
///
/// The library's `LineReader` would do, but it is built for a broker's many mostly idle
/// connections and starts small; a bench subscriber wants every `read` as large as the
/// kernel will give, so that it costs as few system calls as possible.
pub struct Lines {
    stream: TcpStream,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
}

/// Bytes a bench connection asks for per `read`.
const READ_BYTES: usize = 64 * 1024;

impl Lines {
    fn new(stream: TcpStream) -> Lines {
        Lines {
            stream,
            buffer: vec![0; READ_BYTES],
            start: 0,
            end: 0,
        }
    }

    fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// The next complete line already read (without `\n` or `\r`), if any. Never blocks.
    fn next_line(&mut self) -> Option<&[u8]> {
        let newline = self.buffer[self.start..self.end]
            .iter()
            .position(|&b| b == b'\n')?;
        let line = &self.buffer[self.start..self.start + newline];
        self.start += newline + 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// Blocks for more bytes: `Ok(false)` at end of file.
    fn fill(&mut self) -> io::Result<bool> {
        self.buffer.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buffer.len() {
            // One line longer than the buffer: make room for the rest of it.
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        let read = self.stream.read(&mut self.buffer[self.end..])?;
        self.end += read;
        Ok(read > 0)
    }
}

fn clone_socket(stream: &TcpStream) -> Result<TcpStream, String> {
    stream
        .try_clone()
        .map_err(|e| format!("cannot duplicate a socket: {e}"))
}

pub fn spawn<T: Send + 'static>(
    name: String,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, String> {
    thread::Builder::new()
        .name(name)
        .stack_size(THREAD_STACK)
        .spawn(work)
        .map_err(|e| format!("cannot start a thread: {e}"))
}

fn join_all(threads: Vec<JoinHandle<()>>) {
    for thread in threads {
        let _ = thread.join();
    }
}

/// A tiny seeded random number generator (xorshift64), enough to pick probe topics.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// How long the `udp` workload waits, after the last datagram, for arrivals to stop
/// before it counts the rest as lost.
const UDP_QUIET: Duration = Duration::from_millis(500);

/// Runs `udp`: one publisher sends `msgs` datagrams (`PUBLISH bench-0 <payload> pub0`) to
/// the target's UDP port, at `rate` per second or as fast as it can, and `subs` TCP
/// subscribers count what arrives. Loss is the measurement here, not a failure: a
/// datagram that is dropped is gone, and nobody says so. The broker's own counters tell
/// where: `udp_datagrams_in` below what was sent means datagrams were lost on the way in
/// (in the broker's socket buffer, when its one UDP thread fell behind).
pub fn run_udp(
    target: &Target,
    subs: usize,
    msgs: u64,
    rate: Option<f64>,
    size: usize,
    timeout: Duration,
) -> Result<Outcome, String> {
    let udp_addr = target.udp_addr.ok_or_else(|| {
        "udp: this target takes no datagrams; the workload needs our broker, which the \
         bench starts with --udp-port 0"
            .to_string()
    })?;
    let base = Instant::now();
    let deadline = base + timeout;
    let mut progress = Progress::new(&format!("udp on {}", target.label), base);
    let mut notes = sync_notes(target);
    let topic = topic_name(0);
    let topics = vec![topic.clone(); subs];
    let readers = open_subscribers(target, &topics, Via::Lines, deadline, &mut progress)
        .map_err(|(_, message)| message)?;
    let mut sockets = Vec::new();
    let arrived = Arc::new(AtomicU64::new(0));
    let (tallies_tx, tallies) = mpsc::channel();
    let mut subscriber_threads = Vec::new();
    for (index, reader) in readers.into_iter().enumerate() {
        sockets.push(clone_socket(reader.get_ref())?);
        let (tx, arrived) = (tallies_tx.clone(), Arc::clone(&arrived));
        subscriber_threads.push(spawn(format!("bench-sub-{index}"), move || {
            let _ = tx.send(receive(reader, 1, msgs, base, &arrived));
        })?);
    }
    drop(tallies_tx);

    let socket = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.connect(udp_addr).map(|()| socket))
        .map_err(|e| format!("cannot open a UDP socket to {udp_addr}: {e}"))?;
    let start = Instant::now() + Duration::from_millis(20);
    let publisher = spawn("bench-udp-pub".to_string(), move || {
        sleep_until(start);
        let start_ns = nanos_since(base);
        let (mut sent, mut refused) = (0u64, 0u64);
        let mut datagram = Vec::with_capacity(size + 64);
        while sent < msgs {
            let sent_ns = match rate {
                None => nanos_since(base),
                Some(rate) => {
                    // Paced: each datagram carries the time it was meant to leave.
                    let due = start_ns + (sent as f64 * 1e9 / rate) as u64;
                    let now = nanos_since(base);
                    if due > now + 50_000 {
                        thread::sleep(Duration::from_nanos(due - now));
                    }
                    due
                }
            };
            datagram.clear();
            write_publish(&mut datagram, &topic, 0, sent, sent_ns, size);
            if socket.send(&datagram).is_err() {
                refused += 1;
            }
            sent += 1;
        }
        (sent, refused)
    })?;
    let (sent, refused) = publisher
        .join()
        .map_err(|_| "the UDP publisher panicked".to_string())?;
    if refused > 0 {
        notes.push(format!(
            "{refused} datagrams could not be sent (the local kernel refused them)"
        ));
    }
    let expected = sent * subs as u64;
    let (mut last, mut quiet_since) = (0, Instant::now());
    let mut timed_out = false;
    loop {
        let now_arrived = arrived.load(Ordering::Relaxed);
        progress.update(now_arrived, expected, "deliveries");
        if now_arrived >= expected || quiet_since.elapsed() >= UDP_QUIET {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        if now_arrived != last {
            (last, quiet_since) = (now_arrived, Instant::now());
        }
        thread::sleep(Duration::from_millis(20));
    }
    progress.finish();
    for socket in &sockets {
        let _ = socket.shutdown(Shutdown::Both);
    }
    let mut tally = Tally::new(1);
    for one in tallies.iter() {
        tally.merge(&one);
    }
    join_all(subscriber_threads);
    if let Ok(mut observer) = pubsub_lab::Client::connect(target.addr) {
        if let Ok(stats) = observer.stats() {
            let stat = |name: &str| {
                stats
                    .iter()
                    .find(|(counter, _)| counter == name)
                    .map_or(0, |(_, value)| *value)
            };
            let taken = stat("udp_datagrams_in");
            notes.push(format!(
                "sent {sent} datagrams; the broker took {taken} ({} lost on the way in) and \
                 published {}",
                sent.saturating_sub(taken),
                stat("messages_published")
            ));
        }
    }
    let start_ns = start.duration_since(base).as_nanos() as u64;
    let seconds = tally.last_arrival_ns.saturating_sub(start_ns) as f64 / 1e9;
    let lost = expected.saturating_sub(tally.received);
    notes.push(format!(
        "lost {lost} of {expected} deliveries ({:.2}%); disorder counts each gap",
        if expected == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / expected as f64
        }
    ));
    let pace = rate.map_or_else(String::new, |rate| format!(" at {rate}/s"));
    Ok(Outcome {
        workload: Workload::Udp.name(),
        setup: format!("{subs} subs, {msgs} datagrams{pace}, {size} B"),
        target: target.label.clone(),
        published: sent,
        expected,
        delivered: tally.received,
        disorder: tally.disorder,
        seconds,
        rate: (seconds > 0.0).then(|| tally.received as f64 / seconds),
        latency: tally.latency.percentiles(),
        memory: None,
        timed_out,
        notes,
        lossy: true,
    })
}
