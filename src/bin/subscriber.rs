//! The subscriber: receives messages from the broker and prints every line it gets.
//!
//! ```text
//! cargo run --bin subscriber sub1                  # then type:  subscribe weather
//! cargo run --bin subscriber sub1 --topic weather --topic news
//! cargo run --bin subscriber sub1 --topic weather --count 3     # exit after 3 messages
//! cargo run --bin subscriber sub1 --topic weather --reconnect   # survive broker restarts
//! cargo run --bin subscriber sub1 --udp --topic udp             # datagrams, from --udp-port
//! cargo run --bin subscriber sub1 --durable --topic orders      # nothing lost while away
//! ```
//!
//! With `--udp`, the subscriber sends its `SUBSCRIBE`s as datagrams to the broker's UDP
//! port (9999 unless `--port` says otherwise) and receives one datagram per delivery. A
//! UDP subscription is a lease that ends unless renewed, so it sends them again every
//! `--renew` (20 s, a third of the broker's default lease): that also subscribes it again
//! to a broker that restarted. Typed commands are not read in this mode.
//!
//! With `--durable`, each `--topic` is a durable subscription (`DURABLE <topic> <id>`):
//! the broker keeps what is published while this subscriber is away, and sends it when it
//! comes back. Each `MESSAGE` is acknowledged (`ACK <seq>`) right after it is printed, so
//! killing the subscriber at any moment loses nothing: at worst the one message printed
//! and not yet acknowledged is printed again, with the same seq, after a restart.
//!
//! Each line from the broker is printed as `>> <line>`; on a terminal, control characters
//! in it are shown escaped (`\u{1b}`) unless `--raw` is given. Commands typed on stdin:
//! `subscribe <topic>`, `unsubscribe <topic>`, `topics`, `stats`, `ping`,
//! `verbose on|off`, `help`, `quit`.
//!
//! Two threads: the main thread reads the socket and prints; a second one reads stdin and
//! sends commands. They share the socket's write half and the set of topics (which a
//! reconnect subscribes to again).

use std::collections::BTreeSet;
use std::io::{self, BufRead, IsTerminal, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use parking_lot::Mutex;
use pubsub_lab::cli::DurationArg;
use pubsub_lab::cli::{init_logging, is_broken_pipe, AuthArgs};
use pubsub_lab::client::{Incoming, UdpClient};
use pubsub_lab::config::{format_duration, DEFAULT_PORT, DEFAULT_UDP_PORT};
use pubsub_lab::protocol::Command;
use pubsub_lab::text::escaped;
use pubsub_lab::{Client, Error};

/// The first wait before reconnecting; it doubles after each failed try, up to the cap.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between reconnection tries.
const MAX_RETRY: Duration = Duration::from_secs(8);
/// How often the reader wakes up while no line arrives (there is no work to do then; a
/// finite wait just keeps the loop simple to stop).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

const USAGE: &str =
    "commands: subscribe <topic> | unsubscribe <topic> | topics [filter] | stats | ping | verbose on|off | help | quit";

/// Subscribes to topics on a pubsub-lab broker and prints what arrives.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Your subscriber id, sent with each SUBSCRIBE.
    id: String,
    /// Subscribe to this topic at start (repeat the flag for several).
    #[arg(long)]
    topic: Vec<String>,
    /// Make each --topic a durable subscription: what is published while this subscriber
    /// is away is kept for it; each MESSAGE is acknowledged once printed.
    #[arg(long)]
    durable: bool,
    /// Exit after this many deliveries.
    #[arg(long)]
    count: Option<u64>,
    /// When the broker goes away, keep trying to reconnect, then subscribe again.
    #[arg(long)]
    reconnect: bool,
    /// Print messages exactly as they arrive, even on a terminal. By default, on a
    /// terminal, control characters in messages (escape sequences that colour or erase
    /// text) are shown as escapes like \u{1b} instead of acting on the terminal.
    #[arg(long)]
    raw: bool,
    /// The broker's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port (9000, or 9999 with --udp).
    #[arg(long)]
    port: Option<u16>,
    /// Subscribe over UDP: datagrams to and from the broker's UDP port.
    #[arg(long)]
    udp: bool,
    /// With --udp: send the subscriptions again this often, renewing their lease.
    #[arg(long, default_value_t = DurationArg(RENEW_EVERY), requires = "udp")]
    renew: DurationArg,
    #[command(flatten)]
    auth: AuthArgs,
}

/// Default for `--renew`: a third of the broker's default `--udp-lease`, so that two lost
/// renewals in a row still do not end the subscription.
const RENEW_EVERY: Duration = Duration::from_secs(20);

