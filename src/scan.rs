//! Finding a byte in a line eight bytes at a time: the one search under the framing (`\n`)
//! and the parser (the spaces between tokens). And comparing the short strings of every
//! publish the same way ([`same`]).
//!
//! Every byte the broker receives is searched more than once: for the `\n` that ends its
//! line, then for the spaces that cut the line into a command's word and arguments. A loop
//! that tests one byte at a time spends an instruction or two per byte on the test, as
//! many again on the loop, and ends with a jump the processor guessed wrong; in `perf` that
//! was the largest single cost of handling a publish. Read as one `u64`, eight bytes are
//! tested in a handful of instructions, with no branch per byte ("SIMD within a register",
//! the trick C's `memchr` and Rust's own `str` searches use).
//!
//! The test is [`bytes_equal`]: a word whose bytes each have their top bit set where the
//! byte equals the one sought ([`lowest_equal`] is a shorter test for a forward search).
//! [`first`] and [`last`] walk a slice word by word and turn the first word with a flag
//! into a position with `trailing_zeros` or `leading_zeros`. A production broker
//! goes further with the processor's vector instructions (NATS leans on Go's assembly
//! `IndexByte`, Redis on libc's `memchr`); these are the same idea in safe, portable code.

/// `byte` in each of the eight bytes of a word.
const fn repeated(byte: u8) -> u64 {
    u64::from_le_bytes([byte; 8])
}

/// The top bit of each byte of `word` (bytes in memory order, little-endian) that equals
/// `byte`, and no other bit.
///
/// `x = word ^ byte…byte` is zero exactly where `word` has `byte`. For each byte of `x`,
/// `(x & 0x7f) + 0x7f` sets the top bit unless its low seven bits are all zero, and `| x`
/// adds the byte's own top bit: the top bit ends up clear exactly in the zero bytes.
/// Masking off the low seven bits keeps one byte's carry out of the next, so, unlike the
/// shorter `(x - 0x01…) & !x` test, no byte is flagged by its neighbour: the answer is
/// exact in both directions, which [`last`] needs.
pub fn bytes_equal(word: u64, byte: u8) -> u64 {
    const LOW_SEVEN: u64 = repeated(0x7f);
    let x = word ^ repeated(byte);
    !(((x & LOW_SEVEN) + LOW_SEVEN) | x | LOW_SEVEN)
}

/// Like [`bytes_equal`] in fewer instructions, but only its *lowest* flag is sure: a byte
/// right above an equal one may be flagged too, by the borrow out of it. That is enough
/// for [`first`], which looks at nothing else, and it is the test C's `memchr` makes:
/// `x - 0x01…` borrows through each zero byte of `x` and sets its top bit, and `& !x`
/// drops the bytes whose top bit `x` had set already.
pub fn lowest_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ repeated(byte);
    x.wrapping_sub(repeated(0x01)) & !x & repeated(0x80)
}

/// The position of the first byte of `bytes` that `flags` marks (see [`bytes_equal`];
/// [`lowest_equal`] will do here).
///
/// ```
/// use pubsub_lab::scan::{bytes_equal, first};
/// let space = |word| bytes_equal(word, b' ');
/// assert_eq!(first(b"PUBLISH weather Rainy day pub1", space), Some(7));
/// assert_eq!(first(b"PING", space), None);
/// ```
#[inline]
pub fn first(bytes: &[u8], flags: impl Fn(u64) -> u64) -> Option<usize> {
    if bytes.len() < 8 {
        return lowest(flags_of_short(bytes, flags));
    }
    let mut words = bytes.chunks_exact(8);
    for (index, word) in words.by_ref().enumerate() {
        if let Some(within) = lowest(flags(word_at(word))) {
            return Some(index * 8 + within);
        }
    }
    // The bytes after the last whole word: the slice's last word, shifted so that the
    // bytes already tested fall off its low end. One more word, not a loop of bytes.
    let left = words.remainder().len();
    let found = flags(word_at(&bytes[bytes.len() - 8..])) >> ((8 - left) * 8 % 64);
    Some(bytes.len() - left + lowest(found)?)
}

/// The position of the last byte of `bytes` that `flags` marks (see [`bytes_equal`]).
///
/// ```
/// use pubsub_lab::scan::{bytes_equal, last};
/// let space = |word| bytes_equal(word, b' ');
/// assert_eq!(last(b"PUBLISH weather Rainy day pub1", space), Some(25));
/// assert_eq!(last(b"pub1", space), None);
/// ```
#[inline]
pub fn last(bytes: &[u8], flags: impl Fn(u64) -> u64) -> Option<usize> {
    if bytes.len() < 8 {
        return highest(flags_of_short(bytes, flags));
    }
    let mut words = bytes.rchunks_exact(8);
    for (index, word) in words.by_ref().enumerate() {
        if let Some(within) = highest(flags(word_at(word))) {
            return Some(bytes.len() - (index + 1) * 8 + within);
        }
    }
    // The bytes before the first whole word: the slice's first word, the bytes already
    // tested masked off.
    let left = words.remainder().len();
    highest(flags(word_at(&bytes[..8])) & low_bytes(left))
}

