// region: the tree walk
// mistake: `+` refuses an empty level, so `a/+/b` does not match `a//b` nor `news/+` match `news/`
// hint: even an empty one
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
        if !hidden && !level.is_empty() {
            // `+` matches this one level, whatever its text, even an empty one.
            if let Some(child) = &node.one_level {
                Self::walk_from(child, rest, false, visit);
            }
        }
