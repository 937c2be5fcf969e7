//! Heartbeats keep an idle link alive in both modes; a peer that goes
//! silent is closed with "Timeout" on either side; oversized and malformed
//! frames close the connection with their reason.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::{now_ns, poll_until, raw_login, unique, ClientRec, Event, Recorder, ServerThread, TestConf};
use tcpshm::msg::LoginLayout;
use tcpshm::{CloseReason, Conf, LoginRspMsg, LoginStatus, MsgHeader, TcpShmClient};
use zerocopy::IntoBytes;

fn idle_link_stays_up(use_shm: bool, tag: &str) {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (srv, cli) = (unique(&format!("srv{tag}")), unique(&format!("cli{tag}")));
    let server = ServerThread::start::<TestConf>(&srv, sdir.path(), Recorder::default());
    let mut client = TcpShmClient::<TestConf>::new(&cli, cdir.path()).unwrap();
    let mut h = ClientRec::default();
    client.connect(use_shm, server.addr.as_str(), 0, &mut h).unwrap();
    // Idle for three connection timeouts: only heartbeats cross.
    let until = now_ns() + 3 * TestConf::CONNECTION_TIMEOUT;
    while now_ns() < until {
        client.poll_tcp(now_ns(), &mut h);
        client.poll_shm(&mut h);
    }
    assert!(!client.connection().is_closed(), "{:?}", client.connection().close_reason());
    assert!(!server.events().iter().any(|e| matches!(e, Event::Disconnected(..))));
    // And it still carries messages.
    assert!(client.connection().send(5, &[1u8; 8]));
    server.wait_for("the message", |e| e.iter().any(|e| matches!(e, Event::Msg(_, 5, _))));
    let _ = std::fs::remove_file(tcpshm::shm::shm_path(&cli, &srv));
    let _ = std::fs::remove_file(tcpshm::shm::shm_path(&srv, &cli));
}

#[test]
fn heartbeats_keep_an_idle_tcp_link_alive() {
    idle_link_stays_up(false, "t");
}

#[test]
fn heartbeats_keep_an_idle_shm_link_alive() {
    idle_link_stays_up(true, "s");
}

/// A fake server that answers the login and then never sends a byte.
#[test]
fn client_times_out_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut login = vec![0u8; LoginLayout::<TestConf>::LOGIN_FRAME];
        s.read_exact(&mut login).unwrap();
        s.write_all(&LoginRspMsg::<TestConf>::new("silent", LoginStatus::Ok).encode()).unwrap();
        // Hold the socket open, silent, until the client gives up.
        let mut b = [0u8; 64];
        while matches!(s.read(&mut b), Ok(n) if n > 0) {}
    });
    let dir = tempfile::tempdir().unwrap();
    let mut client = TcpShmClient::<TestConf>::new("waiting", dir.path()).unwrap();
    let mut h = ClientRec::default();
    client.connect(false, addr, 0, &mut h).unwrap();
    poll_until(&mut client, &mut h, "the timeout", |_, h| h.disconnected.is_some());
    assert_eq!(h.disconnected, Some(CloseReason::Timeout));
    assert_eq!(client.connection().close_reason(), Some((CloseReason::Timeout, 0)));
    drop(client);
    peer.join().unwrap();
}

fn disconnect_reason(server: &ServerThread, name: &str) -> CloseReason {
    server.wait_for("the disconnect", |e| e.iter().any(|e| matches!(e, Event::Disconnected(n, _) if n == name)));
    server
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::Disconnected(n, r) if n == name => Some(r),
            _ => None,
        })
        .unwrap()
}

#[test]
fn server_times_out_a_silent_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerThread::start::<TestConf>(&unique("srv"), dir.path(), Recorder::default());
    let _s = raw_login(&server.addr, "mute");
    assert_eq!(disconnect_reason(&server, "mute"), CloseReason::Timeout);
}

#[test]
fn frames_too_large_or_too_small_close_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerThread::start::<TestConf>(&unique("srv"), dir.path(), Recorder::default());
    let cases = [
        ("big", (TestConf::TCP_RECV_BUF_MAX_SIZE + 8) as u16, CloseReason::MsgTooLarge),
        ("tiny", 4, CloseReason::InvalidMsgSize),
    ];
    for (name, size, reason) in cases {
        let mut s = raw_login(&server.addr, name);
        s.write_all(MsgHeader { size, msg_type: 9, ack_seq: 0 }.as_bytes()).unwrap();
        assert_eq!(disconnect_reason(&server, name), reason);
        let mut b = [0u8; 8];
        let deadline = Instant::now() + Duration::from_secs(10);
        // The server closed the socket (heartbeats may come first).
        while matches!(s.read(&mut b), Ok(n) if n > 0) {
            assert!(Instant::now() < deadline);
        }
    }
}

#[test]
fn ack_beyond_what_was_sent_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerThread::start::<TestConf>(&unique("srv"), dir.path(), Recorder::default());
    let mut s = raw_login(&server.addr, "liar");
    s.write_all(MsgHeader { size: 8, msg_type: 0, ack_seq: 5 }.as_bytes()).unwrap();
    assert_eq!(disconnect_reason(&server, "liar"), CloseReason::AckOutOfRange);
}

/// Overwrites the write index of a shm queue object with one more than a lap
/// ahead of its read index.
fn corrupt_write_idx(path: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_at(&100_000u32.to_ne_bytes(), TestConf::SHM_QUEUE_SIZE as u64).unwrap();
}

#[test]
fn corrupt_shm_queue_closes_with_its_reason_on_either_side() {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (srv, cli) = (unique("srvbad"), unique("clibad"));
    let server = ServerThread::start::<TestConf>(&srv, sdir.path(), Recorder::default());
    let mut client = TcpShmClient::<TestConf>::new(&cli, cdir.path()).unwrap();
    let mut h = ClientRec::default();

    // The server reads a corrupt client-to-server queue.
    client.connect(true, server.addr.as_str(), 0, &mut h).unwrap();
    corrupt_write_idx(&tcpshm::shm::shm_path(&cli, &srv));
    assert_eq!(disconnect_reason(&server, &cli), CloseReason::ShmQueueCorrupt);
    poll_until(&mut client, &mut h, "the disconnect", |_, h| h.disconnected.is_some());
    // Its next login is refused: the object is still corrupt.
    assert!(client.connect(true, server.addr.as_str(), 0, &mut h).is_err());
    assert_eq!(h.rejected.as_deref(), Some("System error"));
    server.wait_for("the file error", |e| e.contains(&Event::FileError(cli.clone())));

    // The client reads a corrupt server-to-client queue.
    std::fs::remove_file(tcpshm::shm::shm_path(&cli, &srv)).unwrap();
    drop(client); // one client of a name at a time
    let mut client = TcpShmClient::<TestConf>::new(&cli, cdir.path()).unwrap();
    let mut h = ClientRec::default();
    client.connect(true, server.addr.as_str(), 0, &mut h).unwrap();
    corrupt_write_idx(&tcpshm::shm::shm_path(&srv, &cli));
    poll_until(&mut client, &mut h, "the disconnect", |_, h| h.disconnected.is_some());
    assert_eq!(h.disconnected, Some(CloseReason::ShmQueueCorrupt));
    assert_eq!(client.connection().close_reason(), Some((CloseReason::ShmQueueCorrupt, 0)));
    for (a, b) in [(&cli, &srv), (&srv, &cli)] {
        let _ = std::fs::remove_file(tcpshm::shm::shm_path(a, b));
    }
}
