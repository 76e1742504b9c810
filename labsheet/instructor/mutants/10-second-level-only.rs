// region: the topic naming rule
// mistake: checks the team and the first name only, so `team3/news/Today` and `team3/news/` pass.
// hint: second level
    let Some((team, rest)) = topic.split_once('/') else {
        return Err(format!("topics are named team<N>/<name>, like team3/news: '{topic}' is not").into());
    };
    let number = team.strip_prefix("team").unwrap_or_default();
    let team_ok = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    let first = rest.split('/').next().unwrap_or_default();
    let first_ok = !first.is_empty()
        && first
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if team_ok && first_ok {
        Ok(())
    } else {
        Err(format!("topics are named team<N>/<name>, like team3/news: '{topic}' is not").into())
    }
