// region: Sec-WebSocket-Accept
// mistake: returns the SHA-1 digest as hex text instead of its 20 bytes in base64.
    let keyed = format!("{key}{ACCEPT_GUID}");
    let digest = sha1(keyed.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
