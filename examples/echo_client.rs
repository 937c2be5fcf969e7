//! The echo client of the C++ tcpshm test pair.
//!
//! `cargo run --release --example echo_client -- [--shm] [--stream] [--count N]
//!  [--name client] [--server-name server] [--dir ptcp_data] [--addr 127.0.0.1:12345]
//!  [--pin CPU] [--threads one|per-part] [--reconnect] [--timeout SECS]`
//!
//! Sends the numbers 0..N in messages of 1 to 4 i32, waiting for each echo
//! (or streaming with `--stream`), checks every echoed number, and prints the
//! average round trip. Its counters are memory-mapped in the ptcp dir: kill it
//! and run it again, and it resumes where it was. With `--reconnect` it
//! connects again whenever the link drops. Exits 0 when every number came
//! back. In shm mode it polls the socket (heartbeats) on a timer in the
//! shm thread, or with `--threads per-part` (the default on a machine with
//! a CPU for each thread of the pair) on a thread of its own.

#[path = "common/echo.rs"]
mod echo;

use std::time::Duration;

use echo::{Args, ClientOpts, EchoClientConf, EchoServerConf, Threads};

fn main() {
    let args = Args::from_env();
    let name: String = args.value("--name", "client".to_string());
    let server_name: String = args.value("--server-name", "server".to_string());
    let dir: String = args.value("--dir", "ptcp_data".to_string());
    let addr: String = args.value("--addr", "127.0.0.1:12345".to_string());
    let opts = ClientOpts {
        use_shm: args.flag("--shm"),
        count: args.value("--count", 1_000_000),
        stream: args.flag("--stream"),
        pin: args.opt("--pin"),
        // As the echo server on this host would choose.
        threads: Threads::from_args(&args).unwrap_or_else(|| Threads::for_machine::<EchoServerConf>(1)),
        progress: true,
        deadline: Duration::from_secs(args.value("--timeout", 3600)),
        reconnect: args.flag("--reconnect"),
        ..ClientOpts::new(&name, &server_name, dir.as_ref(), &addr)
    };
    match echo::run_client::<EchoClientConf>(&opts) {
        Ok(r) => {
            println!(
                "client stopped, send_num: {} recv_num: {} echoes: {} avg rtt: {:.0} ns",
                r.sent,
                r.received,
                r.echoes,
                r.avg_rtt_ns()
            );
            std::process::exit(if r.received >= opts.count { 0 } else { 1 });
        }
        Err(e) => {
            println!("client failed: {e}");
            std::process::exit(1);
        }
    }
}
