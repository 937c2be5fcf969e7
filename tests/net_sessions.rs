//! Sessions over real sockets: packets split at every byte offset, echo
//! over TCP, the limits that close a session, half-close, close after send.

mod net_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use net_common::{codec, frame, run_until, Echo, Ping, PATIENCE};
use tcpshm::net::{
    Behaviour, ConnectOptions, EventLoop, Handler, ListenOptions, Origin, Peer, SendError, Session, Target,
};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An echo server on loopback: the loop, its behaviour and address.
fn echo_server(b: Behaviour<Echo>) -> (EventLoop, tcpshm::net::BehaviourId, SocketAddr) {
    let mut el = EventLoop::new().unwrap();
    let echo = el.add_behaviour(b);
    let l = el.ctx().listen(echo, loopback(), ListenOptions::default()).unwrap();
    let addr = el.ctx().listener_addr(l).unwrap();
    (el, echo, addr)
}

fn client(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c
}

#[test]
fn packets_split_at_every_byte_offset_arrive_whole() {
    let payloads: Vec<Vec<u8>> = vec![vec![], vec![1], vec![2; 7], vec![3; 300], vec![4; 2]];
    let wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    let ends: Vec<usize> = payloads
        .iter()
        .scan(0, |end, p| {
            *end += 2 + p.len();
            Some(*end)
        })
        .collect();
    let mut el = EventLoop::new().unwrap();
    let echo = el.add_behaviour(Behaviour::new(Echo::default()).codec(codec()));
    // A socketpair: a write is readable at the other end when it returns,
    // so each cut reaches the session as a read of its own.
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.set_read_timeout(Some(PATIENCE)).unwrap();
    el.adopt_fd(echo, OwnedFd::from(ours)).unwrap();
    let mut delivered = 0;
    for cut in 0..=wire.len() {
        theirs.write_all(&wire[..cut]).unwrap();
        el.run_once(Some(Duration::ZERO)).unwrap();
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(el.handler_mut::<Echo>(echo).unwrap().packets, delivered + complete, "cut at {cut}");
        theirs.write_all(&wire[cut..]).unwrap();
        let target = delivered + payloads.len();
        run_until(&mut el, "the rest of the packets", |el| el.handler_mut::<Echo>(echo).unwrap().packets == target);
        delivered = target;
        let mut back = vec![0; wire.len()];
        theirs.read_exact(&mut back).unwrap();
        assert_eq!(back, wire, "echo after a cut at {cut}");
    }
    assert_eq!(el.handler_mut::<Echo>(echo).unwrap().opened[0].1, Origin::Adopted);
}

#[test]
fn an_adopted_tcp_socket_is_a_session_like_an_accepted_one() {
    let mut el = EventLoop::new().unwrap();
    let echo = el.add_behaviour(Behaviour::new(Echo::default()).codec(codec()));
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let mut c = client(listener.local_addr().unwrap());
    let (accepted, _) = listener.accept().unwrap();
    let id = el.adopt_fd(echo, OwnedFd::from(accepted)).unwrap();
    // Known as TCP: it names its peer (a plain descriptor would be Peer::Fd).
    assert_eq!(el.ctx().peer(id), Some(Peer::Inet(c.local_addr().unwrap())));
    c.write_all(&frame(b"adopted")).unwrap();
    run_until(&mut el, "the packet", |el| el.handler_mut::<Echo>(echo).unwrap().packets == 1);
    let mut back = vec![0; frame(b"adopted").len()];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, frame(b"adopted"));
}

#[test]
fn many_packets_in_odd_chunks_echo_over_tcp() {
    let (mut el, echo, addr) = echo_server(Behaviour::new(Echo::default()).codec(codec()));
    let payloads: Vec<Vec<u8>> = (0..3000u32).map(|i| vec![i as u8; (i as usize * 37) % 700]).collect();
    let wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    let done = Arc::new(AtomicBool::new(false));
    let client = {
        let (wire, done) = (wire.clone(), done.clone());
        std::thread::spawn(move || {
            let mut c = client(addr);
            let mut reader = c.try_clone().unwrap();
            let expect = wire.len();
            let read = std::thread::spawn(move || {
                let mut back = vec![0; expect];
                reader.read_exact(&mut back).unwrap();
                back
            });
            // Chunks of 1 to 13 bytes: packet boundaries fall everywhere.
            let mut at = 0;
            for size in (1..=13).cycle() {
                if at == wire.len() {
                    break;
                }
                let end = (at + size).min(wire.len());
                c.write_all(&wire[at..end]).unwrap();
                at = end;
            }
            let back = read.join().unwrap();
            done.store(true, SeqCst);
            back
        })
    };
    run_until(&mut el, "the client to read every echo", |_| done.load(SeqCst));
    assert_eq!(client.join().unwrap(), wire);
    assert_eq!(el.handler_mut::<Echo>(echo).unwrap().packets, payloads.len());
}

