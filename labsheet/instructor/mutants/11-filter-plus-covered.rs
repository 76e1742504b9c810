// region: ACL filter check
// mistake: lets a + in the filter pass under a plain level of the rule, so lab/alice/temp allows lab/+/temp, and with it every user's temp
// hint: never a wildcard in the filter
    if filter.starts_with('$') && rule.starts_with(['+', '#']) {
        return false;
    }
    let mut wanted = filter.split(LEVEL_SEPARATOR);
    for allowed in rule.split(LEVEL_SEPARATOR) {
        if allowed == ALL_LEVELS {
            return true;
        }
        match wanted.next() {
            Some(ALL_LEVELS) | None => return false,
            Some(level) if allowed == ONE_LEVEL || allowed == level || level == ONE_LEVEL => {}
            Some(_) => return false,
        }
    }
    wanted.next().is_none()
