//! The session core: one client, from its first command to its cleanup, whatever way it
//! came in. This is the *behaviour* layer, and the one gate every client passes.
//!
//! A way in is a *codec* (bytes, frames, datagrams or HTTP requests to [`Command`]s, and
//! replies back in its own dialect) plus a [`Link`] (`session/link.rs`): who the client
//! is, where its replies and deliveries go, which commands the way in carries at all. Each
//! client is a [`Session`] over its link, and `Session::execute` is the one gate every
//! command passes before its handler (one file per command in `session/commands/`)
//! decides what it does: who the client is (its user, or `anonymous`), access
//! rules, limits, subscription bookkeeping, confirms, and the reason of every refusal. So a
//! rule written here holds for every way in, and a new way in is a codec and a link:
//!
//! | way in | codec | link |
//! |---|---|---|
//! | TCP, line protocol or kn-sock's JSON | `read_loop` and `handle_line`, below | [`TcpLink`] |
//! | WebSocket (line protocol) | `web/connection/ws_session.rs`, a line per text frame | [`TcpLink`] |
//! | UDP | `udp.rs`, a session per address | `udp/link.rs` |
//! | HTTP `/publish`, `/topics`, `/stats` | `web/connection/requests.rs`, a session per request | its `HttpLink` |
//! | Socket.IO | `web/socketio_session.rs`, events as kn-sock's JSON actions | its link |
//!
//! Replies stay typed values ([`Reply`]) until the link writes them, so a confirm or an
//! error always reaches a client in its own dialect.
//!
//! The broker gives every TCP connection a thread that runs [`serve`]. The thread is the
//! only one that reads the connection's socket (others only write to it, through its
//! [`Outbox`]), and it loops:
//!
//! ```text
//!   ┌───────────────────────────────────────────────────────────────────┐
//!   │ next complete line already read?                                  │
//!   │   yes ─▶ parse it (protocol/) ─▶ execute it ─▶ loop                │
//!   │   no  ─▶ flush: write what this thread queued for anyone (router) │
//!   │          ─▶ block in read() for more bytes (framing.rs) ─▶ loop   │
//!   └───────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The connection's first line decides its *dialect* for good: the line protocol, or
//! kn-sock's JSON lines if it starts with `{` (see `protocol/dialect.rs`). The two differ
//! only in how a line is parsed (`handle_command_line`, `handle_json_line`) and how replies
//! and deliveries are written (the link's dialect); from the parsed [`Command`] on, they
//! share every line of this file.
//!
//! Executing a `PUBLISH` is the router's business: the session hands it to its
//! [`Publisher`], which batches it with the publishes around it and delivers the batch
//! (see `router.rs`). The session's own job is the client: its subscriptions, its
//! replies, its mode (`VERBOSE`), and the moment it is about to block, when it tells the
//! publisher to flush and then writes its own replies.
//!
//! Everything a client owns in the broker (its subscriptions, its durable subscriptions'
//! holder, its slot in the connection table, its count in `STATS`) is given back in one
//! place: the `Drop` of [`Session`]. Rust runs it however the thread ends: end of file, a
//! reset, a failed write, even a panic. So no path can forget the cleanup.

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clients::Registered;
use crate::config::format_duration;
use crate::connections::Slot;
use crate::durable::{Durable, Holder};
use crate::framing::{Filled, Frame, LineReader};
use crate::hooks::{ClientInfo, Transport};
use crate::keyed::KeyedList;
use crate::outbox::Outbox;
use crate::peer::Peer;
use crate::protocol::{
    Command, CommandSpec, Dialect, Held, HeldReply, JsonRequest, ProtocolError, Reply,
};
use crate::router::{Publisher, Router};
use crate::scan;
use crate::subscriber::{Offer, Subscriber, SubscriberId};
use crate::throttle::{and_more, Throttle, Verdict, QUIETING};
use crate::trace::{self, Direction};

mod commands;
mod link;

pub(crate) use link::{Entry, Link, TcpLink};

/// How many warnings about one client's bad lines are logged per [`BAD_LINES_INTERVAL`].
const BAD_LINES_LOGGED: u32 = 5;

/// The interval of that throttle.
const BAD_LINES_INTERVAL: Duration = Duration::from_secs(10);

