//! Every way a login can go: accepted (also when split over many writes),
//! rejected with each of the C++ server's messages, dropped without an
//! answer, or timed out; and the connection slots of a group.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{unique, ClientRec, Event, Recorder, ServerThread, TestConf};
use tcpshm::msg::LoginLayout;
use tcpshm::{ConnectError, LoginMsg, LoginRspMsg, LoginStatus, TcpShmClient};

fn login_frame(name: &str) -> Vec<u8> {
    LoginMsg::<TestConf> {
        ack_seq: 0,
        client_seq_start: 0,
        client_seq_end: 0,
        user_data: 0,
        use_shm: false,
        client_name: name.into(),
        last_server_name: String::new(),
    }
    .encode()
}

fn raw(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn read_rsp(s: &mut TcpStream) -> LoginRspMsg<TestConf> {
    let mut frame = vec![0u8; LoginLayout::<TestConf>::RSP_FRAME];
    s.read_exact(&mut frame).unwrap();
    LoginRspMsg::decode(&frame).unwrap()
}

/// The server closed the socket (read sees EOF or a reset).
fn assert_closed_by_server(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    assert!(matches!(s.read(&mut b), Ok(0) | Err(_)), "socket still open");
}

fn connect(
    name: &str,
    dir: &std::path::Path,
    addr: &str,
) -> (TcpShmClient<TestConf>, ClientRec, Result<(), ConnectError>) {
    let mut client = TcpShmClient::<TestConf>::new(name, dir).unwrap();
    let mut h = ClientRec::default();
    let r = client.connect(false, addr, 0, &mut h);
    (client, h, r)
}

#[test]
fn empty_client_name_is_answered_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerThread::start::<TestConf>(&unique("srv"), dir.path(), Recorder::default());
    let mut s = raw(&server.addr);
    let mut frame = login_frame("x");
    frame[18] = 0; // empty name
    s.write_all(&frame).unwrap();
    let rsp = read_rsp(&mut s);
    assert_eq!((rsp.status, rsp.error_msg.as_str()), (LoginStatus::Rejected, "Invalid client name"));
    assert_closed_by_server(&mut s);
    // A name that would escape the ptcp dir is refused the same way.
    let mut s = raw(&server.addr);
    s.write_all(&login_frame("../evil")).unwrap();
    assert_eq!(read_rsp(&mut s).error_msg, "Invalid client name");
}

#[test]
fn handler_rejections_carry_default_or_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::default();
    rec.reject.insert("deny".into(), None);
    rec.reject.insert("deny2".into(), Some("Go away".into()));
    let server = ServerThread::start::<TestConf>(&unique("srv"), dir.path(), rec);
    let (_c, h, r) = connect("deny", dir.path(), &server.addr);
    assert!(matches!(r, Err(ConnectError::Rejected(ref m)) if m == "Login Reject"), "{r:?}");
    assert_eq!(h.rejected.as_deref(), Some("Login Reject"));
    let (_c, h, r) = connect("deny2", dir.path(), &server.addr);
    assert!(matches!(r, Err(ConnectError::Rejected(ref m)) if m == "Go away"));
    assert_eq!(h.rejected.as_deref(), Some("Go away"));
}

#[test]
fn second_login_of_a_live_name_is_already_logged_on() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ServerThread::start::<TestConf>(&unique("srv"), d1.path(), Recorder::default());
    let (_first, _, r) = connect("dup", d1.path(), &server.addr);
    r.unwrap();
    let (_second, h, r) = connect("dup", d2.path(), &server.addr);
    assert!(matches!(r, Err(ConnectError::Rejected(_))));
    assert_eq!(h.rejected.as_deref(), Some("Already loggned on"));
}

