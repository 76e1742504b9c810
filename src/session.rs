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

use crate::connections::Slot;
use crate::durable::{Durable, Holder};
use crate::framing::{Filled, Frame, LineReader};
use crate::keyed::KeyedList;
use crate::outbox::Outbox;
use crate::peer::Peer;
use crate::protocol::{Command, ProtocolError, Reply};
use crate::router::{Publisher, Router};
use crate::subscriber::{Offer, Subscriber, SubscriberId};
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
    /// The durable subscriptions this connection holds (see `durable/`).
    durables: Vec<Arc<Durable>>,
    /// The same outbox as durable subscriptions see it.
    holder: Arc<dyn Holder>,
    /// An `ACK` was handled since the last flush: its record is to be written.
    acked: bool,
    /// Replies that wait for the log to be committed: the `OK PUBLISH` confirms (with
    /// `--data-dir`), and every reply after them, which must not overtake them.
    after_commit: Vec<u8>,
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
    fn new(router: Arc<Router>, outbox: Arc<Outbox>, slot: Slot) -> Session {
        let subscriber: Arc<dyn Subscriber> = Arc::clone(&outbox) as Arc<dyn Subscriber>;
        let holder: Arc<dyn Holder> = Arc::clone(&outbox) as Arc<dyn Holder>;
        Session {
            durables: Vec::new(),
            holder,
            acked: false,
            after_commit: Vec::new(),
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
            if reader.fill()? == Filled::Eof {
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
            trace::lines(self.peer(), Direction::In, line);
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
        match command {
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
            } => match self.router.unretain(topic, publisher_id) {
                Ok(_) if self.verbose => self.reply(Reply::UnretainOk(topic)),
                Ok(_) => {}
                Err(error) => self.refuse(&error),
            },
            Command::Publish {
                topic,
                message,
                publisher_id,
            } => self.publish(topic, message, publisher_id),
            Command::Durable {
                filter,
                subscriber_id,
            } => self.durable(filter, subscriber_id),
            Command::Ack { seq } => self.ack(seq),
            Command::Cancel {
                filter,
                subscriber_id,
            } => self.cancel(filter, subscriber_id),
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
            Command::Help => self.reply(Reply::Help),
        }
    }

    /// `SUBSCRIBE <filter> <id>`: a topic, or a filter with wildcards. Retained messages
    /// the filter matches are queued at once, so they come before the `OK` (and before the
    /// `PONG` of a `PING` sent after the `SUBSCRIBE`).
    fn subscribe(&mut self, topic: &str, subscriber_id: &str) {
        if let Err(error) = self.router.check_names(topic, subscriber_id) {
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

    /// `DURABLE <filter> <id>`: starts the durable subscription if there is none, and
    /// makes this connection its holder. The subscription itself sends `OK DURABLE`, then
    /// its messages, in that order (see `Durable::attach`).
    fn durable(&mut self, filter: &str, subscriber_id: &str) {
        let checked = self
            .router
            .check_names(filter, subscriber_id)
            .and_then(|()| self.router.check_subscribable(filter));
        if let Err(error) = checked {
            return self.refuse(&error);
        }
        // One connection holds at most --max-subscriptions durable subscriptions too.
        let limit = self.router.config().max_subscriptions;
        let holds_it = self
            .durables
            .iter()
            .any(|d| d.subscriber_id() == subscriber_id && &**d.filter() == filter);
        if !holds_it && self.durables.len() >= limit {
            return self.refuse(&ProtocolError::TooManySubscriptions { limit });
        }
        self.publisher.hand_out();
        // Confirms still waiting for the log go out before this reply.
        self.commit_and_release();
        let (durable, created) = match self.router.durables().get_or_create(filter, subscriber_id) {
            Ok(found) => found,
            Err(error) => return self.refuse(&error),
        };
        if created {
            let subscriber: Arc<dyn Subscriber> = Arc::clone(&durable) as Arc<dyn Subscriber>;
            if let Err(error) = self.router.subscribe(filter, &subscriber) {
                return self.refuse(&error);
            }
        }
        let attached = durable.attach(Arc::clone(&self.holder));
        if let Some(old) = attached.taken_from {
            old.send();
            log::info!(
                "#{} took durable subscription {} {} over from another connection",
                self.peer().conn(),
                escaped(subscriber_id),
                escaped(filter)
            );
        }
        log::info!(
            "#{} {} holds durable subscription {} ({} pending)",
            self.peer().conn(),
            escaped(subscriber_id),
            escaped(filter),
            attached.pending
        );
        if !self.durables.iter().any(|d| Arc::ptr_eq(d, &durable)) {
            self.durables.push(durable);
        }
    }

    /// `ACK <seq>`: finds the durable subscription of this connection that has that
    /// message in flight.
    fn ack(&mut self, seq: &str) {
        let Ok(seq) = seq.parse::<u64>() else {
            let shown: String = seq.chars().take(32).collect();
            return self.refuse(&ProtocolError::BadSeq(escaped(&shown).to_string()));
        };
        let me = self.subscriber.id();
        if self.durables.iter().any(|durable| durable.ack(seq, me)) {
            self.acked = true;
            if self.verbose {
                self.reply(Reply::AckOk(seq));
            }
        } else {
            self.refuse(&ProtocolError::UnknownSeq(seq));
        }
    }

    /// `CANCEL <filter> <id>`: ends the durable subscription, whoever holds it. Cancelling
    /// one that does not exist is not an error (as `UNSUBSCRIBE` is not).
    fn cancel(&mut self, filter: &str, subscriber_id: &str) {
        let checked = self
            .router
            .check_names(filter, subscriber_id)
            .and_then(|()| self.router.check_subscribable(filter));
        if let Err(error) = checked {
            return self.refuse(&error);
        }
        self.publisher.hand_out();
        let mut dropped = 0;
        if let Some((durable, count)) = self.router.durables().cancel(filter, subscriber_id) {
            self.router.unsubscribe(filter, Subscriber::id(&*durable));
            self.durables.retain(|held| !Arc::ptr_eq(held, &durable));
            self.acked = true;
            dropped = count;
        }
        self.reply(Reply::CancelOk { filter, dropped });
    }

    fn retain(&mut self, topic: &str, message: &str, publisher_id: &str) {
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
            if self.router.durables().on_disk() {
                // Confirmed only once the log is committed: see `flush`.
                Reply::PublishOk { topic, deliveries }.write_lines(&mut self.after_commit);
            } else {
                self.reply(Reply::PublishOk { topic, deliveries });
            }
        }
    }

    /// Sends a reply to this connection's own client, through its outbox like any line.
    /// Deliveries of earlier publishes are handed out first, so that a reply (a `PONG`,
    /// say) never overtakes them.
    fn reply(&mut self, reply: Reply<'_>) {
        self.publisher.hand_out();
        if self.after_commit.is_empty() {
            self.outbox.push_with(|pending| reply.write_lines(pending));
        } else {
            reply.write_lines(&mut self.after_commit);
        }
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
        self.commit_and_release();
        self.subscriber.flush();
    }

    /// Group commit, this connection's part: writes what its publishes and `ACK`s appended
    /// to the log (flushing it to the disk for confirms, if `--fsync always`), then queues
    /// the replies that waited for that. If the log cannot be written, each confirm
    /// becomes an `ERROR` saying so.
    fn commit_and_release(&mut self) {
        if !self.acked && self.after_commit.is_empty() {
            return;
        }
        self.acked = false;
        let confirming = !self.after_commit.is_empty();
        let stored = self.router.durables().commit(confirming);
        if !confirming {
            return;
        }
        let lines = std::mem::take(&mut self.after_commit);
        match stored {
            Ok(()) => {
                self.outbox.push(&lines);
            }
            Err(why) => {
                let error = ProtocolError::NotStored(why);
                let mut out = Vec::new();
                for line in lines.split_inclusive(|&b| b == b'\n') {
                    if line.starts_with(b"OK PUBLISH ") {
                        Reply::Error(&error).write_lines(&mut out);
                    } else {
                        out.extend_from_slice(line);
                    }
                }
                self.outbox.push(&out);
            }
        }
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

impl Drop for Session {
    /// The one cleanup of a connection; see the module docs for why it lives in `Drop`.
    fn drop(&mut self) {
        // Lines this thread queued for others are still owed to them.
        self.flush();
        self.leave_all_topics();
        // What was in flight to this connection waits for the next to resume.
        let me = self.subscriber.id();
        for durable in self.durables.drain(..) {
            durable.release(me);
        }
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
