//! Lab 03 checks: TCP is a stream of bytes, not of messages. One `read` may return half a
//! command, or three commands and the start of a fourth. `LineReader::next_line` (the lab 03
//! region in src/framing.rs) hands out a line only once its `\n` has arrived, drops a `\r`
//! before it, and reports a line over the limit once. These checks cut commands the way a
//! network might, over a real socket, then drive the reader directly with chosen pieces.

mod common;
mod labcheck;

use std::cell::Cell;
use std::io::{self, Read};
use std::thread;
use std::time::Duration;

use pubsub_lab::framing::{Filled, Frame, LineReader};
use pubsub_lab::Config;

use labcheck::Peer;

/// Where the work of this lab is; `labcheck`'s failure messages point there too.
const REGION: &str = "LineReader::next_line in src/framing.rs";

/// A command that arrives in three pieces is handled once, when its `\n` arrives.
#[test]
fn a_command_split_across_writes_is_handled_whole() {
    let broker = common::start_broker();
    let mut client = Peer::connect(&broker, "client");
    for piece in ["PI", "NG hel", "lo\n"] {
        client.send(piece);
        // Give the broker time to read each piece on its own, as a slow network would.
        thread::sleep(Duration::from_millis(50));
    }
    let line = client.line("`PONG hello` for a PING sent in three pieces");
    assert_eq!(
        line, "PONG hello",
        "the pieces `PI`, `NG hel`, `lo\\n` are one line: keep the bytes of an unfinished \
         line until its `\\n` arrives"
    );
}

/// Three commands in one write get three replies, in order.
#[test]
fn several_commands_in_one_write_each_get_a_reply() {
    let broker = common::start_broker();
    let mut client = Peer::connect(&broker, "client");
    client.send("PING a\nPING b\nPING c\n");
    for token in ["a", "b", "c"] {
        let line = client.line(&format!("`PONG {token}`"));
        assert_eq!(
            line,
            format!("PONG {token}"),
            "one read held three lines: next_line must return them one by one, in order"
        );
    }
}

/// A `\r\n` line end is accepted, and blank lines are ignored.
#[test]
fn crlf_and_blank_lines_are_accepted() {
    let broker = common::start_broker();
    let mut client = Peer::connect(&broker, "client");
    client.send("\r\n\nPING x\r\n\nPING y\n");
    for token in ["x", "y"] {
        let line = client.line(&format!("`PONG {token}`"));
        assert_eq!(
            line,
            format!("PONG {token}"),
            "nc on some systems ends lines with `\\r\\n`: next_line must drop the `\\r` \
             (and blank lines must produce no reply)"
        );
    }
}

/// A command sent one byte per write still works.
#[test]
fn one_byte_at_a_time_works() {
    let broker = common::start_broker();
    let mut client = Peer::connect(&broker, "client");
    for byte in "PING slowly\n".bytes() {
        client.send_bytes(&[byte]);
        thread::sleep(Duration::from_millis(2));
    }
    let line = client.line("`PONG slowly` for a PING sent one byte per write");
    assert_eq!(
        line, "PONG slowly",
        "a line that trickles in byte by byte is still one line"
    );
}

/// A line over the limit gets one ERROR, and the next line is handled normally.
#[test]
fn an_overlong_line_gets_one_error_and_the_connection_carries_on() {
    let broker = common::start_broker_with(Config {
        max_line_bytes: 100,
        ..Config::default()
    });
    let mut client = Peer::connect(&broker, "client");
    let long = "x".repeat(1000);
    for piece in long.as_bytes().chunks(300) {
        client.send_bytes(piece);
    }
    client.send("\nPING after\n");
    let line = client.line("one ERROR for the 1000-byte line (the limit is 100)");
    assert!(
        line.starts_with("ERROR "),
        "a 1000-byte line with a 100-byte limit must be refused with one ERROR; got {line:?}"
    );
    let line = client.line("`PONG after`, the line after the overlong one");
    assert_eq!(
        line, "PONG after",
        "after an overlong line, report it once (Frame::TooLong), drop its bytes up to its \
         `\\n`, and carry on with the next line"
    );
}

/// A line exactly at the limit is accepted, with `\n` or `\r\n`.
#[test]
fn a_line_exactly_at_the_limit_is_accepted() {
    let broker = common::start_broker_with(Config {
        max_line_bytes: 20,
        ..Config::default()
    });
    let mut client = Peer::connect(&broker, "client");
    let line = format!("PING {}", "t".repeat(15));
    assert_eq!(line.len(), 20);
    client.send(&format!("{line}\n{line}\r\n"));
    for ending in ["\\n", "\\r\\n"] {
        let reply = client.line("the PONG of a PING exactly 20 bytes long");
        assert_eq!(
            reply,
            format!("PONG {}", "t".repeat(15)),
            "a line of exactly --max-line-bytes (not counting its {ending}) is allowed"
        );
    }
}

