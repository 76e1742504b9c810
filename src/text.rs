//! Text from clients, made safe to show a human: the line breaks that the protocol refuses,
//! and the control characters it relays but never prints raw.
//!
//! A line protocol is only as safe as the line readers on its other end. Python's
//! `str.splitlines` ends a line at eleven different characters, Java's `readLine` and
//! Node's `readline` at a bare `\r`; so a message carrying one of them would show each of
//! those programs a second line, one the broker never sent (a forged `DELIVER` with a fake
//! time, say). [`line_break_in`] finds every such character, and the parser refuses a line
//! that has one.
//!
//! Other control characters (an escape sequence that colours text, or one that erases the
//! line on a terminal) a message may carry: programs receive the bytes as they were sent.
//! But wherever a *person* reads client text (the broker's log, the trace view, the
//! `subscriber` program on a terminal), it goes through [`escaped`], which shows each such
//! character as a visible escape (`\u{1b}`) instead of letting the terminal act on it.

use std::fmt;

/// Whether some widespread line reader ends a line at `c`: `\n` and `\r` (everyone),
/// vertical tab, form feed, and the file, group and record separators (Python's
/// `str.splitlines`), and NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR (Unicode's line
/// breaks, which `splitlines` and many editors honour).
pub fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{0b}'
            | '\u{0c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// The first line break inside `text` (see [`is_line_break`]), if it has one.
///
/// Every line the broker reads goes through here, so it first asks a cheaper question of
/// the bytes, eight at a time and without decoding anything: is there any byte below
/// `0x20` or above `0x7f` at all? Every line break is one of those, and a line of plain
/// ASCII text, nearly every line, has none. Only a line that has one (a tab, or any
/// `°`, `€` or curly quote) is then decoded character by character.
///
/// ```
/// use pubsub_lab::text::line_break_in;
/// assert_eq!(line_break_in("Lab starts at 9 — bring a laptop"), None);
/// assert_eq!(line_break_in("at 9\rDELIVER news FORGED"), Some('\r'));
/// assert_eq!(line_break_in("a\u{2028}b"), Some('\u{2028}'));
/// ```
pub fn line_break_in(text: &str) -> Option<char> {
    if is_plain_ascii(text.as_bytes()) {
        return None;
    }
    text.chars().find(|&c| is_line_break(c))
}

/// The first control character in `text` (C0, DEL or C1, including TAB), if it has one:
/// what topics and ids may not contain.
pub fn control_in(text: &str) -> Option<char> {
    if is_plain_ascii(text.as_bytes()) && !text.contains('\u{7f}') {
        return None;
    }
    text.chars().find(|c| c.is_control())
}

