//! Producer and consumer ends of the shared-memory SPSC variable-size queue.
//!
//! Each end keeps its own index in a local field (the truth for this process)
//! and publishes it with a release store; it reads the other end's index with
//! an acquire load, and validates it before using it: the other end is another
//! process, possibly not ours, possibly broken.

use std::sync::atomic::Ordering::{Acquire, Release};

use super::layout::{mark_word, ProducerWord, ShmRegion, BLOCK};
use crate::msg::{Msg, MsgHeader, HEADER_SIZE};

/// Blocks taken by a message of `size` bytes (header included).
#[inline]
fn blocks_for(size: usize) -> u32 {
    size.div_ceil(BLOCK) as u32
}

/// The next message of a queue of `n` blocks whose consumer is at
/// `*read_idx` and whose producer has published up to `write_idx`, with
/// `read_header(idx)` reading the header of block `idx % n`: its header and
/// blocks, `Ok(None)` if the queue is empty. A rewind marker (size 0) moves
/// `*read_idx` to the next lap first. Every index and size is validated, so
/// the message lies between the two indices without wrapping. Shared by the
/// consumer and [`inspect`](super::inspect).
#[inline]
pub(crate) fn next_msg(
    read_idx: &mut u32,
    write_idx: u32,
    n: u32,
    read_header: impl Fn(u32) -> MsgHeader,
) -> Result<Option<(MsgHeader, u32)>, Corrupt> {
    if write_idx == *read_idx {
        return Ok(None);
    }
    let mut avail = write_idx.wrapping_sub(*read_idx);
    if avail > n {
        return Err(Corrupt);
    }
    let mut header = read_header(*read_idx);
    if header.size == 0 {
        // Rewind marker: the producer continued at block 0 of the next lap.
        let skip = n - (*read_idx & (n - 1));
        if skip > avail {
            return Err(Corrupt);
        }
        *read_idx = read_idx.wrapping_add(skip);
        avail -= skip;
        if avail == 0 {
            return Ok(None);
        }
        header = read_header(*read_idx);
    }
    let size = header.size as usize;
    let blocks = blocks_for(size);
    let pos = *read_idx & (n - 1);
    if size < HEADER_SIZE || blocks > avail || pos + blocks > n {
        return Err(Corrupt);
    }
    Ok(Some((header, blocks)))
}

/// Whether `a` is at or after `b` in free-running u32 index space.
#[inline]
fn not_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// The writing end of a queue.
pub(crate) struct ShmSender {
    region: ShmRegion,
    /// Next free block (free-running); published on push.
    write_idx: u32,
    /// Last read_idx seen; refreshed only when the queue looks full.
    read_idx_cache: u32,
    /// Size (header included) of the allocated, not yet pushed message.
    pending_size: u16,
    /// Pushes wait for `publish` (while a received message is handled).
    hold: bool,
    /// The write_idx last stored to shared memory.
    published: u32,
    /// The consumed half last stored beside it (see [`ProducerWord`]).
    consumed: u32,
    /// Whether `consumed` is a mark of ours: set by `publish_consumed`, or
    /// found vouched for by the mark word when the end was taken over.
    mark_ours: bool,
}

/// The reading end of a queue.
pub(crate) struct ShmReceiver {
    region: ShmRegion,
    /// Next block to read (free-running); published on pop.
    read_idx: u32,
    /// Blocks of the message last returned by `front`, consumed by `pop`.
    front_blocks: u32,
}

/// The peer's indices or sizes are impossible; the queue cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt;

impl ShmSender {
    /// Takes the producer end of `region`, checking the indices it holds.
    /// The consumed half counts as our mark only if the mark word vouches
    /// for it (see [`consumed`](Self::consumed)).
    pub(crate) fn new(region: ShmRegion) -> Result<Self, Corrupt> {
        let ProducerWord { write_idx, consumed } = ProducerWord::unpack(region.producer().load(Acquire));
        // Loaded after the word: a word with a new mark was stored after its
        // mark word (see `publish_consumed`), so this sees that mark word or a later one.
        let mark_ours = region.mark().load(Acquire) == mark_word(consumed);
        let read_idx = region.read_idx().load(Acquire);
        if write_idx.wrapping_sub(read_idx) > region.blocks() {
            return Err(Corrupt);
        }
        Ok(ShmSender {
            region,
            write_idx,
            read_idx_cache: read_idx,
            pending_size: 0,
            hold: false,
            published: write_idx,
            consumed,
            mark_ours,
        })
    }

