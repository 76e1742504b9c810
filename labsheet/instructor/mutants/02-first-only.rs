// region: fan-out
// mistake: stops after the first subscriber that takes the batch
// hint: every subscriber
        for subscriber in subscribers {
            match subscriber.offer(&self.batch) {
                Offer::FlushNeeded => {
                    self.to_flush.push(Arc::clone(subscriber));
                    return 1;
                }
                Offer::Queued => return 1,
                Offer::Closed => {}
            }
        }
        0
