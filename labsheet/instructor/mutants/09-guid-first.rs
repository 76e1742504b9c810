// region: Sec-WebSocket-Accept
// mistake: hashes the GUID followed by the key, instead of the key followed by the GUID.
    let keyed = format!("{ACCEPT_GUID}{key}");
    let digest = sha1(keyed.as_bytes());
    base64::encode(&digest)
