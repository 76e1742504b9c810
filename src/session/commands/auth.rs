//! `AUTH <user> <secret>`: say who the client is, on a broker with `--auth-file`. The
//! failure budgets are `auth.rs`'s; closing a connection after a few failures is here.

use crate::auth;
use crate::protocol::{ProtocolError, Reply};
use crate::session::{Quit, Session};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Session {
    /// `AUTH <user> <secret>`: on a broker with access control, the connection becomes
    /// that user, and from then on may send every other command.
    #[inline(never)] // see `apply`
    pub(super) fn auth(&mut self, user: &str, secret: &str) {
        if self.router.access().is_none() {
            return self.refuse(&ProtocolError::AuthOff);
        }
        if let Some(known) = &self.user {
            let known = known.to_string();
            return self.refuse(&ProtocolError::AlreadyAuthenticated(known));
        }
        // What came before is answered before this thread waits out a failure's delay.
        self.flush();
        let router = Arc::clone(&self.router);
        let from = self.peer().addr().ip();
        match router.log_in(from, self.peer(), user, secret) {
            Ok(name) => {
                self.user = Some(Arc::from(name.as_str()));
                if let (Some(listed), Some(user)) = (&self.listed, &self.user) {
                    listed.set_user(Arc::clone(user));
                }
                self.auth_deadline = None;
                self.link.authenticated();
                log::info!("{} authenticated as {name}", self.peer().tag());
                self.reply(Reply::AuthOk(&name));
            }
            Err(error) => self.auth_failed(error),
        }
    }

    /// A failed `AUTH`: answered (`auth.rs` has logged and counted it already), and the
    /// connection closed after [`auth::FAILURES_PER_CONNECTION`] of them, or at once if its
    /// address, or the user it named, is out of attempts (it could only be refused again).
    fn auth_failed(&mut self, error: ProtocolError) {
        self.router.stats().errors.fetch_add(1, Ordering::Relaxed);
        self.auth_failures += 1;
        if matches!(
            error,
            ProtocolError::TooManyFailures { .. } | ProtocolError::UserOutOfAttempts { .. }
        ) {
            self.reply(Reply::Error(&error));
            self.quitting = Some(Quit::AuthFailed);
        } else if self.auth_failures >= auth::FAILURES_PER_CONNECTION {
            let failures = self.auth_failures;
            self.reply(Reply::Error(&ProtocolError::AuthGaveUp { failures }));
            self.quitting = Some(Quit::AuthFailed);
        } else {
            self.reply(Reply::Error(&error));
        }
    }
}
