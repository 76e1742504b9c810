// region: slow-consumer cut-off
// mistake: takes every failed write for a timeout, so a subscriber that went away is counted and warned about as a slow consumer
// hint: only is_timeout(error) is counted
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
        self.shut(state);
