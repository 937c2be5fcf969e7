//! How cases run: pinning, ping-pongs interleaved with their floor on the
//! same two threads (one clock read per round trip), and what a streaming
//! case reports.

use std::sync::atomic::{AtomicBool, Ordering::Release};
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

/// The client end of a ping-pong, driven on the client thread.
pub trait PingClient {
    /// Sends the next message and waits for its echo.
    fn round_trip(&mut self);
    /// Work a real client does between requests (heartbeats), called
    /// between segments, outside the measured time.
    fn maintain(&mut self) {}
}

/// The serving end of a ping-pong, driven on the server thread.
pub trait PingServer: Send {
    /// Serves what the client's setup needs (a login) until `ready`.
    fn setup(&mut self, _ready: &AtomicBool) {}
    /// Answers exactly `count` round trips.
    fn serve(&mut self, count: u64);
}

/// The round trips of a latency case: `warmup` unmeasured, then `count`
/// measured, in segments of `segment`.
#[derive(Debug, Clone, Copy)]
pub struct RoundTrips {
    pub warmup: u64,
    pub count: u64,
    pub segment: u64,
}

/// What a latency case measured.
pub struct Measured {
    /// Round-trip times in ns.
    pub hist: Histogram<u64>,
    /// Heap allocations during the measured round trips, in every thread.
    pub allocs: u64,
}

impl Measured {
    fn new() -> Self {
        Measured { hist: Histogram::new_with_bounds(1, MAX_NS, 3).expect("histogram bounds"), allocs: 0 }
    }
}

/// Longest round trip the histograms hold (longer ones are clamped).
const MAX_NS: u64 = 10_000_000_000;

/// Ends the process when the client thread panics: the server thread would
/// otherwise wait for round trips forever, and the scope for it.
struct ExitOnPanic;

impl Drop for ExitOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::process::exit(101);
        }
    }
}

impl RoundTrips {
    /// Runs ping-pong `a` and ping-pong `b` on the same two pinned threads,
    /// alternating every `segment` round trips, and measures both. A VM's
    /// virtual CPUs move between physical cores while a bench runs (a
    /// cache-line round trip measured 150 ns in one second and 411 ns in
    /// another); alternating exposes both to the same placements, so their
    /// ratio means something. The first round trip of each segment (the
    /// server switching over) is not measured.
    ///
    /// `clients` makes the two clients on the client thread while the
    /// servers run their `setup`.
    pub fn interleave<A: PingClient, B: PingClient>(
        &self,
        pins: Pins,
        servers: (impl PingServer, impl PingServer),
        clients: impl FnOnce() -> (A, B),
    ) -> (Measured, Measured) {
        let warm = self.warmup.div_ceil(self.segment);
        let rounds = warm + self.count.div_ceil(self.segment);
        let ready = &AtomicBool::new(false);
        std::thread::scope(|s| {
            let (mut server_a, mut server_b) = servers;
            s.spawn(move || {
                pin(pins.server);
                server_a.setup(ready);
                server_b.setup(ready);
                for _ in 0..rounds {
                    server_a.serve(self.segment + 1);
                    server_b.serve(self.segment + 1);
                }
            });
            let _exit = ExitOnPanic;
            pin(pins.client);
            let (mut a, mut b) = clients();
            ready.store(true, Release);
            let (mut ma, mut mb) = (Measured::new(), Measured::new());
            for round in 0..rounds {
                let measured = round >= warm;
                self.segment(&mut a, measured.then_some(&mut ma));
                self.segment(&mut b, measured.then_some(&mut mb));
            }
            (ma, mb)
        })
    }

    /// One segment of `client`'s round trips, recorded into `into` if given:
    /// one clock read after each, the time since the previous read recorded.
    fn segment(&self, client: &mut impl PingClient, mut into: Option<&mut Measured>) {
        client.round_trip();
        let allocs = crate::alloc::count();
        let mut prev = Instant::now();
        for _ in 0..self.segment {
            client.round_trip();
            let now = Instant::now();
            if let Some(m) = &mut into {
                m.hist.saturating_record((now - prev).as_nanos() as u64);
            }
            prev = now;
        }
        if let Some(m) = into {
            m.allocs += crate::alloc::count() - allocs;
        }
        client.maintain();
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
