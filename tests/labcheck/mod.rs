//! The client the lab checks share: a `Peer` that writes and reads raw protocol lines, as
//! `nc` would, and fails a check with a message written for the student who runs it.
//!
//! A failing check is often the first thing a student reads about their code, so every
//! message says which client was waiting for what, what happened instead, and where to
//! look: the function the lab is about, from the `REGION` constant that each
//! `tests/labNN.rs` defines (every test file is a crate of its own, so `crate::REGION` is
//! that lab's). Every socket has a time limit, so a line that never comes fails the check
//! instead of hanging it; checks synchronise on a `PING`'s `PONG`, never on a sleep.
//! The methods that can fail are `#[track_caller]`, so a failure is reported at the line
//! of the check that called them, not in this file.

// Each lab's checks use a different subset of these helpers.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::Duration;

use pubsub_lab::BrokerHandle;

use crate::REGION;

/// How long a check waits for any one line, or for the broker to act, before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// Set once a thread of the broker (a client's thread or a writer) has panicked.
static BROKER_THREAD_PANICKED: AtomicBool = AtomicBool::new(false);

/// Whether a thread of the broker has panicked since [`watch_broker_panics`] was called:
/// in a starter, the thread that reaches the region's `todo!()` ends there. A check that
/// waits for that thread's work (a cut-off, a cleanup) can stop waiting at once instead
/// of waiting out its time limit. The panic is still printed as usual.
pub fn broker_thread_panicked() -> bool {
    BROKER_THREAD_PANICKED.load(Ordering::Relaxed)
}

/// Starts noting panics of the broker's threads (see [`broker_thread_panicked`]). The
/// check's own failures, on its test thread, are not noted.
pub fn watch_broker_panics() {
    static WATCHING: Once = Once::new();
    WATCHING.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current()
                .name()
                .unwrap_or_default()
                .to_string();
            if name.starts_with("client-") || name.starts_with("writer-") {
                BROKER_THREAD_PANICKED.store(true, Ordering::Relaxed);
            }
            report(info);
        }));
    });
}

/// The most of what a client sent that a failure message quotes.
const QUOTED_BYTES: usize = 60;

/// One client of the broker, named in every failure message.
pub struct Peer {
    /// What the checks call this client (usually its id in the protocol).
    pub name: &'static str,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Peer {
    /// Connects, with a time limit of [`WAIT`] on every read and write.
    #[track_caller]
    pub fn connect(broker: &BrokerHandle, name: &'static str) -> Peer {
        let writer = TcpStream::connect(broker.addr()).expect("connect to the broker");
        writer
            .set_read_timeout(Some(WAIT))
            .expect("set a read timeout");
        writer
            .set_write_timeout(Some(WAIT))
            .expect("set a write timeout");
        // Each write goes out at once, so the broker sees the pieces as they were sent.
        writer.set_nodelay(true).expect("set TCP_NODELAY");
        let reader = BufReader::new(writer.try_clone().expect("clone the socket"));
        Peer {
            name,
            writer,
            reader,
        }
    }

    /// Connects and subscribes to `topic`; the PONG proves the subscription is in place.
    #[track_caller]
    pub fn subscribed(broker: &BrokerHandle, name: &'static str, topic: &str) -> Peer {
        let mut peer = Peer::connect(broker, name);
        peer.send(&format!("SUBSCRIBE {topic} {name}\nPING ready\n"));
        let line = peer.line("the PONG after SUBSCRIBE");
        assert_eq!(line, "PONG ready", "{name} subscribed and sent PING");
        peer
    }

    /// The address of this client's end of the connection: how the broker's logs name it.
    pub fn local_addr(&self) -> SocketAddr {
        self.writer
            .local_addr()
            .expect("a connected socket has an address")
    }

