//! CRC-32, written by hand: the checksum that tells a whole log record from a damaged one.
//!
//! A CRC treats the bytes as one long binary polynomial and keeps the remainder of dividing
//! it by a fixed *generator* polynomial, with arithmetic in which adding is XOR (no carries).
//! Flip any one bit, or any run of up to 32 neighbouring bits, and the remainder changes, so
//! a torn or corrupted record is caught; random damage slips through once in 2^32.
//!
//! The generator here is the one of Ethernet, zip, PNG and gzip (CRC-32/ISO-HDLC):
//!
//! ```text
//! x^32 + x^26 + x^23 + x^22 + x^16 + x^12 + x^11 + x^10 + x^8 + x^7 + x^5 + x^4 + x^2 + x + 1
//! ```
//!
//! Written as bits, leaving out the x^32 term that every such polynomial has, that is
//! `0x04C11DB7`. This code processes the lowest bit of each byte first (the order a serial
//! line sends bits in, which is how CRC-32 is defined), so it uses the bits in reverse
//! order: [`POLYNOMIAL`] = `0xEDB88320`. The register starts as all ones and is inverted at
//! the end, so that leading zero bytes and a missing tail change the result.
//!
//! Dividing bit by bit costs eight steps per byte. The usual trick, used here, does those
//! eight steps once for each of the 256 possible bytes ahead of time, in a table; each byte
//! then costs one table lookup, a shift and an XOR. The table is built at compile time by a
//! `const fn`, so there is nothing to initialise at run time. (zlib goes further and does
//! four or eight bytes per step with more tables; SSE 4.2 has an instruction for the
//! *Castagnoli* polynomial, which is why some logs use CRC-32C instead.)

/// The generator polynomial, bits reversed (see the module docs).
pub const POLYNOMIAL: u32 = 0xEDB8_8320;

/// For each byte value: what eight steps of division do to the register.
const TABLE: [u32; 256] = table();

const fn table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            // If the lowest bit is set, the polynomial "goes into" the register: subtract
            // (XOR) it. Either way, move on to the next bit.
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// The CRC-32 of `bytes`.
///
/// ```
/// use pubsub_lab::durable::crc32::crc32;
/// // The standard check value: every CRC-32 implementation gives this for "123456789".
/// assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
/// ```
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table-driven version gives what dividing bit by bit gives.
    #[test]
    fn the_table_agrees_with_bit_by_bit_division() {
        fn slow(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &byte in bytes {
                crc ^= u32::from(byte);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ POLYNOMIAL
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        for text in [
            &b""[..],
            b"a",
            b"MESSAGE 1 sub1 orders",
            &[0u8; 100],
            &[0xFF; 7],
        ] {
            assert_eq!(crc32(text), slow(text));
        }
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    /// Any one flipped bit changes the checksum.
    #[test]
    fn every_single_bit_flip_is_caught() {
        let record =
            b"MESSAGE 17 sub1 orders/# orders/1 pub1 2025-03-14 10:30:00 two  words".to_vec();
        let good = crc32(&record);
        for bit in 0..record.len() * 8 {
            let mut damaged = record.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(crc32(&damaged), good, "bit {bit}");
        }
    }
}
