// region: the DELIVER line
// mistake: splits the message into words and joins them with single spaces
// hint: byte for byte
    let words: Vec<&str> = message.split_whitespace().collect();
    let message = words.join(" ");
    out.extend_from_slice(format!("DELIVER {topic} {message} {publisher_id} {timestamp}\n").as_bytes());
