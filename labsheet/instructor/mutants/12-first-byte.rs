// region: the packet parser
// mistake: takes the type as the first byte and the data from byte 1, which panics on an empty text and on one that starts with a character of two bytes or more.
// hint: first character
        let kind = text.as_bytes()[0] as char;
        let data = &text[1..];
        Ok(match kind {
            '0' => Packet::Open(data.to_string()),
            '1' => Packet::Close,
            '2' => Packet::Ping(data.to_string()),
            '3' => Packet::Pong(data.to_string()),
            '4' => Packet::Message(data.to_string()),
            '5' => Packet::Upgrade,
            '6' => Packet::Noop,
            'b' => Packet::Binary(
                base64::decode(data)
                    .ok_or_else(|| BadPacket("binary data is not base64".into()))?,
            ),
            other => return Err(BadPacket(format!("unknown packet type {other:?}"))),
        })
