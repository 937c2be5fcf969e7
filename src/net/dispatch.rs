//! Dispatch mode (sock_manager's `sm_upgrade_dispatch_model`): instead of
//! callbacks on the loop's thread, a behaviour's sessions are served by
//! worker threads. Each complete packet is copied into an [`Event`] on a
//! channel any number of workers can take from, and workers send and close
//! through a [`Dispatcher`] handle that queues the work and wakes the loop.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::ctx::{Ctx, Session};
use super::error::{CloseReason, SendError};
use super::event_loop::LoopHandle;
use super::handler::{Handler, Origin};
use super::session::SessionId;
use super::stream::Peer;

/// What reaches the workers of a dispatching behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session opened.
    Open(SessionId, Option<Peer>),
    /// A complete packet (the codec's payload, copied).
    Packet(SessionId, Vec<u8>),
    /// A session closed; the reason as text.
    Closed(SessionId, String),
}

/// What a worker asks of the loop.
enum Command {
    Send(SessionId, Vec<u8>),
    CloseAfterSend(SessionId),
    Close(SessionId),
}

/// The sessions open right now, shared with the workers so that a send to
/// a closed session fails at once.
type OpenSet = Arc<Mutex<HashSet<SessionId>>>;

fn lock(open: &OpenSet) -> std::sync::MutexGuard<'_, HashSet<SessionId>> {
    open.lock().unwrap_or_else(|p| p.into_inner())
}

/// The loop-side handler of a dispatching behaviour.
pub struct Forwarder {
    events: Sender<Event>,
    open: OpenSet,
}

impl Handler for Forwarder {
    type Session = ();

    fn on_open(&mut self, s: &mut Session<'_>, _: Origin) {
        lock(&self.open).insert(s.id());
        let peer = s.peer();
        // Workers gone: nobody to serve the session.
        if self.events.send(Event::Open(s.id(), peer)).is_err() {
            s.close();
        }
    }

    fn on_packet(&mut self, s: &mut Session<'_>, _: &mut (), packet: &[u8]) {
        if self.events.send(Event::Packet(s.id(), packet.to_vec())).is_err() {
            s.close();
        }
    }

    fn on_close(&mut self, _: &mut Ctx<'_>, id: SessionId, _: (), reason: &CloseReason) {
        lock(&self.open).remove(&id);
        let _ = self.events.send(Event::Closed(id, reason.to_string()));
    }
}

/// The workers' side: take events with [`events`](Self::events), answer
/// with [`send`](Self::send). Clone it for each worker thread.
#[derive(Clone)]
pub struct Dispatcher {
    events: Receiver<Event>,
    commands: Sender<Command>,
    open: OpenSet,
    handle: LoopHandle,
}

impl Dispatcher {
    /// The channel of events; blocking `recv`, `recv_timeout`, `try_recv`
    /// and `select!` all work on it.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Sends `payload` on session `id` from any thread: queued for the
    /// loop, which frames and writes it. [`SendError::Closed`] if the
    /// session is not open (if it closes before the loop gets to it, the
    /// bytes are dropped and [`Event::Closed`] tells).
    pub fn send(&self, id: SessionId, payload: &[u8]) -> Result<(), SendError> {
        self.command(id, Command::Send(id, payload.to_vec()))
    }

    /// Closes `id` once what was sent before is written.
    pub fn close_after_send(&self, id: SessionId) -> Result<(), SendError> {
        self.command(id, Command::CloseAfterSend(id))
    }

    /// Closes `id` now.
    pub fn close(&self, id: SessionId) -> Result<(), SendError> {
        self.command(id, Command::Close(id))
    }

    fn command(&self, id: SessionId, c: Command) -> Result<(), SendError> {
        if !lock(&self.open).contains(&id) {
            return Err(SendError::Closed);
        }
        self.commands.send(c).map_err(|_| SendError::Closed)?;
        self.handle.wake();
        Ok(())
    }
}

/// The parts [`EventLoop::add_dispatch`](super::EventLoop::add_dispatch)
/// wires together: the handler, the workers' handle, and the loop's task
/// that carries out the workers' commands when woken.
pub(crate) fn parts(handle: LoopHandle) -> (Forwarder, Dispatcher, impl FnMut(&mut Ctx<'_>)) {
    let (event_tx, event_rx) = crossbeam_channel::unbounded();
    let (command_tx, command_rx) = crossbeam_channel::unbounded::<Command>();
    let open = OpenSet::default();
    let forwarder = Forwarder { events: event_tx, open: open.clone() };
    let dispatcher = Dispatcher { events: event_rx, commands: command_tx, open, handle };
    let run_commands = move |cx: &mut Ctx<'_>| {
        for c in command_rx.try_iter() {
            // A session that closed meanwhile: its Closed event is on its way.
            match c {
                Command::Send(id, bytes) => {
                    let _ = cx.send(id, &bytes);
                }
                Command::CloseAfterSend(id) => cx.close_after_send(id),
                Command::Close(id) => cx.close(id),
            }
        }
    };
    (forwarder, dispatcher, run_commands)
}
