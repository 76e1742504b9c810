// region: fan-out
// mistake: counts every subscriber offered to, including one that answered Offer::Closed (it is gone, nothing was queued)
// hint: not Closed
        let mut receivers = 0;
        for subscriber in subscribers {
            if let Offer::FlushNeeded = subscriber.offer(&self.batch) {
                self.to_flush.push(Arc::clone(subscriber));
            }
            receivers += 1;
        }
        receivers
