//! Helpers of the integration tests: a server on a thread of its own that
//! records what its handler saw, a recording client handler, and bounded
//! polling instead of sleeps.
#![allow(dead_code)]

pub mod proxy;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tcpshm::{
    ClientHandler, CloseReason, Connection, Error, LoginMsg, LoginRspMsg, Msg, SeqMismatch, ServerConf, ServerHandler,
    TcpShmClient, TcpShmServer,
};

/// A millisecond in the unit of `now`.
pub const MS: i64 = 1_000_000;

/// The tests' configuration: times in ns, short enough for timeouts to be
/// tested, small server limits so they can be reached.
pub struct TestConf;

impl tcpshm::Conf for TestConf {
    const SHM_QUEUE_SIZE: usize = 4096;
    const CONNECTION_TIMEOUT: i64 = 1_000 * MS;
    const HEARTBEAT_INTERVAL: i64 = 50 * MS;
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

impl ServerConf for TestConf {
    const MAX_NEW_CONNECTIONS: usize = 2;
    const MAX_TCP_CONNS_PER_GRP: usize = 2;
    const MAX_SHM_CONNS_PER_GRP: usize = 1;
    const NEW_CONNECTION_TIMEOUT: i64 = 300 * MS;
}

/// Nanoseconds since the first call: the `now` of every poll. (Not the
/// examples' `sys::now_ns`: tests that load the echo pair load that too.)
pub fn now_ns() -> i64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as i64
}

/// `len` bytes of a fixed xorshift sequence from `seed` (nonzero): noise
/// that is the same in every run.
pub fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Unique names for this process (shm objects and ports are global).
pub fn unique(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

/// The type of the message a greeting server pushes at each logon.
pub const GREETING: u16 = 99;

/// What a server's handler saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Logon(String),
    Disconnected(String, CloseReason),
    Mismatch(String, SeqMismatch),
    FileError(String),
    Msg(String, u16, Vec<u8>),
}

/// Each logon's client name and `(ack, seq_start, seq_end)`.
pub type LogonSeqs = Arc<Mutex<Vec<(String, Option<(u32, u32, u32)>)>>>;

/// A server handler that records events, rejects the names it is told to,
/// and echoes messages when `echo` is set.
#[derive(Default, Clone)]
pub struct Recorder {
    pub events: Arc<Mutex<Vec<Event>>>,
    pub reject: HashMap<String, Option<String>>,
    pub echo: bool,
    /// Sequence numbers seen at each logon, by client name.
    pub logon_seqs: LogonSeqs,
    /// Leave messages out of `events` (long streams).
    pub skip_msg_events: bool,
    /// The group each login goes to (0 for every login if unset).
    pub group: Arc<std::sync::atomic::AtomicUsize>,
    /// Push a greeting (type 99, the client's name) in `on_client_logon`.
    pub greet: bool,
}

impl Recorder {
    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }
}

impl<C: ServerConf> ServerHandler<C> for Recorder {
    fn on_new_connection(
        &mut self,
        _peer: std::net::SocketAddr,
        login: &LoginMsg<C>,
        _rsp: &mut C::LoginRspUserData,
    ) -> Result<usize, Option<String>> {
        match self.reject.get(&login.client_name) {
            Some(msg) => Err(msg.clone()),
            None => Ok(self.group.load(Ordering::Relaxed)),
        }
    }

    fn on_client_file_error(&mut self, conn: &Connection<C>, _error: &Error) {
        self.push(Event::FileError(conn.remote_name().into()));
    }

    fn on_seq_number_mismatch(&mut self, conn: &Connection<C>, m: &SeqMismatch) {
        self.push(Event::Mismatch(conn.remote_name().into(), *m));
    }

    fn on_client_logon(&mut self, _peer: std::net::SocketAddr, conn: &mut Connection<C>) {
        self.logon_seqs.lock().unwrap().push((conn.remote_name().into(), conn.seqs()));
        self.push(Event::Logon(conn.remote_name().into()));
        if self.greet {
            let name = conn.remote_name().to_owned();
            assert!(conn.send(GREETING, name.as_bytes()), "room for the greeting");
        }
    }

    fn on_client_disconnected(&mut self, conn: &mut Connection<C>, reason: CloseReason, _errno: i32) {
        self.push(Event::Disconnected(conn.remote_name().into(), reason));
    }

