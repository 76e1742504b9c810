//! Lab 09 checks: the WebSocket handshake. A browser opens the live view's WebSocket with
//! `GET /ws` and a random `Sec-WebSocket-Key`; the broker's `101` answer must carry
//! `Sec-WebSocket-Accept: base64(sha1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))`,
//! which `websocket::accept_key` (the lab 09 region in src/web/websocket.rs) computes. A
//! browser that gets a wrong value closes the connection at once.
//! The checks send real handshakes to a real broker and read the answers from the socket,
//! comparing them with values computed by Python's hashlib and base64 (for fixed keys), or
//! with the three steps done in the check itself (for a random key), and then use the
//! WebSocket to receive a message.

mod common;
mod labcheck;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use pubsub_lab::web::{base64, sha1::sha1, websocket};

use labcheck::WAIT;

/// Where the work of this lab is; `labcheck`'s failure messages point there too.
const REGION: &str = "websocket::accept_key in src/web/websocket.rs";

/// The example of RFC 6455, section 1.3: its key and its accept value.
const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The answers the usual mistakes give for the RFC's key, and what each mistake is.
const WRONG_FOR_RFC_KEY: [(&str, &str); 5] = [
    (
        "b37a4f2cc0624f1690f64606cf385945b2bec4ea",
        "that is the SHA-1 in hex: the answer is the 20 bytes of the hash in base64 \
         (base64::encode(&digest)), not its hex text",
    ),
    (
        "2OZf2Seed9yzIpkj+zvC9KS9Mjw=",
        "that hashes the GUID followed by the key: the key comes first, then ACCEPT_GUID",
    ),
    (
        "hHLtf2V1k8aDQZfNjw3Ia1hCwt0=",
        "that hashes the key alone: append ACCEPT_GUID to it before hashing",
    ),
    (
        "BXhwxM0SZasKmCD9S4BfpPmCnEw=",
        "that hashes the 16 bytes the key stands for: hash the key's text, as the client \
         sent it, without decoding its base64",
    ),
    (
        "ZEdobElITmhiWEJzWlNCdWIyNWpaUT09MjU4RUFGQTUtRTkxNC00N0RBLTk1Q0EtQzVBQjBEQzg1QjEx",
        "that is key and GUID in base64, not hashed: hash them with sha1 first",
    ),
];

/// A connection to the broker's web port that sent a handshake with `key`.
struct Handshake {
    stream: TcpStream,
    /// The answer's status line and header fields, as read.
    head: Vec<String>,
}

impl Handshake {
    #[track_caller]
    fn send(broker: &pubsub_lab::BrokerHandle, key: &str) -> Handshake {
        let mut stream = TcpStream::connect(broker.web_addr().unwrap()).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let request = websocket::handshake_request("127.0.0.1", "/ws", key);
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::with_capacity(1, stream.try_clone().unwrap());
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => panic!(
                    "the broker closed the connection without answering the handshake \
                     ({} lines of answer): did {REGION} panic? (still todo!()?)",
                    head.len()
                ),
                Ok(_) => {}
                Err(error) => panic!(
                    "no answer to the WebSocket handshake within {WAIT:?} ({error}); look \
                     at {REGION}"
                ),
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            head.push(line);
        }
        Handshake { stream, head }
    }

    /// The `Sec-WebSocket-Accept` value of the answer.
    #[track_caller]
    fn accept(&self) -> String {
        assert!(
            self.head[0].starts_with("HTTP/1.1 101 "),
            "the handshake was answered {:?}, not 101 Switching Protocols",
            self.head[0]
        );
        self.head
            .iter()
            .find_map(|line| line.strip_prefix("Sec-WebSocket-Accept: "))
            .unwrap_or_else(|| {
                panic!(
                    "the 101 answer has no Sec-WebSocket-Accept: {:?}",
                    self.head
                )
            })
            .to_string()
    }
}

/// Says which mistake a wrong accept value shows, if it is a known one.
fn diagnosis(got: &str) -> &'static str {
    WRONG_FOR_RFC_KEY
        .iter()
        .find(|(wrong, _)| *wrong == got)
        .map_or("it is none of the usual mistakes", |(_, why)| why)
}

