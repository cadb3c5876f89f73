//! A binary-buddy allocator over offsets: blocks are powers of two from 64 bytes up to the
//! arena size, split on allocation and merged with their buddy on free, so fragmentation
//! stays bounded without any per-block header in shared memory.

use std::collections::BTreeSet;

/// The smallest block, and the alignment of every block.
pub const MIN_BLOCK: usize = 64;

/// Free lists by order (`size = MIN_BLOCK << order`).
#[derive(Debug)]
pub struct Buddy {
    max_order: u32,
    free: Vec<BTreeSet<u64>>,
}

impl Buddy {
    /// An allocator over `capacity` bytes (a power of two, at least `MIN_BLOCK`).
    pub fn new(capacity: usize) -> Self {
        debug_assert!(capacity.is_power_of_two() && capacity >= MIN_BLOCK);
        let max_order = (capacity / MIN_BLOCK).trailing_zeros();
        let mut free = vec![BTreeSet::new(); max_order as usize + 1];
        free[max_order as usize].insert(0);
        Self { max_order, free }
    }

    /// The order of the smallest block that holds `len` bytes.
    pub fn order_for(len: usize) -> u32 {
        len.max(1)
            .div_ceil(MIN_BLOCK)
            .next_power_of_two()
            .trailing_zeros()
    }

    pub fn block_size(order: u32) -> usize {
        MIN_BLOCK << order
    }

    /// Takes a block of `order`, or `None` if no free block is large enough.
    pub fn alloc(&mut self, order: u32) -> Option<u64> {
        if order > self.max_order {
            return None;
        }
        let mut k = (order..=self.max_order).find(|&k| !self.free[k as usize].is_empty())?;
        let offset = self.free[k as usize].pop_first()?;
        while k > order {
            k -= 1;
            self.free[k as usize].insert(offset + Self::block_size(k) as u64);
        }
        Some(offset)
    }

    /// Returns a block, merging it with its buddy while that is free too.
    pub fn free(&mut self, mut offset: u64, mut order: u32) {
        while order < self.max_order {
            let buddy = offset ^ Self::block_size(order) as u64;
            if !self.free[order as usize].remove(&buddy) {
                break;
            }
            offset = offset.min(buddy);
            order += 1;
        }
        self.free[order as usize].insert(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_merges_back_to_one_block() {
        let mut buddy = Buddy::new(4096);
        let a = buddy.alloc(Buddy::order_for(100)).unwrap();
        let b = buddy.alloc(Buddy::order_for(64)).unwrap();
        let c = buddy.alloc(Buddy::order_for(1000)).unwrap();
        assert_ne!(a, b);
        assert_eq!(a % 128, 0);
        assert!(
            buddy.alloc(Buddy::order_for(4096)).is_none(),
            "whole arena is not free"
        );
        buddy.free(a, Buddy::order_for(100));
        buddy.free(c, Buddy::order_for(1000));
        buddy.free(b, Buddy::order_for(64));
        assert_eq!(
            buddy.alloc(Buddy::order_for(4096)),
            Some(0),
            "all blocks merged back"
        );
    }

    #[test]
    fn order_rounds_up_to_power_of_two_blocks() {
        assert_eq!(Buddy::order_for(0), 0);
        assert_eq!(Buddy::order_for(64), 0);
        assert_eq!(Buddy::order_for(65), 1);
        assert_eq!(Buddy::order_for(10 << 20), 18);
    }
}
