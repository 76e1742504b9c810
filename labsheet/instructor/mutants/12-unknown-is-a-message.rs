// region: the packet parser
// mistake: takes a packet of an unknown type for a message instead of refusing it.
// hint: no type
        let mut chars = text.chars();
        let kind = chars.next().ok_or_else(|| BadPacket("empty".into()))?;
        let data = chars.as_str();
        Ok(match kind {
            '0' => Packet::Open(data.to_string()),
            '1' => Packet::Close,
            '2' => Packet::Ping(data.to_string()),
            '3' => Packet::Pong(data.to_string()),
            '5' => Packet::Upgrade,
            '6' => Packet::Noop,
            'b' => Packet::Binary(
                base64::decode(data)
                    .ok_or_else(|| BadPacket("binary data is not base64".into()))?,
            ),
            _ => Packet::Message(data.to_string()),
        })
