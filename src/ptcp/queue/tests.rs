//! Unit tests of the persistent send queue.

use super::*;

struct Small;
impl Conf for Small {
    const TCP_QUEUE_SIZE: usize = 256; // 32 blocks
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

fn push(q: &mut PtcpQueue<Small>, t: u16, body: &[u8]) -> bool {
    if !q.alloc(body.len()) {
        return false;
    }
    q.pending_body().copy_from_slice(body);
    q.push(t);
    true
}

/// Parses a byte stream of frames into (type, ack, body) triples.
fn frames(mut s: &[u8]) -> Vec<(u16, u32, Vec<u8>)> {
    let mut out = vec![];
    while !s.is_empty() {
        let h = MsgHeader::read_from_prefix(s).unwrap().0.swap_wire::<Small>();
        out.push((h.msg_type, h.ack_seq, s[8..h.size as usize].to_vec()));
        s = &s[h.padded_size()..];
    }
    out
}

/// Sends exactly `n` bytes of what the queue has to send, as a socket
/// that takes only part of them would.
fn send_only(q: &mut PtcpQueue<Small>, mut n: usize) -> Vec<u8> {
    let mut out = vec![];
    while n > 0 {
        let b = q.sendable();
        assert!(!b.is_empty(), "{n} more bytes to send, none sendable");
        let b = b[..b.len().min(n)].to_vec();
        q.sent(b.len());
        n -= b.len();
        out.extend(b);
    }
    out
}

/// A queue whose messages wrap: #2 at block 16 and #3 at block 24 on the
/// first lap (#0 and #1 were acked), #4 at block 0 on the second; write_pos
/// 8 < read_pos 16, wrap_pos 32. Each message is 64 bytes (8 blocks), its
/// body filled with its number. `sent_first` sends #0..#2 before the ack of
/// #0 and #1; nothing else is sent.
fn wrapped(dir: &Path, sent_first: bool) -> PtcpQueue<Small> {
    let mut q = PtcpQueue::<Small>::open(&dir.join("a_b.ptcp"), Durability::Never).unwrap();
    for k in 0..3 {
        assert!(push(&mut q, k, &[k as u8; 56]));
    }
    if sent_first {
        drain(&mut q);
    }
    q.ack(2).unwrap();
    assert!(push(&mut q, 3, &[3; 56]));
    assert!(push(&mut q, 4, &[4; 56]));
    assert_eq!((q.read_pos, q.write_pos, q.wrap_pos), (16, 8, 32), "the queue wraps");
    q
}

fn msg(k: u16) -> (u16, u32, Vec<u8>) {
    (k, 0, vec![k as u8; 56])
}

fn drain(q: &mut PtcpQueue<Small>) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let b = q.sendable().to_vec();
        if b.is_empty() {
            return out;
        }
        q.sent(b.len());
        out.extend(b);
    }
}

#[test]
fn padding_goes_out_zeroed_over_stale_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = PtcpQueue::<Small>::open(&dir.path().join("a_b.ptcp"), Durability::Never).unwrap();
    // Fill the ring with 0xff, then lap it with odd-sized bodies.
    let mut acked = 0;
    while push(&mut q, 1, &[0xff; 16]) {
        acked += 1;
    }
    drain(&mut q);
    q.ack(acked).unwrap();
    for len in [1, 5, 9, 15] {
        assert!(push(&mut q, 2, &vec![7; len]));
        let sent = drain(&mut q);
        let frame = &frames(&sent)[0];
        assert_eq!(frame.2, vec![7; len]);
        assert!(sent[8 + len..].iter().all(|&b| b == 0), "padding of a {len}-byte body: {sent:?}");
        acked += 1;
        q.ack(acked).unwrap();
    }
}

