// region: slow-consumer cut-off
// mistake: logs its own words instead of the warning the lab asks for word for word
// hint: word for word
        if is_timeout(error) {
            self.rules
                .stats
                .slow_consumers
                .fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "bye {} {} {}",
                escaped(&self.peer.client_id()),
                self.peer.addr(),
                format_duration(self.rules.write_timeout)
            );
        } else {
            log::info!("{} lost while writing to it: {error}", self.peer);
        }
        self.shut(state);
