//! Durable subscriptions: at-least-once delivery, with acknowledgements, redelivery, and
//! (with `--data-dir`) a log that survives a crash.
//!
//! A classic subscription belongs to a connection and ends with it: what is published
//! while the client is away is gone (*at most once*). A durable subscription belongs to a
//! subscriber id and a filter, and lives until it is cancelled:
//!
//! ```text
//! client -> broker   DURABLE <filter> <subscriber_id>     start or resume it
//! broker -> client   OK DURABLE <filter> <pending>        then the pending messages
//! broker -> client   MESSAGE <seq> <topic> <message> <publisher_id> <YYYY-MM-DD HH:MM:SS>
//! client -> broker   ACK <seq>                            done with that one
//! client -> broker   CANCEL <filter> <subscriber_id>      end it, dropping what it holds
//! ```
//!
//! The broker keeps each message until it is acknowledged, sends at most
//! `--max-inflight` unacknowledged ones at a time, and sends them again (same line, same
//! seq) when the subscription is resumed, or after `--ack-timeout` without an `ACK`.
//! Delivery is *at least once*: a client that crashes after handling a message but before
//! its `ACK` gets it again, and drops the duplicate by its seq.
//!
//! Why acknowledge each message rather than "everything up to seq N" (cumulative, as TCP
//! and Kafka's offsets do)? Because one connection may hold several durable subscriptions,
//! each with its own messages in flight, and a client may finish them out of order (a slow
//! one, then two quick ones): a cumulative `ACK` would either wait for the slow one or
//! acknowledge it unhandled. MQTT's `PUBACK` and NATS JetStream's default acknowledge one
//! message too; the price is one short line per message.
//!
//! # Limits and quotas
//!
//! A durable subscription holds what nobody reads, in memory and in the log, for as long as
//! it lives: each of its limits is what one forgotten or hostile subscription may cost.
//!
//! | flag | bounds | past it | production brokers |
//! |---|---|---|---|
//! | `--max-inflight` | messages sent, not acknowledged | the rest wait | NATS JetStream's `max_ack_pending` |
//! | `--max-queued`, `--max-queued-bytes` | messages and bytes one subscription holds | the oldest are dropped | Mosquitto's `max_queued_messages` and `max_queued_bytes`; JetStream's `max_msgs` and `max_bytes` per stream |
//! | `--max-durable-retained-bytes` | retained messages a new subscription copies | the rest are skipped | JetStream's `deliver_policy` |
//! | `--max-durable-per-client`, `--max-durable-per-user`, `--max-durable` | subscriptions of one id, of one user (or the anonymous clients of one address), in all | `DURABLE` is refused | JetStream's per-account limits (`max_consumers`, `max_store`) |
//!
//! The byte bound is what bounds memory: 40 subscriptions that nobody read took 245 MiB for
//! 6.4 MB published before it, since the count alone let each hold 10,000 lines of any
//! length. The quotas are checked in [`Durables::get_or_create`]; see `check_quotas` for
//! who counts as a client and a user.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Durables`]: every durable subscription of a broker, by key; the timer thread |
//! | `subscription.rs` | [`Durable`]: one subscription as a [`Subscriber`](crate::subscriber::Subscriber) |
//! | `queue.rs` | [`Queue`](queue::Queue): waiting and in-flight messages, redelivery (no I/O) |
//! | `store.rs` | [`Store`]: seqs, and the log: group commit, checkpoints, which segments may go |
//! | `log.rs` | segment files, records framed with length and CRC-32, replay: torn or damaged, salvage |
//! | `crc32.rs` | CRC-32, by hand |
//!
//! This module sits beside the registry, below the router: it knows subscribers, batches
//! and the protocol's lines, never a socket. The connection that holds a subscription is a
//! [`Holder`], which the session layer implements.

pub mod crc32;
pub mod log;
pub mod queue;
pub mod store;
mod subscription;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use self::log::{LogError, Record};
use self::store::{Key, Store};
use crate::config::{Config, FsyncPolicy};
use crate::peer::counts_per_address;
use crate::protocol::{Held, ProtocolError};
use crate::text::escaped;

pub use subscription::{Attached, Durable, Holder};

