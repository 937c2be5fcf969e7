//! The loop's state apart from its handlers: sessions, listeners,
//! connectors, timers, and the work callbacks leave for the loop.
//!
//! Whatever needs a handler (opening, closing, adopting, reporting a failed
//! connect) is queued as a [`Deferred`] and done by the loop when the
//! current callback returns, so callbacks never nest.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use mio::event::Source;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::connect::{self, ConnectorState, Target};
use super::ctx::Ctx;
use super::error::{CloseReason, SendError};
use super::event_loop::Shared;
use super::handler::{Options, Origin};
use super::listener::ListenerState;
use super::session::{self, BehaviourId, Phase, SessionId, SessionState, WriteSide};
use super::stream::Stream;
use super::time::{idle_millis, millis_ceil, Clock, Deadlines, Millis};

/// A timer made by [`Ctx::add_timer`](super::Ctx::add_timer).
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

    pub(crate) fn next_generation(&mut self) -> u32 {
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
        let Some(s) = self.session(id) else { return };
        s.phase = Phase::Open;
        let b = s.behaviour;
        self.join_behaviour(id, b);
        self.deferred.push_back(Deferred::Open(id, origin));
    }

    /// Puts a session under behaviour `b` (on opening, or adopted): its
    /// idle timeout is the behaviour's, starting now.
    pub(crate) fn join_behaviour(&mut self, id: SessionId, b: BehaviourId) {
        let now = self.clock.now();
        let idle = self.opts[b.0 as usize].idle.map(idle_millis);
        if let Some(s) = self.session(id) {
            s.behaviour = b;
            s.idle = idle;
        }
        self.arm_idle(id, now);
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
        // A new entry when none is queued or the deadline moved earlier (a
        // shorter timeout); later moves wait for the queued entry.
        if s.idle.is_some() && s.idle_queued.is_none_or(|q| s.idle_deadline < q) {
            s.idle_queued = Some(s.idle_deadline);
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
        if !s.send.is_empty() {
            // Bytes moving out are traffic too: a slow reader is not idle.
            s.touch(self.clock.now());
        }
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

    pub(crate) fn send(&mut self, id: SessionId, payload: &[u8], more: bool) -> Result<(), SendError> {
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
        // A plain send after send_more ends the cork: everything goes now.
        let uncork = !more && s.corked;
        if more {
            s.corked = true;
        }
        if written == total && !uncork {
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
        if uncork {
            s.corked = false;
            self.flush(id);
        }
        Ok(())
    }

    pub(crate) fn new_timer(
        &mut self,
        delay: Duration,
        interval: Duration,
        repeat: Repeat,
        callback: TimerCallback,
    ) -> TimerId {
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

    /// Removes a timer; false if it is gone already.
    pub(crate) fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.timer(id).is_some() && self.timers.try_remove(id.index as usize).is_some()
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
            (Target::Unix(path), _) => mio::net::UnixStream::connect(path).map(Stream::Unix),
            (Target::Host(host, port), true) => {
                let shared = self.shared.clone();
                let done = self.shared.resolved.clone();
                if let Err(e) = connect::resolve(host.clone(), *port, (index, generation), done, move || shared.wake())
                {
                    self.deferred.push_back(Deferred::ConnectError(index, generation, e));
                }
                return;
            }
            (Target::Addr(addr), true) => mio::net::TcpStream::connect(*addr).map(Stream::Tcp),
            (Target::Addrs(list), true) => match list.split_first() {
                Some((first, rest)) => {
                    c.addrs = rest.to_vec();
                    mio::net::TcpStream::connect(*first).map(Stream::Tcp)
                }
                None => Err(connect::no_address()),
            },
            // The next address of this attempt.
            (_, false) => mio::net::TcpStream::connect(c.addrs.remove(0)).map(Stream::Tcp),
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
            Err(e) => {
                if self.connectors.get(index).is_some_and(|c| !c.addrs.is_empty()) {
                    return self.attempt(index); // the next resolved address
                }
                self.deferred.push_back(Deferred::ConnectError(index, generation, e));
            }
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
