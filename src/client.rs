//! A blocking client for the broker, used by the `publisher` and `subscriber` binaries, the
//! benchmark and the tests.
//!
//! It speaks the classic protocol only (`SUBSCRIBE`, `UNSUBSCRIBE`, `PUBLISH`) unless you
//! call an extension method ([`ping`](Client::ping), [`topics`](Client::topics),
//! [`stats`](Client::stats)), so it also works against the classic classroom broker.
//!
//! Deliveries can arrive at any moment, including while the client waits for the answer
//! to a `PING`. Such deliveries are kept in a queue and handed out by the next
//! [`recv_timeout`](Client::recv_timeout), so none is lost.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::framing::{Filled, Frame, LineReader};
use crate::protocol::grammar::{self, Limits};
use crate::protocol::{Command, Delivery, Message, ProtocolError, MORE_TOPICS};

/// How long the extension requests wait for their answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest line the client accepts from a broker; a `DELIVER` is the broker's line limit
/// plus the timestamp and names, so this leaves room.
const MAX_LINE: usize = 256 * 1024;

/// A connection to a broker. See the module docs.
///
/// ```
/// use pubsub_lab::{Broker, Client, Config};
/// let broker = Broker::bind("127.0.0.1:0", Config::default())?.spawn()?;
/// let mut publisher = Client::connect(broker.addr())?;
/// publisher.publish("weather", "sunny", "pub1")?;
/// assert_eq!(publisher.topics()?, vec![]); // nobody subscribed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Client {
    reader: LineReader<TcpStream>,
    writer: TcpStream,
    peer: SocketAddr,
    /// Deliveries that arrived while waiting for something else.
    queued: VecDeque<Delivery>,
    /// Durable subscriptions' messages that arrived while waiting for something else.
    messages: VecDeque<Message>,
    /// Numbers the `PING`s, so each `PONG` is matched to its own request.
    next_ping: u64,
    out: Vec<u8>,
}

/// One line from the broker, sorted by its first word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A `DELIVER` line.
    Deliver(Delivery),
    /// A `MESSAGE` line: a delivery on a durable subscription.
    Message(Message),
    /// An `ERROR <reason>` line; holds the reason.
    Error(String),
    /// Any other line (a reply to an extension command), as text.
    Reply(String),
}

impl Incoming {
    /// Sorts one line (without its `\n`).
    pub fn parse(line: &str) -> Incoming {
        if let Some(reason) = line.strip_prefix("ERROR ") {
            return Incoming::Error(reason.to_string());
        }
        if let Some(delivery) = Delivery::parse(line) {
            return Incoming::Deliver(delivery);
        }
        match Message::parse(line) {
            Some(message) => Incoming::Message(message),
            None => Incoming::Reply(line.to_string()),
        }
    }
}

