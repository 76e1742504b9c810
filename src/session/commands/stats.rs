//! `STATS`: the broker's counters.

use crate::protocol::Reply;
use crate::session::Session;

impl Session {
    /// Answers the counters, one `name value` per line (Redis's `INFO` is the same idea).
    #[inline(never)] // see `apply`
    pub(super) fn stats(&mut self) {
        let counters = self.router.counters();
        self.reply(Reply::Stats(&counters));
    }
}
