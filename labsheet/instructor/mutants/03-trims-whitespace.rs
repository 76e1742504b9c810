// region: line framing
// mistake: trims every space, tab and `\r` at the end of the line, not just the one `\r` of a `\r\n` line end
// hint: the one `\r` right before that `\n`
        loop {
            let unscanned = &self.buffer[self.scanned..self.end];
            let Some(offset) = find_newline(unscanned) else {
                self.scanned = self.end;
                return self.check_unfinished_line();
            };
            let newline = self.scanned + offset;
            let line_start = self.start;
            self.start = newline + 1;
            self.scanned = self.start;
            if self.discarding {
                // The tail of an overlong line: drop it and look for the next line.
                self.discarding = false;
                continue;
            }
            // Trailing blanks are never part of a command.
            let mut line = &self.buffer[line_start..newline];
            while let Some((last, before)) = line.split_last() {
                if !last.is_ascii_whitespace() {
                    break;
                }
                line = before;
            }
            if line.len() > self.max_line {
                return Some(Frame::TooLong);
            }
            return Some(Frame::Line(line));
        }
