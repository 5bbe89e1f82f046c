//! The window of recent canonical blocks, with their logs, that reorgs are checked against. Pure.

use std::collections::VecDeque;
use std::sync::Arc;

use alloy_primitives::B256;

use crate::event::ChainLog;

#[derive(Debug, Clone)]
pub struct WindowBlock {
    pub number: u64,
    pub hash: B256,
    /// Logs emitted for this block, so a reorg can withdraw them as `log.removed`.
    pub logs: Vec<Arc<ChainLog>>,
}

#[derive(Debug)]
pub struct Window {
    blocks: VecDeque<WindowBlock>,
    capacity: usize,
}

impl Window {
    pub fn new(capacity: usize) -> Window {
        Window {
            blocks: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn tip(&self) -> Option<&WindowBlock> {
        self.blocks.back()
    }

    pub fn get(&self, number: u64) -> Option<&WindowBlock> {
        let first = self.blocks.front()?.number;
        let index = number.checked_sub(first)? as usize;
        self.blocks.get(index).filter(|b| b.number == number)
    }

    pub fn contains_hash(&self, hash: &B256) -> Option<&WindowBlock> {
        self.blocks.iter().rev().find(|b| &b.hash == hash)
    }

    /// Appends the next block; the caller has checked that it extends the tip.
    pub fn push(&mut self, block: WindowBlock) {
        if self.blocks.len() == self.capacity {
            self.blocks.pop_front();
        }
        self.blocks.push_back(block);
    }

    /// Removes every block above `number` and returns them newest first.
    pub fn rollback_above(&mut self, number: u64) -> Vec<WindowBlock> {
        let mut removed = Vec::new();
        while self.blocks.back().is_some_and(|b| b.number > number) {
            if let Some(block) = self.blocks.pop_back() {
                removed.push(block);
            }
        }
        removed
    }

    pub fn clear(&mut self) {
        self.blocks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64, tag: u8, _parent_tag: u8) -> WindowBlock {
        WindowBlock {
            number,
            hash: B256::repeat_byte(tag),
            logs: Vec::new(),
        }
    }

    #[test]
    fn keeps_at_most_capacity_blocks_and_finds_by_number_and_hash() {
        let mut w = Window::new(3);
        for n in 1..=5u8 {
            w.push(block(n as u64, n, n - 1));
        }
        assert!(w.get(2).is_none());
        assert_eq!(w.get(4).unwrap().hash, B256::repeat_byte(4));
        assert_eq!(w.tip().unwrap().number, 5);
        assert!(w.contains_hash(&B256::repeat_byte(3)).is_some());
        assert!(w.contains_hash(&B256::repeat_byte(1)).is_none());
    }

    #[test]
    fn rollback_returns_orphans_newest_first() {
        let mut w = Window::new(10);
        for n in 1..=5u8 {
            w.push(block(n as u64, n, n - 1));
        }
        let orphans = w.rollback_above(3);
        assert_eq!(
            orphans.iter().map(|b| b.number).collect::<Vec<_>>(),
            vec![5, 4]
        );
        assert_eq!(w.tip().unwrap().number, 3);
    }
}
