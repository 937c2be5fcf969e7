//! tcpshm itself: a client and a server in two pinned threads of this
//! process, over shared memory or loopback TCP, through the public API only.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

use tcpshm::{ClientHandler, Conf, Connection, Msg, ServerConf, ServerHandler, TcpShmClient, TcpShmServer};

use crate::run::{pin, Measured, Pins, RoundTrips, Stream, StreamResult};
use crate::shape::{Messages, Shape};

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

/// Nanoseconds since the first call: the `now` of the polls.
fn now_ns() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as i64
}

/// Server polls between two reads of the clock (for heartbeats only).
const POLLS_PER_TICK: u32 = 256;

/// The server's handler: echoes (ping-pong) or counts (streaming).
struct Server {
    echo: bool,
    received: u64,
    target: u64,
    end: Option<Instant>,
}

impl ServerHandler<BenchConf> for Server {
    #[inline]
    fn on_client_msg(&mut self, conn: &mut Connection<BenchConf>, msg: Msg<'_>) {
        if self.echo {
            let Some(mut slot) = conn.alloc(msg.body().len()) else { return };
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

/// Serves on this thread until `stop`: the group of the mode busy-polled,
/// the clock read every `POLLS_PER_TICK` polls, the control part polled
/// every `CTL_INTERVAL_NS`.
fn serve(server: &mut TcpShmServer<BenchConf>, use_shm: bool, h: &mut Server, stop: &AtomicBool) {
    let mut last_ctl = now_ns() - CTL_INTERVAL_NS;
    while !stop.load(Relaxed) {
        let now = now_ns();
        if now - last_ctl >= CTL_INTERVAL_NS {
            server.poll_ctl(now, h);
            last_ctl = now;
        }
        for _ in 0..POLLS_PER_TICK {
            if use_shm {
                server.poll_shm(0, h);
            } else {
                server.poll_tcp(now, 0, h);
            }
        }
        if h.end.is_some() {
            stop.store(true, Relaxed);
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

/// Starts a server in `dir` serving on another thread with `server_h`,
/// connects a client on this thread and runs `client_side` with the stop
/// flag: ping-pong sets it when done, streaming waits for the server to set
/// it when the last message arrived. Returns what `client_side` returned
/// and when the server's last message arrived (streaming).
fn pair<R>(
    dir: &Path,
    use_shm: bool,
    pins: Pins,
    mut server_h: Server,
    client_side: impl FnOnce(&mut TcpShmClient<BenchConf>, &mut Client, &AtomicBool) -> R,
) -> (R, Option<Instant>) {
    let tag = std::process::id() % 100_000;
    let (server_name, client_name) = (format!("bsrv{tag}"), format!("bcli{tag}"));
    let mut server = TcpShmServer::<BenchConf>::new(&server_name, dir).expect("server");
    server.start("127.0.0.1:0").expect("server start");
    let addr = server.local_addr().expect("server address");
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let served = s.spawn(|| {
            pin(pins.server);
            serve(&mut server, use_shm, &mut server_h, &stop);
            server_h.end
        });
        pin(pins.client);
        let mut client = TcpShmClient::<BenchConf>::new(&client_name, dir).expect("client");
        let mut h = Client { echoed: false };
        client.connect(use_shm, addr, 0, &mut h).expect("connect");
        let r = client_side(&mut client, &mut h, &stop);
        stop.store(true, Relaxed);
        let end = served.join().expect("server thread");
        client.stop();
        (r, end)
    });
    for (a, b) in [(&client_name, &server_name), (&server_name, &client_name)] {
        let _ = std::fs::remove_file(tcpshm::shm::shm_path(a, b));
    }
    result
}

/// Round trips of the case's messages through tcpshm. The client's clock
/// for heartbeats is read, and its TCP link polled in shm mode, every 1024
/// round trips, outside the measured time.
pub fn ping_pong(rt: RoundTrips, pins: Pins, shape: Shape, use_shm: bool) -> Measured {
    let dir = tempfile::tempdir().expect("ptcp dir");
    let echo = Server { echo: true, received: 0, target: u64::MAX, end: None };
    let payload = vec![0x5au8; shape.max_body()];
    let (m, _) = pair(dir.path(), use_shm, pins, echo, |client, h, _stop| {
        let mut msgs = Messages::new(shape);
        let mut state = (client, h, now_ns());
        let round_trip = |(client, h, now): &mut (&mut TcpShmClient<BenchConf>, &mut Client, i64)| {
            let (msg_type, len) = msgs.next_msg();
            let mut slot = client.connection().alloc(len).expect("a ping-pong never fills the queue");
            slot.copy_from_slice(&payload[..len]);
            slot.push(msg_type);
            while !h.echoed {
                if use_shm {
                    client.poll_shm(*h);
                } else {
                    client.poll_tcp(*now, *h);
                }
            }
            h.echoed = false;
        };
        rt.measure_with(&mut state, round_trip, 1024, |(client, h, now)| {
            *now = now_ns();
            client.poll_tcp(*now, *h);
        })
    });
    m
}

/// One-way streaming of the case's messages through tcpshm: `push_more`
/// for all but the last of each batch, then `push`.
pub fn stream(stream: Stream, pins: Pins, use_shm: bool) -> (StreamResult, u64) {
    let dir = tempfile::tempdir().expect("ptcp dir");
    let sink = Server { echo: false, received: 0, target: stream.count, end: None };
    let payload = vec![0x5au8; stream.shape.max_body()];
    let ((start, allocs), end) = pair(dir.path(), use_shm, pins, sink, |client, h, stop| {
        let mut msgs = Messages::new(stream.shape);
        let allocs = crate::alloc::count();
        let start = Instant::now();
        let mut sent = 0;
        let mut polls = 0u32;
        let mut now = now_ns();
        while sent < stream.count {
            let batch = stream.batch.min(stream.count - sent);
            let mut i = 0;
            while i < batch {
                let (msg_type, len) = msgs.next_msg();
                loop {
                    if let Some(mut slot) = client.connection().alloc(len) {
                        slot.copy_from_slice(&payload[..len]);
                        if i + 1 == batch {
                            slot.push(msg_type);
                        } else {
                            slot.push_more(msg_type);
                        }
                        break;
                    }
                    // Full: read the server's acks (TCP) or wait for its pops
                    // (shm, polling the link for heartbeats now and then).
                    polls = polls.wrapping_add(1);
                    let tick = polls % POLLS_PER_TICK == 0;
                    if tick {
                        now = now_ns();
                    }
                    if !use_shm || tick {
                        client.poll_tcp(now, h);
                    } else {
                        std::hint::spin_loop();
                    }
                }
                i += 1;
            }
            sent += batch;
        }
        let allocs = crate::alloc::count() - allocs;
        // What TCP could not send yet goes out as the server acks.
        while !stop.load(Relaxed) {
            client.poll_tcp(now, h);
        }
        (start, allocs)
    });
    let end = end.expect("the server received every message");
    (StreamResult { start, end }, allocs)
}
