//! One logged-in TCP socket: framing of received bytes into messages,
//! applying the peer's acks to our queue, sending what the queue holds,
//! heartbeats and the receive timeout.
//!
//! Received bytes land in one 8-byte aligned buffer that starts at
//! `TCP_RECV_BUF_INIT_SIZE` and grows, only for a frame that needs it, up to
//! `TCP_RECV_BUF_MAX_SIZE`. Three offsets walk it: `read` (the next message
//! for the user), `parsed` (end of the complete frames) and `filled` (end of
//! the received bytes). Headers are byte-swapped on every read rather than in
//! place, so reparsing a partial frame after the next `recv` is harmless.

use std::io;
use std::marker::PhantomData;

use zerocopy::IntoBytes;

use super::queue::{AckError, PtcpQueue};
use super::wire::Wire;
use crate::conf::Conf;
use crate::error::CloseReason;
use crate::msg::{Msg, MsgHeader, HEADER_SIZE, MSG_TYPE_HEARTBEAT};

/// Why and with which errno a link closed.
pub(crate) type Closed = (CloseReason, i32);

/// A logged-in socket: its timers, its close reason, and sending.
pub(crate) struct Link<C: Conf> {
    stream: Option<Wire>,
    closed: Option<Closed>,
    /// Whether the timers were set from a `now` yet.
    started: bool,
    recv_time: i64,
    send_time: i64,
    now: i64,
    /// Unsent tail of a heartbeat whose write was partial.
    hb_out: [u8; HEADER_SIZE],
    hb_sent: usize,
    /// Bytes of the peer's frames consumed since a header of ours last
    /// carried our current ack (see [`ack_if_due`](Self::ack_if_due)).
    unacked: usize,
    _conf: PhantomData<fn() -> C>,
}

impl<C: Conf> Link<C> {
    /// A link over a connected, non-blocking socket (or another [`Wire`]).
    /// Its timers start at `now`, or without one at the first heartbeat call.
    pub(crate) fn new(stream: impl Into<Wire>, now: Option<i64>) -> Self {
        let started = now.is_some();
        let now = now.unwrap_or(0);
        Link {
            stream: Some(stream.into()),
            closed: None,
            started,
            recv_time: now,
            send_time: now,
            now,
            hb_out: [0; HEADER_SIZE],
            hb_sent: HEADER_SIZE,
            unacked: 0,
            _conf: PhantomData,
        }
    }

    /// Why the link closed, if it has.
    #[inline]
    pub(crate) fn closed(&self) -> Option<Closed> {
        self.closed
    }

    /// Closes the socket now (the first reason given is kept).
    pub(crate) fn close(&mut self, reason: CloseReason, errno: i32) {
        if self.closed.is_none() {
            self.closed = Some((reason, errno));
        }
        self.stream = None;
    }

    /// Heartbeat duty, called on every poll: when nothing was sent for
    /// `HEARTBEAT_INTERVAL`, send what is pending, or else a heartbeat with
    /// the current ack (0 in shm mode, where there is no queue).
    pub(crate) fn heartbeat(&mut self, now: i64, queue: Option<&mut PtcpQueue<C>>) {
        self.now = now;
        if !self.started {
            (self.started, self.recv_time, self.send_time) = (true, now, now);
        }
        if self.closed.is_some() || now - self.send_time < C::HEARTBEAT_INTERVAL {
            return;
        }
        let ack = match queue {
            Some(q) => {
                if !q.all_sent() || self.hb_sent < HEADER_SIZE {
                    self.send_pending(Some(q));
                    return;
                }
                q.my_ack()
            }
            None => 0,
        };
        self.send_heartbeat(ack);
    }

    fn send_heartbeat(&mut self, ack: u32) {
        let hb = MsgHeader { size: HEADER_SIZE as u16, msg_type: MSG_TYPE_HEARTBEAT, ack_seq: ack };
        self.hb_out.copy_from_slice(hb.swap_wire::<C>().as_bytes());
        self.hb_sent = 0;
        self.unacked = 0;
        self.send_pending(None);
    }

    /// Bytes of consumed peer frames after which [`ack_if_due`](Self::ack_if_due)
    /// sends an ack: an eighth of a queue of our size. It is at least 1
    /// (`TCP_QUEUE_SIZE` is a non-zero multiple of 8), so an ack follows a
    /// consumed frame, never none; and frames are 8 bytes or more, so any
    /// floor up to `HEADER_SIZE` would change nothing (the floor this had
    /// was such a no-op, as mutation testing showed).
    const ACK_AFTER: usize = C::TCP_QUEUE_SIZE / 8;

    /// Counts a consumed (popped) peer frame of `frame_size` bytes toward the next ack.
    #[inline]
    pub(crate) fn consumed(&mut self, frame_size: usize) {
        self.unacked += frame_size;
    }

