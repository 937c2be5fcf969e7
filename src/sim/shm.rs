//! Deterministic simulation of the shared-memory queues against a reference
//! model (issue 14: exactly once, proven).
//!
//! Two sides, A and B, each own the producer end of one queue and the
//! consumer end of the other, as two shm-mode `Connection`s do: A's
//! consumed mark for queue B->A lives in its own producer word of A->B. One
//! thread drives both from a seeded PRNG, so a seed is a complete schedule:
//! pushes of random sizes (empty bodies, exact blocks, sizes that rewind at
//! the end of the ring, too big, a full queue), abandoned allocations, the
//! reply-with-pop protocol of `Connection::poll_shm` one step at a time
//! (hold, replies, publish or publish_consumed, pop), crashes between any
//! two of those steps, restarts as `Connection::open` does them, consumer
//! reconnects, producer restarts, the new-day reset, and a C++ server's
//! leftover `read_idx_cache` in a producer word before a restart. The
//! mapping is real (files in /dev/shm); a crash drops the in-memory ends and
//! keeps the bytes.
//!
//! The model holds every published, unpopped message (type and exact bytes)
//! per queue. Each `front` must return exactly the model's oldest one:
//! nothing skipped, nothing invented, nothing popped delivered again. A
//! message counts as popped when the pop's index store or the
//! `publish_consumed` carrying its replies happens, whichever is first. Every
//! `alloc` must succeed exactly when the ring has room. A drain (no crashes,
//! handlers that pop) must empty each queue in one poll per message.
//!
//! Replay a seed with its trace: `TCPSHM_SIM_SEED=<seed> cargo test --release
//! --lib sim::shm -- --nocapture`; run more seeds with `TCPSHM_SIM_SEEDS=<n>`
//! (and `TCPSHM_SIM_FIRST=<first>`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Release};

use super::rng::{mix, Rng};
use crate::msg::HEADER_SIZE;
use crate::shm::layout::{ProducerWord, ShmRegion, BLOCK};
use crate::shm::{ShmReceiver, ShmSender};

const NAME: [&str; 2] = ["A", "B"];

/// The bytes of message `id`: a function of the id, so a body names its message.
pub(super) fn fill(id: u64, body: &mut [u8]) {
    for (k, chunk) in body.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(id << 20 ^ k as u64).to_le_bytes()[..chunk.len()]);
    }
}

fn body_is(id: u64, body: &[u8]) -> bool {
    body.chunks(8).enumerate().all(|(k, c)| c == &mix(id << 20 ^ k as u64).to_le_bytes()[..c.len()])
}

/// Blocks taken by a body of `len` bytes.
fn blocks(len: usize) -> u32 {
    (len + HEADER_SIZE).div_ceil(BLOCK) as u32
}

/// Whether a body of `len` bytes fits in a ring of `n` blocks written up to
/// `w` and read up to `r`: the rule of PROTOCOL.md, restated.
fn fits(n: u32, w: u32, r: u32, len: usize) -> bool {
    let need = blocks(len);
    let pad = n - w % n;
    let end = if need > pad { w.wrapping_add(pad).wrapping_add(need) } else { w.wrapping_add(need) };
    len + HEADER_SIZE <= u16::MAX as usize && need <= n && end.wrapping_sub(r) <= n
}

/// The producer word of a region.
fn word(region: &ShmRegion) -> ProducerWord {
    ProducerWord::unpack(region.producer().load(Acquire))
}

/// A message as the model knows it.
#[derive(Debug, Clone, Copy)]
struct Msg {
    id: u64,
    msg_type: u16,
    len: usize,
    /// Free-running index just past it: a real message boundary.
    end: u32,
}

/// One queue as it should be.
#[derive(Default)]
struct Model {
    /// Published and not popped, oldest first.
    published: VecDeque<Msg>,
    /// Pushed while the producer holds (a handler's replies), not published.
    held: Vec<Msg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Replies,
    Publish,
    Pop,
}

