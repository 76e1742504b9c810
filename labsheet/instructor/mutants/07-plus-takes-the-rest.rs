// region: the tree walk
// mistake: `+` takes every level that is left: the walk goes into the `+` child with `None`, so `home/+` matches `home/a/b`
// hint: exactly one level
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
        let (level, rest) = match levels.split_once(LEVEL_SEPARATOR) {
            Some((level, rest)) => (level, Some(rest)),
            None => (levels, None),
        };
        if let Some(child) = node.children.get(level) {
            Self::walk_from(child, rest, false, visit);
        }
        if !hidden {
            // `+` matches this one level, whatever its text, even an empty one.
            if let Some(child) = &node.one_level {
                Self::walk_from(child, None, false, visit);
            }
        }
