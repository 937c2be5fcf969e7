//! The messages of a case: the echo pair's mix or a fixed size.

/// What a case sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The C++ echo pair's mix: 1 to 4 i32, the count as the type, at random.
    EchoMix,
    /// A fixed body of this many bytes, type 1.
    Fixed(usize),
}

impl Shape {
    /// The name in tables and files: `mix`, `64B`, `1KiB`.
    pub fn name(self) -> String {
        match self {
            Shape::EchoMix => "mix".into(),
            Shape::Fixed(n) if n >= 1024 && n % 1024 == 0 => format!("{}KiB", n / 1024),
            Shape::Fixed(n) => format!("{n}B"),
        }
    }

    /// The shape named `name` (as [`name`](Self::name) writes it).
    pub fn parse(name: &str) -> Option<Shape> {
        if name == "mix" {
            return Some(Shape::EchoMix);
        }
        match name.strip_suffix("KiB") {
            Some(k) => k.parse::<usize>().ok().map(|k| Shape::Fixed(k * 1024)),
            None => name.strip_suffix('B')?.parse().ok().map(Shape::Fixed),
        }
    }

    /// Body bytes of a message of this shape, the largest for the mix.
    pub fn max_body(self) -> usize {
        match self {
            Shape::EchoMix => 16,
            Shape::Fixed(n) => n,
        }
    }
}

/// The sequence of messages of a shape: `(type, body length)`, the same for
/// every run of a case (a fixed xorshift seed).
pub struct Messages {
    shape: Shape,
    rng: u64,
}

impl Messages {
    pub fn new(shape: Shape) -> Self {
        Messages { shape, rng: 0x9e37_79b9_7f4a_7c15 }
    }

    /// The next message's type and body length.
    #[inline]
    pub fn next_msg(&mut self) -> (u16, usize) {
        match self.shape {
            Shape::EchoMix => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                let n = 1 + (self.rng % 4) as usize;
                (n as u16, n * 4)
            }
            Shape::Fixed(n) => (1, n),
        }
    }
}

/// Bytes a message of `body` bytes takes on the wire and in the queues:
/// the 8-byte header and the body, padded to 8 (PROTOCOL.md).
pub fn frame_len(body: usize) -> usize {
    (8 + body).div_ceil(8) * 8
}