/// How long a TCP connection that holds buffers for a burst (a read buffer grown on the
/// heap, a publisher with its batch) may send nothing before it counts as quiet and gives
/// them back (see `read_loop`). A read that did not fill the buffer is no sign of it: a
/// busy publisher's reads come back part-full all the time, and giving everything back
/// after each one cost a fifth of the broker's CPU time under `bench pairs`, most of it
/// in climbing back through ever bigger reads (see `LineReader::release`). Redis trims
/// an idle client's query buffer from a timer (`clientsCron`, after 2 s); a read timeout
/// is this design's timer, and costs nothing while the connection is busy.
const QUIET_AFTER: Duration = Duration::from_millis(100);

/// Runs one connection to its end. Called on the connection's own thread, which holds
/// `slot` in the connection table.
pub(crate) fn serve(router: Arc<Router>, outbox: Arc<Outbox>, slot: Slot) {
    // A second `Arc` to the outbox, so the reader can borrow its socket while the session
    // owns the first one.
    let connection = Arc::clone(&outbox);
    let socket = connection.socket();
    let mut reader = LineReader::new(socket, router.config().max_line_bytes);
    let client = ClientInfo::new(Transport::Line, Some(outbox.peer().addr()));
    let link = Box::new(TcpLink::new(outbox, slot));
    let mut session = Session::new(router, link, client, Entry::Login);
    if let Err(error) = session.read_loop(socket, &mut reader) {
        log::debug!("#{} read failed: {error}", connection.peer().conn());
    }
    // `session` is dropped here, and its Drop does the cleanup.
}

/// The state of one client while it is connected: the session core. See the module docs.
pub(crate) struct Session {
    router: Arc<Router>,
    /// How the client is reached: its replies and deliveries go through it.
    link: Box<dyn Link>,
    /// The client as the registry holds it.
    subscriber: Arc<dyn Subscriber>,
    /// Where this connection's publishes go, built at its first publish: a connection
    /// that only subscribes, as most do, never holds one (see [`publisher`](Self::publisher)).
    /// Boxed: at 320 bytes it was the largest part of a session, and a session lives at
    /// the top of its thread's stack, where every byte pushes the deepest call closer to a
    /// third 4 KiB page per connection (see `CLIENT_STACK_SIZE` in `server.rs`); on the
    /// heap it costs only its size.
    publisher: Option<Box<Publisher>>,
    /// The topics this connection subscribed to, so the cleanup knows what to remove,
    /// each name shared with the registry (see `keyed.rs` for why a keyed list).
    subscriptions: KeyedList<Arc<str>, ()>,
    /// How this connection speaks, decided by its first line; `None` before it.
    dialect: Option<Dialect>,
    /// Who this is, as the hooks are told.
    client: ClientInfo<'static>,
    /// `VERBOSE on`: acknowledge every accepted command.
    verbose: bool,
    /// The JSON line being executed asked for an acknowledgement (`"verbose": true`).
    asked_ack: bool,
    /// The command being executed came from a line that `Command::parse` read, and so was
    /// searched for line breaks whole (see `Publisher::publish_parsed`).
    parsed_line: bool,
    /// Why the connection is ending, once it is: stop reading after this line.
    quitting: Option<Quit>,
    /// The id the client gave last, shared with the [`Peer`], kept here too so that the
    /// common case, the same id again, costs a comparison and not a lock.
    client_id: Option<Arc<str>>,
    /// Keeps the warnings about this client's bad lines to a few per interval.
    bad_lines: Throttle,
    /// The durable subscriptions this connection holds (see `durable/`).
    durables: Vec<Arc<Durable>>,
    /// The client as durable subscriptions see it, if its way in can hold them.
    holder: Option<Arc<dyn Holder>>,
    /// An `ACK` was handled since the last flush: its record is to be written.
    acked: bool,
    /// Replies that wait for the log to be committed: the `OK PUBLISH` confirms (with
    /// `--data-dir`), and every reply after them, which must not overtake them.
    after_commit: Vec<HeldReply>,
    /// Batches of such replies handed to the log's committer and not sent yet (see
    /// `durable/store.rs`): while there are any, later replies wait behind them too.
    confirms_pending: Arc<AtomicUsize>,
    /// How many `AUTH`s this connection got wrong (see `auth.rs`).
    auth_failures: u32,
    /// The user this connection proved it is, with `AUTH` (see `access.rs`).
    user: Option<Arc<str>>,
    /// On a broker with access control, until `AUTH` succeeds: when the connection is
    /// closed if it has not.
    auth_deadline: Option<Instant>,
    /// The last topic and publisher id the rules allowed this user: a burst of publishes
    /// to one topic is checked once, not once per line (the rules never change while the
    /// broker runs).
    allowed_publish: Option<(Box<str>, Box<str>)>,
    /// The client's entry in the client table (see `clients.rs`); `None` for an HTTP
    /// request, which is a session of one command, not a client that stays.
    listed: Option<Registered>,
    /// What this burst of lines adds to the entry's figures, in plain fields: added to it
    /// once per burst, at `flush`, so a publish pays no atomic for them.
    burst: Burst,
}