/// Whether every byte is printable ASCII or DEL (`0x20..=0x7f`), found eight bytes at a
/// time. For a word `x`, `x - 0x2020..20` sets the top bit of a byte that was below `0x20`
/// (a borrow may set it in a byte above too, which only sends a line down the slow path),
/// and `x` itself has the top bit of a byte above `0x7f`: one test covers both.
///
/// Every line pays for this, so it tests two words at once, and the bytes after the last
/// whole pair as the line's last sixteen bytes, overlapping some already tested (testing a
/// byte twice changes nothing) instead of one by one. For a 64-byte `PUBLISH` that is about
/// a quarter fewer instructions than a word at a time with a byte loop for the tail.
fn is_plain_ascii(bytes: &[u8]) -> bool {
    const SPACES: u64 = u64::from_le_bytes([0x20; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // The top bit of every byte of these sixteen that may be outside `0x20..=0x7f`.
    let suspects = |sixteen: &[u8]| {
        let mut eight = [0; 8];
        eight.copy_from_slice(&sixteen[..8]);
        let x = u64::from_le_bytes(eight);
        eight.copy_from_slice(&sixteen[8..]);
        let y = u64::from_le_bytes(eight);
        (x.wrapping_sub(SPACES) | x | y.wrapping_sub(SPACES) | y) & HIGHS
    };
    if bytes.len() < 16 {
        return bytes.iter().all(|&byte| (0x20..0x80).contains(&byte));
    }
    bytes.chunks_exact(16).all(|pair| suspects(pair) == 0)
        && suspects(&bytes[bytes.len() - 16..]) == 0
}

/// Whether a human's terminal might act on `c` instead of showing it: control characters,
/// the Unicode line breaks, and the bidirectional overrides that make text appear in
/// another order than it is (the "Trojan Source" trick).
fn acts_on_a_terminal(c: char) -> bool {
    c.is_control()
        || is_line_break(c)
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text`, shown so that a terminal prints every character instead of acting on it: each
/// character that could move the cursor, change colours or reorder text is written as an
/// escape such as `\u{1b}`. Everything else, `é` and `—` included, is left alone.
///
/// ```
/// use pubsub_lab::text::escaped;
/// assert_eq!(escaped("hi \u{1b}[2K\r").to_string(), "hi \\u{1b}[2K\\u{d}");
/// assert_eq!(escaped("Café — 9:00").to_string(), "Café — 9:00");
/// ```
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// Text shown with [`escaped`]. Formatting it allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| acts_on_a_terminal(c)) {
            f.write_str(&rest[..at])?;
            write!(f, "\\u{{{:x}}}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// How a refused character is named in an `ERROR`: `U+000D (carriage return)`.
pub fn describe(c: char) -> String {
    let name = match c {
        '\r' => "carriage return",
        '\n' => "line feed",
        '\t' => "tab",
        '\u{0b}' => "vertical tab",
        '\u{0c}' => "form feed",
        '\u{1b}' => "escape",
        '\u{1c}' => "file separator",
        '\u{1d}' => "group separator",
        '\u{1e}' => "record separator",
        '\u{7f}' => "delete",
        '\u{85}' => "next line",
        '\u{2028}' => "line separator",
        '\u{2029}' => "paragraph separator",
        _ => "a control character",
    };
    format!("U+{:04X} ({name})", c as u32)
}

/// Appends `n` in decimal, without going through `fmt`: `write!(out, "{n}")` costs a
/// few hundred instructions of formatting machinery (padding, width, the `Display` call),
/// which a line written per message pays every time. Used by the NATS bridge's `PUB`
/// lines and the bench's publishers.
///
/// ```
/// let mut out = b"PUB a ".to_vec();
/// pubsub_lab::text::push_decimal(&mut out, 1024);
/// assert_eq!(out, b"PUB a 1024");
/// ```
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_at_a_time_check_agrees_with_a_byte_by_byte_one() {
        // Every byte value, at every place in lines of up to five words, around
        // printable neighbours that differ from it by one bit.
        for value in 0..=255u8 {
            for len in 1..40 {
                for at in 0..len {
                    let mut bytes = vec![b'a' ^ (value & 1); len];
                    bytes[at] = value;
                    let plain = bytes.iter().all(|b| (0x20..0x80).contains(b));
                    assert_eq!(is_plain_ascii(&bytes), plain, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn the_fast_check_agrees_with_the_slow_one_for_every_character_class() {
        let samples = [
            "plain",
            "tab\there",
            "é",
            "°C",
            "€",
            "“quoted”",
            "—",
            "\u{85}",
            "\u{a0}",
            "\u{2028}",
            "\u{2029}",
            "\u{2027}",
            "\u{202a}",
            "\r",
            "\u{0b}",
            "\u{1e}",
            "\u{1f}",
        ];
        for text in samples {
            assert_eq!(
                line_break_in(text),
                text.chars().find(|&c| is_line_break(c)),
                "{text:?}"
            );
            assert_eq!(
                control_in(text),
                text.chars().find(|c| c.is_control()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn escaping_shows_every_character_a_terminal_would_act_on() {
        assert_eq!(
            escaped("\u{1b}]0;pwned\u{7}title").to_string(),
            "\\u{1b}]0;pwned\\u{7}title"
        );
        assert_eq!(escaped("a\u{202e}cba").to_string(), "a\\u{202e}cba");
        assert_eq!(
            escaped("x\u{2028}y\u{85}z").to_string(),
            "x\\u{2028}y\\u{85}z"
        );
        assert_eq!(escaped("").to_string(), "");
    }

    #[test]
    fn refused_characters_are_named() {
        assert_eq!(describe('\r'), "U+000D (carriage return)");
        assert_eq!(describe('\u{2028}'), "U+2028 (line separator)");
        assert_eq!(describe('\u{1}'), "U+0001 (a control character)");
    }
}