#[test]
fn an_oversize_packet_closes_the_session_before_it_is_buffered() {
    let (mut el, echo, addr) = echo_server(Behaviour::new(Echo::default()).codec(codec()));
    let mut c = client(addr);
    c.write_all(&[0x10, 0x01]).unwrap(); // 4097 bytes announced; the limit is 4096
    run_until(&mut el, "the close", |el| !el.handler_mut::<Echo>(echo).unwrap().closed.is_empty());
    let h = el.handler_mut::<Echo>(echo).unwrap();
    assert_eq!(h.closed[0].1, "Decode");
    assert_eq!(h.packets, 0);
    let mut rest = vec![];
    // The server closed: EOF (or a reset), never a packet.
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

/// Sends 4 KiB packets when it opens until a send fails.
#[derive(Default)]
struct Flood {
    sent: usize,
    error: Option<SendError>,
    closed: Vec<&'static str>,
    after_close: Option<Result<(), SendError>>,
    id: Option<tcpshm::net::SessionId>,
}

impl Handler for Flood {
    type Session = ();

    fn on_open(&mut self, s: &mut Session<'_>, _: Origin) {
        self.id = Some(s.id());
        loop {
            match s.send(&[7; 4096]) {
                Ok(()) => self.sent += 1,
                Err(e) => return self.error = Some(e),
            }
        }
    }

    fn on_packet(&mut self, _: &mut Session<'_>, _: &mut (), _: &[u8]) {}

    fn on_close(
        &mut self,
        cx: &mut tcpshm::net::Ctx<'_>,
        id: tcpshm::net::SessionId,
        _: (),
        r: &tcpshm::net::CloseReason,
    ) {
        self.closed.push(net_common::reason_name(r));
        self.after_close = Some(cx.send(id, b"late"));
    }
}

#[test]
fn a_send_buffer_past_its_limit_closes_the_session() {
    let mut el = EventLoop::new().unwrap();
    let flood = el.add_behaviour(Behaviour::new(Flood::default()).codec(codec()).overflow(64 << 10));
    let l = el.ctx().listen(flood, loopback(), ListenOptions::default()).unwrap();
    let _silent = client(el.ctx().listener_addr(l).unwrap()); // never reads
    run_until(&mut el, "the overflow", |el| !el.handler_mut::<Flood>(flood).unwrap().closed.is_empty());
    let h = el.handler_mut::<Flood>(flood).unwrap();
    assert_eq!(h.error, Some(SendError::Overflow));
    assert_eq!(h.closed, ["Overflow"]);
    assert_eq!(h.after_close, Some(Err(SendError::Closed)));
    assert!(h.sent > 16, "the socket and the buffer took {} packets first", h.sent);
    let id = h.id.unwrap();
    assert_eq!(el.ctx().send(id, b"stale"), Err(SendError::Closed));
}

#[test]
fn half_close_gets_the_echo_then_the_end() {
    let (mut el, echo, addr) = echo_server(Behaviour::new(Echo::default()).codec(codec()));
    let mut c = client(addr);
    c.write_all(&frame(b"last words")).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    run_until(&mut el, "the server to finish", |el| !el.handler_mut::<Echo>(echo).unwrap().closed.is_empty());
    assert_eq!(el.handler_mut::<Echo>(echo).unwrap().closed[0].1, "Finished");
    let mut back = vec![];
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, frame(b"last words"));
}

/// Sends `count` packets when it opens, then closes after sending.
struct Bulk {
    count: usize,
    closed: Vec<&'static str>,
}

impl Handler for Bulk {
    type Session = ();

    fn on_open(&mut self, s: &mut Session<'_>, _: Origin) {
        for i in 0..self.count {
            s.send(&[i as u8; 1000]).expect("within the overflow limit");
        }
        s.close_after_send();
        // Shut down, or closed already if the socket took everything.
        assert!(matches!(s.send(b"too late"), Err(SendError::Shutdown | SendError::Closed)));
    }

    fn on_packet(&mut self, _: &mut Session<'_>, _: &mut (), _: &[u8]) {}

    fn on_close(
        &mut self,
        _: &mut tcpshm::net::Ctx<'_>,
        _: tcpshm::net::SessionId,
        _: (),
        r: &tcpshm::net::CloseReason,
    ) {
        self.closed.push(net_common::reason_name(r));
    }
}

#[test]
fn close_after_send_delivers_everything_then_closes() {
    let mut el = EventLoop::new().unwrap();
    let bulk = el.add_behaviour(Behaviour::new(Bulk { count: 3000, closed: vec![] }).codec(codec()));
    let l = el.ctx().listen(bulk, loopback(), ListenOptions::default()).unwrap();
    let mut c = client(el.ctx().listener_addr(l).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut all = vec![];
            c.read_to_end(&mut all).unwrap();
            done.store(true, SeqCst);
            all
        })
    };
    run_until(&mut el, "the client to read to the end", |_| done.load(SeqCst));
    let all = reader.join().unwrap();
    let expect: Vec<u8> = (0..3000).flat_map(|i| frame(&[i as u8; 1000])).collect();
    assert_eq!(all.len(), expect.len());
    assert!(all == expect, "the bytes differ");
    assert_eq!(el.handler_mut::<Bulk>(bulk).unwrap().closed, ["ClosedAfterSend"]);
}

