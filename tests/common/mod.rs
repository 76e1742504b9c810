//! Helpers shared by the integration tests: a broker on a free port, and a raw-line client
//! that sees the protocol exactly as `nc` shows it.
//!
//! Every socket here has a read timeout, so a test that waits for a line that never comes
//! fails with a message instead of hanging. Tests synchronise on protocol events (a
//! `PONG` proves that every earlier line on that connection was handled) rather than
//! sleeping.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pubsub_lab::{Broker, BrokerHandle, Config};

/// The longest any single wait in a test may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Something a test needs from outside Rust.
pub enum Tool {
    /// A program, found by [`find_program`].
    Program(&'static str),
    /// Python 3 with these modules, by the names `import` takes.
    Python(&'static [&'static str]),
    /// Node with this package installed in the folder `node_modules` is in (by `npm ci`).
    Node {
        /// The package, as `require` names it.
        package: &'static str,
        /// The folder whose `node_modules` holds it.
        folder: PathBuf,
    },
}

/// Whether `tool` is on this machine, for a test that needs it (a real `nats-server`, a
/// browser, Mosquitto, a Python client). If it is not, the test should return at once: this
/// prints one line, `skipped: <test>: <what is missing>; install it with <install>`, straight
/// to the terminal (past the test harness, which would hide it) and returns `false`. So
/// `cargo test` passes on a machine with only Rust and says what it did not test.
///
/// With `PUBSUB_LAB_REQUIRE_TOOLS=1` (`.ci/run` sets it) a missing tool fails the test
/// instead: CI never skips.
pub fn require_tool(tool: Tool, install: &str) -> bool {
    let missing = match tool {
        Tool::Program(name) => find_program(name)
            .is_none()
            .then(|| format!("{name} is not installed")),
        Tool::Python(modules) => {
            let imports = modules.join(", ");
            let imported = find_program("python3").is_some_and(|python| {
                Command::new(python)
                    .args(["-c", &format!("import {imports}")])
                    // Not the crate root, where a folder could pass for a module.
                    .current_dir(std::env::temp_dir())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            });
            (!imported).then(|| format!("python3 cannot import {imports}"))
        }
        Tool::Node { package, folder } => {
            if find_program("node").is_none() {
                Some("node is not installed".to_string())
            } else {
                let installed = folder.join("node_modules").join(package).is_dir();
                (!installed).then(|| format!("{package} is not in {}", folder.display()))
            }
        }
    };
    let Some(missing) = missing else {
        return true;
    };
    let current = std::thread::current();
    let test = current.name().unwrap_or("a test");
    let line = format!("{test}: {missing}; install it with {install}");
    if std::env::var("PUBSUB_LAB_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("{line} (PUBSUB_LAB_REQUIRE_TOOLS=1: nothing may be skipped)");
    }
    let _ = writeln!(std::io::stderr(), "skipped: {line}");
    false
}

/// Where the program `name` is: on `PATH`, or in the `sbin` folders where Debian installs
/// servers such as `nats-server` and `mosquitto`, which are not on every user's `PATH`.
/// Only an executable file counts.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A connection to a broker with an auth file that sent `AUTH user secret` and got its
/// `OK AUTH`.
pub fn logged_in(broker: &BrokerHandle, user: &str, secret: &str) -> Raw {
    let mut raw = Raw::connect(broker.addr());
    raw.send(&format!("AUTH {user} {secret}\n"));
    raw.expect(&format!("OK AUTH {user}"));
    raw
}

/// A new, empty directory for one test's data (a durable log, say), named after the test
/// and this process, so that test binaries running at once never share one.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pubsub-lab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A broker with the default configuration on 127.0.0.1, on a port the OS picked.
pub fn start_broker() -> BrokerHandle {
    start_broker_with(Config::default())
}

/// A broker with `config` on 127.0.0.1, on a port the OS picked.
pub fn start_broker_with(config: Config) -> BrokerHandle {
    Broker::bind("127.0.0.1:0", config)
        .expect("bind 127.0.0.1:0")
        .spawn()
        .expect("start the broker")
}

/// A client that writes and reads raw protocol lines.
pub struct Raw {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

impl Raw {
    /// Connects, with a read timeout of [`TIMEOUT`].
    pub fn connect(addr: SocketAddr) -> Raw {
        let writer = TcpStream::connect(addr).expect("connect to the broker");
        writer.set_read_timeout(Some(TIMEOUT)).unwrap();
        writer.set_nodelay(true).unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        Raw { writer, reader }
    }

    /// Writes `text` exactly as given (include the `\n` yourself).
    pub fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    /// Writes raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to the broker");
    }

