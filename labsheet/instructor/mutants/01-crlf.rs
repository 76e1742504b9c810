// region: the DELIVER line
// mistake: ends the line with `\r\n` instead of `\n`
// hint: not `\r\n`
    out.extend_from_slice(format!("DELIVER {topic} {message} {publisher_id} {timestamp}\r\n").as_bytes());
