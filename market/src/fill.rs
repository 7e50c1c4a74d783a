//! The water-filling book: the guests in the market, ordered by how soon
//! their cap binds, so that one descent finds the level of a proportional
//! share with caps.
//!
//! Guest `i` bids `b_i` and may use at most `c_i` milli-cores. At level λ
//! its share is `min(λ·b_i, c_i)`, capped once λ ≥ `t_i = c_i / b_i`. The
//! level that sells capacity `C` solves `Σ_{t_i ≤ λ} c_i + λ·Σ_{t_i > λ} b_i
//! = C`. Kept in a treap ordered by `t_i` with subtree sums of `c` and `b`,
//! insert, remove and the level each cost O(log n) expected; a share is then
//! O(1). Arithmetic is exact (u128 cross-multiplication), so the order and
//! the level never depend on float rounding.

use maxwell_types::rng::Rng;

const NIL: u32 = u32::MAX;

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
}

#[derive(Debug, Clone)]
struct Node {
    e: Entry,
    prio: u64,
    left: u32,
    right: u32,
    sum_cap: u128,
    sum_bid: u128,
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
    rng: Rng,
    len: usize,
}

impl Fill {
    /// An empty book; `seed` draws the treap's priorities.
    pub fn new(seed: u64) -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            rng: Rng::new(seed),
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

    fn sums(&self, n: u32) -> (u128, u128) {
        if n == NIL {
            (0, 0)
        } else {
            let n = &self.nodes[n as usize];
            (n.sum_cap, n.sum_bid)
        }
    }

    fn pull(&mut self, n: u32) {
        let (l, r) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
        let (lc, lb) = self.sums(l);
        let (rc, rb) = self.sums(r);
        let node = &mut self.nodes[n as usize];
        node.sum_cap = lc + rc + u128::from(node.e.cap);
        node.sum_bid = lb + rb + u128::from(node.e.bid);
    }

    /// Splits `n` into (entries before `e`, the rest).
    fn split(&mut self, n: u32, e: &Entry) -> (u32, u32) {
        if n == NIL {
            return (NIL, NIL);
        }
        if self.nodes[n as usize].e.before(e) {
            let (l, r) = self.split(self.nodes[n as usize].right, e);
            self.nodes[n as usize].right = l;
            self.pull(n);
            (n, r)
        } else {
            let (l, r) = self.split(self.nodes[n as usize].left, e);
            self.nodes[n as usize].left = r;
            self.pull(n);
            (l, n)
        }
    }

    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio > self.nodes[b as usize].prio {
            let r = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = r;
            self.pull(a);
            a
        } else {
            let l = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = l;
            self.pull(b);
            b
        }
    }

    /// Adds `e`; the caller never adds an id twice.
    pub fn insert(&mut self, e: Entry) {
        debug_assert!(e.bid >= 1 && e.cap >= 1, "bid and cap are at least 1");
        let node = Node {
            e,
            prio: self.rng.next_u64(),
            left: NIL,
            right: NIL,
            sum_cap: u128::from(e.cap),
            sum_bid: u128::from(e.bid),
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 guests")
            }
        };
        self.root = self.insert_at(self.root, idx);
        self.len += 1;
    }

    /// Inserts node `idx` into the subtree `n`: down to where its priority
    /// belongs, then one split there (one pass, not split-merge-merge).
    fn insert_at(&mut self, n: u32, idx: u32) -> u32 {
        if n == NIL {
            return idx;
        }
        if self.nodes[idx as usize].prio > self.nodes[n as usize].prio {
            let e = self.nodes[idx as usize].e;
            let (l, r) = self.split(n, &e);
            self.nodes[idx as usize].left = l;
            self.nodes[idx as usize].right = r;
            self.pull(idx);
            return idx;
        }
        let e = self.nodes[idx as usize].e;
        if self.nodes[n as usize].e.before(&e) {
            let r = self.insert_at(self.nodes[n as usize].right, idx);
            self.nodes[n as usize].right = r;
        } else {
            let l = self.insert_at(self.nodes[n as usize].left, idx);
            self.nodes[n as usize].left = l;
        }
        self.pull(n);
        n
    }

    /// Removes `e` (as it was inserted); false if it is not in the book.
    pub fn remove(&mut self, e: &Entry) -> bool {
        let before = self.len;
        self.root = self.remove_at(self.root, e);
        self.len < before
    }

    /// Removes `e` from the subtree `n`: one pass down, its children merged
    /// in its place, the sums pulled up on the way back.
    fn remove_at(&mut self, n: u32, e: &Entry) -> u32 {
        if n == NIL {
            return NIL;
        }
        let here = self.nodes[n as usize].e;
        if here == *e {
            let (l, r) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
            self.free.push(n);
            self.len -= 1;
            return self.merge(l, r);
        }
        if here.before(e) {
            let r = self.remove_at(self.nodes[n as usize].right, e);
            self.nodes[n as usize].right = r;
        } else {
            let l = self.remove_at(self.nodes[n as usize].left, e);
            self.nodes[n as usize].left = l;
        }
        self.pull(n);
        n
    }

    /// The level that sells `capacity` milli-cores among the book's guests.
    pub fn level(&self, capacity: u64) -> Level {
        let c = u128::from(capacity);
        let (_, total_bid) = self.sums(self.root);
        // Walk down, keeping the sums of everything before the subtree.
        let (mut acc_cap, mut acc_bid) = (0u128, 0u128);
        let mut capped = (0u128, total_bid);
        let mut n = self.root;
        while n != NIL {
            let node = &self.nodes[n as usize];
            let (lc, lb) = self.sums(node.left);
            let pre_cap = acc_cap + lc + u128::from(node.e.cap);
            let post_bid = total_bid - (acc_bid + lb + u128::from(node.e.bid));
            // Capped at its own threshold: pre_cap + (cap/bid)·post_bid ≤ C.
            let b = u128::from(node.e.bid);
            if pre_cap * b + u128::from(node.e.cap) * post_bid <= c * b {
                capped = (pre_cap, post_bid);
                acc_cap = pre_cap;
                acc_bid += lb + b;
                n = node.right;
            } else {
                n = node.left;
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
        let mut stack = Vec::new();
        let mut n = self.root;
        while n != NIL || !stack.is_empty() {
            while n != NIL {
                stack.push(n);
                n = self.nodes[n as usize].left;
            }
            let top = stack.pop().expect("non-empty");
            out.push(self.nodes[top as usize].e);
            n = self.nodes[top as usize].right;
        }
        out
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

    #[test]
    fn the_book_agrees_with_the_sorted_reference_on_random_operations() {
        let mut rng = Rng::new(11);
        for case in 0..200 {
            let mut fill = Fill::new(case);
            let mut live: Vec<Entry> = Vec::new();
            for step in 0..300u64 {
                if live.is_empty() || rng.below(3) > 0 {
                    let e = Entry {
                        id: case * 1000 + step,
                        bid: 1 + rng.below(5_000),
                        cap: 1 + rng.below(4_000),
                    };
                    fill.insert(e);
                    live.push(e);
                } else {
                    let i = rng.below(live.len() as u64) as usize;
                    assert!(fill.remove(&live.swap_remove(i)));
                }
                let cap = rng.below(50_000);
                assert_eq!(
                    fill.level(cap),
                    naive_level(&live, cap),
                    "case {case} step {step}"
                );
                assert_eq!(fill.len(), live.len());
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
        let mut fill = Fill::new(1);
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
