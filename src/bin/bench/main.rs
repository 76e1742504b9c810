//! The benchmark: delivered messages per second, latency and memory per connection, for
//! our broker and, side by side, for the fastest relay a thread-per-connection design
//! allows.
//!
//! ```text
//! cargo build --release --bins                       # the bench starts target/release/broker
//!                                                    # (and refuses one older than src/)
//! cargo run --release --bin bench -- suite           # the standard set, one table
//! cargo run --release --bin bench -- suite --compare # broker and relay alternately, ratios
//! cargo run --release --bin bench -- suite --against old/broker   # A/B against another build
//! cargo run --release --bin bench -- fanout --subs 1000 --msgs 2000
//! cargo run --release --bin bench -- latency --addr 127.0.0.1:9000   # any running broker
//! cargo run --release --bin bench -- http        # HTTP publishes/s, one keep-alive client
//! cargo run --release --bin bench -- wsfanout    # fan-out to 100 WebSocket subscribers
//! cargo run --release --bin bench -- siofanout   # the same, Socket.IO subscribers
//! cargo run --release --bin bench -- suite --quick   # the same in a few seconds
//! cargo run --release --bin bench -- guard --against base/broker # CI's short A/B: fanin, pairs
//! cargo run --release --bin bench -- json-fanout      # fan-out in both dialects, side by side
//! cargo run --release --bin bench -- udp --rate 20000 # datagrams in: publishes/s and loss
//! ```
//!
//! Absolute figures drift on a shared machine; a ratio to the relay measured in the same
//! minute does not drift much, which is why `--compare` exists. The modules: [`workloads`]
//! (who sends what), [`measure`](mod@measure) (payload stamps, loss and order checks, histogram),
//! [`target`] (child processes and their memory), [`relay`] (the speed-of-light relay),
//! [`report`] (table, JSON, progress).
//!
//! The exit code is 0 only if every run delivered everything, in order, within its time.

mod durable;
mod hostile;
mod measure;
mod relay;
mod report;
mod target;
mod web;
mod wildcard;
mod workloads;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use pubsub_lab::config::parse_duration;

use report::{Outcome, Printer};
use target::{Listeners, Target, TargetKind};
use workloads::{Flow, Workload, PROBES};

/// Measures the broker (or any broker at --addr, or the speed-of-light relay) with
/// reproducible workloads, checking every message for loss and order.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// What to run: a workload, the standard `suite`, or `relay` (serve the relay).
    #[arg(value_enum)]
    mode: Mode,
    /// Subscribers on the topic (fanout, latency).
    #[arg(long)]
    subs: Option<usize>,
    /// Publishers into the one subscriber (fanin).
    #[arg(long)]
    pubs: Option<usize>,
    /// Independent publisher/subscriber pairs, a topic each (pairs).
    #[arg(long)]
    pairs: Option<usize>,
    /// Messages each publisher sends.
    #[arg(long)]
    msgs: Option<u64>,
    /// Messages per second (latency).
    #[arg(long)]
    rate: Option<f64>,
    /// Idle connections to hold (conns), or connections in the crowd (leave).
    #[arg(long)]
    conns: Option<usize>,
    /// Subscribers that never read (stalled).
    #[arg(long)]
    stalled: Option<usize>,
    /// Topics each connection of the crowd subscribes to (leave), or topics in all (topics).
    #[arg(long)]
    topics: Option<usize>,
    /// Distinct wildcard filters the broker holds in all (wildcard): 1, 100, 10000...
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    filters: u64,
    /// With leave: each connection subscribes to topics of its own, not the same ones.
    #[arg(long)]
    unique: bool,
    /// Payload bytes per message (at least the ~30 the stamp itself takes).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measure a broker that is already running there, instead of starting ours.
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Publishers connect here instead of to the broker measured: another broker, bridged
    /// to it through NATS (`--nats`), so the figures are for delivery across brokers.
    /// Subscribe to the workload's topic on the measured broker beforehand, so that its
    /// bridge already holds the topic on NATS when the run starts.
    #[arg(long, value_name = "HOST:PORT")]
    publish_addr: Option<std::net::SocketAddr>,
    /// Measure access control: start the broker with an auth file the bench writes (a
    /// class of 60 users with a rule each, and the bench's own: every subscriber logs in
    /// as `bench`, publisher i as `pub<i>`, secret `bench`), and log every connection in.
    /// Compare a run with and without it for the cost of the checks on the publish path.
    #[arg(long, conflicts_with_all = ["relay", "compare"])]
    auth: bool,
    /// Measure the speed-of-light relay instead of the broker.
    #[arg(long)]
    relay: bool,
    /// Run the broker (or --addr) and the relay alternately and report medians and ratios.
    #[arg(long)]
    compare: bool,
    /// Run this broker binary (an earlier build) alternately with ours, and report medians
    /// and ratios: an A/B test of a change.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["compare", "addr", "relay"])]
    against: Option<std::path::PathBuf>,
    /// Runs on each side with --compare or --against.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// The longest any one run may take; a run that hits it reports what arrived.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// About a tenth of the default message counts, and 1000 connections for conns:
    /// the whole suite in seconds.
    #[arg(long)]
    quick: bool,
    /// With durable: only this --fsync policy (always, interval or never) instead of all
    /// three.
    #[arg(long)]
    fsync: Option<String>,
    /// Port for `relay` to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

