// region: the timestamp cache
// mistake: writes the time in another format (day first, no seconds)
// hint: YYYY-MM-DD HH:MM:SS
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = DateTime::<Local>::from(now)
                .format("%d/%m/%Y %H:%M")
                .to_string();
        }
        &self.text
