// region: ACL filter check
// mistake: lets + in the rule cover # in the filter, so room/+ allows room/#
// hint: # in the filter is covered only by # in the rule
    if filter.starts_with('$') && rule.starts_with(['+', '#']) {
        return false;
    }
    let mut wanted = filter.split(LEVEL_SEPARATOR);
    for allowed in rule.split(LEVEL_SEPARATOR) {
        if allowed == ALL_LEVELS {
            return true;
        }
        match wanted.next() {
            None => return false,
            Some(level) if allowed == ONE_LEVEL || allowed == level => {}
            Some(_) => return false,
        }
    }
    wanted.next().is_none()
