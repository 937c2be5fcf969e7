//! The `ptcp_file` target: the queue file loader and the loaded queue.

use std::path::Path;

use crate::conf::Conf;
use crate::ptcp::queue::PtcpQueue;
use crate::ptcp::{ack_in_range, seq_not_before, Durability, PTCP_MAGIC, PTCP_VERSION};

use crate::ptcp::format::*;
use crate::ptcp::inspect::QueueFile;

use super::{assert_frames, push_msg, reopen_same, resend_bytes, FrameBe, FrameLe, Input, Scratch};

/// The ptcp file loader over arbitrary bytes, twice: the input as a whole
/// file, and `flags` then the input behind a valid header prefix (bit 0
/// picks the big-endian configuration; bit 1 folds the three positions into
/// range so the loader's message walk is reached more often), the rest of
/// the input after the file driving operations on the loaded queue. A queue
/// that loads must behave: acks within range succeed and never find it
/// corrupt, pushes and sends keep it consistent, and it reopens as left.
pub fn ptcp_file(data: &[u8]) {
    ptcp_file_in(Scratch::process(), data);
}

pub(super) fn ptcp_file_in(scratch: &Scratch, data: &[u8]) {
    let raw = scratch.file("raw.ptcp");
    std::fs::write(&raw, data).expect("write scratch ptcp file");
    let inspected = QueueFile::parse(data);
    if let Ok(q) = PtcpQueue::<FrameLe>::open(&raw, Durability::Never) {
        // The operator's tool reads what the library opens, and the same way.
        let inspected = inspected.expect("the library opened a file the operator's tool refuses");
        assert_same_numbers(&q, &inspected);
        exercise_queue(q, &raw, data.get(FILE_HEADER_SIZE..).unwrap_or_default());
    }
    let mut input = Input(data);
    let flags = input.byte();
    if flags & 1 == 0 {
        ptcp_fixed::<FrameLe>(scratch, flags, input);
    } else {
        ptcp_fixed::<FrameBe>(scratch, flags, input);
    }
}

/// Bytes of the valid header prefix `ptcp_fixed` writes in front of its
/// input: magic, version, queue size, name size, byte order.
pub(super) const PTCP_PREFIX: usize = OFF_LITTLE_ENDIAN + 1;

fn ptcp_fixed<C: Conf>(scratch: &Scratch, flags: u8, mut input: Input<'_>) {
    let size = FILE_HEADER_SIZE + C::TCP_QUEUE_SIZE;
    let mut file = vec![0u8; size];
    file[..8].copy_from_slice(&PTCP_MAGIC);
    file[OFF_VERSION..][..4].copy_from_slice(&PTCP_VERSION.to_ne_bytes());
    file[OFF_QUEUE_SIZE..][..4].copy_from_slice(&(C::TCP_QUEUE_SIZE as u32).to_ne_bytes());
    file[OFF_NAME_SIZE..][..4].copy_from_slice(&(C::NAME_SIZE as u32).to_ne_bytes());
    file[OFF_LITTLE_ENDIAN] = C::TO_LITTLE_ENDIAN as u8;
    let body = input.take(size - PTCP_PREFIX);
    file[PTCP_PREFIX..PTCP_PREFIX + body.len()].copy_from_slice(body);
    if flags & 2 != 0 {
        // write_pos, wrap_pos, read_pos folded into 0..=blocks.
        let blocks = (C::TCP_QUEUE_SIZE / 8) as u32 + 1;
        for off in [OFF_WRITE, OFF_WRITE + 4, OFF_WRITE + 8] {
            let v = u32::from_ne_bytes(file[off..off + 4].try_into().unwrap_or_default()) % blocks;
            file[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        }
    }
    let path = scratch.file(if C::TO_LITTLE_ENDIAN { "fixed_le.ptcp" } else { "fixed_be.ptcp" });
    std::fs::write(&path, &file).expect("write scratch ptcp file");
    let inspected = QueueFile::parse(&file);
    let opened = PtcpQueue::<C>::open(&path, Durability::Never);
    // The header is this Conf's, so the tool and the library must agree.
    assert_eq!(opened.is_ok(), inspected.is_ok(), "library {:?}, tool {:?}", opened.as_ref().err(), inspected);
    if let (Ok(q), Ok(inspected)) = (opened, inspected) {
        assert_same_numbers(&q, &inspected);
        exercise_queue(q, &path, input.rest());
    }
}

/// The tool's reading of a file states the numbers the loaded queue has.
fn assert_same_numbers<C: Conf>(q: &PtcpQueue<C>, inspected: &QueueFile) {
    let (ack, start, end) = q.seqs();
    assert_eq!((inspected.ack_seq, inspected.seq_start(), inspected.seq_end()), (ack, start, end));
}

/// Operations on a queue that loaded, at most 64, chosen by `ops`.
fn exercise_queue<C: Conf>(q: PtcpQueue<C>, path: &Path, ops: &[u8]) {
    // What loaded must reopen as it is (the walk validated every message).
    let mut q = reopen_same(q, path);
    let mut input = Input(ops);
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        let before = q.seqs();
        match op % 8 {
            0 | 1 => {
                let ack = if op & 8 != 0 { input.u32() } else { before.1.wrapping_add(input.byte() as i8 as u32) };
                let res = if op % 8 == 0 { q.ack(ack) } else { q.login_ack(ack) };
                match res {
                    Ok(()) => {
                        let after = q.seqs();
                        assert_eq!((after.0, after.2), (before.0, before.2));
                        if seq_not_before(ack, before.1) {
                            assert_eq!(after.1, ack, "an ack within range becomes seq_start");
                        } else {
                            assert_eq!(after.1, before.1, "a stale ack is ignored");
                        }
                    }
                    Err(e) => {
                        assert!(!ack_in_range(ack, before.1, before.2), "ack {ack} in {before:?} refused: {e:?}");
                        assert_eq!(q.seqs(), before);
                    }
                }
            }
            2 => {
                let len = input.byte() as usize * 2;
                if push_msg(&mut q, 3, len, op) {
                    assert_eq!(q.seqs().2, before.2.wrapping_add(1));
                } else {
                    assert_eq!(q.seqs(), before);
                }
            }
            3 => {
                let limit = input.byte() as usize;
                let n = q.sendable().len().min(limit);
                q.sent(n);
            }
            4 => {
                q.inc_ack();
                if op & 8 != 0 {
                    q.commit_ack();
                }
                assert_eq!(q.seqs().0, before.0.wrapping_add(1));
            }
            5 => {
                q.reset();
                assert_eq!(q.seqs(), (0, 0, 0));
                assert!(q.sendable().is_empty());
            }
            6 => q = reopen_same(q, path),
            _ => {
                let queued = resend_bytes(&mut q);
                assert_frames::<C>(&queued, before.2.wrapping_sub(before.1));
            }
        }
    }
    reopen_same(q, path);
}
