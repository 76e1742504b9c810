//! # pubsub-lab: a publish/subscribe broker to read, run, break and extend
//!
//! Clients connect over TCP and speak a plain-text line protocol you can type by hand in
//! `nc`: `SUBSCRIBE <topic> <id>`, `UNSUBSCRIBE <topic> <id>`, `PUBLISH <topic> <message>
//! <id>`. The broker sends every subscriber of a topic a `DELIVER` line for each message
//! published to it. The protocol is that of the classic classroom broker on port 9000,
//! so its clients work unchanged; extensions (`HELP`, `PING`, `TOPICS`, `STATS`,
//! `VERBOSE`, `QUIT`) are only ever seen by clients that ask for them.
//!
//! ## What it teaches, and what it leaves out on purpose
//!
//! It is built the simplest way that is still solid: blocking `std::net` sockets, a thread
//! per connection, one mutex around the topic registry. No async runtime, no persistence,
//! no acknowledgements: delivery is *at most once* (a message published to a topic nobody
//! subscribes to is gone; a subscriber that disconnects misses what is published while it
//! is away), and messages from one publisher reach each subscriber in the order they were
//! sent. A subscriber that stops reading is cut off after `--write-timeout` so that it
//! cannot hold the others up.
//!
//! ## Map of the crate
//!
//! Three layers, one job each, then the pieces that tie them together:
//!
//! | module | job |
//! |---|---|
//! | [`framing`] | bytes → lines: buffers a TCP stream and cuts it at `\n`, capping line length |
//! | [`protocol`] | lines ↔ values: [`Command`] parsing, reply and `DELIVER` formatting; no I/O |
//! | `session` (private) | behaviour: one connection's loop, dispatch, batching, cleanup |
//! | [`registry`] | topic → subscribers, the one shared map behind one mutex |
//! | [`outbox`] | a connection's socket and pending lines: batching, write timeout, slow-consumer cut-off |
//! | [`broker`] | listener, accept loop, connection limit, start and stop |
//! | [`stats`], [`clock`], [`trace`] | counters for `STATS`, the cached timestamp, the trace view |
//! | [`client`], [`error`] | the blocking client used by the binaries, benchmark and tests |
//! | [`cli`] | what the binaries in `src/bin/` share |
//!
//! ## Threads, and who reads and writes each socket
//!
//! ```text
//!                    ┌───────────────────────────────┐
//!  connect ────────▶ │ accept loop (`broker-accept`, │  owns the listener
//!                    │ or the broker's main thread)  │  spawns one thread per client
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
//!   client-1 writes the DELIVER line to sockets 2 and 3 itself, outside the registry lock.
//! ```
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
//! broker.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod broker;
pub mod cli;
pub mod client;
pub mod clock;
pub mod error;
pub mod framing;
pub mod outbox;
pub mod protocol;
pub mod registry;
mod session;
pub mod stats;
pub mod trace;

pub use broker::{Broker, BrokerHandle, Config};
pub use client::Client;
pub use error::Error;
pub use protocol::{Command, Delivery};
