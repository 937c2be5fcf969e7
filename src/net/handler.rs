//! Behaviours: the callbacks and options a group of sessions shares
//! (uSockets' socket context, sock_manager's `session_opt_t`), and the
//! type-erased form the loop keeps them in.

use std::any::Any;
use std::io;
use std::time::Duration;

use super::codec::{Codec, Raw};
use super::connect::Target;
use super::error::CloseReason;
use super::event_loop::{Ctx, Session};
use super::session::SessionId;

/// How a session came to be, for [`Handler::on_open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Accepted by a listener.
    Accepted,
    /// Our connect succeeded (the first time, or a reconnect).
    Connected,
    /// A descriptor the user handed over.
    Adopted,
}

/// The callbacks of a behaviour. Each session carries a `Self::Session`
/// made by `on_open` and handed back by `on_close`. Everything runs on the
/// loop's thread; the [`Session`] argument acts on the session (send,
/// close, ...) and, through [`Ctx`], on the loop.
pub trait Handler: 'static {
    /// Per-session user data.
    type Session: 'static;

    /// A session opened; returns its data.
    fn on_open(&mut self, session: &mut Session<'_>, origin: Origin) -> Self::Session;

    /// A complete packet arrived (the codec's payload, borrowed from the
    /// receive buffer: copy what must outlive the call).
    fn on_packet(&mut self, session: &mut Session<'_>, data: &mut Self::Session, packet: &[u8]);

    /// Everything buffered has been written, after a send had to buffer.
    fn on_writable(&mut self, session: &mut Session<'_>, data: &mut Self::Session) {
        let _ = (session, data);
    }

    /// The peer shut down its writing side. By default ours is shut down
    /// too once everything queued is sent, which closes the session.
    fn on_end(&mut self, session: &mut Session<'_>, data: &mut Self::Session) {
        let _ = data;
        session.shutdown();
    }

    /// The idle timeout ran out. By default the session closes with
    /// [`CloseReason::IdleTimeout`]; do nothing to keep it (the timeout
    /// starts over).
    fn on_timeout(&mut self, session: &mut Session<'_>, data: &mut Self::Session) {
        let _ = data;
        session.close_with(CloseReason::IdleTimeout);
    }

    /// The session closed; its socket is gone.
    fn on_close(&mut self, cx: &mut Ctx<'_>, id: SessionId, data: Self::Session, reason: &CloseReason) {
        let _ = (cx, id, data, reason);
    }

    /// A connect failed (refused, unreachable, timed out, the name did not
    /// resolve). `retry` says when the connector tries again, if it will.
    fn on_connect_error(&mut self, cx: &mut Ctx<'_>, target: &Target, error: &io::Error, retry: Option<Duration>) {
        let _ = (cx, target, error, retry);
    }

    /// A listener's accept failed; out of descriptors or memory (EMFILE,
    /// ENFILE, ENOBUFS, ENOMEM) it stops accepting for `pause` instead of
    /// spinning, and if it cannot rejoin the poll after that, this reports
    /// why with another `pause`.
    fn on_accept_error(&mut self, cx: &mut Ctx<'_>, error: &io::Error, pause: Option<Duration>) {
        let _ = (cx, error, pause);
    }

    /// A session moved here from another behaviour
    /// ([`Session::adopt`]); `previous` is its data there. The default
    /// keeps it when it is a `Self::Session`; `None` closes the session
    /// with [`CloseReason::AdoptRefused`] (no `on_close` follows).
    fn on_adopt(&mut self, session: &mut Session<'_>, previous: Box<dyn Any>) -> Option<Self::Session> {
        let _ = session;
        previous.downcast().ok().map(|b| *b)
    }
}

/// A handler with the options its sessions share. Defaults: the [`Raw`]
/// codec, a 4 MiB send-buffer limit, no memory kept by drained send
/// buffers, 16 MiB for an incomplete packet, no idle timeout.
pub struct Behaviour<H: Handler> {
    pub(crate) handler: H,
    pub(crate) opts: Options,
}

/// The options of a behaviour, which the loop consults outside callbacks.
pub(crate) struct Options {
    pub(crate) codec: Box<dyn Codec>,
    pub(crate) overflow: usize,
    pub(crate) keep: usize,
    pub(crate) idle: Option<Duration>,
    pub(crate) max_partial: usize,
}

impl<H: Handler> Behaviour<H> {
    /// `handler` with the default options.
    pub fn new(handler: H) -> Self {
        let opts = Options { codec: Box::new(Raw), overflow: 4 << 20, keep: 0, idle: None, max_partial: 16 << 20 };
        Behaviour { handler, opts }
    }

    /// The packet framing of the sessions.
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.opts.codec = Box::new(codec);
        self
    }

    /// The most a session's send buffer may hold (sock_manager's
    /// `overflow`): a send that would buffer more closes the session with
    /// [`CloseReason::Overflow`].
    pub fn overflow(mut self, bytes: usize) -> Self {
        self.opts.overflow = bytes;
        self
    }

    /// Capacity a send buffer keeps after draining (sock_manager's
    /// `sndlen`): more saves allocations under bursts, 0 keeps idle
    /// sessions smallest.
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.opts.keep = bytes;
        self
    }

    /// The most bytes of an incomplete packet a session holds (16 MiB by
    /// default): a codec that keeps asking for more (a line that never
    /// ends) closes the session with [`DecodeError::TooLarge`](super::DecodeError::TooLarge) past it.
    /// `LengthPrefixed` refuses oversize packets from their header already.
    pub fn max_partial(mut self, bytes: usize) -> Self {
        self.opts.max_partial = bytes;
        self
    }

    /// Closes (see [`Handler::on_timeout`]) sessions that neither receive
    /// nor send for `timeout`, to the millisecond.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.opts.idle = Some(timeout);
        self
    }
}

