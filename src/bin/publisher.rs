//! The publisher: sends messages to the broker.
//!
//! ```text
//! cargo run --bin publisher pub1                              # type:  weather Rainy day ahead!
//! printf 'weather hi\nnews hello\n' | cargo run --bin publisher pub1   # piped: exits at the end
//! cargo run --bin publisher pub1 --topic weather Rainy day ahead!     # one message, then exit
//! cargo run --bin publisher pub1 --topic clock --every 2s             # "Event at ..." every 2 s
//! ```

use std::io::{self, BufRead};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::Parser;
use pubsub_lab::cli::init_logging;
use pubsub_lab::config::{parse_duration, DEFAULT_PORT};

use pubsub_lab::{Client, Error};

/// How long to wait, at the end, for the broker to confirm it handled everything.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

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

fn run(args: &Args) -> Result<(), Error> {
    if args.topic.is_none() && !args.message.is_empty() {
        return Err(Error::InvalidArgument(
            "a message on the command line needs --topic, e.g. publisher pub1 --topic weather Rainy day".into(),
        ));
    }
    let mut client = Client::connect((args.host.as_str(), args.port))?;
    let published = match &args.topic {
        Some(topic) => match args.every {
            Some(interval) => tick(&mut client, args, topic, interval)?,
            None if args.message.is_empty() => {
                return Err(Error::InvalidArgument(
                    "give the message after the flags, e.g. --topic weather Rainy day".into(),
                ))
            }
            None => {
                publish(&mut client, topic, &args.message.join(" "), &args.id, 0)?;
                1
            }
        },
        None => publish_stdin(&mut client, &args.id)?,
    };
    let errors = client.finish(FINISH_TIMEOUT)?;
    for reason in &errors {
        eprintln!("broker said: ERROR {reason}");
    }
    eprintln!("published {published} message(s)");
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Refused(format!("{} line(s) refused", errors.len())))
    }
}

/// Reads `<topic> <message>` lines until end of input; returns how many were published.
fn publish_stdin(client: &mut Client, id: &str) -> Result<u64, Error> {
    let mut published = 0;
    for line in io::stdin().lock().lines() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some((topic, message)) => {
                publish(client, topic, message.trim(), id, published)?;
                published += 1;
            }
            None => eprintln!("usage: <topic> <message>   for example: weather Rainy day ahead!"),
        }
    }
    Ok(published)
}

/// Publishes the same message (or "Event at HH:MM:SS") every `interval`.
fn tick(client: &mut Client, args: &Args, topic: &str, interval: Duration) -> Result<u64, Error> {
    let mut published = 0;
    while args.count.map_or(true, |count| published < count) {
        if published > 0 {
            thread::sleep(interval);
        }
        let message = if args.message.is_empty() {
            format!("Event at {}", chrono::Local::now().format("%H:%M:%S"))
        } else {
            args.message.join(" ")
        };
        publish(client, topic, &message, &args.id, published)?;
        published += 1;
    }
    Ok(published)
}

/// Publishes one message. A bad topic or message is reported and skipped; a lost
/// connection ends the run with a message saying how far it got.
fn publish(
    client: &mut Client,
    topic: &str,
    message: &str,
    id: &str,
    sent_so_far: u64,
) -> Result<(), Error> {
    match client.publish(topic, message, id) {
        Ok(()) => Ok(()),
        Err(Error::InvalidArgument(why)) => {
            eprintln!("not sent: {why}");
            Ok(())
        }
        Err(error) => {
            eprintln!("the broker went away after {sent_so_far} message(s); is it still running?");
            Err(error)
        }
    }
}
