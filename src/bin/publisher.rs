//! The publisher: sends messages to the broker.
//!
//! ```text
//! cargo run --bin publisher pub1                              # type:  weather Rainy day ahead!
//! printf 'weather hi\nnews hello\n' | cargo run --bin publisher pub1   # piped: exits at the end
//! cargo run --bin publisher pub1 --topic weather Rainy day ahead!     # one message, then exit
//! cargo run --bin publisher pub1 --topic clock --every 2s             # "Event at ..." every 2 s
//! cargo run --bin publisher pub1 --udp --topic clock --every 2s       # the same, as datagrams
//! cargo run --bin publisher pub1 --topic home/temp --retain 21.5C     # kept for later subscribers
//! cargo run --bin publisher pub1 --confirm --topic orders 2 pizzas     # wait until it is stored
//! ```
//!
//! With `--udp`, each message is one datagram (`PUBLISH <topic> <message> <id>`) to the
//! broker's `--udp-port` (9999 unless `--port` says otherwise). Nothing confirms a datagram
//! arrived, so at the end the publisher sends a `PING` and waits for its `PONG`: proof
//! that the broker is there, not that every datagram before it arrived.
//!
//! With `--confirm`, the publisher turns on `VERBOSE` and waits for each message's
//! `OK PUBLISH`, which a broker with `--data-dir` sends only once the message is stored
//! for every durable subscription it matched. A message that is refused, or not confirmed
//! in time, is reported, and the run fails at the end.

use std::io::{self, BufRead, IsTerminal};
use std::net::Shutdown;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use pubsub_lab::cli::{init_logging, AuthArgs};
use pubsub_lab::client::{check_word, UdpClient};
use pubsub_lab::config::{format_duration, parse_duration, DEFAULT_PORT, DEFAULT_UDP_PORT};

use pubsub_lab::client::Incoming;
use pubsub_lab::{Client, Error};

/// How long to wait, at the end, for the broker to confirm it handled everything.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `--confirm` waits for one message's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest `--every`: shorter is a flood, which `troublemaker flood` plays on purpose.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Publishes messages to a pubsub-lab broker: from stdin, one `<topic> <message>` per line,
/// or one message with --topic, or a repeating one with --every.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Your publisher id; subscribers see it in every DELIVER line.
    id: String,
    /// Publish the message given after the flags to this topic, then exit.
    #[arg(long)]
    topic: Option<String>,
    /// With --topic: publish again at this interval (like 2s or 500ms) until stopped.
    /// Without a message, each one says "Event at HH:MM:SS", the time it was sent.
    #[arg(long, value_parser = parse_duration, requires = "topic")]
    every: Option<Duration>,
    /// With --topic: send RETAIN instead of PUBLISH, so the broker keeps the (latest)
    /// message and hands it to every later subscriber of the topic.
    #[arg(long, requires = "topic")]
    retain: bool,
    /// Wait for the broker to confirm each message (OK PUBLISH, sent once it is stored for
    /// every durable subscription), and report those it does not confirm.
    #[arg(long, conflicts_with = "retain")]
    confirm: bool,
    /// With --every: stop after this many messages.
    #[arg(long, requires = "every")]
    count: Option<u64>,
    /// The broker's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port (9000, or 9999 with --udp).
    #[arg(long)]
    port: Option<u16>,
    /// Send datagrams to the broker's UDP port instead of using TCP.
    #[arg(long)]
    udp: bool,
    #[command(flatten)]
    auth: AuthArgs,
    /// The message, with --topic: every remaining word.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    message: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log = init_logging("warn", false);
    let outcome = run(&args);
    // The log's last records come before what is said about the outcome.
    drop(log);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Refused(reason)) => {
            eprintln!("publisher {}: the broker refused: ERROR {reason}", args.id);
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("publisher {}: {error}", args.id);
            ExitCode::FAILURE
        }
    }
}

/// What a run did: messages handed to the broker, and lines that could not be sent.
#[derive(Debug, Default)]
struct Tally {
    published: u64,
    not_sent: u64,
    /// With `--confirm`: messages refused or not confirmed in time.
    unconfirmed: u64,
}