/// What the first argument asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One publisher, --subs subscribers on one topic, unpaced.
    Fanout,
    /// --pubs publishers into one subscriber, unpaced.
    Fanin,
    /// --pairs topics, each with one publisher and one subscriber, unpaced.
    Pairs,
    /// Like fanout, paced at --rate messages/s: latency percentiles.
    Latency,
    /// --conns idle subscribers: the target's memory per connection, then probes.
    Conns,
    /// Publishes over HTTP, one at a time on one keep-alive connection, to one TCP
    /// subscriber: publishes/s.
    Http,
    /// Like fanout, but the --subs subscribers are WebSockets at the web port.
    Wsfanout,
    /// Like wsfanout, but the subscribers are Socket.IO clients (over WebSocket).
    Siofanout,
    /// The standard set: fanout, fanin, pairs, latency, conns, http and wsfanout.
    Suite,
    /// CI's regression guard: fanin and pairs, a second or so each, alternately with the
    /// build given by --against (the change's base), --rounds times; prints each ratio and
    /// whether it is past this machine's noise. A slower ratio never fails the run (noise
    /// would fail it too); it is there to be read in the log of the change that caused it.
    Guard,
    /// --stalled subscribers that never read, and a healthy one, on one topic: how long
    /// the healthy one and the publisher are held up.
    Stalled,
    /// A crowd of --conns connections on --topics topics each, leaving at once: how long
    /// an unrelated pair waits, and memory before and after.
    Leave,
    /// A registry of --topics topics: what TOPICS and STATS cost, and memory after.
    Topics,
    /// --subs subscribers on `room/+/temp`, one publisher to `room/<n>/temp` in turn, with
    /// --filters distinct wildcard filters subscribed in all.
    Wildcard,
    /// One publisher with confirms into --subs durable subscribers that acknowledge, once
    /// per --fsync policy.
    Durable,
    /// A log of --msgs messages: how long the broker takes to start from it.
    Restart,
    /// Serve the speed-of-light relay on --port until killed.
    Relay,
    /// fanout, then the same with --subs subscribers speaking kn-sock's JSON lines.
    JsonFanout,
    /// One publisher sends --msgs datagrams at --rate/s (or unpaced) to the broker's UDP
    /// port, --subs TCP subscribers (1) count them: publishes/s, and what was lost.
    Udp,
}

/// One thing to measure, with its parameters settled.
#[derive(Debug, Clone)]
enum Job {
    Flow(Flow),
    Conns {
        conns: usize,
        size: usize,
    },
    Stalled {
        stalled: usize,
        msgs: u64,
        size: usize,
    },
    Leave {
        conns: usize,
        topics: usize,
        unique: bool,
    },
    Topics {
        topics: usize,
    },
    Wildcard {
        flow: Flow,
        filters: usize,
    },
    Udp {
        subs: usize,
        msgs: u64,
        rate: Option<f64>,
        size: usize,
    },
    Http {
        msgs: u64,
        size: usize,
    },
    Durable {
        subs: usize,
        msgs: u64,
        size: usize,
        fsync: &'static str,
    },
    Restart {
        msgs: u64,
        size: usize,
    },
}

