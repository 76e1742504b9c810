//! What a run measures: our broker or the relay as a child process, or any broker at an
//! address.
//!
//! By default every run starts a fresh `broker` from the bench's own target directory, on
//! a port the OS picks, so a run never inherits another run's state, and the process's
//! memory (`/proc/<pid>/status`) is the broker's alone. The relay is started the same way
//! (`bench relay --port 0`). Both print their address on their first stdout line. A child
//! is killed and waited for when its [`Target`] is dropped, however the run ends.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a child may take to say where it listens.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long subscribers are given to be registered by a target that cannot answer `PING`.
pub const SETTLE_DELAY: Duration = Duration::from_millis(500);

/// How many of a child's last stderr lines are kept, to explain a failed or lossy run.
const KEPT_LOG_LINES: usize = 20;

/// Which server a run measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// Our `broker` binary, started for the run.
    Broker,
    /// The speed-of-light relay (`bench relay`), started for the run.
    Relay,
    /// A broker that is already running at this address.
    Addr(String),
    /// Another `broker` binary (an earlier build, say), started for the run like ours.
    Baseline(PathBuf),
}

impl TargetKind {
    /// The name used in reports.
    pub fn label(&self) -> String {
        match self {
            TargetKind::Broker => "broker".to_string(),
            TargetKind::Relay => "relay".to_string(),
            TargetKind::Addr(addr) => addr.clone(),
            TargetKind::Baseline(_) => "baseline".to_string(),
        }
    }
}

/// Which of the broker's listeners beside the line protocol's a run needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Listeners {
    /// Datagrams (`--udp-port`).
    pub udp: bool,
    /// The web: HTTP and WebSocket (`--http-port`).
    pub web: bool,
}

/// How subscribers know they are registered before publishing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMethod {
    /// Send `PING <token>` after `SUBSCRIBE` and wait for `PONG <token>`: the target
    /// handles a connection's lines in order, so the subscription is in place.
    Ping,
    /// The target does not answer `PING`: wait this long and hope.
    Settle(Duration),
}

/// A server ready to be measured.
#[derive(Debug)]
pub struct Target {
    /// How reports name it.
    pub label: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its web listens (HTTP, WebSocket), if it was asked to serve the web.
    pub web_addr: Option<SocketAddr>,
    /// How subscribers synchronise with it.
    pub sync: SyncMethod,
    /// Where it takes datagrams, if it was started with a UDP port.
    pub udp_addr: Option<SocketAddr>,
    /// Whether every connection must log in first (`bench --auth`): subscribers as
    /// `bench`, publisher i as `pub<i>`, with the secret [`AUTH_SECRET`].
    pub login: bool,
    child: Option<ChildGuard>,
}

/// The secret of every user `bench --auth` writes.
pub const AUTH_SECRET: &str = "bench";

/// Writes the auth file of `bench --auth` to the temporary directory, readable and
/// writable by its owner only, and returns its path. Sixty students with a publish rule
/// each come first, as in a lab, so that every publish check walks past them.
pub fn write_auth_file() -> Result<PathBuf, String> {
    use std::fmt::Write as _;
    let mut text = String::from("# written by bench --auth\n");
    for n in 1..=60 {
        let _ = writeln!(
            text,
            "user student{n} secret{n}\nallow student{n} publish lab/student{n}/#"
        );
    }
    let _ = writeln!(text, "user bench {AUTH_SECRET}\nallow * subscribe #");
    for n in 0..256 {
        let _ = writeln!(text, "user pub{n} {AUTH_SECRET}\nallow pub{n} publish #");
    }
    let path = std::env::temp_dir().join(format!("pubsub-lab-bench-{}.auth", std::process::id()));
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    Ok(path)
}

impl Target {
    /// Starts (or, for an address, finds) the target. `max_clients` is how many
    /// connections the run will open at once, which the broker must allow; `listeners`
    /// says which of its other listeners it opens too, each on a free port; `auth`, an
    /// auth file every connection must log in with.
    pub fn start(
        kind: &TargetKind,
        max_clients: usize,
        listeners: Listeners,
        auth: Option<&Path>,
    ) -> Result<Target, String> {
        let mut target = Target::started(kind, max_clients, listeners, auth)?;
        target.login = auth.is_some();
        Ok(target)
    }

