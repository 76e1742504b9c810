//! Starting and stopping a broker, and using one from inside a program.
//!
//! [`Broker::bind`] checks the [`Config`] and opens the listener (port 0 picks a free port,
//! which tests use); [`Broker::run`] serves until the process ends, which is what the
//! `broker` binary does; [`Broker::spawn`] serves on threads of its own and returns a
//! [`BrokerHandle`], whose [`stop`](BrokerHandle::stop) closes everything and joins every
//! thread, which is what tests do.
//!
//! The handle is also the *embedding API*: a program that runs the broker can publish
//! ([`BrokerHandle::publish`]) and subscribe ([`BrokerHandle::subscribe`]) without a
//! socket, on the same road as every TCP client's messages.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::sync::Arc;

use crate::access::Access;
use crate::config::{Config, ConfigError};
use crate::durable::log::LogError;
use crate::durable::{Durables, Timer};
use crate::hooks::Hooks;
use crate::nats::Bridge;
use crate::protocol::ProtocolError;
use crate::router::{Publisher, Router};
use crate::server::{LineListener, Listener, Running, Server};
use crate::subscription::Subscription;
use crate::sys::SysFigures;
use crate::udp::UdpListener;
use crate::web::WebListener;

/// Why a broker could not start.
#[derive(Debug)]
pub enum StartError {
    /// A setting cannot work; the error names the flag. Fix the value and start again.
    Config(ConfigError),
    /// The address could not be bound: usually another program (another broker) uses the
    /// port, or the port is privileged. Stop the other program or pick another `--port`.
    Bind {
        /// Which listener: `line`, `web`, ...
        listener: &'static str,
        /// The address tried.
        addr: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// The builder was given no listener at all: give it one, such as
    /// [`Builder::line`].
    NoListener,
    /// The operating system refused something else the broker needs (a thread, the
    /// listening socket's address).
    Io(io::Error),
    /// The log of durable subscriptions (`--data-dir`) is damaged in the middle, or
    /// cannot be read or written: the error names the file and the offset.
    Storage(LogError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(error) => write!(f, "invalid setting {error}"),
            StartError::Bind {
                listener,
                addr,
                source,
            } => write!(
                f,
                "could not listen on {addr} ({listener}): {}",
                crate::error::describe(source)
            ),
            StartError::NoListener => write!(f, "a broker needs at least one listener"),
            StartError::Io(error) => write!(f, "{}", crate::error::describe(error)),
            StartError::Storage(error) => write!(f, "cannot start from the log: {error}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(error) => Some(error),
            StartError::Bind { source, .. } | StartError::Io(source) => Some(source),
            StartError::NoListener => None,
            StartError::Storage(error) => Some(error),
        }
    }
}

impl From<io::Error> for StartError {
    fn from(error: io::Error) -> StartError {
        StartError::Io(error)
    }
}

/// A broker bound to an address, not yet serving. See the module docs.
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
pub struct Broker {
    server: Arc<Server>,
    addr: SocketAddr,
    udp_addr: Option<SocketAddr>,
    web_addr: Option<SocketAddr>,
    listeners: Vec<Box<dyn Listener>>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker").field("addr", &self.addr).finish()
    }
}

/// Puts a [`Broker`] together: settings, then listeners, then [`bind`](Builder::bind).
/// Nothing is opened before `bind`, which checks the settings first.
#[derive(Default)]
pub struct Builder {
    config: Config,
    /// Where the line protocol listens; `None` for a broker without it.
    line: Option<Result<Vec<SocketAddr>, StartError>>,
    /// Where datagrams are taken; `None` for a broker without UDP.
    udp: Option<Result<Vec<SocketAddr>, StartError>>,
    /// The program's hooks (see `hooks.rs`).
    hooks: Option<Arc<dyn Hooks>>,
    /// Where the web listens (HTTP and WebSocket), and whether a port in use is an error
    /// (`true`) or a reason to start without the web; `None` for a broker without it.
    web: Option<(Result<Vec<SocketAddr>, StartError>, bool)>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("hooks", &self.hooks.is_some())
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// The broker's settings (`Config::default()` if not given).
    pub fn config(mut self, config: Config) -> Builder {
        self.config = config;
        self
    }

