// region: the payload decoder
// mistake: splits the payload on newlines instead of the record separator 0x1e, so two packets become one message and a message with a newline becomes two packets.
// hint: record separator
    body.lines().map(Packet::parse).collect()
