//! An intrusive doubly linked list over dense object ids, the building block of the
//! list-based policies (FIFO, LRU, SIEVE, ARC). Every operation is O(1) and allocation-free.

/// The "no object" link.
pub const NIL: u32 = u32::MAX;

/// A list of object ids `0..n`, each in at most one position. The head is the most recently
/// pushed end.
#[derive(Debug, Clone)]
pub struct DList {
    prev: Vec<u32>,
    next: Vec<u32>,
    member: Vec<bool>,
    head: u32,
    tail: u32,
    len: u32,
}

impl DList {
    /// An empty list for ids below `n`.
    pub fn new(n: usize) -> DList {
        DList {
            prev: vec![NIL; n],
            next: vec![NIL; n],
            member: vec![false; n],
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    /// Number of members.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `x` is a member.
    #[inline]
    pub fn contains(&self, x: u32) -> bool {
        self.member[x as usize]
    }

    /// The head (most recently pushed), or `NIL`.
    pub fn head(&self) -> u32 {
        self.head
    }

    /// The tail (least recently pushed), or `NIL`.
    pub fn tail(&self) -> u32 {
        self.tail
    }

    /// The neighbour of `x` towards the head, or `NIL`.
    #[inline]
    pub fn prev(&self, x: u32) -> u32 {
        self.prev[x as usize]
    }

    /// The neighbour of `x` towards the tail, or `NIL`.
    #[inline]
    pub fn next(&self, x: u32) -> u32 {
        self.next[x as usize]
    }

    /// Inserts `x` (not a member) at the head. Pushing a member would corrupt the links (a
    /// later walk could loop forever): callers that cannot rule it out by construction check
    /// [`DList::contains`] first (this is LRU's hot path, checked in debug builds only).
    #[inline]
    pub fn push_head(&mut self, x: u32) {
        debug_assert!(
            !self.member[x as usize],
            "object {x} is already in the list"
        );
        let i = x as usize;
        self.prev[i] = NIL;
        self.next[i] = self.head;
        if self.head != NIL {
            self.prev[self.head as usize] = x;
        } else {
            self.tail = x;
        }
        self.head = x;
        self.member[i] = true;
        self.len += 1;
    }

    /// Removes member `x`.
    #[inline]
    pub fn unlink(&mut self, x: u32) {
        debug_assert!(self.member[x as usize]);
        let i = x as usize;
        let (p, n) = (self.prev[i], self.next[i]);
        if p != NIL {
            self.next[p as usize] = n;
        } else {
            self.head = n;
        }
        if n != NIL {
            self.prev[n as usize] = p;
        } else {
            self.tail = p;
        }
        self.member[i] = false;
        self.len -= 1;
    }

    /// Moves member `x` to the head.
    #[inline]
    pub fn move_to_head(&mut self, x: u32) {
        debug_assert!(self.member[x as usize]);
        if self.head == x {
            return;
        }
        // A member that is not the head has a predecessor, and the head exists.
        let i = x as usize;
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        } else {
            self.tail = p;
        }
        let h = self.head;
        self.prev[h as usize] = x;
        self.prev[i] = NIL;
        self.next[i] = h;
        self.head = x;
    }

    /// Removes and returns the tail, or `None`.
    pub fn pop_tail(&mut self) -> Option<u32> {
        let t = self.tail;
        if t == NIL {
            None
        } else {
            self.unlink(t);
            Some(t)
        }
    }

    /// Empties the list.
    pub fn clear(&mut self) {
        let mut x = self.head;
        while x != NIL {
            let n = self.next[x as usize];
            self.member[x as usize] = false;
            x = n;
        }
        self.head = NIL;
        self.tail = NIL;
        self.len = 0;
    }

    /// The first member walking from the tail towards the head that is not in `protected`.
    #[inline]
    pub fn tail_most_unprotected(&self, protected: &[u32]) -> Option<u32> {
        let mut x = self.tail;
        while x != NIL {
            if !protected.contains(&x) {
                return Some(x);
            }
            x = self.prev[x as usize];
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_unlink_move() {
        let mut l = DList::new(5);
        for x in [0, 1, 2] {
            l.push_head(x);
        }
        assert_eq!((l.head(), l.tail(), l.len()), (2, 0, 3));
        l.move_to_head(0);
        assert_eq!((l.head(), l.tail()), (0, 1));
        l.unlink(2);
        assert_eq!(l.next(0), 1);
        assert_eq!(l.pop_tail(), Some(1));
        assert_eq!(l.pop_tail(), Some(0));
        assert_eq!(l.pop_tail(), None);
        l.push_head(4);
        assert_eq!(l.tail_most_unprotected(&[4]), None);
        l.clear();
        assert!(l.is_empty() && !l.contains(4));
    }
}

/// An unordered set of object ids with O(1) insert, remove and iteration.
#[derive(Debug, Clone)]
pub struct Members {
    items: Vec<u32>,
    pos: Vec<u32>,
}

impl Members {
    /// An empty set for ids below `n`.
    pub fn new(n: usize) -> Members {
        Members {
            items: Vec::new(),
            pos: vec![NIL; n],
        }
    }

    /// Whether `x` is a member.
    #[inline]
    pub fn contains(&self, x: u32) -> bool {
        self.pos[x as usize] != NIL
    }

    /// Adds `x` (not a member).
    #[inline]
    pub fn insert(&mut self, x: u32) {
        debug_assert!(!self.contains(x));
        self.pos[x as usize] = self.items.len() as u32;
        self.items.push(x);
    }

    /// Removes member `x`.
    #[inline]
    pub fn remove(&mut self, x: u32) {
        let i = self.pos[x as usize] as usize;
        debug_assert!(i != NIL as usize);
        let last = *self.items.last().expect("non-empty");
        self.items[i] = last;
        self.pos[last as usize] = i as u32;
        self.items.pop();
        self.pos[x as usize] = NIL;
    }

    /// The members, in no particular order.
    #[inline]
    pub fn items(&self) -> &[u32] {
        &self.items
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        for &x in &self.items {
            self.pos[x as usize] = NIL;
        }
        self.items.clear();
    }
}
