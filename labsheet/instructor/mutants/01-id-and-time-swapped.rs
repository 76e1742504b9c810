// region: the DELIVER line
// mistake: writes the timestamp before the publisher id
// hint: wrong place
    out.extend_from_slice(format!("DELIVER {topic} {message} {timestamp} {publisher_id}\n").as_bytes());
