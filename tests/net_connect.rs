//! Connectors: refused connects reported, reconnect after the server
//! restarts, host names resolved (and failing to), fallback addresses, a
//! thousand connections at once, and moving a session to another behaviour.

mod net_common;

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::time::Duration;

use net_common::{codec, frame, run_until, Echo, Ping, Recorder, PATIENCE};
use tcpshm::net::{
    Backoff, Behaviour, Codec, ConnectOptions, DecodeError, EventLoop, Frame, Framing, Handler, ListenOptions, Origin,
    Session, Target, TooLarge,
};

const MS: Duration = Duration::from_millis(1);

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn a_refused_connect_is_reported_with_its_error() {
    let mut el = EventLoop::new().unwrap();
    let rec = el.add_behaviour(Behaviour::new(Recorder::default()));
    el.ctx().connect(rec, Target::Addr(free_port()), ConnectOptions::default()).unwrap();
    run_until(&mut el, "the connect error", |el| !el.handler_mut::<Recorder>(rec).unwrap().connect_errors.is_empty());
    let h = el.handler_mut::<Recorder>(rec).unwrap();
    assert_eq!(h.connect_errors, [(ErrorKind::ConnectionRefused, None)]);
    assert!(h.opened.is_empty() && h.closed.is_empty(), "a session that never opened does not close");
}

#[test]
fn a_connector_reconnects_after_the_server_restarts() {
    let mut el = EventLoop::new().unwrap();
    let echo = el.add_behaviour(Behaviour::new(Echo::default()).codec(codec()));
    let ping = el.add_behaviour(Behaviour::new(Ping::new(b"again")).codec(codec()));
    let addr = free_port();
    let listener = el.ctx().listen(echo, addr, ListenOptions::default()).unwrap();
    let reconnect = Backoff { initial: 5 * MS, max: 40 * MS };
    el.ctx().connect(ping, Target::Addr(addr), ConnectOptions { timeout: None, reconnect: Some(reconnect) }).unwrap();
    run_until(&mut el, "the first echo", |el| el.handler_mut::<Ping>(ping).unwrap().echoes.len() == 1);
    // The server goes away: its listener and its session.
    assert!(el.ctx().close_listener(listener));
    let server_side = el.handler_mut::<Echo>(echo).unwrap().opened[0].0;
    el.ctx().close(server_side);
    run_until(&mut el, "the client to see the close", |el| el.handler_mut::<Ping>(ping).unwrap().closed.len() == 1);
    // ... and comes back on the same port.
    el.ctx().listen(echo, addr, ListenOptions::default()).unwrap();
    run_until(&mut el, "the second echo", |el| el.handler_mut::<Ping>(ping).unwrap().echoes.len() == 2);
    assert_eq!(el.handler_mut::<Ping>(ping).unwrap().opened, 2);
}

