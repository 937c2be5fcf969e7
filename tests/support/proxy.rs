//! A TCP proxy between a client and a server that cuts or stalls the link
//! on command, to break connections under processes that keep running.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

enum Command {
    /// Close both sockets of every current connection.
    Cut,
    /// Stop forwarding on every current connection, keeping its sockets
    /// open: a half-open link that only heartbeats can detect.
    Stall,
}

/// One direction of a forwarded connection, with the bytes read but not yet written.
struct Pipe {
    from: TcpStream,
    to: TcpStream,
    buf: Vec<u8>,
    pending: std::ops::Range<usize>,
}

impl Pipe {
    /// Moves what it can; false when either side is gone.
    fn pump(&mut self) -> bool {
        if self.pending.is_empty() {
            match self.from.read(&mut self.buf) {
                Ok(0) => return false,
                Ok(n) => self.pending = 0..n,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => return true,
                Err(_) => return false,
            }
        }
        match self.to.write(&self.buf[self.pending.clone()]) {
            Ok(n) => self.pending.start += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
        true
    }
}

struct Link {
    up: Pipe,
    down: Pipe,
    stalled: bool,
}

/// A proxy listening on `addr` and forwarding each connection to a target.
pub struct Proxy {
    pub addr: String,
    commands: Sender<Command>,
    /// Commands carried out so far.
    done: Arc<AtomicU32>,
    sent: u32,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port, forwarding to `target`.
    pub fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (commands, rx) = channel();
        let done = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let target = target.to_owned();
        let (d, s) = (done.clone(), stop.clone());
        let thread = std::thread::spawn(move || forward(listener, &target, rx, &d, &s));
        Proxy { addr, commands, done, sent: 0, stop, thread: Some(thread) }
    }

    fn command(&mut self, c: Command) {
        self.commands.send(c).unwrap();
        self.sent += 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.done.load(Ordering::Acquire) < self.sent {
            assert!(Instant::now() < deadline, "the proxy does not answer");
            std::thread::yield_now();
        }
    }

    /// Closes every current connection (both sockets); returns once done.
    pub fn cut(&mut self) {
        self.command(Command::Cut);
    }

    /// Stops forwarding on every current connection but keeps its sockets;
    /// later connections are forwarded as usual.
    pub fn stall(&mut self) {
        self.command(Command::Stall);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn forward(listener: TcpListener, target: &str, commands: Receiver<Command>, done: &AtomicU32, stop: &AtomicBool) {
    let mut links: Vec<Link> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while let Ok(c) = commands.try_recv() {
            match c {
                Command::Cut => links.clear(),
                Command::Stall => links.iter_mut().for_each(|l| l.stalled = true),
            }
            done.fetch_add(1, Ordering::Release);
        }
        if let Ok((client, _)) = listener.accept() {
            if let Ok(server) = TcpStream::connect(target) {
                let pipe = |from: &TcpStream, to: &TcpStream| Pipe {
                    from: from.try_clone().unwrap(),
                    to: to.try_clone().unwrap(),
                    buf: vec![0; 64 * 1024],
                    pending: 0..0,
                };
                for s in [&client, &server] {
                    s.set_nonblocking(true).unwrap();
                    s.set_nodelay(true).unwrap();
                }
                links.push(Link { up: pipe(&client, &server), down: pipe(&server, &client), stalled: false });
            }
        }
        links.retain_mut(|l| l.stalled || (l.up.pump() && l.down.pump()));
        std::thread::yield_now();
    }
}
