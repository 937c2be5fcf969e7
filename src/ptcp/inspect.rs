//! Reading a ptcp directory's files without a `Conf`: what the operator's
//! tool `tcpshm-ptcp` shows, and its reset.
//!
//! A queue file says in its header which queue size, name size and byte
//! order it was made with, so [`QueueFile::read`] works on the file of any
//! configuration. It validates exactly as the library does when it opens a
//! queue (the same walk over the same indices, see `format.rs`), so a file
//! it reads is one the library opens, and a file it refuses the library
//! refuses for the same reason.
//!
//! Reading is a copy of the file (`std::fs::read`): a snapshot, consistent
//! when no process has the queue open. [`reset_file`] writes; it is meant
//! for files no process has open (stop both sides first).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub use super::format::Indices;
use super::format::{
    reset_stores, unpack, walk, ResetStore, BLK, FILE_HEADER_SIZE, OFF_ACK, OFF_DURABILITY, OFF_LITTLE_ENDIAN,
    OFF_NAME_SIZE, OFF_QUEUE_SIZE, OFF_READ, OFF_VERSION, OFF_WRITE,
};
use super::{Durability, PTCP_MAGIC, PTCP_VERSION};
use crate::error::Error;
use crate::msg::valid_name;

/// Largest `TCP_QUEUE_SIZE` a configuration may have.
const MAX_QUEUE_SIZE: u32 = 1 << 30;
/// Largest `NAME_SIZE` a configuration may have.
pub const MAX_NAME_SIZE: u32 = 256;

/// One message waiting in a queue file for the peer's ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedMsg {
    /// Its sequence number.
    pub seq: u32,
    /// The 8-byte block of the ring where it starts.
    pub block: u32,
    /// The application's message type.
    pub msg_type: u16,
    /// The header's size field: body plus the 8-byte header.
    pub size: u16,
    /// The ack it carries (this side's ack when it was pushed).
    pub ack_seq: u32,
}

/// A validated queue file: its header and the messages it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFile {
    /// `TCP_QUEUE_SIZE` of the configuration that made it: bytes of the ring.
    pub queue_size: u32,
    /// `NAME_SIZE` of the configuration that made it.
    pub name_size: u32,
    /// Byte order of the message headers (`TO_LITTLE_ENDIAN`).
    pub little_endian: bool,
    /// The durability byte as stored (the policy of the last opener).
    pub durability: u8,
    /// The index words, as stored.
    pub indices: Indices,
    /// The ack the library would use: the stored one, or one more when a
    /// crash cut the ack's store after the last reply's (see [`ack_repaired`](Self::ack_repaired)).
    pub ack_seq: u32,
    /// The queued messages, oldest first.
    pub messages: Vec<QueuedMsg>,
}

/// The header of a file that is ours, before its indices are checked.
struct Head {
    queue_size: u32,
    name_size: u32,
    little_endian: bool,
    durability: u8,
    indices: Indices,
}

fn ne_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn ne_u64(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap_or_default())
}

impl Head {
    /// Checks that `head` (the file's first bytes, up to 64) starts a queue
    /// file of ours that is `len` bytes long, and reads it.
    fn parse(head: &[u8], len: u64) -> Result<Head, String> {
        let magic_len = head.len().min(PTCP_MAGIC.len());
        if head[..magic_len] != PTCP_MAGIC[..magic_len] {
            return Err("not a tcpshm queue file (bad magic)".into());
        }
        if head.len() < FILE_HEADER_SIZE {
            return Err(format!("truncated: {len} bytes, shorter than the {FILE_HEADER_SIZE}-byte header"));
        }
        let version = ne_u32(head, OFF_VERSION);
        if version != PTCP_VERSION {
            return Err(format!("queue file version {version} (this library reads {PTCP_VERSION})"));
        }
        let queue_size = ne_u32(head, OFF_QUEUE_SIZE);
        if queue_size == 0 || !queue_size.is_multiple_of(BLK as u32) || queue_size > MAX_QUEUE_SIZE {
            return Err(format!("impossible queue size {queue_size} in the header"));
        }
        let name_size = ne_u32(head, OFF_NAME_SIZE);
        if !(2..=MAX_NAME_SIZE).contains(&name_size) {
            return Err(format!("impossible name size {name_size} in the header"));
        }
        let little_endian = match head[OFF_LITTLE_ENDIAN] {
            0 => false,
            1 => true,
            b => return Err(format!("impossible byte-order flag {b} in the header")),
        };
        let want = (FILE_HEADER_SIZE as u64) + queue_size as u64;
        if len != want {
            let what = if len < want { "truncated: " } else { "" };
            return Err(format!("{what}file has {len} bytes, its header's queue size {queue_size} needs {want}"));
        }
        let (write_pos, wrap_pos) = unpack(ne_u64(head, OFF_WRITE));
        let (read_pos, read_seq) = unpack(ne_u64(head, OFF_READ));
        let ack_seq = ne_u32(head, OFF_ACK);
        Ok(Head {
            queue_size,
            name_size,
            little_endian,
            durability: head[OFF_DURABILITY],
            indices: Indices { write_pos, wrap_pos, read_pos, read_seq, ack_seq },
        })
    }
}

