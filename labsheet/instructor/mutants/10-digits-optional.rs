// region: the topic naming rule
// mistake: forgets that the team number must have at least one digit, so `team/news` passes.
// hint: no team number
    let mut levels = topic.split('/');
    let team = levels.next().unwrap_or_default();
    let team_ok = team
        .strip_prefix("team")
        .is_some_and(|number| number.bytes().all(|b| b.is_ascii_digit()));
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
        Err(format!("topics are named team<N>/<name>, like team3/news: '{topic}' is not").into())
    }
