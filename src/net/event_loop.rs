//! The event loop: one per thread, on epoll through mio. An iteration runs
//! the pre hook, waits for events (no longer than the next timer), reads
//! and writes the ready sessions, accepts, fires due timers, and runs the
//! post hook.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Events, Poll, Token, Waker};

use super::connect::Resolved;
use super::core::{self, Core, Deferred, Due};
pub use super::ctx::{Ctx, Session};
use super::dispatch::{self, Dispatcher, Forwarder};
use super::error::CloseReason;
use super::handler::{Behaviour, Erased, Handler, Origin, Typed};
use super::listener::{self, OUT_OF_FDS_PAUSE};
use super::receive::ReadUntil;
use super::session::{BehaviourId, Generation, Phase, SessionId};
use super::signal::SignalHooks;
use super::stream::Stream;
use super::time::millis_ceil;

const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

/// What a [`LoopHandle`] and the resolver threads share with the loop.
/// A wake-up says nothing of its cause: each cause sets its own flag.
pub(crate) struct Shared {
    waker: Waker,
    stop: AtomicBool,
    woken: AtomicBool,
    /// Set with `resolved` filled, so a wake for anything else takes no lock.
    lookups_done: AtomicBool,
    resolved: Mutex<Vec<Resolved>>,
}

impl Shared {
    fn wake(&self) {
        // A failed wake means the loop's epoll is gone: nothing to wake.
        let _ = self.waker.wake();
    }

    /// Whether a [`LoopHandle::stop`] asked the loop to stop (consumed).
    fn take_stop(&self) -> bool {
        self.stop.swap(false, SeqCst)
    }