impl QueueFile {
    /// Validates the bytes of a whole queue file and lists its messages.
    /// The error says what is wrong, in the library's words.
    pub fn parse(bytes: &[u8]) -> Result<QueueFile, String> {
        let head = Head::parse(&bytes[..bytes.len().min(FILE_HEADER_SIZE)], bytes.len() as u64)?;
        let ix = head.indices;
        let mut messages = vec![];
        let walked = walk(&ix, &bytes[FILE_HEADER_SIZE..], head.little_endian, |block, h| {
            let seq = ix.read_seq.wrapping_add(messages.len() as u32);
            messages.push(QueuedMsg { seq, block, msg_type: h.msg_type, size: h.size, ack_seq: h.ack_seq });
        })?;
        Ok(QueueFile {
            queue_size: head.queue_size,
            name_size: head.name_size,
            little_endian: head.little_endian,
            durability: head.durability,
            indices: ix,
            ack_seq: walked.ack_seq,
            messages,
        })
    }

    /// Reads and validates the queue file at `path`.
    pub fn read(path: &Path) -> Result<QueueFile, Error> {
        let corrupt = |detail: String| Error::FileCorrupt { path: path.to_owned(), detail };
        let len = std::fs::metadata(path).map_err(|e| Error::file("stat ptcp file", path, e))?.len();
        if len > FILE_HEADER_SIZE as u64 + MAX_QUEUE_SIZE as u64 {
            // Not read into memory: no queue file is this large.
            check_header(path)?;
            return Err(corrupt(format!("file has {len} bytes, more than any queue file")));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::file("read ptcp file", path, e))?;
        QueueFile::parse(&bytes).map_err(corrupt)
    }

    /// The durability policy stored in the header, if the byte is a known one.
    pub fn durability_policy(&self) -> Option<Durability> {
        Durability::from_byte(self.durability)
    }

    /// Sequence number of the oldest queued message.
    pub fn seq_start(&self) -> u32 {
        self.indices.read_seq
    }

    /// Sequence number the next pushed message will get.
    pub fn seq_end(&self) -> u32 {
        self.indices.read_seq.wrapping_add(self.messages.len() as u32)
    }

    /// Whether the stored ack is one behind the last message's, which the
    /// library repairs when it opens the file: a crash fell between storing
    /// a reply and storing the pop of the message it answers.
    pub fn ack_repaired(&self) -> bool {
        self.ack_seq != self.indices.ack_seq
    }

    /// Bytes of the ring the queued messages occupy (padding included).
    pub fn used_bytes(&self) -> u64 {
        self.indices.used_blocks() as u64 * BLK as u64
    }

    /// Bytes of the ring not occupied by queued messages.
    pub fn free_bytes(&self) -> u64 {
        (self.queue_size as u64).saturating_sub(self.used_bytes())
    }
}

/// Checks that the file at `path` is a queue file of ours by its header and
/// size, whatever its indices and messages hold: the files
/// [`reset_file`] accepts.
pub fn check_header(path: &Path) -> Result<(), Error> {
    let file = File::open(path).map_err(|e| Error::file("open ptcp file", path, e))?;
    read_head(&file, path).map(|_| ())
}

/// Reads and checks the header of the open queue file at `path`.
fn read_head(file: &File, path: &Path) -> Result<Head, Error> {
    let len = file.metadata().map_err(|e| Error::file("stat ptcp file", path, e))?.len();
    let mut head = [0u8; FILE_HEADER_SIZE];
    let head = &mut head[..len.min(FILE_HEADER_SIZE as u64) as usize];
    file.read_exact_at(head, 0).map_err(|e| Error::file("read ptcp file", path, e))?;
    Head::parse(head, len).map_err(|detail| Error::FileCorrupt { path: path.to_owned(), detail })
}

/// Checks that the file at `path` is a queue file of ours (header and size;
/// its indices and messages may be broken) and empties it, with ack and
/// sequence numbers 0, as `PtcpQueue::reset` does: the same single 8-byte
/// stores (`pwrite`s of aligned words of the header page) in the same order,
/// so the file is a valid empty queue after each, whatever the moment a crash
/// stops this. Then the file is synced to disk.
///
/// Only for a file no process has open (a process that has it mapped keeps
/// its indices in memory and would not see the reset): one that is open is
/// locked by its owner, and refused with [`Error::InUse`].
pub fn reset_file(path: &Path) -> Result<(), Error> {
    let file =
        OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::file("open ptcp file", path, e))?;
    // A queue in use is its owner's: resetting it under a running side
    // would race with its stores.
    crate::files::lock_exclusive(&file, path)?;
    let ix = read_head(&file, path)?.indices;
    for store in reset_stores(ix.write_pos, ix.read_seq) {
        let put = |word: &[u8], off: usize| file.write_all_at(word, off as u64);
        match store {
            ResetStore::Read(v) => put(&v.to_ne_bytes(), OFF_READ),
            ResetStore::Write(v) => put(&v.to_ne_bytes(), OFF_WRITE),
            ResetStore::Ack(v) => put(&v.to_ne_bytes(), OFF_ACK),
        }
        .map_err(|e| Error::file("write ptcp file", path, e))?;
    }
    file.sync_all().map_err(|e| Error::file("sync ptcp file", path, e))
}

