//! Who may do what: the auth file's rules and logging in, applied by the router for every
//! way in (see the module docs of `router.rs` and of `access.rs`). A client that logged in
//! is its user to the rules; one that gave no name (a datagram, an HTTP request without
//! credentials) is `anonymous`; the program itself, through the embedding API, is trusted
//! and asks none of this.

use std::net::IpAddr;

use super::Router;
use crate::access::{self, Access, Action};
use crate::auth::Logins;
use crate::clients::Wanted;
use crate::protocol::grammar;
use crate::protocol::{ListedClient, ProtocolError};

impl Router {
    /// Puts access control in force: every client must `AUTH` first, then do only what
    /// `access` allows. Called once, before the router is shared.
    pub fn set_access(&mut self, access: Access) {
        self.logins = Some(Logins::new(access));
    }

    /// Whether the client that logged in as `user` (`None`: it gave no name, and is
    /// [`access::ANONYMOUS`] to the rules) may `action` `name`; always, on a broker without
    /// an auth file. Every way in asks this one function, so a rule holds for all of them.
    ///
    /// # Errors
    /// [`ProtocolError::NotAllowed`], naming the user, the action and the name.
    pub fn check_rule(
        &self,
        user: Option<&str>,
        action: Action,
        name: &str,
    ) -> Result<(), ProtocolError> {
        let Some(access) = self.access() else {
            return Ok(());
        };
        let user = user.unwrap_or(access::ANONYMOUS);
        if access.may(user, action, name) {
            return Ok(());
        }
        Err(ProtocolError::NotAllowed {
            user: user.to_string(),
            action: match action {
                Action::Publish => "publish to",
                Action::Subscribe => "subscribe to",
            },
            name: name.to_string(),
        })
    }

    /// Checks a subscription a client asks for: the grammar's rules for the filter and the
    /// id, then whether `user` (as for [`check_rule`](Self::check_rule)) may subscribe to
    /// the filter. Names come first, so that what a refusal repeats is printable text.
    ///
    /// # Errors
    /// What the grammar refuses, or [`ProtocolError::NotAllowed`].
    #[inline(never)] // keeps `SUBSCRIBE`'s stack frame small: see `CLIENT_STACK_SIZE`
    pub fn check_subscribe(
        &self,
        user: Option<&str>,
        filter: &str,
        subscriber_id: &str,
    ) -> Result<(), ProtocolError> {
        grammar::check_subscription(filter, subscriber_id, &self.limits)?;
        self.check_rule(user, Action::Subscribe, filter)
    }

    /// Whether `user` (as for [`check_rule`](Self::check_rule)) may publish to `topic` as
    /// `publisher_id`: an id it may go by (see [`Access::may_publish_as`]), and a rule that
    /// allows the topic.
    ///
    /// The grammar's rules for the topic and the id come first, so that what a refusal
    /// repeats is printable text.
    ///
    /// # Errors
    /// What the grammar refuses, or [`ProtocolError::NotAllowed`].
    pub fn check_publish_rules(
        &self,
        user: Option<&str>,
        topic: &str,
        publisher_id: &str,
    ) -> Result<(), ProtocolError> {
        grammar::check_topic(topic, &self.limits)?;
        grammar::check_id("publisher id", publisher_id, &self.limits)?;
        self.check_goes_by(user, publisher_id, "publish as")?;
        self.check_rule(user, Action::Publish, topic)
    }

    /// Whether `user` may hold the durable subscription of `subscriber_id` to `filter`:
    /// the id must be one the user goes by (as a publisher id must), since a durable
    /// subscription belongs to its id and whoever holds the id gets its messages; and the
    /// filter one the user may subscribe to.
    ///
    /// # Errors
    /// What the grammar refuses, or [`ProtocolError::NotAllowed`].
    pub fn check_durable_rules(
        &self,
        user: Option<&str>,
        filter: &str,
        subscriber_id: &str,
    ) -> Result<(), ProtocolError> {
        grammar::check_subscription(filter, subscriber_id, &self.limits)?;
        self.check_goes_by(user, subscriber_id, "hold durable subscriptions as")?;
        self.check_rule(user, Action::Subscribe, filter)
    }

