// region: slow-consumer cut-off
// mistake: names the client with the peer's own display (`#3 stalled (address)`) instead of the words the lab gives
// hint: word for word
        if is_timeout(error) {
            self.rules
                .stats
                .slow_consumers
                .fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "slow consumer {} disconnected: could not deliver within {}",
                self.peer,
                format_duration(self.rules.write_timeout)
            );
        } else {
            log::info!("{} lost while writing to it: {error}", self.peer);
        }
        self.shut(state);
