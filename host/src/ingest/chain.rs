//! The window of recent canonical blocks that reorgs are checked against. Pure.
//! A block's matched logs — what a reorg must withdraw — are in the store (`chain_blocks`, written
//! with the block's deliveries in the batch write) and read back only when a reorg orphans the
//! block, so the window's memory does not grow with the matched volume. Until that write has
//! committed the block keeps its logs here (`Writing`; the same `Arc`s its batch carries, so no
//! copy), and once it has they are dropped (`settle`). Blocks ingest does not store (far below
//! the head during a catch-up) keep their logs in memory, bounded in bytes: past the budget the
//! oldest drop them, and say so, so a reorg that reaches them is reported instead of silently
//! withdrawing less than was delivered.

use std::collections::VecDeque;
use std::sync::Arc;

use alloy_primitives::B256;

use crate::event::{ChainLog, Written};

/// Where a window block's matched logs are.
#[derive(Debug, Clone)]
pub enum WindowLogs {
    /// In the store's `chain_blocks` row for this block; how many.
    Stored(usize),
    /// Held here (the block was not stored).
    InMemory(Vec<Arc<ChainLog>>),
    /// Held here until the batch write carrying the block's row has committed (`written`).
    /// Never dropped for the byte budget: these are the logs of blocks still in the pipeline,
    /// bounded by its in-flight budget, and the only copy a reorg could withdraw them from.
    Writing {
        logs: Vec<Arc<ChainLog>>,
        written: Written,
    },
    /// Gone: dropped to stay within the byte budget, or unreadable in the store.
    Dropped,
}

#[derive(Debug, Clone)]
pub struct WindowBlock {
    pub number: u64,
    pub hash: B256,
    pub logs: WindowLogs,
}

impl WindowBlock {
    pub fn new(number: u64, hash: B256, logs: Vec<Arc<ChainLog>>) -> WindowBlock {
        WindowBlock {
            number,
            hash,
            logs: WindowLogs::InMemory(logs),
        }
    }

    /// A block whose matched logs go to the store with its batch; held until `written` is set.
    pub fn writing(
        number: u64,
        hash: B256,
        logs: Vec<Arc<ChainLog>>,
        written: Written,
    ) -> WindowBlock {
        WindowBlock {
            number,
            hash,
            logs: WindowLogs::Writing { logs, written },
        }
    }

    /// A block whose `count` matched logs are in the store.
    #[cfg(test)]
    pub fn stored(number: u64, hash: B256, count: usize) -> WindowBlock {
        WindowBlock {
            number,
            hash,
            logs: WindowLogs::Stored(count),
        }
    }

    pub fn logs_dropped(&self) -> bool {
        matches!(self.logs, WindowLogs::Dropped)
    }

    fn bytes(&self) -> usize {
        match &self.logs {
            WindowLogs::InMemory(logs) | WindowLogs::Writing { logs, .. } => {
                logs.iter().map(|l| l.memory_bytes()).sum()
            }
            WindowLogs::Stored(_) | WindowLogs::Dropped => 0,
        }
    }
}

#[derive(Debug)]
pub struct Window {
    blocks: VecDeque<WindowBlock>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
}

