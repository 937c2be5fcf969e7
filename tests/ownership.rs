//! One owner per queue: a client's name in a directory is one client at a
//! time (in this process or another), a queue file is open in one place, a
//! client name has one slot in a whole server, and names never make two
//! pairs share a file.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use support::{unique, ClientRec, Event, Recorder, ServerThread, TestConf};
use tcpshm::ptcp::{lock_path, ptcp_path};
use tcpshm::{ConnectError, Error, ServerConf, TcpShmClient, TcpShmServer};

/// The same configuration as the tests', with two TCP groups.
struct TwoGroups;
impl tcpshm::Conf for TwoGroups {
    const CONNECTION_TIMEOUT: i64 = TestConf::CONNECTION_TIMEOUT;
    const HEARTBEAT_INTERVAL: i64 = TestConf::HEARTBEAT_INTERVAL;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}
impl ServerConf for TwoGroups {
    const MAX_TCP_GRPS: usize = 2;
    const NEW_CONNECTION_TIMEOUT: i64 = TestConf::NEW_CONNECTION_TIMEOUT;
}

#[test]
fn a_client_name_in_a_directory_is_one_client_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = TcpShmClient::<TestConf>::new("one", dir.path()).unwrap();
    match TcpShmClient::<TestConf>::new("one", dir.path()) {
        Err(Error::InUse { path }) => assert_eq!(path, lock_path(dir.path(), "one")),
        other => panic!("a second client of the same name: {:?}", other.err()),
    }
    // Another name is another client.
    TcpShmClient::<TestConf>::new("two", dir.path()).unwrap();
    drop(first);
    TcpShmClient::<TestConf>::new("one", dir.path()).unwrap();
}

/// The child of `a_client_name_is_one_client_across_processes`: holds the
/// client until its standard input closes.
#[test]
fn child_holding_a_client() {
    let Some(dir) = std::env::var_os("TCPSHM_OWNERSHIP_CHILD_DIR") else { return };
    let _client = TcpShmClient::<TestConf>::new("held", &dir).unwrap();
    println!("holding");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn a_client_name_is_one_client_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_holding_a_client", "--nocapture", "--test-threads", "1"])
        .env("TCPSHM_OWNERSHIP_CHILD_DIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("holding") {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "the child ended before holding the client");
    }
    assert!(matches!(TcpShmClient::<TestConf>::new("held", dir.path()), Err(Error::InUse { .. })));
    drop(child.stdin.take()); // the child lets go and ends
    assert!(child.wait().unwrap().success());
    TcpShmClient::<TestConf>::new("held", dir.path()).unwrap();
}

#[test]
fn a_queue_file_is_open_in_one_server_at_a_time() {
    // Two servers of one name in one directory would share their queue files.
    let (dir, c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let srv = unique("own");
    let a = ServerThread::start::<TestConf>(&srv, dir.path(), Recorder::default());
    let b = ServerThread::start::<TestConf>(&srv, dir.path(), Recorder::default());
    let mut first = TcpShmClient::<TestConf>::new("q", c1.path()).unwrap();
    first.connect(false, a.addr.as_str(), 0, &mut ClientRec::default()).unwrap();
    let mut second = TcpShmClient::<TestConf>::new("q", c2.path()).unwrap();
    let mut h = ClientRec::default();
    let r = second.connect(false, b.addr.as_str(), 0, &mut h);
    assert!(matches!(&r, Err(ConnectError::Rejected(m)) if m == "System error"), "{r:?}");
    b.wait_for("the file error", |e| e.contains(&Event::FileError("q".into())));
    assert!(ptcp_path(dir.path(), &srv, "q").exists());
}

#[test]
fn a_client_name_has_one_slot_in_the_whole_server() {
    let (dir, cdir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rec = Recorder::default();
    let server = ServerThread::start::<TwoGroups>(&unique("slots"), dir.path(), rec.clone());
    let mut client = TcpShmClient::<TwoGroups>::new("roam", cdir.path()).unwrap();
    let mut h = ClientRec::default();
    client.connect(false, server.addr.as_str(), 0, &mut h).unwrap();
    // The same name, live in group 0, is sent to group 1 by the handler:
    // refused, where two groups would otherwise map its queue file at once.
    rec.group.store(1, Ordering::Relaxed);
    let mut twin = TcpShmClient::<TwoGroups>::new("roam", other.path()).unwrap();
    let mut th = ClientRec::default();
    let r = twin.connect(false, server.addr.as_str(), 0, &mut th);
    assert!(matches!(&r, Err(ConnectError::Rejected(m)) if m == "Already loggned on"), "{r:?}");
    // Once it is down, its connection moves to group 1 with what waits in it.
    assert!(client.connection().send(7, b"queued while down"));
    client.connection().close();
    support::poll_until(&mut client, &mut h, "the disconnect", |_, h| h.disconnected.is_some());
    server.wait_for("the server's disconnect", |e| {
        e.iter().any(|e| matches!(e, Event::Disconnected(n, _) if n == "roam"))
    });
    client.connect(false, server.addr.as_str(), 0, &mut h).unwrap();
    server.wait_for("the message", |e| e.contains(&Event::Msg("roam".into(), 7, b"queued while down".to_vec())));
}

#[test]
fn names_with_an_underscore_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(TcpShmClient::<TestConf>::new("s_x", dir.path()), Err(Error::InvalidName(_))));
    assert!(matches!(TcpShmServer::<TestConf>::new("x_s", dir.path()), Err(Error::InvalidName(_))));
    assert!(!tcpshm::msg::valid_name("a_b", 16));
}
