//! The water-filling book: the guests in the market, ordered by how soon
//! their cap binds, so that one descent finds the level of a proportional
//! share with caps.
//!
//! Guest `i` bids `b_i` and may use at most `c_i` milli-cores. At level λ
//! its share is `min(λ·b_i, c_i)`, capped once λ ≥ `t_i = c_i / b_i`. The
//! level that sells capacity `C` solves `Σ_{t_i ≤ λ} c_i + λ·Σ_{t_i > λ} b_i
//! = C`. The guests are kept in a B+ tree ordered by `t_i` whose inner
//! nodes hold each child's sums of `c` and `b` and its last entry: insert,
//! remove and the level each visit one node per level (O(log n), with a
//! fan-out of [`FANOUT`] so that a level is one or two cache lines, not
//! one pointer chase per entry); a share is then O(1). Arithmetic is exact
//! (u128 cross-multiplication), so the order and the level never depend on
//! float rounding.

/// Most entries in a leaf, and children of an inner node.
pub const FANOUT: usize = 32;
/// A node below this many is merged into a neighbour when it fits.
const LOW: usize = FANOUT / 4;

/// A guest's place in the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    /// Milli-credits per CPU-second, ≥ 1.
    pub bid: u64,
    /// Milli-cores, ≥ 1.
    pub cap: u64,
}

impl Entry {
    /// `self` binds before `o` (smaller `cap/bid`, then smaller id).
    fn before(&self, o: &Entry) -> bool {
        let l = u128::from(self.cap) * u128::from(o.bid);
        let r = u128::from(o.cap) * u128::from(self.bid);
        l < r || (l == r && self.id < o.id)
    }

    /// Whether this entry, with `pre_cap` the caps up to and including it
    /// and `post_bid` the bids after it, is capped at its own threshold:
    /// `pre_cap + (cap/bid)·post_bid ≤ C`.
    fn capped(&self, pre_cap: u128, post_bid: u128, c: u128) -> bool {
        let b = u128::from(self.bid);
        pre_cap * b + u128::from(self.cap) * post_bid <= c * b
    }
}

/// What a parent keeps of each child.
#[derive(Debug, Clone, Copy)]
struct Summary {
    cap: u128,
    bid: u128,
    /// The child's last entry (it routes: an entry goes to the first child
    /// whose last is not before it).
    last: Entry,
}

#[derive(Debug, Clone)]
enum Node {
    Leaf(Vec<Entry>),
    Inner(Vec<(u32, Summary)>),
}

/// The level of a fill: a share is `min(cap, bid·num/den)`; `den == 0`
/// means every guest is at its cap (capacity is left over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub num: u128,
    pub den: u128,
}

impl Level {
    /// The share of a guest in the book at this level, milli-cores,
    /// rounded down (so the shares never sum above the capacity).
    pub fn share(&self, bid: u64, cap: u64) -> u64 {
        if self.den == 0 {
            return cap;
        }
        let s = u128::from(bid) * self.num / self.den;
        u64::try_from(s).unwrap_or(u64::MAX).min(cap)
    }
}

/// The book. See the module documentation.
#[derive(Debug)]
pub struct Fill {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    len: usize,
}

impl Default for Fill {
    fn default() -> Self {
        Self::new()
    }
}

impl Fill {
    /// An empty book.
    pub fn new() -> Self {
        Self {
            nodes: vec![Node::Leaf(Vec::new())],
            free: Vec::new(),
            root: 0,
            len: 0,
        }
    }

