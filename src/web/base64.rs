//! Base64 (RFC 4648, the standard alphabet with `=` padding), written out: how the
//! WebSocket handshake carries its 16 random bytes and its 20-byte hash as text.
//!
//! Base64 writes every 3 bytes (24 bits) as 4 characters of 6 bits each, from the 64
//! characters `A-Z a-z 0-9 + /`. A last group of 1 or 2 bytes is padded with zero bits and
//! written as 2 or 3 characters plus `=` or `==`, so the text is always a multiple of
//! four characters long:
//!
//! ```text
//!   bytes    'M'      'a'      'n'
//!   bits     01001101 01100001 01101110
//!   6-bit    010011 010110 000101 101110
//!   index    19     22     5      46
//!   text     T      W      F      u
//! ```

/// The 64 characters, in the order of the values they stand for.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `bytes` as base64 text.
///
/// ```
/// assert_eq!(pubsub_lab::web::base64::encode(b"Man"), "TWFu");
/// assert_eq!(pubsub_lab::web::base64::encode(b"Ma"), "TWE=");
/// ```
pub fn encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let bits = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        // A group of n bytes fills n + 1 characters; the rest are padding.
        for i in 0..4 {
            if i <= group.len() {
                let index = (bits >> (18 - 6 * i)) & 0x3f;
                text.push(char::from(ALPHABET[index as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// The bytes that base64 `text` stands for, or `None` if it is not base64 (a character
/// outside the alphabet, a length that is not a multiple of four, padding in the middle,
/// or padding bits that are not zero).
///
/// ```
/// assert_eq!(pubsub_lab::web::base64::decode("TWFu"), Some(b"Man".to_vec()));
/// assert_eq!(pubsub_lab::web::base64::decode("TWE"), None);
/// ```
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 != 0 {
        return None;
    }
    let mut bytes = Vec::with_capacity(text.len() / 4 * 3);
    let groups = text.len() / 4;
    for (n, group) in text.chunks_exact(4).enumerate() {
        let padding = group.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && n + 1 != groups) {
            return None;
        }
        let mut bits = 0u32;
        for &c in &group[..4 - padding] {
            bits = bits << 6 | u32::from(value(c)?);
        }
        bits <<= 6 * padding as u32;
        let decoded = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        let kept = 3 - padding;
        // The bits that padding stands for must be zero, or two texts would mean one value.
        if decoded[kept..].iter().any(|&b| b != 0) {
            return None;
        }
        bytes.extend_from_slice(&decoded[..kept]);
    }
    Some(bytes)
}

/// The value of one base64 character.
fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648, section 10.
    #[test]
    fn the_rfc_examples_encode_and_decode() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in cases {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded), Some(plain.as_bytes().to_vec()), "{coded}");
        }
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let coded = encode(&all);
        assert!(coded.contains('+') && coded.contains('/'));
        assert_eq!(decode(&coded), Some(all));
    }

    #[test]
    fn text_that_is_not_base64_is_refused() {
        for bad in [
            "Zg=", "Zg===", "Z===", "Zm9v!A==", "Zg==Zm8=", "Zh==", "Zm9=", "    ",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
