//! `SUBSCRIBE <topic> <subscriber_id>`: start receiving a topic, or every topic a filter
//! with wildcards matches (see `topic.rs`).

use std::sync::Arc;

use crate::protocol::{ProtocolError, Reply};
use crate::session::Session;
use crate::topic;

impl Session {
    /// `SUBSCRIBE <filter> <id>`: a topic, or a filter with wildcards. Retained messages
    /// the filter matches are queued at once, so they come before the `OK` (and before the
    /// `PONG` of a `PING` sent after the `SUBSCRIBE`).
    pub(super) fn subscribe(&mut self, topic: &str, subscriber_id: &str) {
        let checked = self
            .router
            .check_subscribe(self.user.as_deref(), topic, subscriber_id);
        if let Err(error) = checked {
            return self.refuse(&error);
        }
        // Deliveries still in the batch were published before this: they go to the old
        // list of subscribers, not to us.
        self.publisher.hand_out();
        if !self.subscriptions.contains(topic) {
            let held = self.subscriptions.iter().map(|(name, ())| &**name);
            if let Err(error) = self.check_room(self.subscriptions.len(), held, topic) {
                return self.refuse(&error);
            }
            let client = self.client.with_id(subscriber_id);
            match self.router.subscribe(client, topic, &self.subscriber) {
                Ok(Some(name)) => {
                    if let Some(listed) = &self.listed {
                        listed.subscribed(Arc::clone(&name));
                    }
                    self.subscriptions.insert(name, ());
                }
                Ok(None) => {}
                Err(error) => return self.refuse(&error),
            }
            log::info!(
                "{} {subscriber_id} subscribed to {topic}",
                self.peer().tag()
            );
        }
        if self.acknowledge() {
            self.reply(Reply::SubscribeOk(topic));
        }
    }

    /// Whether one connection that already has the `count` subscriptions `held` (its
    /// classic ones for `SUBSCRIBE`, the durable ones it holds for `DURABLE`, counted apart)
    /// has room for one more to `filter`: at most `--max-subscriptions` of them, and at most
    /// `--max-wildcards` with `+` or `#`. The wildcards held are counted only for a new
    /// filter with one, so that subscribing to many exact topics costs nothing more.
    ///
    /// A wildcard filter has its own, smaller budget because it costs every publish, not
    /// only those to its topic: a publish looks at each filter that could match its topic
    /// (see `tree.rs`), under the registry's lock. Ten thousand of them from one
    /// connection made each publish to a topic they matched cost 5.2 ms. NATS bounds the
    /// subscriptions of a connection (`max_subs`) and of an account; Mosquitto has no
    /// bound on either.
    ///
    /// # Errors
    /// [`ProtocolError::TooManySubscriptions`] or [`ProtocolError::TooManyWildcards`].
    pub(super) fn check_room<'a>(
        &self,
        count: usize,
        held: impl Iterator<Item = &'a str>,
        filter: &str,
    ) -> Result<(), ProtocolError> {
        let config = self.router.config();
        if count >= config.max_subscriptions {
            return Err(ProtocolError::TooManySubscriptions {
                limit: config.max_subscriptions,
            });
        }
        if !topic::has_wildcard(filter) {
            return Ok(());
        }
        let wildcards = held.filter(|name| topic::has_wildcard(name)).count();
        if wildcards >= config.max_wildcards {
            return Err(ProtocolError::TooManyWildcards {
                limit: config.max_wildcards,
            });
        }
        Ok(())
    }
}
