//! The tree of wildcard filters: which subscriptions a topic matches, without trying each.
//!
//! A broker with ten thousand wildcard subscriptions cannot test every filter against
//! every publish. So the filters are stored level by level, as a tree whose every node is
//! one level of some filter: its children by the exact text of the next level, and
//! beside them at most one `+` child. What ends at a node is kept there: the members of
//! the filter whose last level the node is, and the members of the filter `<node>/#`.
//!
//! ```text
//!  filters: news/+   news/#   +/weather   sport/+/live
//!
//!  (root) ─ news ─ +          · news/+          (· : a filter ends here)
//!        │       └ (#)        · news/#          (#): kept on the node news itself
//!        ├ sport ─ + ─ live   · sport/+/live
//!        └ + ─ weather        · +/weather
//! ```
//!
//! Finding who matches `news/tech` is a walk down the tree, one topic level at a time
//! (see [`FilterTree::walk`]): at `news`, the `news/#` members match whatever follows;
//! then the walk goes on into both `news`'s child `tech` (there is none) and its `+`
//! child, where the topic ends and `news/+` matches.
//!
//! # What a walk costs
//!
//! At each level of the topic the walk follows at most two branches, the level's own
//! name (one hash lookup) and `+`, and takes the `#` members of every node it visits.
//! Without `+` in the filters that is one node per level: the cost grows with the
//! topic's levels, not with the number of filters. Each `+` along a path can add a branch,
//! so the worst case is two nodes per level per branch, but only where filters made them:
//! a node exists because some filter has that prefix. Exact filters (no wildcard) are not
//! in the tree at all; the registry finds those with one map lookup, as before.
//!
//! NATS keeps the same structure for its subjects (the "sublist", with `*` and `>`), and
//! caches each subject's result; Mosquitto walks a tree of topic levels on every publish.
//!
//! The rules are MQTT's, exactly as [`topic::matches`](crate::topic::matches) states them
//! for one filter and one name; this tree must agree with it for every filter and name, and
//! the tests compare the two on every filter and name of up to three levels.

use std::collections::HashMap;

use crate::topic::{ALL_LEVELS, LEVEL_SEPARATOR, ONE_LEVEL};

/// Wildcard filters, each with its members `M` (the subscribers of that filter), arranged
/// by levels. See the module docs.
#[derive(Debug)]
pub struct FilterTree<M> {
    root: Node<M>,
    /// How many filters have members.
    filters: usize,
}

#[derive(Debug)]
struct Node<M> {
    /// The next level, by its exact text (an empty level is the text "").
    children: HashMap<Box<str>, Node<M>>,
    /// The next level when it is `+`.
    one_level: Option<Box<Node<M>>>,
    /// The members of the filter that ends at this node.
    ends_here: Option<M>,
    /// The members of the filter that is this node's levels followed by `#`.
    all_levels: Option<M>,
}

impl<M> Default for Node<M> {
    fn default() -> Node<M> {
        Node {
            children: HashMap::new(),
            one_level: None,
            ends_here: None,
            all_levels: None,
        }
    }
}

impl<M> Default for FilterTree<M> {
    fn default() -> FilterTree<M> {
        FilterTree {
            root: Node::default(),
            filters: 0,
        }
    }
}

impl<M> Node<M> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.one_level.is_none()
            && self.ends_here.is_none()
            && self.all_levels.is_none()
    }

    /// The node of the next level `level`, made if it is missing.
    fn child_or_new(&mut self, level: &str) -> &mut Node<M> {
        if level == ONE_LEVEL {
            return self.one_level.get_or_insert_with(Box::default);
        }
        self.children.entry(level.into()).or_default()
    }

    /// Where the members of the filter made of `levels` (below this node) are.
    fn slot_mut<'a>(
        &mut self,
        mut levels: impl Iterator<Item = &'a str>,
    ) -> Option<&mut Option<M>> {
        let Some(level) = levels.next() else {
            return Some(&mut self.ends_here);
        };
        if level == ALL_LEVELS {
            return Some(&mut self.all_levels);
        }
        let child = if level == ONE_LEVEL {
            self.one_level.as_deref_mut()?
        } else {
            self.children.get_mut(level)?
        };
        child.slot_mut(levels)
    }

    /// Like [`slot_mut`](Self::slot_mut), making the nodes on the way.
    fn slot_or_new<'a>(&mut self, mut levels: impl Iterator<Item = &'a str>) -> &mut Option<M> {
        match levels.next() {
            None => &mut self.ends_here,
            Some(level) if level == ALL_LEVELS => &mut self.all_levels,
            Some(level) => self.child_or_new(level).slot_or_new(levels),
        }
    }

    /// Removes the members of the filter made of `levels` if `unused` says so, and every
    /// node left empty on the way back up. Returns whether members were removed.
    fn prune<'a>(
        &mut self,
        mut levels: impl Iterator<Item = &'a str>,
        unused: &impl Fn(&M) -> bool,
    ) -> bool {
        let take = |slot: &mut Option<M>| {
            let drop = slot.as_ref().is_some_and(unused);
            if drop {
                *slot = None;
            }
            drop
        };
        let Some(level) = levels.next() else {
            return take(&mut self.ends_here);
        };
        if level == ALL_LEVELS {
            return take(&mut self.all_levels);
        }
        if level == ONE_LEVEL {
            let Some(child) = self.one_level.as_deref_mut() else {
                return false;
            };
            let removed = child.prune(levels, unused);
            if child.is_empty() {
                self.one_level = None;
            }
            return removed;
        }
        let Some(child) = self.children.get_mut(level) else {
            return false;
        };
        let removed = child.prune(levels, unused);
        if child.is_empty() {
            self.children.remove(level);
        }
        removed
    }
}