    fn started(
        kind: &TargetKind,
        max_clients: usize,
        listeners: Listeners,
        auth: Option<&Path>,
    ) -> Result<Target, String> {
        let web = listeners.web;
        match kind {
            TargetKind::Broker | TargetKind::Baseline(_) => {
                let broker = match kind {
                    TargetKind::Baseline(path) => path.clone(),
                    _ => sibling_binary("broker")?,
                };
                let limit = max_clients.max(1024).to_string();
                let mut args = vec!["--port", "0", "--max-clients", &limit];
                if listeners.udp {
                    args.extend(["--udp-port", "0"]);
                }
                // Without the web, ours is told so; a baseline built before the web
                // existed would not know the flag.
                match (web, kind) {
                    (true, _) => args.extend(["--http-port", "0"]),
                    (false, TargetKind::Broker) => args.push("--no-http"),
                    (false, _) => {}
                }
                let auth_file = auth.map(|path| path.display().to_string());
                if let Some(path) = &auth_file {
                    args.extend(["--auth-file", path.as_str()]);
                }
                let child = ChildGuard::spawn(broker, &args)?;
                if web && child.web_addr.is_none() {
                    return Err(format!(
                        "{} did not say where its web listens: is it a build with the web?",
                        kind.label()
                    ));
                }
                Ok(Target::child(kind, child))
            }
            TargetKind::Relay | TargetKind::Addr(_) if web => Err(format!(
                "the web workloads need a broker this bench starts, not {}",
                kind.label()
            )),
            TargetKind::Relay => {
                let me = std::env::current_exe()
                    .map_err(|e| format!("cannot find the bench's own program: {e}"))?;
                let child = ChildGuard::spawn(me, &["relay", "--port", "0"])?;
                Ok(Target::child(kind, child))
            }
            TargetKind::Addr(text) => {
                let addr = text
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| format!("--addr {text}: not a host:port I can resolve"))?;
                let sync = detect_sync(addr)?;
                Ok(Target {
                    label: kind.label(),
                    addr,
                    web_addr: None,
                    sync,
                    udp_addr: None,
                    login: false,
                    child: None,
                })
            }
        }
    }

    /// Starts our broker (or the baseline build) with `extra` flags after the usual ones,
    /// for a workload that needs a setting (`durable`: `--data-dir`, `--fsync`). Only a
    /// broker the bench starts can be given flags.
    pub fn start_with(
        kind: &TargetKind,
        max_clients: usize,
        extra: &[String],
    ) -> Result<Target, String> {
        let broker = match kind {
            TargetKind::Baseline(path) => path.clone(),
            TargetKind::Broker => sibling_binary("broker")?,
            TargetKind::Relay | TargetKind::Addr(_) => {
                return Err(format!(
                    "this workload needs broker flags ({}): it runs only on a broker the \
                     bench starts",
                    extra.join(" ")
                ))
            }
        };
        let limit = max_clients.max(1024).to_string();
        let mut args = vec!["--port", "0", "--max-clients", &limit];
        if *kind == TargetKind::Broker {
            args.push("--no-http");
        }
        args.extend(extra.iter().map(String::as_str));
        let child = ChildGuard::spawn(broker, &args)?;
        Ok(Target::child(kind, child))
    }

    fn child(kind: &TargetKind, child: ChildGuard) -> Target {
        Target {
            label: kind.label(),
            addr: child.addr,
            web_addr: child.web_addr,
            sync: SyncMethod::Ping,
            udp_addr: child.udp_addr,
            login: false,
            child: Some(child),
        }
    }

    /// The child's resident memory in KiB, or `None` for a target at an address.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_field("VmRSS:")
    }

    /// The child's number of threads, or `None` for a target at an address.
    pub fn threads(&self) -> Option<u64> {
        self.status_field("Threads:")
    }

    /// The child's process id, or `None` for a target at an address.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.child.id())
    }

    /// The last lines the child wrote to stderr (warnings and errors only).
    pub fn log_tail(&self) -> Vec<String> {
        self.child
            .as_ref()
            .map(|c| c.log.lock().iter().cloned().collect())
            .unwrap_or_default()
    }

    fn status_field(&self, name: &str) -> Option<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|line| line.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    }
}

