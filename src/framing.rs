//! Cutting a TCP byte stream into lines: the *bytes* layer, below [`crate::protocol`].
//!
//! TCP delivers a stream of bytes, not messages. One `read` may return half a command, or
//! three commands and the start of a fourth. A broker that treats each `read` as one
//! message (as the classic classroom broker did with a fixed 1024-byte `recv`) loses or
//! mangles lines whenever the network cuts them differently. [`LineReader`] keeps the
//! bytes it has read but not yet used, and hands out a line only once its `\n` has
//! arrived. It knows nothing of commands.
//!
//! It is split into two calls on purpose:
//!
//! * [`LineReader::next_line`] returns the next *complete* line from the bytes already
//!   buffered, and never touches the socket.
//! * [`LineReader::fill`] blocks on the socket for more bytes.
//!
//! That split lets the session do something useful at the one moment it is about to block:
//! flush the deliveries it has queued (see `session.rs`). A burst of 500 publishes
//! that arrived in one `read` then costs one write per subscriber instead of 500.
//!
//! A line longer than the limit is not buffered whole: its bytes are dropped as they
//! arrive, up to the next `\n`, so a client cannot make the broker hold a gigabyte by
//! never sending a newline.

use std::io::{self, Read};
use std::ops::{Deref, DerefMut};

use crate::scan;

/// The first read buffer of a connection. Most connections only ever send a few short
/// commands (`SUBSCRIBE weather sub1`), so they start small; a longer line or a busy
/// publisher grows it (see [`MAX_READ_CHUNK`]). It is kept inside the reader, which lives
/// on the connection's stack: at 512 bytes it was one of the things that pushed an idle
/// connection's deepest call into a third 4 KiB page (see `CLIENT_STACK_SIZE` in
/// `server.rs`).
const INITIAL_BUFFER: usize = 64;

/// The most a busy connection reads in one call. Bigger reads mean fewer system calls and
/// bigger batches of publishes per flush; 64 KiB is what Linux hands out per read on
/// loopback anyway, so more would buy nothing.
const MAX_READ_CHUNK: usize = 64 * 1024;

/// What [`LineReader::next_line`] found in the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its `\n` and without a `\r` before it.
    Line(&'a [u8]),
    /// A line went over the limit; its bytes are being dropped up to the next `\n`.
    /// Reported once per overlong line.
    TooLong,
}

/// What one [`LineReader::fill`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Filled {
    /// More bytes arrived.
    Bytes(usize),
    /// The peer closed its side of the connection; no more bytes will come.
    Eof,
}

/// Reads lines from any byte source (a `TcpStream` in the broker and clients, a byte slice
/// in tests), capping the length of one line.
///
/// ```
/// use pubsub_lab::framing::{Frame, LineReader};
/// // Two commands in one write, the second one split: only complete lines come out.
/// let mut reader = LineReader::new(&b"PING 1\r\nPING 2\nPI"[..], 1024);
/// reader.fill().unwrap();
/// assert_eq!(reader.next_line(), Some(Frame::Line(b"PING 1")));
/// assert_eq!(reader.next_line(), Some(Frame::Line(b"PING 2")));
/// assert_eq!(reader.next_line(), None);
/// ```
#[derive(Debug)]
pub struct LineReader<R> {
    source: R,
    /// Bytes read from `source`; `buffer[start..end]` are not yet handed out.
    buffer: Buffer,
    start: usize,
    end: usize,
    /// How far past `start` we already looked for a `\n`, so bytes are scanned once.
    scanned: usize,
    max_line: usize,
    /// True while dropping the rest of an overlong line.
    discarding: bool,
    /// The last read filled all the space it was given: more bytes are probably waiting,
    /// so the next read gets a bigger buffer.
    busy: bool,
}

impl<R: Read> LineReader<R> {
    /// Wraps `source`; lines longer than `max_line` bytes are reported as
    /// [`Frame::TooLong`] and dropped.
    pub fn new(source: R, max_line: usize) -> LineReader<R> {
        LineReader {
            source,
            buffer: Buffer::Inline([0; INITIAL_BUFFER]),
            start: 0,
            end: 0,
            scanned: 0,
            max_line,
            discarding: false,
            busy: false,
        }
    }

