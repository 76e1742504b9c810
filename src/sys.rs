//! The broker's own figures, published as retained messages under `$SYS/broker/`.
//!
//! Every `--sys-interval` (10 s by default) a thread named `sys` reads the counters behind
//! `STATS` and publishes each as the retained message of its own topic, so `SUBSCRIBE
//! $SYS/# me` in `nc` shows them all at once, then again at every interval: a live
//! dashboard with no extra tool. Mosquitto's `$SYS/broker/...` tree is the model; the topic
//! names follow it where it has the same figure.
//!
//! `$SYS` topics are the broker's alone: clients may subscribe, never publish (see
//! `Router::check_publishable`), and a filter starting with a wildcard (`#`, `+/broker/…`)
//! does not match them (see `topic.rs`), so `#` does not fill a screen with them. The
//! figures go through the same road as any message (a [`Publisher`] of the thread's own),
//! so they reach every kind of subscriber.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::router::{Publisher, Router};

/// The publisher id on every `$SYS` message.
pub const PUBLISHER_ID: &str = "broker";

/// The thread that publishes the figures, and how to stop it.
pub(crate) struct SysFigures {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl SysFigures {
    /// Starts publishing every `interval`, the first time at once.
    pub(crate) fn start(router: Arc<Router>, interval: Duration) -> std::io::Result<SysFigures> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("sys".to_string())
            .spawn(move || {
                let mut publisher = Publisher::new(router);
                let mut warned = false;
                let (stopped, wake) = &*stopping;
                let mut stopped = stopped.lock();
                while !*stopped {
                    publish_figures(&mut publisher, &mut warned);
                    let next = Instant::now() + interval;
                    // Woken early only by `stop`; a spurious wake-up just waits again.
                    while !*stopped && Instant::now() < next {
                        wake.wait_until(&mut stopped, next);
                    }
                }
            })?;
        Ok(SysFigures { stop, thread })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock() = true;
        wake.notify_all();
        if self.thread.join().is_err() {
            log::error!("the sys thread panicked");
        }
    }
}

/// Each `STATS` counter and the `$SYS` topic it is published on.
const TOPICS: [(&str, &str); 11] = [
    ("uptime_seconds", "$SYS/broker/uptime"),
    ("connections_current", "$SYS/broker/clients/connected"),
    ("connections_total", "$SYS/broker/clients/total"),
    ("connections_refused", "$SYS/broker/clients/refused"),
    ("topics", "$SYS/broker/topics/count"),
    ("subscriptions", "$SYS/broker/subscriptions/count"),
    ("retained", "$SYS/broker/retained/count"),
    ("messages_published", "$SYS/broker/messages/received"),
    ("deliveries", "$SYS/broker/messages/delivered"),
    ("messages_dropped", "$SYS/broker/messages/dropped"),
    (
        "slow_consumers_disconnected",
        "$SYS/broker/clients/slow_consumers",
    ),
];

/// Publishes every figure once, and the version. `warned` says whether a refusal was
/// logged already: the same one would come back every interval.
fn publish_figures(publisher: &mut Publisher, warned: &mut bool) {
    let counters = publisher.router().counters();
    let version = format!("pubsub-lab {}", env!("CARGO_PKG_VERSION"));
    let mut figures = vec![("$SYS/broker/version", version)];
    for (counter, topic) in TOPICS {
        if let Some((_, value)) = counters.iter().find(|(name, _)| *name == counter) {
            let text = if counter == "uptime_seconds" {
                format!("{value} seconds")
            } else {
                value.to_string()
            };
            figures.push((topic, text));
        }
    }
    for (topic, text) in figures {
        if let Err(error) = publisher.retain_unchecked(topic, &text, PUBLISHER_ID) {
            // Only the retained limits can refuse, and they are the operator's to raise.
            if !*warned {
                log::warn!("the $SYS figures are not all published: {error}");
                *warned = true;
            }
        }
    }
    // Quiet until the next interval: the subscribers give back what they kept for it.
    publisher.release();
}
