//! The session layer: an event loop per thread (epoll through mio) with
//! sessions over TCP, Unix-domain sockets or any descriptor, codecs,
//! timers, listeners and (re)connectors. It is a library of its own, and the
//! ground the TLS and WebSocket layers will stand on.
//!
//! # The byte pipeline
//!
//! In: the socket is read into the loop's one receive buffer
//! ([`EventLoop::with_recv_buffer`]); the behaviour's [`Codec`] finds each
//! complete packet there and the handler's
//! [`on_packet`](Handler::on_packet) borrows it, so nothing is copied per
//! read. Only the start of a packet that a read cut off is copied, into
//! the session's partial buffer, and completed there by the next reads.
//!
//! Out: [`Session::send`] asks the codec for the bytes around the payload
//! (a length header), and writes header, payload and trailer to the
//! socket in one call when nothing is queued before them (a small frame
//! assembled in a buffer of the loop and sent, a large one gathered by `sendmsg`;
//! never a SIGPIPE, see [`EventLoop::adopt_fd`] for pipes). What
//! the socket does not take is appended to the session's send buffer,
//! written as the socket drains ([`Handler::on_writable`] follows), up to
//! the behaviour's overflow limit, past which the session closes with
//! [`CloseReason::Overflow`]. [`Session::send_more`] holds the bytes back
//! until [`Session::flush`], so a burst leaves in one write.
//!
//! # Behaviours and layering
//!
//! A [`Behaviour`] is a handler with its codec and options, shared by a
//! group of sessions (uSockets' socket context). [`Session::adopt`] moves a
//! live session to another behaviour, its data handed over through
//! [`Handler::on_adopt`] and any bytes already received passed on: a
//! protocol upgrade (HTTP to WebSocket) is an adoption, and a transport
//! (TLS) will sit between the socket and the codec of the same pipeline.
//!
//! # Example
//!
//! An echo server of 4-byte big-endian length-prefixed packets, and a
//! client that sends one packet and stops the loop when it comes back:
//!
//! ```
//! use std::net::SocketAddr;
//! use tcpshm::net::{Behaviour, ByteOrder, ConnectOptions, EventLoop, Handler};
//! use tcpshm::net::{LengthPrefixed, ListenOptions, Origin, Session, Target};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type Session = ();
//!     fn on_open(&mut self, _: &mut Session<'_>, _: Origin) {}
//!     fn on_packet(&mut self, s: &mut Session<'_>, _: &mut (), packet: &[u8]) {
//!         let _ = s.send(packet);
//!     }
//! }
//!
//! struct Once(Option<Vec<u8>>);
//! impl Handler for Once {
//!     type Session = ();
//!     fn on_open(&mut self, s: &mut Session<'_>, _: Origin) {
//!         s.send(b"hello").expect("a fresh session takes a packet");
//!     }
//!     fn on_packet(&mut self, s: &mut Session<'_>, _: &mut (), packet: &[u8]) {
//!         self.0 = Some(packet.to_vec());
//!         s.stop();
//!     }
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! let codec = LengthPrefixed::new(4, ByteOrder::Big).unwrap().max_packet(1 << 20);
//! let mut el = EventLoop::new()?;
//! let echo = el.add_behaviour(Behaviour::new(Echo).codec(codec));
//! let once = el.add_behaviour(Behaviour::new(Once(None)).codec(codec));
//! let listener = el.ctx().listen(echo, "127.0.0.1:0".parse().unwrap(), ListenOptions::default())?;
//! let addr: SocketAddr = el.ctx().listener_addr(listener).unwrap();
//! el.ctx().connect(once, Target::Addr(addr), ConnectOptions::default()).unwrap();
//! el.run()?;
//! assert_eq!(el.handler_mut::<Once>(once).unwrap().0.as_deref(), Some(&b"hello"[..]));
//! # Ok(())
//! # }
//! ```

mod codec;
mod connect;
mod core;
mod ctx;
mod dispatch;
mod error;
mod event_loop;
mod handler;
mod listener;
mod receive;
mod session;
mod signal;
mod stream;
mod time;

pub use self::core::{Repeat, TimerId};
pub use codec::{Affix, ByteOrder, Codec, DecodeError, Frame, Framing, LengthPrefixed, Raw, TooLarge};
pub use connect::{Backoff, ConnectOptions, ConnectorId, Target};
pub use ctx::{Ctx, Session};
pub use dispatch::{Dispatcher, Event, Forwarder};
pub use error::{CloseReason, SendError};
pub use event_loop::{EventLoop, LoopHandle};
pub use handler::{Behaviour, Handler, Origin};
pub use listener::{ListenOptions, ListenerId};
pub use session::{BehaviourId, SessionId};
pub use stream::Peer;
