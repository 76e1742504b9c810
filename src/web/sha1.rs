//! SHA-1 (FIPS 180-4), written out: the hash the WebSocket handshake asks for.
//!
//! A browser opening a WebSocket sends a random key; the server proves it understood the
//! request by hashing that key with a fixed string and sending the hash back (see
//! `websocket.rs`). That is the only use here, and it needs no secrecy: SHA-1 is broken for
//! signatures (two different inputs with the same hash can be made), which does not matter
//! for a handshake that only shows the server speaks WebSocket.
//!
//! How it works, in four steps:
//!
//! 1. **Pad** the message: a `1` bit, zeros, and the message's length in bits as a 64-bit
//!    big-endian number, so that the whole is a multiple of 64 bytes.
//! 2. Cut it into **blocks** of 64 bytes, and each block into sixteen 32-bit big-endian
//!    words; stretch those to eighty (`w[i] = (w[i-3] ^ w[i-8] ^ w[i-14] ^ w[i-16]) <<< 1`).
//! 3. Run eighty **rounds** over five 32-bit registers `a..e`, each round mixing in one
//!    word, a constant and a function of `b, c, d` that changes every twenty rounds.
//! 4. **Add** the registers into the running state; after the last block, the five state
//!    words, big-endian, are the 20-byte digest.
//!
//! All arithmetic is modulo 2³² (`wrapping_add`), and `<<<` is a rotation.

/// The digest of `data`: 20 bytes.
///
/// ```
/// use pubsub_lab::web::sha1::sha1;
/// let hex: String = sha1(b"abc").iter().map(|b| format!("{b:02x}")).collect();
/// assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
/// ```
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut state: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let mut blocks = data.chunks_exact(64);
    for block in blocks.by_ref() {
        compress(&mut state, block);
    }
    // Step 1, padding, on the tail only: at most two more blocks.
    let tail = blocks.remainder();
    let mut last = [0u8; 128];
    last[..tail.len()].copy_from_slice(tail);
    last[tail.len()] = 0x80;
    let padded_len = if tail.len() < 56 { 64 } else { 128 };
    let bits = (data.len() as u64).wrapping_mul(8);
    last[padded_len - 8..padded_len].copy_from_slice(&bits.to_be_bytes());
    for block in last[..padded_len].chunks_exact(64) {
        compress(&mut state, block);
    }
    let mut digest = [0u8; 20];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// Steps 2 to 4 for one 64-byte block.
fn compress(state: &mut [u32; 5], block: &[u8]) {
    let mut w = [0u32; 80];
    for (i, word) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    }
    for i in 16..80 {
        w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *state;
    for (i, &word) in w.iter().enumerate() {
        let (f, k) = match i {
            0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
            20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
            _ => (b ^ c ^ d, 0xca62_c1d6),
        };
        let next = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(word);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = next;
    }
    for (word, add) in state.iter_mut().zip([a, b, c, d, e]) {
        *word = word.wrapping_add(add);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(digest: [u8; 20]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The examples of FIPS 180-4 and RFC 3174, and the lengths around the padding's edge.
    #[test]
    fn the_standard_examples_hash_as_published() {
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(sha1(&vec![b'a'; 1_000_000])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
        // 55, 56 and 64 bytes: one padded block, two, and a whole block plus padding.
        assert_eq!(
            hex(sha1(&[b'a'; 55])),
            "c1c8bbdc22796e28c0e15163d20899b65621d65a"
        );
        assert_eq!(
            hex(sha1(&[b'a'; 56])),
            "c2db330f6083854c99d4b5bfb6e8f29f201be699"
        );
        assert_eq!(
            hex(sha1(&[b'a'; 64])),
            "0098ba824b5c16427bd7a1122a5a442a25ec644d"
        );
    }
}
