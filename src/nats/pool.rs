//! The servers the bridge may connect to, in the order to try them, and how long to wait
//! when none answers.
//!
//! A broker is started with one or a few *seeds* (`--nats`), not the whole cluster: nodes
//! come and go, and the cluster itself knows best which are up. So every NATS server tells
//! its clients, in `INFO`, where the servers of its cluster take clients (`connect_urls`),
//! itself included, and sends a new `INFO` whenever a node joins or leaves. The pool holds
//! the seeds and what was announced last:
//!
//! ```text
//!   --nats nats://127.0.0.1:4222        INFO {… "connect_urls":["127.0.0.1:4222","127.0.0.1:4223","127.0.0.1:4224"]}
//!        │                                   │
//!        ▼                                   ▼
//!   [ 4222 ]  ── connected to 4222 ──▶  [ 4224, 4223, 4222 ]   (the one we are on, at the back)
//!                                                 │ 4222 dies
//!                                                 ▼
//!                                        try 4224 at once, then 4223, then 4222, then wait
//! ```
//!
//! Three rules, the ones every NATS client library follows (`nats.go` calls this its
//! server pool):
//!
//! * **The server just used is tried last.** Each try moves a server to the back, so after
//!   a loss the bridge goes straight to another node instead of knocking on the dead one.
//! * **Announced servers are placed at random**, so that the brokers of a campus that lost
//!   the same node spread over the others rather than all landing on the same one. A seed
//!   is never forgotten (the operator named it); an announced server is forgotten when the
//!   next `INFO` no longer lists it.
//! * **A round in which no server answered** (or none kept the bridge for a second, the
//!   bridge's `STABLE_CONNECTION`) **is followed by a wait** that doubles from
//!   [`MIN_BACKOFF`] up to [`MAX_BACKOFF`], and is *jittered*: a random part of it, so that
//!   a hundred brokers that lost NATS at the same instant do not all come back at the same
//!   instant and knock a recovering server over again (a *thundering herd*). `nats.go` waits
//!   2 s plus up to 100 ms of jitter between tries of the same server; we start shorter, as
//!   a classroom NATS restarted by hand is back within a second.
//!
//! What production clients add: a cap on reconnect attempts (`nats.go` gives up after 60 by
//! default; we never give up, since the room goes on without NATS), TLS and credentials per
//! server, and an option to ignore announced servers (`IgnoreDiscoveredServers`) for
//! networks where the addresses servers advertise are not reachable from the client; the
//! server side can stop announcing with `no_advertise`.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::config::parse_nats_url;

/// The first wait after a round of servers that all failed; it doubles after each such
/// round, up to [`MAX_BACKOFF`]. Short, so that a server restarted at once is back at once.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between rounds: a broker whose NATS is down for an hour tries again
/// every few seconds, not a thousand times a second.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The most servers kept. A cluster announces each of its nodes, and a campus cluster has
/// three or five; the cap keeps a misbehaving server from filling the pool (and every
/// round of tries) with thousands of addresses.
pub const MAX_SERVERS: usize = 32;

/// The servers to try, seeds and announced ones. See the module docs.
#[derive(Debug)]
pub struct Pool {
    /// In the order to try them; the one tried last (the one we are on, while connected)
    /// at the back.
    servers: VecDeque<Server>,
    /// The wait after the next round that fails.
    backoff: Duration,
    jitter: Jitter,
}

#[derive(Debug)]
struct Server {
    /// As given (`nats://host:port`) or as announced, with `nats://` put in front.
    url: String,
    /// `host:port`, to know an announced server that is a seed already.
    address: String,
    /// Given with `--nats`: never forgotten.
    seed: bool,
}

impl Server {
    fn new(url: String, seed: bool) -> Server {
        // A seed is checked when the configuration is read; an announced address that does
        // not parse keeps its text, and connecting to it will say what is wrong.
        let address = match parse_nats_url(&url) {
            Ok((host, port)) => format!("{}:{port}", host.to_ascii_lowercase()),
            Err(_) => url.clone(),
        };
        Server { url, address, seed }
    }
}

