//! Replaying a lab's marked blocks against a real broker, the way a student would run them.
//!
//! Each group of blocks (or each block on its own) gets a broker on a free port: the
//! `broker` binary if the group starts one with `cargo run --bin broker`, otherwise one in
//! this process. Every terminal in the lab becomes one of:
//!
//! * `$ nc 127.0.0.1 9000`: a TCP connection; `> ` lines are written to it.
//! * `$ printf '...' | nc 127.0.0.1 9000`, or `$ (printf '...'; sleep 1; printf '...') | nc
//!   ...`: the same bytes written with the same pauses, then everything read until the
//!   broker closes (so, as for the student, the input must end with `QUIT`).
//! * `$ printf '...' | nc -u -w1 127.0.0.1 9999`: one datagram per write, to the broker's
//!   UDP port.
//! * `$ curl ARGS`: the real `curl`, against the broker's web port, or a nats-server's
//!   monitoring port (asked again until its answer is the one the lab shows).
//! * `$ nats-server ARGS`: a real one (lab 11), each port it is given replaced by a free one.
//! * `$ COMMAND | grep [-c] [-AN] WORD`: the lines of the command's output holding `WORD`.
//! * `$ printf '...' > PATH`, `$ chmod MODE PATH`, `$ rm -rf PATH`: a file or folder the
//!   lab then names (an `--auth-file`, a `--data-dir`), in a folder of the group's own.
//! * `$ kill -9 $(pgrep -u "$USER" -nx broker)`: the group's newest broker, killed.
//! * `$ sid=<sid>`: a shell variable set to what the placeholder `<sid>` last matched in
//!   the group's output (a session id the student copies from the line above); `$sid`
//!   and `${sid}` in later commands of the group stand for it.
//! * `$ cargo run --bin NAME -- ARGS`: the binary the test suite built, run with stdout and
//!   stderr merged as a terminal shows them; `> ` lines go to its stdin, or what a
//!   `printf '...' |` before it writes. A program the block types into runs on a
//!   terminal (under `script`), as for a student: a program may greet a person and not a
//!   pipe, and the terminal's echo of each typed line is the lab's `> ` line.
//!
//! The lab's ports (9000 for the line protocol, 8080 for the web, 9999 for UDP, and any
//! other a broker or nats-server is given) are replaced by the real ones on the way in,
//! and the real ones by the lab's on the way out.
//! Output lines are compared in order ([`crate::pattern`] for the
//! placeholders); a line `...` lets any number of lines pass. Before a terminal acts, every
//! other `nc` terminal that was typed into is synchronised with a hidden `PING` (a JSON
//! `ping` on a connection that speaks the JSON dialect), so a `SUBSCRIBE` typed in one
//! terminal has been handled before a `PUBLISH` in the next: the replay waits on protocol
//! events, never on the clock (only `sleep` in a lab's own command pauses it). Every wait
//! is bounded.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use pubsub_lab::BrokerHandle;

use crate::markdown::{Block, Lab};
use crate::pattern;

/// How long one promised line may take to appear.
const LINE_WAIT: Duration = Duration::from_secs(30);
/// How long a command the lab runs to completion may take (the benchmark is the slowest).
const FINISH_WAIT: Duration = Duration::from_secs(180);
/// What labs write for the process id of the student's newest broker.
const NEWEST_BROKER: &str = "$(pgrep -u \"$USER\" -nx broker)";
/// The start of the token of the replay's hidden PINGs.
const SYNC_TOKEN: &str = "replay-sync-";
/// The port the labs are written for.
const LAB_PORT: u16 = 9000;
/// The UDP port the labs are written for (`--udp-port 9999`).
const LAB_UDP_PORT: u16 = 9999;

/// The web port the labs are written for.
const LAB_WEB_PORT: u16 = 8080;

/// Replays every marked block of `lab`; returns how many blocks were replayed.
pub fn replay(lab: &Lab) -> Result<usize, String> {
    let mut groups: Vec<(Option<&str>, Vec<&Block>)> = Vec::new();
    for block in &lab.blocks {
        match block.group.as_deref() {
            Some(name) => match groups.iter_mut().find(|(g, _)| *g == Some(name)) {
                Some((_, blocks)) => blocks.push(block),
                None => groups.push((Some(name), vec![block])),
            },
            None => groups.push((None, vec![block])),
        }
    }
    for (_, blocks) in groups {
        Group::new(&lab.name, blocks)?.run()?;
    }
    Ok(lab.blocks.len())
}

/// What a terminal's reader thread reports.
enum Output {
    Line(String),
    /// No more output, and why.
    End(String),
}

enum Kind {
    Process(Child),
    Conn(TcpStream),
    Pipe,
}

struct Terminal {
    kind: Kind,
    input: Option<Box<dyn Write + Send>>,
    output: Receiver<Output>,
    lookahead: VecDeque<String>,
    ended: Option<String>,
    /// Lines already read, for failure messages.
    seen: Vec<String>,
    /// An `nc` terminal typed into since its last hidden PING.
    unsynced: bool,
    /// The student typed QUIT: the broker closes this connection.
    quit: bool,
    /// The first line typed into this `nc` started with `{`: the connection speaks the
    /// JSON dialect, and the hidden PING must be a JSON one.
    json: Option<bool>,
    closed: bool,
    /// After a `...` line: lines may pass until the next promised one.
    skipping: bool,
    /// A server (a broker, a nats-server): it runs until the group ends.
    is_broker: bool,
    /// A program on a terminal: lines typed into it come back as the terminal's echo,
    /// which the lab shows as the `> ` line itself. The ones not seen yet.
    echoes: VecDeque<String>,
    on_a_terminal: bool,
}

impl Terminal {
    fn new(kind: Kind, input: Option<Box<dyn Write + Send>>, output: Receiver<Output>) -> Self {
        Terminal {
            kind,
            input,
            output,
            lookahead: VecDeque::new(),
            ended: None,
            seen: Vec::new(),
            unsynced: false,
            quit: false,
            json: None,
            closed: false,
            skipping: false,
            is_broker: false,
            echoes: VecDeque::new(),
            on_a_terminal: false,
        }
    }

    /// The next output line, raw, or why there is none before `deadline`.
    fn next_line(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            let line = self.next_raw_line(deadline)?;
            if self.echoes.front() == Some(&line) {
                self.echoes.pop_front();
                continue;
            }
            return Ok(line);
        }
    }

    fn next_raw_line(&mut self, deadline: Instant) -> Result<String, String> {
        if let Some(line) = self.lookahead.pop_front() {
            return Ok(line);
        }
        if let Some(why) = &self.ended {
            return Err(why.clone());
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.output.recv_timeout(wait) {
            Ok(Output::Line(line)) => Ok(line),
            Ok(Output::End(why)) => {
                self.ended = Some(why.clone());
                Err(why)
            }
            Err(RecvTimeoutError::Timeout) => Err(format!("nothing more came within {wait:?}")),
            Err(RecvTimeoutError::Disconnected) => Err("the output ended".to_string()),
        }
    }

    fn context(&self) -> String {
        let start = self.seen.len().saturating_sub(6);
        if self.seen.is_empty() {
            "\n  (it had shown nothing so far)".to_string()
        } else {
            let lines: Vec<String> = self.seen[start..]
                .iter()
                .map(|l| format!("  | {l}"))
                .collect();
            format!("\n  last lines it showed:\n{}", lines.join("\n"))
        }
    }
}