    /// Reserves room for a body of `body_len` bytes; false if the queue is
    /// full (or the consumer's index is impossible, which looks the same).
    #[inline]
    pub(crate) fn alloc(&mut self, body_len: usize) -> bool {
        let size = body_len + HEADER_SIZE;
        let n = self.region.blocks();
        let need = blocks_for(size);
        let pad = n - (self.write_idx & (n - 1));
        // The common case: the message fits before the end of the ring, in
        // blocks the consumer had passed when its index was last read. (Each
        // test here is repeated by `alloc_slow`, so a wrong one costs only
        // speed: the mutation tests cannot see it, the benches can.)
        if size <= u16::MAX as usize
            && need <= pad
            && not_before(self.read_idx_cache, self.write_idx.wrapping_add(need).wrapping_sub(n))
        {
            self.pending_size = size as u16;
            return true;
        }
        self.alloc_slow(size)
    }

    /// `alloc` when the ring wraps or the cached read index is not enough.
    #[cold]
    fn alloc_slow(&mut self, size: usize) -> bool {
        if size > u16::MAX as usize {
            return false;
        }
        let n = self.region.blocks();
        let need = blocks_for(size);
        let pad = n - (self.write_idx & (n - 1));
        let rewind = need > pad;
        // The consumer must have passed this block for the message to fit.
        let min_read = self.write_idx.wrapping_add(need).wrapping_add(if rewind { pad } else { 0 }).wrapping_sub(n);
        if need > n {
            return false;
        }
        if !not_before(self.read_idx_cache, min_read) {
            let read_idx = self.region.read_idx().load(Acquire);
            // A consumer index ahead of write_idx is impossible (`>= n`
            // would do too: a full ring also fails the second test).
            if self.write_idx.wrapping_sub(read_idx) > n || !not_before(read_idx, min_read) {
                return false;
            }
            self.read_idx_cache = read_idx;
        }
        if rewind {
            // A zero size tells the consumer to skip to the next lap. Not
            // published here: the Release store of the write_idx past the
            // message that follows it publishes the marker too.
            self.write_header(MsgHeader::default());
            self.write_idx = self.write_idx.wrapping_add(pad);
        }
        self.pending_size = size as u16;
        true
    }

    /// Blocks of the allocated message (0 if none). Only loom builds use the
    /// count (to record the access); elsewhere it is ignored.
    #[inline]
    fn pending_blocks(&self) -> u32 {
        blocks_for(self.pending_size as usize)
    }

