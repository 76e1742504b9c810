//! A list that finds its entries by key: searched while it is short, indexed once it is
//! long.
//!
//! The broker keeps two kinds of small collections by the thousand: the subscribers of
//! each topic (most topics have one or two), and the topics of each connection (most
//! connections have one). A hash table's smallest allocation is about a hundred bytes, so
//! ten thousand of them would cost a megabyte for nothing; a plain list costs sixteen
//! bytes an entry, but finding one entry in a list of a thousand means looking at all of
//! them, and a thousand connections leaving a thousand shared topics then do a billion
//! comparisons. [`KeyedList`] is both: a list, plus an index from key to place that it
//! builds only once the list passes [`INDEX_FROM`] entries and drops again when it
//! shrinks. Removal swaps the last entry into the removed one's place (`swap_remove`), so
//! it moves one entry whatever the length, and the index follows that one move.

use std::collections::HashMap;
use std::hash::Hash;

/// Above this many entries a list keeps an index. Below it, a search of the list is as
/// fast as a lookup and the index would only cost memory.
pub const INDEX_FROM: usize = 16;

/// Pushes onto a list that usually stays at one item: its first push makes room for
/// exactly one, where `Vec` would make room for four (64 bytes for 16-byte items, a
/// quarter of them used). Later pushes grow it as `Vec` does. The registry's and the
/// client table's lists, one or two per connection, are part of what an idle connection
/// costs (`bench conns`).
pub fn push_small<T>(list: &mut Vec<T>, item: T) {
    if list.capacity() == 0 {
        list.reserve_exact(1);
    }
    list.push(item);
}

/// A list of `(key, value)` entries with unique keys. See the module docs.
#[derive(Debug)]
pub struct KeyedList<K, V> {
    list: Vec<(K, V)>,
    // Boxed so that the many short lists, which have no index, pay 8 bytes for the field
    // rather than a whole empty `HashMap` (48): the box is the point, whatever Clippy says.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<K, usize>>>,
}

impl<K, V> Default for KeyedList<K, V> {
    fn default() -> KeyedList<K, V> {
        KeyedList {
            list: Vec::new(),
            index: None,
        }
    }
}

impl<K: Eq + Hash + Clone, V> KeyedList<K, V> {
    /// Where the entry with `key` is, if there is one.
    fn position<Q>(&self, key: &Q) -> Option<usize>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.list.iter().position(|(k, _)| k.borrow() == key),
        }
    }

    /// Whether an entry has `key`.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.position(key).is_some()
    }

    /// Adds an entry; returns `false`, and changes nothing, if `key` is there already.
    pub fn insert(&mut self, key: K, value: V) -> bool {
        if self.contains(&key) {
            return false;
        }
        push_small(&mut self.list, (key.clone(), value));
        match &mut self.index {
            Some(index) => {
                index.insert(key, self.list.len() - 1);
            }
            None if self.list.len() > INDEX_FROM => {
                let places = self
                    .list
                    .iter()
                    .enumerate()
                    .map(|(at, (k, _))| (k.clone(), at));
                self.index = Some(Box::new(places.collect()));
            }
            None => {}
        }
        true
    }

    /// Removes the entry with `key`, if there is one.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let position = self.position(key)?;
        let (_, value) = self.list.swap_remove(position);
        if let Some(index) = &mut self.index {
            index.remove(key);
            if let Some((moved, _)) = self.list.get(position) {
                index.insert(moved.clone(), position);
            }
            if self.list.len() < INDEX_FROM / 2 {
                self.index = None;
            }
        }
        self.give_back_room();
        Some(value)
    }

    /// After many have left, gives the list's spare memory back: a list that once held a
    /// thousand entries and now holds ten does not keep room for a thousand.
    fn give_back_room(&mut self) {
        if self.list.capacity() > 4 * self.list.len().max(4) {
            self.list.shrink_to(2 * self.list.len());
        }
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &(K, V)> + '_ {
        self.list.iter()
    }

    /// Removes every entry, giving the memory back.
    pub fn clear(&mut self) {
        *self = KeyedList::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_finds_its_entries_through_the_index_as_they_come_and_go() {
        let mut list: KeyedList<u32, u32> = KeyedList::default();
        for n in 0..100 {
            assert!(list.insert(n, n * 10));
        }
        assert!(!list.insert(7, 0), "keys are unique");
        // Remove every other one, in an order that moves entries around the list.
        for n in (0..100).rev().step_by(2) {
            assert_eq!(list.remove(&n), Some(n * 10));
        }
        for n in 0..100 {
            assert_eq!(list.contains(&n), n % 2 == 0, "entry {n}");
        }
        for n in 0..100 {
            list.remove(&n);
        }
        assert!(list.is_empty());
        assert!(list.index.is_none(), "an empty list keeps no index");
    }

    #[test]
    fn a_short_list_keeps_no_index_and_room_for_one() {
        let mut list: KeyedList<String, ()> = KeyedList::default();
        list.insert("weather".to_string(), ());
        assert!(list.index.is_none());
        assert_eq!(list.list.capacity(), 1);
        assert!(list.contains("weather"));
        assert_eq!(list.remove("weather"), Some(()));
    }
}