#[test]
fn survives_reopen_with_everything_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a_b.ptcp");
    {
        let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
        assert_eq!(q.seqs(), (0, 0, 0));
        assert!(push(&mut q, 5, b"hello"));
        q.inc_ack();
        assert!(push(&mut q, 6, b"world!!!!"));
        assert_eq!(frames(&drain(&mut q)), vec![(5, 0, b"hello".to_vec()), (6, 1, b"world!!!!".to_vec())]);
    }
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    assert_eq!(q.seqs(), (1, 0, 2));
    q.login_ack(1).unwrap();
    assert_eq!(frames(&drain(&mut q)), vec![(6, 1, b"world!!!!".to_vec())]);
    assert_eq!(q.seqs(), (1, 1, 2));
}

#[test]
fn ring_wraps_and_resends_in_order_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a_b.ptcp");
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    let (mut next, mut acked) = (0u32, 0u32);
    let mut stream = vec![];
    for round in 0..500u32 {
        let len = (round as usize * 13) % 60;
        let body: Vec<u8> = (0..len).map(|i| (next as usize + i) as u8).collect();
        if push(&mut q, 1, &body) {
            next += 1;
        }
        stream.extend(frames(&drain(&mut q)));
        if round % 3 == 0 {
            // Ack part of what was sent.
            acked += (next - acked) / 2;
            q.ack(acked).unwrap();
        }
        if round % 50 == 0 {
            // Reopen: the peer acked `acked`, resend from there.
            drop(q);
            q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
            assert_eq!(q.seqs().1, acked);
            assert_eq!(q.seqs().2, next);
            q.login_ack(acked).unwrap();
            stream.truncate(acked as usize);
        }
    }
    stream.extend(frames(&drain(&mut q)));
    assert_eq!(stream.len(), next as usize);
    for (i, (_, _, body)) in stream.iter().enumerate() {
        let len = body.len();
        assert!(body.iter().enumerate().all(|(j, &b)| b == (i + j) as u8), "msg {i} len {len}");
    }
}

#[test]
fn full_queue_refuses_and_ack_frees() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = PtcpQueue::<Small>::open(&dir.path().join("x"), Durability::EveryPush).unwrap();
    let mut n = 0;
    while push(&mut q, 1, &[7; 56]) {
        n += 1;
    }
    assert_eq!(n, 4, "4 x 64 bytes fill 256");
    assert!(!q.alloc(300), "larger than the queue");
    drain(&mut q);
    q.ack(1).unwrap();
    // Not wrapped yet: a new message must go to block 0, behind read_pos 8.
    assert!(!push(&mut q, 1, &[7; 56]), "strictly less than read_pos is required");
    assert!(push(&mut q, 1, &[7; 48]));
    assert_eq!(q.seqs(), (0, 1, 5));
    assert_eq!(q.ack(7), Err(AckError::OutOfRange));
    q.ack(5).unwrap();
    assert_eq!(q.seqs(), (0, 5, 5));
    assert!(q.all_sent());
}

#[test]
fn ack_of_unsent_messages_moves_send_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = PtcpQueue::<Small>::open(&dir.path().join("x"), Durability::Never).unwrap();
    push(&mut q, 1, b"a");
    push(&mut q, 2, b"b");
    q.ack(1).unwrap();
    assert_eq!(frames(&drain(&mut q)), vec![(2, 0, b"b".to_vec())]);
}

/// The ack of exactly what was sent arrives after a push wrapped to
/// block 0 and before `sendable` ran again: the send position was left
/// at the end of the old lap, and the queue sent nothing more.
#[test]
fn an_ack_of_all_sent_after_a_wrapping_push_keeps_sending() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = PtcpQueue::<Small>::open(&dir.path().join("x"), Durability::Never).unwrap();
    for _ in 0..3 {
        assert!(push(&mut q, 1, &[1; 56]));
    }
    drain(&mut q);
    q.ack(1).unwrap();
    assert!(push(&mut q, 2, &[2; 40]));
    drain(&mut q);
    assert!(push(&mut q, 3, &[3; 24])); // wraps, not yet sent
    q.ack(4).unwrap(); // acks exactly what was sent
    assert_eq!(frames(&drain(&mut q)), vec![(3, 0, vec![3; 24])]);
    assert!(q.all_sent());
}

