//! `KICK <client>`: an instructor closes a client's connection, telling it why.

use crate::protocol::{ProtocolError, Reply};
use crate::session::Session;
use crate::text::escaped;

impl Session {
    /// `KICK <client>`: tells that client why and closes its connection, for an
    /// instructor (see `Router::check_kick` for who that is without an auth file). Logged
    /// with who did it, since a student will ask.
    #[inline(never)] // see `apply`
    pub(super) fn kick(&mut self, client: &str) {
        let from = self.peer().addr().ip();
        if let Err(error) = self.router.check_kick(self.user.as_deref(), from) {
            return self.refuse(&error);
        }
        let Ok(number) = client.strip_prefix('#').unwrap_or(client).parse::<u64>() else {
            let shown: String = client.chars().take(32).collect();
            return self.refuse(&ProtocolError::BadClientNumber(escaped(&shown).to_string()));
        };
        let by = match &self.user {
            Some(user) => user.to_string(),
            None => format!("#{} ({from})", self.peer().conn()),
        };
        let target = self.router.clients().find(number);
        let kicked = ProtocolError::Kicked { by: by.clone() };
        if !target.is_some_and(|target| target.kick(&kicked)) {
            return self.refuse(&ProtocolError::NoSuchClient(number));
        }
        log::info!("#{number} kicked by {by} ({})", self.peer());
        self.reply(Reply::KickOk(number));
    }
}