    /// A header carrying our current ack is on its way (a push stamped it).
    #[inline]
    pub(crate) fn ack_carried(&mut self) {
        self.unacked = 0;
    }

    /// Sends our ack in a heartbeat when we have consumed an eighth of a
    /// queue's worth of the peer's frames without sending anything back.
    /// Without it a one-way stream fills the sender's queue and stalls until
    /// the next periodic heartbeat carries the ack (the C++ original's
    /// behaviour). Only between frames: not while queued bytes or a
    /// heartbeat are partly written.
    #[inline]
    pub(crate) fn ack_if_due(&mut self, queue: &PtcpQueue<C>) {
        if self.unacked >= Self::ACK_AFTER && self.closed.is_none() && self.hb_sent == HEADER_SIZE && queue.all_sent() {
            self.send_heartbeat(queue.my_ack());
        }
    }

    /// Writes as much as the socket takes: first a heartbeat's unsent tail,
    /// then the queue's unsent messages. A partial write keeps its tail for
    /// the next call, whatever its length.
    pub(crate) fn send_pending(&mut self, mut queue: Option<&mut PtcpQueue<C>>) {
        let Some(stream) = self.stream.as_mut() else { return };
        let mut progressed = false;
        let result = (|| -> io::Result<()> {
            while self.hb_sent < HEADER_SIZE {
                let n = stream.write(&self.hb_out[self.hb_sent..])?;
                if n == 0 {
                    return Ok(());
                }
                self.hb_sent += n;
                progressed = true;
            }
            if let Some(q) = queue.as_deref_mut() {
                loop {
                    let chunk = q.sendable();
                    if chunk.is_empty() {
                        break;
                    }
                    let n = stream.write(chunk)?;
                    if n == 0 {
                        break;
                    }
                    q.sent(n);
                    progressed = true;
                }
            }
            Ok(())
        })();
        if progressed {
            self.send_time = self.now;
        }
        if let Err(e) = result {
            self.close(CloseReason::SendError, e.raw_os_error().unwrap_or(0));
        }
    }

    /// The next application message in `rb`, receiving more bytes if none
    /// is complete. Applies every received header's ack to `queue` (absent
    /// in shm mode, where the socket carries only heartbeats and anything
    /// else is skipped). `None` if nothing is complete or the link closed.
    pub(crate) fn front<'b>(&mut self, rb: &'b mut RecvBuf<C>, queue: Option<&mut PtcpQueue<C>>) -> Option<Msg<'b>> {
        if self.closed.is_some() {
            return None;
        }
        let shm_mode = queue.is_none();
        if !rb.skip_to_message(shm_mode) {
            self.receive(rb, queue);
            if self.closed.is_some() || !rb.skip_to_message(shm_mode) {
                return None;
            }
        }
        Some(rb.front())
    }

    /// Receives once more while the message in front stays unpopped: a
    /// handler that waits for room in its own queue needs the peer's acks,
    /// which arrive behind that message (the buffer holds them as long as
    /// it may grow beyond the peer's queue, see `Conf::TCP_RECV_BUF_MAX_SIZE`).
    pub(crate) fn receive_behind(&mut self, rb: &mut RecvBuf<C>, queue: Option<&mut PtcpQueue<C>>) {
        if self.closed.is_none() {
            self.receive(rb, queue);
        }
    }

    /// Receives once and frames what arrived.
    fn receive(&mut self, rb: &mut RecvBuf<C>, queue: Option<&mut PtcpQueue<C>>) {
        let spare = rb.spare();
        let Some(stream) = self.stream.as_mut() else { return };
        if spare.is_empty() {
            // Full of complete frames the user has not popped yet.
            return;
        }
        match stream.read(spare) {
            Ok(0) => return self.close(CloseReason::RemoteClose, 0),
            Ok(n) => {
                rb.filled += n;
                self.recv_time = self.now;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if self.now - self.recv_time > C::CONNECTION_TIMEOUT {
                    self.close(CloseReason::Timeout, 0);
                }
                return;
            }
            Err(e) => return self.close(CloseReason::ReadError, e.raw_os_error().unwrap_or(0)),
        }
        if let Err(reason) = rb.frame(queue) {
            self.close(reason, 0);
        }
    }
}

/// The receive buffer of one socket: 8-byte aligned, growing from
/// `TCP_RECV_BUF_INIT_SIZE` up to `TCP_RECV_BUF_MAX_SIZE` only for a frame
/// that needs it. `read` is the next message for the user, `parsed` the end
/// of the complete frames, `filled` the end of the received bytes.
pub(crate) struct RecvBuf<C: Conf> {
    buf: Vec<u64>,
    read: usize,
    parsed: usize,
    filled: usize,
    _conf: PhantomData<fn() -> C>,
}

