//! Backpressure without deadlock: a handler that leaves a message unpopped
//! because its own send queue is full (the echo server's pattern) must still
//! read the acks that would free that queue.

#[path = "../examples/common/echo.rs"]
mod echo;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};

use support::{poll_until, unique, ClientRec, TestConf, MS};
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
        s.spawn(|| echo::run_server(server, &stop, None, true));
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
