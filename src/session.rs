//! One client connection, from its first byte to its cleanup: the *behaviour* layer.
//!
//! The broker gives every connection a thread that runs [`serve`]. The thread is the only
//! one that reads the connection's socket (others only write to it, through its
//! [`Outbox`]), and it loops:
//!
//! ```text
//!   ┌──────────────────────────────────────────────────────────────────┐
//!   │ next complete line already read?                                 │
//!   │   yes ─▶ parse it (protocol.rs) ─▶ execute it ─▶ loop            │
//!   │   no  ─▶ flush the lines this thread queued for others (outbox)  │
//!   │          ─▶ block in read() for more bytes (framing.rs) ─▶ loop  │
//!   └──────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Executing a `PUBLISH` means: ask the registry for the topic's subscribers (a snapshot;
//! the registry lock is held only for that), format the `DELIVER` line, and add it to a
//! [`Batch`] for that topic. Further publishes to the same topic from the same read join
//! the batch. It is pushed into each subscriber's [`Outbox`] when a publish goes to
//! another topic, before any reply, or when the thread runs out of lines. The actual writes
//! happen at the flush, outside any lock shared with other topics. A burst of 500
//! publishes to one topic so costs one registry lookup, one clock reading, and one lock
//! and one write per subscriber, not 500 of each.
//!
//! Everything a connection owns in the broker (its subscriptions, its slot in the
//! connection table, its count in `STATS`) is given back in one place: the `Drop` of
//! [`Session`]. Rust runs it however the thread ends: end of file, a reset, a failed write,
//! even a panic. So no path can forget the cleanup.

use std::collections::HashSet;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::broker::Shared;
use crate::clock::Clock;
use crate::framing::{Filled, Frame, LineReader};
use crate::outbox::{ConnId, Outbox, Pushed, FLUSH_THRESHOLD};
use crate::protocol::{self, Command, ProtocolError, Reply};
use crate::registry::Subscribers;
use crate::trace::{self, Direction};

/// Runs one connection to its end. Called on the connection's own thread by the broker,
/// which has already registered `outbox` in its connection table.
pub(crate) fn serve(shared: Arc<Shared>, outbox: Arc<Outbox>) {
    let conn = outbox.conn();
    log::info!("#{conn} connected from {}", outbox.peer());
    // A second `Arc` to the outbox, so the reader can borrow its socket while the session
    // owns the first one.
    let connection = Arc::clone(&outbox);
    let mut reader = LineReader::new(connection.socket(), shared.config.max_line_bytes);
    let mut session = Session::new(shared, outbox);
    if let Err(error) = session.read_loop(&mut reader) {
        log::debug!("#{conn} read failed: {error}");
    }
    // `session` is dropped here, and its Drop does the cleanup.
}

/// The state of one connection while its thread runs.
struct Session {
    shared: Arc<Shared>,
    /// This connection's outbox: our replies go through it, as other publishers'
    /// deliveries do. It owns the socket that `serve` reads from.
    outbox: Arc<Outbox>,
    /// The topics this connection subscribed to, so the cleanup knows what to remove.
    subscriptions: HashSet<String>,
    /// `VERBOSE on`: acknowledge every accepted command.
    verbose: bool,
    /// Set by `QUIT`: stop reading after this line.
    quitting: bool,
    /// The id the client gave last (`-` until it gives one), for logs and the trace.
    client_id: String,
    /// Deliveries of consecutive publishes to one topic, not yet pushed.
    batch: Batch,
    /// Outboxes this thread pushed into first, which it must flush before it blocks.
    to_flush: Vec<Arc<Outbox>>,
    /// Scratch space for formatting replies, reused rather than allocated each time.
    scratch: Vec<u8>,
    clock: Clock,
}

