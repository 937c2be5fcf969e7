//! The persistent send queue of a TCP connection, memory-mapped from
//! `<ptcp_dir>/<local>_<remote>.ptcp`.
//!
//! The file is ours, not the C++ layout: a 64-byte header (magic, version,
//! the Conf sizes it was made with, the indices) and then `TCP_QUEUE_SIZE`
//! bytes of 8-byte blocks holding the unacknowledged messages in wire order,
//! ready to be written to the socket as they are.
//!
//! The blocks form a ring: a message never wraps; when it does not fit before
//! the end it starts at block 0 and `wrap_pos` records where the lap ended.
//! The C++ queue compacts with `memmove` instead, which a crash in the middle
//! leaves half-moved under indices that still point at the old place. Here
//! every state change is one aligned 8-byte store of a packed index pair
//! (`write_pos|wrap_pos`, `read_pos|read_seq`), ordered so that the file is
//! consistent after a crash between any two instructions:
//!
//! * `write_pos >= read_pos`: the messages are `[read_pos, write_pos)`;
//! * `write_pos < read_pos`: they are `[read_pos, wrap_pos)` then `[0, write_pos)`.

use std::fs::OpenOptions;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed, Ordering::Release};

use memmap2::MmapRaw;
use zerocopy::{FromBytes, IntoBytes};

use super::format::FILE_HEADER_SIZE;
use super::format::{pack, reset_stores, unpack, walk, Indices, ResetStore, BLK};
use crate::conf::Conf;
use crate::error::Error;
use crate::files;
use crate::msg::{MsgHeader, HEADER_SIZE};

/// First bytes of every queue file of ours.
pub const PTCP_MAGIC: [u8; 8] = *b"TCPSHMPQ";
/// Version of the file layout.
pub const PTCP_VERSION: u32 = 1;

/// When the queue file is flushed to disk (`msync`). Without a flush, a
/// crash of the process loses nothing (the page cache survives it); a power
/// loss may lose what the kernel had not yet written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Never flush, as the C++ original; the kernel writes back when it likes.
    #[default]
    Never,
    /// Flush the changed pages on every push and every pop, before returning:
    /// a message's bytes before the index that makes it part of the queue.
    /// A failed flush is reported by
    /// [`Connection::take_flush_error`](crate::Connection::take_flush_error).
    EveryPush,
    /// Flush only when the user calls `Connection::flush`.
    OnDemand,
}

impl Durability {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Durability::Never => 0,
            Durability::EveryPush => 1,
            Durability::OnDemand => 2,
        }
    }

    /// Decodes the byte stored in a queue file header.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Durability::Never),
            1 => Some(Durability::EveryPush),
            2 => Some(Durability::OnDemand),
            _ => None,
        }
    }
}

/// The file header. Indices count 8-byte blocks.
#[repr(C)]
pub(crate) struct FileHeader {
    pub(crate) magic: [u8; 8],
    pub(crate) version: u32,
    pub(crate) queue_size: u32,
    pub(crate) name_size: u32,
    pub(crate) little_endian: u8,
    pub(crate) durability: AtomicU8,
    _pad: [u8; 2],
    /// `write_pos | wrap_pos << 32`.
    pub(crate) write: AtomicU64,
    /// `read_pos | read_seq << 32`: oldest unacknowledged message and its number.
    pub(crate) read: AtomicU64,
    /// Number of the peer's messages consumed.
    pub(crate) ack_seq: AtomicU32,
    _reserved: [u8; 20],
}

const _: () = {
    use super::format::*;
    use std::mem::offset_of;
    assert!(std::mem::size_of::<FileHeader>() == FILE_HEADER_SIZE);
    assert!(offset_of!(FileHeader, version) == OFF_VERSION);
    assert!(offset_of!(FileHeader, queue_size) == OFF_QUEUE_SIZE);
    assert!(offset_of!(FileHeader, name_size) == OFF_NAME_SIZE);
    assert!(offset_of!(FileHeader, little_endian) == OFF_LITTLE_ENDIAN);
    assert!(offset_of!(FileHeader, durability) == OFF_DURABILITY);
    assert!(offset_of!(FileHeader, write) == OFF_WRITE);
    assert!(offset_of!(FileHeader, read) == OFF_READ);
    assert!(offset_of!(FileHeader, ack_seq) == OFF_ACK);
};

