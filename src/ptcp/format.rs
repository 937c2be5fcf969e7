//! The queue file's format at the level of bytes and index values, with no
//! `Conf`: the header offsets, the packed index words, the validating walk
//! over the queued messages and the order of the stores that empty a queue.
//!
//! [`PtcpQueue`](super::queue::PtcpQueue) (which knows its `Conf`) and the
//! inspection module [`inspect`](super::inspect) (which reads the sizes from
//! the header) share these, so a file the library refuses is refused by the
//! tool for the same reason, in the same words.

use crate::msg::{MsgHeader, HEADER_SIZE};

use super::seq_not_before;

/// Bytes of the file header in front of the blocks.
pub(crate) const FILE_HEADER_SIZE: usize = 64;
/// Bytes of a block; indices count blocks.
pub(crate) const BLK: usize = 8;
/// Offsets of the header fields (the header's integers are native-endian).
pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_QUEUE_SIZE: usize = 12;
pub(crate) const OFF_NAME_SIZE: usize = 16;
pub(crate) const OFF_LITTLE_ENDIAN: usize = 20;
pub(crate) const OFF_DURABILITY: usize = 21;
pub(crate) const OFF_WRITE: usize = 24;
pub(crate) const OFF_READ: usize = 32;
pub(crate) const OFF_ACK: usize = 40;

pub(crate) fn pack(lo: u32, hi: u32) -> u64 {
    lo as u64 | (hi as u64) << 32
}

pub(crate) fn unpack(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

/// The index words of a queue file, unpacked. Positions count 8-byte blocks
/// of the ring.
///
/// * `write_pos >= read_pos`: the messages are `[read_pos, write_pos)`;
/// * `write_pos < read_pos`: they are `[read_pos, wrap_pos)` then `[0, write_pos)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Indices {
    /// Block just past the newest queued message.
    pub write_pos: u32,
    /// Block where the previous lap ended (used while `write_pos < read_pos`).
    pub wrap_pos: u32,
    /// Block of the oldest queued (unacknowledged) message.
    pub read_pos: u32,
    /// Sequence number of the message at `read_pos`: the queue's `seq_start`.
    pub read_seq: u32,
    /// Number of the peer's messages consumed, as stored in the header.
    pub ack_seq: u32,
}

impl Indices {
    /// Whether the messages wrap around the end of the ring.
    #[inline]
    pub(crate) fn wrapped(&self) -> bool {
        self.write_pos < self.read_pos
    }

    /// The block of the message at or after `pos` in queue order (following
    /// the wrap), or None at the end of the queue.
    #[inline]
    pub(crate) fn next_pos(&self, pos: u32) -> Option<u32> {
        let pos = if self.wrapped() && pos == self.wrap_pos { 0 } else { pos };
        (pos != self.write_pos).then_some(pos)
    }

    /// Blocks of the message at `pos` whose header says `size`, if it lies
    /// inside its segment.
    #[inline]
    pub(crate) fn msg_blocks(&self, pos: u32, size: u16) -> Option<u32> {
        let blocks = (size as usize).div_ceil(BLK) as u32;
        let seg_end = if self.wrapped() && pos >= self.read_pos { self.wrap_pos } else { self.write_pos };
        (size as usize >= HEADER_SIZE && pos + blocks <= seg_end).then_some(blocks)
    }

    /// Blocks the queued messages occupy (valid indices assumed).
    pub fn used_blocks(&self) -> u32 {
        if self.wrapped() {
            self.wrap_pos.saturating_sub(self.read_pos) + self.write_pos
        } else {
            self.write_pos.saturating_sub(self.read_pos)
        }
    }
}

/// The header of the message at block `pos` of `ring`, from wire order.
pub(crate) fn header_at(ring: &[u8], pos: u32, little_endian: bool) -> Option<MsgHeader> {
    let off = (pos as usize).checked_mul(BLK)?;
    let b: [u8; HEADER_SIZE] = ring.get(off..off.checked_add(HEADER_SIZE)?)?.try_into().ok()?;
    let u16_at = |i: usize| {
        let v = [b[i], b[i + 1]];
        if little_endian {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }
    };
    let ack = [b[4], b[5], b[6], b[7]];
    let ack_seq = if little_endian { u32::from_le_bytes(ack) } else { u32::from_be_bytes(ack) };
    Some(MsgHeader { size: u16_at(0), msg_type: u16_at(2), ack_seq })
}

