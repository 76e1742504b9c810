// region: the packet parser
// mistake: drops a ping's data, so the client's `2probe` becomes a bare ping and the upgrade to a WebSocket never happens.
// hint: 2probe
        let mut chars = text.chars();
        let kind = chars.next().ok_or_else(|| BadPacket("empty".into()))?;
        let data = chars.as_str();
        Ok(match kind {
            '0' => Packet::Open(data.to_string()),
            '1' => Packet::Close,
            '2' => Packet::Ping(String::new()),
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
