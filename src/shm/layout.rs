//! The mapping of one shared-memory queue object and its fixed layout.
//!
//! For `Q = SHM_QUEUE_SIZE` bytes of 64-byte blocks the object is `Q + 256`
//! bytes: the blocks, then the producer's line (write_idx, read_idx_cache)
//! aligned to 128, then the consumer's line (read_idx) aligned to 128. The two
//! indices live on separate cache-line pairs so producer and consumer never
//! share a line (128 covers adjacent-line prefetch). The layout is the C++
//! original's, so it is spelled out here instead of borrowed from a padding
//! type whose alignment varies by target.
//!
//! The producer's first 8 bytes are one [`ProducerWord`]: write_idx and, in
//! the slot where the C++ producer keeps its private read_idx_cache, the
//! position up to which the producer had consumed *its peer's* queue when it
//! last published. Storing both in one 64-bit store makes a reply and the
//! pop of the message it answers one event, even across a crash. A C++
//! consumer reads only the write_idx half.
//!
//! The next 8 bytes of the producer's line (padding in the C++ struct, which
//! never writes them) hold the *mark word*: [`MARK_MAGIC`] and a copy of the
//! consumed mark, stored just before each producer word that sets a new mark.
//! A restarted producer trusts the consumed half only if the mark word
//! matches it: a C++ producer that ran on the object since left its
//! read_idx_cache there, an index of another queue that must never be taken
//! for a mark (see `ShmReceiver::catch_up`).
//!
//! The other way round is not solved here: a C++ producer taking over an
//! object ours wrote reads our consumed half as its read_idx_cache, and if
//! that value lies ahead of the real read_idx it skips reloading read_idx and
//! may overwrite messages its consumer has not read. Replace a Rust server by
//! a C++ one only on drained queues (or after a reset).

use std::fs::File;
use std::path::Path;
#[cfg(not(tcpshm_loom))]
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::MmapRaw;

use crate::error::Error;

/// Where POSIX shared-memory objects live on Linux (`shm_open` uses it).
pub const SHM_DIR: &str = "/dev/shm";

/// Bytes of one queue block: a cache line.
pub(crate) const BLOCK: usize = 64;
/// Bytes after the blocks: the producer's and the consumer's 128-byte lines.
pub(crate) const TRAILER: usize = 256;
/// Offsets in the trailer of the producer's word, the mark word and read_idx.
pub(crate) const WRITE_IDX_OFF: usize = 0;
#[cfg_attr(tcpshm_loom, allow(dead_code))]
pub(crate) const MARK_OFF: usize = 8;
pub(crate) const READ_IDX_OFF: usize = 128;

/// The high half of a mark word (`"TSMK"`): this library's producer wrote it.
pub(crate) const MARK_MAGIC: u32 = u32::from_be_bytes(*b"TSMK");

/// The mark word that vouches for `consumed` as this library's own mark.
#[inline]
pub(crate) fn mark_word(consumed: u32) -> u64 {
    (MARK_MAGIC as u64) << 32 | consumed as u64
}

/// The producer's 64-bit word as its two native-endian u32 halves, in
/// memory order: the C++ `write_idx` first, so a C++ consumer finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerWord {
    /// Next free block (free-running); everything before it is published.
    pub(crate) write_idx: u32,
    /// The producer's read_idx in its peer's queue when it last published.
    pub(crate) consumed: u32,
}

impl ProducerWord {
    /// The word's 64-bit value: the halves in memory order.
    #[inline]
    pub(crate) fn pack(self) -> u64 {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.write_idx.to_ne_bytes());
        b[4..].copy_from_slice(&self.consumed.to_ne_bytes());
        u64::from_ne_bytes(b)
    }

    /// The halves of a word's 64-bit value.
    #[inline]
    pub(crate) fn unpack(v: u64) -> Self {
        let b = v.to_ne_bytes();
        let half = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        ProducerWord { write_idx: half(0), consumed: half(4) }
    }
}

/// The error for an object (or its mapping) of `len` bytes where `want` are needed.
fn wrong_size(path: &Path, len: u64, want: u64) -> Error {
    Error::FileCorrupt {
        path: path.to_owned(),
        detail: format!("shm object has {len} bytes, this configuration needs {want}"),
    }
}

