//! Typed failures: [`Error`] for operations that fail outright, [`CloseReason`]
//! for why a live connection ended.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a connection was closed. `Display` gives the C++ original's reason text
/// where it has one, so logs read the same on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Nothing was received for `CONNECTION_TIMEOUT`.
    Timeout,
    /// `recv` failed (the errno says why).
    ReadError,
    /// The peer closed the socket.
    RemoteClose,
    /// `send` failed (the errno says why).
    SendError,
    /// The user (or `stop()`) closed the connection.
    RequestClose,
    /// The persistent queue file is inconsistent.
    PtcpFileCorrupt,
    /// A frame larger than `TCP_RECV_BUF_MAX_SIZE` arrived.
    MsgTooLarge,
    /// A frame whose size field is below the 8-byte header arrived.
    InvalidMsgSize,
    /// The peer acknowledged messages that were never sent (ack beyond `seq_end`).
    AckOutOfRange,
    /// The peer's shared-memory queue holds an impossible size or index.
    ShmQueueCorrupt,
}

impl CloseReason {
    /// The reason text: the C++ original's wording where it has one.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Timeout => "Timeout",
            CloseReason::ReadError => "Read error",
            CloseReason::RemoteClose => "Remote close",
            CloseReason::SendError => "Send error",
            CloseReason::RequestClose => "Request close",
            CloseReason::PtcpFileCorrupt => "Ptcp file corrupt",
            CloseReason::MsgTooLarge => "Msg size larger than recv buf max size",
            CloseReason::InvalidMsgSize => "Msg size smaller than header",
            CloseReason::AckOutOfRange => "Ack beyond sent msgs",
            CloseReason::ShmQueueCorrupt => "Shm queue corrupt",
        }
    }
}

impl CloseReason {
    const ALL: [CloseReason; 10] = [
        CloseReason::Timeout,
        CloseReason::ReadError,
        CloseReason::RemoteClose,
        CloseReason::SendError,
        CloseReason::RequestClose,
        CloseReason::PtcpFileCorrupt,
        CloseReason::MsgTooLarge,
        CloseReason::InvalidMsgSize,
        CloseReason::AckOutOfRange,
        CloseReason::ShmQueueCorrupt,
    ];

    /// Packs a reason and errno into one word for an atomic (0 = none).
    pub(crate) fn pack(reason: CloseReason, errno: i32) -> u64 {
        let code = Self::ALL.iter().position(|&r| r == reason).unwrap_or(0) as u64 + 1;
        code << 32 | errno as u32 as u64
    }

    /// Unpacks [`pack`](Self::pack); `None` for 0.
    pub(crate) fn unpack(v: u64) -> Option<(CloseReason, i32)> {
        let code = (v >> 32) as usize;
        let reason = *Self::ALL.get(code.checked_sub(1)?)?;
        Some((reason, v as u32 as i32))
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of a client or server operation (connect, start, opening files).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed; `what` names it (and the path, if any).
    Io {
        /// The operation, e.g. `"connect"` or `"open ptcp file"`.
        what: &'static str,
        /// The file involved, if any.
        path: Option<PathBuf>,
        /// The OS error.
        source: io::Error,
    },
    /// A file exists but is not a valid file of this configuration.
    FileCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A local or remote name is empty, too long for `NAME_SIZE`, or holds
    /// `/`, `_` or NUL (see [`valid_name`](crate::msg::valid_name)).
    InvalidName(String),
    /// Another owner (this process or another) has the file open: a queue
    /// file, or a client's identity, has one owner at a time.
    InUse {
        /// The file held by the other owner.
        path: PathBuf,
    },
    /// The server's login response was malformed.
    InvalidLoginRsp(&'static str),
    /// `connect` was called on a client that is connected.
    AlreadyConnected,
    /// `start` was called on a server that is started.
    AlreadyStarted,
}

impl Error {
    pub(crate) fn io(what: &'static str, source: io::Error) -> Self {
        Error::Io { what, path: None, source }
    }

    pub(crate) fn file(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { what, path: Some(path.into()), source }
    }

    /// The OS error number behind this error, 0 if there is none.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(0),
            _ => 0,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, path: Some(p), source } => write!(f, "{what} {}: {source}", p.display()),
            Error::Io { what, path: None, source } => write!(f, "{what}: {source}"),
            Error::FileCorrupt { path, detail } => write!(f, "{}: {detail}", path.display()),
            Error::InvalidName(n) => write!(f, "invalid name {n:?}"),
            Error::InUse { path } => write!(f, "{}: in use by another owner", path.display()),
            Error::InvalidLoginRsp(why) => write!(f, "Invalid LoginRsp: {why}"),
            Error::AlreadyConnected => f.write_str("already connected"),
            Error::AlreadyStarted => f.write_str("already started"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