/// `DELIVER` lines for consecutive publishes to one topic, not yet pushed to anyone.
///
/// A publisher sending a burst to one topic would otherwise look the topic up, read the
/// clock, and take each subscriber's outbox lock once per message; gathered, it does each
/// once per burst. Profiles showed those three costs dominating when there are few
/// subscribers.
///
/// Reusing one lookup for a whole batch is safe because a batch never outlives one read
/// from the socket (it is handed out before the thread blocks): every line in it had
/// already arrived when the lookup was made, so a subscription finished before any of
/// them was sent is in the snapshot. Our own `SUBSCRIBE` and `UNSUBSCRIBE` hand the batch
/// out first, so they are seen by our very next publish. For the same reason the
/// timestamp, read once per batch, is at most one read's handling time old.
#[derive(Debug, Default)]
struct Batch {
    /// Who receives the lines: `None` when the batch is empty.
    subscribers: Option<Subscribers>,
    topic: String,
    timestamp: String,
    lines: Vec<u8>,
    /// How many `DELIVER` lines `lines` holds.
    count: usize,
}

impl Batch {
    fn is_for(&self, topic: &str) -> bool {
        self.subscribers.is_some() && self.topic == topic
    }

    /// Begins a batch. The strings are overwritten in place, so their memory is reused.
    fn start(&mut self, topic: &str, subscribers: Subscribers, timestamp: &str) {
        self.subscribers = Some(subscribers);
        self.topic.clear();
        self.topic.push_str(topic);
        self.timestamp.clear();
        self.timestamp.push_str(timestamp);
    }
}

impl Session {
    fn new(shared: Arc<Shared>, outbox: Arc<Outbox>) -> Session {
        Session {
            shared,
            outbox,
            subscriptions: HashSet::new(),
            verbose: false,
            quitting: false,
            client_id: String::from("-"),
            batch: Batch::default(),
            to_flush: Vec::new(),
            scratch: Vec::new(),
            clock: Clock::default(),
        }
    }

    fn conn(&self) -> ConnId {
        self.outbox.conn()
    }

    /// Handles lines until the client leaves, sends `QUIT`, or the socket fails.
    fn read_loop(&mut self, reader: &mut LineReader<&TcpStream>) -> io::Result<()> {
        loop {
            while let Some(frame) = reader.next_line() {
                match frame {
                    Frame::Line(line) => self.handle_line(line),
                    Frame::TooLong => {
                        let limit = self.shared.config.max_line_bytes;
                        self.refuse(&ProtocolError::LineTooLong { limit });
                    }
                }
                if self.quitting {
                    self.flush_pending();
                    return Ok(());
                }
            }
            // No complete line left: we are about to block, so first deliver everything
            // this thread queued. This is what batches a burst of publishes into one write
            // per subscriber.
            self.flush_pending();
            if reader.fill()? == Filled::Eof {
                if let Some(last) = reader.take_unterminated() {
                    self.handle_line(last);
                    self.flush_pending();
                }
                return Ok(());
            }
        }
    }

    fn handle_line(&mut self, line: &[u8]) {
        let parsed = Command::parse(line).and_then(|command| self.check_limits(command));
        // Learn the client's id before tracing, so even its first line shows who sent it.
        if let Ok(Some(id)) = parsed
            .as_ref()
            .map(|command| command.and_then(|c| c.client_id()))
        {
            // Clients rarely change their id, and telling the outbox takes its lock.
            if self.client_id != id {
                self.client_id = id.to_string();
                self.outbox.set_client_id(id);
            }
        }
        if trace::enabled() {
            trace::lines(self.conn(), &self.client_id, Direction::In, line);
        }
        match parsed {
            Ok(Some(command)) => self.execute(command),
            Ok(None) => {} // a blank line
            Err(error) => self.refuse(&error),
        }
    }

