//! Unit tests of the link: a [`Link`] and its queue over one end of a
//! simulated connection ([`Net`]), the test playing the peer at the other.

use zerocopy::FromBytes;

use super::*;
use crate::ptcp::queue::Durability;
use crate::sim::net::{End, Net};

/// Small sizes: the early ack is due after 256 / 8 = 32 bytes of frames.
struct T;
impl Conf for T {
    const TCP_QUEUE_SIZE: usize = 256;
    const TCP_RECV_BUF_INIT_SIZE: usize = 64;
    const TCP_RECV_BUF_MAX_SIZE: usize = 512;
    const CONNECTION_TIMEOUT: i64 = 40;
    const HEARTBEAT_INTERVAL: i64 = 10;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

/// A frame as the peer reads it: (type, ack, body).
type Frame = (u16, u32, Vec<u8>);

fn hb(ack: u32) -> Frame {
    (MSG_TYPE_HEARTBEAT, ack, vec![])
}

fn frame(msg_type: u16, ack: u32, body: &[u8]) -> Vec<u8> {
    let h = MsgHeader { size: (HEADER_SIZE + body.len()) as u16, msg_type, ack_seq: ack };
    let mut out = h.swap_wire::<T>().as_bytes().to_vec();
    out.extend(body);
    out.resize(h.padded_size(), 0);
    out
}

/// A link at time 0 (end 0 of the connection) with its queue and receive
/// buffer, and the peer's end (1).
struct Rig {
    _dir: tempfile::TempDir,
    net: Net,
    peer: End,
    link: Link<T>,
    q: PtcpQueue<T>,
    rb: RecvBuf<T>,
    /// Bytes the peer read that do not make a whole frame yet.
    partial: Vec<u8>,
}

impl Rig {
    fn new() -> Self {
        Self::with_capacity(1 << 16)
    }

    /// `capacity`: bytes that may be on their way in each direction.
    fn with_capacity(capacity: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let q = PtcpQueue::open(&dir.path().join("a_b.ptcp"), Durability::Never).unwrap();
        let (net, end, peer) = Net::pair(7, capacity);
        let link = Link::new(Wire::Sim(end), Some(0));
        Rig { _dir: dir, net, peer, link, q, rb: RecvBuf::new(), partial: vec![] }
    }

    fn push(&mut self, msg_type: u16, body: &[u8]) {
        assert!(self.q.alloc(body.len()));
        self.q.pending_body().copy_from_slice(body);
        self.q.push(msg_type);
    }

    /// Pushes `a` and `b` and sends all of `a` and part of `b` (a write
    /// behind bytes in flight stops early).
    fn partly_sent(&mut self, a: &Frame, b: &Frame) {
        self.push(a.0, &a.2);
        self.link.send_pending(Some(&mut self.q));
        assert!(self.q.all_sent());
        self.push(b.0, &b.2);
        self.link.send_pending(Some(&mut self.q));
        assert!(!self.q.all_sent(), "the connection took part of it");
    }

    fn heartbeat(&mut self, now: i64) {
        self.link.heartbeat(now, Some(&mut self.q));
    }

    /// The whole frames the link wrote that reached the peer since the last call.
    fn peer_reads(&mut self) -> Vec<Frame> {
        self.net.deliver(0, usize::MAX);
        let mut buf = [0u8; 256];
        while let Ok(n) = self.peer.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.partial.extend(&buf[..n]);
        }
        let mut out = vec![];
        while let Ok((h, _)) = MsgHeader::read_from_prefix(&self.partial[..]) {
            let h = h.swap_wire::<T>();
            assert!(h.size as usize >= HEADER_SIZE, "a bad frame: {:?}", self.partial);
            if self.partial.len() < h.padded_size() {
                break;
            }
            out.push((h.msg_type, h.ack_seq, self.partial[HEADER_SIZE..h.size as usize].to_vec()));
            self.partial.drain(..h.padded_size());
        }
        out
    }

