// region: Sec-WebSocket-Accept
// mistake: decodes the key from base64 and hashes its 16 bytes instead of the key as sent.
    let mut keyed = base64::decode(key).unwrap_or_default();
    keyed.extend_from_slice(ACCEPT_GUID.as_bytes());
    let digest = sha1(&keyed);
    base64::encode(&digest)
