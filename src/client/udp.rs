//! The UDP client: each command one datagram to the broker's UDP port, each datagram from
//! it one line. The same checks before sending as the TCP [`Client`](super::Client)'s,
//! and the cookie exchange that proves this client's address before it may subscribe
//! (`udp/cookie.rs`), done for you.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{check_publication, check_subscription, is_timeout, Incoming, REPLY_TIMEOUT};
use crate::error::Error;
use crate::protocol::{Command, Delivery};
use crate::udp::cookie;

/// A client of the broker's UDP port (`--udp-port`): each command is one datagram, each
/// datagram from the broker one line. Nothing is resent and nothing is waited for unless
/// you ask ([`ping`](UdpClient::ping)): this is UDP.
///
/// The socket is *connected* to the broker's address: it then takes datagrams from that
/// address only, and when nothing listens there the kernel's ICMP "port unreachable"
/// comes back as [`Error::Connect`] on the next call, instead of silence.
///
/// Subscribing needs a proven address: the broker answers the first
/// [`subscribe`](UdpClient::subscribe) with `COOKIE <token>`, and the client, as it reads
/// that line, sends its subscriptions again with the token. The caller sees none of it;
/// a [`ping`](UdpClient::ping) after subscribing waits until they are in.
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
    /// The broker's cookie for this client's address, once it sent one.
    cookie: Option<String>,
    /// Every `(topic, subscriber id)` given to [`subscribe`](Self::subscribe): sent again
    /// when a cookie comes.
    subscriptions: Vec<(String, String)>,
    /// A cookie came, and the subscriptions were sent again, since the last `PING` went.
    resubscribed: bool,
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
            cookie: None,
            subscriptions: Vec::new(),
            resubscribed: false,
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
    /// starts, or is renewed. Until the broker has sent a cookie, the datagram is padded
    /// with blank lines to the length of the `COOKIE` answer, which the broker sends an
    /// unproven address only if it is no longer than what it received; after, the
    /// datagram starts with `COOKIE <token>`.
    ///
    /// # Errors
    /// As [`Client::subscribe`](super::Client::subscribe).
    pub fn subscribe(&mut self, topic: &str, subscriber_id: &str) -> Result<(), Error> {
        check_subscription(topic, subscriber_id)?;
        let pair = (topic.to_string(), subscriber_id.to_string());
        if !self.subscriptions.contains(&pair) {
            self.subscriptions.push(pair);
        }
        self.send_subscribe(topic, subscriber_id)
    }

    fn send_subscribe(&mut self, topic: &str, subscriber_id: &str) -> Result<(), Error> {
        let mut datagram = Vec::new();
        if let Some(token) = &self.cookie {
            datagram.extend_from_slice(format!("COOKIE {token}\n").as_bytes());
        }
        Command::Subscribe {
            topic,
            subscriber_id,
        }
        .write_line(&mut datagram);
        if datagram.len() < cookie::ANSWER_BYTES {
            datagram.resize(cookie::ANSWER_BYTES, b'\n');
        }
        self.send_raw(&datagram)
    }

    /// A `COOKIE <token>` line from the broker: kept, and every subscription sent again
    /// with it. Returns whether the line was one.
    fn take_cookie(&mut self, line: &str) -> Result<bool, Error> {
        let Some(token) = cookie::parse_line(line.as_bytes()) else {
            return Ok(false);
        };
        self.cookie = Some(token.to_string());
        for (topic, subscriber_id) in self.subscriptions.clone() {
            self.send_subscribe(&topic, &subscriber_id)?;
        }
        self.resubscribed = true;
        Ok(true)
    }

    /// Sends `PUBLISH <topic> <message> <publisher_id>`.
    ///
    /// # Errors
    /// As [`Client::publish`](super::Client::publish).
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
        let deadline = Instant::now() + timeout;
        let mut buffer = vec![0u8; 65_536];
        loop {
            // A zero timeout would mean "wait for ever" to the operating system.
            let left = deadline.saturating_duration_since(Instant::now());
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let len = match self.socket.recv(&mut buffer) {
                Ok(len) => len,
                Err(error) if is_timeout(&error) => return Ok(None),
                Err(error) => return Err(self.unreachable_or(error)),
            };
            let text = String::from_utf8_lossy(&buffer[..len]);
            let line = text.trim_end_matches(['\n', '\r']).to_string();
            if !self.take_cookie(&line)? {
                return Ok(Some(Incoming::parse(&line)));
            }
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
    /// [`take_refusals`](Self::take_refusals). If a cookie came meanwhile, the
    /// subscriptions went again after the `PING`, so it pings once more: its `PONG` then
    /// proves they arrived.
    ///
    /// # Errors
    /// [`Error::Timeout`] if no `PONG` came; [`Error::Connect`] if nothing listens.
    pub fn ping(&mut self) -> Result<Duration, Error> {
        self.resubscribed = false;
        let rtt = self.ping_once()?;
        if std::mem::take(&mut self.resubscribed) {
            return self.ping_once();
        }
        Ok(rtt)
    }

    fn ping_once(&mut self) -> Result<Duration, Error> {
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
