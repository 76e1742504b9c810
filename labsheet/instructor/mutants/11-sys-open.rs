// region: ACL filter check
// mistake: forgets that a rule starting with a wildcard does not reach $SYS, so # allows $SYS/#
// hint: does not reach topics starting with $
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