    /// Reads one line, without its `\n`. Fails the test on timeout or end of file.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("the broker closed the connection while a line was expected"),
            Ok(_) => line.strip_suffix('\n').unwrap_or(&line).to_string(),
            Err(error) => panic!("no line from the broker within {TIMEOUT:?}: {error}"),
        }
    }

    /// Reads one line and checks it.
    pub fn expect(&mut self, expected: &str) {
        assert_eq!(self.line(), expected);
    }

    /// Reads one `DELIVER` line and returns it without its timestamp (the last two tokens),
    /// after checking the timestamp's shape.
    pub fn delivery(&mut self) -> String {
        let line = self.line();
        assert!(
            line.starts_with("DELIVER "),
            "expected a DELIVER line, got {line:?}"
        );
        let (rest, time) = line.rsplit_once(' ').unwrap();
        let (rest, date) = rest.rsplit_once(' ').unwrap();
        let stamp = format!("{date} {time}");
        assert!(
            chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S").is_ok(),
            "bad timestamp {stamp:?} in {line:?}"
        );
        rest.to_string()
    }

    /// Sends `PING <token>` and reads up to its `PONG`, proving every line sent before
    /// was handled. Any other line on the way fails the test: use it to show that
    /// nothing else arrived.
    pub fn sync(&mut self) {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        self.send(&format!("PING sync{token}\n"));
        self.expect(&format!("PONG sync{token}"));
    }

    /// Reads until end of file, failing on timeout; returns what came before it.
    pub fn read_to_eof(&mut self) -> String {
        let mut rest = String::new();
        match self.reader.read_to_string(&mut rest) {
            Ok(_) => rest,
            Err(error) if error.kind() == ErrorKind::ConnectionReset => rest,
            Err(error) => panic!("the broker did not close the connection: {error}"),
        }
    }

    /// Closes the write half (a TCP half-close): the broker sees end of file.
    pub fn shutdown_write(&self) {
        self.writer.shutdown(Shutdown::Write).unwrap();
    }

    /// The underlying socket, for tests that need socket options.
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }
}

/// Waits until `condition` holds, polling the broker's state, or fails after [`TIMEOUT`].
/// For the few facts the protocol cannot report to the client that caused them (such as a
/// *different* connection having been cleaned up).
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_until_within(TIMEOUT, what, condition);
}