    /// The body of the allocated message.
    #[inline]
    pub(crate) fn pending_body(&mut self) -> &mut [u8] {
        let len = self.pending_size.saturating_sub(HEADER_SIZE as u16) as usize;
        // The consumer does not read these blocks before write_idx is
        // published, and `&mut self` makes this the only reference into them.
        // SAFETY: `alloc` checked that the blocks from write_idx hold `pending_size`
        // bytes without wrapping, inside the mapping, released by the consumer.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.region.write_ptr(self.write_idx, self.pending_blocks()).add(HEADER_SIZE),
                len,
            )
        }
    }

    /// Publishes the allocated message; a no-op if nothing is allocated.
    #[inline]
    pub(crate) fn push(&mut self, msg_type: u16) {
        if self.pending_size == 0 {
            return;
        }
        let size = self.pending_size;
        self.write_header(MsgHeader { size, msg_type, ack_seq: 0 });
        self.write_idx = self.write_idx.wrapping_add(blocks_for(size as usize));
        self.pending_size = 0;
        if !self.hold {
            self.publish();
        }
    }

    /// Makes pushes wait for [`publish`](Self::publish) (`hold`), or not.
    #[inline]
    pub(crate) fn hold(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// Publishes every pushed message to the consumer.
    #[inline]
    pub(crate) fn publish(&mut self) {
        if self.published != self.write_idx {
            self.store_producer();
        }
    }

    /// Forgets the pushes held since the last publish and ends the hold,
    /// as a crash would: the consumer never saw them (a handler unwound
    /// while its replies were held).
    pub(crate) fn discard_unpublished(&mut self) {
        (self.write_idx, self.pending_size, self.hold) = (self.published, 0, false);
    }

    /// Whether pushes are waiting for [`publish`](Self::publish).
    #[inline]
    pub(crate) fn has_unpublished(&self) -> bool {
        self.published != self.write_idx
    }

    /// Publishes every pushed message together with `consumed`, the read
    /// index in the peer's queue just past the message they answer: one
    /// store, so after a crash the replies exist if and only if the pop
    /// does (see [`ShmReceiver::catch_up`]).
    #[inline]
    pub(crate) fn publish_consumed(&mut self, consumed: u32) {
        self.consumed = consumed;
        self.mark_ours = true;
        // The mark word first: a crash between the two stores leaves a mark
        // word that does not match the old consumed half, which is then
        // ignored; that is right, since the old mark's pop was stored before
        // this message was delivered. Release, though the word's Release
        // store below already orders it for a reader that acquires the word.
        self.region.mark().store(mark_word(consumed), Release);
        self.store_producer();
    }

    /// The consumed mark of the last `publish_consumed` (read back after a
    /// restart), for [`ShmReceiver::catch_up`]; `None` if the consumed half
    /// is not provably ours: a zeroed or reset object, or one where a C++
    /// producer (which keeps its read_idx_cache there) ran since our last mark.
    pub(crate) fn consumed(&self) -> Option<u32> {
        self.mark_ours.then_some(self.consumed)
    }

    #[inline]
    fn store_producer(&mut self) {
        self.published = self.write_idx;
        let word = ProducerWord { write_idx: self.write_idx, consumed: self.consumed };
        // Release: the message bytes and headers (rewind markers included)
        // written before it are visible to whoever acquires this word, and a
        // process that dies after this store leaves them complete.
        self.region.producer().store(word.pack(), Release);
    }

    /// The published producer index: changes with every push that reached
    /// the consumer, and persists with the queue.
    pub(crate) fn published(&self) -> u32 {
        self.published
    }

    #[inline]
    fn write_header(&mut self, h: MsgHeader) {
        // SAFETY: the block pointer is 64-aligned and inside the mapping; the block is
        // ours until write_idx is published (see `pending_body`).
        unsafe { (self.region.write_ptr(self.write_idx, 1) as *mut MsgHeader).write_volatile(h) }
    }

    /// Messages published and not yet consumed, in blocks.
    #[cfg(test)]
    pub(crate) fn depth(&self) -> u32 {
        self.write_idx.wrapping_sub(self.region.read_idx().load(Acquire))
    }
}

impl ShmReceiver {
    /// Takes the consumer end of `region`, checking the indices it holds.
    pub(crate) fn new(region: ShmRegion) -> Result<Self, Corrupt> {
        let write_idx = Self::published_idx(&region);
        let read_idx = region.read_idx().load(Acquire);
        if write_idx.wrapping_sub(read_idx) > region.blocks() {
            return Err(Corrupt);
        }
        Ok(ShmReceiver { region, read_idx, front_blocks: 0 })
    }

    /// The producer's published write_idx (acquire: the blocks before it are written).
    #[inline]
    fn published_idx(region: &ShmRegion) -> u32 {
        ProducerWord::unpack(region.producer().load(Acquire)).write_idx
    }

