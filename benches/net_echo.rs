//! Echo throughput and latency of the `net` session layer against a tokio
//! echo server, in the same run, and user-space memory per idle connection.
//!
//! ```text
//! cargo bench --bench net_echo -- [--quick] [--turns 3] [--conns N] [--size N]
//! ```
//!
//! Each server runs single-threaded in a child process (this binary with
//! `--serve ours|tokio`); the load comes from this process: the `net` echo
//! client on one thread, one packet in flight per connection (4-byte
//! big-endian length prefix), for 1, 100 and 10,000 connections and 64 B and
//! 4 KiB packets. Both servers sleep in epoll between events (ours without
//! busy polling). Memory: the server's RSS before and after 10,000
//! connections that have exchanged one packet and then sit idle.

#[path = "../examples/common/args.rs"]
mod args;
#[path = "../examples/common/net_echo.rs"]
mod net_echo;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use hdrhistogram::Histogram;
use net_echo::{EchoClient, EchoServer};
use tcpshm::net::{Behaviour, ConnectOptions, EventLoop, ListenOptions, Target};

/// Turns each server takes per case, unless `--turns N` says otherwise.
const TURNS: u64 = 3;
/// Connections per case, and the idle-memory count.
const CONNS: [usize; 3] = [1, 100, 10_000];
const SIZES: [usize; 2] = [64, 4096];

fn main() {
    let args = args::Args::from_env();
    if let Some(kind) = args.opt::<String>("--serve") {
        return serve(&kind);
    }
    let quick = args.flag("--quick") || std::env::var_os("TCPSHM_BENCH_QUICK").is_some();
    let turns = args.value("--turns", TURNS).max(1);
    // `--conns N` / `--size N`: only the cases with that count or size.
    let only_conns: Option<usize> = args.opt("--conns");
    let only_size: Option<usize> = args.opt("--size");
    let mut conns = raise_fd_limit(&CONNS);
    if quick {
        // CI's smoke run: a burst of 10,000 connects to one server had
        // connections reset before their first echo about half the time on
        // the 2-core VM (seen 2026-11-29, cause not yet found: see issue 14's
        // notes). The full run keeps the case and the idle memory of 10,000.
        conns.retain(|&n| n <= 1_000);
    }
    let total: u64 = if quick { 1_000 } else { 10_000 * turns };
    let mode = if quick { " (quick)" } else { "" };
    println!("net echo bench{mode}: {total} echoes per case in {turns} turns per server, one packet in flight per connection");
    println!(
        "{:<10} {:>6} {:>6} {:>12} {:>10} {:>10} {:>8} {:>12}",
        "server", "conns", "size", "echoes/s", "p50 ns", "p99 ns", "ratio", "turns"
    );
    let servers = [Server::start("ours"), Server::start("tokio")];
    // Warm both servers (and this process) up before the first figure.
    for s in &servers {
        load(s.addr, 10, 20, 64);
    }
    for &size in SIZES.iter().filter(|&&s| only_size.is_none_or(|o| o == s)) {
        for &n in conns.iter().filter(|&&n| only_conns.is_none_or(|o| o == n)) {
            let count = (total / turns / n as u64).max(3);
            let mut results: Vec<Load> = servers.iter().map(|_| Load::default()).collect();
            let mut ratios = Vec::new();
            // The servers take turns, so both see the same moments of a noisy VM.
            for _ in 0..turns {
                let rates: Vec<f64> = servers
                    .iter()
                    .zip(&mut results)
                    .map(|(s, r)| {
                        let turn = load(s.addr, n, count, size);
                        let rate = turn.rate();
                        r.add(turn);
                        rate
                    })
                    .collect();
                ratios.push(rates[0] / rates[1]);
            }
            ratios.sort_by(f64::total_cmp);
            for (s, r) in servers.iter().zip(&results) {
                let (ratio, spread) = if s.name == "ours" {
                    let spread = format!("{:.2}-{:.2}", ratios[0], ratios[ratios.len() - 1]);
                    (format!("{:.2}", ratios[ratios.len() / 2]), spread)
                } else {
                    Default::default()
                };
                let (p50, p99) = (r.rtt_ns.value_at_quantile(0.5), r.rtt_ns.value_at_quantile(0.99));
                println!(
                    "{:<10} {:>6} {:>6} {:>12.0} {:>10} {:>10} {:>8} {:>12}",
                    s.name,
                    n,
                    size,
                    r.rate(),
                    p50,
                    p99,
                    ratio,
                    spread
                );
            }
        }
    }
    println!("(ratio: the median over turns of ours / tokio echoes per second; turns: their range)");
    if only_conns.is_some() || only_size.is_some() {
        return;
    }
    let idle = *conns.last().expect("a connection count");
    println!("\nuser-space memory per idle connection ({idle} connections, server RSS delta / connections):");
    drop(servers);
    for name in ["ours", "tokio"] {
        // A fresh process: the load above left its allocations behind.
        let s = Server::start(name);
        let before = s.rss_kib();
        let _idle = open_idle(s.addr, idle);
        let after = s.rss_kib();
        println!("{:<10} {:>8.0} bytes", s.name, (after.saturating_sub(before) * 1024) as f64 / idle as f64);
    }
}

