//! The loop's one timer structure: a binary heap of deadlines in
//! milliseconds since the loop started (a `u64`: no wrap-around in any
//! lifetime), for user timers, session idle timeouts, connect timeouts,
//! reconnects and listener back-off alike. O(log n) to add and to fire.
//!
//! Cancelling is lazy: the owner of a key (user timer, session, ...) keeps
//! the truth, and a popped key that no longer matches it is skipped. So a
//! session's idle timeout costs nothing per packet: traffic moves the
//! session's own deadline, and the heap entry, when it comes due, is pushed
//! again to wherever that deadline has moved. Stale entries of far
//! deadlines (a timer cancelled an hour before it was due) are swept out
//! when they outnumber the live ones (`Core::schedule`), so memory follows
//! what is live and each entry is swept at most once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Milliseconds since the loop started.
pub(crate) type Millis = u64;

/// Whole milliseconds of `d`, rounded up so that a timer never fires early,
/// saturating (a `Duration` beyond 584 million years never fires).
pub(crate) fn millis_ceil(d: Duration) -> Millis {
    let ms = d.as_millis();
    let ms = if !d.subsec_nanos().is_multiple_of(1_000_000) { ms + 1 } else { ms };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// An idle timeout in milliseconds, at least 1: a zero timeout whose
/// handler keeps the session would otherwise come due again at once, forever.
pub(crate) fn idle_millis(d: Duration) -> Millis {
    millis_ceil(d).max(1)
}

/// The loop's clock, read once per iteration and after waiting.
#[derive(Debug)]
pub(crate) struct Clock {
    start: Instant,
    now: Millis,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock { start: Instant::now(), now: 0 }
    }

    /// Reads the time; returns it.
    pub(crate) fn update(&mut self) -> Millis {
        self.now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.now
    }

    /// The time of the last [`update`](Self::update).
    pub(crate) fn now(&self) -> Millis {
        self.now
    }
}

/// Deadlines of keys `K`, earliest first; equal deadlines in the order they
/// were added.
#[derive(Debug)]
pub(crate) struct Deadlines<K: Ord> {
    heap: BinaryHeap<Reverse<(Millis, u64, K)>>,
    added: u64,
}

impl<K: Ord + Copy> Deadlines<K> {
    pub(crate) fn new() -> Self {
        Deadlines { heap: BinaryHeap::new(), added: 0 }
    }

    /// `key` comes due at `at`.
    pub(crate) fn add(&mut self, at: Millis, key: K) {
        self.added += 1;
        self.heap.push(Reverse((at, self.added, key)));
    }

    /// The earliest deadline, if any.
    pub(crate) fn next(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The earliest key due at or before `now` and its deadline, removed.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(Millis, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse((at, _, k))| (at, k)),
            _ => None,
        }
    }

    /// Entries held, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the entries `live(at, key)` says are, in O(n); the
    /// memory of the ones dropped is given back.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(Millis, K) -> bool) {
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.retain(|Reverse((at, _, key))| live(*at, *key));
        entries.shrink_to(entries.len() * 2);
        self.heap = BinaryHeap::from(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_then_insertion_order() {
        let mut d = Deadlines::new();
        for (at, k) in [(30, 'a'), (10, 'b'), (20, 'c'), (10, 'd'), (u64::MAX, 'e')] {
            d.add(at, k);
        }
        assert_eq!(d.next(), Some(10));
        assert_eq!(d.pop_due(9), None);
        let fired: Vec<char> = std::iter::from_fn(|| d.pop_due(30).map(|(_, k)| k)).collect();
        assert_eq!(fired, ['b', 'd', 'c', 'a']);
        assert_eq!(d.pop_due(u64::MAX - 1), None);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn retain_keeps_the_live_entries_in_order() {
        let mut d = Deadlines::new();
        for (at, k) in [(5, 1), (3, 2), (5, 3), (1, 4), (3, 5)] {
            d.add(at, k);
        }
        d.retain(|_, k| k != 2 && k != 4);
        let fired: Vec<i32> = std::iter::from_fn(|| d.pop_due(5).map(|(_, k)| k)).collect();
        assert_eq!(fired, [5, 1, 3]);
    }

    #[test]
    fn millis_round_up_and_saturate() {
        assert_eq!(millis_ceil(Duration::ZERO), 0);
        assert_eq!(millis_ceil(Duration::from_micros(1)), 1);
        assert_eq!(millis_ceil(Duration::from_millis(5)), 5);
        assert_eq!(millis_ceil(Duration::from_micros(5001)), 6);
        assert_eq!(millis_ceil(Duration::MAX), u64::MAX);
    }
}
