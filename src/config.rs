//! Every setting of the broker in one place: its default, the reason for that default, and
//! the check that a value makes sense, done before anything binds a socket.
//!
//! The `broker` binary's flags map one to one onto [`Config`]'s fields (`--max-clients` is
//! `max_clients`), and take their defaults from the constants here, so `--help`, the
//! library and the labsheet can never disagree about a default. [`Config::validate`] turns
//! a value that would misbehave later (a write timeout of zero silently cuts off every
//! subscriber; a limit of zero refuses everything) into one clear error now, naming the
//! flag.
//!
//! Durations are written the way people type them (`2s`, `500ms`, `1m`):
//! [`parse_duration`] reads them and [`format_duration`] writes them back.
//!
//! This module is the bottom layer: it imports nothing from the crate. The checks are in
//! `config/validate.rs`, durations as people type them in `config/units.rs`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

mod units;
mod validate;

pub use units::{format_duration, parse_duration};
pub use validate::{parse_nats_url, ConfigError};

/// Where the broker listens unless told otherwise: loopback, so a broker started on a
/// laptop is not open to the network it happens to be on. `--host 0.0.0.0` serves a lab.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// The port the classic classroom broker listened on, kept so that old clients work
/// unchanged.
pub const DEFAULT_PORT: u16 = 9000;

/// The port of the `broker` binary's web listener (the live view, HTTP publishing,
/// WebSocket) unless told otherwise: the customary port of a second web server. The library
/// serves no web unless asked (`Builder::web`), so tests never compete for it.
pub const DEFAULT_HTTP_PORT: u16 = 8080;

/// Default for `--max-clients`: a class of sixty with a dozen clients each. Every
/// connection takes a thread and a file descriptor, so serving this many needs `ulimit -n`
/// above it.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;

/// Default for `--max-clients-per-ip`: a dozen terminals and a benchmark's handful for one
/// machine, so that no one student can hold every slot. Clients on loopback are exempt.
pub const DEFAULT_MAX_CLIENTS_PER_IP: usize = 64;

/// Default for `--max-line-bytes`: 64 KiB holds any message a person types or pastes,
/// while one connection can never make the broker buffer more than that for one line.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// Default for `--write-timeout`: long enough that a subscriber on a busy laptop or a
/// congested lab network keeps up, short enough that a stalled one is found quickly.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Default for `--max-topic-bytes`. Topics are names, not payloads; 256 bytes leaves room
/// for hierarchical names such as `building/3/room/301/temperature`.
pub const DEFAULT_MAX_TOPIC_BYTES: usize = 256;

/// Default for `--max-id-bytes`: ids name clients in logs, so they stay short.
pub const DEFAULT_MAX_ID_BYTES: usize = 64;

/// Default for `--max-subscriptions`: most topics one connection may subscribe to, so one
/// client cannot grow the registry without bound.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1024;

/// Default for `--max-pending-bytes`: the most deliveries a subscriber that has fallen
/// behind may have waiting in the broker before it is cut off. 8 MiB is about 100,000
/// typical `DELIVER` lines, seconds of a busy topic; NATS allows 64 MiB, but a classroom
/// machine serving a thousand clients must not promise each of them that much.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

/// Default for `--max-topics-listed`: the most lines one `TOPICS` reply lists. Ten
/// thousand fill any screen many times over; a million would make a reply of tens of
/// megabytes that the broker must hold while the client reads it.
pub const DEFAULT_MAX_TOPICS_LISTED: usize = 10_000;

/// Default for `--http-timeout`: how long a web client may take to send one whole HTTP
/// request. A browser or `curl` sends one in a millisecond; ten seconds allow for a person
/// typing a request into `nc`, and a client that sends a byte now and then (*slowloris*)
/// cannot hold a thread for longer.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Default for `--socketio-ping-interval`: the Node Socket.IO server's, so that its clients
/// see what they expect (their own timeout is the interval plus the ping timeout).
pub const DEFAULT_SOCKETIO_PING_INTERVAL: Duration = Duration::from_secs(25);

