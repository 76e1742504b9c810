//! The client library's error type.
//!
//! The broker itself has no error type of its own: a bad line from a client is a
//! [`ProtocolError`](crate::protocol::ProtocolError) *value* that it answers and carries on
//! from, and a failed socket simply ends that one connection. This enum is for code using
//! [`Client`](crate::Client), where something going wrong is the caller's business.

use std::fmt;
use std::io;

/// Why a [`Client`](crate::Client) call failed. Each variant says what the caller can do.
#[derive(Debug)]
pub enum Error {
    /// The connection could not be opened. Usually no broker is listening at `addr`: start
    /// one, or check `--host` and `--port`.
    Connect {
        /// The address tried.
        addr: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// The broker closed the connection (it stopped, or it cut this client off). Reconnect
    /// to carry on.
    Closed,
    /// The broker answered `ERROR <reason>`: the command was refused, the connection is
    /// still usable. The reason says what was wrong.
    Refused(String),
    /// No answer came in time. The connection may still be fine; the broker may be slow.
    Timeout,
    /// The broker sent a line this client did not expect, for example a broker that does
    /// not know the extension command just sent.
    Unexpected(String),
    /// A topic, id or message that cannot be sent as one token: topics and ids must be
    /// non-empty with no spaces, messages non-empty with no line breaks. Nothing was sent.
    InvalidArgument(String),
    /// Reading or writing the socket failed.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { addr, source } => write!(
                f,
                "could not connect to {addr}: {}. Is the broker running? \
                 Start it with: {}",
                describe(source),
                start_command(addr)
            ),
            Error::Closed => write!(f, "the broker closed the connection"),
            Error::Refused(reason) => write!(f, "the broker refused the command: {reason}"),
            Error::Timeout => write!(f, "no answer from the broker in time"),
            Error::Unexpected(line) => write!(f, "unexpected line from the broker: {line}"),
            Error::InvalidArgument(what) => write!(f, "cannot send this: {what}"),
            Error::Io(error) => write!(f, "connection failed: {}", describe(error)),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } | Error::Io(source) => Some(source),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Error {
        Error::Io(error)
    }
}

/// The command that starts a broker where `addr` (as [`Error::Connect`] holds it) points:
/// with `--port` unless it is the default one, so that following the hint starts the
/// broker that was asked for, not one on port 9000.
fn start_command(addr: &str) -> String {
    let port = addr
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok());
    match port {
        Some(port) if port != crate::config::DEFAULT_PORT => {
            format!("cargo run --bin broker -- --port {port}")
        }
        _ => "cargo run --bin broker".to_string(),
    }
}

/// An I/O error as a person reads it: "connection refused", not
/// "Connection refused (os error 111)".
pub fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error") {
        Some(cut) => &text[..cut],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
