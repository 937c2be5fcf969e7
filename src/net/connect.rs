//! Connectors: where to connect, how long to wait, whether and when to try
//! again; host names resolve on a thread of their own, never on the loop.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::session::{BehaviourId, Generation, SessionId};

/// Where a connector connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An address, connected at once.
    Addr(SocketAddr),
    /// Addresses tried in order until one connects (a primary and its
    /// fallbacks); every attempt, a reconnect too, starts from the first.
    Addrs(Vec<SocketAddr>),
    /// A host name (or address text) and port, resolved on a resolver
    /// thread; the addresses are tried in order.
    Host(String, u16),
    /// A Unix-domain stream socket.
    Unix(PathBuf),
}

impl From<SocketAddr> for Target {
    fn from(a: SocketAddr) -> Self {
        Target::Addr(a)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Addr(a) => write!(f, "{a}"),
            Target::Addrs(list) => {
                let list: Vec<String> = list.iter().map(ToString::to_string).collect();
                write!(f, "{}", list.join(","))
            }
            Target::Host(h, p) => write!(f, "{h}:{p}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Reconnecting after a failed connect or a closed session: the first
/// retry after `initial`, each further one after twice the last, at most
/// `max`; a session that opens starts the delays over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

/// How a connector behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Give up connecting to one address after this long (`TimedOut`; the
    /// next address of the target, if any, then gets as long); none by
    /// default (the kernel's own, minutes for TCP).
    pub timeout: Option<Duration>,
    /// Reconnect with this back-off after failures and closes, until
    /// [`Ctx::cancel_connect`](super::Ctx::cancel_connect).
    pub reconnect: Option<Backoff>,
}

/// A connector made by [`Ctx::connect`](super::Ctx::connect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectorId {
    pub(crate) index: u32,
    pub(crate) generation: Generation,
}

#[derive(Debug)]
pub(crate) struct ConnectorState {
    pub(crate) generation: Generation,
    pub(crate) behaviour: BehaviourId,
    pub(crate) target: Target,
    pub(crate) opts: ConnectOptions,
    /// The next retry's delay.
    pub(crate) delay: Duration,
    /// Resolved addresses still to try in this attempt, next first.
    pub(crate) addrs: Vec<SocketAddr>,
    /// The session this connector has (connecting or open).
    pub(crate) session: Option<SessionId>,
}

impl ConnectorState {
    pub(crate) fn new(generation: Generation, behaviour: BehaviourId, target: Target, opts: ConnectOptions) -> Self {
        let delay = opts.reconnect.map(|b| b.initial).unwrap_or_default();
        ConnectorState { generation, behaviour, target, opts, delay, addrs: Vec::new(), session: None }
    }

    /// The delay before the next retry if it reconnects, and doubles the next.
    pub(crate) fn next_retry(&mut self) -> Option<Duration> {
        let b = self.opts.reconnect?;
        let now = self.delay;
        self.delay = self.delay.saturating_mul(2).min(b.max);
        Some(now)
    }

    /// A session opened: retries start over.
    pub(crate) fn opened(&mut self) {
        self.delay = self.opts.reconnect.map(|b| b.initial).unwrap_or_default();
        // A reconnect resolves the name again.
        self.addrs.clear();
    }
}

/// The error of a target without an address to try.
pub(crate) fn no_address() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")
}

/// A finished lookup: the connector, its generation, the addresses.
pub(crate) type Resolved = (usize, Generation, io::Result<Vec<SocketAddr>>);

/// Resolves `host:port` on a new thread and hands the addresses to `done`
/// there.
pub(crate) fn resolve(
    host: String,
    port: u16,
    done: impl FnOnce(io::Result<Vec<SocketAddr>>) + Send + 'static,
) -> io::Result<()> {
    std::thread::Builder::new().name("tcpshm-resolve".into()).spawn(move || {
        let addrs = (host.as_str(), port).to_socket_addrs().map(|a| a.collect::<Vec<_>>()).and_then(|a| {
            if a.is_empty() {
                Err(io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))
            } else {
                Ok(a)
            }
        });
        done(addrs);
    })?;
    Ok(())
}