/// Default for `--socketio-ping-timeout`: the Node server's. A Socket.IO client that
/// vanished holds its session (and its thread) for at most the interval plus this.
pub const DEFAULT_SOCKETIO_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Default capacity of an in-process [`Subscription`](crate::Subscription): about a second
/// of a busy topic. A program that embeds the broker and falls further behind than this is
/// cut off, as a slow TCP subscriber is.
pub const DEFAULT_MAILBOX_MESSAGES: usize = 10_000;

/// Default for `--max-topic-levels`: deeper than any real hierarchy (MQTT's longest in
/// common use have under ten), shallow enough that a filter walk stays short.
pub const DEFAULT_MAX_TOPIC_LEVELS: usize = 32;

/// Default for `--max-retained`: one retained message for each of ten thousand sensors.
pub const DEFAULT_MAX_RETAINED: usize = 10_000;

/// Default for `--max-retained-bytes`: what all retained messages together may take. A
/// retained message lives until it is cleared, so without a bound a client could fill the
/// broker's memory one topic at a time.
pub const DEFAULT_MAX_RETAINED_BYTES: usize = 16 * 1024 * 1024;

/// Default for `--max-retained-per-client`: the most topics on which one publisher id keeps
/// a retained message. A class of sixty sharing `--max-retained` (10,000) gets about 166
/// each; 160 leave every student room when one of them fills their share.
pub const DEFAULT_MAX_RETAINED_PER_CLIENT: usize = 160;

/// Default for `--max-retained-per-user`: the same share for a logged-in user, over every
/// id it goes by (60 × 160 = 9,600, under `--max-retained`).
pub const DEFAULT_MAX_RETAINED_PER_USER: usize = 160;

/// Default for `--max-retained-bytes-per-client`: the most bytes of retained messages (their
/// `DELIVER` lines) one publisher id keeps. The count quota alone let one id keep 160
/// messages of 64 KiB, 10 MiB of the 16 MiB store (`--max-retained-bytes`); a class of sixty
/// sharing the store gets about 280 KiB each, and 256 KiB (60 × 256 KiB = 15 MiB) is 160
/// topics of 1.6 KB, or four of the longest lines.
pub const DEFAULT_MAX_RETAINED_BYTES_PER_CLIENT: usize = 256 * 1024;

/// Default for `--max-retained-bytes-per-user`: the same share for a logged-in user, over
/// every id it goes by.
pub const DEFAULT_MAX_RETAINED_BYTES_PER_USER: usize = 256 * 1024;

/// Default for `--sys-interval`: how often the broker publishes its `$SYS` figures. Ten
/// seconds is Mosquitto's default too.
pub const DEFAULT_SYS_INTERVAL: Duration = Duration::from_secs(10);

/// Default for `--udp-topic`: where a datagram that is not a command is published. The
/// classroom's UDP tutorial sends `Event at <time>` lines, so one short topic for all of
/// them.
pub const DEFAULT_UDP_TOPIC: &str = "udp";

/// Default for `--udp-lease`: how long a UDP subscription lasts without a renewal
/// (`SUBSCRIBE` again, or `PING`). A minute: a subscriber that renews every 20 s survives
/// two lost renewals, and one that vanished costs the broker a minute of datagrams to
/// nobody.
pub const DEFAULT_UDP_LEASE: Duration = Duration::from_secs(60);

/// Default for `--udp-max-subscribers`: the most addresses holding a UDP lease at once.
/// Each costs a little memory and a datagram per delivery, and any datagram can claim
/// one, with any source address: the limit is what keeps a hostile classroom from making
/// the broker send to a million addresses.
pub const DEFAULT_UDP_MAX_SUBSCRIBERS: usize = 1024;

/// The port of the classroom's UDP tutorial, which `publisher --udp` and `subscriber
/// --udp` use unless told otherwise. The broker takes datagrams only if `--udp-port` is
/// given.
pub const DEFAULT_UDP_PORT: u16 = 9999;