    /// Guests in the book.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no guest is in the book.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn alloc(&mut self, n: Node) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = n;
                i
            }
            None => {
                self.nodes.push(n);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 nodes")
            }
        }
    }

    fn summary(&self, n: u32) -> Option<Summary> {
        match &self.nodes[n as usize] {
            Node::Leaf(v) => {
                let last = *v.last()?;
                let (cap, bid) = v.iter().fold((0u128, 0u128), |(c, b), e| {
                    (c + u128::from(e.cap), b + u128::from(e.bid))
                });
                Some(Summary { cap, bid, last })
            }
            Node::Inner(ch) => {
                let last = ch.last()?.1.last;
                let (cap, bid) = ch
                    .iter()
                    .fold((0u128, 0u128), |(c, b), (_, s)| (c + s.cap, b + s.bid));
                Some(Summary { cap, bid, last })
            }
        }
    }

    fn size(&self, n: u32) -> usize {
        match &self.nodes[n as usize] {
            Node::Leaf(v) => v.len(),
            Node::Inner(ch) => ch.len(),
        }
    }

    /// Adds `e`; the caller never adds an id twice.
    pub fn insert(&mut self, e: Entry) {
        debug_assert!(e.bid >= 1 && e.cap >= 1, "bid and cap are at least 1");
        if let Some(right) = self.insert_at(self.root, e) {
            let left = self.root;
            let (ls, rs) = (
                self.summary(left).expect("full"),
                self.summary(right).expect("full"),
            );
            self.root = self.alloc(Node::Inner(vec![(left, ls), (right, rs)]));
        }
        self.len += 1;
    }

    /// Inserts into the subtree `n`; returns a new right sibling if `n` split.
    fn insert_at(&mut self, n: u32, e: Entry) -> Option<u32> {
        let split = match &mut self.nodes[n as usize] {
            Node::Leaf(v) => {
                let at = v.partition_point(|x| x.before(&e));
                v.insert(at, e);
                (v.len() > FANOUT).then(|| Node::Leaf(v.split_off(v.len() / 2)))
            }
            Node::Inner(ch) => {
                let i = ch
                    .partition_point(|(_, s)| s.last.before(&e))
                    .min(ch.len() - 1);
                let child = ch[i].0;
                match self.insert_at(child, e) {
                    None => {
                        // The child took it: its sums grow by it, its last
                        // is the later of the two.
                        let Node::Inner(ch) = &mut self.nodes[n as usize] else {
                            unreachable!("an inner node")
                        };
                        let s = &mut ch[i].1;
                        s.cap += u128::from(e.cap);
                        s.bid += u128::from(e.bid);
                        if s.last.before(&e) {
                            s.last = e;
                        }
                    }
                    Some(right) => {
                        let (ls, rs) = (
                            self.summary(child).expect("not empty"),
                            self.summary(right).expect("not empty"),
                        );
                        let Node::Inner(ch) = &mut self.nodes[n as usize] else {
                            unreachable!("an inner node")
                        };
                        ch[i].1 = ls;
                        ch.insert(i + 1, (right, rs));
                    }
                }
                let Node::Inner(ch) = &mut self.nodes[n as usize] else {
                    unreachable!("an inner node")
                };
                (ch.len() > FANOUT).then(|| Node::Inner(ch.split_off(ch.len() / 2)))
            }
        };
        split.map(|node| self.alloc(node))
    }

    /// Removes `e` (as it was inserted); false if it is not in the book.
    pub fn remove(&mut self, e: &Entry) -> bool {
        let found = self.remove_at(self.root, e);
        if found {
            self.len -= 1;
            // A root with one child hands over to it.
            while let Node::Inner(ch) = &self.nodes[self.root as usize] {
                if ch.len() != 1 {
                    break;
                }
                let only = ch[0].0;
                self.free.push(self.root);
                self.root = only;
            }
        }
        found
    }

    fn remove_at(&mut self, n: u32, e: &Entry) -> bool {
        match &mut self.nodes[n as usize] {
            Node::Leaf(v) => {
                let at = v.partition_point(|x| x.before(e));
                if v.get(at) == Some(e) {
                    v.remove(at);
                    true
                } else {
                    false
                }
            }
            Node::Inner(ch) => {
                let i = ch.partition_point(|(_, s)| s.last.before(e));
                if i == ch.len() {
                    return false;
                }
                let child = ch[i].0;
                if !self.remove_at(child, e) {
                    return false;
                }
                self.settle(n, i, e);
                true
            }
        }
    }

    /// After `e` left child `i` of `n`: drop the child if empty, merge it
    /// into a neighbour if small and they fit, else take `e` off its sums.
    fn settle(&mut self, n: u32, i: usize, e: &Entry) {
        let Node::Inner(ch) = &self.nodes[n as usize] else {
            unreachable!("an inner node")
        };
        let child = ch[i].0;
        let neighbour = if i + 1 < ch.len() {
            Some(i + 1)
        } else {
            i.checked_sub(1)
        };
        let size = self.size(child);
        if size == 0 {
            self.free.push(child);
            let Node::Inner(ch) = &mut self.nodes[n as usize] else {
                unreachable!("an inner node")
            };
            ch.remove(i);
            return;
        }
        if let Some(j) = neighbour.filter(|_| size < LOW) {
            let (a, b) = (i.min(j), i.max(j));
            let Node::Inner(ch) = &self.nodes[n as usize] else {
                unreachable!("an inner node")
            };
            let (na, nb) = (ch[a].0, ch[b].0);
            if self.size(na) + self.size(nb) <= FANOUT {
                let moved = std::mem::replace(&mut self.nodes[nb as usize], Node::Leaf(Vec::new()));
                match (&mut self.nodes[na as usize], moved) {
                    (Node::Leaf(x), Node::Leaf(y)) => x.extend(y),
                    (Node::Inner(x), Node::Inner(y)) => x.extend(y),
                    _ => unreachable!("siblings are of one kind"),
                }
                self.free.push(nb);
                let s = self.summary(na).expect("not empty");
                let Node::Inner(ch) = &mut self.nodes[n as usize] else {
                    unreachable!("an inner node")
                };
                ch.remove(b);
                ch[a].1 = s;
                return;
            }
        }
        let last = self.last_of(child);
        let Node::Inner(ch) = &mut self.nodes[n as usize] else {
            unreachable!("an inner node")
        };
        let s = &mut ch[i].1;
        s.cap -= u128::from(e.cap);
        s.bid -= u128::from(e.bid);
        s.last = last;
    }

    /// The last entry of a non-empty node.
    fn last_of(&self, n: u32) -> Entry {
        match &self.nodes[n as usize] {
            Node::Leaf(v) => *v.last().expect("not empty"),
            Node::Inner(ch) => ch.last().expect("not empty").1.last,
        }
    }

    /// The level that sells `capacity` milli-cores among the book's guests.
    pub fn level(&self, capacity: u64) -> Level {
        let c = u128::from(capacity);
        let total_bid = self.summary(self.root).map_or(0, |s| s.bid);
        // Everything before the node being looked at, and the last capped.
        let (mut acc_cap, mut acc_bid) = (0u128, 0u128);
        let mut capped = (0u128, total_bid);
        let mut n = self.root;
        loop {
            match &self.nodes[n as usize] {
                Node::Leaf(v) => {
                    for e in v {
                        let pre = acc_cap + u128::from(e.cap);
                        let post = total_bid - acc_bid - u128::from(e.bid);
                        if !e.capped(pre, post, c) {
                            break;
                        }
                        capped = (pre, post);
                        acc_cap = pre;
                        acc_bid += u128::from(e.bid);
                    }
                    break;
                }
                Node::Inner(ch) => {
                    // Whole children are capped while their last entry is;
                    // the boundary is inside the first that is not.
                    let mut next = None;
                    for (child, s) in ch {
                        let pre = acc_cap + s.cap;
                        let post = total_bid - acc_bid - s.bid;
                        if s.last.capped(pre, post, c) {
                            capped = (pre, post);
                            acc_cap = pre;
                            acc_bid += s.bid;
                        } else {
                            next = Some(*child);
                            break;
                        }
                    }
                    match next {
                        Some(child) => n = child,
                        None => break,
                    }
                }
            }
        }
        let (capped_cap, free_bid) = capped;
        Level {
            num: c.saturating_sub(capped_cap),
            den: free_bid,
        }
    }

    /// Every entry, in book order (for tests and debugging).
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.len);
        self.collect(self.root, &mut out);
        out
    }

    fn collect(&self, n: u32, out: &mut Vec<Entry>) {
        match &self.nodes[n as usize] {
            Node::Leaf(v) => out.extend_from_slice(v),
            Node::Inner(ch) => {
                for (child, _) in ch {
                    self.collect(*child, out);
                }
            }
        }
    }
}