impl Job {
    fn name(&self) -> &'static str {
        match self {
            Job::Flow(flow) => flow.workload.name(),
            Job::Conns { .. } => Workload::Conns.name(),
            Job::Stalled { .. } => "stalled",
            Job::Leave { .. } => "leave",
            Job::Topics { .. } => "topics",
            Job::Wildcard { .. } => Workload::Wildcard.name(),
            Job::Udp { .. } => "udp",
            Job::Http { .. } => "http",
            Job::Durable { .. } => "durable",
            Job::Restart { .. } => "restart",
        }
    }

    /// Whether the job needs the broker's web listener.
    fn needs_web(&self) -> bool {
        match self {
            Job::Flow(flow) => matches!(flow.workload, Workload::WsFanout | Workload::SioFanout),
            Job::Http { .. } => true,
            _ => false,
        }
    }

    fn connections(&self) -> usize {
        match self {
            Job::Flow(flow) => flow.connections(),
            Job::Conns { conns, .. } => conns + PROBES,
            Job::Stalled { stalled, .. } => stalled + 3,
            Job::Leave { conns, .. } => conns + 3,
            Job::Topics { topics } => topics.div_ceil(hostile::TOPICS_PER_CONN) + 3,
            Job::Wildcard { flow, filters } => {
                flow.connections() + filters.div_ceil(wildcard::FILTERS_PER_CONN)
            }
            Job::Udp { subs, .. } => subs + 2,
            Job::Http { .. } => 3,
            Job::Durable { subs, .. } => subs + 2,
            Job::Restart { .. } => 4,
        }
    }

    fn run(&self, target: &Target, timeout: Duration) -> Result<Outcome, String> {
        match self {
            Job::Flow(flow) => workloads::run_flow(target, flow, timeout),
            Job::Conns { conns, size } => workloads::run_conns(target, *conns, *size, timeout),
            Job::Stalled {
                stalled,
                msgs,
                size,
            } => hostile::run_stalled(target, *stalled, *msgs, *size, timeout),
            Job::Leave {
                conns,
                topics,
                unique,
            } => hostile::run_leave(target, *conns, *topics, *unique, timeout),
            Job::Topics { topics } => hostile::run_topics(target, *topics, timeout),
            Job::Wildcard { flow, filters } => {
                wildcard::run_wildcard(target, flow, *filters, timeout)
            }
            Job::Udp {
                subs,
                msgs,
                rate,
                size,
            } => workloads::run_udp(target, *subs, *msgs, *rate, *size, timeout),
            Job::Http { msgs, size } => web::run_http(target, *msgs, *size, timeout),
            Job::Durable {
                subs,
                msgs,
                size,
                fsync,
            } => {
                let dir = data_dir(fsync);
                durable::run_durable(target, *subs, *msgs, *size, fsync, &dir, timeout)
            }
            // Starts its own brokers: see `measure`.
            Job::Restart { .. } => Err("restart starts its own brokers".to_string()),
        }
    }

    /// Whether the target must take datagrams.
    fn needs_udp(&self) -> bool {
        matches!(self, Job::Udp { .. })
    }
}

