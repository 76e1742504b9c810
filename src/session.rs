//! One line-protocol connection, from its first byte to its cleanup: the *behaviour* layer.
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
//! Executing a `PUBLISH` is the router's business: the session hands it to its
//! [`Publisher`], which batches it with the publishes around it and delivers the batch
//! (see `router.rs`). The session's own job is the connection: its subscriptions, its
//! replies, its mode (`VERBOSE`), and the moment it is about to block, when it tells the
//! publisher to flush and then writes its own replies.
//!
//! Everything a connection owns in the broker (its subscriptions, its slot in the
//! connection table, its count in `STATS`) is given back in one place: the `Drop` of
//! [`Session`]. Rust runs it however the thread ends: end of file, a reset, a failed write,
//! even a panic. So no path can forget the cleanup.

use std::io;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access::{self, Action};
use crate::config::format_duration;
use crate::connections::Slot;
use crate::framing::{Filled, Frame, LineReader};
use crate::keyed::KeyedList;
use crate::outbox::Outbox;
use crate::peer::Peer;
use crate::protocol::{Command, ProtocolError, Reply};
use crate::router::{Publisher, Router};
use crate::subscriber::Subscriber;
use crate::text::escaped;
use crate::throttle::{and_more, Throttle, Verdict, QUIETING};
use crate::trace::{self, Direction};

/// How many warnings about one client's bad lines are logged per [`BAD_LINES_INTERVAL`].
const BAD_LINES_LOGGED: u32 = 5;

/// The interval of that throttle.
const BAD_LINES_INTERVAL: Duration = Duration::from_secs(10);

/// Runs one connection to its end. Called on the connection's own thread, which holds
/// `slot` in the connection table.
pub(crate) fn serve(router: Arc<Router>, outbox: Arc<Outbox>, slot: Slot) {
    let conn = outbox.peer().conn();
    slot.connections().log_event(
        log::Level::Info,
        format_args!("#{conn} connected from {}", outbox.peer().addr()),
    );
    // A second `Arc` to the outbox, so the reader can borrow its socket while the session
    // owns the first one.
    let connection = Arc::clone(&outbox);
    let mut reader = LineReader::new(connection.socket(), router.config().max_line_bytes);
    let mut session = Session::new(router, outbox, slot);
    if let Err(error) = session.read_loop(&mut reader) {
        log::debug!("#{conn} read failed: {error}");
    }
    // `session` is dropped here, and its Drop does the cleanup.
}

/// The state of one connection while its thread runs.
struct Session {
    router: Arc<Router>,
    /// This connection's outbox: our replies go through it, as other publishers'
    /// deliveries do. It owns the socket that `serve` reads from.
    outbox: Arc<Outbox>,
    /// The same outbox as the registry holds it.
    subscriber: Arc<dyn Subscriber>,
    /// Where this connection's publishes go.
    publisher: Publisher,
    /// The topics this connection subscribed to, so the cleanup knows what to remove,
    /// each name shared with the registry (see `keyed.rs` for why a keyed list).
    subscriptions: KeyedList<Arc<str>, ()>,
    /// `VERBOSE on`: acknowledge every accepted command.
    verbose: bool,
    /// Set by `QUIT`: stop reading after this line.
    quitting: bool,
    /// The id the client gave last, shared with the [`Peer`], kept here too so that the
    /// common case, the same id again, costs a comparison and not a lock.
    client_id: Option<Arc<str>>,
    /// Our place in the connection table, given back when the session is dropped.
    slot: Slot,
    /// Keeps the warnings about this client's bad lines to a few per interval.
    bad_lines: Throttle,
    /// The user this connection proved it is, with `AUTH` (see `access.rs`).
    user: Option<Arc<str>>,
    /// On a broker with access control, until `AUTH` succeeds: when the connection is
    /// closed if it has not.
    auth_deadline: Option<Instant>,
    /// The last topic and publisher id the rules allowed this user: a burst of publishes
    /// to one topic is checked once, not once per line (the rules never change while the
    /// broker runs).
    allowed_publish: Option<(Box<str>, Box<str>)>,
}

