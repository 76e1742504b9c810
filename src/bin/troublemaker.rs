//! The troublemaker: plays one misbehaving client against a broker, on demand, so that every
//! failure the broker must survive can be watched and reproduced.
//!
//! ```text
//! cargo run --bin broker                                   # terminal 1
//! cargo run --bin subscriber sub1 --topic weather          # terminal 2: a healthy client
//! cargo run --bin troublemaker stall                       # terminal 3: a subscriber that never reads
//! cargo run --bin troublemaker flood --duration 5s         # terminal 4: fills the stalled one's buffers
//! ```
//!
//! Within `--write-timeout` (2 s by default) of the stalled subscriber's buffers filling up,
//! the broker logs `slow consumer stall (...) disconnected` and the troublemaker reports that
//! it was cut off, while `sub1` keeps receiving. The other modes:
//!
//! | mode | plays |
//! |---|---|
//! | `stall` | subscribes, never reads (a `nc` suspended with Ctrl-Z) |
//! | `slow` | subscribes, reads one line every `--every`; says when the broker cuts it off |
//! | `halfline` | sends half a command, waits, then the rest |
//! | `flood` | publishes as fast as it can |
//! | `garbage` | sends random bytes (reproducible with `--seed`) |
//! | `churn` | subscribes and unsubscribes in a tight loop |
//! | `dupid` | several connections that all use the same id |
//! | `udp-reflect` | a forged source: asks for the whole retained store over UDP, never echoes the cookie |
//! | `udp-flood` | datagrams of 64 KiB packed with `PING` lines, from an address that proved itself |
//! | `retained-flood` | retains 16 KiB messages on `<topic>/<n>`, a made-up id for each, until the broker's store is full |
//! | `resubscribe` | subscribes to `#` and unsubscribes in a loop, reading the whole store each time |
//!
//! Every mode prints what it does on stdout and stops by itself after `--duration` (or
//! `--count`, where a count makes sense), so it can run unattended in a test or a lab.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use pubsub_lab::client::Incoming;
use pubsub_lab::config::{format_duration, parse_duration, DEFAULT_PORT, DEFAULT_UDP_PORT};
use pubsub_lab::udp::cookie;

use pubsub_lab::{Client, Error};

/// How long to wait for an answer the broker owes us (a `PONG`, its closing the connection
/// after we half-closed ours).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the modes that run for a while report their progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How often `slow` checks that the broker still has its connection (see [`slow`]).
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// Plays one misbehaving client against a pubsub-lab broker, then stops by itself.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The misbehaviour to play.
    mode: Mode,
    /// The broker's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port (9000, or 9999 with --udp).
    #[arg(long)]
    port: Option<u16>,
    /// Play against the broker's UDP port (the udp-* modes always do).
    #[arg(long)]
    udp: bool,
    /// The topic to misbehave on.
    #[arg(long, default_value = "weather")]
    topic: String,
    /// The client id to use (default: the mode's name; numbered when --conns is above 1,
    /// except in dupid mode, whose point is that every connection uses the same id).
    #[arg(long)]
    id: Option<String>,
    /// Stop after this long (like 10s or 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop earlier, after this many: messages (flood, dupid, retained-flood), lines read
    /// (slow), chunks of bytes (garbage), subscribe/unsubscribe pairs (churn, resubscribe).
    /// Each per connection.
    #[arg(long)]
    count: Option<u64>,
    /// The pace where a mode has one: slow reads one line per interval, stall checks its
    /// connection, dupid publishes.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    every: Duration,
    /// How many misbehaving connections to open at once (default: 3 for dupid, 4 for
    /// garbage, otherwise 1).
    #[arg(long)]
    conns: Option<usize>,
    /// Seed for the random bytes of garbage mode (default: from the clock; printed so a
    /// run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
}

