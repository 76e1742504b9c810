// region: the timestamp cache
// mistake: makes the text once and never again, so every message is stamped with the first second
// hint: made again
        if self.text.is_empty() {
            self.text = Local::now().format(TIMESTAMP_FORMAT).to_string();
        }
        &self.text