    /// Whether `user` may go by `id`; `action` says what for, in the refusal.
    fn check_goes_by(
        &self,
        user: Option<&str>,
        id: &str,
        action: &'static str,
    ) -> Result<(), ProtocolError> {
        let Some(access) = self.access() else {
            return Ok(());
        };
        let user = user.unwrap_or(access::ANONYMOUS);
        if access.may_publish_as(user, id) {
            return Ok(());
        }
        Err(ProtocolError::NotAllowed {
            user: user.to_string(),
            action,
            name: id.to_string(),
        })
    }

    /// The access rules, if the broker has them.
    pub fn access(&self) -> Option<&Access> {
        self.logins.as_ref().map(Logins::access)
    }

    /// Checks `user`'s `secret` for a client at `from` (named `who` in the log): every way
    /// in that carries a secret hands it here (see `auth.rs`).
    ///
    /// # Errors
    /// [`ProtocolError::AuthOff`] on a broker without an auth file, or what
    /// [`Logins::log_in`] refuses.
    pub fn log_in(
        &self,
        from: IpAddr,
        who: &dyn std::fmt::Display,
        user: &str,
        secret: &str,
    ) -> Result<String, ProtocolError> {
        let Some(logins) = &self.logins else {
            return Err(ProtocolError::AuthOff);
        };
        logins.log_in(from, who, user, secret, &self.stats)
    }

    /// What `CLIENTS [filter]` lists for `user` (see `clients.rs` for the filter), bounded
    /// like `TOPICS` by `--max-topics-listed`. With an auth file, a user who is not an
    /// instructor sees only the clients logged in as itself (a student must not learn
    /// classmates' addresses and ids this way), and a client that gave no name sees
    /// none.
    pub fn client_listing(
        &self,
        user: Option<&str>,
        filter: Option<&str>,
    ) -> (Vec<ListedClient>, usize) {
        let wanted = Wanted::parse(filter);
        let sees_all = match self.access() {
            None => true,
            Some(access) => user.is_some_and(|user| access.is_instructor(user)),
        };
        let visible = |client: &ListedClient| sees_all || user == Some(client.user.as_str());
        let list = |wanted: Wanted<'_>| {
            let limit = self.config.max_topics_listed;
            self.clients
                .listing(|c| visible(c) && wanted.matches(c), limit)
        };
        match wanted {
            // A word no client used as an id is a topic: who would receive it.
            Wanted::Id(word) => match list(Wanted::Id(word)) {
                (none, 0) if none.is_empty() => list(Wanted::Topic(word)),
                found => found,
            },
            wanted => list(wanted),
        }
    }

    /// Whether the client logged in as `user`, at `from`, may `KICK`: with an auth file,
    /// an `instructor` only. Without one there are no users to tell an instructor by, so
    /// only a client on the broker's own machine may: the instructor's terminal is there,
    /// the students' laptops are not (on a lab machine everybody shares, anyone can stop
    /// the broker anyway). Redis without ACLs lets anyone `CLIENT KILL`; we would rather
    /// a student could not end a classmate's session from across the room.
    ///
    /// # Errors
    /// [`ProtocolError::NotInstructor`] or [`ProtocolError::KickFromAfar`].
    pub fn check_kick(&self, user: Option<&str>, from: IpAddr) -> Result<(), ProtocolError> {
        match self.access() {
            Some(access) => {
                let user = user.unwrap_or(access::ANONYMOUS);
                if access.is_instructor(user) {
                    Ok(())
                } else {
                    Err(ProtocolError::NotInstructor(user.to_string()))
                }
            }
            None if from.is_loopback() => Ok(()),
            None => Err(ProtocolError::KickFromAfar),
        }
    }
}
