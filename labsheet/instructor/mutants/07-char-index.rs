// region: the tree walk
// mistake: finds the `/` by counting characters (`chars().position`) and slices the text by bytes with that count, so a level with a non-ASCII letter (`zürich/weather`) is cut in the wrong place
// hint: non-ASCII
        if !hidden {
            // `#` matches whatever is left: any number of levels, none included.
            if let Some(members) = &node.all_levels {
                visit(members);
            }
        }
        let Some(levels) = rest else {
            if let Some(members) = &node.ends_here {
                visit(members);
            }
            return;
        };
        // The level is everything before the first `/`.
        let (level, rest) = match levels.chars().position(|c| c == '/') {
            Some(slash) => (&levels[..slash], Some(&levels[slash + 1..])),
            None => (levels, None),
        };
        if let Some(child) = node.children.get(level) {
            Self::walk_from(child, rest, false, visit);
        }
        if !hidden {
            // `+` matches this one level, whatever its text, even an empty one.
            if let Some(child) = &node.one_level {
                Self::walk_from(child, rest, false, visit);
            }
        }
