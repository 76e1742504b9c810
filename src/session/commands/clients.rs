//! `CLIENTS [filter]`: list the connected clients and what each is doing.

use crate::protocol::Reply;
use crate::session::Session;

impl Session {
    /// Lists the clients `filter` picks that this client's user may see, bounded (see
    /// `Router::client_listing` and `clients.rs`).
    #[inline(never)] // see `apply`
    pub(super) fn clients(&mut self, filter: Option<&str>) {
        let (clients, more) = self.router.client_listing(self.user.as_deref(), filter);
        self.reply(Reply::Clients {
            clients: &clients,
            more,
        });
    }
}
