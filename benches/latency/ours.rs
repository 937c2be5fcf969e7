//! tcpshm itself: a client and a server in two pinned threads of this
//! process, over shared memory or loopback TCP, through the public API only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tcpshm::{ClientHandler, Conf, Connection, Msg, ServerConf, ServerHandler, TcpShmClient, TcpShmServer};

use crate::run::{pin, PingClient, PingServer, Pins, Stream};
use crate::shape::{Messages, Shape};
use crate::sys::now_ns;

const SECOND: i64 = 1_000_000_000;

/// Queues large enough for a 1 KiB ping-pong and for streaming batches.
pub struct BenchConf;

impl Conf for BenchConf {
    const SHM_QUEUE_SIZE: usize = 1 << 20;
    const TCP_QUEUE_SIZE: usize = 1 << 20;
    const TCP_RECV_BUF_INIT_SIZE: usize = 1 << 20;
    // Above the peer's queue, so acks are always read (Conf docs).
    const TCP_RECV_BUF_MAX_SIZE: usize = 1 << 21;
    const CONNECTION_TIMEOUT: i64 = 10 * SECOND;
    const HEARTBEAT_INTERVAL: i64 = SECOND;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

impl ServerConf for BenchConf {
    const NEW_CONNECTION_TIMEOUT: i64 = 3 * SECOND;
}

/// Server polls between two reads of the clock (for heartbeats only).
const POLLS_PER_TICK: u32 = 256;

/// The server's handler: echoes (ping-pong) or counts (streaming).
struct Server {
    echo: bool,
    logged_on: bool,
    received: u64,
    target: u64,
    end: Option<Instant>,
}

impl ServerHandler<BenchConf> for Server {
    fn on_client_logon(&mut self, _peer: SocketAddr, _conn: &mut Connection<BenchConf>) {
        self.logged_on = true;
    }

    #[inline]
    fn on_client_msg(&mut self, conn: &mut Connection<BenchConf>, msg: Msg<'_>) {
        if self.echo {
            let Some(mut slot) = conn.alloc(msg.body().len()) else { return };
            self.received += 1;
            slot.copy_from_slice(msg.body());
            slot.pop_received();
            slot.push(msg.msg_type());
            return;
        }
        conn.pop();
        self.received += 1;
        if self.received == self.target {
            self.end = Some(Instant::now());
        }
    }
}

/// How often the server polls its control part (accepting, logins, shm
/// heartbeats): each poll costs system calls, so a latency-minded single
/// thread does it on a timer, not on every turn of the loop.
const CTL_INTERVAL_NS: i64 = 1_000_000;

/// The client side of a case: a ptcp directory, the server's address and
/// both names; the shm objects go when it does.
pub struct Ours {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    server_name: String,
    client_name: String,
    use_shm: bool,
}

/// The serving end, busy-polling the group of the mode on its thread.
pub struct OursServer {
    server: TcpShmServer<BenchConf>,
    handler: Server,
    use_shm: bool,
    last_ctl: i64,
    /// The server's own ptcp directory.
    _dir: tempfile::TempDir,
}

/// Names for a new bench server and client: of this process, and of this
/// pair alone, so no two cases of a run share a queue file or shm object.
pub fn names() -> (String, String) {
    static PAIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tag = std::process::id() % 100_000;
    let pair = PAIRS.fetch_add(1, Relaxed) % 1000;
    (format!("bsrv{tag}p{pair}"), format!("bcli{tag}p{pair}"))
}

impl OursServer {
    /// Starts a server named `name` on loopback, with its files in a
    /// directory of its own, in shm or TCP mode.
    fn start(name: &str, use_shm: bool, handler: Server) -> OursServer {
        let dir = tempfile::tempdir().expect("ptcp dir");
        let mut server = TcpShmServer::<BenchConf>::new(name, dir.path()).expect("server");
        server.start("127.0.0.1:0").expect("server start");
        OursServer { server, handler, use_shm, last_ctl: now_ns() - CTL_INTERVAL_NS, _dir: dir }
    }

    /// An echo server for a ping-pong.
    pub fn echo(name: &str, use_shm: bool) -> OursServer {
        OursServer::start(name, use_shm, Server::echo())
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr().expect("server address")
    }
}

impl Server {
    fn echo() -> Server {
        Server { echo: true, logged_on: false, received: 0, target: u64::MAX, end: None }
    }

    /// Counts messages, noting when the `target`th arrives.
    fn sink(target: u64) -> Server {
        Server { echo: false, logged_on: false, received: 0, target, end: None }
    }
}

impl Ours {
    /// The client side of a server at `addr` named `server_name`.
    pub fn new(addr: SocketAddr, server_name: String, client_name: String, use_shm: bool) -> Ours {
        let dir = tempfile::tempdir().expect("ptcp dir");
        Ours { dir, addr, server_name, client_name, use_shm }
    }