#[test]
fn unix_domain_sessions_echo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let mut el = EventLoop::new().unwrap();
    let echo = el.add_behaviour(Behaviour::new(Echo::default()).codec(codec()));
    let ping = el.add_behaviour(Behaviour::new(Ping::new(b"over unix")).codec(codec()));
    el.ctx().listen_unix(echo, &path).unwrap();
    el.ctx().connect(ping, Target::Unix(path), ConnectOptions::default()).unwrap();
    run_until(&mut el, "the echo", |el| !el.handler_mut::<Ping>(ping).unwrap().echoes.is_empty());
    assert_eq!(el.handler_mut::<Ping>(ping).unwrap().echoes, [b"over unix".to_vec()]);
}

#[test]
fn ipv6_loopback_and_dual_stack_listeners() {
    let mut el = EventLoop::new().unwrap();
    let echo = el.add_behaviour(Behaviour::new(Echo::default()).codec(codec()));
    let ping = el.add_behaviour(Behaviour::new(Ping::new(b"v6")).codec(codec()));
    let v6 = match el.ctx().listen(echo, "[::1]:0".parse().unwrap(), ListenOptions::default()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("skipped: this machine has no IPv6 loopback (binding [::1] failed: {e})");
            return;
        }
    };
    let addr = el.ctx().listener_addr(v6).unwrap();
    el.ctx().connect(ping, Target::Addr(addr), ConnectOptions::default()).unwrap();
    // Dual stack: a listener on [::] takes IPv4 connections too.
    let any = el.ctx().listen(echo, "[::]:0".parse().unwrap(), ListenOptions::default()).unwrap();
    let port = el.ctx().listener_addr(any).unwrap().port();
    el.ctx().connect(ping, Target::Addr(SocketAddr::from(([127, 0, 0, 1], port))), ConnectOptions::default()).unwrap();
    run_until(&mut el, "both echoes", |el| el.handler_mut::<Ping>(ping).unwrap().echoes.len() == 2);
}

#[test]
fn listen_errors_keep_their_errno() {
    let mut el = EventLoop::new().unwrap();
    let echo = el.add_behaviour(Behaviour::new(Echo::default()));
    let taken = std::net::TcpListener::bind(loopback()).unwrap();
    let err = el.ctx().listen(echo, taken.local_addr().unwrap(), ListenOptions::default()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

/// A codec that always wants more: a line that never ends.
struct Endless;

impl tcpshm::net::Codec for Endless {
    fn decode(&self, _: &[u8]) -> Result<Option<tcpshm::net::Frame>, tcpshm::net::DecodeError> {
        Ok(None)
    }

    fn frame(&self, _: usize) -> Result<tcpshm::net::Framing, tcpshm::net::TooLarge> {
        Ok(Default::default())
    }
}

#[test]
fn an_incomplete_packet_past_the_limit_closes_the_session() {
    let mut el = EventLoop::new().unwrap();
    let rec = el.add_behaviour(Behaviour::new(net_common::Recorder::default()).codec(Endless).max_partial(1000));
    let l = el.ctx().listen(rec, loopback(), ListenOptions::default()).unwrap();
    let mut c = client(el.ctx().listener_addr(l).unwrap());
    for _ in 0..10 {
        // Once the session is closed, writes fail: that is the point.
        if c.write_all(&[b'x'; 300]).is_err() {
            break;
        }
        el.run_once(Some(Duration::ZERO)).unwrap();
    }
    run_until(&mut el, "the close", |el| !el.handler_mut::<net_common::Recorder>(rec).unwrap().closed.is_empty());
    assert_eq!(el.handler_mut::<net_common::Recorder>(rec).unwrap().closed[0].1, "Decode");
}

/// Corks two packets, then sends a third plainly, which ends the cork.
struct Corked;

impl Handler for Corked {
    type Session = ();

    fn on_open(&mut self, s: &mut Session<'_>, _: Origin) {
        s.send_more(b"one").unwrap();
        s.send_more(b"two").unwrap();
        assert_eq!(s.buffered(), 10, "held back while corked");
        s.send(b"three").unwrap();
    }

    fn on_packet(&mut self, _: &mut Session<'_>, _: &mut (), _: &[u8]) {}
}

#[test]
fn a_plain_send_after_send_more_sends_everything() {
    let mut el = EventLoop::new().unwrap();
    let corked = el.add_behaviour(Behaviour::new(Corked).codec(codec()));
    let l = el.ctx().listen(corked, loopback(), ListenOptions::default()).unwrap();
    let mut c = client(el.ctx().listener_addr(l).unwrap());
    let expect = [frame(b"one"), frame(b"two"), frame(b"three")].concat();
    let mut got = vec![0; expect.len()];
    let read = std::thread::spawn(move || c.read_exact(&mut got).map(|_| got));
    run_until(&mut el, "the reader", |_| read.is_finished());
    assert_eq!(read.join().unwrap().unwrap(), expect);
}
