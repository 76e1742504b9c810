// region: the tree walk
// mistake: skips an empty level as if it were not there, so `a//b` is walked like `a/b`
// hint: empty level is a level
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
        if level.is_empty() {
            // Nothing to match in an empty level: go on with the next one.
            Self::walk_from(node, rest, hidden, visit);
            return;
        }
        if let Some(child) = node.children.get(level) {
            Self::walk_from(child, rest, false, visit);
        }
        if !hidden {
            // `+` matches this one level, whatever its text, even an empty one.
            if let Some(child) = &node.one_level {
                Self::walk_from(child, rest, false, visit);
            }
        }