/// A mapped queue object: `blocks() * 64` bytes of blocks and two indices.
pub(crate) struct ShmRegion {
    #[cfg(not(tcpshm_loom))]
    map: MmapRaw,
    /// Under loom both ends share one mapping and one model of it.
    #[cfg(tcpshm_loom)]
    map: std::sync::Arc<MmapRaw>,
    #[cfg(tcpshm_loom)]
    model: std::sync::Arc<loom_model::Model>,
    /// The first block and the trailer, inside `map`: the hot path computes
    /// every address from these instead of asking the mapping each time.
    base: *mut u8,
    trailer: *mut u8,
    /// `blocks - 1` (blocks is a power of two).
    mask: u32,
    /// The producer's open object, holding its exclusive lock.
    owner: Option<File>,
}

// SAFETY: `base` and `trailer` point into `map`, which the region owns and
// which is `Send`; the region hands out no reference tied to a thread.
unsafe impl Send for ShmRegion {}

impl ShmRegion {
    /// Opens the object at `path` as [`open`](Self::open) does, as the one
    /// producer of its queue: an exclusive lock on the object is held for as
    /// long as the region lives, and another producer (in this process or
    /// another of ours) gets [`Error::InUse`]. The consumer, the peer, takes
    /// no lock, so it never stands in the way.
    pub(crate) fn open_producer(path: &Path, queue_size: usize) -> Result<Self, Error> {
        let (mut region, file) = Self::open_file(path, queue_size)?;
        crate::files::lock_exclusive(&file, path)?;
        region.owner = Some(file);
        Ok(region)
    }

    /// Opens (creating if needed, mode 0600) and maps the object at `path`
    /// for a queue of `queue_size` bytes. A new object is sized; an object of
    /// any other size is from another configuration and is refused.
    pub(crate) fn open(path: &Path, queue_size: usize) -> Result<Self, Error> {
        Ok(Self::open_file(path, queue_size)?.0)
    }

    fn open_file(path: &Path, queue_size: usize) -> Result<(Self, File), Error> {
        // The queue carries the application's messages: its owner only
        // (the C++ original creates them 0666; a peer of another user needs
        // the object made for it, or a umask/ACL of the operator's).
        let file = crate::files::private_options().open(path).map_err(|e| Error::file("open shm", path, e))?;
        let want = (queue_size + TRAILER) as u64;
        let len = file.metadata().map_err(|e| Error::file("stat shm", path, e))?.len();
        if len == 0 {
            file.set_len(want).map_err(|e| Error::file("ftruncate shm", path, e))?;
        } else if len != want {
            return Err(wrong_size(path, len, want));
        }
        Ok((Self::map(&file, path, queue_size)?, file))
    }

    /// Maps `file` (the object at `path`), checking the length actually
    /// mapped: another process may have truncated or grown the object since
    /// its size was checked, and the region must never reach past its mapping.
    /// (A truncation *after* the mapping would fault on access; no check in
    /// this process can rule that out.)
    pub(crate) fn map(file: &File, path: &Path, queue_size: usize) -> Result<Self, Error> {
        let map = MmapRaw::map_raw(file).map_err(|e| Error::file("mmap shm", path, e))?;
        let (len, want) = (map.len() as u64, (queue_size + TRAILER) as u64);
        Self::from_map(map, queue_size).ok_or_else(|| match len == want {
            true => Error::FileCorrupt {
                path: path.to_owned(),
                detail: format!("queue size {queue_size} is not a power-of-two number of {BLOCK}-byte blocks"),
            },
            false => wrong_size(path, len, want),
        })
    }

    /// The region over `map`, if it is exactly `queue_size + TRAILER` bytes.
    #[cfg(not(tcpshm_loom))]
    fn from_map(map: MmapRaw, queue_size: usize) -> Option<Self> {
        let (base, trailer, mask) = Self::addresses(&map, queue_size)?;
        Some(ShmRegion { map, base, trailer, mask, owner: None })
    }

    /// The first block, the trailer and the block mask of a mapping of
    /// `queue_size + TRAILER` bytes; `None` for a mapping of another length
    /// or a queue size that is not a power-of-two number of blocks.
    fn addresses(map: &MmapRaw, queue_size: usize) -> Option<(*mut u8, *mut u8, u32)> {
        if !(queue_size.is_power_of_two() && queue_size >= BLOCK && map.len() == queue_size + TRAILER) {
            return None;
        }
        let base = map.as_mut_ptr();
        // SAFETY: queue_size < map.len(), so the offset stays inside the mapping.
        let trailer = unsafe { base.add(queue_size) };
        Some((base, trailer, (queue_size / BLOCK) as u32 - 1))
    }