/// Whether `a` and `b` are the same bytes: `a == b`, a word at a time and in line.
///
/// `==` on slices is a call to libc's `memcmp`, which pays for its generality (any length,
/// any alignment) before it compares anything. The broker compares a few short strings at
/// every publish (the batch's topic, the last publisher id, the client's id), where that
/// call was 5% of the time in `perf`; compared here as one or two words, the test is a
/// handful of instructions. Longer strings go word by word, and the bytes after the last
/// whole word are compared as the last word of each, which overlaps bytes already
/// compared: one more word, not a loop of bytes.
///
/// ```
/// use pubsub_lab::scan::same;
/// assert!(same(b"weather", b"weather"));
/// assert!(!same(b"weather/today", b"weather/todax"));
/// assert!(!same(b"pub1", b"pub10"));
/// ```
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 8 {
        return same_short(a, b);
    }
    let whole_words = a.chunks_exact(8).zip(b.chunks_exact(8));
    whole_words
        .into_iter()
        .all(|(x, y)| word_at(x) == word_at(y))
        && word_at(&a[n - 8..]) == word_at(&b[n - 8..])
}

/// [`same`] for two slices of one length below 8: from 4 bytes on, their first four and
/// last four bytes (which overlap), each as one `u32`; below, byte by byte.
fn same_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n < 4 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let four = |bytes: &[u8]| {
        let mut word = [0; 4];
        word.copy_from_slice(bytes);
        u32::from_le_bytes(word)
    };
    four(&a[..4]) == four(&b[..4]) && four(&a[n - 4..]) == four(&b[n - 4..])
}

/// Which byte of a word of flags is the first one marked.
fn lowest(found: u64) -> Option<usize> {
    (found != 0).then(|| found.trailing_zeros() as usize / 8)
}

/// Which byte of a word of flags is the last one marked.
fn highest(found: u64) -> Option<usize> {
    (found != 0).then(|| 7 - found.leading_zeros() as usize / 8)
}

/// The flags of fewer than eight bytes, read as a word padded with zeros; the padding's
/// flags are masked off.
fn flags_of_short(bytes: &[u8], flags: impl Fn(u64) -> u64) -> u64 {
    let mut word = [0; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    flags(u64::from_le_bytes(word)) & low_bytes(bytes.len())
}

/// A mask of the low `n` bytes of a word, `n` below 8.
fn low_bytes(n: usize) -> u64 {
    (1 << (n * 8)) - 1
}

/// Eight bytes as one word, the first byte lowest.
fn word_at(eight: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(eight);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `same` agrees with `==` for every length up to three words, on equal slices and
    /// on slices that differ in any one byte, by one bit or more.
    #[test]
    fn same_agrees_with_equality() {
        for len in 0..24 {
            let a: Vec<u8> = (0..len).map(|i| b'a' + i as u8).collect();
            assert!(same(&a, &a.clone()), "{len} equal bytes");
            for at in 0..len {
                for flip in [0x01, 0x80, 0xff] {
                    let mut b = a.clone();
                    b[at] ^= flip;
                    assert!(!same(&a, &b), "{len} bytes differing at {at}");
                }
            }
            let longer = [a.as_slice(), b"x"].concat();
            assert!(!same(&a, &longer), "{len} bytes and one more");
        }
    }

    /// Bytes that differ from `\n`, ` ` and `\t` by one bit, or are their neighbours,
    /// where a wrong trick would err; and bytes above `0x7f`.
    const DECOYS: [u8; 8] = [
        b'\x0b', b'\x8a', b'\x08', b'!', b'\x1f', b'\xa0', b'\x00', b'\xff',
    ];

    fn sought(word: u64) -> u64 {
        bytes_equal(word, b' ') | bytes_equal(word, b'\t')
    }

    #[test]
    fn first_and_last_agree_with_a_byte_by_byte_search() {
        // Every length up to three words, with the sought bytes at every pair of places or
        // nowhere, among decoys.
        for len in 0..24 {
            for a in 0..=len {
                for b in a..=len {
                    let mut bytes: Vec<u8> = (0..len).map(|i| DECOYS[i % DECOYS.len()]).collect();
                    if a < len {
                        bytes[a] = b' ';
                    }
                    if b < len {
                        bytes[b] = b'\t';
                    }
                    let plain = |byte: &u8| *byte == b' ' || *byte == b'\t';
                    assert_eq!(
                        first(&bytes, sought),
                        bytes.iter().position(plain),
                        "{bytes:?}"
                    );
                    let quick = |word| lowest_equal(word, b' ') | lowest_equal(word, b'\t');
                    assert_eq!(
                        first(&bytes, quick),
                        bytes.iter().position(plain),
                        "{bytes:?}"
                    );
                    assert_eq!(
                        last(&bytes, sought),
                        bytes.iter().rposition(plain),
                        "{bytes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn bytes_equal_flags_exactly_the_equal_bytes() {
        for sought in 0..=255u8 {
            for other in 0..=255u8 {
                let word = u64::from_le_bytes([other, sought, other, other, sought, other, 0, 255]);
                let flags = bytes_equal(word, sought);
                for (i, byte) in word.to_le_bytes().iter().enumerate() {
                    let flagged = (flags >> (i * 8)) & 0xff;
                    assert_eq!(flagged, if *byte == sought { 0x80 } else { 0 });
                }
            }
        }
    }
}
