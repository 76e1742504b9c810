//! `SUBSCRIBE <topic> <subscriber_id>`: start receiving a topic, or every topic a filter
//! with wildcards matches (see `topic.rs`).

use std::sync::Arc;

use crate::protocol::{ProtocolError, Reply};
use crate::session::Session;

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
            let limit = self.router.config().max_subscriptions;
            if self.subscriptions.len() >= limit {
                return self.refuse(&ProtocolError::TooManySubscriptions { limit });
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
}
