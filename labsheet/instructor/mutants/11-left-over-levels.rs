// region: ACL filter check
// mistake: stops when the rule's levels run out without checking that the filter has none left, so lab/alice/temp allows lab/alice/temp/secret
// hint: no level left over
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
            Some(level) if allowed == ONE_LEVEL || allowed == level => {}
            Some(_) => return false,
        }
    }
    true
