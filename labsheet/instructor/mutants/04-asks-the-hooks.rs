// region: cleanup on disconnect
// mistake: unsubscribes one topic at a time with `Router::unsubscribe`, which asks the hooks, so a hook that refuses UNSUBSCRIBE keeps a connection that is gone
// hint: Router::unsubscribe_all
        let me = self.subscriber.id();
        for (topic, ()) in self.subscriptions.iter() {
            let _ = self.router.unsubscribe(self.client, topic, me);
        }
        self.subscriptions.clear();