/// The limits every durable subscription of a broker shares.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--max-inflight`.
    pub max_inflight: usize,
    /// `--max-queued`.
    pub max_queued: usize,
    /// `--max-queued-bytes`.
    pub max_queued_bytes: usize,
    /// `--ack-timeout`.
    pub ack_timeout: Duration,
    /// `--max-durable`.
    pub max_durable: usize,
    /// `--max-durable-per-client`.
    pub max_durable_per_client: usize,
    /// `--max-durable-per-user`.
    pub max_durable_per_user: usize,
    /// `--max-durable-retained-bytes`.
    pub max_durable_retained_bytes: usize,
}

impl Limits {
    /// Whether `queue` holds more than `--max-queued` messages or `--max-queued-bytes`
    /// (its newest message alone is never too much).
    fn holds_too_much(&self, queue: &queue::Queue) -> bool {
        queue.len() > self.max_queued || (queue.bytes() > self.max_queued_bytes && queue.len() > 1)
    }
}

/// Who asks for a durable subscription, as its quotas see them (see
/// `Durables::check_quotas`).
#[derive(Debug, Clone, Copy)]
pub enum Asker<'a> {
    /// A logged-in user.
    User(&'a str),
    /// An anonymous client at this address.
    Anonymous(IpAddr),
}

impl Asker<'_> {
    /// The address whose quota a new subscription counts against: an anonymous client's,
    /// unless it is this machine's own.
    fn counted_address(self) -> Option<IpAddr> {
        match self {
            Asker::Anonymous(ip) if counts_per_address(ip) => Some(ip),
            _ => None,
        }
    }
}

/// Every durable subscription of one broker, and the store they share.
#[derive(Debug)]
pub struct Durables {
    store: Arc<Store>,
    limits: Limits,
    subscriptions: Mutex<BTreeMap<Key, Arc<Durable>>>,
}

impl Durables {
    /// Durable subscriptions in memory only: they survive disconnects, not restarts.
    pub fn in_memory(config: &Config) -> Durables {
        Durables {
            store: Arc::new(Store::in_memory()),
            limits: limits(config),
            subscriptions: Mutex::default(),
        }
    }

    /// Durable subscriptions as `config` says: in memory, or in the log in
    /// `config.data_dir`, which is replayed and checkpointed now (see `store.rs`). Logs
    /// what the replay found in one line, and a warning for everything it left out: a torn
    /// end, damage salvaged (with `config.salvage`), files that are not segments.
    ///
    /// # Errors
    /// A [`LogError`] naming the file and the offset of a damaged record (unless
    /// `config.salvage`), or a log that cannot be read or written.
    pub fn open(config: &Config) -> Result<Durables, LogError> {
        let Some(dir) = &config.data_dir else {
            return Ok(Durables::in_memory(config));
        };
        let (store, restored, report) = Store::open(config, dir)?;
        log_what_was_left_out(&report);
        let store = Arc::new(store);
        let limits = limits(config);
        let mut messages = 0;
        let subscriptions: BTreeMap<Key, Arc<Durable>> = restored
            .into_iter()
            .map(|restored| {
                messages += restored.messages.len();
                let durable = Durable::new(
                    restored.key.clone(),
                    Arc::clone(&store),
                    limits,
                    restored.messages,
                    None,
                );
                (restored.key, Arc::new(durable))
            })
            .collect();
        ::log::info!(
            "log {}: replayed {} records ({} bytes) from {} segment(s) in {} ms: {} durable \
             subscription(s) holding {messages} message(s), checkpointed into segment {} \
             ({} bytes); fsync {}",
            dir.display(),
            report.records,
            report.bytes,
            report.segments,
            report.millis,
            subscriptions.len(),
            report.checkpoint.0,
            report.checkpoint.1,
            config.fsync
        );
        Ok(Durables {
            store,
            limits,
            subscriptions: Mutex::new(subscriptions),
        })
    }

    /// One line for the start-up log: where durable subscriptions are kept.
    pub fn describe(&self) -> String {
        match (self.store.dir(), self.store.policy()) {
            (Some(dir), Some(policy)) => format!(
                "durable subscriptions are logged in {} (fsync {policy}): they survive \
                 restarts and crashes",
                dir.display()
            ),
            _ => "durable subscriptions are kept in memory only: they survive disconnects, \
                  not restarts (start with --data-dir DIR to keep them)"
                .to_string(),
        }
    }

    /// Every durable subscription, for the router to register at start.
    pub fn all(&self) -> Vec<Arc<Durable>> {
        self.subscriptions.lock().values().cloned().collect()
    }