/// The same level by sorting every entry: the reference the book is tested
/// against.
pub fn naive_level(entries: &[Entry], capacity: u64) -> Level {
    let mut v = entries.to_vec();
    v.sort_by(|a, b| {
        if a.before(b) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        }
    });
    let c = u128::from(capacity);
    let total_bid: u128 = v.iter().map(|e| u128::from(e.bid)).sum();
    let (mut pre_cap, mut pre_bid) = (0u128, 0u128);
    let mut capped = (0u128, total_bid);
    for e in &v {
        pre_cap += u128::from(e.cap);
        pre_bid += u128::from(e.bid);
        let post = total_bid - pre_bid;
        let b = u128::from(e.bid);
        if pre_cap * b + u128::from(e.cap) * post <= c * b {
            capped = (pre_cap, post);
        } else {
            break;
        }
    }
    Level {
        num: c.saturating_sub(capped.0),
        den: capped.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxwell_types::rng::Rng;

    #[test]
    fn the_book_agrees_with_the_sorted_reference_on_random_operations() {
        let mut rng = Rng::new(11);
        for case in 0..60 {
            // Some runs long enough for three levels of nodes.
            let steps = if case % 10 == 0 { 6_000 } else { 300 };
            let mut fill = Fill::new();
            let mut live: Vec<Entry> = Vec::new();
            for step in 0..steps {
                if live.is_empty() || rng.below(3) > 0 {
                    let e = Entry {
                        id: case * 100_000 + step,
                        bid: 1 + rng.below(5_000),
                        cap: 1 + rng.below(4_000),
                    };
                    fill.insert(e);
                    live.push(e);
                } else {
                    let i = rng.below(live.len() as u64) as usize;
                    assert!(fill.remove(&live.swap_remove(i)));
                }
                // The long runs check every 50th step (a sort each time).
                if steps > 300 && step % 50 != 0 {
                    continue;
                }
                let cap = rng.below(50_000);
                assert_eq!(
                    fill.level(cap),
                    naive_level(&live, cap),
                    "case {case} step {step}"
                );
                assert_eq!(fill.len(), live.len());
                if step % 50 == 0 {
                    let mut sorted = live.clone();
                    sorted.sort_by(|a, b| {
                        if a.before(b) {
                            std::cmp::Ordering::Less
                        } else {
                            std::cmp::Ordering::Greater
                        }
                    });
                    assert_eq!(fill.entries(), sorted, "case {case} step {step}: order");
                }
            }
            let total: u128 = live
                .iter()
                .map(|e| u128::from(fill.level(7_000).share(e.bid, e.cap)))
                .sum();
            assert!(total <= 7_000);
        }
    }

    #[test]
    fn removing_an_absent_entry_changes_nothing() {
        let mut fill = Fill::new();
        let e = Entry {
            id: 1,
            bid: 10,
            cap: 100,
        };
        fill.insert(e);
        assert!(!fill.remove(&Entry {
            id: 2,
            bid: 10,
            cap: 100
        }));
        assert_eq!(fill.entries(), vec![e]);
    }
}