    fn on_client_msg(&mut self, conn: &mut Connection<C>, msg: Msg<'_>) {
        // Recorded before the echo, so a client that got the echo finds it here.
        if !self.skip_msg_events {
            self.push(Event::Msg(conn.remote_name().into(), msg.msg_type(), msg.body().to_vec()));
        }
        if self.echo {
            let Some(mut slot) = conn.alloc(msg.body().len()) else { return };
            slot.copy_from_slice(msg.body());
            slot.pop_received();
            slot.push(msg.msg_type());
        } else {
            conn.pop();
        }
    }
}

/// A server polled by one thread of its own until dropped.
pub struct ServerThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub addr: String,
    pub rec: Recorder,
}

impl ServerThread {
    pub fn start<C: ServerConf>(name: &str, dir: &Path, rec: Recorder) -> Self {
        Self::start_at::<C>(name, dir, "127.0.0.1:0", rec)
    }

    pub fn start_at<C: ServerConf>(name: &str, dir: &Path, addr: &str, rec: Recorder) -> Self {
        let mut server = TcpShmServer::<C>::new(name, dir).unwrap();
        server.start(addr).unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut h = rec.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let now = now_ns();
                server.poll_ctl(now, &mut h);
                for g in 0..C::MAX_TCP_GRPS {
                    server.poll_tcp(now, g, &mut h);
                }
                for g in 0..C::MAX_SHM_GRPS {
                    server.poll_shm(g, &mut h);
                }
            }
        });
        ServerThread { stop, thread: Some(thread), addr, rec }
    }

    pub fn events(&self) -> Vec<Event> {
        self.rec.events.lock().unwrap().clone()
    }

    /// Waits (bounded) until the recorded events satisfy `pred`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pred(&self.events()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; events: {:?}", self.events());
            std::thread::yield_now();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client handler that records what it saw and pops everything.
#[derive(Default)]
pub struct ClientRec {
    pub msgs: Vec<(u16, Vec<u8>)>,
    pub disconnected: Option<CloseReason>,
    pub rejected: Option<String>,
    pub mismatch: Option<SeqMismatch>,
    pub login_rsp: Option<(u32, u32, u32)>,
}

impl<C: tcpshm::Conf> ClientHandler<C> for ClientRec {
    fn on_login_reject(&mut self, rsp: &LoginRspMsg<C>) {
        self.rejected = Some(rsp.error_msg.clone());
    }

    fn on_login_success(&mut self, rsp: &LoginRspMsg<C>) -> Option<i64> {
        self.login_rsp = Some((rsp.ack_seq, rsp.server_seq_start, rsp.server_seq_end));
        Some(now_ns())
    }

    fn on_seq_number_mismatch(&mut self, m: &SeqMismatch) {
        self.mismatch = Some(*m);
    }

    fn on_server_msg(&mut self, conn: &mut Connection<C>, msg: Msg<'_>) {
        self.msgs.push((msg.msg_type(), msg.body().to_vec()));
        conn.pop();
    }

    fn on_disconnected(&mut self, reason: CloseReason, _errno: i32) {
        self.disconnected = Some(reason);
    }
}

/// Polls the client's TCP side (and shm side) until `done` or a deadline.
pub fn poll_until<C: tcpshm::Conf>(
    client: &mut TcpShmClient<C>,
    h: &mut ClientRec,
    what: &str,
    done: impl Fn(&mut TcpShmClient<C>, &ClientRec) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(client, h) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        client.poll_tcp(now_ns(), h);
        client.poll_shm(h);
    }
}

/// A raw socket logged in as `name` (TCP mode, fresh numbers), for tests
/// that play a misbehaving peer after the login.
pub fn raw_login(addr: &str, name: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let login = LoginMsg::<TestConf> {
        ack_seq: 0,
        client_seq_start: 0,
        client_seq_end: 0,
        user_data: 0,
        use_shm: false,
        client_name: name.into(),
        last_server_name: String::new(),
    };
    s.write_all(&login.encode()).unwrap();
    let mut rsp = vec![0u8; tcpshm::msg::LoginLayout::<TestConf>::RSP_FRAME];
    s.read_exact(&mut rsp).unwrap();
    assert_eq!(LoginRspMsg::<TestConf>::decode(&rsp).unwrap().status, tcpshm::LoginStatus::Ok);
    s
}