    /// Serves the line protocol at `addr` (port 0 picks a free port).
    pub fn line(mut self, addr: impl ToSocketAddrs) -> Builder {
        self.line = Some(resolve("line", addr));
        self
    }

    /// Also takes datagrams at `addr` (see `udp.rs`): lines of the protocol, or any text,
    /// which is published to [`Config::udp_topic`].
    pub fn udp(mut self, addr: impl ToSocketAddrs) -> Builder {
        self.udp = Some(resolve("udp", addr));
        self
    }

    /// Serves the web at `addr` (port 0 picks a free port): the live view, `POST /publish`,
    /// `GET /topics`, `GET /stats`, `GET /healthz`, and the line protocol over WebSocket at
    /// `GET /ws` (see `web/mod.rs`).
    ///
    /// ```
    /// use pubsub_lab::Broker;
    /// let broker = Broker::builder().line("127.0.0.1:0").web("127.0.0.1:0").bind()?.spawn()?;
    /// assert!(broker.web_addr().is_some());
    /// # Ok::<(), pubsub_lab::StartError>(())
    /// ```
    pub fn web(mut self, addr: impl ToSocketAddrs) -> Builder {
        self.web = Some((resolve("web", addr), true));
        self
    }

    /// Like [`web`](Self::web), but if the address is in use the broker warns and starts
    /// without the web, instead of failing: what the `broker` binary does for its default
    /// port, 8080, which a student's machine often has something else on.
    pub fn web_if_free(mut self, addr: impl ToSocketAddrs) -> Builder {
        self.web = Some((resolve("web", addr), false));
        self
    }

    /// Asks `hooks` about every client, subscription and publish, on every transport:
    /// see [`hooks`](crate::hooks) for what they can do.
    ///
    /// ```
    /// use pubsub_lab::hooks::{ClientInfo, Hooks, Refusal};
    /// use pubsub_lab::Broker;
    ///
    /// struct NoWeather;
    /// impl Hooks for NoWeather {
    ///     fn on_subscribe(&self, _: ClientInfo<'_>, topic: &str) -> Result<(), Refusal> {
    ///         if topic == "weather" { Err("no weather today".into()) } else { Ok(()) }
    ///     }
    /// }
    ///
    /// let broker = Broker::builder().line("127.0.0.1:0").hooks(NoWeather).bind()?.spawn()?;
    /// assert_eq!(broker.subscribe("weather").unwrap_err().to_string(), "no weather today");
    /// assert!(broker.subscribe("news").is_ok());
    /// # Ok::<(), pubsub_lab::StartError>(())
    /// ```
    pub fn hooks(mut self, hooks: impl Hooks) -> Builder {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// Checks the settings, then binds every listener.
    ///
    /// # Errors
    /// [`StartError::Config`] for a setting that cannot work (checked first, so nothing is
    /// bound); [`StartError::Bind`] for an address that cannot be resolved or bound.
    pub fn bind(self) -> Result<Broker, StartError> {
        self.config.validate().map_err(StartError::Config)?;
        let Some(line) = self.line else {
            return Err(StartError::NoListener);
        };
        // Read before anything is bound, like the other settings.
        let access = match &self.config.auth_file {
            Some(path) => Some(Access::load(path).map_err(|rule| {
                StartError::Config(ConfigError {
                    flag: "--auth-file",
                    value: path.display().to_string(),
                    rule,
                })
            })?),
            None => None,
        };
        let addrs = line?;
        let listener =
            TcpListener::bind(&addrs[..]).map_err(|source| bind_error("line", &addrs, source))?;
        let addr = listener.local_addr()?;
        let mut listeners: Vec<Box<dyn Listener>> = vec![Box::new(LineListener::new(listener))];
        let mut web_addr = None;
        if let Some((addrs, required)) = self.web {
            let addrs = addrs?;
            match TcpListener::bind(&addrs[..]) {
                Ok(web) => {
                    web_addr = Some(web.local_addr()?);
                    listeners.push(Box::new(WebListener::new(web)));
                }
                Err(source) if !required && source.kind() == io::ErrorKind::AddrInUse => {
                    log::warn!(
                        "{}; starting without the web (give it a free port with --http-port, \
                         or 0 to pick one)",
                        bind_error("web", &addrs, source)
                    );
                }
                Err(source) => return Err(bind_error("web", &addrs, source)),
            }
        }
        let mut udp_addr = None;
        let durables = Durables::open(&self.config).map_err(StartError::Storage)?;
        if access.is_none() && !addr.ip().is_loopback() {
            log::warn!(
                "listening on {addr}, open to every machine that can reach it, without \
                 --auth-file: anyone may publish as anyone and read every topic"
            );
        }
        let mut router = Router::with_parts(self.config, self.hooks, Arc::new(durables));
        if let Some(access) = access {
            router.set_access(access);
        }
        let router = Arc::new(router);
        if let Some(udp) = self.udp {
            let addrs = udp?;
            let socket =
                UdpSocket::bind(&addrs[..]).map_err(|source| bind_error("udp", &addrs, source))?;
            let udp = UdpListener::new(socket, &router)?;
            udp_addr = Some(udp.local_addr());
            listeners.push(Box::new(udp));
        }
        let server = Arc::new(Server::new(router));
        Ok(Broker {
            server,
            addr,
            udp_addr,
            web_addr,
            listeners,
        })
    }
}

/// Resolves a listener's address now, keeping the error for `bind` to report.
fn resolve(
    listener: &'static str,
    addr: impl ToSocketAddrs,
) -> Result<Vec<SocketAddr>, StartError> {
    addr.to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|source| StartError::Bind {
            listener,
            addr: "that address".to_string(),
            source,
        })
}

