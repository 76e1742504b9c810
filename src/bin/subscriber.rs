//! The subscriber: receives messages from the broker and prints every line it gets.
//!
//! ```text
//! cargo run --bin subscriber sub1                  # then type:  subscribe weather
//! cargo run --bin subscriber sub1 --topic weather --topic news
//! cargo run --bin subscriber sub1 --topic weather --count 3     # exit after 3 messages
//! cargo run --bin subscriber sub1 --topic weather --reconnect   # survive broker restarts
//! ```
//!
//! Each line from the broker is printed as `>> <line>`. Commands typed on stdin:
//! `subscribe <topic>`, `unsubscribe <topic>`, `topics`, `stats`, `ping`,
//! `verbose on|off`, `help`, `quit`.
//!
//! Two threads: the main thread reads the socket and prints; a second one reads stdin and
//! sends commands. They share the socket's write half and the set of topics (which a
//! reconnect subscribes to again).

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use parking_lot::Mutex;
use pubsub_lab::cli::{init_logging, is_broken_pipe};
use pubsub_lab::client::Incoming;
use pubsub_lab::config::DEFAULT_PORT;
use pubsub_lab::protocol::Command;
use pubsub_lab::{Client, Error};

/// The first wait before reconnecting; it doubles after each failed try, up to the cap.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between reconnection tries.
const MAX_RETRY: Duration = Duration::from_secs(8);
/// How often the reader wakes up while no line arrives (there is no work to do then; a
/// finite wait just keeps the loop simple to stop).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

const USAGE: &str =
    "commands: subscribe <topic> | unsubscribe <topic> | topics | stats | ping | verbose on|off | help | quit";

/// Subscribes to topics on a pubsub-lab broker and prints what arrives.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Your subscriber id, sent with each SUBSCRIBE.
    id: String,
    /// Subscribe to this topic at start (repeat the flag for several).
    #[arg(long)]
    topic: Vec<String>,
    /// Exit after this many deliveries.
    #[arg(long)]
    count: Option<u64>,
    /// When the broker goes away, keep trying to reconnect, then subscribe again.
    #[arg(long)]
    reconnect: bool,
    /// The broker's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
}

/// What the stdin thread and the socket thread share.
struct Shared {
    id: String,
    /// The write half of the current connection; replaced on reconnect.
    writer: Mutex<Option<TcpStream>>,
    /// The topics we want, subscribed again after a reconnect.
    topics: Mutex<BTreeSet<String>>,
    /// When the last `ping` was sent, to print the round trip when its PONG arrives.
    ping_sent: Mutex<Option<Instant>>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging("warn", false);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("subscriber {}: {message}", args.id);
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let addr = (args.host.as_str(), args.port);
    let shared = Arc::new(Shared {
        id: args.id.clone(),
        writer: Mutex::new(None),
        topics: Mutex::new(args.topic.iter().cloned().collect()),
        ping_sent: Mutex::new(None),
    });
    let mut client = connect(args, &shared, Greeting::First)?;
    let stdin_shared = Arc::clone(&shared);
    thread::Builder::new()
        .name("stdin".to_string())
        .spawn(move || read_commands(&stdin_shared))
        .map_err(|e| e.to_string())?;

    let mut received = 0;
    loop {
        match receive(&shared, &mut client, args.count, &mut received) {
            Ok(()) => return Ok(()),
            Err(Error::Closed) => {
                *shared.writer.lock() = None;
                let why = why_closed(addr);
                if !args.reconnect {
                    return Err(format!("{why}; run with --reconnect to keep trying"));
                }
                eprintln!("{why}; reconnecting");
            }
            Err(error) => return Err(error.to_string()),
        }
        client = connect(args, &shared, Greeting::Again)?;
    }
}

/// Whether a connection is the first of the run, which is greeted with the commands one
/// can type, or a reconnection.
#[derive(Clone, Copy)]
enum Greeting {
    First,
    Again,
}

/// Connects and subscribes to every wanted topic. With `--reconnect`, keeps trying with a
/// growing pause, saying each time why it is waiting; without, the first failure ends
/// the run.
fn connect(args: &Args, shared: &Shared, greeting: Greeting) -> Result<Client, String> {
    let mut retry = FIRST_RETRY;
    loop {
        let attempt = Client::connect((args.host.as_str(), args.port)).and_then(|mut client| {
            let addr = client.peer_addr()?;
            match greeting {
                Greeting::First => eprintln!("connected to {addr} as {}; {USAGE}", args.id),
                Greeting::Again => eprintln!("reconnected to {addr}"),
            }
            attach(shared, &mut client)?;
            Ok(client)
        });
        match attempt {
            Ok(client) => return Ok(client),
            Err(error) if !args.reconnect => return Err(error.to_string()),
            Err(error) => {
                eprintln!("{error}; trying again in {}s", retry.as_secs());
                thread::sleep(retry);
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

/// The connection ended: say what happened. The broker closes a subscriber's connection
/// without a word when it cuts it off as a slow consumer (there is no room left to write
/// one), so whether it still answers a `PING` on a new connection tells the two cases
/// apart. (Connecting alone would not: a dying broker's kernel still completes a
/// connection for the moment its listening socket lives.) A full broker, which answers
/// `ERROR broker full`, is running too.
fn why_closed(addr: (&str, u16)) -> String {
    let answered = Client::connect(addr).and_then(|mut probe| probe.ping());
    if matches!(answered, Ok(_) | Err(Error::Refused(_))) {
        String::from(
            "the broker closed our connection but is still running: it cuts off a \
             subscriber that stops reading, or falls too far behind (a slow consumer; \
             see the broker's log)",
        )
    } else {
        String::from("the broker went away (connection closed)")
    }
}

/// Makes `client` the current connection: hands its write half to the stdin thread and
/// subscribes to every wanted topic.
fn attach(shared: &Shared, client: &mut Client) -> Result<(), Error> {
    let topics: Vec<String> = shared.topics.lock().iter().cloned().collect();
    for topic in &topics {
        client.subscribe(topic, &shared.id)?;
        eprintln!("subscribed to {topic}");
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
) -> Result<(), Error> {
    let stdout = io::stdout();
    loop {
        if count.is_some_and(|count| *received >= count) {
            return Ok(());
        }
        let Some(incoming) = client.next_line(IDLE_WAIT)? else {
            continue;
        };
        let line = match &incoming {
            Incoming::Deliver(delivery) => {
                *received += 1;
                String::from_utf8_lossy(&delivery.to_line())
                    .trim_end()
                    .to_string()
            }
            Incoming::Error(reason) => format!("ERROR {reason}"),
            Incoming::Reply(line) => with_round_trip(shared, line),
        };
        if let Err(error) = writeln!(stdout.lock(), ">> {line}") {
            // `subscriber | head -3`: the reader is gone, so we are done.
            return if is_broken_pipe(&error) {
                Ok(())
            } else {
                Err(error.into())
            };
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
            ["topics"] => Command::Topics,
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
