//! Producer and consumer ends of the shared-memory SPSC variable-size queue.
//!
//! Each end keeps its own index in a local field (the truth for this process)
//! and publishes it with a release store; it reads the other end's index with
//! an acquire load, and validates it before using it: the other end is another
//! process, possibly not ours, possibly broken.

use std::sync::atomic::Ordering::{Acquire, Release};

use super::layout::{ProducerWord, ShmRegion, BLOCK};
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
    /// The consumed mark last stored beside it (see [`ProducerWord`]).
    consumed: u32,
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
    pub(crate) fn new(region: ShmRegion) -> Result<Self, Corrupt> {
        let ProducerWord { write_idx, consumed } = ProducerWord::unpack(region.producer().load(Acquire));
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
        // blocks the consumer had passed when its index was last read.
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
            if self.write_idx.wrapping_sub(read_idx) > n || !not_before(read_idx, min_read) {
                return false;
            }
            self.read_idx_cache = read_idx;
        }
        if rewind {
            // A zero size tells the consumer to skip to the next lap.
            self.write_header(MsgHeader::default());
            self.write_idx = self.write_idx.wrapping_add(pad);
        }
        self.pending_size = size as u16;
        true
    }

    /// Blocks of the allocated message (0 if none).
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
        self.store_producer();
    }

    /// The consumed mark of the last publish (read back after a restart).
    pub(crate) fn consumed(&self) -> u32 {
        self.consumed
    }

    #[inline]
    fn store_producer(&mut self) {
        self.published = self.write_idx;
        let word = ProducerWord { write_idx: self.write_idx, consumed: self.consumed };
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

    /// Zeroes the object and starts over.
    pub(crate) fn reset(&mut self) {
        self.region.zero();
        self.write_idx = 0;
        self.read_idx_cache = 0;
        self.pending_size = 0;
        self.published = 0;
        self.consumed = 0;
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
        self.region.read_idx().store(self.read_idx, Release);
    }

    /// The read index just past the message last returned by `front`.
    #[inline]
    pub(crate) fn after_front(&self) -> u32 {
        self.read_idx.wrapping_add(self.front_blocks)
    }

    /// After a restart: moves the read index to `consumed`, the mark this
    /// side published with its last replies, when a crash fell between
    /// publishing them and storing the pop. The mark is followed only if it
    /// lies ahead within the published messages and on a message boundary;
    /// anything else (an older mark, a queue reset since, a file another
    /// producer wrote) leaves the index where it is.
    pub(crate) fn catch_up(&mut self, consumed: u32) {
        let start = self.read_idx;
        let ahead = consumed.wrapping_sub(start);
        if ahead == 0 || ahead > Self::published_idx(&self.region).wrapping_sub(start) {
            return;
        }
        while self.read_idx != consumed && consumed.wrapping_sub(self.read_idx) <= ahead {
            match self.front() {
                Ok(Some(_)) => self.read_idx = self.after_front(),
                _ => break,
            }
        }
        self.front_blocks = 0;
        if self.read_idx == consumed {
            self.region.read_idx().store(consumed, Release);
        } else {
            self.read_idx = start;
        }
    }

    /// Zeroes the object and starts over.
    pub(crate) fn reset(&mut self) {
        self.region.zero();
        self.read_idx = 0;
        self.front_blocks = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        tx: ShmSender,
        rx: ShmReceiver,
        _dir: tempfile::TempDir,
    }

    fn pair(queue_size: usize) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.shm");
        let tx = ShmSender::new(ShmRegion::open(&path, queue_size).unwrap()).unwrap();
        let rx = ShmReceiver::new(ShmRegion::open(&path, queue_size).unwrap()).unwrap();
        Pair { tx, rx, _dir: dir }
    }

    /// Stores a producer index as a (possibly broken) producer would.
    fn set_write_idx(region: &ShmRegion, write_idx: u32) {
        region.producer().store(ProducerWord { write_idx, consumed: 0 }.pack(), Release);
    }

    fn send(tx: &mut ShmSender, msg_type: u16, body: &[u8]) -> bool {
        if !tx.alloc(body.len()) {
            return false;
        }
        tx.pending_body().copy_from_slice(body);
        tx.push(msg_type);
        true
    }

    #[test]
    fn wraps_with_rewind_markers_over_many_laps() {
        let mut p = pair(1024); // 16 blocks
        let mut sent = 0u32;
        let mut recvd = 0u32;
        while recvd < 1000 {
            // Sizes from 1 to 4 blocks so messages straddle the end of the ring.
            let len = 8 + (sent as usize * 37) % 200;
            let body: Vec<u8> = (0..len).map(|i| (sent as usize + i) as u8).collect();
            if !send(&mut p.tx, 1 + (sent % 7) as u16, &body) {
                // Full: drain one.
                let m = p.rx.front().unwrap().unwrap();
                let want_len = 8 + (recvd as usize * 37) % 200;
                assert_eq!(m.body().len(), want_len);
                assert_eq!(m.msg_type(), 1 + (recvd % 7) as u16);
                assert!(m.body().iter().enumerate().all(|(i, &b)| b == (recvd as usize + i) as u8));
                p.rx.pop();
                recvd += 1;
                continue;
            }
            sent += 1;
        }
    }

    #[test]
    fn full_queue_refuses_then_accepts_after_pop() {
        let mut p = pair(256); // 4 blocks
        assert!(send(&mut p.tx, 1, &[1; 100])); // 2 blocks
        assert!(send(&mut p.tx, 1, &[2; 100])); // 2 blocks
        assert!(!send(&mut p.tx, 1, &[3; 8]));
        assert_eq!(p.tx.depth(), 4);
        assert_eq!(p.rx.front().unwrap().unwrap().body()[0], 1);
        p.rx.pop();
        assert!(send(&mut p.tx, 1, &[3; 8]));
        assert!(!send(&mut p.tx, 1, &[0; 300]), "larger than the queue");
    }

    #[test]
    fn pop_without_front_is_a_no_op() {
        let mut p = pair(256);
        p.rx.pop();
        assert!(send(&mut p.tx, 9, b"12345678"));
        p.rx.pop();
        assert_eq!(p.rx.front().unwrap().unwrap().msg_type(), 9);
    }

    #[test]
    fn producer_word_keeps_write_idx_where_cpp_reads_it() {
        let w = ProducerWord { write_idx: 0x0102_0304, consumed: 0x0a0b_0c0d };
        let bytes = w.pack().to_ne_bytes();
        assert_eq!(bytes[..4], 0x0102_0304u32.to_ne_bytes());
        assert_eq!(bytes[4..], 0x0a0b_0c0du32.to_ne_bytes());
        assert_eq!(ProducerWord::unpack(w.pack()), w);
    }

    /// A crash between publishing replies (with their consumed mark) and
    /// storing the pop: the reopened receiver catches up to the mark, and
    /// only to a mark that is ahead, published, and on a message boundary.
    #[test]
    fn catch_up_follows_only_a_valid_consumed_mark() {
        let mut p = pair(1024); // 16 blocks
        for i in 0..4u8 {
            assert!(send(&mut p.tx, 1, &[i; 100])); // 2 blocks each
        }
        let reopen = |p: &Pair| {
            let path = p._dir.path().join("q.shm");
            ShmReceiver::new(ShmRegion::open(&path, 1024).unwrap()).unwrap()
        };
        // Published but never popped: a crash after the reply's store.
        for bad in [0, 1, 3, 9, 4000, u32::MAX] {
            let mut rx = reopen(&p);
            rx.catch_up(bad);
            assert_eq!(rx.read_idx, 0, "mark {bad} must be ignored");
            assert_eq!(rx.region.read_idx().load(Acquire), 0);
        }
        let mut rx = reopen(&p);
        rx.catch_up(4);
        assert_eq!((rx.read_idx, rx.region.read_idx().load(Acquire)), (4, 4));
        assert_eq!(rx.front().unwrap().unwrap().body()[0], 2);
        // A mark behind the stored index is an old one.
        rx.catch_up(2);
        assert_eq!(rx.read_idx, 4);
    }

    #[test]
    fn corrupt_indices_and_sizes_are_reported() {
        let mut p = pair(256);
        // A write_idx more than a lap ahead.
        set_write_idx(&p.rx.region, 5);
        assert_eq!(p.rx.front().unwrap_err(), Corrupt);
        // A header whose size is below the header.
        set_write_idx(&p.rx.region, 1);
        // SAFETY: test writes into its own mapping.
        unsafe { (p.rx.region.write_ptr(0, 1) as *mut u16).write(3) };
        assert_eq!(p.rx.front().unwrap_err(), Corrupt);
        // A size that runs past the published index.
        // SAFETY: as above.
        unsafe { (p.rx.region.write_ptr(0, 1) as *mut u16).write(100) };
        assert_eq!(p.rx.front().unwrap_err(), Corrupt);
        // A size that runs past the end of the ring.
        set_write_idx(&p.rx.region, 4);
        // SAFETY: as above.
        unsafe { (p.rx.region.write_ptr(0, 1) as *mut u16).write(250) };
        p.rx.read_idx = 0;
        assert!(p.rx.front().unwrap().is_some(), "4 blocks fit exactly");
        p.rx.read_idx = 1;
        set_write_idx(&p.rx.region, 5);
        // SAFETY: as above.
        unsafe { (p.rx.region.write_ptr(1, 1) as *mut u16).write(250) };
        assert_eq!(p.rx.front().unwrap_err(), Corrupt);
        // Opening a region whose indices are a lap apart fails.
        set_write_idx(&p.rx.region, 100);
        p.rx.region.read_idx().store(0, Release);
        let path = p._dir.path().join("q.shm");
        assert!(ShmReceiver::new(ShmRegion::open(&path, 256).unwrap()).is_err());
        assert!(ShmSender::new(ShmRegion::open(&path, 256).unwrap()).is_err());
    }

    /// The C++ echo pair's queues after a shm session (tests/data): 16
    /// messages of types 1..4 carrying the numbers 0..40, all consumed.
    fn golden(gz: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = vec![];
        flate2::read::GzDecoder::new(gz).read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), (1 << 20) + 256);
        out
    }

    #[test]
    fn reads_and_writes_the_cpp_queue_layout() {
        for gz in [
            &include_bytes!("../../tests/data/shmq_goldshm_server.shm.gz")[..],
            &include_bytes!("../../tests/data/shmq_server_goldshm.shm.gz")[..],
        ] {
            let mut bytes = golden(gz);
            let q = 1 << 20;
            assert_eq!(&bytes[q..q + 4], &16u32.to_ne_bytes(), "write_idx");
            assert_eq!(&bytes[q + 128..q + 132], &16u32.to_ne_bytes(), "read_idx");
            // Rewind the consumer so our receiver reads what the C++ producer wrote.
            bytes[q + 128..q + 132].fill(0);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("gold.shm");
            std::fs::write(&path, &bytes).unwrap();
            let mut rx = ShmReceiver::new(ShmRegion::open(&path, q).unwrap()).unwrap();
            let mut next = 0u32;
            let mut msgs = vec![];
            while let Some(m) = rx.front().unwrap() {
                let vals: Vec<u32> = m.body().chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
                assert_eq!(vals.len(), m.msg_type() as usize);
                for v in &vals {
                    assert_eq!(*v, next);
                    next += 1;
                }
                msgs.push((m.msg_type(), m.body().to_vec()));
                rx.pop();
            }
            assert_eq!((msgs.len(), next), (16, 40));
            assert_eq!(rx.region.read_idx().load(Acquire), 16);

            // Our producer lays the same messages out in the same blocks.
            let ours = dir.path().join("ours.shm");
            let mut tx = ShmSender::new(ShmRegion::open(&ours, q).unwrap()).unwrap();
            for (t, body) in &msgs {
                assert!(send(&mut tx, *t, body));
            }
            let ours = std::fs::read(&ours).unwrap();
            for (i, (_, body)) in msgs.iter().enumerate() {
                let b = i * 64;
                assert_eq!(&ours[b..b + 8 + body.len()], &bytes[b..b + 8 + body.len()], "block {i}");
            }
            assert_eq!(&ours[q..q + 4], &16u32.to_ne_bytes());
        }
    }

    #[test]
    fn wrong_sized_object_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.shm");
        std::fs::write(&path, [0u8; 100]).unwrap();
        assert!(ShmRegion::open(&path, 256).is_err());
    }
}