/// A behaviour with its sessions' data, the handler's type erased.
pub(crate) trait Erased {
    fn open(&mut self, s: &mut Session<'_>, origin: Origin);
    fn packet(&mut self, s: &mut Session<'_>, packet: &[u8]);
    fn writable(&mut self, s: &mut Session<'_>);
    fn end(&mut self, s: &mut Session<'_>);
    fn timeout(&mut self, s: &mut Session<'_>);
    fn close(&mut self, cx: &mut Ctx<'_>, id: SessionId, reason: &CloseReason);
    fn connect_error(&mut self, cx: &mut Ctx<'_>, target: &Target, error: &io::Error, retry: Option<Duration>);
    fn accept_error(&mut self, cx: &mut Ctx<'_>, error: &io::Error, pause: Option<Duration>);
    /// Takes a session's data away (it moves to another behaviour).
    fn take(&mut self, id: SessionId) -> Option<Box<dyn Any>>;
    /// Takes in a session from another behaviour; false if refused.
    fn adopt(&mut self, s: &mut Session<'_>, previous: Box<dyn Any>) -> bool;
    fn handler_mut(&mut self) -> &mut dyn Any;
}

/// A handler and its sessions' data, by session slot.
pub(crate) struct Typed<H: Handler> {
    pub(crate) handler: H,
    data: Vec<Option<H::Session>>,
}

impl<H: Handler> Typed<H> {
    pub(crate) fn new(handler: H) -> Self {
        Typed { handler, data: Vec::new() }
    }

    fn put(&mut self, id: SessionId, data: H::Session) {
        let i = id.index as usize;
        if self.data.len() <= i {
            self.data.resize_with(i + 1, || None);
        }
        self.data[i] = Some(data);
    }
}

impl<H: Handler> Erased for Typed<H> {
    fn open(&mut self, s: &mut Session<'_>, origin: Origin) {
        let data = self.handler.on_open(s, origin);
        self.put(s.id(), data);
    }

    #[inline]
    fn packet(&mut self, s: &mut Session<'_>, packet: &[u8]) {
        if let Some(Some(data)) = self.data.get_mut(s.id().index as usize) {
            self.handler.on_packet(s, data, packet);
        }
    }

    fn writable(&mut self, s: &mut Session<'_>) {
        if let Some(Some(data)) = self.data.get_mut(s.id().index as usize) {
            self.handler.on_writable(s, data);
        }
    }

    fn end(&mut self, s: &mut Session<'_>) {
        if let Some(Some(data)) = self.data.get_mut(s.id().index as usize) {
            self.handler.on_end(s, data);
        }
    }

    fn timeout(&mut self, s: &mut Session<'_>) {
        if let Some(Some(data)) = self.data.get_mut(s.id().index as usize) {
            self.handler.on_timeout(s, data);
        }
    }

    fn close(&mut self, cx: &mut Ctx<'_>, id: SessionId, reason: &CloseReason) {
        if let Some(data) = self.data.get_mut(id.index as usize).and_then(Option::take) {
            self.handler.on_close(cx, id, data, reason);
        }
    }

    fn connect_error(&mut self, cx: &mut Ctx<'_>, target: &Target, error: &io::Error, retry: Option<Duration>) {
        self.handler.on_connect_error(cx, target, error, retry);
    }

    fn accept_error(&mut self, cx: &mut Ctx<'_>, error: &io::Error, pause: Option<Duration>) {
        self.handler.on_accept_error(cx, error, pause);
    }

    fn take(&mut self, id: SessionId) -> Option<Box<dyn Any>> {
        let data = self.data.get_mut(id.index as usize)?.take()?;
        Some(Box::new(data))
    }

    fn adopt(&mut self, s: &mut Session<'_>, previous: Box<dyn Any>) -> bool {
        match self.handler.on_adopt(s, previous) {
            Some(data) => {
                self.put(s.id(), data);
                true
            }
            None => false,
        }
    }

    fn handler_mut(&mut self) -> &mut dyn Any {
        &mut self.handler
    }
}
