//! The control part of a server: the listener, sockets waiting for their
//! login, the login decision, the heartbeat sockets of shm connections, and
//! disconnect reports.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::handoff::Owner;
use super::{GroupShared, Rx, ServerHandler, SlotConn};
use crate::conf::ServerConf;
use crate::connection::Connection;
use crate::error::{CloseReason, Error};
use crate::msg::{
    valid_name, LoginDecodeError, LoginLayout, LoginMsg, LoginRspMsg, LoginStatus, SeqMismatch, HEADER_SIZE,
};
use crate::ptcp::link::{Link, RecvBuf};
use crate::ptcp::wire::Wire;
use crate::ptcp::{ack_in_range, Durability};

/// The C++ server's rejection texts, which C++ clients may match on.
const ERR_INVALID_NAME: &str = "Invalid client name";
const ERR_LOGIN_REJECT: &str = "Login Reject";
const ERR_ALREADY_LOGGED_ON: &str = "Already loggned on";
const ERR_SYSTEM: &str = "System error";
const ERR_MAX_CLIENTS: &str = "Max client cnt exceeded";

/// A socket waiting for its login frame, which may arrive in pieces.
struct PendingLogin {
    stream: TcpStream,
    peer: SocketAddr,
    since: i64,
    frame: Vec<u8>,
    filled: usize,
}

/// The control part's view of one group.
struct CtlGroup<C: ServerConf> {
    shared: Arc<GroupShared<C>>,
    /// The client name bound to each slot, for the life of the server.
    names: Vec<Option<String>>,
    /// Shm groups: each live slot's heartbeat socket.
    links: Vec<Option<(Link<C>, RecvBuf<C>)>>,
    seen: u32,
}

/// The control part of a server. `Send`.
pub struct ServerCtl<C: ServerConf> {
    name: String,
    ptcp_dir: PathBuf,
    durability: Durability,
    listener: Option<TcpListener>,
    pending: Vec<Option<PendingLogin>>,
    tcp: Vec<CtlGroup<C>>,
    shm: Vec<CtlGroup<C>>,
}

impl<C: ServerConf> ServerCtl<C> {
    pub(crate) fn new(
        name: &str,
        ptcp_dir: &Path,
        durability: Durability,
        tcp: &[Arc<GroupShared<C>>],
        shm: &[Arc<GroupShared<C>>],
    ) -> Result<Self, Error> {
        if !valid_name(name, C::NAME_SIZE) {
            return Err(Error::InvalidName(name.to_owned()));
        }
        std::fs::create_dir_all(ptcp_dir).map_err(|e| Error::file("create ptcp dir", ptcp_dir, e))?;
        let group = |shared: &Arc<GroupShared<C>>| CtlGroup {
            shared: shared.clone(),
            names: vec![None; shared.slots.len()],
            links: (0..shared.slots.len()).map(|_| None).collect(),
            seen: 0,
        };
        Ok(ServerCtl {
            name: name.to_owned(),
            ptcp_dir: ptcp_dir.to_owned(),
            durability,
            listener: None,
            pending: (0..C::MAX_NEW_CONNECTIONS).map(|_| None).collect(),
            tcp: tcp.iter().map(group).collect(),
            shm: shm.iter().map(group).collect(),
        })
    }

    /// Starts listening on `addr`.
    pub fn start<A: ToSocketAddrs>(&mut self, addr: A) -> Result<(), Error> {
        if self.listener.is_some() {
            return Err(Error::AlreadyStarted);
        }
        let listener = TcpListener::bind(addr).map_err(|e| Error::io("bind", e))?;
        listener.set_nonblocking(true).map_err(|e| Error::io("set_nonblocking", e))?;
        self.listener = Some(listener);
        Ok(())
    }

    /// The address the server listens on, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref()?.local_addr().ok()
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// See [`TcpShmServer::poll_ctl`](super::TcpShmServer::poll_ctl),
    /// which also says how often: every millisecond or so, on a timer, on a
    /// thread that sleeps between polls or between turns of a group's loop.
    pub fn poll(&mut self, now: i64, handler: &mut impl ServerHandler<C>) {
        self.accept_one(now, handler);
        for i in 0..self.pending.len() {
            self.poll_pending(i, now, handler);
        }
        for g in 0..self.shm.len() {
            self.poll_shm_links(g, now);
        }
        for g in 0..self.tcp.len() {
            report_returned(&mut self.tcp[g], handler);
        }
        for g in 0..self.shm.len() {
            report_returned(&mut self.shm[g], handler);
        }
    }

