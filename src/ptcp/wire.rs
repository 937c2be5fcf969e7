//! The byte stream under a [`Link`](super::link::Link): what the protocol
//! engine reads from and writes to, kept apart from the engine itself.
//!
//! The link decides what to send, what an ack drops, when to heartbeat and
//! when a silent peer has timed out; the wire only moves bytes, with the
//! contract of a non-blocking socket: `Ok(0)` from a read is the peer's end,
//! `WouldBlock` means nothing now, a short write keeps its tail for later.
//! In a build of the library the only wire is a TCP socket, so the `match`
//! below compiles to the socket call alone: nothing is paid on the hot path.
//! The crate's own tests add a second kind, a simulated stream that cuts,
//! delays, drops and half-opens deterministically (`crate::sim`), so the same
//! engine and queue code runs under the deterministic simulation.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// A connected byte stream.
pub(crate) enum Wire {
    /// A non-blocking TCP socket.
    Tcp(TcpStream),
    /// One end of a simulated connection.
    #[cfg(test)]
    Sim(crate::sim::net::End),
}

impl From<TcpStream> for Wire {
    fn from(stream: TcpStream) -> Self {
        Wire::Tcp(stream)
    }
}

impl Wire {
    /// One read, retried on EINTR.
    #[inline]
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Tcp(s) => loop {
                match s.read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => return r,
                }
            },
            #[cfg(test)]
            Wire::Sim(end) => end.read(buf),
        }
    }

    /// One write, retried on EINTR; `Ok(0)` when the stream would block.
    #[inline]
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Tcp(s) => loop {
                match s.write(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            },
            #[cfg(test)]
            Wire::Sim(end) => end.write(buf),
        }
    }
}