    /// Number of 64-byte blocks (a power of two).
    #[inline]
    pub(crate) fn blocks(&self) -> u32 {
        self.mask + 1
    }

    /// Pointer to the start of block `idx % blocks()`.
    #[inline]
    fn block_ptr(&self, idx: u32) -> *mut u8 {
        let i = (idx & self.mask) as usize;
        // SAFETY: i < blocks, and blocks * BLOCK bytes lie inside the mapping
        // (checked by `addresses`: the mapping is queue_size + TRAILER bytes).
        unsafe { self.base.add(i * BLOCK) }
    }

    /// Pointer to block `idx % blocks()`, for writing it and the `count - 1`
    /// blocks after it (which must not wrap). Under loom the write is
    /// recorded, and the model fails if it races with the other end.
    #[inline]
    pub(crate) fn write_ptr(&self, idx: u32, count: u32) -> *mut u8 {
        #[cfg(tcpshm_loom)]
        self.model.access(idx, count, self.blocks(), true);
        #[cfg(not(tcpshm_loom))]
        let _ = count;
        self.block_ptr(idx)
    }

    /// Pointer to block `idx % blocks()`, for reading it and the `count - 1`
    /// blocks after it (which must not wrap); recorded under loom.
    #[inline]
    pub(crate) fn read_ptr(&self, idx: u32, count: u32) -> *const u8 {
        #[cfg(tcpshm_loom)]
        self.model.access(idx, count, self.blocks(), false);
        #[cfg(not(tcpshm_loom))]
        let _ = count;
        self.block_ptr(idx)
    }