/// What one burst of lines adds to a client's figures. See `Session::burst`.
#[derive(Debug, Default)]
struct Burst {
    /// Messages published.
    messages: u64,
    /// Bytes of the lines, `\n` included.
    bytes: u64,
    /// The last command executed.
    last: Option<&'static CommandSpec>,
}

/// Why a session ends before its client leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quit {
    /// The client sent `QUIT`.
    Bye,
    /// The program's hooks refused the client.
    Refused,
    /// No `AUTH` within `--auth-timeout`.
    AuthTimeout,
    /// Too many failed `AUTH`s on this connection.
    AuthFailed,
}

/// The connection's outbox is what holds its durable subscriptions.
impl Holder for Outbox {
    fn holder_id(&self) -> SubscriberId {
        Subscriber::id(self)
    }

    fn push(&self, lines: &[u8]) -> Offer {
        Outbox::push(self, lines)
    }

    fn send(&self) {
        Subscriber::flush(self);
    }
}

impl Session {
    /// A session for the client behind `link`, which the hooks know as `client`, starting
    /// as `entry` says.
    pub(crate) fn new(
        router: Arc<Router>,
        link: Box<dyn Link>,
        client: ClientInfo<'static>,
        entry: Entry,
    ) -> Session {
        let subscriber = link.subscriber();
        let holder = link.holder();
        let listed = (client.transport != Transport::Http).then(|| {
            let peer = link.peer();
            let clients = router.clients();
            clients.register(peer.conn(), peer.addr(), client.transport, link.probe())
        });
        let (auth_deadline, user) = match entry {
            Entry::Login => (router_auth_deadline(&router), None),
            Entry::Anonymous => (None, None),
            Entry::As(user) => (None, user),
        };
        Session {
            auth_deadline,
            durables: Vec::new(),
            holder,
            acked: false,
            after_commit: Vec::new(),
            confirms_pending: Arc::default(),
            auth_failures: 0,
            publisher: None,
            router,
            link,
            subscriber,
            subscriptions: KeyedList::default(),
            dialect: None,
            client,
            verbose: false,
            asked_ack: false,
            parsed_line: false,
            quitting: None,
            client_id: None,
            bad_lines: Throttle::new(BAD_LINES_LOGGED, BAD_LINES_INTERVAL),
            user,
            allowed_publish: None,
            listed,
            burst: Burst::default(),
        }
    }

    /// A session for a WebSocket connection (`web/`). Its frames carry the line protocol
    /// from the first one (the JSON dialect is the TCP port's: a frame that starts with `{`
    /// is just a bad command here), and the hooks know it as [`Transport::WebSocket`]. The
    /// web code asked them about this client at its handshake, so there is no greeting.
    pub(crate) fn websocket(router: Arc<Router>, outbox: Arc<Outbox>, slot: Slot) -> Session {
        let client = ClientInfo::new(Transport::WebSocket, Some(outbox.peer().addr()));
        let link = Box::new(TcpLink::new(outbox, slot));
        let mut session = Session::new(router, link, client, Entry::Login);
        session.dialect = Some(Dialect::Line);
        session
    }

    /// A session for an address of the UDP port (see `udp.rs`): it speaks the line
    /// protocol, cannot log in, and is [`ANONYMOUS`](crate::access::ANONYMOUS) to the
    /// rules. The UDP port asked the hooks about it already.
    pub(crate) fn datagrams(
        router: Arc<Router>,
        link: Box<dyn Link>,
        client: ClientInfo<'static>,
    ) -> Session {
        let mut session = Session::new(router, link, client, Entry::Anonymous);
        session.dialect = Some(Dialect::Line);
        session
    }

    pub(crate) fn peer(&self) -> &Peer {
        self.link.peer()
    }

