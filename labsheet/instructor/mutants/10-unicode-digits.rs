// region: the topic naming rule
// mistake: takes the team number's digits with `char::is_numeric`, so `team٣/news` (an Arabic-Indic three) and `team²/news` pass.
// hint: is_ascii_digit
    let mut levels = topic.split('/');
    let team = levels.next().unwrap_or_default();
    let number = team.strip_prefix("team").unwrap_or_default();
    let team_ok = !number.is_empty() && number.chars().all(char::is_numeric);
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