    /// The durable subscription of `subscriber_id` to `filter`, made now if there was
    /// none (then `true`: the caller registers it with the router). `asker` is who asks:
    /// the logged-in user, or the address of an anonymous client.
    ///
    /// # Errors
    /// A new one would pass a quota: [`ProtocolError::TooManyDurableForClient`],
    /// [`ProtocolError::TooManyDurableForUser`] or [`ProtocolError::TooManyDurable`] (see
    /// `check_quotas` for who counts as a client and a user).
    pub fn get_or_create(
        &self,
        filter: &str,
        subscriber_id: &str,
        asker: Asker<'_>,
    ) -> Result<(Arc<Durable>, bool), ProtocolError> {
        let key: Key = (subscriber_id.into(), filter.into());
        let mut subscriptions = self.subscriptions.lock();
        if let Some(durable) = subscriptions.get(&key) {
            return Ok((Arc::clone(durable), false));
        }
        self.check_quotas(&subscriptions, subscriber_id, asker)?;
        self.store.append(&Record::Durable {
            subscriber_id,
            filter,
        });
        let durable = Arc::new(Durable::new(
            key.clone(),
            Arc::clone(&self.store),
            self.limits,
            Vec::new(),
            asker.counted_address(),
        ));
        subscriptions.insert(key, Arc::clone(&durable));
        drop(subscriptions);
        // `OK DURABLE` promises a subscription that survives a crash even before anything
        // is published to it: its record is written (and flushed under --fsync always)
        // first. A log that cannot be written says so in the broker's log; the
        // subscription lives on in memory.
        let _ = self.store.commit(true);
        ::log::info!(
            "durable subscription {} {} started",
            escaped(subscriber_id),
            escaped(filter)
        );
        Ok((durable, true))
    }

    /// Whether one more durable subscription of `subscriber_id`, asked for by `user`, fits
    /// in the quotas: `--max-durable-per-client` for the subscriber id (its owner),
    /// `--max-durable-per-user` for a logged-in user, `--max-durable` for the broker.
    ///
    /// The counts are not kept: they are counted here, from the subscriptions themselves
    /// (at most `--max-durable` of them, and only when one is to be made). So they hold
    /// after a restart with no more work, since the log brings the subscriptions back. A
    /// user's are those whose subscriber id is one it goes by (`alice`, `alice:sensor1`;
    /// see `access.rs`): on a broker with an auth file a user can hold no other.
    ///
    /// Anonymous clients all share the user `anonymous`, so a quota for it would be one
    /// for the whole class. Their machine stands in for the user instead: the subscriptions
    /// anonymous clients made from one address count against `--max-durable-per-user`
    /// too, so that a client that makes up a new id for each subscription cannot take
    /// every one. This machine's own address (loopback) is not counted, as for
    /// `--max-clients-per-ip`: a whole lab may run on one laptop. Nor are subscriptions
    /// the log brought back, since it keeps no addresses: a restart gives each address its
    /// quota again, once. (NATS puts the same limits on an *account*, its user, with
    /// `max_consumers` on each stream; Mosquitto has no per-client limit on sessions.)
    ///
    /// # Errors
    /// [`ProtocolError::TooManyDurableForClient`], [`ProtocolError::TooManyDurableForUser`]
    /// or [`ProtocolError::TooManyDurable`].
    fn check_quotas(
        &self,
        subscriptions: &BTreeMap<Key, Arc<Durable>>,
        subscriber_id: &str,
        asker: Asker<'_>,
    ) -> Result<(), ProtocolError> {
        let limits = &self.limits;
        let of_client = subscriptions
            .keys()
            .filter(|(id, _)| &**id == subscriber_id)
            .count();
        if of_client >= limits.max_durable_per_client {
            return Err(ProtocolError::TooManyDurableForClient {
                subscriber_id: subscriber_id.to_string(),
                limit: limits.max_durable_per_client,
            });
        }
        if let Some(ip) = asker.counted_address() {
            let from_there = subscriptions
                .values()
                .filter(|durable| durable.origin() == Some(ip))
                .count();
            if from_there >= limits.max_durable_per_user {
                return Err(ProtocolError::TooManyDurableFromAddress {
                    ip,
                    limit: limits.max_durable_per_user,
                });
            }
        }
        if let Asker::User(user) = asker {
            let of_user = subscriptions
                .keys()
                .filter(|(id, _)| crate::access::may_publish_as(user, id))
                .count();
            if of_user >= limits.max_durable_per_user {
                return Err(ProtocolError::TooManyDurableForUser {
                    user: user.to_string(),
                    limit: limits.max_durable_per_user,
                });
            }
        }
        if subscriptions.len() >= limits.max_durable {
            return Err(ProtocolError::TooManyDurable {
                limit: limits.max_durable,
            });
        }
        Ok(())
    }