impl Terminal {
    /// What Ctrl-C does: the program in this terminal stops (a connection is closed).
    fn interrupt(&mut self) {
        self.input = None;
        match &mut self.kind {
            Kind::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Kind::Conn(stream) => {
                let _ = stream.shutdown(Shutdown::Both);
            }
            Kind::Pipe => {}
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.interrupt();
    }
}

struct Group<'a> {
    file: &'a str,
    blocks: Vec<&'a Block>,
    /// Declared before `broker` so every client is gone before the broker stops.
    terminals: HashMap<String, Terminal>,
    /// Terminals the lab is done with, kept open until the group ends.
    finished: Vec<Terminal>,
    broker: Option<BrokerHandle>,
    port: Option<u16>,
    /// The web port of the group's broker, shown as the lab's 8080.
    web_port: Option<u16>,
    /// The broker's UDP port, when a lab starts it with `--udp-port`.
    udp_port: Option<u16>,
    syncs: u64,
    /// Several blocks, or one with a `group=`: terminals may run side by side.
    grouped: bool,
    /// Other ports the lab names (`--port 9001`, nats-server's 4222, 8222, 6222), each with
    /// the free port that stands for it: `(lab, real)`.
    more_ports: Vec<(u16, u16)>,
    /// The real monitoring ports of the group's nats-servers.
    monitors: Vec<u16>,
    /// The output lines the lab shows right after the line being replayed.
    shown_next: Vec<String>,
    /// The line being replayed is a command the block then types into.
    typed_into: bool,
    /// The terminals that started brokers, the newest last.
    brokers: Vec<String>,
    /// Where the files the lab writes (`printf ... > target/lab11.auth`) are written
    /// instead, each under its own path; removed when the group ends.
    files: Files,
    /// What each word placeholder (`<sid>`) matched last in the group's output.
    matched: HashMap<String, String>,
    /// The shell variables the lab set (`sid=<sid>`), with their values.
    variables: HashMap<String, String>,
}

impl<'a> Group<'a> {
    fn new(file: &'a str, blocks: Vec<&'a Block>) -> Result<Self, String> {
        let runs_broker_binary = blocks.iter().any(|block| {
            block.lines.iter().any(|(_, l)| {
                l.trim_start().starts_with("$ ")
                    && (l.contains("--bin broker") || l.contains("--bin classroom"))
            })
        });
        let grouped = blocks.iter().any(|block| block.group.is_some());
        let broker = (!runs_broker_binary).then(crate::common::start_web_broker);
        let port = broker.as_ref().map(|b| b.addr().port());
        let web_port = broker.as_ref().and_then(|b| b.web_addr()).map(|a| a.port());
        Ok(Group {
            file,
            blocks,
            terminals: HashMap::new(),
            finished: Vec::new(),
            broker,
            port,
            web_port,
            udp_port: None,
            syncs: 0,
            grouped,
            more_ports: Vec::new(),
            monitors: Vec::new(),
            shown_next: Vec::new(),
            typed_into: false,
            files: Files::default(),
            brokers: Vec::new(),
            matched: HashMap::new(),
            variables: HashMap::new(),
        })
    }

    fn run(mut self) -> Result<(), String> {
        let blocks = self.blocks.clone();
        for (index, block) in blocks.iter().enumerate() {
            let name = terminal_name(block);
            for (at, (line, text)) in block.lines.iter().enumerate() {
                self.shown_next = shown_after(&block.lines[at + 1..]);
                self.typed_into = typed_after(&block.lines[at + 1..]);
                self.step(&name, *line, text.trim_end())?;
            }
            let used_later = blocks[index + 1..].iter().any(|b| terminal_name(b) == name);
            if !used_later {
                let last = block.lines.last().map_or(block.line, |(n, _)| *n);
                self.finish(&name, last)?;
            }
        }
        self.terminals.clear();
        self.finished.clear();
        drop(self.broker.take());
        Ok(())
    }

    fn ports(&self) -> Ports {
        Ports {
            line: self.port,
            web: self.web_port,
            udp: self.udp_port,
            more: self.more_ports.clone(),
            paths: self
                .files
                .written
                .iter()
                .map(|(lab, real)| (lab.clone(), real.display().to_string()))
                .collect(),
        }
    }

    /// The real port standing for the lab's `lab`, if one does yet.
    fn real_port(&self, lab: u16) -> Option<u16> {
        match lab {
            LAB_PORT => self.port,
            LAB_WEB_PORT => self.web_port,
            LAB_UDP_PORT => self.udp_port,
            _ => self
                .more_ports
                .iter()
                .find(|(l, _)| *l == lab)
                .map(|(_, real)| *real),
        }
    }

    /// The real port for the lab's `lab`: a free one the first time it is named.
    fn claim_port(&mut self, lab: u16) -> u16 {
        if let Some(real) = self.real_port(lab) {
            return real;
        }
        let real = free_port();
        self.more_ports.push((lab, real));
        real
    }

    /// `text` with every `127.0.0.1:<lab port>` (and `localhost:`) written with the real
    /// port that stands for it.
    fn to_real(&self, text: &str) -> String {
        let mut text = text.to_string();
        let mut known: Vec<(u16, u16)> = self.more_ports.clone();
        for lab in [LAB_PORT, LAB_WEB_PORT, LAB_UDP_PORT] {
            if let Some(real) = self.real_port(lab) {
                known.push((lab, real));
            }
        }
        for (lab, real) in known {
            for host in ["127.0.0.1", "localhost"] {
                let from = format!("{host}:{lab}");
                let to = format!("{host}:{real}");
                let mut out = String::new();
                let mut rest = text.as_str();
                while let Some(found) = rest.find(&from) {
                    let end = found + from.len();
                    let whole = !rest[end..].starts_with(|c: char| c.is_ascii_digit());
                    out.push_str(&rest[..found]);
                    out.push_str(if whole { &to } else { &from });
                    rest = &rest[end..];
                }
                out.push_str(rest);
                text = out;
            }
        }
        text
    }

    fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.file)
    }

    fn step(&mut self, name: &str, line: usize, text: &str) -> Result<(), String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(());
        }
        if let Some(command) = text.strip_prefix("$ ") {
            if let Some((variable, placeholder)) = shell_assignment(command) {
                return self.assign(variable, placeholder, line);
            }
            let command = self.expand_variables(command);
            let command = command.as_str();
            self.sync_others(name, line)?;
            if self.terminals.contains_key(name) {
                self.finish(name, line)?;
            }
            return self.start(name, command, line);
        }
        if let Some(typed) = text.strip_prefix("> ").or((text == ">").then_some("")) {
            self.sync_others(name, line)?;
            return self.type_line(name, typed, line);
        }
        let at = self.at(line);
        let unsynced = self
            .terminals
            .get(name)
            .is_some_and(|t| t.unsynced && !t.quit && !t.closed && matches!(t.kind, Kind::Conn(_)));
        if trimmed == "^C" && unsynced {
            // A student presses Ctrl-C some time after typing, once the broker has read
            // what was typed: a hidden PING waits for that, not the clock.
            self.sync(name, line)?;
        }
        let terminal = self
            .terminals
            .get_mut(name)
            .ok_or_else(|| format!("{at}: output shown before any command in terminal `{name}`"))?;
        match trimmed {
            "^C" => {
                terminal.interrupt();
                terminal.closed = true;
                Ok(())
            }
            "^D" => {
                terminal.input = None;
                if let Kind::Conn(stream) = &terminal.kind {
                    let _ = stream.shutdown(Shutdown::Write);
                }
                Ok(())
            }
            "..." => {
                terminal.skipping = true;
                Ok(())
            }
            _ => self.expect(name, text, line),
        }
    }

    /// Reads the terminal's next line and checks it is the one the lab promises.
    fn expect(&mut self, name: &str, expected: &str, line: usize) -> Result<(), String> {
        let at = self.at(line);
        let ports = self.ports();
        let terminal = self.terminals.get_mut(name).expect("checked by the caller");
        let deadline = Instant::now() + LINE_WAIT;
        loop {
            let actual = match terminal.next_line(deadline) {
                Ok(raw) => normalize(&raw, &ports),
                Err(why) => {
                    return Err(format!(
                        "{at}: terminal `{name}` should show\n    {expected}\nbut {why}.{}",
                        terminal.context()
                    ))
                }
            };
            terminal.seen.push(actual.clone());
            if let Some(words) = pattern::captures(expected, &actual) {
                terminal.skipping = false;
                self.matched.extend(words);
                return Ok(());
            }
            if !terminal.skipping {
                return Err(format!(
                    "{at}: terminal `{name}` should show\n    {expected}\nbut it showed\n    {actual}{}",
                    terminal.context()
                ));
            }
        }
    }

    /// `variable=<placeholder>`: the variable holds what the placeholder last matched.
    fn assign(&mut self, variable: &str, placeholder: &str, line: usize) -> Result<(), String> {
        let value = self.matched.get(placeholder).ok_or_else(|| {
            format!(
                "{}: `{variable}=<{placeholder}>`, but no output line of this group has \
                 shown <{placeholder}> yet",
                self.at(line)
            )
        })?;
        self.variables.insert(variable.to_string(), value.clone());
        Ok(())
    }

    /// `command` with `$name` and `${name}` of each variable the lab set replaced by its
    /// value, as the shell would.
    fn expand_variables(&self, command: &str) -> String {
        let mut command = command.to_string();
        for (variable, value) in &self.variables {
            command = command.replace(&format!("${{{variable}}}"), value);
            let plain = format!("${variable}");
            let mut out = String::new();
            let mut rest = command.as_str();
            while let Some(found) = rest.find(&plain) {
                let end = found + plain.len();
                let whole =
                    !rest[end..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
                out.push_str(&rest[..found]);
                out.push_str(if whole { value } else { &plain });
                rest = &rest[end..];
            }
            out.push_str(rest);
            command = out;
        }
        command
    }

    fn type_line(&mut self, name: &str, typed: &str, line: usize) -> Result<(), String> {
        let at = self.at(line);
        let terminal = self
            .terminals
            .get_mut(name)
            .ok_or_else(|| format!("{at}: a typed line before any command in terminal `{name}`"))?;
        let input = terminal
            .input
            .as_mut()
            .ok_or_else(|| format!("{at}: terminal `{name}` takes no typed input here"))?;
        input
            .write_all(format!("{typed}\n").as_bytes())
            .and_then(|()| input.flush())
            .map_err(|error| format!("{at}: typing into terminal `{name}` failed: {error}"))?;
        if terminal.on_a_terminal {
            terminal.echoes.push_back(typed.to_string());
        }
        if matches!(terminal.kind, Kind::Conn(_)) {
            terminal.unsynced = true;
            if terminal.json.is_none() && !typed.trim().is_empty() {
                terminal.json = Some(typed.trim_start().starts_with('{'));
            }
            if typed.trim().eq_ignore_ascii_case("quit") {
                terminal.quit = true;
            }
        }
        Ok(())
    }

    /// Makes sure every other `nc` terminal's typed lines were handled by the broker.
    fn sync_others(&mut self, current: &str, line: usize) -> Result<(), String> {
        let names: Vec<String> = self
            .terminals
            .iter()
            .filter(|(n, t)| n.as_str() != current && t.unsynced && !t.quit && !t.closed)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.sync(&name, line)?;
        }
        Ok(())
    }

    /// Sends a hidden `PING` and reads up to its `PONG`; lines before it are kept for the
    /// lab's next promises.
    fn sync(&mut self, name: &str, line: usize) -> Result<(), String> {
        self.syncs += 1;
        let token = format!("{SYNC_TOKEN}{}", self.syncs);
        let at = self.at(line);
        let terminal = self.terminals.get_mut(name).expect("a known terminal");
        terminal.unsynced = false;
        let Some(input) = terminal.input.as_mut() else {
            return Ok(());
        };
        let (ping, pong) = if terminal.json == Some(true) {
            (
                format!("{{\"action\": \"ping\", \"token\": \"{token}\"}}\n"),
                format!("{{\"pong\":\"{token}\"}}"),
            )
        } else {
            (format!("PING {token}\n"), format!("PONG {token}"))
        };
        if input.write_all(ping.as_bytes()).is_err() {
            return Ok(()); // the broker closed it; the lab's next promise will say so
        }
        let deadline = Instant::now() + LINE_WAIT;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match terminal.output.recv_timeout(wait) {
                Ok(Output::Line(l)) if l == pong => return Ok(()),
                Ok(Output::Line(l)) => terminal.lookahead.push_back(l),
                Ok(Output::End(why)) => {
                    terminal.ended = Some(why);
                    return Ok(());
                }
                Err(_) => {
                    return Err(format!(
                        "{at}: before this step, terminal `{name}` did not answer a PING within {LINE_WAIT:?}"
                    ))
                }
            }
        }
    }

    /// The terminal is not used again: a command must have ended, and nothing it printed
    /// may be missing from the lab.
    fn finish(&mut self, name: &str, line: usize) -> Result<(), String> {
        let at = self.at(line);
        let ports = self.ports();
        let Some(terminal) = self.terminals.get(name) else {
            return Ok(());
        };
        // A program still running in a multi-terminal step (a subscriber, say) stays up until
        // the step ends, as it would on the student's screen; one on its own, or whose input
        // the student closed, must end.
        let left_running =
            matches!(terminal.kind, Kind::Process(_)) && self.grouped && terminal.input.is_some();
        if terminal.closed || terminal.is_broker || left_running {
            return Ok(());
        }
        let conn_open = matches!(terminal.kind, Kind::Conn(_)) && !terminal.quit;
        if conn_open && terminal.ended.is_none() {
            self.sync(name, line)?;
        }
        let terminal = self.terminals.get_mut(name).expect("a known terminal");
        terminal.input = None;
        if let Kind::Process(child) = &mut terminal.kind {
            let deadline = Instant::now() + FINISH_WAIT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                    _ => {
                        return Err(format!(
                            "{at}: the command in terminal `{name}` did not end within {FINISH_WAIT:?} \
                             (show ^C if the student stops it){}",
                            terminal.context()
                        ))
                    }
                }
            }
        }
        let mut extra = Vec::new();
        if conn_open {
            extra.extend(terminal.lookahead.drain(..));
        } else {
            let deadline = Instant::now() + LINE_WAIT;
            while let Ok(raw) = terminal.next_line(deadline) {
                extra.push(raw);
            }
        }
        // A blank line at the end shows nothing a lab could promise.
        while extra.last().is_some_and(|l| l.trim().is_empty()) {
            extra.pop();
        }
        if !extra.is_empty() && !terminal.skipping {
            let lines: Vec<String> = extra
                .iter()
                .map(|l| format!("    {}", normalize(l, &ports)))
                .collect();
            return Err(format!(
                "{at}: terminal `{name}` showed more than the lab shows (add the lines, or `...`):\n{}",
                lines.join("\n")
            ));
        }
        // Its connection or program stays until the group ends: on the student's screen it
        // is still there, and closing it now would add a line to the broker's log.
        if let Some(done) = self.terminals.remove(name) {
            self.finished.push(done);
        }
        Ok(())
    }

    fn start(&mut self, name: &str, command: &str, line: usize) -> Result<(), String> {
        let at = self.at(line);
        let (command, mut filter) = split_grep(command);
        let parsed = parse_command(command).map_err(|why| format!("{at}: {why}"))?;
        let mut terminal = match parsed {
            Parsed::WriteFile { path, bytes } => {
                let real = self.files.place(&path);
                std::fs::write(&real, bytes)
                    .map_err(|e| format!("{at}: could not write {path}: {e}"))?;
                done()
            }
            Parsed::Remove(path) => {
                let real = self.files.place(&path);
                let _ = std::fs::remove_dir_all(&real);
                let _ = std::fs::remove_file(&real);
                done()
            }
            Parsed::KillNewestBroker => {
                let newest = self.brokers.last().cloned();
                let broker = newest
                    .as_ref()
                    .and_then(|name| self.terminals.get_mut(name))
                    .ok_or_else(|| format!("{at}: no broker runs in this group to kill"))?;
                if let Kind::Process(child) = &mut broker.kind {
                    // SIGKILL, as kill -9: no cleanup, no flushing.
                    let _ = child.kill();
                    let _ = child.wait();
                }
                done()
            }
            Parsed::Chmod { mode, path } => {
                use std::os::unix::fs::PermissionsExt;
                let mode = u32::from_str_radix(&mode, 8)
                    .map_err(|_| format!("{at}: chmod takes an octal mode here, not {mode}"))?;
                std::fs::set_permissions(
                    self.files.place(&path),
                    std::fs::Permissions::from_mode(mode),
                )
                .map_err(|e| format!("{at}: could not chmod {path}: {e}"))?;
                done()
            }
            Parsed::Nc { port } => {
                let port = self.need_port(&at, port)?;
                let stream = TcpStream::connect(("127.0.0.1", port))
                    .map_err(|e| format!("{at}: nc could not connect: {e}"))?;
                let reader = stream.try_clone().map_err(|e| e.to_string())?;
                let writer = stream.try_clone().map_err(|e| e.to_string())?;
                let output = pump(reader, false);
                Terminal::new(Kind::Conn(stream), Some(Box::new(writer)), output)
            }
            Parsed::Pipe { steps, port } => {
                let port = self.need_port(&at, port)?;
                let (tx, rx) = mpsc::channel();
                thread::spawn(move || play_pipe(port, &steps, &tx));
                Terminal::new(Kind::Pipe, None, rx)
            }
            Parsed::Datagrams(steps) => {
                let port = self
                    .udp_port
                    .ok_or_else(|| format!("{at}: no broker takes datagrams yet in this group"))?;
                let (tx, rx) = mpsc::channel();
                send_datagrams(port, &steps, &tx);
                Terminal::new(Kind::Pipe, None, rx)
            }
            Parsed::Cargo {
                env,
                bin,
                args,
                input,
            } => {
                let mut terminal = self.spawn_binary(name, &at, &env, &bin, args)?;
                if let Some(steps) = input {
                    // What `printf ... |` writes, with its pauses, then the end of the
                    // input, from a thread of its own: the program may read slowly.
                    let mut stdin = terminal.input.take().expect("a program's input");
                    thread::spawn(move || {
                        for step in steps {
                            match step {
                                Step::Send(bytes) => {
                                    if stdin
                                        .write_all(&bytes)
                                        .and_then(|()| stdin.flush())
                                        .is_err()
                                    {
                                        return;
                                    }
                                }
                                Step::Sleep(pause) => thread::sleep(pause),
                            }
                        }
                    });
                }
                terminal
            }
            Parsed::Curl(args) => {
                let args: Vec<String> = args.iter().map(|arg| self.to_real(arg)).collect();
                if args.iter().any(|arg| self.asks_a_monitor(arg)) {
                    // NATS's view of a cluster settles a moment after the events that change
                    // it; a student asks again. The replay asks again until the answer is
                    // the one the lab shows, for at most as long as it waits for a line.
                    let lines = self.ask_until_shown(&args, filter.take().as_ref());
                    let (tx, rx) = mpsc::channel();
                    for line in lines {
                        let _ = tx.send(Output::Line(line));
                    }
                    let _ = tx.send(Output::End("curl ended".to_string()));
                    Terminal::new(Kind::Pipe, None, rx)
                } else {
                    let mut child = curl(&args)
                        .spawn()
                        .map_err(|e| format!("{at}: could not start curl: {e}"))?;
                    let output = pump(child.stdout.take().expect("piped"), false);
                    Terminal::new(Kind::Process(child), None, output)
                }
            }
            Parsed::NatsServer(args) => {
                let args = self.nats_server_args(&args);
                let exe = crate::common::find_program("nats-server")
                    .ok_or_else(|| format!("{at}: nats-server is not installed"))?;
                let mut child = Command::new("sh")
                    .arg("-c")
                    .arg("exec \"$0\" \"$@\" 2>&1")
                    .arg(exe)
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| format!("{at}: could not start nats-server: {e}"))?;
                let output = pump(child.stdout.take().expect("piped"), false);
                let mut terminal = Terminal::new(Kind::Process(child), None, output);
                // A server: it runs until the group ends, or the lab stops it (^C).
                terminal.is_broker = true;
                terminal
            }
        };
        if let Some(filter) = filter {
            let (_, none) = mpsc::channel();
            let output = std::mem::replace(&mut terminal.output, none);
            terminal.output = filter.apply(output);
        }
        self.terminals.insert(name.to_string(), terminal);
        Ok(())
    }

    /// The real port for the lab's `lab` port: the group's broker's (9000), its web port
    /// (8080), or another program's the lab started.
    fn need_port(&self, at: &str, lab: u16) -> Result<u16, String> {
        self.real_port(lab).ok_or_else(|| match lab {
            LAB_WEB_PORT => format!("{at}: no broker with the web is running yet in this group"),
            LAB_PORT => format!("{at}: no broker is running yet in this group"),
            _ => format!("{at}: nothing listens on the lab's port {lab} yet in this group"),
        })
    }

    /// nats-server's arguments with each port the lab gives (`-p`, `-m`, `--cluster`,
    /// `--routes`) replaced by a free one standing for it. The monitoring port is noted
    /// for [`Group::ask_until_shown`].
    fn nats_server_args(&mut self, args: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            let value = args.get(i + 1);
            match (arg.as_str(), value) {
                ("-p" | "-m", Some(value)) if value.parse::<u16>().is_ok() => {
                    let real = self.claim_port(value.parse().expect("checked"));
                    if arg == "-m" {
                        self.monitors.push(real);
                    }
                    out.extend([arg.clone(), real.to_string()]);
                    i += 2;
                }
                ("--cluster" | "--routes", Some(value)) => {
                    for url in value.split(',') {
                        if let Some(port) = url.rsplit(':').next().and_then(|p| p.parse().ok()) {
                            self.claim_port(port);
                        }
                    }
                    out.extend([arg.clone(), self.to_real(value)]);
                    i += 2;
                }
                _ => {
                    out.push(arg.clone());
                    i += 1;
                }
            }
        }
        out
    }

    /// Whether `arg` is a URL of a nats-server's monitoring port.
    fn asks_a_monitor(&self, arg: &str) -> bool {
        self.monitors
            .iter()
            .any(|port| arg.contains(&format!("127.0.0.1:{port}/")))
    }

    /// Runs curl with `args` until its output (through `filter`) is what the lab shows
    /// next, or [`LINE_WAIT`] has passed; returns the last output, for the lab's lines to
    /// be checked against as usual.
    fn ask_until_shown(&self, args: &[String], filter: Option<&Filter>) -> Vec<String> {
        let ports = self.ports();
        let deadline = Instant::now() + LINE_WAIT;
        loop {
            let output = curl(args)
                .stdout(Stdio::piped())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let mut lines: Vec<String> = output.lines().map(str::to_string).collect();
            if let Some(filter) = filter {
                lines = filter.keep(&lines);
            }
            let shown = lines.len() == self.shown_next.len()
                && lines
                    .iter()
                    .zip(&self.shown_next)
                    .all(|(line, promised)| pattern::matches(promised, &normalize(line, &ports)));
            if shown || Instant::now() >= deadline {
                return lines;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn_binary(
        &mut self,
        name: &str,
        at: &str,
        env: &[(String, String)],
        bin: &str,
        mut args: Vec<String>,
    ) -> Result<Terminal, String> {
        let exe = binary(bin).ok_or_else(|| {
            format!("{at}: the lab runs `{bin}`, but this crate has no binary of that name")
        })?;
        let is_broker = bin == "broker" || bin == "classroom";
        // The port the lab gives a broker (9000 unless `--port`), which its real one stands
        // for; the ports of clients' `--port` and of `--nats` URLs, the real ones.
        let lab_port = args
            .windows(2)
            .find(|pair| pair[0] == "--port")
            .and_then(|pair| pair[1].parse::<u16>().ok())
            .unwrap_or(LAB_PORT);
        // A data directory is the broker's to make: only where it goes is the replay's.
        for i in 1..args.len() {
            if args[i - 1] == "--data-dir" {
                args[i] = self.files.place(&args[i]).display().to_string();
            }
        }
        for arg in args.iter_mut() {
            if arg.starts_with("nats://") {
                *arg = self.to_real(arg);
            }
            if let Some(real) = self.files.written(arg) {
                *arg = real;
            }
        }
        let udp = args.iter().any(|arg| arg == "--udp");
        let port = if is_broker {
            0
        } else if bin == "bench" {
            self.port.unwrap_or(0)
        } else if udp {
            self.udp_port
                .ok_or_else(|| format!("{at}: no broker takes datagrams yet in this group"))?
        } else {
            self.need_port(at, lab_port)?
        };
        let mut has_port = false;
        for i in 0..args.len() {
            if args[i] == "--udp-port" && i + 1 < args.len() {
                args[i + 1] = "0".to_string();
            }
            if args[i] == "--port" && i + 1 < args.len() {
                args[i + 1] = port.to_string();
                has_port = true;
            }
            if args[i] == "--addr" && i + 1 < args.len() {
                args[i + 1] = args[i + 1].replace(&format!(":{LAB_PORT}"), &format!(":{port}"));
            }
        }
        if !has_port
            && matches!(
                bin,
                "broker" | "classroom" | "publisher" | "subscriber" | "troublemaker"
            )
        {
            args.splice(0..0, ["--port".to_string(), port.to_string()]);
        }
        if bin == "broker" {
            // The web too gets a free port, never the lab's 8080 (the classroom program
            // serves no web).
            let web_given = args.iter().any(|a| a == "--no-http");
            for i in 0..args.len() {
                if args[i] == "--http-port" && i + 1 < args.len() {
                    args[i + 1] = "0".to_string();
                }
            }
            if !web_given && !args.iter().any(|a| a == "--http-port") {
                args.extend(["--http-port".to_string(), "0".to_string()]);
            }
        }
        // A program the student types into has the terminal for its input and output
        // (some programs greet a person, not a pipe): `script` gives it one.
        let on_a_terminal = self.typed_into;
        let mut command = if on_a_terminal {
            let line: Vec<String> = std::iter::once(exe.to_string())
                .chain(args.iter().cloned())
                .map(|word| shell_quoted(&word))
                .collect();
            let mut command = Command::new("script");
            command.args(["-qec", &format!("exec {}", line.join(" ")), "/dev/null"]);
            command
        } else {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg("exec \"$0\" \"$@\" 2>&1")
                .arg(exe)
                .args(&args);
            command
        };
        let mut child = command
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{at}: could not start {bin}: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let output = pump(child.stdout.take().expect("piped"), true);
        let mut terminal = Terminal::new(Kind::Process(child), Some(Box::new(stdin)), output);
        terminal.on_a_terminal = on_a_terminal;
        if is_broker {
            self.brokers.retain(|b| b != name);
            self.brokers.push(name.to_string());
            terminal.is_broker = true;
            // The line that says where it listens; log lines may come before it (what a
            // broker found in its `--data-dir`). All of them stay for the lab to show.
            let deadline = Instant::now() + LINE_WAIT;
            let mut before = Vec::new();
            let first = loop {
                let line = terminal.next_line(deadline).map_err(|why| {
                    format!("{at}: the broker never said where it listens: {why}")
                })?;
                if line.contains(" listening on ") {
                    break line;
                }
                before.push(line);
            };
            let port = first
                .split_once("listening on ")
                .and_then(|(_, rest)| rest.split(';').next())
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|port| port.parse().ok())
                .ok_or_else(|| {
                    format!("{at}: cannot read the port from the broker's first line: {first}")
                })?;
            if lab_port == LAB_PORT {
                self.port = Some(port);
            } else {
                self.more_ports.push((lab_port, port));
            }
            self.web_port = first
                .split_once("live view: open http://")
                .and_then(|(_, rest)| rest.split('/').next())
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|port| port.parse().ok());
            self.udp_port = first
                .split_once("UDP on ")
                .and_then(|(_, rest)| rest.split(';').next())
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|port| port.parse().ok());
            terminal.lookahead.extend(before);
            terminal.lookahead.push_back(first);
        }
        Ok(terminal)
    }
}

