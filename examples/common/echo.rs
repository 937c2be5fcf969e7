//! The echo pair of the C++ tcpshm test, shared by the `echo_server`,
//! `echo_client` and `echo` examples and by the tests.
//!
//! The client sends increasing i32 numbers in four message types carrying one
//! to four numbers (type = count), chosen at random, and checks that every
//! echoed number is the next one expected. Its send and receive counters live
//! in a memory-mapped file in the ptcp dir, so killing and restarting either
//! process resumes where it was.
//!
//! A counter and the queue it describes are two places in memory, so a kill
//! can fall between updating one and the other. The client closes both gaps
//! the way an exactly-once application must: before a push it records the
//! connection's `push_mark`, so after a restart it knows whether the push
//! happened; and it counts a received message before popping it, so after a
//! restart it recognises that one message coming again.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memmap2::MmapMut;
use tcpshm::{
    ClientHandler, CloseReason, Conf, Connection, Msg, ServerConf, ServerHandler, TcpShmClient, TcpShmServer,
};
use zerocopy::FromBytes;

#[path = "args.rs"]
mod args;
#[path = "sys.rs"]
mod sys;
// The examples read flags and choose CPUs through here; the tests that load
// this file do not.
#[allow(unused_imports)]
pub use args::Args;
#[allow(unused_imports)]
pub use sys::allowed_cpus;
pub use sys::{now_ns, pin};

const SECOND: i64 = 1_000_000_000;

/// The echo pair's configuration: the C++ test pair's (`test/common.h`,
/// `test/echo_client.cc`, `test/echo_server.cc` in MengRao/tcpshm), times in
/// ns, so either side can be swapped for the C++ one. The two sides differ
/// only in their TCP queue: `QUEUE` bytes.
pub struct EchoConf<const QUEUE: usize>;

/// The client's side: a 2000-byte TCP queue (the C++ `ClientConf`).
pub type EchoClientConf = EchoConf<2000>;
/// The server's side: a 3000-byte TCP queue (the C++ `ServerConf`).
pub type EchoServerConf = EchoConf<3000>;

impl<const QUEUE: usize> Conf for EchoConf<QUEUE> {
    const SHM_QUEUE_SIZE: usize = 1 << 20;
    const TCP_QUEUE_SIZE: usize = QUEUE;
    const TCP_RECV_BUF_INIT_SIZE: usize = 1000;
    const TCP_RECV_BUF_MAX_SIZE: usize = 2000;
    const CONNECTION_TIMEOUT: i64 = 10 * SECOND;
    const HEARTBEAT_INTERVAL: i64 = 3 * SECOND;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

impl ServerConf for EchoServerConf {
    const NEW_CONNECTION_TIMEOUT: i64 = 3 * SECOND;
}

// Why these sizes stream without a deadlock, against ours or the C++ peer:
// a streaming client has at most its TCP_QUEUE_SIZE of messages unacked in
// flight, so the server's echoes of them (acked by the client's next
// messages) fit in the server's larger queue: the server always has room to
// echo, pops every message, and keeps reading. The C++ server's receive
// buffer then never fills. A client queue larger than what the server can
// hold (64 KiB against the C++ server's 3000-byte queue and 2000-byte buffer,
// as these examples had) lets the server fill its queue with echoes, stop
// popping and stop reading, while the client's acks wait in the socket
// behind its own backlog: the stream stops for good.
/// The largest frame of the pair: a header and four numbers.
const MAX_FRAME: usize = 8 + 4 * 4;
// Room for the client's window, the echo being made, and a frame's worth a
// wrapping queue may leave unused at its end.
const _: () = assert!(EchoClientConf::TCP_QUEUE_SIZE + 2 * MAX_FRAME <= EchoServerConf::TCP_QUEUE_SIZE);
const _: () = assert!(EchoClientConf::TCP_QUEUE_SIZE <= EchoServerConf::TCP_RECV_BUF_MAX_SIZE);

/// The server's handler: echoes every message back.
#[derive(Default)]
pub struct EchoServerHandler {
    pub quiet: bool,
}

impl<C: ServerConf> ServerHandler<C> for EchoServerHandler {
    fn on_client_logon(&mut self, peer: std::net::SocketAddr, conn: &mut Connection<C>) {
        if !self.quiet {
            println!("client logon from {peer}, name: {}", conn.remote_name());
        }
    }

