// region: the timestamp cache
// mistake: keys the cache on the minute instead of the second, so seconds stand still
// hint: the second changes
        let now = SystemTime::now();
        let minute = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() / 60);
        if minute != self.second || self.text.is_empty() {
            self.second = minute;
            self.text = DateTime::<Local>::from(now)
                .format(TIMESTAMP_FORMAT)
                .to_string();
        }
        &self.text
