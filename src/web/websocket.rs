//! WebSocket (RFC 6455), both ends of it: the handshake that turns an HTTP request into a
//! WebSocket, and the frames that carry messages after it.
//!
//! # The handshake
//!
//! A browser asks for a WebSocket with an ordinary HTTP `GET`, carrying a random 16-byte
//! key in base64. The server answers `101 Switching Protocols` with the key's *accept*
//! value, and from then on both sides speak frames on the same TCP connection:
//!
//! ```text
//! GET /ws HTTP/1.1                              HTTP/1.1 101 Switching Protocols
//! Host: 127.0.0.1:8080                          Upgrade: websocket
//! Upgrade: websocket                            Connection: Upgrade
//! Connection: Upgrade                           Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
//! Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
//! Sec-WebSocket-Version: 13
//! ```
//!
//! The accept value is `base64(sha1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))`
//! ([`accept_key`]): a fixed string every WebSocket server knows, so an answer that carries
//! it proves the server read the request as WebSocket and is not, say, a cache replaying
//! an old response. It is not security: anyone can compute it.
//!
//! # Frames
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| length (7)  |  extended length: 16 bits if  |
//! |I|S|S|S|  (4)  |A|             |  length is 126, 64 if 127     |
//! |N|V|V|V|       |S|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |   masking key (4 bytes), only if MASK is set                  |
//! +---------------------------------------------------------------+
//! |   payload: `length` bytes, each XORed with key[i % 4]         |
//! +---------------------------------------------------------------+
//! ```
//!
//! * **Opcodes**: `1` text, `2` binary, `0` the continuation of a message in several
//!   frames; control frames `8` close, `9` ping (answer with a pong carrying the same
//!   bytes), `10` pong. A message is one frame with `FIN` set, or a first frame without
//!   `FIN`, continuation frames, and a last continuation with `FIN`: that is
//!   *fragmentation*, and control frames may come between the pieces. Control frames are
//!   never fragmented and carry at most 125 bytes.
//! * **Masking**: every frame from a client is masked with a fresh random key, frames from
//!   a server never are. Masking is not for secrecy (the key is in the frame); it stops a
//!   page's script from choosing the bytes that go on the wire, which could otherwise make a
//!   careless proxy on the way take a frame for an HTTP request of its own and cache the
//!   answer (*cache poisoning*). A server must close a connection that sends an unmasked
//!   frame.
//! * **Closing**: either side sends a close frame (a two-byte code and a reason), the
//!   other answers with one, and then the server closes the TCP connection. The codes used
//!   here are the constants below.
//!
//! [`Decoder`] reads frames from a byte stream as a small state machine: between messages,
//! or inside a fragmented one. What it cannot accept is a [`Violation`], which names the
//! close code to send. Here every text message carries exactly one line of the broker's
//! protocol, each way (see `web/mod.rs`).

use std::fmt;
use std::io::{self, Read};

use super::base64;
use super::sha1::sha1;

/// The string RFC 6455 appends to the client's key before hashing it.
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Close code: the purpose of the connection is fulfilled (a `QUIT`, a client's goodbye).
pub const NORMAL: u16 = 1000;
/// Close code: the server is going away.
pub const GOING_AWAY: u16 = 1001;
/// Close code: a frame broke the protocol (unmasked, reserved bits, a bad opcode...).
pub const PROTOCOL_ERROR: u16 = 1002;
/// Close code: a kind of data this end does not take (binary, where text is spoken).
pub const UNSUPPORTED_DATA: u16 = 1003;
/// Close code: a text message that is not UTF-8.
pub const INVALID_DATA: u16 = 1007;
/// Close code: a message that breaks this end's rules: here, no `AUTH` in time on a broker
/// with access control.
pub const POLICY_VIOLATION: u16 = 1008;
/// Close code: a message bigger than this end takes.
pub const TOO_BIG: u16 = 1009;

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
///
/// ```
/// // The example of RFC 6455, section 1.3.
/// assert_eq!(
///     pubsub_lab::web::websocket::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &str) -> String {
    // lab:begin 09 Sec-WebSocket-Accept
    let keyed = format!("{key}{ACCEPT_GUID}");
    let digest = sha1(keyed.as_bytes());
    base64::encode(&digest)
    // lab:end 09
}