    /// A server on this process's threads and the client side of it.
    pub fn echo(use_shm: bool) -> (Ours, OursServer) {
        let (server_name, client_name) = names();
        let server = OursServer::echo(&server_name, use_shm);
        (Ours::new(server.addr(), server_name, client_name, use_shm), server)
    }

    /// Connects the client; the server must be serving (its `setup`).
    fn connect(&self) -> (TcpShmClient<BenchConf>, Client) {
        let mut client = TcpShmClient::<BenchConf>::new(&self.client_name, self.dir.path()).expect("client");
        let mut h = Client { echoed: false };
        client.connect(self.use_shm, self.addr, 0, &mut h).expect("connect");
        (client, h)
    }

    /// The client end of a ping-pong of `shape`'s messages.
    pub fn ping_client(&self, shape: Shape) -> OursClient {
        let (client, h) = self.connect();
        let payload = vec![0x5au8; shape.max_body()];
        OursClient { client, h, msgs: Messages::new(shape), payload, use_shm: self.use_shm, now: now_ns() }
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        for (a, b) in [(&self.client_name, &self.server_name), (&self.server_name, &self.client_name)] {
            let _ = std::fs::remove_file(tcpshm::shm::shm_path(a, b));
        }
    }
}

impl OursServer {
    /// One turn of the loop: the control part if it is due, then
    /// `POLLS_PER_TICK` polls of the group.
    #[inline]
    fn tick(&mut self) {
        let now = now_ns();
        if now - self.last_ctl >= CTL_INTERVAL_NS {
            self.server.poll_ctl(now, &mut self.handler);
            self.last_ctl = now;
        }
        for _ in 0..POLLS_PER_TICK {
            if self.use_shm {
                self.server.poll_shm(0, &mut self.handler);
            } else {
                self.server.poll_tcp(now, 0, &mut self.handler);
            }
        }
    }

    /// Serves until `stop`.
    fn serve_until(&mut self, stop: &AtomicBool) {
        while !stop.load(Relaxed) {
            self.tick();
            if self.handler.end.is_some() {
                stop.store(true, Relaxed);
            }
        }
    }
}

impl PingServer for OursServer {
    fn setup(&mut self) {
        while !self.handler.logged_on {
            self.tick();
        }
    }

    fn serve(&mut self, count: u64) {
        let target = self.handler.received + count;
        while self.handler.received < target {
            self.tick();
        }
    }
}

/// The client's handler: notes each echo.
struct Client {
    echoed: bool,
}

impl ClientHandler<BenchConf> for Client {
    #[inline]
    fn on_server_msg(&mut self, conn: &mut Connection<BenchConf>, _msg: Msg<'_>) {
        self.echoed = true;
        conn.pop();
    }
}

/// The client end of a tcpshm ping-pong: its clock for heartbeats is read,
/// and in shm mode its TCP link polled, between segments.
pub struct OursClient {
    client: TcpShmClient<BenchConf>,
    h: Client,
    msgs: Messages,
    payload: Vec<u8>,
    use_shm: bool,
    now: i64,
}

impl OursClient {
    /// Sends the next message.
    #[inline]
    fn send(&mut self) {
        let (msg_type, len) = self.msgs.next_msg();
        let mut slot = self.client.connection().alloc(len).expect("a ping-pong never fills the queue");
        slot.copy_from_slice(&self.payload[..len]);
        slot.push(msg_type);
    }

    /// Polls for the echo once; true if it came (and was popped).
    #[inline]
    fn poll(&mut self) -> bool {
        if self.use_shm {
            self.client.poll_shm(&mut self.h);
        } else {
            self.client.poll_tcp(self.now, &mut self.h);
        }
        std::mem::take(&mut self.h.echoed)
    }
}

impl PingClient for OursClient {
    #[inline]
    fn round_trip(&mut self) {
        self.send();
        while !self.poll() {}
    }

