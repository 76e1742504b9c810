//! Socket.IO, version 5: named events over an Engine.IO channel. No I/O here: this module
//! turns Socket.IO packets into Engine.IO messages and back (`engineio.rs` is the layer
//! below; `socketio_session.rs` maps the events onto the broker).
//!
//! Each Socket.IO packet is one Engine.IO `message` (`4…`). Its text is a type digit, then
//! optional parts in a fixed order:
//!
//! ```text
//!   <type>[<attachments>-][/<namespace>,][<ack id>][<JSON data>]
//!
//!   0{"token":"123"}            CONNECT to the main namespace "/", with auth data
//!   0/custom,                   CONNECT to the namespace "/custom"
//!   1                           DISCONNECT
//!   2["subscribe",{"topic":"news"}]        EVENT: an array, the event's name first
//!   212["publish",{…}]          EVENT that asks for an acknowledgement, id 12
//!   312["ok"]                   ACK of id 12: an array of the answer's values
//!   4{"message":"Invalid namespace"}       CONNECT_ERROR
//!   51-["upload",{"_placeholder":true,"num":0}]   BINARY_EVENT, one attachment
//!   6…                          BINARY_ACK
//! ```
//!
//! A namespace is a channel inside the connection (a chat's `/admin`, say); a client
//! `CONNECT`s to each it uses, and the server answers `CONNECT` with the socket's id, or
//! `CONNECT_ERROR`. Binary data cannot sit in JSON, so a packet that carries any puts a
//! placeholder object where each piece was and sends the pieces after it, each as its own
//! binary Engine.IO message: the packet is complete when the last one has come
//! ([`Assembler`]).
//!
//! The specification is the `socketio/socket.io-protocol` repository. What the Node
//! server adds: rooms, broadcasting across a cluster through an adapter (Redis, say),
//! connection state recovery, and middlewares that see every packet.

use std::fmt;

use crate::json::{self, Value};

/// The kind of a packet: its first digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`: join a namespace (client), or the server's yes with the socket's id.
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: a named event and its arguments.
    Event,
    /// `3`: the answer to an event that asked for one.
    Ack,
    /// `4`: the server's no to a `CONNECT`.
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck,
}

impl Kind {
    fn digit(self) -> char {
        match self {
            Kind::Connect => '0',
            Kind::Disconnect => '1',
            Kind::Event => '2',
            Kind::Ack => '3',
            Kind::ConnectError => '4',
            Kind::BinaryEvent => '5',
            Kind::BinaryAck => '6',
        }
    }

    fn of_digit(digit: char) -> Option<Kind> {
        Some(match digit {
            '0' => Kind::Connect,
            '1' => Kind::Disconnect,
            '2' => Kind::Event,
            '3' => Kind::Ack,
            '4' => Kind::ConnectError,
            '5' => Kind::BinaryEvent,
            '6' => Kind::BinaryAck,
            _ => return None,
        })
    }

    /// The binary twin of a kind: an event or ack that carries attachments is written as
    /// a `BINARY_EVENT` or `BINARY_ACK`.
    fn with_attachments(self) -> Kind {
        match self {
            Kind::Event => Kind::BinaryEvent,
            Kind::Ack => Kind::BinaryAck,
            other => other,
        }
    }

    /// The plain kind of a binary one: once its attachments have come, a `BINARY_EVENT`
    /// is handled as the `EVENT` it is.
    fn plain(self) -> Kind {
        match self {
            Kind::BinaryEvent => Kind::Event,
            Kind::BinaryAck => Kind::Ack,
            other => other,
        }
    }
}

/// The main namespace, which every server has.
pub const MAIN: &str = "/";

/// One Socket.IO packet, its attachments (if any) with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// What it is; an [`Assembler`] gives [`Kind::Event`] and [`Kind::Ack`] also for
    /// packets that came with attachments (they are in `attachments`).
    pub kind: Kind,
    /// The namespace, `/` for the main one.
    pub namespace: String,
    /// The acknowledgement id: an event that wants an answer, or the answer.
    pub id: Option<u64>,
    /// The JSON data (an array for events and acks).
    pub data: Option<Value>,
    /// The binary pieces its placeholders stand for, in order.
    pub attachments: Vec<Vec<u8>>,
}

/// A packet that breaks the protocol: the connection is closed, as the protocol says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPacket(pub String);

impl fmt::Display for BadPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad Socket.IO packet: {}", self.0)
    }
}