    /// The peer writes `bytes`, and they arrive.
    fn peer_sends(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.peer.write(rest).unwrap();
            self.net.deliver(1, usize::MAX);
            rest = &rest[n..];
        }
    }

    /// Polls `front` until it returns a message (a few reads at most: the
    /// simulated reads return pieces); its (type, body).
    fn front(&mut self) -> Option<(u16, Vec<u8>)> {
        for _ in 0..64 {
            if let Some(m) = self.link.front(&mut self.rb, Some(&mut self.q)) {
                return Some((m.msg_type(), m.body().to_vec()));
            }
            if self.link.closed().is_some() {
                return None;
            }
        }
        None
    }
}

/// Nothing sent for a heartbeat interval: a heartbeat with our ack goes
/// out, and only then.
#[test]
fn a_heartbeat_after_each_interval_of_silence_carries_the_ack() {
    let mut r = Rig::new();
    for _ in 0..3 {
        r.q.inc_ack();
    }
    r.heartbeat(0);
    r.heartbeat(9);
    assert_eq!(r.peer_reads(), vec![]);
    r.heartbeat(10);
    assert_eq!(r.peer_reads(), vec![hb(3)]);
    r.heartbeat(19);
    assert_eq!(r.peer_reads(), vec![]);
    r.q.inc_ack();
    r.heartbeat(20);
    assert_eq!(r.peer_reads(), vec![hb(4)]);
    assert_eq!(r.link.closed(), None);
}

/// Without a `now` at creation the timers start at the first heartbeat call.
#[test]
fn timers_start_at_the_first_call_without_a_now() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = PtcpQueue::<T>::open(&dir.path().join("x"), Durability::Never).unwrap();
    let (net, end, mut peer) = Net::pair(1, 1 << 16);
    let mut link = Link::<T>::new(Wire::Sim(end), None);
    link.heartbeat(1000, Some(&mut q));
    link.heartbeat(1009, Some(&mut q));
    net.deliver(0, usize::MAX);
    let mut buf = [0u8; 64];
    assert!(peer.read(&mut buf).is_err(), "nothing sent before an interval from the first call");
    link.heartbeat(1010, Some(&mut q));
    net.deliver(0, usize::MAX);
    assert_eq!(peer.read(&mut buf).unwrap(), HEADER_SIZE);
}

/// In shm mode (no queue) the heartbeat carries ack 0.
#[test]
fn a_heartbeat_without_a_queue_carries_ack_0() {
    let mut r = Rig::new();
    r.q.inc_ack();
    r.link.heartbeat(10, None);
    assert_eq!(r.peer_reads(), vec![hb(0)]);
}

/// A due heartbeat gives way to queued messages, which carry the ack.
#[test]
fn a_due_heartbeat_sends_the_queued_messages_instead() {
    let mut r = Rig::with_capacity(100);
    let (a, b) = ((1, 0, vec![1; 8]), (2, 0, vec![2; 200]));
    r.partly_sent(&a, &b);
    assert_eq!(r.peer_reads(), vec![a]);
    r.heartbeat(10);
    assert_eq!(r.peer_reads(), vec![b], "no heartbeat among them");
    assert!(r.q.all_sent());
    r.heartbeat(19);
    assert_eq!(r.peer_reads(), vec![], "sending was progress: the interval starts again");
    r.heartbeat(20);
    assert_eq!(r.peer_reads(), vec![hb(0)]);
}

/// A heartbeat the connection took only part of is finished before
/// anything else, the next one included: the peer reads whole frames.
#[test]
fn a_partly_written_heartbeat_is_finished_first() {
    // 12 bytes in flight at most: a heartbeat, and 4 bytes of the next.
    let mut r = Rig::with_capacity(12);
    r.q.inc_ack();
    r.heartbeat(10);
    r.heartbeat(20); // partly written: the peer reads nothing meanwhile
    r.heartbeat(30);
    r.heartbeat(40);
    let mut got = r.peer_reads();
    for now in [41, 50, 60] {
        r.heartbeat(now);
        got.extend(r.peer_reads());
    }
    assert!(r.partial.is_empty(), "a frame cut short: {:?}", r.partial);
    assert!(got.len() >= 3 && got.iter().all(|f| *f == hb(1)), "{got:?}");
}