/// Reads the bytes of a client's `.lastserver` file: `Ok(None)` if it names
/// no server yet (all zero: the client never logged in), else the server
/// name, which must be a valid name NUL-terminated within the file. The
/// file is `NAME_SIZE` bytes: `name_size` when known (from the client's
/// queue files), else any size a configuration may have.
pub fn parse_lastserver(bytes: &[u8], name_size: Option<u32>) -> Result<Option<String>, String> {
    let len = bytes.len();
    match name_size {
        Some(n) if len != n as usize => {
            return Err(format!("has {len} bytes, the NAME_SIZE of the client's queue files is {n}"));
        }
        None if !(2..=MAX_NAME_SIZE as usize).contains(&len) => {
            return Err(format!("has {len} bytes, no NAME_SIZE (2 to {MAX_NAME_SIZE}) is that"));
        }
        _ => {}
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(len);
    if end == 0 {
        return Ok(None);
    }
    match std::str::from_utf8(&bytes[..end]) {
        Ok(s) if valid_name(s, len) => Ok(Some(s.to_owned())),
        _ => Err("does not hold a valid server name".into()),
    }
}

/// The local and remote names in the stem of a queue file name,
/// `<local>_<remote>`, if they are two valid names of `name_size`. Names
/// hold no `_`, so a file the library named splits one way only; any other
/// file (of an older version whose names held `_`, say) does not split.
pub fn name_split(stem: &str, name_size: u32) -> Option<(String, String)> {
    let (l, r) = stem.split_once('_')?;
    (valid_name(l, name_size as usize) && valid_name(r, name_size as usize)).then(|| (l.to_owned(), r.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_splits_into_two_valid_names_or_not_at_all() {
        let s = |l: &str, r: &str| Some((l.to_string(), r.to_string()));
        assert_eq!(name_split("client_server", 16), s("client", "server"));
        assert_eq!(name_split("a_b_c", 16), None, "a name holds no `_`");
        assert_eq!(name_split("_a", 16), None);
        assert_eq!(name_split("abc", 16), None);
        // "aaaa" does not fit a NAME_SIZE of 4 (3 chars and the NUL).
        assert_eq!(name_split("aaaa_b", 4), None);
        assert_eq!(name_split("aa_b", 4), s("aa", "b"));
    }

    #[test]
    fn lastserver_contents() {
        assert_eq!(parse_lastserver(&[0; 16], Some(16)), Ok(None));
        assert_eq!(parse_lastserver(b"srv\0\0\0\0\0", None), Ok(Some("srv".into())));
        assert!(parse_lastserver(b"srv\0\0\0\0\0", Some(16)).is_err());
        assert!(parse_lastserver(b"s", None).is_err());
        assert!(parse_lastserver(b"a/b\0", None).is_err());
        assert!(parse_lastserver(b"full", None).is_err(), "no room for the NUL");
        assert!(parse_lastserver(&[0xff, 0xfe, 0], None).is_err());
    }

    #[test]
    fn header_problems_are_named() {
        let err = |b: &[u8]| QueueFile::parse(b).unwrap_err();
        assert!(err(b"").starts_with("truncated"));
        assert!(err(b"TCPSH").starts_with("truncated"));
        assert!(err(b"short").contains("bad magic"));
        assert!(err(&[0; 200]).contains("bad magic"));
        let mut h = vec![0u8; 64 + 16];
        h[..8].copy_from_slice(&PTCP_MAGIC);
        assert!(err(&h).contains("version 0"));
        h[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&PTCP_VERSION.to_ne_bytes());
        assert!(err(&h).contains("queue size 0"));
        h[OFF_QUEUE_SIZE..OFF_QUEUE_SIZE + 4].copy_from_slice(&16u32.to_ne_bytes());
        assert!(err(&h).contains("name size 0"));
        h[OFF_NAME_SIZE..OFF_NAME_SIZE + 4].copy_from_slice(&16u32.to_ne_bytes());
        h[OFF_LITTLE_ENDIAN] = 1;
        let q = QueueFile::parse(&h).unwrap();
        assert_eq!((q.seq_start(), q.seq_end(), q.used_bytes(), q.free_bytes()), (0, 0, 0, 16));
        assert!(err(&h[..70]).starts_with("truncated"));
        h[OFF_WRITE] = 3;
        assert!(err(&h).contains("impossible indices"));
    }
}
