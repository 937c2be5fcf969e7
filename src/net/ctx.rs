//! What callbacks act on: [`Ctx`], the loop's state without its handlers,
//! and [`Session`], a `Ctx` pointed at one session.
//!
//! Whatever needs a handler (opening, closing, adopting, reporting a failed
//! connect) is queued as a [`Deferred`] and done by the loop when the
//! current callback returns, so callbacks never nest.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use mio::event::Source;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::connect::{self, ConnectOptions, ConnectorId, ConnectorState, Target};
use super::error::{CloseReason, SendError};
use super::event_loop::{LoopHandle, Shared};
use super::handler::{Options, Origin};
use super::listener::{self, ListenOptions, ListenerId, ListenerState, Listening};
use super::session::{self, BehaviourId, Phase, SessionId, SessionState, WriteSide};
use super::stream::{Peer, Stream};
use super::time::{millis_ceil, Clock, Deadlines, Millis};

/// A timer made by [`Ctx::add_timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

/// How many times a timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// This many times in all (0 is taken as 1).
    Times(u32),
    /// Until cancelled (sock_manager's `repeat = -1`).
    Forever,
}

type TimerCallback = Box<dyn FnMut(&mut Ctx<'_>, TimerId)>;

struct UserTimer {
    generation: u32,
    interval: Millis,
    /// Firings left after the next (None: forever).
    left: Option<u32>,
    /// Out while it runs.
    callback: Option<TimerCallback>,
}

/// What comes due in the loop's one timer heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Due {
    User(TimerId),
    Idle(SessionId),
    ConnectTimeout(SessionId),
    Reconnect(usize, u32),
    ListenResume(usize, u32),
}

/// Work that needs a handler, done when the current callback returns.
#[derive(Debug)]
pub(crate) enum Deferred {
    Open(SessionId, Origin),
    Reap(SessionId),
    Adopt(SessionId, BehaviourId),
    ConnectError(usize, u32, io::Error),
}

/// The loop's state apart from its handlers and receive buffer.
pub(crate) struct Core {
    pub(crate) registry: Registry,
    pub(crate) sessions: Slab<SessionState>,
    pub(crate) listeners: Slab<ListenerState>,
    pub(crate) connectors: Slab<ConnectorState>,
    timers: Slab<UserTimer>,
    pub(crate) deadlines: Deadlines<Due>,
    pub(crate) opts: Vec<Options>,
    pub(crate) clock: Clock,
    pub(crate) deferred: VecDeque<Deferred>,
    /// Sessions whose last read stopped at the per-event limit (fairness):
    /// read again next iteration without waiting.
    pub(crate) unread: Vec<SessionId>,
    generation: u32,
    pub(crate) stopped: bool,
    pub(crate) iteration: u64,
    pub(crate) shared: Arc<Shared>,
}

/// Tokens: sessions `4i`, listeners `4i + 1`; the waker is `usize::MAX`.
pub(crate) fn session_token(index: usize) -> Token {
    Token(index << 2)
}

pub(crate) fn listener_token(index: usize) -> Token {
    Token(index << 2 | 1)
}

impl Core {
    pub(crate) fn new(registry: Registry, shared: Arc<Shared>) -> Self {
        Core {
            registry,
            sessions: Slab::new(),
            listeners: Slab::new(),
            connectors: Slab::new(),
            timers: Slab::new(),
            deadlines: Deadlines::new(),
            opts: Vec::new(),
            clock: Clock::new(),
            deferred: VecDeque::new(),
            unread: Vec::new(),
            generation: 0,
            stopped: false,
            iteration: 0,
            shared,
        }
    }

    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    /// The session `id` names, if it is still there.
    #[inline]
    pub(crate) fn session(&mut self, id: SessionId) -> Option<&mut SessionState> {
        self.sessions.get_mut(id.index as usize).filter(|s| s.generation == id.generation)
    }