fn terminal_name(block: &Block) -> String {
    block
        .terminal
        .clone()
        .unwrap_or_else(|| format!("block at line {}", block.line))
}

/// The binaries the test suite built, by name; `None` for one this crate does not have.
fn binary(name: &str) -> Option<&'static str> {
    match name {
        "broker" => option_env!("CARGO_BIN_EXE_broker"),
        "publisher" => option_env!("CARGO_BIN_EXE_publisher"),
        "subscriber" => option_env!("CARGO_BIN_EXE_subscriber"),
        "troublemaker" => option_env!("CARGO_BIN_EXE_troublemaker"),
        "bench" => option_env!("CARGO_BIN_EXE_bench"),
        "classroom" => option_env!("CARGO_BIN_EXE_classroom"),
        "labkit" => option_env!("CARGO_BIN_EXE_labkit"),
        _ => None,
    }
}

/// The real ports of a group's broker: the line protocol's, the web's and the UDP port;
/// and the others the lab names, `(lab, real)`.
#[derive(Clone, Default)]
struct Ports {
    line: Option<u16>,
    web: Option<u16>,
    udp: Option<u16>,
    more: Vec<(u16, u16)>,
    /// The files and folders the lab named, and where they really are: `(lab, real)`.
    paths: Vec<(String, String)>,
}

