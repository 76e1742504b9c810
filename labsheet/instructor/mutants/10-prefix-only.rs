// region: the topic naming rule
// mistake: checks only that the topic starts with `team` and has a `/`, so `teamwork/news` and `team/news` pass.
// hint: checking only
    if topic.starts_with("team") && topic.contains('/') && !topic.ends_with('/') {
        let names_ok = topic.split('/').skip(1).all(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if names_ok {
            return Ok(());
        }
    }
    Err(format!("topics are named team<N>/<name>, like team3/news: '{topic}' is not").into())
