//! The largest message the 16-bit size field allows crosses both ways in
//! both modes (the TCP receive buffer grows for it); one byte more is refused.

mod support;

use support::{poll_until, unique, ClientRec, Recorder, ServerThread, MS};
use tcpshm::msg::MAX_BODY_SIZE;
use tcpshm::{Conf, ServerConf, TcpShmClient};

struct BigConf;
impl Conf for BigConf {
    const SHM_QUEUE_SIZE: usize = 1 << 20;
    const TCP_QUEUE_SIZE: usize = 1 << 18;
    const TCP_RECV_BUF_INIT_SIZE: usize = 2000;
    const TCP_RECV_BUF_MAX_SIZE: usize = 1 << 17;
    const CONNECTION_TIMEOUT: i64 = 5_000 * MS;
    const HEARTBEAT_INTERVAL: i64 = 100 * MS;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}
impl ServerConf for BigConf {
    const NEW_CONNECTION_TIMEOUT: i64 = 3_000 * MS;
}

fn largest_message_round_trip(use_shm: bool, tag: &str) {
    let (sdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (srv, cli) = (unique(&format!("srv{tag}")), unique(&format!("cli{tag}")));
    let server = ServerThread::start::<BigConf>(&srv, sdir.path(), Recorder { echo: true, ..Default::default() });
    let mut client = TcpShmClient::<BigConf>::new(&cli, cdir.path()).unwrap();
    let mut h = ClientRec::default();
    client.connect(use_shm, server.addr.as_str(), 0, &mut h).unwrap();
    assert_eq!(MAX_BODY_SIZE, 65527);
    assert!(client.connection().alloc(MAX_BODY_SIZE + 1).is_none(), "size field would overflow");
    let body: Vec<u8> = (0..MAX_BODY_SIZE).map(|i| (i * 7 % 251) as u8).collect();
    for round in 0..3u16 {
        assert!(client.connection().send(1 + round, &body[..]));
    }
    poll_until(&mut client, &mut h, "three echoes", |_, h| h.msgs.len() == 3);
    for (round, (t, b)) in h.msgs.iter().enumerate() {
        assert_eq!(*t, 1 + round as u16);
        assert!(b == &body, "echo {round} differs");
    }
    drop(client);
    let _ = std::fs::remove_file(tcpshm::shm::shm_path(&cli, &srv));
    let _ = std::fs::remove_file(tcpshm::shm::shm_path(&srv, &cli));
}

#[test]
fn largest_message_over_tcp() {
    largest_message_round_trip(false, "t");
}

#[test]
fn largest_message_over_shm() {
    largest_message_round_trip(true, "s");
}
