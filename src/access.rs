//! Access control: who may connect, and what each user may publish and subscribe to.
//!
//! A broker on a shared lab network, bound to `0.0.0.0`, is open to everyone on it: a
//! classmate can publish as you, or subscribe to `#` and read everything. With
//! `--auth-file FILE`, every connection must first say who it is (`AUTH <user> <secret>`),
//! and each publish and subscribe is checked against the file's rules, in the spirit of
//! Mosquitto's `password_file` and `acl_file` (one file here):
//!
//! ```text
//! # comment
//! user alice s3cret
//! user bob hunter2
//! allow alice publish lab/alice/#
//! allow * subscribe lab/#
//! instructor alice
//! ```
//!
//! * `user <name> <secret>`: a user and the secret it proves itself with.
//! * `allow <name|*|anonymous> publish|subscribe <filter>`: `<name>` (or `*`, any user
//!   who logged in) may publish to every topic `<filter>` matches, or subscribe to every
//!   filter it *covers* (see [`covers`]). What no rule allows is refused: a file with users
//!   and no rules lets everyone connect and do nothing.
//! * [`ANONYMOUS`] is the user of a client that gave no name: a datagram (with
//!   `--udp-allow-anonymous`), an HTTP request without credentials. It is a user like any
//!   other in the rules, so every way in follows the same ones; `*` does not include it
//!   (what strangers may do is always written out), and nobody can log in as it. It may
//!   publish under any id that is not a user's (see [`Access::may_publish_as`]).
//! * `instructor <name>`: a declared user who sees every client in `CLIENTS` (and `GET
//!   /clients`) and may `KICK` one; every other user sees only its own clients and may
//!   kick none. Redis has the same split with its ACL's `+client` permission; NATS keeps
//!   its `/connz` on a separate monitoring port for operators.
//!
//! The rules of the wire (see `session.rs`): until `AUTH` succeeds, every other command is
//! answered `ERROR authentication required: send AUTH <user> <secret> first`; no `AUTH`
//! within `--auth-timeout` closes the connection; a wrong secret is answered after
//! [`FAILURE_DELAY`] and counted in `STATS` (`auth_failures`); a publish must carry the
//! user's own name as publisher id (or `<user>:<anything>`), so nobody publishes as
//! someone else.
//!
//! Secrets are stored in the file as they are typed. That is what a lab needs (the
//! instructor hands them out on paper) and what Mosquitto's plain password file was before
//! `mosquitto_passwd` hashed it; a production broker stores a slow salted hash (bcrypt,
//! PBKDF2) so that a stolen file does not give the secrets away. The file is refused if
//! anyone but its owner may write to it, since whoever can write it can let themselves in.

use std::fmt;
use std::time::Duration;

use crate::topic::{self, ALL_LEVELS, LEVEL_SEPARATOR, ONE_LEVEL};

/// How long a wrong secret waits for its answer. Guessing secrets one connection at a time
/// then takes seconds per guess, not microseconds. (Only the guessing connection waits: it
/// has a thread of its own.)
pub const FAILURE_DELAY: Duration = Duration::from_millis(500);

/// The name rules use for a client that did not say who it is (see the module docs).
pub const ANONYMOUS: &str = "anonymous";

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `PUBLISH`, `RETAIN`, `UNRETAIN` to topics the filter matches.
    Publish,
    /// `SUBSCRIBE` to filters the rule's filter covers.
    Subscribe,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
        })
    }
}

/// One `allow` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// The user's name, or `None` for `*`.
    user: Option<String>,
    action: Action,
    filter: String,
}

/// An auth file, read and checked. See the module docs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Access {
    users: Vec<(String, String)>,
    rules: Vec<Rule>,
    /// The users marked `instructor`.
    instructors: Vec<String>,
}

impl fmt::Debug for Access {
    /// Never shows a secret, even in a debug dump.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field(
                "users",
                &self.users.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("rules", &self.rules)
            .field("instructors", &self.instructors)
            .finish()
    }
}

/// A line of an auth file that is not right: its number (from 1) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The line's number, counting from 1.
    pub line: usize,
    /// What is wrong with it, and how to write it.
    pub reason: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for FileError {}

