//! How cases run: pinning, the round-trip loop with one clock read per round
//! trip, and what a streaming case reports.

use std::time::Instant;

use hdrhistogram::Histogram;

use crate::shape::Shape;

/// The CPUs of the client and the server thread (None: not pinned).
#[derive(Debug, Clone, Copy)]
pub struct Pins {
    pub client: Option<usize>,
    pub server: Option<usize>,
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = nix::sched::CpuSet::new();
        let pinned = set.set(cpu).and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
        if let Err(e) = pinned {
            eprintln!("cannot pin to CPU {cpu}: {e}");
        }
    }
}

/// The round trips of a latency case: `warmup` unmeasured, then `count`
/// measured.
#[derive(Debug, Clone, Copy)]
pub struct RoundTrips {
    pub warmup: u64,
    pub count: u64,
}

/// What a latency case measured.
pub struct Measured {
    /// Round-trip times in ns.
    pub hist: Histogram<u64>,
    /// Heap allocations during the measured round trips, in every thread.
    pub allocs: u64,
}

/// Longest round trip the histograms hold (longer ones are clamped).
const MAX_NS: u64 = 10_000_000_000;

impl RoundTrips {
    /// Every round trip the peer must answer: warm-up and measured.
    pub fn total(&self) -> u64 {
        self.warmup + self.count
    }

    /// Runs `round_trip` `total()` times and measures the last `count`: one
    /// clock read after each, the time since the previous read recorded.
    pub fn measure(&self, mut round_trip: impl FnMut()) -> Measured {
        self.measure_with(&mut (), |_| round_trip(), u64::MAX, |_| {})
    }

    /// As [`measure`](Self::measure) over a `state` both closures use,
    /// calling `maintain` after every `every` round trips, outside the
    /// measured time: work a client does between requests.
    pub fn measure_with<S>(
        &self,
        state: &mut S,
        mut round_trip: impl FnMut(&mut S),
        every: u64,
        mut maintain: impl FnMut(&mut S),
    ) -> Measured {
        let mut hist = Histogram::new_with_bounds(1, MAX_NS, 3).expect("histogram bounds");
        for i in 1..=self.warmup {
            round_trip(state);
            if i % every == 0 {
                maintain(state);
            }
        }
        let allocs = crate::alloc::count();
        let mut prev = Instant::now();
        for i in 1..=self.count {
            round_trip(state);
            let now = Instant::now();
            hist.saturating_record((now - prev).as_nanos() as u64);
            prev = now;
            if i % every == 0 {
                maintain(state);
                prev = Instant::now();
            }
        }
        Measured { hist, allocs: crate::alloc::count() - allocs }
    }
}

/// A streaming case: `count` messages of `shape`, pushed in batches of `batch`.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    pub shape: Shape,
    pub count: u64,
    pub batch: u64,
}

/// When a streaming case's first message was pushed and its last received.
pub struct StreamResult {
    pub start: Instant,
    pub end: Instant,
}
