//! `QUIT`: the broker answers `BYE` and closes.

use crate::protocol::Reply;
use crate::session::{Quit, Session};

impl Session {
    /// Says `BYE`; the way in ends the session once the reply is written.
    #[inline(never)] // see `apply`
    pub(super) fn quit(&mut self) {
        self.reply(Reply::Bye);
        self.quitting = Some(Quit::Bye);
    }
}