    /// The next message, in place; `Ok(None)` if the queue is empty.
    #[inline]
    pub(crate) fn front(&mut self) -> Result<Option<Msg<'_>>, Corrupt> {
        let write_idx = Self::published_idx(&self.region);
        if write_idx == self.read_idx {
            // While waiting, keep the next message's first block in this
            // core's cache: when the producer publishes, fetching the block
            // then overlaps fetching its index instead of following it.
            self.region.prefetch(self.read_idx);
            return Ok(None);
        }
        let mut read_idx = self.read_idx;
        let next = next_msg(&mut read_idx, write_idx, self.region.blocks(), |idx| self.read_header(idx));
        self.read_idx = read_idx;
        let Some((header, blocks)) = next? else { return Ok(None) };
        let size = header.size as usize;
        self.front_blocks = blocks;
        // The producer does not touch the blocks until `pop` (`&mut self`, so
        // after this borrow) publishes a read_idx past them. `size` was read
        // once: a producer breaking the protocol can change bytes, not bounds.
        // SAFETY: `next_msg` validated that the blocks lie between read_idx and
        // the published write_idx, inside the mapping, without wrapping.
        let body = unsafe {
            std::slice::from_raw_parts(self.region.read_ptr(self.read_idx, blocks).add(HEADER_SIZE), size - HEADER_SIZE)
        };
        Ok(Some(Msg::new(header.msg_type, body)))
    }

    #[inline]
    fn read_header(&self, idx: u32) -> MsgHeader {
        // SAFETY: the block pointer is 64-aligned and inside the mapping; the block
        // lies below the published write_idx (checked by `next_msg`), so the
        // producer has finished writing it. A volatile read reads it once.
        unsafe { (self.region.read_ptr(idx, 1) as *const MsgHeader).read_volatile() }
    }

    /// Consumes the message last returned by `front`; a no-op otherwise.
    #[inline]
    pub(crate) fn pop(&mut self) {
        if self.front_blocks == 0 {
            return;
        }
        self.read_idx = self.read_idx.wrapping_add(self.front_blocks);
        self.front_blocks = 0;
        // Release: our reads of the message happen before the producer,
        // acquiring this index, reuses its blocks.
        self.region.read_idx().store(self.read_idx, Release);
    }

    /// The read index just past the message last returned by `front`.
    #[inline]
    pub(crate) fn after_front(&self) -> u32 {
        self.read_idx.wrapping_add(self.front_blocks)
    }

    /// After a restart or a new login: moves the read index past the one
    /// message that `consumed` says was popped, when a crash fell between
    /// publishing that message's replies together with the mark
    /// ([`ShmSender::publish_consumed`], which made the pop durable) and
    /// storing the pop itself. `consumed` comes from [`ShmSender::consumed`]
    /// of this side's own queue; `None` (or a plain index, in tests and
    /// fuzzing) as given.
    ///
    /// The rule: follow the mark only if it is exactly the end of the message
    /// at the stored read index (after a rewind marker, if one is there), and
    /// that message is published; otherwise leave the index alone. Why no
    /// message the consumer has not popped can be skipped:
    ///
    /// - Our own mark is written only by `publish_consumed(after_front())`
    ///   in `Connection::poll_shm`, right before `pop` stores the same index,
    ///   and the next message is read only after that store. So the stored
    ///   read index is at the mark, or past it (later pops without replies),
    ///   or exactly one message before it (the crash fell between the two
    ///   stores, and the message *was* popped). Only the last is followed.
    /// - A C++ producer keeps its private `read_idx_cache` in the same half
    ///   of the producer word, and a C++ server replaced by ours on the same
    ///   objects leaves it there. It is an index of the *other* queue, so it
    ///   can be any value here: behind, equal, off a boundary, or exactly on
    ///   the end of the next unpopped message (a streaming server whose
    ///   queue once filled at block 16380, a client whose next request ends
    ///   there). Its value cannot tell it apart, so it is never passed here:
    ///   `ShmSender::consumed` trusts the half only when the mark word (in
    ///   bytes of the producer's line that C++ never writes) holds our magic
    ///   and the same value. A C++ value that happens to equal our last mark
    ///   is that mark, which the first point covers.
    /// - The index space is free-running u32: a mark of ours left behind by
    ///   exactly 2^32 blocks (256 GiB popped without a single reply) minus
    ///   the next message reads as one message ahead. That is the limit of
    ///   any 32-bit index; nothing smaller can fool the rule.
    pub(crate) fn catch_up(&mut self, consumed: impl Into<Option<u32>>) {
        let Some(consumed) = consumed.into() else { return };
        let start = self.read_idx;
        if consumed == start {
            return;
        }
        // `front` validates the message against the published write_idx
        // (and steps over a rewind marker in memory only).
        let one_ahead = matches!(self.front(), Ok(Some(_))) && self.after_front() == consumed;
        self.front_blocks = 0;
        if one_ahead {
            self.read_idx = consumed;
            // Release, as `pop`'s store: this is the pop the crash cut off.
            self.region.read_idx().store(consumed, Release);
        } else {
            self.read_idx = start;
        }
    }
}

#[cfg(test)]
mod tests;
