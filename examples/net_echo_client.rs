//! The `net` layer's echo client: `--conns N` connections, each
//! ping-ponging `--count` packets of `--size` bytes, then the round-trip
//! percentiles and the echo rate.
//!
//! `cargo run --release --example net_echo_client -- [--addr 127.0.0.1:12346]
//!  [--conns 1] [--count 10000] [--size 64] [--local] [--busy]`
//!
//! `--local` runs the echo server on a thread of this process, so one
//! command shows the pair at work. `--busy` spins instead of sleeping in
//! epoll (both ends, with `--local`). Exits 1 if any connection failed.

#[path = "common/args.rs"]
mod args;
#[path = "common/net_echo.rs"]
mod net_echo;

use std::net::SocketAddr;

use net_echo::{EchoClient, EchoServer};
use tcpshm::net::{Behaviour, ConnectOptions, EventLoop, ListenOptions, Target};

/// Starts an echo server on a thread; returns its address.
fn local_server(busy: bool) -> std::io::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let serve = || -> std::io::Result<()> {
            let mut el = EventLoop::new()?;
            el.set_busy_poll(busy);
            let echo = el.add_behaviour(Behaviour::new(EchoServer::default()).codec(net_echo::codec()));
            let l = el.ctx().listen(echo, "127.0.0.1:0".parse().expect("an address"), ListenOptions::default())?;
            let _ = tx.send(Ok(el.ctx().listener_addr(l).expect("a TCP listener")));
            el.run()
        };
        if let Err(e) = serve() {
            let _ = tx.send(Err(e));
        }
    });
    rx.recv().map_err(|_| std::io::Error::other("the local server thread ended"))?
}

fn main() -> std::io::Result<()> {
    let args = args::Args::from_env();
    let addr: SocketAddr = match args.flag("--local") {
        true => local_server(args.flag("--busy"))?,
        false => args.value("--addr", "127.0.0.1:12346".parse().expect("an address")),
    };
    let conns: usize = args.value("--conns", 1);
    let count: u64 = args.value("--count", 10_000);
    let size: usize = args.value("--size", 64);
    let mut el = EventLoop::new()?;
    el.set_busy_poll(args.flag("--busy"));
    let client = el.add_behaviour(Behaviour::new(EchoClient::new(conns, count, size)).codec(net_echo::codec()));
    for _ in 0..conns {
        el.ctx().connect(client, Target::Addr(addr), ConnectOptions::default()).unwrap();
    }
    el.run()?;
    let c = el.handler_mut::<EchoClient>(client).expect("the client handler");
    let h = &c.rtt_ns;
    println!(
        "{conns} connections x {count} echoes of {} B: {:.0} echoes/s; rtt ns avg {:.0} p50 {} p99 {} p99.9 {} max {}",
        c.size,
        c.rate(),
        h.mean(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
    for f in c.failed.iter().take(5) {
        println!("failed: {f}");
    }
    std::process::exit(if c.failed.is_empty() { 0 } else { 1 });
}
