//! The echo server of the C++ tcpshm test pair: echoes every message back.
//!
//! `cargo run --release --example echo_server -- [--name server] [--dir ptcp_data]
//!  [--addr 127.0.0.1:12345] [--threads one|per-part] [--pin CPU] [--quiet]`;
//! stops on SIGINT or SIGTERM. Kill it with SIGKILL and start it again:
//! clients resume where they were.
//!
//! Unless told, it polls everything on one thread when the machine lacks a
//! CPU for each group's thread plus a client on this host, else a thread per
//! group; `--pin CPU` pins its busy-polling threads to CPU and the next ones.

#[path = "common/echo.rs"]
mod echo;

use std::sync::atomic::{AtomicBool, Ordering};

use echo::{Args, EchoServerConf, ServerRun, Threads};
use tcpshm::ServerConf;
use tcpshm::TcpShmServer;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() {
    let args = Args::from_env();
    let name: String = args.value("--name", "server".to_string());
    let dir: String = args.value("--dir", "ptcp_data".to_string());
    let addr: String = args.value("--addr", "127.0.0.1:12345".to_string());
    let quiet = args.flag("--quiet");
    for sig in [nix::sys::signal::Signal::SIGINT, nix::sys::signal::Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::Handler(on_signal)) };
    }
    let mut server = match TcpShmServer::<EchoServerConf>::new(&name, &dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("server: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = server.start(addr.as_str()) {
        eprintln!("server start: {e}");
        std::process::exit(1);
    }
    // A client on this host busy-polls too.
    let threads = Threads::from_args(&args).unwrap_or_else(|| Threads::for_machine::<EchoServerConf>(1));
    let spinning = match threads {
        Threads::One => 1,
        Threads::PerPart => EchoServerConf::MAX_TCP_GRPS + EchoServerConf::MAX_SHM_GRPS,
    };
    let cpus = args.opt::<usize>("--pin").map(|cpu| (cpu..cpu + spinning).collect()).unwrap_or_default();
    let run = ServerRun { threads, cpus, quiet };
    println!("server {name} listening on {}", server.local_addr().map(|a| a.to_string()).unwrap_or_default());
    println!("{}", run.describe::<EchoServerConf>());
    echo::run_server(server, &STOP, &run);
    println!("server stopped");
}
