//! What callbacks act on: [`Ctx`], the loop without its handlers, and
//! [`Session`], a `Ctx` pointed at one session.

use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::Duration;

use mio::event::Source;
use mio::Interest;

use super::connect::{ConnectOptions, ConnectorId, ConnectorState, Target};
use super::core::{listener_token, Core, Deferred, Repeat, TimerId};
use super::error::{CloseReason, SendError};
use super::event_loop::LoopHandle;
use super::listener::{self, ListenOptions, ListenerId, ListenerState, Listening};
use super::session::{BehaviourId, Phase, SessionId, WriteSide};
use super::stream::Peer;
use super::time::idle_millis;

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

    /// Who session `id` is connected to (asked of the kernel each time:
    /// sessions keep no copy).
    pub fn peer(&mut self, id: SessionId) -> Option<Peer> {
        self.core.session(id).map(|s| s.stream.peer())
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
            s.idle = timeout.map(idle_millis);
        }
        self.core.arm_idle(id, now);
    }

    /// Moves `id` to `behaviour` (uSockets' adopt) when the current
    /// callback returns: the new behaviour's codec, options and handler
    /// take over, its [`on_adopt`](super::Handler::on_adopt) receiving the
    /// session's data. TLS and WebSocket upgrades are built on this.
    ///
    /// `InvalidInput` for a behaviour this loop does not have; a session
    /// that is closed, closing or already moving stays as it is.
    pub fn adopt(&mut self, id: SessionId, behaviour: BehaviourId) -> io::Result<()> {
        self.core.has_behaviour(behaviour)?;
        if let Some(s) = self.core.session(id).filter(|s| s.is_live() && !s.adopting) {
            s.adopting = true;
            self.core.deferred.push_back(Deferred::Adopt(id, behaviour));
        }
        Ok(())
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
        self.core.cancel_timer(id)
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
        self.core.has_behaviour(behaviour)?;
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
    /// the session opens with [`Origin::Connected`](super::Origin::Connected), or
    /// [`on_connect_error`](super::Handler::on_connect_error) says why not.
    ///
    /// An error (`InvalidInput`) only for a behaviour this loop does not
    /// have or an empty [`Target::Addrs`].
    pub fn connect(&mut self, behaviour: BehaviourId, target: Target, opts: ConnectOptions) -> io::Result<ConnectorId> {
        self.core.has_behaviour(behaviour)?;
        if target == Target::Addrs(Vec::new()) {
            return Err(super::connect::no_address());
        }
        let generation = self.core.next_generation();
        let index = self.core.connectors.insert(ConnectorState::new(generation, behaviour, target, opts));
        self.core.attempt(index);
        Ok(ConnectorId { index: index as u32, generation })
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
    pub fn adopt(&mut self, behaviour: BehaviourId) -> io::Result<()> {
        let id = self.id;
        self.cx.adopt(id, behaviour)
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
