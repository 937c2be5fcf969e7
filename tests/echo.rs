//! The echo pair over real sockets, files and /dev/shm: every number comes
//! back exactly once and in order, in both modes and thread models, and
//! across a client or a server dropped and recreated mid-stream.

#[path = "../examples/common/echo.rs"]
mod echo;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use echo::{ClientOpts, Counters, EchoClientConf, EchoServerConf, ServerRun, Threads};
use tcpshm::TcpShmServer;

/// Unique client and server names for this test (shm objects are global).
fn names(tag: &str) -> (String, String) {
    let pid = std::process::id() % 100_000;
    (format!("c{pid}{tag}"), format!("s{pid}{tag}"))
}

/// A server serving on threads of its own until dropped.
struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: String,
}

impl Running {
    /// `one_thread`: control and every group polled by one thread; else one
    /// thread per group and one for control.
    fn start(name: &str, dir: &Path, addr: &str, one_thread: bool) -> Running {
        let mut server = TcpShmServer::<EchoServerConf>::new(name, dir).unwrap();
        server.start(addr).unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let threads = if one_thread { Threads::One } else { Threads::PerPart };
        let thread = std::thread::spawn(move || {
            echo::run_server(server, &flag, &ServerRun { threads, cpus: Vec::new(), quiet: true });
        });
        Running { stop, thread: Some(thread), addr }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn opts<'a>(
    client: &'a str,
    server: &'a str,
    dir: &'a Path,
    addr: &'a str,
    use_shm: bool,
    count: u64,
) -> ClientOpts<'a> {
    ClientOpts { use_shm, count, ..ClientOpts::new(client, server, dir, addr) }
}

fn echo_all(tag: &str, use_shm: bool, one_thread: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (client, server) = names(tag);
    let running = Running::start(&server, dir.path(), "127.0.0.1:0", one_thread);
    // The client's threads as the server's: both models of each side run.
    let threads = if one_thread { Threads::One } else { Threads::PerPart };
    let o = ClientOpts { threads, ..opts(&client, &server, dir.path(), &running.addr, use_shm, 5_000) };
    let r = echo::run_client::<EchoClientConf>(&o).unwrap();
    assert_eq!((r.sent, r.received), (5_000, 5_000));
    drop(running);
    echo::remove_shm(&client, &server);
}

#[test]
fn echo_tcp_one_thread() {
    echo_all("t1", false, true);
}

#[test]
fn echo_shm_one_thread() {
    echo_all("s1", true, true);
}

#[test]
fn echo_tcp_ctl_and_group_threads() {
    echo_all("tn", false, false);
}

#[test]
fn echo_shm_ctl_and_group_threads() {
    echo_all("sn", true, false);
}

#[test]
fn echo_over_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let (client, server) = names("v6");
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        println!("skipped: this machine has no ::1");
        return;
    };
    drop(probe);
    let running = Running::start(&server, dir.path(), "[::1]:0", true);
    let r =
        echo::run_client::<EchoClientConf>(&opts(&client, &server, dir.path(), &running.addr, false, 2_000)).unwrap();
    assert_eq!(r.received, 2_000);
}

/// Streams, drops the client mid-stream (messages in flight both ways),
/// recreates it, and finishes: the counters check every number once, in order.
fn client_dropped_and_recreated(tag: &str, use_shm: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (client, server) = names(tag);
    let running = Running::start(&server, dir.path(), "127.0.0.1:0", false);
    let count = 40_000;
    for stop_after in [5_000, 15_000, 25_000] {
        let mut o = opts(&client, &server, dir.path(), &running.addr, use_shm, count);
        o.stream = true;
        o.stop_after = Some(stop_after);
        let r = echo::run_client::<EchoClientConf>(&o).unwrap();
        assert!(r.received >= stop_after && r.received < count, "{}", r.received);
    }
    let mut o = opts(&client, &server, dir.path(), &running.addr, use_shm, count);
    o.stream = true;
    let r = echo::run_client::<EchoClientConf>(&o).unwrap();
    assert_eq!((r.sent, r.received), (count, count));
    drop(running);
    echo::remove_shm(&client, &server);
}

#[test]
fn tcp_resumes_after_client_dropped() {
    client_dropped_and_recreated("tc", false);
}

#[test]
fn shm_resumes_after_client_dropped() {
    client_dropped_and_recreated("sc", true);
}

/// Streams, drops the server once the client has some echoes, recreates it
/// on the same port and files, and lets the client reconnect and finish.
fn server_dropped_and_recreated(tag: &str, use_shm: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (client, server) = names(tag);
    let count = 30_000;
    let mut running = Some(Running::start(&server, dir.path(), "127.0.0.1:0", false));
    let addr = running.as_ref().unwrap().addr.clone();
    let mut counters = Counters::open(dir.path(), &client, &server).unwrap();
    std::thread::scope(|s| {
        let client_run = s.spawn(|| {
            // Reconnects after each server drop until every number is back.
            let o = ClientOpts {
                use_shm,
                count,
                stream: true,
                reconnect: true,
                ..ClientOpts::new(&client, &server, dir.path(), &addr)
            };
            echo::run_client::<EchoClientConf>(&o).unwrap().received
        });
        for threshold in [5_000, 15_000] {
            let deadline = Instant::now() + Duration::from_secs(30);
            while counters.received() < threshold && Instant::now() < deadline {
                std::thread::yield_now();
            }
            drop(running.take()); // stops it and closes every socket
            running = Some(Running::start(&server, dir.path(), &addr, false));
        }
        assert_eq!(client_run.join().unwrap(), count);
    });
    assert_eq!((counters.sent(), counters.received()), (count, count));
    drop(running);
    echo::remove_shm(&client, &server);
}

#[test]
fn tcp_resumes_after_server_dropped() {
    server_dropped_and_recreated("ts", false);
}

#[test]
fn shm_resumes_after_server_dropped() {
    server_dropped_and_recreated("ss", true);
}