impl Client {
    /// Connects to a broker.
    ///
    /// # Errors
    /// [`Error::Connect`], whose message says what to do (usually: start the broker).
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, Error> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|source| Error::Connect {
                addr: "the given address".into(),
                source,
            })?
            .collect();
        let stream = TcpStream::connect(&addrs[..]).map_err(|source| Error::Connect {
            addr: addrs
                .first()
                .map_or_else(|| "?".to_string(), |a| a.to_string()),
            source,
        })?;
        Client::from_stream(stream)
    }

    /// Wraps a connected socket.
    ///
    /// # Errors
    /// Fails if the socket cannot be cloned into its read and write halves.
    pub fn from_stream(stream: TcpStream) -> Result<Client, Error> {
        // Commands are small and each should leave at once, not wait to be merged with the
        // next one (Nagle's algorithm); a publisher that wants batches writes them together.
        stream.set_nodelay(true)?;
        // Asked now, once: after the broker closes the connection the operating system may
        // no longer say where it was.
        let peer = stream.peer_addr()?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: LineReader::new(stream, MAX_LINE),
            writer,
            peer,
            queued: VecDeque::new(),
            messages: VecDeque::new(),
            next_ping: 1,
            out: Vec::new(),
        })
    }

    /// The broker's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// A second handle on the socket, for a thread that sends while another thread reads
    /// through this client (the `subscriber` binary types commands that way).
    ///
    /// # Errors
    /// Fails if the operating system cannot duplicate the socket.
    pub fn try_clone_stream(&self) -> io::Result<TcpStream> {
        self.writer.try_clone()
    }

    /// Sends `SUBSCRIBE <topic> <subscriber_id>`. The classic protocol has no answer to
    /// it: call [`ping`](Self::ping) afterwards to know the broker has handled it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a topic or id with spaces; [`Error::Io`] if the
    /// connection failed.
    pub fn subscribe(&mut self, topic: &str, subscriber_id: &str) -> Result<(), Error> {
        check_subscription(topic, subscriber_id)?;
        self.send(Command::Subscribe {
            topic,
            subscriber_id,
        })
    }

    /// Sends `UNSUBSCRIBE <topic> <subscriber_id>`.
    ///
    /// # Errors
    /// As [`subscribe`](Self::subscribe).
    pub fn unsubscribe(&mut self, topic: &str, subscriber_id: &str) -> Result<(), Error> {
        check_subscription(topic, subscriber_id)?;
        self.send(Command::Unsubscribe {
            topic,
            subscriber_id,
        })
    }

    /// Sends `PUBLISH <topic> <message> <publisher_id>`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a topic or id with spaces, or a message that is
    /// empty or has a line break; [`Error::Io`] if the connection failed.
    pub fn publish(&mut self, topic: &str, message: &str, publisher_id: &str) -> Result<(), Error> {
        check_publication(topic, message, publisher_id)?;
        self.send(Command::Publish {
            topic,
            message,
            publisher_id,
        })
    }

    /// Sends `RETAIN <topic> <message> <publisher_id>`: publishes, and asks the broker to
    /// keep the message for every later subscriber of `topic`. (Extension.)
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub fn retain(&mut self, topic: &str, message: &str, publisher_id: &str) -> Result<(), Error> {
        check_publication(topic, message, publisher_id)?;
        self.send(Command::Retain {
            topic,
            message,
            publisher_id,
        })
    }

    /// Sends `DURABLE <filter> <subscriber_id>` and waits for `OK DURABLE`: starts, or
    /// resumes, the durable subscription of `subscriber_id` to `filter`. Returns how many
    /// messages it held; they follow, for [`recv_message`](Self::recv_message).
    /// (Extension.)
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a filter or id with spaces; [`Error::Refused`] for
    /// a filter the broker refuses; [`Error::Timeout`] without an answer.
    pub fn durable(&mut self, filter: &str, subscriber_id: &str) -> Result<usize, Error> {
        check_subscription(filter, subscriber_id)?;
        self.send(Command::Durable {
            filter,
            subscriber_id,
        })?;
        let prefix = format!("OK DURABLE {filter} ");
        let line = self.await_reply(|line| line.starts_with(&prefix))?;
        line[prefix.len()..]
            .parse()
            .map_err(|_| Error::Unexpected(line.clone()))
    }

    /// Sends `ACK <seq>`: the message is handled, and the broker will not send it again.
    /// No answer comes (unless in verbose mode), so that acknowledging costs no round
    /// trip; an unknown seq is answered with an `ERROR`, which the next read returns.
    /// (Extension.)
    ///
    /// # Errors
    /// [`Error::Io`] if the connection failed.
    pub fn ack(&mut self, seq: u64) -> Result<(), Error> {
        let seq = seq.to_string();
        self.send(Command::Ack { seq: &seq })
    }

    /// Sends `CANCEL <filter> <subscriber_id>` and waits for `OK CANCEL`: ends the durable
    /// subscription. Returns how many messages it dropped. (Extension.)
    ///
    /// # Errors
    /// As [`durable`](Self::durable).
    pub fn cancel(&mut self, filter: &str, subscriber_id: &str) -> Result<usize, Error> {
        check_subscription(filter, subscriber_id)?;
        self.send(Command::Cancel {
            filter,
            subscriber_id,
        })?;
        let prefix = format!("OK CANCEL {filter} ");
        let line = self.await_reply(|line| line.starts_with(&prefix))?;
        line[prefix.len()..]
            .parse()
            .map_err(|_| Error::Unexpected(line.clone()))
    }

    /// Waits up to `timeout` for the next `MESSAGE` of a durable subscription. `Ok(None)`
    /// means none came in time. `DELIVER` lines that arrive meanwhile are kept for
    /// [`recv_timeout`](Self::recv_timeout); other replies are skipped.
    ///
    /// # Errors
    /// [`Error::Refused`] when the broker answered `ERROR` (a takeover, say),
    /// [`Error::Closed`] when it closed the connection.
    pub fn recv_message(&mut self, timeout: Duration) -> Result<Option<Message>, Error> {
        if let Some(message) = self.messages.pop_front() {
            return Ok(Some(message));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_line_until(deadline)? {
                None => return Ok(None),
                Some(Incoming::Message(message)) => return Ok(Some(message)),
                Some(Incoming::Deliver(delivery)) => self.queued.push_back(delivery),
                Some(Incoming::Error(reason)) => return Err(Error::Refused(reason)),
                Some(Incoming::Reply(_)) => continue,
            }
        }
    }

    /// Sends `PUBLISH` and waits for its confirm, `OK PUBLISH <topic> <deliveries>`:
    /// with `VERBOSE on`, the broker sends it only once the message is stored for every
    /// durable subscription it matched. Returns the number of deliveries. Call
    /// [`verbose`](Self::verbose)`(true)` once first. (Extension.)
    ///
    /// # Errors
    /// [`Error::Refused`] if the broker refused the message or could not store it;
    /// [`Error::Timeout`] without a confirm.
    pub fn publish_confirmed(
        &mut self,
        topic: &str,
        message: &str,
        publisher_id: &str,
    ) -> Result<usize, Error> {
        self.publish(topic, message, publisher_id)?;
        let prefix = format!("OK PUBLISH {topic} ");
        let line = self.await_reply(|line| line.starts_with(&prefix))?;
        line[prefix.len()..]
            .parse()
            .map_err(|_| Error::Unexpected(line.clone()))
    }

    /// Sends one command line as it is.
    ///
    /// # Errors
    /// [`Error::Io`] if the connection failed.
    pub fn send(&mut self, command: Command<'_>) -> Result<(), Error> {
        self.out.clear();
        command.write_line(&mut self.out);
        self.write_out()
    }

    /// Sends raw bytes: for tests and tools that must send what no well-behaved client
    /// would.
    ///
    /// # Errors
    /// [`Error::Io`] if the connection failed.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.writer.write_all(bytes).map_err(closed_or_io)
    }

    fn write_out(&mut self) -> Result<(), Error> {
        self.writer.write_all(&self.out).map_err(closed_or_io)
    }

    /// Waits up to `timeout` for the next delivery. `Ok(None)` means none came in time.
    /// Replies other than `ERROR` (acknowledgements in verbose mode) are skipped.
    ///
    /// # Errors
    /// [`Error::Refused`] when the broker answered `ERROR`, [`Error::Closed`] when it
    /// closed the connection.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Delivery>, Error> {
        if let Some(delivery) = self.queued.pop_front() {
            return Ok(Some(delivery));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_line_until(deadline)? {
                None => return Ok(None),
                Some(Incoming::Deliver(delivery)) => return Ok(Some(delivery)),
                Some(Incoming::Message(message)) => self.messages.push_back(message),
                Some(Incoming::Error(reason)) => return Err(Error::Refused(reason)),
                Some(Incoming::Reply(_)) => continue,
            }
        }
    }

    /// Waits up to `timeout` for the next line of any kind. `Ok(None)` means none came.
    /// Deliveries queued while waiting for a reply come first.
    ///
    /// # Errors
    /// [`Error::Closed`] when the broker closed the connection.
    pub fn next_line(&mut self, timeout: Duration) -> Result<Option<Incoming>, Error> {
        if let Some(delivery) = self.queued.pop_front() {
            return Ok(Some(Incoming::Deliver(delivery)));
        }
        if let Some(message) = self.messages.pop_front() {
            return Ok(Some(Incoming::Message(message)));
        }
        self.read_line_until(Instant::now() + timeout)
    }

    /// Sends `PING <n>` and waits for `PONG <n>`, returning the round-trip time. Because
    /// the broker handles each connection's lines in order, a `PONG` also proves that every
    /// command sent before it has been handled. (Extension: not in the classic protocol.)
    ///
    /// # Errors
    /// [`Error::Timeout`] if no `PONG` came within [`REPLY_TIMEOUT`].
    pub fn ping(&mut self) -> Result<Duration, Error> {
        let token = self.next_ping.to_string();
        self.next_ping += 1;
        let started = Instant::now();
        self.send(Command::Ping {
            token: Some(&token),
        })?;
        let expected = format!("PONG {token}");
        self.await_reply(|line| line == expected)?;
        Ok(started.elapsed())
    }

    /// Says this client has nothing more to send (a TCP half-close), then waits until the
    /// broker has handled every line and closed its side too. Returns the reasons of the
    /// `ERROR` lines it sent meanwhile; deliveries that still arrive are dropped.
    ///
    /// Without this, a program that publishes and exits at once could close its socket
    /// before the broker read the last lines; with it, `printf 'weather hi\n' | publisher
    /// pub1` returns only once the message is delivered.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the broker did not close within `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Result<Vec<String>, Error> {
        self.writer.shutdown(std::net::Shutdown::Write)?;
        let deadline = Instant::now() + timeout;
        let mut errors = Vec::new();
        loop {
            match self.read_line_until(deadline) {
                Ok(Some(Incoming::Error(reason))) => errors.push(reason),
                Ok(Some(_)) => {}
                Ok(None) => return Err(Error::Timeout),
                Err(Error::Closed) => return Ok(errors),
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends `AUTH <user> <secret>` and waits for `OK AUTH <user>`: the first thing to
    /// send to a broker with access control (`--auth-file`). (Extension.)
    ///
    /// # Errors
    /// [`Error::Refused`] with the broker's reason (a wrong secret is answered after a
    /// delay); [`Error::InvalidArgument`] for a user or secret that is not one word.
    pub fn auth(&mut self, user: &str, secret: &str) -> Result<(), Error> {
        check_word("user", user)?;
        check_word("secret", secret)?;
        self.send(Command::Auth {
            user,
            secret: crate::protocol::Secret(secret),
        })?;
        let expected = format!("OK AUTH {user}");
        self.await_reply(|line| line == expected)?;
        Ok(())
    }

    /// Sends `VERBOSE on` or `VERBOSE off` and waits for its `OK`. With it on, the broker
    /// acknowledges every accepted command; the client's requests skip those
    /// acknowledgements, so they stay matched to their own answers. (Extension.)
    ///
    /// # Errors
    /// [`Error::Timeout`] if no `OK VERBOSE` came within [`REPLY_TIMEOUT`].
    pub fn verbose(&mut self, on: bool) -> Result<(), Error> {
        self.send(Command::Verbose { on })?;
        let expected = if on {
            "OK VERBOSE on"
        } else {
            "OK VERBOSE off"
        };
        self.await_reply(|line| line == expected)?;
        Ok(())
    }

    /// Sends `TOPICS` and returns each topic with its number of subscribers. (Extension.)
    ///
    /// # Errors
    /// [`Error::Timeout`] or [`Error::Unexpected`] if the broker does not answer as ours does.
    pub fn topics(&mut self) -> Result<Vec<(String, usize)>, Error> {
        Ok(self.topics_matching(None)?.0)
    }

    /// Sends `TOPICS [filter]` and returns the topics listed, each with its number of
    /// subscribers, and how many more the broker left out of the listing. (Extension.)
    ///
    /// # Errors
    /// As [`topics`](Self::topics); [`Error::Refused`] for a bad filter.
    pub fn topics_matching(
        &mut self,
        filter: Option<&str>,
    ) -> Result<(Vec<(String, usize)>, usize), Error> {
        self.send(Command::Topics { filter })?;
        let mut topics = Vec::new();
        let mut more = 0;
        for line in self.multi_line_reply("TOPICS")? {
            match line.strip_prefix(MORE_TOPICS) {
                Some(rest) => {
                    let count = rest.trim().trim_end_matches(" more");
                    more = count.parse().map_err(|_| Error::Unexpected(line.clone()))?;
                }
                None => topics.push(parse_pair(&line)?),
            }
        }
        Ok((topics, more))
    }

    /// Sends `STATS` and returns each counter by name. (Extension.)
    ///
    /// # Errors
    /// As [`topics`](Self::topics).
    pub fn stats(&mut self) -> Result<Vec<(String, u64)>, Error> {
        self.send(Command::Stats)?;
        let lines = self.multi_line_reply("STATS")?;
        lines.iter().map(|line| parse_pair(line)).collect()
    }

    /// Reads the lines of a multi-line reply up to `END <word>`, without their prefix.
    fn multi_line_reply(&mut self, word: &str) -> Result<Vec<String>, Error> {
        let prefix = format!("{word} ");
        let end = format!("END {word}");
        let mut lines = Vec::new();
        loop {
            let line = self.await_reply(|line| line == end || line.starts_with(&prefix))?;
            match line.strip_prefix(&prefix) {
                Some(rest) => lines.push(rest.to_string()),
                None => return Ok(lines),
            }
        }
    }

    /// Reads until a reply line that `wanted` accepts, queueing deliveries that arrive on
    /// the way and skipping answers to earlier commands (see [`is_stray_reply`]).
    fn await_reply(&mut self, wanted: impl Fn(&str) -> bool) -> Result<String, Error> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            match self.read_line_until(deadline)? {
                None => return Err(Error::Timeout),
                Some(Incoming::Deliver(delivery)) => self.queued.push_back(delivery),
                Some(Incoming::Message(message)) => self.messages.push_back(message),
                Some(Incoming::Error(reason)) => return Err(Error::Refused(reason)),
                Some(Incoming::Reply(line)) if wanted(&line) => return Ok(line),
                Some(Incoming::Reply(line)) if is_stray_reply(&line) => continue,
                Some(Incoming::Reply(line)) => return Err(Error::Unexpected(line)),
            }
        }
    }

    /// Reads one line from the socket, waiting no later than `deadline`.
    fn read_line_until(&mut self, deadline: Instant) -> Result<Option<Incoming>, Error> {
        loop {
            if let Some(frame) = self.reader.next_line() {
                let Frame::Line(line) = frame else {
                    return Err(Error::Unexpected("a line too long to read".to_string()));
                };
                return Ok(Some(Incoming::parse(&String::from_utf8_lossy(line))));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(deadline - now))?;
            match self.reader.fill() {
                Ok(Filled::Bytes(_)) => {}
                Ok(Filled::Eof) => {
                    // The broker ends every line it sends. Bytes without an end at end of
                    // file are a line cut short when the connection was (a subscriber cut
                    // off mid-write, say): never handed out as if they were a message.
                    if let Some(cut) = self.reader.take_unterminated() {
                        log::debug!("dropped {} bytes of a line cut short", cut.len());
                    }
                    return Err(Error::Closed);
                }
                Err(error) if is_timeout(&error) => return Ok(None),
                Err(error) => return Err(closed_or_io(error)),
            }
        }
    }
}