    fn on_client_disconnected(&mut self, conn: &mut Connection<C>, reason: CloseReason, errno: i32) {
        if !self.quiet {
            println!("client disconnected, name: {} reason: {reason} errno: {errno}", conn.remote_name());
        }
    }

    fn on_seq_number_mismatch(&mut self, conn: &Connection<C>, m: &tcpshm::SeqMismatch) {
        println!("client seq number mismatch, name: {} {m}", conn.remote_name());
    }

    fn on_client_file_error(&mut self, conn: &Connection<C>, error: &tcpshm::Error) {
        println!("client file error, name: {} {error}", conn.remote_name());
    }

    #[inline]
    fn on_client_msg(&mut self, conn: &mut Connection<C>, msg: Msg<'_>) {
        // Not popped when the queue is full: delivered again next poll.
        let Some(mut slot) = conn.alloc(msg.body().len()) else { return };
        slot.copy_from_slice(msg.body());
        // Pop, then push: the echo carries the new ack, and the library
        // stores the echo and the pop as one, so a crash can neither lose
        // nor duplicate it.
        slot.pop_received();
        slot.push(msg.msg_type());
    }
}

/// How often the parts that carry no messages are polled: a server's control
/// part (accepting, logins, shm heartbeat sockets, disconnect reports) and an
/// shm client's socket half (heartbeats, disconnects). Every call of either
/// makes system calls (an `accept(2)` on an empty non-blocking socket alone
/// takes ~6 µs on a small VM), so a loop that also serves messages calls
/// them on this timer, not on every turn, or every round trip pays for
/// them. A millisecond keeps logins and disconnect reports prompt and is far
/// inside the heartbeat interval (3 s).
pub const CTL_INTERVAL_NS: i64 = 1_000_000;

/// Busy polls between two reads of the clock: the clock only serves the
/// timers (heartbeats, the control timer), which need no finer grain.
const POLLS_PER_TICK: u32 = 64;

/// How the echo pair spreads its polling over threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// Server: one thread busy-polls every group and the control part on a
    /// timer. Client: in shm mode, one thread polls the shm queue and the
    /// socket half on a timer.
    One,
    /// Server: a busy-polling thread per group, and the control part on a
    /// thread that sleeps between polls. Client: in shm mode, the socket half
    /// on a thread of its own that sleeps between polls (the C++ pair's
    /// model, except that there the control and socket threads spin too).
    PerPart,
}

impl Threads {
    /// `PerPart` when the machine has a CPU for each of a server's group
    /// threads plus `others` busy-polling threads (its clients on this host),
    /// else `One`. With more spinning threads than CPUs, threads take turns
    /// on a CPU and a round trip waits for a time slice: hundreds of µs where
    /// the library takes a few.
    pub fn for_machine<C: ServerConf>(others: usize) -> Threads {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus >= C::MAX_TCP_GRPS + C::MAX_SHM_GRPS + others {
            Threads::PerPart
        } else {
            Threads::One
        }
    }

    /// The value of a `--threads one|per-part` flag, if given.
    pub fn from_args(args: &Args) -> Option<Threads> {
        let v: String = args.opt("--threads")?;
        match v.as_str() {
            "one" => Some(Threads::One),
            "per-part" => Some(Threads::PerPart),
            _ => {
                eprintln!("bad value for --threads: {v} (one or per-part)");
                std::process::exit(2)
            }
        }
    }
}

/// How to serve: the thread model, the CPUs to pin the busy-polling threads
/// to, and whether to print connection events.
pub struct ServerRun {
    pub threads: Threads,
    /// In order: the one thread, or each TCP group's then each shm group's
    /// thread. A thread beyond the list is not pinned.
    pub cpus: Vec<usize>,
    pub quiet: bool,
}