/// After an eighth of a queue's worth of the peer's frames consumed with
/// nothing sent back, a heartbeat carries the ack at once.
#[test]
fn the_ack_goes_out_early_after_an_eighth_of_a_queue() {
    let mut r = Rig::new();
    r.q.inc_ack();
    r.link.consumed(24);
    r.link.ack_if_due(&r.q);
    assert_eq!(r.peer_reads(), vec![], "24 of 32 bytes");
    r.q.inc_ack();
    r.link.consumed(8);
    r.link.ack_if_due(&r.q);
    assert_eq!(r.peer_reads(), vec![hb(2)]);
    r.link.ack_if_due(&r.q);
    assert_eq!(r.peer_reads(), vec![], "the count starts again");
}

/// A push that carries the ack restarts the count.
#[test]
fn a_pushed_message_carries_the_ack_instead() {
    let mut r = Rig::new();
    r.link.consumed(24);
    r.push(1, b"reply");
    r.link.ack_carried();
    r.link.send_pending(Some(&mut r.q));
    r.link.consumed(24);
    r.link.ack_if_due(&r.q);
    assert_eq!(r.peer_reads(), vec![(1, 0, b"reply".to_vec())]);
}

/// The early ack waits while queued messages are unsent (the heartbeat
/// would land inside one), and goes out once they are.
#[test]
fn the_early_ack_waits_for_the_queued_bytes() {
    let mut r = Rig::with_capacity(100);
    let (a, b) = ((1, 0, vec![1; 8]), (2, 0, vec![2; 200]));
    r.partly_sent(&a, &b);
    r.q.inc_ack();
    r.link.consumed(100);
    r.link.ack_if_due(&r.q);
    assert_eq!(r.peer_reads(), vec![a]);
    r.link.send_pending(Some(&mut r.q));
    assert!(r.q.all_sent());
    assert_eq!(r.peer_reads(), vec![b]);
    r.link.ack_if_due(&r.q);
    assert_eq!(r.peer_reads(), vec![hb(1)]);
}

/// Nor does the early ack start while a heartbeat is partly written.
#[test]
fn the_early_ack_waits_for_a_partly_written_heartbeat() {
    let mut r = Rig::with_capacity(12);
    r.heartbeat(10);
    r.heartbeat(20); // partly written
    r.q.inc_ack();
    r.link.consumed(100);
    r.link.ack_if_due(&r.q);
    let mut got = r.peer_reads();
    r.heartbeat(30); // finishes it
    got.extend(r.peer_reads());
    assert_eq!(got, vec![hb(0), hb(0)]);
    assert!(r.partial.is_empty());
    r.link.ack_if_due(&r.q);
    assert_eq!(r.peer_reads(), vec![hb(1)]);
}

/// While the message in front waits (its reply found our queue full), the
/// acks behind it are still read and free the queue.
#[test]
fn acks_behind_an_unpopped_message_are_applied() {
    let mut r = Rig::new();
    r.push(1, &[1; 200]);
    r.link.send_pending(Some(&mut r.q));
    assert!(!r.q.alloc(100), "full");
    r.peer_sends(&frame(9, 0, b"request"));
    assert_eq!(r.front(), Some((9, b"request".to_vec())));
    r.peer_sends(&frame(MSG_TYPE_HEARTBEAT, 1, &[]));
    for _ in 0..64 {
        r.link.receive_behind(&mut r.rb, Some(&mut r.q));
    }
    assert_eq!(r.q.seqs(), (0, 1, 1), "the heartbeat's ack dropped our message");
    assert!(r.q.alloc(100));
    assert_eq!(r.front(), Some((9, b"request".to_vec())), "still in front");
}

