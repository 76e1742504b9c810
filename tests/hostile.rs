//! Hostile input, tested with randomness: thousands of random byte strings and mutated
//! commands from many connections at once must leave the broker alive and serving clean
//! clients correctly, without a panic in any of its threads; and the protocol layer must
//! round-trip every valid command and return values, never panic, on any bytes at all.
//!
//! The generator is a small seeded SplitMix64 written here. Each test prints its seed when
//! it fails; run it again with `PUBSUB_SEED=<seed> cargo test --test hostile` to repeat
//! the exact same input.

mod common;

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::thread;

use common::{start_broker, stat, wait_until, Raw, TIMEOUT};
use pubsub_lab::framing::{Filled, Frame, LineReader};
use pubsub_lab::protocol::{write_delivery, Command, Delivery};

/// SplitMix64: tiny, fast, seeded, and good enough to make test input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The seed for this run: `PUBSUB_SEED` if set, else one from the clock. The returned guard
/// prints it if the test fails.
fn seed() -> (u64, SeedReport) {
    let seed = std::env::var("PUBSUB_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |since| since.as_nanos() as u64)
        });
    (seed, SeedReport(seed))
}

struct SeedReport(u64);

impl Drop for SeedReport {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "random input from seed {0}; repeat with PUBSUB_SEED={0} cargo test --test hostile",
                self.0
            );
        }
    }
}

/// Counts panics on the broker's client threads, while still printing them as usual.
static CLIENT_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_client_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if thread::current()
                .name()
                .is_some_and(|name| name.starts_with("client-"))
            {
                CLIENT_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

// ---------------------------------------------------------------------------------------
// Generating commands

/// Characters for topics and ids: anything but the separators (space, tab) and line ends.
const TOKEN_CHARS: &[char] = &[
    'a', 'z', 'A', 'Z', '0', '9', '_', '-', '.', '/', '#', '+', '*', ':', '"', '\'', '\\', '%',
    'é', 'λ', '猫', '🙂', '\u{a0}', '\u{7f}', '\u{1}', '\0',
];

fn token(rng: &mut Rng) -> String {
    let len = 1 + rng.below(12);
    (0..len).map(|_| *rng.pick(TOKEN_CHARS)).collect()
}

/// A message: one or more tokens, with runs of spaces and tabs between them.
fn message(rng: &mut Rng) -> String {
    let words = 1 + rng.below(5);
    let mut text = token(rng);
    for _ in 1..words {
        let gap: &&str = rng.pick(&[" ", "\t", "  ", " \t "]);
        text.push_str(gap);
        text.push_str(&token(rng));
    }
    text
}

/// The strings of one random valid command, kept so a `Command` can borrow them.
struct Parts {
    kind: usize,
    a: String,
    b: String,
    c: String,
}

impl Parts {
    fn random(rng: &mut Rng) -> Parts {
        Parts {
            kind: rng.below(10),
            a: token(rng),
            b: message(rng),
            c: token(rng),
        }
    }

    fn command(&self) -> Command<'_> {
        match self.kind {
            0 => Command::Subscribe {
                topic: &self.a,
                subscriber_id: &self.c,
            },
            1 => Command::Unsubscribe {
                topic: &self.a,
                subscriber_id: &self.c,
            },
            2 | 3 => Command::Publish {
                topic: &self.a,
                message: &self.b,
                publisher_id: &self.c,
            },
            4 => Command::Ping {
                token: Some(&self.c),
            },
            5 => Command::Ping { token: None },
            6 => Command::Help,
            7 => Command::Topics { filter: None },
            8 => Command::Stats,
            _ => Command::Verbose {
                on: self.a.len() % 2 == 0,
            },
        }
    }
}

/// A valid command line with one to three random edits: a byte changed, inserted,
/// deleted, or a line end, NUL or separator put somewhere.
fn mutated_command(rng: &mut Rng) -> Vec<u8> {
    let mut line = Vec::new();
    Parts::random(rng).command().write_line(&mut line);
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(line.len() + 1);
        match rng.below(5) {
            0 if at < line.len() => line[at] = rng.next() as u8,
            1 if at < line.len() => {
                line.remove(at);
            }
            2 => line.insert(at, *rng.pick(b"\n\r\0 \t")),
            3 => {
                let len = 1 + rng.below(8);
                let bytes = rng.bytes(len);
                line.splice(at..at, bytes).for_each(drop)
            }
            _ => line.insert(at, rng.next() as u8),
        }
    }
    line
}

// ---------------------------------------------------------------------------------------
// The broker under hostile bytes

