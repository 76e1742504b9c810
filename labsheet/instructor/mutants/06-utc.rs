// region: the timestamp cache
// mistake: formats the time in UTC, which looks right on a machine that happens to be set to UTC
// hint: not Utc
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = DateTime::<chrono::Utc>::from(now)
                .format(TIMESTAMP_FORMAT)
                .to_string();
        }
        &self.text