fn run(args: &Args) -> Result<(), Error> {
    check_arguments(args)?;
    if args.udp {
        return run_udp(args);
    }
    let port = args.port.unwrap_or(DEFAULT_PORT);
    let mut client = Client::connect((args.host.as_str(), port))?;
    if let Some((user, secret)) = args.auth.credentials().map_err(Error::InvalidArgument)? {
        client.auth(&user, &secret)?;
    }
    let replies = Replies::listen(&client)?;
    if args.confirm {
        client.send(pubsub_lab::Command::Verbose { on: true })?;
    }
    let tally = match &args.topic {
        Some(topic) => match args.every {
            Some(interval) => tick(&mut client, &replies, args, topic, interval)?,
            None => {
                send(&mut client, args, topic, &args.message.join(" "))?;
                let mut tally = Tally {
                    published: 1,
                    ..Tally::default()
                };
                replies.confirm(args, &mut tally, topic)?;
                tally
            }
        },
        None => {
            if io::stdin().is_terminal() {
                eprintln!(
                    "connected to {} as {}; type <topic> <message> lines; Ctrl-D to finish",
                    client.peer_addr(),
                    args.id
                );
            }
            publish_stdin(&mut client, &replies, args)?
        }
    };
    // A half-close says we are done; the broker handles every line, then closes its side.
    client.try_clone_stream()?.shutdown(Shutdown::Write)?;
    let refused = replies.finish(FINISH_TIMEOUT)?;
    if args.confirm {
        eprintln!(
            "published {} message(s), {} confirmed",
            tally.published,
            tally.published - tally.unconfirmed
        );
        if tally.unconfirmed > 0 {
            return Err(Error::InvalidArgument(format!(
                "{} message(s) not confirmed (see above)",
                tally.unconfirmed
            )));
        }
    } else {
        eprintln!("published {} message(s)", tally.published);
    }
    if let Some(first) = refused.first() {
        if refused.len() > 1 {
            eprintln!("the broker refused {} line(s)", refused.len());
        }
        return Err(Error::Refused(first.clone()));
    }
    if tally.not_sent > 0 {
        return Err(Error::InvalidArgument(format!(
            "{} line(s) not sent (see above)",
            tally.not_sent
        )));
    }
    Ok(())
}

/// The broker's answers, read on a thread of their own while the main thread sends. A
/// publisher that only wrote would never see an `ERROR`; worse, the `ERROR`s it did not
/// read would fill its socket until the broker cut it off as a slow consumer, and it would
/// blame the broker for going away.
struct Replies {
    heard: mpsc::Receiver<Heard>,
    reader: thread::JoinHandle<()>,
}

/// What the reader thread heard that matters to a publisher.
enum Heard {
    /// `ERROR <reason>`: the broker refused a line (or the whole connection).
    Refused(String),
    /// `OK PUBLISH ...`: a message confirmed (with `--confirm`).
    Confirmed,
    /// The broker closed the connection.
    Closed,
}

