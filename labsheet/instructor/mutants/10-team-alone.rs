// region: the topic naming rule
// mistake: accepts a team with no name after it (`team3`), because an empty list of names passes `all`.
// hint: single level
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
    if team_ok && names.iter().all(name_ok) {
        Ok(())
    } else {
        Err(format!("topics are named team<N>/<name>, like team3/news: '{topic}' is not").into())
    }