/// What a walk over a valid queue found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Walked {
    /// Messages queued: `seq_end = read_seq + count`.
    pub(crate) count: u32,
    /// The ack: the header's, or one more when the last message carries it
    /// (a crash between a reply's store and its pop's, see `PtcpQueue::push`).
    pub(crate) ack_seq: u32,
}

/// Validates `ix` against `ring` (the blocks after the header) and walks
/// every queued message in order, calling `visit(pos, header)` for each.
/// Message headers are in wire order, little-endian if `little_endian`.
/// The error says what is wrong, in the words `PtcpQueue::open` reports.
pub(crate) fn walk(
    ix: &Indices,
    ring: &[u8],
    little_endian: bool,
    mut visit: impl FnMut(u32, MsgHeader),
) -> Result<Walked, String> {
    let n = (ring.len() / BLK) as u32;
    let Indices { write_pos, wrap_pos, read_pos, .. } = *ix;
    if write_pos > n || read_pos > n || (write_pos < read_pos && !(read_pos..=n).contains(&wrap_pos)) {
        return Err(format!("impossible indices read {read_pos} write {write_pos} wrap {wrap_pos}"));
    }
    let mut ack_seq = ix.ack_seq;
    let mut pos = read_pos;
    let mut count = 0u32;
    while let Some(p) = ix.next_pos(pos) {
        let h = header_at(ring, p, little_endian).ok_or("message runs past the end of the queue")?;
        pos = p + ix.msg_blocks(p, h.size).ok_or("message size invalid")?;
        count += 1;
        visit(p, h);
        if !seq_not_before(ack_seq, h.ack_seq) {
            // Only the last message may be one pop ahead: a reply whose
            // pop's own store a crash cut off (see `PtcpQueue::push`).
            if ix.next_pos(pos).is_some() || h.ack_seq != ack_seq.wrapping_add(1) {
                return Err(format!("message {count} carries ack {} beyond the file's ack {ack_seq}", h.ack_seq));
            }
            ack_seq = h.ack_seq;
        }
    }
    Ok(Walked { count, ack_seq })
}

/// One store of [`reset_stores`]: a whole index word, or the ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetStore {
    /// The `read` word (`read_pos | read_seq << 32`).
    Read(u64),
    /// The `write` word (`write_pos | wrap_pos << 32`).
    Write(u64),
    /// The ack.
    Ack(u32),
}

/// The stores that empty a queue whose `write_pos` and `read_seq` are
/// given, in the order they must happen: after each, the file reads as a
/// consistent queue that is empty (or, before the first, unchanged).
pub(crate) fn reset_stores(write_pos: u32, read_seq: u32) -> [ResetStore; 5] {
    [
        // read == write: empty, at the old write position.
        ResetStore::Read(pack(write_pos, read_seq)),
        // write 0 < read: [write_pos, write_pos) + [0, 0), empty.
        ResetStore::Write(pack(0, write_pos)),
        // read 0 == write 0: empty, numbers zeroed.
        ResetStore::Read(0),
        ResetStore::Write(0),
        ResetStore::Ack(0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every prefix of the reset stores leaves valid, empty indices.
    #[test]
    fn each_reset_store_leaves_an_empty_valid_queue() {
        let ring = vec![0u8; 256];
        for (write_pos, read_pos, wrap_pos) in [(10, 4, 0), (3, 20, 30), (0, 0, 0), (32, 32, 0)] {
            let mut ix = Indices { write_pos, wrap_pos, read_pos, read_seq: 77, ack_seq: 5 };
            for store in reset_stores(write_pos, 77) {
                match store {
                    ResetStore::Read(v) => (ix.read_pos, ix.read_seq) = unpack(v),
                    ResetStore::Write(v) => (ix.write_pos, ix.wrap_pos) = unpack(v),
                    ResetStore::Ack(v) => ix.ack_seq = v,
                }
                let walked = walk(&ix, &ring, true, |_, _| panic!("a message in {ix:?}")).unwrap();
                assert_eq!(walked.count, 0);
            }
            assert_eq!(ix, Indices::default());
        }
    }

    #[test]
    fn headers_decode_in_either_byte_order() {
        let ring = [0, 24, 0, 7, 0, 0, 0, 9];
        assert_eq!(header_at(&ring, 0, false), Some(MsgHeader { size: 24, msg_type: 7, ack_seq: 9 }));
        let le = header_at(&ring, 0, true).unwrap();
        assert_eq!((le.size, le.msg_type, le.ack_seq), (24 << 8, 7 << 8, 9 << 24));
        assert_eq!(header_at(&ring, 1, true), None);
    }
}