    /// How many topics and filters the client is subscribed to.
    pub(crate) fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// The id the client gave last (`-` before it gave one).
    pub(crate) fn client_id(&self) -> Arc<str> {
        self.peer().client_id()
    }

    /// Handles lines until the client leaves, sends `QUIT`, or the socket fails.
    fn read_loop(
        &mut self,
        socket: &TcpStream,
        reader: &mut LineReader<&TcpStream>,
    ) -> io::Result<()> {
        // Whether the socket's read timeout is set to `QUIET_AFTER`: see below.
        let mut awaiting_quiet = false;
        loop {
            while let Some(frame) = reader.next_line() {
                match frame {
                    Frame::Line(line) => self.handle_line(line),
                    Frame::TooLong => {
                        let limit = self.router.config().max_line_bytes;
                        self.refuse(&ProtocolError::LineTooLong { limit });
                    }
                }
                if self.quitting.is_some() {
                    self.flush();
                    return Ok(());
                }
            }
            // No complete line left: we are about to block, so first deliver everything
            // this thread queued. This is what batches a burst of publishes into one write
            // per subscriber.
            self.flush();
            if !reader.is_busy() && !awaiting_quiet && self.auth_deadline.is_none() {
                // No more input waiting, for now. A connection holding buffers for a burst
                // (a big read buffer, a publisher) waits only `QUIET_AFTER` with them.
                if reader.holds_heap_buffer() || self.publisher.is_some() {
                    socket.set_read_timeout(Some(QUIET_AFTER))?;
                    awaiting_quiet = true;
                }
            }
            if let Some(deadline) = self.auth_deadline {
                // No AUTH yet: the read may wait only until the deadline.
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return self.auth_timed_out();
                }
                socket.set_read_timeout(Some(left))?;
            }
            let filled = match reader.fill() {
                Err(error) if self.auth_deadline.is_some() && is_timeout(&error) => {
                    return self.auth_timed_out();
                }
                Err(error) if awaiting_quiet && is_timeout(&error) => {
                    // Nothing came for `QUIET_AFTER`: the burst is over, and an idle
                    // connection holds no buffers. The next read waits for as long as it
                    // takes.
                    self.go_quiet();
                    reader.release();
                    socket.set_read_timeout(None)?;
                    awaiting_quiet = false;
                    continue;
                }
                filled => filled?,
            };
            if filled == Filled::Eof {
                if let Some(last) = reader.take_unterminated() {
                    self.handle_line(last);
                    self.flush();
                }
                return Ok(());
            }
        }
    }

    /// Handles one line in this connection's dialect (the first line decides it): parses
    /// it and executes it, or answers it with `ERROR` or its dialect's equivalent.
    pub(crate) fn handle_line(&mut self, line: &[u8]) {
        self.burst.bytes += line.len() as u64 + 1;
        let dialect = match self.dialect {
            Some(dialect) => dialect,
            None => match Dialect::of_first_line(line) {
                None => return, // a blank line decides nothing
                Some(dialect) => {
                    if !self.greet(dialect) {
                        return;
                    }
                    dialect
                }
            },
        };
        match dialect {
            Dialect::Line => self.handle_command_line(line),
            Dialect::Json => self.handle_json_line(line),
        }
    }

    /// The first line told how this connection speaks: from now on its replies and the
    /// deliveries to it are written that way. Then the program's hooks are asked whether
    /// this client may go on (see `hooks.rs`); if not, it is told why and disconnected.
    fn greet(&mut self, dialect: Dialect) -> bool {
        self.dialect = Some(dialect);
        self.link.speak(dialect);
        let transport = match dialect {
            Dialect::Line => Transport::Line,
            Dialect::Json => Transport::Json,
        };
        self.client = ClientInfo::new(transport, Some(self.peer().addr()));
        if let Some(publisher) = &mut self.publisher {
            publisher.set_client(self.client);
        }
        if let Some(listed) = &self.listed {
            listed.set_way_in(transport);
        }
        if dialect == Dialect::Json {
            log::debug!("{} speaks JSON lines", self.peer().tag());
        }
        if let Err(error) = self.router.admit(self.client) {
            self.link.log_event(
                log::Level::Info,
                format_args!("{} refused by the program's hook: {error}", self.peer()),
            );
            self.reply(Reply::Error(&error));
            self.quitting = Some(Quit::Refused);
            return false;
        }
        true
    }

    /// Remembers the id the client gave in a command, for the logs.
    ///
    /// On a broker with access control, only an id the client may go by: one refused as a
    /// forgery (`PUBLISH ... alice` from bob) must not make the log name bob's connection
    /// alice.
    ///
    /// The same id as before, nearly every line, changes nothing whoever may use it, so it
    /// is compared first: one comparison, inlined (see [`scan::same`]), before any rule is
    /// looked up.
    #[inline]
    fn learn_id(&mut self, id: &str) {
        let known = self.client_id.as_deref().map(str::as_bytes);
        if !known.is_some_and(|known| scan::same(known, id.as_bytes())) {
            self.learn_new_id(id);
        }
    }

    /// [`learn_id`](Self::learn_id) for an id that is not the one known: rare, and a call
    /// of its own so that every line's handling does not carry its stack frame (see
    /// `CLIENT_STACK_SIZE` in `server.rs`).
    #[inline(never)]
    fn learn_new_id(&mut self, id: &str) {
        if let (Some(access), Some(user)) = (self.router.access(), &self.user) {
            if !access.may_publish_as(user, id) {
                return;
            }
        }
        let shared: Arc<str> = Arc::from(id);
        self.peer().set_client_id(Arc::clone(&shared));
        if let Some(listed) = &self.listed {
            listed.used_id(Arc::clone(&shared));
        }
        self.client_id = Some(shared);
    }

    fn handle_command_line(&mut self, line: &[u8]) {
        // The parsed line is only ever borrowed from here on. Moved, it would be copied in
        // wider pieces than `parse` wrote it, and the processor would wait for those
        // writes to land (a "store-forwarding" stall: a third of this function's time in
        // `perf annotate` when it was moved).
        let parsed = Command::parse(line);
        // Learn the client's id before tracing, so even its first line shows who sent it.
        if let Ok(Some(command)) = &parsed {
            if let Some(id) = command.client_id() {
                self.learn_id(id);
            }
        }
        if trace::enabled() {
            match &parsed {
                // The trace shows who, never the secret.
                Ok(Some(Command::Auth { user, .. })) => trace::lines(
                    self.peer(),
                    Direction::In,
                    format!("AUTH {user} ***").as_bytes(),
                ),
                _ => trace::lines(self.peer(), Direction::In, line),
            }
        }
        match &parsed {
            Ok(Some(command)) => {
                self.parsed_line = true;
                self.execute(command);
                self.parsed_line = false;
            }
            Ok(None) => {} // a blank line
            Err(error) => self.refuse(error),
        }
    }

    /// A line of kn-sock's JSON dialect: parsed differently, executed the same. A call of
    /// its own, never inlined into `handle_line`: its locals would widen the stack frame
    /// of every line of the other dialect too (see `CLIENT_STACK_SIZE` in `server.rs`).
    #[inline(never)]
    fn handle_json_line(&mut self, line: &[u8]) {
        if trace::enabled() {
            trace::lines(self.peer(), Direction::In, line);
        }
        let request = match JsonRequest::parse(line) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(error) => return self.refuse(&error),
        };
        // A JSON client need not name itself: its address does, as for UDP.
        let default_id = format!("json:{}", self.peer().addr());
        match request.command(&default_id) {
            Ok(command) => {
                if let Some(id) = command.client_id() {
                    self.learn_id(id);
                }
                if request.verbose() {
                    self.execute_acknowledged(&command);
                } else {
                    self.execute(&command);
                }
            }
            Err(error) => self.refuse(&error),
        }
    }

    /// Whether the command being executed is acknowledged: `VERBOSE on`, or a JSON line
    /// with `"verbose": true`.
    fn acknowledge(&self) -> bool {
        self.verbose || self.asked_ack
    }

    /// Executes `command` with an acknowledgement, whatever the mode: for a way in whose
    /// request always wants an answer (a JSON line with `"verbose": true`, an HTTP request).
    pub(crate) fn execute_acknowledged(&mut self, command: &Command<'_>) {
        self.asked_ack = true;
        self.execute(command);
        self.asked_ack = false;
    }

    /// The gate every command passes, from every way in: whether the way in carries it
    /// at all, and the `AUTH` deadline. Then `apply` (in `session/commands/`) does what the
    /// command says.
    pub(crate) fn execute(&mut self, command: &Command<'_>) {
        log::debug!("{} {:?}", self.peer().tag(), command);
        self.burst.last = Some(command.spec());
        if let Err(error) = self.link.carries(command) {
            return self.refuse(&error);
        }
        if let Some(deadline) = self.auth_deadline {
            // Checked at every line, not only when the thread waits for input: a client
            // that pipelines lines must not outstay the deadline.
            if Instant::now() >= deadline {
                let _ = self.auth_timed_out();
                return;
            }
            if !matches!(command, Command::Auth { .. }) {
                return self.refuse(&ProtocolError::AuthRequired);
            }
        }
        self.apply(command);
    }

    /// How long this connection has left to send `AUTH`, while it must still send one:
    /// for a WebSocket, whose reads are not this module's (see `read_loop` for TCP's).
    pub(crate) fn auth_time_left(&self) -> Option<Duration> {
        self.auth_deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// No `AUTH` came in time: says so; the connection is to be ended.
    pub(crate) fn auth_timed_out(&mut self) -> io::Result<()> {
        let timeout = format_duration(self.router.config().auth_timeout);
        log::info!("{} sent no AUTH within {timeout}", self.peer().tag());
        self.refuse(&ProtocolError::AuthTimeout(timeout));
        self.flush();
        self.quitting = Some(Quit::AuthTimeout);
        Ok(())
    }

    /// Sends a reply to this session's own client, through its link, in its dialect.
    /// Deliveries of earlier publishes are handed out first, so that a reply (a `PONG`,
    /// say) never overtakes them; while confirms wait for the log, the reply waits behind
    /// them, already written.
    fn reply(&mut self, reply: Reply<'_>) {
        self.hand_out();
        if self.after_commit.is_empty() && self.confirms_pending.load(Ordering::Acquire) == 0 {
            self.link.reply(&reply);
        } else {
            let mut encoded = Vec::new();
            self.link.encode(&reply, &mut encoded);
            self.after_commit.push(HeldReply::Written(encoded));
        }
    }

    /// Answers a bad line with `ERROR <reason>` (or its dialect's equivalent); the
    /// connection carries on.
    ///
    /// The warning in the log is throttled: a client that sends a flood of bad lines gets
    /// an `ERROR` for each, but the log shows only the first few per interval and a count.
    pub(crate) fn refuse(&mut self, error: &ProtocolError) {
        self.router.stats().errors.fetch_add(1, Ordering::Relaxed);
        // A hook's refusal is the program's rule at work, not a client breaking the
        // protocol: worth knowing, not worth a warning.
        let (level, what) = match error {
            ProtocolError::Refused(_) => (log::Level::Info, "was refused"),
            _ => (log::Level::Warn, "sent a bad line"),
        };
        let peer = self.link.peer();
        match self.bad_lines.check(Instant::now()) {
            Verdict::Log { left_out } => self.link.warn(
                level,
                format_args!("{peer} {what}: {error}{}", and_more(left_out)),
            ),
            Verdict::LogLast => self
                .link
                .warn(level, format_args!("{peer} {what}: {error}{QUIETING}")),
            Verdict::Quiet => {}
        }
        self.reply(Reply::Error(error));
    }

    /// Writes out everything this thread queued: deliveries to other subscribers first,
    /// then our own client's replies, so that when a client reads a `PONG` every delivery
    /// from the commands before it has already been written.
    pub(crate) fn flush(&mut self) {
        if let Some(publisher) = &mut self.publisher {
            publisher.flush();
        }
        self.commit_and_release();
        self.link.flush();
        self.add_burst();
    }

    /// Adds this burst's figures to the client's entry (see `clients.rs`): once per
    /// burst, so the clock is read once per burst too, not once per line.
    fn add_burst(&mut self) {
        if self.burst.bytes == 0 && self.burst.last.is_none() {
            return;
        }
        let burst = std::mem::take(&mut self.burst);
        if let Some(listed) = &self.listed {
            listed.add_burst(burst.messages, burst.bytes, burst.last, Instant::now());
        }
    }

    /// No more input is waiting: give back the batch's memory, so that an idle connection
    /// holds no buffers.
    pub(crate) fn rest(&mut self) {
        if let Some(publisher) = &mut self.publisher {
            publisher.release();
        }
    }

    /// A TCP connection has sent nothing for [`QUIET_AFTER`]: it gives back what it kept
    /// for its burst, its publisher too (the next burst builds another).
    fn go_quiet(&mut self) {
        self.rest();
        self.publisher = None;
        log::debug!(
            "{} is quiet: its burst's buffers are given back",
            self.peer().tag()
        );
    }

    /// This connection's publisher, built the first time a burst needs it.
    fn publisher(&mut self) -> &mut Publisher {
        self.publisher
            .get_or_insert_with(|| new_publisher(&self.router, self.subscriber.id(), self.client))
    }

    /// Offers this connection's batch of publishes, if it has one, to its subscribers
    /// (see `Publisher::hand_out`); returns how many took it.
    fn hand_out(&mut self) -> usize {
        self.publisher
            .as_mut()
            .map_or(0, |publisher| publisher.hand_out())
    }

    /// Why the connection is ending, if it is: a WebSocket says it in its close frame.
    pub(crate) fn quit_reason(&self) -> Option<Quit> {
        self.quitting
    }

    /// Group commit, this connection's part: writes what its `ACK`s appended to the log,
    /// and hands the replies that wait for the log (the confirms of its publishes) to the
    /// log, which sends them once the records are stored as the fsync policy promises
    /// (under `--fsync always`, after the committer's next `fsync`, which carries every
    /// connection's publishes at once). This thread does not wait for the disk: it goes
    /// back to reading publishes. If the log cannot be written, each confirm becomes an
    /// `ERROR` saying so.
    fn commit_and_release(&mut self) {
        if !self.acked && self.after_commit.is_empty() {
            return;
        }
        self.acked = false;
        if self.after_commit.is_empty() {
            // Acknowledgements only: written, nobody waits for them.
            let _ = self.router.durables().commit(false);
            return;
        }
        let held = Held {
            dialect: self.dialect.unwrap_or(Dialect::Line),
            replies: std::mem::take(&mut self.after_commit),
        };
        match &self.holder {
            Some(holder) => {
                self.router
                    .durables()
                    .release_after_commit(held, holder, &self.confirms_pending);
            }
            None => {
                // A way in that holds no connection between commands (a datagram, an
                // HTTP request) waits for the disk itself, and its link takes the replies
                // as values.
                let stored = self.router.durables().commit(true);
                let not_stored = stored.err().map(ProtocolError::NotStored);
                for reply in held.replies {
                    match (reply, &not_stored) {
                        (HeldReply::Confirm { topic, deliveries }, None) => {
                            let topic = &topic;
                            self.link.reply(&Reply::PublishOk { topic, deliveries });
                        }
                        (HeldReply::Confirm { .. }, Some(error)) => {
                            self.link.reply(&Reply::Error(error));
                        }
                        (HeldReply::Written(bytes), _) => self.link.send(&bytes),
                    }
                }
            }
        }
    }

    /// Waits until every reply handed to the log has been sent: before a reply that does
    /// not go through it (`OK DURABLE`), and before the connection closes.
    fn settle(&mut self) {
        if self.confirms_pending.load(Ordering::Acquire) > 0 {
            // Whatever the committer thread is doing, this commit returns only once the
            // disk has everything appended so far, and every waiter it covers is sent.
            let _ = self.router.durables().commit(true);
            self.link.flush();
        }
    }

    /// Removes every subscription of this connection from the registry, under one lock, so
    /// no publisher can pick this connection up again once it is gone.
    fn leave_all_topics(&mut self) {
        // The client table's copy and the user's wildcard places first: what follows is
        // lab 4's exercise, which ends the function.
        if let Some(listed) = &self.listed {
            listed.unsubscribed_all();
        }
        self.give_back_user_wildcards(self.subscriptions.iter().map(|(topic, ())| &**topic));
        // lab:begin 04 cleanup on disconnect
        let topics = self.subscriptions.iter().map(|(topic, ())| topic);
        self.router.unsubscribe_all(topics, self.subscriber.id());
        self.subscriptions.clear();
        // lab:end 04
    }
}

