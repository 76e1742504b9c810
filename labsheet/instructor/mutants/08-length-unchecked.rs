// region: reading a record
// mistake: does not check that the length is possible, so garbage with a huge length is taken for a torn tail and cut off silently
// hint: Check the length against MAX_PAYLOAD before comparing it with what is left
    if bytes.len() < HEADER_BYTES {
        return Frame::Torn;
    }
    let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let stored_crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
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
