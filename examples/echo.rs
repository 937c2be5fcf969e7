//! The echo pair end to end on defaults: a server and a client in one
//! process, first over TCP and then over shared memory, each in a temporary
//! ptcp dir. Prints both average round trips; exits 0 only when every number
//! came back.
//!
//! `cargo run --release --example echo -- [--count N] [--stream] [--pin CPU]`

#[path = "common/echo.rs"]
mod echo;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use echo::{Args, ClientOpts, EchoClientConf, EchoServerConf};
use tcpshm::TcpShmServer;

fn run(use_shm: bool, count: u64, stream: bool, pin: Option<usize>) -> Result<f64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tag = std::process::id() % 100_000;
    let server_name = format!("srv{tag}");
    let client_name = format!("cli{tag}{}", if use_shm { "s" } else { "t" });
    let mut server = TcpShmServer::<EchoServerConf>::new(&server_name, dir.path()).map_err(|e| e.to_string())?;
    server.start("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = server.local_addr().ok_or("no address")?.to_string();
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| echo::run_server(server, &stop, pin.map(|c| c + 1), true));
        let opts = ClientOpts {
            use_shm,
            count,
            stream,
            pin,
            deadline: Duration::from_secs(600),
            ..ClientOpts::new(&client_name, &server_name, dir.path(), &addr)
        };
        let r = echo::run_client::<EchoClientConf>(&opts);
        stop.store(true, Ordering::Relaxed);
        r
    });
    echo::remove_shm(&client_name, &server_name);
    let r = result?;
    if r.received != count {
        return Err(format!("only {} of {count} numbers came back", r.received));
    }
    Ok(r.avg_rtt_ns())
}

fn main() {
    let args = Args::from_env();
    let count: u64 = args.value("--count", 200_000);
    let stream = args.flag("--stream");
    let pin = args.opt("--pin");
    let mut ok = true;
    for (mode, use_shm) in [("tcp", false), ("shm", true)] {
        match run(use_shm, count, stream, pin) {
            Ok(rtt) => println!("{mode}: {count} numbers echoed, avg round trip {rtt:.0} ns"),
            Err(e) => {
                println!("{mode}: FAILED: {e}");
                ok = false;
            }
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}