    /// Whether the last read filled all the space it had, so that more bytes are probably
    /// waiting already. When it did not, the sender may only have paused: a caller that
    /// would give its buffers back waits a little first (see `QUIET_AFTER` in
    /// `session.rs`).
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// The byte source, for setting timeouts or shutting a socket down.
    pub fn get_ref(&self) -> &R {
        &self.source
    }

    /// Returns the next complete line from the bytes already read, or `None` when there is
    /// no complete line buffered (call [`fill`](Self::fill) then). Never blocks.
    pub fn next_line(&mut self) -> Option<Frame<'_>> {
        // lab:begin 03 line framing
        loop {
            let unscanned = &self.buffer[self.scanned..self.end];
            let Some(offset) = find_newline(unscanned) else {
                self.scanned = self.end;
                return self.check_unfinished_line();
            };
            let newline = self.scanned + offset;
            let line_start = self.start;
            self.start = newline + 1;
            self.scanned = self.start;
            if self.discarding {
                // The tail of an overlong line: drop it and look for the next line.
                self.discarding = false;
                continue;
            }
            let line = strip_carriage_return(&self.buffer[line_start..newline]);
            if line.len() > self.max_line {
                return Some(Frame::TooLong);
            }
            return Some(Frame::Line(line));
        }
        // lab:end 03
    }

    /// No `\n` in the buffer: if the unfinished line is already too long, drop it now
    /// rather than buffer it, and report it once.
    fn check_unfinished_line(&mut self) -> Option<Frame<'static>> {
        let pending = self.end - self.start;
        // +1 leaves room for the `\r` of a line that is exactly at the limit.
        if pending > self.max_line + 1 || (self.discarding && pending > 0) {
            self.start = self.end;
            self.scanned = self.end;
            if !self.discarding {
                self.discarding = true;
                return Some(Frame::TooLong);
            }
        }
        None
    }

    /// Blocks until the source gives more bytes (or reports end of file or an error,
    /// including a read timeout as `WouldBlock`/`TimedOut`).
    pub fn fill(&mut self) -> io::Result<Filled> {
        self.make_room();
        loop {
            let space = self.buffer.len() - self.end;
            match self.source.read(&mut self.buffer[self.end..]) {
                Ok(0) => return Ok(Filled::Eof),
                Ok(n) => {
                    self.end += n;
                    self.busy = n == space;
                    return Ok(Filled::Bytes(n));
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// After end of file: the last line if the peer closed without sending its `\n`.
    /// The protocol processes such a line like any other.
    pub fn take_unterminated(&mut self) -> Option<&[u8]> {
        if self.discarding || self.start == self.end {
            return None;
        }
        let line = strip_carriage_return(&self.buffer[self.start..self.end]);
        self.start = self.end;
        self.scanned = self.end;
        (line.len() <= self.max_line).then_some(line)
    }

    /// Whether the reader holds a heap buffer, which [`release`](Self::release) would give
    /// back.
    pub fn holds_heap_buffer(&self) -> bool {
        matches!(self.buffer, Buffer::Heap(_))
    }

    /// Goes back to the small inline buffer, giving the heap one back, unless bytes of an
    /// unfinished line wait in it: for a connection that has gone quiet. The owner decides
    /// when that is (see `read_loop` in `session.rs`): a read that did not fill the
    /// buffer only means the sender paused, and a reader that shrank after each one
    /// climbed back through eleven ever bigger reads at the next (64 bytes, 128, ...).
    pub fn release(&mut self) {
        if self.start == self.end {
            self.buffer.shrink();
            (self.start, self.end, self.scanned) = (0, 0, 0);
        }
    }

    /// Moves unread bytes to the front, and doubles the buffer when the last read filled
    /// it (a busy connection: bigger reads mean fewer system calls and bigger batches) or
    /// when an unfinished line fills it. Growth is capped by the line limit and
    /// [`MAX_READ_CHUNK`]. It never shrinks here: see [`release`](Self::release).
    fn make_room(&mut self) {
        if self.start == self.end {
            (self.start, self.end, self.scanned) = (0, 0, 0);
        }
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        let full = self.end == self.buffer.len();
        let cap = MAX_READ_CHUNK.max(self.max_line + 2);
        if (full || self.busy) && self.buffer.len() < cap {
            let bigger = (self.buffer.len() * 2).min(cap);
            self.buffer.grow(bigger);
        }
        if self.end == self.buffer.len() {
            // Only reachable while discarding an overlong line: its bytes are not needed.
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
        }
    }
}

/// Where a [`LineReader`] keeps its bytes: a small array inside the reader itself while the
/// connection sends a few short commands now and then (nearly every connection, nearly all
/// the time), and a heap buffer only while it is busy, given back once it goes quiet
/// ([`LineReader::release`]). An idle connection so holds no heap memory for its input:
/// ten thousand idle clients cost no buffers.
///
/// It dereferences to a byte slice, so the reader indexes it as it would a `Vec<u8>`.
// Clippy suggests boxing the large variant; keeping the bytes inline, off the heap, is the
// whole point of it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Buffer {
    Inline([u8; INITIAL_BUFFER]),
    Heap(Vec<u8>),
}

impl Buffer {
    /// Grows to `len` bytes, moving to the heap, keeping what is there.
    fn grow(&mut self, len: usize) {
        match self {
            Buffer::Inline(bytes) => {
                let mut heap = bytes.to_vec();
                heap.resize(len, 0);
                *self = Buffer::Heap(heap);
            }
            Buffer::Heap(heap) => heap.resize(len, 0),
        }
    }

    /// Goes back to the inline array, giving the heap buffer back. Only for an empty
    /// buffer: what it holds is dropped.
    fn shrink(&mut self) {
        if let Buffer::Heap(_) = self {
            *self = Buffer::Inline([0; INITIAL_BUFFER]);
        }
    }
}

impl Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Buffer::Inline(bytes) => bytes,
            Buffer::Heap(heap) => heap,
        }
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Buffer::Inline(bytes) => bytes,
            Buffer::Heap(heap) => heap,
        }
    }
}