impl ServerRun {
    /// One line saying how the server runs, for the examples to print.
    pub fn describe<C: ServerConf>(&self) -> String {
        let pins = |cpus: &[usize]| match cpus {
            [] => "not pinned".to_string(),
            [cpu] => format!("pinned to CPU {cpu}"),
            cpus => format!("pinned to CPUs {cpus:?}"),
        };
        let ms = CTL_INTERVAL_NS as f64 / 1e6;
        match self.threads {
            Threads::One => format!(
                "server on one thread (busy-polls its groups, control every {ms} ms), {}",
                pins(&self.cpus[..self.cpus.len().min(1)])
            ),
            Threads::PerPart => {
                let groups = C::MAX_TCP_GRPS + C::MAX_SHM_GRPS;
                format!(
                    "server on a thread per group ({} TCP, {} shm; busy-polling, {}) and a control thread \
                     (every {ms} ms, sleeping between)",
                    C::MAX_TCP_GRPS,
                    C::MAX_SHM_GRPS,
                    pins(&self.cpus[..self.cpus.len().min(groups)])
                )
            }
        }
    }
}

/// Serves a started server until `stop` is set, as `run` says.
pub fn run_server<C: ServerConf>(server: TcpShmServer<C>, stop: &AtomicBool, run: &ServerRun) {
    match run.threads {
        Threads::One => serve_on_one_thread(server, stop, run),
        Threads::PerPart => serve_per_part(server, stop, run),
    }
}

fn serve_on_one_thread<C: ServerConf>(mut server: TcpShmServer<C>, stop: &AtomicBool, run: &ServerRun) {
    pin(run.cpus.first().copied());
    let mut h = EchoServerHandler { quiet: run.quiet };
    let mut last_ctl = now_ns() - CTL_INTERVAL_NS;
    while !stop.load(Ordering::Relaxed) {
        let now = now_ns();
        if now - last_ctl >= CTL_INTERVAL_NS {
            server.poll_ctl(now, &mut h);
            last_ctl = now;
        }
        for _ in 0..POLLS_PER_TICK {
            for g in 0..C::MAX_TCP_GRPS {
                server.poll_tcp(now, g, &mut h);
            }
            for g in 0..C::MAX_SHM_GRPS {
                server.poll_shm(g, &mut h);
            }
        }
    }
}

fn serve_per_part<C: ServerConf>(server: TcpShmServer<C>, stop: &AtomicBool, run: &ServerRun) {
    let (mut ctl, tcp, shm) = server.into_parts();
    let tcp_groups = tcp.len();
    let quiet = run.quiet;
    std::thread::scope(|s| {
        for (i, mut g) in tcp.into_iter().enumerate() {
            let cpu = run.cpus.get(i).copied();
            s.spawn(move || {
                pin(cpu);
                let mut h = EchoServerHandler { quiet };
                while !stop.load(Ordering::Relaxed) {
                    g.poll(now_ns(), &mut h);
                }
            });
        }
        for (i, mut g) in shm.into_iter().enumerate() {
            let cpu = run.cpus.get(tcp_groups + i).copied();
            s.spawn(move || {
                pin(cpu);
                let mut h = EchoServerHandler { quiet };
                while !stop.load(Ordering::Relaxed) {
                    g.poll(&mut h);
                }
            });
        }
        // The control part moves no messages: sleeping between its polls
        // leaves the CPUs to the groups.
        let mut h = EchoServerHandler { quiet };
        while !stop.load(Ordering::Relaxed) {
            ctl.poll(now_ns(), &mut h);
            std::thread::sleep(Duration::from_nanos(CTL_INTERVAL_NS as u64));
        }
    });
}

/// Removes the shared-memory objects of a client/server pair.
pub fn remove_shm(client: &str, server: &str) {
    let _ = std::fs::remove_file(tcpshm::shm::shm_path(client, server));
    let _ = std::fs::remove_file(tcpshm::shm::shm_path(server, client));
}

/// The client's counters, memory-mapped so they survive a crash.
pub struct Counters {
    map: MmapMut,
}