/// The standard parameters. Each unpaced run moves two to three million deliveries: about
/// a second at the relay's speed, long enough that start-up is a small part of it, short
/// enough that the whole suite ends in well under two minutes on two cores.
fn jobs_for(mode: Mode, args: &Args) -> Vec<Job> {
    let scale = |full: u64| if args.quick { full / 10 } else { full };
    let flow = |workload, topics, pubs, subs, msgs, rate| {
        Job::Flow(Flow {
            workload,
            topics,
            pubs,
            subs,
            msgs: args.msgs.unwrap_or_else(|| scale(msgs)),
            size: args.size,
            rate,
            json: workload == Workload::JsonFanout,
            publish_addr: args.publish_addr,
        })
    };
    let subs = args.subs.unwrap_or(100);
    let fanout = flow(Workload::Fanout, 1, 1, subs, 30_000, None);
    let json_fanout = flow(Workload::JsonFanout, 1, 1, subs, 30_000, None);
    let fanin = flow(
        Workload::Fanin,
        1,
        args.pubs.unwrap_or(10),
        1,
        200_000,
        None,
    );
    let pairs = flow(
        Workload::Pairs,
        args.pairs.unwrap_or(50),
        1,
        1,
        40_000,
        None,
    );
    let rate = args.rate.unwrap_or(200.0);
    let latency = flow(
        Workload::Latency,
        1,
        1,
        subs,
        (rate * 3.0) as u64,
        Some(rate),
    );
    let wsfanout = flow(Workload::WsFanout, 1, 1, subs, 20_000, None);
    let siofanout = flow(Workload::SioFanout, 1, 1, subs, 20_000, None);
    let http = Job::Http {
        msgs: args.msgs.unwrap_or_else(|| scale(20_000)),
        size: args.size,
    };
    let conns = Job::Conns {
        conns: args
            .conns
            .unwrap_or(if args.quick { 1_000 } else { 10_000 }),
        size: args.size,
    };
    match mode {
        Mode::Fanout => vec![fanout],
        Mode::Fanin => vec![fanin],
        Mode::Pairs => vec![pairs],
        Mode::Latency => vec![latency],
        Mode::Conns => vec![conns],
        Mode::Http => vec![http],
        Mode::Wsfanout => vec![wsfanout],
        Mode::Siofanout => vec![siofanout],
        Mode::Suite => vec![fanout, fanin, pairs, latency, conns, http, wsfanout],
        Mode::Guard => vec![fanin, pairs],
        Mode::Stalled => vec![Job::Stalled {
            stalled: args.stalled.unwrap_or(10),
            msgs: args.msgs.unwrap_or(600),
            // The default payload is a benchmark's; stalling needs buffers to fill.
            size: if args.size == 64 {
                16 * 1024
            } else {
                args.size
            },
        }],
        Mode::Leave => vec![Job::Leave {
            conns: args.conns.unwrap_or(1000),
            topics: args.topics.unwrap_or(1024),
            unique: args.unique,
        }],
        Mode::Topics => vec![Job::Topics {
            topics: args.topics.unwrap_or(1_000_000),
        }],
        Mode::Wildcard => vec![Job::Wildcard {
            flow: Flow {
                workload: Workload::Wildcard,
                topics: 1,
                pubs: 1,
                subs,
                msgs: args.msgs.unwrap_or_else(|| scale(30_000)),
                size: args.size,
                rate: None,
                json: false,
                publish_addr: args.publish_addr,
            },
            filters: args.filters as usize,
        }],
        Mode::JsonFanout => vec![fanout, json_fanout],
        Mode::Udp => vec![Job::Udp {
            subs: args.subs.unwrap_or(1),
            msgs: args.msgs.unwrap_or_else(|| scale(100_000)),
            rate: args.rate,
            size: args.size,
        }],
        Mode::Durable => {
            let policies: Vec<&'static str> = match args.fsync.as_deref() {
                Some("always") => vec!["always"],
                Some("interval") => vec!["interval"],
                Some("never") => vec!["never"],
                _ => vec!["always", "interval", "never"],
            };
            policies
                .into_iter()
                .map(|fsync| Job::Durable {
                    subs: args.subs.unwrap_or(10),
                    msgs: args.msgs.unwrap_or_else(|| scale(50_000)),
                    size: args.size,
                    fsync,
                })
                .collect()
        }
        Mode::Restart => vec![Job::Restart {
            msgs: args.msgs.unwrap_or_else(|| scale(1_000_000)),
            size: args.size,
        }],
        // The relay serves; it measures nothing itself.
        Mode::Relay => Vec::new(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench: some runs lost or reordered messages, or timed out (see above)");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs what `args` ask for; `Ok(false)` if any run was not clean.
fn run(args: &Args) -> Result<bool, String> {
    if args.mode == Mode::Relay {
        relay::run(args.port)?;
        return Ok(true);
    }
    let target = chosen_target(args)?;
    if target == TargetKind::Broker {
        target::check_broker_is_current()?;
    }
    if let Some(policy) = &args.fsync {
        if !["always", "interval", "never"].contains(&policy.as_str()) {
            return Err(format!("--fsync {policy}: use always, interval or never"));
        }
    }
    if args.rate.is_some_and(|rate| rate.is_nan() || rate <= 0.0) {
        return Err("--rate must be more than 0".to_string());
    }
    let auth = if args.auth {
        Some(target::write_auth_file()?)
    } else {
        None
    };
    let auth = auth.as_deref();
    let mut printer = Printer::new(args.json);
    printer.machine();
    let mut clean = true;
    let mut comparisons = Vec::new();
    let other = match &args.against {
        Some(path) if !path.is_file() => {
            return Err(format!("--against {}: no such program", path.display()))
        }
        Some(path) => Some(TargetKind::Baseline(path.clone())),
        None if args.compare => Some(TargetKind::Relay),
        None => None,
    };
    // The suite measures the web only where both sides have one: a relay or a broker at an
    // address has none this bench knows of, and a build from before the web has none.
    let serves_web = |kind: &TargetKind| match kind {
        TargetKind::Broker => true,
        TargetKind::Baseline(path) => knows_flag(path, "--http-port"),
        TargetKind::Relay | TargetKind::Addr(_) => false,
    };
    let web_everywhere = serves_web(&target) && other.as_ref().map_or(true, serves_web);
    for job in jobs_for(args.mode, args) {
        if args.mode == Mode::Suite && job.needs_web() && !web_everywhere {
            continue;
        }
        if let Some(other) = &other {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..args.rounds {
                for (kind, runs) in [(&target, &mut a), (other, &mut b)] {
                    match measure(kind, &job, args.timeout, auth)? {
                        Ok(outcome) => {
                            printer.outcome(&outcome);
                            clean &= outcome.is_clean();
                            runs.push(outcome);
                        }
                        Err(message) => {
                            eprintln!("bench: {} on {}: {message}", job.name(), kind.label());
                            clean = false;
                        }
                    }
                }
            }
            comparisons.extend(report::compare(&a, &b));
        } else {
            match measure(&target, &job, args.timeout, auth)? {
                Ok(outcome) => {
                    printer.outcome(&outcome);
                    clean &= outcome.is_clean();
                }
                Err(message) => {
                    eprintln!("bench: {} on {}: {message}", job.name(), target.label());
                    clean = false;
                }
            }
        }
    }
    printer.comparisons(&comparisons);
    if args.mode == Mode::Guard && !args.json {
        report::guard_verdicts(&comparisons);
    }
    Ok(clean)
}

/// The data directory of a `durable` run under `fsync` (made by [`durable::fresh_data_dir`]).
fn data_dir(fsync: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "pubsub-lab-bench-durable-{fsync}-{}",
        std::process::id()
    ))
}