/// Heartbeats are read (their acks applied) and never handed out.
#[test]
fn front_skips_heartbeats_and_applies_every_ack() {
    let mut r = Rig::new();
    r.push(1, b"a");
    r.push(2, b"b");
    r.link.send_pending(Some(&mut r.q));
    let stream =
        [frame(MSG_TYPE_HEARTBEAT, 1, &[]), frame(7, 1, b"x"), frame(MSG_TYPE_HEARTBEAT, 2, &[]), frame(8, 2, b"y")];
    r.peer_sends(&stream.concat());
    assert_eq!(r.front(), Some((7, b"x".to_vec())));
    r.rb.pop();
    assert_eq!(r.front(), Some((8, b"y".to_vec())));
    assert_eq!(r.q.seqs(), (0, 2, 2));
    r.rb.pop();
    assert_eq!(r.front(), None);
    assert_eq!(r.link.closed(), None);
}

/// A link that received nothing for longer than `CONNECTION_TIMEOUT`
/// closes with `Timeout`; received bytes restart the count.
#[test]
fn a_silent_peer_times_out_after_the_connection_timeout() {
    let mut r = Rig::new();
    r.link.heartbeat(30, None);
    r.peer_sends(&frame(MSG_TYPE_HEARTBEAT, 0, &[]));
    assert_eq!(r.front(), None);
    r.link.heartbeat(70, None);
    assert_eq!(r.front(), None);
    assert_eq!(r.link.closed(), None, "silent for exactly CONNECTION_TIMEOUT: not yet");
    r.link.heartbeat(71, None);
    assert_eq!(r.front(), None);
    assert_eq!(r.link.closed(), Some((CloseReason::Timeout, 0)));
}

/// A reset connection closes the link with `ReadError` and the errno.
#[test]
fn a_reset_closes_with_read_error() {
    let mut r = Rig::new();
    r.net.reset();
    assert_eq!(r.front(), None);
    assert_eq!(r.link.closed(), Some((CloseReason::ReadError, libc::ECONNRESET)));
    r.link.close(CloseReason::RequestClose, 0);
    assert_eq!(r.link.closed(), Some((CloseReason::ReadError, libc::ECONNRESET)), "the first reason stays");
}

/// The peer's end of the stream closes the link with `RemoteClose`, after
/// the frames before it.
#[test]
fn the_peers_close_ends_the_link_after_its_frames() {
    let mut r = Rig::new();
    r.peer_sends(&frame(3, 0, b"last"));
    // The peer closes its socket: its end is dropped (a stand-in of
    // another connection takes its place in the rig).
    drop(std::mem::replace(&mut r.peer, Net::pair(0, 0).2));
    assert_eq!(r.front(), Some((3, b"last".to_vec())));
    r.rb.pop();
    assert_eq!(r.front(), None);
    assert_eq!(r.link.closed(), Some((CloseReason::RemoteClose, 0)));
}

/// `has_message`: a complete frame, application message or heartbeat, is
/// waiting; a partial one is not.
#[test]
fn has_message_means_a_complete_frame() {
    let mut rb = RecvBuf::<T>::new();
    assert!(!rb.has_message());
    let stream = [frame(1, 0, b"one"), frame(MSG_TYPE_HEARTBEAT, 0, &[]), frame(2, 0, b"two")].concat();
    let cut = stream.len() - 3;
    assert_eq!(rb.fill(&stream[..cut]), cut);
    rb.frame(None).unwrap();
    for size in [16, 8] {
        assert!(rb.has_message());
        assert_eq!(rb.pop(), size);
    }
    assert!(!rb.has_message(), "the third is partial");
    assert_eq!(rb.pop(), 0);
    rb.fill(&stream[cut..]);
    rb.frame(None).unwrap();
    assert!(rb.has_message());
    assert_eq!(rb.pop(), 16);
    assert!(!rb.has_message());
}