    /// Accepts at most one socket per poll. When every login slot is taken,
    /// the socket that has waited longest gives its slot up: otherwise a
    /// flood of sockets that never log in (each holding a slot until
    /// `NEW_CONNECTION_TIMEOUT`) would starve the honest clients queued
    /// behind it, where now each waits at most `MAX_NEW_CONNECTIONS` accepts.
    /// (The C++ server closes the newcomer instead.)
    fn accept_one(&mut self, now: i64, handler: &mut impl ServerHandler<C>) {
        let Some(listener) = &self.listener else { return };
        match listener.accept() {
            Ok((stream, peer)) => {
                if stream.set_nonblocking(true).and_then(|()| stream.set_nodelay(C::TCP_NO_DELAY)).is_err() {
                    return;
                }
                let free = self.pending.iter().position(Option::is_none).unwrap_or_else(|| {
                    let oldest = self.pending.iter().enumerate().min_by_key(|(_, p)| p.as_ref().map(|p| p.since));
                    oldest.map_or(0, |(i, _)| i)
                });
                // Replacing a pending login drops (closes) its socket.
                self.pending[free] = Some(PendingLogin {
                    stream,
                    peer,
                    since: now,
                    frame: vec![0; LoginLayout::<C>::LOGIN_FRAME],
                    filled: 0,
                });
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(e) => handler.on_system_error(&Error::io("accept", e)),
        }
    }

    /// Reads what arrived of a pending login; handles it once whole, drops
    /// the socket on a bad header, a close, or the login timeout.
    fn poll_pending(&mut self, i: usize, now: i64, handler: &mut impl ServerHandler<C>) {
        let Some(p) = &mut self.pending[i] else { return };
        let done = match p.stream.read(&mut p.frame[p.filled..]) {
            Ok(0) => true,
            Ok(n) => {
                p.filled += n;
                p.filled >= HEADER_SIZE && !LoginMsg::<C>::header_plausible(&p.frame[..HEADER_SIZE])
                    || p.filled == p.frame.len()
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                now - p.since > C::NEW_CONNECTION_TIMEOUT
            }
            Err(_) => true,
        };
        if !done {
            return;
        }
        let Some(p) = self.pending[i].take() else { return };
        if p.filled == p.frame.len() {
            self.handle_login(now, p, handler);
        }
    }

    fn handle_login(&mut self, now: i64, p: PendingLogin, handler: &mut impl ServerHandler<C>) {
        self.serve_login(now, &p.frame, p.peer, Wire::from(p.stream), handler);
    }

    /// Answers the login `frame` that arrived whole on `wire` from `peer`:
    /// refused with a response, or accepted, the connection then going live
    /// in the group the handler chose with `wire` as its link.
    pub(crate) fn serve_login(
        &mut self,
        now: i64,
        frame: &[u8],
        peer: SocketAddr,
        mut wire: Wire,
        handler: &mut impl ServerHandler<C>,
    ) {
        let mut rsp = LoginRspMsg::<C>::new(&self.name, LoginStatus::Rejected);
        let login = match LoginMsg::<C>::decode(frame) {
            Ok(login) => login,
            Err(LoginDecodeError::InvalidName) => return reject(&mut wire, rsp, ERR_INVALID_NAME),
            Err(_) => return, // wrong size or type: dropped without an answer, as the C++ server
        };
        let grp = match handler.on_new_connection(peer, &login, &mut rsp.user_data) {
            Ok(grp) => grp,
            Err(msg) => {
                let msg = msg.filter(|m| !m.is_empty()).unwrap_or_else(|| ERR_LOGIN_REJECT.into());
                return reject(&mut wire, rsp, &msg);
            }
        };
        let groups = if login.use_shm { &self.shm } else { &self.tcp };
        if grp >= groups.len() {
            return reject(&mut wire, rsp, ERR_LOGIN_REJECT);
        }
        // A name has one slot in the whole server, or two groups could map
        // its files at once. Bound to a slot elsewhere (another group, or
        // the other mode), its connection moves here if it is idle, with its
        // user data; a live one refuses the login.
        let mut moved = None;
        let elsewhere = self.binding(&login.client_name).filter(|&(shm, g, _)| (shm, g) != (login.use_shm, grp));
        if let Some((shm, g, i)) = elsewhere {
            let target = if login.use_shm { &self.shm[grp] } else { &self.tcp[grp] };
            if !target.names.iter().any(Option::is_none) {
                // No room where it goes: it stays bound where it is.
                return reject(&mut wire, rsp, ERR_MAX_CLIENTS);
            }
            let old = if shm { &mut self.shm[g] } else { &mut self.tcp[g] };
            report_slot(old, i, handler);
            // SAFETY: this control part is the only control side of the slot
            // and `&mut self` keeps it on one thread.
            match unsafe { old.shared.slots[i].ctl_with(|slot, _| slot.take()) } {
                None => return reject(&mut wire, rsp, ERR_ALREADY_LOGGED_ON),
                Some(conn) => {
                    old.names[i] = None;
                    moved = conn;
                }
            }
        }
        let group = if login.use_shm { &mut self.shm[grp] } else { &mut self.tcp[grp] };
        // The slot bound to this name, or else the first unbound one.
        let idx = group.names.iter().position(|n| n.as_deref() == Some(&login.client_name));
        let Some(idx) = idx.or_else(|| group.names.iter().position(Option::is_none)) else {
            return reject(&mut wire, rsp, ERR_MAX_CLIENTS);
        };
        group.names[idx] = Some(login.client_name.clone());
        report_slot(group, idx, handler);
        let cell = &group.shared.slots[idx];
        let (name, dir, durability) = (&self.name, &self.ptcp_dir, self.durability);
        let mut wire = Some(wire);
        // SAFETY: this control part is the only control side of the slot and
        // `&mut self` keeps it on one thread.
        let logged_on = unsafe {
            cell.ctl_with(|slot, _| {
                if let Some(conn) = moved.take() {
                    *slot = Some(conn);
                }
                let slot = slot.get_or_insert_with(|| SlotConn {
                    conn: {
                        let mut c = Connection::new(name, dir, durability);
                        c.set_remote_name(&login.client_name);
                        c
                    },
                    rx: None,
                });
                login_slot(name, now, slot, &login, peer, wire.take(), rsp, handler)
            })
        };
        match logged_on {
            None => {
                if let Some(wire) = &mut wire {
                    let rsp = LoginRspMsg::<C>::new(&self.name, LoginStatus::Rejected);
                    reject(wire, rsp, ERR_ALREADY_LOGGED_ON);
                }
            }
            Some(None) => {}
            Some(Some(link)) => {
                if let Some(link) = link {
                    group.links[idx] = Some((link, RecvBuf::new()));
                }
                // SAFETY: as above; the control part owns the slot until this store.
                unsafe { cell.hand_to_group() };
                group.shared.to_group.raise();
            }
        }
    }

    /// Where `client` is bound: (shm, group, slot).
    fn binding(&self, client: &str) -> Option<(bool, usize, usize)> {
        let kinds = [(false, &self.tcp), (true, &self.shm)];
        kinds.into_iter().find_map(|(shm, groups)| {
            groups.iter().enumerate().find_map(|(g, group)| {
                let i = group.names.iter().position(|n| n.as_deref() == Some(client))?;
                Some((shm, g, i))
            })
        })
    }

    /// Shm groups: heartbeats of each live slot's socket; a closed socket
    /// asks the group to hand the connection back.
    fn poll_shm_links(&mut self, g: usize, now: i64) {
        let group = &mut self.shm[g];
        for (idx, entry) in group.links.iter_mut().enumerate() {
            let Some((link, rb)) = entry else { continue };
            link.heartbeat(now, None);
            let _ = link.front(rb, None);
            if link.closed().is_some() {
                group.shared.slots[idx].request_close();
            }
        }
    }

    /// Stops listening, drops pending logins and closes shm sockets; live
    /// connections are asked back from their groups.
    pub fn stop(&mut self) {
        self.listener = None;
        self.pending.iter_mut().for_each(|p| *p = None);
        for group in self.tcp.iter_mut().chain(self.shm.iter_mut()) {
            for (idx, link) in group.links.iter_mut().enumerate() {
                if let Some((l, _)) = link {
                    l.close(CloseReason::RequestClose, 0);
                }
                group.shared.slots[idx].request_close();
            }
        }
    }

    /// After `stop` in one thread: marks handed-back slots idle unreported.
    pub(crate) fn forget_closed(&mut self) {
        for group in self.tcp.iter_mut().chain(self.shm.iter_mut()) {
            for (idx, cell) in group.shared.slots.iter().enumerate() {
                group.links[idx] = None;
                // SAFETY: as in `handle_login`.
                unsafe {
                    if cell.ctl_with(|_, _| ()).is_some() {
                        cell.ctl_set_idle();
                    }
                }
            }
        }
    }
}

/// Answers a login with a rejection; the socket closes when dropped.
fn reject<C: ServerConf>(wire: &mut Wire, mut rsp: LoginRspMsg<C>, msg: &str) {
    rsp.status = LoginStatus::Rejected;
    rsp.error_msg = msg.to_owned();
    let _ = wire.write(&rsp.encode());
}

/// The login of a client on its slot, which the control part owns. Returns
/// `None` if it was refused (the response is sent), else the heartbeat link
/// for a shm connection (`Some(None)` for TCP, whose link is in the connection).
#[allow(clippy::too_many_arguments)]
fn login_slot<C: ServerConf>(
    server_name: &str,
    now: i64,
    slot: &mut SlotConn<C>,
    login: &LoginMsg<C>,
    peer: SocketAddr,
    wire: Option<Wire>,
    mut rsp: LoginRspMsg<C>,
    handler: &mut impl ServerHandler<C>,
) -> Option<Option<Link<C>>> {
    let mut wire = wire?;
    let conn = &mut slot.conn;
    let new_day = login.last_server_name != server_name;
    let opened = if login.use_shm && new_day { conn.open_shm_emptied().map(Some) } else { conn.open(login.use_shm) };
    let shm_rx = match opened {
        Ok(rx) => rx,
        Err(e) => {
            handler.on_client_file_error(conn, &e);
            reject(&mut wire, rsp, ERR_SYSTEM);
            return None;
        }
    };
    let (mut remote_ack, mut remote_start, mut remote_end) =
        (login.ack_seq, login.client_seq_start, login.client_seq_end);
    if new_day {
        // The client last saw another server (or none): it starts afresh, and
        // so do we (the shared-memory queues were emptied as they opened),
        // unless it never logged in anywhere and our queue is
        // where a first login left it (nothing acked, nothing received).
        // Then the client has read nothing of ours (it stores our name
        // before it reads a message), and the queue holds only what we
        // pushed since a login it did not finish, which it still needs.
        // A client that names another server may have read and popped ours
        // before it moved on, its ack lost: only emptying is safe then.
        let first_login = login.last_server_name.is_empty();
        let untouched = conn.seqs().is_some_and(|(ack, start, _)| ack == 0 && start == 0);
        if !(first_login && untouched) {
            conn.reset_tcp();
        }
        (remote_ack, remote_start, remote_end) = (0, 0, 0);
    }
    let (local_ack, local_start, local_end) = conn.seqs().unwrap_or((0, 0, 0));
    (rsp.ack_seq, rsp.server_seq_start, rsp.server_seq_end) = (local_ack, local_start, local_end);
    let seqs = SeqMismatch {
        local_ack_seq: local_ack,
        local_seq_start: local_start,
        local_seq_end: local_end,
        remote_ack_seq: remote_ack,
        remote_seq_start: remote_start,
        remote_seq_end: remote_end,
    };
    if !(ack_in_range(remote_ack, local_start, local_end) && ack_in_range(local_ack, remote_start, remote_end)) {
        handler.on_seq_number_mismatch(conn, &seqs);
        rsp.status = LoginStatus::SeqMismatch;
        let _ = wire.write(&rsp.encode());
        return None;
    }
    rsp.status = LoginStatus::Ok;
    let frame = rsp.encode();
    if !matches!(wire.write(&frame), Ok(n) if n == frame.len()) {
        return None;
    }
    let link = Link::new(wire, Some(now));
    let shm_link = if let Some(rx) = shm_rx {
        slot.rx = Some(Rx::Shm(rx));
        conn.set_open();
        Some(link)
    } else {
        slot.rx = Some(Rx::Tcp(RecvBuf::new()));
        conn.start_link(link, remote_ack);
        None
    };
    handler.on_client_logon(peer, conn);
    Some(shm_link)
}

/// Reports the disconnects of the slots a group handed back since last time.
fn report_returned<C: ServerConf>(group: &mut CtlGroup<C>, handler: &mut impl ServerHandler<C>) {
    if group.shared.to_ctl.changed(&mut group.seen) {
        for idx in 0..group.shared.slots.len() {
            report_slot(group, idx, handler);
        }
    }
}

/// If the group handed slot `idx` back, reports its disconnect (with the
/// reason of the connection, or of its shm heartbeat socket) and idles it.
fn report_slot<C: ServerConf>(group: &mut CtlGroup<C>, idx: usize, handler: &mut impl ServerHandler<C>) {
    let cell = &group.shared.slots[idx];
    let link = &mut group.links[idx];
    // SAFETY: as in `ServerCtl::handle_login`.
    unsafe {
        let reported = cell.ctl_with(|slot, owner| {
            if owner != Owner::CtlClosed {
                return false;
            }
            if let Some(slot) = slot {
                if let Some((mut l, _)) = link.take() {
                    l.close(CloseReason::RequestClose, 0);
                    if let Some(closed) = l.closed() {
                        slot.conn.set_closed(closed);
                    }
                }
                let (reason, errno) = slot.conn.close_reason().unwrap_or((CloseReason::RequestClose, 0));
                handler.on_client_disconnected(&mut slot.conn, reason, errno);
            }
            true
        });
        if reported == Some(true) {
            cell.ctl_set_idle();
        }
    }
}
