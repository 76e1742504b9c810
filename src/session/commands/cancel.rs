//! `CANCEL <filter> <subscriber_id>`: end a durable subscription and drop what it holds.

use crate::protocol::Reply;
use crate::session::Session;
use crate::subscriber::Subscriber;
use std::sync::Arc;

impl Session {
    /// `CANCEL <filter> <id>`: ends the durable subscription, whoever holds it. Cancelling
    /// one that does not exist is not an error (as `UNSUBSCRIBE` is not).
    #[inline(never)] // see `apply`
    pub(super) fn cancel(&mut self, filter: &str, subscriber_id: &str) {
        if let Err(error) = self.check_durable(filter, subscriber_id) {
            return self.refuse(&error);
        }
        self.hand_out();
        let mut dropped = 0;
        if let Some((durable, count)) = self.router.durables().cancel(filter, subscriber_id) {
            // The subscription is gone for good, as a leaving one is: the hooks are not
            // asked (they were, when it began).
            self.router
                .unsubscribe_all([filter], Subscriber::id(&*durable));
            self.durables.retain(|held| !Arc::ptr_eq(held, &durable));
            self.acked = true;
            dropped = count;
        }
        self.reply(Reply::CancelOk { filter, dropped });
    }
}
