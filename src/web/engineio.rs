//! Engine.IO, version 4: the packets under Socket.IO, and how they travel. No I/O here:
//! this module turns packets into text and back (the transports are in `engineio_server.rs`).
//!
//! Socket.IO was made for browsers of 2010, some of which had no WebSocket. So it sits on
//! a layer of its own, Engine.IO, that gives it one bidirectional channel of *packets*
//! over whatever the browser has: HTTP long-polling first (which every browser can do),
//! then, if it works, an upgrade to a WebSocket. A packet is one digit, its type, and its
//! data:
//!
//! ```text
//!   0{"sid":"…","upgrades":["websocket"],…}   open: the server's handshake
//!   1                                          close
//!   2   3                                      ping, pong (the server pings; `2probe`/`3probe` test an upgrade)
//!   4hello                                     message: what the layer above sent
//!   5   6                                      upgrade (the client switched), noop
//! ```
//!
//! Over a WebSocket each packet is one frame, and a binary message is a binary frame with
//! no type at all. Over HTTP long-polling the packets of one request or response form a
//! *payload*, joined by the record separator (byte 0x1e, which JSON never contains), and a
//! binary message is written `b` and its base64:
//!
//! ```text
//!   4hello␞4world␞bAQIDBA==
//! ```
//!
//! The specification is the `socketio/engine.io-protocol` repository, whose test suite
//! `examples/socketio_echo.rs` runs against. What the Node server does beyond this module:
//! the older versions of the protocol (EIO=3 framed payloads with lengths), compression,
//! and cookies for sticky sessions behind a load balancer.

use std::fmt;
use std::time::Duration;

use super::base64;
use crate::json::ObjectWriter;

/// The version this module speaks: the `EIO=4` of every request.
pub const VERSION: &str = "4";

/// What joins the packets of one long-polling payload.
pub const RECORD_SEPARATOR: char = '\x1e';

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0` and the handshake object (see [`handshake`]).
    Open(String),
    /// `1`: the session ends.
    Close,
    /// `2`, with an optional payload (`probe` while upgrading).
    Ping(String),
    /// `3`, echoing the ping's payload.
    Pong(String),
    /// `4` and text: the layer above's data.
    Message(String),
    /// A binary message: a binary frame, or `b` and base64 in a payload.
    Binary(Vec<u8>),
    /// `5`: the client has switched to the WebSocket.
    Upgrade,
    /// `6`: nothing; ends a waiting poll while a session upgrades.
    Noop,
}

/// A packet that does not parse. The session that sent it is closed, as the protocol says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPacket(pub String);

impl fmt::Display for BadPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad Engine.IO packet: {}", self.0)
    }
}

impl std::error::Error for BadPacket {}

impl Packet {
    /// Parses one packet written as text: a WebSocket text frame, or one element of a
    /// payload (see [`decode_payload`]). Clause by clause:
    ///
    /// 1. **The type is the first character**, `0` to `6` (open, close, ping, pong,
    ///    message, upgrade, noop) or `b` (a binary message). A character, not a byte: the
    ///    text is the client's, and may start with any character at all.
    /// 2. **The data is everything after the type**, kept exactly as it came: `4hello` is
    ///    the message `hello`, `2probe` the ping `probe` (which the upgrade depends on),
    ///    `3` a pong with empty data. Close, upgrade and noop carry none.
    /// 3. **After `b` comes base64**, decoded into the message's bytes
    ///    ([`base64::decode`]).
    /// 4. **Anything else is a [`BadPacket`]**: an empty text, a first character that is no
    ///    type, base64 that does not decode. Never a panic: the text comes from the network.
    ///
    /// ```
    /// use pubsub_lab::web::engineio::Packet;
    /// assert_eq!(Packet::parse("4hello"), Ok(Packet::Message("hello".into())));
    /// assert_eq!(Packet::parse("2probe"), Ok(Packet::Ping("probe".into())));
    /// assert_eq!(Packet::parse("bAQID"), Ok(Packet::Binary(vec![1, 2, 3])));
    /// assert!(Packet::parse("abc").is_err());
    /// ```
    ///
    /// # Errors
    /// An empty text, an unknown type, or base64 that does not decode.
    pub fn parse(text: &str) -> Result<Packet, BadPacket> {
        // lab:begin 12 the packet parser
        let mut chars = text.chars();
        let kind = chars.next().ok_or_else(|| BadPacket("empty".into()))?;
        let data = chars.as_str();
        Ok(match kind {
            '0' => Packet::Open(data.to_string()),
            '1' => Packet::Close,
            '2' => Packet::Ping(data.to_string()),
            '3' => Packet::Pong(data.to_string()),
            '4' => Packet::Message(data.to_string()),
            '5' => Packet::Upgrade,
            '6' => Packet::Noop,
            'b' => Packet::Binary(
                base64::decode(data)
                    .ok_or_else(|| BadPacket("binary data is not base64".into()))?,
            ),
            other => return Err(BadPacket(format!("unknown packet type {other:?}"))),
        })
        // lab:end 12
    }

    /// Appends the packet as text: as a payload element, or as a WebSocket text frame for
    /// every packet but [`Packet::Binary`] (which goes in a binary frame, as it is).
    pub fn write(&self, out: &mut String) {
        match self {
            Packet::Open(handshake) => {
                out.push('0');
                out.push_str(handshake);
            }
            Packet::Close => out.push('1'),
            Packet::Ping(data) => {
                out.push('2');
                out.push_str(data);
            }
            Packet::Pong(data) => {
                out.push('3');
                out.push_str(data);
            }
            Packet::Message(text) => {
                out.push('4');
                out.push_str(text);
            }
            Packet::Binary(bytes) => {
                out.push('b');
                out.push_str(&base64::encode(bytes));
            }
            Packet::Upgrade => out.push('5'),
            Packet::Noop => out.push('6'),
        }
    }

    /// The packet as text (see [`write`](Self::write)).
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