impl Replies {
    fn listen(client: &Client) -> Result<Replies, Error> {
        let mut reader = Client::from_stream(client.try_clone_stream()?)?;
        let (tell, heard) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("replies".to_string())
            .spawn(move || loop {
                match reader.next_line(Duration::from_secs(3600)) {
                    Ok(Some(Incoming::Error(reason))) => {
                        if tell.send(Heard::Refused(reason)).is_err() {
                            return;
                        }
                    }
                    Ok(Some(Incoming::Reply(line))) if line.starts_with("OK PUBLISH ") => {
                        if tell.send(Heard::Confirmed).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {} // other acknowledgements, deliveries to ourselves
                    Err(_) => {
                        let _ = tell.send(Heard::Closed);
                        return;
                    }
                }
            })?;
        Ok(Replies { heard, reader })
    }

    /// The broker's reason, if it refused a line since the last look. Does not wait.
    fn refusal(&self) -> Option<String> {
        self.heard.try_iter().find_map(|heard| match heard {
            Heard::Refused(reason) => Some(reason),
            Heard::Confirmed | Heard::Closed => None,
        })
    }

    /// After the half-close: waits until the broker has closed its side, and returns every
    /// refusal that came.
    fn finish(self, timeout: Duration) -> Result<Vec<String>, Error> {
        let deadline = Instant::now() + timeout;
        let mut refused = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.heard.recv_timeout(left) {
                Ok(Heard::Refused(reason)) => refused.push(reason),
                Ok(Heard::Confirmed) => {}
                Ok(Heard::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(Error::Timeout),
            }
        }
        let _ = self.reader.join();
        Ok(refused)
    }

    /// Sending failed: if the broker said why before it closed (it was full, say), that is
    /// the reason; otherwise it went away.
    fn why_sending_failed(&self, error: Error, sent_so_far: u64) -> Error {
        if matches!(error, Error::InvalidArgument(_)) {
            return error;
        }
        // The broker's last words may still be on their way to the reader thread.
        if let Ok(Heard::Refused(reason)) = self.heard.recv_timeout(Duration::from_secs(1)) {
            return Error::Refused(reason);
        }
        eprintln!("the broker went away after {sent_so_far} message(s); is it still running?");
        error
    }

    /// With `--confirm`, waits for the confirm of the message just sent (the broker
    /// answers a connection's lines in order, so the next answer is its): a refusal or no
    /// answer in time is reported and counted; a closed connection ends the run.
    fn confirm(&self, args: &Args, tally: &mut Tally, topic: &str) -> Result<(), Error> {
        if !args.confirm {
            return Ok(());
        }
        let failure = match self.heard.recv_timeout(CONFIRM_TIMEOUT) {
            Ok(Heard::Confirmed) => return Ok(()),
            Ok(Heard::Refused(reason)) => format!("ERROR {reason}"),
            Ok(Heard::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                eprintln!(
                    "not confirmed: message {} to {topic}: the broker went away",
                    tally.published
                );
                return Err(Error::Closed);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                format!("no confirm within {}", format_duration(CONFIRM_TIMEOUT))
            }
        };
        eprintln!(
            "not confirmed: message {} to {topic}: {failure}",
            tally.published
        );
        tally.unconfirmed += 1;
        Ok(())
    }

    /// Stops the run at the broker's first refusal, with its reason.
    fn check(&self) -> Result<(), Error> {
        match self.refusal() {
            Some(reason) => Err(Error::Refused(reason)),
            None => Ok(()),
        }
    }
}

/// The same over UDP: one datagram per message, then a `PING` to learn that the broker is
/// there. Refusals (`ERROR` datagrams) are reported as they are seen.
fn run_udp(args: &Args) -> Result<(), Error> {
    let port = args.port.unwrap_or(DEFAULT_UDP_PORT);
    let mut client = UdpClient::connect((args.host.as_str(), port))?;
    let mut published = 0u64;
    let mut refused = Vec::new();
    let mut publish = |client: &mut UdpClient, topic: &str, message: &str| -> Result<(), Error> {
        client.publish(topic, message, &args.id)?;
        published += 1;
        // Whatever the broker said meanwhile is already here; do not wait for more.
        while let Some(Incoming::Error(reason)) = client.next_line(Duration::ZERO)? {
            eprintln!("the broker refused: ERROR {reason}");
            refused.push(reason);
        }
        Ok(())
    };
    match (&args.topic, args.every) {
        (Some(topic), None) => publish(&mut client, topic, &args.message.join(" "))?,
        (Some(topic), Some(interval)) => {
            let mut sent = 0;
            while args.count.map_or(true, |count| sent < count) {
                if sent > 0 {
                    thread::sleep(interval);
                }
                let message = if args.message.is_empty() {
                    format!("Event at {}", chrono::Local::now().format("%H:%M:%S"))
                } else {
                    args.message.join(" ")
                };
                publish(&mut client, topic, &message)?;
                sent += 1;
            }
        }
        (None, _) => {
            for line in io::stdin().lock().lines() {
                let line = line?;
                let Some((topic, message)) = line.trim().split_once(char::is_whitespace) else {
                    continue;
                };
                if let Err(error) = publish(&mut client, topic, message.trim()) {
                    if !matches!(error, Error::InvalidArgument(_)) {
                        return Err(error);
                    }
                    eprintln!("not sent: {error}");
                }
            }
        }
    }
    let answered = client.ping();
    refused.extend(client.take_refusals());
    eprintln!(
        "published {published} message(s) as datagrams to {}",
        client.peer_addr()
    );
    match answered {
        Ok(_) => {}
        Err(Error::Timeout) => {
            return Err(Error::InvalidArgument(format!(
                "the broker did not answer a PING over UDP; is it running with --udp-port {port}? \
                 (over UDP nothing says whether the messages arrived)"
            )))
        }
        Err(error) => return Err(error),
    }
    match refused.into_iter().next() {
        Some(first) => Err(Error::Refused(first)),
        None => Ok(()),
    }
}

/// Everything that can be known to be wrong before connecting: a run that could never
/// send anything says so at once, instead of failing message after message.
fn check_arguments(args: &Args) -> Result<(), Error> {
    check_word("publisher id", &args.id)?;
    let Some(topic) = &args.topic else {
        if !args.message.is_empty() {
            return Err(Error::InvalidArgument(
                "a message on the command line needs --topic, e.g. publisher pub1 --topic weather Rainy day".into(),
            ));
        }
        return Ok(());
    };
    check_word("topic", topic)?;
    match args.every {
        Some(interval) if interval < MIN_INTERVAL => Err(Error::InvalidArgument(format!(
            "--every must be at least {}",
            format_duration(MIN_INTERVAL)
        ))),
        None if args.message.is_empty() => Err(Error::InvalidArgument(
            "give the message after the flags, e.g. --topic weather Rainy day".into(),
        )),
        _ => Ok(()),
    }
}

/// Reads `<topic> <message>` lines until end of input. A line that cannot be sent is
/// reported and counted, and the rest go on.
fn publish_stdin(client: &mut Client, replies: &Replies, args: &Args) -> Result<Tally, Error> {
    let id = args.id.as_str();
    let mut tally = Tally::default();
    for line in io::stdin().lock().lines() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((topic, message)) = line.split_once(char::is_whitespace) else {
            eprintln!("not sent: write <topic> <message>, for example: weather Rainy day ahead!");
            tally.not_sent += 1;
            continue;
        };
        if !args.confirm {
            replies.check()?;
        }
        match client.publish(topic, message.trim(), id) {
            Ok(()) => {
                tally.published += 1;
                replies.confirm(args, &mut tally, topic)?;
            }
            Err(Error::InvalidArgument(why)) => {
                eprintln!("not sent: {why}");
                tally.not_sent += 1;
            }
            Err(error) => return Err(replies.why_sending_failed(error, tally.published)),
        }
    }
    Ok(tally)
}

