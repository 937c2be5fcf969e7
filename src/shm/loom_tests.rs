//! Loom models of the queue's publication (`--cfg tcpshm_loom` builds only; CI runs
//! them with `RUSTFLAGS="--cfg tcpshm_loom" cargo test --release --lib loom`).
//!
//! Loom explores the interleavings of a producer and a consumer thread and
//! every value the index loads may return under the memory model. The region
//! records each block access (see `layout::loom_model`), so a model fails if
//! either end touches a block the other end has not handed over by an index
//! store the first end has seen: a message read before its bytes are
//! published, or a block reused while the consumer may still read it.

use loom::thread;

use super::layout::ShmRegion;
use super::queue::{ShmReceiver, ShmSender};

/// A queue of `blocks` 64-byte blocks and its two ends.
fn queue(blocks: usize) -> (ShmSender, ShmReceiver) {
    let region = ShmRegion::anonymous(blocks * 64);
    let rx = ShmReceiver::new(region.share()).unwrap();
    (ShmSender::new(region).unwrap(), rx)
}

/// The body of message `i`: `len` bytes that say which message they belong to.
fn body(i: u8, len: usize) -> Vec<u8> {
    (0..len).map(|j| i.wrapping_mul(31).wrapping_add(j as u8)).collect()
}

/// Pushes a message, yielding to the consumer while the queue is full.
fn push_waiting(tx: &mut ShmSender, msg_type: u16, body: &[u8]) {
    while !tx.alloc(body.len()) {
        thread::yield_now();
    }
    tx.pending_body().copy_from_slice(body);
    tx.push(msg_type);
}

/// Receives `count` messages in order, checking each against `expect(i)`
/// (its type and body), yielding to the producer while the queue is empty.
fn receive(rx: &mut ShmReceiver, count: usize, expect: impl Fn(usize) -> (u16, Vec<u8>)) {
    for i in 0..count {
        let (msg_type, want) = expect(i);
        loop {
            match rx.front().expect("the consumer saw a corrupt queue") {
                Some(m) => {
                    assert_eq!((m.msg_type(), m.body()), (msg_type, &want[..]), "message {i}");
                    break;
                }
                None => thread::yield_now(),
            }
        }
        rx.pop();
    }
}

/// Three messages of 2, 1 and 2 blocks through a 4-block ring: the third
/// needs a rewind marker and the blocks of the first, so the producer must
/// wait for the consumer's index and reuse blocks it has released. Every
/// message arrives whole, in order, with its bytes, in every interleaving.
#[test]
fn loom_messages_cross_a_small_ring_through_a_rewind() {
    // Body lengths giving 2, 1 and 2 blocks with the 8-byte header.
    const LENS: [usize; 3] = [100, 40, 70];
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let (mut tx, mut rx) = queue(4);
        let producer = thread::spawn(move || {
            for (i, len) in LENS.into_iter().enumerate() {
                push_waiting(&mut tx, i as u16 + 1, &body(i as u8, len));
            }
        });
        receive(&mut rx, LENS.len(), |i| (i as u16 + 1, body(i as u8, LENS[i])));
        producer.join().unwrap();
    });
}

/// Messages pushed while the sender holds (a handler's replies) become
/// visible together on `publish`: the consumer sees none or both.
#[test]
fn loom_held_pushes_appear_together() {
    loom::model(|| {
        let (mut tx, mut rx) = queue(4);
        let producer = thread::spawn(move || {
            tx.hold(true);
            push_waiting(&mut tx, 1, &body(1, 20));
            push_waiting(&mut tx, 2, &body(2, 20));
            tx.hold(false);
            tx.publish();
        });
        loop {
            match rx.front().expect("the consumer saw a corrupt queue") {
                Some(m) => {
                    assert_eq!(m.msg_type(), 1);
                    rx.pop();
                    let second = rx.front().expect("corrupt").map(|m| m.msg_type());
                    assert_eq!(second, Some(2), "the second held message was not published with the first");
                    rx.pop();
                    break;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
    });
}