/// Splits a long-polling payload (the body of a `POST`) into its packets. Clause by
/// clause:
///
/// 1. **The packets are separated by the record separator**, byte 0x1e
///    ([`RECORD_SEPARATOR`]), never by a newline (a message may hold newlines; JSON never
///    holds a raw 0x1e). `n` separators mean `n + 1` packets, each parsed by
///    [`Packet::parse`].
/// 2. **An empty packet is bad**, between two separators or at either end: a payload
///    always ends with a packet, not a separator.
/// 3. **One bad packet refuses the whole payload**: the first one's [`BadPacket`] is the
///    answer, and no packet of that payload is returned, not even those before it (the
///    session is closed, as the protocol says).
///
/// ```
/// use pubsub_lab::web::engineio::{decode_payload, Packet};
/// let packets = decode_payload("4hello\x1e3\x1ebAQIDBA==").unwrap();
/// assert_eq!(packets, [
///     Packet::Message("hello".into()),
///     Packet::Pong(String::new()),
///     Packet::Binary(vec![1, 2, 3, 4]),
/// ]);
/// ```
///
/// # Errors
/// The first packet that does not parse: the whole payload is refused.
pub fn decode_payload(body: &str) -> Result<Vec<Packet>, BadPacket> {
    // lab:begin 12 the payload decoder
    body.split(RECORD_SEPARATOR).map(Packet::parse).collect()
    // lab:end 12
}

/// Joins packets into a long-polling payload (the body of a poll's answer).
pub fn encode_payload(packets: &[Packet]) -> String {
    let mut out = String::new();
    for (i, packet) in packets.iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        packet.write(&mut out);
    }
    out
}

/// How a server's sessions are kept alive and bounded: the handshake tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long after a ping the pong may come before the session is closed.
    pub ping_timeout: Duration,
    /// The largest payload (`POST` body, WebSocket message) the server takes, in bytes.
    pub max_payload: usize,
}

impl Settings {
    /// The Node server's defaults: a ping every 25 s, 20 s for its pong, 1 MB payloads.
    pub const NODE_DEFAULTS: Settings = Settings {
        ping_interval: Duration::from_millis(25_000),
        ping_timeout: Duration::from_millis(20_000),
        max_payload: 1_000_000,
    };
}

/// The handshake object of the `open` packet. A WebSocket session has nothing to
/// upgrade to, so its list is empty.
///
/// ```
/// use pubsub_lab::web::engineio::{handshake, Settings};
/// let open = handshake("abc", true, &Settings::NODE_DEFAULTS);
/// assert_eq!(open, r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#);
/// ```
pub fn handshake(sid: &str, upgradable: bool, settings: &Settings) -> String {
    let upgrades = if upgradable { r#"["websocket"]"# } else { "[]" };
    ObjectWriter::new()
        .string("sid", sid)
        .raw("upgrades", upgrades)
        .number("pingInterval", settings.ping_interval.as_millis() as f64)
        .number("pingTimeout", settings.ping_timeout.as_millis() as f64)
        .number("maxPayload", settings.max_payload as f64)
        .finish()
}

/// A new session id: 16 random bytes in hex (safe in a query string as it is).
pub fn new_sid() -> String {
    let mut sid = String::with_capacity(32);
    for _ in 0..4 {
        for byte in super::websocket::random_mask() {
            sid.push_str(&format!("{byte:02x}"));
        }
    }
    sid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_packet_goes_through_text_and_back() {
        let packets = [
            Packet::Open("{}".into()),
            Packet::Close,
            Packet::Ping("probe".into()),
            Packet::Pong(String::new()),
            Packet::Message("héllo ␞".replace('␞', "")),
            Packet::Binary(vec![0, 255, 7]),
            Packet::Upgrade,
            Packet::Noop,
        ];
        let payload = encode_payload(&packets);
        assert_eq!(decode_payload(&payload).unwrap(), packets);
    }

    #[test]
    fn a_payload_with_one_bad_packet_is_refused() {
        assert!(decode_payload("4a\x1e").is_err(), "an empty packet");
        assert!(decode_payload("4a\x1e9").is_err(), "an unknown type");
        assert!(decode_payload("b!!").is_err(), "bad base64");
    }

    #[test]
    fn session_ids_are_fresh_and_plain() {
        let (a, b) = (new_sid(), new_sid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
