// region: reading a record
// mistake: computes the CRC-32 over the header and the payload, when the writer computed it over the payload alone
// hint: computed over the payload alone
    if bytes.len() < HEADER_BYTES {
        return Frame::Torn;
    }
    let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let stored_crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if length == 0 || length > MAX_PAYLOAD {
        return Frame::Damaged {
            why: "impossible record length",
            size: None,
        };
    }
    let size = HEADER_BYTES + length;
    if bytes.len() < size {
        return Frame::Torn;
    }
    if crc32(&bytes[..size]) != stored_crc {
        return Frame::Damaged {
            why: "CRC-32 does not match",
            size: Some(size),
        };
    }
    let payload = &bytes[HEADER_BYTES..size];
    Frame::Whole { payload, size }