/// Why a peer's ack was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckError {
    /// The peer acknowledged messages beyond `seq_end`.
    OutOfRange,
    /// Walking the acknowledged messages met an impossible size.
    Corrupt,
}

/// The persistent queue of one connection's outgoing TCP messages.
pub(crate) struct PtcpQueue<C: Conf> {
    map: MmapRaw,
    /// Holds the file's exclusive lock while the queue is open.
    _file: std::fs::File,
    write_pos: u32,
    wrap_pos: u32,
    read_pos: u32,
    read_seq: u32,
    ack_seq: u32,
    /// `ack_seq` is ahead of the file (a pop not yet committed).
    ack_dirty: bool,
    /// Messages between read and write (so `seq_end = read_seq + msg_count`).
    msg_count: u32,
    /// Byte offset of the next byte to write to the socket.
    send_pos: usize,
    /// Size (header included) and block of the allocated, unpushed message.
    pending_size: u16,
    pending_pos: u32,
    durability: Durability,
    /// The first failed flush under [`Durability::EveryPush`] not yet reported.
    flush_error: Option<std::io::Error>,
    _conf: PhantomData<fn() -> C>,
}

impl<C: Conf> PtcpQueue<C> {
    const BLOCKS: u32 = (C::TCP_QUEUE_SIZE / BLK) as u32;
    const FILE_SIZE: u64 = (FILE_HEADER_SIZE + C::TCP_QUEUE_SIZE) as u64;