/// Whether `line` answers some earlier command rather than the one being waited for: an
/// acknowledgement (`OK ...`, which the broker sends for every accepted command in verbose
/// mode, whether or not anyone waits for it), or the `PONG` of a ping that was given up on.
/// Skipping them is what keeps every request matched to its own answer.
fn is_stray_reply(line: &str) -> bool {
    line.starts_with("OK ") || line == "PONG" || line.starts_with("PONG ")
}

/// What the grammar refuses (see `protocol/grammar.rs`), as the client library reports
/// it: the broker's own reason, found before anything is sent. The client checks with no
/// limits, since only the broker knows its own (`--max-topic-bytes` and the rest).
fn unsendable(error: ProtocolError) -> Error {
    Error::InvalidArgument(error.to_string())
}

/// Checks what `SUBSCRIBE` and `UNSUBSCRIBE` send: a filter and a subscriber id.
fn check_subscription(topic: &str, subscriber_id: &str) -> Result<(), Error> {
    grammar::check_subscription(topic, subscriber_id, &Limits::NONE).map_err(unsendable)
}

/// Checks what `PUBLISH` and `RETAIN` send, as the broker would: a message it would
/// change (padded with spaces) or could not deliver (a line break) is refused, never sent
/// changed.
fn check_publication(topic: &str, message: &str, publisher_id: &str) -> Result<(), Error> {
    grammar::check_publish(topic, message, publisher_id, &Limits::NONE).map_err(unsendable)
}