    /// The limits that depend on the broker's configuration rather than on the grammar.
    fn check_limits<'a>(
        &self,
        command: Option<Command<'a>>,
    ) -> Result<Option<Command<'a>>, ProtocolError> {
        let config = &self.shared.config;
        let (topic, id) = match command {
            Some(Command::Subscribe {
                topic,
                subscriber_id: id,
            })
            | Some(Command::Unsubscribe {
                topic,
                subscriber_id: id,
            })
            | Some(Command::Publish {
                topic,
                publisher_id: id,
                ..
            }) => (topic, id),
            _ => return Ok(command),
        };
        if topic.len() > config.max_topic_bytes {
            return Err(ProtocolError::TopicTooLong {
                limit: config.max_topic_bytes,
            });
        }
        if id.len() > config.max_id_bytes {
            return Err(ProtocolError::IdTooLong {
                limit: config.max_id_bytes,
            });
        }
        Ok(command)
    }

    /// The one place that decides what each command does.
    fn execute(&mut self, command: Command<'_>) {
        log::debug!("#{} {:?}", self.conn(), command);
        match command {
            Command::Subscribe {
                topic,
                subscriber_id,
            } => self.subscribe(topic, subscriber_id),
            Command::Unsubscribe {
                topic,
                subscriber_id,
            } => self.unsubscribe(topic, subscriber_id),
            Command::Publish {
                topic,
                message,
                publisher_id,
            } => self.publish(topic, message, publisher_id),
            Command::Help => self.reply(Reply::Help),
            Command::Ping { token } => self.reply(Reply::Pong(token)),
            Command::Topics => {
                let topics = self.shared.registry.topic_counts();
                self.reply(Reply::Topics(&topics));
            }
            Command::Stats => {
                let (topics, subscriptions) = self.shared.registry.totals();
                let counters = self.shared.stats.snapshot(topics, subscriptions);
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
        }
    }

    fn subscribe(&mut self, topic: &str, subscriber_id: &str) {
        // Pending deliveries were published before this: they go to the old list.
        self.hand_out_batch();
        if !self.subscriptions.contains(topic) {
            let limit = self.shared.config.max_subscriptions;
            if self.subscriptions.len() >= limit {
                self.refuse(&ProtocolError::TooManySubscriptions { limit });
                return;
            }
            // Recorded here first, so that even a panic between these two lines leaves
            // nothing in the registry that the cleanup does not know about.
            self.subscriptions.insert(topic.to_string());
            self.shared.registry.subscribe(topic, &self.outbox);
            log::info!("#{} {subscriber_id} subscribed to {topic}", self.conn());
        }
        if self.verbose {
            self.reply(Reply::SubscribeOk(topic));
        }
    }

    fn unsubscribe(&mut self, topic: &str, subscriber_id: &str) {
        self.hand_out_batch();
        if self.subscriptions.remove(topic) {
            self.shared.registry.unsubscribe(topic, self.conn());
            log::info!("#{} {subscriber_id} unsubscribed from {topic}", self.conn());
        }
        if self.verbose {
            self.reply(Reply::UnsubscribeOk(topic));
        }
    }

    fn publish(&mut self, topic: &str, message: &str, publisher_id: &str) {
        self.shared.stats.published.fetch_add(1, Ordering::Relaxed);
        if !self.batch.is_for(topic) {
            self.hand_out_batch();
            // The registry lock is taken and released inside this call: from here on we
            // hold a snapshot of the subscriber list and no lock at all.
            let Some(subscribers) = self.shared.registry.subscribers(topic) else {
                log::debug!(
                    "#{} {publisher_id} published to {topic} (0 subscribers)",
                    self.conn()
                );
                if self.verbose {
                    self.reply(Reply::PublishOk {
                        topic,
                        deliveries: 0,
                    });
                }
                return;
            };
            self.batch.start(topic, subscribers, self.clock.now());
        }
        let receivers = self.batch.subscribers.as_ref().map_or(0, |list| list.len());
        log::debug!(
            "#{} {publisher_id} published to {topic} ({receivers} subscribers)",
            self.conn()
        );
        let batch = &mut self.batch;
        protocol::write_delivery(
            &mut batch.lines,
            topic,
            message,
            publisher_id,
            &batch.timestamp,
        );
        batch.count += 1;
        if self.verbose {
            let deliveries = self.hand_out_batch();
            self.reply(Reply::PublishOk { topic, deliveries });
        } else if self.batch.lines.len() >= FLUSH_THRESHOLD {
            self.hand_out_batch();
        }
    }

    /// Pushes the batch's lines to each of its subscribers, and empties it. Returns how
    /// many subscribers took them.
    fn hand_out_batch(&mut self) -> usize {
        let Some(subscribers) = self.batch.subscribers.take() else {
            return 0;
        };
        let lines = std::mem::take(&mut self.batch.lines);
        let receivers = self.fan_out(&subscribers, &lines);
        let deliveries = (receivers * self.batch.count) as u64;
        self.shared
            .stats
            .delivered
            .fetch_add(deliveries, Ordering::Relaxed);
        // Give the buffer back, emptied, so the next batch reuses its memory.
        self.batch.lines = lines;
        self.batch.lines.clear();
        self.batch.count = 0;
        receivers
    }

    /// Hands `lines` to every subscriber; returns how many took them.
    fn fan_out(&mut self, subscribers: &[Arc<Outbox>], lines: &[u8]) -> usize {
        // lab:begin 02 fan-out
        let mut receivers = 0;
        for subscriber in subscribers {
            match subscriber.push(lines) {
                Pushed::NowPending => {
                    self.to_flush.push(Arc::clone(subscriber));
                    receivers += 1;
                }
                Pushed::AlreadyPending | Pushed::Written => receivers += 1,
                Pushed::Closed => {}
            }
        }
        receivers
        // lab:end 02
    }

    /// Sends a reply to this connection's own client, through its outbox like any line.
    /// Deliveries of earlier publishes are handed out first, so that a reply (a `PONG`,
    /// say) never overtakes them.
    fn reply(&mut self, reply: Reply<'_>) {
        self.hand_out_batch();
        self.scratch.clear();
        reply.write_lines(&mut self.scratch);
        if self.outbox.push(&self.scratch) == Pushed::NowPending {
            self.to_flush.push(Arc::clone(&self.outbox));
        }
    }

    /// Answers a bad line with `ERROR <reason>`; the connection carries on.
    fn refuse(&mut self, error: &ProtocolError) {
        self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "#{} {} ({}) sent a bad line: {error}",
            self.conn(),
            self.outbox.client_id(),
            self.outbox.peer()
        );
        self.reply(Reply::Error(error));
    }

    /// Removes every subscription of this connection from the registry, under one lock, so
    /// no publisher can pick this connection up again once it is gone.
    fn leave_all_topics(&mut self) {
        // lab:begin 04 cleanup on disconnect
        let conn = self.conn();
        self.shared
            .registry
            .unsubscribe_all(&self.subscriptions, conn);
        self.subscriptions.clear();
        // lab:end 04
    }

    /// Writes out everything this thread queued: the batch, then other clients' outboxes,
    /// then our own client's replies last, so that when a client reads a `PONG` every
    /// delivery from the commands before it has already been written.
    fn flush_pending(&mut self) {
        self.hand_out_batch();
        let mut own_replies = false;
        for outbox in self.to_flush.drain(..) {
            if Arc::ptr_eq(&outbox, &self.outbox) {
                own_replies = true;
            } else {
                outbox.flush();
            }
        }
        if own_replies {
            self.outbox.flush();
        }
    }
}

