//! [`TcpShmClient`]: logs in to a server and polls one [`Connection`].
//!
//! In TCP mode one thread calls [`poll_tcp`](TcpShmClient::poll_tcp). In
//! shared-memory mode messages travel through the shm queues while the socket
//! carries only heartbeats; both polls are needed and may run on two threads:
//! [`split`](TcpShmClient::split) borrows the client into a [`ClientTcp`] half
//! (socket, heartbeats, disconnect detection) and a [`ClientShm`] half (the
//! queues and the connection). The halves share only two atomics: the
//! socket's close reason (TCP half → shm half) and the user's close request
//! (shm half → TCP half).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Release};
use std::time::Duration;

use crate::conf::{Checked, Conf};
use crate::connection::{Connection, Tx};
use crate::error::{CloseReason, Error};
use crate::files;
use crate::msg::{valid_name, LoginLayout, LoginMsg, LoginRspMsg, LoginStatus, Msg, SeqMismatch};
use crate::ptcp::link::{Link, RecvBuf};
use crate::ptcp::wire::Wire;
use crate::ptcp::{lastserver_path, lock_path, Durability};
use crate::shm::ShmReceiver;

/// Callbacks of a client. Only [`on_server_msg`](Self::on_server_msg) is required.
pub trait ClientHandler<C: Conf> {
    /// `connect` failed on a system call or a bad response.
    fn on_system_error(&mut self, error: &Error) {
        let _ = error;
    }

    /// The server rejected the login; `rsp.error_msg` says why.
    fn on_login_reject(&mut self, rsp: &LoginRspMsg<C>) {
        let _ = rsp;
    }

    /// The login succeeded. Return the current time in the unit of the `now`
    /// passed to the polls to start the timeout and heartbeat clocks, or
    /// `None` to start them at the first poll.
    fn on_login_success(&mut self, rsp: &LoginRspMsg<C>) -> Option<i64> {
        let _ = rsp;
        None
    }

    /// The two sides' sequence numbers disagree; the login was refused and
    /// an operator must fix the queue files.
    fn on_seq_number_mismatch(&mut self, mismatch: &SeqMismatch) {
        let _ = mismatch;
    }

