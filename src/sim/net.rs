//! A simulated TCP connection: two ends joined by two byte flows. The
//! scheduler decides, through the connection's own seeded generator, how
//! many bytes each write takes and each read returns, when written bytes
//! arrive, and whether the connection is reset or goes silent.
//!
//! What it keeps of TCP: a write into an empty send buffer takes a small
//! frame whole, later writes stop anywhere; order, no loss and no duplication while the
//! connection lives; a closed end's peer reads the bytes in flight and then
//! the end of the stream; a reset is an error on both ends; a half-open
//! connection passes nothing and tells nobody (only a timeout finds it).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::rng::Rng;

/// One direction: bytes written and not yet arrived, and bytes arrived and
/// not yet read.
#[derive(Default)]
struct Flow {
    in_flight: VecDeque<u8>,
    arrived: VecDeque<u8>,
    /// The writing end closed: after the bytes, the reader sees the end.
    fin: bool,
}

struct Shared {
    /// `flows[side]` carries what end `side` writes.
    flows: [Flow; 2],
    /// Most bytes a flow holds (the two socket buffers together).
    capacity: usize,
    /// Whether each end is still open (dropped ends are closed).
    open: [bool; 2],
    reset: bool,
    /// Nothing passes any more and no one is told.
    silent: bool,
    rng: Rng,
}

/// A simulated connection, as the scheduler sees it.
#[derive(Clone)]
pub(crate) struct Net(Arc<Mutex<Shared>>);

/// One end of a simulated connection, as a link sees it (a [`Wire`](crate::ptcp::wire::Wire)).
pub(crate) struct End {
    net: Net,
    side: usize,
}

impl Net {
    /// A new connection with its two ends (0 and 1); `capacity` bytes may
    /// be in each direction at once.
    pub(crate) fn pair(seed: u64, capacity: usize) -> (Net, End, End) {
        let net = Net(Arc::new(Mutex::new(Shared {
            flows: Default::default(),
            capacity,
            open: [true; 2],
            reset: false,
            silent: false,
            rng: Rng::new(seed),
        })));
        (net.clone(), End { net: net.clone(), side: 0 }, End { net, side: 1 })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves up to `n` bytes written by end `side` to its peer's side.
    pub(crate) fn deliver(&self, side: usize, n: usize) {
        let mut s = self.lock();
        if s.silent || s.reset {
            return;
        }
        let flow = &mut s.flows[side];
        let n = n.min(flow.in_flight.len());
        let bytes: Vec<u8> = flow.in_flight.drain(..n).collect();
        flow.arrived.extend(bytes);
    }

    /// A reset: every later call on either end fails.
    pub(crate) fn reset(&self) {
        self.lock().reset = true;
    }

    /// From now on nothing passes either way, and no end is told.
    pub(crate) fn go_silent(&self) {
        self.lock().silent = true;
    }

    /// Reads exactly `buf.len()` arrived bytes for end `side`, or nothing
    /// if fewer have arrived (the blocking read of a login response).
    pub(crate) fn read_exact(&self, side: usize, buf: &mut [u8]) -> bool {
        let mut s = self.lock();
        let reset = s.reset;
        let flow = &mut s.flows[1 - side];
        let n = buf.len();
        if reset || flow.arrived.len() < n {
            return false;
        }
        for (b, v) in buf.iter_mut().zip(flow.arrived.drain(..n)) {
            *b = v;
        }
        true
    }

    /// Writes all of `buf` for end `side` at once if it fits (the login).
    pub(crate) fn write_all(&self, side: usize, buf: &[u8]) -> bool {
        let mut s = self.lock();
        let (cap, reset) = (s.capacity, s.reset);
        let flow = &mut s.flows[side];
        if reset || flow.in_flight.len() + flow.arrived.len() + buf.len() > cap {
            return false;
        }
        flow.in_flight.extend(buf);
        true
    }
}

fn reset_error() -> io::Error {
    io::Error::from_raw_os_error(libc::ECONNRESET)
}

/// How many of `len` bytes a read moves: all of them half the time, else a
/// cut anywhere, down to one byte.
fn cut(rng: &mut Rng, len: usize) -> usize {
    if len <= 1 || rng.chance(1, 2) {
        len
    } else {
        rng.range(1, len)
    }
}

/// Bytes a socket's empty send buffer always takes whole (the smallest
/// buffer Linux gives a TCP socket is larger): a login response, say.
pub(crate) const SMALL_WRITE: usize = 512;

impl End {
    /// As a non-blocking socket's `write`: `Ok(0)` when full.
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.net.lock();
        if s.reset {
            return Err(reset_error());
        }
        let cap = s.capacity;
        let peer_open = s.open[1 - self.side];
        let Shared { flows, rng, .. } = &mut *s;
        let flow = &mut flows[self.side];
        let queued = flow.in_flight.len() + flow.arrived.len();
        let room = cap.saturating_sub(queued);
        // A write stops where the send buffer fills; where that is moves
        // with what the kernel accounts, so behind queued bytes it is cut
        // anywhere.
        let n = if queued == 0 && buf.len() <= SMALL_WRITE { buf.len() } else { cut(rng, buf.len().min(room)) };
        if peer_open {
            flow.in_flight.extend(&buf[..n]);
        }
        // Written to a closed peer, the bytes are lost as a real peer's
        // kernel would drop them (and answer with a reset, which the read
        // of the end of stream reports first).
        Ok(n)
    }

    /// As a non-blocking socket's `read`: `Ok(0)` at the end of the stream,
    /// `WouldBlock` when nothing arrived.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.net.lock();
        if s.reset {
            return Err(reset_error());
        }
        let silent = s.silent;
        let Shared { flows, rng, .. } = &mut *s;
        let flow = &mut flows[1 - self.side];
        if flow.arrived.is_empty() {
            return if flow.fin && flow.in_flight.is_empty() && !silent {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = cut(rng, buf.len().min(flow.arrived.len()));
        for (b, v) in buf.iter_mut().zip(flow.arrived.drain(..n)) {
            *b = v;
        }
        Ok(n)
    }
}

impl Drop for End {
    /// A closed socket (or a crashed process's): the peer reads what is in
    /// flight, then the end; what was sent to this end is dropped.
    fn drop(&mut self) {
        let mut s = self.net.lock();
        s.open[self.side] = false;
        s.flows[self.side].fin = true;
        s.flows[1 - self.side] = Flow::default();
    }
}
