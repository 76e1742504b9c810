//! The NATS client protocol, read and written: lines ↔ values, no I/O.
//!
//! NATS speaks plain text over TCP, like our line protocol, with two differences: lines end
//! in `\r\n`, and a message's payload is not part of its line but follows it, its length
//! given in the line, so a payload may hold any bytes. A whole conversation, as
//! `nc 127.0.0.1 4222` shows it (`→` from the client, `←` from the server):
//!
//! ```text
//! ← INFO {"server_id":"NAY6…","version":"2.9.10","headers":true,"max_payload":1048576,…}
//! → CONNECT {"verbose":false,"pedantic":false,"name":"pubsub-lab","protocol":1,"headers":true,"echo":false}
//! → PING
//! ← PONG                                   the CONNECT was accepted
//! → SUB pubsub-lab.news.* 1                subscription id 1: every subject pubsub-lab.news.<one token>
//! → HPUB pubsub-lab.news.tech 52 55        52 bytes of headers, 55 bytes in all
//! → NATS/1.0
//! → Pubsub-Lab-Publisher: pub1
//! → Pubsub-Lab-Time: 2026-12-01 10:30:00
//! →
//! → ai!
//! ← HMSG pubsub-lab.news.tech 1 52 55      (from another client: ours are not echoed)
//! ← …the same headers and payload…
//! ← PING                                   the server checks that we are alive…
//! → PONG                                   …and we must answer, or it hangs up
//! → UNSUB 1
//! ```
//!
//! | from | line | meaning |
//! |---|---|---|
//! | server | `INFO <json>` | who the server is and what it supports, and (`connect_urls`) where the other servers of its cluster take clients; sent first, and again when the cluster changes |
//! | client | `CONNECT <json>` | who we are and what we want (`"echo":false`, which clients call *no echo*: never send us our own publishes) |
//! | client | `PUB <subject> <#bytes>` + payload | a message |
//! | client | `HPUB <subject> <#header bytes> <#total bytes>` + headers + payload | a message with headers |
//! | client | `SUB <subject> <sid>` | send me messages on subjects matching `subject`, tagged `sid` |
//! | client | `UNSUB <sid>` | stop |
//! | server | `MSG <subject> <sid> <#bytes>`, `HMSG …` | a message for subscription `sid` |
//! | both | `PING`, `PONG` | are you there? yes |
//! | server | `+OK`, `-ERR '<text>'` | (`+OK` only in verbose mode) something was wrong |
//!
//! Headers are written the way HTTP writes them, after a version line: `NATS/1.0\r\n`,
//! then `Name: value\r\n` lines, then an empty line. The header length counts all of that;
//! the total counts headers and payload. Neither counts the `\r\n` after the payload.
//!
//! Reading follows httparse: [`ServerOp::parse`] looks at the bytes received so far and
//! says either "here is one operation, and it took this many bytes" or "not complete yet"
//! (`Ok(None)`), which is a value, not an error: a TCP read can end anywhere, in the middle
//! of a line or of a payload.

use std::fmt;

use crate::json::{self, ObjectWriter};
use crate::text::push_decimal;

/// The longest operation line accepted: NATS's own default `max_control_line`.
pub const MAX_CONTROL_LINE: usize = 4096;

/// The largest payload accepted when the server did not say (its default `max_payload`).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// The line every header block starts with.
pub const HEADER_VERSION: &str = "NATS/1.0";

/// What the server told us in `INFO`, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The server's unique id, for the logs.
    pub server_id: String,
    /// Its version, for the logs.
    pub version: String,
    /// Whether it carries headers (`HPUB`, `HMSG`): nats-server 2.2 and later.
    pub headers: bool,
    /// The largest payload it accepts.
    pub max_payload: usize,
    /// Where the servers of its cluster take clients, itself included, as `host:port`
    /// (`connect_urls`; empty for a server alone). Every NATS client library adds them to
    /// the servers it was given, so that one seed is enough to find the whole cluster.
    pub connect_urls: Vec<String>,
}

/// A message the server delivers (`MSG` or `HMSG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The subject it was published to.
    pub subject: String,
    /// Which of our subscriptions it is for.
    pub sid: u64,
    /// Where a reply should go (request/reply), if the publisher asked for one.
    pub reply_to: Option<String>,
    /// Its headers, `(name, value)` in order; empty for a `MSG`.
    pub headers: Vec<(String, String)>,
    /// The payload, any bytes.
    pub payload: Vec<u8>,
}