impl std::error::Error for BadPacket {}

/// The most attachments one packet may announce: each waits in memory until the packet is
/// complete. (The Node server bounds them only by the payload size.)
pub const MAX_ATTACHMENTS: usize = 64;

impl Packet {
    /// A packet with no attachments, in `namespace`.
    pub fn new(kind: Kind, namespace: &str, id: Option<u64>, data: Option<Value>) -> Packet {
        Packet {
            kind,
            namespace: namespace.to_string(),
            id,
            data,
            attachments: Vec::new(),
        }
    }

    /// The event `name` with its arguments, in `namespace`.
    pub fn event(namespace: &str, name: &str, args: Vec<Value>) -> Packet {
        let mut items = vec![Value::String(name.to_string())];
        items.extend(args);
        Packet::new(Kind::Event, namespace, None, Some(Value::Array(items)))
    }

    /// The name of an event packet (its data's first item).
    pub fn event_name(&self) -> Option<&str> {
        match &self.data {
            Some(Value::Array(items)) => items.first().and_then(Value::as_str),
            _ => None,
        }
    }

    /// The arguments of an event packet (its data after the name), or of an ack.
    pub fn args(&self) -> &[Value] {
        match (&self.data, self.kind) {
            (Some(Value::Array(items)), Kind::Event) => items.get(1..).unwrap_or_default(),
            (Some(Value::Array(items)), _) => items,
            _ => &[],
        }
    }

    /// Parses the text of one Engine.IO message. A packet that announces attachments comes
    /// back with none yet: see [`Assembler`].
    ///
    /// ```
    /// use pubsub_lab::web::socketio::{Kind, Packet};
    /// let (packet, attachments) = Packet::parse(r#"2/chat,7["say","hi"]"#).unwrap();
    /// assert_eq!((packet.kind, packet.namespace.as_str(), packet.id), (Kind::Event, "/chat", Some(7)));
    /// assert_eq!(packet.event_name(), Some("say"));
    /// assert_eq!(attachments, 0);
    /// assert!(Packet::parse(r#"2{}"#).is_err(), "an event is an array");
    /// ```
    ///
    /// # Errors
    /// An unknown type, a bad attachment count, ack id or JSON, or data that is not what
    /// the kind carries.
    pub fn parse(text: &str) -> Result<(Packet, usize), BadPacket> {
        let bad = |why: &str| Err(BadPacket(why.to_string()));
        let mut chars = text.chars();
        let Some(kind) = chars.next().and_then(Kind::of_digit) else {
            return bad("unknown packet type");
        };
        let mut rest = chars.as_str();
        let mut attachments = 0;
        if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
            let Some((count, after)) = rest.split_once('-') else {
                return bad("a binary packet says how many attachments follow, then '-'");
            };
            attachments = match count.parse::<usize>() {
                Ok(n) if n <= MAX_ATTACHMENTS && !count.starts_with('+') => n,
                _ => return bad("bad attachment count"),
            };
            rest = after;
        }
        let mut namespace = MAIN.to_string();
        if rest.starts_with('/') {
            let (name, after) = rest.split_once(',').unwrap_or((rest, ""));
            namespace = name.to_string();
            rest = after;
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let id = match digits {
            0 => None,
            _ => match rest[..digits].parse::<u64>() {
                Ok(id) => Some(id),
                Err(_) => return bad("the ack id is too large"),
            },
        };
        rest = &rest[digits..];
        let data = match rest {
            "" => None,
            json => match json::parse(json) {
                Ok(value) => Some(value),
                Err(error) => return Err(BadPacket(error.to_string())),
            },
        };
        let packet = Packet {
            kind: kind.plain(),
            namespace,
            id,
            data,
            attachments: Vec::new(),
        };
        packet.check_data()?;
        Ok((packet, attachments))
    }

    /// Whether the data is what the kind carries (the Node parser's `isPayloadValid`).
    fn check_data(&self) -> Result<(), BadPacket> {
        let fits = match (self.kind, &self.data) {
            (Kind::Connect, None | Some(Value::Object(_))) => true,
            (Kind::Disconnect, None) => true,
            (Kind::ConnectError, Some(Value::Object(_) | Value::String(_))) => true,
            (Kind::Event | Kind::BinaryEvent, Some(Value::Array(items))) => {
                matches!(items.first(), Some(Value::String(_) | Value::Number(_)))
            }
            (Kind::Ack | Kind::BinaryAck, Some(Value::Array(_))) => true,
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            Err(BadPacket(format!(
                "{:?} cannot carry {}",
                self.kind,
                self.data.as_ref().map_or("nothing", Value::kind)
            )))
        }
    }

