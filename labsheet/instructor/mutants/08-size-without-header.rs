// region: reading a record
// mistake: gives the payload's length as the record's size, forgetting the 8-byte header, so the next record is looked for in the wrong place
// hint: Did you forget the header?
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
    if bytes.len() < HEADER_BYTES + length {
        return Frame::Torn;
    }
    let payload = &bytes[HEADER_BYTES..HEADER_BYTES + length];
    if crc32(payload) != stored_crc {
        return Frame::Damaged {
            why: "CRC-32 does not match",
            size: Some(HEADER_BYTES + length),
        };
    }
    Frame::Whole {
        payload,
        size: length,
    }
