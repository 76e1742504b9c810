//! `PING [token]`: the broker answers `PONG [token]`.

use crate::protocol::Reply;
use crate::session::Session;

impl Session {
    /// Answers `PONG`, behind every delivery already queued for this client (see `reply`):
    /// so a client that gets its `PONG` knows everything sent before it was handed out.
    /// NATS uses its `PING`/`PONG` the same way, as a flush a client can wait for.
    #[inline(never)] // see `apply`
    pub(super) fn ping(&mut self, token: Option<&str>) {
        self.reply(Reply::Pong(token));
    }
}