/// One hostile connection: sends `chunks` pieces of random bytes or mutated commands while
/// a second thread reads whatever the broker answers, then half-closes and waits for the
/// broker to close. Returns how many bytes it sent.
fn hostile_connection(addr: SocketAddr, seed: u64, chunks: usize) -> io::Result<usize> {
    let mut rng = Rng(seed);
    let mut stream = TcpStream::connect(addr)?;
    let reader = stream.try_clone()?;
    reader.set_read_timeout(Some(TIMEOUT))?;
    let drain = thread::spawn(move || io::copy(&mut BufReader::new(reader), &mut io::sink()));
    let mut sent = 0;
    for _ in 0..chunks {
        let chunk = if rng.below(2) == 0 {
            let len = 1 + rng.below(300);
            let mut bytes = rng.bytes(len);
            if rng.below(2) == 0 {
                bytes.push(b'\n');
            }
            bytes
        } else {
            mutated_command(&mut rng)
        };
        if stream.write_all(&chunk).is_err() {
            break; // a mutated line that came out as QUIT: the broker said BYE and closed
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"\n");
    let _ = stream.shutdown(Shutdown::Write);
    drain.join().expect("the reading thread")?;
    Ok(sent)
}

#[test]
fn thousands_of_random_and_mutated_lines_from_many_connections_leave_the_broker_working() {
    let (seed, _report) = seed();
    count_client_panics();
    let broker = start_broker();
    let addr = broker.addr();
    let connections: Vec<_> = (0..16)
        .map(|i| thread::spawn(move || hostile_connection(addr, seed.wrapping_add(i), 400)))
        .collect();
    let mut sent = 0;
    for connection in connections {
        sent += connection
            .join()
            .expect("a hostile connection's thread")
            .expect("a hostile connection failed");
    }
    assert!(sent > 16 * 400 * 50, "only {sent} bytes sent");

    wait_until("every hostile connection is cleaned up", || {
        stat(&broker, "connections_current") == 0
    });
    assert!(
        broker.topic_counts().is_empty(),
        "{:?}",
        broker.topic_counts()
    );
    assert!(stat(&broker, "errors") > 1000);
    assert_eq!(
        CLIENT_PANICS.load(Ordering::SeqCst),
        0,
        "a client thread panicked"
    );

    // A clean subscriber and publisher still get exactly the classic behaviour.
    let mut subscriber = Raw::connect(addr);
    subscriber.send("SUBSCRIBE clean sub1\n");
    subscriber.sync();
    let mut publisher = Raw::connect(addr);
    publisher.send("PUBLISH clean all  is\twell pub1\n");
    publisher.sync();
    assert_eq!(subscriber.delivery(), "DELIVER clean all  is\twell pub1");
    subscriber.sync();
}

// ---------------------------------------------------------------------------------------
// The protocol layer on random input

/// A byte source that hands out its bytes in random-sized reads, as a network does.
struct Pieces {
    data: Vec<u8>,
    at: usize,
    rng: Rng,
}

impl Read for Pieces {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let left = self.data.len() - self.at;
        let n = left.min(out.len()).min(1 + self.rng.below(64));
        out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Every line `reader` yields until end of input (`None` for a too-long line).
fn all_lines<R: Read>(reader: &mut LineReader<R>) -> Vec<Option<Vec<u8>>> {
    let mut lines = Vec::new();
    loop {
        while let Some(frame) = reader.next_line() {
            lines.push(match frame {
                Frame::Line(line) => Some(line.to_vec()),
                Frame::TooLong => None,
            });
        }
        if reader.fill().expect("reading from memory") == Filled::Eof {
            if let Some(last) = reader.take_unterminated() {
                lines.push(Some(last.to_vec()));
            }
            return lines;
        }
    }
}

#[test]
fn every_valid_command_survives_write_line_framing_and_parse_unchanged() {
    let (seed, _report) = seed();
    let mut rng = Rng(seed);
    let commands: Vec<Parts> = (0..5000).map(|_| Parts::random(&mut rng)).collect();
    let mut stream = Vec::new();
    for parts in &commands {
        let mut line = Vec::new();
        parts.command().write_line(&mut line);
        assert_eq!(line.last(), Some(&b'\n'));
        let parsed = Command::parse(&line[..line.len() - 1]);
        assert_eq!(parsed, Ok(Some(parts.command())), "{line:?}");
        stream.extend_from_slice(&line);
    }
    // The same lines, all in one stream cut at random places, come out whole and in order.
    let mut reader = LineReader::new(
        Pieces {
            data: stream,
            at: 0,
            rng: Rng(seed ^ 1),
        },
        64 * 1024,
    );
    let lines = all_lines(&mut reader);
    assert_eq!(lines.len(), commands.len());
    for (line, parts) in lines.iter().zip(&commands) {
        let line = line.as_deref().expect("no line is too long");
        assert_eq!(Command::parse(line), Ok(Some(parts.command())));
    }
}

#[test]
fn every_delivery_line_parses_back_to_what_was_written() {
    let (seed, _report) = seed();
    let mut rng = Rng(seed);
    for _ in 0..5000 {
        let (topic, text, id) = (token(&mut rng), message(&mut rng), token(&mut rng));
        let mut line = Vec::new();
        write_delivery(&mut line, &topic, &text, &id, "2025-03-14 10:30:00");
        let line = String::from_utf8(line).unwrap();
        let delivery = Delivery::parse(line.trim_end_matches('\n')).expect("parses");
        assert_eq!(
            (delivery.topic, delivery.message, delivery.publisher_id),
            (topic, text, id)
        );
    }
}

#[test]
fn the_parsers_return_values_and_never_panic_on_arbitrary_bytes() {
    let (seed, _report) = seed();
    let mut rng = Rng(seed);
    for round in 0..200 {
        let mut data = Vec::new();
        for _ in 0..50 {
            if rng.below(3) == 0 {
                data.extend(mutated_command(&mut rng));
            } else {
                let len = rng.below(200);
                data.extend(rng.bytes(len));
            }
        }
        for piece in data.split(|&byte| byte == b'\n') {
            let _ = Command::parse(piece);
            let _ = Delivery::parse(&String::from_utf8_lossy(piece));
        }
        let max_line = 1 + rng.below(300);
        let mut reader = LineReader::new(
            Pieces {
                data: data.clone(),
                at: 0,
                rng: Rng(seed ^ round),
            },
            max_line,
        );
        for line in all_lines(&mut reader).into_iter().flatten() {
            assert!(!line.contains(&b'\n'), "a line with a line break inside");
            assert!(line.len() <= max_line, "{} > {max_line}", line.len());
            let _ = Command::parse(&line);
        }
    }
}
