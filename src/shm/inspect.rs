//! Reading a shared-memory queue object of any queue size, for the
//! operator's tool `tcpshm-ptcp`.
//!
//! The object is `SHM_QUEUE_SIZE + 256` bytes, so its size gives the queue
//! size. The waiting messages are walked with the consumer's own validation
//! (the same `next_msg` step), so an object the tool reads is one our
//! consumer reads. The object is copied (`std::fs::read`): a snapshot, whose
//! indices may be from slightly different moments while the peers run.

use std::path::{Path, PathBuf};

use zerocopy::FromBytes;

use super::layout::{ProducerWord, BLOCK, READ_IDX_OFF, TRAILER, WRITE_IDX_OFF};
use super::queue::next_msg;
use super::SHM_DIR;
use crate::error::Error;
use crate::msg::MsgHeader;

/// Largest `SHM_QUEUE_SIZE` a configuration may have.
const MAX_QUEUE_SIZE: usize = 1 << 30;

/// A message waiting in a shared-memory queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmMsg {
    /// Its free-running block index (the block is `idx % blocks`).
    pub idx: u32,
    /// The application's message type.
    pub msg_type: u16,
    /// The header's size field: body plus the 8-byte header.
    pub size: u16,
}

/// A validated snapshot of a shared-memory queue object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmQueue {
    /// Bytes of the queue's blocks (`SHM_QUEUE_SIZE`).
    pub queue_size: usize,
    /// The producer's published index: next free block (free-running).
    pub write_idx: u32,
    /// The word beside `write_idx`: our producer's read index in its peer's
    /// queue when it last published (a C++ producer's private read-index cache).
    pub consumed: u32,
    /// The consumer's index: next block to read (free-running).
    pub read_idx: u32,
    /// The messages between `read_idx` and `write_idx`, oldest first.
    pub messages: Vec<ShmMsg>,
}

/// Where the object named `name` is: `name` itself if it holds a `/`, else
/// `name` in `/dev/shm`.
pub fn object_path(name: &str) -> PathBuf {
    if name.contains('/') {
        PathBuf::from(name)
    } else {
        Path::new(SHM_DIR).join(name)
    }
}

fn ne_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

impl ShmQueue {
    /// Validates the bytes of a whole queue object and walks its waiting
    /// messages. The error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<ShmQueue, String> {
        let len = bytes.len();
        let queue_size = len.saturating_sub(TRAILER);
        let blocks = queue_size / BLOCK;
        if queue_size == 0
            || !queue_size.is_multiple_of(BLOCK)
            || !blocks.is_power_of_two()
            || queue_size > MAX_QUEUE_SIZE
        {
            return Err(format!(
                "has {len} bytes, not {TRAILER} more than a queue size of a power-of-two number of {BLOCK}-byte blocks"
            ));
        }
        let n = blocks as u32;
        let word = u64::from_ne_bytes(bytes[queue_size + WRITE_IDX_OFF..][..8].try_into().unwrap_or_default());
        let ProducerWord { write_idx, consumed } = ProducerWord::unpack(word);
        let read_idx = ne_u32(bytes, queue_size + READ_IDX_OFF);
        if write_idx.wrapping_sub(read_idx) > n {
            return Err(format!(
                "impossible indices: write_idx {write_idx} is not within {n} blocks after read_idx {read_idx}"
            ));
        }
        let header = |idx: u32| {
            let off = (idx & (n - 1)) as usize * BLOCK;
            MsgHeader::read_from_bytes(&bytes[off..off + 8]).unwrap_or_default()
        };
        let mut messages = vec![];
        let mut idx = read_idx;
        loop {
            let at = idx;
            match next_msg(&mut idx, write_idx, n, header) {
                Ok(None) => break,
                Ok(Some((h, blocks))) => {
                    messages.push(ShmMsg { idx, msg_type: h.msg_type, size: h.size });
                    idx = idx.wrapping_add(blocks);
                }
                Err(_) if idx == at && header(at).size == 0 => {
                    return Err(format!("the rewind marker at index {at} skips past write_idx {write_idx}"));
                }
                Err(_) => {
                    let size = header(idx).size;
                    return Err(format!(
                        "the message at index {idx} has size {size}, which does not fit before write_idx \
                         {write_idx} or the end of the ring"
                    ));
                }
            }
        }
        Ok(ShmQueue { queue_size, write_idx, consumed, read_idx, messages })
    }

    /// Reads and validates the queue object at `path`.
    pub fn read(path: &Path) -> Result<ShmQueue, Error> {
        let corrupt = |detail: String| Error::FileCorrupt { path: path.to_owned(), detail };
        let len = std::fs::metadata(path).map_err(|e| Error::file("stat shm object", path, e))?.len();
        if len > (MAX_QUEUE_SIZE + TRAILER) as u64 {
            return Err(corrupt(format!("has {len} bytes, more than any queue object")));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::file("read shm object", path, e))?;
        ShmQueue::parse(&bytes).map_err(corrupt)
    }

    /// Number of 64-byte blocks of the queue.
    pub fn blocks(&self) -> u32 {
        (self.queue_size / BLOCK) as u32
    }

    /// Blocks published and not yet consumed (rewind padding included).
    pub fn depth_blocks(&self) -> u32 {
        self.write_idx.wrapping_sub(self.read_idx)
    }

    /// Bytes published and not yet consumed: [`depth_blocks`](Self::depth_blocks) × 64.
    pub fn depth_bytes(&self) -> u64 {
        self.depth_blocks() as u64 * BLOCK as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(blocks: usize, write_idx: u32, read_idx: u32) -> Vec<u8> {
        let q = blocks * BLOCK;
        let mut b = vec![0u8; q + TRAILER];
        b[q..q + 8].copy_from_slice(&ProducerWord { write_idx, consumed: 3 }.pack().to_ne_bytes());
        b[q + READ_IDX_OFF..q + READ_IDX_OFF + 4].copy_from_slice(&read_idx.to_ne_bytes());
        b
    }

    fn put(b: &mut [u8], block: usize, size: u16, msg_type: u16) {
        b[block * BLOCK..block * BLOCK + 2].copy_from_slice(&size.to_ne_bytes());
        b[block * BLOCK + 2..block * BLOCK + 4].copy_from_slice(&msg_type.to_ne_bytes());
    }

    #[test]
    fn walks_across_a_rewind_marker() {
        // 4 blocks; read at 6 (block 2): a message, then a rewind marker at
        // block 3, then a 2-block message at block 0 of the next lap.
        let mut b = object(4, 10, 6);
        put(&mut b, 2, 20, 7);
        put(&mut b, 3, 0, 0);
        put(&mut b, 0, 100, 9);
        let q = ShmQueue::parse(&b).unwrap();
        assert_eq!((q.queue_size, q.consumed, q.depth_blocks(), q.depth_bytes()), (256, 3, 4, 256));
        let want = [ShmMsg { idx: 6, msg_type: 7, size: 20 }, ShmMsg { idx: 8, msg_type: 9, size: 100 }];
        assert_eq!(q.messages, want);
        put(&mut b, 0, 200, 9);
        assert!(ShmQueue::parse(&b).unwrap_err().contains("index 8 has size 200"));
        let b = object(4, 10, 5);
        assert!(ShmQueue::parse(&b).unwrap_err().contains("impossible indices"));
        assert!(ShmQueue::parse(&[0; 300]).unwrap_err().contains("has 300 bytes"));
        assert!(ShmQueue::parse(&[0; 256]).is_err());
        assert_eq!(ShmQueue::parse(&object(4, 0, 0)).unwrap().messages, vec![]);
    }
}