    /// Ends the durable subscription of `subscriber_id` to `filter`, if there is one:
    /// returns it (for the caller to unregister from the router) and how many messages it
    /// dropped. A connection that held it is not told: it sees `OK CANCEL` if it sent the
    /// `CANCEL` itself, and no more messages otherwise.
    pub fn cancel(&self, filter: &str, subscriber_id: &str) -> Option<(Arc<Durable>, usize)> {
        let key: Key = (subscriber_id.into(), filter.into());
        let durable = self.subscriptions.lock().remove(&key)?;
        let dropped = durable.cancel();
        self.store.append(&Record::Cancel {
            subscriber_id,
            filter,
        });
        ::log::info!(
            "durable subscription {} {} cancelled, dropping {dropped} message(s)",
            escaped(subscriber_id),
            escaped(filter)
        );
        Some((durable, dropped))
    }

    /// Writes what was appended to the log and, if `durable`, flushes it as the fsync
    /// policy says (see `store.rs`); the caller waits.
    ///
    /// # Errors
    /// Why the log cannot be written.
    pub fn commit(&self, durable: bool) -> Result<(), String> {
        self.store.commit(durable)
    }

    /// Sends `replies` (a connection's confirms, and the replies after them) to `holder`
    /// once what was appended so far is stored as the fsync policy promises, without
    /// making the caller wait for the disk: group commit (see `store.rs`). `pending` counts
    /// the calls not released yet.
    pub fn release_after_commit(
        &self,
        replies: Held,
        holder: &Arc<dyn Holder>,
        pending: &Arc<std::sync::atomic::AtomicUsize>,
    ) {
        self.store
            .release_after_commit(replies, holder, Some(pending));
    }

    /// Whether publishes are stored on disk, so that a confirm must wait for the commit.
    pub fn on_disk(&self) -> bool {
        self.store.dir().is_some()
    }

    /// The counters `STATS` adds for durable subscriptions.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let all = self.all();
        let held: usize = all.iter().map(|durable| durable.held()).sum();
        vec![
            ("durable_subscriptions", all.len() as u64),
            ("durable_held", held as u64),
            (
                "durable_dropped",
                self.store.dropped.load(Ordering::Relaxed),
            ),
            ("durable_fsyncs", self.store.fsyncs.load(Ordering::Relaxed)),
            (
                "durable_retained_skipped",
                self.store.retained_skipped.load(Ordering::Relaxed),
            ),
        ]
    }

    /// How often the timer thread looks for overdue acknowledgements: a quarter of
    /// `--ack-timeout`, between 10 ms and one second.
    fn tick(&self) -> Duration {
        (self.limits.ack_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// One round of the timer thread: sends again what waited too long for its `ACK`.
    fn resend_overdue(&self) {
        let now = Instant::now();
        for durable in self.all() {
            if let Some(holder) = durable.resend_overdue(now) {
                holder.send();
            }
        }
    }
}

/// Warns about everything the replay did not apply: a torn end cut off, damaged bytes
/// salvaged, files that are not segments. Each says what it was, as far as it is known.
fn log_what_was_left_out(report: &store::Report) {
    for ignored in &report.ignored {
        ::log::warn!("{ignored}");
    }
    if let Some(cut) = &report.cut {
        ::log::warn!(
            "cut off the torn end of the log: {cut}; not delivered. Whether it had been \
             confirmed cannot be known from the log: a kill -9, or a power cut under --fsync \
             always, tears only a record not yet confirmed, but a power cut under --fsync \
             interval or never, or a file cut short by other means, can tear a confirmed one"
        );
    }
    for lost in &report.quarantined {
        let moved_to = lost
            .moved_to
            .as_ref()
            .map_or(String::new(), |path| path.display().to_string());
        ::log::warn!(
            "salvage: skipped damaged bytes of the log, {lost}, and moved them to \
             {moved_to}. The records in them are lost: a lost MESSAGE is not delivered, a \
             lost ACK delivers its message again, a lost CANCEL brings its subscription back"
        );
    }
}

fn limits(config: &Config) -> Limits {
    Limits {
        max_inflight: config.max_inflight,
        max_queued: config.max_queued,
        max_queued_bytes: config.max_queued_bytes,
        ack_timeout: config.ack_timeout,
        max_durable: config.max_durable,
        max_durable_per_client: config.max_durable_per_client,
        max_durable_per_user: config.max_durable_per_user,
        max_durable_retained_bytes: config.max_durable_retained_bytes,
    }
}

/// The thread named `durable`: sends again what waited `--ack-timeout` for its `ACK`, and
/// under `--fsync interval` flushes the log to the disk once a second. Under `--fsync
/// always`, also the thread named `log-commit`: the committer, which makes the `fsync`
/// every waiting confirm rides (see `store.rs`).
pub struct Timer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
    committer: Option<(Arc<Durables>, JoinHandle<()>)>,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Timer")
    }
}

