//! Codecs: where one packet ends in the received bytes, and what goes
//! around a packet on the way out.
//!
//! A codec never copies: [`Codec::decode`] names the packet's bytes inside
//! the buffer it is shown, and [`Codec::frame`] returns the few bytes to
//! write before and after a payload, which the session writes with the
//! payload in one call.

use std::fmt;

/// Where a complete packet lies in the bytes shown to [`Codec::decode`]:
/// the payload is `buf[start..end]` and the packet takes `buf[..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// First byte of the payload (after any header).
    pub start: usize,
    /// End of the payload; the packet, trailer included, takes `buf[..consumed]`.
    pub end: usize,
    /// Bytes the packet takes, header and trailer included (`>= end`).
    pub consumed: usize,
}

/// Why received bytes cannot be a packet; the session closes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A header announced a packet larger than the codec allows.
    TooLarge {
        /// The announced payload size.
        size: u64,
        /// The codec's maximum.
        max: usize,
    },
    /// The bytes break the codec's rules (a user codec's own words).
    Invalid(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { size, max } => write!(f, "packet of {size} bytes exceeds the maximum of {max}"),
            DecodeError::Invalid(why) => write!(f, "invalid packet: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Up to 16 bytes written before or after a payload.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Affix {
    bytes: [u8; 16],
    len: u8,
}

impl Affix {
    /// The bytes `b` (at most 16; longer input is an error of the codec).
    pub fn new(b: &[u8]) -> Option<Affix> {
        let mut a = Affix::default();
        a.bytes.get_mut(..b.len())?.copy_from_slice(b);
        a.len = b.len() as u8;
        Some(a)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Debug for Affix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Affix({:02x?})", self.as_bytes())
    }
}

/// What [`Codec::frame`] puts around a payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Framing {
    /// Written before the payload (a length header).
    pub prefix: Affix,
    /// Written after the payload (a delimiter).
    pub suffix: Affix,
}

/// A payload the codec cannot frame: too large for its header or limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The payload's size.
    pub size: usize,
    /// The largest the codec frames.
    pub max: usize,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payload of {} bytes exceeds the codec's maximum of {}", self.size, self.max)
    }
}

impl std::error::Error for TooLarge {}

/// Packet framing of a behaviour's sessions (sock_manager's
/// `decode_cb`/`encode_fn`). Implement it for a protocol of your own; the
/// built-ins are [`Raw`] and [`LengthPrefixed`].
pub trait Codec: Send + Sync + 'static {
    /// Looks at received bytes, starting at a packet boundary: the packet
    /// if one is complete, `None` if more bytes are needed, an error if the
    /// bytes cannot be a packet (the session closes). `buf` is never empty.
    fn decode(&self, buf: &[u8]) -> Result<Option<Frame>, DecodeError>;

    /// The bytes to write around a payload of `payload_len` bytes.
    fn frame(&self, payload_len: usize) -> Result<Framing, TooLarge>;
}

/// No framing: every read is one packet, sends go out as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec for Raw {
    fn decode(&self, buf: &[u8]) -> Result<Option<Frame>, DecodeError> {
        Ok(Some(Frame { start: 0, end: buf.len(), consumed: buf.len() }))
    }

    fn frame(&self, _payload_len: usize) -> Result<Framing, TooLarge> {
        Ok(Framing::default())
    }
}

/// Byte order of a length header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// Most significant byte first (network order).
    Big,
    /// Least significant byte first.
    Little,
}

/// Packets behind a 1, 2, 4 or 8-byte header holding the payload's length
/// (go-libnet's `PacketN`), with a maximum payload size: a larger header
/// closes the session ([`DecodeError::TooLarge`]) before anything of the
/// packet is buffered.
#[derive(Debug, Clone, Copy)]
pub struct LengthPrefixed {
    width: usize,
    order: ByteOrder,
    max: usize,
}

impl LengthPrefixed {
    /// A `width`-byte header (1, 2, 4 or 8, else `None`) in `order`; the
    /// maximum payload is what the header can say, at most 16 MiB; lower it
    /// with [`max_packet`](Self::max_packet).
    pub fn new(width: usize, order: ByteOrder) -> Option<LengthPrefixed> {
        if !matches!(width, 1 | 2 | 4 | 8) {
            return None;
        }
        let max = Self::header_max(width).min(16 << 20);
        Some(LengthPrefixed { width, order, max })
    }