/// Whether the broker program at `path` takes `flag`, as its `--help` says.
fn knows_flag(path: &std::path::Path, flag: &str) -> bool {
    std::process::Command::new(path)
        .arg("--help")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(flag))
}

fn chosen_target(args: &Args) -> Result<TargetKind, String> {
    if args.mode == Mode::Guard && args.against.is_none() {
        return Err("guard compares this build with its base: give --against BASE/broker".into());
    }
    if args.mode == Mode::Wildcard && (args.relay || args.compare) {
        return Err(
            "the relay has no wildcards: run wildcard against brokers only \
                    (--against compares two builds)"
                .to_string(),
        );
    }
    match (&args.addr, args.relay) {
        (Some(_), true) => Err("--addr and --relay each pick the target: give one".to_string()),
        (_, true) if args.compare => {
            Err("--compare already runs the relay beside the broker; drop --relay".to_string())
        }
        (Some(addr), false) => Ok(TargetKind::Addr(addr.clone())),
        (None, true) => Ok(TargetKind::Relay),
        (None, false) => Ok(TargetKind::Broker),
    }
}

/// Starts a fresh target, runs one job on it, and stops it. A target that cannot start
/// is the outer error (nothing else will work either); a run that fails is the inner one,
/// with what the target logged, and the other runs go on.
fn measure(
    kind: &TargetKind,
    job: &Job,
    timeout: Duration,
    auth: Option<&std::path::Path>,
) -> Result<Result<Outcome, String>, String> {
    if let Job::Restart { msgs, size } = job {
        return Ok(durable::run_restart(kind, *msgs, *size, timeout));
    }
    let target = match job {
        Job::Durable { fsync, .. } => {
            let dir = durable::fresh_data_dir(&format!("durable-{fsync}"))?;
            let flags = [
                "--data-dir".to_string(),
                dir.display().to_string(),
                "--fsync".to_string(),
                fsync.to_string(),
            ];
            Target::start_with(kind, job.connections() + 16, &flags)?
        }
        _ => {
            let listeners = Listeners {
                udp: job.needs_udp(),
                web: job.needs_web(),
            };
            Target::start(kind, job.connections() + 16, listeners, auth)?
        }
    };
    Ok(job.run(&target, timeout).map_err(|message| {
        let said: Vec<String> = target.log_tail();
        if said.is_empty() {
            message
        } else {
            format!("{message}\n{} said:\n  {}", target.label, said.join("\n  "))
        }
    }))
    // `target` is dropped here: a child process is killed and waited for.
}