/// Checks that `value` can be sent as one word (a topic, an id, a user's name): the
/// grammar's rule. `what` names it in the error (`publisher id`).
///
/// ```
/// use pubsub_lab::client::check_word;
/// assert!(check_word("publisher id", "pub1").is_ok());
/// assert_eq!(
///     check_word("publisher id", "two words").unwrap_err().to_string(),
///     "cannot send this: a publisher id must be one word, with no spaces or line breaks"
/// );
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] saying what is wrong.
pub fn check_word(what: &'static str, value: &str) -> Result<(), Error> {
    grammar::check_word(what, value).map_err(unsendable)
}

fn parse_pair<T: std::str::FromStr>(line: &str) -> Result<(String, T), Error> {
    line.rsplit_once(' ')
        .and_then(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
        .ok_or_else(|| Error::Unexpected(line.to_string()))
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A reset or broken pipe means the broker went away: say so plainly.
fn closed_or_io(error: io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Error::Closed,
        _ => Error::Io(error),
    }
}

/// A client of the broker's UDP port (`--udp-port`): each command is one datagram, each
/// datagram from the broker one line. Nothing is resent and nothing is waited for unless
/// you ask ([`ping`](UdpClient::ping)): this is UDP.
///
/// The socket is *connected* to the broker's address: it then takes datagrams from that
/// address only, and when nothing listens there the kernel's ICMP "port unreachable"
/// comes back as [`Error::Connect`] on the next call, instead of silence.
///
/// ```
/// use pubsub_lab::client::UdpClient;
/// use pubsub_lab::Broker;
/// let broker = Broker::builder().line("127.0.0.1:0").udp("127.0.0.1:0").bind()?.spawn()?;
/// let mut client = UdpClient::connect(broker.udp_addr().expect("UDP is on"))?;
/// client.subscribe("weather", "sub1")?;
/// client.ping()?; // the PONG proves the SUBSCRIBE arrived (datagrams keep their order on loopback)
/// broker.publish("weather", "Rainy day ahead!", "app")?;
/// let delivery = client.recv_timeout(std::time::Duration::from_secs(5))?.expect("a delivery");
/// assert_eq!(delivery.message, "Rainy day ahead!");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct UdpClient {
    socket: std::net::UdpSocket,
    peer: SocketAddr,
    next_ping: u64,
    out: Vec<u8>,
    /// Deliveries that arrived while waiting for a `PONG`.
    queued: VecDeque<Delivery>,
    /// `ERROR` reasons that arrived while waiting for a `PONG`.
    refused: Vec<String>,
}

