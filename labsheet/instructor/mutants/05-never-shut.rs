// region: slow-consumer cut-off
// mistake: counts and logs the cut-off but never closes the outbox, so the connection stays open
// hint: shut
        if is_timeout(error) {
            self.rules
                .stats
                .slow_consumers
                .fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "slow consumer {} ({}) disconnected: could not deliver within {}",
                escaped(&self.peer.client_id()),
                self.peer.addr(),
                format_duration(self.rules.write_timeout)
            );
        } else {
            log::info!("{} lost while writing to it: {error}", self.peer);
        }
