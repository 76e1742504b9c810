//! `UNSUBSCRIBE <topic> <subscriber_id>`: stop receiving a topic; `UNSUBSCRIBE` alone
//! leaves every topic, as Redis's does.

use crate::protocol::{grammar, Reply};
use crate::session::Session;

impl Session {
    #[inline(never)] // see `apply`
    pub(super) fn unsubscribe(&mut self, topic: &str, subscriber_id: &str) {
        let checked = grammar::check_subscription(topic, subscriber_id, self.router.limits());
        if let Err(error) = checked {
            return self.refuse(&error);
        }
        self.hand_out();
        if self.subscriptions.contains(topic) {
            let client = self.client.with_id(subscriber_id);
            if let Err(error) = self.router.unsubscribe(client, topic, self.subscriber.id()) {
                return self.refuse(&error);
            }
            self.subscriptions.remove(topic);
            self.give_back_user_wildcards(std::iter::once(topic));
            if let Some(listed) = &self.listed {
                listed.unsubscribed(topic);
            }
            log::info!(
                "{} {subscriber_id} unsubscribed from {topic}",
                self.peer().tag()
            );
        }
        if self.acknowledge() {
            self.reply(Reply::UnsubscribeOk(topic));
        }
    }

    /// `UNSUBSCRIBE` with no arguments: the cleanup of a connection that goes, done for
    /// one that stays.
    #[inline(never)] // see `apply`
    pub(super) fn unsubscribe_all(&mut self) {
        self.hand_out();
        let topics = self.subscriptions.len();
        self.leave_all_topics();
        log::info!("{} unsubscribed from all {topics} topic(s)", self.peer());
        if self.acknowledge() {
            self.reply(Reply::UnsubscribeAllOk);
        }
    }
}