/// What the stdin thread and the socket thread share.
struct Shared {
    id: String,
    /// `--durable`.
    durable: bool,
    /// The write half of the current connection; replaced on reconnect.
    writer: Mutex<Option<TcpStream>>,
    /// The topics we want, subscribed again after a reconnect.
    topics: Mutex<BTreeSet<String>>,
    /// When the last `ping` was sent, to print the round trip when its PONG arrives.
    ping_sent: Mutex<Option<Instant>>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log = init_logging("warn", false);
    let outcome = run(&args);
    // The log's last records come before what is said about the outcome.
    drop(log);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("subscriber {}: {message}", args.id);
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.udp {
        return run_udp(args);
    }
    let addr = (args.host.as_str(), args.port.unwrap_or(DEFAULT_PORT));
    let shared = Arc::new(Shared {
        id: args.id.clone(),
        durable: args.durable,
        writer: Mutex::new(None),
        topics: Mutex::new(args.topic.iter().cloned().collect()),
        ping_sent: Mutex::new(None),
    });
    let mut backoff = Backoff::default();
    let mut client = connect(args, &shared, Greeting::First, &mut backoff)?;
    let stdin_shared = Arc::clone(&shared);
    thread::Builder::new()
        .name("stdin".to_string())
        .spawn(move || read_commands(&stdin_shared))
        .map_err(|e| e.to_string())?;

    // A person reads a terminal: nothing a publisher sends may act on it.
    let escape = !args.raw && io::stdout().is_terminal();
    let mut received = 0;
    loop {
        let mut connection = Connection::default();
        match receive(
            &shared,
            &mut client,
            args.count,
            &mut received,
            &mut connection,
            escape,
        ) {
            Ok(()) => return Ok(()),
            Err(Error::Closed) => {
                *shared.writer.lock() = None;
                let ended = why_closed(addr, &connection);
                if !args.reconnect {
                    return Err(format!("{ended}; run with --reconnect to keep trying"));
                }
                match ended {
                    Ended::Refused(_) => {
                        let pause = backoff.next();
                        eprintln!("{ended}; trying again in {}s", pause.as_secs());
                        thread::sleep(pause);
                    }
                    Ended::CutOff | Ended::Gone => {
                        backoff = Backoff::default();
                        eprintln!("{ended}; reconnecting");
                    }
                }
            }
            Err(error) => return Err(error.to_string()),
        }
        client = connect(args, &shared, Greeting::Again, &mut backoff)?;
    }
}

/// The subscriber over UDP: subscribe, print every datagram, renew the lease, until
/// `--count` deliveries arrived.
fn run_udp(args: &Args) -> Result<(), String> {
    if args.topic.is_empty() {
        return Err("with --udp, give the topics on the command line: --topic <topic>".into());
    }
    let port = args.port.unwrap_or(DEFAULT_UDP_PORT);
    let mut client = UdpClient::connect((args.host.as_str(), port)).map_err(|e| e.to_string())?;
    let renew_every = args.renew.0.max(Duration::from_millis(10));
    eprintln!(
        "subscribing over UDP at {} as {}; renewing every {}",
        client.peer_addr(),
        args.id,
        format_duration(renew_every)
    );
    let escape = !args.raw && io::stdout().is_terminal();
    let stdout = io::stdout();
    let mut received = 0;
    let mut renew_at = Instant::now();
    let mut subscribed = false;
    loop {
        if args.count.is_some_and(|count| received >= count) {
            return Ok(());
        }
        if Instant::now() >= renew_at {
            for topic in &args.topic {
                client
                    .subscribe(topic, &args.id)
                    .map_err(|e| e.to_string())?;
            }
            if !subscribed {
                // The first time, a PING: its PONG proves the broker is there and has the
                // subscriptions (datagrams on one path keep their order, mostly).
                match client.ping() {
                    Ok(_) => {
                        for topic in &args.topic {
                            eprintln!("subscribed to {topic} over UDP");
                        }
                    }
                    Err(Error::Timeout) => {
                        eprintln!("no answer from the broker over UDP yet; listening anyway")
                    }
                    Err(error) if !args.reconnect => {
                        return Err(format!(
                            "{error}. Is the broker running with --udp-port {port}? \
                             (run with --reconnect to keep trying)"
                        ))
                    }
                    Err(_) => {}
                }
                for reason in client.take_refusals() {
                    eprintln!("the broker refused: ERROR {reason}");
                }
                subscribed = true;
            }
            renew_at = Instant::now() + renew_every;
        }
        let line = match client.next_line(renew_at.saturating_duration_since(Instant::now())) {
            Ok(Some(Incoming::Deliver(delivery))) => {
                received += 1;
                String::from_utf8_lossy(&delivery.to_line())
                    .trim_end()
                    .to_string()
            }
            Ok(Some(Incoming::Error(reason))) => format!("ERROR {reason}"),
            // Durable subscriptions are not held over UDP, but a line is shown as it came.
            Ok(Some(Incoming::Message(message))) => message.to_string(),
            Ok(Some(Incoming::Reply(line))) => line,
            Ok(None) => continue,
            Err(error) if args.reconnect => {
                eprintln!("{error}; trying again in {}", format_duration(renew_every));
                thread::sleep(renew_every);
                renew_at = Instant::now();
                continue;
            }
            Err(error) => {
                return Err(format!(
                    "{error}. Is the broker running with --udp-port {port}? \
                     (run with --reconnect to keep trying)"
                ))
            }
        };
        let written = if escape {
            writeln!(stdout.lock(), ">> {}", escaped(&line))
        } else {
            writeln!(stdout.lock(), ">> {line}")
        };
        if let Err(error) = written {
            return if is_broken_pipe(&error) {
                Ok(())
            } else {
                Err(error.to_string())
            };
        }
    }
}

