//! Topic names and topic filters, with MQTT 3.1.1's rules (section 4.7).
//!
//! A topic name is levels separated by `/`: `building/3/room/301/temperature`. Levels may
//! be empty (`a//b` has three levels, the middle one empty; `/a` starts with an empty
//! one). Names are case-sensitive. A *filter* is a name that may also use two wildcards,
//! each only as a whole level:
//!
//! | filter | matches | does not match |
//! |---|---|---|
//! | `news/+` | `news/tech`, `news/` | `news`, `news/tech/ai` |
//! | `news/#` | `news`, `news/tech`, `news/tech/ai` | `newsroom` |
//! | `+/+` | `a/b`, `/b`, `a/` | `a`, `a/b/c` |
//! | `#` | every name not starting with `$` | `$SYS/broker/uptime` |
//!
//! `+` stands for exactly one level, `#` for any number of levels, zero included, and only
//! at the end (after it there would be nothing left to match). A filter that starts with a
//! wildcard does not match a name starting with `$`, so that `#` does not drown a client in
//! the broker's own `$SYS` figures. A filter without wildcards matches exactly one name:
//! itself. Mosquitto and NATS (with `*` and `>` for `+` and `#`) behave the same way.

use std::fmt;

/// What separates the levels of a topic.
pub const LEVEL_SEPARATOR: char = '/';

/// The one-level wildcard.
pub const ONE_LEVEL: &str = "+";

/// The many-levels wildcard.
pub const ALL_LEVELS: &str = "#";

/// Why a filter is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterError {
    /// `+` or `#` with something else in the same level (`news+`, `a/b#`).
    WildcardInsideLevel,
    /// `#` before the last level (`a/#/b`).
    AllLevelsNotLast,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::WildcardInsideLevel => write!(
                f,
                "a wildcard must be a whole level: write news/+ or news/#, not news+ or news#"
            ),
            FilterError::AllLevelsNotLast => {
                write!(f, "# must be the last level: write news/#, not #/news")
            }
        }
    }
}

impl std::error::Error for FilterError {}

/// The prefix of the broker's own topics (see `sys.rs`): clients may subscribe to them,
/// never publish to them.
pub const RESERVED_PREFIX: &str = "$SYS";

/// How many levels `text` has: one more than it has separators (`a//b` has three).
pub fn levels(text: &str) -> usize {
    text.bytes().filter(|&byte| byte == b'/').count() + 1
}

/// Whether `name` is one of the broker's own `$SYS` topics.
pub fn is_reserved(name: &str) -> bool {
    name.strip_prefix(RESERVED_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(LEVEL_SEPARATOR))
}

/// Whether `text` uses a wildcard anywhere (as a level or not).
pub fn has_wildcard(text: &str) -> bool {
    text.contains(['+', '#'])
}

/// Checks that `filter` is a valid filter. Every topic name without `+` and `#` is one.
///
/// ```
/// use pubsub_lab::topic::{check_filter, FilterError};
/// assert_eq!(check_filter("news/+/ai"), Ok(()));
/// assert_eq!(check_filter("news+"), Err(FilterError::WildcardInsideLevel));
/// assert_eq!(check_filter("#/news"), Err(FilterError::AllLevelsNotLast));
/// ```
///
/// # Errors
/// The rule the filter breaks.
pub fn check_filter(filter: &str) -> Result<(), FilterError> {
    if !has_wildcard(filter) {
        return Ok(());
    }
    let mut levels = filter.split(LEVEL_SEPARATOR).peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        match level {
            ONE_LEVEL => {}
            ALL_LEVELS if is_last => {}
            ALL_LEVELS => return Err(FilterError::AllLevelsNotLast),
            _ if has_wildcard(level) => return Err(FilterError::WildcardInsideLevel),
            _ => {}
        }
    }
    Ok(())
}

/// Whether the (valid) filter `filter` matches the topic name `topic`. See the module docs
/// for the rules.
///
/// ```
/// use pubsub_lab::topic::matches;
/// assert!(matches("news/+", "news/tech"));
/// assert!(matches("news/#", "news"));
/// assert!(!matches("news/+", "news/tech/ai"));
/// assert!(!matches("#", "$SYS/broker/uptime"));
/// ```
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut names = topic.split(LEVEL_SEPARATOR);
    for wanted in filter.split(LEVEL_SEPARATOR) {
        if wanted == ALL_LEVELS {
            // Any number of levels from here on, zero included: `news/#` matches `news`.
            return true;
        }
        match names.next() {
            Some(name) if wanted == ONE_LEVEL || wanted == name => continue,
            _ => return false,
        }
    }
    // Every level of the filter matched one of the name: no level may be left over.
    names.next().is_none()
}
