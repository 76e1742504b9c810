//! Cookies: how an address proves it can receive, without the broker remembering it.
//!
//! UDP does not check a datagram's source address: anyone can send `SUBSCRIBE` "from" a
//! victim's address, and a broker that then sent the victim every delivery (and every
//! retained message) would be a weapon aimed at someone who never asked (a *reflection*
//! attack; an *amplification* one when the answer is bigger than the question). So a
//! lease starts only for an address that has shown it receives what is sent to it:
//!
//! ```text
//! client -> broker   SUBSCRIBE news ear            (padded with blank lines to 24 bytes)
//! broker -> client   COOKIE 3f1c9a0b7d2e4f56
//! client -> broker   COOKIE 3f1c9a0b7d2e4f56
//!                    SUBSCRIBE news ear            (the lease starts)
//! ```
//!
//! The token is a *keyed hash* of the address and a time slot: SHA-1 (`web/sha1.rs`) of a
//! secret drawn when the broker starts, the address, and the number of the current
//! [`SLOT`]. Only the broker knows the secret, so only a datagram that reached the address
//! can carry the token back; and since the broker can compute it again from the address
//! alone, it keeps nothing for an address that has not proven itself: a million forged
//! addresses cost it no memory. A token is good for the slot it was made in and the next
//! one, so one made just before a slot ends still works.
//!
//! This is what DTLS's `HelloVerifyRequest` and QUIC's `Retry` packet do. Both use a real
//! MAC (HMAC-SHA-256, or an AEAD) where we hash `secret ‖ message`; for a fixed-length
//! message that nobody can extend, the difference does not matter here, but a production
//! system would use the MAC. And they rotate the secret; ours lasts the broker's life.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::web::sha1::sha1;

/// How long a time slot lasts: a token is good in its slot and the next, so for one to
/// two minutes. Long enough for a client to get the cookie back and answer; short enough
/// that a token that leaked (printed in a lab) soon stops working.
pub const SLOT: Duration = Duration::from_secs(60);

/// How many bytes of the hash a token carries: 8 bytes, 16 hex digits, 2^64 tokens to
/// guess among. The answer `COOKIE <token>\n` is then [`ANSWER_BYTES`] long.
const TOKEN_BYTES: usize = 8;

/// The length of the answer `COOKIE <16 hex digits>\n`. An address that has not proven
/// itself is sent at most as many bytes as it sent, so a `SUBSCRIBE` datagram shorter
/// than this is answered with nothing: a client pads its first one (QUIC's client pads its
/// first packet to 1,200 bytes for the same reason).
pub const ANSWER_BYTES: usize = "COOKIE ".len() + 2 * TOKEN_BYTES + 1;

/// The broker's secret, and the tokens it makes with it.
#[derive(Debug)]
pub(crate) struct Cookies {
    secret: [u8; 16],
}

impl Cookies {
    /// A fresh secret. The standard library has no random numbers, but each new hash map
    /// hasher is seeded from the operating system's randomness (see `web/websocket.rs`).
    pub(crate) fn new() -> Cookies {
        let mut secret = [0u8; 16];
        for chunk in secret.chunks_mut(4) {
            chunk.copy_from_slice(&crate::web::websocket::random_mask());
        }
        Cookies { secret }
    }

    /// The token for `addr` now.
    pub(crate) fn token(&self, addr: SocketAddr) -> String {
        self.token_in(addr, slot_now())
    }

    /// Whether `token` is `addr`'s, for this slot or the one before.
    pub(crate) fn is_valid(&self, addr: SocketAddr, token: &str) -> bool {
        let now = slot_now();
        token == self.token_in(addr, now) || token == self.token_in(addr, now.wrapping_sub(1))
    }

    fn token_in(&self, addr: SocketAddr, slot: u64) -> String {
        let mut input = Vec::with_capacity(48);
        input.extend_from_slice(&self.secret);
        match addr.ip() {
            std::net::IpAddr::V4(ip) => input.extend_from_slice(&ip.octets()),
            std::net::IpAddr::V6(ip) => input.extend_from_slice(&ip.octets()),
        }
        input.extend_from_slice(&addr.port().to_be_bytes());
        input.extend_from_slice(&slot.to_be_bytes());
        sha1(&input)[..TOKEN_BYTES]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// The number of the current slot: whole [`SLOT`]s since 1970.
fn slot_now() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_secs() / SLOT.as_secs()
}

/// The token of a `COOKIE <token>` line, if the line is one (the word in any case).
pub(crate) fn parse_line(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?.trim();
    let (word, token) = text.split_once(' ')?;
    word.eq_ignore_ascii_case("COOKIE")
        .then_some(token.trim())
        .filter(|token| !token.is_empty() && !token.contains(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_the_addresss_own_and_checks_out() {
        let cookies = Cookies::new();
        let alice: SocketAddr = ([10, 0, 0, 7], 40_000).into();
        let mallory: SocketAddr = ([10, 0, 0, 7], 40_001).into();
        let token = cookies.token(alice);
        assert_eq!(format!("COOKIE {token}\n").len(), ANSWER_BYTES);
        assert!(cookies.is_valid(alice, &token));
        assert!(
            !cookies.is_valid(mallory, &token),
            "another port, another token"
        );
        assert!(!cookies.is_valid(alice, "0000000000000000"));
        // Another broker (another secret) does not take it.
        assert!(!Cookies::new().is_valid(alice, &token));
    }

    #[test]
    fn a_token_lasts_its_slot_and_the_next() {
        let cookies = Cookies::new();
        let addr: SocketAddr = ([127, 0, 0, 1], 9).into();
        let now = slot_now();
        let old = cookies.token_in(addr, now - 1);
        let older = cookies.token_in(addr, now - 2);
        assert!(cookies.is_valid(addr, &old));
        assert!(!cookies.is_valid(addr, &older));
    }

    #[test]
    fn cookie_lines_are_recognised() {
        assert_eq!(parse_line(b"COOKIE 3f1c"), Some("3f1c"));
        assert_eq!(parse_line(b"cookie 3f1c \r"), Some("3f1c"));
        assert_eq!(parse_line(b"COOKIE"), None);
        assert_eq!(parse_line(b"COOKIE a b"), None);
        assert_eq!(parse_line(b"SUBSCRIBE a b"), None);
    }
}
