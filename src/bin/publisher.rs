//! The publisher: sends messages to the broker.
//!
//! ```text
//! cargo run --bin publisher pub1                              # type:  weather Rainy day ahead!
//! printf 'weather hi\nnews hello\n' | cargo run --bin publisher pub1   # piped: exits at the end
//! cargo run --bin publisher pub1 --topic weather Rainy day ahead!     # one message, then exit
//! cargo run --bin publisher pub1 --topic clock --every 2s             # "Event at ..." every 2 s
//! ```

use std::io::{self, BufRead, IsTerminal};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::Parser;
use pubsub_lab::cli::init_logging;
use pubsub_lab::client::check_word;
use pubsub_lab::config::{format_duration, parse_duration, DEFAULT_PORT};

use pubsub_lab::{Client, Error};

/// How long to wait, at the end, for the broker to confirm it handled everything.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// With --every: stop after this many messages.
    #[arg(long, requires = "every")]
    count: Option<u64>,
    /// The broker's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// The message, with --topic: every remaining word.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    message: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging("warn", false);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
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
}

fn run(args: &Args) -> Result<(), Error> {
    check_arguments(args)?;
    let mut client = Client::connect((args.host.as_str(), args.port))?;
    let tally = match &args.topic {
        Some(topic) => match args.every {
            Some(interval) => tick(&mut client, args, topic, interval)?,
            None => {
                client.publish(topic, &args.message.join(" "), &args.id)?;
                Tally {
                    published: 1,
                    not_sent: 0,
                }
            }
        },
        None => {
            if io::stdin().is_terminal() {
                eprintln!(
                    "connected to {} as {}; type <topic> <message> lines; Ctrl-D to finish",
                    client.peer_addr()?,
                    args.id
                );
            }
            publish_stdin(&mut client, &args.id)?
        }
    };
    let errors = client.finish(FINISH_TIMEOUT)?;
    for reason in &errors {
        eprintln!("broker said: ERROR {reason}");
    }
    eprintln!("published {} message(s)", tally.published);
    if tally.not_sent > 0 {
        return Err(Error::InvalidArgument(format!(
            "{} line(s) not sent (see above)",
            tally.not_sent
        )));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Refused(format!("{} line(s) refused", errors.len())))
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
fn publish_stdin(client: &mut Client, id: &str) -> Result<Tally, Error> {
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
        match client.publish(topic, message.trim(), id) {
            Ok(()) => tally.published += 1,
            Err(Error::InvalidArgument(why)) => {
                eprintln!("not sent: {why}");
                tally.not_sent += 1;
            }
            Err(error) => return Err(went_away(error, tally.published)),
        }
    }
    Ok(tally)
}

/// Publishes the same message (or "Event at HH:MM:SS") every `interval`.
fn tick(client: &mut Client, args: &Args, topic: &str, interval: Duration) -> Result<Tally, Error> {
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
        // Topic and id were checked before connecting, so a message that cannot be sent
        // would fail every time: it ends the run (`?`) rather than repeat for ever.
        client
            .publish(topic, &message, &args.id)
            .map_err(|error| went_away(error, tally.published))?;
        tally.published += 1;
    }
    Ok(tally)
}

/// A failure while publishing: the connection is gone, unless the message itself was bad.
fn went_away(error: Error, sent_so_far: u64) -> Error {
    if !matches!(error, Error::InvalidArgument(_)) {
        eprintln!("the broker went away after {sent_so_far} message(s); is it still running?");
    }
    error
}