/// The misbehaviours, one per failure the broker must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Subscribe, then never read: the broker must cut this client off after its write
    /// timeout without holding anyone else up for longer.
    Stall,
    /// Subscribe and read one line every --every: a client that never stops reading, but
    /// may not keep up. Says when the broker cuts it off, and how much it left unread.
    Slow,
    /// Send half a command with no end of line, wait, then send the rest.
    Halfline,
    /// Publish as fast as possible.
    Flood,
    /// Send random bytes, with a line break now and then so the broker parses them.
    Garbage,
    /// Subscribe and unsubscribe in a tight loop.
    Churn,
    /// Open several connections that all use the same id.
    Dupid,
    /// A forged source address over UDP: `SUBSCRIBE #` datagrams (13 bytes, padded, and
    /// 1,200 bytes of SUBSCRIBE/UNSUBSCRIBE pairs) from an address that never echoes the
    /// broker's cookie. Counts the bytes that come back: what a victim would receive.
    UdpReflect,
    /// Datagrams of 64 KiB, each packed with 13,000 `PING` lines, from an address that
    /// proved itself. Counts the `PONG`s that come back.
    UdpFlood,
    /// Retain messages of 16 KiB on `<topic>/0`, `<topic>/1`..., a made-up publisher id for
    /// each, until the broker refuses one: its retained store is full
    /// (`--max-retained-bytes`, 16 MiB by default).
    RetainedFlood,
    /// Subscribe to `#` and unsubscribe again, in a loop, reading every retained message
    /// the broker sends each time: the whole store per round.
    Resubscribe,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("troublemaker: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Error> {
    let udp = args.udp || matches!(args.mode, Mode::UdpReflect | Mode::UdpFlood);
    let default_port = if udp { DEFAULT_UDP_PORT } else { DEFAULT_PORT };
    let addr = resolve(&args.host, args.port.unwrap_or(default_port))?;
    let plan = Plan::new(args);
    match args.mode {
        Mode::Stall => stall(addr, &plan),
        Mode::Slow => slow(addr, &plan),
        Mode::Halfline => halfline(addr, &plan),
        Mode::Flood => flood(addr, &plan),
        Mode::Garbage => garbage(addr, &plan),
        Mode::Churn => churn(addr, &plan),
        Mode::Dupid => dupid(addr, &plan),
        Mode::UdpReflect => udp_reflect(addr, &plan),
        Mode::UdpFlood => udp_flood(addr, &plan),
        Mode::RetainedFlood => retained_flood(addr, &plan),
        Mode::Resubscribe => resubscribe(addr, &plan),
    }
}

/// What every mode needs from the flags, with the per-mode defaults filled in.
#[derive(Debug, Clone)]
struct Plan {
    topic: String,
    ids: Vec<String>,
    deadline: Instant,
    duration: Duration,
    count: Option<u64>,
    every: Duration,
    seed: u64,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let name = match args.mode {
            Mode::Stall => "stall",
            Mode::Slow => "slow",
            Mode::Halfline => "halfline",
            Mode::Flood => "flood",
            Mode::Garbage => "garbage",
            Mode::Churn => "churn",
            Mode::Dupid => "dupid",
            Mode::UdpReflect => "udp-reflect",
            Mode::UdpFlood => "udp-flood",
            Mode::RetainedFlood => "retained-flood",
            Mode::Resubscribe => "resubscribe",
        };
        let conns = args.conns.unwrap_or(match args.mode {
            Mode::Dupid => 3,
            Mode::Garbage => 4,
            _ => 1,
        });
        let base = args.id.clone().unwrap_or_else(|| name.to_string());
        let ids = (1..=conns.max(1))
            .map(|i| {
                if conns <= 1 || args.mode == Mode::Dupid {
                    base.clone()
                } else {
                    format!("{base}{i}")
                }
            })
            .collect();
        Plan {
            topic: args.topic.clone(),
            ids,
            deadline: Instant::now() + args.duration,
            duration: args.duration,
            count: args.count,
            every: args.every,
            seed: args.seed.unwrap_or_else(seed_from_clock),
        }
    }

    fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn over(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Whether `done` more would pass --count.
    fn counted_out(&self, done: u64) -> bool {
        self.count.is_some_and(|count| done >= count)
    }

    /// Describes the ids in use: `stall` or `stall1..stall4`.
    fn who(&self) -> String {
        match self.ids.as_slice() {
            [one] => one.clone(),
            [first, .., last] if first == last => format!("{} x {first}", self.ids.len()),
            [first, .., last] => format!("{first}..{last}"),
            [] => String::new(),
        }
    }

    fn limits(&self) -> String {
        match self.count {
            Some(count) => format!("for {} or {count} each", format_duration(self.duration)),
            None => format!("for {}", format_duration(self.duration)),
        }
    }
}

/// Prints one line of the running commentary. A closed stdout (`troublemaker ... | head`)
/// is not worth stopping the misbehaviour for, so write errors are ignored.
fn say(text: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stdout().lock(), "{text}");
}

