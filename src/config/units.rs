//! Durations as people type them (`2s`, `500ms`, `1m`), read and written back.

use std::time::Duration;

/// Parses a duration as people type it: `2s`, `500ms`, `1.5s`, `1m`, or a bare number of
/// seconds. Values too large to represent are an error, not a panic.
///
/// ```
/// use std::time::Duration;
/// use pubsub_lab::config::parse_duration;
/// assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
/// assert!(parse_duration("soon").is_err());
/// assert!(parse_duration("1e30s").is_err());
/// ```
///
/// # Errors
/// A sentence saying what was wrong and how to write it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, seconds_per_unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: write it like 2s, 500ms or 1m"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "'{text}' is not a duration: it must be zero or more"
        ));
    }
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("'{text}' is too long a duration: write at most a few hours"))
}

/// Writes a duration the way [`parse_duration`] reads it: `2s`, `1.5s`, `250ms`.
///
/// ```
/// use std::time::Duration;
/// use pubsub_lab::config::format_duration;
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
/// assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
/// ```
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}
