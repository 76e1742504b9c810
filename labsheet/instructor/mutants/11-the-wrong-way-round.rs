// region: ACL filter check
// mistake: matches with the filter as the pattern and the rule as the topic, so lab/alice/temp allows lab/+/temp and lab/#
// hint: the wrong way round
    topic::matches(filter, rule)