#[test]
fn more_clients_than_slots_are_refused_and_slots_stay_bound() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerThread::start::<TestConf>(&unique("srv"), dir.path(), Recorder::default());
    let (mut a, mut ha, r) = connect("a", dir.path(), &server.addr);
    r.unwrap();
    let (b, _, r) = connect("b", dir.path(), &server.addr);
    r.unwrap();
    let (c, h, r) = connect("c", dir.path(), &server.addr);
    assert!(r.is_err());
    assert_eq!(h.rejected.as_deref(), Some("Max client cnt exceeded"));
    drop(c); // one client of a name at a time
             // "a" leaves: its slot stays bound to "a", so "c" is still refused and "a" comes back.
    a.connection().close();
    support::poll_until(&mut a, &mut ha, "a's disconnect", |_, h| h.disconnected.is_some());
    server.wait_for("a's disconnect", |e| e.iter().any(|e| matches!(e, Event::Disconnected(n, _) if n == "a")));
    let (_c, h, _) = connect("c", dir.path(), &server.addr);
    assert_eq!(h.rejected.as_deref(), Some("Max client cnt exceeded"));
    a.connect(false, server.addr.as_str(), 0, &mut ha).unwrap();
    drop(b);
}

#[test]
fn shm_group_slots_are_limited_too() {
    let dir = tempfile::tempdir().unwrap();
    let srv = unique("srvshm");
    let server = ServerThread::start::<TestConf>(&srv, dir.path(), Recorder::default());
    let (a, b) = (unique("shma"), unique("shmb"));
    let mut first = TcpShmClient::<TestConf>::new(&a, dir.path()).unwrap();
    first.connect(true, server.addr.as_str(), 0, &mut ClientRec::default()).unwrap();
    let mut second = TcpShmClient::<TestConf>::new(&b, dir.path()).unwrap();
    let mut h = ClientRec::default();
    assert!(second.connect(true, server.addr.as_str(), 0, &mut h).is_err());
    assert_eq!(h.rejected.as_deref(), Some("Max client cnt exceeded"));
    for (c, s) in [(&a, &srv), (&srv, &a)] {
        let _ = std::fs::remove_file(tcpshm::shm::shm_path(c, s));
    }
}

#[test]
fn unreadable_queue_file_is_a_system_error() {
    let dir = tempfile::tempdir().unwrap();
    let srv = unique("srv");
    std::fs::write(tcpshm::ptcp::ptcp_path(dir.path(), &srv, "bad"), b"not a queue file").unwrap();
    let server = ServerThread::start::<TestConf>(&srv, dir.path(), Recorder::default());
    let client_dir = tempfile::tempdir().unwrap();
    let (_c, h, r) = connect("bad", client_dir.path(), &server.addr);
    assert!(r.is_err());
    assert_eq!(h.rejected.as_deref(), Some("System error"));
    server.wait_for("the file error", |e| e.contains(&Event::FileError("bad".into())));
}

#[test]
fn login_of_wrong_size_or_type_is_dropped_without_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerThread::start::<TestConf>(&unique("srv"), dir.path(), Recorder::default());
    for (at, value) in [(0, 60u8), (2, 3u8)] {
        let mut s = raw(&server.addr);
        let mut frame = login_frame("x");
        frame[at] = value;
        s.write_all(&frame).unwrap();
        let mut buf = [0u8; 8];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "no answer, just a close");
    }
    // Garbage before any login is dropped the same way.
    let mut s = raw(&server.addr);
    s.write_all(&[0xffu8; 56]).unwrap();
    assert_closed_by_server(&mut s);
}

#[test]
fn login_split_over_many_writes_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerThread::start::<TestConf>(&unique("srv"), dir.path(), Recorder::default());
    let mut s = raw(&server.addr);
    for piece in login_frame("split").chunks(5) {
        s.write_all(piece).unwrap();
        // A gap between the segments, well inside NEW_CONNECTION_TIMEOUT.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(5) {
            std::hint::spin_loop();
        }
    }
    let rsp = read_rsp(&mut s);
    assert_eq!((rsp.status, rsp.error_msg.as_str()), (LoginStatus::Ok, ""));
    server.wait_for("the logon", |e| e.contains(&Event::Logon("split".into())));
}

#[test]
fn silent_sockets_time_out_and_honest_clients_still_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerThread::start::<TestConf>(&unique("srv"), dir.path(), Recorder::default());
    // More silent sockets than MAX_NEW_CONNECTIONS: each is closed after the timeout.
    let mut silent: Vec<TcpStream> = (0..6).map(|_| raw(&server.addr)).collect();
    let (_c, _, r) = connect("honest", dir.path(), &server.addr);
    r.unwrap();
    for s in &mut silent {
        assert_closed_by_server(s);
    }
}
