//! An insertion-ordered collection with O(log N + page) offset paging.
//!
//! The simulators' list endpoints used to filter a `Vec` of every object for each page, so
//! listing N objects page by page cost O(N²): about 63 ms per page of 100 at a million
//! CloudPass bookings, ≈ 10 minutes for the whole list. Real vendors page from an index; so
//! does this. Items live in blocks of at most [`BLOCK`] in sequence order; a Fenwick tree over
//! the block sizes finds the block holding the k-th live item in O(log N), lookups by sequence
//! number binary-search the blocks' first sequence numbers. Deletions leave holes that are
//! compacted once the blocks are less than a quarter full.
//!
//! Used by the CloudPass (per site) and iPassan (per asset) simulators.

/// Items per block.
pub(crate) const BLOCK: usize = 256;

#[derive(Debug, Clone)]
struct Block<T> {
    /// Sequence number of the first item ever put in this block: blocks cover disjoint,
    /// increasing ranges, so this stays a valid search key after deletions.
    first: u64,
    items: Vec<(u64, T)>,
}

/// Items in increasing sequence-number order (callers hand out increasing numbers).
#[derive(Debug, Clone)]
pub(crate) struct Paged<T> {
    blocks: Vec<Block<T>>,
    /// 1-based Fenwick tree over `blocks[i].items.len()`.
    tree: Vec<usize>,
    len: usize,
}

impl<T> Default for Paged<T> {
    fn default() -> Self {
        Paged {
            blocks: Vec::new(),
            tree: vec![0],
            len: 0,
        }
    }
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl<T> Paged<T> {
    /// Live items.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn prefix(&self, mut i: usize) -> usize {
        let mut s = 0;
        while i > 0 {
            s += self.tree[i];
            i -= lowbit(i);
        }
        s
    }

    fn add(&mut self, block: usize, inc: bool) {
        let mut i = block + 1;
        while i < self.tree.len() {
            if inc {
                self.tree[i] += 1;
            } else {
                self.tree[i] -= 1;
            }
            i += lowbit(i);
        }
    }

    /// Appends `item` under `seq`, which must be greater than every sequence number so far.
    pub(crate) fn push(&mut self, seq: u64, item: T) {
        debug_assert!(
            self.blocks
                .last()
                .and_then(|b| b.items.last())
                .is_none_or(|(s, _)| *s < seq)
        );
        self.len += 1;
        if let Some(last) = self.blocks.last_mut()
            && last.items.len() < BLOCK
        {
            last.items.push((seq, item));
            let b = self.blocks.len() - 1;
            self.add(b, true);
            return;
        }
        let mut items = Vec::with_capacity(BLOCK);
        items.push((seq, item));
        self.blocks.push(Block { first: seq, items });
        // Fenwick append: node i covers (i - lowbit(i), i].
        let i = self.blocks.len();
        let node = 1 + self.prefix(i - 1) - self.prefix(i - lowbit(i));
        self.tree.push(node);
    }

    fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        let b = self
            .blocks
            .partition_point(|b| b.first <= seq)
            .checked_sub(1)?;
        let i = self.blocks[b]
            .items
            .binary_search_by_key(&seq, |(s, _)| *s)
            .ok()?;
        Some((b, i))
    }

    /// The item with this sequence number.
    pub(crate) fn get(&self, seq: u64) -> Option<&T> {
        let (b, i) = self.locate(seq)?;
        Some(&self.blocks[b].items[i].1)
    }

    /// The item with this sequence number, mutably.
    pub(crate) fn get_mut(&mut self, seq: u64) -> Option<&mut T> {
        let (b, i) = self.locate(seq)?;
        Some(&mut self.blocks[b].items[i].1)
    }

    /// Removes and returns the item with this sequence number.
    pub(crate) fn remove(&mut self, seq: u64) -> Option<T> {
        let (b, i) = self.locate(seq)?;
        let (_, item) = self.blocks[b].items.remove(i);
        self.add(b, false);
        self.len -= 1;
        if self.blocks.len() > 4 && self.len < self.blocks.len() * BLOCK / 4 {
            self.repack();
        }
        Some(item)
    }

    /// Rebuilds full blocks (after many deletions), O(N).
    fn repack(&mut self) {
        let old = std::mem::take(&mut self.blocks);
        self.tree = vec![0];
        self.len = 0;
        for (seq, item) in old.into_iter().flat_map(|b| b.items) {
            self.push(seq, item);
        }
    }

    /// Items `offset..offset + limit` in sequence order: O(log N + limit).
    pub(crate) fn page(&self, offset: usize, limit: usize) -> impl Iterator<Item = &T> {
        // Fenwick descent: the block holding the offset-th item and the index within it.
        let n = self.blocks.len();
        let mut pos = 0;
        let mut rem = offset;
        let mut step = if n == 0 { 0 } else { 1 << n.ilog2() };
        while step > 0 {
            if pos + step <= n && self.tree[pos + step] <= rem {
                pos += step;
                rem -= self.tree[pos];
            }
            step >>= 1;
        }
        let start = if offset >= self.len { n } else { pos };
        self.blocks[start..]
            .iter()
            .flat_map(|b| b.items.iter().map(|(_, t)| t))
            .skip(rem)
            .take(limit)
    }

    /// Every item with its sequence number, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.blocks
            .iter()
            .flat_map(|b| b.items.iter().map(|(s, t)| (*s, t)))
    }
}