impl Counters {
    /// Maps `<dir>/<client>_<server>.echo_counts`, creating it zeroed.
    pub fn open(dir: &Path, client: &str, server: &str) -> std::io::Result<Self> {
        let path = dir.join(format!("{client}_{server}.echo_counts"));
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        file.set_len(32)?;
        // SAFETY: the file is this client's own and sized above; a concurrent
        // truncation by another process is outside the example's contract.
        let map = unsafe { MmapMut::map_mut(&file)? };
        Ok(Counters { map })
    }

    /// sent, received, sent before the pending push, push mark before it + 1 (0: none).
    fn cells(&mut self) -> &mut [u64; 4] {
        <[u64; 4]>::mut_from_bytes(&mut self.map[..]).expect("32 page-aligned bytes")
    }

    /// Numbers sent so far.
    pub fn sent(&mut self) -> u64 {
        self.cells()[0]
    }

    /// Numbers received back so far.
    pub fn received(&mut self) -> u64 {
        self.cells()[1]
    }
}

/// A seed for the client's choice of message sizes that differs on every
/// run: 8 bytes of `/dev/urandom`, or, failing that, the wall clock's
/// nanoseconds mixed with the pid. Never 0, the xorshift's fixed point.
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let seed = match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => u64::from_ne_bytes(bytes),
        Err(_) => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            // splitmix64's finaliser: nearby times and pids give unrelated seeds.
            let mut z = (t.as_nanos() as u64 ^ (std::process::id() as u64) << 32).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    };
    seed.max(1)
}

/// The client's handler and sending logic.
pub struct EchoClient {
    pub counters: Counters,
    /// Numbers to send in all (across restarts).
    pub count: u64,
    /// Stream instead of waiting for each echo.
    pub stream: bool,
    /// The first wrong number, if any.
    pub error: Option<String>,
    /// Echoed messages this run, for the average round trip.
    pub echoes: u64,
    rng: u64,
    /// Why each link went down.
    pub disconnects: Vec<CloseReason>,
    pub stop_after: Option<u64>,
    /// The last message counted before a crash may come once more.
    may_repeat: bool,
}

impl EchoClient {
    pub fn new(counters: Counters, count: u64, stream: bool) -> Self {
        let rng = random_seed();
        EchoClient {
            counters,
            count,
            stream,
            error: None,
            echoes: 0,
            rng,
            disconnects: Vec::new(),
            stop_after: None,
            may_repeat: true,
        }
    }

    /// All numbers sent and echoed (or `stop_after` of them).
    pub fn done(&mut self) -> bool {
        self.counters.received() >= self.stop_after.unwrap_or(self.count).min(self.count)
    }

    /// After a (re)connect: settles a push that a crash may have cut short.
    pub fn recover<C: Conf>(&mut self, conn: &Connection<C>) {
        let cells = self.counters.cells();
        if cells[3] != 0 {
            if conn.push_mark() + 1 == cells[3] {
                cells[0] = cells[2]; // the push did not happen
            }
            cells[3] = 0;
        }
    }

    /// Sends the next message if it is time (ping-pong waits for the echo).
    #[inline]
    pub fn send_next<C: Conf>(&mut self, conn: &mut Connection<C>) {
        let sent = self.counters.sent();
        if sent >= self.count || (!self.stream && sent != self.counters.received()) {
            return;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let n = (1 + self.rng % 4).min(self.count - sent);
        let mark = conn.push_mark();
        let Some(mut slot) = conn.alloc(n as usize * 4) else { return };
        for (i, chunk) in slot.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&((sent + i as u64) as i32).to_le_bytes());
        }
        let cells = self.counters.cells();
        (cells[2], cells[3]) = (sent, mark + 1);
        cells[0] = sent + n;
        slot.push(n as u16);
        cells[3] = 0;
    }
}