impl<M> FilterTree<M> {
    /// Whether no filter has members: a publish then need not walk at all.
    pub fn is_empty(&self) -> bool {
        self.filters == 0
    }

    /// How many filters have members.
    pub fn len(&self) -> usize {
        self.filters
    }

    /// The members of `filter` (a valid filter: see `topic.rs`), made empty if the filter
    /// was not in the tree.
    pub fn entry(&mut self, filter: &str) -> &mut M
    where
        M: Default,
    {
        let slot = self.root.slot_or_new(filter.split(LEVEL_SEPARATOR));
        if slot.is_none() {
            self.filters += 1;
        }
        slot.get_or_insert_with(M::default)
    }

    /// The members of `filter`, if it is in the tree.
    pub fn get_mut(&mut self, filter: &str) -> Option<&mut M> {
        self.root.slot_mut(filter.split(LEVEL_SEPARATOR))?.as_mut()
    }

    /// Removes `filter` and the nodes only it needed, if `unused` says its members are
    /// (typically: the last one left). Returns whether it was removed.
    pub fn remove_if(&mut self, filter: &str, unused: impl Fn(&M) -> bool) -> bool {
        let removed = self.root.prune(filter.split(LEVEL_SEPARATOR), &unused);
        if removed {
            self.filters -= 1;
        }
        removed
    }

    /// Calls `visit` with the members of every filter that matches the topic name `topic`,
    /// each filter once.
    pub fn walk<'a>(&'a self, topic: &str, visit: &mut dyn FnMut(&'a M)) {
        if self.is_empty() {
            // No wildcard subscription anywhere: nothing to walk.
            return;
        }
        // A filter that starts with a wildcard never matches a topic starting with `$`.
        let hidden = topic.starts_with('$');
        Self::walk_from(&self.root, Some(topic), hidden, visit);
    }

    /// Visits the members of every filter in `node`'s part of the tree that matches
    /// `rest`, the levels of the topic not matched yet: `None` when no level is left,
    /// `Some(levels)` otherwise (`Some("")` is one empty level). `hidden` is true at the
    /// first level of a topic that starts with `$`, which no wildcard may match.
    fn walk_from<'a>(
        node: &'a Node<M>,
        rest: Option<&str>,
        hidden: bool,
        visit: &mut dyn FnMut(&'a M),
    ) {
        // lab:begin 07 the tree walk
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
                Self::walk_from(child, rest, false, visit);
            }
        }
        // lab:end 07
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::{check_filter, matches};

    /// The filters in `tree` that match `topic`, sorted (members are the filter's text).
    fn matching(tree: &FilterTree<String>, topic: &str) -> Vec<String> {
        let mut found = Vec::new();
        tree.walk(topic, &mut |filter| found.push(filter.clone()));
        found.sort();
        found
    }

    fn tree_of(filters: &[String]) -> FilterTree<String> {
        let mut tree = FilterTree::default();
        for filter in filters {
            *tree.entry(filter) = filter.clone();
        }
        tree
    }

    /// Every text of up to `levels` levels, each level one of `words`.
    fn texts(words: &[&str], levels: usize) -> Vec<String> {
        let mut all: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let mut last = all.clone();
        for _ in 1..levels {
            last = last
                .iter()
                .flat_map(|text| words.iter().map(move |w| format!("{text}/{w}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn the_tree_agrees_with_the_rules_on_every_filter_and_name_of_up_to_three_levels() {
        let filters: Vec<String> = texts(&["a", "b", "", "+", "#"], 3)
            .into_iter()
            .filter(|filter| check_filter(filter).is_ok())
            .collect();
        let topics = texts(&["a", "b", "", "$s"], 3);
        let tree = tree_of(&filters);
        for topic in &topics {
            let mut expected: Vec<String> = filters
                .iter()
                .filter(|filter| matches(filter, topic))
                .cloned()
                .collect();
            expected.sort();
            assert_eq!(matching(&tree, topic), expected, "topic {topic:?}");
        }
    }

    #[test]
    fn removing_a_filter_keeps_the_others_and_gives_back_its_nodes() {
        let mut tree = tree_of(&["a/+/c".to_string(), "a/#".to_string()]);
        assert_eq!(tree.len(), 2);
        assert!(!tree.remove_if("a/+/c", |_| false), "kept while in use");
        assert!(tree.remove_if("a/+/c", |_| true));
        assert!(!tree.remove_if("a/+/c", |_| true), "already gone");
        assert_eq!(matching(&tree, "a/b/c"), ["a/#"]);
        assert!(
            tree.root.children["a"].one_level.is_none(),
            "the + node went"
        );
        assert!(tree.remove_if("a/#", |_| true));
        assert!(tree.is_empty() && tree.root.is_empty());
        assert!(tree.get_mut("a/#").is_none());
    }
}
