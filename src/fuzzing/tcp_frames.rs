//! The `tcp_frames` target: a TCP link's receive side and acks over peer bytes.

use zerocopy::FromBytes;

use crate::conf::{Checked, Conf};
use crate::error::CloseReason;
use crate::msg::{MsgHeader, HEADER_SIZE, MSG_TYPE_HEARTBEAT};
use crate::ptcp::link::RecvBuf;
use crate::ptcp::queue::PtcpQueue;
use crate::ptcp::{ack_in_range, Durability};

use super::{push_msg, reopen_same, FrameBe, FrameLe, Input, Scratch};

/// Receive side of a TCP link over arbitrary peer bytes: the framing of
/// `RecvBuf` (header checks, growth and compaction, heartbeats skipped,
/// front and pop) and the application of every header's ack to a
/// `PtcpQueue` that holds a few pushed messages.
///
/// Input: `flags` (bit 0 shm mode: no queue, everything skipped; bit 1 the
/// big-endian configuration; bits 2-4 messages queued before; bits 5-7 how
/// many sends happen before), a body-size seed, 4 bytes of read sizes
/// (cycled), 4 bytes of user actions per delivered message (cycled: bit 0
/// leave it unpopped for 1 + `action >> 5` polls while receiving behind it,
/// bit 1 reply, bit 2 send), then the byte stream from the peer.
pub fn tcp_frames(data: &[u8]) {
    tcp_frames_in(Scratch::process(), data);
}

pub(super) fn tcp_frames_in(scratch: &Scratch, data: &[u8]) {
    if data.first().is_some_and(|f| f & 2 != 0) {
        frames_with::<FrameBe>(scratch, data);
    } else {
        frames_with::<FrameLe>(scratch, data);
    }
}

/// The frames of a whole stream as the framing rules define them, without
/// acks: the application messages of the complete frames (none in shm
/// mode) and the close reason of the first bad header, if any.
fn reference_frames<C: Conf>(stream: &[u8], shm_mode: bool) -> (Vec<(u16, Vec<u8>)>, Option<CloseReason>) {
    let mut msgs = vec![];
    let mut at = 0;
    while stream.len() - at >= HEADER_SIZE {
        let (h, _) = MsgHeader::read_from_prefix(&stream[at..]).unwrap_or_default();
        let h = h.swap_wire::<C>();
        if (h.size as usize) < HEADER_SIZE {
            return (msgs, Some(CloseReason::InvalidMsgSize));
        }
        if h.padded_size() > C::TCP_RECV_BUF_MAX_SIZE {
            return (msgs, Some(CloseReason::MsgTooLarge));
        }
        if stream.len() - at < h.padded_size() {
            break;
        }
        if !shm_mode && h.msg_type != MSG_TYPE_HEARTBEAT {
            msgs.push((h.msg_type, stream[at + HEADER_SIZE..at + h.size as usize].to_vec()));
        }
        at += h.padded_size();
    }
    (msgs, None)
}

/// The peer's byte stream, handed out in reads of the sizes the input chose.
struct Feed<'a> {
    stream: &'a [u8],
    fed: usize,
    /// Read sizes, cycled (each 1 to 48 bytes).
    sizes: [u8; 4],
    reads: usize,
}

impl<'a> Feed<'a> {
    fn is_done(&self) -> bool {
        self.fed == self.stream.len()
    }

    /// What the next read offers (taken or not, it counts as a read).
    fn next(&mut self) -> &'a [u8] {
        let want = self.sizes[self.reads % 4] as usize % 48 + 1;
        self.reads += 1;
        &self.stream[self.fed..self.stream.len().min(self.fed + want)]
    }
}

/// One receive as `Link::receive` does it: a read into the spare room (none
/// if the buffer is full), then framing, checking what the acks did to the
/// queue. The bytes taken, or why the connection closes.
fn receive_once<C: Conf>(
    rb: &mut RecvBuf<C>,
    q: &mut PtcpQueue<C>,
    shm_mode: bool,
    feed: &mut Feed<'_>,
) -> Result<usize, CloseReason> {
    let n = rb.fill(feed.next());
    feed.fed += n;
    if n == 0 {
        return Ok(0);
    }
    let before = q.seqs();
    // Several headers may be framed at once, so an error can follow acks
    // that took effect; either way the numbers only move forward.
    let res = rb.frame(if shm_mode { None } else { Some(q) });
    let after = q.seqs();
    assert_eq!(after.0, before.0, "framing leaves our ack alone");
    assert_eq!(after.2, before.2, "framing pushes nothing");
    assert!(ack_in_range(after.1, before.1, before.2), "seq_start moves forward within the queue");
    res.map(|()| n)
}

