//! Open TCP connections per worker.
//!
//! Each worker's connections count themselves in their worker's slot while they live. The
//! acceptors read every slot to keep connection steering from loading one worker more than the
//! others, and a metrics scrape reports them. Slots sit on cache lines of their own, so a
//! worker counting its connections never moves another worker's line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Imbalance a worker may carry for any length of time: this many connections plus an eighth
/// of the least load (with many connections open, a ratio of about 9 to 8).
pub const SOFT_MARGIN: usize = 16;

/// How many more connections than the least-loaded worker's `least` a worker may hold for any
/// length of time.
pub fn soft_margin(least: usize) -> usize {
    SOFT_MARGIN + least / 8
}

/// The open-connection count of every worker of the process.
#[derive(Debug)]
pub struct WorkerLoads {
    slots: Box<[Arc<Slot>]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicUsize);

impl WorkerLoads {
    pub fn new(workers: usize) -> Arc<WorkerLoads> {
        Arc::new(WorkerLoads {
            slots: (0..workers.max(1)).map(|_| Arc::default()).collect(),
        })
    }

    /// The slot of `worker` (the last one if `worker` is out of range).
    pub fn worker(self: &Arc<Self>, worker: usize) -> WorkerLoad {
        WorkerLoad {
            loads: Arc::clone(self),
            index: worker.min(self.slots.len() - 1),
        }
    }

    pub fn workers(&self) -> usize {
        self.slots.len()
    }

    /// Connections open on `worker` now.
    pub fn open(&self, worker: usize) -> usize {
        self.slots.get(worker).map_or(0, |s| s.0.load(Relaxed))
    }

    /// The fewest connections any worker has open.
    pub fn least(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.0.load(Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Whether one connection may move from worker `from` to worker `to`: afterwards `to`
    /// holds no more than the soft margin above `from`.
    pub fn may_move(&self, from: usize, to: usize) -> bool {
        let (from_open, to_open) = (self.open(from), self.open(to));
        to_open < from_open.saturating_sub(1) + soft_margin(self.least())
    }
}

/// One worker's slot, held by that worker's acceptors and connections.
#[derive(Debug, Clone)]
pub struct WorkerLoad {
    loads: Arc<WorkerLoads>,
    index: usize,
}

impl WorkerLoad {
    pub fn index(&self) -> usize {
        self.index
    }

    /// Connections open on this worker now.
    pub fn open(&self) -> usize {
        self.loads.open(self.index)
    }

    /// The fewest connections any worker of the process has open.
    pub fn least(&self) -> usize {
        self.loads.least()
    }

    /// The count a connection of this worker keeps itself in.
    pub fn counter(&self) -> OpenCounter {
        OpenCounter(Arc::clone(&self.loads.slots[self.index]))
    }
}

/// One worker's count of open connections, as a connection holds it: one pointer, since every
/// connection's future carries it. `default()` is a count of its own, read by no acceptor
/// (QUIC's connections, and sessions started outside a server).
#[derive(Debug, Clone, Default)]
pub struct OpenCounter(Arc<Slot>);

impl OpenCounter {
    pub fn opened(&self) {
        self.0.0.fetch_add(1, Relaxed);
    }

    pub fn closed(&self) {
        let _ = self
            .0
            .0
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_counts_in_its_own_slot_and_least_is_the_minimum() {
        let loads = WorkerLoads::new(3);
        let (a, b) = (loads.worker(0), loads.worker(2));
        for _ in 0..5 {
            a.counter().opened();
        }
        b.counter().opened();
        assert_eq!((loads.open(0), loads.open(1), loads.open(2)), (5, 0, 1));
        assert_eq!((a.open(), a.least()), (5, 0));
        loads.worker(1).counter().opened();
        assert_eq!(a.least(), 1);
        b.counter().closed();
        b.counter().closed();
        assert_eq!(loads.open(2), 0, "a close never takes a slot below zero");
        assert_eq!(loads.worker(9).index(), 2);
        assert_eq!(std::mem::align_of::<Slot>(), 128);
        assert_eq!(std::mem::size_of::<OpenCounter>(), 8);
    }

    #[test]
    fn a_connection_may_move_while_its_new_worker_stays_within_the_soft_margin() {
        let loads = WorkerLoads::new(2);
        let open = |w, n| (0..n).for_each(|_| loads.worker(w).counter().opened());
        // 0 and 0: worker 1 would hold 1 and worker 0 none (the connection moving counts).
        assert!(loads.may_move(0, 1));
        open(1, SOFT_MARGIN - 1);
        assert!(loads.may_move(0, 1), "15 + 1 against 0: within 16");
        open(1, 1);
        assert!(!loads.may_move(0, 1));
        assert!(loads.may_move(1, 0));
        // The margin grows with the least load: with 800 on worker 0, it is 16 + 100, so
        // worker 1 may reach 799 + 116 = 915.
        open(0, 800);
        open(1, 914 - SOFT_MARGIN);
        assert_eq!(loads.least(), 800);
        assert!(loads.may_move(0, 1));
        open(1, 1);
        assert!(!loads.may_move(0, 1));
    }
}
