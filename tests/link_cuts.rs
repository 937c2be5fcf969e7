//! Link failures without a crash: a proxy between the echo client and
//! server cuts the TCP connection many times during a stream, and once
//! stalls it half-open (sockets kept, nothing forwarded). Both sides resume
//! from the acks every time; the half-open link ends in `Timeout` on both
//! sides through heartbeats. The client checks every echoed number: nothing
//! lost, duplicated or reordered.

#[path = "../examples/common/echo.rs"]
mod echo;
mod support;

use std::time::{Duration, Instant};

use echo::{ClientOpts, Counters};
use support::proxy::Proxy;
use support::{unique, Event, Recorder, ServerThread, MS};
use tcpshm::{CloseReason, Conf, ServerConf};

/// The echo pair's sizes with heartbeats fast enough to test a timeout.
struct LinkConf;

impl Conf for LinkConf {
    const SHM_QUEUE_SIZE: usize = 1 << 16;
    const TCP_QUEUE_SIZE: usize = 1 << 14;
    const TCP_RECV_BUF_INIT_SIZE: usize = 1 << 14;
    const TCP_RECV_BUF_MAX_SIZE: usize = 1 << 15;
    const CONNECTION_TIMEOUT: i64 = 500 * MS;
    const HEARTBEAT_INTERVAL: i64 = 50 * MS;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

impl ServerConf for LinkConf {}

/// Waits (bounded) until the client has `n` numbers back.
fn wait_received(counters: &mut Counters, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while counters.received() < n {
        assert!(Instant::now() < deadline, "stuck at {} of {n}", counters.received());
        std::thread::yield_now();
    }
}

fn cuts_and_a_stall(tag: &str, use_shm: bool) {
    const CUTS: usize = 20;
    // Long enough that the stream outlasts every cut and the stall (shm
    // streams some 20 times faster), with a little progress in each session.
    let count = if use_shm { 10_000_000 } else { 400_000 };
    let step = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let (client, srv) = (unique(&format!("lc{tag}")), unique(&format!("ls{tag}")));
    let rec = Recorder { echo: true, skip_msg_events: true, ..Default::default() };
    let server = ServerThread::start::<LinkConf>(&srv, dir.path(), rec);
    let mut proxy = Proxy::start(&server.addr);
    let proxy_addr = proxy.addr.clone();
    let mut counters = Counters::open(dir.path(), &client, &srv).unwrap();
    // Each break hits a live, streaming session: the n-th logon, then progress.
    let session = |n: usize, counters: &mut Counters| {
        server.wait_for("a logon", |e| e.iter().filter(|e| matches!(e, Event::Logon(c) if *c == client)).count() >= n);
        let now = counters.received();
        wait_received(counters, now + step);
    };
    let report = std::thread::scope(|s| {
        let run = s.spawn(|| {
            let o = ClientOpts {
                use_shm,
                count,
                stream: true,
                reconnect: true,
                ..ClientOpts::new(&client, &srv, dir.path(), &proxy_addr)
            };
            echo::run_client::<LinkConf>(&o)
        });
        for n in 1..=CUTS {
            session(n, &mut counters);
            proxy.cut();
        }
        session(CUTS + 1, &mut counters);
        proxy.stall();
        session(CUTS + 2, &mut counters); // resumed after the timeouts
        run.join().unwrap()
    });
    let r = report.unwrap_or_else(|e| panic!("the client failed: {e}"));
    assert_eq!((r.sent, r.received), (count, count));
    assert_eq!((counters.sent(), counters.received()), (count, count));
    assert!(r.disconnects.len() > CUTS, "every break was a disconnect: {:?}", r.disconnects);
    assert!(r.disconnects.contains(&CloseReason::Timeout), "the client timed out: {:?}", r.disconnects);
    let server_saw = |reason: CloseReason| {
        server.events().iter().any(|e| matches!(e, Event::Disconnected(c, r) if *c == client && *r == reason))
    };
    assert!(server_saw(CloseReason::Timeout), "the server timed out: {:?}", server.events());
    echo::remove_shm(&client, &srv);
}

#[test]
fn tcp_stream_survives_link_cuts_and_a_half_open_link() {
    cuts_and_a_stall("t", false);
}

#[test]
fn shm_stream_survives_link_cuts_and_a_half_open_link() {
    cuts_and_a_stall("s", true);
}
