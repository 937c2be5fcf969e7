//! Hostile files: whatever a queue file or a `.lastserver` file holds, the
//! library reports it as an error naming the file, through the connect
//! result and the callbacks, and never panics or reads out of bounds. (Shm
//! queues with nonsense indices: `liveness.rs`; truncated or older queue
//! files: `seq_mismatch.rs`; the loaders over arbitrary bytes: `fuzz/`.)

mod support;

use std::path::Path;

use support::{poll_until, unique, ClientRec, Event, Recorder, ServerThread, TestConf};
use tcpshm::ptcp::{lastserver_path, ptcp_path};
use tcpshm::{ConnectError, Error, TcpShmClient};

/// Another configuration whose queue files differ (their TCP_QUEUE_SIZE).
struct BigQueueConf;

impl tcpshm::Conf for BigQueueConf {
    const TCP_QUEUE_SIZE: usize = 4096;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

/// A client that once talked to `server`, so it has its files.
fn client_with_history(dir: &Path, server: &ServerThread) {
    let mut client = TcpShmClient::<TestConf>::new("hf", dir).unwrap();
    let mut h = ClientRec::default();
    client.connect(false, server.addr.as_str(), 0, &mut h).unwrap();
    assert!(client.connection().send(1, &1u64));
    poll_until(&mut client, &mut h, "the echo", |_, h| h.msgs.len() == 1);
}

fn corrupt_path(r: Result<(), ConnectError>) -> std::path::PathBuf {
    match r {
        Err(ConnectError::System(Error::FileCorrupt { path, .. })) => path,
        other => panic!("expected a corrupt file, got {other:?}"),
    }
}

fn echo_server(dir: &Path) -> ServerThread {
    ServerThread::start::<TestConf>(&unique("hfs"), dir, Recorder { echo: true, ..Default::default() })
}

#[test]
fn garbage_client_queue_files_are_reported() {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = echo_server(sdir.path());
    client_with_history(cdir.path(), &server);
    let srv_name = std::fs::read(lastserver_path(cdir.path(), "hf")).unwrap();
    let srv_name = String::from_utf8(srv_name.into_iter().take_while(|&b| b != 0).collect()).unwrap();
    let file = ptcp_path(cdir.path(), "hf", &srv_name);
    let len = std::fs::metadata(&file).unwrap().len() as usize;
    let random = support::random_bytes(len, 0x9e37_79b9_7f4a_7c15);
    let other_conf = {
        // A client of another Conf that knew the same server opens its file
        // at connect, before the login (which fails: nobody listens).
        let d = tempfile::tempdir().unwrap();
        std::fs::copy(lastserver_path(cdir.path(), "hf"), lastserver_path(d.path(), "hf")).unwrap();
        let mut c = TcpShmClient::<BigQueueConf>::new("hf", d.path()).unwrap();
        let _ = c.connect(false, "127.0.0.1:9", 0, &mut ClientRec::default());
        std::fs::read(ptcp_path(d.path(), "hf", &srv_name)).unwrap()
    };
    for (what, bytes) in [("zeroes", vec![0u8; len]), ("random", random), ("another Conf's file", other_conf)] {
        std::fs::write(&file, &bytes).unwrap();
        let mut client = TcpShmClient::<TestConf>::new("hf", cdir.path()).unwrap();
        let r = client.connect(false, server.addr.as_str(), 0, &mut ClientRec::default());
        assert_eq!(corrupt_path(r), file, "{what}");
    }
}

#[test]
fn garbage_server_queue_file_is_a_file_error_and_a_refused_login() {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = unique("hfs");
    {
        let server = ServerThread::start::<TestConf>(&name, sdir.path(), Recorder { echo: true, ..Default::default() });
        client_with_history(cdir.path(), &server);
    }
    let file = ptcp_path(sdir.path(), &name, "hf");
    let len = std::fs::metadata(&file).unwrap().len() as usize;
    std::fs::write(&file, vec![0xa5u8; len]).unwrap();
    let server = ServerThread::start::<TestConf>(&name, sdir.path(), Recorder { echo: true, ..Default::default() });
    let mut client = TcpShmClient::<TestConf>::new("hf", cdir.path()).unwrap();
    let r = client.connect(false, server.addr.as_str(), 0, &mut ClientRec::default());
    assert!(matches!(&r, Err(ConnectError::Rejected(m)) if m == "System error"), "{r:?}");
    server.wait_for("the file error", |e| e.contains(&Event::FileError("hf".into())));
}

#[test]
fn bad_lastserver_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = lastserver_path(dir.path(), "hf");
    std::fs::write(&path, b"short").unwrap();
    match TcpShmClient::<TestConf>::new("hf", dir.path()) {
        Err(Error::FileCorrupt { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected a corrupt .lastserver, got {:?}", other.err()),
    }
    // The right size, but no valid name in it.
    let mut bytes = vec![0u8; <TestConf as tcpshm::Conf>::NAME_SIZE];
    bytes[..3].copy_from_slice(b"a/b");
    std::fs::write(&path, &bytes).unwrap();
    let mut client = TcpShmClient::<TestConf>::new("hf", dir.path()).unwrap();
    let r = client.connect(false, "127.0.0.1:9", 0, &mut ClientRec::default());
    assert_eq!(corrupt_path(r), path);
}
