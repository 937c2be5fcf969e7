//! Backpressure without deadlock: a handler that leaves a message unpopped
//! because its own send queue is full (the echo server's pattern) must still
//! read the acks that would free that queue.

#[path = "../examples/common/echo.rs"]
mod echo;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};

use echo::{ServerRun, Threads};
use support::{poll_until, unique, ClientRec, Event, Recorder, ServerThread, TestConf, MS};
use tcpshm::{Conf, TcpShmClient, TcpShmServer};

/// A client whose queue holds three times what the server's does, but
/// less than the server's receive buffer may grow to (the rule of
/// `Conf::TCP_RECV_BUF_MAX_SIZE`).
struct BigQueueConf;

impl Conf for BigQueueConf {
    const TCP_QUEUE_SIZE: usize = 6000;
    const CONNECTION_TIMEOUT: i64 = 1_000 * MS;
    const HEARTBEAT_INTERVAL: i64 = 50 * MS;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

#[test]
fn a_server_with_a_full_queue_keeps_reading_acks() {
    const _: () = assert!(BigQueueConf::TCP_QUEUE_SIZE > 2 * TestConf::TCP_QUEUE_SIZE);
    const _: () = assert!(BigQueueConf::TCP_QUEUE_SIZE < TestConf::TCP_RECV_BUF_MAX_SIZE);
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = unique("fcsrv");
    let mut server = TcpShmServer::<TestConf>::new(&name, sdir.path()).unwrap();
    server.start("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let stop = AtomicBool::new(false);
    let (h, sent) = std::thread::scope(|s| {
        s.spawn(|| {
            echo::run_server(server, &stop, &ServerRun { threads: Threads::PerPart, cpus: Vec::new(), quiet: true })
        });
        let _stop = StopOnDrop(&stop); // also when an assertion fails
        let mut client = TcpShmClient::<BigQueueConf>::new("fccli", cdir.path()).unwrap();
        let mut h = ClientRec::default();
        client.connect(false, addr.as_str(), 0, &mut h).unwrap();
        // Fill our queue without reading: the server echoes until its own
        // queue is full of echoes we have not acknowledged, then leaves the
        // next message unpopped.
        let mut sent = 0u64;
        while client.connection().send(1, &sent) {
            sent += 1;
        }
        assert!(sent as usize * 16 > 3 * TestConf::TCP_QUEUE_SIZE / 2, "only {sent} fit");
        // Now read and acknowledge: our acks must reach the server even
        // though it has an unpopped message in front of them.
        poll_until(&mut client, &mut h, "every echo", |_, h| h.msgs.len() as u64 >= sent);
        (h, sent)
    });
    let echoed: Vec<u64> = h.msgs.iter().map(|(_, b)| u64::from_ne_bytes(b[..8].try_into().unwrap())).collect();
    assert_eq!(echoed, (0..sent).collect::<Vec<_>>());
}

/// Stops the server thread when the test's closure ends, even by a panic,
/// so the scope can join it.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Heartbeats (and so their acks) never come within the test.
struct SilentConf;

impl Conf for SilentConf {
    const CONNECTION_TIMEOUT: i64 = 3_600_000 * MS;
    const HEARTBEAT_INTERVAL: i64 = 3_600_000 * MS;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

impl tcpshm::ServerConf for SilentConf {
    const NEW_CONNECTION_TIMEOUT: i64 = 1_000 * MS;
}

/// A one-way stream of ten queues' worth of messages: the receiver, which
/// sends nothing back, must still ack as it consumes, or the sender's queue
/// stays full until a heartbeat (an hour here).
#[test]
fn a_one_way_stream_is_acked_without_waiting_for_heartbeats() {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ServerThread::start::<SilentConf>(&unique("owsrv"), sdir.path(), Recorder::default());
    let mut client = TcpShmClient::<SilentConf>::new("owcli", cdir.path()).unwrap();
    let mut h = ClientRec::default();
    client.connect(false, server.addr.as_str(), 0, &mut h).unwrap();
    // 16-byte frames: ten times what the queue holds.
    let total = 10 * SilentConf::TCP_QUEUE_SIZE as u64 / 16;
    let sent = std::cell::Cell::new(0u64);
    poll_until(&mut client, &mut h, "room for every message", |client, _| {
        while sent.get() < total && client.connection().send(1, &sent.get()) {
            sent.set(sent.get() + 1);
        }
        sent.get() == total
    });
    server.wait_for("every message", |ev| ev.iter().filter(|e| matches!(e, Event::Msg(..))).count() as u64 == total);
    let got: Vec<u64> = server
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Msg(_, _, body) => Some(u64::from_ne_bytes(body[..8].try_into().unwrap())),
            _ => None,
        })
        .collect();
    assert_eq!(got, (0..total).collect::<Vec<_>>());
}