    /// Registers `stream` as a new session of `behaviour`.
    pub(crate) fn insert(&mut self, mut stream: Stream, behaviour: BehaviourId, phase: Phase) -> io::Result<SessionId> {
        let generation = self.next_generation();
        let entry = self.sessions.vacant_entry();
        let index = entry.key();
        stream.register(&self.registry, session_token(index), Interest::READABLE | Interest::WRITABLE)?;
        entry.insert(SessionState::new(stream, generation, behaviour, phase));
        Ok(SessionId { index: index as u32, generation })
    }

    /// A session is open: its idle timeout starts, `on_open` is queued.
    pub(crate) fn open(&mut self, id: SessionId, origin: Origin) {
        let now = self.clock.now();
        let Some(b) = self.session(id).map(|s| s.behaviour) else { return };
        let idle = self.opts[b.0 as usize].idle.map(millis_ceil);
        if let Some(s) = self.session(id) {
            s.phase = Phase::Open;
            s.idle = idle;
        }
        self.arm_idle(id, now);
        self.deferred.push_back(Deferred::Open(id, origin));
    }

    /// Starts (or restarts) the idle clock and makes sure a heap entry exists.
    pub(crate) fn arm_idle(&mut self, id: SessionId, now: Millis) {
        if let Some(s) = self.session(id) {
            s.touch(now);
        }
        self.queue_idle(id);
    }

    /// Makes sure a heap entry exists for the session's idle deadline.
    pub(crate) fn queue_idle(&mut self, id: SessionId) {
        let Some(s) = self.session(id) else { return };
        if s.idle.is_some() && !s.idle_queued {
            s.idle_queued = true;
            let at = s.idle_deadline;
            self.deadlines.add(at, Due::Idle(id));
        }
    }

    /// Marks `id` to close with `reason`; the loop reaps it after the
    /// current callback.
    pub(crate) fn close(&mut self, id: SessionId, reason: CloseReason) {
        if let Some(s) = self.session(id) {
            if s.is_live() {
                s.close(reason);
                self.deferred.push_back(Deferred::Reap(id));
            }
        }
    }