/// The shortest `--udp-lease` accepted: shorter would expire leases faster than any
/// subscriber could renew them.
pub const MIN_UDP_LEASE: Duration = Duration::from_millis(10);

/// The longest `--udp-lease` accepted: a day. A lease is what ends deliveries to an
/// address that has gone; longer is almost always a typing mistake.
pub const MAX_UDP_LEASE: Duration = Duration::from_secs(24 * 3600);

/// Default for `--max-inflight`: the most messages sent on one durable subscription and
/// not yet acknowledged. A hundred keeps a subscriber busy across a round trip of a
/// busy network without letting one slow client hold thousands of copies in flight (MQTT
/// brokers use 10 to 100; NATS JetStream's `max_ack_pending` defaults to 1000).
pub const DEFAULT_MAX_INFLIGHT: usize = 100;

/// Default for `--ack-timeout`: how long a message sent on a durable subscription may wait
/// for its `ACK` before it is sent again. NATS JetStream's `ack_wait` is 30 s too: long
/// enough for a subscriber that does real work per message, short enough that a stuck
/// one is noticed.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for `--max-queued`: the most messages one durable subscription holds while
/// nobody reads it. Past it the oldest are dropped, so that one forgotten subscription
/// cannot fill the broker's memory or disk.
pub const DEFAULT_MAX_QUEUED: usize = 10_000;

/// Default for `--max-durable`: the most durable subscriptions the broker keeps in all.
/// Each may hold `--max-queued` messages while nobody reads it, so without a limit one
/// client could start subscription after subscription and fill the broker's memory.
pub const DEFAULT_MAX_DURABLE: usize = 1024;

/// Default for `--max-queued-bytes`: the most bytes of `MESSAGE` lines one durable
/// subscription holds while nobody reads it (or acknowledges it): `--max-queued` lines of
/// about a hundred bytes. Without a byte bound, 40 subscriptions that hold 6.4 MB each cost
/// 245 MiB; with it, each holds at most 1 MiB, and the whole broker at most
/// `--max-durable` MiB. Mosquitto's `max_queued_bytes` is the same bound (off by default
/// there); NATS JetStream bounds a stream with `max_bytes` and a consumer's unacknowledged
/// messages with `max_ack_pending`.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 1024 * 1024;

/// Default for `--max-durable-per-client`: the most durable subscriptions one subscriber
/// id (their owner) may have. A program needs one per filter it follows, a handful; eight
/// leave room, while one client cannot take the broker's `--max-durable` from a class.
pub const DEFAULT_MAX_DURABLE_PER_CLIENT: usize = 8;

/// Default for `--max-durable-per-user`: the most durable subscriptions of one logged-in
/// user, over all the ids it goes by. Sixteen for each of a class of sixty is 960, under
/// the broker's 1024 (`--max-durable`): every student gets their share.
pub const DEFAULT_MAX_DURABLE_PER_USER: usize = 16;

/// Default for `--max-durable-retained-bytes`: the most bytes of retained messages a new
/// durable subscription copies into its queue (and so into the log). One line's worth
/// (64 KiB) is every retained message of a small lab, while `DURABLE` and `CANCEL` in a
/// loop can no longer make the broker write megabytes for each line they cost: with the
/// whole 16 MiB retained store copied each time, 260 bytes of them wrote 11.1 MB.
pub const DEFAULT_MAX_DURABLE_RETAINED_BYTES: usize = 64 * 1024;

/// Default for `--max-wildcards`: the most filters with `+` or `#` one connection may
/// subscribe to (its durable subscriptions counted apart, as `--max-subscriptions` counts
/// them). Every publish looks at every wildcard filter that could match: 10,000 of them
/// from one connection made each publish to a matching topic cost 5.2 ms, under the
/// registry's lock. A program needs a few; sixty-four leave room for a monitor.
pub const DEFAULT_MAX_WILDCARDS: usize = 64;