impl<C: Conf> ClientHandler<C> for EchoClient {
    #[inline]
    fn on_server_msg(&mut self, conn: &mut Connection<C>, msg: Msg<'_>) {
        let body = msg.body();
        let n = msg.msg_type() as usize;
        if !(1..=4).contains(&n) || body.len() != n * 4 {
            self.error = Some(format!("bad message: type {} size {}", msg.msg_type(), body.len()));
            conn.close();
            return;
        }
        if self.done() {
            return; // stopping early: left unpopped, delivered again after a restart
        }
        let cells = self.counters.cells();
        let first = i32::from_le_bytes(body[..4].try_into().unwrap_or_default()) as u32 as u64;
        if std::mem::take(&mut self.may_repeat) && first + n as u64 == cells[1] & 0xffff_ffff {
            // Counted just before a crash, popped never: it comes again.
            conn.pop();
            return;
        }
        let expected = cells[1];
        for (i, chunk) in body.chunks_exact(4).enumerate() {
            let v = i32::from_le_bytes(chunk.try_into().unwrap_or_default()) as u32 as u64;
            if v != (expected + i as u64) & 0xffff_ffff {
                self.error = Some(format!("bad: v: {v} recv_num: {}", expected + i as u64));
                conn.close();
                return;
            }
        }
        // One store: a crash leaves the message counted or not, never half.
        cells[1] = expected + n as u64;
        self.echoes += 1;
        conn.pop();
    }

    fn on_disconnected(&mut self, reason: CloseReason, _errno: i32) {
        self.disconnects.push(reason);
    }
}

/// How a client run ended.
pub struct ClientReport {
    pub sent: u64,
    pub received: u64,
    pub echoes: u64,
    pub elapsed: Duration,
    /// Why each link of the run went down.
    pub disconnects: Vec<CloseReason>,
}

impl ClientReport {
    /// Average round trip in ns (meaningful in ping-pong mode).
    pub fn avg_rtt_ns(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.echoes.max(1) as f64
    }
}

/// Options of a client run.
pub struct ClientOpts<'a> {
    pub name: &'a str,
    pub server_name: &'a str,
    pub ptcp_dir: &'a Path,
    pub addr: &'a str,
    pub use_shm: bool,
    pub count: u64,
    pub stream: bool,
    /// The CPU of the thread that busy-polls the messages.
    pub pin: Option<usize>,
    /// In shm mode: the socket half on a thread of its own, or on a timer in
    /// the shm thread.
    pub threads: Threads,
    /// Print a progress line every second.
    pub progress: bool,
    /// Give up after this long.
    pub deadline: Duration,
    /// Stop early (messages still in flight) once this many numbers came back.
    pub stop_after: Option<u64>,
    /// Connect again when the link drops, until done or the deadline.
    pub reconnect: bool,
}

impl<'a> ClientOpts<'a> {
    /// Ping-pong over TCP of 1,000,000 numbers within a minute, quietly.
    pub fn new(name: &'a str, server_name: &'a str, ptcp_dir: &'a Path, addr: &'a str) -> Self {
        ClientOpts {
            name,
            server_name,
            ptcp_dir,
            addr,
            use_shm: false,
            count: 1_000_000,
            stream: false,
            pin: None,
            threads: Threads::One,
            progress: false,
            deadline: Duration::from_secs(60),
            stop_after: None,
            reconnect: false,
        }
    }
}

