//! The byte streams a session can run on: TCP, Unix-domain, or any other
//! file descriptor handed over by the user (a pipe, a terminal).
//!
//! Sockets are written with `send`/`sendmsg` and `MSG_NOSIGNAL`: a peer
//! that has gone is `EPIPE`, never a SIGPIPE that kills a host program which
//! did not ignore it (Rust's runtime ignores it; a C host may not). A pipe
//! has no such flag: a program that writes to pipes whose reader may go
//! should ignore SIGPIPE.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::SockRef;

/// Who is at the other end of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer.
    Inet(SocketAddr),
    /// A Unix-domain peer, with its path if it is bound to one.
    Unix(Option<PathBuf>),
    /// A descriptor the user handed over that is not a TCP or Unix-domain
    /// stream socket ([`EventLoop::adopt_fd`](super::EventLoop::adopt_fd)):
    /// a pipe, a datagram socket, a terminal.
    Fd,
}

/// A non-blocking stream registered with the loop.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Fd(File),
}

impl Stream {
    /// A TCP session's stream, with TCP_NODELAY: a session writes whole
    /// packets, so Nagle's algorithm would only delay them.
    pub(crate) fn tcp(s: TcpStream) -> io::Result<Stream> {
        s.set_nodelay(true)?;
        Ok(Stream::Tcp(s))
    }

    /// Takes over `fd` (any readable/writable descriptor), made non-blocking.
    /// A TCP or Unix-domain stream socket becomes a stream of that kind, so
    /// it is written without SIGPIPE, can half-close and names its peer;
    /// anything else (a pipe, a datagram socket, a terminal) is read and
    /// written as a file.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Stream> {
        let s = socket2::Socket::from(fd);
        // socket2's fcntl(O_NONBLOCK) works on any descriptor.
        s.set_nonblocking(true)?;
        if s.r#type().ok() == Some(socket2::Type::STREAM) {
            match s.domain() {
                Ok(socket2::Domain::UNIX) => {
                    return Ok(Stream::Unix(UnixStream::from_std(std::os::unix::net::UnixStream::from(OwnedFd::from(
                        s,
                    )))))
                }
                Ok(socket2::Domain::IPV4 | socket2::Domain::IPV6) => {
                    return Stream::tcp(TcpStream::from_std(std::net::TcpStream::from(OwnedFd::from(s))))
                }
                _ => {}
            }
        }
        Ok(Stream::Fd(File::from(OwnedFd::from(s))))
    }

    /// Whether a read shorter than the buffer means the stream is empty.
    /// True of TCP and Unix stream sockets; not of the other descriptors a
    /// user can hand over (a datagram socketpair or a terminal returns one
    /// message per read), which are read until WouldBlock.
    pub(crate) fn empty_after_short_read(&self) -> bool {
        !matches!(self, Stream::Fd(_))
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Fd(f) => f.read(buf),
        }
    }

    /// Writes `buf` (`send(MSG_NOSIGNAL)` on sockets: no SIGPIPE, and
    /// none of `write`'s file-layer work).
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => SockRef::from(&*s).send_with_flags(buf, libc::MSG_NOSIGNAL),
            Stream::Unix(s) => SockRef::from(&*s).send_with_flags(buf, libc::MSG_NOSIGNAL),
            Stream::Fd(f) => f.write(buf),
        }
    }

    /// Writes `bufs` in one call (`sendmsg(MSG_NOSIGNAL)` on sockets).
    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => SockRef::from(&*s).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL),
            Stream::Unix(s) => SockRef::from(&*s).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL),
            Stream::Fd(f) => f.write_vectored(bufs),
        }
    }

    /// Sends FIN (a descriptor that is not a socket has no half-close: Ok).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Fd(_) => Ok(()),
        }
    }

    /// A connect's outcome: the socket's pending error, or whether it is
    /// connected (`Ok(false)`: still in progress).
    pub(crate) fn connect_result(&self) -> io::Result<bool> {
        let (err, peer) = match self {
            Stream::Tcp(s) => (s.take_error()?, s.peer_addr().map(|_| ())),
            Stream::Unix(s) => (s.take_error()?, s.peer_addr().map(|_| ())),
            Stream::Fd(_) => return Ok(true),
        };
        if let Some(e) = err {
            return Err(e);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn peer(&self) -> Peer {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(Peer::Inet).unwrap_or(Peer::Fd),
            Stream::Unix(s) => Peer::Unix(s.peer_addr().ok().and_then(|a| a.as_pathname().map(Into::into))),
            Stream::Fd(_) => Peer::Fd,
        }
    }
}

impl Source for Stream {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
            Stream::Fd(f) => SourceFd(&f.as_raw_fd()).register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
            Stream::Fd(f) => SourceFd(&f.as_raw_fd()).reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
            Stream::Fd(f) => SourceFd(&f.as_raw_fd()).deregister(registry),
        }
    }
}
