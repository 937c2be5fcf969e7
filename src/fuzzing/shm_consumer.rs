//! The `shm_consumer` target: a shared-memory queue's consumer end.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering::{Acquire, Release};

use crate::msg::HEADER_SIZE;
use crate::shm::{ShmReceiver, ShmRegion};

use crate::shm::layout::{READ_IDX_OFF, TRAILER};

use super::{Input, Scratch};

/// The consumer end of a shared-memory queue over an object filled from the
/// input, with the producer (another process, maybe hostile) changing its
/// word and the blocks between calls. Every body returned must lie inside
/// the queue's blocks and match the size in its header.
///
/// Input: a byte picking the queue size (1 to 16 blocks), the producer word
/// (8 bytes), read_idx (4), a consumed mark for `catch_up` (4), the blocks,
/// then operations (at most 256).
pub fn shm_consumer(data: &[u8]) {
    shm_consumer_in(Scratch::process(), data);
}

/// Checks a body the consumer returned against the object's bytes.
fn check_body(file: &std::fs::File, base: usize, queue_size: usize, body: &[u8]) {
    let at = body.as_ptr() as usize;
    assert!(at >= base + HEADER_SIZE && at + body.len() <= base + queue_size, "body outside the blocks");
    let header_off = at - base - HEADER_SIZE;
    assert_eq!(header_off % 64, 0, "body not at the start of a block");
    let mut size = [0u8; 2];
    file.read_exact_at(&mut size, header_off as u64).expect("read scratch shm object");
    assert_eq!(u16::from_ne_bytes(size) as usize, body.len() + HEADER_SIZE, "body length and header size");
}

/// The producer word's halves in memory order: (write_idx, consumed mark).
fn producer_word(region: &ShmRegion) -> (u32, u32) {
    let b = region.producer().load(Acquire).to_ne_bytes();
    (u32::from_ne_bytes([b[0], b[1], b[2], b[3]]), u32::from_ne_bytes([b[4], b[5], b[6], b[7]]))
}

/// Publishes a producer word, as the producer process would.
fn set_producer_word(region: &ShmRegion, write_idx: u32, consumed: u32) {
    let mut word = [0u8; 8];
    word[..4].copy_from_slice(&write_idx.to_ne_bytes());
    word[4..].copy_from_slice(&consumed.to_ne_bytes());
    region.producer().store(u64::from_ne_bytes(word), Release);
}

pub(super) fn shm_consumer_in(scratch: &Scratch, data: &[u8]) {
    let mut input = Input(data);
    let queue_size = 64usize << (input.byte() % 5);
    let producer: [u8; 8] = input.array();
    let read_idx: [u8; 4] = input.array();
    let mut mark = input.u32();
    let mut object = vec![0u8; queue_size + TRAILER];
    let blocks = input.take(queue_size);
    object[..blocks.len()].copy_from_slice(blocks);
    object[queue_size..queue_size + 8].copy_from_slice(&producer);
    object[queue_size + READ_IDX_OFF..queue_size + READ_IDX_OFF + 4].copy_from_slice(&read_idx);
    let path = scratch.file("consumer.shm");
    std::fs::write(&path, &object).expect("write scratch shm object");
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open scratch shm object");

    let open = |path: &Path| {
        let region = ShmRegion::open(path, queue_size).expect("map scratch shm object");
        let base = region.read_ptr(0, 0) as usize;
        ShmReceiver::new(region).ok().map(|rx| (rx, base))
    };
    let Some((mut rx, mut base)) = open(&path) else { return };
    // The producer's view, for its word.
    let producer = ShmRegion::open(&path, queue_size).expect("map scratch shm object");
    rx.catch_up(mark);
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        match op % 8 {
            0 | 1 => {
                if let Ok(Some(msg)) = rx.front() {
                    check_body(&file, base, queue_size, msg.body());
                }
                if op % 8 == 1 {
                    rx.pop();
                }
            }
            2 => {
                let (write_idx, consumed) = producer_word(&producer);
                set_producer_word(&producer, write_idx.wrapping_add(input.byte() as u32 % 20), consumed);
            }
            3 => {
                // The producer writes a message header into a block.
                let block = input.byte() as usize % (queue_size / 64);
                let header: [u8; 8] = input.array();
                file.write_all_at(&header, (block * 64) as u64).expect("write scratch shm object");
            }
            4 => {
                mark = mark.wrapping_add(input.byte() as u32 % 20);
                rx.catch_up(mark);
            }
            5 => {
                drop(rx);
                let Some(reopened) = open(&path) else { return };
                (rx, base) = reopened;
            }
            6 => rx.pop(),
            _ => rx.catch_up(producer_word(&producer).0),
        }
    }
    // Drain what is left, as a consumer would.
    for _ in 0..queue_size / 64 + 2 {
        match rx.front() {
            Ok(Some(msg)) => check_body(&file, base, queue_size, msg.body()),
            _ => break,
        }
        rx.pop();
    }
}
