// region: the topic naming rule
// mistake: refuses with a reason that does not say what the rule is or which topic broke it.
// hint: without saying why
    let mut levels = topic.split('/');
    let team = levels.next().unwrap_or_default();
    let number = team.strip_prefix("team").unwrap_or_default();
    let team_ok = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    let names: Vec<&str> = levels.collect();
    let name_ok = |name: &&str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if team_ok && !names.is_empty() && names.iter().all(name_ok) {
        Ok(())
    } else {
        Err("invalid topic".into())
    }
