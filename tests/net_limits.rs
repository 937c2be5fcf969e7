//! Running out of descriptors, a connect nobody answers, a pipe as a
//! session. A file of its own: it lowers this process's descriptor limit.

mod net_common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use net_common::{run_until, Recorder};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tcpshm::net::{Behaviour, ConnectOptions, EventLoop, ListenOptions, Target};

/// The descriptor limit is the process's: the tests of this file take
/// turns, so none opens a socket while another has lowered it.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[test]
fn out_of_descriptors_the_listener_pauses_reports_and_resumes() {
    let _turn = one_at_a_time();
    const CLIENTS: usize = 10;
    let mut el = EventLoop::new().unwrap();
    let rec = el.add_behaviour(Behaviour::new(Recorder::default()));
    let l = el.ctx().listen(rec, "127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
    let addr = el.ctx().listener_addr(l).unwrap();
    // Connected by the kernel, waiting in the backlog to be accepted.
    let _clients: Vec<_> = (0..CLIENTS).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // Room for about two accepts.
    setrlimit(Resource::RLIMIT_NOFILE, open_fds() + 2, hard).unwrap();
    run_until(&mut el, "the accept error", |el| !el.handler_mut::<Recorder>(rec).unwrap().accept_errors.is_empty());
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    let h = el.handler_mut::<Recorder>(rec).unwrap();
    assert_eq!(h.accept_errors[0], (Some(libc::EMFILE), Some(Duration::from_millis(100))));
    assert!(h.opened.len() < CLIENTS);
    // With descriptors again, the paused listener takes the rest.
    run_until(&mut el, "every client accepted", |el| el.handler_mut::<Recorder>(rec).unwrap().opened.len() == CLIENTS);
    assert_eq!(el.handler_mut::<Recorder>(rec).unwrap().accept_errors.len(), 1, "one error, then a pause: no spinning");
}

#[test]
fn a_connect_nobody_answers_times_out() {
    let _turn = one_at_a_time();
    // A listener that never accepts, its one-slot backlog taken: the
    // kernel drops further SYNs, so a connect neither succeeds nor fails.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut filler = vec![];
    let mut el = EventLoop::new().unwrap();
    let rec = el.add_behaviour(Behaviour::new(Recorder::default()));
    for _ in 0..2 {
        filler.push(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)));
    }
    let opts = ConnectOptions { timeout: Some(Duration::from_millis(150)), reconnect: None };
    el.ctx().connect(rec, Target::Addr(addr), opts).unwrap();
    run_until(&mut el, "the timeout", |el| !el.handler_mut::<Recorder>(rec).unwrap().connect_errors.is_empty());
    let h = el.handler_mut::<Recorder>(rec).unwrap();
    assert_eq!(h.connect_errors, [(std::io::ErrorKind::TimedOut, None)]);
    assert!(h.opened.is_empty());
}

#[test]
fn a_pipe_is_a_session_too() {
    let _turn = one_at_a_time();
    let mut el = EventLoop::new().unwrap();
    let rec = el.add_behaviour(Behaviour::new(Recorder::default()));
    let (read, write) = nix::unistd::pipe().unwrap();
    el.adopt_fd(rec, read).unwrap();
    let mut write = std::fs::File::from(write);
    write.write_all(b"through a pipe").unwrap();
    run_until(&mut el, "the bytes", |el| !el.handler_mut::<Recorder>(rec).unwrap().packets.is_empty());
    assert_eq!(el.handler_mut::<Recorder>(rec).unwrap().packets, [b"through a pipe".to_vec()]);
    drop(write);
    run_until(&mut el, "the end", |el| !el.handler_mut::<Recorder>(rec).unwrap().closed.is_empty());
    assert_eq!(el.handler_mut::<Recorder>(rec).unwrap().closed[0].1, "Finished");
}