#[test]
fn reset_empties_and_zeroes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    push(&mut q, 1, b"a");
    q.inc_ack();
    q.reset();
    assert_eq!(q.seqs(), (0, 0, 0));
    assert!(drain(&mut q).is_empty());
    drop(q);
    assert_eq!(PtcpQueue::<Small>::open(&path, Durability::Never).unwrap().seqs(), (0, 0, 0));
}

#[test]
fn durability_policy_is_recorded_and_flushes_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d");
    for policy in [Durability::EveryPush, Durability::OnDemand, Durability::Never] {
        let mut q = PtcpQueue::<Small>::open(&path, policy).unwrap();
        assert_eq!(Durability::from_byte(q.hdr().durability.load(Relaxed)), Some(policy));
        assert!(push(&mut q, 1, b"durable"));
        q.inc_ack();
        q.commit_ack();
        q.flush().unwrap();
        drop(q);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes[21], policy.to_byte(), "the policy byte in the header");
    }
    assert_eq!(PtcpQueue::<Small>::open(&path, Durability::Never).unwrap().seqs(), (3, 0, 3));
}

/// A pop stays in memory until committed, or until a push stores it
/// after the reply; a crash between the reply's store and the ack's is
/// repaired on load from the reply's header, and only from the last one.
#[test]
fn a_reply_and_its_pop_survive_a_crash_between_their_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a_b.ptcp");
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    q.inc_ack();
    assert_eq!(q.hdr().ack_seq.load(Relaxed), 0, "not stored before the handler returns");
    q.commit_ack();
    assert_eq!(q.hdr().ack_seq.load(Relaxed), 1);
    q.inc_ack();
    assert!(push(&mut q, 1, b"reply"));
    assert_eq!(q.hdr().ack_seq.load(Relaxed), 2);
    // The crash: the reply's write index is stored, the ack is not.
    q.hdr().ack_seq.store(1, Relaxed);
    drop(q);
    let q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    assert_eq!(q.seqs(), (2, 0, 1));
    assert_eq!(q.hdr().ack_seq.load(Relaxed), 2, "repaired in the file too");
    drop(q);
    // Two pops ahead, or an earlier message ahead, is not a crash's doing.
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    assert!(push(&mut q, 1, b"second"));
    for (ack, why) in [(1, "an earlier message is ahead"), (0, "two pops ahead")] {
        q.hdr().ack_seq.store(ack, Relaxed);
        assert!(PtcpQueue::<Small>::open(&path, Durability::Never).is_err(), "{why}");
    }
}

#[test]
fn bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    std::fs::write(&path, vec![0u8; 64 + 256]).unwrap();
    assert!(matches!(PtcpQueue::<Small>::open(&path, Durability::Never), Err(Error::FileCorrupt { .. })));
    std::fs::write(&path, b"short").unwrap();
    assert!(matches!(PtcpQueue::<Small>::open(&path, Durability::Never), Err(Error::FileCorrupt { .. })));
    // A file of another configuration.
    std::fs::remove_file(&path).unwrap();
    drop(PtcpQueue::<crate::conf::DefaultConf>::open(&path, Durability::Never).unwrap());
    assert!(PtcpQueue::<Small>::open(&path, Durability::Never).is_err());
    // A message whose size runs past write_pos.
    std::fs::remove_file(&path).unwrap();
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    push(&mut q, 1, b"abc");
    drop(q);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[64] = 200;
    std::fs::write(&path, &bytes).unwrap();
    assert!(PtcpQueue::<Small>::open(&path, Durability::Never).is_err());
    bytes[64] = 4; // below the header size
    std::fs::write(&path, &bytes).unwrap();
    assert!(PtcpQueue::<Small>::open(&path, Durability::Never).is_err());
}

