// region: slow-consumer cut-off
// mistake: swaps the two cases: a subscriber that stopped reading is logged as lost and not counted
// hint: must count as a slow consumer
        if !is_timeout(error) {
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
        self.shut(state);
