// region: the payload decoder
// mistake: drops the packets that do not parse and keeps the others, instead of refusing the whole payload.
// hint: whole payload
    Ok(body
        .split(RECORD_SEPARATOR)
        .filter_map(|packet| Packet::parse(packet).ok())
        .collect())
