//! One session's state: its stream, the unsent tail of what it was asked to
//! send, the partial packet it received, and its shutdown and timeout state.

use std::io::{self, IoSlice};

use super::error::CloseReason;
use super::stream::Stream;
use super::time::Millis;

/// Which use of a slot an id names. One 64-bit count per loop numbers
/// every session, timer, listener and connector it makes: at a billion a
/// second it would take centuries to come round, so an old id can never
/// match a new occupant of its slot.
pub(crate) type Generation = u64;

/// A session's handle: its slot in the loop and the generation of that
/// slot, so a handle kept after the session closed never reaches a newer
/// session in the same slot. Copy it freely; sending to a closed session is
/// [`SendError::Closed`](super::SendError::Closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    pub(crate) index: u32,
    pub(crate) generation: Generation,
}

/// A behaviour registered with [`EventLoop::add_behaviour`](super::EventLoop::add_behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BehaviourId(pub(crate) u32);

/// Bytes the socket did not take yet, oldest first. Empty, it holds no
/// memory beyond what the behaviour keeps (`send_buffer`), so idle sessions
/// stay small.
#[derive(Debug, Default)]
pub(crate) struct SendBuf {
    bytes: Vec<u8>,
    head: usize,
}

impl SendBuf {
    pub(crate) fn len(&self) -> usize {
        self.bytes.len() - self.head
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn extend(&mut self, parts: &[&[u8]]) {
        if self.head > 0 && self.head >= self.bytes.len() / 2 {
            self.bytes.drain(..self.head);
            self.head = 0;
        }
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
    }

    /// Writes as much as the stream takes; `Ok(true)` once empty.
    pub(crate) fn flush(&mut self, stream: &mut Stream, keep: usize) -> io::Result<bool> {
        while !self.is_empty() {
            match stream.write(&self.bytes[self.head..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.head += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.bytes.clear();
        self.head = 0;
        if self.bytes.capacity() > keep {
            self.bytes.shrink_to(keep);
        }
        Ok(true)
    }
}

/// Frames up to this size are assembled in the loop's scratch buffer and
/// sent with one `send`: copying a few hundred bytes costs less than the
/// kernel's gathering of iovecs (`sendmsg`).
pub(crate) const ASSEMBLE_MAX: usize = 256;

/// Writes `parts` (prefix, payload, suffix) to the stream in one call,
/// assembling small frames in `scratch`; returns how many bytes it took
/// (0 if it would block).
pub(crate) fn write_parts(stream: &mut Stream, parts: &[&[u8]; 3], scratch: &mut Vec<u8>) -> io::Result<usize> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    loop {
        let written = if total == 0 {
            Ok(0)
        } else if total == parts[1].len() {
            // Nothing around the payload (a raw codec): it goes as it is.
            stream.write(parts[1])
        } else if total <= ASSEMBLE_MAX {
            scratch.clear();
            for p in parts {
                scratch.extend_from_slice(p);
            }
            stream.write(scratch)
        } else {
            stream.write_vectored(&parts.map(IoSlice::new))
        };
        return match written {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r,
        };
    }
}

/// The parts of `parts` after the first `n` bytes.
pub(crate) fn skip_parts<'a>(parts: &[&'a [u8]; 3], mut n: usize) -> [&'a [u8]; 3] {
    let mut out = [&[][..]; 3];
    for (o, p) in out.iter_mut().zip(parts) {
        let skip = n.min(p.len());
        *o = &p[skip..];
        n -= skip;
    }
    out
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A non-blocking connect is under way.
    Connecting,
    /// Open: events reach the handler.
    Open,
}

/// What the writing side does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteSide {
    Open,
    /// Shut down once the buffer drains; then close if `close`.
    ShutWhenDrained {
        close: bool,
    },
    /// FIN sent.
    Shut,
}

#[derive(Debug)]
pub(crate) struct SessionState {
    pub(crate) stream: Stream,
    pub(crate) generation: Generation,
    pub(crate) behaviour: BehaviourId,
    pub(crate) phase: Phase,
    pub(crate) send: SendBuf,
    /// The start of a packet not complete yet (empty when reads end on a
    /// packet boundary, the common case: then nothing is copied).
    pub(crate) partial: Vec<u8>,
    /// Set once the session is to close; the loop closes it after the
    /// current callback.
    pub(crate) closing: Option<CloseReason>,
    pub(crate) corked: bool,
    pub(crate) write_side: WriteSide,
    /// The peer ended its side (read returned 0).
    pub(crate) read_ended: bool,
    /// Data was buffered since the last drain: `on_writable` is due when it drains.
    pub(crate) wants_writable: bool,
    /// The idle timeout and the time it runs out (moved by traffic).
    pub(crate) idle: Option<Millis>,
    pub(crate) idle_deadline: Millis,
    /// The earliest heap entry queued for this session's idle deadline.
    pub(crate) idle_queued: Option<Millis>,
    /// The connector that made this session (it reconnects when it closes).
    pub(crate) connector: Option<usize>,
    /// Moving to another behaviour: packets after the current one wait for it.
    pub(crate) adopting: bool,
}

impl SessionState {
    pub(crate) fn new(stream: Stream, generation: Generation, behaviour: BehaviourId, phase: Phase) -> Self {
        SessionState {
            stream,
            generation,
            behaviour,
            phase,
            send: SendBuf::default(),
            partial: Vec::new(),
            closing: None,
            corked: false,
            write_side: WriteSide::Open,
            read_ended: false,
            wants_writable: false,
            idle: None,
            idle_deadline: 0,
            idle_queued: None,
            connector: None,
            adopting: false,
        }
    }

    /// Traffic: the idle timeout starts over.
    #[inline]
    pub(crate) fn touch(&mut self, now: Millis) {
        if let Some(idle) = self.idle {
            self.idle_deadline = now.saturating_add(idle);
        }
    }

    /// Marks the session to close with `reason` (the first reason wins).
    pub(crate) fn close(&mut self, reason: CloseReason) {
        if self.closing.is_none() {
            self.closing = Some(reason);
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.closing.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_parts_crosses_boundaries() {
        let parts: [&[u8]; 3] = [b"ab", b"cde", b"f"];
        assert_eq!(skip_parts(&parts, 0), parts);
        assert_eq!(skip_parts(&parts, 1), [&b"b"[..], b"cde", b"f"]);
        assert_eq!(skip_parts(&parts, 4), [&b""[..], b"e", b"f"]);
        assert_eq!(skip_parts(&parts, 6), [&b""[..], b"", b""]);
    }
}
