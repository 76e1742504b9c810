//! `DURABLE <filter> <subscriber_id>`: start or resume a durable subscription, which
//! keeps collecting messages while nobody holds it (see `durable/`).

use crate::durable::Asker;
use crate::protocol::ProtocolError;
use crate::session::Session;
use crate::subscriber::Subscriber;
use crate::text::escaped;
use std::sync::Arc;

impl Session {
    /// `DURABLE <filter> <id>`: starts the durable subscription if there is none, and
    /// makes this connection its holder. The subscription itself sends `OK DURABLE`, then
    /// its messages, in that order (see `Durable::attach`).
    #[inline(never)] // see `apply`
    pub(super) fn durable(&mut self, filter: &str, subscriber_id: &str) {
        let Some(holder) = self.holder.clone() else {
            return; // a link that cannot hold one refuses DURABLE (`Link::carries`)
        };
        if let Err(error) = self.check_durable(filter, subscriber_id) {
            return self.refuse(&error);
        }
        // One connection holds at most --max-subscriptions durable subscriptions too, and
        // --max-wildcards of them with wildcards.
        let holds_it = self
            .durables
            .iter()
            .any(|d| d.subscriber_id() == subscriber_id && &**d.filter() == filter);
        if !holds_it {
            let held = self.durables.iter().map(|durable| &**durable.filter());
            if let Err(error) = self.check_room(self.durables.len(), held, filter) {
                return self.refuse(&error);
            }
        }
        self.hand_out();
        // Confirms still waiting for the log go out before this reply.
        self.commit_and_release();
        self.settle();
        let asker = match self.user.as_deref() {
            Some(user) => Asker::User(user),
            None => Asker::Anonymous(self.peer().addr().ip()),
        };
        let found = self
            .router
            .durables()
            .get_or_create(filter, subscriber_id, asker);
        let (durable, created) = match found {
            Ok(found) => found,
            Err(error) => return self.refuse(&error),
        };
        if created {
            let subscriber: Arc<dyn Subscriber> = Arc::clone(&durable) as Arc<dyn Subscriber>;
            let client = self.client.with_id(subscriber_id);
            if let Err(error) = self.router.subscribe(client, filter, &subscriber) {
                return self.refuse(&error);
            }
        }
        let attached = durable.attach(holder);
        if let Some(old) = attached.taken_from {
            old.send();
            log::info!(
                "{} took durable subscription {} {} over from another connection",
                self.peer().tag(),
                escaped(subscriber_id),
                escaped(filter)
            );
        }
        log::info!(
            "{} {} holds durable subscription {} ({} pending)",
            self.peer().tag(),
            escaped(subscriber_id),
            escaped(filter),
            attached.pending
        );
        if !self.durables.iter().any(|d| Arc::ptr_eq(d, &durable)) {
            self.durables.push(durable);
        }
    }

    /// What `DURABLE` and `CANCEL` check before they touch a durable subscription: its
    /// names and filter, and on a broker with access control, that this connection's user
    /// may hold it (see `Router::check_durable_rules`).
    pub(super) fn check_durable(
        &self,
        filter: &str,
        subscriber_id: &str,
    ) -> Result<(), ProtocolError> {
        self.router
            .check_durable_rules(self.user.as_deref(), filter, subscriber_id)
    }
}