/// The server's answer to a handshake whose key was `key`: `101 Switching Protocols`.
/// (No `Content-Length`: after it come frames, not a body.)
pub fn handshake_response(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
}

/// A client's handshake request for `path` on `host` (`127.0.0.1:8080`), with `key`.
pub fn handshake_request(host: &str, path: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: base64 for exactly 16 bytes.
pub fn is_valid_key(key: &str) -> bool {
    base64::decode(key.trim()).is_some_and(|bytes| bytes.len() == 16)
}

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// `0`: the next piece of a fragmented message.
    Continuation,
    /// `1`: a text message (UTF-8).
    Text,
    /// `2`: a binary message.
    Binary,
    /// `8`: the closing handshake.
    Close,
    /// `9`: "are you there?": answered with a pong.
    Ping,
    /// `10`: the answer to a ping.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Appends one frame with `FIN` set. `mask` is `Some(key)` for a client's frame (the
/// payload is then XORed with it), `None` for a server's.
///
/// ```
/// use pubsub_lab::web::websocket::{write_frame, Opcode};
/// // The examples of RFC 6455, section 5.7: "Hello", unmasked and masked.
/// let mut frame = Vec::new();
/// write_frame(&mut frame, Opcode::Text, b"Hello", None);
/// assert_eq!(frame, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
/// frame.clear();
/// write_frame(&mut frame, Opcode::Text, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
/// assert_eq!(frame, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
pub fn write_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) {
    write_header(out, true, opcode, payload.len(), mask);
    match mask {
        None => out.extend_from_slice(payload),
        Some(key) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4])),
    }
}

/// Appends a frame header: `FIN`, opcode, length in 7, 7+16 or 7+64 bits, masking key.
pub fn write_header(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: Opcode,
    len: usize,
    mask: Option<[u8; 4]>,
) {
    out.push(if fin { 0x80 } else { 0 } | opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// Appends one line of the broker's protocol (without its `\n`) as one server text frame:
/// how a WebSocket connection's outbox writes every `DELIVER` and every reply.
pub fn write_text_line(line: &[u8], out: &mut Vec<u8>) {
    write_frame(out, Opcode::Text, line, None);
}

/// Appends a close frame with `code` and `reason` (cut to fit the 125 bytes of a control
/// frame), masked with `mask` if given.
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    write_frame(out, Opcode::Close, &payload, mask);
}

/// A frame or message this end does not accept: the close code to answer with, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The close code: [`PROTOCOL_ERROR`], [`INVALID_DATA`], [`TOO_BIG`]...
    pub code: u16,
    /// What was wrong, for the close frame's reason and the log.
    pub reason: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for Violation {}

const fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// A whole message, borrowed from the [`Decoder`] that assembled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, checked to be UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping, with the bytes the pong must carry back.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame: its code and reason, or `None` if it carried neither.
    Close(Option<(u16, &'a str)>),
}

/// Which end a decoder reads for: a server reads masked frames from clients, a client
/// unmasked ones from its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads a client's frames, which must be masked.
    Server,
    /// Reads a server's frames, which must not be.
    Client,
}

/// Frames in, whole messages out. See the module docs.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    /// The largest message accepted, in bytes; a bigger one is a [`TOO_BIG`] violation.
    max_message: usize,
    /// Bytes read; `input[start..]` not yet decoded.
    input: Vec<u8>,
    start: usize,
    /// The state: `None` between messages, `Some(kind)` inside a fragmented text or binary
    /// message, whose pieces so far are in `pieces`.
    fragmented: Option<Opcode>,
    pieces: Vec<u8>,
    /// The last message came from `pieces`: empty it before the next.
    pieces_handed_out: bool,
}

/// How much a decoder asks for at least in one read.
const READ_CHUNK: usize = 16 * 1024;

impl Decoder {
    /// A decoder for `role`, taking messages of at most `max_message` bytes.
    pub fn new(role: Role, max_message: usize) -> Decoder {
        Decoder {
            role,
            max_message,
            input: Vec::new(),
            start: 0,
            fragmented: None,
            pieces: Vec::new(),
            pieces_handed_out: false,
        }
    }