    /// Writes what the send buffer holds, then shuts down or closes as
    /// asked; `Ok(true)` if it drained.
    pub(crate) fn flush(&mut self, id: SessionId) -> bool {
        let Some(s) = self.sessions.get_mut(id.index as usize).filter(|s| s.generation == id.generation) else {
            return false;
        };
        let keep = self.opts[s.behaviour.0 as usize].keep;
        match s.send.flush(&mut s.stream, keep) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                self.close(id, CloseReason::WriteError(e));
                return false;
            }
        }
        if let WriteSide::ShutWhenDrained { close } = s.write_side {
            s.write_side = WriteSide::Shut;
            if close {
                self.close(id, CloseReason::ClosedAfterSend);
                return true;
            }
            if let Err(e) = s.stream.shutdown_write() {
                self.close(id, CloseReason::WriteError(e));
            } else if s.read_ended {
                self.close(id, CloseReason::Finished);
            }
        }
        true
    }

    fn send(&mut self, id: SessionId, payload: &[u8], more: bool) -> Result<(), SendError> {
        let now = self.clock.now();
        let Some(s) = self.sessions.get_mut(id.index as usize).filter(|s| s.generation == id.generation) else {
            return Err(SendError::Closed);
        };
        if !s.is_live() || s.phase != Phase::Open {
            return Err(SendError::Closed);
        }
        if s.write_side != WriteSide::Open {
            return Err(SendError::Shutdown);
        }
        let opts = &self.opts[s.behaviour.0 as usize];
        let framing = opts.codec.frame(payload.len()).map_err(SendError::TooLarge)?;
        let parts = [framing.prefix.as_bytes(), payload, framing.suffix.as_bytes()];
        let total = parts.iter().map(|p| p.len()).sum::<usize>();
        s.touch(now);
        // Straight to the socket when nothing waits before it; only the
        // tail the socket did not take is copied.
        let written = if s.send.is_empty() && !s.corked && !more {
            match session::write_parts(&mut s.stream, &parts) {
                Ok(n) => n,
                Err(e) => {
                    self.close(id, CloseReason::WriteError(e));
                    return Err(SendError::Closed);
                }
            }
        } else {
            0
        };
        if more {
            s.corked = true;
        }
        if written == total {
            return Ok(());
        }
        let buffered = s.send.len() + total - written;
        if buffered > opts.overflow {
            let limit = opts.overflow;
            self.close(id, CloseReason::Overflow { buffered, limit });
            return Err(SendError::Overflow);
        }
        s.send.extend(&session::skip_parts(&parts, written));
        s.wants_writable = true;
        Ok(())
    }

    fn new_timer(&mut self, delay: Duration, interval: Duration, repeat: Repeat, callback: TimerCallback) -> TimerId {
        let generation = self.next_generation();
        let left = match repeat {
            Repeat::Times(n) => Some(n.max(1) - 1),
            Repeat::Forever => None,
        };
        let interval = millis_ceil(interval);
        let index = self.timers.insert(UserTimer { generation, interval, left, callback: Some(callback) });
        let id = TimerId { index: index as u32, generation };
        let at = self.clock.now().saturating_add(millis_ceil(delay));
        self.deadlines.add(at, Due::User(id));
        id
    }

    fn timer(&mut self, id: TimerId) -> Option<&mut UserTimer> {
        self.timers.get_mut(id.index as usize).filter(|t| t.generation == id.generation)
    }

    /// Fires a due user timer `id` (scheduled for `at`) on `cx`.
    pub(crate) fn fire_timer(cx: &mut Ctx<'_>, id: TimerId, at: Millis) {
        let Some(mut callback) = cx.core.timer(id).and_then(|t| t.callback.take()) else { return };
        callback(cx, id);
        let Some(t) = cx.core.timer(id) else { return }; // cancelled in the callback
        match t.left {
            Some(0) => {
                cx.core.timers.remove(id.index as usize);
            }
            left => {
                t.left = left.map(|n| n - 1);
                t.callback = Some(callback);
                let next = at.saturating_add(t.interval.max(1)).max(cx.core.clock.now());
                cx.core.deadlines.add(next, Due::User(id));
            }
        }
    }

    /// Starts an attempt of connector `index`: resolves, or connects to the
    /// next address.
    pub(crate) fn attempt(&mut self, index: usize) {
        let Some(c) = self.connectors.get_mut(index) else { return };
        let (generation, behaviour) = (c.generation, c.behaviour);
        let stream = match (&c.target, c.addrs.is_empty()) {
            (Target::Host(host, port), true) => {
                let shared = self.shared.clone();
                let done = self.shared.resolved.clone();
                if let Err(e) = connect::resolve(host.clone(), *port, (index, generation), done, move || shared.wake())
                {
                    self.deferred.push_back(Deferred::ConnectError(index, generation, e));
                }
                return;
            }
            (Target::Host(..), false) => {
                let addr = c.addrs.remove(0);
                mio::net::TcpStream::connect(addr).map(Stream::Tcp)
            }
            (Target::Addr(addr), _) => mio::net::TcpStream::connect(*addr).map(Stream::Tcp),
            (Target::Unix(path), _) => mio::net::UnixStream::connect(path).map(Stream::Unix),
        };
        let stream = stream.and_then(|s| {
            if let Stream::Tcp(t) = &s {
                t.set_nodelay(true)?;
            }
            Ok(s)
        });
        match stream.and_then(|s| self.insert(s, behaviour, Phase::Connecting)) {
            Ok(id) => {
                if let Some(s) = self.session(id) {
                    s.connector = Some(index);
                }
                let c = &mut self.connectors[index];
                c.session = Some(id);
                if let Some(t) = c.opts.timeout {
                    let at = self.clock.now().saturating_add(millis_ceil(t));
                    self.deadlines.add(at, Due::ConnectTimeout(id));
                }
            }
            Err(e) => self.deferred.push_back(Deferred::ConnectError(index, generation, e)),
        }
    }

    /// A session was reaped: its connector, if it reconnects, tries again
    /// after its back-off; else it is done.
    pub(crate) fn session_gone(&mut self, id: SessionId, connector: Option<usize>) {
        let Some(c) = connector.and_then(|i| self.connectors.get_mut(i)).filter(|c| c.session == Some(id)) else {
            return;
        };
        let index = connector.unwrap_or_default();
        c.session = None;
        match c.next_retry() {
            Some(delay) => {
                let at = self.clock.now().saturating_add(millis_ceil(delay));
                self.deadlines.add(at, Due::Reconnect(index, c.generation));
            }
            None => {
                self.connectors.remove(index);
            }
        }
    }

    /// A connecting session failed: it goes without `on_close` (it never
    /// opened), and its connector tries the next address or reports.
    pub(crate) fn connect_failed(&mut self, id: SessionId, e: io::Error) {
        let Some(s) = self.session(id) else { return };
        let connector = s.connector;
        let generation = connector.and_then(|c| self.connectors.get(c)).map(|c| c.generation);
        if let Some(mut s) = self.sessions.try_remove(id.index as usize) {
            let _ = Source::deregister(&mut s.stream, &self.registry);
        }
        if let (Some(c), Some(g)) = (connector, generation) {
            self.connectors[c].session = None;
            if self.connectors[c].addrs.is_empty() {
                self.deferred.push_back(Deferred::ConnectError(c, g, e));
            } else {
                self.attempt(c);
            }
        }
    }
}