/// Shows the real ports as the lab's 9000 (the line protocol), 8080 (the web) and 9999
/// (UDP), and drops the `--port 9000` hint the broker adds when it is not on its default
/// port.
fn normalize(line: &str, ports: &Ports) -> String {
    let mut line = line.to_string();
    for (lab, real) in &ports.paths {
        line = line.replace(real.as_str(), lab);
    }
    let more = ports.more.iter().map(|&(lab, real)| (Some(real), lab));
    for (real, lab) in [(ports.web, LAB_WEB_PORT), (ports.udp, LAB_UDP_PORT)]
        .into_iter()
        .chain(more)
    {
        if let Some(real) = real.filter(|&p| p != lab) {
            line = replace_number(&line, real, lab);
        }
    }
    let Some(port) = ports.line.filter(|&p| p != LAB_PORT) else {
        return line;
    };
    replace_number(&line, port, LAB_PORT).replace(" --port 9000", "")
}

/// `line` with every whole number `from` (not part of a longer number) written as `to`.
fn replace_number(line: &str, from: u16, to: u16) -> String {
    let (from, to) = (from.to_string(), to.to_string());
    let mut out = String::new();
    let mut rest = line;
    while let Some(found) = rest.find(&from) {
        let before = rest[..found].chars().next_back();
        let after = rest[found + from.len()..].chars().next();
        out.push_str(&rest[..found]);
        let whole_number = !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit());
        out.push_str(if whole_number { &to } else { &from });
        rest = &rest[found + from.len()..];
    }
    out.push_str(rest);
    out
}