    fn maintain(&mut self) {
        self.now = now_ns();
        self.client.poll_tcp(self.now, &mut self.h);
    }
}

/// `--instructions N`: N round trips of the echo mix over shared memory on
/// this one thread (the client sends, the server polls, the client polls),
/// then N messages streamed over TCP, for counting instructions, which
/// unlike time are stable on a noisy machine:
/// `valgrind --tool=callgrind --toggle-collect='*single_thread_round_trips*' <bench> --instructions N`
/// gives the instructions of N round trips, both ends included;
/// `--toggle-collect='*push_batch*'` (or `'*drain*'`) those of the
/// streaming sender (receiver).
pub fn instructions(n: u64) {
    let (ours, mut server) = Ours::echo(true);
    let mut client = std::thread::scope(|s| {
        let served = s.spawn(|| server.setup());
        let client = ours.ping_client(Shape::EchoMix);
        served.join().expect("server setup");
        client
    });
    // The first round trips let the server's group adopt the connection.
    single_thread_round_trips(&mut client, &mut server, 1000);
    single_thread_round_trips(&mut client, &mut server, n);
    println!("{} shm round trips on one thread", n + 1000);
    single_thread_stream(n);
}

/// N messages of 16 bytes streamed over TCP in batches of 32 on this one
/// thread: `push_batch` counts the sender's instructions, `drain` the
/// receiver's (system calls excluded, as callgrind counts user space).
fn single_thread_stream(n: u64) {
    const BATCH: u64 = 32;
    let (server_name, client_name) = names();
    let mut server = OursServer::start(&server_name, false, Server::sink(u64::MAX));
    let ours = Ours::new(server.addr(), server_name, client_name, false);
    let mut streamer = std::thread::scope(|s| {
        let served = s.spawn(|| server.setup());
        let streamer = Streamer::new(&ours, Shape::Fixed(16));
        served.join().expect("server setup");
        streamer
    });
    let mut sent = 0;
    while sent < n {
        streamer.push_batch(BATCH);
        sent += BATCH;
        drain(&mut server, sent);
    }
    println!("{sent} TCP messages streamed on one thread");
}

/// Polls the server until it has received `count` messages.
#[inline(never)]
fn drain(server: &mut OursServer, count: u64) {
    while server.handler.received < count {
        server.server.poll_tcp(0, 0, &mut server.handler);
    }
}

#[inline(never)]
fn single_thread_round_trips(client: &mut OursClient, server: &mut OursServer, n: u64) {
    for _ in 0..n {
        client.send();
        loop {
            server.server.poll_shm(0, &mut server.handler);
            if client.poll() {
                break;
            }
        }
    }
}

/// The sending end of a streaming case: a ping-pong client's connection
/// and messages, pushed in batches.
struct Streamer {
    client: OursClient,
    polls: u32,
}

impl Streamer {
    fn new(ours: &Ours, shape: Shape) -> Streamer {
        Streamer { client: ours.ping_client(shape), polls: 0 }
    }

    /// Queues `batch` messages, `push_more` for all but the last; when the
    /// queue is full, reads the server's acks (TCP) or waits for its pops
    /// (shm, polling the link for heartbeats now and then).
    #[inline(never)]
    fn push_batch(&mut self, batch: u64) {
        let c = &mut self.client;
        for i in 0..batch {
            let (msg_type, len) = c.msgs.next_msg();
            loop {
                if let Some(mut slot) = c.client.connection().alloc(len) {
                    slot.copy_from_slice(&c.payload[..len]);
                    if i + 1 == batch {
                        slot.push(msg_type);
                    } else {
                        slot.push_more(msg_type);
                    }
                    break;
                }
                self.polls = self.polls.wrapping_add(1);
                let tick = self.polls.is_multiple_of(POLLS_PER_TICK);
                if tick {
                    c.now = now_ns();
                }
                if !c.use_shm || tick {
                    c.client.poll_tcp(c.now, &mut c.h);
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }

    /// Polls the link until `stop`: what TCP could not send yet goes out
    /// as the server acks.
    fn flush_until(&mut self, stop: &AtomicBool) {
        let c = &mut self.client;
        while !stop.load(Relaxed) {
            c.client.poll_tcp(c.now, &mut c.h);
        }
    }
}

/// One-way streaming of the case's messages through tcpshm: `push_more`
/// for all but the last of each batch, then `push`. Returns the time from
/// the first push to the last message received, and the heap allocations
/// made while pushing.
pub fn stream(stream: Stream, pins: Pins, use_shm: bool) -> (Duration, u64) {
    let (server_name, client_name) = names();
    let mut server = OursServer::start(&server_name, use_shm, Server::sink(stream.count));
    let ours = Ours::new(server.addr(), server_name, client_name, use_shm);
    let stop = &AtomicBool::new(false);
    std::thread::scope(|s| {
        let served = s.spawn(move || {
            pin(pins.server);
            server.setup();
            server.serve_until(stop);
            server.handler.end
        });
        pin(pins.client);
        let mut streamer = Streamer::new(&ours, stream.shape);
        let allocs = crate::alloc::count();
        let start = Instant::now();
        let mut sent = 0;
        while sent < stream.count {
            let batch = stream.batch.min(stream.count - sent);
            streamer.push_batch(batch);
            sent += batch;
        }
        let allocs = crate::alloc::count() - allocs;
        streamer.flush_until(stop);
        let end = served.join().expect("server thread").expect("the server received every message");
        (end - start, allocs)
    })
}