    /// A resolver thread's result for connector `index` of `generation`.
    pub(crate) fn resolved(&self, index: usize, generation: Generation, addrs: io::Result<Vec<SocketAddr>>) {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner()).push((index, generation, addrs));
        self.lookups_done.store(true, SeqCst);
        self.wake();
    }

    /// The lookups finished since the last call.
    fn take_resolved(&self) -> Vec<Resolved> {
        if !self.lookups_done.swap(false, SeqCst) {
            return Vec::new();
        }
        mem::take(&mut *self.resolved.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Wakes or stops a loop from any thread (uSockets' `us_wakeup_loop`).
#[derive(Clone)]
pub struct LoopHandle {
    pub(crate) shared: Arc<Shared>,
}

impl LoopHandle {
    /// Wakes the loop; its [`on_wakeup`](EventLoop::on_wakeup) hook runs on
    /// the loop's thread (once for any number of wakes before it runs).
    pub fn wake(&self) {
        self.shared.woken.store(true, SeqCst);
        self.shared.wake();
    }

    /// Makes [`EventLoop::run`] return after its current iteration.
    pub fn stop(&self) {
        self.shared.stop.store(true, SeqCst);
        self.shared.wake();
    }
}

type Hook = Box<dyn FnMut(&mut Ctx<'_>)>;

/// An event loop and everything registered with it. Not `Send`: it lives on
/// the thread that runs it; other threads reach it through a [`LoopHandle`].
pub struct EventLoop {
    poll: Poll,
    events: Events,
    pub(super) core: Core,
    /// The behaviours' handlers, kept apart from [`Core`] (which has their
    /// options) so a callback can hold `&mut Ctx` while the loop holds the
    /// handler and the packet.
    pub(super) behaviours: Vec<Box<dyn Erased>>,
    /// The one receive buffer of the loop: reads land here, and packets are
    /// handed out from here without copying.
    pub(super) recv: Box<[u8]>,
    on_wakeup: Option<Hook>,
    /// The loop's own work on a wake (dispatch commands), before the user's hook.
    wake_tasks: Vec<Hook>,
    pre: Option<Hook>,
    post: Option<Hook>,
    signals: SignalHooks,
    /// Never sleep in epoll: poll with a zero timeout (a pinned, spinning thread).
    busy_poll: bool,
}

impl EventLoop {
    /// A loop with a 64 KiB receive buffer.
    pub fn new() -> io::Result<EventLoop> {
        EventLoop::with_recv_buffer(64 << 10)
    }

    /// A loop whose shared receive buffer holds `bytes` (at least 1 KiB):
    /// the most one read takes.
    pub fn with_recv_buffer(bytes: usize) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            waker,
            stop: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            lookups_done: AtomicBool::new(false),
            resolved: Mutex::default(),
        });
        let core = Core::new(poll.registry().try_clone()?, shared);
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(1024),
            core,
            behaviours: Vec::new(),
            recv: vec![0; bytes.max(1024)].into_boxed_slice(),
            on_wakeup: None,
            wake_tasks: Vec::new(),
            pre: None,
            post: None,
            signals: SignalHooks::default(),
            busy_poll: false,
        })
    }

    /// Registers a behaviour; its id names it to listeners, connectors and
    /// [`Ctx::adopt`].
    pub fn add_behaviour<H: Handler>(&mut self, behaviour: Behaviour<H>) -> BehaviourId {
        let id = BehaviourId(self.behaviours.len() as u32);
        self.core.opts.push(behaviour.opts);
        self.behaviours.push(Box::new(Typed::new(behaviour.handler)));
        id
    }

    /// Adds a behaviour in dispatch mode (sock_manager's
    /// `sm_upgrade_dispatch_model`): its packets are copied to worker
    /// threads as [`Event`](super::Event)s, and workers send through the returned
    /// [`Dispatcher`] (clone it per worker). `options` sets the codec and
    /// limits, as for any behaviour.
    pub fn add_dispatch(
        &mut self,
        options: impl FnOnce(Behaviour<Forwarder>) -> Behaviour<Forwarder>,
    ) -> (BehaviourId, Dispatcher) {
        let (forwarder, dispatcher, run_commands) = dispatch::parts(self.handle());
        self.wake_tasks.push(Box::new(run_commands));
        (self.add_behaviour(options(Behaviour::new(forwarder))), dispatcher)
    }

    /// The handler of behaviour `id`, if it is an `H` (to read or change
    /// its state between runs).
    pub fn handler_mut<H: Handler>(&mut self, id: BehaviourId) -> Option<&mut H> {
        self.behaviours.get_mut(id.0 as usize)?.handler_mut().downcast_mut()
    }

    /// The loop as callbacks see it, to listen, connect, send or add
    /// timers from outside a callback.
    pub fn ctx(&mut self) -> Ctx<'_> {
        Ctx { core: &mut self.core }
    }

    /// A thread-safe handle that wakes or stops this loop.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle { shared: self.core.shared.clone() }
    }

    /// Runs `hook` on the loop's thread after a [`LoopHandle::wake`].
    pub fn on_wakeup(&mut self, hook: impl FnMut(&mut Ctx<'_>) + 'static) {
        self.on_wakeup = Some(Box::new(hook));
    }

    /// Calls `hook` on the loop's thread when `signal` (`libc::SIGINT`,
    /// `SIGTERM`, `SIGHUP`, ...) arrives, instead of its default action.
    /// SIGKILL, SIGSTOP and the fault signals are refused (`InvalidInput`).
    pub fn on_signal(&mut self, signal: i32, hook: impl FnMut(&mut Ctx<'_>, i32) + 'static) -> io::Result<()> {
        self.signals.add(self.poll.registry(), SIGNALS, signal, Box::new(hook))
    }

    /// Runs `hook` at the start of every iteration.
    pub fn on_pre_iteration(&mut self, hook: impl FnMut(&mut Ctx<'_>) + 'static) {
        self.pre = Some(Box::new(hook));
    }

    /// Runs `hook` at the end of every iteration.
    pub fn on_post_iteration(&mut self, hook: impl FnMut(&mut Ctx<'_>) + 'static) {
        self.post = Some(Box::new(hook));
    }

    /// With `true`, iterations never sleep: epoll is asked with a zero
    /// timeout, which saves the wake-up of a sleeping thread (tens of
    /// microseconds on a VM) per event at the price of a core spinning, the
    /// way tcpshm's own polling runs. Off by default.
    pub fn set_busy_poll(&mut self, busy: bool) {
        self.busy_poll = busy;
    }

    /// Iterations run so far.
    pub fn iteration(&self) -> u64 {
        self.core.iteration
    }

    /// Takes over an open descriptor (an accepted socket, a pipe, one end
    /// of a socketpair) as a session of `behaviour` (sock_manager's
    /// `sm_add_accepted`); it opens with [`Origin::Adopted`]. A TCP or
    /// Unix-domain stream socket is then a session like any other; other
    /// descriptors are read and written as files (no half-close, no peer
    /// address, and a pipe whose reader has gone raises SIGPIPE unless the
    /// program ignores it, as Rust programs do by default).
    pub fn adopt_fd(&mut self, behaviour: BehaviourId, fd: OwnedFd) -> io::Result<SessionId> {
        self.core.has_behaviour(behaviour)?;
        let id = self.core.insert(Stream::from_fd(fd)?, behaviour, Phase::Open)?;
        self.core.open(id, Origin::Adopted);
        self.settle();
        Ok(id)
    }

    /// Runs iterations until stopped ([`Ctx::stop`], [`LoopHandle::stop`]).
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            self.run_once(None)?;
            if mem::take(&mut self.core.stopped) {
                return Ok(());
            }
        }
    }

    /// Runs one iteration, waiting at most `timeout` for events (`None`:
    /// until an event or the next timer), like sock_manager's `sm_run2`.
    /// Returns the number of events handled; stopping is noted for
    /// [`run`](Self::run) and [`stopped`](Self::stopped).
    pub fn run_once(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        self.core.clock.update();
        self.hook(|l| &mut l.pre);
        self.settle();
        let wait = self.wait_time(timeout);
        match self.poll.poll(&mut self.events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.events.clear(),
            Err(e) => return Err(e),
        }
        let now = self.core.clock.update();
        let mut handled = 0;
        let events = mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            handled += 1;
            match event.token() {
                WAKER => self.woken(),
                SIGNALS => self.signals.dispatch(&mut Ctx { core: &mut self.core }),
                Token(t) if t & 3 == 1 => self.accept(t >> 2),
                Token(t) => {
                    let read = (event.is_readable() || event.is_read_closed()).then_some(event.is_read_closed());
                    self.session_event(t >> 2, read, event.is_writable())
                }
            }
            self.settle();
        }
        self.events = events;
        for id in mem::take(&mut self.core.unread) {
            self.read(id, ReadUntil::WouldBlock);
            self.settle();
        }
        self.fire_timers(now);
        self.hook(|l| &mut l.post);
        self.core.iteration += 1;
        Ok(handled)
    }

    /// Whether a stop was asked for and not yet consumed by [`run`](Self::run).
    pub fn stopped(&self) -> bool {
        self.core.stopped
    }

    /// Closes every session with [`CloseReason::Shutdown`] (their
    /// `on_close` runs), listeners and connectors.
    pub fn close_all(&mut self) {
        let ids: Vec<SessionId> =
            self.core.sessions.iter().map(|(i, s)| SessionId { index: i as u32, generation: s.generation }).collect();
        for id in ids {
            self.core.close(id, CloseReason::Shutdown);
        }
        for (_, mut l) in mem::take(&mut self.core.listeners) {
            let _ = mio::event::Source::deregister(&mut l.listening, &self.core.registry);
        }
        self.core.connectors.clear();
        self.settle();
    }

    fn wait_time(&self, timeout: Option<Duration>) -> Option<Duration> {
        if self.busy_poll || !self.core.unread.is_empty() || self.core.stopped {
            return Some(Duration::ZERO);
        }
        let timer = self.core.next_deadline().map(|at| Duration::from_millis(at.saturating_sub(self.core.clock.now())));
        match (timer, timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn hook(&mut self, which: fn(&mut EventLoop) -> &mut Option<Hook>) {
        if let Some(mut h) = which(self).take() {
            h(&mut Ctx { core: &mut self.core });
            *which(self) = Some(h);
        }
        self.settle();
    }

    fn woken(&mut self) {
        if self.core.shared.take_stop() {
            self.core.stopped = true;
        }
        for (index, generation, addrs) in self.core.shared.take_resolved() {
            let Some(c) = self.core.connectors.get_mut(index).filter(|c| c.generation == generation) else { continue };
            match addrs {
                Ok(addrs) => {
                    c.addrs = addrs;
                    self.core.attempt(index);
                }
                Err(e) => self.core.deferred.push_back(Deferred::ConnectError(index, generation, e)),
            }
        }
        if self.core.shared.woken.swap(false, SeqCst) {
            for task in &mut self.wake_tasks {
                task(&mut Ctx { core: &mut self.core });
            }
            self.settle();
            self.hook(|l| &mut l.on_wakeup);
        }
    }

    fn accept(&mut self, index: usize) {
        loop {
            let Some(l) = self.core.listeners.get(index) else { return };
            let behaviour = l.behaviour;
            match l.listening.accept() {
                Ok(stream) => match self.core.insert(stream, behaviour, Phase::Open) {
                    Ok(id) => self.core.open(id, Origin::Accepted),
                    Err(e) => self.accept_error(behaviour, e, false),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if listener::is_resource_exhaustion(&e) => {
                    // Pause instead of spinning on a listener that stays readable.
                    self.pause_listener(index, behaviour, e);
                    return;
                }
                Err(e) => self.accept_error(behaviour, e, false),
            }
            self.settle();
        }
    }

    /// Takes listener `index` out of the poll for [`OUT_OF_FDS_PAUSE`] and
    /// reports `e` with the pause.
    fn pause_listener(&mut self, index: usize, behaviour: BehaviourId, e: io::Error) {
        let l = &mut self.core.listeners[index];
        // Fails harmlessly when a failed resumption left it out already.
        let _ = mio::event::Source::deregister(&mut l.listening, &self.core.registry);
        let generation = l.generation;
        let at = self.core.clock.now().saturating_add(millis_ceil(OUT_OF_FDS_PAUSE));
        self.core.schedule(at, Due::ListenResume(index, generation));
        self.accept_error(behaviour, e, true);
    }

    /// Takes a paused listener back into the poll and accepts what waits;
    /// if it cannot be registered, that is reported and it waits again.
    fn resume_listener(&mut self, index: usize) {
        let Some(l) = self.core.listeners.get_mut(index) else { return };
        let behaviour = l.behaviour;
        let token = core::listener_token(index);
        match mio::event::Source::register(&mut l.listening, &self.core.registry, token, mio::Interest::READABLE) {
            Ok(()) => self.accept(index),
            Err(e) => self.pause_listener(index, behaviour, e),
        }
    }

    /// Reports an accept failure; `paused` if the listener now waits.
    fn accept_error(&mut self, behaviour: BehaviourId, e: io::Error, paused: bool) {
        let pause = paused.then_some(OUT_OF_FDS_PAUSE);
        self.behaviours[behaviour.0 as usize].accept_error(&mut Ctx { core: &mut self.core }, &e, pause);
    }

    /// A session's event: `read` if readable, `Some(true)` when the
    /// peer's FIN came with it.
    fn session_event(&mut self, index: usize, read: Option<bool>, writable: bool) {
        let Some(s) = self.core.sessions.get(index) else { return };
        let id = SessionId { index: index as u32, generation: s.generation };
        // A short read may be taken for "empty" only when no FIN is waiting
        // behind it (no new event would come) and the stream is a byte
        // stream (a datagram socketpair returns one message per read).
        let until = |fin| match fin {
            false if s.stream.empty_after_short_read() => ReadUntil::ShortRead,
            _ => ReadUntil::WouldBlock,
        };
        let read = read.map(until);
        if s.phase == Phase::Connecting {
            match s.stream.connect_result() {
                Ok(true) => self.connected(id),
                Ok(false) => return,
                Err(e) => return self.core.connect_failed(id, e),
            }
            self.settle();
        }
        if writable {
            self.writable(id);
        }
        if let Some(until) = read {
            self.read(id, until);
        }
    }

    fn connected(&mut self, id: SessionId) {
        let Some(s) = self.core.session(id) else { return };
        if let Some(c) = s.connector.and_then(|c| self.core.connectors.get_mut(c)) {
            c.opened();
        }
        self.core.open(id, Origin::Connected);
    }

    fn writable(&mut self, id: SessionId) {
        let Some(s) = self.core.session(id) else { return };
        if s.send.is_empty() || !s.is_live() || s.corked {
            return;
        }
        if self.core.flush(id) {
            let Some(s) = self.core.session(id) else { return };
            if mem::take(&mut s.wants_writable) && s.is_live() {
                let b = s.behaviour.0 as usize;
                self.behaviours[b].writable(&mut Session { cx: Ctx { core: &mut self.core }, id });
            }
        }
    }

    /// Fires what is due (only live entries come out of the heap).
    fn fire_timers(&mut self, now: u64) {
        while let Some(due) = self.core.pop_due(now) {
            match due {
                Due::User(id) => Core::fire_timer(&mut Ctx { core: &mut self.core }, id, now),
                Due::Idle(id) => self.idle(id, now),
                Due::ConnectTimeout(id) => {
                    self.core.connect_failed(id, io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                }
                Due::Reconnect(index, _) => self.core.attempt(index),
                Due::ListenResume(index, _) => self.resume_listener(index),
            }
            self.settle();
        }
    }

    fn idle(&mut self, id: SessionId, now: u64) {
        let Some(s) = self.core.session(id) else { return };
        s.idle_queued = None;
        if s.idle.is_none() || !s.is_live() {
            return;
        }
        if s.idle_deadline > now {
            // Traffic moved the deadline since this entry was queued.
            self.core.queue_idle(id);
            return;
        }
        let b = s.behaviour.0 as usize;
        self.behaviours[b].timeout(&mut Session { cx: Ctx { core: &mut self.core }, id });
        self.core.arm_idle(id, now);
    }

    /// Does the work callbacks queued, until none is left.
    pub(super) fn settle(&mut self) {
        while let Some(d) = self.core.deferred.pop_front() {
            match d {
                Deferred::Open(id, origin) => {
                    let Some(b) = self.core.session(id).filter(|s| s.is_live()).map(|s| s.behaviour.0 as usize) else {
                        continue;
                    };
                    self.behaviours[b].open(&mut Session { cx: Ctx { core: &mut self.core }, id }, origin);
                }
                Deferred::Reap(id) => self.reap(id),
                Deferred::Adopt(id, to) => self.adopt(id, to),
                Deferred::ConnectError(index, generation, e) => self.connect_error(index, generation, e),
            }
        }
    }

    /// Removes a closed session, calls its `on_close`, and lets its
    /// connector reconnect.
    fn reap(&mut self, id: SessionId) {
        if self.core.session(id).is_none() {
            return;
        }
        let mut s = self.core.sessions.remove(id.index as usize);
        let _ = mio::event::Source::deregister(&mut s.stream, &self.core.registry);
        let reason = s.closing.take().unwrap_or(CloseReason::Closed);
        let (b, connector) = (s.behaviour.0 as usize, s.connector);
        drop(s);
        self.behaviours[b].close(&mut Ctx { core: &mut self.core }, id, &reason);
        self.core.session_gone(id, connector);
    }

    fn adopt(&mut self, id: SessionId, to: BehaviourId) {
        let Some(s) = self.core.session(id).filter(|s| s.is_live()) else { return };
        let from = s.behaviour.0 as usize;
        s.adopting = false;
        let Some(data) = self.behaviours[from].take(id) else { return };
        self.core.join_behaviour(id, to);
        let adopted = self.behaviours[to.0 as usize].adopt(&mut Session { cx: Ctx { core: &mut self.core }, id }, data);
        if !adopted {
            self.core.close(id, CloseReason::AdoptRefused);
        } else {
            // Bytes that arrived behind the packet that moved it go to the new behaviour.
            self.deliver_partial(id);
        }
    }

    fn connect_error(&mut self, index: usize, generation: Generation, e: io::Error) {
        let Some(c) = self.core.connectors.get_mut(index).filter(|c| c.generation == generation) else { return };
        let (b, target) = (c.behaviour.0 as usize, c.target.clone());
        let retry = self.core.retry_later(index);
        self.behaviours[b].connect_error(&mut Ctx { core: &mut self.core }, &target, &e, retry);
    }
}