/// Items in groups (CloudPass sites, iPassan assets), each group a [`Paged`] in creation
/// order, with an id index; sequence numbers are global, so [`Grouped::all`] restores the
/// overall creation order.
#[derive(Debug)]
pub(crate) struct Grouped<T> {
    next_seq: u64,
    groups: std::collections::HashMap<String, Paged<T>>,
    /// id → (group, sequence number).
    by_id: std::collections::HashMap<String, (String, u64)>,
}

impl<T> Default for Grouped<T> {
    fn default() -> Self {
        Grouped {
            next_seq: 0,
            groups: Default::default(),
            by_id: Default::default(),
        }
    }
}

impl<T> Grouped<T> {
    /// Items in all groups.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Appends `item` to `group` under `id`; returns its sequence number.
    pub(crate) fn insert(&mut self, group: &str, id: &str, item: T) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_id.insert(id.to_owned(), (group.to_owned(), seq));
        self.groups
            .entry(group.to_owned())
            .or_default()
            .push(seq, item);
        seq
    }

    /// Sequence number of `id` if it is in `group`.
    pub(crate) fn seq(&self, group: &str, id: &str) -> Option<u64> {
        match self.by_id.get(id) {
            Some((g, seq)) if g == group => Some(*seq),
            _ => None,
        }
    }

    /// The item with this sequence number in `group`.
    pub(crate) fn get_seq(&self, group: &str, seq: u64) -> Option<&T> {
        self.groups.get(group)?.get(seq)
    }

    /// The item `id` of `group`.
    pub(crate) fn get(&self, group: &str, id: &str) -> Option<&T> {
        self.get_seq(group, self.seq(group, id)?)
    }

    /// The item `id` of `group`, mutably, with its sequence number.
    pub(crate) fn get_mut(&mut self, group: &str, id: &str) -> Option<(u64, &mut T)> {
        let seq = self.seq(group, id)?;
        Some((seq, self.groups.get_mut(group)?.get_mut(seq)?))
    }

    /// Removes item `id` of `group`.
    pub(crate) fn remove(&mut self, group: &str, id: &str) -> Option<(u64, T)> {
        let seq = self.seq(group, id)?;
        let item = self.groups.get_mut(group)?.remove(seq)?;
        self.by_id.remove(id);
        Some((seq, item))
    }

    /// Items of `group`.
    pub(crate) fn count(&self, group: &str) -> usize {
        self.groups.get(group).map_or(0, Paged::len)
    }

    /// Items `offset..offset + limit` of `group`, in creation order: O(log N + limit).
    pub(crate) fn page(
        &self,
        group: &str,
        offset: usize,
        limit: usize,
    ) -> impl Iterator<Item = &T> {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(move |p| p.page(offset, limit))
    }

    /// Every item of `group`, in creation order.
    pub(crate) fn of_group(&self, group: &str) -> impl Iterator<Item = &T> {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|p| p.iter().map(|(_, t)| t))
    }

    /// Every item in overall creation order (O(N log N): snapshots and tests).
    pub(crate) fn all(&self) -> Vec<&T> {
        let mut v: Vec<(u64, &T)> = self.groups.values().flat_map(|p| p.iter()).collect();
        v.sort_unstable_by_key(|(s, _)| *s);
        v.into_iter().map(|(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_match_a_plain_vec_through_pushes_and_removals() {
        let mut p = Paged::default();
        let mut v: Vec<(u64, u64)> = Vec::new();
        for s in 0..3000u64 {
            p.push(s * 2, s);
            v.push((s * 2, s));
        }
        // Remove a pattern heavy enough to trigger repacks.
        for s in (0..3000u64).filter(|s| s % 3 != 0 || *s > 2500) {
            assert_eq!(p.remove(s * 2), Some(s));
            v.retain(|(q, _)| *q != s * 2);
        }
        assert_eq!(p.remove(1), None);
        for s in 3000..3400u64 {
            p.push(s * 2, s);
            v.push((s * 2, s));
        }
        assert_eq!(p.len(), v.len());
        for (off, lim) in [
            (0, 10),
            (5, 100),
            (250, 256),
            (v.len() - 3, 100),
            (v.len(), 5),
        ] {
            let got: Vec<u64> = p.page(off, lim).copied().collect();
            let want: Vec<u64> = v.iter().skip(off).take(lim).map(|(_, x)| *x).collect();
            assert_eq!(got, want, "page {off}+{lim}");
        }
        for (s, x) in &v {
            assert_eq!(p.get(*s), Some(x));
        }
        let all: Vec<u64> = p.iter().map(|(_, x)| *x).collect();
        assert_eq!(all, v.iter().map(|(_, x)| *x).collect::<Vec<_>>());
    }
}
