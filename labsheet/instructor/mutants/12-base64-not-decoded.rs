// region: the packet parser
// mistake: takes the base64 text after `b` as the message's bytes, without decoding it.
// hint: base64
        let mut chars = text.chars();
        let kind = chars.next().ok_or_else(|| BadPacket("empty".into()))?;
        let data = chars.as_str();
        Ok(match kind {
            '0' => Packet::Open(data.to_string()),
            '1' => Packet::Close,
            '2' => Packet::Ping(data.to_string()),
            '3' => Packet::Pong(data.to_string()),
            '4' => Packet::Message(data.to_string()),
            '5' => Packet::Upgrade,
            '6' => Packet::Noop,
            'b' => Packet::Binary(data.as_bytes().to_vec()),
            other => return Err(BadPacket(format!("unknown packet type {other:?}"))),
        })