/// What `printf ... | nc -u -w1 127.0.0.1 9999` does: one datagram per write, and nothing
/// shown (nc sends, waits its second and exits).
fn send_datagrams(port: u16, steps: &[Step], tx: &Sender<Output>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    for step in steps {
        match step {
            Step::Send(bytes) => {
                let _ = socket.send_to(bytes, ("127.0.0.1", port));
            }
            Step::Sleep(pause) => thread::sleep(*pause),
        }
    }
    let _ = tx.send(Output::End("nc sent its datagrams".to_string()));
}

/// Reads lines from `source` on a thread of its own, until end of file or an error;
/// `hide_sync` drops the lines a broker logs about the replay's hidden PINGs.
fn pump(source: impl Read + Send + 'static, hide_sync: bool) -> Receiver<Output> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(source);
        loop {
            let mut bytes = Vec::new();
            let end = match reader.read_until(b'\n', &mut bytes) {
                Ok(0) => Some("the output ended".to_string()),
                Ok(_) => None,
                Err(error) => Some(format!("reading failed: {error}")),
            };
            if let Some(why) = end {
                let _ = tx.send(Output::End(why));
                return;
            }
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim_end_matches(['\n', '\r']).to_string();
            // The replay's own hidden PINGs show in a broker's trace and debug log; the
            // student's screen has no such lines.
            if hide_sync && text.contains(SYNC_TOKEN) {
                continue;
            }
            if tx.send(Output::Line(text)).is_err() {
                return;
            }
        }
    });
    rx
}

/// What `printf ... | nc` does: write the bytes (with the pauses), then read until the
/// broker closes. Like nc, it does not half-close when its input ends.
fn play_pipe(port: u16, steps: &[Step], tx: &Sender<Output>) {
    let mut stream = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(stream) => stream,
        Err(error) => {
            let _ = tx.send(Output::End(format!("nc could not connect: {error}")));
            return;
        }
    };
    for step in steps {
        match step {
            Step::Send(bytes) => {
                if let Err(error) = stream.write_all(bytes) {
                    let _ = tx.send(Output::End(format!("nc could not write: {error}")));
                    return;
                }
            }
            Step::Sleep(pause) => thread::sleep(*pause),
        }
    }
    let _ = stream.set_read_timeout(Some(FINISH_WAIT));
    let output = pump(stream, false);
    while let Ok(item) = output.recv() {
        let end = matches!(item, Output::End(_));
        if tx.send(item).is_err() || end {
            return;
        }
    }
}

enum Step {
    Send(Vec<u8>),
    Sleep(Duration),
}

enum Parsed {
    /// `nc 127.0.0.1 PORT`, a port as the lab gives it (9000, 8080 for the web, ...).
    Nc { port: u16 },
    /// `printf ... | nc 127.0.0.1 PORT`.
    Pipe { steps: Vec<Step>, port: u16 },
    /// `nats-server ARGS`: a real one, on free ports standing for the lab's.
    NatsServer(Vec<String>),
    /// `printf '...' > PATH`: a file the lab writes (into the group's own folder).
    WriteFile { path: String, bytes: Vec<u8> },
    /// `chmod MODE PATH`, of a file the lab wrote.
    Chmod { mode: String, path: String },
    /// `rm -rf PATH`, in the group's own folder.
    Remove(String),
    /// `kill -9 $(pgrep -u "$USER" -nx broker)`: the newest broker the student started,
    /// the group's, killed with SIGKILL.
    KillNewestBroker,
    /// `printf ... | nc -u -w1 127.0.0.1 9999`: datagrams to the UDP port.
    Datagrams(Vec<Step>),
    /// `curl ARGS`, against the web port.
    Curl(Vec<String>),
    /// `[VAR=value] cargo run --bin NAME -- ARGS`, with what a `printf ... |` before it
    /// writes to its input (`None`: the student types into it).
    Cargo {
        env: Vec<(String, String)>,
        bin: String,
        args: Vec<String>,
        input: Option<Vec<Step>>,
    },
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Op(char),
}

