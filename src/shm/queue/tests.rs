//! Unit tests of the queue's two ends.

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
/// only to a mark exactly one published message ahead.
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
    // Published but never popped: a crash after the reply's store. Two
    // messages ahead (4), the published end (8) and past it are not
    // marks this side can have left.
    for bad in [0, 1, 3, 4, 6, 8, 9, 10, 4000, u32::MAX] {
        let mut rx = reopen(&p);
        rx.catch_up(bad);
        assert_eq!(rx.read_idx, 0, "mark {bad} must be ignored");
        assert_eq!(rx.region.read_idx().load(Acquire), 0);
        assert_eq!(rx.front().unwrap().unwrap().body()[0], 0, "mark {bad}");
    }
    let mut rx = reopen(&p);
    rx.catch_up(None);
    assert_eq!(rx.read_idx, 0);
    rx.catch_up(2);
    assert_eq!((rx.read_idx, rx.region.read_idx().load(Acquire)), (2, 2));
    assert_eq!(rx.front().unwrap().unwrap().body()[0], 1);
    // A mark behind the stored index is an old one.
    rx.catch_up(0);
    assert_eq!(rx.read_idx, 2);
    // Up to exactly the published end: the last message's end.
    for _ in 0..2 {
        rx.front().unwrap();
        rx.pop();
    }
    assert_eq!(rx.read_idx, 6);
    rx.catch_up(8);
    assert_eq!((rx.read_idx, rx.region.read_idx().load(Acquire)), (8, 8));
    assert!(rx.front().unwrap().is_none());
}

/// A mark past a rewind marker: the message after the marker is the one
/// that was popped, and an empty-bodied message is one message too.
#[test]
fn catch_up_steps_over_a_rewind_marker_and_empty_messages() {
    let mut p = pair(256); // 4 blocks
    assert!(send(&mut p.tx, 1, &[1; 100])); // blocks 0-1
    assert!(send(&mut p.tx, 2, &[])); // block 2
    assert!(p.rx.front().unwrap().is_some());
    p.rx.pop();
    assert_eq!(p.rx.front().unwrap().unwrap().msg_type(), 2);
    p.rx.pop(); // read at 3
    assert!(send(&mut p.tx, 3, &[3; 100])); // rewind at 3, then blocks 4-5
    let path = p._dir.path().join("q.shm");
    let mut rx = ShmReceiver::new(ShmRegion::open(&path, 256).unwrap()).unwrap();
    rx.catch_up(5); // the marker's end, not a message's
    assert_eq!((rx.read_idx, rx.region.read_idx().load(Acquire)), (3, 3));
    rx.catch_up(6);
    assert_eq!((rx.read_idx, rx.region.read_idx().load(Acquire)), (6, 6));
    assert!(rx.front().unwrap().is_none());
    // An empty body is a whole block, and one message.
    assert!(send(&mut p.tx, 4, &[]));
    let mut rx = ShmReceiver::new(ShmRegion::open(&path, 256).unwrap()).unwrap();
    rx.catch_up(7);
    assert_eq!(rx.region.read_idx().load(Acquire), 7);
}

/// The consumed half is ours only while the mark word vouches for it:
/// not on a new object, after `publish_consumed` (also read back by a
/// new end), not after a foreign write to the half, not after a reset.
#[test]
fn consumed_is_trusted_only_with_the_mark_word() {
    let mut p = pair(256);
    let path = p._dir.path().join("q.shm");
    let reopen = || ShmSender::new(ShmRegion::open(&path, 256).unwrap()).unwrap();
    assert_eq!(p.tx.consumed(), None);
    assert!(send(&mut p.tx, 1, &[1; 8]));
    p.tx.publish_consumed(77);
    assert_eq!(p.tx.consumed(), Some(77));
    assert_eq!(reopen().consumed(), Some(77));
    assert_eq!(ProducerWord::unpack(p.tx.region.producer().load(Acquire)).consumed, 77);
    // Held pushes with the same mark keep it.
    p.tx.hold(true);
    assert!(send(&mut p.tx, 1, &[1; 8]));
    assert_eq!(ProducerWord::unpack(p.tx.region.producer().load(Acquire)).write_idx, 1);
    p.tx.hold(false);
    p.tx.publish();
    assert_eq!(ProducerWord::unpack(p.tx.region.producer().load(Acquire)), ProducerWord { write_idx: 2, consumed: 77 });
    assert_eq!(reopen().consumed(), Some(77));
    // A C++ producer's read_idx_cache in the half.
    let cpp = ProducerWord { write_idx: 2, consumed: 78 };
    p.tx.region.producer().store(cpp.pack(), Release);
    let mut tx = reopen();
    assert_eq!(tx.consumed(), None);
    // Publishing keeps the foreign value there, and it stays untrusted.
    assert!(send(&mut tx, 1, &[1; 8]));
    assert_eq!(ProducerWord::unpack(tx.region.producer().load(Acquire)).consumed, 78);
    assert_eq!(reopen().consumed(), None);
    tx.publish_consumed(79);
    assert_eq!(reopen().consumed(), Some(79));
    // Emptied (a new day): no mark.
    drop(tx);
    ShmRegion::open(&path, 256).unwrap().zero();
    let tx = reopen();
    assert_eq!(tx.consumed(), None);
    assert_eq!(tx.region.mark().load(Acquire), 0);
}