/// Makes sure the broker the bench would start was built from the sources as they are now.
///
/// `cargo run --release --bin bench` builds the bench and the library, but not the
/// `broker` program: after an edit to `src/clock.rs`, `target/release/broker` is still the
/// build from before it, and the bench would measure the old code under the new code's
/// name. Cargo records which files each program was built from in a dep-info file beside
/// it (`target/release/broker.d`); if one of them is newer than the program, cargo would
/// rebuild it, and the bench refuses to measure it until it has been. (Rebuilding it from
/// here would hide a minute of compiling inside a measurement, and a bench that runs cargo
/// surprises; so it says what to run instead.) A broker with no dep-info beside it (copied
/// elsewhere) is taken as it is.
pub fn check_broker_is_current() -> Result<(), String> {
    let broker = sibling_binary("broker")?;
    match newer_source(&broker) {
        None => Ok(()),
        Some(source) => {
            // `target/release/broker` is built by `cargo build --release`, `target/debug/`'s
            // by plain `cargo build`.
            let release = broker
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|dir| dir == "release");
            let profile = if release { " --release" } else { "" };
            Err(format!(
                "{} was built before your latest change to {}, so it would measure the old \
                 code. Build it again with `cargo build{profile} --bins` (`cargo run{profile} \
                 --bin bench` rebuilds only the bench), then run the bench again.",
                shown(&broker),
                shown(&source)
            ))
        }
    }
}

/// The newest source `binary` was built from, if it is newer than `binary`; `None` if the
/// binary is current or its dep-info (`<binary>.d`) cannot be read.
fn newer_source(binary: &Path) -> Option<PathBuf> {
    let built = fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let dep_info = fs::read_to_string(binary.with_extension("d")).ok()?;
    dep_info_sources(&dep_info)
        .into_iter()
        .filter_map(|source| {
            let changed = fs::metadata(&source).and_then(|m| m.modified()).ok()?;
            (changed > built).then_some((changed, source))
        })
        .max()
        .map(|(_, source)| source)
}

/// The files a dep-info file lists after each `target:`, as make writes them (a space in
/// a path is escaped as `\ `).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        let mut path = String::new();
        let mut chars = deps.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => path.extend(chars.next()),
                ' ' => {
                    if !path.is_empty() {
                        sources.push(PathBuf::from(std::mem::take(&mut path)));
                    }
                }
                c => path.push(c),
            }
        }
        if !path.is_empty() {
            sources.push(PathBuf::from(path));
        }
    }
    sources
}

/// A path as the user would type it: relative to the current directory when it is inside.
fn shown(path: &Path) -> String {
    let relative = std::env::current_dir()
        .ok()
        .and_then(|here| path.strip_prefix(here).ok().map(Path::to_path_buf));
    relative
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// A program in the same directory as the bench (`target/release/broker`).
fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let me =
        std::env::current_exe().map_err(|e| format!("cannot find the bench's own program: {e}"))?;
    let path = me
        .with_file_name(name)
        .with_extension(std::env::consts::EXE_EXTENSION);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "there is no {} next to the bench; build it first: cargo build --release --bins",
            path.display()
        ))
    }
}

/// Asks a broker at an address whether it answers `PING`, on a connection of its own.
fn detect_sync(addr: SocketAddr) -> Result<SyncMethod, String> {
    let mut probe = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {addr}: {e}. Is a broker running there?"))?;
    let _ = probe.set_read_timeout(Some(Duration::from_secs(1)));
    probe
        .write_all(b"PING bench-probe\n")
        .map_err(|e| format!("cannot write to {addr}: {e}"))?;
    let mut line = String::new();
    let answered = BufReader::new(&probe).read_line(&mut line).is_ok()
        && line.trim_end() == "PONG bench-probe";
    Ok(if answered {
        SyncMethod::Ping
    } else {
        SyncMethod::Settle(SETTLE_DELAY)
    })
}

/// A started child process; dropping it kills the process and waits for it.
#[derive(Debug)]
struct ChildGuard {
    child: Child,
    addr: SocketAddr,
    /// Its UDP address, if its first line names one.
    udp_addr: Option<SocketAddr>,
    /// Its web's address, if its first line names one.
    web_addr: Option<SocketAddr>,
    /// The last lines of the child's stderr, collected by `drain`.
    log: Arc<Mutex<VecDeque<String>>>,
    drain: Vec<JoinHandle<()>>,
}

