//! The broker: listens for publishers and subscribers and passes messages between them.
//!
//! Three terminals:
//!
//! ```text
//! cargo run --bin broker                  # terminal 1: listens on 127.0.0.1:9000
//! cargo run --bin subscriber sub1 --topic weather     # terminal 2
//! cargo run --bin publisher pub1          # terminal 3: then type  weather Rainy day ahead!
//! ```
//!
//! or talk to it by hand: `nc 127.0.0.1 9000`, then `HELP`.
//! `RUST_LOG=debug` logs every command; `--trace` shows every line in and out.

use std::process::ExitCode;

use clap::Parser;
use pubsub_lab::cli::{init_logging, DurationArg};
use pubsub_lab::config::{
    format_duration, DEFAULT_HOST, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_CLIENTS_PER_IP,
    DEFAULT_MAX_ID_BYTES, DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_PENDING_BYTES, DEFAULT_MAX_RETAINED,
    DEFAULT_MAX_RETAINED_BYTES, DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_MAX_TOPICS_LISTED,
    DEFAULT_MAX_TOPIC_BYTES, DEFAULT_MAX_TOPIC_LEVELS, DEFAULT_PORT, DEFAULT_SYS_INTERVAL,
    DEFAULT_WRITE_TIMEOUT,
};
use pubsub_lab::config::{
    FsyncPolicy, DEFAULT_ACK_TIMEOUT, DEFAULT_MAX_DURABLE, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_QUEUED,
};
use pubsub_lab::error::describe;
use pubsub_lab::{Broker, Config, StartError};

/// A publish/subscribe broker speaking the classroom line protocol.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on. Use 0.0.0.0 to accept clients from other machines (a lab
    /// network).
    #[arg(long, default_value = DEFAULT_HOST)]
    host: String,
    /// Port to listen on. 0 picks a free port (printed at start).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Most clients served at once; the next one is told `ERROR broker full`.
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS)]
    max_clients: usize,
    /// Most clients served at once from one address (loopback is exempt); the next one is
    /// told `ERROR too many connections from <ip>`.
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS_PER_IP)]
    max_clients_per_ip: usize,
    /// Longest line accepted, in bytes; longer lines are answered with ERROR and dropped.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// How long a subscriber that has fallen behind may take to accept 64 KiB before it is
    /// disconnected as a slow consumer (like 2s or 500ms).
    #[arg(long, default_value_t = DurationArg(DEFAULT_WRITE_TIMEOUT))]
    write_timeout: DurationArg,
    /// The most bytes of deliveries that may wait in the broker for one subscriber that
    /// has fallen behind; past it, the subscriber is disconnected as a slow consumer.
    #[arg(long, default_value_t = DEFAULT_MAX_PENDING_BYTES)]
    max_pending_bytes: usize,
    /// Longest topic accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_TOPIC_BYTES)]
    max_topic_bytes: usize,
    /// Longest subscriber or publisher id accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_ID_BYTES)]
    max_id_bytes: usize,
    /// Most topics one connection may subscribe to.
    #[arg(long, default_value_t = DEFAULT_MAX_SUBSCRIPTIONS)]
    max_subscriptions: usize,
    /// Most topics one TOPICS reply lists; it ends with a count of the rest.
    #[arg(long, default_value_t = DEFAULT_MAX_TOPICS_LISTED)]
    max_topics_listed: usize,
    /// Most levels in a topic or filter (a/b/c has three).
    #[arg(long, default_value_t = DEFAULT_MAX_TOPIC_LEVELS)]
    max_topic_levels: usize,
    /// Most topics with a retained message (RETAIN); 0 refuses every one.
    #[arg(long, default_value_t = DEFAULT_MAX_RETAINED)]
    max_retained: usize,
    /// Most bytes all retained messages may take together.
    #[arg(long, default_value_t = DEFAULT_MAX_RETAINED_BYTES)]
    max_retained_bytes: usize,
    /// How often to publish the broker's figures under $SYS/broker/ (like 10s); 0 turns
    /// them off.
    #[arg(long, default_value_t = DurationArg(DEFAULT_SYS_INTERVAL))]
    sys_interval: DurationArg,
    /// Keep durable subscriptions in a log in this directory, so that they survive
    /// restarts and crashes (without it they live in memory only).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// When the log is flushed to the disk: always (before each confirm; loses nothing),
    /// interval (once a second; a power cut loses up to a second), never (the OS decides).
    #[arg(long, default_value_t = FsyncPolicy::default())]
    fsync: FsyncPolicy,
    /// Most messages sent on one durable subscription and not yet acknowledged; the rest
    /// wait.
    #[arg(long, default_value_t = DEFAULT_MAX_INFLIGHT)]
    max_inflight: usize,
    /// How long a message sent on a durable subscription waits for its ACK before it is
    /// sent again (like 30s).
    #[arg(long, default_value_t = DurationArg(DEFAULT_ACK_TIMEOUT))]
    ack_timeout: DurationArg,
    /// Most messages one durable subscription holds while nobody reads it; past it the
    /// oldest are dropped (counted in STATS).
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUED)]
    max_queued: usize,
    /// Most durable subscriptions the broker keeps in all; the next DURABLE is refused.
    #[arg(long, default_value_t = DEFAULT_MAX_DURABLE)]
    max_durable: usize,
    /// Show every line in and out, with connection number and client id.
    #[arg(long)]
    trace: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging("info", args.trace);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("broker: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let config = Config {
        max_clients: args.max_clients,
        max_clients_per_ip: args.max_clients_per_ip,
        max_line_bytes: args.max_line_bytes,
        write_timeout: args.write_timeout.0,
        max_pending_bytes: args.max_pending_bytes,
        max_topic_bytes: args.max_topic_bytes,
        max_id_bytes: args.max_id_bytes,
        max_subscriptions: args.max_subscriptions,
        max_topics_listed: args.max_topics_listed,
        max_topic_levels: args.max_topic_levels,
        max_retained: args.max_retained,
        max_retained_bytes: args.max_retained_bytes,
        sys_interval: args.sys_interval.0,
        data_dir: args.data_dir.clone(),
        fsync: args.fsync,
        max_inflight: args.max_inflight,
        ack_timeout: args.ack_timeout.0,
        max_queued: args.max_queued,
        max_durable: args.max_durable,
        ..Config::default()
    };
    let broker =
        Broker::bind((args.host.as_str(), args.port), config).map_err(|error| match error {
            StartError::Bind { source, .. } => format!(
                "could not listen on {}:{}: {}. Is another broker already running there? \
             Stop it, or pick another port with --port",
                args.host,
                args.port,
                describe(&source)
            ),
            other => other.to_string(),
        })?;
    let addr = broker.local_addr();
    let port_flag = if addr.port() == DEFAULT_PORT {
        String::new()
    } else {
        format!(" --port {}", addr.port())
    };
    println!(
        "pubsub-lab broker listening on {addr}; connect with: nc {} {} (or: cargo run --bin subscriber sub1{port_flag})",
        addr.ip(),
        addr.port()
    );
    log::info!(
        "limits: {} clients, {} bytes per line, write timeout {}",
        args.max_clients,
        args.max_line_bytes,
        format_duration(args.write_timeout.0)
    );
    log::info!("{}", broker.storage());
    broker.run().map_err(|error| error.to_string())
}