/// A server child process.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(name: &'static str) -> Server {
        let exe = std::env::current_exe().expect("this binary");
        let mut child = Command::new(exe)
            .args(["--serve", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped")).read_line(&mut line).expect("the server's address");
        let addr = line.trim().parse().unwrap_or_else(|_| panic!("the {name} server said {line:?}"));
        Server { name, child, addr }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing its stdin ends it.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Echoes, time and round trips of one or more turns.
struct Load {
    echoes: u64,
    secs: f64,
    rtt_ns: Histogram<u64>,
}

impl Default for Load {
    fn default() -> Self {
        Load { echoes: 0, secs: 0.0, rtt_ns: Histogram::new(3).expect("3 significant figures") }
    }
}

impl Load {
    fn add(&mut self, other: Load) {
        self.echoes += other.echoes;
        self.secs += other.secs;
        self.rtt_ns.add(&other.rtt_ns).expect("same histogram bounds");
    }

    fn rate(&self) -> f64 {
        self.echoes as f64 / self.secs.max(1e-9)
    }
}

/// `conns` connections to `addr`, each ping-ponging `count` packets of `size`.
fn load(addr: SocketAddr, conns: usize, count: u64, size: usize) -> Load {
    let (mut el, client) = connect(addr, conns, count, size, false);
    el.run().expect("client loop");
    let c = el.handler_mut::<EchoClient>(client).expect("client");
    assert!(c.failed.is_empty(), "client failures: {:?}", &c.failed[..c.failed.len().min(3)]);
    let secs = c.echo_secs();
    Load { echoes: c.rtt_ns.len(), secs, rtt_ns: c.rtt_ns.clone() }
}

fn connect(
    addr: SocketAddr,
    conns: usize,
    count: u64,
    size: usize,
    keep_open: bool,
) -> (EventLoop, tcpshm::net::BehaviourId) {
    let mut el = EventLoop::new().expect("client loop");
    let mut handler = EchoClient::new(conns, count, size);
    handler.keep_open = keep_open;
    let client = el.add_behaviour(Behaviour::new(handler).codec(net_echo::codec()));
    for _ in 0..conns {
        el.ctx().connect(client, Target::Addr(addr), ConnectOptions::default()).unwrap();
    }
    (el, client)
}

/// `conns` connections that exchanged one packet each and now sit idle
/// (returned open).
fn open_idle(addr: SocketAddr, conns: usize) -> EventLoop {
    let (mut el, _) = connect(addr, conns, 1, 64, true);
    el.run().expect("client loop");
    el
}

/// Raises the descriptor limit for the largest case (both this process and
/// the servers it starts need one per connection); returns the connection
/// counts that fit.
fn raise_fd_limit(conns: &[usize]) -> Vec<usize> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    let fits = hard.saturating_sub(64) as usize;
    conns
        .iter()
        .map(|&n| {
            if n > fits {
                println!("descriptor limit {hard}: {fits} connections instead of {n}");
            }
            n.min(fits)
        })
        .collect()
}

/// The child: serves echo on loopback with `kind`, prints the address,
/// and exits when its stdin closes.
fn serve(kind: &str) {
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    match kind {
        "tokio" => tokio_server::serve(any),
        _ => {
            let mut el = EventLoop::new().expect("server loop");
            let echo = el.add_behaviour(Behaviour::new(EchoServer::default()).codec(net_echo::codec()));
            let l = el.ctx().listen(echo, any, ListenOptions::default()).expect("listen");
            announce(el.ctx().listener_addr(l).expect("a TCP listener"));
            el.run().expect("server loop");
        }
    }
}

fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout();
    writeln!(out, "{addr}").and_then(|_| out.flush()).expect("tell the parent the address");
}

/// The baseline: an echo server of the same framing written the usual tokio
/// way, on a current-thread runtime (one thread, as ours).
mod tokio_server {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    pub fn serve(addr: SocketAddr) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime");
        rt.block_on(async {
            let listener = TcpListener::bind(addr).await.expect("listen");
            super::announce(listener.local_addr().expect("address"));
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(echo(stream));
            }
        });
    }

    /// Reads what arrives and writes back every complete frame. The buffer
    /// is let go whenever it empties, so an idle connection holds none (as
    /// ours holds none).
    async fn echo(mut stream: TcpStream) {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            buf.reserve(4096);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let mut end = 0;
            while let Some(len) = buf.get(end..end + 4).map(|h| u32::from_be_bytes(h.try_into().expect("4")) as usize) {
                if buf.len() < end + 4 + len {
                    break;
                }
                end += 4 + len;
            }
            if end > 0 {
                if stream.write_all(&buf[..end]).await.is_err() {
                    return;
                }
                buf.drain(..end);
            }
            if buf.is_empty() {
                buf = Vec::new();
            }
        }
    }
}
