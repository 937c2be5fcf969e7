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
use super::session::{self, BehaviourId, Generation, Phase, SessionId, SessionState, WriteSide};
use super::stream::Stream;
use super::time::{idle_millis, millis_ceil, Clock, Deadlines, Millis};

/// A timer made by [`Ctx::add_timer`](super::Ctx::add_timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    index: u32,
    generation: Generation,
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
    generation: Generation,
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
    Reconnect(usize, Generation),
    ListenResume(usize, Generation),
}

/// Work that needs a handler, done when the current callback returns.
#[derive(Debug)]
pub(crate) enum Deferred {
    Open(SessionId, Origin),
    Reap(SessionId),
    Adopt(SessionId, BehaviourId),
    ConnectError(usize, Generation, io::Error),
}

/// The loop's state apart from its handlers and receive buffer.
pub(crate) struct Core {
    pub(crate) registry: Registry,
    pub(crate) sessions: Slab<SessionState>,
    pub(crate) listeners: Slab<ListenerState>,
    pub(crate) connectors: Slab<ConnectorState>,
    timers: Slab<UserTimer>,
    deadlines: Deadlines<Due>,
    pub(crate) opts: Vec<Options>,
    pub(crate) clock: Clock,
    pub(crate) deferred: VecDeque<Deferred>,
    /// Sessions whose last read stopped at the per-event limit (fairness):
    /// read again next iteration without waiting.
    pub(crate) unread: Vec<SessionId>,
    /// Where small frames are put together for one `send` (see
    /// `session::write_parts`); it keeps its capacity.
    assembly: Vec<u8>,
    generation: Generation,
    pub(crate) stopped: bool,
    pub(crate) iteration: u64,
    pub(crate) shared: Arc<Shared>,
}

