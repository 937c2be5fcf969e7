//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`),
//! and the tests that replay their seeds and regression inputs.
//!
//! Each function takes arbitrary bytes and drives the crate's own code with
//! them the way a peer, a file or a shared-memory producer could: nothing
//! they contain may panic or reach outside a buffer. The functions also
//! assert what the code promises (a delivered body matches its header, acks
//! keep the sequence numbers consistent, a queue reopens as it was left), so
//! libFuzzer reports a broken promise like a crash.
//!
//! Scratch files are `tcpshm-fuzz-<pid>-*` in `/dev/shm` (else the system
//! temporary directory), written by each run and removed at its end; the
//! tests use their own temporary directories instead.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use zerocopy::FromBytes;

use crate::conf::Conf;
use crate::msg::{MsgHeader, HEADER_SIZE};
use crate::ptcp::queue::PtcpQueue;
use crate::ptcp::Durability;

mod login;
mod net_stream;
mod ptcp_file;
mod shm_consumer;
mod tcp_frames;

pub use login::login;
pub use net_stream::net_stream;
pub use ptcp_file::ptcp_file;
pub use shm_consumer::shm_consumer;
pub use tcp_frames::tcp_frames;

/// Small buffers and queue, so growth, compaction and a full queue are
/// reached with short inputs; a maximum that is a power of two.
#[derive(Debug)]
struct FrameLe;
impl Conf for FrameLe {
    const TCP_QUEUE_SIZE: usize = 256;
    const TCP_RECV_BUF_INIT_SIZE: usize = 64;
    const TCP_RECV_BUF_MAX_SIZE: usize = 256;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

/// Big-endian wire order, a tiny initial buffer and a maximum that is not a
/// power of two (growth clamps to it).
#[derive(Debug)]
struct FrameBe;
impl Conf for FrameBe {
    const TO_LITTLE_ENDIAN: bool = false;
    const NAME_SIZE: usize = 8;
    const TCP_QUEUE_SIZE: usize = 192;
    const TCP_RECV_BUF_INIT_SIZE: usize = 24;
    const TCP_RECV_BUF_MAX_SIZE: usize = 200;
    type LoginUserData = u64;
    type LoginRspUserData = [u8; 3];
    type ConnectionUserData = ();
}

/// Where a run's scratch files go: `<dir>/<prefix><name>`.
struct Scratch {
    dir: PathBuf,
    prefix: String,
}

impl Scratch {
    /// This process's scratch place: `tcpshm-fuzz-<pid>-*` files in tmpfs
    /// when there is one (no journal: several times the executions per
    /// second of a disk), else in the system temporary directory.
    fn process() -> &'static Scratch {
        static SCRATCH: OnceLock<Scratch> = OnceLock::new();
        SCRATCH.get_or_init(|| {
            let shm = Path::new(crate::shm::SHM_DIR);
            let dir = if shm.is_dir() { shm.to_owned() } else { std::env::temp_dir() };
            Scratch { dir, prefix: format!("tcpshm-fuzz-{}-", std::process::id()) }
        })
    }

    fn file(&self, name: &str) -> ScratchFile {
        ScratchFile(self.dir.join(format!("{}{name}", self.prefix)))
    }
}

/// A scratch file's path; the file is removed when the run is over.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::ops::Deref for ScratchFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchFile {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// Reads an input front to back; past its end every read gives zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let n = N.min(self.0.len());
        a[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        a
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

// ------------------------------------------- a PtcpQueue driven by a target

/// Pushes a message of `len` bytes whose body repeats `fill`; false if full.
fn push_msg<C: Conf>(q: &mut PtcpQueue<C>, msg_type: u16, len: usize, fill: u8) -> bool {
    if !q.alloc(len) {
        return false;
    }
    let body = q.pending_body();
    assert_eq!(body.len(), len, "allocated body has the asked length");
    body.fill(fill);
    q.push(msg_type);
    true
}

/// Everything a queue would resend after a login: its messages in order.
fn resend_bytes<C: Conf>(q: &mut PtcpQueue<C>) -> Vec<u8> {
    let start = q.seqs().1;
    assert_eq!(q.login_ack(start), Ok(()), "acking seq_start is always accepted");
    let mut out = vec![];
    loop {
        let chunk = q.sendable();
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(chunk);
        let n = chunk.len();
        q.sent(n);
    }
    assert!(q.all_sent());
    out
}

/// Checks that `bytes` are exactly `count` well-formed frames.
fn assert_frames<C: Conf>(mut bytes: &[u8], count: u32) {
    let mut n = 0u32;
    while !bytes.is_empty() {
        let (h, _) = MsgHeader::read_from_prefix(bytes).expect("a whole header");
        let h = h.swap_wire::<C>();
        assert!(h.size as usize >= HEADER_SIZE, "queued message with size {}", h.size);
        assert!(h.padded_size() <= bytes.len(), "queued message runs past the queue");
        bytes = &bytes[h.padded_size()..];
        n += 1;
    }
    assert_eq!(n, count, "queued frames and seq_end - seq_start");
}

/// Closes the queue (its ack committed) and reopens it: it must load, with
/// the same sequence numbers and the same messages to resend.
fn reopen_same<C: Conf>(mut q: PtcpQueue<C>, path: &Path) -> PtcpQueue<C> {
    q.commit_ack();
    let seqs = q.seqs();
    let queued = resend_bytes(&mut q);
    assert_frames::<C>(&queued, seqs.2.wrapping_sub(seqs.1));
    drop(q);
    let mut q = match PtcpQueue::<C>::open(path, Durability::Never) {
        Ok(q) => q,
        Err(e) => panic!("a queue this library left does not reopen: {e}"),
    };
    assert_eq!(q.seqs(), seqs, "reopened sequence numbers");
    assert_eq!(resend_bytes(&mut q), queued, "reopened messages");
    q
}

#[cfg(test)]
mod tests;