/// Whether a connection is the first of the run, which is greeted with the commands one
/// can type, or a reconnection.
#[derive(Clone, Copy)]
enum Greeting {
    First,
    Again,
}

/// The pause before the next try: doubles from [`FIRST_RETRY`] up to [`MAX_RETRY`].
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(FIRST_RETRY)
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = self.0;
        self.0 = (self.0 * 2).min(MAX_RETRY);
        pause
    }
}

/// Connects and subscribes to every wanted topic. With `--reconnect`, keeps trying with a
/// growing pause, saying each time why it is waiting; without, the first failure ends
/// the run.
fn connect(
    args: &Args,
    shared: &Shared,
    greeting: Greeting,
    backoff: &mut Backoff,
) -> Result<Client, String> {
    let credentials = args.auth.credentials()?;
    loop {
        let port = args.port.unwrap_or(DEFAULT_PORT);
        let attempt = Client::connect((args.host.as_str(), port)).and_then(|mut client| {
            if let Some((user, secret)) = &credentials {
                client.auth(user, secret)?;
            }
            let addr = client.peer_addr();
            match greeting {
                Greeting::First => eprintln!("connected to {addr} as {}; {USAGE}", args.id),
                Greeting::Again => eprintln!("reconnected to {addr}"),
            }
            match attach(shared, &mut client) {
                Ok(()) => Ok(client),
                // A broker that turns us away says why before it closes: that, rather than
                // the broken pipe our SUBSCRIBE met, is what to tell.
                Err(error) => match client.next_line(Duration::from_millis(500)) {
                    Ok(Some(Incoming::Error(reason))) => Err(Error::Refused(reason)),
                    _ => Err(error),
                },
            }
        });
        let why = match attempt {
            Ok(client) => return Ok(client),
            Err(Error::Refused(reason)) => Ended::Refused(reason).to_string(),
            Err(error) => error.to_string(),
        };
        if !args.reconnect {
            return Err(why);
        }
        let pause = backoff.next();
        eprintln!("{why}; trying again in {}s", pause.as_secs());
        thread::sleep(pause);
    }
}

/// What one connection showed before it ended, to tell why it ended.
#[derive(Debug, Default)]
struct Connection {
    lines: u64,
    first_error: Option<String>,
}

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    /// The broker turned us away, with this reason (it is full, say).
    Refused(String),
    /// The broker is running, and closed our connection: it cut us off as a slow consumer.
    CutOff,
    /// The broker is gone.
    Gone,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Refused(reason) => write!(f, "the broker refused the connection: {reason}"),
            Ended::CutOff => write!(
                f,
                "the broker closed our connection but is still running: it cuts off a \
                 subscriber that stops reading, or falls too far behind (a slow consumer; \
                 see the broker's log)"
            ),
            Ended::Gone => write!(f, "the broker went away (connection closed)"),
        }
    }
}

/// The connection ended: say why. A broker that turns a client away says why in the one
/// line it sends before closing (`ERROR broker full (1024 clients)`). One that cuts a
/// subscriber off as a slow consumer closes without a word (there is no room left to
/// write one), so whether it still answers a `PING` on a new connection tells that case
/// from a broker that went away. (Connecting alone would not: a dying broker's kernel still
/// completes a connection for the moment its listening socket lives.)
fn why_closed(addr: (&str, u16), connection: &Connection) -> Ended {
    if let (1, Some(reason)) = (connection.lines, &connection.first_error) {
        return Ended::Refused(reason.clone());
    }
    match Client::connect(addr).and_then(|mut probe| probe.ping()) {
        Ok(_) => Ended::CutOff,
        Err(Error::Refused(reason)) => Ended::Refused(reason),
        Err(_) => Ended::Gone,
    }
}