fn bind_error(listener: &'static str, addrs: &[SocketAddr], source: io::Error) -> StartError {
    StartError::Bind {
        listener,
        addr: addrs
            .first()
            .map_or_else(|| "that address".to_string(), ToString::to_string),
        source,
    }
}

impl Broker {
    /// Checks `config`, then opens the line protocol's listening socket at `addr`: the
    /// common case of [`Broker::builder`].
    ///
    /// # Errors
    /// [`StartError::Config`] for a setting that cannot work (checked first, so nothing is
    /// bound); [`StartError::Bind`] if the address cannot be resolved or bound.
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> Result<Broker, StartError> {
        Broker::builder().config(config).line(addr).bind()
    }

    /// A broker to put together: its settings, and each listener it is to run.
    ///
    /// ```
    /// use pubsub_lab::{Broker, Config};
    /// let broker = Broker::builder()
    ///     .config(Config { max_clients: 60, ..Config::default() })
    ///     .line("127.0.0.1:0")
    ///     .bind()?
    ///     .spawn()?;
    /// assert_eq!(broker.addr().ip().to_string(), "127.0.0.1");
    /// # Ok::<(), pubsub_lab::StartError>(())
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The line protocol's address: with port 0, this tells which port was picked.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where datagrams are taken, if the broker was given [`Builder::udp`].
    pub fn local_udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The web's address, if the broker serves the web.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// Where durable subscriptions are kept, in one sentence for the start-up log: in
    /// memory only, or in the log of `--data-dir`.
    pub fn storage(&self) -> String {
        self.server.router.durables().describe()
    }

    /// Serves on this thread until the process ends: the `broker` binary's main loop.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn).
    pub fn run(self) -> Result<(), StartError> {
        self.spawn()?.wait();
        Ok(())
    }

    /// Starts every listener on a thread of its own and returns a handle to stop them.
    ///
    /// # Errors
    /// Fails if a thread cannot be started.
    pub fn spawn(self) -> Result<BrokerHandle, StartError> {
        let mut handle = BrokerHandle {
            addr: self.addr,
            udp_addr: self.udp_addr,
            web_addr: self.web_addr,
            server: self.server,
            running: Vec::new(),
            sys: None,
            durable: None,
            bridge: None,
        };
        if !handle.server.router.config().nats.is_empty() {
            // Before any listener: every client's publishes and subscriptions are seen.
            handle.bridge = Some(Bridge::start(Arc::clone(&handle.server.router))?);
        }
        for listener in self.listeners {
            // If one fails to start, dropping `handle` stops those already running.
            handle
                .running
                .push(Running::start(listener, &handle.server)?);
        }
        let interval = handle.server.router.config().sys_interval;
        if !interval.is_zero() {
            let router = Arc::clone(&handle.server.router);
            handle.sys = Some(SysFigures::start(router, interval)?);
        }
        let durables = Arc::clone(handle.server.router.durables());
        handle.durable = Some(Timer::start(durables)?);
        Ok(handle)
    }
}

