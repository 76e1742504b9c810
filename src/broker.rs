//! The listening socket, the accept loop, and starting and stopping a broker.
//!
//! [`Broker::bind`] opens the listener (port 0 picks a free port, which tests use);
//! [`Broker::run`] accepts connections on the calling thread forever, which is what the
//! `broker` binary does; [`Broker::spawn`] runs the same loop on a thread of its own and
//! returns a [`BrokerHandle`] whose [`stop`](BrokerHandle::stop) closes everything and
//! joins every thread, which is what tests do.
//!
//! Each accepted connection gets a thread named `client-<n>` that runs
//! `session.rs`. Thread-per-connection is the simplest design there is: each
//! thread's code reads top to bottom, blocking where it waits. Its cost is a thread per
//! client (a stack and a kernel task), which is why `--max-clients` exists: without a
//! limit, enough connections exhaust the machine. Event-loop brokers (Redis, Mosquitto)
//! and brokers on a runtime (NATS, on Go's scheduler) serve many clients per thread
//! instead; `bench conns` measures what our choice costs.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::Mutex;

use crate::outbox::{ConnId, Outbox};
use crate::registry::Registry;
use crate::stats::Stats;

/// Default for `--max-clients`: a class of sixty with a dozen clients each. Every
/// connection takes a file descriptor, so serving this many needs `ulimit -n` above it.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;

/// Default for `--max-line-bytes`: 64 KiB holds any message a person types or pastes,
/// while one connection can never make the broker buffer more than that for one line.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// Default for `--write-timeout`: long enough that a subscriber on a busy laptop or a
/// congested lab network keeps up, short enough that a stalled one holds others back only
/// briefly.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest topic accepted. Topics are names, not payloads; 256 bytes leaves room for the
/// hierarchical names (`building/3/room/301/temperature`) a later version will match.
pub const DEFAULT_MAX_TOPIC_BYTES: usize = 256;

/// Longest subscriber or publisher id accepted: ids name clients in logs.
pub const DEFAULT_MAX_ID_BYTES: usize = 64;

/// Most topics one connection may subscribe to, so one client cannot grow the registry
/// without bound.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1024;

/// Stack for each client thread. Rust's default is 2 MiB. A session never recurses and
/// keeps its buffers on the heap, so a quarter of a megabyte is ample, and ten thousand
/// threads then reserve 2.5 GB of address space instead of 20 GB. (Only the pages a
/// thread touches cost real memory either way.)
const CLIENT_STACK_SIZE: usize = 256 * 1024;

/// How long the accept loop pauses after `accept` fails (for example when the process is
/// out of file descriptors), so it neither spins at full speed nor gives up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The broker's limits. `Config::default()` is what the `broker` binary uses without flags.
///
/// ```
/// let config = pubsub_lab::Config { max_clients: 60, ..Default::default() };
/// assert_eq!(config.max_line_bytes, 64 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections served at once; the next one gets `ERROR broker full (N clients)`.
    pub max_clients: usize,
    /// Longest line accepted, in bytes, not counting the line end.
    pub max_line_bytes: usize,
    /// How long one batch of lines to a subscriber may take to write before it is cut off.
    pub write_timeout: Duration,
    /// Longest topic accepted, in bytes.
    pub max_topic_bytes: usize,
    /// Longest subscriber or publisher id accepted, in bytes.
    pub max_id_bytes: usize,
    /// Most topics one connection may subscribe to.
    pub max_subscriptions: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_clients: DEFAULT_MAX_CLIENTS,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_topic_bytes: DEFAULT_MAX_TOPIC_BYTES,
            max_id_bytes: DEFAULT_MAX_ID_BYTES,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
        }
    }
}