/// Driven directly, the reader hands out only complete lines, whatever pieces the bytes come in.
#[test]
fn the_reader_hands_out_only_complete_lines() {
    let cases: [Case; 4] = [
        (
            "a line split in three reads",
            &[b"SUBS", b"CRIBE a", b" b\n"],
            &["SUBSCRIBE a b"],
        ),
        (
            "three lines in one read",
            &[b"a\nb\r\nc\n"],
            &["a", "b", "c"],
        ),
        (
            "a line and the start of the next",
            &[b"one\ntw", b"o\n"],
            &["one", "two"],
        ),
        ("an empty line", &[b"\nz\n"], &["", "z"]),
    ];
    for (case, pieces, expected) in cases {
        let got = read_all(pieces, 100);
        assert_eq!(got, expected, "{case}: {pieces:?} should give these lines");
    }
}

/// Driven directly, the reader reports a line over the limit once and goes on with the next.
#[test]
fn the_reader_reports_an_overlong_line_once() {
    let long = vec![b'x'; 5000];
    let mut in_pieces: Vec<&[u8]> = long.chunks(700).collect();
    in_pieces.push(b"\nok\n");
    let cases: [LimitCase; 4] = [
        (
            "a 5000-byte line in pieces of 700 bytes, then `ok` (the limit is 100)",
            &in_pieces,
            100,
            &["!", "ok"],
        ),
        (
            "a line exactly at the limit of 10, ended by `\\r\\n`",
            &[b"yyyyyyyyyy\r\n"],
            10,
            &["yyyyyyyyyy"],
        ),
        (
            "a line one byte over the limit of 10, then `z`",
            &[b"yyyyyyyyyyy\nz\n"],
            10,
            &["!", "z"],
        ),
        (
            "`PING` and `PONG` one byte per read",
            &[b"P", b"I", b"N", b"G", b"\n", b"P", b"O", b"N", b"G", b"\n"],
            10,
            &["PING", "PONG"],
        ),
    ];
    for (case, pieces, limit, expected) in cases {
        let got = read_all(pieces, limit);
        assert_eq!(
            got, expected,
            "{case}: expected these frames (`!` is Frame::TooLong): a line longer than \
             max_line is reported once, a line exactly max_line long (not counting its \
             `\\r\\n`) is not, and after an overlong line the reader must carry on with \
             the next one; look at the length test and `discarding` in {REGION}"
        );
    }
}

/// Driven directly, a line loses its `\n` and one `\r` right before it, and nothing else:
/// not the blanks at its end, not a `\r` anywhere else, not a byte that is not UTF-8.
#[test]
fn a_line_loses_its_line_end_and_nothing_else() {
    let cases: [ByteCase; 6] = [
        (
            "a message that ends in two spaces, then `\\r\\n`",
            b"PUBLISH news two  \r\n",
            b"PUBLISH news two  ",
        ),
        ("a line that ends in a tab", b"x\t\n", b"x\t"),
        (
            "a line that ends in two `\\r`s, then `\\n`",
            b"a\r\r\n",
            b"a\r",
        ),
        ("a `\\r` inside a line", b"a\rb\n", b"a\rb"),
        (
            "a line with non-ASCII letters and `\\r\\n`",
            "grüße\r\n".as_bytes(),
            "grüße".as_bytes(),
        ),
        (
            "a line whose bytes are not UTF-8",
            b"\xff\xfe \n",
            b"\xff\xfe ",
        ),
    ];
    for (case, bytes, expected) in cases {
        let got = lines_of(&[bytes], 100);
        let shown: Vec<String> = got.iter().map(|line| escaped(line)).collect();
        assert!(
            got == [expected.to_vec()],
            "{case}: Frame::Line is the line without its `\\n` and without the one `\\r` \
             right before that `\\n`, if there is one; nothing else is removed. So {} must \
             give the line {}, but {REGION} gave [{}]. Blanks at the end belong to the \
             line (a message may end in them), and the reader works on bytes, whatever they \
             are: use strip_carriage_return",
            escaped(bytes),
            escaped(expected),
            shown.join(", "),
        );
    }
}