/// The position of the first `\n` in `bytes`: every byte the broker receives passes
/// through here, so it is searched eight bytes at a time (see `scan.rs`).
fn find_newline(bytes: &[u8]) -> Option<usize> {
    scan::first(bytes, |word| scan::lowest_equal(word, b'\n'))
}

fn strip_carriage_return(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out its bytes in the given pieces, one per `read`, the way a
    /// network cuts a stream.
    struct Pieces(Vec<Vec<u8>>);

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = &mut self.0[0];
            let n = piece.len().min(out.len());
            out[..n].copy_from_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    /// Reads everything, returning each frame as text ("!" for TooLong).
    fn frames(pieces: &[&[u8]], max_line: usize) -> Vec<String> {
        let source = Pieces(pieces.iter().map(|p| p.to_vec()).collect());
        let mut reader = LineReader::new(source, max_line);
        let mut out = Vec::new();
        loop {
            while let Some(frame) = reader.next_line() {
                out.push(match frame {
                    Frame::Line(line) => String::from_utf8_lossy(line).into_owned(),
                    Frame::TooLong => "!".to_string(),
                });
            }
            if reader.fill().unwrap() == Filled::Eof {
                if let Some(last) = reader.take_unterminated() {
                    out.push(String::from_utf8_lossy(last).into_owned());
                }
                return out;
            }
        }
    }

    #[test]
    fn find_newline_agrees_with_a_plain_search() {
        // Every length up to three words, with the newline at every place or nowhere, and
        // bytes around it that differ from `\n` by one bit (where a wrong trick would err).
        for len in 0..24 {
            for at in 0..=len {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|i| [b'\x0b', b'\x8a', b'\x09'][i % 3])
                    .collect();
                if at < len {
                    bytes[at] = b'\n';
                    bytes.extend_from_slice(b"\n");
                }
                let plain = bytes.iter().position(|&b| b == b'\n');
                assert_eq!(find_newline(&bytes), plain, "{bytes:?}");
            }
        }
    }

    #[test]
    fn a_line_split_across_reads_comes_out_whole() {
        assert_eq!(
            frames(&[b"SUBS", b"CRIBE a", b" b\n"], 100),
            ["SUBSCRIBE a b"]
        );
    }

    #[test]
    fn several_lines_in_one_read_come_out_separately() {
        assert_eq!(frames(&[b"a\nb\r\nc\n"], 100), ["a", "b", "c"]);
    }

    #[test]
    fn one_byte_at_a_time_works() {
        let text = b"PUBLISH t hi p\nPING\n";
        let pieces: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(frames(&pieces, 100), ["PUBLISH t hi p", "PING"]);
    }

    #[test]
    fn the_last_line_without_newline_is_kept() {
        assert_eq!(frames(&[b"a\nlast"], 100), ["a", "last"]);
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_the_next_line_survives() {
        let long = vec![b'x'; 5000];
        let mut pieces: Vec<&[u8]> = long.chunks(700).collect();
        pieces.push(b"\nok\n");
        assert_eq!(frames(&pieces, 100), ["!", "ok"]);
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_accepted_even_with_crlf() {
        let mut line = vec![b'y'; 10];
        line.extend_from_slice(b"\r\n");
        assert_eq!(frames(&[&line], 10), ["y".repeat(10)]);
        assert_eq!(frames(&[b"yyyyyyyyyyy\n"], 10), ["!"]);
    }

    #[test]
    fn a_busy_source_gets_bigger_reads() {
        let lines = b"PUBLISH t message p\n".repeat(10_000);
        let source = Pieces(vec![lines]);
        let mut reader = LineReader::new(source, 1000);
        let mut reads = Vec::new();
        let mut biggest = 0;
        while let Filled::Bytes(n) = reader.fill().unwrap() {
            reads.push(n);
            biggest = biggest.max(reader.buffer.len());
            while reader.next_line().is_some() {}
        }
        assert_eq!(reads[0], INITIAL_BUFFER);
        // Reads grow up to the cap (less the unfinished line each time carries over).
        assert_eq!(biggest, MAX_READ_CHUNK, "{reads:?}");
        assert!(
            reads.iter().max() > Some(&(MAX_READ_CHUNK / 2)),
            "{reads:?}"
        );
    }

    #[test]
    fn an_idle_reader_holds_no_buffer_and_a_partial_line_keeps_its_bytes() {
        let source = Pieces(vec![
            b"PING 1\n".to_vec(),
            b"PI".to_vec(),
            b"NG 2\n".to_vec(),
        ]);
        let mut reader = LineReader::new(source, 1000);
        let on_heap = |reader: &LineReader<Pieces>| matches!(reader.buffer, Buffer::Heap(_));
        reader.fill().unwrap();
        assert_eq!(reader.next_line(), Some(Frame::Line(&b"PING 1"[..])));
        assert_eq!(reader.next_line(), None);
        reader.fill().unwrap();
        assert_eq!(reader.next_line(), None);
        reader.fill().unwrap();
        assert_eq!(reader.next_line(), Some(Frame::Line(&b"PING 2"[..])));
        assert!(!on_heap(&reader), "short reads never need the heap");
        // More than the inline buffer holds, and less than it and the next buffer together:
        // one read fills the inline one, the next empties the source.
        let long = b"PUBLISH t x p\n".repeat(INITIAL_BUFFER * 2 / 14 + 1);
        let mut reader = LineReader::new(Pieces(vec![long]), 1000);
        reader.fill().unwrap();
        assert!(reader.is_busy());
        while reader.next_line().is_some() {}
        reader.fill().unwrap();
        assert!(on_heap(&reader), "a busy reader moves to the heap");
        while reader.next_line().is_some() {}
        assert_eq!(reader.fill().unwrap(), Filled::Eof);
        assert!(on_heap(&reader), "a pause is not a reason to give it back");
        reader.release();
        assert!(!on_heap(&reader), "released: the heap buffer is given back");

        // Released while a line is unfinished: its bytes stay.
        let long = [b"PUBLISH t x p\n".repeat(10), b"PUB".to_vec()].concat();
        let mut reader = LineReader::new(Pieces(vec![long, b"LISH t y p\n".to_vec()]), 1000);
        let mut lines = Vec::new();
        while reader.fill().unwrap() != Filled::Eof {
            while let Some(Frame::Line(line)) = reader.next_line() {
                lines.push(line.to_vec());
            }
            reader.release();
        }
        assert_eq!(lines.len(), 11);
        assert_eq!(
            lines[10], b"PUBLISH t y p",
            "the unfinished line lost its start"
        );
    }

    #[test]
    fn an_overlong_line_is_not_buffered_whole() {
        let long = vec![b'x'; 1 << 20];
        let pieces: Vec<&[u8]> = long.chunks(4096).collect();
        let source = Pieces(pieces.iter().map(|p| p.to_vec()).collect());
        let mut reader = LineReader::new(source, 1000);
        while reader.fill().unwrap() != Filled::Eof {
            while reader.next_line().is_some() {}
        }
        assert!(
            reader.buffer.len() <= MAX_READ_CHUNK,
            "{}",
            reader.buffer.len()
        );
    }
}