/// When a new connection must have sent `AUTH` by, if the broker has access control.
fn router_auth_deadline(router: &Router) -> Option<Instant> {
    router
        .access()
        .map(|_| Instant::now() + router.config().auth_timeout)
}

/// Whether a read ended because its timeout passed (`WouldBlock` on Unix, `TimedOut` on
/// Windows).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Drop for Session {
    /// The one cleanup of a connection; see the module docs for why it lives in `Drop`.
    fn drop(&mut self) {
        // Taken out first, so that the cleanup below does not change what it lists.
        let listed = self.listed.take();
        // Lines this thread queued for others are still owed to them, and confirms to our
        // own client.
        self.flush();
        self.settle();
        self.leave_all_topics();
        // What was in flight to this connection waits for the next to resume.
        let me = self.subscriber.id();
        for durable in self.durables.drain(..) {
            durable.release(me);
        }
        let left_out = self.bad_lines.left_out();
        if left_out > 0 {
            log::warn!("{} sent {left_out} more bad lines, not logged", self.peer());
        }
        self.link.close();
        // Out of the client table before the slot is given back, so that a client no
        // longer counted in `STATS` is no longer listed either; with its subscriptions as
        // they were, for the line a cut-off client leaves behind (see `clients.rs`).
        drop(listed);
        // `link` is dropped after this, giving back what it holds (a connection's slot).
    }
}

