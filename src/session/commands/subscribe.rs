//! `SUBSCRIBE <topic> <subscriber_id>`: start receiving a topic, or every topic a filter
//! with wildcards matches (see `topic.rs`).

use std::iter;
use std::sync::Arc;

use crate::protocol::{ProtocolError, Reply};
use crate::session::Session;
use crate::topic;

impl Session {
    /// `SUBSCRIBE <filter> <id>`: a topic, or a filter with wildcards. Retained messages
    /// the filter matches are queued at once, so they come before the `OK` (and before the
    /// `PONG` of a `PING` sent after the `SUBSCRIBE`).
    #[inline(never)] // see `apply`
    pub(super) fn subscribe(&mut self, topic: &str, subscriber_id: &str) {
        let checked = self
            .router
            .check_subscribe(self.user.as_deref(), topic, subscriber_id);
        if let Err(error) = checked {
            return self.refuse(&error);
        }
        // Deliveries still in the batch were published before this: they go to the old
        // list of subscribers, not to us.
        self.hand_out();
        if !self.subscriptions.contains(topic) {
            if let Err(error) = self.take_room_for(topic) {
                return self.refuse(&error);
            }
            let client = self.client.with_id(subscriber_id);
            match self.router.subscribe(client, topic, &self.subscriber) {
                Ok(Some(name)) => self.note_subscribed(name, subscriber_id),
                not_subscribed => {
                    // The place taken above is held only by a filter in `subscriptions`.
                    self.give_back_user_wildcards(iter::once(topic));
                    if let Err(error) = not_subscribed {
                        return self.refuse(&error);
                    }
                }
            }
        }
        if self.acknowledge() {
            self.reply(Reply::SubscribeOk(topic));
        }
    }

    /// The connection's and the user's room for one more subscription to `topic`, taken.
    /// This and [`note_subscribed`](Self::note_subscribed) are calls of their own, never
    /// inlined, so that `subscribe`'s stack frame stays small: its call into the registry
    /// is the deepest an idle subscriber's thread ever goes (see `CLIENT_STACK_SIZE` in
    /// `server.rs`).
    #[inline(never)]
    fn take_room_for(&mut self, topic: &str) -> Result<(), ProtocolError> {
        let held = self.subscriptions.iter().map(|(name, ())| &**name);
        self.check_room(self.subscriptions.len(), held, topic)?;
        self.take_user_wildcard(topic)
    }

    /// A new subscription is in the registry as `name`: the connection notes it.
    #[inline(never)]
    fn note_subscribed(&mut self, name: Arc<str>, subscriber_id: &str) {
        if let Some(listed) = &self.listed {
            listed.subscribed(Arc::clone(&name));
        }
        log::info!("{} {subscriber_id} subscribed to {name}", self.peer().tag());
        self.subscriptions.insert(name, ());
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

    /// Takes one of the logged-in user's `--max-wildcards-per-user` places, over all its
    /// connections, if `filter` has a wildcard. Each wildcard filter in `subscriptions`
    /// holds one place from here until it is unsubscribed or the connection leaves
    /// (`give_back_user_wildcards`); durable subscriptions take none, as
    /// `--max-durable-per-user` bounds them all.
    ///
    /// An anonymous client has no user to count for: anonymous clients all go by the name
    /// `anonymous`, and one quota for all of them would let one client take the whole
    /// class's places. It meets `--max-wildcards` per connection alone, as anonymous clients
    /// meet the other quotas per id: a broker that must hold against many connections of
    /// one person needs `--auth-file`.
    ///
    /// # Errors
    /// [`ProtocolError::TooManyWildcardsForUser`].
    fn take_user_wildcard(&self, filter: &str) -> Result<(), ProtocolError> {
        let Some(user) = &self.user else {
            return Ok(());
        };
        let limit = self.router.config().max_wildcards_per_user;
        if !topic::has_wildcard(filter) || self.router.clients().take_wildcard(user, limit) {
            return Ok(());
        }
        Err(ProtocolError::TooManyWildcardsForUser {
            user: user.to_string(),
            limit,
        })
    }

    /// Gives back the user's places held by those of `filters` with a wildcard, which this
    /// connection no longer subscribes to (see `take_user_wildcard`).
    pub(in crate::session) fn give_back_user_wildcards<'a>(
        &self,
        filters: impl Iterator<Item = &'a str>,
    ) {
        if let Some(user) = &self.user {
            let held = filters.filter(|filter| topic::has_wildcard(filter)).count();
            self.router.clients().give_back_wildcards(user, held);
        }
    }
}
