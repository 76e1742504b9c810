// region: cleanup on disconnect
// mistake: tells the router but leaves the session's own list of subscriptions full
// hint: still holds
        let topics = self.subscriptions.iter().map(|(topic, ())| topic);
        self.router.unsubscribe_all(topics, self.subscriber.id());