    /// Writes `text` exactly as given (include the `\n` yourself).
    #[track_caller]
    pub fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    /// Writes raw bytes.
    #[track_caller]
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        if let Err(error) = self.writer.write_all(bytes) {
            panic!(
                "{} could not send {}: {error}. The broker closed the connection or stopped \
                 reading it; did it panic? (look for a `client-N` thread panic, and at \
                 {REGION})",
                self.name,
                quoted(bytes)
            );
        }
    }

    /// Reads one line, without its `\n`; `waiting_for` says what was expected, for the
    /// failure message.
    #[track_caller]
    pub fn line(&mut self, waiting_for: &str) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!(
                "{} waited for {waiting_for}, but the broker closed the connection; did it \
                 panic? (look for a `client-N` thread panic, and at {REGION})",
                self.name
            ),
            Ok(_) => line.strip_suffix('\n').unwrap_or(&line).to_string(),
            Err(_) => panic!(
                "{} waited {WAIT:?} for {waiting_for}, but no line came{}; look at {REGION}",
                self.name,
                if line.is_empty() {
                    String::new()
                } else {
                    format!(" (only {line:?}, without its `\\n`)")
                }
            ),
        }
    }

    /// Reads one line like [`Peer::line`], for a reply that comes only after work whose
    /// length depends on the machine's speed (a flood of publishes and the subscribers
    /// draining it). Each time [`WAIT`] passes without the line, `moved` is asked whether
    /// the broker got anywhere meanwhile, in what a client can see (more publishes
    /// handled, more lines delivered); the wait fails only once it says nothing moved. A
    /// busy machine makes the wait longer, never the check fail.
    #[track_caller]
    pub fn line_while(&mut self, waiting_for: &str, mut moved: impl FnMut() -> bool) -> String {
        let mut line = String::new();
        loop {
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!(
                    "{} waited for {waiting_for}, but the broker closed the connection; did \
                     it panic? (look for a `client-N` thread panic, and at {REGION})",
                    self.name
                ),
                Ok(_) => return line.strip_suffix('\n').unwrap_or(&line).to_string(),
                // A timeout keeps what came of the line so far in `line`: read on.
                Err(_) if moved() => {}
                Err(_) => panic!(
                    "{} waited {WAIT:?} for {waiting_for}, and in that time the broker \
                     handled no more publishes and delivered nothing; look at {REGION}",
                    self.name
                ),
            }
        }
    }

    /// The next line, or `None` once the broker has closed the connection or sent nothing
    /// for [`WAIT`]. For a reader on a thread of its own, where a failure would go unseen.
    pub fn next_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.strip_suffix('\n').unwrap_or(&line).to_string()),
        }
    }

    /// PING, and wait for its PONG: every line sent before `after` has been handled.
    #[track_caller]
    pub fn sync(&mut self, after: &str) {
        self.send("PING sync\n");
        let line = self.line(&format!("the PONG proving the broker handled {after}"));
        assert_eq!(line, "PONG sync", "{} expected only a PONG", self.name);
    }

    /// Sends a PING and requires its PONG to be the very next line.
    #[track_caller]
    pub fn expect_nothing_more(&mut self, because: &str) {
        self.send("PING check\n");
        let line = self.line("the PONG of its PING");
        assert_eq!(
            line, "PONG check",
            "{} received {line:?} where no more lines were due ({because})",
            self.name
        );
    }

    /// Closes the write half (a TCP half-close): the broker sees end of file.
    #[track_caller]
    pub fn shutdown_write(&self) {
        self.writer.shutdown(Shutdown::Write).expect("half-close");
    }

    /// Reads into `rest` until the broker closes the connection; an error if nothing
    /// comes for [`WAIT`] before that.
    pub fn read_to_end(&mut self, rest: &mut Vec<u8>) -> io::Result<usize> {
        self.reader.read_to_end(rest)
    }

    /// Waits for the broker to close this connection, which it does after its cleanup.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        if let Err(error) = self.read_to_end(&mut Vec::new()) {
            panic!(
                "the broker did not close {}'s connection within {WAIT:?} ({error}): the \
                 cleanup in Drop for Session did not finish; does {REGION} panic? (look \
                 for a `client-N` thread panic)",
                self.name
            );
        }
    }

    /// `TOPICS`, as `<topic> <subscribers>` lines.
    #[track_caller]
    pub fn topics(&mut self) -> Vec<String> {
        self.send("TOPICS\n");
        self.lines_until("END TOPICS", "TOPICS ")
    }

    /// `STATS`, as (name, value) pairs.
    #[track_caller]
    pub fn stats(&mut self) -> Vec<(String, String)> {
        self.send("STATS\n");
        self.lines_until("END STATS", "STATS ")
            .into_iter()
            .filter_map(|line| {
                let (name, value) = line.split_once(' ')?;
                Some((name.to_string(), value.to_string()))
            })
            .collect()
    }

    /// One counter of `STATS`.
    #[track_caller]
    pub fn stat(&mut self, name: &str) -> u64 {
        let value = self
            .stats()
            .into_iter()
            .find(|(counter, _)| counter == name)
            .and_then(|(_, value)| value.parse().ok());
        // A `match`, not `unwrap_or_else`: a closure would not pass on `#[track_caller]`.
        match value {
            Some(value) => value,
            None => panic!("STATS has no counter {name}"),
        }
    }

    /// The lines of a reply up to its `end` line, each without `prefix`.
    #[track_caller]
    pub fn lines_until(&mut self, end: &str, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line(&format!("`{end}`"));
            if line == end {
                return lines;
            }
            lines.push(line.strip_prefix(prefix).unwrap_or(&line).to_string());
        }
    }
}

