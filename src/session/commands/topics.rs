//! `TOPICS [filter]`: list the topics, with their subscribers.

use crate::protocol::Reply;
use crate::session::Session;

impl Session {
    /// Lists the topics `filter` matches that this client's user may subscribe to,
    /// bounded (see `Router::listing`).
    #[inline(never)] // see `apply`
    pub(super) fn topics(&mut self, filter: Option<&str>) {
        match self.router.listing(self.user.as_deref(), filter) {
            Ok(listing) => self.reply(Reply::Topics {
                topics: &listing.topics,
                more: listing.more,
            }),
            Err(error) => self.refuse(&error),
        }
    }
}
