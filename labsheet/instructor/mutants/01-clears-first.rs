// region: the DELIVER line
// mistake: clears the buffer before writing the line, so of several deliveries batched into one buffer only the last survives
// hint: not clear it or replace it
    out.clear();
    out.extend_from_slice(format!("DELIVER {topic} {message} {publisher_id} {timestamp}\n").as_bytes());
