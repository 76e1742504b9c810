// region: slow-consumer cut-off
// mistake: logs a client lost while writing to it as a warning, which the lab keeps for slow consumers
// hint: logged at info level
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
            log::warn!("{} lost while writing to it: {error}", self.peer);
        }
        self.shut(state);
