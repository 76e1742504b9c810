//! The trace view: every line in and out of the broker, one log record each.
//!
//! `broker --trace` (or `RUST_LOG=trace`) turns it on. Records go to the log target
//! [`TARGET`], so they can be switched on alone, and are laid out to be read on a
//! projector, one column each for connection number, client id and direction. Client text
//! is escaped (`\u{1b}`), so nothing a client sends can act on the screen it is shown on:
//!
//! ```text
//! #3   sub1     <- SUBSCRIBE weather sub1
//! #4   pub1     <- PUBLISH weather Rainy day ahead! pub1
//! #3   sub1     -> DELIVER weather Rainy day ahead! pub1 2025-03-14 10:30:00
//! ```

use crate::peer::Peer;
use crate::text::escaped;

/// The log target of trace records; `RUST_LOG=pubsub_lab::wire=trace` shows only them.
pub const TARGET: &str = "pubsub_lab::wire";

/// Which way a traced line went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the broker: `<-`.
    In,
    /// From the broker to the client: `->`.
    Out,
}

/// Whether trace records would be printed. Checked before doing any work for them, so the
/// trace view costs nothing when it is off.
pub fn enabled() -> bool {
    log::log_enabled!(target: TARGET, log::Level::Trace)
}

/// Logs each line in `bytes` (one or more `\n`-terminated lines, or one bare line), sent
/// to or received from `peer`.
pub fn lines(peer: &Peer, direction: Direction, bytes: &[u8]) {
    let conn = format!("#{}", peer.conn());
    let client_id = peer.client_id();
    let client_id = escaped(&client_id).to_string();
    let arrow = match direction {
        Direction::In => "<-",
        Direction::Out => "->",
    };
    for line in bytes
        .strip_suffix(b"\n")
        .unwrap_or(bytes)
        .split(|&b| b == b'\n')
    {
        // Escaped: a message's escape sequences must not act on the terminal of whoever
        // watches the trace.
        let text = String::from_utf8_lossy(line);
        let text = escaped(&text);
        log::trace!(target: TARGET, "{conn:<4} {client_id:<8} {arrow} {text}");
    }
}
