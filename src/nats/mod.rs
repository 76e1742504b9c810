//! Many brokers, one system: a bridge from this broker to a NATS cluster.
//!
//! A class that outgrows one broker (several lab rooms, a campus) does not need a
//! clustering protocol of our own: NATS is a proven distributed engine (clusters of
//! servers joined by routes, no single point of failure), and its client protocol is plain
//! text like ours. So each broker started with `--nats nats://host:port` becomes one NATS
//! client, and every room sees every message:
//!
//! ```text
//!   nc ─▶ broker A ──┐                         ┌── broker B ◀─ nc
//!                    │ HPUB pubsub-lab.news …  │ SUB pubsub-lab.news.> 1
//!                    ▼                         ▼
//!              nats-server 1 ◀── route ──▶ nats-server 2
//! ```
//!
//! | file | job |
//! |---|---|
//! | [`protocol`] | the NATS client protocol: `INFO`, `CONNECT`, `PUB`/`HPUB`, `SUB`/`UNSUB`, `MSG`/`HMSG`, `PING`/`PONG`, `-ERR`, read and written, no I/O |
//! | [`subject`] | topics ↔ subjects: levels become tokens, `+` → `*`, `#` → `>`, the characters a subject cannot carry escaped reversibly |
//! | [`pool`] | the servers to connect to: the seeds, and those the cluster announces (`connect_urls`); the order to try them, the jittered backoff |
//! | [`bridge`] | the connection: its two threads, reconnecting through the pool, interest, exactly-once delivery of what comes back |
//!
//! What the bridge promises:
//!
//! * **Every local publish** goes to subject `<prefix>.<topic>`, its publisher id and
//!   timestamp in headers, so that a subscriber on another broker gets the very `DELIVER`
//!   line a local one does. (The broker's own `$SYS` topics stay local.)
//! * **Interest only.** The broker subscribes on NATS to exactly the topics and filters
//!   its clients hold, and unsubscribes when the last local subscriber of one leaves: a
//!   room nobody in it cares about receives nothing.
//! * **Once per subscriber.** A remote message is published locally once, however many of
//!   the broker's NATS subscriptions it matched, and the local registry hands it to each
//!   subscriber once, however many of its filters match.
//! * **One seed finds the cluster.** A NATS server tells its clients where every node of
//!   its cluster takes clients, and tells them again when a node joins or leaves; the
//!   bridge keeps that list (`STATS` shows its length as `nats_cluster_size`, and the log
//!   warns when it shrinks), and when its node dies it connects to another at once, so a
//!   broker given a single `--nats` loses milliseconds of messages, not the time until
//!   the node is back. What it cannot tell apart is a node that stopped and a cluster
//!   split in two with every node up: only NATS's `/routez` shows which (lab 11).
//! * **NATS down, the room goes on.** Local delivery never waits for NATS. The bridge logs
//!   the loss, retries with a jittered backoff through every server it knows, subscribes
//!   again when it is back, and `STATS` counts what could not be forwarded meanwhile
//!   (`nats_unforwarded`; the log says it too, when the bridge is back): messages are not
//!   buffered for later, as the broker promises *at most once* everywhere.
//!
//! What stays local: **retained messages** (a `RETAIN` is forwarded as an ordinary
//! message; other brokers deliver it to their subscribers of the moment but do not keep
//! it), and **durable subscriptions**, which live in the broker that holds them. NATS's
//! own answer to both is JetStream: a *stream* stores the messages of its subjects on the
//! NATS servers, replicated across the cluster, and a *consumer* remembers how far each
//! reader got. With JetStream, a retained message would be the last message of a subject
//! kept by a stream (`max_msgs_per_subject: 1`), and a durable subscription a durable
//! consumer, so both would survive the loss of any one broker; the bridge would then
//! publish with acknowledgements and could stop dropping messages while NATS is down.
//! That is a larger protocol (JSON requests to `$JS.API.…` subjects), left for later.

pub mod bridge;
pub mod pool;
pub mod protocol;
pub mod subject;

pub use bridge::Bridge;