impl UdpClient {
    /// Opens a socket for the broker's UDP port at `addr`.
    ///
    /// # Errors
    /// [`Error::Connect`] if the address cannot be resolved or no socket can be had.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<UdpClient, Error> {
        let peer = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| Error::Connect {
                addr: "the given address".into(),
                source: io::ErrorKind::NotFound.into(),
            })?;
        let local: SocketAddr = if peer.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let connect_error = |source| Error::Connect {
            addr: peer.to_string(),
            source,
        };
        let socket = std::net::UdpSocket::bind(local).map_err(connect_error)?;
        socket.connect(peer).map_err(connect_error)?;
        Ok(UdpClient {
            socket,
            peer,
            next_ping: 1,
            out: Vec::new(),
            queued: VecDeque::new(),
            refused: Vec::new(),
        })
    }

    /// The broker's UDP address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one command as one datagram.
    ///
    /// # Errors
    /// [`Error::Connect`] when the broker's port is known to be closed.
    pub fn send(&mut self, command: Command<'_>) -> Result<(), Error> {
        self.out.clear();
        command.write_line(&mut self.out);
        self.socket
            .send(&self.out)
            .map(|_| ())
            .map_err(|error| self.unreachable_or(error))
    }

    /// Sends `bytes` as one datagram, as they are: the tutorial's `Event at ...` ticks.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.socket
            .send(bytes)
            .map(|_| ())
            .map_err(|error| self.unreachable_or(error))
    }

    /// Sends `SUBSCRIBE <topic> <subscriber_id>`: the lease of this client's address
    /// starts, or is renewed.
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub fn subscribe(&mut self, topic: &str, subscriber_id: &str) -> Result<(), Error> {
        check_subscription(topic, subscriber_id)?;
        self.send(Command::Subscribe {
            topic,
            subscriber_id,
        })
    }

    /// Sends `PUBLISH <topic> <message> <publisher_id>`.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub fn publish(&mut self, topic: &str, message: &str, publisher_id: &str) -> Result<(), Error> {
        check_publication(topic, message, publisher_id)?;
        self.send(Command::Publish {
            topic,
            message,
            publisher_id,
        })
    }

    /// Waits up to `timeout` for the next line from the broker; `Ok(None)` if none came.
    /// Deliveries queued while waiting for a `PONG` come first.
    ///
    /// # Errors
    /// [`Error::Connect`] when nothing listens on the broker's port.
    pub fn next_line(&mut self, timeout: Duration) -> Result<Option<Incoming>, Error> {
        if let Some(delivery) = self.queued.pop_front() {
            return Ok(Some(Incoming::Deliver(delivery)));
        }
        // A zero timeout would mean "wait for ever" to the operating system.
        let timeout = timeout.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(timeout))?;
        let mut buffer = vec![0u8; 65_536];
        match self.socket.recv(&mut buffer) {
            Ok(len) => {
                let text = String::from_utf8_lossy(&buffer[..len]);
                Ok(Some(Incoming::parse(text.trim_end_matches(['\n', '\r']))))
            }
            Err(error) if is_timeout(&error) => Ok(None),
            Err(error) => Err(self.unreachable_or(error)),
        }
    }

    /// Waits up to `timeout` for the next delivery, skipping other lines.
    ///
    /// # Errors
    /// [`Error::Refused`] when the broker answered `ERROR`; as [`next_line`](Self::next_line).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Delivery>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left)? {
                None => return Ok(None),
                Some(Incoming::Deliver(delivery)) => return Ok(Some(delivery)),
                Some(Incoming::Error(reason)) => return Err(Error::Refused(reason)),
                Some(Incoming::Reply(_) | Incoming::Message(_)) if Instant::now() < deadline => {
                    continue
                }
                Some(Incoming::Reply(_) | Incoming::Message(_)) => return Ok(None),
            }
        }
    }

    /// Sends `PING <n>` and waits up to [`REPLY_TIMEOUT`] for `PONG <n>`. Over UDP a
    /// lost `PING` or `PONG` looks the same as a broker that is not there. Renews this
    /// address's lease. `ERROR`s that arrive meanwhile are kept for
    /// [`take_refusals`](Self::take_refusals).
    ///
    /// # Errors
    /// [`Error::Timeout`] if no `PONG` came; [`Error::Connect`] if nothing listens.
    pub fn ping(&mut self) -> Result<Duration, Error> {
        let token = self.next_ping.to_string();
        self.next_ping += 1;
        let started = Instant::now();
        self.send(Command::Ping {
            token: Some(&token),
        })?;
        let expected = format!("PONG {token}");
        let deadline = started + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            // `next_line` hands out queued deliveries first; read the socket itself here.
            let queued = std::mem::take(&mut self.queued);
            let line = self.next_line(left);
            self.queued = queued;
            match line? {
                None => return Err(Error::Timeout),
                Some(Incoming::Reply(line)) if line == expected => return Ok(started.elapsed()),
                Some(Incoming::Deliver(delivery)) => self.queued.push_back(delivery),
                Some(Incoming::Error(reason)) => self.refused.push(reason),
                Some(Incoming::Reply(_) | Incoming::Message(_)) => {}
            }
        }
    }

    /// The reasons of the `ERROR` datagrams that arrived while [`ping`](Self::ping) waited.
    pub fn take_refusals(&mut self) -> Vec<String> {
        std::mem::take(&mut self.refused)
    }

    fn unreachable_or(&self, error: io::Error) -> Error {
        if error.kind() == io::ErrorKind::ConnectionRefused {
            Error::Connect {
                addr: format!("{} (UDP)", self.peer),
                source: error,
            }
        } else {
            Error::Io(error)
        }
    }
}