    /// A message from the server. Call `conn.pop()` once done with it, or it
    /// is delivered again by the next poll.
    fn on_server_msg(&mut self, conn: &mut Connection<C>, msg: Msg<'_>);

    /// The connection closed (reported by the TCP poll).
    fn on_disconnected(&mut self, reason: CloseReason, errno: i32) {
        let _ = (reason, errno);
    }
}

/// Why `connect` did not log in. The handler was told the same.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// A system call failed, a file is corrupt, or the response was bad.
    System(Error),
    /// The server rejected the login with this message.
    Rejected(String),
    /// The sequence numbers disagree.
    SeqMismatch(SeqMismatch),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::System(e) => write!(f, "{e}"),
            ConnectError::Rejected(m) => write!(f, "login rejected: {m}"),
            ConnectError::SeqMismatch(m) => write!(f, "seq number mismatch: {m}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// State the two halves of a shm-mode client share.
#[derive(Default)]
struct ShmLinkStatus {
    /// The socket's close reason, [`CloseReason::pack`]ed; 0 while up.
    closed: AtomicU64,
    /// Why the shm half closed the connection (the user, or a corrupt
    /// queue), packed likewise; the TCP half closes the socket with it.
    close_requested: AtomicU64,
}

/// A client of a tcpshm server.
pub struct TcpShmClient<C: Conf> {
    name: String,
    ptcp_dir: PathBuf,
    /// The `.lastserver` file's bytes (NAME_SIZE, NUL-padded; empty if
    /// there is no such file yet): the file is ours alone, so it is read once.
    lastserver: Vec<u8>,
    /// Holds the exclusive lock on `<name>.lock`: one client per name and directory.
    _identity: std::fs::File,
    conn: Connection<C>,
    rb: RecvBuf<C>,
    /// Shm mode: the server's queue to us.
    shm_rx: Option<ShmReceiver>,
    /// Shm mode: the heartbeat socket.
    shm_link: Option<Link<C>>,
    status: ShmLinkStatus,
    connect_timeout: Duration,
}

impl<C: Conf> TcpShmClient<C> {
    /// A client named `name` keeping its files in `ptcp_dir` (created if
    /// missing), with its queue file never flushed ([`Durability::Never`]).
    pub fn new(name: &str, ptcp_dir: impl AsRef<Path>) -> Result<Self, Error> {
        Self::with_durability(name, ptcp_dir, Durability::Never)
    }

    /// As [`new`](Self::new), with a durability policy for the queue file.
    pub fn with_durability(name: &str, ptcp_dir: impl AsRef<Path>, durability: Durability) -> Result<Self, Error> {
        #[allow(clippy::let_unit_value)]
        let () = Checked::<C>::CONF;
        if !valid_name(name, C::NAME_SIZE) {
            return Err(Error::InvalidName(name.to_owned()));
        }
        let ptcp_dir = ptcp_dir.as_ref().to_owned();
        std::fs::create_dir_all(&ptcp_dir).map_err(|e| Error::file("create ptcp dir", &ptcp_dir, e))?;
        let identity = lock_path(&ptcp_dir, name);
        let lock = files::private_options().open(&identity).map_err(|e| Error::file("open lock file", &identity, e))?;
        files::lock_exclusive(&lock, &identity)?;
        let lastserver = read_lastserver::<C>(&lastserver_path(&ptcp_dir, name))?;
        Ok(TcpShmClient {
            name: name.to_owned(),
            conn: Connection::new(name, &ptcp_dir, durability),
            ptcp_dir,
            lastserver,
            _identity: lock,
            rb: RecvBuf::new(),
            shm_rx: None,
            shm_link: None,
            status: ShmLinkStatus::default(),
            connect_timeout: Duration::from_secs(10),
        })
    }

    /// How long `connect` may block on connecting, sending the login and
    /// awaiting the response (default 10 s, as the C++ client).
    pub fn set_connect_timeout(&mut self, timeout: Duration) {
        self.connect_timeout = timeout;
    }

    /// The client's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory of the client's files.
    pub fn ptcp_dir(&self) -> &Path {
        &self.ptcp_dir
    }

    /// The server name this client last logged in to, if any.
    pub fn last_server_name(&self) -> Result<Option<String>, Error> {
        let field = &self.lastserver[..];
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        if end == 0 {
            return Ok(None);
        }
        match std::str::from_utf8(&field[..end]) {
            Ok(s) if valid_name(s, C::NAME_SIZE) => Ok(Some(s.to_owned())),
            _ => Err(Error::FileCorrupt {
                path: lastserver_path(&self.ptcp_dir, &self.name),
                detail: "does not hold a valid server name".into(),
            }),
        }
    }

    /// Remembers `name` as the last server, in the file at once (a crash
    /// leaves the old name or the new one) and then here.
    fn store_last_server_name(&mut self, name: &str) -> Result<(), Error> {
        let mut field = vec![0u8; C::NAME_SIZE];
        field[..name.len()].copy_from_slice(name.as_bytes());
        let path = lastserver_path(&self.ptcp_dir, &self.name);
        files::replace(&path, &field).map_err(|e| Error::file("write lastserver file", &path, e))?;
        self.lastserver = field;
        Ok(())
    }

    /// The connection; usable while disconnected once a server is known
    /// (messages wait in the queue for the next login).
    pub fn connection(&mut self) -> &mut Connection<C> {
        &mut self.conn
    }

    /// Connects to `addr` (IPv4 or IPv6) and logs in, in shared-memory mode
    /// if `use_shm`, blocking for at most about the connect timeout. Every
    /// failure is also reported to `handler`.
    pub fn connect<A: ToSocketAddrs>(
        &mut self,
        use_shm: bool,
        addr: A,
        login_user_data: C::LoginUserData,
        handler: &mut impl ClientHandler<C>,
    ) -> Result<(), ConnectError> {
        let result = self.try_connect(use_shm, addr, login_user_data, handler);
        match &result {
            Err(ConnectError::System(e)) => handler.on_system_error(e),
            Err(ConnectError::SeqMismatch(m)) => handler.on_seq_number_mismatch(m),
            _ => {}
        }
        result
    }

    fn try_connect<A: ToSocketAddrs>(
        &mut self,
        use_shm: bool,
        addr: A,
        login_user_data: C::LoginUserData,
        handler: &mut impl ClientHandler<C>,
    ) -> Result<(), ConnectError> {
        let login = self.begin_login(use_shm, login_user_data)?;
        let (stream, rsp) = self.exchange_login(addr, &login).map_err(ConnectError::System)?;
        stream.set_nonblocking(true).map_err(|e| ConnectError::System(Error::io("set_nonblocking", e)))?;
        self.finish_login(&login, stream, rsp, handler)
    }

    /// The first half of a login, before any byte goes out: drops the old
    /// sockets, opens the queue files of the last server, and makes the
    /// login message from them.
    pub(crate) fn begin_login(
        &mut self,
        use_shm: bool,
        login_user_data: C::LoginUserData,
    ) -> Result<LoginMsg<C>, ConnectError> {
        let sys = ConnectError::System;
        if self.conn.is_shm() && self.shm_link.is_none() {
            // The TCP half saw the socket close; the shm half may not have polled since.
            self.conn.set_closed(
                CloseReason::unpack(self.status.closed.load(Acquire)).unwrap_or((CloseReason::RequestClose, 0)),
            );
        }
        if !self.conn.is_closed() {
            return Err(sys(Error::AlreadyConnected));
        }
        self.drop_sockets();
        let last_server = self.last_server_name().map_err(sys)?;
        let mut login = LoginMsg::<C> {
            ack_seq: 0,
            client_seq_start: 0,
            client_seq_end: 0,
            user_data: login_user_data,
            use_shm,
            client_name: self.name.clone(),
            last_server_name: last_server.clone().unwrap_or_default(),
        };
        self.shm_rx = None;
        if let Some(server) = &last_server {
            self.conn.set_remote_name(server);
            self.shm_rx = self.conn.open(use_shm).map_err(sys)?;
            if let Some((ack, start, end)) = self.conn.seqs().filter(|_| !use_shm) {
                (login.ack_seq, login.client_seq_start, login.client_seq_end) = (ack, start, end);
            }
        }
        Ok(login)
    }

    /// The second half of a login, once the server's response to `login`
    /// arrived on `wire` (non-blocking from here on): a new server empties
    /// the queues, then the link starts.
    pub(crate) fn finish_login(
        &mut self,
        login: &LoginMsg<C>,
        wire: impl Into<Wire>,
        rsp: LoginRspMsg<C>,
        handler: &mut impl ClientHandler<C>,
    ) -> Result<(), ConnectError> {
        let sys = ConnectError::System;
        match rsp.status {
            LoginStatus::Ok => {}
            LoginStatus::SeqMismatch => {
                return Err(ConnectError::SeqMismatch(SeqMismatch {
                    local_ack_seq: login.ack_seq,
                    local_seq_start: login.client_seq_start,
                    local_seq_end: login.client_seq_end,
                    remote_ack_seq: rsp.ack_seq,
                    remote_seq_start: rsp.server_seq_start,
                    remote_seq_end: rsp.server_seq_end,
                }));
            }
            LoginStatus::Rejected => {
                handler.on_login_reject(&rsp);
                return Err(ConnectError::Rejected(rsp.error_msg));
            }
        }
        if login.last_server_name != rsp.server_name {
            // A new server (a new day, say): start from an empty queue, and
            // only then remember its name, so a crash in between resets again.
            self.conn.set_remote_name(&rsp.server_name);
            self.shm_rx = self.conn.open(login.use_shm).map_err(sys)?;
            if !login.use_shm {
                self.conn.reset_tcp();
            }
            // Shared-memory queues are the server's to empty: it did so
            // before answering, while we waited, and may have pushed since
            // (in `on_client_logon`); emptying them again would wipe that.
            self.store_last_server_name(&rsp.server_name).map_err(sys)?;
        }
        let now = handler.on_login_success(&rsp);
        self.rb = RecvBuf::new();
        let link = Link::new(wire, now);
        if login.use_shm {
            self.shm_link = Some(link);
            self.status = ShmLinkStatus::default();
            self.conn.set_open();
        } else {
            self.conn.start_link(link, rsp.ack_seq);
        }
        Ok(())
    }

    /// Connects, sends the login in one write and reads exactly one response
    /// frame (the server may send resent messages right behind it).
    fn exchange_login<A: ToSocketAddrs>(
        &self,
        addr: A,
        login: &LoginMsg<C>,
    ) -> Result<(TcpStream, LoginRspMsg<C>), Error> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| Error::io("resolve", e))?.collect();
        let mut last_err = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to connect to");
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let mut stream = stream.ok_or_else(|| Error::io("connect", last_err))?;
        let setup = |s: &TcpStream| -> std::io::Result<()> {
            s.set_nodelay(C::TCP_NO_DELAY)?;
            s.set_read_timeout(Some(self.connect_timeout))?;
            s.set_write_timeout(Some(self.connect_timeout))
        };
        setup(&stream).map_err(|e| Error::io("setsockopt", e))?;
        stream.write_all(&login.encode()).map_err(|e| Error::io("send", e))?;
        let mut frame = vec![0u8; LoginLayout::<C>::RSP_FRAME];
        stream.read_exact(&mut frame).map_err(|e| match e.kind() {
            // The read timeout (the connect timeout) passed without a response.
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                Error::io("recv login response", std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))
            }
            _ => Error::io("recv login response", e),
        })?;
        let rsp = LoginRspMsg::<C>::decode(&frame).map_err(|e| {
            Error::InvalidLoginRsp(match e {
                crate::msg::LoginDecodeError::WrongSize => "wrong size",
                crate::msg::LoginDecodeError::WrongType => "wrong type",
                crate::msg::LoginDecodeError::InvalidName => "invalid server name",
            })
        })?;
        Ok((stream, rsp))
    }

    /// Polls the socket: heartbeats and timeouts in both modes, and in TCP
    /// mode receiving and delivering the server's messages. Reports a
    /// disconnect once.
    pub fn poll_tcp(&mut self, now: i64, handler: &mut impl ClientHandler<C>) {
        self.split().0.poll(now, handler)
    }

    /// Shm mode: delivers the server's messages from the shm queue.
    pub fn poll_shm(&mut self, handler: &mut impl ClientHandler<C>) {
        self.split().1.poll(handler)
    }

    /// Borrows the client as its TCP half and its shm half, for polling them
    /// from two threads (e.g. with `std::thread::scope`). In TCP mode the TCP
    /// half holds the connection; in shm mode the shm half does.
    pub fn split(&mut self) -> (ClientTcp<'_, C>, ClientShm<'_, C>) {
        let shm = self.conn.is_shm();
        let conn = &mut self.conn;
        let (tcp_conn, shm_conn) = if shm { (None, Some(conn)) } else { (Some(conn), None) };
        (
            ClientTcp { conn: tcp_conn, rb: &mut self.rb, shm_link: &mut self.shm_link, status: &self.status },
            ClientShm { conn: shm_conn, rx: &mut self.shm_rx, status: &self.status },
        )
    }

    /// Closes the connection's socket and its files. `connect` opens them again.
    pub fn stop(&mut self) {
        self.drop_sockets();
        self.shm_rx = None;
        self.conn.set_remote_name("");
    }

    fn drop_sockets(&mut self) {
        if let Tx::Tcp { link, .. } = &mut self.conn.tx {
            *link = None;
        }
        self.shm_link = None;
        self.conn.set_closed((CloseReason::RequestClose, 0));
    }
}

