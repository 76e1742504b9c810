// region: fan-out
// mistake: never remembers the subscribers that must be flushed, so their lines wait
// hint: flush
        let mut receivers = 0;
        for subscriber in subscribers {
            match subscriber.offer(&self.batch) {
                Offer::FlushNeeded | Offer::Queued => receivers += 1,
                Offer::Closed => {}
            }
        }
        receivers
