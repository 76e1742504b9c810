// region: fan-out
// mistake: counts only the subscribers that had nothing queued, not those already waiting
// hint: must return 2
        let mut receivers = 0;
        for subscriber in subscribers {
            if let Offer::FlushNeeded = subscriber.offer(&self.batch) {
                self.to_flush.push(Arc::clone(subscriber));
                receivers += 1;
            }
        }
        receivers