/// Reads the `.lastserver` file: NAME_SIZE bytes, or nothing if it does
/// not exist yet (or is empty).
fn read_lastserver<C: Conf>(path: &Path) -> Result<Vec<u8>, Error> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() == C::NAME_SIZE => Ok(bytes),
        // Empty: made by an older version that crashed before sizing it.
        Ok(bytes) if bytes.is_empty() => Ok(bytes),
        Ok(bytes) => Err(Error::FileCorrupt {
            path: path.to_owned(),
            detail: format!("has {} bytes, NAME_SIZE is {}", bytes.len(), C::NAME_SIZE),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::file("read lastserver file", path, e)),
    }
}

/// The socket half of a client: heartbeats, timeouts, disconnect reports, and
/// in TCP mode the connection and its messages.
pub struct ClientTcp<'a, C: Conf> {
    conn: Option<&'a mut Connection<C>>,
    rb: &'a mut RecvBuf<C>,
    shm_link: &'a mut Option<Link<C>>,
    status: &'a ShmLinkStatus,
}

impl<C: Conf> ClientTcp<'_, C> {
    /// See [`TcpShmClient::poll_tcp`].
    pub fn poll(&mut self, now: i64, handler: &mut impl ClientHandler<C>) {
        if let Some(conn) = self.conn.as_deref_mut() {
            conn.poll_tcp(self.rb, now, |c, m| handler.on_server_msg(c, m));
            if let Some((reason, errno)) = conn.take_link() {
                handler.on_disconnected(reason, errno);
            }
        } else if let Some(link) = self.shm_link.as_mut() {
            if let Some((reason, errno)) = CloseReason::unpack(self.status.close_requested.load(Acquire)) {
                link.close(reason, errno);
            }
            link.heartbeat(now, None);
            let _ = link.front(self.rb, None);
            if let Some((reason, errno)) = link.closed() {
                self.status.closed.store(CloseReason::pack(reason, errno), Release);
                *self.shm_link = None;
                handler.on_disconnected(reason, errno);
            }
        }
    }

    /// The connection, in TCP mode.
    pub fn connection(&mut self) -> Option<&mut Connection<C>> {
        self.conn.as_deref_mut()
    }

    /// Whether the socket is down.
    pub fn is_closed(&self) -> bool {
        match &self.conn {
            Some(conn) => conn.is_closed(),
            None => self.shm_link.is_none(),
        }
    }
}

