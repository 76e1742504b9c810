// region: the topic naming rule
// mistake: allows upper-case letters in names (`is_ascii_alphanumeric`), so `team3/News` passes.
// hint: upper case
    let mut levels = topic.split('/');
    let team = levels.next().unwrap_or_default();
    let number = team.strip_prefix("team").unwrap_or_default();
    let team_ok = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    let names: Vec<&str> = levels.collect();
    let name_ok = |name: &&str| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if team_ok && !names.is_empty() && names.iter().all(name_ok) {
        Ok(())
    } else {
        Err(format!("topics are named team<N>/<name>, like team3/news: '{topic}' is not").into())
    }