/// A message being handled by a side, as inside `Connection::poll_shm`.
struct Handler {
    id: u64,
    replies: u32,
    pop: bool,
    /// The model already counts it popped (its replies carried the mark).
    committed: bool,
    stage: Stage,
}

/// A process: the producer end of its queue, the consumer end of the other's.
struct Side {
    tx: Option<ShmSender>,
    rx: Option<ShmReceiver>,
    /// The producer's write index as the model computes it.
    w: u32,
    /// The write index it last published.
    pw: u32,
    handler: Option<Handler>,
}

/// The state of one seed's run.
pub(super) struct Sim {
    pub(super) rng: Rng,
    queue_size: usize,
    n: u32,
    /// `paths[s]`: the object side `s` produces into.
    paths: [PathBuf; 2],
    /// Separate mappings of the objects, for checks and foreign writes.
    probe: [ShmRegion; 2],
    sides: [Side; 2],
    models: [Model; 2],
    next_id: u64,
    pub(super) ops: u64,
    trace: Option<Vec<String>>,
}

type Res<T = ()> = Result<T, String>;

fn open(path: &Path, queue_size: usize) -> Res<ShmRegion> {
    ShmRegion::open(path, queue_size).map_err(|e| format!("open {}: {e}", path.display()))
}

impl Sim {
    /// Fresh objects in `dir` for `seed`, the indices possibly near the wrap
    /// of the free-running u32, and both sides up.
    pub(super) fn new(dir: &Path, seed: u64, trace: bool) -> Res<Sim> {
        let mut rng = Rng::new(seed);
        let queue_size = BLOCK << (2 + rng.below(4)); // 4 to 32 blocks
        let paths = [dir.join("a_b.shm"), dir.join("b_a.shm")];
        for p in &paths {
            let _ = std::fs::remove_file(p);
        }
        let probe = [open(&paths[0], queue_size)?, open(&paths[1], queue_size)?];
        let n = probe[0].blocks();
        // Start both queues at a common index, 0 or just before the wrap,
        // each side's mark at the other's read index (all popped).
        let start = |rng: &mut Rng| if rng.chance(50, 100) { u32::MAX - rng.below(4 * n as u64) as u32 } else { 0 };
        let starts = [start(&mut rng), start(&mut rng)];
        for s in 0..2 {
            let w = ProducerWord { write_idx: starts[s], consumed: starts[1 - s] };
            probe[s].producer().store(w.pack(), Release);
            probe[s].read_idx().store(starts[s], Release);
        }
        let side = || Side { tx: None, rx: None, w: 0, pw: 0, handler: None };
        let mut sim = Sim {
            rng,
            queue_size,
            n,
            paths,
            probe,
            sides: [side(), side()],
            models: [Model::default(), Model::default()],
            next_id: 1,
            ops: 0,
            trace: trace.then(Vec::new),
        };
        sim.log(|| format!("seed {seed}: {n} blocks, indices from {starts:?}"));
        sim.restart(0)?;
        sim.restart(1)?;
        Ok(sim)
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(t) = &mut self.trace {
            t.push(line());
        }
    }

    /// The trace so far (only when tracing).
    pub(super) fn trace(&self) -> &[String] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// One operation of the schedule.
    pub(super) fn step(&mut self) -> Res {
        self.ops += 1;
        let s = self.rng.below(2) as usize;
        if self.sides[s].tx.is_none() {
            return self.restart(s);
        }
        if self.sides[s].handler.is_some() {
            // A crash between any two steps of the reply protocol.
            return if self.rng.chance(5, 100) { self.crash(s) } else { self.handler_step(s) };
        }
        match self.rng.below(100) {
            0..=29 => self.push(s, false).map(drop),
            30..=33 => self.abandoned_alloc(s),
            34..=69 => {
                let (replies, pop) = (self.rng.below(4) as u32, self.rng.chance(85, 100));
                self.poll(s, replies, pop)
            }
            70..=75 => self.crash(s),
            76..=79 => self.reconnect(s),
            80..=82 => self.restart_producer(s),
            83..=86 => self.cpp_takeover(s),
            87 => self.reset(),
            88 => self.drain(),
            _ => self.push(s, false).map(drop),
        }
    }

