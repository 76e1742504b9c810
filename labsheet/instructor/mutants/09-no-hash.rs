// region: Sec-WebSocket-Accept
// mistake: base64-encodes the key and GUID without hashing them.
    let keyed = format!("{key}{ACCEPT_GUID}");
    base64::encode(keyed.as_bytes())