macro_rules! say {
    ($($arg:tt)*) => { say(format_args!($($arg)*)) };
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, Error> {
    let connect_error = |source| Error::Connect {
        addr: format!("{host}:{port}"),
        source,
    };
    (host, port)
        .to_socket_addrs()
        .map_err(connect_error)?
        .next()
        .ok_or_else(|| connect_error(io::Error::new(ErrorKind::NotFound, "no address")))
}

fn connect(addr: SocketAddr) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect(addr).map_err(|source| Error::Connect {
        addr: addr.to_string(),
        source,
    })?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a fresh connection and checks the broker still answers, for the summaries.
fn broker_answers(addr: SocketAddr) -> String {
    match Client::connect(addr).and_then(|mut client| client.ping()) {
        Ok(round_trip) => format!(
            "the broker still answers PING (round trip {:.3} ms)",
            round_trip.as_secs_f64() * 1e3
        ),
        Err(error) => format!("the broker does NOT answer any more: {error}"),
    }
}

// ---------------------------------------------------------------------------------------
// stall

/// Subscribes and never reads. To tell when the broker gives up on us without reading, we
/// write a blank line (which the broker ignores) every --every: once the broker has closed
/// the connection, such a write fails.
/// Reads `stream` byte by byte (so that nothing after the line is taken) up to `pong`.
fn await_pong(stream: &mut TcpStream, pong: &str) -> Result<(), Error> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if stream.read(&mut byte)? == 0 {
            return Err(Error::Closed);
        }
        if byte[0] != b'\n' {
            line.push(byte[0]);
        } else if line == pong.as_bytes() {
            return Ok(());
        } else {
            line.clear();
        }
    }
}