    /// Finishes the run: every handler completes, and both queues drain.
    pub(super) fn finish(&mut self) -> Res {
        self.drain()
    }

    fn tx(&mut self, s: usize) -> &mut ShmSender {
        self.sides[s].tx.as_mut().expect("side is up")
    }

    fn rx(&mut self, s: usize) -> &mut ShmReceiver {
        self.sides[s].rx.as_mut().expect("side is up")
    }

    /// The published write index must be the model's.
    fn check_published(&self, s: usize) -> Res {
        let got = word(&self.probe[s]).write_idx;
        let side = &self.sides[s];
        if got != side.pw {
            return Err(format!("{}'s published write_idx is {got}, the model says {}", NAME[s], side.pw));
        }
        match &side.tx {
            Some(tx) if tx.has_unpublished() != (side.w != side.pw) || tx.published() != side.pw => Err(format!(
                "{}'s has_unpublished() or published() is wrong (w {}, published {})",
                NAME[s], side.w, side.pw
            )),
            _ => Ok(()),
        }
    }

    /// Allocates a random body on side `s`'s queue: the model decides
    /// whether it must fit. Returns its id and length if it did.
    fn alloc(&mut self, s: usize) -> Res<Option<(u64, usize)>> {
        let max = self.queue_size - HEADER_SIZE; // exactly the whole ring
        let len = match self.rng.below(10) {
            0 => 0,
            1 => BLOCK - HEADER_SIZE,
            2 => BLOCK - HEADER_SIZE + 1,
            3 => max,
            4 => max + 1 + self.rng.below(100) as usize,
            5 | 6 => self.rng.below(BLOCK as u64) as usize,
            _ => self.rng.below(max as u64 / 2 + 1) as usize,
        };
        self.alloc_len(s, len)
    }

    /// Allocates a body of `len` bytes, checking the answer against the model.
    fn alloc_len(&mut self, s: usize, len: usize) -> Res<Option<(u64, usize)>> {
        let (n, w) = (self.n, self.sides[s].w);
        let r = self.probe[s].read_idx().load(Acquire);
        let want = fits(n, w, r, len);
        let got = self.tx(s).alloc(len);
        if got != want {
            return Err(format!("{}: alloc({len}) gave {got} with w {w}, r {r}, {n} blocks", NAME[s]));
        }
        if !got {
            self.log(|| format!("{}: alloc({len}) refused (full)", NAME[s]));
            return Ok(None);
        }
        let pad = n - w % n;
        if blocks(len) > pad {
            self.sides[s].w = w.wrapping_add(pad);
        }
        let id = self.next_id;
        self.next_id += 1;
        let body = self.tx(s).pending_body();
        if body.len() != len {
            return Err(format!("{}: pending_body has {} bytes, not {len}", NAME[s], body.len()));
        }
        fill(id, body);
        Ok(Some((id, len)))
    }

    /// alloc, fill, push; held while a handler runs. False if it was full.
    fn push(&mut self, s: usize, held: bool) -> Res<bool> {
        let Some((id, len)) = self.alloc(s)? else { return Ok(false) };
        let msg_type = 1 + self.rng.below(u16::MAX as u64 - 1) as u16;
        self.tx(s).push(msg_type);
        let side = &mut self.sides[s];
        side.w = side.w.wrapping_add(blocks(len));
        let msg = Msg { id, msg_type, len, end: side.w };
        if held {
            self.models[s].held.push(msg);
        } else {
            side.pw = side.w;
            self.models[s].published.push_back(msg);
        }
        self.log(|| {
            format!("{}: push #{id} ({len} bytes){} -> end {}", NAME[s], if held { " held" } else { "" }, msg.end)
        });
        self.check_published(s)?;
        Ok(true)
    }