#[test]
fn a_host_name_connects_and_one_that_does_not_resolve_is_reported() {
    let mut el = EventLoop::new().unwrap();
    let echo = el.add_behaviour(Behaviour::new(Echo::default()).codec(codec()));
    let ping = el.add_behaviour(Behaviour::new(Ping::new(b"by name")).codec(codec()));
    let l = el.ctx().listen(echo, "127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
    let port = el.ctx().listener_addr(l).unwrap().port();
    el.ctx().connect(ping, Target::Host("localhost".into(), port), ConnectOptions::default()).unwrap();
    run_until(&mut el, "the echo", |el| !el.handler_mut::<Ping>(ping).unwrap().echoes.is_empty());
    let rec = el.add_behaviour(Behaviour::new(Recorder::default()));
    el.ctx().connect(rec, Target::Host("no-such-host.invalid".into(), port), ConnectOptions::default()).unwrap();
    run_until(&mut el, "the lookup failure", |el| !el.handler_mut::<Recorder>(rec).unwrap().connect_errors.is_empty());
}

/// TCP to a broadcast address fails inside `connect(2)` (ENETUNREACH).
fn fails_at_once() -> SocketAddr {
    "255.255.255.255:9".parse().unwrap()
}

#[test]
fn the_addresses_of_a_target_are_tried_in_order_until_one_connects() {
    let mut el = EventLoop::new().unwrap();
    let echo = el.add_behaviour(Behaviour::new(Echo::default()).codec(codec()));
    let ping = el.add_behaviour(Behaviour::new(Ping::new(b"third time")).codec(codec()));
    let l = el.ctx().listen(echo, "127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
    let live = el.ctx().listener_addr(l).unwrap();
    // The first fails in the call, the second later (refused), the third answers.
    let addrs = vec![fails_at_once(), free_port(), live];
    el.ctx().connect(ping, Target::Addrs(addrs), ConnectOptions::default()).unwrap();
    run_until(&mut el, "the echo", |el| !el.handler_mut::<Ping>(ping).unwrap().echoes.is_empty());
    let p = el.handler_mut::<Ping>(ping).unwrap();
    assert_eq!((p.opened, p.connect_errors), (1, 0), "a failed address is not an error while others remain");
}

#[test]
fn when_every_address_fails_the_last_error_is_reported_once() {
    let mut el = EventLoop::new().unwrap();
    let rec = el.add_behaviour(Behaviour::new(Recorder::default()));
    let addrs = vec![free_port(), fails_at_once()];
    el.ctx().connect(rec, Target::Addrs(addrs), ConnectOptions::default()).unwrap();
    run_until(&mut el, "the connect error", |el| !el.handler_mut::<Recorder>(rec).unwrap().connect_errors.is_empty());
    // Let anything still queued run before checking that it came once.
    el.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(el.handler_mut::<Recorder>(rec).unwrap().connect_errors, [(ErrorKind::NetworkUnreachable, None)]);
    let empty = el.ctx().connect(rec, Target::Addrs(vec![]), ConnectOptions::default());
    assert_eq!(empty.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn a_behaviour_of_another_loop_is_refused_everywhere() {
    let mut other = EventLoop::new().unwrap();
    let foreign = (0..3).map(|_| other.add_behaviour(Behaviour::new(Recorder::default()))).last().unwrap();
    let mut el = EventLoop::new().unwrap();
    let rec = el.add_behaviour(Behaviour::new(Recorder::default()));
    let l = el.ctx().listen(rec, "127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
    let addr = el.ctx().listener_addr(l).unwrap();
    let refused = |r: std::io::Result<()>| assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidInput);
    refused(el.ctx().listen(foreign, "127.0.0.1:0".parse().unwrap(), ListenOptions::default()).map(drop));
    refused(el.ctx().connect(foreign, Target::Addr(addr), ConnectOptions::default()).map(drop));
    let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    refused(el.adopt_fd(foreign, ours.into()).map(drop));
    let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let session = el.adopt_fd(rec, ours.into()).unwrap();
    refused(el.ctx().adopt(session, foreign));
    assert!(el.ctx().is_open(session), "a refused move leaves the session as it was");
}

#[test]
fn a_thousand_connections_at_once() {
    const N: usize = 1000;
    // Both ends of each connection are in this process.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let want = (4 * N as u64 + 64).min(hard);
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, want, hard).unwrap();
    let mut el = EventLoop::new().unwrap();
    let echo = el.add_behaviour(Behaviour::new(Echo::default()).codec(codec()));
    let ping = el.add_behaviour(Behaviour::new(Ping::new(b"one of many")).codec(codec()));
    let l = el.ctx().listen(echo, "127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
    let addr = el.ctx().listener_addr(l).unwrap();
    for _ in 0..N {
        el.ctx().connect(ping, Target::Addr(addr), ConnectOptions::default()).unwrap();
    }
    run_until(&mut el, "every echo", |el| el.handler_mut::<Ping>(ping).unwrap().echoes.len() == N);
    assert_eq!(el.handler_mut::<Echo>(echo).unwrap().opened.len(), N);
    assert!(el.handler_mut::<Ping>(ping).unwrap().closed.is_empty());
}

/// Lines ending in `\n`, at most 64 bytes.
struct Lines;

impl Codec for Lines {
    fn decode(&self, buf: &[u8]) -> Result<Option<Frame>, DecodeError> {
        match buf.iter().take(65).position(|&b| b == b'\n') {
            Some(i) => Ok(Some(Frame { start: 0, end: i, consumed: i + 1 })),
            None if buf.len() > 64 => Err(DecodeError::Invalid("line longer than 64 bytes".into())),
            None => Ok(None),
        }
    }

    fn frame(&self, len: usize) -> Result<Framing, TooLarge> {
        if len > 64 {
            return Err(TooLarge { size: len, max: 64 });
        }
        Ok(Framing { prefix: Default::default(), suffix: tcpshm::net::Affix::new(b"\n").unwrap() })
    }
}

/// Greets in lines until "UPGRADE", then moves the session to `next`.
struct Greeter {
    next: Option<tcpshm::net::BehaviourId>,
    lines: Vec<Vec<u8>>,
}

impl Handler for Greeter {
    type Session = u32;

    fn on_open(&mut self, _: &mut Session<'_>, _: Origin) -> u32 {
        7
    }

    fn on_packet(&mut self, s: &mut Session<'_>, _: &mut u32, line: &[u8]) {
        self.lines.push(line.to_vec());
        s.send(b"ok").unwrap();
        if line == b"UPGRADE" {
            s.adopt(self.next.unwrap()).unwrap();
        }
    }
}

/// Takes over upgraded sessions (their data, the 7, included) and echoes.
#[derive(Default)]
struct Upgraded {
    adopted: Vec<u32>,
    packets: Vec<Vec<u8>>,
}

impl Handler for Upgraded {
    type Session = u32;

    fn on_open(&mut self, _: &mut Session<'_>, _: Origin) -> u32 {
        0
    }

    fn on_packet(&mut self, s: &mut Session<'_>, data: &mut u32, packet: &[u8]) {
        *data += 1;
        self.packets.push(packet.to_vec());
        s.send(packet).unwrap();
    }

    fn on_adopt(&mut self, _: &mut Session<'_>, previous: Box<dyn std::any::Any>) -> Option<u32> {
        let data = *previous.downcast::<u32>().ok()?;
        self.adopted.push(data);
        Some(data)
    }
}

#[test]
fn an_adopted_session_keeps_its_data_and_the_bytes_behind_the_upgrade() {
    let mut el = EventLoop::new().unwrap();
    let upgraded = el.add_behaviour(Behaviour::new(Upgraded::default()).codec(codec()));
    let greeter = el.add_behaviour(Behaviour::new(Greeter { next: Some(upgraded), lines: vec![] }).codec(Lines));
    let l = el.ctx().listen(greeter, "127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
    let mut c = std::net::TcpStream::connect(el.ctx().listener_addr(l).unwrap()).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    // The upgrade line and the first packets of the new protocol in one write.
    let mut bytes = b"hello\nUPGRADE\n".to_vec();
    bytes.extend(frame(b"binary one"));
    bytes.extend(frame(b"binary two"));
    c.write_all(&bytes).unwrap();
    run_until(&mut el, "both packets after the upgrade", |el| {
        el.handler_mut::<Upgraded>(upgraded).unwrap().packets.len() == 2
    });
    assert_eq!(el.handler_mut::<Greeter>(greeter).unwrap().lines, [b"hello".to_vec(), b"UPGRADE".to_vec()]);
    assert_eq!(el.handler_mut::<Upgraded>(upgraded).unwrap().adopted, [7]);
    let mut back = vec![0; 6 + 2 * 12];
    std::io::Read::read_exact(&mut c, &mut back).unwrap();
    assert_eq!(back, [&b"ok\nok\n"[..], &frame(b"binary one"), &frame(b"binary two")].concat());
}
