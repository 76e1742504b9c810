// region: reading a record
// mistake: never compares the CRC-32, so a record with flipped bytes is accepted as whole
// hint: accept nothing that does not match
    if bytes.len() < HEADER_BYTES {
        return Frame::Torn;
    }
    let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
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
    let payload = &bytes[HEADER_BYTES..size];
    Frame::Whole { payload, size }
