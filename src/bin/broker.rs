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
//! or talk to it by hand: `nc 127.0.0.1 9000`, then `HELP`. The live view is at
//! <http://127.0.0.1:8080/> (`--http-port` moves it, `--no-http` turns it off). With
//! `--udp-port 9999` it also takes datagrams:
//! `echo 'Event at noon' | nc -u -q0 127.0.0.1 9999` reaches every subscriber of `udp`.
//! `RUST_LOG=debug` logs every command; `--trace` shows every line in and out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use pubsub_lab::cli::{init_logging, DurationArg, LogGuard};
use pubsub_lab::config::{
    format_duration, DEFAULT_HOST, DEFAULT_HTTP_PORT, DEFAULT_HTTP_TIMEOUT, DEFAULT_MAX_CLIENTS,
    DEFAULT_MAX_CLIENTS_PER_IP, DEFAULT_MAX_ID_BYTES, DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_PENDING_BYTES, DEFAULT_MAX_RETAINED, DEFAULT_MAX_RETAINED_BYTES,
    DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_MAX_TOPICS_LISTED, DEFAULT_MAX_TOPIC_BYTES,
    DEFAULT_MAX_TOPIC_LEVELS, DEFAULT_PORT, DEFAULT_SOCKETIO_PING_INTERVAL,
    DEFAULT_SOCKETIO_PING_TIMEOUT, DEFAULT_SYS_INTERVAL, DEFAULT_UDP_LEASE,
    DEFAULT_UDP_MAX_SUBSCRIBERS, DEFAULT_UDP_TOPIC, DEFAULT_WRITE_TIMEOUT,
};
use pubsub_lab::config::{
    FsyncPolicy, DEFAULT_ACK_TIMEOUT, DEFAULT_MAX_DURABLE, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_QUEUED,
};
use pubsub_lab::config::{DEFAULT_AUTH_TIMEOUT, DEFAULT_NATS_PREFIX};
use pubsub_lab::config::{
    DEFAULT_MAX_DURABLE_PER_CLIENT, DEFAULT_MAX_DURABLE_PER_USER,
    DEFAULT_MAX_DURABLE_RETAINED_BYTES, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_RETAINED_PER_CLIENT,
    DEFAULT_MAX_RETAINED_PER_USER, DEFAULT_MAX_WILDCARDS,
};
use pubsub_lab::config::{
    DEFAULT_MAX_RETAINED_BYTES_PER_CLIENT, DEFAULT_MAX_RETAINED_BYTES_PER_USER,
    DEFAULT_MAX_WILDCARDS_PER_USER,
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
    /// Most filters with + or # one connection may subscribe to (each publish looks at
    /// every wildcard filter); the next SUBSCRIBE with a wildcard is refused.
    #[arg(long, default_value_t = DEFAULT_MAX_WILDCARDS)]
    max_wildcards: usize,
    /// With --auth-file: most filters with + or # one user may subscribe to, over all its
    /// connections together.
    #[arg(long, default_value_t = DEFAULT_MAX_WILDCARDS_PER_USER)]
    max_wildcards_per_user: usize,
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
    /// Most topics on which one publisher id keeps a retained message; its next RETAIN to
    /// a new topic is refused.
    #[arg(long, default_value_t = DEFAULT_MAX_RETAINED_PER_CLIENT)]
    max_retained_per_client: usize,
    /// With --auth-file: most topics on which one user keeps a retained message, over every
    /// id it goes by.
    #[arg(long, default_value_t = DEFAULT_MAX_RETAINED_PER_USER)]
    max_retained_per_user: usize,
    /// Most bytes of retained messages one publisher id keeps; a RETAIN that would pass it
    /// is refused.
    #[arg(long, default_value_t = DEFAULT_MAX_RETAINED_BYTES_PER_CLIENT)]
    max_retained_bytes_per_client: usize,
    /// With --auth-file: most bytes of retained messages one user keeps, over every id it
    /// goes by.
    #[arg(long, default_value_t = DEFAULT_MAX_RETAINED_BYTES_PER_USER)]
    max_retained_bytes_per_user: usize,
    /// How often to publish the broker's figures under $SYS/broker/ (like 10s); 0 turns
    /// them off.
    #[arg(long, default_value_t = DurationArg(DEFAULT_SYS_INTERVAL))]
    sys_interval: DurationArg,
    /// Also take UDP datagrams on this port (the classroom's UDP tutorial uses 9999; 0
    /// picks a free one): protocol lines, or any text, published to --udp-topic. Off
    /// unless given.
    #[arg(long)]
    udp_port: Option<u16>,
    /// The topic a datagram that is not a command is published to.
    #[arg(long, default_value = DEFAULT_UDP_TOPIC)]
    udp_topic: String,
    /// How long a UDP subscription lasts without a renewal (SUBSCRIBE again, or PING).
    #[arg(long, default_value_t = DurationArg(DEFAULT_UDP_LEASE))]
    udp_lease: DurationArg,
    /// Most addresses holding a UDP subscription at once.
    #[arg(long, default_value_t = DEFAULT_UDP_MAX_SUBSCRIBERS)]
    udp_max_subscribers: usize,
    /// Port of the web listener: the live view at /, POST /publish, GET /topics, /stats
    /// and /healthz, and the line protocol over WebSocket at /ws [default: 8080]. 0 picks a
    /// free port. If the default port is taken, the broker warns and runs without the web;
    /// a port given here that is taken is an error.
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// Serve no web listener.
    #[arg(long, conflicts_with = "http_port")]
    no_http: bool,
    /// How long a web client may take to send one whole HTTP request (like 10s); an idle
    /// keep-alive connection is closed after as long.
    #[arg(long, default_value_t = DurationArg(DEFAULT_HTTP_TIMEOUT))]
    http_timeout: DurationArg,
    /// How often Socket.IO clients (at /socket.io/ on the web port) are pinged; one that
    /// does not answer within --socketio-ping-timeout is disconnected.
    #[arg(long, default_value_t = DurationArg(DEFAULT_SOCKETIO_PING_INTERVAL))]
    socketio_ping_interval: DurationArg,
    /// How long a Socket.IO client has to answer a ping.
    #[arg(long, default_value_t = DurationArg(DEFAULT_SOCKETIO_PING_TIMEOUT))]
    socketio_ping_timeout: DurationArg,
    /// Make /ws a broadcast room on this topic, for pages that send JSON text frames (the
    /// Go WebSocket tutorial's): each frame is published to TOPIC as it is, and every
    /// delivery on TOPIC goes to every page, the sender too, as the raw frame. Without it,
    /// /ws speaks the line protocol.
    #[arg(long, value_name = "TOPIC")]
    ws_broadcast: Option<String>,
    /// Keep durable subscriptions in a log in this directory, so that they survive
    /// restarts and crashes (without it they live in memory only).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// When the log is flushed to the disk: always (before each confirm; loses nothing),
    /// interval (once a second; a power cut loses up to a second), never (the OS decides).
    #[arg(long, default_value_t = FsyncPolicy::default())]
    fsync: FsyncPolicy,
    /// Start from a damaged log all the same, as redis-check-aof --fix does: keep every
    /// intact record, move the damaged bytes to DIR/quarantine/, and log what was lost.
    /// Without it, a damaged log stops the start, naming the file and the offset.
    #[arg(long, requires = "data_dir")]
    salvage: bool,
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
    /// Most bytes of messages one durable subscription holds while nobody reads or
    /// acknowledges them; past it, as past --max-queued, the oldest are dropped (counted in
    /// STATS). Mosquitto calls it max_queued_bytes too.
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUED_BYTES)]
    max_queued_bytes: usize,
    /// Most durable subscriptions the broker keeps in all; the next DURABLE is refused.
    #[arg(long, default_value_t = DEFAULT_MAX_DURABLE)]
    max_durable: usize,
    /// Most durable subscriptions of one subscriber id; its next DURABLE is refused.
    #[arg(long, default_value_t = DEFAULT_MAX_DURABLE_PER_CLIENT)]
    max_durable_per_client: usize,
    /// Most durable subscriptions of one user (with --auth-file), over every id it goes
    /// by; without a login, of the anonymous clients of one address other than loopback.
    #[arg(long, default_value_t = DEFAULT_MAX_DURABLE_PER_USER)]
    max_durable_per_user: usize,
    /// Most bytes of retained messages a new durable subscription copies into its queue
    /// (and its log); the retained messages past it are not copied (counted in STATS).
    #[arg(long, default_value_t = DEFAULT_MAX_DURABLE_RETAINED_BYTES)]
    max_durable_retained_bytes: usize,
    /// A NATS server to bridge to (nats://host:port), so that every broker on the same
    /// NATS cluster sees every message. Repeat it for each seed server of a cluster; they
    /// are tried in turn.
    #[arg(long = "nats", value_name = "URL")]
    nats: Vec<String>,
    /// The first word of every NATS subject the bridge uses: with the default, topic a/b
    /// is subject pubsub-lab.a.b. Brokers that share messages use the same prefix.
    #[arg(long, default_value = DEFAULT_NATS_PREFIX)]
    nats_prefix: String,
    /// Access control: a file of users, secrets and allow rules (see labsheet/protocol.md).
    /// Every client must then send an AUTH line (user and secret) first. Off by default, so classic
    /// clients work unchanged on a private machine; use it whenever --host is not loopback.
    #[arg(long, value_name = "FILE")]
    auth_file: Option<std::path::PathBuf>,
    /// With --auth-file: how long a new connection may take to send AUTH before it is
    /// closed (like 5s).
    #[arg(long, default_value_t = DurationArg(DEFAULT_AUTH_TIMEOUT))]
    auth_timeout: DurationArg,
    /// With --auth-file and --udp-port: take datagrams all the same, from anyone, with no
    /// check (UDP cannot say who sends them; without this flag they are refused).
    #[arg(long)]
    udp_allow_anonymous: bool,
    /// Show every line in and out, with connection number and client id.
    #[arg(long)]
    trace: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log = init_logging("info", args.trace);
    let outcome = run(&args, log.as_ref());
    // The log's last records come before what is said about the outcome.
    drop(log);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("broker: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, log: Option<&LogGuard>) -> Result<(), String> {
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
        max_retained_per_client: args.max_retained_per_client,
        max_retained_per_user: args.max_retained_per_user,
        max_retained_bytes_per_client: args.max_retained_bytes_per_client,
        max_retained_bytes_per_user: args.max_retained_bytes_per_user,
        sys_interval: args.sys_interval.0,
        udp_topic: args.udp_topic.clone(),
        udp_lease: args.udp_lease.0,
        udp_max_subscribers: args.udp_max_subscribers,
        http_timeout: args.http_timeout.0,
        socketio_ping_interval: args.socketio_ping_interval.0,
        socketio_ping_timeout: args.socketio_ping_timeout.0,
        ws_broadcast: args.ws_broadcast.clone(),
        data_dir: args.data_dir.clone(),
        fsync: args.fsync,
        salvage: args.salvage,
        max_inflight: args.max_inflight,
        ack_timeout: args.ack_timeout.0,
        max_queued: args.max_queued,
        max_queued_bytes: args.max_queued_bytes,
        max_durable: args.max_durable,
        max_durable_per_client: args.max_durable_per_client,
        max_durable_per_user: args.max_durable_per_user,
        max_durable_retained_bytes: args.max_durable_retained_bytes,
        max_wildcards: args.max_wildcards,
        max_wildcards_per_user: args.max_wildcards_per_user,
        nats: args.nats.clone(),
        nats_prefix: args.nats_prefix.clone(),
        auth_file: args.auth_file.clone(),
        auth_timeout: args.auth_timeout.0,
        udp_allow_anonymous: args.udp_allow_anonymous,
        ..Config::default()
    };
    let mut builder = Broker::builder()
        .config(config)
        .line((args.host.as_str(), args.port));
    builder = match (args.no_http, args.http_port) {
        (true, _) => builder,
        (false, Some(port)) => builder.web((args.host.as_str(), port)),
        (false, None) => builder.web_if_free((args.host.as_str(), DEFAULT_HTTP_PORT)),
    };
    if let Some(udp_port) = args.udp_port {
        builder = builder.udp((args.host.as_str(), udp_port));
    }
    let broker = builder.bind().map_err(|error| match error {
        StartError::Bind {
            listener: "web",
            source,
            ..
        } => format!(
            "could not listen on {}:{} for the web: {}. Pick another port with --http-port \
             (0 picks a free one), or turn the web off with --no-http",
            args.host,
            args.http_port.unwrap_or(DEFAULT_HTTP_PORT),
            describe(&source)
        ),
        StartError::Bind {
            listener, source, ..
        } => {
            let (port, flag) = match listener {
                "udp" => (args.udp_port.unwrap_or(0), "--udp-port"),
                _ => (args.port, "--port"),
            };
            format!(
                "could not listen on {}:{port}{}: {}. Is another broker already running \
                 there? Stop it, or pick another port with {flag}",
                args.host,
                if listener == "udp" { " (UDP)" } else { "" },
                describe(&source)
            )
        }
        other => other.to_string(),
    })?;
    let addr = broker.local_addr();
    let port_flag = if addr.port() == DEFAULT_PORT {
        String::new()
    } else {
        format!(" --port {}", addr.port())
    };
    // The UDP port goes between the two, after a `;`: tools that read the first line for
    // the TCP address (the benchmark, the labsheet's replay) read up to the first `;`.
    let udp = broker
        .local_udp_addr()
        .map_or_else(String::new, |udp| format!(" UDP on {udp};"));
    let live_view = match broker.web_addr() {
        Some(web) => format!("; live view: open http://{}/", openable(web)),
        None => String::new(),
    };
    // What the broker logged while starting comes first on a terminal that shows both.
    if let Some(log) = log {
        log.settle();
    }
    println!(
        "pubsub-lab broker listening on {addr};{udp} connect with: nc {} {} (or: cargo run --bin subscriber sub1{port_flag}){live_view}",
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

/// The address a browser can open: a wildcard (`0.0.0.0`, listening on every interface)
/// is reached on this machine as loopback.
fn openable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}