/// Runs the echo until every number came back (or `stop_after` of them),
/// the link drops (unless `reconnect`), or the deadline passes. Connecting
/// is retried until the deadline.
pub fn run_client<C: Conf<LoginUserData = u8>>(o: &ClientOpts) -> Result<ClientReport, String> {
    let start = Instant::now();
    let mut client = TcpShmClient::<C>::new(o.name, o.ptcp_dir).map_err(|e| e.to_string())?;
    let counters = Counters::open(o.ptcp_dir, o.name, o.server_name).map_err(|e| e.to_string())?;
    let mut echo = EchoClient::new(counters, o.count, o.stream);
    echo.stop_after = o.stop_after;
    let mut elapsed = Duration::ZERO;
    loop {
        loop {
            match client.connect(o.use_shm, o.addr, 0, &mut echo) {
                Ok(()) => break,
                Err(e) if start.elapsed() < o.deadline => {
                    if o.progress {
                        println!("connect: {e}; retrying");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("connect: {e}")),
            }
        }
        echo.recover(client.connection());
        if o.progress {
            println!("client started, send_num: {} recv_num: {}", echo.counters.sent(), echo.counters.received());
        }
        let begin = Instant::now();
        let before = echo.disconnects.len();
        run_session(&mut client, &mut echo, o, start);
        elapsed += begin.elapsed();
        client.stop();
        if o.progress {
            // Only this session's: a session that ended by finishing has none.
            for reason in &echo.disconnects[before..] {
                println!("disconnected: {reason}");
            }
        }
        if !o.reconnect || echo.done() || echo.error.is_some() || start.elapsed() >= o.deadline {
            break;
        }
    }
    if let Some(e) = echo.error.take() {
        return Err(e);
    }
    let (sent, received) = (echo.counters.sent(), echo.counters.received());
    Ok(ClientReport { sent, received, echoes: echo.echoes, elapsed, disconnects: echo.disconnects })
}

/// One logged-in session: sends and checks until done, an error, the link
/// drops, or the deadline passes.
fn run_session<C: Conf>(client: &mut TcpShmClient<C>, echo: &mut EchoClient, o: &ClientOpts, start: Instant) {
    let mut last_print = Instant::now();
    let mut tick = |echo: &mut EchoClient| {
        if o.progress && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            println!("sent {} received {}", echo.counters.sent(), echo.counters.received());
        }
        start.elapsed() < o.deadline
    };
    if !o.use_shm {
        pin(o.pin);
        let mut n = 0u32;
        while !echo.done() && echo.error.is_none() && !client.connection().is_closed() {
            echo.send_next(client.connection());
            client.poll_tcp(now_ns(), echo);
            n = n.wrapping_add(1);
            if n.is_multiple_of(1024) && !tick(echo) {
                break;
            }
        }
        return;
    }
    let (mut tcp, mut shm) = client.split();
    // The socket half reports the disconnect; the shm half checks the numbers.
    let mut link_events = Vec::new();
    if o.threads == Threads::One {
        pin(o.pin);
        let mut h = LinkEvents(&mut link_events);
        let mut last_tcp = now_ns();
        let mut n = 0u32;
        while !echo.done() && echo.error.is_none() {
            if let Some(conn) = shm.connection() {
                echo.send_next(conn);
            }
            shm.poll(echo);
            n = n.wrapping_add(1);
            if n.is_multiple_of(POLLS_PER_TICK) {
                let now = now_ns();
                if now - last_tcp >= CTL_INTERVAL_NS {
                    tcp.poll(now, &mut h);
                    last_tcp = now;
                    if tcp.is_closed() {
                        break;
                    }
                }
                if n.is_multiple_of(1024) && !tick(echo) {
                    break;
                }
            }
        }
    } else {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let stop = &stop;
            let link_events = &mut link_events;
            s.spawn(move || {
                let mut h = LinkEvents(link_events);
                while !stop.load(Ordering::Relaxed) && !tcp.is_closed() {
                    tcp.poll(now_ns(), &mut h);
                    // Heartbeats and disconnects only: no need to spin.
                    std::thread::sleep(Duration::from_nanos(CTL_INTERVAL_NS as u64));
                }
                stop.store(true, Ordering::Relaxed);
            });
            pin(o.pin);
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && !echo.done() && echo.error.is_none() {
                if let Some(conn) = shm.connection() {
                    echo.send_next(conn);
                }
                shm.poll(echo);
                n = n.wrapping_add(1);
                if n.is_multiple_of(1024) && !tick(echo) {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    echo.disconnects.extend(link_events);
}

/// The TCP half's handler in shm mode: only disconnects reach it.
struct LinkEvents<'a>(&'a mut Vec<CloseReason>);

impl<C: Conf> ClientHandler<C> for LinkEvents<'_> {
    fn on_server_msg(&mut self, _conn: &mut Connection<C>, _msg: Msg<'_>) {}

    fn on_disconnected(&mut self, reason: CloseReason, _errno: i32) {
        self.0.push(reason);
    }
}