/// The loop, as callbacks see it: sessions by id, timers, listeners,
/// connectors, stopping.
pub struct Ctx<'a> {
    pub(crate) core: &'a mut Core,
}

impl Ctx<'_> {
    /// Time since the loop was made, as of this iteration (milliseconds).
    pub fn now(&self) -> Duration {
        Duration::from_millis(self.core.clock.now())
    }

    /// Iterations the loop has run (uSockets' `us_loop_iteration_number`).
    pub fn iteration(&self) -> u64 {
        self.core.iteration
    }

    /// Makes [`EventLoop::run`](super::EventLoop::run) return after this iteration.
    pub fn stop(&mut self) {
        self.core.stopped = true;
    }

    /// A thread-safe handle that wakes or stops this loop.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle { shared: self.core.shared.clone() }
    }

    /// Sends `payload` on session `id`, framed by its codec: written to
    /// the socket at once when nothing is queued before it; what the socket
    /// does not take is buffered up to the behaviour's overflow limit.
    pub fn send(&mut self, id: SessionId, payload: &[u8]) -> Result<(), SendError> {
        self.core.send(id, payload, false)
    }

    /// Like [`send`](Self::send), but more follows at once: it is buffered
    /// until [`flush`](Self::flush) (or a plain send) so a burst leaves in
    /// few writes (uSockets' `msg_more`, a cork).
    pub fn send_more(&mut self, id: SessionId, payload: &[u8]) -> Result<(), SendError> {
        self.core.send(id, payload, true)
    }

    /// Writes what `id` has buffered (after [`send_more`](Self::send_more)).
    pub fn flush(&mut self, id: SessionId) {
        if let Some(s) = self.core.session(id) {
            s.corked = false;
        }
        if self.core.flush(id) {
            // Drained here: the caller knows, no on_writable follows.
            if let Some(s) = self.core.session(id) {
                s.wants_writable = false;
            }
        }
    }

    /// Bytes session `id` has buffered, not yet taken by the socket.
    pub fn buffered(&mut self, id: SessionId) -> usize {
        self.core.session(id).map_or(0, |s| s.send.len())
    }

    /// Who session `id` is connected to.
    pub fn peer(&mut self, id: SessionId) -> Option<Peer> {
        self.core.session(id).map(|s| s.peer.clone())
    }

    /// Whether `id` is open and not closing.
    pub fn is_open(&mut self, id: SessionId) -> bool {
        self.core.session(id).is_some_and(|s| s.is_live() && s.phase == Phase::Open)
    }

    /// Closes `id` now, dropping what it has buffered ([`CloseReason::Closed`]).
    pub fn close(&mut self, id: SessionId) {
        self.core.close(id, CloseReason::Closed);
    }

    /// Closes `id` once everything queued is written
    /// ([`CloseReason::ClosedAfterSend`]); later sends are refused.
    pub fn close_after_send(&mut self, id: SessionId) {
        self.shut(id, true);
    }

    /// Shuts down `id`'s writing side (FIN) once everything queued is
    /// written; the session keeps receiving until the peer ends too.
    pub fn shutdown(&mut self, id: SessionId) {
        self.shut(id, false);
    }

    fn shut(&mut self, id: SessionId, close: bool) {
        if let Some(s) = self.core.session(id) {
            if s.is_live() && s.write_side == WriteSide::Open {
                s.write_side = WriteSide::ShutWhenDrained { close };
                s.corked = false;
                self.core.flush(id);
            }
        }
    }

    /// Sets (or with `None` removes) `id`'s idle timeout, starting now.
    pub fn set_idle_timeout(&mut self, id: SessionId, timeout: Option<Duration>) {
        let now = self.core.clock.now();
        if let Some(s) = self.core.session(id) {
            s.idle = timeout.map(millis_ceil);
        }
        self.core.arm_idle(id, now);
    }

    /// Moves `id` to `behaviour` (uSockets' adopt) when the current
    /// callback returns: the new behaviour's codec, options and handler
    /// take over, its [`on_adopt`](super::Handler::on_adopt) receiving the
    /// session's data. TLS and WebSocket upgrades are built on this.
    pub fn adopt(&mut self, id: SessionId, behaviour: BehaviourId) {
        if (behaviour.0 as usize) >= self.core.opts.len() {
            return;
        }
        if let Some(s) = self.core.session(id).filter(|s| s.is_live() && !s.adopting) {
            s.adopting = true;
            self.core.deferred.push_back(Deferred::Adopt(id, behaviour));
        }
    }

    /// Calls `callback` after `delay`, then every `interval`, `repeat`
    /// times in all (sock_manager's `sm_add_timer`), on the loop's thread.
    pub fn add_timer(
        &mut self,
        delay: Duration,
        interval: Duration,
        repeat: Repeat,
        callback: impl FnMut(&mut Ctx<'_>, TimerId) + 'static,
    ) -> TimerId {
        self.core.new_timer(delay, interval, repeat, Box::new(callback))
    }

    /// Cancels a timer; false if it already fired its last or was cancelled.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.core.timer(id).is_some() && self.core.timers.try_remove(id.index as usize).is_some()
    }

    /// Listens on `addr` (IPv4 or IPv6) for sessions of `behaviour`.
    /// Errors keep their errno: a port in use is `AddrInUse`.
    pub fn listen(&mut self, behaviour: BehaviourId, addr: SocketAddr, opts: ListenOptions) -> io::Result<ListenerId> {
        self.add_listener(behaviour, Listening::Tcp(listener::bind_tcp(addr, &opts)?))
    }

    /// Listens on a Unix-domain stream socket at `path`.
    pub fn listen_unix(&mut self, behaviour: BehaviourId, path: &Path) -> io::Result<ListenerId> {
        self.add_listener(behaviour, Listening::Unix(listener::bind_unix(path)?))
    }

    fn add_listener(&mut self, behaviour: BehaviourId, mut listening: Listening) -> io::Result<ListenerId> {
        if behaviour.0 as usize >= self.core.opts.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no such behaviour"));
        }
        let generation = self.core.next_generation();
        let entry = self.core.listeners.vacant_entry();
        let index = entry.key();
        Source::register(&mut listening, &self.core.registry, listener_token(index), Interest::READABLE)?;
        entry.insert(ListenerState { listening, generation, behaviour });
        Ok(ListenerId { index: index as u32, generation })
    }

    /// The address a TCP listener is bound to (its port when bound to 0).
    pub fn listener_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        let l = self.core.listeners.get(id.index as usize).filter(|l| l.generation == id.generation)?;
        l.listening.local_addr()
    }

    /// Stops listening; false if `id` is not listening.
    pub fn close_listener(&mut self, id: ListenerId) -> bool {
        let index = id.index as usize;
        if self.core.listeners.get(index).is_none_or(|l| l.generation != id.generation) {
            return false;
        }
        let mut l = self.core.listeners.remove(index);
        let _ = Source::deregister(&mut l.listening, &self.core.registry);
        true
    }

    /// Connects to `target` for a session of `behaviour`, without blocking:
    /// the session opens with [`Origin::Connected`], or
    /// [`on_connect_error`](super::Handler::on_connect_error) says why not.
    pub fn connect(&mut self, behaviour: BehaviourId, target: Target, opts: ConnectOptions) -> ConnectorId {
        let generation = self.core.next_generation();
        let index = self.core.connectors.insert(ConnectorState::new(generation, behaviour, target, opts));
        self.core.attempt(index);
        ConnectorId { index: index as u32, generation }
    }

    /// Stops a connector from reconnecting (its open session stays); false
    /// if it is gone already.
    pub fn cancel_connect(&mut self, id: ConnectorId) -> bool {
        let index = id.index as usize;
        if self.core.connectors.get(index).is_none_or(|c| c.generation != id.generation) {
            return false;
        }
        let c = self.core.connectors.remove(index);
        if let Some(sid) = c.session {
            let connecting = self.core.session(sid).map(|s| {
                s.connector = None;
                s.phase == Phase::Connecting
            });
            if connecting == Some(true) {
                self.core.connect_failed(sid, io::ErrorKind::Interrupted.into());
            }
        }
        true
    }

    /// The session `id` as a [`Session`] handle.
    pub fn session(&mut self, id: SessionId) -> Session<'_> {
        Session { cx: Ctx { core: self.core }, id }
    }
}