/// Sends one message to `topic`: `RETAIN` with --retain, `PUBLISH` without.
fn send(client: &mut Client, args: &Args, topic: &str, message: &str) -> Result<(), Error> {
    if args.retain {
        client.retain(topic, message, &args.id)
    } else {
        client.publish(topic, message, &args.id)
    }
}

/// Publishes the same message (or "Event at HH:MM:SS") every `interval`.
fn tick(
    client: &mut Client,
    replies: &Replies,
    args: &Args,
    topic: &str,
    interval: Duration,
) -> Result<Tally, Error> {
    let mut tally = Tally::default();
    while args.count.map_or(true, |count| tally.published < count) {
        if tally.published > 0 {
            thread::sleep(interval);
        }
        let message = if args.message.is_empty() {
            format!("Event at {}", chrono::Local::now().format("%H:%M:%S"))
        } else {
            args.message.join(" ")
        };
        if !args.confirm {
            replies.check()?;
        }
        // Topic and id were checked before connecting, so a message that cannot be sent
        // would fail every time: it ends the run (`?`) rather than repeat for ever.
        send(client, args, topic, &message)
            .map_err(|error| replies.why_sending_failed(error, tally.published))?;
        tally.published += 1;
        replies.confirm(args, &mut tally, topic)?;
    }
    Ok(tally)
}
