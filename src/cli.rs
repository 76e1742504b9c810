//! What the binaries share: duration flags, logging set-up, and printing errors.
//!
//! The binaries in `src/bin/` stay thin: each parses its flags with clap and calls into the
//! library. The little they have in common lives here so it is written once.

use std::time::Duration;

/// Parses a duration flag: `2s`, `500ms`, `1.5s`, `1m`, or a bare number of seconds.
///
/// ```
/// use std::time::Duration;
/// use pubsub_lab::cli::parse_duration;
/// assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
/// assert!(parse_duration("soon").is_err());
/// ```
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
    Ok(Duration::from_secs_f64(value * seconds_per_unit))
}

/// Writes a duration the way [`parse_duration`] reads it: `2s`, `1.5s`, `250ms`.
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// Starts env_logger: `RUST_LOG` if set, else `default_filter` (such as `info`). With
/// `trace`, the trace view ([`crate::trace`]) is switched on as well.
///
/// Records go to stderr, so stdout stays the program's own output, as one line each:
/// local time, level, message. Trace records leave the level out so the arrows line up.
pub fn init_logging(default_filter: &str, trace: bool) {
    use std::io::Write;
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    if trace {
        builder.filter_module(crate::trace::TARGET, log::LevelFilter::Trace);
    }
    builder.format(|out, record| {
        let time = chrono::Local::now().format("%H:%M:%S%.3f");
        if record.target() == crate::trace::TARGET {
            writeln!(out, "{time}  {}", record.args())
        } else {
            writeln!(out, "{time} {:<5} {}", record.level(), record.args())
        }
    });
    builder.init();
}

/// Whether an I/O error means our reader went away (`subscriber | head -3`): the program
/// should then end quietly and successfully, as `cat` does.
pub fn is_broken_pipe(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::BrokenPipe
}