fn frames_with<C: Conf>(scratch: &Scratch, data: &[u8]) {
    #[allow(clippy::let_unit_value)]
    let () = Checked::<C>::CONF;
    let mut input = Input(data);
    let flags = input.byte();
    let shm_mode = flags & 1 != 0;
    let body_seed = input.byte() as usize;
    let reads: [u8; 4] = input.array();
    let actions: [u8; 4] = input.array();
    let stream = input.rest();

    let path = scratch.file(if C::TO_LITTLE_ENDIAN { "frames_le.ptcp" } else { "frames_be.ptcp" });
    let mut q = PtcpQueue::<C>::open(&path, Durability::Never).expect("scratch queue file");
    q.reset();
    for i in 0..(flags >> 2) & 7 {
        push_msg(&mut q, 1 + i as u16, (body_seed + 13 * i as usize) % 48, i);
    }
    for i in 0..flags >> 5 {
        let n = q.sendable().len().min(5 + 11 * i as usize);
        q.sent(n);
    }

    let mut rb = RecvBuf::<C>::new();
    let mut delivered: Vec<(u16, Vec<u8>)> = vec![];
    let mut closed = None;
    let mut feed = Feed { stream, fed: 0, sizes: reads, reads: 0 };
    let mut action_no = 0;
    'polls: loop {
        // As `Link::front`: deliver what is framed, else receive once more.
        if rb.skip_to_message(shm_mode) {
            let msg = rb.front();
            assert!(!shm_mode, "shm mode delivers nothing from the socket");
            assert_ne!(msg.msg_type(), MSG_TYPE_HEARTBEAT, "heartbeats are skipped");
            assert_eq!(msg.size() as usize, msg.body().len() + HEADER_SIZE);
            assert_eq!(msg.body().as_ptr() as usize % 8, 0, "bodies start 8-byte aligned");
            delivered.push((msg.msg_type(), msg.body().to_vec()));
            let action = actions[action_no % 4];
            action_no += 1;
            if action & 1 != 0 {
                // Not popped (its reply found our queue full, say): the
                // connection still receives behind it, a few polls long,
                // and every poll hands the same message again.
                for _ in 0..1 + (action >> 5) {
                    if !feed.is_done() {
                        if let Err(reason) = receive_once(&mut rb, &mut q, shm_mode, &mut feed) {
                            closed = Some(reason);
                            break 'polls;
                        }
                    }
                    assert!(rb.skip_to_message(shm_mode));
                    let again = rb.front();
                    let (msg_type, body) = &delivered[delivered.len() - 1];
                    assert_eq!((again.msg_type(), again.body()), (*msg_type, &body[..]), "the held message");
                }
            }
            rb.pop();
            q.inc_ack();
            let before = q.seqs();
            if action & 2 != 0 && push_msg(&mut q, 7, (action >> 3) as usize * 3, action) {
                let after = q.seqs();
                assert_eq!((after.0, after.1, after.2), (before.0, before.1, before.2.wrapping_add(1)));
            }
            if action & 4 != 0 {
                let n = q.sendable().len().min((action >> 4) as usize * 5 + 1);
                q.sent(n);
            }
            continue;
        }
        if feed.is_done() {
            break;
        }
        match receive_once(&mut rb, &mut q, shm_mode, &mut feed) {
            Ok(n) => assert!(n > 0, "the receive buffer has no room although every message was popped"),
            Err(reason) => {
                closed = Some(reason);
                break;
            }
        }
    }

    let (expected, framing_error) = reference_frames::<C>(stream, shm_mode);
    match closed {
        None => {
            assert_eq!(framing_error, None, "a bad header went unnoticed");
            assert_eq!(delivered, expected, "delivered messages");
        }
        Some(CloseReason::AckOutOfRange) => {
            assert!(!shm_mode, "acks are not applied in shm mode");
            assert!(expected.starts_with(&delivered), "delivered messages");
        }
        Some(reason @ (CloseReason::InvalidMsgSize | CloseReason::MsgTooLarge)) => {
            assert_eq!(Some(reason), framing_error, "close reason");
            assert!(expected.starts_with(&delivered), "delivered messages");
        }
        Some(reason) => panic!("framing closed with {reason:?}: our own queue looked corrupt"),
    }
    if !shm_mode {
        reopen_same(q, &path);
    }
}