impl ChildGuard {
    /// Starts `program args...` and reads its address from its first stdout line.
    fn spawn(program: PathBuf, args: &[&str]) -> Result<ChildGuard, String> {
        let name = program
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        // Only warnings: logging each connection would cost the broker time and distort
        // the very figures being measured.
        let mut child = Command::new(&program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (first_line, first_line_rx) = mpsc::channel();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        // The guard exists before anything else can fail, so the child is always killed.
        let mut guard = ChildGuard {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            udp_addr: None,
            web_addr: None,
            log: Arc::clone(&log),
            drain: Vec::new(),
        };
        if let Some(stdout) = stdout {
            guard
                .drain
                .push(spawn_drain(stdout, None, Some(first_line))?);
        }
        if let Some(stderr) = stderr {
            guard.drain.push(spawn_drain(stderr, Some(log), None)?);
        }
        let line = first_line_rx.recv_timeout(STARTUP_TIMEOUT).ok();
        match line.as_deref().and_then(parse_listening_addr) {
            Some(addr) => {
                guard.addr = addr;
                guard.udp_addr = line.as_deref().and_then(parse_udp_addr);
                guard.web_addr = line.as_deref().and_then(parse_web_addr);
                Ok(guard)
            }
            None => {
                // Give the child a moment to finish writing why it failed.
                thread::sleep(Duration::from_millis(100));
                let said = guard
                    .log
                    .lock()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n");
                Err(format!(
                    "{name} did not say where it listens (first line: {line:?}){}",
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!("; it said:\n{said}")
                    }
                ))
            }
        }
    }
}

/// Reads a child's output to its end so the child never blocks on a full pipe. Sends the
/// first line to `first_line`; keeps the last lines in `keep`.
fn spawn_drain(
    source: impl Read + Send + 'static,
    keep: Option<Arc<Mutex<VecDeque<String>>>>,
    first_line: Option<mpsc::Sender<String>>,
) -> Result<JoinHandle<()>, String> {
    let mut first_line = first_line;
    let run = move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if let Some(sender) = first_line.take() {
                let _ = sender.send(line.clone());
            }
            if let Some(keep) = &keep {
                let mut keep = keep.lock();
                if keep.len() == KEPT_LOG_LINES {
                    keep.pop_front();
                }
                keep.push_back(line);
            }
        }
    };
    thread::Builder::new()
        .name("bench-child-output".to_string())
        .spawn(run)
        .map_err(|e| format!("cannot start a thread to read a child's output: {e}"))
}

/// The address in `pubsub-lab broker listening on 127.0.0.1:PORT; ...`.
fn parse_listening_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on ")?;
    let addr = rest.split(|c: char| c == ';' || c.is_whitespace()).next()?;
    addr.parse().ok()
}

/// The address in `...; UDP on 127.0.0.1:PORT; ...`, the broker's UDP port.
fn parse_udp_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("UDP on ")?;
    rest.split(';').next()?.parse().ok()
}

/// The address in `...; live view: open http://127.0.0.1:PORT/`.
fn parse_web_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("live view: open http://")?;
    rest.split('/').next()?.parse().ok()
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // An error only means the child already ended.
        let _ = self.child.kill();
        let _ = self.child.wait();
        for drain in self.drain.drain(..) {
            let _ = drain.join();
        }
    }
}

/// Waits until `deadline`, or not at all if it has passed.
pub fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        thread::sleep(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_read_from_the_first_line() {
        let line =
            "pubsub-lab broker listening on 127.0.0.1:40123; connect with: nc 127.0.0.1 40123";
        assert_eq!(
            parse_listening_addr(line),
            Some(([127, 0, 0, 1], 40123).into())
        );
        assert_eq!(parse_listening_addr("hello"), None);
        let web = format!("{line}; live view: open http://127.0.0.1:40124/");
        assert_eq!(parse_web_addr(&web), Some(([127, 0, 0, 1], 40124).into()));
        assert_eq!(parse_web_addr(line), None);
        let line =
            "pubsub-lab broker listening on 127.0.0.1:40123; UDP on 127.0.0.1:40124; connect \
             with: nc 127.0.0.1 40123; live view: open http://127.0.0.1:40125/";
        assert_eq!(
            parse_listening_addr(line),
            Some(([127, 0, 0, 1], 40123).into())
        );
        assert_eq!(parse_udp_addr(line), Some(([127, 0, 0, 1], 40124).into()));
        assert_eq!(parse_web_addr(line), Some(([127, 0, 0, 1], 40125).into()));
    }

    #[test]
    fn dep_info_lists_every_source_with_escaped_spaces() {
        let text =
            "/p/target/release/broker: /p/src/lib.rs /p/my\\ labs/src/clock.rs\n\n/p/src/lib.rs:\n";
        assert_eq!(
            dep_info_sources(text),
            [
                PathBuf::from("/p/src/lib.rs"),
                PathBuf::from("/p/my labs/src/clock.rs")
            ]
        );
    }
}