/// [`wait_until`] with a limit of its own: for what a slower party does (a browser that
/// is still starting), not the broker.
pub fn wait_until_within(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The value of one `STATS` counter, read through the handle.
pub fn stat(broker: &BrokerHandle, name: &str) -> u64 {
    broker
        .stats()
        .into_iter()
        .find(|(counter, _)| *counter == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

/// The kernel's queues of one TCP connection on this machine, read from `/proc/net/tcp`:
/// `(send, receive)`, the bytes a program wrote that the peer has not acknowledged yet, and
/// the bytes that arrived that the program has not read yet. `local` and `remote` are the
/// connection as seen from the side whose queues are wanted. `None` if no such connection
/// exists (any more).
///
/// A peer that stops reading shows up here first: its receive queue stops growing, and the
/// other side's send queue fills with bytes that have nowhere to go. That is how a test can
/// know that a write to it must block, instead of guessing with a sleep.
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let hex = |addr: SocketAddr| match addr {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::from("(ipv6)"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) || fields.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let (send, receive) = fields.get(4)?.split_once(':')?;
        Some((
            u64::from_str_radix(send, 16).ok()?,
            u64::from_str_radix(receive, 16).ok()?,
        ))
    })
}

/// Waits until the connection from `client` (a socket of the test's that stopped reading)
/// to the broker at `broker` is jammed: the client's receive queue has stopped growing and
/// the broker's send queue to it holds bytes it cannot deliver. From then on any further
/// write the broker makes to that client blocks. Returns the broker's send queue.
pub fn wait_until_jammed(client: &TcpStream, broker: SocketAddr) -> u64 {
    let local = client.local_addr().unwrap();
    let mut last = None;
    let mut steady = 0;
    let mut queued = 0;
    wait_until("the stalled connection's buffers are full", || {
        let now = (tcp_queues(local, broker), tcp_queues(broker, local));
        let (Some((_, receiving)), Some((sending, _))) = now else {
            return false;
        };
        steady = if last == Some(receiving) {
            steady + 1
        } else {
            0
        };
        last = Some(receiving);
        queued = sending;
        std::thread::sleep(Duration::from_millis(20));
        steady >= 3 && sending > 0
    });
    queued
}

/// Connects and subscribes `id` to `topic`; the `PONG` proves the subscription is in
/// place.
pub fn subscribed(addr: SocketAddr, topic: &str, id: &str) -> Raw {
    let mut raw = Raw::connect(addr);
    raw.send(&format!("SUBSCRIBE {topic} {id}\n"));
    raw.sync();
    raw
}

/// A subscriber that never reads: a raw socket that sent its `SUBSCRIBE` and a `PING`, and
/// waited for the `PONG` to arrive (without consuming it) so the subscription is in place.
pub fn stalled(addr: SocketAddr, topic: &str, id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(format!("SUBSCRIBE {topic} {id}\nPING\n").as_bytes())
        .unwrap();
    let mut peeked = [0u8; 5];
    wait_until("the stalled subscriber's PONG is queued", || {
        stream.peek(&mut peeked).unwrap() == 5
    });
    assert_eq!(&peeked, b"PONG\n");
    stream
}

/// Message `i` of a flood: a 32 KiB body that starts with its number.
pub fn big_message(i: usize) -> String {
    format!("m{i}-{}", "x".repeat(32 * 1024))
}

/// Sends `count` big messages to `topic` and then `PING flooded` from a thread of its own,
/// because the broker may stop reading them while it is stuck writing to a stalled
/// subscriber, and a blocked write must not block the test.
pub fn flood(publisher: &Raw, topic: &str, count: usize) -> JoinHandle<()> {
    let mut stream = publisher.stream().try_clone().unwrap();
    let topic = topic.to_string();
    thread::spawn(move || {
        for i in 0..count {
            let line = format!("PUBLISH {topic} {} p\n", big_message(i));
            if stream.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
        let _ = stream.write_all(b"PING flooded\n");
    })
}

/// A broker with `config` on every way in: the line protocol, the web (HTTP, WebSocket,
/// Socket.IO) and UDP, each on a port the OS picked.
pub fn start_full_broker(config: Config) -> BrokerHandle {
    Broker::builder()
        .config(config)
        .line("127.0.0.1:0")
        .web("127.0.0.1:0")
        .udp("127.0.0.1:0")
        .bind()
        .expect("bind 127.0.0.1:0 for TCP, the web and UDP")
        .spawn()
        .expect("start the broker")
}

static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// Writes `text` to a new auth file with permissions `mode` (the broker refuses one that
/// others may write to), and returns its path.
pub fn auth_file(text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("pubsub-lab-auth-{}-{n}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A broker with `config` that also takes datagrams, both on ports the OS picked.
pub fn start_udp_broker(config: Config) -> BrokerHandle {
    Broker::builder()
        .config(config)
        .line("127.0.0.1:0")
        .udp("127.0.0.1:0")
        .bind()
        .expect("bind 127.0.0.1:0 for TCP and UDP")
        .spawn()
        .expect("start the broker")
}

/// A broker with `config` serving the line protocol and the web, both on 127.0.0.1 on
/// ports the OS picked.
pub fn start_web_broker_with(config: Config) -> BrokerHandle {
    Broker::builder()
        .config(config)
        .line("127.0.0.1:0")
        .web("127.0.0.1:0")
        .bind()
        .expect("bind 127.0.0.1:0 twice")
        .spawn()
        .expect("start the broker")
}

/// A UDP client: a socket of its own on a port the OS picked, talking to one broker.
pub struct Udp {
    socket: std::net::UdpSocket,
    broker: SocketAddr,
    /// The broker's cookie for this address: every datagram sent starts with
    /// `COOKIE <token>`, which proves the address (see `src/udp/cookie.rs`).
    cookie: Option<String>,
}

impl Udp {
    /// A socket on 127.0.0.1 with a read timeout of [`TIMEOUT`], for `broker`'s UDP port,
    /// that has proven its address: it asked for a cookie, and echoes it in every datagram
    /// it sends (the broker strips it before it looks at the rest).
    pub fn new(broker: &BrokerHandle) -> Udp {
        let mut udp = Udp::unproven(broker);
        udp.send("SUBSCRIBE cookie please\n\n\n");
        let answer = udp.recv();
        let token = answer
            .strip_prefix("COOKIE ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("expected COOKIE <token>, got {answer:?}"));
        udp.cookie = Some(token.to_string());
        udp
    }

    /// As [`Udp::new`], without the cookie: an address the broker has no proof of.
    pub fn unproven(broker: &BrokerHandle) -> Udp {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        Udp {
            socket,
            broker: broker.udp_addr().expect("the broker takes datagrams"),
            cookie: None,
        }
    }

    /// This client's address, as the broker sees it.
    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Sends one datagram holding exactly `text`.
    pub fn send(&self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    /// Sends one datagram holding exactly `bytes` (after the cookie line, if it has one).
    pub fn send_bytes(&self, bytes: &[u8]) {
        let mut datagram = Vec::new();
        if let Some(token) = &self.cookie {
            datagram.extend_from_slice(format!("COOKIE {token}\n").as_bytes());
        }
        datagram.extend_from_slice(bytes);
        self.socket
            .send_to(&datagram, self.broker)
            .expect("send a datagram");
    }

    /// The next datagram, as text. Fails the test after [`TIMEOUT`].
    pub fn recv(&self) -> String {
        let mut buffer = vec![0u8; 70_000];
        match self.socket.recv_from(&mut buffer) {
            Ok((len, from)) => {
                assert_eq!(from, self.broker, "a datagram from someone else");
                String::from_utf8(buffer[..len].to_vec()).expect("UTF-8")
            }
            Err(error) => panic!("no datagram from the broker within {TIMEOUT:?}: {error}"),
        }
    }

    /// The next datagram, if one comes within `wait`.
    pub fn try_recv(&self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buffer = vec![0u8; 70_000];
        let got = self.socket.recv_from(&mut buffer).ok();
        self.socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        got.map(|(len, _)| String::from_utf8_lossy(&buffer[..len]).into_owned())
    }

    /// Sends `PING <token>` and returns every datagram before its `PONG`: on loopback,
    /// datagrams keep their order, so the PONG proves the ones sent before were handled.
    pub fn sync(&self) -> Vec<String> {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        self.send(&format!("PING usync{token}\n"));
        let pong = format!("PONG usync{token}\n");
        let mut before = Vec::new();
        loop {
            let datagram = self.recv();
            if datagram == pong {
                return before;
            }
            before.push(datagram);
        }
    }
}

/// One line of a JSON connection, parsed; fails the test if it is not a JSON object.
pub fn json_line(raw: &mut Raw) -> pubsub_lab::json::Value {
    let line = raw.line();
    match pubsub_lab::json::parse(&line) {
        Ok(value @ pubsub_lab::json::Value::Object(_)) => value,
        _ => panic!("expected a JSON object, got {line:?}"),
    }
}

/// The string member `key` of a JSON object, or `""` if it has none.
pub fn member(value: &pubsub_lab::json::Value, key: &str) -> String {
    value
        .get(key)
        .and_then(pubsub_lab::json::Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// [`start_web_broker_with`] the default configuration.
pub fn start_web_broker() -> BrokerHandle {
    start_web_broker_with(Config::default())
}

/// One HTTP response as a raw client reads it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client that writes raw bytes to the web port and reads HTTP responses.
pub struct RawHttp {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl RawHttp {
    /// Connects to the broker's web address, with a read timeout of [`TIMEOUT`].
    pub fn connect(broker: &BrokerHandle) -> RawHttp {
        let writer = TcpStream::connect(broker.web_addr().expect("a broker with the web"))
            .expect("connect to the web port");
        writer.set_read_timeout(Some(TIMEOUT)).unwrap();
        writer.set_nodelay(true).unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        RawHttp { writer, reader }
    }

    /// Writes `text` exactly as given.
    pub fn send(&mut self, text: &str) {
        self.writer
            .write_all(text.as_bytes())
            .expect("write to the broker");
    }

    /// Reads one response: status line, header fields, and a `Content-Length` body (none
    /// for `HEAD` answers when `head` is true).
    pub fn answer_to(&mut self, head: bool) -> Answer {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line);
        assert!(
            matches!(read, Ok(n) if n > 0),
            "no HTTP response from the broker ({read:?})"
        );
        assert!(line.starts_with("HTTP/1.1 "), "not a status line: {line:?}");
        let status = line[9..12].parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut field = String::new();
            self.reader.read_line(&mut field).unwrap();
            let field = field.trim_end_matches(['\r', '\n']);
            if field.is_empty() {
                break;
            }
            let (name, value) = field.split_once(':').expect("a header field");
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut answer = Answer {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = answer
            .header("content-length")
            .map_or(0, |l| l.parse().unwrap());
        if !head && status != 101 {
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body).unwrap();
            answer.body = String::from_utf8(body).unwrap();
        }
        answer
    }

    /// Reads one response to a request that was not `HEAD`.
    pub fn answer(&mut self) -> Answer {
        self.answer_to(false)
    }

    /// Sends `request` and reads its answer.
    pub fn ask(&mut self, request: &str) -> Answer {
        self.send(request);
        self.answer()
    }

    /// Reads until the broker closes; fails if it does not within [`TIMEOUT`].
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest,
            Err(error) if error.kind() == ErrorKind::ConnectionReset => rest,
            Err(error) => panic!("the broker did not close the connection: {error}"),
        }
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }
}

/// A `POST /publish` request with a JSON body.
pub fn post_json(body: &str) -> String {
    format!(
        "POST /publish HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A `GET` request for `path`.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}