/// A zeroed object (a new day's reset) opens as an empty queue at index 0:
/// what was pushed before is gone.
#[test]
fn a_zeroed_object_starts_over() {
    let mut p = pair(256);
    assert!(send(&mut p.tx, 1, &[1; 100]));
    assert!(send(&mut p.tx, 2, &[2; 8]));
    assert!(p.rx.front().unwrap().is_some());
    p.rx.pop();
    assert!(!send(&mut p.tx, 3, &[3; 150]), "3 blocks do not fit behind 1 unread");
    let path = p._dir.path().join("q.shm");
    drop((p.tx, p.rx));
    let mut region = ShmRegion::open(&path, 256).unwrap();
    // As a reset a crash cut short leaves it: no queue has these indices.
    region.producer().store(ProducerWord { write_idx: 0, consumed: 0 }.pack(), Release);
    assert!(ShmReceiver::new(ShmRegion::open(&path, 256).unwrap()).is_err());
    region.zero();
    p.tx = ShmSender::new(ShmRegion::open(&path, 256).unwrap()).unwrap();
    p.rx = ShmReceiver::new(region).unwrap();
    assert_eq!((p.tx.published(), p.tx.depth(), p.rx.read_idx), (0, 0, 0));
    assert!(p.rx.front().unwrap().is_none());
    assert!(send(&mut p.tx, 4, &[4; 200]), "the whole ring is free");
    assert_eq!(p.rx.front().unwrap().unwrap().msg_type(), 4);
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
        &include_bytes!("../../../tests/data/shmq_goldshm_server.shm.gz")[..],
        &include_bytes!("../../../tests/data/shmq_server_goldshm.shm.gz")[..],
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
    let err = ShmRegion::open(&path, 256).err().expect("a 100-byte object");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

/// The header's u16 size bounds a message: 65535 bytes fit a ring large
/// enough, 65536 never do (the size would wrap).
#[test]
fn alloc_takes_sizes_up_to_u16_max_only() {
    let mut p = pair(1 << 17); // 2048 blocks, room for either
    assert!(!p.tx.alloc(u16::MAX as usize - HEADER_SIZE + 1));
    // Two messages of 750 blocks, consumed: the next one of 1024 blocks
    // must rewind, which is `alloc_slow`'s case.
    for _ in 0..2 {
        assert!(send(&mut p.tx, 1, &vec![7; 750 * BLOCK - HEADER_SIZE]));
        assert!(p.rx.front().unwrap().is_some());
        p.rx.pop();
    }
    assert!(!p.tx.alloc(u16::MAX as usize - HEADER_SIZE + 1));
    assert!(p.tx.alloc(u16::MAX as usize - HEADER_SIZE));
    assert_eq!(p.tx.pending_body().len(), u16::MAX as usize - HEADER_SIZE);
    p.tx.push(1);
    assert_eq!(p.rx.front().unwrap().unwrap().body().len(), u16::MAX as usize - HEADER_SIZE);
}

/// A consumer index ahead of the producer's (a broken consumer) is never
/// taken as room: the producer refuses to allocate.
#[test]
fn alloc_refuses_when_the_consumer_index_is_ahead() {
    let mut p = pair(256); // 4 blocks
    for _ in 0..4 {
        assert!(send(&mut p.tx, 1, &[0; 8]));
    }
    p.tx.region.read_idx().store(6, Release);
    assert!(!p.tx.alloc(8), "read_idx 6 with write_idx 4");
}
