//! The broker embedded in a program of twenty lines, with a hook that holds every topic,
//! on every transport, to the classroom's naming rule: `team<N>/<name>[/<name>...]`.
//!
//! ```text
//! cargo run --bin classroom                 # listens on 127.0.0.1:9000 and UDP 9999
//! nc 127.0.0.1 9000                         # then: SUBSCRIBE homework alice
//! ERROR topics are named team<N>/<name>, like team3/news: 'homework' is not
//! ```
//!
//! Everything but `check_topic` is the embedding itself: a type implementing
//! [`Hooks`], a builder, and `run`. Lab 10 has students write `check_topic`.

use std::process::ExitCode;

use pubsub_lab::hooks::{ClientInfo, Hooks, Publish, PublishVerdict, Refusal};
use pubsub_lab::{Broker, Config, StartError};

/// The classroom's rule, for subscribers and publishers alike.
pub struct NamingRule;

impl Hooks for NamingRule {
    fn on_subscribe(&self, _client: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
        check_topic(topic)
    }

    fn on_publish(&self, _client: ClientInfo<'_>, publish: &Publish<'_>) -> PublishVerdict {
        check_topic(publish.topic).into()
    }
}

/// `Ok` for a topic that follows the rule: at least two levels separated by `/`, the first
/// `team` and then one or more digits `0`-`9` (`team3`), each other level one or more
/// lowercase letters `a`-`z`, digits `0`-`9` or `-` (`news`, `week-2`): ASCII only, so
/// neither `café` nor `²` nor `٣`. Otherwise a refusal whose reason states the rule, an
/// example, and the topic refused, so the student who sent it can fix it.
pub fn check_topic(topic: &str) -> Result<(), Refusal> {
    // lab:begin 10 the topic naming rule
    let mut levels = topic.split('/');
    let team = levels.next().unwrap_or_default();
    let number = team.strip_prefix("team").unwrap_or_default();
    let team_ok = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    let names: Vec<&str> = levels.collect();
    let name_ok = |name: &&str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if team_ok && !names.is_empty() && names.iter().all(name_ok) {
        Ok(())
    } else {
        Err(format!("topics are named team<N>/<name>, like team3/news: '{topic}' is not").into())
    }
    // lab:end 10
}

/// The classroom broker on `host`, TCP `port` and UDP `udp_port` (0 picks free ones).
/// The rule holds for the broker's own UDP topic too, so it gets a name that follows it.
pub fn classroom(host: &str, port: u16, udp_port: u16) -> Result<Broker, StartError> {
    let udp_topic = "team0/ticks".to_string();
    Broker::builder()
        .config(Config {
            udp_topic,
            ..Config::default()
        })
        .line((host, port))
        .udp((host, udp_port))
        .hooks(NamingRule)
        .bind()
}

#[allow(dead_code)] // the lab's checks include this file as a module, without main
fn main() -> ExitCode {
    // `--port N` picks the TCP port; UDP is on 9999, or on a free port with `--port 0`.
    let args: Vec<String> = std::env::args().collect();
    let port = args
        .iter()
        .position(|arg| arg == "--port")
        .and_then(|at| args.get(at + 1)?.parse().ok())
        .unwrap_or(9000);
    let broker = match classroom("127.0.0.1", port, if port == 0 { 0 } else { 9999 }) {
        Ok(broker) => broker,
        // The error's own words, not its Debug form: a taken port is the usual one.
        Err(error) => {
            eprintln!(
                "classroom: {error}. Is another broker already running there? Stop it, or \
                 pick another port with --port"
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = broker.local_addr();
    let udp = broker
        .local_udp_addr()
        .expect("the classroom takes datagrams");
    println!(
        "classroom broker listening on {addr}; UDP on {udp}; connect with: nc {} {}",
        addr.ip(),
        addr.port()
    );
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("classroom: {error}");
            ExitCode::FAILURE
        }
    }
}
