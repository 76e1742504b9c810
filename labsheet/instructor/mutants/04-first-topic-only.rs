// region: cleanup on disconnect
// mistake: removes the connection from the first of its topics only
// hint: every topic
        let topics = self.subscriptions.iter().map(|(topic, ())| topic).take(1);
        self.router.unsubscribe_all(topics, self.subscriber.id());
        self.subscriptions.clear();