    /// An allocation dropped unpushed (a `Slot` dropped): nothing is sent.
    fn abandoned_alloc(&mut self, s: usize) -> Res {
        if let Some((id, len)) = self.alloc(s)? {
            self.log(|| format!("{}: alloc #{id} ({len} bytes) abandoned", NAME[s]));
        }
        self.check_published(s)
    }

    /// `front` on side `s` must give exactly the model's oldest message of
    /// the queue it consumes. Returns its id.
    fn check_front(&mut self, s: usize) -> Res<Option<u64>> {
        let o = 1 - s;
        let rx = self.sides[s].rx.as_mut().expect("side is up");
        let got = rx.front().map_err(|_| format!("{} found its queue corrupt", NAME[s]))?;
        let model = &self.models[o].published;
        let describe = |m: &crate::msg::Msg<'_>| {
            let which = model.iter().position(|x| x.len == m.body().len() && body_is(x.id, m.body()));
            match which {
                Some(k) => format!("message #{} ({} newer than the oldest unpopped: skipped)", model[k].id, k),
                None => format!("a message (type {}, {} bytes) not in the model", m.msg_type(), m.body().len()),
            }
        };
        match (got, model.front()) {
            (None, None) => Ok(None),
            (None, Some(want)) => Err(format!("{} got nothing, expected #{}", NAME[s], want.id)),
            (Some(m), None) => Err(format!("{} got {}: invented or popped before", NAME[s], describe(&m))),
            (Some(m), Some(want)) => {
                if m.msg_type() == want.msg_type && m.body().len() == want.len && body_is(want.id, m.body()) {
                    Ok(Some(want.id))
                } else {
                    Err(format!("{} expected #{}, got {}", NAME[s], want.id, describe(&m)))
                }
            }
        }
    }

    /// Starts handling the next message on side `s` as `poll_shm` does: the
    /// handler will push `replies` replies and pop it if `pop`.
    fn poll(&mut self, s: usize, replies: u32, pop: bool) -> Res {
        let Some(id) = self.check_front(s)? else { return Ok(()) };
        self.log(|| format!("{}: front #{id}, {replies} replies, pop {pop}", NAME[s]));
        self.tx(s).hold(true);
        self.sides[s].handler = Some(Handler { id, replies, pop, committed: false, stage: Stage::Replies });
        Ok(())
    }

    /// Counts the oldest message of the queue side `s` consumes as popped.
    fn commit(&mut self, s: usize, id: u64) -> Res {
        match self.models[1 - s].published.pop_front() {
            Some(m) if m.id == id => Ok(()),
            other => Err(format!("{} popped #{id}, the model's oldest is {:?}", NAME[s], other.map(|m| m.id))),
        }
    }

    /// One step of the handler running on side `s`.
    fn handler_step(&mut self, s: usize) -> Res {
        let h = self.sides[s].handler.as_mut().expect("handling");
        match h.stage {
            Stage::Replies if h.replies > 0 => {
                h.replies -= 1;
                if !self.push(s, true)? && self.rng.chance(70, 100) {
                    // The reply found the queue full: leave the message
                    // for the next poll, as the alloc-first pattern does.
                    self.sides[s].handler.as_mut().expect("handling").pop = false;
                }
                Ok(())
            }
            Stage::Replies => {
                h.stage = Stage::Publish;
                Ok(())
            }
            Stage::Publish => {
                let (id, pop) = (h.id, h.pop);
                // The message stayed readable and intact while handled.
                if self.check_front(s)? != Some(id) {
                    return Err(format!("{}'s message #{id} changed while handled", NAME[s]));
                }
                self.tx(s).hold(false);
                let side = &self.sides[s];
                if pop && side.w != side.pw {
                    let mark = self.rx(s).after_front();
                    self.tx(s).publish_consumed(mark);
                    self.commit(s, id)?;
                    self.sides[s].handler.as_mut().expect("handling").committed = true;
                    self.log(|| format!("{}: publish_consumed({mark}) with replies to #{id}", NAME[s]));
                } else {
                    self.tx(s).publish();
                    self.log(|| format!("{}: publish", NAME[s]));
                }
                let side = &mut self.sides[s];
                side.pw = side.w;
                let held = std::mem::take(&mut self.models[s].held);
                self.models[s].published.extend(held);
                self.check_published(s)?;
                let side = &mut self.sides[s];
                let h = side.handler.as_mut().expect("handling");
                h.stage = Stage::Pop;
                if !pop {
                    side.handler = None;
                }
                Ok(())
            }
            Stage::Pop => {
                let (id, committed) = (h.id, h.committed);
                self.sides[s].handler = None;
                self.rx(s).pop();
                self.log(|| format!("{}: pop #{id}", NAME[s]));
                if !committed {
                    self.commit(s, id)?;
                }
                Ok(())
            }
        }
    }

    /// The process of side `s` dies: only the mapped bytes remain.
    fn crash(&mut self, s: usize) -> Res {
        let side = &mut self.sides[s];
        (side.tx, side.rx, side.handler) = (None, None, None);
        self.models[s].held.clear();
        self.log(|| format!("{}: crash", NAME[s]));
        Ok(())
    }

    /// Side `s` starts again as `Connection::open` does.
    fn restart(&mut self, s: usize) -> Res {
        let o = 1 - s;
        let corrupt = |what: &str| format!("{} found its {what} queue corrupt on restart", NAME[s]);
        let tx = ShmSender::new(open(&self.paths[s], self.queue_size)?).map_err(|_| corrupt("send"))?;
        let mut rx = ShmReceiver::new(open(&self.paths[o], self.queue_size)?).map_err(|_| corrupt("receive"))?;
        rx.catch_up(tx.consumed());
        let w = word(&self.probe[s]).write_idx;
        self.sides[s] = Side { tx: Some(tx), rx: Some(rx), w, pw: w, handler: None };
        self.log(|| format!("{}: restart", NAME[s]));
        self.check_published(s)?;
        self.check_front(s).map(drop)
    }

    /// A new login without a restart: the consumer end is made anew and
    /// catches up to the producer's in-memory mark.
    fn reconnect(&mut self, s: usize) -> Res {
        let path = &self.paths[1 - s];
        let corrupt = || format!("{} found its receive queue corrupt on reconnect", NAME[s]);
        let mut rx = ShmReceiver::new(open(path, self.queue_size)?).map_err(|_| corrupt())?;
        rx.catch_up(self.tx(s).consumed());
        self.sides[s].rx = Some(rx);
        self.log(|| format!("{}: reconnect", NAME[s]));
        self.check_front(s).map(drop)
    }

    /// Only the producer end of side `s` is made anew from the region.
    fn restart_producer(&mut self, s: usize) -> Res {
        let tx = ShmSender::new(open(&self.paths[s], self.queue_size)?)
            .map_err(|_| format!("{} found its send queue corrupt", NAME[s]))?;
        let side = &mut self.sides[s];
        side.tx = Some(tx);
        side.w = side.pw;
        self.log(|| format!("{}: producer restart", NAME[s]));
        self.check_published(s)
    }

    /// Side `s` goes down and a C++ server runs in its place and leaves its
    /// private `read_idx_cache` in the consumed half of the producer word;
    /// side `s` then restarts on the same objects. The value is adversarial:
    /// behind, equal, on and off message boundaries of the queue side `s`
    /// consumes, past its end, across the wrap, or the mark already there.
    fn cpp_takeover(&mut self, s: usize) -> Res {
        self.crash(s)?;
        let o = 1 - s;
        let n = self.n;
        let r = self.probe[o].read_idx().load(Acquire);
        let w = word(&self.probe[o]).write_idx;
        let ends: Vec<u32> = self.models[o].published.iter().map(|m| m.end).collect();
        let pick = |rng: &mut Rng, v: &[u32]| if v.is_empty() { r } else { v[rng.below(v.len() as u64) as usize] };
        let mine = word(&self.probe[s]);
        let v = match self.rng.below(11) {
            0 => 0,
            1 => r,
            2 => r.wrapping_sub(1 + self.rng.below(2 * n as u64) as u32),
            3 => ends.first().copied().unwrap_or(r),
            4 => pick(&mut self.rng, &ends),
            5 => w,
            6 => w.wrapping_add(1 + self.rng.below(n as u64) as u32),
            7 => r.wrapping_add(1 + self.rng.below(w.wrapping_sub(r).max(1) as u64) as u32),
            8 => r.wrapping_add(1 << 31),
            9 => self.rng.next_u64() as u32,
            _ => mine.consumed,
        };
        let foreign = ProducerWord { write_idx: mine.write_idx, consumed: v };
        self.probe[s].producer().store(foreign.pack(), Release);
        self.log(|| format!("{}: a C++ producer leaves read_idx_cache {v} (r {r}, ends {ends:?})", NAME[s]));
        Ok(())
    }

    /// The new-day reset, as a server's login does it while neither side is
    /// handling a message (the login handshake makes them quiescent): both
    /// sides' ends are let go, the server zeroes both objects before it
    /// reads them (`Connection::open_shm_emptied`), and both sides open
    /// their ends anew.
    fn reset(&mut self) -> Res {
        if self.sides.iter().any(|x| x.handler.is_some()) || self.sides.iter().all(|x| x.tx.is_none()) {
            return Ok(());
        }
        for side in &mut self.sides {
            (side.tx, side.rx) = (None, None);
        }
        for path in &self.paths {
            open(path, self.queue_size)?.zero();
        }
        self.models = [Model::default(), Model::default()];
        self.log(|| "reset".into());
        for s in 0..2 {
            self.restart(s)?;
        }
        Ok(())
    }

    /// Bounded progress: with no crash and handlers that pop, each queue
    /// empties in one poll per message, and then has room again.
    fn drain(&mut self) -> Res {
        self.log(|| "drain".into());
        for s in 0..2 {
            if self.sides[s].tx.is_none() {
                self.restart(s)?;
            }
            while self.sides[s].handler.is_some() {
                self.handler_step(s)?;
            }
        }
        for (s, name) in NAME.iter().enumerate() {
            let count = self.models[1 - s].published.len();
            for _ in 0..count {
                self.poll(s, 0, true)?;
                while self.sides[s].handler.is_some() {
                    self.handler_step(s)?;
                }
            }
            if let Some(id) = self.check_front(s)? {
                return Err(format!("{name} still has #{id} after {count} polls"));
            }
        }
        // Empty queues have room (less only what an abandoned rewind took):
        // the largest body the model's rule admits is allocated.
        for (s, name) in NAME.iter().enumerate() {
            let (n, w) = (self.n, self.sides[s].w);
            let r = self.probe[s].read_idx().load(Acquire);
            let fit = (1..=n).rev().find(|&b| fits(n, w, r, b as usize * BLOCK - HEADER_SIZE));
            let Some(b) = fit.filter(|_| w.wrapping_sub(r) < n) else {
                return Err(format!("{name}'s drained queue has no room (w {w}, r {r})"));
            };
            if self.alloc_len(s, b as usize * BLOCK - HEADER_SIZE)?.is_none() {
                return Err(format!("{name}'s drained queue refused {b} blocks"));
            }
        }
        Ok(())
    }
}

mod tests;
