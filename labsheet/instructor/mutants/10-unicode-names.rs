// region: the topic naming rule
// mistake: checks names a character at a time with `char::is_lowercase` and `char::is_numeric`, so `team3/café` and `team3/week²` pass.
// hint: the rule is
    let mut levels = topic.split('/');
    let team = levels.next().unwrap_or_default();
    let number = team.strip_prefix("team").unwrap_or_default();
    let team_ok = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    let names: Vec<&str> = levels.collect();
    let name_ok = |name: &&str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_lowercase() || c.is_numeric() || c == '-')
    };
    if team_ok && !names.is_empty() && names.iter().all(name_ok) {
        Ok(())
    } else {
        Err(format!("topics are named team<N>/<name>, like team3/news: '{topic}' is not").into())
    }
