//! The echo pair end to end on defaults: a server and a client in one
//! process, first over TCP and then over shared memory, each in a temporary
//! ptcp dir. Prints how it placed its threads and both average round trips;
//! exits 0 only when every number came back.
//!
//! `cargo run --release --example echo -- [--count N] [--stream]
//!  [--threads one|per-part] [--pin CPU | --no-pin]`
//!
//! Every thread that busy-polls wants a CPU of its own: with fewer CPUs than
//! such threads they take turns, and a round trip waits for a time slice.
//! So unless told otherwise it runs the server on one thread when the
//! machine lacks a CPU for each server group plus the client, and pins the
//! client and the server threads to CPUs of their own when there are enough
//! (`--pin CPU`: the client on CPU, the server's threads on the next ones).

#[path = "common/echo.rs"]
mod echo;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use echo::{allowed_cpus, Args, ClientOpts, EchoClientConf, EchoServerConf, ServerRun, Threads};
use tcpshm::{ServerConf, TcpShmServer};

struct Plan {
    count: u64,
    stream: bool,
    client_cpu: Option<usize>,
    server: ServerRun,
}

fn run(use_shm: bool, plan: &Plan) -> Result<f64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tag = std::process::id() % 100_000;
    let server_name = format!("srv{tag}");
    let client_name = format!("cli{tag}{}", if use_shm { "s" } else { "t" });
    let mut server = TcpShmServer::<EchoServerConf>::new(&server_name, dir.path()).map_err(|e| e.to_string())?;
    server.start("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = server.local_addr().ok_or("no address")?.to_string();
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| echo::run_server(server, &stop, &plan.server));
        let opts = ClientOpts {
            use_shm,
            count: plan.count,
            stream: plan.stream,
            pin: plan.client_cpu,
            threads: plan.server.threads,
            deadline: Duration::from_secs(600),
            ..ClientOpts::new(&client_name, &server_name, dir.path(), &addr)
        };
        let r = echo::run_client::<EchoClientConf>(&opts);
        stop.store(true, Ordering::Relaxed);
        r
    });
    echo::remove_shm(&client_name, &server_name);
    let r = result?;
    if r.received != plan.count {
        return Err(format!("only {} of {} numbers came back", r.received, plan.count));
    }
    Ok(r.avg_rtt_ns())
}

fn main() {
    let args = Args::from_env();
    // The client is the one busy-polling thread besides the server's.
    let threads = Threads::from_args(&args).unwrap_or_else(|| Threads::for_machine::<EchoServerConf>(1));
    let server_threads = match threads {
        Threads::One => 1,
        Threads::PerPart => EchoServerConf::MAX_TCP_GRPS + EchoServerConf::MAX_SHM_GRPS,
    };
    let (client_cpu, server_cpus) = match args.opt::<usize>("--pin") {
        Some(cpu) => (Some(cpu), (cpu + 1..=cpu + server_threads).collect()),
        None if args.flag("--no-pin") => (None, Vec::new()),
        None => match allowed_cpus().as_slice() {
            [client, server @ ..] if server.len() >= server_threads => {
                (Some(*client), server[..server_threads].to_vec())
            }
            _ => (None, Vec::new()),
        },
    };
    let plan = Plan {
        count: args.value("--count", 200_000),
        stream: args.flag("--stream"),
        client_cpu,
        server: ServerRun { threads, cpus: server_cpus, quiet: true },
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut client = match client_cpu {
        Some(cpu) => format!("client on one thread, pinned to CPU {cpu}"),
        None => "client on one thread, not pinned".to_string(),
    };
    if threads == Threads::PerPart {
        client += " (over shm, its socket half on a thread of its own, every 1 ms)";
    }
    println!("{cpus} CPUs: {client}; {}", plan.server.describe::<EchoServerConf>());
    let mut ok = true;
    for (mode, use_shm) in [("tcp", false), ("shm", true)] {
        match run(use_shm, &plan) {
            Ok(rtt) => println!("{mode}: {} numbers echoed, avg round trip {rtt:.0} ns", plan.count),
            Err(e) => {
                println!("{mode}: FAILED: {e}");
                ok = false;
            }
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}