/// The key of RFC 6455's own example is answered with the RFC's accept value.
#[test]
fn the_rfc_example_key_is_accepted() {
    let broker = common::start_web_broker();
    let got = Handshake::send(&broker, RFC_KEY).accept();
    assert_eq!(
        got,
        RFC_ACCEPT,
        "for the key {RFC_KEY} (RFC 6455, section 1.3) the accept value must be \
         {RFC_ACCEPT}, but {REGION} gave {got:?}: {}",
        diagnosis(&got)
    );
}

/// Another key gets its own accept value, not the RFC's.
#[test]
fn another_key_gets_its_own_accept() {
    let broker = common::start_web_broker();
    // The bytes 1 to 16, in base64; the expected value computed with Python's hashlib.
    let key = "AQIDBAUGBwgJCgsMDQ4PEA==";
    let got = Handshake::send(&broker, key).accept();
    assert_ne!(
        got, RFC_ACCEPT,
        "{REGION} gave the RFC's example answer for another key: the answer must be \
         computed from the key the client sent, not written in"
    );
    assert_eq!(
        got, "C/0nmHhBztSRGR1CwL6Tf4ZjwpY=",
        "for the key {key} the accept value must be C/0nmHhBztSRGR1CwL6Tf4ZjwpY=, but \
         {REGION} gave {got:?}"
    );
}

/// A random key, as a browser sends, is accepted, and the WebSocket then works: a
/// subscriber on it receives a message.
#[test]
fn a_random_key_is_accepted_and_the_websocket_works() {
    let broker = common::start_web_broker();
    let key = websocket::random_key();
    let expected = base64::encode(&sha1(format!("{key}{}", websocket::ACCEPT_GUID).as_bytes()));
    let mut handshake = Handshake::send(&broker, &key);
    let got = handshake.accept();
    assert_eq!(
        got, expected,
        "for the random key {key} the accept value must be base64(sha1(key + GUID)) = \
         {expected}, but {REGION} gave {got:?}"
    );
    let mut frames = Vec::new();
    for line in ["SUBSCRIBE weather lab09", "PUBLISH weather it works lab09"] {
        websocket::write_frame(
            &mut frames,
            websocket::Opcode::Text,
            line.as_bytes(),
            Some(websocket::random_mask()),
        );
    }
    handshake.stream.write_all(&frames).unwrap();
    let mut head = [0u8; 2];
    handshake
        .stream
        .read_exact(&mut head)
        .unwrap_or_else(|error| panic!("no frame came back after the handshake ({error})"));
    let mut payload = vec![0; usize::from(head[1] & 0x7f)];
    handshake.stream.read_exact(&mut payload).unwrap();
    let line = String::from_utf8_lossy(&payload);
    assert!(
        head[0] == 0x81 && line.starts_with("DELIVER weather it works lab09 "),
        "after the handshake, the subscriber should receive its DELIVER in a text frame, \
         but got the frame {head:x?} {line:?}"
    );
}

/// Step 4 of the lab, typed as the lab shows it, with the real `nc -N` and `od`: the bytes
/// that come back hold the RFC's accept value, then the broker's `PONG hi` frame.
#[test]
fn step_4_by_hand_with_nc_shows_the_accept_value_and_the_pong() {
    if !common::require_tool(
        common::Tool::Program("nc"),
        "sudo apt-get install -y netcat-openbsd",
    ) {
        return;
    }
    let broker = common::start_web_broker();
    let port = broker.web_addr().expect("the broker serves the web").port();
    let step = labcheck::SheetStep::find("09-the-web.md", "(printf 'GET /ws", 8080, port);
    let printed = step.run();
    // The lab shows the first line of `od`'s output, `...`, then the last two lines.
    let shown: Vec<&String> = step.shown.iter().filter(|line| *line != "...").collect();
    let got: Vec<&String> = printed
        .iter()
        .take(1)
        .chain(printed.iter().skip(printed.len().saturating_sub(2).max(1)))
        .collect();
    assert_eq!(
        got,
        shown,
        "lab 9, step 4, typed with the real nc and od, did not print what the lab shows \
         (its first line, and its last two: the end of the accept value {RFC_ACCEPT} for \
         the RFC's key, then the `PONG hi` frame). If the answer stops short, the broker \
         closed the connection: did {REGION} panic (still todo!())? It printed:\n{}",
        printed.join("\n")
    );
}
