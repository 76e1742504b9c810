// region: cleanup on disconnect
// mistake: empties the session's own list but never tells the router, so publishers still find the connection
// hint: every topic
        self.subscriptions.clear();