impl Access {
    /// Reads an auth file's text.
    ///
    /// ```
    /// use pubsub_lab::access::{Access, Action};
    /// let access = Access::parse("user alice s3cret\nallow alice publish lab/alice/#\n")?;
    /// assert!(access.may("alice", Action::Publish, "lab/alice/temp"));
    /// assert!(!access.may("alice", Action::Subscribe, "lab/alice/temp"));
    /// # Ok::<(), pubsub_lab::access::FileError>(())
    /// ```
    ///
    /// # Errors
    /// The first line that is not a comment, a blank, a `user` or an `allow` line, with its
    /// number: a user twice, a rule for a user never declared, a filter that is not one.
    pub fn parse(text: &str) -> Result<Access, FileError> {
        let mut access = Access::default();
        for (index, line) in text.lines().enumerate() {
            let error = |reason: String| FileError {
                line: index + 1,
                reason,
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["user", name, secret] => {
                    if access.users.iter().any(|(known, _)| known == name) {
                        return Err(error(format!("user {name} is declared twice")));
                    }
                    if *name == "*" {
                        return Err(error(
                            "* means any user: it cannot be a user's name".to_string(),
                        ));
                    }
                    if *name == ANONYMOUS {
                        return Err(error(format!(
                            "{ANONYMOUS} is the user of clients that give no name: nobody \
                             can log in as it; write allow {ANONYMOUS} ... lines for them"
                        )));
                    }
                    access.users.push((name.to_string(), secret.to_string()));
                }
                ["allow", who, action, filter] => {
                    let action = match *action {
                        "publish" => Action::Publish,
                        "subscribe" => Action::Subscribe,
                        other => {
                            return Err(error(format!(
                                "'{}' is not an action: write publish or subscribe",
                                crate::text::escaped(other)
                            )))
                        }
                    };
                    topic::check_filter(filter)
                        .map_err(|problem| error(format!("bad filter {filter}: {problem}")))?;
                    let user = match *who {
                        "*" => None,
                        ANONYMOUS => Some(ANONYMOUS.to_string()),
                        name if access.users.iter().any(|(known, _)| known == name) => {
                            Some(name.to_string())
                        }
                        name => {
                            return Err(error(format!(
                                "no user {name} above: declare it with a user line first"
                            )))
                        }
                    };
                    access.rules.push(Rule {
                        user,
                        action,
                        filter: filter.to_string(),
                    });
                }
                ["instructor", name] => {
                    if !access.users.iter().any(|(known, _)| known == name) {
                        return Err(error(format!(
                            "no user {name} above: declare it with a user line first"
                        )));
                    }
                    access.instructors.push(name.to_string());
                }
                _ => {
                    return Err(error(
                        "expected 'user <name> <secret>', 'allow <name|*|anonymous> \
                         publish|subscribe <filter>' or 'instructor <name>' (or a # comment)"
                            .to_string(),
                    ))
                }
            }
        }
        Ok(access)
    }

    /// Reads and parses the auth file at `path`, refusing one that anyone but its owner
    /// may write to.
    ///
    /// # Errors
    /// A sentence for the operator: the file cannot be read, others can write to it, or a
    /// line is wrong ([`FileError`]).
    pub fn load(path: &std::path::Path) -> Result<Access, String> {
        let metadata = std::fs::metadata(path)
            .map_err(|error| format!("cannot read it: {}", crate::error::describe(&error)))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode();
            if mode & 0o022 != 0 {
                return Err(format!(
                    "others can write to it (mode {:o}), so they could let themselves in: \
                     chmod go-w {}",
                    mode & 0o777,
                    path.display()
                ));
            }
            if mode & 0o004 != 0 {
                log::warn!(
                    "{} holds secrets and everyone on this machine can read it: chmod o-r it",
                    path.display()
                );
            }
        }
        #[cfg(not(unix))]
        let _ = metadata;
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read it: {}", crate::error::describe(&error)))?;
        Access::parse(&text).map_err(|error| error.to_string())
    }

    /// The user `name`, if `secret` is its secret. The comparison takes the same time
    /// wherever the secrets differ, and as long for a user that does not exist as for one
    /// that does (see [`same_secret`]).
    pub fn authenticate(&self, name: &str, secret: &str) -> Option<&str> {
        let mut found = None;
        for (user, expected) in &self.users {
            // Every user's secret is compared, whichever name was given: the time taken
            // does not tell whether the name exists.
            let matched = same_secret(expected.as_bytes(), secret.as_bytes());
            if matched && user == name {
                found = Some(user.as_str());
            }
        }
        found
    }

    /// Whether user `name` may `action` `what`: a topic for a publish, a filter for a
    /// subscription.
    pub fn may(&self, name: &str, action: Action, what: &str) -> bool {
        self.rules.iter().any(|rule| {
            let for_user = match &rule.user {
                Some(user) => user == name,
                None => name != ANONYMOUS,
            };
            for_user
                && rule.action == action
                && match action {
                    Action::Publish => topic::matches(&rule.filter, what),
                    Action::Subscribe => covers(&rule.filter, what),
                }
        })
    }

    /// Whether `user` may publish (or hold a durable subscription) as `id`: a user as its
    /// own name or `name:...` (see [`may_publish_as`]); [`ANONYMOUS`] as any id that is
    /// not a user's, so that a stranger cannot speak for alice.
    pub fn may_publish_as(&self, user: &str, id: &str) -> bool {
        if user == ANONYMOUS {
            return !self.users.iter().any(|(name, _)| may_publish_as(name, id));
        }
        may_publish_as(user, id)
    }

    /// Whether user `name` is marked `instructor`: it sees every client and may kick one.
    pub fn is_instructor(&self, name: &str) -> bool {
        self.instructors.iter().any(|instructor| instructor == name)
    }

    /// How many users the file declares.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