/// The peer acks the first lap while the second lap's message is on its
/// way: nothing is sent twice.
#[test]
fn an_ack_of_the_old_lap_keeps_what_the_new_lap_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = wrapped(dir.path(), true);
    assert_eq!(frames(&drain(&mut q)), vec![msg(3), msg(4)]);
    q.ack(4).unwrap();
    assert!(q.all_sent());
    assert_eq!(drain(&mut q), vec![], "#4 was sent already");
    q.ack(5).unwrap();
    assert_eq!(q.seqs(), (0, 5, 5));
}

/// An ack beyond what was sent (a resend after a login races the ack of
/// what the peer had) leaves nothing acked to send.
#[test]
fn an_ack_beyond_what_the_new_lap_sent_sends_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = wrapped(dir.path(), true);
    assert!(push(&mut q, 5, &[5; 24])); // 32 bytes at block 8
    assert_eq!(frames(&send_only(&mut q, 64 + 64)), vec![msg(3), msg(4)]);
    q.ack(5).unwrap(); // #2, #3, #4 and nothing of #5
    assert_eq!(frames(&drain(&mut q)), vec![(5, 0, vec![5; 24])]);

    let dir = tempfile::tempdir().unwrap();
    let mut q = wrapped(dir.path(), true);
    assert!(push(&mut q, 5, &[5; 24]));
    assert_eq!(frames(&send_only(&mut q, 64 + 64)), vec![msg(3), msg(4)]);
    q.ack(6).unwrap(); // everything, #5 unsent
    assert!(q.all_sent());
    assert_eq!(drain(&mut q), vec![]);
}

/// Nothing of a wrapped queue sent yet (after a login, say): an ack of
/// the oldest message leaves the others to send, in order.
#[test]
fn an_ack_before_anything_of_a_wrapped_queue_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = wrapped(dir.path(), false);
    q.ack(3).unwrap();
    assert_eq!(frames(&drain(&mut q)), vec![msg(3), msg(4)]);
}

/// A wrapped queue takes a message that ends strictly before the oldest
/// one: ending at it, the write index would equal the read index, which
/// reads as an empty queue.
#[test]
fn a_wrapped_queue_allocates_up_to_the_oldest_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = wrapped(dir.path(), true);
    assert!(!q.alloc(56), "8 blocks would end at read_pos 16");
    assert!(push(&mut q, 5, &[5; 48]), "7 blocks end before it");
    assert!(!q.alloc(0), "not one block more");
    assert_eq!(q.seqs(), (0, 2, 6));
    assert_eq!(frames(&drain(&mut q)), vec![msg(3), msg(4), (5, 0, vec![5; 48])]);
    // The whole wrapped queue survives a reopen.
    drop(q);
    let mut q = PtcpQueue::<Small>::open(&dir.path().join("a_b.ptcp"), Durability::Never).unwrap();
    q.login_ack(2).unwrap();
    assert_eq!(frames(&drain(&mut q)), vec![msg(2), msg(3), msg(4), (5, 0, vec![5; 48])]);
}

/// `all_sent` says whether pushed messages wait for the socket (the link
/// sends them, or a heartbeat, by it).
#[test]
fn all_sent_until_a_push_and_after_its_bytes_went_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = PtcpQueue::<Small>::open(&dir.path().join("x"), Durability::Never).unwrap();
    assert!(q.all_sent());
    assert!(push(&mut q, 1, b"abc"));
    assert!(!q.all_sent());
    send_only(&mut q, 8);
    assert!(!q.all_sent(), "half of the frame is out");
    send_only(&mut q, 8);
    assert!(q.all_sent());
}

/// The ack a heartbeat carries counts every pop, committed or not, and
/// survives a reopen once committed.
#[test]
fn my_ack_counts_the_pops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    assert_eq!(q.my_ack(), 0);
    q.inc_ack();
    q.inc_ack();
    assert_eq!(q.my_ack(), 2);
    q.commit_ack();
    q.inc_ack();
    assert_eq!(q.my_ack(), 3);
    drop(q);
    assert_eq!(PtcpQueue::<Small>::open(&path, Durability::Never).unwrap().my_ack(), 2, "the third was not committed");
}