/// A connection's publisher, at its first publish: once per connection, so kept out of
/// line, away from the publish path it would otherwise be inlined into.
#[cold]
#[inline(never)]
fn new_publisher(
    router: &Arc<Router>,
    own: SubscriberId,
    client: ClientInfo<'static>,
) -> Box<Publisher> {
    Box::new(Publisher::for_connection(Arc::clone(router), own, client))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::connections::{Close, Connections};
    use crate::outbox::Rules;
    use crate::peer::Peer;
    use std::net::TcpListener;
    use std::thread;
    use std::time::Duration;

    /// A connected pair of sockets: (broker side, client side).
    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (broker_side, _) = listener.accept().unwrap();
        (broker_side, client)
    }

    struct Nothing;
    impl Close for Nothing {
        fn close(&self) {}
    }

    /// A session of `router` on a real socket, and the client's end of it.
    fn session(router: &Arc<Router>) -> (Session, TcpStream) {
        let connections = Connections::new(10, 10, Arc::clone(router.stats()));
        let local = "127.0.0.1".parse().unwrap();
        let slot = connections.claim(1, local, Arc::new(Nothing)).unwrap();
        let (broker_side, client_side) = socket_pair();
        let peer = Peer::new(1, broker_side.peer_addr().unwrap());
        let rules = Arc::new(Rules {
            write_timeout: Duration::from_secs(1),
            max_pending_bytes: 1 << 20,
            stats: Arc::clone(router.stats()),
        });
        let outbox = Outbox::new(peer, broker_side, rules).unwrap();
        let client = ClientInfo::new(Transport::Line, Some(outbox.peer().addr()));
        let link = Box::new(TcpLink::new(outbox, slot));
        let session = Session::new(Arc::clone(router), link, client, Entry::Login);
        (session, client_side)
    }

    /// The cleanup lives in `Drop`, so it runs while a panicking thread unwinds: a bug in
    /// one client's thread must not leave its subscriptions behind for publishers to hit.
    #[test]
    fn a_panic_in_a_client_thread_still_removes_its_subscriptions() {
        let router = Arc::new(Router::new(Config::default()));
        let thread_router = Arc::clone(&router);
        let outcome = thread::spawn(move || {
            let (mut session, _client) = session(&thread_router);
            session.execute(&Command::Subscribe {
                topic: "a",
                subscriber_id: "s",
            });
            session.execute(&Command::Subscribe {
                topic: "b",
                subscriber_id: "s",
            });
            assert_eq!(
                session.router.counters()[4..6],
                [("topics", 2), ("subscriptions", 2)]
            );
            panic!("a bug in a command handler");
        })
        .join();
        assert!(outcome.is_err(), "the thread should have panicked");
        assert!(router.topic_counts().is_empty());
        assert_eq!(
            router.stats().connections_current.load(Ordering::Relaxed),
            0
        );
    }

    /// Most connections only subscribe: they never hold a publisher (its 320 bytes are
    /// part of what an idle connection costs). The first publish builds one, and going
    /// quiet drops it.
    #[test]
    fn a_connection_holds_a_publisher_only_once_it_publishes() {
        let router = Arc::new(Router::new(Config::default()));
        let (mut session, _client) = session(&router);
        session.execute(&Command::Subscribe {
            topic: "a",
            subscriber_id: "s",
        });
        session.rest();
        assert!(
            session.publisher.is_none(),
            "a subscriber built a publisher"
        );
        session.execute(&Command::Publish {
            topic: "a",
            message: "m",
            publisher_id: "s",
        });
        assert!(session.publisher.is_some(), "a publish found no publisher");
        session.go_quiet();
        assert!(
            session.publisher.is_none(),
            "a quiet connection kept its publisher"
        );
    }
}