    /// Adds bytes that were read elsewhere (what followed the handshake in the same read).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Reads once from `source` into the decoder; `Ok(0)` is end of file.
    ///
    /// # Errors
    /// What the read returned, a timeout included.
    pub fn read_from(&mut self, mut source: impl Read) -> io::Result<usize> {
        if self.start == self.input.len() {
            // Everything decoded: start again at the front, and give back a buffer that a
            // big message grew, so an idle connection holds little.
            self.input.clear();
            if self.input.capacity() > 4 * READ_CHUNK {
                self.input = Vec::new();
            }
        } else if self.start > 0 {
            self.input.drain(..self.start);
        }
        self.start = 0;
        let filled = self.input.len();
        self.input.resize(filled + READ_CHUNK, 0);
        let read = loop {
            match source.read(&mut self.input[filled..]) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.input.truncate(filled + *read.as_ref().unwrap_or(&0));
        read
    }

    /// The next whole message among the bytes read, `Ok(None)` if more must be read first.
    ///
    /// # Errors
    /// A [`Violation`] for a frame or message that breaks RFC 6455 or the size limit. The
    /// connection must then be closed with its code.
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, Violation> {
        if self.pieces_handed_out {
            self.pieces.clear();
            self.pieces_handed_out = false;
        }
        loop {
            let Some(frame) = self.next_frame()? else {
                return Ok(None);
            };
            let (fin, opcode, payload) = frame;
            let payload_range = payload;
            match opcode {
                Opcode::Ping | Opcode::Pong | Opcode::Close => {
                    let payload = &self.input[payload_range];
                    return Ok(Some(match opcode {
                        Opcode::Ping => Message::Ping(payload),
                        Opcode::Pong => Message::Pong(payload),
                        _ => Message::Close(close_payload(payload)?),
                    }));
                }
                Opcode::Text | Opcode::Binary => {
                    if self.fragmented.is_some() {
                        return Err(violation(
                            PROTOCOL_ERROR,
                            "a new message began before the last one ended",
                        ));
                    }
                    if fin {
                        return message(opcode, &self.input[payload_range]).map(Some);
                    }
                    self.fragmented = Some(opcode);
                    self.pieces.extend_from_slice(&self.input[payload_range]);
                }
                Opcode::Continuation => {
                    let Some(kind) = self.fragmented else {
                        return Err(violation(
                            PROTOCOL_ERROR,
                            "a continuation frame with no message to continue",
                        ));
                    };
                    if self.pieces.len() + payload_range.len() > self.max_message {
                        return Err(violation(TOO_BIG, "message too big"));
                    }
                    self.pieces.extend_from_slice(&self.input[payload_range]);
                    if fin {
                        self.fragmented = None;
                        self.pieces_handed_out = true;
                        return message(kind, &self.pieces).map(Some);
                    }
                }
            }
        }
    }

    /// The next whole frame, unmasked in place: `FIN`, opcode, and where its payload is in
    /// `input`. `None` if it has not all arrived.
    #[allow(clippy::type_complexity)]
    fn next_frame(&mut self) -> Result<Option<(bool, Opcode, std::ops::Range<usize>)>, Violation> {
        let bytes = &self.input[self.start..];
        let [first, second, ..] = *bytes else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            // RSV1-3 mean an extension (compression, say), and none was agreed on.
            return Err(violation(PROTOCOL_ERROR, "reserved bits set"));
        }
        let fin = first & 0x80 != 0;
        let opcode =
            Opcode::from_bits(first & 0x0f).ok_or(violation(PROTOCOL_ERROR, "unknown opcode"))?;
        let masked = second & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => {
                return Err(violation(
                    PROTOCOL_ERROR,
                    "a client's frames must be masked",
                ))
            }
            (Role::Client, true) => {
                return Err(violation(
                    PROTOCOL_ERROR,
                    "a server's frames must not be masked",
                ))
            }
            _ => {}
        }
        let (len, mut at) = match second & 0x7f {
            126 if bytes.len() >= 4 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 if bytes.len() >= 10 => {
                let mut eight = [0; 8];
                eight.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(eight), 10)
            }
            126 | 127 => return Ok(None),
            short => (u64::from(short), 2),
        };
        if opcode.is_control() && (!fin || len > 125) {
            return Err(violation(
                PROTOCOL_ERROR,
                "control frames must be whole and at most 125 bytes",
            ));
        }
        // Checked before the payload arrives: a client cannot make us buffer a big one.
        if len > self.max_message as u64 {
            return Err(violation(TOO_BIG, "message too big"));
        }
        let len = len as usize;
        let mut key = [0; 4];
        if masked {
            let Some(four) = bytes.get(at..at + 4) else {
                return Ok(None);
            };
            key.copy_from_slice(four);
            at += 4;
        }
        if bytes.len() < at + len {
            return Ok(None);
        }
        let payload = self.start + at..self.start + at + len;
        if masked {
            unmask(&mut self.input[payload.clone()], key);
        }
        self.start = payload.end;
        Ok(Some((fin, opcode, payload)))
    }
}