impl Msg {
    /// The value of header `name` (compared ignoring case, as HTTP does), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One operation from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// `INFO {...}`
    Info(Info),
    /// `MSG` or `HMSG`
    Msg(Msg),
    /// `PING`: answer with `PONG`.
    Ping,
    /// `PONG`: the answer to our `PING`.
    Pong,
    /// `+OK` (verbose mode only).
    Ok,
    /// `-ERR '<text>'`: the text, without its quotes.
    Err(String),
}

/// Bytes from the server that are not the NATS protocol: the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsError {
    /// An operation line longer than [`MAX_CONTROL_LINE`].
    LineTooLong,
    /// A payload over the limit given to [`ServerOp::parse`].
    PayloadTooLarge(usize),
    /// An operation we do not know, or one with the wrong arguments.
    Malformed(String),
}

impl fmt::Display for NatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsError::LineTooLong => write!(f, "a line longer than {MAX_CONTROL_LINE} bytes"),
            NatsError::PayloadTooLarge(size) => write!(f, "a payload of {size} bytes"),
            NatsError::Malformed(what) => write!(f, "not the NATS protocol: {what}"),
        }
    }
}

impl std::error::Error for NatsError {}

impl ServerOp {
    /// Reads one operation from the start of `bytes`. Returns it with the number of bytes
    /// it took, or `None` if `bytes` does not hold a whole one yet (read more and try
    /// again). Payloads larger than `max_payload` are refused.
    ///
    /// ```
    /// use pubsub_lab::nats::protocol::ServerOp;
    /// let bytes = b"MSG news.tech 7 3\r\nhi!\r\nPI";
    /// let (op, used) = ServerOp::parse(bytes, 1024).unwrap().unwrap();
    /// assert!(matches!(op, ServerOp::Msg(ref msg) if msg.payload == b"hi!" && msg.sid == 7));
    /// assert_eq!(ServerOp::parse(&bytes[used..], 1024), Ok(None)); // "PI": not yet
    /// ```
    ///
    /// # Errors
    /// [`NatsError`]: the bytes are not the protocol.
    pub fn parse(bytes: &[u8], max_payload: usize) -> Result<Option<(ServerOp, usize)>, NatsError> {
        let Some(end) = find_crlf(bytes) else {
            if bytes.len() > MAX_CONTROL_LINE {
                return Err(NatsError::LineTooLong);
            }
            return Ok(None);
        };
        if end > MAX_CONTROL_LINE {
            return Err(NatsError::LineTooLong);
        }
        let line = std::str::from_utf8(&bytes[..end])
            .map_err(|_| NatsError::Malformed("a line that is not UTF-8".to_string()))?;
        let after_line = end + 2;
        let (word, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
        let rest = rest.trim();
        let op = match word.to_ascii_uppercase().as_str() {
            "PING" => ServerOp::Ping,
            "PONG" => ServerOp::Pong,
            "+OK" => ServerOp::Ok,
            "-ERR" => ServerOp::Err(rest.trim_matches('\'').to_string()),
            "INFO" => ServerOp::Info(parse_info(rest)?),
            "MSG" | "HMSG" => {
                let with_headers = word.eq_ignore_ascii_case("HMSG");
                let head = parse_msg_line(rest, with_headers)?;
                if head.total > max_payload {
                    return Err(NatsError::PayloadTooLarge(head.total));
                }
                // The payload, then its own `\r\n`.
                let needed = after_line + head.total + 2;
                if bytes.len() < needed {
                    return Ok(None);
                }
                let body = &bytes[after_line..after_line + head.total];
                if &bytes[after_line + head.total..needed] != b"\r\n" {
                    return Err(NatsError::Malformed(
                        "a payload longer than its line said".to_string(),
                    ));
                }
                let (header_block, payload) = body.split_at(head.header_bytes);
                let msg = Msg {
                    subject: head.subject,
                    sid: head.sid,
                    reply_to: head.reply_to,
                    headers: parse_headers(header_block)?,
                    payload: payload.to_vec(),
                };
                return Ok(Some((ServerOp::Msg(msg), needed)));
            }
            _ => {
                return Err(NatsError::Malformed(format!(
                    "unknown operation {}",
                    crate::text::escaped(word)
                )))
            }
        };
        Ok(Some((op, after_line)))
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

fn parse_info(json_text: &str) -> Result<Info, NatsError> {
    let value = json::parse(json_text)
        .map_err(|error| NatsError::Malformed(format!("INFO is not JSON: {error}")))?;
    let text = |key: &str| value.get(key).and_then(json::Value::as_str).unwrap_or("");
    let max_payload = match value.get("max_payload") {
        Some(json::Value::Number(n)) if *n >= 1.0 => *n as usize,
        _ => DEFAULT_MAX_PAYLOAD,
    };
    let connect_urls = match value.get("connect_urls") {
        Some(json::Value::Array(urls)) => urls
            .iter()
            .filter_map(json::Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Info {
        server_id: text("server_id").to_string(),
        version: text("version").to_string(),
        headers: value
            .get("headers")
            .and_then(json::Value::as_bool)
            .unwrap_or(false),
        max_payload,
        connect_urls,
    })
}

/// The arguments of a `MSG` or `HMSG` line.
struct MsgLine {
    subject: String,
    sid: u64,
    reply_to: Option<String>,
    header_bytes: usize,
    total: usize,
}

/// `MSG <subject> <sid> [reply-to] <#bytes>` or
/// `HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>`.
fn parse_msg_line(args: &str, with_headers: bool) -> Result<MsgLine, NatsError> {
    let words: Vec<&str> = args.split_ascii_whitespace().collect();
    let counts = if with_headers { 2 } else { 1 };
    if words.len() != 2 + counts && words.len() != 3 + counts {
        return Err(NatsError::Malformed(format!(
            "a message line with {} arguments",
            words.len()
        )));
    }
    let number = |word: &str| {
        word.parse::<usize>()
            .map_err(|_| NatsError::Malformed("a message line with a bad number".to_string()))
    };
    let sid = number(words[1])? as u64;
    let reply_to = (words.len() == 3 + counts).then(|| words[2].to_string());
    let total = number(words[words.len() - 1])?;
    let header_bytes = if with_headers {
        number(words[words.len() - 2])?
    } else {
        0
    };
    if header_bytes > total {
        return Err(NatsError::Malformed(
            "headers longer than the whole message".to_string(),
        ));
    }
    Ok(MsgLine {
        subject: words[0].to_string(),
        sid,
        reply_to,
        header_bytes,
        total,
    })
}

/// `NATS/1.0[ status]\r\n` then `Name: value\r\n` lines, then `\r\n`; empty for none.
fn parse_headers(block: &[u8]) -> Result<Vec<(String, String)>, NatsError> {
    if block.is_empty() {
        return Ok(Vec::new());
    }
    let text = std::str::from_utf8(block)
        .map_err(|_| NatsError::Malformed("headers that are not UTF-8".to_string()))?;
    let mut lines = text.split("\r\n");
    if !lines
        .next()
        .is_some_and(|first| first.starts_with(HEADER_VERSION))
    {
        return Err(NatsError::Malformed("headers without NATS/1.0".to_string()));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(NatsError::Malformed("a header without ':'".to_string()));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(headers)
}

/// What we say about ourselves in `CONNECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The connection's name, shown by the server's monitoring (`/connz`).
    pub name: &'a str,
    /// Never send us back what we publish. Without it a bridge would hear every local
    /// message come back from NATS and deliver it twice.
    pub no_echo: bool,
}

/// Writes `CONNECT {...}\r\n`. Always with headers and protocol 1 (which `no_echo` needs),
/// and not verbose (no `+OK` after every line).
pub fn write_connect(out: &mut Vec<u8>, connect: &Connect<'_>) {
    let json = ObjectWriter::new()
        .raw("verbose", "false")
        .raw("pedantic", "false")
        .string("lang", "rust")
        .string("version", env!("CARGO_PKG_VERSION"))
        .string("name", connect.name)
        .number("protocol", 1.0)
        .raw("headers", "true")
        // The field is `echo`; "no echo" is what client libraries call setting it false.
        .raw("echo", if connect.no_echo { "false" } else { "true" })
        .finish();
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes a message: `PUB` if `headers` is empty, `HPUB` otherwise. Header names and
/// values must not hold `\r`, `\n` or (names) `:`; the caller's text is checked already.
pub fn write_pub(out: &mut Vec<u8>, subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
    // Written piece by piece, not with `write!`: every bridged message passes here, and
    // `fmt`'s machinery for two numbers and the headers costs more than the copying.
    if headers.is_empty() {
        out.extend_from_slice(b"PUB ");
        out.extend_from_slice(subject.as_bytes());
        out.push(b' ');
        push_decimal(out, payload.len() as u64);
    } else {
        let header_bytes = HEADER_VERSION.len()
            + 2
            + headers
                .iter()
                .map(|(name, value)| name.len() + 2 + value.len() + 2)
                .sum::<usize>()
            + 2;
        let total = header_bytes + payload.len();
        out.extend_from_slice(b"HPUB ");
        out.extend_from_slice(subject.as_bytes());
        out.push(b' ');
        push_decimal(out, header_bytes as u64);
        out.push(b' ');
        push_decimal(out, total as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(HEADER_VERSION.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    // The end of the `PUB` line; after headers, the empty line that ends them.
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Writes `SUB <subject> <sid>\r\n`.
pub fn write_sub(out: &mut Vec<u8>, subject: &str, sid: u64) {
    out.extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
}

/// Writes `UNSUB <sid>\r\n`.
pub fn write_unsub(out: &mut Vec<u8>, sid: u64) {
    out.extend_from_slice(format!("UNSUB {sid}\r\n").as_bytes());
}

/// Writes `PING\r\n`.
pub fn write_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

/// Writes `PONG\r\n`.
pub fn write_pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> (ServerOp, usize) {
        ServerOp::parse(bytes, DEFAULT_MAX_PAYLOAD)
            .expect("valid")
            .expect("complete")
    }

    #[test]
    fn info_gives_the_parts_we_use() {
        let (op, used) = one(
            b"INFO {\"server_id\":\"N1\",\"version\":\"2.9.10\",\"headers\":true,\"max_payload\":1048576,\"proto\":1}\r\n",
        );
        assert_eq!(
            op,
            ServerOp::Info(Info {
                server_id: "N1".to_string(),
                version: "2.9.10".to_string(),
                headers: true,
                max_payload: 1_048_576,
                connect_urls: Vec::new(),
            })
        );
        assert_eq!(used, 91);
    }

    #[test]
    fn info_of_a_cluster_node_names_where_every_node_takes_clients() {
        // As nats-server 2.9.10 sends it, in a cluster of three.
        let (ServerOp::Info(info), _) = one(
            b"INFO {\"server_id\":\"N2\",\"version\":\"2.9.10\",\"headers\":true,\"cluster\":\"lab\",\"connect_urls\":[\"127.0.0.1:4223\",\"127.0.0.1:4222\",\"127.0.0.1:4224\"]} \r\n",
        ) else {
            panic!("an INFO")
        };
        assert_eq!(
            info.connect_urls,
            ["127.0.0.1:4223", "127.0.0.1:4222", "127.0.0.1:4224"]
        );
        let (ServerOp::Info(odd), _) = one(b"INFO {\"connect_urls\":\"x\"}\r\n") else {
            panic!("an INFO")
        };
        assert!(odd.connect_urls.is_empty(), "not a list: nothing learned");
    }

    #[test]
    fn the_short_operations() {
        assert_eq!(one(b"PING\r\n"), (ServerOp::Ping, 6));
        assert_eq!(one(b"pong\r\n"), (ServerOp::Pong, 6));
        assert_eq!(one(b"+OK\r\n"), (ServerOp::Ok, 5));
        assert_eq!(
            one(b"-ERR 'Unknown Protocol Operation'\r\n").0,
            ServerOp::Err("Unknown Protocol Operation".to_string())
        );
    }

    #[test]
    fn a_msg_with_and_without_reply_subject() {
        let (op, used) = one(b"MSG a.b 12 5\r\nhello\r\n");
        let ServerOp::Msg(msg) = op else {
            panic!("a MSG")
        };
        assert_eq!((msg.subject.as_str(), msg.sid), ("a.b", 12));
        assert_eq!((msg.payload.as_slice(), used), (&b"hello"[..], 21));
        assert!(msg.headers.is_empty() && msg.reply_to.is_none());
        let (ServerOp::Msg(msg), _) = one(b"MSG a.b 3 _INBOX.x 2\r\n\r\n\r\n") else {
            panic!("a MSG")
        };
        assert_eq!(msg.reply_to.as_deref(), Some("_INBOX.x"));
        assert_eq!(
            msg.payload, b"\r\n",
            "a payload may hold any bytes, \\r\\n too"
        );
    }

    #[test]
    fn what_write_pub_writes_parses_back_as_an_hmsg() {
        let mut out = Vec::new();
        let headers = [
            ("Pubsub-Lab-Publisher", "pub1"),
            ("Pubsub-Lab-Time", "2026-12-01 10:30:00"),
        ];
        write_pub(&mut out, "pubsub-lab.news.tech", &headers, b"ai!");
        let text = String::from_utf8(out.clone()).unwrap();
        let (line, rest) = text.split_once("\r\n").unwrap();
        assert_eq!(line, "HPUB pubsub-lab.news.tech 78 81");
        assert_eq!(rest.len(), 81 + 2);
        // The server sends it on as HMSG with the same lengths: swap the verb, add a sid.
        let delivered = text.replacen(
            "HPUB pubsub-lab.news.tech",
            "HMSG pubsub-lab.news.tech 4",
            1,
        );
        let (ServerOp::Msg(msg), used) = one(delivered.as_bytes()) else {
            panic!("an HMSG")
        };
        assert_eq!(used, delivered.len());
        assert_eq!(msg.header("pubsub-lab-publisher"), Some("pub1"));
        assert_eq!(msg.header("Pubsub-Lab-Time"), Some("2026-12-01 10:30:00"));
        assert_eq!(msg.payload, b"ai!");
    }

    #[test]
    fn pub_without_headers_and_the_other_client_lines() {
        let mut out = Vec::new();
        write_pub(&mut out, "s", &[], b"x y");
        write_sub(&mut out, "s.*", 7);
        write_unsub(&mut out, 7);
        write_ping(&mut out);
        write_pong(&mut out);
        assert_eq!(
            out,
            b"PUB s 3\r\nx y\r\nSUB s.* 7\r\nUNSUB 7\r\nPING\r\nPONG\r\n"
        );
        let mut connect = Vec::new();
        write_connect(
            &mut connect,
            &Connect {
                name: "pubsub-lab",
                no_echo: true,
            },
        );
        let text = String::from_utf8(connect).unwrap();
        assert!(text.starts_with("CONNECT {\"verbose\":false,"));
        assert!(
            text.ends_with(",\"headers\":true,\"echo\":false}\r\n"),
            "{text}"
        );
    }

    #[test]
    fn an_operation_cut_anywhere_is_not_complete_yet() {
        let whole = b"HMSG a 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        for cut in 0..whole.len() {
            assert_eq!(
                ServerOp::parse(&whole[..cut], DEFAULT_MAX_PAYLOAD),
                Ok(None),
                "cut at {cut}"
            );
        }
        assert_eq!(one(whole).1, whole.len());
    }

    #[test]
    fn what_is_not_the_protocol_is_an_error() {
        let parse = |bytes: &[u8]| ServerOp::parse(bytes, 10);
        assert!(matches!(parse(b"HELLO\r\n"), Err(NatsError::Malformed(_))));
        assert!(matches!(
            parse(b"MSG a 1\r\n"),
            Err(NatsError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"MSG a x 1\r\n"),
            Err(NatsError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"MSG a 1 2\r\nabc\r\n"),
            Err(NatsError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"HMSG a 1 5 2\r\n"),
            Err(NatsError::Malformed(_))
        ));
        assert_eq!(
            parse(b"MSG a 1 11\r\n"),
            Err(NatsError::PayloadTooLarge(11))
        );
        assert_eq!(
            parse(&[b'x'; MAX_CONTROL_LINE + 1]),
            Err(NatsError::LineTooLong)
        );
        assert!(matches!(
            parse(b"HMSG a 1 4 4\r\nHTTP\r\n"),
            Err(NatsError::Malformed(_))
        ));
    }
}