/// Default for `--max-wildcards-per-user`: the most filters with `+` or `#` one logged-in
/// user may hold over all its connections together (durable ones counted apart, as for
/// `--max-wildcards`: `--max-durable-per-user` bounds those). Without it the budget per
/// connection adds up: one user with `--max-clients-per-ip` (64) connections could hold
/// 64 × 64 = 4,096. Two connections' worth, a program and a monitor, is 128; a class of
/// sixty then holds at most 7,680 in all.
pub const DEFAULT_MAX_WILDCARDS_PER_USER: usize = 128;

/// Default size of a log segment: the log starts a new file after this many bytes, and a
/// file is deleted once everything in it is acknowledged. Small enough that acknowledged
/// messages give their disk back soon, large enough that files are few.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// When the log is flushed to the disk itself (`fsync`): `--fsync always|interval|never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// After every batch of publishes read together, before they are confirmed (group
    /// commit). Nothing confirmed is lost, even by a power cut.
    #[default]
    Always,
    /// Once a second, like Redis's `appendfsync everysec`. A crash of the broker loses
    /// nothing (the data is in the operating system's cache); a power cut or a crash of the
    /// operating system can lose the last second of confirmed messages.
    Interval,
    /// Never: the operating system writes when it chooses (Linux: within about 30 s). A
    /// crash of the broker loses nothing; a power cut can lose tens of seconds.
    Never,
}

impl FsyncPolicy {
    /// Every policy, as the flag spells it.
    pub const NAMES: [&'static str; 3] = ["always", "interval", "never"];
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Never => "never",
        })
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<FsyncPolicy, String> {
        match text {
            "always" => Ok(FsyncPolicy::Always),
            "interval" => Ok(FsyncPolicy::Interval),
            "never" => Ok(FsyncPolicy::Never),
            _ => Err(format!(
                "'{text}' is not an fsync policy: use always, interval or never"
            )),
        }
    }
}

/// Default for `--nats-prefix`: the first token of every subject the NATS bridge uses, so
/// that brokers share a NATS cluster with other applications without meeting their
/// subjects.
pub const DEFAULT_NATS_PREFIX: &str = "pubsub-lab";

/// The port of a `--nats` server given without one: NATS's own default.
pub const DEFAULT_NATS_PORT: u16 = 4222;

/// Default for `--auth-timeout`: how long a new connection may take to send `AUTH` on a
/// broker with access control. Five seconds is time enough for a program, or for a person
/// pasting the line into `nc`; NATS allows two.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest line the broker will agree to buffer: with a thousand clients each holding
/// one, 16 MiB lines already reach 16 GiB.
pub const MAX_LINE_BYTES_LIMIT: usize = 16 * 1024 * 1024;

/// The smallest `--max-pending-bytes` accepted: one chunk of a writer thread's writes
/// (`outbox::WRITE_CHUNK`), so that falling behind at all does not mean being cut off.
pub const MIN_PENDING_BYTES: usize = 64 * 1024;

