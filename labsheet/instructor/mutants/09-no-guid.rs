// region: Sec-WebSocket-Accept
// mistake: hashes the key alone, forgetting to append the GUID.
    let digest = sha1(key.as_bytes());
    base64::encode(&digest)