impl Drop for Session {
    /// The one cleanup of a connection; see the module docs for why it lives in `Drop`.
    fn drop(&mut self) {
        // Lines this thread queued for others are still owed to them.
        self.flush_pending();
        self.leave_all_topics();
        self.outbox.close();
        self.shared.forget_connection(self.conn());
        log::info!(
            "#{} {} ({}) disconnected",
            self.conn(),
            self.outbox.client_id(),
            self.outbox.peer()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
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

    /// The cleanup lives in `Drop`, so it runs while a panicking thread unwinds: a bug in
    /// one client's thread must not leave its subscriptions behind for publishers to hit.
    #[test]
    fn a_panic_in_a_client_thread_still_removes_its_subscriptions() {
        let shared = Arc::new(Shared::new(Config::default()));
        let (broker_side, _client) = socket_pair();
        let stats = Arc::clone(&shared.stats);
        let outbox = Outbox::new(1, broker_side, Duration::from_secs(1), stats).unwrap();
        let outbox = Arc::new(outbox);
        let thread_shared = Arc::clone(&shared);
        let outcome = thread::spawn(move || {
            let mut session = Session::new(thread_shared, outbox);
            session.execute(Command::Subscribe {
                topic: "a",
                subscriber_id: "s",
            });
            session.execute(Command::Subscribe {
                topic: "b",
                subscriber_id: "s",
            });
            assert_eq!(session.shared.registry.totals(), (2, 2));
            panic!("a bug in a command handler");
        })
        .join();
        assert!(outcome.is_err(), "the thread should have panicked");
        assert_eq!(shared.registry.totals(), (0, 0));
    }
}
