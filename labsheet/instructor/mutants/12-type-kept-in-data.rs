// region: the packet parser
// mistake: keeps the type character in the data, so `4hello` is the message `4hello` and `2probe` the ping `2probe`.
// hint: everything after the type
        let mut chars = text.chars();
        let kind = chars.next().ok_or_else(|| BadPacket("empty".into()))?;
        let data = text;
        Ok(match kind {
            '0' => Packet::Open(data.to_string()),
            '1' => Packet::Close,
            '2' => Packet::Ping(data.to_string()),
            '3' => Packet::Pong(data.to_string()),
            '4' => Packet::Message(data.to_string()),
            '5' => Packet::Upgrade,
            '6' => Packet::Noop,
            'b' => Packet::Binary(
                base64::decode(&data[1..])
                    .ok_or_else(|| BadPacket("binary data is not base64".into()))?,
            ),
            other => return Err(BadPacket(format!("unknown packet type {other:?}"))),
        })
