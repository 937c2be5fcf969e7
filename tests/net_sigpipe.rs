//! A write to a peer that has gone is an error that closes the session,
//! never a SIGPIPE: a host program that does not ignore SIGPIPE (a C host,
//! a Rust binary built to inherit it) would be killed by one. Its own test
//! binary, because it watches the process's SIGPIPE.

mod net_common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use net_common::{codec, run_until};
use tcpshm::net::{Behaviour, CloseReason, Ctx, EventLoop, Handler, Origin, SendError, Session, SessionId};

/// Records the errno of each session closed by a write error.
#[derive(Default)]
struct WriteErrors {
    errnos: Vec<Option<i32>>,
}

impl Handler for WriteErrors {
    type Session = ();

    fn on_open(&mut self, _: &mut Session<'_>, _: Origin) {}

    fn on_packet(&mut self, _: &mut Session<'_>, _: &mut (), _: &[u8]) {}

    fn on_close(&mut self, _: &mut Ctx<'_>, _: SessionId, _: (), reason: &CloseReason) {
        match reason {
            CloseReason::WriteError(e) => self.errnos.push(e.raw_os_error()),
            other => panic!("closed by {other:?}, not by the write"),
        }
    }
}

#[test]
fn writing_to_a_gone_peer_closes_with_epipe_and_raises_no_sigpipe() {
    let raised = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGPIPE, raised.clone()).unwrap();
    let mut el = EventLoop::new().unwrap();
    let framed = el.add_behaviour(Behaviour::new(WriteErrors::default()).codec(codec()));
    let raw = el.add_behaviour(Behaviour::new(WriteErrors::default()).overflow(32 << 20));
    let gone_peer = |el: &mut EventLoop, b| {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let id = el.adopt_fd(b, OwnedFd::from(ours)).unwrap();
        drop(theirs);
        id
    };
    // Each way a send reaches the socket: a small frame assembled into one
    // send, a large one gathered by sendmsg, a raw payload as it is.
    for (b, size) in [(framed, 10), (framed, 4000), (raw, 10)] {
        let id = gone_peer(&mut el, b);
        assert_eq!(el.ctx().send(id, &vec![7; size]), Err(SendError::Closed), "{size} bytes");
    }
    // And the flush of what the socket did not take at first.
    let (ours, theirs) = UnixStream::pair().unwrap();
    let id = el.adopt_fd(raw, OwnedFd::from(ours)).unwrap();
    el.ctx().send(id, &vec![7; 8 << 20]).unwrap();
    assert!(el.ctx().buffered(id) > 0, "8 MiB fit in a socketpair's buffer");
    drop(theirs);
    el.ctx().flush(id);
    let closes = |el: &mut EventLoop| {
        let f = el.handler_mut::<WriteErrors>(framed).unwrap().errnos.len();
        f + el.handler_mut::<WriteErrors>(raw).unwrap().errnos.len()
    };
    run_until(&mut el, "four sessions to close", |el| closes(el) == 4);
    assert_eq!(el.handler_mut::<WriteErrors>(framed).unwrap().errnos, [Some(libc::EPIPE); 2]);
    assert_eq!(el.handler_mut::<WriteErrors>(raw).unwrap().errnos, [Some(libc::EPIPE); 2]);
    assert!(!raised.load(Ordering::SeqCst), "a write raised SIGPIPE");
}
