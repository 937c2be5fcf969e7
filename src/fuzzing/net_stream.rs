//! `net_stream`: a peer's bytes through a `net` session's receive path, cut
//! into reads of every size: the shared receive buffer, the partial-packet
//! buffer, the length-prefixed codec and its limit, and a hostile user
//! codec whose frames point anywhere.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::net::{
    Behaviour, ByteOrder, CloseReason, Codec, Ctx, DecodeError, EventLoop, Frame, Framing, Handler, LengthPrefixed,
    Origin, Session, SessionId, TooLarge,
};

/// Keeps every packet and the close reason.
#[derive(Default)]
struct Collect {
    packets: Vec<Vec<u8>>,
    closed: Option<&'static str>,
}

impl Handler for Collect {
    type Session = ();

    fn on_open(&mut self, _: &mut Session<'_>, _: Origin) {}

    fn on_packet(&mut self, _: &mut Session<'_>, _: &mut (), packet: &[u8]) {
        self.packets.push(packet.to_vec());
    }

    fn on_close(&mut self, _: &mut Ctx<'_>, _: SessionId, _: (), reason: &CloseReason) {
        self.closed = Some(match reason {
            CloseReason::Decode(_) => "decode",
            CloseReason::Finished => "finished",
            _ => "other",
        });
    }
}

/// A codec that takes its frame from the first three bytes, whatever they say.
struct Hostile;

impl Codec for Hostile {
    fn decode(&self, buf: &[u8]) -> Result<Option<Frame>, DecodeError> {
        match buf {
            [0, ..] => Ok(None),
            [a, b, c, ..] => Ok(Some(Frame { start: *a as usize, end: *b as usize, consumed: *c as usize })),
            _ => Ok(None),
        }
    }

    fn frame(&self, _: usize) -> Result<Framing, TooLarge> {
        Ok(Framing::default())
    }
}

/// What a length-prefixed stream holds: its packets, and whether a header
/// announced more than `max` (the session must close there).
fn reference(width: usize, order: ByteOrder, max: usize, mut s: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut packets = vec![];
    while s.len() >= width {
        let mut word = [0u8; 8];
        let size = match order {
            ByteOrder::Big => {
                word[8 - width..].copy_from_slice(&s[..width]);
                u64::from_be_bytes(word)
            }
            ByteOrder::Little => {
                word[..width].copy_from_slice(&s[..width]);
                u64::from_le_bytes(word)
            }
        };
        if size > max as u64 {
            return (packets, true);
        }
        let end = width + size as usize;
        if s.len() < end {
            break;
        }
        packets.push(s[width..end].to_vec());
        s = &s[end..];
    }
    (packets, false)
}

/// The first byte picks the codec (bits 0-1 the header width, bit 2 the
/// order, bits 3-6 the maximum, bit 7 the hostile codec); the rest is
/// chunks, each a length byte and that many bytes, written one read apiece.
pub fn net_stream(data: &[u8]) {
    let Some((&conf, mut rest)) = data.split_first() else { return };
    let width = [1, 2, 4, 8][conf as usize & 3];
    let order = if conf & 4 != 0 { ByteOrder::Big } else { ByteOrder::Little };
    let max = 1 + ((conf >> 3) & 15) as usize * 37;
    let hostile = conf & 0x80 != 0;
    let mut chunks = vec![];
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        chunks.push(&tail[..len]);
        rest = &tail[len..];
    }
    let Ok(mut el) = EventLoop::new() else { return };
    let codec = LengthPrefixed::new(width, order).expect("a valid width").max_packet(max);
    let b = if hostile {
        el.add_behaviour(Behaviour::new(Collect::default()).codec(Hostile))
    } else {
        el.add_behaviour(Behaviour::new(Collect::default()).codec(codec))
    };
    let Ok((ours, mut theirs)) = UnixStream::pair() else { return };
    if el.adopt_fd(b, OwnedFd::from(ours)).is_err() {
        return;
    }
    for chunk in &chunks {
        // A socketpair write is readable at the other end when it returns.
        if theirs.write_all(chunk).is_err() {
            break;
        }
        let _ = el.run_once(Some(Duration::ZERO));
    }
    drop(theirs);
    for _ in 0..100 {
        if el.handler_mut::<Collect>(b).is_some_and(|c| c.closed.is_some()) {
            break;
        }
        let _ = el.run_once(Some(Duration::from_millis(1)));
    }
    let c = el.handler_mut::<Collect>(b).expect("the handler");
    if hostile {
        return; // No panic, no read outside the buffer: that is the promise.
    }
    let stream: Vec<u8> = chunks.concat();
    let (packets, too_large) = reference(width, order, max, &stream);
    assert_eq!(c.packets, packets, "delivered packets");
    let expect = if too_large { "decode" } else { "finished" };
    assert_eq!(c.closed, Some(expect), "close reason");
}
