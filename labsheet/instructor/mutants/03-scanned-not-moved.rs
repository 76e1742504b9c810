// region: line framing
// mistake: forgets to move `scanned` past a line it returns, so the next search finds the same `\n` again
        loop {
            let unscanned = &self.buffer[self.scanned..self.end];
            let Some(offset) = find_newline(unscanned) else {
                self.scanned = self.end;
                return self.check_unfinished_line();
            };
            let newline = self.scanned + offset;
            let line_start = self.start;
            self.start = newline + 1;
            if self.discarding {
                // The tail of an overlong line: drop it and look for the next line.
                self.discarding = false;
                continue;
            }
            let line = strip_carriage_return(&self.buffer[line_start..newline]);
            if line.len() > self.max_line {
                return Some(Frame::TooLong);
            }
            return Some(Frame::Line(line));
        }
