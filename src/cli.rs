//! What the binaries share: duration flags with defaults, logging set-up, and a clean exit
//! on a closed pipe.
//!
//! The binaries in `src/bin/` stay thin: each parses its flags with clap and calls into the
//! library. The little they have in common lives here so it is written once. No module of
//! the library uses this one: it is for programs, not for the broker.

use std::time::Duration;

use crate::config::{format_duration, parse_duration};

mod logging;

pub use logging::{LogGuard, QUEUED_RECORDS};

/// A duration flag whose default `--help` shows as people write it (`2s`): clap needs a
/// type that prints and parses itself for `default_value_t`, and [`Duration`] does neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub Duration);

impl std::fmt::Display for DurationArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::str::FromStr for DurationArg {
    type Err = String;

    fn from_str(text: &str) -> Result<DurationArg, String> {
        parse_duration(text).map(DurationArg)
    }
}

/// The environment variable the `publisher` and `subscriber` read the secret from when
/// `--secret` is not given. A flag shows in `ps` to everyone on the machine; the
/// environment of a process does not.
pub const SECRET_VARIABLE: &str = "PUBSUB_SECRET";

/// `--user` and `--secret`, for the clients of a broker with access control.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// On a broker with --auth-file: your user name, sent first in an AUTH line with your
    /// secret.
    #[arg(long)]
    pub user: Option<String>,
    /// Your secret, with --user. Better left out: then it is read from the environment
    /// variable PUBSUB_SECRET, which other users of the machine cannot see in `ps`.
    #[arg(long, requires = "user")]
    pub secret: Option<String>,
}

impl AuthArgs {
    /// The user and secret to send, if `--user` was given.
    ///
    /// # Errors
    /// `--user` without a secret in the flag or the environment.
    pub fn credentials(&self) -> Result<Option<(String, String)>, String> {
        let Some(user) = &self.user else {
            return Ok(None);
        };
        let secret = match &self.secret {
            Some(secret) => secret.clone(),
            None => std::env::var(SECRET_VARIABLE).map_err(|_| {
                format!("--user {user} needs a secret: set {SECRET_VARIABLE} (or give --secret)")
            })?,
        };
        Ok(Some((user.clone(), secret)))
    }
}

/// Starts env_logger: `RUST_LOG` if set, else `default_filter` (such as `info`). With
/// `trace`, the trace view ([`crate::trace`]) is switched on as well. Keep the guard until
/// the program ends: dropping it lets the last records out.
///
/// Records go to stderr, so stdout stays the program's own output, as one line each:
/// local time, level, message. Trace records leave the level out so the arrows line up.
/// They go through a bounded queue to a thread of their own (`cli/logging.rs`), so a
/// terminal that stops reading never holds up the thread that logs: past
/// [`QUEUED_RECORDS`] waiting, records are dropped and counted.
#[must_use = "the last log records are written only while the guard lives"]
pub fn init_logging(default_filter: &str, trace: bool) -> Option<LogGuard> {
    use std::io::Write;
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    if trace {
        builder.filter_module(crate::trace::TARGET, log::LevelFilter::Trace);
    }
    match logging::queue_to(std::io::stderr()) {
        Ok((queue, guard)) => {
            let filter = builder.build();
            log::set_max_level(filter.filter());
            match log::set_boxed_logger(Box::new(logging::Queued::new(filter, queue))) {
                Ok(()) => Some(guard),
                Err(_) => None, // a logger was set already: keep it
            }
        }
        // No thread for the writer: log straight to stderr, in the same format.
        Err(_) => {
            builder.format(|out, record| {
                let time = chrono::Local::now().format("%H:%M:%S%.3f");
                if record.target() == crate::trace::TARGET {
                    writeln!(out, "{time}  {}", record.args())
                } else {
                    writeln!(out, "{time} {:<5} {}", record.level(), record.args())
                }
            });
            let _ = builder.try_init();
            None
        }
    }
}

/// Whether an I/O error means our reader went away (`subscriber | head -3`): the program
/// should then end quietly and successfully, as `cat` does.
pub fn is_broken_pipe(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::BrokenPipe
}