/// A broker running on its own threads. Dropping the handle stops the broker too.
pub struct BrokerHandle {
    addr: SocketAddr,
    udp_addr: Option<SocketAddr>,
    web_addr: Option<SocketAddr>,
    server: Arc<Server>,
    running: Vec<Running>,
    /// The thread publishing the `$SYS` figures, unless `--sys-interval` is 0.
    sys: Option<SysFigures>,
    /// The thread of durable subscriptions' timers (see `durable/`).
    durable: Option<Timer>,
    /// The bridge to NATS, if `--nats` was given.
    bridge: Option<Bridge>,
}

impl fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl BrokerHandle {
    /// Where the line protocol listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where datagrams are taken, if the broker was given [`Builder::udp`].
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// Where the web listens (the live view, HTTP publishing, WebSocket), if it does.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// Every topic with its number of subscribers, as `TOPICS` reports them.
    pub fn topic_counts(&self) -> Vec<(String, usize)> {
        self.server.router.topic_counts()
    }

    /// The counters, as `STATS` reports them.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        self.server.router.counters()
    }

    /// Publishes a message from inside the program, exactly as a client's `PUBLISH` would
    /// be, and delivers it before returning. Returns how many subscribers took it.
    ///
    /// ```
    /// use pubsub_lab::{Broker, Config};
    /// let broker = Broker::bind("127.0.0.1:0", Config::default())?.spawn()?;
    /// let subscription = broker.subscribe("weather")?;
    /// assert_eq!(broker.publish("weather", "Rainy day ahead!", "app")?, 1);
    /// let delivery = subscription.try_recv()?.expect("delivered before publish returned");
    /// assert_eq!((delivery.message.as_str(), delivery.publisher_id.as_str()), ("Rainy day ahead!", "app"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The [`ProtocolError`] a client would get for the same topic, message or id (one
    /// word for topic and id, one line for the message, within the limits).
    pub fn publish(
        &self,
        topic: &str,
        message: &str,
        publisher_id: &str,
    ) -> Result<usize, ProtocolError> {
        let router = &self.server.router;
        let mut publisher = Publisher::new(Arc::clone(router));
        publisher.publish(topic, message, publisher_id)?;
        let receivers = publisher.hand_out();
        publisher.flush();
        Ok(receivers)
    }

    /// Subscribes from inside the program: every message published to `topic`, by any
    /// client or by [`publish`](Self::publish), arrives in the returned [`Subscription`].
    ///
    /// # Errors
    /// The [`ProtocolError`] a client would get for the same topic.
    pub fn subscribe(&self, topic: &str) -> Result<Subscription, ProtocolError> {
        Subscription::open(Arc::clone(&self.server.router), topic)
    }

    /// Stops accepting, closes every client connection, and waits for every thread the
    /// broker started to end.
    pub fn stop(mut self) {
        self.shut_down();
    }

    /// Waits until the broker stops (for [`Broker::run`], which never stops it).
    fn wait(mut self) {
        for running in self.running.drain(..) {
            running.wait();
        }
    }

    fn shut_down(&mut self) {
        if self.running.is_empty() {
            return;
        }
        self.server.set_stopping();
        if let Some(sys) = self.sys.take() {
            sys.stop();
        }
        if let Some(bridge) = self.bridge.take() {
            bridge.stop();
        }
        for running in self.running.drain(..) {
            running.stop();
        }
        self.server.connections.close_all_and_join();
        // Last, so that what the connections acknowledged on their way out is written.
        if let Some(durable) = self.durable.take() {
            durable.stop();
        }
        log::info!("broker stopped");
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.shut_down();
    }
}
