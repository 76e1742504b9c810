//! `HELP`: every command, from the table in `protocol/command.rs`.

use crate::protocol::Reply;
use crate::session::Session;

impl Session {
    /// Lists the commands; `AUTH` only on a broker that asks for it.
    #[inline(never)] // see `apply`
    pub(super) fn help(&mut self) {
        if self.router.access().is_some() {
            self.reply(Reply::HelpWithAuth);
        } else {
            self.reply(Reply::Help);
        }
    }
}
