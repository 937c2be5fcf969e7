//! How cases run: pinning, ping-pongs interleaved with their floor on the
//! same two threads (one clock read per round trip), and what a streaming
//! case reports.

use std::time::Instant;

use hdrhistogram::Histogram;

use crate::shape::Shape;

/// The CPUs of the client and the server thread (None: not pinned).
#[derive(Debug, Clone, Copy)]
pub struct Pins {
    pub client: Option<usize>,
    pub server: Option<usize>,
}

pub use crate::sys::pin;

/// The client end of a ping-pong, driven on the client thread.
pub trait PingClient {
    /// Sends the next message and waits for its echo.
    fn round_trip(&mut self);

    /// Work a real client does between requests (heartbeats), called
    /// between segments, outside the measured time.
    fn maintain(&mut self) {}

    /// One segment of `n` round trips after an unmeasured one (the server
    /// switching over), recorded into `into` if given: one clock read after
    /// each, the time since the previous read recorded. Provided, so each
    /// implementation gets its own loop calling `round_trip` directly even
    /// when the segment is called through `dyn PingClient`.
    fn segment(&mut self, n: u64, mut into: Option<&mut Measured>) {
        self.round_trip();
        let allocs = crate::alloc::count();
        let mut prev = Instant::now();
        for _ in 0..n {
            self.round_trip();
            let now = Instant::now();
            if let Some(m) = &mut into {
                m.hist.saturating_record((now - prev).as_nanos() as u64);
            }
            prev = now;
        }
        if let Some(m) = into {
            m.allocs += crate::alloc::count() - allocs;
        }
        self.maintain();
    }
}

/// The serving end of a ping-pong, driven on the server thread.
pub trait PingServer {
    /// Serves what the client's setup needs (a login), until it is done.
    fn setup(&mut self) {}
    /// Answers exactly `count` round trips.
    fn serve(&mut self, count: u64);
}

/// Makes a case's server, on the server thread (some libraries' ports may
/// not move between threads).
pub type StartServer<'a> = Box<dyn FnOnce() -> Box<dyn PingServer + 'a> + Send + 'a>;

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

/// Ends the process when a bench thread panics: the other thread would
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
    /// Runs several ping-pongs on the same two pinned threads, taking turns
    /// every `segment` round trips, and measures each. A VM's virtual CPUs
    /// move between physical cores while a bench runs (a cache-line round
    /// trip measured 150 ns in one second and 411 ns in another); taking
    /// turns exposes every case to the same placements, so their ratios
    /// mean something.
    ///
    /// `servers[i]` and `clients()[i]` are the two ends of case `i`;
    /// `clients` runs on the client thread while the servers run `setup`.
    pub fn interleave<'a>(
        &self,
        pins: Pins,
        servers: Vec<StartServer<'a>>,
        clients: impl FnOnce() -> Vec<Box<dyn PingClient + 'a>>,
    ) -> Vec<Measured> {
        std::thread::scope(|s| {
            s.spawn(move || {
                let _exit = ExitOnPanic;
                pin(pins.server);
                self.serve_turns(servers.into_iter().map(|start| start()).collect());
            });
            let _exit = ExitOnPanic;
            pin(pins.client);
            self.client_turns(clients())
        })
    }

    /// Segments in turn, then measured rounds.
    fn rounds(&self) -> (u64, u64) {
        let warm = self.warmup.div_ceil(self.segment);
        (warm, warm + self.count.div_ceil(self.segment))
    }

    /// The server side of [`interleave`](Self::interleave), on this thread.
    pub fn serve_turns(&self, mut servers: Vec<Box<dyn PingServer + '_>>) {
        for server in &mut servers {
            server.setup();
        }
        for _ in 0..self.rounds().1 {
            for server in &mut servers {
                server.serve(self.segment + 1);
            }
        }
    }

    /// The client side of [`interleave`](Self::interleave), on this thread.
    pub fn client_turns(&self, mut clients: Vec<Box<dyn PingClient + '_>>) -> Vec<Measured> {
        let (warm, rounds) = self.rounds();
        let mut measured: Vec<_> = clients.iter().map(|_| Measured::new()).collect();
        for round in 0..rounds {
            for (client, m) in clients.iter_mut().zip(&mut measured) {
                client.segment(self.segment, (round >= warm).then_some(m));
            }
        }
        measured
    }
}

/// A streaming case: `count` messages of `shape`, pushed in batches of `batch`.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    pub shape: Shape,
    pub count: u64,
    pub batch: u64,
}