impl Pool {
    /// A pool of the seeds, tried first in the order given.
    pub fn new(seeds: &[String]) -> Pool {
        let mut pool = Pool {
            servers: VecDeque::new(),
            backoff: MIN_BACKOFF,
            jitter: Jitter::seeded(),
        };
        for seed in seeds {
            let server = Server::new(seed.clone(), true);
            if pool.servers.len() < MAX_SERVERS && !pool.knows(&server) {
                pool.servers.push_back(server);
            }
        }
        pool
    }

    /// How many servers the pool holds.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether it holds none (only a bridge started without seeds).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The server to try now; it moves to the back, to be tried last next time.
    pub fn next_to_try(&mut self) -> Option<String> {
        let server = self.servers.pop_front()?;
        let url = server.url.clone();
        self.servers.push_back(server);
        Some(url)
    }

    /// A connection succeeded: the next round that fails waits the shortest time again.
    pub fn connected(&mut self) {
        self.backoff = MIN_BACKOFF;
    }

    /// A whole round failed: how long to wait before the next, with jitter. The wait after
    /// the round after doubles.
    pub fn pause(&mut self) -> Duration {
        let pause = self.jitter.spread(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        pause
    }

    /// Takes what the connected server announced (`connect_urls`, as `host:port`): adds the
    /// servers not known yet at random places before the back (where the one we are on
    /// is), and forgets announced servers no longer listed. Returns whether anything
    /// changed.
    pub fn announced(&mut self, connect_urls: &[String]) -> bool {
        let listed: Vec<Server> = connect_urls
            .iter()
            .map(|url| {
                let url = if url.contains("://") {
                    url.clone()
                } else {
                    format!("nats://{url}")
                };
                Server::new(url, false)
            })
            .collect();
        let before = self.servers.len();
        let back = self.servers.len().saturating_sub(1);
        let mut index = 0;
        self.servers.retain(|server| {
            let keep = server.seed
                || index == back
                || listed.iter().any(|new| new.address == server.address);
            index += 1;
            keep
        });
        let mut changed = self.servers.len() != before;
        for server in listed {
            if self.servers.len() >= MAX_SERVERS || self.knows(&server) {
                continue;
            }
            // Anywhere from the front to just before the back.
            let at = self.jitter.below(self.servers.len());
            self.servers.insert(at, server);
            changed = true;
        }
        changed
    }

    /// The servers, in the order they will be tried, for the log.
    pub fn urls(&self) -> Vec<&str> {
        self.servers
            .iter()
            .map(|server| server.url.as_str())
            .collect()
    }

    fn knows(&self, server: &Server) -> bool {
        self.servers
            .iter()
            .any(|known| known.address == server.address)
    }
}

/// A small pseudo-random generator for jitter: xorshift64*, George Marsaglia's xorshift
/// followed by a multiplication that mixes the high bits down. Three shifts and a multiply,
/// statistically good enough to spread waits and places; useless for secrets, where a
/// cryptographic generator (the `rand` crate's `OsRng`, `/dev/urandom`) is needed.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    /// Seeded differently in every process and every call: the standard library seeds its
    /// `HashMap` hasher from the operating system's randomness (against hash flooding), and
    /// we borrow one of those seeds. Two brokers started in the same instant so still
    /// jitter differently.
    fn seeded() -> Jitter {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x9E37_79B9_7F4A_7C15);
        // xorshift must never be in state 0, which it would never leave.
        Jitter(hasher.finish() | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number from 0 to `n - 1` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// Somewhere between half of `wait` and all of it ("equal jitter": never less than
    /// half, so the backoff still grows, never more than all, so it is still bounded).
    fn spread(&mut self, wait: Duration) -> Duration {
        let half = wait / 2;
        let nanos = half.as_nanos().min(u128::from(u64::MAX - 1)) as u64;
        half + Duration::from_nanos(self.next_u64() % (nanos + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(urls: &[&str]) -> Pool {
        Pool::new(&urls.iter().map(|url| url.to_string()).collect::<Vec<_>>())
    }

    fn announced(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|url| url.to_string()).collect()
    }

    #[test]
    fn seeds_are_tried_in_the_order_given_and_each_try_moves_a_server_to_the_back() {
        let mut pool = seeds(&["nats://a:1", "nats://b:2"]);
        assert_eq!(pool.next_to_try().as_deref(), Some("nats://a:1"));
        assert_eq!(pool.next_to_try().as_deref(), Some("nats://b:2"));
        assert_eq!(pool.next_to_try().as_deref(), Some("nats://a:1"));
        assert_eq!(seeds(&[]).next_to_try(), None);
    }

    #[test]
    fn one_seed_learns_the_cluster_and_after_a_loss_tries_the_others_first() {
        let mut pool = seeds(&["nats://127.0.0.1:4222"]);
        assert_eq!(pool.next_to_try().as_deref(), Some("nats://127.0.0.1:4222"));
        // Connected to 4222, which announces itself and two more.
        let cluster = announced(&["127.0.0.1:4222", "127.0.0.1:4223", "127.0.0.1:4224"]);
        assert!(pool.announced(&cluster));
        assert_eq!(pool.len(), 3, "the seed is known by its address: not twice");
        assert!(!pool.announced(&cluster), "nothing new");
        // 4222 dies: the two announced servers come first, in some order, 4222 last.
        let mut next_two = [pool.next_to_try().unwrap(), pool.next_to_try().unwrap()];
        next_two.sort();
        assert_eq!(next_two, ["nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]);
        assert_eq!(pool.next_to_try().as_deref(), Some("nats://127.0.0.1:4222"));
    }

    #[test]
    fn announced_servers_come_and_go_seeds_and_the_current_one_stay() {
        let mut pool = seeds(&["nats://n1:4222"]);
        pool.next_to_try();
        pool.announced(&announced(&["n1:4222", "n2:4222", "n3:4222"]));
        // Connected to n2 now, which no longer lists n3 (it left the cluster), nor n1.
        while pool.next_to_try().as_deref() != Some("nats://n2:4222") {}
        assert!(pool.announced(&announced(&["n2:4222"])));
        let mut left = pool.urls();
        left.sort();
        assert_eq!(left, ["nats://n1:4222", "nats://n2:4222"], "n1 is a seed");
        // Even a server that does not list itself stays while we are on it.
        assert!(!pool.announced(&[]));
        assert_eq!(pool.urls().last(), Some(&"nats://n2:4222"));
    }

    #[test]
    fn a_server_cannot_fill_the_pool_without_bound() {
        let mut pool = seeds(&["nats://seed:4222"]);
        let many: Vec<String> = (0..1000)
            .map(|n| format!("10.0.{}.{}:4222", n / 256, n % 256))
            .collect();
        pool.announced(&many);
        assert_eq!(pool.len(), MAX_SERVERS);
    }

    #[test]
    fn the_wait_after_failed_rounds_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut pool = seeds(&["nats://a:1"]);
        let mut expected = MIN_BACKOFF;
        for _ in 0..10 {
            let pause = pool.pause();
            assert!(
                pause >= expected / 2 && pause <= expected,
                "{pause:?} for {expected:?}"
            );
            expected = (expected * 2).min(MAX_BACKOFF);
        }
        pool.connected();
        assert!(pool.pause() <= MIN_BACKOFF);
    }

    #[test]
    fn jitter_spreads() {
        let mut jitter = Jitter::seeded();
        let waits: std::collections::BTreeSet<Duration> = (0..100)
            .map(|_| jitter.spread(Duration::from_secs(1)))
            .collect();
        assert!(waits.len() > 90, "100 waits, {} different", waits.len());
        assert!(waits.iter().all(|wait| *wait >= Duration::from_millis(500)));
        let mut counts = [0; 4];
        for _ in 0..4000 {
            counts[jitter.below(4)] += 1;
        }
        assert!(counts.iter().all(|&count| count > 800), "{counts:?}");
    }
}