/// XORs each byte with the key, byte `i` with `key[i % 4]`; masking twice gives back the
/// original.
pub fn unmask(payload: &mut [u8], key: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

fn message(kind: Opcode, payload: &[u8]) -> Result<Message<'_>, Violation> {
    if kind == Opcode::Binary {
        return Ok(Message::Binary(payload));
    }
    std::str::from_utf8(payload)
        .map(Message::Text)
        .map_err(|_| violation(INVALID_DATA, "a text message that is not UTF-8"))
}

fn close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(violation(PROTOCOL_ERROR, "a close frame with half a code")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            // 1000-1003, 1007-1011 are defined for use on the wire; 3000-4999 are for
            // libraries and applications. 1004-1006, 1015 and the rest may not be sent.
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !allowed {
                return Err(violation(
                    PROTOCOL_ERROR,
                    "a close code that may not be sent",
                ));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| violation(INVALID_DATA, "a close reason that is not UTF-8"))?;
            Ok(Some((code, reason)))
        }
    }
}

/// A fresh masking key for a client's frame. RFC 6455 asks for keys a page cannot predict.
/// The standard library has no random numbers, but its hash maps seed each hasher from the
/// operating system's randomness, so a new hasher's output is one.
pub fn random_mask() -> [u8; 4] {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    let bits = hasher.finish();
    [
        bits as u8,
        (bits >> 8) as u8,
        (bits >> 16) as u8,
        (bits >> 24) as u8,
    ]
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, in base64.
pub fn random_key() -> String {
    let mut bytes = Vec::with_capacity(16);
    for _ in 0..4 {
        bytes.extend_from_slice(&random_mask());
    }
    base64::encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(bytes: &[u8]) -> Decoder {
        let mut decoder = Decoder::new(Role::Server, 1000);
        decoder.extend(bytes);
        decoder
    }

    fn masked(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut out = Vec::new();
        write_header(&mut out, fin, opcode, payload.len(), Some(key));
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    #[test]
    fn the_rfc_examples_decode() {
        // RFC 6455 section 5.7: a masked "Hello", a fragmented unmasked "Hel" + "lo", and
        // an unmasked ping.
        let mut decoder = server(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!(decoder.next_message(), Ok(Some(Message::Text("Hello"))));
        assert_eq!(decoder.next_message(), Ok(None));
        let mut client = Decoder::new(Role::Client, 1000);
        client.extend(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
        assert_eq!(client.next_message(), Ok(Some(Message::Text("Hello"))));
        client.extend(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(client.next_message(), Ok(Some(Message::Ping(b"Hello"))));
    }

    #[test]
    fn a_frame_in_pieces_comes_out_once_whole_and_lengths_of_every_size_work() {
        for len in [0, 125, 126, 65535, 65536] {
            let payload = vec![b'x'; len];
            let frame = masked(Opcode::Text, true, &payload);
            let mut decoder = Decoder::new(Role::Server, 100_000);
            for cut in [1, 2, 3, 5, 9, frame.len() - 1] {
                if cut < frame.len() {
                    let mut early = Decoder::new(Role::Server, 100_000);
                    early.extend(&frame[..cut]);
                    assert_eq!(early.next_message(), Ok(None), "len {len} cut {cut}");
                }
            }
            decoder.extend(&frame);
            let Ok(Some(Message::Text(text))) = decoder.next_message() else {
                panic!("len {len}")
            };
            assert_eq!(text.len(), len);
        }
    }

    #[test]
    fn control_frames_may_come_between_the_pieces_of_a_message() {
        let mut bytes = masked(Opcode::Text, false, b"PUBLISH weather ");
        bytes.extend(masked(Opcode::Ping, true, b"p"));
        bytes.extend(masked(Opcode::Continuation, false, b"Rainy "));
        bytes.extend(masked(Opcode::Continuation, true, b"day pub1"));
        bytes.extend(masked(Opcode::Text, true, b"PING"));
        let mut decoder = server(&bytes);
        assert_eq!(decoder.next_message(), Ok(Some(Message::Ping(b"p"))));
        assert_eq!(
            decoder.next_message(),
            Ok(Some(Message::Text("PUBLISH weather Rainy day pub1")))
        );
        assert_eq!(decoder.next_message(), Ok(Some(Message::Text("PING"))));
    }

    #[test]
    fn each_kind_of_bad_frame_is_its_violation() {
        let unmasked = {
            let mut out = Vec::new();
            write_frame(&mut out, Opcode::Text, b"hi", None);
            out
        };
        let mut reserved = masked(Opcode::Text, true, b"hi");
        reserved[0] |= 0x40;
        let mut unknown = masked(Opcode::Text, true, b"hi");
        unknown[0] = 0x83;
        let mut two_starts = masked(Opcode::Text, false, b"a");
        two_starts.extend(masked(Opcode::Text, true, b"b"));
        let mut long_fragments = masked(Opcode::Text, false, &[b'a'; 600]);
        long_fragments.extend(masked(Opcode::Continuation, true, &[b'a'; 600]));
        let cases = [
            (unmasked, PROTOCOL_ERROR),
            (reserved, PROTOCOL_ERROR),
            (unknown, PROTOCOL_ERROR),
            (masked(Opcode::Continuation, true, b"x"), PROTOCOL_ERROR),
            (two_starts, PROTOCOL_ERROR),
            (masked(Opcode::Ping, false, b"x"), PROTOCOL_ERROR),
            (masked(Opcode::Ping, true, &[0; 126]), PROTOCOL_ERROR),
            (masked(Opcode::Text, true, &[0xff, 0xfe]), INVALID_DATA),
            (masked(Opcode::Text, true, &[b'a'; 1001]), TOO_BIG),
            (long_fragments, TOO_BIG),
            (masked(Opcode::Close, true, &[3]), PROTOCOL_ERROR),
            (masked(Opcode::Close, true, &[0x03, 0xee]), PROTOCOL_ERROR),
            (
                masked(Opcode::Close, true, &[0x03, 0xe8, 0xff]),
                INVALID_DATA,
            ),
        ];
        for (bytes, code) in cases {
            let mut decoder = server(&bytes);
            let got = loop {
                match decoder.next_message() {
                    Ok(Some(_)) => continue,
                    other => break other,
                }
            };
            assert_eq!(got.map(|_| ()).map_err(|v| v.code), Err(code), "{bytes:x?}");
        }
    }

    #[test]
    fn a_huge_length_is_refused_from_the_header_alone() {
        let mut header = Vec::new();
        write_header(&mut header, true, Opcode::Text, 1 << 40, Some([0; 4]));
        assert_eq!(server(&header).next_message().unwrap_err().code, TOO_BIG);
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let mut frame = Vec::new();
        write_close(&mut frame, NORMAL, "bye", Some([9, 8, 7, 6]));
        assert_eq!(
            server(&frame).next_message(),
            Ok(Some(Message::Close(Some((1000, "bye")))))
        );
        assert_eq!(
            server(&masked(Opcode::Close, true, b"")).next_message(),
            Ok(Some(Message::Close(None)))
        );
        let mut long = Vec::new();
        write_close(&mut long, TOO_BIG, &"é".repeat(100), None);
        assert!(long.len() <= 127);
    }

    #[test]
    fn keys_are_random_and_valid() {
        let (a, b) = (random_key(), random_key());
        assert_ne!(a, b);
        assert!(is_valid_key(&a));
        assert!(!is_valid_key("dGhlIHNhbXBsZQ=="));
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
