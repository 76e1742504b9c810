// region: slow-consumer cut-off
// mistake: logs the cut-off at info level, though it is a warning: an operator watching warnings never sees it
// hint: warn
        if is_timeout(error) {
            self.rules
                .stats
                .slow_consumers
                .fetch_add(1, Ordering::Relaxed);
            log::info!(
                "slow consumer {} ({}) disconnected: could not deliver within {}",
                escaped(&self.peer.client_id()),
                self.peer.addr(),
                format_duration(self.rules.write_timeout)
            );
        } else {
            log::info!("{} lost while writing to it: {error}", self.peer);
        }
        self.shut(state);