/// A file made under a configuration that differs in one setting only is
/// refused, whichever the setting.
#[test]
fn a_file_of_another_name_size_or_byte_order_is_refused() {
    struct LongNames;
    impl Conf for LongNames {
        const NAME_SIZE: usize = 32;
        const TCP_QUEUE_SIZE: usize = 256;
        type LoginUserData = u8;
        type LoginRspUserData = u8;
        type ConnectionUserData = ();
    }
    struct BigEndian;
    impl Conf for BigEndian {
        const TO_LITTLE_ENDIAN: bool = false;
        const TCP_QUEUE_SIZE: usize = 256;
        type LoginUserData = u8;
        type LoginRspUserData = u8;
        type ConnectionUserData = ();
    }
    fn refused<A: Conf, B: Conf>(dir: &Path, name: &str) {
        let path = dir.join(name);
        drop(PtcpQueue::<A>::open(&path, Durability::Never).unwrap());
        let err = PtcpQueue::<B>::open(&path, Durability::Never).err();
        assert!(matches!(err, Some(Error::FileCorrupt { .. })), "{name}: {err:?}");
        drop(PtcpQueue::<A>::open(&path, Durability::Never).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    refused::<Small, LongNames>(dir.path(), "a");
    refused::<LongNames, Small>(dir.path(), "b");
    refused::<Small, BigEndian>(dir.path(), "c");
    refused::<BigEndian, Small>(dir.path(), "d");
}

/// An empty queue takes a message as large as the ring wherever its
/// indices stood, and nothing larger.
#[test]
fn an_empty_queue_takes_a_message_as_large_as_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    assert!(push(&mut q, 1, b"first"));
    drain(&mut q);
    q.ack(1).unwrap();
    assert!(!q.alloc(256 - HEADER_SIZE + 1));
    assert!(push(&mut q, 2, &[2; 256 - HEADER_SIZE]));
    assert_eq!(frames(&drain(&mut q)), vec![(2, 0, vec![2; 248])]);
    drop(q);
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    assert_eq!(q.seqs(), (0, 1, 2));
    q.login_ack(1).unwrap();
    assert_eq!(frames(&drain(&mut q)), vec![(2, 0, vec![2; 248])]);
}

/// A message's size, header included, is a u16: a body of
/// `u16::MAX - HEADER_SIZE` bytes fits a large queue, one more byte never.
#[test]
fn a_message_is_at_most_u16_max_bytes() {
    struct Large;
    impl Conf for Large {
        const TCP_QUEUE_SIZE: usize = 1 << 17;
        type LoginUserData = u8;
        type LoginRspUserData = u8;
        type ConnectionUserData = ();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut q = PtcpQueue::<Large>::open(&dir.path().join("x"), Durability::Never).unwrap();
    let max = u16::MAX as usize - HEADER_SIZE;
    assert!(!q.alloc(max + 1));
    assert!(q.alloc(max));
    q.pending_body().fill(9);
    q.push(1);
    let frame = q.sendable();
    assert_eq!(frame.len(), 65536, "padded to 8");
    let h = MsgHeader::read_from_prefix(frame).unwrap().0.swap_wire::<Large>();
    assert_eq!((h.size, h.msg_type), (u16::MAX, 1));
    assert!(frame[HEADER_SIZE..u16::MAX as usize].iter().all(|&b| b == 9));
    assert_eq!(frame[u16::MAX as usize], 0, "padding");
}

/// Right after opening, before any login, sending starts at the oldest
/// queued message.
#[test]
fn sending_starts_at_the_oldest_message_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    for k in 1..=3 {
        assert!(push(&mut q, k, &[k as u8; 8]));
    }
    drain(&mut q);
    q.ack(2).unwrap();
    drop(q);
    let mut q = PtcpQueue::<Small>::open(&path, Durability::Never).unwrap();
    assert_eq!(frames(&drain(&mut q)), vec![(3, 0, vec![3; 8])]);
}
