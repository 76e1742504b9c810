// region: reading a record
// mistake: refuses a length of exactly MAX_PAYLOAD, the largest record the broker writes
// hint: exactly MAX_PAYLOAD
    if bytes.len() < HEADER_BYTES {
        return Frame::Torn;
    }
    let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let stored_crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if length == 0 || length >= MAX_PAYLOAD {
        return Frame::Damaged {
            why: "impossible record length",
            size: None,
        };
    }
    let size = HEADER_BYTES + length;
    if bytes.len() < size {
        return Frame::Torn;
    }
    let payload = &bytes[HEADER_BYTES..size];
    if crc32(payload) != stored_crc {
        return Frame::Damaged {
            why: "CRC-32 does not match",
            size: Some(size),
        };
    }
    Frame::Whole { payload, size }
