// region: ACL filter check
// mistake: matches the filter as if it were a topic, so a rule room/+ covers room/# (the # taken for one level named #)
// hint: as a topic match would
    crate::topic::matches(rule, filter)