/// The commands a replayed block may use; anything else is an error that tells the author
/// to leave the block unmarked.
fn parse_command(command: &str) -> Result<Parsed, String> {
    if command.trim() == format!("kill -9 {NEWEST_BROKER}") {
        return Ok(Parsed::KillNewestBroker);
    }
    let tokens = tokenize(command)?;
    let unsupported = || {
        format!(
            "cannot replay `{command}`: replayed blocks may use `nc 127.0.0.1 9000`, \
             `printf '...' | nc ...`, `(printf ...; sleep N; ...) | nc ...`, `printf '...' | \
             nc -u -w1 127.0.0.1 9999` (datagrams), `curl ...` (port 8080 is the web) and \
             `[printf '...' |] [VAR=value] cargo run [--release] --bin NAME [-- ARGS]`; leave \
             other blocks unmarked"
        )
    };
    if let Some(bar) = tokens.iter().position(|t| *t == Token::Op('|')) {
        let (producer, consumer) = (&tokens[..bar], &tokens[bar + 1..]);
        let udp = is_nc_udp(consumer);
        let port = nc_port(consumer);
        let program = if port.is_none() && !udp {
            Some(
                parse_cargo(&words_of(consumer).ok_or_else(unsupported)?)
                    .ok_or_else(unsupported)?,
            )
        } else {
            None
        };
        let inner = match producer {
            [Token::Op('('), inner @ .., Token::Op(')')] => inner,
            simple => simple,
        };
        let mut steps = Vec::new();
        for part in inner.split(|t| *t == Token::Op(';')) {
            let words: Vec<&str> = part
                .iter()
                .map(|t| match t {
                    Token::Word(w) => Ok(w.as_str()),
                    Token::Op(_) => Err(unsupported()),
                })
                .collect::<Result<_, _>>()?;
            match words.as_slice() {
                [] => {}
                ["printf", format] => steps.push(Step::Send(printf(format))),
                ["echo", words @ ..] => {
                    steps.push(Step::Send(format!("{}\n", words.join(" ")).into_bytes()))
                }
                ["sleep", seconds] => {
                    let seconds: f64 = seconds.parse().map_err(|_| unsupported())?;
                    steps.push(Step::Sleep(Duration::from_secs_f64(seconds)));
                }
                _ => return Err(unsupported()),
            }
        }
        if let Some(Parsed::Cargo { env, bin, args, .. }) = program {
            return Ok(Parsed::Cargo {
                env,
                bin,
                args,
                input: Some(steps),
            });
        }
        return Ok(if udp {
            Parsed::Datagrams(steps)
        } else {
            Parsed::Pipe {
                steps,
                port: port.expect("not UDP: a TCP port"),
            }
        });
    }
    if let Some(port) = nc_port(&tokens) {
        return Ok(Parsed::Nc { port });
    }
    let words = words_of(&tokens).ok_or_else(unsupported)?;
    match words.as_slice() {
        [printf, format, to, path] if printf == "printf" && to == ">" => {
            return Ok(Parsed::WriteFile {
                path: path.clone(),
                bytes: self::printf(format),
            })
        }
        [rm, rf, path] if rm == "rm" && rf == "-rf" => return Ok(Parsed::Remove(path.clone())),
        [chmod, mode, path] if chmod == "chmod" => {
            return Ok(Parsed::Chmod {
                mode: mode.clone(),
                path: path.clone(),
            })
        }
        [curl, args @ ..] if curl == "curl" => return Ok(Parsed::Curl(args.to_vec())),
        [nats, args @ ..] if nats == "nats-server" => return Ok(Parsed::NatsServer(args.to_vec())),
        _ => {}
    }
    parse_cargo(&words).ok_or_else(unsupported)
}

/// `name=<placeholder>`, a shell variable set to a value the lab showed: (name,
/// placeholder).
fn shell_assignment(command: &str) -> Option<(&str, &str)> {
    let (name, value) = command.trim().split_once('=')?;
    let placeholder = value.strip_prefix('<')?.strip_suffix('>')?;
    let is_word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    (is_word(name) && is_word(placeholder)).then_some((name, placeholder))
}

/// The tokens as plain words; `None` if there is an operator among them.
fn words_of(tokens: &[Token]) -> Option<Vec<String>> {
    tokens
        .iter()
        .map(|token| match token {
            Token::Word(w) => Some(w.clone()),
            Token::Op(_) => None,
        })
        .collect()
}

/// `[VAR=value] cargo run [--release] --bin NAME [-- ARGS]`, its input not given yet.
fn parse_cargo(words: &[String]) -> Option<Parsed> {
    let mut env = Vec::new();
    let mut rest = words;
    while let Some((first, tail)) = rest.split_first() {
        match first.split_once('=') {
            Some((key, value)) if key.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                env.push((key.to_string(), value.to_string()));
                rest = tail;
            }
            _ => break,
        }
    }
    let [cargo, run, tail @ ..] = rest else {
        return None;
    };
    if cargo != "cargo" || run != "run" {
        return None;
    }
    // Like cargo: its own flags first; `--` or the first plain word starts the program's.
    let mut bin = None;
    let mut i = 0;
    while i < tail.len() {
        match tail[i].as_str() {
            "--release" | "-q" | "--quiet" => i += 1,
            "--bin" if i + 1 < tail.len() => {
                bin = Some(tail[i + 1].clone());
                i += 2;
            }
            "--" => {
                i += 1;
                break;
            }
            word if !word.starts_with('-') => break,
            _ => return None,
        }
    }
    Some(Parsed::Cargo {
        env,
        bin: bin?,
        args: tail[i..].to_vec(),
        input: None,
    })
}

/// `nc -u -w1 127.0.0.1 9999`: datagrams, sent and forgotten. (`-w1`: nc waits for its
/// input, then a second for an answer that never comes. With `-w0` it polls its input
/// without waiting and may exit before `printf` has written anything.)
fn is_nc_udp(tokens: &[Token]) -> bool {
    matches!(tokens, [Token::Word(nc), Token::Word(u), Token::Word(w), Token::Word(host), Token::Word(port)]
        if nc == "nc" && u == "-u" && w == "-w1" && (host == "127.0.0.1" || host == "localhost")
            && port.parse::<u16>().is_ok())
}

