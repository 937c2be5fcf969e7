//! Listening sockets: bound with the options std cannot set, accepting
//! until the kernel has no more, pausing instead of spinning when the
//! process runs out of descriptors.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mio::event::Source;
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::session::{BehaviourId, Generation};
use super::stream::Stream;

/// How a listener is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenOptions {
    /// Length of the queue of connections not accepted yet.
    pub backlog: i32,
    /// SO_REUSEPORT: several listeners (threads, processes) on one port,
    /// the kernel spreading connections among them.
    pub reuse_port: bool,
    /// For an IPv6 address: accept IPv6 only. By default (`false`) a
    /// listener on `[::]` also takes IPv4 connections (dual stack).
    pub v6_only: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions { backlog: 1024, reuse_port: false, v6_only: false }
    }
}

/// A listener made by [`Ctx::listen`](super::Ctx::listen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId {
    pub(crate) index: u32,
    pub(crate) generation: Generation,
}

/// How long a listener stops accepting when the process or system is out
/// of descriptors or memory: sessions closing meanwhile free some.
pub(crate) const OUT_OF_FDS_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) enum Listening {
    Tcp(TcpListener),
    Unix(UnixListener),
}

#[derive(Debug)]
pub(crate) struct ListenerState {
    pub(crate) listening: Listening,
    pub(crate) generation: Generation,
    pub(crate) behaviour: BehaviourId,
}

/// Binds `addr` with SO_REUSEADDR and `opts`; errors keep their errno
/// (EADDRINUSE stays `AddrInUse`).
pub(crate) fn bind_tcp(addr: SocketAddr, opts: &ListenOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(opts.v6_only)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Binds a Unix-domain stream listener at `path`.
pub(crate) fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    UnixListener::bind(path)
}

/// Whether an accept error means the process or system is out of
/// descriptors or memory: accepting again at once would spin.
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

impl Listening {
    /// The next connection, non-blocking.
    pub(crate) fn accept(&self) -> io::Result<Stream> {
        match self {
            Listening::Tcp(l) => Stream::tcp(l.accept()?.0),
            Listening::Unix(l) => Ok(Stream::Unix(l.accept()?.0)),
        }
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listening::Tcp(l) => l.local_addr().ok(),
            Listening::Unix(_) => None,
        }
    }
}

impl Source for Listening {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Listening::Tcp(l) => l.register(registry, token, interests),
            Listening::Unix(l) => l.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Listening::Tcp(l) => l.reregister(registry, token, interests),
            Listening::Unix(l) => l.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Listening::Tcp(l) => l.deregister(registry),
            Listening::Unix(l) => l.deregister(registry),
        }
    }
}