impl Window {
    pub fn new(capacity: usize, max_bytes: usize) -> Window {
        Window {
            blocks: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
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
        let index = usize::try_from(number.checked_sub(first)?).ok()?;
        self.blocks.get(index).filter(|b| b.number == number)
    }

    pub fn contains_hash(&self, hash: &B256) -> Option<&WindowBlock> {
        self.blocks.iter().rev().find(|b| &b.hash == hash)
    }

    /// Blocks whose batch write has committed let go of their logs: they are in the store now.
    fn settle(&mut self) {
        for block in self.blocks.iter_mut() {
            if let WindowLogs::Writing { logs, written } = &block.logs
                && written.is_set()
            {
                let count = logs.len();
                self.bytes -= block.bytes();
                block.logs = WindowLogs::Stored(count);
            }
        }
    }

    /// Appends the next block; the caller has checked that it extends the tip. Oldest blocks
    /// leave (or, past the byte budget, drop their logs) to make room.
    pub fn push(&mut self, block: WindowBlock) {
        self.settle();
        if self.blocks.len() == self.capacity
            && let Some(oldest) = self.blocks.pop_front()
        {
            self.bytes -= oldest.bytes();
        }
        self.bytes += block.bytes();
        self.blocks.push_back(block);
        for old in self.blocks.iter_mut() {
            if self.bytes <= self.max_bytes {
                break;
            }
            if let WindowLogs::InMemory(logs) = &old.logs
                && !logs.is_empty()
            {
                self.bytes -= old.bytes();
                old.logs = WindowLogs::Dropped;
            }
        }
    }

    /// The blocks above `number`, newest first (what `rollback_above` would remove).
    pub fn above(&self, number: u64) -> impl Iterator<Item = &WindowBlock> {
        self.blocks
            .iter()
            .rev()
            .take_while(move |b| b.number > number)
    }

    /// Removes every block above `number` and returns them newest first.
    pub fn rollback_above(&mut self, number: u64) -> Vec<WindowBlock> {
        let mut removed = Vec::new();
        while self.blocks.back().is_some_and(|b| b.number > number) {
            if let Some(block) = self.blocks.pop_back() {
                self.bytes -= block.bytes();
                removed.push(block);
            }
        }
        removed
    }

    pub fn clear(&mut self) {
        self.blocks.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64, tag: u8, _parent_tag: u8) -> WindowBlock {
        WindowBlock::new(number, B256::repeat_byte(tag), Vec::new())
    }

    fn log(text_len: usize) -> Arc<ChainLog> {
        let mut log = ChainLog::from_json(
            r#"{"address":"0x0000000000000000000000000000000000000001","topics":[],"data":"0x","blockNumber":"0x1","blockHash":"0x0000000000000000000000000000000000000000000000000000000000000001","transactionHash":"0x0000000000000000000000000000000000000000000000000000000000000002","transactionIndex":"0x0","logIndex":"0x0","removed":false}"#,
        )
        .unwrap();
        log.raw = crate::event::LogText::from(" ".repeat(text_len));
        Arc::new(log)
    }

    #[test]
    fn past_the_byte_budget_the_oldest_blocks_drop_their_logs_and_say_so() {
        // Each block: 2 logs of 2 × 436 + 128 = 1,000 bytes; a 4,500-byte budget holds 2 blocks.
        let mut w = Window::new(10, 4_500);
        for n in 1..=4u8 {
            w.push(WindowBlock::new(
                n as u64,
                B256::repeat_byte(n),
                vec![log(436), log(436)],
            ));
        }
        let kept: Vec<(u64, usize, bool)> = (1..=4)
            .map(|n| {
                let b = w.get(n).unwrap();
                let held = match &b.logs {
                    WindowLogs::InMemory(logs) => logs.len(),
                    _ => 0,
                };
                (n, held, b.logs_dropped())
            })
            .collect();
        assert_eq!(
            kept,
            vec![(1, 0, true), (2, 0, true), (3, 2, false), (4, 2, false)]
        );
        assert_eq!(w.bytes, 4_000);
        let orphans = w.rollback_above(1);
        assert_eq!(orphans.len(), 3);
        assert!(
            orphans[2].logs_dropped(),
            "block 2's logs are gone and the orphan says so"
        );
        assert_eq!(w.bytes, 0);
    }

    #[test]
    fn stored_blocks_cost_no_memory_budget() {
        let mut w = Window::new(10, 1_000);
        for n in 1..=5u8 {
            w.push(WindowBlock::stored(n as u64, B256::repeat_byte(n), 1_000));
        }
        w.push(WindowBlock::new(6, B256::repeat_byte(6), vec![log(436)]));
        assert_eq!(w.bytes, 1_000);
        assert!((1..=6).all(|n| !w.get(n).unwrap().logs_dropped()));
        assert_eq!(w.above(4).map(|b| b.number).collect::<Vec<_>>(), vec![6, 5]);
    }

    #[test]
    fn blocks_being_written_keep_their_logs_until_the_write_commits_and_are_never_dropped() {
        // A 1,500-byte budget, blocks of 2,000 bytes: an unstored block would drop its logs.
        let mut w = Window::new(10, 1_500);
        let (first, second) = (Written::default(), Written::default());
        w.push(WindowBlock::writing(
            1,
            B256::repeat_byte(1),
            vec![log(436), log(436)],
            first.clone(),
        ));
        w.push(WindowBlock::writing(
            2,
            B256::repeat_byte(2),
            vec![log(436), log(436)],
            second.clone(),
        ));
        assert_eq!(
            w.bytes, 4_000,
            "both held, over the budget: they cannot be dropped"
        );
        assert!(
            matches!(w.get(1).unwrap().logs, WindowLogs::Writing { ref logs, .. } if logs.len() == 2)
        );
        first.set();
        w.settle();
        assert!(
            matches!(w.get(1).unwrap().logs, WindowLogs::Stored(2)),
            "written: in the store"
        );
        assert!(matches!(w.get(2).unwrap().logs, WindowLogs::Writing { .. }));
        assert_eq!(w.bytes, 2_000);
        second.set();
        w.push(WindowBlock::new(3, B256::repeat_byte(3), Vec::new()));
        assert!(
            matches!(w.get(2).unwrap().logs, WindowLogs::Stored(2)),
            "push settles too"
        );
        assert_eq!(w.bytes, 0);
        let orphans = w.rollback_above(0);
        assert!(orphans.iter().all(|o| !o.logs_dropped()));
    }

    #[test]
    fn keeps_at_most_capacity_blocks_and_finds_by_number_and_hash() {
        let mut w = Window::new(3, usize::MAX);
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
        let mut w = Window::new(10, usize::MAX);
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