/// Heap entries allowed beyond twice the live bound before a sweep, so a
/// small loop does not sweep on every add.
const STALE_SLACK: usize = 64;

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
            assembly: Vec::with_capacity(session::ASSEMBLE_MAX),
            generation: 0,
            stopped: false,
            iteration: 0,
            shared,
        }
    }

    /// `Ok` if this loop has behaviour `b`, else `InvalidInput`.
    pub(crate) fn has_behaviour(&self, b: BehaviourId) -> io::Result<()> {
        match (b.0 as usize) < self.opts.len() {
            true => Ok(()),
            false => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("this loop has no behaviour {}", b.0))),
        }
    }

    pub(crate) fn next_generation(&mut self) -> Generation {
        self.generation += 1;
        self.generation
    }

    /// `due` comes due at `at`. First, if the heap holds more than twice
    /// as many entries as can be live (each timer, listener and connector
    /// one, each session two), the stale ones go: cancelled timers, idle
    /// entries a shorter timeout replaced, timeouts of closed sessions.
    pub(crate) fn schedule(&mut self, at: Millis, due: Due) {
        let can_be_live = self.timers.len() + self.listeners.len() + self.connectors.len() + 2 * self.sessions.len();
        if self.deadlines.len() > 2 * can_be_live + STALE_SLACK {
            let mut deadlines = std::mem::replace(&mut self.deadlines, Deadlines::new());
            deadlines.retain(|at, due| self.is_live(at, due));
            self.deadlines = deadlines;
        }
        self.deadlines.add(at, due);
    }

    /// Whether a heap entry for `at` still means something: the one rule
    /// both the sweep and the firing of due entries follow.
    fn is_live(&self, at: Millis, due: Due) -> bool {
        let session = |id: SessionId| self.sessions.get(id.index as usize).filter(|s| s.generation == id.generation);
        match due {
            Due::User(id) => self.timers.get(id.index as usize).is_some_and(|t| t.generation == id.generation),
            Due::Idle(id) => session(id).is_some_and(|s| s.idle_queued == Some(at)),
            Due::ConnectTimeout(id) => session(id).is_some_and(|s| s.phase == Phase::Connecting),
            Due::Reconnect(index, g) => self.connectors.get(index).is_some_and(|c| c.generation == g),
            Due::ListenResume(index, g) => self.listeners.get(index).is_some_and(|l| l.generation == g),
        }
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.next()
    }

    /// The earliest live entry due at or before `now`, removed (stale ones
    /// before it are dropped).
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<Due> {
        while let Some((at, due)) = self.deadlines.pop_due(now) {
            if self.is_live(at, due) {
                return Some(due);
            }
        }
        None
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
            self.schedule(at, Due::Idle(id));
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
    /// asked; true if it drained.
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
            match session::write_parts(&mut s.stream, &parts, &mut self.assembly) {
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
        self.schedule(at, Due::User(id));
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
                cx.core.schedule(next, Due::User(id));
            }
        }
    }

    /// Starts an attempt of connector `index`: resolves, or connects to the
    /// next address.
    pub(crate) fn attempt(&mut self, index: usize) {
        loop {
            let Some(c) = self.connectors.get_mut(index) else { return };
            let (generation, behaviour) = (c.generation, c.behaviour);
            let connect = |addr| mio::net::TcpStream::connect(addr).and_then(Stream::tcp);
            let stream = match (&c.target, c.addrs.is_empty()) {
                (Target::Unix(path), _) => mio::net::UnixStream::connect(path).map(Stream::Unix),
                (Target::Host(host, port), true) => {
                    let shared = self.shared.clone();
                    let done = move |addrs| shared.resolved(index, generation, addrs);
                    if let Err(e) = connect::resolve(host.clone(), *port, done) {
                        self.deferred.push_back(Deferred::ConnectError(index, generation, e));
                    }
                    return;
                }
                (Target::Addr(addr), true) => connect(*addr),
                (Target::Addrs(list), true) => match list.split_first() {
                    Some((first, rest)) => {
                        c.addrs = rest.to_vec();
                        connect(*first)
                    }
                    None => Err(connect::no_address()),
                },
                // The next address of this attempt.
                (_, false) => connect(c.addrs.remove(0)),
            };
            match stream.and_then(|s| self.insert(s, behaviour, Phase::Connecting)) {
                Ok(id) => {
                    if let Some(s) = self.session(id) {
                        s.connector = Some(index);
                    }
                    let c = &mut self.connectors[index];
                    c.session = Some(id);
                    if let Some(t) = c.opts.timeout {
                        let at = self.clock.now().saturating_add(millis_ceil(t));
                        self.schedule(at, Due::ConnectTimeout(id));
                    }
                }
                Err(e) => {
                    if self.connectors.get(index).is_some_and(|c| !c.addrs.is_empty()) {
                        continue; // the next address, in a loop: a long list must not recurse
                    }
                    self.deferred.push_back(Deferred::ConnectError(index, generation, e));
                }
            }
            return;
        }
    }

    /// A session was reaped: its connector, if it reconnects, tries again
    /// after its back-off; else it is done.
    pub(crate) fn session_gone(&mut self, id: SessionId, connector: Option<usize>) {
        let Some(index) = connector else { return };
        let Some(c) = self.connectors.get_mut(index).filter(|c| c.session == Some(id)) else { return };
        c.session = None;
        self.retry_later(index);
    }

    /// Connector `index` failed or lost its session: it tries again after
    /// its back-off (returned), or, if it does not reconnect, is removed.
    pub(crate) fn retry_later(&mut self, index: usize) -> Option<Duration> {
        let c = self.connectors.get_mut(index)?;
        let generation = c.generation;
        let Some(delay) = c.next_retry() else {
            self.connectors.remove(index);
            return None;
        };
        let at = self.clock.now().saturating_add(millis_ceil(delay));
        self.schedule(at, Due::Reconnect(index, generation));
        Some(delay)
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

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use super::*;
    use crate::net::{Behaviour, EventLoop, Handler, Session};

    struct Quiet;

    impl Handler for Quiet {
        type Session = ();

        fn on_open(&mut self, _: &mut Session<'_>, _: Origin) {}

        fn on_packet(&mut self, _: &mut Session<'_>, _: &mut (), _: &[u8]) {}
    }

    #[test]
    fn stale_heap_entries_are_swept_and_the_live_ones_stay() {
        const ROUNDS: u64 = 20_000;
        let mut el = EventLoop::new().unwrap();
        let quiet = el.add_behaviour(Behaviour::new(Quiet));
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let session = el.adopt_fd(quiet, OwnedFd::from(ours)).unwrap();
        // The loop has not run: its clock reads 0 throughout.
        let ms = Duration::from_millis(1);
        let timer = el.ctx().add_timer(ms, ms, Repeat::Times(1), |_, _| {});
        let hour = Duration::from_secs(3600);
        for k in 0..ROUNDS {
            // An idle timeout shortened again and again (ending at 1 ms), and
            // timers cancelled long before they are due: each leaves a
            // stale entry behind.
            el.ctx().set_idle_timeout(session, Some((ROUNDS - k) as u32 * ms));
            let t = el.ctx().add_timer(hour, hour, Repeat::Forever, |_, _| {});
            assert!(el.ctx().cancel_timer(t));
        }
        // More sweeps, with the idle timeout's last entry in the heap.
        for _ in 0..10 * STALE_SLACK {
            let t = el.ctx().add_timer(hour, hour, Repeat::Forever, |_, _| {});
            assert!(el.ctx().cancel_timer(t));
        }
        // Bound: 1 timer, 1 session (two entries), twice over, and the slack.
        let held = el.core.deadlines.len();
        assert!(held <= 2 * (1 + 2) + STALE_SLACK + 1, "{held} entries after {ROUNDS} rounds");
        let entries: Vec<(Millis, Due)> = std::iter::from_fn(|| el.core.deadlines.pop_due(Millis::MAX)).collect();
        assert!(entries.contains(&(1, Due::User(timer))), "the live timer was swept: {entries:?}");
        assert!(entries.contains(&(1, Due::Idle(session))), "the live idle entry was swept: {entries:?}");
    }
}