    /// Hints the CPU to bring block `idx % blocks()` into this core's cache
    /// for reading. Not a memory access: it reads or changes nothing the
    /// other end could observe, and may be ignored.
    #[inline]
    pub(crate) fn prefetch(&self, idx: u32) {
        #[cfg(all(target_arch = "x86_64", not(tcpshm_loom)))]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = self.block_ptr(idx) as *const i8;
            // SAFETY: a prefetch has no architectural effect and cannot
            // fault; the pointer is inside the mapping anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p) }
        }
        #[cfg(not(all(target_arch = "x86_64", not(tcpshm_loom))))]
        let _ = idx;
    }

    /// The producer's word: write_idx and the consumed mark, stored together.
    /// This process always accesses it as one 64-bit atomic, never in halves.
    #[cfg(not(tcpshm_loom))]
    #[inline]
    pub(crate) fn producer(&self) -> &AtomicU64 {
        // Every process touches this word only atomically (a C++ peer through
        // aligned 32-bit accesses of its halves, atomic on its hardware; the
        // language's rule against mixed-size atomics does not reach across processes).
        // SAFETY: the offset lies in the trailer of the page-aligned mapping, so
        // it is 8-aligned and in bounds; the mapping lives as long as `self`.
        unsafe { &*(self.trailer.add(WRITE_IDX_OFF) as *const AtomicU64) }
    }

    /// The mark word (see the module docs), beside the producer's word.
    #[cfg(not(tcpshm_loom))]
    #[inline]
    pub(crate) fn mark(&self) -> &AtomicU64 {
        // SAFETY: as in `producer`, 8 bytes further in the same line.
        unsafe { &*(self.trailer.add(MARK_OFF) as *const AtomicU64) }
    }

    /// The consumer's free-running block index.
    #[cfg(not(tcpshm_loom))]
    #[inline]
    pub(crate) fn read_idx(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`, at a 4-aligned offset of the trailer.
        unsafe { &*(self.trailer.add(READ_IDX_OFF) as *const AtomicU32) }
    }

    /// Zeroes the whole object (a reset after the peer's name changed).
    /// Only while neither side is using it: the login handshake guarantees it.
    /// Ordering: plain writes, published to the peer by that handshake (its
    /// socket calls order them before the peer's next access). A crash
    /// halfway leaves indices no queue can have; the client has not stored
    /// the new server's name then, so its next login is a new day again, and
    /// the server zeroes the objects before it reads them
    /// (`Connection::open_shm_emptied`).
    pub(crate) fn zero(&mut self) {
        #[cfg(tcpshm_loom)]
        {
            self.model.access(0, self.blocks(), self.blocks(), true);
            self.model.producer.store(0, std::sync::atomic::Ordering::Relaxed);
            self.model.mark.store(0, std::sync::atomic::Ordering::Relaxed);
            self.model.read_idx.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: the range is exactly the mapping; `&mut self` means no
        // reference into it is alive in this process.
        unsafe { std::ptr::write_bytes(self.map.as_mut_ptr(), 0, self.map.len()) }
    }
}

/// What loom sees of a region (`--cfg tcpshm_loom` builds only): the two index
/// words are loom atomics (so loom explores every value a load may return
/// under the memory model) and each block has a loom cell that records every
/// access the queue makes to it, so a model fails when an access of one end
/// is not ordered after the other end's last access to that block by the
/// index stores and loads. The bytes themselves stay in the mapping. The
/// model's indices start at zero whatever the mapping holds: loom builds run
/// only the models, over anonymous regions.
#[cfg(tcpshm_loom)]
mod loom_model {
    use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};
    use memmap2::MmapRaw;
    use std::sync::Arc;

    use super::ShmRegion;

    pub(crate) struct Model {
        pub(super) producer: AtomicU64,
        pub(super) mark: AtomicU64,
        pub(super) read_idx: AtomicU32,
        blocks: Box<[UnsafeCell<()>]>,
    }

    // SAFETY: the cells hold `()` and are never dereferenced: they only
    // record accesses for loom, which checks them itself across its threads.
    unsafe impl Sync for Model {}

    impl Model {
        /// Records an access to `count` blocks from `idx`, which must not wrap.
        pub(super) fn access(&self, idx: u32, count: u32, blocks: u32, write: bool) {
            let first = (idx & (blocks - 1)) as usize;
            assert!(first + count as usize <= blocks as usize, "an access wraps the ring");
            for cell in &self.blocks[first..first + count as usize] {
                if write {
                    cell.with_mut(|_| ());
                } else {
                    cell.with(|_| ());
                }
            }
        }
    }

    impl ShmRegion {
        pub(super) fn from_map(map: MmapRaw, queue_size: usize) -> Option<Self> {
            let (base, trailer, mask) = ShmRegion::addresses(&map, queue_size)?;
            let blocks = mask + 1;
            let model = Model {
                producer: AtomicU64::new(0),
                mark: AtomicU64::new(0),
                read_idx: AtomicU32::new(0),
                blocks: (0..blocks).map(|_| UnsafeCell::new(())).collect(),
            };
            Some(ShmRegion { map: Arc::new(map), model: Arc::new(model), base, trailer, mask, owner: None })
        }

        /// A zeroed region in anonymous memory, for a model.
        #[cfg(test)]
        pub(crate) fn anonymous(queue_size: usize) -> Self {
            let map = memmap2::MmapMut::map_anon(queue_size + super::TRAILER).expect("anonymous mapping");
            Self::from_map(map.into(), queue_size).expect("a power-of-two queue size")
        }

        /// The same region for the other end.
        #[cfg(test)]
        pub(crate) fn share(&self) -> Self {
            ShmRegion {
                map: self.map.clone(),
                model: self.model.clone(),
                base: self.base,
                trailer: self.trailer,
                mask: self.mask,
                owner: None,
            }
        }

        /// The producer's word, in the model.
        pub(crate) fn producer(&self) -> &AtomicU64 {
            &self.model.producer
        }

        /// The mark word, in the model.
        pub(crate) fn mark(&self) -> &AtomicU64 {
            &self.model.mark
        }

        /// The consumer's index, in the model.
        pub(crate) fn read_idx(&self) -> &AtomicU32 {
            &self.model.read_idx
        }
    }
}

#[cfg(all(test, not(tcpshm_loom)))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A new object is readable and writable by its owner only.
    #[test]
    fn a_new_object_is_created_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.shm");
        let _region = ShmRegion::open(&path, 256).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), (256 + TRAILER) as u64);
    }

    /// The object changed size between `open`'s check and the mapping: the
    /// mapping's own length is checked, and the error names the file.
    #[test]
    fn a_mapping_of_the_wrong_length_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.shm");
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        for len in [0, 100, 256 + TRAILER - 1, 256 + TRAILER + 64] {
            file.set_len(len as u64).unwrap();
            let err = ShmRegion::map(&file, &path, 256).err().unwrap_or_else(|| panic!("{len} bytes mapped"));
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        }
        file.set_len((256 + TRAILER) as u64).unwrap();
        assert_eq!(ShmRegion::map(&file, &path, 256).unwrap().blocks(), 4);
        // A queue size that is no power-of-two number of blocks is refused too.
        file.set_len((192 + TRAILER) as u64).unwrap();
        let err = ShmRegion::map(&file, &path, 192).err().expect("3 blocks");
        assert!(err.to_string().contains("power-of-two"), "{err}");
    }
}