impl Session {
    fn new(router: Arc<Router>, outbox: Arc<Outbox>, slot: Slot) -> Session {
        let subscriber: Arc<dyn Subscriber> = Arc::clone(&outbox) as Arc<dyn Subscriber>;
        let auth_deadline = router_auth_deadline(&router);
        Session {
            auth_deadline,
            publisher: Publisher::for_connection(Arc::clone(&router), subscriber.id()),
            router,
            outbox,
            subscriber,
            subscriptions: KeyedList::default(),
            verbose: false,
            quitting: false,
            client_id: None,
            slot,
            bad_lines: Throttle::new(BAD_LINES_LOGGED, BAD_LINES_INTERVAL),
            user: None,
            allowed_publish: None,
        }
    }

    fn peer(&self) -> &Peer {
        self.outbox.peer()
    }

    /// Handles lines until the client leaves, sends `QUIT`, or the socket fails.
    fn read_loop(&mut self, reader: &mut LineReader<&TcpStream>) -> io::Result<()> {
        loop {
            while let Some(frame) = reader.next_line() {
                match frame {
                    Frame::Line(line) => self.handle_line(line),
                    Frame::TooLong => {
                        let limit = self.router.config().max_line_bytes;
                        self.refuse(&ProtocolError::LineTooLong { limit });
                    }
                }
                if self.quitting {
                    self.flush();
                    return Ok(());
                }
            }
            // No complete line left: we are about to block, so first deliver everything
            // this thread queued. This is what batches a burst of publishes into one write
            // per subscriber.
            self.flush();
            if !reader.is_busy() {
                // No more input waiting: an idle connection holds no buffers.
                self.publisher.release();
            }
            if let Some(deadline) = self.auth_deadline {
                // No AUTH yet: the read may wait only until the deadline.
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return self.auth_timed_out();
                }
                self.outbox.socket().set_read_timeout(Some(left))?;
            }
            let filled = match reader.fill() {
                Err(error) if self.auth_deadline.is_some() && is_timeout(&error) => {
                    return self.auth_timed_out();
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

    fn handle_line(&mut self, line: &[u8]) {
        let parsed = Command::parse(line);
        // Learn the client's id before tracing, so even its first line shows who sent it.
        if let Ok(Some(id)) = parsed
            .as_ref()
            .map(|command| command.and_then(|c| c.client_id()))
        {
            if self.client_id.as_deref() != Some(id) {
                let shared: Arc<str> = Arc::from(id);
                self.peer().set_client_id(Arc::clone(&shared));
                self.client_id = Some(shared);
            }
        }
        if trace::enabled() {
            match parsed {
                // The trace shows who, never the secret.
                Ok(Some(Command::Auth { user, .. })) => trace::lines(
                    self.peer(),
                    Direction::In,
                    format!("AUTH {user} ***").as_bytes(),
                ),
                _ => trace::lines(self.peer(), Direction::In, line),
            }
        }
        match parsed {
            Ok(Some(command)) => self.execute(command),
            Ok(None) => {} // a blank line
            Err(error) => self.refuse(&error),
        }
    }

    /// The one place that decides what each command does.
    fn execute(&mut self, command: Command<'_>) {
        log::debug!("#{} {:?}", self.peer().conn(), command);
        if self.auth_deadline.is_some() && !matches!(command, Command::Auth { .. }) {
            return self.refuse(&ProtocolError::AuthRequired);
        }
        match command {
            Command::Auth { user, secret } => self.auth(user, secret.0),
            Command::Subscribe {
                topic,
                subscriber_id,
            } => self.subscribe(topic, subscriber_id),
            Command::Unsubscribe {
                topic,
                subscriber_id,
            } => self.unsubscribe(topic, subscriber_id),
            Command::UnsubscribeAll => self.unsubscribe_all(),
            Command::Retain {
                topic,
                message,
                publisher_id,
            } => self.retain(topic, message, publisher_id),
            Command::Unretain {
                topic,
                publisher_id,
            } => match self
                .check_publisher(topic, publisher_id)
                .and_then(|()| self.router.unretain(topic, publisher_id))
            {
                Ok(_) if self.verbose => self.reply(Reply::UnretainOk(topic)),
                Ok(_) => {}
                Err(error) => self.refuse(&error),
            },
            Command::Publish {
                topic,
                message,
                publisher_id,
            } => self.publish(topic, message, publisher_id),
            Command::Ping { token } => self.reply(Reply::Pong(token)),
            Command::Topics { filter } => match self.router.listing(filter) {
                Ok(listing) => self.reply(Reply::Topics {
                    topics: &listing.topics,
                    more: listing.more,
                }),
                Err(error) => self.refuse(&error),
            },
            Command::Stats => {
                let counters = self.router.counters();
                self.reply(Reply::Stats(&counters));
            }
            Command::Verbose { on } => {
                self.verbose = on;
                self.reply(Reply::VerboseOk(on));
            }
            Command::Quit => {
                self.reply(Reply::Bye);
                self.quitting = true;
            }
            Command::Help if self.router.access().is_some() => self.reply(Reply::HelpWithAuth),
            Command::Help => self.reply(Reply::Help),
        }
    }

    /// `SUBSCRIBE <filter> <id>`: a topic, or a filter with wildcards. Retained messages
    /// the filter matches are queued at once, so they come before the `OK` (and before the
    /// `PONG` of a `PING` sent after the `SUBSCRIBE`).
    fn subscribe(&mut self, topic: &str, subscriber_id: &str) {
        let checked = self
            .router
            .check_names(topic, subscriber_id)
            .and_then(|()| self.check_allowed(Action::Subscribe, topic));
        if let Err(error) = checked {
            return self.refuse(&error);
        }
        // Deliveries still in the batch were published before this: they go to the old
        // list of subscribers, not to us.
        self.publisher.hand_out();
        if !self.subscriptions.contains(topic) {
            let limit = self.router.config().max_subscriptions;
            if self.subscriptions.len() >= limit {
                return self.refuse(&ProtocolError::TooManySubscriptions { limit });
            }
            match self.router.subscribe(topic, &self.subscriber) {
                Ok(Some(name)) => {
                    self.subscriptions.insert(name, ());
                }
                Ok(None) => {}
                Err(error) => return self.refuse(&error),
            }
            log::info!(
                "#{} {subscriber_id} subscribed to {topic}",
                self.peer().conn()
            );
        }
        if self.verbose {
            self.reply(Reply::SubscribeOk(topic));
        }
    }

    fn unsubscribe(&mut self, topic: &str, subscriber_id: &str) {
        let checked = self
            .router
            .check_names(topic, subscriber_id)
            .and_then(|()| self.router.check_subscribable(topic));
        if let Err(error) = checked {
            return self.refuse(&error);
        }
        self.publisher.hand_out();
        if self.subscriptions.remove(topic).is_some() {
            self.router.unsubscribe(topic, self.subscriber.id());
            log::info!(
                "#{} {subscriber_id} unsubscribed from {topic}",
                self.peer().conn()
            );
        }
        if self.verbose {
            self.reply(Reply::UnsubscribeOk(topic));
        }
    }

    fn retain(&mut self, topic: &str, message: &str, publisher_id: &str) {
        if let Err(error) = self.check_publisher(topic, publisher_id) {
            return self.refuse(&error);
        }
        match self.publisher.retain(topic, message, publisher_id) {
            Ok(deliveries) if self.verbose => self.reply(Reply::RetainOk { topic, deliveries }),
            Ok(_) => {}
            Err(error) => self.refuse(&error),
        }
    }

    /// `UNSUBSCRIBE` with no arguments: the cleanup of a connection that goes, done for
    /// one that stays.
    fn unsubscribe_all(&mut self) {
        self.publisher.hand_out();
        let topics = self.subscriptions.len();
        self.leave_all_topics();
        log::info!("{} unsubscribed from all {topics} topic(s)", self.peer());
        if self.verbose {
            self.reply(Reply::UnsubscribeAllOk);
        }
    }

    fn publish(&mut self, topic: &str, message: &str, publisher_id: &str) {
        if let Err(error) = self.check_publisher(topic, publisher_id) {
            return self.refuse(&error);
        }
        let receivers = match self.publisher.publish(topic, message, publisher_id) {
            Ok(receivers) => receivers,
            Err(error) => return self.refuse(&error),
        };
        log::debug!(
            "#{} {} published to {} ({receivers} subscribers)",
            self.peer().conn(),
            escaped(publisher_id),
            escaped(topic)
        );
        if self.verbose {
            let deliveries = self.publisher.hand_out();
            self.reply(Reply::PublishOk { topic, deliveries });
        }
    }

    /// `AUTH <user> <secret>`: on a broker with access control, the connection becomes
    /// that user, and from then on may send every other command.
    fn auth(&mut self, user: &str, secret: &str) {
        let router = Arc::clone(&self.router);
        let Some(access) = router.access() else {
            return self.refuse(&ProtocolError::AuthOff);
        };
        if let Some(known) = &self.user {
            let known = known.to_string();
            return self.refuse(&ProtocolError::AlreadyAuthenticated(known));
        }
        match access.authenticate(user, secret) {
            Some(name) => {
                self.user = Some(Arc::from(name));
                self.auth_deadline = None;
                if let Err(error) = self.outbox.socket().set_read_timeout(None) {
                    log::debug!("#{} read timeout not cleared: {error}", self.peer().conn());
                }
                log::info!("#{} authenticated as {name}", self.peer().conn());
                self.reply(Reply::AuthOk(name));
            }
            None => {
                self.router
                    .stats()
                    .auth_failures
                    .fetch_add(1, Ordering::Relaxed);
                // Only this connection's own thread waits: a guesser gets one answer per
                // delay, everyone else is served as before.
                self.flush();
                std::thread::sleep(access::FAILURE_DELAY);
                log::warn!(
                    "{} failed to authenticate as {}",
                    self.peer(),
                    escaped(user)
                );
                self.refuse(&ProtocolError::AuthFailed);
            }
        }
    }

    /// No `AUTH` came in time: says so, and ends the connection.
    fn auth_timed_out(&mut self) -> io::Result<()> {
        let timeout = format_duration(self.router.config().auth_timeout);
        log::info!("#{} sent no AUTH within {timeout}", self.peer().conn());
        self.refuse(&ProtocolError::AuthTimeout(timeout));
        self.flush();
        Ok(())
    }

    /// Whether this connection's user may `action` `name` (always, without access
    /// control).
    fn check_allowed(&self, action: Action, name: &str) -> Result<(), ProtocolError> {
        let (Some(access), Some(user)) = (self.router.access(), &self.user) else {
            return Ok(());
        };
        if access.may(user, action, name) {
            return Ok(());
        }
        Err(ProtocolError::NotAllowed {
            user: user.to_string(),
            action: match action {
                Action::Publish => "publish to",
                Action::Subscribe => "subscribe to",
            },
            name: name.to_string(),
        })
    }

    /// Whether this connection's user may publish to `topic` as `publisher_id`: the
    /// rules, and its own name as id (see `access.rs`).
    fn check_publisher(&mut self, topic: &str, publisher_id: &str) -> Result<(), ProtocolError> {
        let Some(user) = &self.user else {
            return Ok(());
        };
        if let Some((allowed_topic, allowed_id)) = &self.allowed_publish {
            if **allowed_topic == *topic && **allowed_id == *publisher_id {
                return Ok(());
            }
        }
        // Names first, so that what an error repeats is printable text.
        self.router.check_names(topic, publisher_id)?;
        if !access::may_publish_as(user, publisher_id) {
            return Err(ProtocolError::NotAllowed {
                user: user.to_string(),
                action: "publish as",
                name: publisher_id.to_string(),
            });
        }
        self.check_allowed(Action::Publish, topic)?;
        self.allowed_publish = Some((topic.into(), publisher_id.into()));
        Ok(())
    }

    /// Sends a reply to this connection's own client, through its outbox like any line.
    /// Deliveries of earlier publishes are handed out first, so that a reply (a `PONG`,
    /// say) never overtakes them.
    fn reply(&mut self, reply: Reply<'_>) {
        self.publisher.hand_out();
        self.outbox.push_with(|pending| reply.write_lines(pending));
    }

    /// Answers a bad line with `ERROR <reason>`; the connection carries on.
    ///
    /// The warning in the log is throttled: a client that sends a flood of bad lines gets
    /// an `ERROR` for each, but the log shows only the first few per interval and a count.
    fn refuse(&mut self, error: &ProtocolError) {
        self.router.stats().errors.fetch_add(1, Ordering::Relaxed);
        match self.bad_lines.check(Instant::now()) {
            Verdict::Log { left_out } => {
                log::warn!(
                    "{} sent a bad line: {error}{}",
                    self.peer(),
                    and_more(left_out)
                );
            }
            Verdict::LogLast => log::warn!("{} sent a bad line: {error}{QUIETING}", self.peer()),
            Verdict::Quiet => {}
        }
        self.reply(Reply::Error(error));
    }

    /// Writes out everything this thread queued: deliveries to other subscribers first,
    /// then our own client's replies, so that when a client reads a `PONG` every delivery
    /// from the commands before it has already been written.
    fn flush(&mut self) {
        self.publisher.flush();
        self.subscriber.flush();
    }

    /// Removes every subscription of this connection from the registry, under one lock, so
    /// no publisher can pick this connection up again once it is gone.
    fn leave_all_topics(&mut self) {
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
        // Lines this thread queued for others are still owed to them.
        self.flush();
        self.leave_all_topics();
        self.outbox.close();
        self.outbox.join_writer();
        let left_out = self.bad_lines.left_out();
        if left_out > 0 {
            log::warn!("{} sent {left_out} more bad lines, not logged", self.peer());
        }
        self.slot.connections().log_event(
            log::Level::Info,
            format_args!("{} disconnected", self.peer()),
        );
        // `slot` is dropped after this, giving back the connection's place.
    }
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

    /// The cleanup lives in `Drop`, so it runs while a panicking thread unwinds: a bug in
    /// one client's thread must not leave its subscriptions behind for publishers to hit.
    #[test]
    fn a_panic_in_a_client_thread_still_removes_its_subscriptions() {
        let router = Arc::new(Router::new(Config::default()));
        let connections = Connections::new(10, 10, Arc::clone(router.stats()));
        let local = "127.0.0.1".parse().unwrap();
        let slot = connections.claim(1, local, Arc::new(Nothing)).unwrap();
        let (broker_side, _client) = socket_pair();
        let peer = Peer::new(1, broker_side.peer_addr().unwrap());
        let rules = Arc::new(Rules {
            write_timeout: Duration::from_secs(1),
            max_pending_bytes: 1 << 20,
            stats: Arc::clone(router.stats()),
        });
        let outbox = Outbox::new(peer, broker_side, rules).unwrap();
        let thread_router = Arc::clone(&router);
        let outcome = thread::spawn(move || {
            let mut session = Session::new(thread_router, outbox, slot);
            session.execute(Command::Subscribe {
                topic: "a",
                subscriber_id: "s",
            });
            session.execute(Command::Subscribe {
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
}
