// region: the DELIVER line
// mistake: forgets the `\n` at the end, so the subscriber never sees a whole line
// hint: `\n`
    for part in [
        &b"DELIVER "[..],
        topic.as_bytes(),
        b" ",
        message.as_bytes(),
        b" ",
    ] {
        out.extend_from_slice(part);
    }
    for part in [publisher_id.as_bytes(), b" ", timestamp.as_bytes()] {
        out.extend_from_slice(part);
    }
