//! The timestamp on every `DELIVER` line, formatted at most once a second.
//!
//! Formatting a local date and time takes a time-zone lookup and a dozen small writes, and
//! the broker stamps every message it delivers; lab 6 measures, with callgrind, what that
//! costs next to the rest of handling a publish. The text only changes once a second, so
//! each session keeps the last text it made and the second it was made for. Reading the
//! system clock to check is a cheap call that does not enter the kernel on Linux. (A burst
//! of publishes reads the clock only once anyway: see `Batch` in `batch.rs`.)

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local};

use crate::protocol::TIMESTAMP_FORMAT;

/// A per-thread cache of the current `YYYY-MM-DD HH:MM:SS` text in local time.
///
/// ```
/// let mut clock = pubsub_lab::clock::Clock::default();
/// let text = clock.now().to_string();
/// assert_eq!(text.len(), "2025-03-14 10:30:00".len());
/// ```
#[derive(Debug, Default)]
pub struct Clock {
    /// The Unix second `text` was made for.
    second: u64,
    text: String,
}

impl Clock {
    /// The current local time as the protocol writes it.
    pub fn now(&mut self) -> &str {
        // lab:begin 06 the timestamp cache
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = DateTime::<Local>::from(now)
                .format(TIMESTAMP_FORMAT)
                .to_string();
        }
        &self.text
        // lab:end 06
    }
}