    /// The largest payload the header of `width` bytes can announce.
    fn header_max(width: usize) -> usize {
        if width >= size_of::<usize>() {
            usize::MAX
        } else {
            (1usize << (8 * width)) - 1
        }
    }

    /// Sets the largest payload accepted and sent (capped at what the
    /// header can say).
    pub fn max_packet(mut self, max: usize) -> Self {
        self.max = max.min(Self::header_max(self.width));
        self
    }

    /// The largest payload accepted and sent.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The header's width in bytes.
    pub fn width(&self) -> usize {
        self.width
    }
}

impl Codec for LengthPrefixed {
    #[inline]
    fn decode(&self, buf: &[u8]) -> Result<Option<Frame>, DecodeError> {
        let Some(header) = buf.get(..self.width) else { return Ok(None) };
        let mut word = [0u8; 8];
        let size = match self.order {
            ByteOrder::Big => {
                word[8 - self.width..].copy_from_slice(header);
                u64::from_be_bytes(word)
            }
            ByteOrder::Little => {
                word[..self.width].copy_from_slice(header);
                u64::from_le_bytes(word)
            }
        };
        if size > self.max as u64 {
            return Err(DecodeError::TooLarge { size, max: self.max });
        }
        let Some(end) = usize::try_from(size).ok().and_then(|n| n.checked_add(self.width)) else {
            return Err(DecodeError::TooLarge { size, max: self.max });
        };
        Ok((buf.len() >= end).then_some(Frame { start: self.width, end, consumed: end }))
    }

    #[inline]
    fn frame(&self, payload_len: usize) -> Result<Framing, TooLarge> {
        if payload_len > self.max {
            return Err(TooLarge { size: payload_len, max: self.max });
        }
        let (be, le) = ((payload_len as u64).to_be_bytes(), (payload_len as u64).to_le_bytes());
        let header = match self.order {
            ByteOrder::Big => &be[8 - self.width..],
            ByteOrder::Little => &le[..self.width],
        };
        Ok(Framing { prefix: Affix::new(header).unwrap_or_default(), suffix: Affix::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(c: &LengthPrefixed, payload: &[u8]) -> Vec<u8> {
        let f = c.frame(payload.len()).unwrap();
        [f.prefix.as_bytes(), payload, f.suffix.as_bytes()].concat()
    }

    #[test]
    fn every_width_and_order_round_trips() {
        for width in [1, 2, 4, 8] {
            for order in [ByteOrder::Big, ByteOrder::Little] {
                let c = LengthPrefixed::new(width, order).unwrap();
                let payload: Vec<u8> = (0..200u8).collect();
                let wire = encode(&c, &payload);
                assert_eq!(wire.len(), width + 200);
                let len_byte = if order == ByteOrder::Big { wire[width - 1] } else { wire[0] };
                assert_eq!(len_byte, 200, "{width} {order:?}");
                for cut in 0..wire.len() {
                    assert_eq!(c.decode(&wire[..cut]), Ok(None), "incomplete at {cut}");
                }
                let f = c.decode(&wire).unwrap().unwrap();
                assert_eq!(&wire[f.start..f.end], &payload[..]);
                assert_eq!(f.consumed, wire.len());
            }
        }
    }

    #[test]
    fn oversize_is_refused_both_ways() {
        let c = LengthPrefixed::new(4, ByteOrder::Big).unwrap().max_packet(10);
        assert_eq!(c.frame(11), Err(TooLarge { size: 11, max: 10 }));
        assert_eq!(c.decode(&[0, 0, 0, 11]), Err(DecodeError::TooLarge { size: 11, max: 10 }));
        assert_eq!(c.decode(&[0xff; 4]), Err(DecodeError::TooLarge { size: 0xffff_ffff, max: 10 }));
        let eight = LengthPrefixed::new(8, ByteOrder::Little).unwrap();
        assert!(eight.decode(&[0xff; 8]).is_err());
        // Even with no limit, a length near 2^64 is refused, not wrapped.
        let unlimited = eight.max_packet(usize::MAX);
        assert!(matches!(unlimited.decode(&[0xff; 8]), Err(DecodeError::TooLarge { .. })));
        let one = LengthPrefixed::new(1, ByteOrder::Big).unwrap();
        assert_eq!(one.max(), 255);
        assert_eq!(one.frame(256), Err(TooLarge { size: 256, max: 255 }));
        assert!(LengthPrefixed::new(3, ByteOrder::Big).is_none());
    }
}
