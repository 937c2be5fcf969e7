//! Why a session ended, and why a send was refused.

use std::fmt;
use std::io;

use super::codec::{DecodeError, TooLarge};

/// Why a session closed; [`Handler::on_close`](super::Handler::on_close)
/// receives it.
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side closed it ([`Session::close`](super::Session::close)).
    Closed,
    /// Everything queued was sent, as [`Session::close_after_send`](super::Session::close_after_send) asked.
    ClosedAfterSend,
    /// Both directions are shut: the peer ended its side and ours was shut
    /// down (or the peer closed while we had nothing to say).
    Finished,
    /// Reading failed (a reset peer: `ConnectionReset`).
    ReadError(io::Error),
    /// Writing failed (a reset peer: `BrokenPipe`, `ConnectionReset`).
    WriteError(io::Error),
    /// The send buffer would have held more than the behaviour's limit.
    Overflow {
        /// Bytes that would have been buffered.
        buffered: usize,
        /// The limit ([`Behaviour::overflow`](super::Behaviour::overflow)).
        limit: usize,
    },
    /// The received bytes are not a packet of the behaviour's codec
    /// (a packet larger than its maximum, for one).
    Decode(DecodeError),
    /// Nothing was received or sent for the session's idle timeout.
    IdleTimeout,
    /// The loop was stopped with the session open
    /// ([`EventLoop::close_all`](super::EventLoop::close_all)).
    Shutdown,
    /// A move to another behaviour was refused by its
    /// [`Handler::on_adopt`](super::Handler::on_adopt).
    AdoptRefused,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Closed => f.write_str("closed by this side"),
            CloseReason::ClosedAfterSend => f.write_str("closed after sending everything queued"),
            CloseReason::Finished => f.write_str("both directions shut down"),
            CloseReason::ReadError(e) => write!(f, "read failed: {e}"),
            CloseReason::WriteError(e) => write!(f, "write failed: {e}"),
            CloseReason::Overflow { buffered, limit } => {
                write!(f, "send buffer overflow: {buffered} bytes queued, the limit is {limit}")
            }
            CloseReason::Decode(e) => write!(f, "{e}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::Shutdown => f.write_str("the event loop shut down"),
            CloseReason::AdoptRefused => f.write_str("the new behaviour refused the session"),
        }
    }
}

/// Why a send did not queue its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No such session: it closed (or is closing), or the id is stale.
    Closed,
    /// The session's send buffer would pass its limit; the session is now
    /// closing with [`CloseReason::Overflow`].
    Overflow,
    /// The codec cannot frame a payload this large; nothing was sent and the
    /// session stays open.
    TooLarge(TooLarge),
    /// Writes were shut down ([`Session::shutdown`](super::Session::shutdown)
    /// or `close_after_send`).
    Shutdown,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("the session is closed"),
            SendError::Overflow => f.write_str("the send buffer overflowed; the session is closing"),
            SendError::TooLarge(e) => write!(f, "{e}"),
            SendError::Shutdown => f.write_str("the session's writing side is shut down"),
        }
    }
}

impl std::error::Error for SendError {}