/// Makes `client` the current connection: hands its write half to the stdin thread and
/// subscribes to every wanted topic.
fn attach(shared: &Shared, client: &mut Client) -> Result<(), Error> {
    let topics: Vec<String> = shared.topics.lock().iter().cloned().collect();
    for topic in &topics {
        if shared.durable {
            let pending = client.durable(topic, &shared.id)?;
            eprintln!("durable subscription to {topic}: {pending} message(s) pending");
        } else {
            client.subscribe(topic, &shared.id)?;
            eprintln!("subscribed to {topic}");
        }
    }
    *shared.writer.lock() = Some(client.try_clone_stream()?);
    Ok(())
}

/// Prints every line from the broker until `count` deliveries arrived (`Ok`) or the
/// connection ended (`Err(Closed)`).
fn receive(
    shared: &Shared,
    client: &mut Client,
    count: Option<u64>,
    received: &mut u64,
    connection: &mut Connection,
    escape: bool,
) -> Result<(), Error> {
    let stdout = io::stdout();
    loop {
        if count.is_some_and(|count| *received >= count) {
            return Ok(());
        }
        let Some(incoming) = client.next_line(IDLE_WAIT)? else {
            continue;
        };
        connection.lines += 1;
        if let (1, Incoming::Error(reason)) = (connection.lines, &incoming) {
            connection.first_error = Some(reason.clone());
        }
        let mut ack = None;
        let line = match &incoming {
            Incoming::Message(message) => {
                *received += 1;
                ack = Some(message.seq);
                message.to_string()
            }
            Incoming::Deliver(delivery) => {
                *received += 1;
                String::from_utf8_lossy(&delivery.to_line())
                    .trim_end()
                    .to_string()
            }
            Incoming::Error(reason) => format!("ERROR {reason}"),
            Incoming::Reply(line) => with_round_trip(shared, line),
        };
        let written = if escape {
            writeln!(stdout.lock(), ">> {}", escaped(&line))
        } else {
            writeln!(stdout.lock(), ">> {line}")
        };
        if let Err(error) = written {
            // `subscriber | head -3`: the reader is gone, so we are done.
            return if is_broken_pipe(&error) {
                Ok(())
            } else {
                Err(error.into())
            };
        }
        // Printed (stdout writes each line out whole): only now is it handled.
        if let Some(seq) = ack {
            client.ack(seq)?;
        }
    }
}

/// A `PONG` answering our `ping` gets the round-trip time added.
fn with_round_trip(shared: &Shared, line: &str) -> String {
    if line == "PONG" || line.starts_with("PONG ") {
        if let Some(sent) = shared.ping_sent.lock().take() {
            return format!(
                "{line}   (round trip {:.3} ms)",
                sent.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    line.to_string()
}

/// The stdin thread: turns typed commands into protocol lines. End of input is not the end
/// of the program (a subscriber started from a script keeps receiving); `quit` is.
fn read_commands(shared: &Shared) {
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let command = match words.as_slice() {
            [] => continue,
            ["subscribe", topic] => {
                shared.topics.lock().insert(topic.to_string());
                Command::Subscribe {
                    topic,
                    subscriber_id: &shared.id,
                }
            }
            ["unsubscribe", topic] => {
                shared.topics.lock().remove(*topic);
                Command::Unsubscribe {
                    topic,
                    subscriber_id: &shared.id,
                }
            }
            ["topics"] => Command::Topics { filter: None },
            ["topics", filter] => Command::Topics {
                filter: Some(filter),
            },
            ["stats"] => Command::Stats,
            ["help"] => Command::Help,
            ["ping"] => {
                *shared.ping_sent.lock() = Some(Instant::now());
                Command::Ping { token: None }
            }
            ["verbose", "on"] => Command::Verbose { on: true },
            ["verbose", "off"] => Command::Verbose { on: false },
            ["quit"] => {
                // Leaving is just closing the socket: the broker notices and drops our
                // subscriptions. Nothing needs sending, so this works with any broker.
                std::process::exit(0);
            }
            _ => {
                eprintln!("{USAGE}");
                continue;
            }
        };
        let mut bytes = Vec::new();
        command.write_line(&mut bytes);
        let sent = match shared.writer.lock().as_mut() {
            Some(writer) => writer.write_all(&bytes).is_ok(),
            None => false,
        };
        if !sent {
            eprintln!("not connected right now; subscriptions are sent again on reconnect");
        }
    }
}
