//! A hostile TCP peer cannot crash the server or starve honest clients:
//! each case closes that socket (with a reason once logged in) and the
//! server goes on serving others. With `login.rs` (garbage before login, a
//! login of the wrong size or type, a login split over many writes) and
//! `liveness.rs` (frames over `TCP_RECV_BUF_MAX_SIZE` or under a header, an
//! ack beyond what was sent) this covers every case of the hostile peer.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{raw_login, unique, ClientRec, Event, Recorder, ServerThread, TestConf};
use tcpshm::{CloseReason, MsgHeader, TcpShmClient};
use zerocopy::IntoBytes;

fn echo_server() -> (tempfile::TempDir, ServerThread) {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder { echo: true, ..Default::default() };
    let server = ServerThread::start::<TestConf>(&unique("hsrv"), dir.path(), rec);
    (dir, server)
}

fn frame(msg_type: u16, ack_seq: u32, body: &[u8]) -> Vec<u8> {
    let mut f = MsgHeader { size: (8 + body.len()) as u16, msg_type, ack_seq }.as_bytes().to_vec();
    f.extend_from_slice(body);
    f.resize(f.len().div_ceil(8) * 8, 0);
    f
}

/// Reads frames until `n` application messages came; returns their bodies.
fn read_msgs(s: &mut TcpStream, n: usize) -> Vec<Vec<u8>> {
    let mut out = vec![];
    while out.len() < n {
        let mut h = [0u8; 8];
        s.read_exact(&mut h).unwrap();
        let size = u16::from_le_bytes([h[0], h[1]]) as usize;
        let mut body = vec![0u8; size.div_ceil(8) * 8 - 8];
        s.read_exact(&mut body).unwrap();
        if u16::from_le_bytes([h[2], h[3]]) != 0 {
            out.push(body[..size - 8].to_vec());
        }
    }
    out
}

fn disconnect_reason(server: &ServerThread, name: &str) -> CloseReason {
    server.wait_for("the disconnect", |e| e.iter().any(|e| matches!(e, Event::Disconnected(n, _) if n == name)));
    server
        .events()
        .into_iter()
        .find_map(|e| if let Event::Disconnected(n, r) = e { (n == name).then_some(r) } else { None })
        .unwrap()
}

/// An honest client logs in and gets an echo.
fn honest_client_is_served(dir: &std::path::Path, addr: &str, name: &str) {
    let mut client = TcpShmClient::<TestConf>::new(name, dir).unwrap();
    let mut h = ClientRec::default();
    client.connect(false, addr, 0, &mut h).unwrap();
    assert!(client.connection().send(3, &42u64));
    support::poll_until(&mut client, &mut h, "the echo", |_, h| h.msgs.len() == 1);
}

#[test]
fn largest_size_field_closes_as_too_large() {
    let (dir, server) = echo_server();
    let mut s = raw_login(&server.addr, "huge");
    s.write_all(MsgHeader { size: u16::MAX, msg_type: 1, ack_seq: 0 }.as_bytes()).unwrap();
    assert_eq!(disconnect_reason(&server, "huge"), CloseReason::MsgTooLarge);
    honest_client_is_served(dir.path(), &server.addr, "fine");
}

/// Resent messages carry the ack of their push time, so an ack going
/// backwards is normal and ignored: it neither closes the link nor brings
/// back acknowledged messages.
#[test]
fn an_ack_going_backwards_is_ignored() {
    let (_dir, server) = echo_server();
    let mut s = raw_login(&server.addr, "back");
    s.write_all(&frame(1, 0, b"first")).unwrap();
    assert_eq!(read_msgs(&mut s, 1), vec![b"first".to_vec()]);
    s.write_all(&frame(1, 1, b"second")).unwrap(); // acks the first echo
    assert_eq!(read_msgs(&mut s, 1), vec![b"second".to_vec()]);
    s.write_all(&frame(1, 0, b"third")).unwrap(); // ack back to 0
    assert_eq!(read_msgs(&mut s, 1), vec![b"third".to_vec()], "only the new echo, nothing resent");
    let events = server.events();
    assert!(!events.iter().any(|e| matches!(e, Event::Disconnected(..))), "{events:?}");
}

#[test]
fn thousands_of_silent_sockets_do_not_starve_an_honest_client() {
    let (dir, server) = echo_server();
    // Sockets that connect and never send: far more than MAX_NEW_CONNECTIONS.
    let silent: Vec<TcpStream> = (0..2_000).map(|_| TcpStream::connect(&server.addr).unwrap()).collect();
    let start = Instant::now();
    honest_client_is_served(dir.path(), &server.addr, "honest");
    println!("the honest client got in after {:?}, behind {} silent sockets", start.elapsed(), silent.len());
    // And every silent socket is closed, by eviction or NEW_CONNECTION_TIMEOUT.
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(s.read(&mut b), Ok(0) | Err(_)), "a silent socket was answered");
    }
    honest_client_is_served(dir.path(), &server.addr, "later");
}