/// `bytes` for a failure message: all of them if few, else their start and how many.
fn quoted(bytes: &[u8]) -> String {
    let start = String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTED_BYTES)]);
    if bytes.len() <= QUOTED_BYTES {
        format!("{start:?}")
    } else {
        format!("{start:?}... ({} bytes)", bytes.len())
    }
}

/// One command of a labsheet, as a student types it into a shell, and what the lab shows
/// it printing.
pub struct SheetStep {
    /// The command, without its `$ `, with the lab's port replaced by the real one.
    pub command: String,
    /// The lines the lab shows below the command, up to the end of the block.
    pub shown: Vec<String>,
}

impl SheetStep {
    /// The command in `labsheet/<sheet>` whose line starts with `$ <start>`, with every
    /// `lab_port` in it replaced by `real_port`.
    #[track_caller]
    pub fn find(sheet: &str, start: &str, lab_port: u16, real_port: u16) -> SheetStep {
        let path = format!("{}/labsheet/{sheet}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        let mut lines = text.lines();
        let prefix = format!("$ {start}");
        let command = lines
            .by_ref()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{path} no longer has a line starting with `{prefix}`"));
        let command = command[2..].replace(
            &format!("127.0.0.1 {lab_port}"),
            &format!("127.0.0.1 {real_port}"),
        );
        let shown = lines
            .take_while(|line| !line.starts_with("```"))
            .map(|line| line.trim_end().to_string())
            .collect();
        SheetStep { command, shown }
    }

    /// Runs the command with `sh`, as the student's shell would, and returns what it
    /// printed, each line's trailing blanks removed. The real programs it names (`nc`,
    /// `od`) run; `timeout` stops the whole pipeline if it outlives `4 * WAIT`, so a
    /// pipeline that hangs, as `nc` without `-N` does in lab 9, fails the check instead.
    #[track_caller]
    pub fn run(&self) -> Vec<String> {
        let limit = (4 * WAIT).as_secs().to_string();
        let output = Command::new("timeout")
            .args([limit.as_str(), "sh", "-c", &self.command])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|error| panic!("cannot run `{}`: {error}", self.command));
        assert!(
            output.status.code() != Some(124),
            "`{}` was still running after {limit} s, and was stopped",
            self.command
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| line.trim_end().to_string())
            .collect()
    }
}