/// What every thread of one broker shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    pub(crate) stats: Arc<Stats>,
    /// Every open connection, so that stopping the broker can close each one (waking its
    /// thread). Not used on the delivery path: locked on connect, disconnect and stop only.
    connections: Mutex<HashMap<ConnId, Arc<Outbox>>>,
    stopping: AtomicBool,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Shared {
        Shared {
            config,
            registry: Registry::default(),
            stats: Arc::new(Stats::default()),
            connections: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
        }
    }

    /// Gives back a connection's slot. Called once per connection, by its cleanup.
    pub(crate) fn forget_connection(&self, conn: ConnId) {
        if self.connections.lock().remove(&conn).is_some() {
            self.stats
                .connections_current
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A broker bound to an address, not yet accepting. See the module docs.
///
/// ```
/// use pubsub_lab::{Broker, Client, Config};
/// use std::time::Duration;
///
/// let broker = Broker::bind("127.0.0.1:0", Config::default())?.spawn()?;
/// let mut client = Client::connect(broker.addr())?;
/// client.subscribe("weather", "sub1")?;
/// client.ping()?; // the broker handles a connection's lines in order: subscribed now
/// client.publish("weather", "Rainy day ahead!", "pub1")?;
/// let delivery = client.recv_timeout(Duration::from_secs(5))?.expect("a delivery");
/// assert_eq!(delivery.message, "Rainy day ahead!");
/// broker.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Broker {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Broker {
    /// Opens the listening socket.
    ///
    /// # Errors
    /// Fails if the address cannot be resolved or bound (already in use, or a privileged
    /// port).
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> io::Result<Broker> {
        let listener = TcpListener::bind(addr)?;
        let shared = Arc::new(Shared::new(config));
        Ok(Broker { listener, shared })
    }

    /// The address actually bound: with port 0, this tells which port was picked.
    ///
    /// # Errors
    /// Only if the operating system cannot report the socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections on this thread until the process ends. The `broker` binary's
    /// main loop.
    pub fn run(self) {
        accept_loop(self.listener, self.shared);
    }

    /// Accepts connections on a new thread and returns a handle to stop it.
    ///
    /// # Errors
    /// Fails if the thread cannot be started or the address cannot be read.
    pub fn spawn(self) -> io::Result<BrokerHandle> {
        let addr = self.listener.local_addr()?;
        let shared = Arc::clone(&self.shared);
        let accept = thread::Builder::new()
            .name("broker-accept".to_string())
            .spawn(move || accept_loop(self.listener, self.shared))?;
        Ok(BrokerHandle {
            addr,
            shared,
            accept: Some(accept),
        })
    }
}

/// A broker running on its own threads. Dropping the handle stops the broker too.
#[derive(Debug)]
pub struct BrokerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl BrokerHandle {
    /// Where the broker listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every topic with its number of subscribers, as `TOPICS` reports them.
    pub fn topic_counts(&self) -> Vec<(String, usize)> {
        self.shared.registry.topic_counts()
    }

    /// The counters, as `STATS` reports them.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        let (topics, subscriptions) = self.shared.registry.totals();
        self.shared.stats.snapshot(topics, subscriptions)
    }

    /// Stops accepting, closes every client connection, and waits for every thread the
    /// broker started to end.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The accept loop is blocked in accept(): a connection of our own wakes it up so
        // it can see the flag. If that fails, the listener is already broken and the loop
        // has ended.
        let _ = TcpStream::connect(reachable(self.addr));
        if accept.join().is_err() {
            log::error!("the accept thread panicked");
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A wildcard listening address (`0.0.0.0`) cannot be connected to; its loopback can.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Accepts connections until the broker is stopped, then closes every connection and
/// joins every client thread.
fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut clients: Vec<JoinHandle<()>> = Vec::new();
    let mut next_conn: ConnId = 1;
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        match incoming {
            Ok(stream) => {
                // Finished threads need no joining; dropping their handles is enough.
                clients.retain(|client| !client.is_finished());
                if let Some(client) = admit(&shared, stream, next_conn) {
                    clients.push(client);
                }
                next_conn += 1;
            }
            Err(error) => back_off(&error),
        }
    }
    for outbox in shared.connections.lock().values() {
        outbox.close();
    }
    for client in clients {
        if client.join().is_err() {
            log::error!("a client thread panicked");
        }
    }
    log::info!("broker stopped");
}

/// Gives a new connection a slot and a thread, or tells it the broker is full.
fn admit(shared: &Arc<Shared>, stream: TcpStream, conn: ConnId) -> Option<JoinHandle<()>> {
    let max = shared.config.max_clients;
    if shared.connections.lock().len() >= max {
        shared
            .stats
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "#{conn} refused: broker full ({max} clients); raise --max-clients to allow more"
        );
        refuse(stream, &format!("ERROR broker full ({max} clients)\n"));
        return None;
    }
    let timeout = shared.config.write_timeout;
    let outbox = match Outbox::new(conn, stream, timeout, Arc::clone(&shared.stats)) {
        Ok(outbox) => Arc::new(outbox),
        Err(error) => {
            log::debug!("#{conn} left before it could be served: {error}");
            return None;
        }
    };
    // Only this thread adds connections, so the count checked above still holds.
    shared.connections.lock().insert(conn, Arc::clone(&outbox));
    shared
        .stats
        .connections_current
        .fetch_add(1, Ordering::Relaxed);
    shared
        .stats
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let thread_shared = Arc::clone(shared);
    let thread_outbox = Arc::clone(&outbox);
    let spawned = thread::Builder::new()
        .name(format!("client-{conn}"))
        .stack_size(CLIENT_STACK_SIZE)
        .spawn(move || crate::session::serve(thread_shared, thread_outbox));
    match spawned {
        Ok(client) => Some(client),
        Err(error) => {
            log::error!("#{conn} could not get a thread: {error}; lower --max-clients");
            outbox.close();
            shared.forget_connection(conn);
            None
        }
    }
}

/// Writes one line to a connection that will not be served, and closes it.
fn refuse(mut stream: TcpStream, line: &str) {
    // A client that does not read must not block the accept loop: one short line fits in
    // any socket buffer, and this timeout covers the rest.
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(line.as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}

/// After `accept` fails: say why and what to do, then pause briefly.
fn back_off(error: &io::Error) {
    // EMFILE (24) and ENFILE (23): the process or the system is out of file descriptors.
    // Every connection takes one, so this is how "too many clients" usually shows first.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    if matches!(error.raw_os_error(), Some(EMFILE) | Some(ENFILE)) {
        log::warn!(
            "cannot accept a connection: {error}. Raise the limit with `ulimit -n` \
             (or lower --max-clients); retrying in {} ms",
            ACCEPT_BACKOFF.as_millis()
        );
    } else {
        log::warn!(
            "cannot accept a connection: {error}; retrying in {} ms",
            ACCEPT_BACKOFF.as_millis()
        );
    }
    thread::sleep(ACCEPT_BACKOFF);
}