impl Timer {
    /// Starts the thread.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start(durables: Arc<Durables>) -> std::io::Result<Timer> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopping = Arc::clone(&stop);
        let tick = durables.tick();
        let interval = durables.store.policy() == Some(FsyncPolicy::Interval);
        let committer = if durables.store.policy() == Some(FsyncPolicy::Always) {
            let committing = Arc::clone(&durables);
            let thread = thread::Builder::new()
                .name("log-commit".to_string())
                .spawn(move || committing.store.run_committer())?;
            Some((Arc::clone(&durables), thread))
        } else {
            None
        };
        let thread = thread::Builder::new()
            .name("durable".to_string())
            .spawn(move || {
                let (stopped, wake) = &*stopping;
                let mut next_sync = Instant::now() + Duration::from_secs(1);
                let mut stopped = stopped.lock();
                while !*stopped {
                    let next = Instant::now() + tick;
                    while !*stopped && Instant::now() < next {
                        wake.wait_until(&mut stopped, next);
                    }
                    // The lock is only the stop flag's: let it go while working.
                    parking_lot::MutexGuard::unlocked(&mut stopped, || {
                        durables.resend_overdue();
                        // Acknowledgements are written at least this often, too.
                        let _ = durables.commit(false);
                        if interval && Instant::now() >= next_sync {
                            durables.store.sync();
                            next_sync = Instant::now() + Duration::from_secs(1);
                        }
                    });
                }
                // What is in the buffer goes to the log before the broker stops.
                durables.store.sync();
            })?;
        Ok(Timer {
            stop,
            thread,
            committer,
        })
    }

    /// Stops the threads and waits for them.
    pub fn stop(self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock() = true;
        wake.notify_all();
        if self.thread.join().is_err() {
            ::log::error!("the durable thread panicked");
        }
        if let Some((durables, committer)) = self.committer {
            durables.store.stop_committer();
            if committer.join().is_err() {
                ::log::error!("the log-commit thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Anonymous clients that make up a new id for each subscription still meet a quota:
    /// their address's. A classmate at another address is not held up, and this machine
    /// itself is not counted.
    #[test]
    fn anonymous_clients_of_one_address_share_a_quota() {
        let config = Config {
            max_durable_per_user: 2,
            ..Config::default()
        };
        let durables = Durables::in_memory(&config);
        let make = |id: &str, ip: IpAddr| {
            durables
                .get_or_create("lab/#", id, Asker::Anonymous(ip))
                .map(|(_, created)| created)
        };
        let student = IpAddr::from([10, 0, 0, 7]);
        assert_eq!(make("a1", student), Ok(true));
        assert_eq!(make("a2", student), Ok(true));
        assert_eq!(
            make("a3", student),
            Err(ProtocolError::TooManyDurableFromAddress {
                ip: student,
                limit: 2
            })
        );
        assert_eq!(make("a1", student), Ok(false), "resuming makes none");
        assert_eq!(make("b1", IpAddr::from([10, 0, 0, 8])), Ok(true));
        for n in 0..5 {
            assert_eq!(
                make(&format!("local{n}"), Ipv4Addr::LOCALHOST.into()),
                Ok(true)
            );
        }
        assert!(durables.cancel("lab/#", "a2").is_some());
        assert_eq!(make("a3", student), Ok(true), "a cancel gives a place back");
    }
}