/// Driven directly, `next_line` never reads: with no complete line buffered it returns
/// `None` at once, and only `fill` reads.
#[test]
fn next_line_never_reads() {
    let mut reader = LineReader::new(CountedReads::new(&[b"PING a\nPI", b"NG b\n"]), 100);
    assert_eq!(
        reader.next_line(),
        None,
        "before any fill, nothing is buffered: {REGION} must return None"
    );
    assert_eq!(
        reader.get_ref().reads.get(),
        0,
        "{REGION} read from its source (never reads: only fill reads). A next_line that \
         reads blocks on the socket, and the session loses its one moment to flush the \
         deliveries it queued before it waits (see the module docs of src/framing.rs): \
         when no complete line is buffered, return self.check_unfinished_line()"
    );
    reader.fill().expect("reading from memory");
    let first = reader.next_line().map(owned);
    let second = reader.next_line().map(owned);
    assert_eq!(
        (first, second, reader.get_ref().reads.get()),
        (Some(Some(b"PING a".to_vec())), None, 1),
        "after one fill that brought `PING a\\nPI`, next_line must give `PING a`, then \
         None (the `PI` is not a complete line), without reading again: {REGION} never \
         reads (only fill reads)"
    );
}

/// A line that goes on past the limit is refused at once, before its `\n` arrives.
#[test]
fn an_endless_line_is_refused_before_it_ends() {
    let broker = common::start_broker_with(Config {
        max_line_bytes: 100,
        ..Config::default()
    });
    let mut client = Peer::connect(&broker, "client");
    client.send_bytes(&[b'x'; 1000]);
    let line = client
        .line("an ERROR for a line already ten times too long, before its `\\n` (none is sent)");
    assert!(
        line.starts_with("ERROR "),
        "got {line:?}; a client can send a line without end, and a reader that waits for \
         the `\\n` keeps every byte of it: when no `\\n` is found, {REGION} must return \
         self.check_unfinished_line(), which refuses a line before its `\\n` arrives once \
         it is over the limit"
    );
}

/// A story, the pieces the bytes arrive in, the line limit, and the frames they must give.
type LimitCase<'a> = (&'a str, &'a [&'a [u8]], usize, &'a [&'a str]);

/// A story, the bytes of one read, and the one line they must give.
type ByteCase<'a> = (&'a str, &'a [u8], &'a [u8]);

/// A story, the pieces the bytes arrive in, and the lines they must give.
type Case<'a> = (&'a str, &'a [&'a [u8]], &'a [&'a str]);

/// Every frame `LineReader` gives for `pieces`, one `read` per piece (`!` for TooLong).
fn read_all(pieces: &[&[u8]], max_line: usize) -> Vec<String> {
    frames_of(pieces, max_line)
        .into_iter()
        .map(|frame| match frame {
            Some(line) => String::from_utf8_lossy(&line).into_owned(),
            None => "!".to_string(),
        })
        .collect()
}

/// The bytes of every line `LineReader` gives for `pieces`, one `read` per piece, leaving
/// out Frame::TooLong.
fn lines_of(pieces: &[&[u8]], max_line: usize) -> Vec<Vec<u8>> {
    frames_of(pieces, max_line).into_iter().flatten().collect()
}

/// Every frame `LineReader` gives for `pieces`, one `read` per piece: a line's bytes, or
/// `None` for TooLong.
fn frames_of(pieces: &[&[u8]], max_line: usize) -> Vec<Option<Vec<u8>>> {
    let source = Pieces(pieces.iter().map(|piece| piece.to_vec()).collect());
    let mut reader = LineReader::new(source, max_line);
    let mut frames = Vec::new();
    loop {
        while let Some(frame) = reader.next_line() {
            frames.push(owned(frame));
            assert!(
                frames.len() < 100,
                "next_line keeps returning lines from {pieces:?}"
            );
        }
        if reader.fill().expect("reading from memory") == Filled::Eof {
            return frames;
        }
    }
}

/// A byte source that returns its pieces one per `read`, the way a network cuts a stream.
struct Pieces(Vec<Vec<u8>>);

impl Read for Pieces {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(piece) = self.0.first_mut() else {
            return Ok(0);
        };
        let n = piece.len().min(out.len());
        out[..n].copy_from_slice(&piece[..n]);
        piece.drain(..n);
        if piece.is_empty() {
            self.0.remove(0);
        }
        Ok(n)
    }
}

/// `bytes` as a student reads them in a message: `"a\\r\\n"`, not a list of numbers.
fn escaped(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

/// A frame as a value of its own: a line's bytes, or `None` for TooLong.
fn owned(frame: Frame<'_>) -> Option<Vec<u8>> {
    match frame {
        Frame::Line(line) => Some(line.to_vec()),
        Frame::TooLong => None,
    }
}

/// [`Pieces`] that count how often they were read.
struct CountedReads {
    pieces: Pieces,
    reads: Cell<usize>,
}

impl CountedReads {
    fn new(pieces: &[&[u8]]) -> CountedReads {
        CountedReads {
            pieces: Pieces(pieces.iter().map(|piece| piece.to_vec()).collect()),
            reads: Cell::new(0),
        }
    }
}

impl Read for CountedReads {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reads.set(self.reads.get() + 1);
        self.pieces.read(out)
    }
}