/// The port of `nc 127.0.0.1 PORT`, if that is what the tokens say.
fn nc_port(tokens: &[Token]) -> Option<u16> {
    match tokens {
        [Token::Word(nc), Token::Word(host), Token::Word(port)]
            if nc == "nc" && (host == "127.0.0.1" || host == "localhost") =>
        {
            port.parse().ok()
        }
        _ => None,
    }
}

/// The output lines a block shows after a command: up to the next command, typed line or
/// key.
fn shown_after(lines: &[(usize, String)]) -> Vec<String> {
    lines
        .iter()
        .map(|(_, text)| text.trim_end())
        .take_while(|text| {
            !(text.starts_with("$ ") || text.starts_with('>') || matches!(*text, "^C" | "^D"))
        })
        .filter(|text| !text.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// A terminal whose command is done and showed nothing.
fn done() -> Terminal {
    let (tx, rx) = mpsc::channel();
    let _ = tx.send(Output::End("the command ended".to_string()));
    Terminal::new(Kind::Pipe, None, rx)
}

/// The files a group's lab writes, kept in a folder of the group's own so that nothing
/// lands in the repository (or another replay's way), removed when the group ends.
#[derive(Default)]
struct Files {
    dir: Option<std::path::PathBuf>,
    /// The lab's paths, and where each really is.
    written: Vec<(String, std::path::PathBuf)>,
}

impl Files {
    /// Where the lab's `path` really is: in the group's folder, made on first use.
    fn place(&mut self, path: &str) -> std::path::PathBuf {
        if let Some((_, real)) = self.written.iter().find(|(p, _)| p == path) {
            return real.clone();
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = self
            .dir
            .get_or_insert_with(|| {
                std::env::temp_dir().join(format!(
                    "pubsub-lab-replay-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ))
            })
            .clone();
        let real = dir.join(path.trim_start_matches('/'));
        if let Some(parent) = real.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        self.written.push((path.to_string(), real.clone()));
        real
    }

    /// Where a file the lab wrote at `path` really is, if it wrote one there.
    fn written(&self, path: &str) -> Option<String> {
        self.written
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, real)| real.display().to_string())
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Whether the lines after a command type into it before the next command.
fn typed_after(lines: &[(usize, String)]) -> bool {
    lines
        .iter()
        .map(|(_, text)| text.trim_end())
        .take_while(|text| !text.starts_with("$ "))
        .any(|text| text.starts_with("> "))
}

/// `word` quoted for `sh`.
fn shell_quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// A port that was free a moment ago, for a program the lab starts on a fixed port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `curl ARGS`, its errors shown with its output as on a terminal.
fn curl(args: &[String]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("exec curl \"$@\" 2>&1")
        .arg("curl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// `... | grep [-AN] WORD` at the end of a command: the lines holding `word`, each with
/// the `after` lines that follow it; `grep -c WORD`: how many lines hold it.
struct Filter {
    word: String,
    after: usize,
    count: bool,
}

impl Filter {
    fn keep(&self, lines: &[String]) -> Vec<String> {
        if self.count {
            let count = lines.iter().filter(|l| l.contains(&self.word)).count();
            return vec![count.to_string()];
        }
        let mut kept = Vec::new();
        let mut owed = 0;
        for line in lines {
            if line.contains(&self.word) {
                owed = self.after;
                kept.push(line.clone());
            } else if owed > 0 {
                owed -= 1;
                kept.push(line.clone());
            }
        }
        kept
    }

    /// The same filter on output as it comes.
    fn apply(self, source: Receiver<Output>) -> Receiver<Output> {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut owed = 0;
            let mut count = 0;
            for item in source {
                if self.count {
                    match &item {
                        Output::Line(line) if line.contains(&self.word) => count += 1,
                        Output::Line(_) => {}
                        Output::End(_) => {
                            let _ = tx.send(Output::Line(count.to_string()));
                            let _ = tx.send(item);
                            return;
                        }
                    }
                    continue;
                }
                let pass = match &item {
                    Output::Line(line) if line.contains(&self.word) => {
                        owed = self.after;
                        true
                    }
                    Output::Line(_) if owed > 0 => {
                        owed -= 1;
                        true
                    }
                    Output::Line(_) => false,
                    Output::End(_) => true,
                };
                if pass && tx.send(item).is_err() {
                    return;
                }
            }
        });
        rx
    }
}

/// The command before a last `| grep [-AN] WORD` (or `grep -c WORD`), and that filter.
fn split_grep(command: &str) -> (&str, Option<Filter>) {
    let Some((before, grep)) = command.rsplit_once(" | grep ") else {
        return (command, None);
    };
    let words: Vec<&str> = grep.split_whitespace().collect();
    let filter = match words.as_slice() {
        [word] => Filter {
            word: word.to_string(),
            after: 0,
            count: false,
        },
        ["-c", word] => Filter {
            word: word.to_string(),
            after: 0,
            count: true,
        },
        [a_n, word] if a_n.starts_with("-A") => match a_n[2..].parse() {
            Ok(after) => Filter {
                word: word.to_string(),
                after,
                count: false,
            },
            Err(_) => return (command, None),
        },
        _ => return (command, None),
    };
    (before, Some(filter))
}

/// Splits a shell command into words and the operators `| ( ) ;`, with '...', "..." and
/// backslash quoting; `#` starts a comment.
fn tokenize(command: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed ' in `{command}`")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"' | '\\' | '$')) => {
                            w.push(chars.next().expect("peeked"))
                        }
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed \" in `{command}`")),
                    }
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    word.get_or_insert_with(String::new).push(next);
                }
            }
            '#' if word.is_none() => break,
            '|' | '(' | ')' | ';' => {
                tokens.extend(word.take().map(Token::Word));
                tokens.push(Token::Op(c));
            }
            c if c.is_whitespace() => tokens.extend(word.take().map(Token::Word)),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    tokens.extend(word.map(Token::Word));
    Ok(tokens)
}

/// The bytes `printf FORMAT` writes, for the escapes labs use: `\n \r \t \\ %%`.
fn printf(format: &str) -> Vec<u8> {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\' || c == '%') {
            ('\\', true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            ('%', true) => {
                chars.next();
                out.push('%');
            }
            (c, _) => out.push(c),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_commands_split_like_sh_splits_them() {
        let tokens = tokenize("(printf 'PI'; sleep 1) | nc 127.0.0.1 9000  # comment").unwrap();
        assert_eq!(tokens.len(), 11, "{tokens:?}");
        assert_eq!(printf(r"PING a\r\nb%%"), b"PING a\r\nb%");
        assert_eq!(
            normalize(
                "on 127.0.0.1:40001; UDP on 127.0.0.1:40002; nc 127.0.0.1 40001 (x --port 40001); open http://127.0.0.1:40003/",
                &Ports {
                    line: Some(40001),
                    web: Some(40003),
                    udp: Some(40002),
                    more: Vec::new(),
                    paths: Vec::new(),
                }
            ),
            "on 127.0.0.1:9000; UDP on 127.0.0.1:9999; nc 127.0.0.1 9000 (x); open http://127.0.0.1:8080/"
        );
    }
}
