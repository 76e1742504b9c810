// region: the payload decoder
// mistake: skips empty packets, so a payload that ends with a separator, or has two in a row, is taken.
// hint: empty packet
    body.split(RECORD_SEPARATOR)
        .filter(|packet| !packet.is_empty())
        .map(Packet::parse)
        .collect()