/// The shared-memory half of a client: the connection and the server's queue.
pub struct ClientShm<'a, C: Conf> {
    conn: Option<&'a mut Connection<C>>,
    rx: &'a mut Option<ShmReceiver>,
    status: &'a ShmLinkStatus,
}

impl<C: Conf> ClientShm<'_, C> {
    /// See [`TcpShmClient::poll_shm`].
    #[inline]
    pub fn poll(&mut self, handler: &mut impl ClientHandler<C>) {
        let (Some(conn), Some(rx)) = (self.conn.as_deref_mut(), self.rx.as_mut()) else { return };
        if !conn.is_closed() {
            if let Some(closed) = CloseReason::unpack(self.status.closed.load(Acquire)) {
                conn.set_closed(closed);
            }
        }
        conn.poll_shm(rx, |c, m| handler.on_server_msg(c, m));
        if std::mem::take(&mut conn.close_requested) {
            let (reason, errno) = conn.close_reason().unwrap_or((CloseReason::RequestClose, 0));
            self.status.close_requested.store(CloseReason::pack(reason, errno), Release);
        }
    }

    /// The connection, in shm mode.
    pub fn connection(&mut self) -> Option<&mut Connection<C>> {
        self.conn.as_deref_mut()
    }
}

// The halves may poll from two threads, whatever the configuration.
#[allow(dead_code)]
const _: () = {
    fn assert_send<T: Send>() {}
    fn halves_are_send<C: Conf>() {
        assert_send::<ClientTcp<'static, C>>();
        assert_send::<ClientShm<'static, C>>();
        assert_send::<TcpShmClient<C>>();
    }
};