/// The longest write timeout accepted. Longer would let one stalled subscriber hold its
/// resources for hours, and is almost always a typing mistake (`2h` for `2s`).
pub const MAX_WRITE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The broker's settings. `Config::default()` is what the `broker` binary uses without
/// flags; change a field with struct update syntax:
///
/// ```
/// let config = pubsub_lab::Config { max_clients: 60, ..Default::default() };
/// assert_eq!(config.max_line_bytes, 64 * 1024);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Connections served at once; the next one gets `ERROR broker full (N clients)`.
    pub max_clients: usize,
    /// Connections served at once from one address other than loopback; the next one gets
    /// `ERROR too many connections from <ip> (N)`.
    pub max_clients_per_ip: usize,
    /// Longest line accepted, in bytes, not counting the line end.
    pub max_line_bytes: usize,
    /// How long a subscriber that has fallen behind may take to accept 64 KiB before it is
    /// cut off as a slow consumer.
    pub write_timeout: Duration,
    /// The most bytes a subscriber that has fallen behind may have waiting in the broker.
    pub max_pending_bytes: usize,
    /// Longest topic accepted, in bytes.
    pub max_topic_bytes: usize,
    /// Longest subscriber or publisher id accepted, in bytes.
    pub max_id_bytes: usize,
    /// Most topics one connection may subscribe to.
    pub max_subscriptions: usize,
    /// Most topics one `TOPICS` reply lists; it ends with a count of the rest.
    pub max_topics_listed: usize,
    /// Most messages an in-process subscription holds before it is cut off.
    pub mailbox_messages: usize,
    /// Most levels in a topic or filter (`a/b/c` has three).
    pub max_topic_levels: usize,
    /// Most topics with a retained message.
    pub max_retained: usize,
    /// Most bytes all retained messages may take together (their `DELIVER` lines).
    pub max_retained_bytes: usize,
    /// Most topics with a retained message one publisher id published.
    pub max_retained_per_client: usize,
    /// Most topics with a retained message one logged-in user published, over every id it
    /// goes by.
    pub max_retained_per_user: usize,
    /// Most bytes of retained messages one publisher id published.
    pub max_retained_bytes_per_client: usize,
    /// Most bytes of retained messages one logged-in user published, over every id it goes
    /// by.
    pub max_retained_bytes_per_user: usize,
    /// How often the broker publishes its own figures under `$SYS/broker/`; zero turns
    /// them off.
    pub sys_interval: Duration,
    /// The topic a datagram that is not a command is published to.
    pub udp_topic: String,
    /// How long a UDP subscription lasts without a renewal.
    pub udp_lease: Duration,
    /// Most addresses holding a UDP lease at once.
    pub udp_max_subscribers: usize,
    /// How long a web client may take to send each whole HTTP request; an idle keep-alive
    /// connection is closed after as long.
    pub http_timeout: Duration,
    /// Where durable subscriptions are logged, to survive restarts; `None` keeps them in
    /// memory only.
    pub data_dir: Option<PathBuf>,
    /// When the log is flushed to the disk itself.
    pub fsync: FsyncPolicy,
    /// Start from a damaged log all the same (`--salvage`): keep every intact record, move
    /// the damaged bytes aside to `quarantine/` in the data directory, and say what was
    /// lost. Without it, damage stops the start.
    pub salvage: bool,
    /// Most messages sent on one durable subscription and not yet acknowledged.
    pub max_inflight: usize,
    /// How long a message sent on a durable subscription waits for its `ACK` before it is
    /// sent again.
    pub ack_timeout: Duration,
    /// Most messages one durable subscription holds; past it the oldest are dropped.
    pub max_queued: usize,
    /// Most bytes of `MESSAGE` lines one durable subscription holds; past it (as past
    /// `max_queued`) the oldest are dropped.
    pub max_queued_bytes: usize,
    /// Most durable subscriptions in the broker.
    pub max_durable: usize,
    /// Most durable subscriptions of one subscriber id.
    pub max_durable_per_client: usize,
    /// Most durable subscriptions of one logged-in user, over every id it goes by, or of
    /// the anonymous clients of one address other than loopback.
    pub max_durable_per_user: usize,
    /// Most bytes of retained messages a new durable subscription copies.
    pub max_durable_retained_bytes: usize,
    /// Most filters with wildcards one connection may subscribe to.
    pub max_wildcards: usize,
    /// Most filters with wildcards one logged-in user may subscribe to, over all its
    /// connections.
    pub max_wildcards_per_user: usize,
    /// Bytes after which the log starts a new segment file.
    pub segment_bytes: u64,
    /// NATS servers to bridge to (`nats://host:port`), tried in turn: the seeds of one
    /// cluster. Empty: no bridge.
    pub nats: Vec<String>,
    /// The first token(s) of every subject the bridge uses (`--nats-prefix`).
    pub nats_prefix: String,
    /// The auth file (`--auth-file`): users, secrets and rules (see `access.rs`). `None`:
    /// no access control, as the classic broker.
    pub auth_file: Option<std::path::PathBuf>,
    /// How long a connection may take to send `AUTH` when there is an auth file.
    pub auth_timeout: Duration,
    /// With an auth file: take datagrams all the same, from anyone, unchecked.
    pub udp_allow_anonymous: bool,
    /// How often the broker pings a Socket.IO client (Engine.IO's `pingInterval`).
    pub socketio_ping_interval: Duration,
    /// How long a Socket.IO client has to answer a ping before its session is closed.
    pub socketio_ping_timeout: Duration,
    /// `--ws-broadcast`: `/ws` is a broadcast room on this topic (every text frame is
    /// published to it as it is, every delivery sent as the raw frame) instead of the line
    /// protocol. `None`: `/ws` speaks the line protocol.
    pub ws_broadcast: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_clients: DEFAULT_MAX_CLIENTS,
            max_clients_per_ip: DEFAULT_MAX_CLIENTS_PER_IP,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            max_topic_bytes: DEFAULT_MAX_TOPIC_BYTES,
            max_id_bytes: DEFAULT_MAX_ID_BYTES,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_topics_listed: DEFAULT_MAX_TOPICS_LISTED,
            mailbox_messages: DEFAULT_MAILBOX_MESSAGES,
            max_topic_levels: DEFAULT_MAX_TOPIC_LEVELS,
            max_retained: DEFAULT_MAX_RETAINED,
            max_retained_bytes: DEFAULT_MAX_RETAINED_BYTES,
            max_retained_per_client: DEFAULT_MAX_RETAINED_PER_CLIENT,
            max_retained_per_user: DEFAULT_MAX_RETAINED_PER_USER,
            max_retained_bytes_per_client: DEFAULT_MAX_RETAINED_BYTES_PER_CLIENT,
            max_retained_bytes_per_user: DEFAULT_MAX_RETAINED_BYTES_PER_USER,
            sys_interval: DEFAULT_SYS_INTERVAL,
            udp_topic: DEFAULT_UDP_TOPIC.to_string(),
            udp_lease: DEFAULT_UDP_LEASE,
            udp_max_subscribers: DEFAULT_UDP_MAX_SUBSCRIBERS,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            socketio_ping_interval: DEFAULT_SOCKETIO_PING_INTERVAL,
            socketio_ping_timeout: DEFAULT_SOCKETIO_PING_TIMEOUT,
            ws_broadcast: None,
            data_dir: None,
            fsync: FsyncPolicy::default(),
            salvage: false,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            max_queued: DEFAULT_MAX_QUEUED,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_durable: DEFAULT_MAX_DURABLE,
            max_durable_per_client: DEFAULT_MAX_DURABLE_PER_CLIENT,
            max_durable_per_user: DEFAULT_MAX_DURABLE_PER_USER,
            max_durable_retained_bytes: DEFAULT_MAX_DURABLE_RETAINED_BYTES,
            max_wildcards: DEFAULT_MAX_WILDCARDS,
            max_wildcards_per_user: DEFAULT_MAX_WILDCARDS_PER_USER,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            nats: Vec::new(),
            nats_prefix: DEFAULT_NATS_PREFIX.to_string(),
            auth_file: None,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            udp_allow_anonymous: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn nats_settings_are_checked() {
        for (url, ok) in [
            ("nats://h:1", true),
            ("h:4222", true),
            ("nats://[::1]:4222", true),
            ("nats://h:0", false),
            ("nats://:1", false),
            ("tls://h:1", false),
            ("nats://h:x", false),
        ] {
            let config = Config {
                nats: vec![url.to_string()],
                ..Config::default()
            };
            assert_eq!(config.validate().is_ok(), ok, "{url}");
        }
        for (prefix, ok) in [
            ("campus.lab1", true),
            ("", false),
            ("a..b", false),
            ("a.*", false),
            ("a b", false),
            (">", false),
        ] {
            let config = Config {
                nats_prefix: prefix.to_string(),
                ..Config::default()
            };
            let result = config.validate();
            assert_eq!(result.is_ok(), ok, "{prefix:?}");
            if let Err(error) = result {
                assert_eq!(error.flag, "--nats-prefix");
            }
        }
    }

    #[test]
    fn every_limit_of_zero_is_refused_with_its_flag() {
        let zeroed = [
            (
                "--max-clients",
                Config {
                    max_clients: 0,
                    ..Config::default()
                },
            ),
            (
                "--max-line-bytes",
                Config {
                    max_line_bytes: 0,
                    ..Config::default()
                },
            ),
            (
                "--max-topic-bytes",
                Config {
                    max_topic_bytes: 0,
                    ..Config::default()
                },
            ),
            (
                "--max-id-bytes",
                Config {
                    max_id_bytes: 0,
                    ..Config::default()
                },
            ),
            (
                "--max-subscriptions",
                Config {
                    max_subscriptions: 0,
                    ..Config::default()
                },
            ),
            (
                "Config::mailbox_messages",
                Config {
                    mailbox_messages: 0,
                    ..Config::default()
                },
            ),
        ];
        for (flag, config) in zeroed {
            let error = config.validate().unwrap_err();
            assert_eq!(error.flag, flag);
            assert!(error
                .to_string()
                .starts_with(&format!("{flag} 0: must be at least 1")));
        }
    }

    #[test]
    fn write_timeouts_outside_their_range_are_refused() {
        for timeout in [
            Duration::ZERO,
            Duration::from_micros(999),
            Duration::from_secs(3601),
        ] {
            let config = Config {
                write_timeout: timeout,
                ..Config::default()
            };
            assert_eq!(config.validate().unwrap_err().flag, "--write-timeout");
        }
        let config = Config {
            write_timeout: Duration::from_millis(1),
            ..Config::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn udp_settings_outside_their_range_are_refused() {
        let bad = [
            (
                "--udp-topic",
                Config {
                    udp_topic: "two words".into(),
                    ..Config::default()
                },
            ),
            (
                "--udp-topic",
                Config {
                    udp_topic: String::new(),
                    ..Config::default()
                },
            ),
            (
                "--udp-lease",
                Config {
                    udp_lease: Duration::from_millis(1),
                    ..Config::default()
                },
            ),
            (
                "--udp-max-subscribers",
                Config {
                    udp_max_subscribers: 0,
                    ..Config::default()
                },
            ),
        ];
        for (flag, config) in bad {
            assert_eq!(config.validate().unwrap_err().flag, flag);
        }
    }

    #[test]
    fn a_broadcast_room_must_be_a_topic_one_may_publish_to() {
        for topic in ["chat/#", "two words", "$SYS/chat", ""] {
            let config = Config {
                ws_broadcast: Some(topic.to_string()),
                ..Config::default()
            };
            assert_eq!(
                config.validate().unwrap_err().flag,
                "--ws-broadcast",
                "{topic}"
            );
        }
        let chat = Config {
            ws_broadcast: Some("chat".to_string()),
            ..Config::default()
        };
        assert!(chat.validate().is_ok());
    }

    #[test]
    fn socketio_pings_outside_their_range_are_refused() {
        let config = Config {
            socketio_ping_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(
            config.validate().unwrap_err().flag,
            "--socketio-ping-timeout"
        );
    }

    #[test]
    fn http_timeouts_outside_their_range_are_refused() {
        for timeout in [Duration::ZERO, Duration::from_secs(3601)] {
            let config = Config {
                http_timeout: timeout,
                ..Config::default()
            };
            assert_eq!(config.validate().unwrap_err().flag, "--http-timeout");
        }
    }

    #[test]
    fn huge_line_limits_are_refused() {
        let config = Config {
            max_line_bytes: MAX_LINE_BYTES_LIMIT + 1,
            ..Config::default()
        };
        assert_eq!(config.validate().unwrap_err().flag, "--max-line-bytes");
    }

    #[test]
    fn durations_too_large_to_represent_are_an_error_not_a_panic() {
        for text in ["1e30s", "1e30", "1e300ms", "inf", "NaN", "-1s"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn formatted_durations_parse_back() {
        for millis in [1, 250, 1000, 1500, 2000, 60_000] {
            let duration = Duration::from_millis(millis);
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }
}
