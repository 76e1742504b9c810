//! `VERBOSE on|off`: acknowledge every accepted command, or stop.

use crate::protocol::Reply;
use crate::session::Session;

impl Session {
    /// Turns acknowledgements on or off for this connection only, and says so.
    #[inline(never)] // see `apply`
    pub(super) fn verbose(&mut self, on: bool) {
        self.verbose = on;
        self.reply(Reply::VerboseOk(on));
    }
}