/// Whether publisher id `id` is one user `user` may publish as: its own name, or its name,
/// a colon and more (`alice:sensor1`), so one user can tell its programs apart.
pub fn may_publish_as(user: &str, id: &str) -> bool {
    id == user
        || id
            .strip_prefix(user)
            .is_some_and(|rest| rest.starts_with(':'))
}

/// Compares two secrets in constant time: every byte of the longer one is looked at, and
/// the answer is folded together with `|`, never decided early. An ordinary `==` stops at
/// the first difference, so how long it takes tells an attacker how many leading bytes of
/// a guess were right, and a secret can be found one byte at a time.
///
/// ```
/// use pubsub_lab::access::same_secret;
/// assert!(same_secret(b"s3cret", b"s3cret"));
/// assert!(!same_secret(b"s3cret", b"s3creT"));
/// assert!(!same_secret(b"s3cret", b"s3cret!"));
/// ```
pub fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    let length = expected.len().max(given.len());
    // Different lengths are a difference too, found without returning early.
    let mut difference = u8::from(expected.len() != given.len());
    for index in 0..length {
        let a = expected.get(index).copied().unwrap_or(0);
        let b = given.get(index).copied().unwrap_or(0);
        difference |= a ^ b;
    }
    difference == 0
}

/// Whether a subscribe rule for `rule` allows subscribing to `filter`: every topic
/// `filter` matches, `rule` matches too. Level by level: `#` in the rule covers whatever
/// is left; `+` covers any one level, `+` included (but not `#`, which is many levels); a
/// plain level covers only itself. As in topic matching, a rule that starts with a
/// wildcard does not cover `$SYS` filters.
///
/// ```
/// use pubsub_lab::access::covers;
/// assert!(covers("lab/#", "lab/alice/+"));
/// assert!(covers("lab/+/temp", "lab/+/temp"));
/// assert!(!covers("lab/+/temp", "lab/#"));
/// assert!(!covers("lab/alice/#", "lab/+/temp"));
/// ```
pub fn covers(rule: &str, filter: &str) -> bool {
    // lab:begin 11 ACL filter check
    if filter.starts_with('$') && rule.starts_with(['+', '#']) {
        return false;
    }
    let mut wanted = filter.split(LEVEL_SEPARATOR);
    for allowed in rule.split(LEVEL_SEPARATOR) {
        if allowed == ALL_LEVELS {
            return true;
        }
        match wanted.next() {
            Some(ALL_LEVELS) | None => return false,
            Some(level) if allowed == ONE_LEVEL || allowed == level => {}
            Some(_) => return false,
        }
    }
    wanted.next().is_none()
    // lab:end 11
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# comment\n\
        user alice s3cret\n\
        user bob hunter2\n\
        \n\
        allow alice publish lab/alice/#\n\
        allow * subscribe lab/#\n";

    #[test]
    fn the_issue_example_reads_and_each_rule_applies() {
        let access = Access::parse(FILE).unwrap();
        assert_eq!(access.user_count(), 2);
        assert!(access.may("alice", Action::Publish, "lab/alice"));
        assert!(access.may("alice", Action::Publish, "lab/alice/temp"));
        assert!(!access.may("alice", Action::Publish, "lab/bob/temp"));
        assert!(!access.may("bob", Action::Publish, "lab/alice/temp"));
        assert!(access.may("bob", Action::Subscribe, "lab/+/temp"));
        assert!(access.may("bob", Action::Subscribe, "lab/#"));
        assert!(!access.may("bob", Action::Subscribe, "#"));
        assert!(!access.may("bob", Action::Subscribe, "other"));
    }

    #[test]
    fn secrets_must_match_whole_for_that_user() {
        let access = Access::parse(FILE).unwrap();
        assert_eq!(access.authenticate("alice", "s3cret"), Some("alice"));
        assert_eq!(
            access.authenticate("alice", "hunter2"),
            None,
            "bob's secret"
        );
        assert_eq!(access.authenticate("alice", "s3cre"), None);
        assert_eq!(access.authenticate("carol", "s3cret"), None);
    }

    #[test]
    fn a_wrong_line_is_reported_with_its_number() {
        let cases = [
            ("user alice\n", 1, "expected 'user"),
            ("user a x\nuser a y\n", 2, "declared twice"),
            ("user a x\nallow b publish t\n", 2, "no user b"),
            ("user a x\n\nallow a read t\n", 3, "not an action"),
            ("user a x\nallow a subscribe a/#/b\n", 2, "bad filter"),
            ("user * x\n", 1, "any user"),
        ];
        for (text, line, words) in cases {
            let error = Access::parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}");
            assert!(error.to_string().starts_with(&format!("line {line}: ")));
            assert!(error.reason.contains(words), "{error}");
        }
    }

    #[test]
    fn a_filter_is_covered_only_if_the_rule_matches_everything_it_matches() {
        let cases = [
            ("#", "a/b", true),
            ("#", "#", true),
            ("a/#", "a", true),
            ("a/#", "a/#", true),
            ("a/+", "a/+", true),
            ("a/+", "a/b", true),
            ("a/+", "a/#", false),
            ("a/+", "a/b/c", false),
            ("a/b", "a/+", false),
            ("a/b", "a/b", true),
            ("a/b", "a", false),
            ("a/+/c", "a/+/c", true),
            ("+/c", "$SYS/c", false),
            ("$SYS/#", "$SYS/broker/+", true),
        ];
        for (rule, filter, expected) in cases {
            assert_eq!(covers(rule, filter), expected, "{rule} covers {filter}?");
        }
    }

    #[test]
    fn publisher_ids() {
        assert!(may_publish_as("alice", "alice"));
        assert!(may_publish_as("alice", "alice:sensor1"));
        assert!(!may_publish_as("alice", "alicex"));
        assert!(!may_publish_as("alice", "bob"));
    }

    /// `anonymous` is a user of the rules that nobody can log in as; `*` leaves it out,
    /// and it may go by any id that is not a user's.
    #[test]
    fn anonymous_has_only_the_rules_written_for_it() {
        let access = Access::parse(
            "user alice s3cret\n\
             allow * subscribe lab/#\n\
             allow anonymous publish lab/sensors/#\n",
        )
        .unwrap();
        assert!(access.may("alice", Action::Subscribe, "lab/x"));
        assert!(!access.may(ANONYMOUS, Action::Subscribe, "lab/x"));
        assert!(access.may(ANONYMOUS, Action::Publish, "lab/sensors/t"));
        assert!(access.may_publish_as(ANONYMOUS, "ticker"));
        assert!(!access.may_publish_as(ANONYMOUS, "alice"));
        assert!(!access.may_publish_as(ANONYMOUS, "alice:phone"));
        assert!(access.may_publish_as(ANONYMOUS, "alicex"));
        assert_eq!(access.authenticate(ANONYMOUS, ""), None);
        let error = Access::parse("user anonymous x\n").unwrap_err();
        assert_eq!(error.line, 1);
        assert!(error.reason.contains("nobody can log in as it"), "{error}");
    }

    #[test]
    fn an_instructor_must_be_a_declared_user() {
        let access = Access::parse("user alice a\nuser bob b\ninstructor alice\n").unwrap();
        assert!(access.is_instructor("alice"));
        assert!(!access.is_instructor("bob"));
        let error = Access::parse("instructor carol\n").unwrap_err();
        assert_eq!(error.line, 1);
        assert!(error.reason.contains("no user carol"), "{error}");
    }

    #[test]
    fn a_debug_dump_never_shows_a_secret() {
        let access = Access::parse(FILE).unwrap();
        assert!(!format!("{access:?}").contains("s3cret"));
    }
}
