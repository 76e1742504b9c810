//! A small blocking WebSocket client: the other end of `/ws`, for the benchmark, the
//! tests and anyone who wants to see the handshake and frames from the client's side.
//!
//! It does what a browser does: sends the handshake with a random key, checks the
//! server's `Sec-WebSocket-Accept`, masks every frame it sends with a fresh key, and
//! answers pings. It sends each text message as one frame.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::websocket::{self, Decoder, Message, Opcode, Role};

/// A message as the client receives it, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text message: one line of the broker's protocol.
    Text(String),
    /// The server closed, with this code (and reason), or with none.
    Closed(Option<(u16, String)>),
}

/// A WebSocket connection from the client's side. See the module docs.
#[derive(Debug)]
pub struct WebSocketClient {
    stream: TcpStream,
    decoder: Decoder,
    out: Vec<u8>,
}

impl WebSocketClient {
    /// Connects to `addr` and opens a WebSocket at `path` (`/ws`).
    ///
    /// # Errors
    /// The connection failed, or the server's answer was not a valid `101`.
    pub fn connect(addr: SocketAddr, path: &str) -> io::Result<WebSocketClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let key = websocket::random_key();
        (&stream)
            .write_all(websocket::handshake_request(&addr.to_string(), path, &key).as_bytes())?;
        // Read the answer's head byte by byte: frames may follow it at once, and they
        // belong to the decoder.
        let mut reader = BufReader::with_capacity(1, &stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "no handshake answer",
                ));
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push_str(&line);
        }
        let refused =
            |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{why}: {head}"));
        if !head.starts_with("HTTP/1.1 101 ") {
            return Err(refused("the server did not switch to WebSocket"));
        }
        let accept = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| value.trim().to_string())
        });
        if accept.as_deref() != Some(websocket::accept_key(&key).as_str()) {
            return Err(refused("wrong Sec-WebSocket-Accept"));
        }
        Ok(WebSocketClient {
            stream,
            decoder: Decoder::new(Role::Client, 16 * 1024 * 1024),
            out: Vec::new(),
        })
    }

    /// The socket and the decoder holding what was read but not yet received: for a
    /// reader that wants to go through the frames itself.
    pub fn into_parts(self) -> (TcpStream, Decoder) {
        (self.stream, self.decoder)
    }

    /// The socket, for timeouts.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends one text message (one line of the protocol, without its `\n`).
    ///
    /// # Errors
    /// The write failed.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.queue_text(text);
        self.send_queued()
    }

    /// Queues a text message without sending it yet: many queued and sent at once go out
    /// in one write.
    pub fn queue_text(&mut self, text: &str) {
        websocket::write_frame(
            &mut self.out,
            Opcode::Text,
            text.as_bytes(),
            Some(websocket::random_mask()),
        );
    }

    /// Sends what [`queue_text`](Self::queue_text) queued.
    ///
    /// # Errors
    /// The write failed.
    pub fn send_queued(&mut self) -> io::Result<()> {
        let result = (&self.stream).write_all(&self.out);
        self.out.clear();
        result
    }

    /// Sends a close frame with `code`.
    ///
    /// # Errors
    /// The write failed.
    pub fn close(&mut self, code: u16) -> io::Result<()> {
        websocket::write_close(&mut self.out, code, "", Some(websocket::random_mask()));
        self.send_queued()
    }

    /// Waits up to `timeout` for the next text message or close; answers pings meanwhile.
    /// `Ok(None)` if nothing came in time.
    ///
    /// # Errors
    /// The connection failed or ended without a close frame, or the server broke the
    /// protocol.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<Received>> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(Message::Text(text))) => return Ok(Some(Received::Text(text.to_string()))),
                Ok(Some(Message::Close(close))) => {
                    return Ok(Some(Received::Closed(
                        close.map(|(c, r)| (c, r.to_string())),
                    )))
                }
                Ok(Some(Message::Ping(payload))) => {
                    let payload = payload.to_vec();
                    websocket::write_frame(
                        &mut self.out,
                        Opcode::Pong,
                        &payload,
                        Some(websocket::random_mask()),
                    );
                    self.send_queued()?;
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.stream.set_read_timeout(Some(timeout))?;
                    match self.decoder.read_from(&self.stream) {
                        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            return Ok(None)
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(violation) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, violation))
                }
            }
        }
    }

    /// Reads and drops everything the server sends until it closes: for the end of a test.
    ///
    /// # Errors
    /// The read failed.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut scratch = [0u8; 4096];
        while (&self.stream).read(&mut scratch)? > 0 {}
        Ok(())
    }
}