    /// Opens the queue file at `path`, creating it empty if it does not exist,
    /// and takes it as its one owner ([`Error::InUse`] if another has it).
    /// An existing file is validated: magic, version, the Conf sizes, and a
    /// walk over every queued message.
    pub(crate) fn open(path: &Path, durability: Durability) -> Result<Self, Error> {
        if !path.exists() {
            Self::create(path)?;
        }
        let file =
            OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::file("open ptcp file", path, e))?;
        files::lock_exclusive(&file, path)?;
        let len = file.metadata().map_err(|e| Error::file("stat ptcp file", path, e))?.len();
        let corrupt = |detail: String| Error::FileCorrupt { path: path.to_owned(), detail };
        if len != Self::FILE_SIZE {
            return Err(corrupt(format!(
                "file has {len} bytes, this configuration's queue file has {}",
                Self::FILE_SIZE
            )));
        }
        let map = MmapRaw::map_raw(&file).map_err(|e| Error::file("mmap ptcp file", path, e))?;
        // The size checked above may have changed before the mapping was
        // made (the file is ours only by an advisory lock): every access
        // below relies on the mapping's own length.
        if map.len() as u64 != Self::FILE_SIZE {
            return Err(corrupt(format!("file changed to {} bytes while it was mapped", map.len())));
        }
        let mut q = PtcpQueue {
            map,
            _file: file,
            write_pos: 0,
            wrap_pos: 0,
            read_pos: 0,
            read_seq: 0,
            ack_seq: 0,
            ack_dirty: false,
            msg_count: 0,
            send_pos: 0,
            pending_size: 0,
            pending_pos: 0,
            durability,
            flush_error: None,
            _conf: PhantomData,
        };
        q.load().map_err(corrupt)?;
        q.hdr().durability.store(durability.to_byte(), Relaxed);
        Ok(q)
    }

    /// Writes a new empty file (mode 0600) beside `path` and links it into
    /// place, so a crash never leaves a half-made file under the real name,
    /// and of two processes creating it at once both end up with the same
    /// file (a rename could replace a file the other already took).
    fn create(path: &Path) -> Result<(), Error> {
        let mut header = [0u8; FILE_HEADER_SIZE];
        header[..8].copy_from_slice(&PTCP_MAGIC);
        header[8..12].copy_from_slice(&PTCP_VERSION.to_ne_bytes());
        header[12..16].copy_from_slice(&(C::TCP_QUEUE_SIZE as u32).to_ne_bytes());
        header[16..20].copy_from_slice(&(C::NAME_SIZE as u32).to_ne_bytes());
        header[20] = C::TO_LITTLE_ENDIAN as u8;
        // A name of this call's own, so creators in other threads or
        // processes never write into one temporary file.
        static CREATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CREATED.fetch_add(1, Relaxed);
        let tmp = path.with_extension(format!("ptcp.{}.{n}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = files::private_options().truncate(true).open(&tmp)?;
            f.write_all(&header)?;
            f.set_len(Self::FILE_SIZE)?;
            f.sync_all()?;
            match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            }
        };
        let made = write();
        let _ = std::fs::remove_file(&tmp);
        made.map_err(|e| Error::file("create ptcp file", path, e))
    }

    fn hdr(&self) -> &FileHeader {
        // The header bytes are never reached through the block slices below,
        // which start after it, and the fields that change are atomics.
        // SAFETY: the mapping is page-aligned, >= FILE_HEADER_SIZE bytes (checked in
        // `open`), outlives `&self`; FileHeader (repr(C) bytes/atomics) is valid for any bits.
        unsafe { &*(self.map.as_ptr() as *const FileHeader) }
    }

    /// Blocks `[pos, pos + len)` (in bytes) of the ring; None if out of range.
    fn bytes(&self, off: usize, len: usize) -> Option<&[u8]> {
        (off.checked_add(len)? <= C::TCP_QUEUE_SIZE).then(|| {
            // `&self` keeps `bytes_mut` (which needs `&mut self`) from making
            // an overlapping mutable slice meanwhile.
            // SAFETY: the range lies inside the blocks (checked above), inside
            // the mapping after the header, which `&self` keeps alive.
            unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(FILE_HEADER_SIZE + off), len) }
        })
    }

    fn bytes_mut(&mut self, off: usize, len: usize) -> Option<&mut [u8]> {
        (off.checked_add(len)? <= C::TCP_QUEUE_SIZE).then(|| {
            // SAFETY: as in `bytes`; `&mut self` makes this the only slice.
            unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(FILE_HEADER_SIZE + off), len) }
        })
    }

    /// Reads and validates the header and the queued messages.
    fn load(&mut self) -> Result<(), String> {
        let h = self.hdr();
        if h.magic != PTCP_MAGIC {
            return Err("not a tcpshm queue file (bad magic)".into());
        }
        if h.version != PTCP_VERSION {
            return Err(format!("queue file version {} (this library reads {PTCP_VERSION})", h.version));
        }
        if h.queue_size as usize != C::TCP_QUEUE_SIZE
            || h.name_size as usize != C::NAME_SIZE
            || h.little_endian != C::TO_LITTLE_ENDIAN as u8
        {
            return Err(format!(
                "made with TCP_QUEUE_SIZE {}, NAME_SIZE {}, TO_LITTLE_ENDIAN {}; this configuration differs",
                h.queue_size,
                h.name_size,
                h.little_endian != 0
            ));
        }
        let (write_pos, wrap_pos) = unpack(h.write.load(Relaxed));
        let (read_pos, read_seq) = unpack(h.read.load(Relaxed));
        let ack_seq = h.ack_seq.load(Relaxed);
        let ix = Indices { write_pos, wrap_pos, read_pos, read_seq, ack_seq };
        // The walk (shared with `inspect`) checks the indices, every message,
        // and repairs the ack from the last message if a crash cut its store.
        let walked = walk(&ix, self.bytes(0, C::TCP_QUEUE_SIZE).unwrap_or_default(), C::TO_LITTLE_ENDIAN, |_, _| {})?;
        (self.write_pos, self.wrap_pos, self.read_pos) = (write_pos, wrap_pos, read_pos);
        (self.read_seq, self.ack_seq) = (read_seq, walked.ack_seq);
        if walked.ack_seq != ack_seq {
            self.hdr().ack_seq.store(walked.ack_seq, Relaxed);
        }
        self.msg_count = walked.count;
        self.send_pos = self.read_pos as usize * BLK;
        Ok(())
    }

    /// The indices as they are in memory.
    #[inline]
    fn ix(&self) -> Indices {
        Indices {
            write_pos: self.write_pos,
            wrap_pos: self.wrap_pos,
            read_pos: self.read_pos,
            read_seq: self.read_seq,
            ack_seq: self.ack_seq,
        }
    }

    #[inline]
    fn wrapped(&self) -> bool {
        self.ix().wrapped()
    }

    /// The block of the message at or after `pos` in queue order (following
    /// the wrap), or None at the end of the queue.
    #[inline]
    fn next_pos(&self, pos: u32) -> Option<u32> {
        self.ix().next_pos(pos)
    }

    fn header_at(&self, pos: u32) -> Option<MsgHeader> {
        let b = self.bytes(pos as usize * BLK, HEADER_SIZE)?;
        Some(MsgHeader::read_from_bytes(b).ok()?.swap_wire::<C>())
    }

    /// Blocks of the message at `pos` with header `h`, if it lies inside its segment.
    #[inline]
    fn msg_blocks(&self, pos: u32, h: MsgHeader) -> Option<u32> {
        self.ix().msg_blocks(pos, h.size)
    }

    /// `(ack_seq, seq_start, seq_end)` as the login exchanges them.
    pub(crate) fn seqs(&self) -> (u32, u32, u32) {
        (self.ack_seq, self.read_seq, self.read_seq.wrapping_add(self.msg_count))
    }

    /// Number of the peer's messages consumed.
    #[inline]
    pub(crate) fn my_ack(&self) -> u32 {
        self.ack_seq
    }

    /// Counts one more peer message as consumed (a pop), in memory until
    /// [`commit_ack`](Self::commit_ack) or the next push.
    #[inline]
    pub(crate) fn inc_ack(&mut self) {
        self.ack_seq = self.ack_seq.wrapping_add(1);
        self.ack_dirty = true;
    }

    /// Forgets the pops counted since the last commit, as a crash would;
    /// true if there were any.
    pub(crate) fn drop_uncommitted_pops(&mut self) -> bool {
        let dirty = std::mem::take(&mut self.ack_dirty);
        self.ack_seq = self.hdr().ack_seq.load(Relaxed);
        dirty
    }

    /// Stores the ack of the pops counted since the last commit.
    #[inline]
    pub(crate) fn commit_ack(&mut self) {
        if std::mem::take(&mut self.ack_dirty) {
            // Release: after every store before it, a reply's among them
            // (see `push`); it covers no bytes of its own.
            self.hdr().ack_seq.store(self.ack_seq, Release);
            if self.durability == Durability::EveryPush {
                self.flush_range(0, FILE_HEADER_SIZE);
            }
        }
    }

    /// Flushes `len` bytes of the file from `off` (under `EveryPush`),
    /// keeping the first failure for [`take_flush_error`](Self::take_flush_error).
    fn flush_range(&mut self, off: usize, len: usize) {
        if let Err(e) = self.map.flush_range(off, len) {
            self.flush_error.get_or_insert(e);
        }
    }

    /// The first flush that failed under [`Durability::EveryPush`] since the
    /// last call: the pushes and pops since then may not survive a power loss.
    pub(crate) fn take_flush_error(&mut self) -> Option<std::io::Error> {
        self.flush_error.take()
    }

    /// Reserves room for a body of `body_len` bytes; false if it does not fit.
    pub(crate) fn alloc(&mut self, body_len: usize) -> bool {
        let size = body_len + HEADER_SIZE;
        if size > u16::MAX as usize {
            return false;
        }
        let need = size.div_ceil(BLK) as u32;
        let n = Self::BLOCKS;
        let pos = if !self.wrapped() {
            if self.write_pos + need <= n {
                self.write_pos
            } else if self.write_pos == self.read_pos {
                if need > n {
                    return false;
                }
                self.relocate_empty();
                0
            } else if need < self.read_pos {
                0
            } else {
                return false;
            }
        } else if self.write_pos + need < self.read_pos {
            self.write_pos
        } else {
            return false;
        };
        self.pending_pos = pos;
        self.pending_size = size as u16;
        true
    }

    /// Moves an empty queue's indices to block 0, consistent at every step.
    fn relocate_empty(&mut self) {
        let at = self.write_pos;
        // write 0 < read: the queue reads as [at, at) + [0, 0), empty.
        self.hdr().write.store(pack(0, at), Release);
        // read 0 == write 0: empty. Release keeps it after the first store.
        self.hdr().read.store(pack(0, self.read_seq), Release);
        (self.write_pos, self.wrap_pos, self.read_pos, self.send_pos) = (0, at, 0, 0);
    }

    /// Where the body of the allocated message lies: (offset, length).
    fn pending_range(&self) -> (usize, usize) {
        let off = self.pending_pos as usize * BLK + HEADER_SIZE;
        (off, (self.pending_size as usize).saturating_sub(HEADER_SIZE))
    }

    /// The body of the allocated message. The frame's last word is zeroed
    /// first, so its padding goes out as zeros (the body, written over the
    /// rest, never reaches it) without a variable-length fill per push.
    #[inline]
    pub(crate) fn pending_body(&mut self) -> &mut [u8] {
        // pending_size >= HEADER_SIZE after an alloc, so the frame has a last word.
        let last_word = self.pending_pos as usize * BLK + (self.pending_size as usize).saturating_sub(1) / BLK * BLK;
        if let Some(last) = self.bytes_mut(last_word, BLK) {
            last.copy_from_slice(&[0; BLK]);
        }
        let (off, len) = self.pending_range();
        self.bytes_mut(off, len).unwrap_or_default()
    }

    /// Commits the allocated message with the current ack; a no-op if nothing
    /// is allocated. It is queued; sending is the link's business.
    ///
    /// The header carries the ack of every pop so far, committed or not, and
    /// the write index is stored before the ack: a crash between the two
    /// leaves a last message one pop ahead of the file, which `load` takes
    /// as the ack. So a reply and the pop of the message it answers become
    /// durable in one store.
    // Out of line: inlined into `Slot::push`, it made that too large to be
    // inlined into a shared-memory sender's loop (callgrind: 11.30M against
    // 11.09M instructions for 21,000 shm round trips of the latency bench).
    #[inline(never)]
    pub(crate) fn push(&mut self, msg_type: u16) {
        if self.pending_size == 0 {
            return;
        }
        let size = self.pending_size as usize;
        let pos = self.pending_pos;
        let blocks = size.div_ceil(BLK) as u32;
        let header = MsgHeader { size: size as u16, msg_type, ack_seq: self.ack_seq }.swap_wire::<C>();
        if let Some(b) = self.bytes_mut(pos as usize * BLK, HEADER_SIZE) {
            b.copy_from_slice(header.as_bytes());
        }
        let (write_pos, wrap_pos) = if pos == self.write_pos {
            (pos + blocks, self.wrap_pos)
        } else {
            (blocks, self.write_pos) // started the next lap
        };
        if self.durability == Durability::EveryPush {
            return self.publish_durably(pos, blocks, write_pos, wrap_pos);
        }
        self.publish(write_pos, wrap_pos);
    }

    /// Makes the pushed message part of the queue: the write index, then
    /// the ack of the pops it carries.
    #[inline]
    fn publish(&mut self, write_pos: u32, wrap_pos: u32) {
        // Release: the message's header and body (plain stores above and
        // the user's writes through the slot) are in the file before the
        // index that makes them part of the queue, at any crash.
        self.hdr().write.store(pack(write_pos, wrap_pos), Release);
        (self.write_pos, self.wrap_pos) = (write_pos, wrap_pos);
        self.msg_count += 1;
        self.pending_size = 0;
        if std::mem::take(&mut self.ack_dirty) {
            // Release: after the write index, so a crash between the two
            // leaves the reply without its pop (repaired by `load`), never
            // the pop without its reply.
            self.hdr().ack_seq.store(self.ack_seq, Release);
        }
    }

    /// [`publish`](Self::publish) under [`Durability::EveryPush`]: the
    /// message's blocks reach the disk before the index that covers them
    /// (the kernel writes pages back in any order, so the header page could
    /// otherwise reach it first), and the indices after. Out of line, so the
    /// flushes cost the default policy's push nothing.
    #[cold]
    #[inline(never)]
    fn publish_durably(&mut self, pos: u32, blocks: u32, write_pos: u32, wrap_pos: u32) {
        self.flush_range(FILE_HEADER_SIZE + pos as usize * BLK, blocks as usize * BLK);
        self.publish(write_pos, wrap_pos);
        self.flush_range(0, FILE_HEADER_SIZE);
    }

    /// The next contiguous bytes to write to the socket (empty if all is sent).
    pub(crate) fn sendable(&mut self) -> &[u8] {
        if self.wrapped() && self.send_pos == self.wrap_pos as usize * BLK {
            self.send_pos = 0;
        }
        let end = if self.wrapped() && self.send_pos >= self.read_pos as usize * BLK {
            self.wrap_pos as usize * BLK
        } else {
            self.write_pos as usize * BLK
        };
        let start = self.send_pos.min(end);
        self.bytes(start, end - start).unwrap_or_default()
    }

    /// Records that `n` bytes of [`sendable`](Self::sendable) were written.
    pub(crate) fn sent(&mut self, n: usize) {
        self.send_pos += n;
    }

    /// Whether everything queued has been written to the socket.
    pub(crate) fn all_sent(&self) -> bool {
        self.send_pos == self.write_pos as usize * BLK
    }

    /// Bytes from the oldest queued message to the send position.
    fn sent_span(&self) -> usize {
        let read = self.read_pos as usize * BLK;
        if self.wrapped() && self.send_pos < read {
            (self.wrap_pos - self.read_pos) as usize * BLK + self.send_pos
        } else {
            self.send_pos - read
        }
    }

    /// Applies the peer's ack: drops every message numbered below `ack`.
    /// Stale acks (at or below `seq_start`) are ignored, as resent messages
    /// carry the ack of their push time; acks beyond `seq_end` are refused.
    #[inline]
    pub(crate) fn ack(&mut self, ack: u32) -> Result<(), AckError> {
        // Every received header carries an ack, most of them stale.
        let n = ack.wrapping_sub(self.read_seq);
        if n as i32 <= 0 {
            return Ok(());
        }
        self.drop_acked(ack, n)
    }

    /// Drops the `n` oldest messages, acked by `ack`.
    #[inline(never)]
    fn drop_acked(&mut self, ack: u32, n: u32) -> Result<(), AckError> {
        if n > self.msg_count {
            return Err(AckError::OutOfRange);
        }
        let sent_span = self.sent_span();
        let mut pos = self.read_pos;
        for _ in 0..n {
            pos = self.next_pos(pos).ok_or(AckError::Corrupt)?;
            let h = self.header_at(pos).ok_or(AckError::Corrupt)?;
            pos += self.msg_blocks(pos, h).ok_or(AckError::Corrupt)?;
        }
        let dropped = if self.wrapped() && pos < self.read_pos {
            (self.wrap_pos - self.read_pos + pos) as usize * BLK
        } else {
            (pos - self.read_pos) as usize * BLK
        };
        if self.wrapped() && pos == self.wrap_pos {
            pos = 0;
        }
        // Release, though it covers no bytes: the file's stores stay in
        // program order for a reader of the file (`inspect`), at no cost on
        // x86. Not flushed under `EveryPush`: an ack lost to a power cut
        // only keeps messages the peer has, which its next login acks again.
        self.hdr().read.store(pack(pos, ack), Release);
        (self.read_pos, self.read_seq) = (pos, ack);
        self.msg_count -= n;
        // An ack of everything sent, or of more (a resend after a login
        // races the ack of what the peer already had), leaves sending at
        // the new oldest message. At exactly what was sent this also moves
        // a send position left at the end of a lap to block 0 where the
        // push after it went: kept there it would stall the queue.
        if dropped >= sent_span {
            self.send_pos = pos as usize * BLK;
        }
        Ok(())
    }

    /// Applies the ack of a login and rewinds sending to the oldest message.
    pub(crate) fn login_ack(&mut self, ack: u32) -> Result<(), AckError> {
        self.ack(ack)?;
        self.send_pos = self.read_pos as usize * BLK;
        Ok(())
    }

    /// Empties the queue and zeroes the sequence numbers (a new server name).
    /// Every intermediate state is a consistent, empty-or-shrinking queue.
    pub(crate) fn reset(&mut self) {
        let h = self.hdr();
        // The same stores in the same order as `inspect::reset_file`.
        for store in reset_stores(self.write_pos, self.read_seq) {
            // Release: each store after the ones before it, the order
            // that keeps every intermediate state consistent.
            match store {
                ResetStore::Read(v) => h.read.store(v, Release),
                ResetStore::Write(v) => h.write.store(v, Release),
                ResetStore::Ack(v) => h.ack_seq.store(v, Release),
            }
        }
        (self.write_pos, self.wrap_pos, self.read_pos, self.read_seq) = (0, 0, 0, 0);
        (self.ack_seq, self.msg_count, self.send_pos, self.pending_size) = (0, 0, 0, 0);
        self.ack_dirty = false;
        if self.durability != Durability::Never {
            self.flush_range(0, FILE_HEADER_SIZE + C::TCP_QUEUE_SIZE);
        }
    }

    /// Flushes the whole file to disk.
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        self.map.flush()
    }
}

#[cfg(test)]
mod tests;