fn stall(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let started = Instant::now();
    let mut stalled: Vec<(String, TcpStream, Option<Duration>)> = Vec::new();
    for id in &plan.ids {
        let mut stream = connect(addr)?;
        stream.write_all(format!("SUBSCRIBE {} {id}\nPING stalled\n", plan.topic).as_bytes())?;
        stalled.push((id.clone(), stream, None));
    }
    // The one read these connections ever make: each PONG proves its SUBSCRIBE was handled,
    // so "subscribed" below is true when it is printed.
    for (_, stream, _) in &mut stalled {
        await_pong(stream, "PONG stalled")?;
    }
    say!(
        "stall: {} subscribed to '{}' and will never read, {}. Publish to '{}' to fill \
         the buffers; the broker should cut us off after its --write-timeout",
        plan.who(),
        plan.topic,
        plan.limits(),
        plan.topic
    );
    while !plan.over() && stalled.iter().any(|(.., cut)| cut.is_none()) {
        thread::sleep(plan.every.min(plan.time_left()));
        for (id, stream, cut) in stalled.iter_mut().filter(|(.., cut)| cut.is_none()) {
            if stream.write_all(b"\n").is_err() {
                let after = started.elapsed();
                say!(
                    "stall: {id} was cut off by the broker after {:.1}s",
                    after.as_secs_f64()
                );
                *cut = Some(after);
            }
        }
    }
    let cut = stalled.iter().filter(|(.., cut)| cut.is_some()).count();
    say!(
        "stall: done after {:.1}s: {cut} of {} stalled connection(s) cut off by the broker, {} \
         still connected",
        started.elapsed().as_secs_f64(),
        stalled.len(),
        stalled.len() - cut
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// slow

/// Subscribes and reads one line per --every. A `BufReader` takes bytes from the kernel in
/// chunks, but lines leave it one per interval, so the pace the broker sees is the same.
///
/// Reading alone would show a cut-off late: the lines the kernel already holds for us
/// (megabytes, on Linux) come first, at our slow pace, and only then the end of the
/// connection. So, like `stall`, we also write a blank line (which the broker ignores)
/// every [`PROBE_EVERY`]: once the broker has closed the connection, such a write fails.
/// Then we say when that was, how much had reached us unread, and what the broker said:
/// nothing, for a slow consumer (its socket is full, so it gets no `ERROR` line; the
/// broker's log says which rule cut it off).
fn slow(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let started = Instant::now();
    let id = &plan.ids[0];
    let mut stream = connect(addr)?;
    stream.write_all(format!("SUBSCRIBE {} {id}\n", plan.topic).as_bytes())?;
    say!(
        "slow: {id} subscribed to '{}'; reading one line every {}, {}",
        plan.topic,
        format_duration(plan.every),
        plan.limits()
    );
    let mut reader = BufReader::with_capacity(4096, stream.try_clone()?);
    let mut lines = 0u64;
    let mut last_report = Instant::now();
    let mut last_probe = Instant::now();
    let mut line = String::new();
    // The last `ERROR` line the broker sent us, if it sent one.
    let mut said = None;
    let cut_off = loop {
        if plan.over() || plan.counted_out(lines) {
            break false;
        }
        thread::sleep(plan.every.min(plan.time_left()));
        if last_probe.elapsed() >= PROBE_EVERY {
            last_probe = Instant::now();
            if stream.write_all(b"\n").is_err() {
                break true;
            }
        }
        reader
            .get_ref()
            .set_read_timeout(Some(plan.time_left().max(Duration::from_millis(1))))?;
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break true,
            Ok(_) => {
                lines += 1;
                if line.starts_with("ERROR ") {
                    said = Some(line.trim_end().to_string());
                }
            }
            Err(error) if is_timeout(&error) => {}
            Err(_) => break true,
        }
        if last_report.elapsed() >= PROGRESS_EVERY && lines > 0 {
            last_report = Instant::now();
            say!("slow: read {lines} line(s); latest: {}", line.trim_end());
        }
    };
    if cut_off {
        let after = started.elapsed();
        let unread = count_unread(&mut reader, &mut said);
        let why = match said {
            Some(error) => format!("the broker said '{error}'"),
            None => "the broker closed the connection without an ERROR line (its log says why)"
                .to_string(),
        };
        say!(
            "slow: {id} was cut off by the broker after {:.1}s, having read {lines} line(s), \
             with {unread} more waiting unread in this machine's buffers; {why}",
            after.as_secs_f64()
        );
    }
    let ended = if cut_off {
        "cut off by the broker"
    } else {
        "stopped"
    };
    say!(
        "slow: done after {:.1}s: read {lines} line(s); {ended}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads, as fast as it comes, what is left of a connection the broker has closed: the
/// lines that had reached us but were never read (the kernel keeps them readable after
/// the end). Returns how many; the last `ERROR` line among them goes to `said`.
fn count_unread(reader: &mut BufReader<TcpStream>, said: &mut Option<String>) -> u64 {
    // Everything left is already on this machine: a short wait means there is no more.
    let _ = reader.get_ref().set_read_timeout(Some(PROBE_EVERY));
    let mut unread = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return unread,
            Ok(_) => {
                unread += 1;
                if line.starts_with(b"ERROR ") {
                    *said = Some(String::from_utf8_lossy(&line).trim_end().to_string());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// halfline

/// Sends the first half of a `PUBLISH` with no end of line, waits, then sends the rest.
/// The broker must hold the half line without blocking anyone, and put the halves together.
fn halfline(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let started = Instant::now();
    let mut clients = Vec::new();
    for id in &plan.ids {
        let mut client = Client::connect(addr)?;
        // VERBOSE makes the broker confirm the publish, so we can show it was understood.
        client.verbose(true)?;
        client.send_raw(format!("PUBLISH {} half a com", plan.topic).as_bytes())?;
        clients.push((id, client));
    }
    say!(
        "halfline: {} sent 'PUBLISH {} half a com' with no end of line; holding it for {}",
        plan.who(),
        plan.topic,
        format_duration(plan.duration)
    );
    let mut last_report = Instant::now();
    while !plan.over() {
        thread::sleep(PROGRESS_EVERY.min(plan.time_left()));
        for (id, client) in &mut clients {
            // Nothing may arrive for a half line; an early close would be a broker bug.
            if let Err(Error::Closed) = client.next_line(Duration::from_millis(10)) {
                return Err(Error::Unexpected(format!(
                    "the broker closed {id}'s connection while it held half a line"
                )));
            }
        }
        if last_report.elapsed() >= PROGRESS_EVERY && !plan.over() {
            last_report = Instant::now();
            say!(
                "halfline: still holding half a line after {:.0}s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    for (id, mut client) in clients {
        client.send_raw(format!("mand {id}\n").as_bytes())?;
        let answer = match client.next_line(REPLY_TIMEOUT)? {
            Some(Incoming::Reply(line)) => line,
            Some(Incoming::Error(reason)) => format!("ERROR {reason}"),
            Some(Incoming::Deliver(delivery)) => format!("a delivery from {}", delivery.topic),
            Some(Incoming::Message(message)) => format!("a message from {}", message.topic),
            None => "nothing".to_string(),
        };
        client.ping()?;
        say!("halfline: {id} sent the rest ('mand {id}'); the broker answered '{answer}'");
    }
    say!(
        "halfline: done after {:.1}s; {}",
        started.elapsed().as_secs_f64(),
        broker_answers(addr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// flood

/// Publishes as fast as the broker reads, from --conns connections at once, then waits
/// until the broker confirms it has handled every message.
fn flood(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let started = Instant::now();
    let published = Arc::new(AtomicU64::new(0));
    say!(
        "flood: {} publishing to '{}' as fast as possible, {}",
        plan.who(),
        plan.topic,
        plan.limits()
    );
    let workers: Vec<JoinHandle<Result<(), Error>>> = plan
        .ids
        .iter()
        .map(|id| {
            let (plan, id, published) = (plan.clone(), id.clone(), Arc::clone(&published));
            thread::spawn(move || flood_one(addr, &plan, &id, &published))
        })
        .collect();
    report_progress(plan, &workers, || {
        let count = published.load(Ordering::Relaxed);
        say!(
            "flood: {count} messages so far ({:.0}/s)",
            per_second(count, started)
        );
    });
    let outcome = join_all(workers);
    let count = published.load(Ordering::Relaxed);
    say!(
        "flood: done: published {count} messages in {:.1}s ({:.0}/s); the broker confirmed it \
         handled them",
        started.elapsed().as_secs_f64(),
        per_second(count, started)
    );
    outcome
}

fn flood_one(addr: SocketAddr, plan: &Plan, id: &str, published: &AtomicU64) -> Result<(), Error> {
    let mut client = Client::connect(addr)?;
    let mut sent = 0;
    while !plan.over() && !plan.counted_out(sent) {
        client.publish(&plan.topic, &format!("flood from {id} #{sent}"), id)?;
        sent += 1;
        published.fetch_add(1, Ordering::Relaxed);
    }
    client.finish(REPLY_TIMEOUT)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// garbage

/// Sends random bytes from --conns connections, reading (and counting) the `ERROR` lines
/// the broker answers, so that it is the bytes that are tested, not a full socket buffer.
fn garbage(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let started = Instant::now();
    say!(
        "garbage: {} sending random bytes, {} (seed {}; repeat with --seed {})",
        plan.who(),
        plan.limits(),
        plan.seed,
        plan.seed
    );
    let sent = Arc::new(AtomicU64::new(0));
    let workers: Vec<JoinHandle<Result<u64, Error>>> = (0..plan.ids.len() as u64)
        .map(|i| {
            let (plan, sent) = (plan.clone(), Arc::clone(&sent));
            thread::spawn(move || garbage_one(addr, &plan, plan.seed.wrapping_add(i), &sent))
        })
        .collect();
    report_progress(plan, &workers, || {
        say!(
            "garbage: {} bytes sent so far",
            sent.load(Ordering::Relaxed)
        );
    });
    let mut errors = 0;
    for worker in workers {
        errors += worker
            .join()
            .map_err(|_| Error::Unexpected("a connection's thread panicked".into()))??;
    }
    say!(
        "garbage: done after {:.1}s: sent {} random bytes, the broker answered {errors} ERROR \
         line(s); {}",
        started.elapsed().as_secs_f64(),
        sent.load(Ordering::Relaxed),
        broker_answers(addr)
    );
    Ok(())
}

/// One garbage connection; returns how many `ERROR` lines the broker sent back.
fn garbage_one(addr: SocketAddr, plan: &Plan, seed: u64, sent: &AtomicU64) -> Result<u64, Error> {
    let mut stream = connect(addr)?;
    let reader = stream.try_clone()?;
    let counter = thread::spawn(move || count_error_lines(reader));
    let mut random = SplitMix64(seed);
    let mut chunks = 0;
    let mut chunk = Vec::new();
    while !plan.over() && !plan.counted_out(chunks) {
        random.fill_garbage(&mut chunk);
        if stream.write_all(&chunk).is_err() {
            break; // the broker closed us (a random `QUIT`, say): that is its right
        }
        sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        chunks += 1;
    }
    // The broker reads the rest, answers, and closes; the counter thread sees that end.
    let _ = stream.write_all(b"\n");
    let _ = stream.shutdown(Shutdown::Write);
    counter
        .join()
        .map_err(|_| Error::Unexpected("the reading thread panicked".into()))
}

fn count_error_lines(stream: TcpStream) -> u64 {
    let _ = stream.set_read_timeout(Some(REPLY_TIMEOUT));
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut errors = 0;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return errors,
            Ok(_) if line.starts_with(b"ERROR ") => errors += 1,
            Ok(_) => {}
        }
    }
}

/// SplitMix64: a tiny, fast, seeded generator. Plenty for garbage; not for secrets.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Up to 1 KiB of random bytes, ending in a line break half the time so the broker
    /// sees whole lines as well as lines split across writes.
    fn fill_garbage(&mut self, out: &mut Vec<u8>) {
        let len = 1 + (self.next() % 1024) as usize;
        out.clear();
        out.extend((0..len).map(|_| self.next() as u8));
        if self.next() % 2 == 0 {
            out.push(b'\n');
        }
    }
}

fn seed_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |since| since.as_nanos() as u64)
}

// ---------------------------------------------------------------------------------------
// churn

/// Subscribes and unsubscribes in a loop from --conns connections. A `PING` every so many
/// pairs keeps us from running ahead of the broker by more than a socket buffer, and lets
/// us count the deliveries that a publisher on the topic got through to us meanwhile.
fn churn(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let started = Instant::now();
    say!(
        "churn: {} subscribing to and unsubscribing from '{}' in a loop, {}",
        plan.who(),
        plan.topic,
        plan.limits()
    );
    let pairs = Arc::new(AtomicU64::new(0));
    let workers: Vec<JoinHandle<Result<u64, Error>>> = plan
        .ids
        .iter()
        .map(|id| {
            let (plan, id, pairs) = (plan.clone(), id.clone(), Arc::clone(&pairs));
            thread::spawn(move || churn_one(addr, &plan, &id, &pairs))
        })
        .collect();
    report_progress(plan, &workers, || {
        let count = pairs.load(Ordering::Relaxed);
        say!(
            "churn: {count} subscribe/unsubscribe pairs so far ({:.0}/s)",
            per_second(count, started)
        );
    });
    let mut deliveries = 0;
    for worker in workers {
        deliveries += worker
            .join()
            .map_err(|_| Error::Unexpected("a connection's thread panicked".into()))??;
    }
    let count = pairs.load(Ordering::Relaxed);
    say!(
        "churn: done: {count} subscribe/unsubscribe pairs in {:.1}s ({:.0}/s), {deliveries} \
         deliveries caught while subscribed; {}",
        started.elapsed().as_secs_f64(),
        per_second(count, started),
        broker_answers(addr)
    );
    Ok(())
}

/// One churning connection; returns how many deliveries it received.
fn churn_one(addr: SocketAddr, plan: &Plan, id: &str, pairs: &AtomicU64) -> Result<u64, Error> {
    const PAIRS_PER_PING: u64 = 100;
    let mut client = Client::connect(addr)?;
    let mut done = 0;
    let mut deliveries = 0;
    while !plan.over() && !plan.counted_out(done) {
        client.subscribe(&plan.topic, id)?;
        client.unsubscribe(&plan.topic, id)?;
        done += 1;
        pairs.fetch_add(1, Ordering::Relaxed);
        if done % PAIRS_PER_PING == 0 {
            client.ping()?;
            while client.recv_timeout(Duration::ZERO)?.is_some() {
                deliveries += 1;
            }
        }
    }
    client.ping()?;
    while client.recv_timeout(Duration::ZERO)?.is_some() {
        deliveries += 1;
    }
    Ok(deliveries)
}

// ---------------------------------------------------------------------------------------
// dupid

/// Opens --conns connections that all subscribe under the same id, publishes from the
/// first, and shows that every connection receives every message: the broker tells
/// clients apart by connection, never by the id they claim.
fn dupid(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let started = Instant::now();
    let id = &plan.ids[0];
    let messages = plan.count.unwrap_or(3);
    let mut clients = Vec::new();
    for _ in &plan.ids {
        let mut client = Client::connect(addr)?;
        client.subscribe(&plan.topic, id)?;
        client.ping()?;
        clients.push(client);
    }
    let subscribers = clients[0]
        .topics()?
        .into_iter()
        .find(|(topic, _)| *topic == plan.topic)
        .map_or(0, |(_, n)| n);
    say!(
        "dupid: {} connections all subscribed to '{}' as '{id}'; the broker counts {subscribers} \
         subscriber(s) of '{}'",
        clients.len(),
        plan.topic,
        plan.topic
    );
    let mut sent = 0;
    while sent < messages && !plan.over() {
        if sent > 0 {
            thread::sleep(plan.every.min(plan.time_left()));
        }
        clients[0].publish(&plan.topic, &format!("dupid message {}", sent + 1), id)?;
        sent += 1;
    }
    say!("dupid: published {sent} message(s) as '{id}'");
    let mut everyone_got_all = true;
    for (n, client) in clients.iter_mut().enumerate() {
        let mut received = 0;
        while received < sent {
            match client.recv_timeout(plan.time_left().max(REPLY_TIMEOUT))? {
                Some(_) => received += 1,
                None => break,
            }
        }
        everyone_got_all &= received == sent;
        say!(
            "dupid: connection {} ('{id}') received {received} of {sent}",
            n + 1
        );
    }
    let verdict = if everyone_got_all {
        "every connection received every message: subscriptions belong to connections, not ids"
    } else {
        "some connection missed messages"
    };
    say!(
        "dupid: done after {:.1}s: {verdict}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// shared by the modes with worker threads

/// Reports progress every second until the deadline passes or every worker has finished.
fn report_progress<T>(plan: &Plan, workers: &[JoinHandle<T>], report: impl Fn()) {
    let mut last_report = Instant::now();
    while !plan.over() && workers.iter().any(|worker| !worker.is_finished()) {
        thread::sleep(Duration::from_millis(20).min(plan.time_left()));
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            report();
        }
    }
}

fn join_all(workers: Vec<JoinHandle<Result<(), Error>>>) -> Result<(), Error> {
    for worker in workers {
        worker
            .join()
            .map_err(|_| Error::Unexpected("a connection's thread panicked".into()))??;
    }
    Ok(())
}

fn per_second(count: u64, since: Instant) -> f64 {
    count as f64 / since.elapsed().as_secs_f64().max(1e-9)
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

// ---------------------------------------------------------------------------------------
// udp-reflect and udp-flood

/// A UDP socket for the broker at `addr`, that waits at most [`REPLY_TIMEOUT`] to read.
fn udp_socket(addr: SocketAddr) -> Result<UdpSocket, Error> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let connect_error = |source| Error::Connect {
        addr: format!("{addr} (UDP)"),
        source,
    };
    let socket = UdpSocket::bind(local).map_err(connect_error)?;
    socket.connect(addr).map_err(connect_error)?;
    socket.set_read_timeout(Some(REPLY_TIMEOUT))?;
    Ok(socket)
}

/// Sends `PING <token>` (with `prefix` before it) and reads up to its `PONG`; returns the
/// datagrams that came before it. On one path datagrams keep their order (mostly), so the
/// `PONG` comes after the answers to everything sent before the `PING`.
fn udp_sync(socket: &UdpSocket, prefix: &str, token: &str) -> Result<Vec<Vec<u8>>, Error> {
    socket.send(format!("{prefix}PING {token}\n").as_bytes())?;
    let pong = format!("PONG {token}\n");
    let mut before = Vec::new();
    let mut buffer = vec![0u8; 65_536];
    loop {
        let len = socket
            .recv(&mut buffer)
            .map_err(|error| match error.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Timeout,
                _ => Error::Io(error),
            })?;
        if buffer[..len] == *pong.as_bytes() {
            return Ok(before);
        }
        before.push(buffer[..len].to_vec());
    }
}

/// Plays a forged source: each round sends three `SUBSCRIBE #` datagrams and never echoes
/// the cookie the broker answers with, then counts what came back. Against a broker that
/// subscribed any address, the retained store would come back, ×80,000 the bytes sent.
fn udp_reflect(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let socket = udp_socket(addr)?;
    say!(
        "udp-reflect: a source that never echoes the broker's cookie sends SUBSCRIBE # \
         datagrams to {addr}, {}",
        plan.limits()
    );
    let mut pairs = Vec::new();
    while pairs.len() + 30 <= 1_200 {
        pairs.extend_from_slice(b"SUBSCRIBE # a\nUNSUBSCRIBE # a\n");
    }
    let round: [&[u8]; 3] = [
        b"SUBSCRIBE # a",
        b"SUBSCRIBE # a\n\n\n\n\n\n\n\n\n\n\n\n",
        &pairs,
    ];
    let (mut sent, mut datagrams_sent, mut received, mut cookies, mut deliveries) = (0, 0, 0, 0, 0);
    let mut rounds = 0;
    while !plan.over() && !plan.counted_out(rounds) {
        for datagram in round {
            socket.send(datagram)?;
            sent += datagram.len();
            datagrams_sent += 1;
        }
        for answer in udp_sync(&socket, "", &format!("reflect{rounds}"))? {
            received += answer.len();
            cookies += usize::from(answer.starts_with(b"COOKIE "));
            deliveries += usize::from(answer.starts_with(b"DELIVER "));
        }
        rounds += 1;
    }
    say!(
        "udp-reflect: done: sent {sent} bytes in {datagrams_sent} datagrams; received {received} \
         bytes (x{:.2}): {cookies} COOKIE, {deliveries} DELIVER",
        received as f64 / sent.max(1) as f64
    );
    Ok(())
}

/// Proves its address (asks for a cookie, echoes it), then sends datagrams of 64 KiB,
/// each 13,000 `PING` lines, and counts the `PONG`s that come back for each.
fn udp_flood(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let socket = udp_socket(addr)?;
    let mut probe = b"SUBSCRIBE # a".to_vec();
    probe.resize(cookie::ANSWER_BYTES, b'\n');
    socket.send(&probe)?;
    let cookie_line = udp_sync(&socket, "", "flood-cookie")?
        .into_iter()
        .find_map(|answer| {
            let text = String::from_utf8(answer).ok()?;
            text.starts_with("COOKIE ").then_some(text)
        })
        .ok_or_else(|| Error::Unexpected(format!("{addr} sent no COOKIE")))?;
    say!(
        "udp-flood: proved its address (echoed the broker's COOKIE); now datagrams of 13,000 \
         PINGs to {addr}, {}",
        plan.limits()
    );
    let mut datagram = cookie_line.into_bytes();
    datagram.extend_from_slice("PING\n".repeat(13_000).as_bytes());
    let (mut datagrams, mut pongs) = (0, 0);
    while !plan.over() && !plan.counted_out(datagrams) {
        socket.send(&datagram)?;
        datagrams += 1;
        pongs += udp_sync(&socket, "", &format!("flood{datagrams}"))?
            .iter()
            .filter(|answer| answer.starts_with(b"PONG"))
            .count();
    }
    say!(
        "udp-flood: done: sent {datagrams} datagrams of 13,000 PINGs; {pongs} PONGs came back \
         ({:.1} per datagram)",
        pongs as f64 / datagrams.max(1) as f64
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// retained-flood and resubscribe

/// The size of each message retained-flood keeps: a thousand of them fill the default store.
const RETAINED_BODY: usize = 16 * 1024;

/// How many messages retained-flood sends between two `PING`s, to see whether the store
/// refused one.
const RETAINED_BATCH: u64 = 64;

/// Retains 16 KiB messages on `<topic>/<n>`, each as a publisher id of its own
/// (`<id><n>`), until the broker refuses one (its store is full), --count or --duration,
/// then says how much the broker kept and what it said.
fn retained_flood(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let id = &plan.ids[0];
    let mut stream = connect(addr)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    reader.get_ref().set_read_timeout(Some(REPLY_TIMEOUT))?;
    say!(
        "retained-flood: {id}<n> retain messages of {RETAINED_BODY} bytes on '{}/<n>' until \
         the broker's store is full, {}",
        plan.topic,
        plan.limits()
    );
    let body = "r".repeat(RETAINED_BODY);
    let (mut sent, mut refused) = (0u64, None);
    while refused.is_none() && !plan.over() && !plan.counted_out(sent) {
        let mut lines = String::new();
        for _ in 0..RETAINED_BATCH {
            if plan.counted_out(sent) {
                break;
            }
            // An id of its own for each: one id keeps only its share of the store
            // (`--max-retained-bytes-per-client`), but nothing stops an anonymous client
            // from making up ids (with an auth file, the user's share bounds them all).
            lines.push_str(&format!("RETAIN {}/{sent} {body} {id}{sent}\n", plan.topic));
            sent += 1;
        }
        lines.push_str(&format!("PING kept{sent}\n"));
        stream.write_all(lines.as_bytes())?;
        let pong = format!("PONG kept{sent}");
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(Error::Closed);
            }
            let line = line.trim_end();
            if line == pong {
                break;
            }
            if line.starts_with("ERROR ") {
                refused.get_or_insert_with(|| line.to_string());
            }
        }
    }
    match refused {
        Some(error) => say!(
            "retained-flood: done: sent {sent} RETAIN; the store is full, the broker said \
             '{error}'; {}",
            broker_answers(addr)
        ),
        None => say!(
            "retained-flood: done: sent {sent} RETAIN, all kept; {}",
            broker_answers(addr)
        ),
    }
    Ok(())
}

/// Subscribes to `#` and unsubscribes again, each round reading what the broker sends up
/// to a `PONG`: the whole retained store, streamed at the pace we read. Says how much each
/// round brought and whether the broker ever cut us off.
fn resubscribe(addr: SocketAddr, plan: &Plan) -> Result<(), Error> {
    let id = &plan.ids[0];
    let mut stream = connect(addr)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    say!(
        "resubscribe: {id} subscribes to '#' and unsubscribes in a loop, reading the \
         retained store each time, {}",
        plan.limits()
    );
    // The whole store may take a while on a slow machine: each line is due within
    // REPLY_TIMEOUT of the one before, not of the SUBSCRIBE.
    reader.get_ref().set_read_timeout(Some(REPLY_TIMEOUT))?;
    let started = Instant::now();
    let (mut rounds, mut deliveries, mut bytes, mut slowest) = (0u64, 0u64, 0u64, Duration::ZERO);
    let mut line = String::new();
    while !plan.over() && !plan.counted_out(rounds) {
        let round = Instant::now();
        stream.write_all(
            format!("SUBSCRIBE # {id}\nUNSUBSCRIBE # {id}\nPING r{rounds}\n").as_bytes(),
        )?;
        let pong = format!("PONG r{rounds}");
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    say!(
                        "resubscribe: {id} was cut off by the broker in round {} after {:.1}s",
                        rounds + 1,
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                Ok(_) if line.trim_end() == pong => break,
                Ok(read) if line.starts_with("DELIVER ") => {
                    deliveries += 1;
                    bytes += read as u64;
                }
                Ok(_) => {}
            }
        }
        slowest = slowest.max(round.elapsed());
        rounds += 1;
        if rounds == 1 {
            say!("resubscribe: round 1 brought {deliveries} message(s), {bytes} bytes");
        }
    }
    say!(
        "resubscribe: done: {rounds} round(s) in {:.1}s, {deliveries} message(s) and {bytes} \
         bytes read, slowest round {:.0} ms, never cut off; {}",
        started.elapsed().as_secs_f64(),
        slowest.as_secs_f64() * 1e3,
        broker_answers(addr)
    );
    Ok(())
}
