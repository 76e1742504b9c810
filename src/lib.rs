//! # pubsub-lab: a publish/subscribe broker to read, run, break and extend
//!
//! Clients connect over TCP and speak a plain-text line protocol you can type by hand in
//! `nc`: `SUBSCRIBE <topic> <id>`, `UNSUBSCRIBE <topic> <id>`, `PUBLISH <topic> <message>
//! <id>`. The broker sends every subscriber of a topic a `DELIVER` line for each message
//! published to it. The protocol is that of the classic classroom broker on port 9000,
//! so its clients work unchanged; extensions (`HELP`, `PING`, `TOPICS`, `STATS`,
//! `VERBOSE`, `QUIT`, MQTT-style wildcards and retained messages, `$SYS` figures) are only
//! ever seen by clients that ask for them.
//!
//! ## What it teaches, and what it leaves out on purpose
//!
//! It is built the simplest way that is still solid: blocking `std::net` sockets, a thread
//! per connection, one mutex around the topic registry (and a few small ones elsewhere,
//! each guarding one thing: see "Locks" below). No async runtime. A classic
//! subscription is *at most once* (a message published to a topic nobody subscribes to is
//! gone; a subscriber that disconnects misses what is published while it is away); a
//! durable one (`DURABLE`, see [`durable`]) is *at least once*, with acknowledgements and,
//! with `--data-dir`, a log that survives crashes. Messages from one publisher reach each
//! subscriber in the order they were sent. A subscriber that stops reading is cut off after `--write-timeout` so that it
//! cannot hold the others up.
//!
//! ## Map of the crate
//!
//! Layers, each importing only from the layers above it in this table:
//!
//! | layer | module | job |
//! |---|---|---|
//! | ground | [`config`] | every setting, its default and why, checked before anything binds |
//! | | [`peer`], [`stats`], [`clock`], [`trace`] | naming clients, counters for `STATS`, the cached timestamp, the trace view |
//! | | [`text`] | line breaks the protocol refuses; client text escaped for human eyes |
//! | | [`scan`] | finding a byte eight bytes at a time: the `\n` of a line, the spaces between tokens; comparing a publish's topic and ids |
//! | | [`keyed`] | a list that finds its entries by key: searched while short, indexed once long |
//! | | [`throttle`] | logs in proportion to time, not to input |
//! | | [`topic`] | topic names and filters: levels, `+`, `#`, MQTT's rules |
//! | | [`access`] | the auth file: users (and `anonymous`), secrets compared in constant time, allow rules |
//! | bytes | [`framing`] | buffers a TCP stream and cuts it at `\n`, capping line length |
//! | messages | [`protocol`] | lines ↔ values: the command table, parsing, replies, `DELIVER`, and the same as kn-sock's JSON lines; the one grammar of topics, ids and messages ([`protocol::grammar`]); no I/O |
//! | | [`json`] | JSON read and written by hand, for the dialects that speak it |
//! | | [`auth`] | logging in, once for every way in: failures delayed, counted, budgeted per address |
//! | routing | [`batch`] | consecutive publishes to one topic, formatted once |
//! | | [`hooks`] | the embedding program's hooks: asked on connect, subscribe, unsubscribe and publish |
//! | | [`subscriber`] | the [`Subscriber`](subscriber::Subscriber) handle every kind of subscriber implements |
//! | | [`tree`] | wildcard filters in a tree of levels, and the walk that finds those a topic matches |
//! | | [`registry`] | topic → subscribers, the one shared map behind one mutex; retained messages |
//! | | [`clients`] | every connected client and what it is doing, for `CLIENTS`, `KICK` and `/metrics` |
//! | | [`durable`] | durable subscriptions: acknowledgements, redelivery, the log on disk |
//! | | [`router`] | the one road of every message: look up, batch, hand out, flush; the grammar, the access rules and the hooks applied to every way in |
//! | | [`subscription`] | the in-process subscriber, for programs that embed the broker |
//! | | [`uplink`] | where local messages go beyond this broker, and the interest it is told of |
//! | sessions | [`outbox`] | a TCP connection as a subscriber: pending lines, write timeout, cut-off |
//! | | [`connections`] | slots (`--max-clients`), and closing every connection at stop |
//! | | `session` (private) | the session core every client has, whatever its way in (a `Link`): who it is, what each command does (`session/commands/`, one file per command), its subscriptions, limits, replies and confirms, its cleanup; and the TCP connection's read loop |
//! | bridges | [`nats`] | a NATS client by hand, and the bridge that joins brokers through a NATS cluster |
//! | server | `server` (private) | listeners, each on its accept thread; admitting connections |
//! | | `sys` (private) | the broker's own figures, published as retained `$SYS/broker/...` messages |
//! | | [`udp`] | the UDP port: a session per address; datagrams in, one datagram per delivery out, leases |
//! | | [`web`] | the web listener: HTTP/1.1 (each request a session of one command), WebSocket carrying the line protocol, the live view |
//! | | [`broker`] | [`Broker`] and [`BrokerHandle`]: start, stop, publish and subscribe in-process |
//! | clients | [`client`], [`error`] | the blocking client used by the binaries, benchmark and tests |
//! | | [`cli`] | what the binaries in `src/bin/` share (logging); no module above uses it |
//!
//! ## The life of a PUBLISH
//!
//! One message, from the publisher's socket to a subscriber's, all on the publisher's
//! connection thread (every function named is one call on the way: 18 per line once the
//! batch for its topic is open, 33 from the accept to the write):
//!
//! | step | function | file |
//! |---|---|---|
//! | 1 | `LineListener::serve` accepts; `admit` gives the connection a slot, an [`Outbox`](outbox::Outbox) and a thread that runs `session::serve` | `server.rs` |
//! | 2 | `Session::read_loop`: [`LineReader::fill`](framing::LineReader::fill) reads bytes, [`LineReader::next_line`](framing::LineReader::next_line) cuts a line | `session.rs`, `framing.rs` |
//! | 3 | `Session::handle_line` → `handle_command_line` → [`Command::parse`]: [`CommandSpec::find`](protocol::CommandSpec::find) looks the word up in the table, `split` cuts the arguments by their shapes, [`build`](protocol::CommandSpec::build) makes `Command::Publish` | `session.rs`, `protocol/command.rs` |
//! | 4 | `Session::execute`, the gate (what the way in carries, the `AUTH` deadline) → `Session::apply`, the one `match` → `Session::publish` → `check_publisher` (the auth file's rules; returns at once without one) | `session.rs`, `session/commands/mod.rs`, `session/commands/publish.rs` |
//! | 5 | `Publisher::publish_parsed` → `publish_checked`: the grammar's [`check_id`](protocol::grammar::check_id) when the id is not the batch's last one (the message's own [`check_message`](protocol::grammar::check_message) only for the other ways in, through [`publish`](router::Publisher::publish): `Command::parse` already searched this line whole); for a new batch [`check_topic`](protocol::grammar::check_topic), one [`Registry::subscribers`](registry::Registry::subscribers) lookup (the registry's lock, taken and given back) and one [`Clock::now`](clock::Clock::now); the hooks' say, only if the program gave any | `router.rs`, `protocol/grammar.rs`, `registry.rs`, `clock.rs` |
//! | 6 | [`Batch::start`](batch::Batch::start), [`Batch::add`](batch::Batch::add) → [`write_delivery`](protocol::write_delivery): the `DELIVER` line, formatted once | `batch.rs`, `protocol/delivery.rs` |
//! | 7 | [`Publisher::hand_out`](router::Publisher::hand_out) → `fan_out` → [`Subscriber::deliver`](subscriber::Subscriber::deliver) (a big batch, written in place to a subscriber that keeps up) or [`Subscriber::offer`](subscriber::Subscriber::offer) (copied into its outbox) | `router.rs`, `outbox.rs` |
//! | 8 | no line left: `Session::flush` → [`Publisher::flush`](router::Publisher::flush) → each outbox's [`flush`](subscriber::Subscriber::flush) writes its lines, one `write` per subscriber; then the connection's own replies | `session.rs`, `router.rs`, `outbox.rs` |
//!
//! Every other way in joins this road at step 4: a WebSocket frame, a datagram, an HTTP
//! request and a JSON line are each turned into a [`Command`] by their own codec and
//! executed by the same `Session::execute`. What each command does is one file in
//! `session/commands/`.
//!
//! ## Threads, and who reads and writes each socket
//!
//! ```text
//!                    ┌───────────────────────────────┐
//!  connect ────────▶ │ accept thread (`accept-line`) │  owns the listener
//!                    │ spawns one thread per client  │
//!                    └──────────────┬────────────────┘
//!            ┌──────────────────────┼───────────────────────┐
//!            ▼                      ▼                       ▼
//!   ┌─────────────────┐   ┌─────────────────┐     ┌─────────────────┐
//!   │ client-1 (pub1) │   │ client-2 (sub1) │ ... │ client-3 (sub2) │  each is the only
//!   │ reads socket 1  │   │ reads socket 2  │     │ reads socket 3  │  reader of its socket
//!   └───────┬─────────┘   └─────────────────┘     └─────────────────┘
//!           │ PUBLISH weather ...      ▲ writes: Outbox 2     ▲ Outbox 3
//!           ▼                          │                      │
//!   ┌──────────────────────┐           │                      │
//!   │ Registry (one Mutex) │── subscribers of "weather" ──────┘
//!   └──────────────────────┘
//!   client-1 writes the DELIVER line to sockets 2 and 3 itself, outside the registry lock,
//!   as long as each keeps up; one that falls behind gets a `writer-<n>` thread of its own
//!   until it has caught up (see `outbox.rs`).
//! ```
//!
//! The web listener (`accept-web`) starts a `web-<n>` thread per connection the same way;
//! a browser's WebSocket is then one more reader of its own socket, and one more outbox.
//! The UDP port has no connections to accept: one thread (`udp-<port>`) reads every
//! datagram and keeps a session per address, and one more (`udp-send-<port>`) sends every
//! datagram, answers and deliveries alike; a publisher only copies its lines into each
//! address's buffer (see `udp/sender.rs`).
//!
//! ## Locks
//!
//! Every mutex guards one thing, and its field's doc says which. No lock is held while
//! writing to a socket, and a thread holds two at once only in the orders below (each
//! pair is taken left to right, never the other way, which is what rules out a deadlock):
//!
//! | lock | guards | taken with |
//! |---|---|---|
//! | `Registry::leaving` | the turn of a subscriber leaving many topics | then `Registry::inner` |
//! | `Registry::inner` | topics, filters, retained messages | then a new subscriber's own lock, to offer it the retained messages (see `Registry::subscribe`) |
//! | `Durable::state` | one durable subscription's queue and holder | then its holder's `Outbox::state`, to queue what it sends |
//! | `Outbox::state` | one connection's pending bytes and phase | nothing after it |
//! | `Clients::table`, `Client::names` | the client table; one client's user, ids and filters | nothing after either (a listing copies the table out, then reads each client and its `Outbox::state` with no other lock held) |
//! | `Durables::subscriptions` | the durable subscriptions by filter and id | nothing after it |
//! | `Connections::table`, `Connections::events` | slots per address; the log throttle | not with each other |
//! | `Logins::windows`, `Logins::warnings` | failed logins per address; their log throttle | not with each other |
//! | `Peer::client_id`, `UdpSubscriber::pending` | the last id a client gave; an address's deliveries waiting for the UDP sender | nothing after it (the sender's queue is a channel) |
//! | the NATS bridge's `state`, `pool`, `sids`; the durable log's locks | see `nats/bridge.rs` and `durable/store.rs` | as each says |
//!
//! ## Using it as a library
//!
//! ```
//! use pubsub_lab::{Broker, Client, Config};
//! use std::time::Duration;
//!
//! let broker = Broker::bind("127.0.0.1:0", Config::default())?.spawn()?;
//! let mut subscriber = Client::connect(broker.addr())?;
//! subscriber.subscribe("weather", "sub1")?;
//! subscriber.ping()?; // the PONG proves the SUBSCRIBE was handled
//!
//! let mut publisher = Client::connect(broker.addr())?;
//! publisher.publish("weather", "Rainy day ahead!", "pub1")?;
//!
//! let delivery = subscriber.recv_timeout(Duration::from_secs(5))?.expect("a delivery");
//! assert_eq!((delivery.topic.as_str(), delivery.publisher_id.as_str()), ("weather", "pub1"));
//!
//! // The program itself can publish and subscribe too, with no socket.
//! let local = broker.subscribe("weather")?;
//! broker.publish("weather", "Sunny later", "app")?;
//! assert_eq!(local.try_recv()?.expect("a delivery").message, "Sunny later");
//! broker.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod access;
pub mod auth;
pub mod batch;
pub mod broker;
pub mod cli;
pub mod client;
pub mod clients;
pub mod clock;
pub mod config;
pub mod connections;
pub mod durable;
pub mod error;
pub mod framing;
pub mod hooks;
pub mod json;
pub mod keyed;
pub mod nats;
pub mod outbox;
pub mod peer;
pub mod protocol;
pub mod registry;
pub mod router;
pub mod scan;
mod server;
mod session;
pub mod stats;
pub mod subscriber;
pub mod subscription;
mod sys;
pub mod text;
pub mod throttle;
pub mod topic;
pub mod trace;
pub mod tree;
pub mod udp;
pub mod uplink;
pub mod web;

pub use broker::{Broker, BrokerHandle, Builder, StartError};
pub use client::Client;
pub use config::Config;
pub use error::Error;
pub use protocol::{Command, Delivery};
pub use subscription::{CutOff, Subscription};