    /// The packet as the text of one Engine.IO message; its attachments, if any, go after
    /// it, each in a binary message of its own.
    ///
    /// ```
    /// use pubsub_lab::json::Value;
    /// use pubsub_lab::web::socketio::Packet;
    /// let news = Packet::event("/", "news", vec![Value::String("hi".into())]);
    /// assert_eq!(news.text(), r#"2["news","hi"]"#);
    /// ```
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.attachments.is_empty() {
            out.push(self.kind.digit());
        } else {
            out.push(self.kind.with_attachments().digit());
            out.push_str(&format!("{}-", self.attachments.len()));
        }
        if self.namespace != MAIN {
            out.push_str(&self.namespace);
            out.push(',');
        }
        if let Some(id) = self.id {
            out.push_str(&id.to_string());
        }
        if let Some(data) = &self.data {
            json::write_value(&mut out, data);
        }
        out
    }
}

/// Puts packets with attachments back together: a `BINARY_EVENT` waits for the binary
/// messages it announced. One per connection.
#[derive(Debug, Default)]
pub struct Assembler {
    waiting: Option<(Packet, usize)>,
}

impl Assembler {
    /// A text message: the packet, or `None` if it waits for attachments.
    ///
    /// # Errors
    /// A packet that does not parse, or text while attachments are awaited.
    pub fn text(&mut self, text: &str) -> Result<Option<Packet>, BadPacket> {
        if self.waiting.is_some() {
            return Err(BadPacket("text came while attachments were awaited".into()));
        }
        match Packet::parse(text)? {
            (packet, 0) => Ok(Some(packet)),
            (packet, count) => {
                self.waiting = Some((packet, count));
                Ok(None)
            }
        }
    }

    /// A binary message: the packet, once it was the last attachment it awaited.
    ///
    /// # Errors
    /// Binary data that no packet announced.
    pub fn binary(&mut self, bytes: Vec<u8>) -> Result<Option<Packet>, BadPacket> {
        let Some((mut packet, count)) = self.waiting.take() else {
            return Err(BadPacket("binary data that no packet announced".into()));
        };
        packet.attachments.push(bytes);
        if packet.attachments.len() == count {
            return Ok(Some(packet));
        }
        self.waiting = Some((packet, count));
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Packet {
        let mut assembler = Assembler::default();
        assembler.text(text).unwrap().unwrap()
    }

    #[test]
    fn packets_go_through_text_and_back() {
        for text in [
            "0",
            r#"0{"token":"123"}"#,
            "0/custom,",
            r#"0/custom,{"token":"abc"}"#,
            "1",
            "1/custom,",
            r#"2["message",1,"2",{"3":[true]}]"#,
            r#"2456["message-with-ack",1]"#,
            r#"2/custom,3["x"]"#,
            r#"3456[1,"2",{"3":[false]}]"#,
            r#"4/random,{"message":"Invalid namespace"}"#,
        ] {
            assert_eq!(parsed(text).text(), text);
        }
    }

    #[test]
    fn a_namespace_without_a_comma_is_the_rest_of_the_packet() {
        assert_eq!(parsed("0/custom").namespace, "/custom");
    }

    #[test]
    fn attachments_complete_their_packet() {
        let mut assembler = Assembler::default();
        let head = r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(assembler.text(head), Ok(None));
        assert_eq!(assembler.binary(vec![1, 2, 3]), Ok(None));
        let packet = assembler.binary(vec![4, 5, 6]).unwrap().unwrap();
        assert_eq!(packet.kind, Kind::Event);
        assert_eq!(packet.attachments, [vec![1, 2, 3], vec![4, 5, 6]]);
        assert_eq!(packet.text(), head, "written back as a BINARY_EVENT");
        assert!(assembler.binary(vec![7]).is_err(), "nothing awaits it");
    }

    #[test]
    fn what_breaks_the_protocol_is_refused() {
        for text in [
            "abc",
            "2{}",
            r#"2abc["message"]"#,
            "2",
            r#"0["x"]"#,
            r#"1{}"#,
            "5x-[\"a\"]",
            "599-[\"a\"]",
            r#"299999999999999999999["a"]"#,
        ] {
            assert!(Packet::parse(text).is_err(), "{text}");
        }
    }
}
