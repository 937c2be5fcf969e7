//! The `net` layer's echo server: 4-byte length-prefixed packets, echoed.
//!
//! `cargo run --release --example net_echo_server -- [--addr 127.0.0.1:12346] [--busy]`
//!
//! Runs until SIGINT or SIGTERM, then closes every session and prints how
//! many packets it echoed.

#[path = "common/args.rs"]
mod args;
#[path = "common/net_echo.rs"]
mod net_echo;

use std::net::SocketAddr;

use net_echo::EchoServer;
use tcpshm::net::{Behaviour, EventLoop, ListenOptions};

fn main() -> std::io::Result<()> {
    let args = args::Args::from_env();
    let addr: SocketAddr = args.value("--addr", "127.0.0.1:12346".parse().expect("an address"));
    let mut el = EventLoop::new()?;
    el.set_busy_poll(args.flag("--busy"));
    let echo = el.add_behaviour(Behaviour::new(EchoServer::default()).codec(net_echo::codec()));
    let listener = el.ctx().listen(echo, addr, ListenOptions::default())?;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        el.on_signal(signal, |cx, _| cx.stop())?;
    }
    println!("echoing on {}", el.ctx().listener_addr(listener).expect("a TCP listener"));
    el.run()?;
    el.close_all();
    let h = el.handler_mut::<EchoServer>(echo).expect("the echo handler");
    println!("stopped: {} packets echoed", h.packets);
    Ok(())
}
