// region: ACL filter check
// mistake: keeps $SYS from rules that start with # only, so +/broker/+ allows $SYS/broker/uptime
// hint: not only one starting with #
    if filter.starts_with('$') && rule.starts_with('#') {
        return false;
    }
    let mut wanted = filter.split(LEVEL_SEPARATOR);
    for allowed in rule.split(LEVEL_SEPARATOR) {
        if allowed == ALL_LEVELS {
            return true;
        }
        match wanted.next() {
            Some(ALL_LEVELS) | None => return false,
            Some(level) if allowed == ONE_LEVEL || allowed == level => {}
            Some(_) => return false,
        }
    }
    wanted.next().is_none()