impl<C: Conf> RecvBuf<C> {
    pub(crate) fn new() -> Self {
        RecvBuf { buf: vec![0u64; C::TCP_RECV_BUF_INIT_SIZE / 8], read: 0, parsed: 0, filled: 0, _conf: PhantomData }
    }

    /// The header at `off`, a multiple of 8 (frames are padded to 8): one
    /// word of the buffer, read on every poll several times over.
    #[inline]
    fn header_at(&self, off: usize) -> MsgHeader {
        let word: u64 = self.buf.get(off / 8).copied().unwrap_or_default();
        let header: MsgHeader = zerocopy::transmute!(word);
        header.swap_wire::<C>()
    }

    /// The complete message at `read` (the caller checked there is one).
    pub(crate) fn front(&self) -> Msg<'_> {
        let h = self.header_at(self.read);
        let body = &self.buf.as_bytes()[self.read + HEADER_SIZE..self.read + h.size as usize];
        Msg::new(h.msg_type, body)
    }

    /// Whether a complete frame is waiting (a message or a heartbeat).
    pub(crate) fn has_message(&self) -> bool {
        self.read < self.parsed
    }

    /// Consumes the message `front` returned; its frame's size (0 if none).
    pub(crate) fn pop(&mut self) -> usize {
        if self.read >= self.parsed {
            return 0;
        }
        let size = self.header_at(self.read).padded_size();
        self.read += size;
        size
    }

    /// Skips heartbeats (and with `skip_all` everything) among the complete
    /// frames; true if an application message is next.
    pub(crate) fn skip_to_message(&mut self, skip_all: bool) -> bool {
        while self.read < self.parsed {
            let h = self.header_at(self.read);
            if h.msg_type != MSG_TYPE_HEARTBEAT && !skip_all {
                return true;
            }
            self.read += h.padded_size();
        }
        false
    }

    /// Before a receive: makes room ([`make_room`](Self::make_room)) and
    /// returns the free bytes after `filled`, where the next read goes (empty
    /// if the buffer is full of complete frames the user has not popped).
    fn spare(&mut self) -> &mut [u8] {
        self.make_room();
        let cap = self.buf.len() * 8;
        &mut self.buf.as_mut_bytes()[self.filled..cap]
    }

    /// Appends received bytes as one read would: room is made first, and
    /// only what fits in the spare bytes is taken. Returns how many were
    /// taken. The fuzz targets and tests feed the framing through this
    /// instead of a socket.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn fill(&mut self, data: &[u8]) -> usize {
        let spare = self.spare();
        let n = spare.len().min(data.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.filled += n;
        n
    }

    /// Frames the bytes received since the last call: advances `parsed` over
    /// every complete frame, applying each header's ack to `queue` as soon
    /// as the header is in (TCP mode; `None` in shm mode). An error is why
    /// the connection must close.
    pub(crate) fn frame(&mut self, mut queue: Option<&mut PtcpQueue<C>>) -> Result<(), CloseReason> {
        while self.filled - self.parsed >= HEADER_SIZE {
            let h = self.header_at(self.parsed);
            if let Some(q) = queue.as_deref_mut() {
                // Applied as soon as the header is in, before the body.
                match q.ack(h.ack_seq) {
                    Ok(()) => {}
                    Err(AckError::OutOfRange) => return Err(CloseReason::AckOutOfRange),
                    Err(AckError::Corrupt) => return Err(CloseReason::PtcpFileCorrupt),
                }
            }
            if (h.size as usize) < HEADER_SIZE {
                return Err(CloseReason::InvalidMsgSize);
            }
            let frame = h.padded_size();
            if frame > C::TCP_RECV_BUF_MAX_SIZE {
                return Err(CloseReason::MsgTooLarge);
            }
            if self.filled - self.parsed < frame {
                break;
            }
            self.parsed += frame;
        }
        Ok(())
    }

    /// Before a receive: moves unread bytes to the front when more than half
    /// the buffer is consumed or the partial frame at `parsed` would not fit,
    /// and grows the buffer (up to the maximum) when that frame needs it.
    fn make_room(&mut self) {
        let cap = self.buf.len() * 8;
        let frame_len = if self.filled - self.parsed >= HEADER_SIZE {
            self.header_at(self.parsed).padded_size()
        } else {
            HEADER_SIZE
        };
        if self.read > 0 && (self.read * 2 >= self.filled || self.parsed + frame_len > cap) {
            self.buf.as_mut_bytes().copy_within(self.read..self.filled, 0);
            self.filled -= self.read;
            self.parsed -= self.read;
            self.read = 0;
        }
        let need = self.parsed + frame_len;
        if need > cap && need <= C::TCP_RECV_BUF_MAX_SIZE {
            let grown = need.next_power_of_two().clamp(cap, C::TCP_RECV_BUF_MAX_SIZE);
            self.buf.resize(grown / 8, 0);
        }
    }
}

#[cfg(test)]
mod tests;
