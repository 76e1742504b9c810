// region: the DELIVER line
// mistake: replaces what the buffer held instead of appending to it
// hint: append
    *out = format!("DELIVER {topic} {message} {publisher_id} {timestamp}\n").into_bytes();