/// A [`Ctx`] pointed at one session: what a session callback receives.
pub struct Session<'a> {
    pub(crate) cx: Ctx<'a>,
    pub(crate) id: SessionId,
}

impl Session<'_> {
    /// This session's id, to keep and use later (it goes stale when the session closes).
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Who is at the other end.
    pub fn peer(&mut self) -> Option<Peer> {
        let id = self.id;
        self.cx.peer(id)
    }

    /// See [`Ctx::send`].
    pub fn send(&mut self, payload: &[u8]) -> Result<(), SendError> {
        let id = self.id;
        self.cx.send(id, payload)
    }

    /// See [`Ctx::send_more`].
    pub fn send_more(&mut self, payload: &[u8]) -> Result<(), SendError> {
        let id = self.id;
        self.cx.send_more(id, payload)
    }

    /// See [`Ctx::flush`].
    pub fn flush(&mut self) {
        let id = self.id;
        self.cx.flush(id);
    }

    /// See [`Ctx::close`].
    pub fn close(&mut self) {
        let id = self.id;
        self.cx.close(id);
    }

    pub(crate) fn close_with(&mut self, reason: CloseReason) {
        self.cx.core.close(self.id, reason);
    }

    /// See [`Ctx::close_after_send`].
    pub fn close_after_send(&mut self) {
        let id = self.id;
        self.cx.close_after_send(id);
    }

    /// See [`Ctx::shutdown`].
    pub fn shutdown(&mut self) {
        let id = self.id;
        self.cx.shutdown(id);
    }

    /// See [`Ctx::set_idle_timeout`].
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        let id = self.id;
        self.cx.set_idle_timeout(id, timeout);
    }

    /// See [`Ctx::adopt`].
    pub fn adopt(&mut self, behaviour: BehaviourId) {
        let id = self.id;
        self.cx.adopt(id, behaviour);
    }

    /// See [`Ctx::buffered`].
    pub fn buffered(&mut self) -> usize {
        let id = self.id;
        self.cx.buffered(id)
    }
}

impl<'a> Deref for Session<'a> {
    type Target = Ctx<'a>;
    fn deref(&self) -> &Ctx<'a> {
        &self.cx
    }
}

impl<'a> DerefMut for Session<'a> {
    fn deref_mut(&mut self) -> &mut Ctx<'a> {
        &mut self.cx
    }
}

/// Whether the shared state asks the loop to stop (a [`LoopHandle::stop`]).
pub(crate) fn take_stop(shared: &Shared) -> bool {
    shared.stop.swap(false, SeqCst)
}
