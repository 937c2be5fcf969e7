//! The receive path of the loop: reading a ready session into the shared
//! receive buffer, cutting packets with the behaviour's codec and handing
//! them to the handler, and keeping the start of a cut packet.

use std::io;
use std::mem;

use super::codec::Frame;
use super::ctx::{Ctx, Session};
use super::error::CloseReason;
use super::event_loop::EventLoop;
use super::session::{Phase, SessionId, WriteSide};
use super::DecodeError;

/// Reads per session per event: a session with more waiting is read again
/// next iteration, after the others had their turn.
const READS_PER_EVENT: usize = 16;

/// How far a readable session is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadUntil {
    /// A short read means the socket is empty: the read that would say so
    /// is skipped, and bytes arriving later raise a new edge-triggered
    /// event (tokio relies on the same).
    ShortRead,
    /// The peer's FIN came with the event, the stream is not a byte stream
    /// (a descriptor handed over), or this is a retry after the per-event
    /// limit: read until WouldBlock (or the end), since no new event will
    /// come for what is already there.
    WouldBlock,
}

impl EventLoop {
    /// Reads until the socket is empty (a short read or WouldBlock) or the
    /// per-event limit, handing each complete packet to the handler.
    pub(super) fn read(&mut self, id: SessionId, until: ReadUntil) {
        for _ in 0..READS_PER_EVENT {
            let now = self.core.clock.now();
            let Some(s) = self.core.session(id) else { return };
            if !s.is_live() || s.read_ended || s.phase != Phase::Open {
                return;
            }
            match s.stream.read(&mut self.recv) {
                Ok(0) => {
                    s.read_ended = true;
                    if s.write_side == WriteSide::Shut {
                        self.core.close(id, CloseReason::Finished);
                    } else {
                        let b = s.behaviour.0 as usize;
                        self.behaviours[b].end(&mut Session { cx: Ctx { core: &mut self.core }, id });
                    }
                    return;
                }
                Ok(n) => {
                    s.touch(now);
                    self.deliver(id, n);
                    self.settle();
                    if n < self.recv.len() && until == ReadUntil::ShortRead {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.core.close(id, CloseReason::ReadError(e)),
            }
        }
        self.core.unread.push(id);
    }

    /// Hands the packets in the `n` bytes just read to the handler; what is
    /// left of an incomplete packet waits in the session's partial buffer.
    fn deliver(&mut self, id: SessionId, n: usize) {
        let Some(s) = self.core.session(id) else { return };
        let b = s.behaviour.0 as usize;
        if !s.partial.is_empty() {
            // A packet began in an earlier read: finish it in the partial buffer.
            s.partial.extend_from_slice(&self.recv[..n]);
            return self.deliver_partial(id);
        }
        let at = self.packets(id, b, None, n);
        // Keep the start of an incomplete packet.
        if self.may_hold(id, b, n - at) {
            if let Some(s) = self.core.session(id) {
                s.partial.extend_from_slice(&self.recv[at..n]);
            }
        }
    }

    /// Whether a live session may hold `len` bytes of an incomplete packet;
    /// past its behaviour's `max_partial` it closes instead.
    fn may_hold(&mut self, id: SessionId, b: usize, len: usize) -> bool {
        let max = self.core.opts[b].max_partial;
        if !self.core.session(id).is_some_and(|s| s.is_live()) {
            return false;
        }
        if len > max {
            let size = len as u64;
            self.core.close(id, CloseReason::Decode(DecodeError::TooLarge { size, max }));
            return false;
        }
        true
    }

    /// Delivers the packets the session's partial buffer completes.
    pub(super) fn deliver_partial(&mut self, id: SessionId) {
        let Some(s) = self.core.session(id) else { return };
        let b = s.behaviour.0 as usize;
        let mut partial = mem::take(&mut s.partial);
        let at = self.packets(id, b, Some(&partial), partial.len());
        partial.drain(..at);
        if partial.is_empty() && partial.capacity() > 4096 {
            // A large packet is done: give its memory back.
            partial = Vec::new();
        }
        if self.may_hold(id, b, partial.len()) {
            if let Some(s) = self.core.session(id) {
                s.partial = partial;
            }
        }
    }

    /// Decodes and delivers packets from `partial` (or the receive buffer)
    /// up to `len`; returns where the undelivered bytes start.
    fn packets(&mut self, id: SessionId, b: usize, partial: Option<&[u8]>, len: usize) -> usize {
        let bytes = match partial {
            Some(p) => p,
            None => &self.recv[..len],
        };
        let mut at = 0;
        while at < len {
            let rest = &bytes[at..len];
            let frame = match self.core.opts[b].codec.decode(rest) {
                Ok(Some(f)) if valid(f, rest.len()) => f,
                Ok(Some(f)) => {
                    let why = format!("the codec returned {f:?} for {} bytes", rest.len());
                    self.core.close(id, CloseReason::Decode(DecodeError::Invalid(why)));
                    return len;
                }
                Ok(None) => break,
                Err(e) => {
                    self.core.close(id, CloseReason::Decode(e));
                    return len;
                }
            };
            self.behaviours[b]
                .packet(&mut Session { cx: Ctx { core: &mut self.core }, id }, &rest[frame.start..frame.end]);
            at += frame.consumed;
            if !self.core.session(id).is_some_and(|s| s.is_live() && !s.adopting) {
                // Closing, or the rest belongs to the behaviour it moves to.
                break;
            }
        }
        at
    }
}

/// Whether a codec's frame lies inside the `len` bytes it was shown and
/// consumes some.
fn valid(f: Frame, len: usize) -> bool {
    f.start <= f.end && f.end <= f.consumed && f.consumed <= len && f.consumed > 0
}
